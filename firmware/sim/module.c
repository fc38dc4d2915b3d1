/* fotabench virtual module: the module process. Forked by the board at every power-on;
 * a power cut is a SIGKILL. It boots like the core (URCs, boot loader), loads the app's
 * payload with dlopen and runs its main task on the simulated OpenCPU runtime.
 *
 * Threads: the main task (the app's proc_main_task, with its message loop and task
 * timers), a UART reader, the WDI feeder, the GPT timer, the core's network schedule, and
 * a FOTA worker while an upgrade runs. App callbacks (UART, task timers, FOTA states) run
 * in the main task, as on the real module; only the GPT timer's callback runs beside it,
 * as an interrupt does on the real module. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ql_type.h"
#include "ql_system.h"
#include "ql_uart.h"
#include "ql_timer.h"
#include "ql_wtd.h"
#include "ql_gpio.h"
#include "ril.h"
#include "sim.h"

static int s_ev_fd = -1;
static int s_uart_fd[2] = {-1, -1};
static int64_t s_power_on_ns;
static pthread_mutex_t s_uart_wmu = PTHREAD_MUTEX_INITIALIZER;

int64_t sim_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void sim_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int64_t sim_core_ms(int64_t real_ms)
{
    return g_cfg.fast ? real_ms / 100 : real_ms;
}

static void send_event(int type, int value)
{
    struct sim_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = (uint8_t)type;
    ev.value = (uint8_t)value;
    ev.t_ns = sim_now_ns();
    if (s_ev_fd >= 0) {
        ssize_t r = write(s_ev_fd, &ev, sizeof(ev));
        (void)r;
    }
}

int module_port_fd(int port)
{
    if (port == UART_PORT1)
        return s_uart_fd[0];
    if (port == UART_PORT2)
        return s_uart_fd[1];
    return -1;
}

/* A UART without flow control: bytes nobody can take (buffer full) are lost. */
void module_uart_write(int port, const void *data, size_t len)
{
    int fd = module_port_fd(port);
    const char *p = data;
    if (fd < 0)
        return;
    pthread_mutex_lock(&s_uart_wmu);
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        len -= (size_t)n;
    }
    pthread_mutex_unlock(&s_uart_wmu);
}

void module_debug(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 3)
        n = (int)sizeof(buf) - 3;
    buf[n++] = '\r';
    buf[n++] = '\n';
    module_uart_write(UART_PORT2, buf, (size_t)n);
}

void module_reboot(void)
{
    module_debug("CORE: reboot");
    _exit(MODULE_EXIT_REBOOT);
}

/* ---- message queue and timers of the main task ---------------------------------- */

#define QCAP 256
static pthread_mutex_t s_qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_qcv;
static struct q_item s_q[QCAP];
static unsigned s_qhead, s_qlen;

void rt_post(const struct q_item *item)
{
    pthread_mutex_lock(&s_qmu);
    if (s_qlen < QCAP) {
        s_q[(s_qhead + s_qlen) % QCAP] = *item;
        s_qlen++;
        pthread_cond_signal(&s_qcv);
    }
    pthread_mutex_unlock(&s_qmu);
}

void rt_post_msg(uint32_t message, uint32_t param1, uint32_t param2)
{
    struct q_item it;
    memset(&it, 0, sizeof(it));
    it.kind = Q_MSG;
    it.message = message;
    it.param1 = param1;
    it.param2 = param2;
    rt_post(&it);
}

#define NTIMERS 32
struct sim_timer {
    int used, active, repeat;
    u32 id;
    Callback_Timer_OnTimer cb;
    void *param;
    int64_t interval_ns, deadline_ns;
};
static struct sim_timer s_timers[NTIMERS];

s32 Ql_Timer_Register(u32 timerId, Callback_Timer_OnTimer callback, void *param)
{
    if (!callback)
        return -1;
    pthread_mutex_lock(&s_qmu);
    int free_i = -1;
    for (int i = 0; i < NTIMERS; i++) {
        if (s_timers[i].used && s_timers[i].id == timerId) {
            pthread_mutex_unlock(&s_qmu);
            return -2; /* already registered */
        }
        if (!s_timers[i].used && free_i < 0)
            free_i = i;
    }
    if (free_i < 0) {
        pthread_mutex_unlock(&s_qmu);
        return -4;
    }
    s_timers[free_i] = (struct sim_timer){1, 0, 0, timerId, callback, param, 0, 0};
    pthread_mutex_unlock(&s_qmu);
    return 0;
}

