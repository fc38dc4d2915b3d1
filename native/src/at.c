/* The AT engine: line sorting on the reader thread, commands and their responses,
 * URCs, the unsolicited queue. See fotabench/at.h. */
#include "fotabench/at.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "fotabench/clock.h"
#include "fotabench/dispatch.h"
#include "linesplit.h"

static const char *const default_urcs[] = {
    "+FBSTATE:", "+FBREADY:", "+FBUPG:", "RDY", "+CFUN:", "+CPIN:", "Call Ready", "SMS Ready",
    "+CREG:", "+CGREG:", "NORMAL POWER DOWN", "UNDER-VOLTAGE", NULL,
};

typedef struct queued_line {
    char *text;
    size_t n;
    int64_t t;
    int urc;
} queued_line;

struct fb_at {
    fb_serial *port;
    fb_timeline *tl;
    char source[FB_TIMELINE_NAME_MAX + 1];

    pthread_mutex_t lock;
    pthread_cond_t cond;
    fb_linesplit split;
    char **urcs;
    size_t n_urcs;
    uint64_t rx_count;
    int64_t last_rx;
    int lost;
    char lost_why[256];

    /* the pending command */
    int active, done, saw_line;
    char *cmd;
    char *terminator;
    char own_prefix[40]; /* "+CREG:" of AT+CREG?: lines with it are the command's own */
    fb_at_response resp;
    size_t resp_cap;

    /* unsolicited lines */
    queued_line *queue;
    size_t q_cap, q_head, q_len;
    uint64_t q_dropped;

    pthread_mutex_t cb_lock; /* held while the URC callback runs */
    fb_at_urc_fn urc_fn;
    void *urc_ctx;
    /* URC callbacks run on this thread, never on the port's reader */
    fb_dispatch *urc_dispatch;
    uint64_t urc_dropped;
};

/* What is posted to the dispatcher for one URC. */
typedef struct urc_item {
    int64_t t;
    size_t n;
    char text[];
} urc_item;

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void fb_at_response_free(fb_at_response *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        free(r->lines[i]);
    free(r->lines);
    free(r->lens);
    free(r->final);
    memset(r, 0, sizeof *r);
}

static int starts(const char *line, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(line, prefix, k) == 0;
}

static int equals(const char *line, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(line, word, n) == 0;
}

static long error_number(const char *line, size_t n, size_t skip)
{
    long v = 0;
    size_t i = skip;
    while (i < n && line[i] == ' ')
        i++;
    if (i == n)
        return -1;
    for (; i < n; i++) {
        if (line[i] < '0' || line[i] > '9' || v > 100000000L)
            return -1;
        v = v * 10 + (line[i] - '0');
    }
    return v;
}

int fb_at_final(const char *line, size_t n, const char *terminator, fb_at_result *result,
                long *code)
{
    *code = -1;
    if (terminator && *terminator && starts(line, n, terminator)) {
        *result = FB_AT_CUSTOM;
        return 1;
    }
    if (equals(line, n, "OK")) {
        *result = FB_AT_OK;
        return 1;
    }
    if (equals(line, n, "ERROR")) {
        *result = FB_AT_ERROR;
        return 1;
    }
    if (starts(line, n, "+CME ERROR:")) {
        *result = FB_AT_CME_ERROR;
        *code = error_number(line, n, 11);
        return 1;
    }
    if (starts(line, n, "+CMS ERROR:")) {
        *result = FB_AT_CMS_ERROR;
        *code = error_number(line, n, 11);
        return 1;
    }
    if (equals(line, n, "NO CARRIER") || equals(line, n, "BUSY") ||
        equals(line, n, "NO ANSWER") || equals(line, n, "NO DIALTONE")) {
        *result = FB_AT_OTHER;
        return 1;
    }
    return 0;
}

const char *fb_at_result_name(fb_at_result r)
{
    switch (r) {
    case FB_AT_OK: return "OK";
    case FB_AT_ERROR: return "ERROR";
    case FB_AT_CME_ERROR: return "CME_ERROR";
    case FB_AT_CMS_ERROR: return "CMS_ERROR";
    case FB_AT_CUSTOM: return "CUSTOM";
    case FB_AT_OTHER: return "OTHER";
    }
    return "?";
}

