/* fotabench-sim: the board of one virtual module.
 *
 *   fotabench-sim --app APP.bin --state DIR [options]
 *
 * The board owns what stays when the module is off: the two UART pseudo-terminals, the
 * virtual lines on DIR/gpio.sock (docs/architecture.md), the power model (VBAT, PWRKEY,
 * RESET, STATUS), the external watchdog chip on WDI, and the flash (files in DIR). The
 * module itself is a child process forked at every power-on (module.c); cutting VBAT
 * SIGKILLs it, so the flash files keep exactly what was written. Prints one JSON line
 * when ready, then runs until SIGTERM, SIGINT or SIGHUP (or, with --owner-fd, until its owner
 * dies). Nothing of it outlives the board: the module gets SIGKILL when the board dies
 * (PR_SET_PDEATHSIG). One board per state directory: DIR/board.lock is flock()ed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "sim.h"

struct sim_cfg g_cfg;

enum { L_PWRKEY, L_RESET, L_VBAT, L_WDI, L_STATUS, L_COUNT };
static const char *const s_line_names[L_COUNT] = {"PWRKEY", "RESET", "VBAT", "WDI", "STATUS"};
static const int s_line_input[L_COUNT] = {1, 1, 1, 0, 0};
static int s_level[L_COUNT];
static unsigned long long s_seq[L_COUNT];

enum { M_OFF, M_ON, M_POWERING_DOWN, M_HUNG, M_RESET_HELD, M_WDT_RESET };
static int s_mstate = M_OFF;
static pid_t s_child;
static int s_ev_fd = -1;
static int s_uart_master[2] = {-1, -1}, s_uart_slave[2] = {-1, -1};
static char s_uart_path[2][128];
static int64_t s_pwrkey_low_since;
static int s_press_used;      /* this PWRKEY press already powered the module on */
static int64_t s_last_wdi_ns;
static int64_t s_reset_until; /* end of the watchdog chip's reset pulse */
static unsigned long s_boots, s_wdt_resets;

/* gpio.sock clients: a table grown on demand up to what the open-file limit allows
 * (RLIMIT_NOFILE less a reserve for the board's own files); past that a client is told
 * the limit and closed. */
#define FD_RESERVE 64
struct client {
    int fd;
    char in[512];
    size_t len;
    unsigned watch;
};
static struct client *s_clients;
static int s_nclients, s_max_clients;
static int s_listen = -1;
static int s_lock_fd = -1, s_owner_fd = -1;
static int s_sigpipe[2] = {-1, -1};
static pid_t s_board_pid;
#define MODULE_EXIT_ORPHAN 4 /* the board died while the module was being forked */
#define EXIT_STATE_BUSY 3    /* another board holds the state directory */

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fotabench-sim[%d]: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void client_send(struct client *c, const char *text)
{
    size_t n = strlen(text);
    while (n > 0 && c->fd >= 0) {
        /* never block the board: a client that stops reading its events is dropped */
        ssize_t w = send(c->fd, text, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                logf_("gpio.sock client not reading: disconnected");
            close(c->fd);
            c->fd = -1;
            return;
        }
        text += w;
        n -= (size_t)w;
    }
}

static void set_level(int line, int value, int64_t t_ns)
{
    if (s_level[line] == value)
        return;
    s_level[line] = value;
    s_seq[line]++;
    char buf[128];
    snprintf(buf, sizeof(buf), "EDGE %s %d %lld %llu\n", s_line_names[line], value,
             (long long)t_ns, s_seq[line]);
    for (int i = 0; i < s_nclients; i++)
        if (s_clients[i].fd >= 0 && (s_clients[i].watch & (1u << line)))
            client_send(&s_clients[i], buf);
}

/* ---- the module process ---------------------------------------------------------------- */

static void module_kill(void)
{
    if (s_child > 0) {
        kill(s_child, SIGKILL);
        s_child = 0; /* reaped later, ignored */
    }
    if (s_ev_fd >= 0) {
        close(s_ev_fd);
        s_ev_fd = -1;
    }
    set_level(L_STATUS, 0, sim_now_ns());
}