/* The GPT timer: one per app; its callback runs on a thread of its own, like an
 * interrupt, whatever the main task is doing. */
static pthread_mutex_t s_gptmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_gptcv;
static struct sim_timer s_gpt;

s32 Ql_Timer_RegisterFast(u32 timerId, Callback_Timer_OnTimer callback, void *param)
{
    if (!callback)
        return -1;
    pthread_mutex_lock(&s_gptmu);
    s32 ret = 0;
    if (s_gpt.used)
        ret = s_gpt.id == timerId ? -2 : -4; /* already registered / only one GPT timer */
    else
        s_gpt = (struct sim_timer){1, 0, 0, timerId, callback, param, 0, 0};
    pthread_mutex_unlock(&s_gptmu);
    return ret;
}

static void *gpt_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&s_gptmu);
    for (;;) {
        if (!s_gpt.used || !s_gpt.active) {
            pthread_cond_wait(&s_gptcv, &s_gptmu);
            continue;
        }
        int64_t now = sim_now_ns();
        if (now < s_gpt.deadline_ns) {
            struct timespec ts = {(time_t)(s_gpt.deadline_ns / 1000000000LL),
                                  (long)(s_gpt.deadline_ns % 1000000000LL)};
            pthread_cond_timedwait(&s_gptcv, &s_gptmu, &ts);
            continue;
        }
        Callback_Timer_OnTimer cb = s_gpt.cb;
        void *param = s_gpt.param;
        u32 id = s_gpt.id;
        if (s_gpt.repeat) {
            s_gpt.deadline_ns += s_gpt.interval_ns;
            if (s_gpt.deadline_ns < now)
                s_gpt.deadline_ns = now + s_gpt.interval_ns;
        } else {
            s_gpt.active = 0;
        }
        pthread_mutex_unlock(&s_gptmu);
        cb(id, param);
        pthread_mutex_lock(&s_gptmu);
    }
    return NULL;
}

s32 Ql_Timer_Start(u32 timerId, u32 interval, bool autoRepeat)
{
    s32 ret = -1;
    pthread_mutex_lock(&s_gptmu);
    if (s_gpt.used && s_gpt.id == timerId) {
        if (interval < 10 || interval % 10 != 0) {
            pthread_mutex_unlock(&s_gptmu);
            return -1; /* the GPT counts in 10 ms steps */
        }
        s_gpt.active = 1;
        s_gpt.repeat = autoRepeat ? 1 : 0;
        s_gpt.interval_ns = (int64_t)interval * 1000000LL;
        s_gpt.deadline_ns = sim_now_ns() + s_gpt.interval_ns;
        pthread_cond_signal(&s_gptcv);
        pthread_mutex_unlock(&s_gptmu);
        return 0;
    }
    pthread_mutex_unlock(&s_gptmu);
    pthread_mutex_lock(&s_qmu);
    for (int i = 0; i < NTIMERS; i++) {
        if (s_timers[i].used && s_timers[i].id == timerId) {
            s_timers[i].active = 1;
            s_timers[i].repeat = autoRepeat ? 1 : 0;
            s_timers[i].interval_ns = (int64_t)interval * 1000000LL;
            s_timers[i].deadline_ns = sim_now_ns() + s_timers[i].interval_ns;
            ret = 0;
        }
    }
    pthread_cond_signal(&s_qcv);
    pthread_mutex_unlock(&s_qmu);
    return ret;
}

s32 Ql_Timer_Stop(u32 timerId)
{
    s32 ret = -1;
    pthread_mutex_lock(&s_gptmu);
    if (s_gpt.used && s_gpt.id == timerId) {
        s_gpt.active = 0;
        pthread_mutex_unlock(&s_gptmu);
        return 0;
    }
    pthread_mutex_unlock(&s_gptmu);
    pthread_mutex_lock(&s_qmu);
    for (int i = 0; i < NTIMERS; i++) {
        if (s_timers[i].used && s_timers[i].id == timerId) {
            s_timers[i].active = 0;
            ret = 0;
        }
    }
    pthread_mutex_unlock(&s_qmu);
    return ret;
}

