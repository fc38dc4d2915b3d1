/* The qemu lane's in-guest helpers: see util.h. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void sleep_until_ns(int64_t t)
{
    struct timespec ts = { .tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

void sleep_ns(int64_t d) { sleep_until_ns(now_ns() + d); }

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

bool result(const char *name, bool ok, const char *fmt, ...)
{
    char detail[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    for (char *p = detail; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    pthread_mutex_lock(&out_lock);
    printf("RESULT %s %s %s\n", name, ok ? "PASS" : "FAIL", detail);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    return ok;
}

void pending(const char *name, const char *why)
{
    pthread_mutex_lock(&out_lock);
    printf("RESULT %s PENDING %s\n", name, why);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

void measure(const char *name, double value, const char *unit)
{
    pthread_mutex_lock(&out_lock);
    printf("MEASURE %s %.3f %s\n", name, value, unit);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

const char *hil_chip(void)
{
    const char *c = getenv("HIL_CHIP");
    return c ? c : "/dev/gpiochip0";
}

const char *hil_sim(void)
{
    const char *s = getenv("HIL_SIM");
    return s ? s : "/sys/devices/platform/gpio-sim.0/gpiochip0";
}

static int sim_path(char *buf, size_t n, unsigned line, const char *attr)
{
    return snprintf(buf, n, "%s/sim_gpio%u/%s", hil_sim(), line, attr) < (int)n ? 0 : -1;
}

int sim_pull(unsigned line, int up)
{
    char path[256];
    if (sim_path(path, sizeof path, line, "pull"))
        return -1;
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    const char *v = up ? "pull-up" : "pull-down";
    ssize_t w = write(fd, v, strlen(v));
    close(fd);
    return w == (ssize_t)strlen(v) ? 0 : -1;
}

int sim_value(unsigned line)
{
    char path[256], buf[8] = { 0 };
    if (sim_path(path, sizeof path, line, "value"))
        return -1;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r < 1)
        return -1;
    return buf[0] == '1' ? 1 : buf[0] == '0' ? 0 : -1;
}

/* --- toggler ---------------------------------------------------------------------- */

static void *toggler_main(void *arg)
{
    struct toggler *t = arg;
    int total = t->count_before + t->count_after;
    if (t->rt_priority > 0) {
        struct sched_param sp = { .sched_priority = t->rt_priority };
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0)
            t->errors++;
    }
    int64_t next = now_ns() + t->start_delay_ns;
    for (int i = 0; i < total; i++) {
        if (i == t->count_before && i > 0)
            next += t->stall_ns - t->period_ns;
        sleep_until_ns(next);
        t->level = !t->level;
        /* Stamped before the write: the kernel stamps the edge inside it (the
         * simulator's irq_work runs before the write returns to user space), and a
         * stamp after it would include any preemption of this thread. */
        t->t_ns[i] = now_ns();
        if (sim_pull(t->line, t->level))
            t->errors++;
        /* The edge happened in [start, end]: a loaded TCG host can preempt this
         * thread inside the write for tens of ms, and the judge allows for it. */
        t->t_post_ns[i] = now_ns();
        t->n = i + 1;
        next += t->period_ns;
    }
    return NULL;
}

int toggler_start(struct toggler *t, int initial_level)
{
    int total = t->count_before + t->count_after;
    /* One allocation for both stamp arrays, so the callers' free(t.t_ns) frees both. */
    t->t_ns = calloc(2 * (size_t)(total > 0 ? total : 1), sizeof *t->t_ns);
    t->t_post_ns = t->t_ns ? t->t_ns + (total > 0 ? total : 1) : NULL;
    t->n = 0;
    t->errors = 0;
    t->level = initial_level;
    if (!t->t_ns)
        return -1;
    return pthread_create(&t->thread, NULL, toggler_main, t) ? -1 : 0;
}

void toggler_join(struct toggler *t) { pthread_join(t->thread, NULL); }

int64_t toggler_stall_gap(const struct toggler *t)
{
    if (t->count_before < 1 || t->n <= t->count_before)
        return -1;
    return t->t_ns[t->count_before] - t->t_ns[t->count_before - 1];
}

int64_t toggler_max_regular_gap(const struct toggler *t)
{
    int64_t max = 0;
    for (int i = 1; i < t->n; i++) {
        if (i == t->count_before)
            continue;
        int64_t g = t->t_ns[i] - t->t_ns[i - 1];
        if (g > max)
            max = g;
    }
    return max;
}

/* --- tracefs ---------------------------------------------------------------------- */

#define TRACING "/sys/kernel/tracing"

static int write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, s, strlen(s));
    close(fd);
    return w == (ssize_t)strlen(s) ? 0 : -1;
}

int trace_start(void)
{
    if (write_file(TRACING "/tracing_on", "0") || write_file(TRACING "/trace_clock", "mono") ||
        write_file(TRACING "/buffer_size_kb", "256") || write_file(TRACING "/trace", "") ||
        write_file(TRACING "/events/gpio/gpio_value/enable", "1") ||
        write_file(TRACING "/tracing_on", "1"))
        return -1;
    return 0;
}

int trace_collect(struct trace_ev *ev, int max)
{
    write_file(TRACING "/tracing_on", "0");
    write_file(TRACING "/events/gpio/gpio_value/enable", "0");
    FILE *f = fopen(TRACING "/trace", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        /* "  hiltest-52  [000] .....  12.345678: gpio_value: 512 set 1" */
        char *p = strstr(line, ": gpio_value: ");
        if (!p || line[0] == '#')
            continue;
        char *q = p;
        while (q > line && q[-1] != ' ')
            q--;
        long sec = 0, usec = 0;
        char dir[8];
        int gpio, value;
        if (sscanf(q, "%ld.%ld", &sec, &usec) != 2)
            continue;
        if (sscanf(p + strlen(": gpio_value: "), "%d %7s %d", &gpio, dir, &value) != 3)
            continue;
        if (strcmp(dir, "set") != 0)
            continue;
        ev[n].t_ns = (int64_t)sec * 1000000000LL + (int64_t)usec * 1000LL;
        ev[n].gpio = gpio;
        ev[n].value = value;
        n++;
    }
    fclose(f);
    return n;
}

void hex16(const unsigned char *data, size_t n, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    out[16] = 0;
}