static void module_spawn(void)
{
    int p[2];
    if (pipe(p) != 0) {
        logf_("pipe: %s", strerror(errno));
        return;
    }
    /* bytes sent while the module was off are lost, like on a real UART */
    tcflush(s_uart_master[0], TCIFLUSH);
    tcflush(s_uart_master[1], TCIFLUSH);
    g_cfg.pwrkey_low_at_power_up = !s_level[L_PWRKEY]; /* download mode (brom.c) */
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        logf_("fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        /* The module dies with the board, even when the board is SIGKILLed. The board
         * forks from its only thread, so "the parent thread exits" is "the board exits";
         * if it died before the prctl, getppid() is no longer the board. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != s_board_pid)
            _exit(MODULE_EXIT_ORPHAN);
        close(p[0]);
        close(s_listen);
        close(s_lock_fd); /* the board alone holds the state directory's lock */
        if (s_owner_fd >= 0)
            close(s_owner_fd);
        close(s_sigpipe[0]);
        close(s_sigpipe[1]);
        close(s_uart_slave[0]);
        close(s_uart_slave[1]);
        for (int i = 0; i < s_nclients; i++)
            if (s_clients[i].fd >= 0)
                close(s_clients[i].fd);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGINT, SIG_IGN); /* the board handles Ctrl-C */
        signal(SIGHUP, SIG_IGN); /* and a closed terminal */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        module_main(s_uart_master[0], s_uart_master[1], p[1]);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    s_ev_fd = p[0];
    s_child = pid;
    s_mstate = M_ON;
    s_last_wdi_ns = sim_now_ns();
    s_boots++;
    logf_("module powered on (boot %lu, pid %d)", s_boots, (int)pid);
}

static void power_on(void)
{
    if (s_mstate == M_OFF && s_level[L_VBAT] && s_level[L_RESET])
        module_spawn();
}