/* ---- UART ---------------------------------------------------------------------- */

#define RXCAP 4096
struct uart_port {
    int opened;
    CallBack_UART_Notify cb;
    void *para;
    unsigned char rx[RXCAP];
    unsigned head, len;
    int pending; /* a READY_TO_READ event is queued and not yet drained */
};
static struct uart_port s_ports[2];
static pthread_mutex_t s_rxmu = PTHREAD_MUTEX_INITIALIZER;

static struct uart_port *port_of(int port)
{
    if (port == UART_PORT1)
        return &s_ports[0];
    if (port == UART_PORT2)
        return &s_ports[1];
    return NULL;
}

s32 Ql_UART_Register(Enum_SerialPort port, CallBack_UART_Notify callback, void *customizePara)
{
    struct uart_port *p = port_of(port);
    if (!p)
        return -1;
    p->cb = callback;
    p->para = customizePara;
    return 0;
}

s32 Ql_UART_Open(Enum_SerialPort port, u32 baudrate, Enum_FlowCtrl flowCtrl)
{
    struct uart_port *p = port_of(port);
    (void)baudrate;
    (void)flowCtrl;
    if (!p)
        return -1;
    pthread_mutex_lock(&s_rxmu);
    p->opened = 1;
    pthread_mutex_unlock(&s_rxmu);
    return 0;
}

void Ql_UART_Close(Enum_SerialPort port)
{
    struct uart_port *p = port_of(port);
    if (p) {
        pthread_mutex_lock(&s_rxmu);
        p->opened = 0;
        pthread_mutex_unlock(&s_rxmu);
    }
}

s32 Ql_UART_Write(Enum_SerialPort port, u8 *data, u32 writeLen)
{
    if (!port_of(port) || (!data && writeLen))
        return -1;
    module_uart_write(port, data, writeLen);
    return (s32)writeLen;
}

s32 Ql_UART_Read(Enum_SerialPort port, u8 *data, u32 readLen)
{
    struct uart_port *p = port_of(port);
    if (!p || !data)
        return -1;
    pthread_mutex_lock(&s_rxmu);
    u32 n = 0;
    while (n < readLen && p->len > 0) {
        data[n++] = p->rx[p->head];
        p->head = (p->head + 1) % RXCAP;
        p->len--;
    }
    if (p->len == 0)
        p->pending = 0;
    pthread_mutex_unlock(&s_rxmu);
    return (s32)n;
}

static void *uart_reader(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd pf[2];
        int idx[2], n = 0;
        pthread_mutex_lock(&s_rxmu);
        for (int i = 0; i < 2; i++) {
            if (s_ports[i].opened && s_ports[i].len < RXCAP) {
                pf[n].fd = s_uart_fd[i];
                pf[n].events = POLLIN;
                idx[n++] = i;
            }
        }
        pthread_mutex_unlock(&s_rxmu);
        if (n == 0) {
            sim_sleep_ms(20);
            continue;
        }
        int r = poll(pf, (nfds_t)n, 100);
        if (r <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            unsigned char buf[1024];
            /* take only what the RX buffer holds: the pty keeps the rest (flow control,
             * as RTS/CTS would on UART1) */
            pthread_mutex_lock(&s_rxmu);
            size_t room = RXCAP - s_ports[idx[k]].len;
            pthread_mutex_unlock(&s_rxmu);
            if (room > sizeof(buf))
                room = sizeof(buf);
            ssize_t got = room ? read(pf[k].fd, buf, room) : 0;
            if (got <= 0) {
                if (got == 0 || (errno != EAGAIN && errno != EINTR))
                    sim_sleep_ms(20); /* EIO: nobody on the other side */
                continue;
            }
            struct uart_port *p = &s_ports[idx[k]];
            pthread_mutex_lock(&s_rxmu);
            for (ssize_t j = 0; j < got; j++) {
                p->rx[(p->head + p->len) % RXCAP] = buf[j];
                p->len++;
            }
            int post = !p->pending;
            p->pending = 1;
            pthread_mutex_unlock(&s_rxmu);
            if (post) {
                struct q_item it;
                memset(&it, 0, sizeof(it));
                it.kind = Q_UART;
                it.port = idx[k] == 0 ? UART_PORT1 : UART_PORT2;
                rt_post(&it);
            }
        }
    }
    return NULL;
}

