/* The qemu lane's in-guest test program: shared helpers.
 *
 * Output contract (parsed by tests/hil-vm/lane.py and tests/test_hil_vm.py), one
 * line each on the console:
 *   RESULT <name> PASS|FAIL|PENDING <detail>
 *   MEASURE <name> <value> <unit>
 *   HOSTPEER READY <nonce>      (ttyS1 is open: the host may speak now)
 *
 * Backends, chosen per concern by lane.py: gpio_direct.c / serial_direct.c test
 * libgpiod / libserialport directly (they validated the lane); gpio_core.c /
 * serial_core.c run the same checks through the C core's gpio, watchdog and serial
 * API, which is what the lane is for. Everything that is not the code under test lives here: the
 * simulator's controls (sysfs), the toggler that feeds WDI, the kernel's trace of
 * GPIO output values, statistics.
 */
#ifndef HIL_UTIL_H
#define HIL_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Line offsets on the gpio-sim chip; names set by guest/init.sh. */
enum { L_PWRKEY = 0, L_RESET = 1, L_VBAT = 2, L_WDI = 3, L_STATUS = 4, L_LOSS = 5,
       L_RELAY = 6, L_SPARE = 7, N_LINES = 8 };

#define MS 1000000LL

int64_t now_ns(void);                 /* CLOCK_MONOTONIC, the project's one clock */
void sleep_until_ns(int64_t t);       /* absolute CLOCK_MONOTONIC */
void sleep_ns(int64_t d);

/* Report lines; result() returns ok so checks can `return result(...)`. */
bool result(const char *name, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pending(const char *name, const char *why);
void measure(const char *name, double value, const char *unit);

const char *hil_chip(void);           /* /dev/gpiochipN */
const char *hil_sim(void);            /* /sys/devices/platform/gpio-sim.N/gpiochipN */

/* gpio-sim's controls: drive an input by its pull, read an output's value. */
int sim_pull(unsigned line, int up);  /* 0 on success */
int sim_value(unsigned line);         /* 0/1, -1 on error */

/* A thread that toggles an input through the simulator's pull on a schedule
 * (absolute deadlines: a late toggle does not shift the next ones), recording
 * when each write started: `count_before` toggles every `period_ns`, then a
 * stall of `stall_ns`, then `count_after` toggles. */
struct toggler {
    unsigned line;
    int64_t period_ns;
    int count_before;
    int64_t stall_ns;
    int count_after;
    int64_t start_delay_ns;
    int rt_priority;       /* > 0: SCHED_FIFO, so readers of normal priority starve */
    /* filled by the thread */
    int level;             /* level after the last toggle */
    int n;                 /* toggles done */
    int64_t *t_ns;         /* [count_before + count_after] write-start times */
    int64_t *t_post_ns;    /* write-end times: the second half of t_ns's allocation */
    int errors;
    pthread_t thread;
};
int toggler_start(struct toggler *t, int initial_level);
void toggler_join(struct toggler *t);
/* The gap the toggler produced around the stall (first toggle after it minus
 * the last before it), and the largest gap among regular feeds. */
int64_t toggler_stall_gap(const struct toggler *t);
int64_t toggler_max_regular_gap(const struct toggler *t);

/* Kernel trace of GPIO values set (tracepoint gpio/gpio_value, trace_clock mono,
 * so timestamps are CLOCK_MONOTONIC with microsecond resolution). */
struct trace_ev { int64_t t_ns; int gpio; int value; };
int trace_start(void);                /* 0, or -1 if tracefs is unusable */
int trace_collect(struct trace_ev *ev, int max); /* stops tracing; count or -1 */

/* An edge seen on a watched input, kernel timestamp (CLOCK_MONOTONIC). */
struct edge {
    int64_t t_ns;
    bool rising;
    unsigned long line_seqno;
    unsigned offset;
};

/* Backend-provided: watch one input's edges on a thread of its own until stopped
 * (the whole-path check watches WDI this way while the core drives an upgrade). */
struct edge_watch;
struct edge_watch *edge_watch_start(unsigned line);
/* Edges seen so far. */
int edge_watch_count(struct edge_watch *w);
/* Stops, hands over the edges (malloc'd, caller frees) and their count. */
int edge_watch_stop(struct edge_watch *w, struct edge **edges);

/* Serial helpers. */
#define HOST_UART "/dev/ttyS1"   /* qemu socket chardev: the host's end */
#define LOOP_UART "/dev/ttyS2"   /* no peer: tested in the UART's internal loopback */
#define RELAY_UART "/dev/ttyS3"  /* whole path: the host relays the virtual module's WDI */
#define ABSENT_UART "/dev/ttyS4" /* exists in the kernel, no hardware behind it */
void hex16(const unsigned char *data, size_t n, char out[17]); /* sha256 prefix */

/* The checks every backend implements (run in this order by hiltest.c). */
void check_serial_list(void);
void check_serial_loopback(void);
void check_serial_host(void);
void check_gpio_hold(void);
void check_gpio_pulse(void);
void check_gpio_edges(void);
void check_watchdog(int period_ms, int stall_ms);
void check_lost_events(void);
void check_whole_path(void);   /* wholepath.c: only when the host set it up */
/* Which code the checks ran: "core" or the library used directly. */
const char *gpio_backend(void);
const char *serial_backend(void);

#endif
