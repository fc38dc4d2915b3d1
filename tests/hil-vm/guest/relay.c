/* hilrelay: the copper between the host's virtual module and the guest's gpio-sim
 * chip, for the station phase (the guest's `fotabench.Bench` drives a real-kind slot:
 * /dev/ttyS1 + the gpio-sim chip). Test fixture, not code under test.
 *
 *   hilrelay relay   ttyS3 both ways:
 *     host -> guest  "W <v> <seq>"   the module's WDI edge: gpio-sim pull of WDI
 *                    "GO"            the module runs: touch /run/station.go
 *     guest -> host  "O <NAME> <v>"  a physical level of PWRKEY, RESET or VBAT as the
 *                                    bench drives it (the host sets the module's pin)
 *     Runs until SIGTERM; prints "RELAY <counts>" on exit.
 *   hilrelay hold <chip> <offset> <consumer>
 *     another program holding a line: requests it as an output through libgpiod
 *     with its own consumer name, prints "HOLDER READY", holds it until SIGTERM.
 *
 * The levels are read by polling gpio-sim's `value` attributes every 2 ms: gpio-sim
 * does not notify a change of them (no sysfs_notify), and a PWRKEY press lasts 0.7 s
 * or more, so 2 ms is far inside what the module's pins care about. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <gpiod.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_term(int sig)
{
    (void)sig;
    g_stop = 1;
}

struct wdi_in {
    int fd;
    unsigned long received, pull_errors, seq_gaps, last_seq, go;
};

static void *wdi_main(void *arg)
{
    struct wdi_in *r = arg;
    char buf[256];
    size_t len = 0;
    while (!g_stop) {
        ssize_t n = read(r->fd, buf + len, sizeof buf - 1 - len); /* VTIME 1: 100 ms */
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            break;
        if (n <= 0)
            continue;
        len += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
            *nl = 0;
            int v;
            unsigned long seq;
            if (sscanf(buf, "W %d %lu", &v, &seq) == 2) {
                if (sim_pull(L_WDI, v))
                    r->pull_errors++;
                if (r->last_seq && seq != r->last_seq + 1)
                    r->seq_gaps++;
                r->last_seq = seq;
                r->received++;
            } else if (!strcmp(buf, "GO")) {
                int fd = open("/run/station.go", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd >= 0)
                    close(fd);
                r->go++;
            }
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, len - used);
            len -= used;
        }
        if (len == sizeof buf - 1)
            len = 0; /* garbage without newline: drop */
    }
    return NULL;
}

static int relay(void)
{
    static const struct {
        unsigned line;
        const char *name;
        int pull_up;
    } outs[] = {
        /* The module's PWRKEY and RESET_N have pull-ups inside: an unrequested line
         * reads released. VBAT's load switch stays off (pull-down) until the bench
         * drives it. */
        { L_PWRKEY, "PWRKEY", 1 },
        { L_RESET, "RESET", 1 },
        { L_VBAT, "VBAT", 0 },
    };
    enum { N_OUTS = sizeof outs / sizeof outs[0] };
    struct wdi_in in = { 0 };
    in.fd = open(RELAY_UART, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (in.fd < 0) {
        printf("RELAY FAILED cannot open %s: %s\n", RELAY_UART, strerror(errno));
        return 1;
    }
    struct termios t;
    tcgetattr(in.fd, &t);
    cfmakeraw(&t);
    cfsetspeed(&t, B115200);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 1;
    tcsetattr(in.fd, TCSANOW, &t);
    tcflush(in.fd, TCIOFLUSH);
    sim_pull(L_WDI, 0);
    for (unsigned i = 0; i < N_OUTS; i++)
        sim_pull(outs[i].line, outs[i].pull_up);
    pthread_t th;
    if (pthread_create(&th, NULL, wdi_main, &in)) {
        printf("RELAY FAILED no thread\n");
        return 1;
    }
    int last[N_OUTS];
    for (unsigned i = 0; i < N_OUTS; i++)
        last[i] = -1; /* the first poll sends every level: the host starts from them */
    unsigned long sent = 0, read_errors = 0;
    printf("RELAY READY\n");
    fflush(stdout);
    int64_t next = now_ns();
    while (!g_stop) {
        for (unsigned i = 0; i < N_OUTS; i++) {
            int v = sim_value(outs[i].line);
            if (v < 0) {
                read_errors++;
                continue;
            }
            if (v == last[i])
                continue;
            last[i] = v;
            char msg[32];
            int n = snprintf(msg, sizeof msg, "O %s %d\n", outs[i].name, v);
            if (write(in.fd, msg, (size_t)n) == n)
                sent++;
        }
        next += 2 * MS;
        sleep_until_ns(next);
        if (now_ns() > next + 100 * MS)
            next = now_ns(); /* after a long stall: do not catch up in a burst */
    }
    pthread_join(th, NULL);
    close(in.fd);
    printf("RELAY END wdi_received=%lu wdi_seq_gaps=%lu wdi_pull_errors=%lu levels_sent=%lu "
           "read_errors=%lu go=%lu\n",
           in.received, in.seq_gaps, in.pull_errors, sent, read_errors, in.go);
    return 0;
}

static int hold(const char *chip_path, unsigned offset, const char *consumer)
{
    struct gpiod_chip *chip = gpiod_chip_open(chip_path);
    if (!chip) {
        printf("HOLDER FAILED cannot open %s: %s\n", chip_path, strerror(errno));
        return 1;
    }
    struct gpiod_line_settings *s = gpiod_line_settings_new();
    struct gpiod_line_config *lc = gpiod_line_config_new();
    struct gpiod_request_config *rc = gpiod_request_config_new();
    struct gpiod_line_request *req = NULL;
    if (s && lc && rc) {
        gpiod_line_settings_set_direction(s, GPIOD_LINE_DIRECTION_OUTPUT);
        gpiod_request_config_set_consumer(rc, consumer);
        if (gpiod_line_config_add_line_settings(lc, &offset, 1, s) == 0)
            req = gpiod_chip_request_lines(chip, rc, lc);
    }
    if (!req) {
        printf("HOLDER FAILED cannot request line %u of %s: %s\n", offset, chip_path,
               strerror(errno));
        return 1;
    }
    printf("HOLDER READY pid=%d line=%u consumer=%s\n", (int)getpid(), offset, consumer);
    fflush(stdout);
    while (!g_stop)
        pause();
    gpiod_line_request_release(req);
    gpiod_request_config_free(rc);
    gpiod_line_config_free(lc);
    gpiod_line_settings_free(s);
    gpiod_chip_close(chip);
    return 0;
}

int main(int argc, char **argv)
{
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: pause() and read() return */
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && !strcmp(argv[1], "relay"))
        return relay();
    if (argc == 5 && !strcmp(argv[1], "hold"))
        return hold(argv[2], (unsigned)strtoul(argv[3], NULL, 10), argv[4]);
    fprintf(stderr, "usage: hilrelay relay | hilrelay hold CHIP OFFSET CONSUMER\n");
    return 2;
}