static void child_exited(pid_t pid, int status)
{
    if (pid != s_child)
        return;
    s_child = 0;
    if (s_ev_fd >= 0) {
        /* take the last events (e.g. a final WDI edge) */
        struct sim_event ev;
        while (read(s_ev_fd, &ev, sizeof(ev)) == (ssize_t)sizeof(ev))
            if (ev.type == EV_WDI)
                set_level(L_WDI, ev.value, ev.t_ns);
        close(s_ev_fd);
        s_ev_fd = -1;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (s_mstate == M_POWERING_DOWN || (s_mstate == M_ON && code == MODULE_EXIT_POWERDOWN)) {
        set_level(L_STATUS, 0, sim_now_ns());
        s_mstate = M_OFF;
        logf_("module powered down");
    } else if (s_mstate == M_ON && code == MODULE_EXIT_REBOOT) {
        set_level(L_STATUS, 0, sim_now_ns());
        s_mstate = M_OFF;
        logf_("module reboot");
        module_spawn();
    } else if (s_mstate == M_ON) {
        /* a crashed core hangs: powered, silent, WDI still; the watchdog chip decides */
        s_mstate = M_HUNG;
        if (WIFSIGNALED(status))
            logf_("module process died (signal %d): hung until reset", WTERMSIG(status));
        else
            logf_("module process exited (%d): hung until reset", code);
    }
}

static void read_events(void)
{
    struct sim_event ev;
    for (;;) {
        ssize_t n = read(s_ev_fd, &ev, sizeof(ev));
        if (n != (ssize_t)sizeof(ev))
            return;
        if (ev.type == EV_WDI) {
            set_level(L_WDI, ev.value, ev.t_ns);
            s_last_wdi_ns = ev.t_ns;
        } else if (ev.type == EV_STATUS) {
            set_level(L_STATUS, ev.value, ev.t_ns);
        }
    }
}

/* ---- inputs ------------------------------------------------------------------------------ */

static void apply_input(int line, int value)
{
    int64_t now = sim_now_ns();
    int old = s_level[line];
    set_level(line, value, now);
    if (old == value)
        return;
    if (line == L_VBAT) {
        if (!value) {
            if (s_mstate != M_OFF)
                logf_("VBAT cut");
            module_kill();
            s_mstate = M_OFF;
        } else if (!s_level[L_PWRKEY]) {
            s_pwrkey_low_since = now; /* held through power-up: counts from VBAT */
            s_press_used = 0;
        }
    } else if (line == L_PWRKEY) {
        if (!value) {
            s_pwrkey_low_since = now;
            s_press_used = 0;
        } else {
            int64_t held = now - s_pwrkey_low_since;
            if ((s_mstate == M_ON || s_mstate == M_HUNG) && !s_press_used &&
                held >= 700000000LL && held <= 1000000000LL) {
                logf_("PWRKEY power-off pulse (%lld ms)", (long long)(held / 1000000));
                if (s_mstate == M_ON && s_child > 0) {
                    s_mstate = M_POWERING_DOWN;
                    kill(s_child, SIGTERM);
                } else {
                    module_kill();
                    s_mstate = M_OFF;
                }
            }
        }
    } else if (line == L_RESET) {
        if (!value) {
            if (s_mstate != M_OFF) {
                logf_("RESET asserted");
                module_kill();
                s_mstate = M_RESET_HELD;
            }
        } else if (s_mstate == M_RESET_HELD) {
            s_mstate = M_OFF;
            power_on();
        }
    }
}

static void timers(void)
{
    int64_t now = sim_now_ns();
    if (s_mstate == M_OFF && s_level[L_VBAT] && !s_level[L_PWRKEY] && !s_press_used &&
        now - s_pwrkey_low_since >= 1000000000LL) {
        s_press_used = 1;
        power_on();
    }
    if ((s_mstate == M_ON || s_mstate == M_HUNG) && g_cfg.wdt_timeout > 0 &&
        now - s_last_wdi_ns > (int64_t)(g_cfg.wdt_timeout * 1e9)) {
        s_wdt_resets++;
        logf_("watchdog reset: no WDI edge for %.2f s", (double)(now - s_last_wdi_ns) / 1e9);
        module_kill();
        s_mstate = M_WDT_RESET;
        s_reset_until = now + 200000000LL; /* the chip's reset pulse */
    }
    if (s_mstate == M_WDT_RESET && now >= s_reset_until) {
        s_mstate = M_OFF;
        power_on();
    }
}

static int64_t next_timer_ms(void)
{
    int64_t now = sim_now_ns(), best = 1000;
    if (s_mstate == M_OFF && s_level[L_VBAT] && !s_level[L_PWRKEY] && !s_press_used) {
        int64_t d = (s_pwrkey_low_since + 1000000000LL - now) / 1000000LL + 1;
        if (d < best)
            best = d;
    }
    if ((s_mstate == M_ON || s_mstate == M_HUNG) && g_cfg.wdt_timeout > 0) {
        int64_t d = (s_last_wdi_ns + (int64_t)(g_cfg.wdt_timeout * 1e9) - now) / 1000000LL + 1;
        if (d < best)
            best = d;
    }
    if (s_mstate == M_WDT_RESET) {
        int64_t d = (s_reset_until - now) / 1000000LL + 1;
        if (d < best)
            best = d;
    }
    return best < 0 ? 0 : best;
}

/* ---- gpio.sock -------------------------------------------------------------------------- */

static int line_by_name(const char *name)
{
    for (int i = 0; i < L_COUNT; i++)
        if (!strcmp(name, s_line_names[i]))
            return i;
    return -1;
}

static void client_command(struct client *c, char *cmd)
{
    char verb[16] = "", name[16] = "", extra[16] = "";
    char out[256];
    int n = sscanf(cmd, "%15s %15s %15s", verb, name, extra);
    long long now = (long long)sim_now_ns();
    int line = n >= 2 ? line_by_name(name) : -1;
    if (n >= 1 && !strcmp(verb, "LINES") && n == 1) {
        for (int i = 0; i < L_COUNT; i++) {
            snprintf(out, sizeof(out), "LINE %s %s %d\n", s_line_names[i],
                     s_line_input[i] ? "in" : "out", s_level[i]);
            client_send(c, out);
        }
        snprintf(out, sizeof(out), "OK %lld\n", now);
    } else if (n >= 2 && line < 0) {
        snprintf(out, sizeof(out), "ERR unknown line %s\n", name);
    } else if (n == 3 && !strcmp(verb, "SET")) {
        if (!s_line_input[line])
            snprintf(out, sizeof(out), "ERR %s is an output of the module\n", name);
        else if (strcmp(extra, "0") && strcmp(extra, "1"))
            snprintf(out, sizeof(out), "ERR value must be 0 or 1\n");
        else {
            apply_input(line, extra[0] == '1');
            timers();
            snprintf(out, sizeof(out), "OK %lld\n", (long long)sim_now_ns());
        }
    } else if (n == 2 && !strcmp(verb, "GET")) {
        snprintf(out, sizeof(out), "VAL %s %d %lld\n", name, s_level[line], now);
    } else if (n == 2 && !strcmp(verb, "WATCH")) {
        c->watch |= 1u << line;
        snprintf(out, sizeof(out), "OK %lld\n", now);
    } else if (n == 2 && !strcmp(verb, "UNWATCH")) {
        c->watch &= ~(1u << line);
        snprintf(out, sizeof(out), "OK %lld\n", now);
    } else {
        snprintf(out, sizeof(out), "ERR unknown command\n");
    }
    client_send(c, out);
}

static void client_read(struct client *c)
{
    ssize_t n = recv(c->fd, c->in + c->len, sizeof(c->in) - c->len, 0);
    if (n <= 0) {
        close(c->fd);
        c->fd = -1;
        return;
    }
    c->len += (size_t)n;
    for (;;) {
        char *nl = memchr(c->in, '\n', c->len);
        if (!nl) {
            if (c->len == sizeof(c->in)) { /* an overlong line: refuse it */
                c->len = 0;
                client_send(c, "ERR line too long\n");
            }
            return;
        }
        *nl = '\0';
        if (nl > c->in && nl[-1] == '\r')
            nl[-1] = '\0';
        client_command(c, c->in);
        if (c->fd < 0)
            return;
        size_t used = (size_t)(nl - c->in) + 1;
        memmove(c->in, nl + 1, c->len - used);
        c->len -= used;
    }
}

/* ---- set-up ------------------------------------------------------------------------------ */

/* The end, on SIGTERM/SIGINT/SIGHUP or when the owner is gone: the module stops with it,
 * gpio.sock goes; the lock goes with the process. */
static void board_stop(void)
{
    module_kill();
    while (waitpid(-1, NULL, 0) > 0)
        ;
    unlink("gpio.sock");
    for (int i = 0; i < s_nclients; i++)
        if (s_clients[i].fd >= 0)
            close(s_clients[i].fd);
    free(s_clients);
    s_clients = NULL;
    s_nclients = 0;
    logf_("stopped");
}

static void on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(s_sigpipe[1], &b, 1);
    (void)r;
}