/* ---- message loop ---------------------------------------------------------------- */

s32 Ql_OS_GetMessage(ST_MSG *msg)
{
    if (!msg)
        return -1;
    for (;;) {
        pthread_mutex_lock(&s_qmu);
        /* the earliest due timer runs first */
        struct sim_timer *due = NULL;
        int64_t now = sim_now_ns(), next = INT64_MAX;
        for (int i = 0; i < NTIMERS; i++) {
            struct sim_timer *t = &s_timers[i];
            if (!t->used || !t->active)
                continue;
            if (t->deadline_ns <= now && (!due || t->deadline_ns < due->deadline_ns))
                due = t;
            if (t->deadline_ns < next)
                next = t->deadline_ns;
        }
        if (due) {
            Callback_Timer_OnTimer cb = due->cb;
            void *param = due->param;
            u32 id = due->id;
            if (due->repeat) {
                due->deadline_ns += due->interval_ns;
                if (due->deadline_ns < now) /* the task was blocked: no burst of catch-ups */
                    due->deadline_ns = now + due->interval_ns;
            } else {
                due->active = 0;
            }
            pthread_mutex_unlock(&s_qmu);
            cb(id, param);
            continue;
        }
        if (s_qlen == 0) {
            if (next == INT64_MAX) {
                pthread_cond_wait(&s_qcv, &s_qmu);
            } else {
                struct timespec ts = {(time_t)(next / 1000000000LL), (long)(next % 1000000000LL)};
                pthread_cond_timedwait(&s_qcv, &s_qmu, &ts);
            }
            pthread_mutex_unlock(&s_qmu);
            continue;
        }
        struct q_item it = s_q[s_qhead];
        s_qhead = (s_qhead + 1) % QCAP;
        s_qlen--;
        pthread_mutex_unlock(&s_qmu);
        switch (it.kind) {
        case Q_UART: {
            struct uart_port *p = port_of(it.port);
            if (p && p->cb)
                p->cb((Enum_SerialPort)it.port, EVENT_UART_READY_TO_READ, FALSE, p->para);
            else if (p) {
                pthread_mutex_lock(&s_rxmu);
                p->pending = 0;
                pthread_mutex_unlock(&s_rxmu);
            }
            break;
        }
        case Q_FOTA_CB:
            fota_dispatch(it.state, it.percent);
            break;
        case Q_MSG:
            msg->message = it.message;
            msg->param1 = it.param1;
            msg->param2 = it.param2;
            msg->srcTaskId = 0;
            return 0;
        default:
            break;
        }
    }
}

s32 Ql_OS_SendMessage(s32 destTaskId, u32 msgId, u32 param1, u32 param2)
{
    (void)destTaskId; /* one task: the main task */
    rt_post_msg(msgId, param1, param2);
    return 0;
}

void Ql_Sleep(u32 msec)
{
    sim_sleep_ms(msec);
}

void Ql_Reset(u8 resetType)
{
    (void)resetType;
    module_reboot();
}

u64 Ql_GetMsSincePwrOn(void)
{
    return (u64)((sim_now_ns() - s_power_on_ns) / 1000000LL);
}

/* ---- WDI: the core's and the app's feeding, the logic watchdog ----------------------- */

static pthread_mutex_t s_wdmu = PTHREAD_MUTEX_INITIALIZER;
static int s_wd_core = 1;           /* the core toggles WDI (boot, FOTA copy) */
static int s_wd_app_interval;       /* Ql_WTD_Init: app-phase toggle period, 0 = none */
static int s_wd_logic_ms;           /* Ql_WTD_Start interval, 0 = not started */
static int64_t s_wd_logic_deadline;
static int s_wd_logic_expired;
static int s_wdi_level;
static int s_wdi_pin = PINNAME_END; /* the pin wired to the watchdog chip's WDI */

int wd_pin(void)
{
    return s_wdi_pin;
}

void wd_set_level(int level)
{
    pthread_mutex_lock(&s_wdmu);
    if (level != s_wdi_level) {
        s_wdi_level = level;
        send_event(EV_WDI, level);
    }
    pthread_mutex_unlock(&s_wdmu);
}