static void event_text(fb_at *at, int64_t t, const char *kind, const char *line, size_t n)
{
    if (!at->tl)
        return;
    char text[FB_AT_LINE_MAX_DEFAULT * 3 + 3];
    size_t shown = n < FB_AT_LINE_MAX_DEFAULT / 2 ? n : FB_AT_LINE_MAX_DEFAULT / 2;
    fb_json_string(text, sizeof text, line, shown, NULL);
    fb_timeline_addf(at->tl, t, at->source, kind, NULL, "{\"text\":%s%s}", text,
                     shown < n ? ",\"cut\":true" : "");
}

static int is_urc(fb_at *at, const char *line, size_t n)
{
    for (size_t i = 0; i < at->n_urcs; i++)
        if (starts(line, n, at->urcs[i]))
            return 1;
    return 0;
}

/* lock held */
static void enqueue(fb_at *at, const char *line, size_t n, int64_t t, int urc)
{
    char *copy = dup_n(line, n);
    if (!copy) {
        at->q_dropped++;
        return;
    }
    if (at->q_len == at->q_cap) { /* drop the oldest, count it */
        free(at->queue[at->q_head].text);
        at->q_head = (at->q_head + 1) % at->q_cap;
        at->q_len--;
        at->q_dropped++;
    }
    queued_line *q = &at->queue[(at->q_head + at->q_len) % at->q_cap];
    q->text = copy;
    q->n = n;
    q->t = t;
    q->urc = urc;
    at->q_len++;
}

/* lock held: hand the URC to the callback thread */
static void post_callback(fb_at *at, const char *line, size_t n, int64_t t)
{
    if (!at->urc_fn || !at->urc_dispatch)
        return;
    char buf[sizeof(urc_item) + FB_AT_LINE_MAX_DEFAULT];
    urc_item *it = (urc_item *)buf;
    size_t k = n < FB_AT_LINE_MAX_DEFAULT ? n : FB_AT_LINE_MAX_DEFAULT;
    it->t = t;
    it->n = k;
    memcpy(it->text, line, k);
    if (fb_dispatch_post(at->urc_dispatch, it, sizeof *it + k) != 0) {
        at->urc_dropped++;
        if (at->tl)
            fb_timeline_addf(at->tl, t, at->source, "urc.dropped", NULL,
                             "{\"dropped\":%" PRIu64 "}", at->urc_dropped);
    }
}

static void run_callback(void *ctx, const void *data, size_t n)
{
    fb_at *at = ctx;
    const urc_item *it = data;
    (void)n;
    pthread_mutex_lock(&at->cb_lock);
    if (at->urc_fn)
        at->urc_fn(at->urc_ctx, it->text, it->n, it->t);
    pthread_mutex_unlock(&at->cb_lock);
}

static void unsolicited(fb_at *at, const char *line, size_t n, int64_t t)
{
    int urc = is_urc(at, line, n);
    enqueue(at, line, n, t, urc);
    event_text(at, t, urc ? "urc" : "line", line, n);
    if (urc)
        post_callback(at, line, n, t);
}

/* lock held */
static void response_add(fb_at *at, const char *line, size_t n)
{
    fb_at_response *r = &at->resp;
    if (r->count == at->resp_cap) {
        size_t cap = at->resp_cap ? at->resp_cap * 2 : 8;
        char **l = realloc(r->lines, cap * sizeof *l);
        if (!l)
            return;
        r->lines = l;
        size_t *s = realloc(r->lens, cap * sizeof *s);
        if (!s)
            return;
        r->lens = s;
        at->resp_cap = cap;
    }
    char *copy = dup_n(line, n);
    if (!copy)
        return;
    r->lines[r->count] = copy;
    r->lens[r->count++] = n;
}

static void result_event(fb_at *at)
{
    if (!at->tl)
        return;
    fb_at_response *r = &at->resp;
    char text[1024];
    fb_json_string(text, sizeof text, r->final, r->final_len, NULL);
    /* lines: a JSON array, cut at ~8 KiB */
    size_t cap = 8192, o = 0;
    char *lines = malloc(cap + 1024);
    if (!lines)
        return;
    lines[o++] = '[';
    for (size_t i = 0; i < r->count && o < cap; i++) {
        if (i)
            lines[o++] = ',';
        o += fb_json_string(lines + o, cap + 1000 - o, r->lines[i],
                            r->lens[i] < 512 ? r->lens[i] : 512, NULL);
    }
    lines[o++] = ']';
    lines[o] = '\0';
    fb_timeline_addf(at->tl, r->t_done, at->source, "at.result", NULL,
                     "{\"text\":%s,\"result\":\"%s\",\"code\":%ld,\"lines\":%s,\"echo\":%s,"
                     "\"ms\":%.3f}",
                     text, fb_at_result_name(r->result), r->error_code, lines,
                     r->echoed ? "true" : "false", (double)(r->t_done - r->t_sent) / 1e6);
    free(lines);
}

