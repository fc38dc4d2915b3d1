/* fb_serial: the backend-independent part of a port: the reader thread, the ring,
 * the log, the tail kept for diagnostics, loss and reopen. */
#define _GNU_SOURCE /* pipe2, fopen "e" */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "fotabench/clock.h"
#include "serial_backend.h"

#define READ_CHUNK 65536
#define DEFAULT_RING (1u << 20)
#define RX_EVENT_TEXT_MAX 2048 /* bytes of a raw chunk shown on the timeline */

struct fb_serial {
    char *path, *name, *log_path;
    fb_serial_config cfg; /* name/log_path/timeline point at the fields here */
    const serial_ops *ops;
    serial_dev dev;
    fb_timeline *tl;

    pthread_t reader;
    int reader_started;
    int wake[2]; /* a byte here stops the reader */

    pthread_mutex_t lock; /* everything below up to the log */
    pthread_cond_t cond;  /* ring grew, port lost */
    uint8_t *ring;
    size_t ring_cap, ring_head, ring_len;
    uint64_t pending_drop, dropped_total;
    uint8_t tail[FB_SERIAL_TAIL_MAX];
    size_t tail_end, tail_len;
    int open;
    char lost_why[256];
    uint64_t rx_bytes, tx_bytes;
    int64_t last_rx_ns;

    pthread_mutex_t log_lock;
    FILE *log;

    pthread_mutex_t consumer_lock; /* held while the consumer runs */
    fb_serial_rx_fn rx_fn;
    fb_serial_lost_fn lost_fn;
    void *consumer_ctx;

    pthread_mutex_t write_lock;
};

void fb_serial_config_init(fb_serial_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->baud = 115200;
    cfg->data_bits = 8;
    cfg->parity = FB_PARITY_NONE;
    cfg->stop_bits = 1;
    cfg->flow = FB_FLOW_NONE;
    cfg->backend = FB_SERIAL_AUTO;
}

static char *dup_str(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static fb_status check_config(const fb_serial_config *c, fb_error *err)
{
    if (c->baud <= 0)
        return fb_error_set(err, FB_ERR_ARG, "baud must be positive, got %d", c->baud);
    if (c->data_bits < 5 || c->data_bits > 8)
        return fb_error_set(err, FB_ERR_ARG, "data bits must be 5..8, got %d", c->data_bits);
    if (c->stop_bits != 1 && c->stop_bits != 2)
        return fb_error_set(err, FB_ERR_ARG, "stop bits must be 1 or 2, got %d", c->stop_bits);
    if (c->parity < FB_PARITY_NONE || c->parity > FB_PARITY_EVEN)
        return fb_error_set(err, FB_ERR_ARG, "unknown parity %d", (int)c->parity);
    if (c->flow < FB_FLOW_NONE || c->flow > FB_FLOW_XONXOFF)
        return fb_error_set(err, FB_ERR_ARG, "unknown flow control %d", (int)c->flow);
    if (c->ring_size && c->ring_size < 64)
        return fb_error_set(err, FB_ERR_ARG, "ring_size must be at least 64 bytes, got %zu",
                            c->ring_size);
    return FB_OK;
}

/* --- log ------------------------------------------------------------------------ */

/* One line per chunk: "<t_ns> <|> <bytes>", bytes printable as they are, the rest
 * escaped (\r \n \t \\ \xNN), so a log is greppable and exact. */
static void log_chunk(fb_serial *p, char dir, const uint8_t *d, size_t n, int64_t t)
{
    if (!p->log)
        return;
    pthread_mutex_lock(&p->log_lock);
    fprintf(p->log, "%" PRId64 " %c ", t, dir);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = d[i];
        if (c == '\\')
            fputs("\\\\", p->log);
        else if (c == '\r')
            fputs("\\r", p->log);
        else if (c == '\n')
            fputs("\\n", p->log);
        else if (c == '\t')
            fputs("\\t", p->log);
        else if (c >= 0x20 && c < 0x7F)
            fputc(c, p->log);
        else
            fprintf(p->log, "\\x%02x", c);
    }
    fputc('\n', p->log);
    fflush(p->log);
    pthread_mutex_unlock(&p->log_lock);
}

static void log_note(fb_serial *p, const char *what)
{
    if (!p->log)
        return;
    pthread_mutex_lock(&p->log_lock);
    fprintf(p->log, "%" PRId64 " # %s\n", fb_now_ns(), what);
    fflush(p->log);
    pthread_mutex_unlock(&p->log_lock);
}