void wd_set_core_feeding(int on)
{
    pthread_mutex_lock(&s_wdmu);
    s_wd_core = on;
    pthread_mutex_unlock(&s_wdmu);
}

int wd_app_init(int pin, int interval_ms)
{
    if (interval_ms < 200 || pin < 0 || pin >= PINNAME_END)
        return -1;
    pthread_mutex_lock(&s_wdmu);
    if (pin == s_wdi_pin) {
        s_wd_app_interval = interval_ms;
        s_wd_core = 0; /* the app takes over */
    }
    pthread_mutex_unlock(&s_wdmu);
    return 0;
}

int wd_logic_start(int interval_ms)
{
    if (interval_ms < 400)
        return -1;
    pthread_mutex_lock(&s_wdmu);
    s_wd_logic_ms = interval_ms;
    s_wd_logic_deadline = sim_now_ns() + (int64_t)interval_ms * 1000000LL;
    s_wd_logic_expired = 0;
    pthread_mutex_unlock(&s_wdmu);
    return 1;
}

void wd_logic_feed(int id)
{
    if (id != 1)
        return;
    pthread_mutex_lock(&s_wdmu);
    if (s_wd_logic_ms && !s_wd_logic_expired)
        s_wd_logic_deadline = sim_now_ns() + (int64_t)s_wd_logic_ms * 1000000LL;
    pthread_mutex_unlock(&s_wdmu);
}

void wd_logic_stop(int id)
{
    if (id != 1)
        return;
    pthread_mutex_lock(&s_wdmu);
    s_wd_logic_ms = 0;
    pthread_mutex_unlock(&s_wdmu);
}

static void *wdi_thread(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&s_wdmu);
        int period = s_wd_core ? 100 : (s_wd_app_interval ? s_wd_app_interval : 100);
        int toggle = 0;
        if (s_wd_core) {
            toggle = 1;
        } else if (s_wd_app_interval) {
            if (s_wd_logic_ms && !s_wd_logic_expired && sim_now_ns() > s_wd_logic_deadline) {
                s_wd_logic_expired = 1; /* the app stopped feeding: so does the core */
                module_debug("CORE: logic watchdog expired, WDI no longer toggled");
            }
            toggle = !s_wd_logic_expired;
        }
        if (toggle) {
            s_wdi_level ^= 1;
            send_event(EV_WDI, s_wdi_level);
        }
        pthread_mutex_unlock(&s_wdmu);
        sim_sleep_ms(period);
    }
    return NULL;
}

s32 Ql_WTD_Init(s32 resetMode, Enum_PinName wtdPin, u32 interval)
{
    (void)resetMode;
    return wd_app_init((int)wtdPin, (int)interval) == 0 ? 0 : -1;
}

s32 Ql_WTD_Start(u32 interval)
{
    return wd_logic_start((int)interval);
}

void Ql_WTD_Feed(s32 wtdID)
{
    wd_logic_feed(wtdID);
}

void Ql_WTD_Stop(s32 wtdID)
{
    wd_logic_stop(wtdID);
}

/* ---- GPIO: only the WDI wire leaves the module ---------------------------------- */

static int s_gpio_level[PINNAME_END];

s32 Ql_GPIO_Init(Enum_PinName pinName, Enum_PinDirection dir, Enum_PinLevel level,
                 Enum_PinPullSel pullSel)
{
    (void)dir;
    (void)pullSel;
    if ((unsigned)pinName >= PINNAME_END)
        return -1;
    return Ql_GPIO_SetLevel(pinName, level);
}

s32 Ql_GPIO_SetLevel(Enum_PinName pinName, Enum_PinLevel level)
{
    if ((unsigned)pinName >= PINNAME_END)
        return -1;
    s_gpio_level[pinName] = level ? 1 : 0;
    if ((int)pinName == s_wdi_pin)
        wd_set_level(level ? 1 : 0);
    return 0;
}

s32 Ql_GPIO_GetLevel(Enum_PinName pinName)
{
    if ((unsigned)pinName >= PINNAME_END)
        return -1;
    return s_gpio_level[pinName];
}

/* ---- boot ----------------------------------------------------------------------- */

static void path_in_state(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", g_cfg.state, name);
}

static void fsync_dir(void)
{
    int fd = open(g_cfg.state, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Reads a whole file; NULL if it cannot. */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)size + 1);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        *len = (size_t)size;
    return buf;
}