typedef struct feed_ctx {
    fb_at *at;
    int64_t t;
} feed_ctx;

static void on_line(void *ctx, const char *line, size_t n, unsigned flags)
{
    feed_ctx *f = ctx;
    fb_at *at = f->at;
    (void)flags;
    if (at->active && !at->done) {
        if (!at->saw_line && !(flags & FB_LINE_CONT) && equals(line, n, at->cmd)) {
            at->saw_line = 1;
            at->resp.echoed = 1;
            return;
        }
        at->saw_line = 1;
        if (is_urc(at, line, n) && !(at->own_prefix[0] && starts(line, n, at->own_prefix))) {
            unsolicited(at, line, n, f->t);
            return;
        }
        fb_at_result res;
        long code;
        if (!(flags & FB_LINE_CONT) && fb_at_final(line, n, at->terminator, &res, &code)) {
            at->resp.result = res;
            at->resp.error_code = code;
            at->resp.final = dup_n(line, n);
            at->resp.final_len = at->resp.final ? n : 0;
            at->resp.t_done = f->t;
            at->done = 1;
            result_event(at);
            pthread_cond_broadcast(&at->cond);
            return;
        }
        response_add(at, line, n);
        return;
    }
    unsolicited(at, line, n, f->t);
}

void fb_at_feed(fb_at *at, const uint8_t *data, size_t n, int64_t t_ns)
{
    feed_ctx f = {at, t_ns};
    pthread_mutex_lock(&at->lock);
    at->rx_count += n;
    at->last_rx = t_ns;
    fb_linesplit_feed(&at->split, (const char *)data, n, on_line, &f);
    /* A custom terminator may be a prompt without a line end ("> "). */
    if (at->active && !at->done && at->terminator && at->split.len &&
        starts(at->split.buf, at->split.len, at->terminator)) {
        at->resp.result = FB_AT_CUSTOM;
        at->resp.error_code = -1;
        at->resp.final = dup_n(at->split.buf, at->split.len);
        at->resp.final_len = at->resp.final ? at->split.len : 0;
        at->resp.t_done = t_ns;
        at->done = 1;
        fb_linesplit_reset(&at->split);
        result_event(at);
    }
    pthread_cond_broadcast(&at->cond);
    pthread_mutex_unlock(&at->lock);
}

static void on_rx(void *ctx, const uint8_t *data, size_t n, int64_t t)
{
    fb_at_feed(ctx, data, n, t);
}

static void on_lost(void *ctx, const char *why)
{
    fb_at *at = ctx;
    pthread_mutex_lock(&at->lock);
    at->lost = 1;
    snprintf(at->lost_why, sizeof at->lost_why, "%s", why);
    pthread_cond_broadcast(&at->cond);
    pthread_mutex_unlock(&at->lock);
}

fb_at *fb_at_new(fb_serial *port, fb_timeline *timeline, const char *source, size_t line_max,
                 size_t queue_max, fb_error *err)
{
    if (!source)
        source = port ? fb_serial_name(port) : "at";
    if (strlen(source) > FB_TIMELINE_NAME_MAX || !*source) {
        fb_error_set(err, FB_ERR_ARG, "AT engine source name must be 1 to %d bytes",
                     FB_TIMELINE_NAME_MAX);
        return NULL;
    }
    fb_at *at = calloc(1, sizeof *at);
    if (!at) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory for an AT engine");
        return NULL;
    }
    at->port = port;
    at->tl = timeline;
    snprintf(at->source, sizeof at->source, "%s", source);
    at->q_cap = queue_max ? queue_max : FB_AT_QUEUE_DEFAULT;
    at->queue = calloc(at->q_cap, sizeof *at->queue);
    size_t n_def = 0;
    while (default_urcs[n_def])
        n_def++;
    at->urcs = calloc(n_def, sizeof *at->urcs);
    fb_status st = at->queue && at->urcs ? FB_OK
                                         : fb_error_set(err, FB_ERR_NOMEM, "out of memory for "
                                                                           "an AT engine");
    for (size_t i = 0; st == FB_OK && i < n_def; i++) {
        at->urcs[i] = dup_n(default_urcs[i], strlen(default_urcs[i]));
        if (!at->urcs[i])
            st = fb_error_set(err, FB_ERR_NOMEM, "out of memory for an AT engine");
        else
            at->n_urcs++;
    }
    if (st == FB_OK)
        st = fb_linesplit_init(&at->split, line_max ? line_max : FB_AT_LINE_MAX_DEFAULT, err);
    if (st != FB_OK) {
        for (size_t i = 0; i < at->n_urcs; i++)
            free(at->urcs[i]);
        free(at->urcs);
        free(at->queue);
        free(at);
        return NULL;
    }
    pthread_mutex_init(&at->lock, NULL);
    pthread_mutex_init(&at->cb_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&at->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (port) {
        fb_serial_stats s;
        fb_serial_get_stats(port, &s);
        at->lost = !s.open;
        fb_serial_set_consumer(port, on_rx, on_lost, at);
    }
    return at;
}