static void chunk_event(fb_serial *p, const char *kind, const uint8_t *d, size_t n, int64_t t)
{
    if (!p->tl)
        return;
    char text[RX_EVENT_TEXT_MAX * 6 + 3];
    int lossy = 0;
    size_t shown = n < RX_EVENT_TEXT_MAX ? n : RX_EVENT_TEXT_MAX;
    fb_json_string(text, sizeof text, (const char *)d, shown, &lossy);
    fb_timeline_addf(p->tl, t, p->name, kind, NULL, "{\"n\":%zu,\"text\":%s%s}", n, text,
                     shown < n ? ",\"cut\":true" : "");
}

/* --- reader ----------------------------------------------------------------------- */

static void tail_put(fb_serial *p, const uint8_t *d, size_t n)
{
    if (n > FB_SERIAL_TAIL_MAX) {
        d += n - FB_SERIAL_TAIL_MAX;
        n = FB_SERIAL_TAIL_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        p->tail[p->tail_end] = d[i];
        p->tail_end = (p->tail_end + 1) % FB_SERIAL_TAIL_MAX;
    }
    p->tail_len = p->tail_len + n > FB_SERIAL_TAIL_MAX ? FB_SERIAL_TAIL_MAX : p->tail_len + n;
}

/* Called with p->lock held. Keeps the newest bytes: on overflow the oldest go, and
 * how many is reported by the next read. */
static void ring_put(fb_serial *p, const uint8_t *d, size_t n)
{
    if (n > p->ring_cap) {
        p->pending_drop += n - p->ring_cap;
        p->dropped_total += n - p->ring_cap;
        d += n - p->ring_cap;
        n = p->ring_cap;
    }
    size_t free_space = p->ring_cap - p->ring_len;
    if (n > free_space) {
        size_t drop = n - free_space;
        p->ring_head = (p->ring_head + drop) % p->ring_cap;
        p->ring_len -= drop;
        p->pending_drop += drop;
        p->dropped_total += drop;
    }
    size_t tail = (p->ring_head + p->ring_len) % p->ring_cap;
    size_t first = n < p->ring_cap - tail ? n : p->ring_cap - tail;
    memcpy(p->ring + tail, d, first);
    memcpy(p->ring, d + first, n - first);
    p->ring_len += n;
}

static void deliver(fb_serial *p, const uint8_t *d, size_t n)
{
    int64_t t = fb_now_ns();
    log_chunk(p, '<', d, n, t);
    pthread_mutex_lock(&p->consumer_lock);
    pthread_mutex_lock(&p->lock);
    tail_put(p, d, n);
    p->rx_bytes += n;
    p->last_rx_ns = t;
    int to_ring = p->rx_fn == NULL;
    uint64_t drop_before = p->pending_drop;
    if (to_ring)
        ring_put(p, d, n);
    uint64_t dropped = p->pending_drop - drop_before;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (to_ring) {
        chunk_event(p, "rx", d, n, t);
        if (dropped && p->tl)
            fb_timeline_addf(p->tl, t, p->name, "overflow", NULL,
                             "{\"dropped\":%" PRIu64 ",\"ring\":%zu}", dropped, p->ring_cap);
    } else {
        p->rx_fn(p->consumer_ctx, d, n, t);
    }
    pthread_mutex_unlock(&p->consumer_lock);
}

static void mark_lost(fb_serial *p, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s", why);
    pthread_mutex_lock(&p->lock);
    p->open = 0;
    snprintf(p->lost_why, sizeof p->lost_why, "%s", msg);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    log_note(p, msg);
    if (p->tl) {
        char text[600];
        fb_json_string(text, sizeof text, msg, strlen(msg), NULL);
        fb_timeline_addf(p->tl, 0, p->name, "port.lost", NULL, "{\"why\":%s}", text);
    }
    pthread_mutex_lock(&p->consumer_lock);
    if (p->lost_fn)
        p->lost_fn(p->consumer_ctx, msg);
    pthread_mutex_unlock(&p->consumer_lock);
}