static int open_pty(int i)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
        return -1;
    const char *name = ptsname(m);
    if (!name)
        return -1;
    snprintf(s_uart_path[i], sizeof(s_uart_path[i]), "%s", name);
    /* The board keeps the terminal side open (raw: no echo, no line editing) so the
     * port stays usable whoever opens and closes it. */
    int s = open(name, O_RDWR | O_NOCTTY);
    if (s < 0)
        return -1;
    struct termios t;
    if (tcgetattr(s, &t) == 0) {
        cfmakeraw(&t);
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        tcsetattr(s, TCSANOW, &t);
    }
    fcntl(m, F_SETFL, O_NONBLOCK);
    s_uart_master[i] = m;
    s_uart_slave[i] = s;
    return 0;
}

static int copy_file(const char *from, const char *to)
{
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", to);
    FILE *in = fopen(from, "rb");
    FILE *out = in ? fopen(tmp, "wb") : NULL;
    int ok = in && out;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in && ferror(in))
        ok = 0;
    if (out) {
        ok = ok && fflush(out) == 0 && fsync(fileno(out)) == 0;
        fclose(out);
    }
    if (in)
        fclose(in);
    if (ok && rename(tmp, to) == 0)
        return 0;
    unlink(tmp);
    return -1;
}

/* IMEI (AT+GSN): 15 digits, the last a Luhn check digit. */
static int luhn_ok(const char *d)
{
    int sum = 0;
    for (int i = 0; i < 15; i++) {
        if (d[i] < '0' || d[i] > '9')
            return 0;
        int v = d[14 - i] - '0';
        if (i % 2) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return d[15] == '\0' && sum % 10 == 0;
}

/* The module's IMEI: --imei, else the one kept in the state directory ("imei"), else a
 * new random one (TAC-like "86" prefix, Luhn check digit), kept there for next time. */
static int setup_imei(const char *given)
{
    char imei[32] = "";
    if (given) {
        if (strlen(given) != 15 || !luhn_ok(given)) {
            fprintf(stderr, "fotabench-sim: error: --imei %s: an IMEI is 15 digits whose last "
                    "is the Luhn check digit\n", given);
            return -1;
        }
        snprintf(imei, sizeof(imei), "%s", given);
    } else {
        FILE *f = fopen("imei", "r");
        if (f) {
            if (!fgets(imei, sizeof(imei), f))
                imei[0] = '\0';
            fclose(f);
            imei[strcspn(imei, "\r\n")] = '\0';
        }
    }
    if (!luhn_ok(imei)) {
        unsigned char rnd[12];
        FILE *r = fopen("/dev/urandom", "rb");
        if (!r || fread(rnd, 1, sizeof(rnd), r) != sizeof(rnd)) {
            if (r)
                fclose(r);
            fprintf(stderr, "fotabench-sim: error: /dev/urandom: %s\n", strerror(errno));
            return -1;
        }
        fclose(r);
        imei[0] = '8';
        imei[1] = '6';
        for (int i = 0; i < 12; i++)
            imei[2 + i] = (char)('0' + rnd[i] % 10);
        imei[15] = '\0';
        for (int c = 0; c < 10; c++) {
            imei[14] = (char)('0' + c);
            if (luhn_ok(imei))
                break;
        }
    }
    snprintf(g_cfg.imei, sizeof(g_cfg.imei), "%s", imei);
    FILE *f = fopen("imei.tmp", "w");
    if (!f || fprintf(f, "%s\n", imei) < 0 || fclose(f) != 0 || rename("imei.tmp", "imei") != 0) {
        fprintf(stderr, "fotabench-sim: error: cannot keep the IMEI in the state directory: %s\n",
                strerror(errno));
        return -1;
    }
    return 0;
}

/* One board per state directory: an exclusive flock() on DIR/board.lock, released by
 * the kernel whenever the holder dies (SIGKILL included), so a stale file never blocks.
 * The holder's pid is written in the file for the error of the next one. */
static int lock_state(void)
{
    int fd = open("board.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "fotabench-sim: error: cannot open %s/board.lock: %s\n", g_cfg.state,
                strerror(errno));
        return 1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        long holder = n > 0 ? strtol(buf, NULL, 10) : 0;
        close(fd);
        if (e != EWOULDBLOCK) {
            fprintf(stderr, "fotabench-sim: error: cannot lock %s/board.lock: %s\n",
                    g_cfg.state, strerror(e));
            return 1;
        }
        if (holder > 0)
            fprintf(stderr, "fotabench-sim: error: the state directory %s is in use by another "
                    "board program (pid %ld): stop it or give another --state\n",
                    g_cfg.state, holder);
        else
            fprintf(stderr, "fotabench-sim: error: the state directory %s is in use by another "
                    "board program (starting up): stop it or give another --state\n",
                    g_cfg.state);
        return EXIT_STATE_BUSY;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        fprintf(stderr, "fotabench-sim: error: cannot write %s/board.lock: %s\n", g_cfg.state,
                strerror(errno));
        close(fd);
        return 1;
    }
    s_lock_fd = fd;
    return 0;
}