void fb_at_free(fb_at *at)
{
    if (!at)
        return;
    if (at->port)
        fb_serial_set_consumer(at->port, NULL, NULL, NULL);
    fb_dispatch_free(at->urc_dispatch); /* waits for a callback in progress; NULL is fine */
    fb_linesplit_free(&at->split);
    for (size_t i = 0; i < at->n_urcs; i++)
        free(at->urcs[i]);
    free(at->urcs);
    for (size_t i = 0; i < at->q_len; i++)
        free(at->queue[(at->q_head + i) % at->q_cap].text);
    free(at->queue);
    fb_at_response_free(&at->resp);
    free(at->cmd);
    free(at->terminator);
    pthread_cond_destroy(&at->cond);
    pthread_mutex_destroy(&at->lock);
    pthread_mutex_destroy(&at->cb_lock);
    free(at);
}

fb_status fb_at_add_urc(fb_at *at, const char *prefix, fb_error *err)
{
    if (!prefix || !*prefix || strlen(prefix) > 64)
        return fb_error_set(err, FB_ERR_ARG, "URC prefix must be 1 to 64 bytes");
    char *copy = dup_n(prefix, strlen(prefix));
    pthread_mutex_lock(&at->lock);
    char **g = copy ? realloc(at->urcs, (at->n_urcs + 1) * sizeof *g) : NULL;
    if (g) {
        at->urcs = g;
        at->urcs[at->n_urcs++] = copy;
    }
    pthread_mutex_unlock(&at->lock);
    if (!g) {
        free(copy);
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory adding a URC prefix");
    }
    return FB_OK;
}

fb_status fb_at_set_urc_callback(fb_at *at, fb_at_urc_fn fn, void *ctx, fb_error *err)
{
    /* The callback thread starts with the first callback (engines without one, e.g.
     * the fuzzer's, have no extra thread). */
    if (fn && !at->urc_dispatch) {
        fb_dispatch *d = fb_dispatch_new(run_callback, at, 0, err);
        if (!d)
            return err ? err->code : FB_ERR_IO;
        pthread_mutex_lock(&at->lock);
        at->urc_dispatch = d;
        pthread_mutex_unlock(&at->lock);
    }
    pthread_mutex_lock(&at->cb_lock);
    pthread_mutex_lock(&at->lock);
    at->urc_fn = fn;
    at->urc_ctx = ctx;
    pthread_mutex_unlock(&at->lock);
    pthread_mutex_unlock(&at->cb_lock);
    return FB_OK;
}