static void *reader_main(void *arg)
{
    fb_serial *p = arg;
    uint8_t *buf = malloc(READ_CHUNK);
    if (!buf) {
        mark_lost(p, "out of memory for the port's read buffer");
        return NULL;
    }
    for (;;) {
        struct pollfd fds[2] = {{p->dev.fd, POLLIN, 0}, {p->wake[0], POLLIN, 0}};
        int r = poll(fds, 2, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            mark_lost(p, "poll failed on the port");
            break;
        }
        if (fds[1].revents)
            break;
        if (fds[0].revents & POLLIN) {
            ssize_t n = p->ops->read(&p->dev, buf, READ_CHUNK);
            if (n > 0) {
                deliver(p, buf, (size_t)n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            char why[200];
            snprintf(why, sizeof why, "port %s disappeared (%s): module powered off, board "
                     "exited or USB unplugged? reopen() when it is back",
                     p->path, n == 0 ? "end of file" : strerror(errno));
            mark_lost(p, why);
            break;
        }
        if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            char why[200];
            snprintf(why, sizeof why, "port %s disappeared (hang-up): module powered off, "
                     "board exited or USB unplugged? reopen() when it is back", p->path);
            mark_lost(p, why);
            break;
        }
    }
    free(buf);
    return NULL;
}

static fb_status start_reader(fb_serial *p, fb_error *err)
{
    int e = pthread_create(&p->reader, NULL, reader_main, p);
    if (e != 0)
        return fb_error_set(err, FB_ERR_IO, "cannot start the reader thread of %s: %s", p->path,
                            strerror(e));
    p->reader_started = 1;
    return FB_OK;
}

static void stop_reader(fb_serial *p)
{
    if (!p->reader_started)
        return;
    char b = 1;
    while (write(p->wake[1], &b, 1) < 0 && errno == EINTR) {
    }
    pthread_join(p->reader, NULL);
    p->reader_started = 0;
    while (read(p->wake[0], &b, 1) > 0) {
    }
}

/* --- open/close --------------------------------------------------------------------- */

static const serial_ops *pick_ops(const char *path, fb_serial_backend b)
{
    if (b == FB_SERIAL_TERMIOS)
        return &fb_serial_termios_ops;
    if (b == FB_SERIAL_LIBSERIALPORT)
        return &fb_serial_sp_ops;
    return fb_serial_is_pty(path) ? &fb_serial_termios_ops : &fb_serial_sp_ops;
}

fb_serial *fb_serial_open(const char *path, const fb_serial_config *cfg_in, fb_error *err)
{
    fb_serial_config defaults;
    if (!cfg_in) {
        fb_serial_config_init(&defaults);
        cfg_in = &defaults;
    }
    if (!path || !*path) {
        fb_error_set(err, FB_ERR_ARG, "no serial port path given");
        return NULL;
    }
    if (check_config(cfg_in, err) != FB_OK)
        return NULL;
    fb_serial *p = calloc(1, sizeof *p);
    if (!p) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory opening %s", path);
        return NULL;
    }
    p->wake[0] = p->wake[1] = -1;
    p->dev.fd = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->log_lock, NULL);
    pthread_mutex_init(&p->consumer_lock, NULL);
    pthread_mutex_init(&p->write_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);

    p->cfg = *cfg_in;
    const char *base = strrchr(path, '/');
    p->path = dup_str(path);
    p->name = dup_str(cfg_in->name && *cfg_in->name ? cfg_in->name : base ? base + 1 : path);
    p->log_path = dup_str(cfg_in->log_path);
    p->ring_cap = cfg_in->ring_size ? cfg_in->ring_size : DEFAULT_RING;
    p->ring = malloc(p->ring_cap);
    p->tl = cfg_in->timeline;
    p->cfg.name = p->name;
    p->cfg.log_path = p->log_path;
    if (!p->path || !p->name || (cfg_in->log_path && !p->log_path) || !p->ring) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory opening %s", path);
        fb_serial_close(p);
        return NULL;
    }
    if (strlen(p->name) > FB_TIMELINE_NAME_MAX) {
        fb_error_set(err, FB_ERR_ARG, "port name '%.80s' is longer than %d bytes", p->name,
                     FB_TIMELINE_NAME_MAX);
        fb_serial_close(p);
        return NULL;
    }
    if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        fb_error_set(err, FB_ERR_IO, "cannot create a pipe for %s: %s", path, strerror(errno));
        fb_serial_close(p);
        return NULL;
    }
    if (p->log_path) {
        p->log = fopen(p->log_path, "ae");
        if (!p->log) {
            fb_error_set(err, FB_ERR_IO, "cannot open the log %s for %s: %s", p->log_path, path,
                         strerror(errno));
            fb_serial_close(p);
            return NULL;
        }
    }
    p->ops = pick_ops(path, cfg_in->backend);
    if (p->ops->open(&p->dev, path, &p->cfg, err) != FB_OK) {
        fb_serial_close(p);
        return NULL;
    }
    p->dev.ops = p->ops;
    p->open = 1;
    log_note(p, "open");
    if (start_reader(p, err) != FB_OK) {
        fb_serial_close(p);
        return NULL;
    }
    if (p->tl) {
        char jpath[1200];
        fb_json_string(jpath, sizeof jpath, path, strlen(path), NULL);
        fb_timeline_addf(p->tl, 0, p->name, "port.open", NULL,
                         "{\"path\":%s,\"backend\":\"%s\",\"baud\":%d}", jpath, p->ops->name,
                         p->cfg.baud);
    }
    return p;
}