/* The boot loader. An update is flagged by Ql_FOTA_Update (file "fota.flag"). The
 * spare area ("fota.bin") is verified again with Ql_FOTA_Finish's check (the module's
 * own, modside.c; whether a real core re-checks is unknown: a core that copied an
 * unverified area would brick on a flash error, so this one does not); the app image
 * after the 80-byte header, its length taken from its GFH, is copied to "app.new" while the core feeds WDI, synced,
 * renamed over "app.bin", and only then is the flag cleared. A power cut at any point
 * leaves either the old app with the flag still set (the copy runs again at the next
 * boot) or the new app: never a half-written app area. A bad package clears the flag
 * and the old app boots. */
static void boot_loader(void)
{
    char flag[PATH_MAX + 16], spare[PATH_MAX + 16], tmp[PATH_MAX + 16], app[PATH_MAX + 16];
    path_in_state(flag, sizeof(flag), "fota.flag");
    path_in_state(spare, sizeof(spare), "fota.bin");
    path_in_state(tmp, sizeof(tmp), "app.new");
    path_in_state(app, sizeof(app), "app.bin");
    if (access(flag, F_OK) != 0)
        return;
    module_debug("BOOT: update flagged, verifying the FOTA area");
    size_t plen = 0;
    unsigned char *pkg = read_file(spare, &plen);
    char why[200] = "cannot read the FOTA area";
    uint64_t len = 0;
    int good = pkg && sim_package_check(pkg, plen, g_cfg.model, g_cfg.package_check, why,
                                        sizeof(why)) == 0;
    if (good) {
        /* the app's own length, from its GFH (§6) */
        const unsigned char *gfh = pkg + PKG_HEADER_SIZE;
        if (plen < PKG_HEADER_SIZE + GFH_SIZE + 16 || memcmp(gfh, "MMM", 3) != 0) {
            snprintf(why, sizeof(why), "no app image (GFH) after the header");
            good = 0;
        } else {
            len = (uint64_t)gfh[0x20] | (uint64_t)gfh[0x21] << 8 | (uint64_t)gfh[0x22] << 16 |
                  (uint64_t)gfh[0x23] << 24;
            if (len < GFH_SIZE || len > plen - PKG_HEADER_SIZE - 16) {
                snprintf(why, sizeof(why), "app length %llu does not fit the package",
                         (unsigned long long)len);
                good = 0;
            }
        }
    }
    free(pkg);
    if (!good) {
        module_debug("BOOT: FOTA package refused (%s), keeping the old app", why);
        unlink(flag);
        fsync_dir();
        return;
    }
    FILE *in = fopen(spare, "rb");
    FILE *out = fopen(tmp, "wb");
    int ok = in && out && fseek(in, (long)PKG_HEADER_SIZE, SEEK_SET) == 0;
    module_debug("BOOT: copying %llu bytes to the app area", (unsigned long long)len);
    uint64_t done = 0;
    int64_t t0 = sim_now_ns();
    unsigned char buf[512]; /* flash pages */
    int last_tenth = -1;
    while (ok && done < len) {
        size_t n = (size_t)(len - done < sizeof(buf) ? len - done : sizeof(buf));
        if (fread(buf, 1, n, in) != n || fwrite(buf, 1, n, out) != n) {
            ok = 0;
            break;
        }
        done += n;
        int tenth = (int)(done * 10 / len);
        if (tenth != last_tenth) {
            module_debug("BOOT: copy %d%%", tenth * 10);
            last_tenth = tenth;
        }
        if (g_cfg.flash_rate > 0) { /* pace the copy like flash writes */
            int64_t due = t0 + (int64_t)((double)done / g_cfg.flash_rate * 1e9);
            int64_t now = sim_now_ns();
            if (due > now)
                sim_sleep_ms((due - now) / 1000000LL);
        }
    }
    if (out) {
        if (fflush(out) != 0 || fsync(fileno(out)) != 0)
            ok = 0;
        fclose(out);
    }
    if (in)
        fclose(in);
    if (!ok || rename(tmp, app) != 0) {
        module_debug("BOOT: copy failed (%s), keeping the old app", strerror(errno));
        unlink(tmp);
        return; /* flag kept: the next boot tries again */
    }
    fsync_dir();
    unlink(flag);
    fsync_dir();
    module_debug("BOOT: new app in place");
}