/* A slot for a new gpio.sock client, growing the table; -1 past the limit. */
static int client_slot(void)
{
    for (int i = 0; i < s_nclients; i++)
        if (s_clients[i].fd < 0)
            return i;
    if (s_nclients >= s_max_clients)
        return -1;
    if (s_nclients % 16 == 0) {
        struct client *t = realloc(s_clients, (size_t)(s_nclients + 16) * sizeof(*t));
        if (!t)
            return -1;
        s_clients = t;
    }
    s_clients[s_nclients].fd = -1;
    return s_nclients++;
}

static void client_accept(void)
{
    int fd = accept4(s_listen, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    int slot = client_slot();
    if (slot < 0) {
        char msg[64];
        snprintf(msg, sizeof(msg), "BYE too many gpio.sock clients (limit %d)\n", s_max_clients);
        struct client c = {.fd = fd};
        logf_("gpio.sock client refused: %d clients already (the limit)", s_max_clients);
        client_send(&c, msg);
        if (c.fd >= 0) {
            /* what it already sent is read, so it gets the line, not a reset */
            char junk[512];
            while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
                ;
            close(fd);
        }
        return;
    }
    s_clients[slot].fd = fd;
    s_clients[slot].len = 0;
    s_clients[slot].watch = 0;
}

static void usage(FILE *f)
{
    fputs("usage: fotabench-sim --state DIR [--app APP.bin] [options]\n"
          "  --app PATH            app image flashed when the app area is empty (or --reflash)\n"
          "  --state DIR           flash of the module (kept between runs); gpio.sock lives here\n"
          "  --boot-timing real|fast   core delays as on a module, or / 100 (default real)\n"
          "  --link-rate BPS|unlimited downlink bits/s (default 50000)\n"
          "  --latency-ms N        added before each connection set-up (default 420)\n"
          "  --attach-fail         GPRS never attaches\n"
          "  --pdp-fail            PDP context activation fails\n"
          "  --wdt-timeout SEC     external watchdog timeout, 0 = no chip (default 1.6)\n"
          "  --http-timeout SEC    HTTP seconds without data before failing (default 120)\n"
          "  --ftp-retry-ms N      pause between FTP connection tries (default 2000)\n"
          "  --flash-rate BPS      boot loader copy speed in bytes/s, 0 = instant\n"
          "                        (default 65536 with real timing, 0 with fast)\n"
          "  --power on|off        power the module on at start (default on)\n"
          "  --reflash             write --app into the app area even if one is there\n"
          "  --model NAME          M66 (default), MC60, MC60E, M26 or MC20: app region and chip\n"
          "  --package-check md5|full  what Ql_FOTA_Finish checks: the MD5 trailer (default),\n"
          "                        or also the header (CRC, lengths) and the app against the model\n"
          "  --ftp-short-url refuse|accept  FTP URL without :port or @user:password: a decode\n"
          "                        failure (default) or the note's defaults (21, anonymous)\n"
          "  --imei DIGITS         the module's IMEI (AT+GSN); default: kept in the state directory\n"
          "  --blank               erase the app area first (a module to flash over UART)\n"
          "  --download pwrkey|always  the BootROM's ~150 ms handshake window at power-up with\n"
          "                        PWRKEY held low (default), or at every power-up\n"
          "  --line-fault flip|drop:FIRST:COUNT  UART1 flips a bit in (or drops a byte of) the\n"
          "                        download agent's write packets FIRST..FIRST+COUNT-1\n"
          "  --owner-fd N          stop when fd N (a pipe's read end) reaches end of file:\n"
          "                        the process that holds its write end has died\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"app", required_argument, 0, 'a'},          {"state", required_argument, 0, 's'},
        {"boot-timing", required_argument, 0, 'b'},  {"link-rate", required_argument, 0, 'r'},
        {"latency-ms", required_argument, 0, 'l'},   {"attach-fail", no_argument, 0, 'A'},
        {"pdp-fail", no_argument, 0, 'P'},           {"wdt-timeout", required_argument, 0, 'w'},
        {"http-timeout", required_argument, 0, 'h'}, {"ftp-retry-ms", required_argument, 0, 'f'},
        {"flash-rate", required_argument, 0, 'F'},   {"power", required_argument, 0, 'p'},
        {"reflash", no_argument, 0, 'R'},            {"help", no_argument, 0, 'H'},
        {"model", required_argument, 0, 'm'},        {"package-check", required_argument, 0, 'k'},
        {"ftp-short-url", required_argument, 0, 'u'}, {"imei", required_argument, 0, 'i'},
        {"download", required_argument, 0, 'D'},     {"line-fault", required_argument, 0, 'L'},
        {"blank", no_argument, 0, 'B'},
        {"owner-fd", required_argument, 0, 'O'},
        {0, 0, 0, 0}};
    int blank = 0;
    const char *app = NULL, *state = NULL, *imei = NULL;
    double flash_rate = -1;
    g_cfg.model = sim_model_find("M66");
    g_cfg.link_rate_bps = 50000;
    g_cfg.latency_ms = 420; /* TCP connect to a server in the MC60 trace (§8) */
    g_cfg.wdt_timeout = 1.6;
    g_cfg.http_timeout_s = 120;
    g_cfg.ftp_retry_ms = 2000;
    g_cfg.power_on = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'a': app = optarg; break;
        case 's': state = optarg; break;
        case 'b':
            if (strcmp(optarg, "real") && strcmp(optarg, "fast"))
                goto bad;
            g_cfg.fast = !strcmp(optarg, "fast");
            break;
        case 'r':
            if (!strcmp(optarg, "unlimited")) {
                g_cfg.link_rate_bps = 0;
            } else {
                g_cfg.link_rate_bps = strtod(optarg, &end);
                if (*end || g_cfg.link_rate_bps < 100)
                    goto bad;
            }
            break;
        case 'l': g_cfg.latency_ms = (int)strtol(optarg, &end, 10); if (*end || g_cfg.latency_ms < 0) goto bad; break;
        case 'A': g_cfg.attach_fail = 1; break;
        case 'P': g_cfg.pdp_fail = 1; break;
        case 'w': g_cfg.wdt_timeout = strtod(optarg, &end); if (*end || g_cfg.wdt_timeout < 0) goto bad; break;
        case 'h': g_cfg.http_timeout_s = (int)strtol(optarg, &end, 10); if (*end || g_cfg.http_timeout_s < 1) goto bad; break;
        case 'f': g_cfg.ftp_retry_ms = (int)strtol(optarg, &end, 10); if (*end || g_cfg.ftp_retry_ms < 0) goto bad; break;
        case 'F': flash_rate = strtod(optarg, &end); if (*end || flash_rate < 0) goto bad; break;
        case 'p':
            if (strcmp(optarg, "on") && strcmp(optarg, "off"))
                goto bad;
            g_cfg.power_on = !strcmp(optarg, "on");
            break;
        case 'R': g_cfg.reflash = 1; break;
        case 'm':
            if (!(g_cfg.model = sim_model_find(optarg))) {
                fprintf(stderr, "fotabench-sim: error: unknown model %s; known:", optarg);
                for (size_t i = 0; i < sim_model_count(); i++)
                    fprintf(stderr, " %s", sim_model_at(i)->name);
                fprintf(stderr, "\n");
                return 2;
            }
            break;
        case 'k':
            if (strcmp(optarg, "md5") && strcmp(optarg, "full"))
                goto bad;
            g_cfg.package_check = !strcmp(optarg, "full") ? PKG_CHECK_FULL : PKG_CHECK_MD5;
            break;
        case 'u':
            if (strcmp(optarg, "refuse") && strcmp(optarg, "accept"))
                goto bad;
            g_cfg.ftp_short_url = !strcmp(optarg, "accept") ? FTP_SHORT_ACCEPT : FTP_SHORT_REFUSE;
            break;
        case 'i': imei = optarg; break;
        case 'D':
            if (strcmp(optarg, "pwrkey") && strcmp(optarg, "always"))
                goto bad;
            g_cfg.download_always = !strcmp(optarg, "always");
            break;
        case 'L': {
            char kind[8];
            int st = 0, cnt = 0;
            if (sscanf(optarg, "%7[a-z]:%d:%d", kind, &st, &cnt) != 3 || st < 0 || cnt < 1 ||
                (strcmp(kind, "flip") && strcmp(kind, "drop")))
                goto bad;
            g_cfg.line_fault = !strcmp(kind, "flip") ? LINE_FAULT_FLIP : LINE_FAULT_DROP;
            g_cfg.fault_start = st;
            g_cfg.fault_count = cnt;
            break;
        }
        case 'B': blank = 1; break;
        case 'O': {
            long fd = strtol(optarg, &end, 10);
            if (*end || fd < 0 || fd > INT_MAX || fcntl((int)fd, F_GETFD) < 0)
                goto bad;
            s_owner_fd = (int)fd;
            fcntl(s_owner_fd, F_SETFD, FD_CLOEXEC);
            break;
        }
        case 'H': usage(stdout); return 0;
        default: goto bad;
        }
    }
    if (!state || optind != argc)
        goto bad;
    g_cfg.flash_rate = flash_rate >= 0 ? flash_rate : (g_cfg.fast ? 0 : 65536);

    if (mkdir(state, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fotabench-sim: error: cannot create state directory %s: %s\n", state,
                strerror(errno));
        return 1;
    }
    if (!realpath(state, g_cfg.state) || (app && !realpath(app, g_cfg.app))) {
        fprintf(stderr, "fotabench-sim: error: %s: %s\n", app ? app : state, strerror(errno));
        return 1;
    }
    if (chdir(g_cfg.state) != 0) {
        fprintf(stderr, "fotabench-sim: error: %s: %s\n", g_cfg.state, strerror(errno));
        return 1;
    }
    int locked = lock_state();
    if (locked != 0)
        return locked;
    s_board_pid = getpid();
    if (setup_imei(imei) != 0)
        return 1;
    /* flash: the app area is written from --app only when empty (or --reflash); --blank
     * erases it (a module fresh from the factory, to be flashed over UART) */
    if (blank) {
        unlink("app.bin");
        unlink("fota.flag");
    } else if (access("app.bin", F_OK) != 0 || g_cfg.reflash) {
        if (!app) {
            fprintf(stderr, "fotabench-sim: error: the app area of %s is empty: give --app\n",
                    g_cfg.state);
            return 1;
        }
        if (copy_file(g_cfg.app, "app.bin") != 0) {
            fprintf(stderr, "fotabench-sim: error: cannot flash %s: %s\n", g_cfg.app,
                    strerror(errno));
            return 1;
        }
        unlink("fota.flag");
    }
    if (open_pty(0) != 0 || open_pty(1) != 0) {
        fprintf(stderr, "fotabench-sim: error: cannot create pseudo-terminals: %s\n",
                strerror(errno));
        return 1;
    }
    /* bound relative to the state directory: no sun_path length limit on its path */
    unlink("gpio.sock");
    s_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "gpio.sock");
    if (s_listen < 0 || bind(s_listen, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(s_listen, 16) != 0) {
        fprintf(stderr, "fotabench-sim: error: gpio.sock: %s\n", strerror(errno));
        return 1;
    }
    struct rlimit nofile;
    rlim_t fds = getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? nofile.rlim_cur : 1024;
    if (fds == RLIM_INFINITY || fds > 65536)
        fds = 65536;
    s_max_clients = fds > FD_RESERVE + 16 ? (int)(fds - FD_RESERVE) : 16;
    if (pipe(s_sigpipe) != 0)
        return 1;
    fcntl(s_sigpipe[0], F_SETFL, O_NONBLOCK);
    fcntl(s_sigpipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sact;
    memset(&sact, 0, sizeof(sact));
    sact.sa_handler = on_signal;
    sigaction(SIGCHLD, &sact, NULL);
    sigaction(SIGTERM, &sact, NULL);
    sigaction(SIGINT, &sact, NULL);
    sigaction(SIGHUP, &sact, NULL); /* its terminal closed: stop cleanly, as on SIGTERM */
    signal(SIGPIPE, SIG_IGN);

    s_level[L_PWRKEY] = 1; /* released (active low) */
    s_level[L_RESET] = 1;
    s_level[L_VBAT] = g_cfg.power_on;
    if (g_cfg.power_on) {
        s_press_used = 1;
        module_spawn();
    }
    printf("{\"uart1\": \"%s\", \"uart2\": \"%s\", \"gpio\": \"%s/gpio.sock\", \"pid\": %d, "
           "\"state\": \"%s\", \"model\": \"%s\", \"chip\": \"%s\", \"imei\": \"%s\"}\n",
           s_uart_path[0], s_uart_path[1], g_cfg.state, (int)getpid(), g_cfg.state,
           g_cfg.model->name, g_cfg.model->chip, g_cfg.imei);
    fflush(stdout);

    struct pollfd *pf = NULL;
    int *map = NULL, pf_cap = 0;
    for (;;) {
        if (pf_cap < s_nclients + 4) {
            pf_cap = s_nclients + 4;
            struct pollfd *npf = realloc(pf, (size_t)pf_cap * sizeof(*pf));
            if (npf)
                pf = npf;
            int *nmap = realloc(map, (size_t)pf_cap * sizeof(*map));
            if (nmap)
                map = nmap;
            if (!npf || !nmap) {
                logf_("out of memory");
                board_stop();
                return 1;
            }
        }
        int n = 0;
        pf[n].fd = s_sigpipe[0]; pf[n].events = POLLIN; map[n++] = -1;
        if (s_owner_fd >= 0) {
            pf[n].fd = s_owner_fd; pf[n].events = POLLIN; map[n++] = -4;
        }
        pf[n].fd = s_listen; pf[n].events = POLLIN; map[n++] = -2;
        if (s_ev_fd >= 0) {
            pf[n].fd = s_ev_fd; pf[n].events = POLLIN; map[n++] = -3;
        }
        for (int i = 0; i < s_nclients; i++) {
            if (s_clients[i].fd >= 0) {
                pf[n].fd = s_clients[i].fd; pf[n].events = POLLIN; map[n++] = i;
            }
        }
        int r = poll(pf, (nfds_t)n, (int)next_timer_ms());
        if (r < 0 && errno != EINTR)
            break;
        for (int k = 0; r > 0 && k < n; k++) {
            if (!pf[k].revents)
                continue;
            if (map[k] == -1) {
                unsigned char sig;
                while (read(s_sigpipe[0], &sig, 1) == 1) {
                    if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
                        board_stop();
                        free(pf);
                        free(map);
                        return 0;
                    }
                }
                int status;
                pid_t pid;
                while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                    child_exited(pid, status);
            } else if (map[k] == -2) {
                client_accept();
            } else if (map[k] == -4) {
                char junk[64];
                ssize_t got = read(s_owner_fd, junk, sizeof(junk));
                if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
                    logf_("the owner's pipe (--owner-fd) closed: its process is gone");
                    board_stop();
                    free(pf);
                    free(map);
                    return 0;
                }
            } else if (map[k] == -3) {
                if (s_ev_fd >= 0)
                    read_events();
            } else if (s_clients[map[k]].fd >= 0) {
                client_read(&s_clients[map[k]]);
            }
        }
        timers();
    }
    return 1;
bad:
    usage(stderr);
    return 2;
}