void fb_serial_close(fb_serial *p)
{
    if (!p)
        return;
    stop_reader(p);
    if (p->ops && p->dev.fd >= 0)
        p->ops->close(&p->dev);
    if (p->tl && p->open)
        fb_timeline_add(p->tl, 0, p->name, "port.close", NULL, NULL, NULL);
    if (p->log) {
        log_note(p, "close");
        fclose(p->log);
    }
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->log_lock);
    pthread_mutex_destroy(&p->consumer_lock);
    pthread_mutex_destroy(&p->write_lock);
    free(p->ring);
    free(p->path);
    free(p->name);
    free(p->log_path);
    free(p);
}

fb_status fb_serial_reopen(fb_serial *p, fb_error *err)
{
    pthread_mutex_lock(&p->write_lock);
    stop_reader(p);
    if (p->dev.fd >= 0)
        p->ops->close(&p->dev);
    pthread_mutex_lock(&p->lock);
    p->open = 0;
    pthread_mutex_unlock(&p->lock);
    fb_status st = p->ops->open(&p->dev, p->path, &p->cfg, err);
    if (st == FB_OK) {
        p->dev.ops = p->ops;
        pthread_mutex_lock(&p->lock);
        p->open = 1;
        p->lost_why[0] = '\0';
        pthread_mutex_unlock(&p->lock);
        st = start_reader(p, err);
        log_note(p, "reopen");
        if (p->tl)
            fb_timeline_add(p->tl, 0, p->name, "port.reopen", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&p->write_lock);
    return st;
}

/* --- I/O ------------------------------------------------------------------------------ */

static fb_status closed_error(fb_serial *p, fb_error *err)
{
    /* p->lock held */
    return fb_error_set(err, FB_ERR_CLOSED, "%s",
                        p->lost_why[0] ? p->lost_why : "the port is closed");
}

fb_status fb_serial_write(fb_serial *p, const void *data, size_t n, int64_t deadline_ns,
                          fb_error *err)
{
    size_t sent = 0;
    fb_status st = fb_serial_write_some(p, data, n, deadline_ns, &sent, err);
    if (st == FB_OK && sent < n)
        st = fb_error_set(err, FB_ERR_TIMEOUT,
                          "writing to %s: %zu of %zu bytes not sent in time (flow control "
                          "holding us? the peer not reading?)",
                          p->path, n - sent, n);
    return st;
}

fb_status fb_serial_write_some(fb_serial *p, const void *data, size_t n, int64_t deadline_ns,
                               size_t *sent_out, fb_error *err)
{
    const uint8_t *d = data;
    size_t left = n;
    fb_status st = FB_OK;
    pthread_mutex_lock(&p->write_lock);
    pthread_mutex_lock(&p->lock);
    int open = p->open;
    if (!open)
        st = closed_error(p, err);
    pthread_mutex_unlock(&p->lock);
    while (st == FB_OK && left) {
        ssize_t w = p->ops->write(&p->dev, d, left);
        if (w > 0) {
            d += w;
            left -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            int64_t now = fb_now_ns();
            if (now >= deadline_ns)
                break; /* the caller says whether that is an error */
            /* At most 100 ms per poll: a loss is seen by the reader, not here. */
            int64_t wait_ms = (deadline_ns - now) / FB_NS_PER_MS + 1;
            struct pollfd pfd = {p->dev.fd, POLLOUT, 0};
            poll(&pfd, 1, wait_ms > 100 ? 100 : (int)wait_ms);
            pthread_mutex_lock(&p->lock);
            if (!p->open)
                st = closed_error(p, err);
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        st = fb_error_set(err, FB_ERR_CLOSED,
                          "writing to %s failed (%s): module powered off, board exited or USB "
                          "unplugged? reopen() when it is back",
                          p->path, w < 0 ? strerror(errno) : "nothing written");
    }
    size_t sent = n - left;
    *sent_out = sent;
    if (sent) {
        int64_t t = fb_now_ns();
        log_chunk(p, '>', data, sent, t);
        pthread_mutex_lock(&p->lock);
        p->tx_bytes += sent;
        int raw = p->rx_fn == NULL;
        pthread_mutex_unlock(&p->lock);
        if (raw)
            chunk_event(p, "tx", data, sent, t);
    }
    pthread_mutex_unlock(&p->write_lock);
    return st;
}

fb_status fb_serial_read(fb_serial *p, void *buf, size_t cap, size_t *got, int64_t deadline_ns,
                         fb_error *err)
{
    *got = 0;
    fb_status st = FB_OK;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->pending_drop) {
            st = fb_error_set(err, FB_ERR_LOST,
                              "%" PRIu64 " bytes received on %s were dropped: nobody read them "
                              "before the %zu-byte buffer filled (read more often or use a "
                              "larger ring_size)%s%s",
                              p->pending_drop, p->name, p->ring_cap,
                              p->log_path ? "; every byte is in " : "",
                              p->log_path ? p->log_path : "");
            p->pending_drop = 0;
            break;
        }
        if (p->rx_fn) {
            st = fb_error_set(err, FB_ERR_BUSY,
                              "the byte stream of %s goes to its AT engine (a Modem is "
                              "attached): use Modem.expect() or Modem.next_line(), or close "
                              "the Modem first",
                              p->name);
            break;
        }
        if (p->ring_len && cap) {
            size_t n = cap < p->ring_len ? cap : p->ring_len;
            size_t first = n < p->ring_cap - p->ring_head ? n : p->ring_cap - p->ring_head;
            memcpy(buf, p->ring + p->ring_head, first);
            memcpy((uint8_t *)buf + first, p->ring, n - first);
            p->ring_head = (p->ring_head + n) % p->ring_cap;
            p->ring_len -= n;
            *got = n;
            break;
        }
        if (!p->open) {
            st = closed_error(p, err);
            break;
        }
        if (fb_cond_wait_until(&p->cond, &p->lock, deadline_ns) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&p->lock);
    return st;
}

size_t fb_serial_tail(fb_serial *p, void *buf, size_t cap)
{
    pthread_mutex_lock(&p->lock);
    size_t n = cap < p->tail_len ? cap : p->tail_len;
    size_t start = (p->tail_end + FB_SERIAL_TAIL_MAX - n) % FB_SERIAL_TAIL_MAX;
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)buf)[i] = p->tail[(start + i) % FB_SERIAL_TAIL_MAX];
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* Control calls share the write lock so they never race a reopen. */
#define CONTROL(p, err, call)                                                           \
    do {                                                                                \
        pthread_mutex_lock(&(p)->write_lock);                                           \
        pthread_mutex_lock(&(p)->lock);                                                 \
        fb_status st_ = (p)->open ? FB_OK : closed_error((p), (err));                   \
        pthread_mutex_unlock(&(p)->lock);                                               \
        if (st_ == FB_OK)                                                               \
            st_ = (call);                                                               \
        pthread_mutex_unlock(&(p)->write_lock);                                         \
        return st_;                                                                     \
    } while (0)