/* "AT+CREG?" -> "+CREG:"; "AT+FBUPG=..." -> "+FBUPG:"; none for basic commands. */
static void own_prefix(const char *cmd, char *out, size_t cap)
{
    out[0] = '\0';
    if (!((cmd[0] == 'A' || cmd[0] == 'a') && (cmd[1] == 'T' || cmd[1] == 't') &&
          (cmd[2] == '+' || cmd[2] == '#' || cmd[2] == '$')))
        return;
    size_t i = 2, o = 0;
    while (cmd[i] && cmd[i] != '=' && cmd[i] != '?' && o + 2 < cap) {
        char c = cmd[i++];
        out[o++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    out[o++] = ':';
    out[o] = '\0';
}

/* After the port's reopen, the engine works again. */
static void refresh_lost(fb_at *at)
{
    if (!at->port)
        return;
    fb_serial_stats s;
    fb_serial_get_stats(at->port, &s);
    if (s.open) {
        pthread_mutex_lock(&at->lock);
        at->lost = 0;
        pthread_mutex_unlock(&at->lock);
    }
}

fb_status fb_at_start(fb_at *at, const char *cmd, const char *terminator, fb_error *err)
{
    refresh_lost(at);
    size_t n = cmd ? strlen(cmd) : 0;
    if (!n || strpbrk(cmd, "\r\n"))
        return fb_error_set(err, FB_ERR_ARG,
                            "an AT command must be one non-empty line without CR or LF");
    if (n > 2000)
        return fb_error_set(err, FB_ERR_ARG, "AT command of %zu bytes is too long (max 2000)", n);
    if (terminator && (!*terminator || strlen(terminator) > 64))
        return fb_error_set(err, FB_ERR_ARG, "terminator must be 1 to 64 bytes");
    char *c = dup_n(cmd, n);
    char *term = terminator ? dup_n(terminator, strlen(terminator)) : NULL;
    char *wire = malloc(n + 2);
    if (!c || (terminator && !term) || !wire) {
        free(c);
        free(term);
        free(wire);
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory sending a command");
    }
    pthread_mutex_lock(&at->lock);
    if (at->active) {
        pthread_mutex_unlock(&at->lock);
        free(c);
        free(term);
        free(wire);
        return fb_error_set(err, FB_ERR_ARG,
                            "'%.60s' is still waiting for its result: one command at a time",
                            at->cmd);
    }
    if (at->lost) {
        fb_status st = fb_error_set(err, FB_ERR_CLOSED, "%s", at->lost_why);
        pthread_mutex_unlock(&at->lock);
        free(c);
        free(term);
        free(wire);
        return st;
    }
    free(at->cmd);
    free(at->terminator);
    fb_at_response_free(&at->resp);
    at->resp_cap = 0;
    at->cmd = c;
    at->terminator = term;
    own_prefix(c, at->own_prefix, sizeof at->own_prefix);
    at->active = 1;
    at->done = 0;
    at->saw_line = 0;
    at->resp.error_code = -1;
    at->resp.t_sent = fb_now_ns();
    int64_t t_sent = at->resp.t_sent;
    pthread_mutex_unlock(&at->lock);

    if (at->tl) {
        char text[4200];
        fb_json_string(text, sizeof text, cmd, n, NULL);
        fb_timeline_addf(at->tl, t_sent, at->source, "at.command", NULL, "{\"text\":%s}", text);
    }
    fb_status st = FB_OK;
    if (at->port) {
        memcpy(wire, cmd, n);
        wire[n] = '\r';
        st = fb_serial_write(at->port, wire, n + 1, fb_now_ns() + 5 * FB_NS_PER_S, err);
    }
    free(wire);
    if (st != FB_OK)
        fb_at_cancel(at);
    return st;
}

void fb_at_cancel(fb_at *at)
{
    pthread_mutex_lock(&at->lock);
    at->active = 0;
    at->done = 0;
    pthread_mutex_unlock(&at->lock);
}

/* Escaped last bytes of the port, for timeout messages. */
static void tail_text(fb_at *at, char *out, size_t cap)
{
    uint8_t raw[120];
    size_t n = at->port ? fb_serial_tail(at->port, raw, sizeof raw) : 0;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        uint8_t c = raw[i];
        if (c == '\r')
            o += (size_t)snprintf(out + o, cap - o, "\\r");
        else if (c == '\n')
            o += (size_t)snprintf(out + o, cap - o, "\\n");
        else if (c >= 0x20 && c < 0x7F && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o < cap ? o : cap - 1] = '\0';
}

fb_status fb_at_wait(fb_at *at, int64_t slice_deadline, int64_t deadline, int64_t inactivity_ns,
                     fb_at_response *out, int *done, fb_error *err)
{
    *done = 0;
    fb_status st = FB_OK;
    pthread_mutex_lock(&at->lock);
    for (;;) {
        if (!at->active) {
            st = fb_error_set(err, FB_ERR_ARG, "no AT command is pending");
            break;
        }
        if (at->done) {
            *out = at->resp;
            memset(&at->resp, 0, sizeof at->resp);
            at->resp_cap = 0;
            at->active = 0;
            *done = 1;
            break;
        }
        if (at->lost) {
            st = fb_error_set(err, FB_ERR_CLOSED, "'%.60s' got no result: %s", at->cmd,
                              at->lost_why);
            at->active = 0;
            break;
        }
        int64_t now = fb_now_ns();
        int64_t last = at->last_rx > at->resp.t_sent ? at->last_rx : at->resp.t_sent;
        int expired = now >= deadline;
        int idle = now - last >= inactivity_ns;
        if (expired || idle) {
            char tail[600];
            tail_text(at, tail, sizeof tail);
            const char *log = at->port ? fb_serial_log_path(at->port) : NULL;
            st = fb_error_set(
                err, FB_ERR_TIMEOUT,
                "'%.60s' got no final result: %s %.1f s (%zu response line%s so far); last "
                "bytes: \"%s\"%s%s",
                at->cmd, idle ? "no byte received for" : "nothing final within",
                (double)(idle ? inactivity_ns : now - at->resp.t_sent) / 1e9, at->resp.count,
                at->resp.count == 1 ? "" : "s", tail, log ? "; log: " : "", log ? log : "");
            if (at->tl)
                fb_timeline_addf(at->tl, now, at->source, "at.timeout", NULL,
                                 "{\"idle\":%s,\"lines\":%zu}", idle ? "true" : "false",
                                 at->resp.count);
            at->active = 0;
            break;
        }
        if (now >= slice_deadline)
            break;
        int64_t wake = slice_deadline;
        if (deadline < wake)
            wake = deadline;
        if (fb_deadline_add(last, inactivity_ns) < wake)
            wake = fb_deadline_add(last, inactivity_ns);
        fb_cond_wait_until(&at->cond, &at->lock, wake);
    }
    pthread_mutex_unlock(&at->lock);
    return st;
}

fb_status fb_at_next_line(fb_at *at, int64_t deadline, char **line, size_t *n, int64_t *t_ns,
                          int *is_urc, fb_error *err)
{
    *line = NULL;
    *n = 0;
    fb_status st = FB_OK;
    refresh_lost(at);
    pthread_mutex_lock(&at->lock);
    for (;;) {
        if (at->q_dropped) {
            st = fb_error_set(err, FB_ERR_LOST,
                              "%" PRIu64 " unsolicited lines on %s were dropped: the queue of "
                              "%zu lines was full (read them sooner; the timeline has all)",
                              at->q_dropped, at->source, at->q_cap);
            at->q_dropped = 0;
            break;
        }
        if (at->q_len) {
            queued_line *q = &at->queue[at->q_head];
            *line = q->text;
            *n = q->n;
            if (t_ns)
                *t_ns = q->t;
            if (is_urc)
                *is_urc = q->urc;
            q->text = NULL;
            at->q_head = (at->q_head + 1) % at->q_cap;
            at->q_len--;
            break;
        }
        if (at->lost) {
            st = fb_error_set(err, FB_ERR_CLOSED, "%s", at->lost_why);
            break;
        }
        if (fb_cond_wait_until(&at->cond, &at->lock, deadline) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&at->lock);
    return st;
}

size_t fb_at_partial(fb_at *at, char *buf, size_t cap)
{
    pthread_mutex_lock(&at->lock);
    size_t n;
    const char *p = fb_linesplit_partial(&at->split, &n);
    memcpy(buf, p, n < cap ? n : cap);
    pthread_mutex_unlock(&at->lock);
    return n;
}

uint64_t fb_at_urc_dropped(fb_at *at)
{
    pthread_mutex_lock(&at->lock);
    uint64_t n = at->urc_dropped;
    pthread_mutex_unlock(&at->lock);
    return n;
}

int fb_at_flush_callbacks(fb_at *at, int64_t deadline)
{
    return at->urc_dispatch ? fb_dispatch_flush(at->urc_dispatch, deadline) : 1;
}

uint64_t fb_at_rx_count(fb_at *at)
{
    pthread_mutex_lock(&at->lock);
    uint64_t n = at->rx_count;
    pthread_mutex_unlock(&at->lock);
    return n;
}

void fb_at_wait_rx(fb_at *at, uint64_t since_rx, int64_t deadline)
{
    pthread_mutex_lock(&at->lock);
    while (at->rx_count == since_rx && !at->lost)
        if (fb_cond_wait_until(&at->cond, &at->lock, deadline) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&at->lock);
}