typedef void (*main_task_fn)(s32);

/* Load the app area: check its GFH header against this model (load address, region),
 * write the payload (a host shared object) to a private file and dlopen it. An app that
 * fails is not started: the module runs its core only (RDY, URCs, no app). */
static main_task_fn load_app(void)
{
    char app[PATH_MAX + 16], so[PATH_MAX + 32];
    path_in_state(app, sizeof(app), "app.bin");
    FILE *f = fopen(app, "rb");
    if (!f) {
        module_debug("BOOT: no app in the app area");
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *img = size > 0 ? malloc((size_t)size) : NULL;
    if (!img || fread(img, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(img);
        module_debug("BOOT: cannot read the app area");
        return NULL;
    }
    fclose(f);
    char why[200];
    if (sim_gfh_check(img, (size_t)size, g_cfg.model, why, sizeof(why)) != 0) {
        free(img);
        module_debug("BOOT: app image refused: %s", why);
        return NULL;
    }
    snprintf(so, sizeof(so), "%s/.app-%d.so", g_cfg.state, (int)getpid());
    int fd = open(so, O_WRONLY | O_CREAT | O_TRUNC, 0700);
    size_t plen = (size_t)size - GFH_SIZE;
    int ok = fd >= 0 && write(fd, img + GFH_SIZE, plen) == (ssize_t)plen;
    if (fd >= 0)
        close(fd);
    free(img);
    void *h = ok ? dlopen(so, RTLD_NOW | RTLD_LOCAL) : NULL;
    unlink(so);
    if (!h) {
        module_debug("BOOT: app payload not loadable: %s", ok ? dlerror() : "write failed");
        return NULL;
    }
    const ST_ExtWatchdogCfg *wcfg = dlsym(h, "wtdCfg");
    s_wdi_pin = wcfg ? (int)wcfg->pinWtd1 : PINNAME_END;
    main_task_fn fn = (main_task_fn)(uintptr_t)dlsym(h, "proc_main_task");
    if (!fn)
        module_debug("BOOT: the app has no proc_main_task");
    return fn;
}

static void on_sigterm(int sig)
{
    (void)sig;
    /* PWRKEY power-off: network logout, then the core says goodbye. */
    struct timespec ts = {0, 0};
    int64_t ms = sim_core_ms(2000);
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
    static const char bye[] = "NORMAL POWER DOWN\r\n";
    if (s_uart_fd[0] >= 0) {
        ssize_t r = write(s_uart_fd[0], bye, sizeof(bye) - 1);
        (void)r;
    }
    _exit(MODULE_EXIT_POWERDOWN);
}

void module_main(int uart1_fd, int uart2_fd, int ev_fd)
{
    s_uart_fd[0] = uart1_fd;
    s_uart_fd[1] = uart2_fd;
    s_ev_fd = ev_fd;
    s_power_on_ns = sim_now_ns();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s_qcv, &ca);
    pthread_cond_init(&s_gptcv, &ca);
    signal(SIGTERM, on_sigterm);
    signal(SIGPIPE, SIG_IGN);

    send_event(EV_STATUS, 1);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_create(&th, &attr, wdi_thread, NULL);
    pthread_create(&th, &attr, gpt_thread, NULL);
    module_debug("CORE: power on (fotabench virtual %s, %s)", g_cfg.model->name,
                 g_cfg.model->chip);
    brom_power_up(uart1_fd, g_cfg.pwrkey_low_at_power_up); /* flashing over UART (brom.c) */

    sim_sleep_ms(sim_core_ms(1000)); /* core start-up until RDY: not published, guessed */
    boot_loader();
    module_uart_write(UART_PORT1, "RDY\r\n", 5);
    main_task_fn app = load_app();
    if (app && s_wdi_pin == PINNAME_END)
        wd_set_core_feeding(0); /* no WDI pin in ST_ExtWatchdogCfg: the core does not feed */
    pthread_create(&th, &attr, uart_reader, NULL);
    rt_post_msg(MSG_ID_RIL_READY, 0, 0);
    net_start();
    if (app) {
        module_debug("CORE: starting the app");
        app(0);
        module_debug("CORE: the app's main task returned");
    }
    for (;;)
        pause();
}