fb_status fb_serial_set_dtr(fb_serial *p, int on, fb_error *err)
{
    CONTROL(p, err, p->ops->set_dtr(&p->dev, on, err));
}

fb_status fb_serial_set_rts(fb_serial *p, int on, fb_error *err)
{
    CONTROL(p, err, p->ops->set_rts(&p->dev, on, err));
}

fb_status fb_serial_get_signals(fb_serial *p, fb_serial_signals *out, fb_error *err)
{
    CONTROL(p, err, p->ops->signals(&p->dev, out, err));
}

fb_status fb_serial_send_break(fb_serial *p, int ms, fb_error *err)
{
    if (ms <= 0 || ms > 10000)
        return fb_error_set(err, FB_ERR_ARG, "break duration must be 1..10000 ms, got %d", ms);
    CONTROL(p, err, p->ops->send_break(&p->dev, ms, err));
}

fb_status fb_serial_drain(fb_serial *p, fb_error *err)
{
    int done = 0;
    size_t waiting = 0;
    fb_status st;
    do
        st = fb_serial_drain_some(p, FB_DEADLINE_NEVER, &done, &waiting, err);
    while (st == FB_OK && !done);
    return st;
}

/* One look at the queue (write lock held, so no write or reopen runs beside it); when
 * it is empty, the final wait for the chip's FIFO. */
