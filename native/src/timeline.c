#include "fotabench/timeline.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "deadline.h"
#include "fotabench/clock.h"

/* One allocation per event: the header, then source, kind and data as C strings. The
 * block never moves, so a visitor's pointers stay valid while the index grows. */
typedef struct event_block {
    fb_event ev;
    char text[];
} event_block;

struct fb_timeline {
    pthread_mutex_t lock;
    pthread_cond_t grown;
    event_block **events;
    uint64_t count;
    uint64_t cap;
};

fb_timeline *fb_timeline_new(fb_error *err)
{
    fb_timeline *tl = calloc(1, sizeof *tl);
    if (!tl) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory allocating a timeline");
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&tl->lock, NULL);
    pthread_cond_init(&tl->grown, &ca);
    pthread_condattr_destroy(&ca);
    return tl;
}

void fb_timeline_free(fb_timeline *tl)
{
    if (!tl)
        return;
    for (uint64_t i = 0; i < tl->count; i++)
        free(tl->events[i]);
    free(tl->events);
    pthread_cond_destroy(&tl->grown);
    pthread_mutex_destroy(&tl->lock);
    free(tl);
}

static int name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= FB_TIMELINE_NAME_MAX;
}

fb_status fb_timeline_add(fb_timeline *tl, int64_t t_ns, const char *source, const char *kind,
                          const char *data, uint64_t *seq_out, fb_error *err)
{
    if (!tl)
        return fb_error_set(err, FB_ERR_ARG, "no timeline given");
    if (!name_ok(source) || !name_ok(kind))
        return fb_error_set(err, FB_ERR_ARG,
                            "timeline source and kind must be 1 to %d bytes (got '%.80s', "
                            "'%.80s')",
                            FB_TIMELINE_NAME_MAX, source ? source : "(null)",
                            kind ? kind : "(null)");
    if (!data || !*data)
        data = "{}";
    if (t_ns == 0)
        t_ns = fb_now_ns();
    size_t ls = strlen(source) + 1, lk = strlen(kind) + 1, ld = strlen(data) + 1;
    event_block *b = malloc(sizeof *b + ls + lk + ld);
    if (!b)
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory adding a timeline event");
    memcpy(b->text, source, ls);
    memcpy(b->text + ls, kind, lk);
    memcpy(b->text + ls + lk, data, ld);
    b->ev.t_ns = t_ns;
    b->ev.source = b->text;
    b->ev.kind = b->text + ls;
    b->ev.data = b->text + ls + lk;

    pthread_mutex_lock(&tl->lock);
    if (tl->count == tl->cap) {
        uint64_t cap = tl->cap ? tl->cap * 2 : 1024;
        event_block **grown = realloc(tl->events, (size_t)cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&tl->lock);
            free(b);
            return fb_error_set(err, FB_ERR_NOMEM, "out of memory growing the timeline to %" PRIu64
                                " events", cap);
        }
        tl->events = grown;
        tl->cap = cap;
    }
    b->ev.seq = tl->count;
    tl->events[tl->count++] = b;
    pthread_cond_broadcast(&tl->grown);
    pthread_mutex_unlock(&tl->lock);
    if (seq_out)
        *seq_out = b->ev.seq;
    return FB_OK;
}

fb_status fb_timeline_addf(fb_timeline *tl, int64_t t_ns, const char *source, const char *kind,
                           fb_error *err, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return fb_error_set(err, FB_ERR_ARG, "bad timeline data format '%.60s'", fmt);
    if ((size_t)n < sizeof small)
        return fb_timeline_add(tl, t_ns, source, kind, small, NULL, err);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory formatting a timeline event");
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    fb_status st = fb_timeline_add(tl, t_ns, source, kind, big, NULL, err);
    free(big);
    return st;
}

uint64_t fb_timeline_count(fb_timeline *tl)
{
    pthread_mutex_lock(&tl->lock);
    uint64_t n = tl->count;
    pthread_mutex_unlock(&tl->lock);
    return n;
}

uint64_t fb_timeline_wait(fb_timeline *tl, uint64_t count, int64_t deadline_ns)
{
    pthread_mutex_lock(&tl->lock);
    while (tl->count <= count)
        if (fb_cond_wait_until(&tl->grown, &tl->lock, deadline_ns) == ETIMEDOUT)
            break;
    uint64_t n = tl->count;
    pthread_mutex_unlock(&tl->lock);
    return n;
}