static fb_status drain_step(fb_serial *p, int *done, size_t *waiting, fb_error *err)
{
    pthread_mutex_lock(&p->write_lock);
    pthread_mutex_lock(&p->lock);
    fb_status st = p->open ? FB_OK : closed_error(p, err);
    pthread_mutex_unlock(&p->lock);
    if (st == FB_OK)
        st = p->ops->output_waiting(&p->dev, waiting, err);
    if (st == FB_OK && *waiting == 0 && (st = p->ops->drain(&p->dev, err)) == FB_OK)
        *done = 1;
    pthread_mutex_unlock(&p->write_lock);
    return st;
}

fb_status fb_serial_drain_some(fb_serial *p, int64_t deadline_ns, int *done, size_t *waiting,
                               fb_error *err)
{
    *done = 0;
    *waiting = 0;
    for (;;) {
        fb_status st = drain_step(p, done, waiting, err);
        int64_t now = fb_now_ns();
        if (st != FB_OK || *done || now >= deadline_ns)
            return st;
        /* Poll again when the queue could be empty, every 20 ms at most (a queue held by
         * flow control does not move) and not past the deadline. */
        int64_t nap = 20 * FB_NS_PER_MS;
        if (deadline_ns - now < nap)
            nap = deadline_ns - now;
        struct timespec ts = {(time_t)(nap / 1000000000LL), (long)(nap % 1000000000LL)};
        nanosleep(&ts, NULL);
    }
}

fb_status fb_serial_flush(fb_serial *p, int which, fb_error *err)
{
    if (which < 1 || which > 3)
        return fb_error_set(err, FB_ERR_ARG, "flush: which must be input (1), output (2) or both "
                                             "(3), got %d", which);
    if (which & FB_SERIAL_FLUSH_INPUT) {
        pthread_mutex_lock(&p->lock);
        p->ring_len = 0;
        p->ring_head = 0;
        pthread_mutex_unlock(&p->lock);
    }
    CONTROL(p, err, p->ops->flush(&p->dev, which, err));
}

fb_status fb_serial_configure(fb_serial *p, const fb_serial_config *cfg, fb_error *err)
{
    fb_status st = check_config(cfg, err);
    if (st != FB_OK)
        return st;
    pthread_mutex_lock(&p->write_lock);
    fb_serial_config next = p->cfg;
    next.baud = cfg->baud;
    next.data_bits = cfg->data_bits;
    next.parity = cfg->parity;
    next.stop_bits = cfg->stop_bits;
    next.flow = cfg->flow;
    pthread_mutex_lock(&p->lock);
    st = p->open ? FB_OK : closed_error(p, err);
    pthread_mutex_unlock(&p->lock);
    if (st == FB_OK)
        st = p->ops->configure(&p->dev, &next, err);
    if (st == FB_OK)
        p->cfg = next;
    pthread_mutex_unlock(&p->write_lock);
    return st;
}

void fb_serial_get_stats(fb_serial *p, fb_serial_stats *out)
{
    pthread_mutex_lock(&p->lock);
    out->rx_bytes = p->rx_bytes;
    out->tx_bytes = p->tx_bytes;
    out->dropped_bytes = p->dropped_total;
    out->last_rx_ns = p->last_rx_ns;
    out->open = p->open;
    pthread_mutex_unlock(&p->lock);
}

size_t fb_serial_ring_capacity(const fb_serial *p) { return p->ring_cap; }
const char *fb_serial_path(const fb_serial *p) { return p->path; }
const char *fb_serial_name(const fb_serial *p) { return p->name; }
const char *fb_serial_log_path(const fb_serial *p) { return p->log_path; }
const char *fb_serial_backend_name(const fb_serial *p) { return p->ops->name; }

void fb_serial_set_consumer(fb_serial *p, fb_serial_rx_fn rx, fb_serial_lost_fn lost, void *ctx)
{
    pthread_mutex_lock(&p->consumer_lock);
    pthread_mutex_lock(&p->lock);
    p->rx_fn = rx;
    p->lost_fn = lost;
    p->consumer_ctx = ctx;
    pthread_cond_broadcast(&p->cond); /* a waiting read ends with FB_ERR_BUSY */
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->consumer_lock);
}