int fb_timeline_visit(fb_timeline *tl, uint64_t from_seq, fb_timeline_visit_fn fn, void *ctx)
{
    int r = 0;
    pthread_mutex_lock(&tl->lock);
    for (uint64_t i = from_seq; i < tl->count && r == 0; i++)
        r = fn(ctx, &tl->events[i]->ev);
    pthread_mutex_unlock(&tl->lock);
    return r;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x3Fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

size_t fb_json_string(char *out, size_t cap, const char *s, size_t n, int *lossy)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    int lost = 0;
    if (cap < 3) {
        if (cap)
            out[0] = '\0';
        if (lossy)
            *lossy = n > 0;
        return 0;
    }
    out[o++] = '"';
    size_t i = 0;
    while (i < n) {
        char tmp[8];
        size_t tn = 0, adv = 1;
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            tmp[tn++] = '\\';
            tmp[tn++] = (char)c;
        } else if (c == '\n') {
            tmp[tn++] = '\\';
            tmp[tn++] = 'n';
        } else if (c == '\r') {
            tmp[tn++] = '\\';
            tmp[tn++] = 'r';
        } else if (c == '\t') {
            tmp[tn++] = '\\';
            tmp[tn++] = 't';
        } else if (c < 0x20 || c == 0x7F) {
            memcpy(tmp, "\\u00", 4);
            tmp[4] = hex[c >> 4];
            tmp[5] = hex[c & 15];
            tn = 6;
        } else if (c < 0x80) {
            tmp[tn++] = (char)c;
        } else {
            size_t len = utf8_len(p + i, n - i);
            if (len) {
                memcpy(tmp, p + i, len);
                tn = len;
                adv = len;
            } else {
                memcpy(tmp, "\xEF\xBF\xBD", 3); /* U+FFFD */
                tn = 3;
                lost = 1;
            }
        }
        if (o + tn + 2 > cap) { /* room for the closing quote and NUL */
            lost = 1;
            break;
        }
        memcpy(out + o, tmp, tn);
        o += tn;
        i += adv;
    }
    out[o++] = '"';
    out[o] = '\0';
    if (lossy)
        *lossy = lost;
    return o;
}

/* Output buffered in 64 KiB pieces: three small write()s per event would dominate
 * the export of a long run. */
typedef struct out_buf {
    fb_atomic_file *f;
    size_t len;
    char data[64 * 1024];
} out_buf;

static fb_status out_put(out_buf *b, const char *s, size_t n, fb_error *err)
{
    if (b->len + n > sizeof b->data) {
        fb_status st = fb_atomic_write(b->f, b->data, b->len, err);
        b->len = 0;
        if (st != FB_OK)
            return st;
        if (n > sizeof b->data)
            return fb_atomic_write(b->f, s, n, err);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return FB_OK;
}

static fb_status write_event(out_buf *b, const fb_event *e, fb_error *err)
{
    char src[FB_TIMELINE_NAME_MAX * 6 + 3], kind[FB_TIMELINE_NAME_MAX * 6 + 3], head[512];
    fb_json_string(src, sizeof src, e->source, strlen(e->source), NULL);
    fb_json_string(kind, sizeof kind, e->kind, strlen(e->kind), NULL);
    int n = snprintf(head, sizeof head,
                     "{\"seq\":%" PRIu64 ",\"t_ns\":%" PRId64 ",\"source\":%s,\"kind\":%s,"
                     "\"data\":",
                     e->seq, e->t_ns, src, kind);
    fb_status st = out_put(b, head, (size_t)n, err);
    if (st == FB_OK)
        st = out_put(b, e->data, strlen(e->data), err);
    if (st == FB_OK)
        st = out_put(b, "}\n", 2, err);
    return st;
}

fb_status fb_timeline_write_jsonl(fb_timeline *tl, const char *path, uint64_t from_seq,
                                  fb_error *err)
{
    /* Copy the event pointers under the lock, write without it: events added
     * meanwhile are not in this export, and writers are never held up by the disk. */
    pthread_mutex_lock(&tl->lock);
    uint64_t end = tl->count;
    uint64_t n = end > from_seq ? end - from_seq : 0;
    event_block **copy = n ? malloc((size_t)n * sizeof *copy) : NULL;
    if (n && copy)
        memcpy(copy, tl->events + from_seq, (size_t)n * sizeof *copy);
    pthread_mutex_unlock(&tl->lock);
    if (n && !copy)
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory exporting %" PRIu64 " events", n);

    fb_atomic_file f;
    out_buf *b = malloc(sizeof *b);
    fb_status st = b ? fb_atomic_open(&f, path, NULL, err)
                     : fb_error_set(err, FB_ERR_NOMEM, "out of memory exporting events");
    if (st == FB_OK) {
        b->f = &f;
        b->len = 0;
        for (uint64_t i = 0; st == FB_OK && i < n; i++)
            st = write_event(b, &copy[i]->ev, err);
        if (st == FB_OK && b->len)
            st = fb_atomic_write(&f, b->data, b->len, err);
        if (st == FB_OK)
            st = fb_atomic_commit(&f, err);
        else
            fb_atomic_abort(&f);
    }
    free(b);
    free(copy);
    return st;
}
