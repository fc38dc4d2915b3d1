/* GPIO backend for a virtual module's board: the client side of the virtual line
 * protocol over gpio.sock (docs/architecture.md). One connection per fb_gpio, one
 * reader thread sorting lines by their first word: EDGE events go to the watched
 * line, everything else answers the one request in flight. */
#define _GNU_SOURCE /* pipe2 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fotabench/clock.h"
#include "gpio_backend.h"

#define VLINE_MAX 512             /* longer lines are a protocol violation */
#define REPLY_TIMEOUT_NS (5 * FB_NS_PER_S)
#define MAX_BOARD_LINES 64

typedef struct vboard {
    int fd;
    int wake[2];
    pthread_t reader;
    int reader_started;
    char path[108];

    pthread_mutex_t req_lock; /* one request at a time */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int have_reply;
    fb_vline reply;
    fb_vline listing[MAX_BOARD_LINES]; /* LINE answers to LINES */
    int n_listing;
    int lost;
    char why[200];
    char said[64];      /* the board's BYE: why it closes the connection */
    uint64_t bad_lines; /* malformed or unexpected lines from the board */
    fb_gpio *gpio;
} vboard;

/* --- the protocol parser --------------------------------------------------------- */

static int next_word(const char **p, const char *end, const char **w, size_t *wn)
{
    while (*p < end && **p == ' ')
        (*p)++;
    *w = *p;
    while (*p < end && **p != ' ')
        (*p)++;
    *wn = (size_t)(*p - *w);
    return *wn > 0;
}

static int parse_u64(const char *w, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < '0' || w[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(w[i] - '0');
    }
    *out = v;
    return 0;
}

static int word_is(const char *w, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(w, s, n) == 0;
}

static int parse_name(const char *w, size_t n, char *out, size_t cap)
{
    if (n == 0 || n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)w[i] <= 0x20 || (unsigned char)w[i] >= 0x7F)
            return -1;
    memcpy(out, w, n);
    out[n] = '\0';
    return 0;
}

static int parse_bit(const char *w, size_t n, int *v)
{
    if (n != 1 || (w[0] != '0' && w[0] != '1'))
        return -1;
    *v = w[0] - '0';
    return 0;
}

int fb_vline_parse(const char *s, size_t n, fb_vline *out)
{
    memset(out, 0, sizeof *out);
    const char *p = s, *end = s + n, *w;
    size_t wn;
    if (n && s[n - 1] == '\r') /* tolerate CR LF */
        end--;
    if (memchr(s, '\0', (size_t)(end - s)))
        return -1;
    if (!next_word(&p, end, &w, &wn))
        return -1;
    uint64_t u;
    if (word_is(w, wn, "ERR") || word_is(w, wn, "BYE")) {
        out->kind = word_is(w, wn, "ERR") ? FB_VLINE_ERR : FB_VLINE_BYE;
        while (p < end && *p == ' ')
            p++;
        size_t tn = (size_t)(end - p);
        if (tn >= sizeof out->name)
            tn = sizeof out->name - 1;
        for (size_t i = 0; i < tn; i++)
            out->name[i] = (p[i] >= 0x20 && p[i] < 0x7F) ? p[i] : '?';
        out->name[tn] = '\0';
        return 0;
    }
    if (word_is(w, wn, "OK")) {
        out->kind = FB_VLINE_OK;
        if (!next_word(&p, end, &w, &wn) || parse_u64(w, wn, &u) < 0 || u > INT64_MAX)
            return -1;
        out->t_ns = (int64_t)u;
    } else if (word_is(w, wn, "VAL") || word_is(w, wn, "EDGE")) {
        out->kind = word_is(w, wn, "VAL") ? FB_VLINE_VAL : FB_VLINE_EDGE;
        if (!next_word(&p, end, &w, &wn) || parse_name(w, wn, out->name, sizeof out->name) < 0)
            return -1;
        if (!next_word(&p, end, &w, &wn) || parse_bit(w, wn, &out->value) < 0)
            return -1;
        if (!next_word(&p, end, &w, &wn) || parse_u64(w, wn, &u) < 0 || u > INT64_MAX)
            return -1;
        out->t_ns = (int64_t)u;
        if (out->kind == FB_VLINE_EDGE) {
            if (!next_word(&p, end, &w, &wn) || parse_u64(w, wn, &u) < 0 || u == 0)
                return -1;
            out->seq = u;
        }
    } else if (word_is(w, wn, "LINE")) {
        out->kind = FB_VLINE_LINE;
        if (!next_word(&p, end, &w, &wn) || parse_name(w, wn, out->name, sizeof out->name) < 0)
            return -1;
        if (!next_word(&p, end, &w, &wn))
            return -1;
        if (word_is(w, wn, "out"))
            out->is_output = 1;
        else if (!word_is(w, wn, "in"))
            return -1;
        if (!next_word(&p, end, &w, &wn) || parse_bit(w, wn, &out->value) < 0)
            return -1;
    } else {
        return -1;
    }
    if (out->t_ns > INT64_MAX / 2)
        return -1;
    return next_word(&p, end, &w, &wn) ? -1 : 0; /* nothing may follow */
}

/* --- connection ---------------------------------------------------------------------- */

static void board_lost(vboard *b, const char *why)
{
    pthread_mutex_lock(&b->lock);
    if (!b->lost) {
        b->lost = 1;
        snprintf(b->why, sizeof b->why, "%s", why);
    }
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    if (b->gpio->tl)
        fb_timeline_addf(b->gpio->tl, 0, "gpio", "board.lost", NULL, "{\"why\":\"%s\"}",
                         "connection to the board closed");
}

static void handle_line(vboard *b, const char *s, size_t n)
{
    fb_vline v;
    if (fb_vline_parse(s, n, &v) < 0) {
        pthread_mutex_lock(&b->lock);
        b->bad_lines++;
        pthread_mutex_unlock(&b->lock);
        return;
    }
    if (v.kind == FB_VLINE_EDGE) {
        fb_gpio_deliver_level(b->gpio, v.name, v.value, v.t_ns, v.seq);
        return;
    }
    pthread_mutex_lock(&b->lock);
    if (v.kind == FB_VLINE_BYE) {
        snprintf(b->said, sizeof b->said, "%s", v.name);
    } else if (v.kind == FB_VLINE_LINE) {
        if (b->n_listing < MAX_BOARD_LINES)
            b->listing[b->n_listing++] = v;
    } else {
        b->reply = v;
        b->have_reply = 1;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
}

static void *reader_main(void *arg)
{
    vboard *b = arg;
    char buf[8192], line[VLINE_MAX];
    size_t len = 0;
    int skipping = 0; /* inside an over-long line */
    for (;;) {
        struct pollfd fds[2] = {{b->fd, POLLIN, 0}, {b->wake[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            board_lost(b, "poll failed on gpio.sock");
            break;
        }
        if (fds[1].revents)
            break;
        ssize_t r = read(b->fd, buf, sizeof buf);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0) {
            char why[160], said[sizeof b->said];
            int e = errno;
            pthread_mutex_lock(&b->lock);
            snprintf(said, sizeof said, "%s", b->said);
            pthread_mutex_unlock(&b->lock);
            if (said[0]) /* e.g. "too many gpio.sock clients (limit N)" */
                snprintf(why, sizeof why, "the board closed gpio.sock: %s", said);
            else
                snprintf(why, sizeof why, "the board closed gpio.sock (%s): did the virtual "
                         "module exit?", r == 0 ? "end of file" : strerror(e));
            board_lost(b, why);
            break;
        }
        for (ssize_t i = 0; i < r; i++) {
            char c = buf[i];
            if (c == '\n') {
                if (!skipping && len)
                    handle_line(b, line, len);
                len = 0;
                skipping = 0;
            } else if (skipping) {
                continue;
            } else if (len == sizeof line) {
                skipping = 1;
                pthread_mutex_lock(&b->lock);
                b->bad_lines++;
                pthread_mutex_unlock(&b->lock);
            } else {
                line[len++] = c;
            }
        }
    }
    return NULL;
}

static fb_status write_all(vboard *b, const char *s, size_t n, fb_error *err)
{
    while (n) {
        ssize_t w = send(b->fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fb_error_set(err, FB_ERR_CLOSED, "writing to the board's %s failed (%s): did "
                                                    "the virtual module exit?",
                                b->path, strerror(errno));
        s += w;
        n -= (size_t)w;
    }
    return FB_OK;
}

/* Send one command and wait for its answer (OK / ERR / VAL). */
static fb_status request(vboard *b, const char *cmd, fb_vline *reply, fb_error *err)
{
    pthread_mutex_lock(&b->req_lock);
    pthread_mutex_lock(&b->lock);
    b->have_reply = 0;
    b->n_listing = 0;
    fb_status st = b->lost ? fb_error_set(err, FB_ERR_CLOSED, "%s", b->why) : FB_OK;
    pthread_mutex_unlock(&b->lock);
    if (st == FB_OK && (st = write_all(b, cmd, strlen(cmd), err)) != FB_OK) {
        /* The board closed first: its last line (a BYE naming why) and the end of file
         * are the reader's to see, at once; its reason is better than EPIPE. */
        int64_t deadline = fb_now_ns() + FB_NS_PER_S;
        struct timespec ts = fb_ns_to_timespec(deadline);
        pthread_mutex_lock(&b->lock);
        while (!b->lost && fb_now_ns() < deadline)
            pthread_cond_timedwait(&b->cond, &b->lock, &ts);
        if (b->lost)
            st = fb_error_set(err, FB_ERR_CLOSED, "%s", b->why);
        pthread_mutex_unlock(&b->lock);
    } else if (st == FB_OK) {
        int64_t deadline = fb_now_ns() + REPLY_TIMEOUT_NS;
        struct timespec ts = fb_ns_to_timespec(deadline);
        pthread_mutex_lock(&b->lock);
        while (!b->have_reply && !b->lost && fb_now_ns() < deadline)
            pthread_cond_timedwait(&b->cond, &b->lock, &ts);
        if (b->have_reply) {
            *reply = b->reply;
            if (reply->kind == FB_VLINE_ERR)
                st = fb_error_set(err, FB_ERR_ARG, "the board refused '%.*s': %s",
                                  (int)strcspn(cmd, "\n"), cmd, reply->name);
        } else if (b->lost) {
            st = fb_error_set(err, FB_ERR_CLOSED, "%s", b->why);
        } else {
            st = fb_error_set(err, FB_ERR_TIMEOUT,
                              "the board did not answer '%.*s' within 5 s (%" PRIu64
                              " malformed lines seen)",
                              (int)strcspn(cmd, "\n"), cmd, b->bad_lines);
        }
        pthread_mutex_unlock(&b->lock);
    }
    pthread_mutex_unlock(&b->req_lock);
    return st;
}

fb_gpio *fb_gpio_open_virtual(const char *socket_path, fb_timeline *tl, fb_error *err)
{
    struct sockaddr_un sa;
    if (!socket_path || strlen(socket_path) >= sizeof sa.sun_path) {
        fb_error_set(err, FB_ERR_ARG, "gpio.sock path missing or longer than %zu bytes",
                     sizeof sa.sun_path - 1);
        return NULL;
    }
    vboard *b = calloc(1, sizeof *b);
    if (!b) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory connecting to %s", socket_path);
        return NULL;
    }
    snprintf(b->path, sizeof b->path, "%s", socket_path);
    b->wake[0] = b->wake[1] = -1;
    b->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
    if (b->fd < 0 || connect(b->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        fb_error_set(err, FB_ERR_CLOSED, "cannot connect to the board's %s: %s (is the virtual "
                                         "module running?)",
                     socket_path, strerror(e));
        if (b->fd >= 0)
            close(b->fd);
        free(b);
        return NULL;
    }
    if (pipe2(b->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        fb_error_set(err, FB_ERR_IO, "cannot create a pipe: %s", strerror(errno));
        close(b->fd);
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->req_lock, NULL);
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    fb_gpio *g = fb_gpio_alloc(&fb_gpio_virtual_ops, b, tl, err);
    if (!g) {
        fb_gpio_virtual_ops.close(&(fb_gpio){.bdata = b});
        return NULL;
    }
    b->gpio = g;
    if (pthread_create(&b->reader, NULL, reader_main, b) != 0) {
        fb_error_set(err, FB_ERR_IO, "cannot start the gpio.sock reader thread");
        fb_gpio_close(g);
        return NULL;
    }
    b->reader_started = 1;
    return g;
}

static void v_close(fb_gpio *g)
{
    vboard *b = g->bdata;
    if (b->reader_started) {
        char c = 1;
        while (write(b->wake[1], &c, 1) < 0 && errno == EINTR) {
        }
        pthread_join(b->reader, NULL);
    }
    if (b->fd >= 0)
        close(b->fd);
    if (b->wake[0] >= 0)
        close(b->wake[0]);
    if (b->wake[1] >= 0)
        close(b->wake[1]);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->req_lock);
    free(b);
}

static fb_status v_request(fb_gpio *g, fb_gpio_line *l, fb_error *err)
{
    vboard *b = g->bdata;
    if (l->offset >= 0 && !isalpha((unsigned char)l->name[0]))
        return fb_error_set(err, FB_ERR_ARG, "virtual lines go by name (PWRKEY, RESET, VBAT, "
                                             "WDI, STATUS), not by offset %d",
                            l->offset);
    if (l->cfg.bias != FB_GPIO_BIAS_AS_IS)
        return fb_error_set(err, FB_ERR_UNSUPPORTED,
                            "virtual line %s has no bias setting (the board drives clean "
                            "levels): leave bias as-is",
                            l->name);
    fb_vline reply;
    fb_status st = request(b, "LINES\n", &reply, err);
    if (st != FB_OK)
        return st;
    int found = -1, is_output = 0;
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < b->n_listing; i++)
        if (strcmp(b->listing[i].name, l->name) == 0) {
            found = i;
            is_output = b->listing[i].is_output;
        }
    pthread_mutex_unlock(&b->lock);
    if (found < 0)
        return fb_error_set(err, FB_ERR_ARG, "the board at %s has no line %s", b->path, l->name);
    if (l->cfg.direction == FB_GPIO_OUTPUT && is_output)
        return fb_error_set(err, FB_ERR_ARG,
                            "%s is driven by the module: request it as an input", l->name);
    char cmd[128];
    if (l->cfg.direction == FB_GPIO_OUTPUT) {
        snprintf(cmd, sizeof cmd, "SET %s %d\n", l->name, l->cfg.initial ^ l->cfg.active_low);
        return request(b, cmd, &reply, err);
    }
    if (l->cfg.edges) {
        snprintf(cmd, sizeof cmd, "WATCH %s\n", l->name);
        return request(b, cmd, &reply, err);
    }
    return FB_OK;
}

static void v_release(fb_gpio *g, fb_gpio_line *l)
{
    vboard *b = g->bdata;
    if (l->cfg.direction == FB_GPIO_INPUT && l->cfg.edges) {
        char cmd[128];
        fb_vline reply;
        snprintf(cmd, sizeof cmd, "UNWATCH %s\n", l->name);
        (void)request(b, cmd, &reply, NULL);
    }
}

static fb_status v_set(fb_gpio *g, fb_gpio_line *l, int value, int64_t *t_ns, fb_error *err)
{
    vboard *b = g->bdata;
    char cmd[128];
    fb_vline reply;
    snprintf(cmd, sizeof cmd, "SET %s %d\n", l->name, value ^ l->cfg.active_low);
    fb_status st = request(b, cmd, &reply, err);
    if (st == FB_OK && reply.kind != FB_VLINE_OK)
        st = fb_error_set(err, FB_ERR_PROTOCOL, "the board answered SET with something else "
                                                "than OK");
    if (st == FB_OK)
        *t_ns = reply.t_ns;
    return st;
}

static fb_status v_get(fb_gpio *g, fb_gpio_line *l, int *value, fb_error *err)
{
    vboard *b = g->bdata;
    char cmd[128];
    fb_vline reply;
    snprintf(cmd, sizeof cmd, "GET %s\n", l->name);
    fb_status st = request(b, cmd, &reply, err);
    if (st == FB_OK && (reply.kind != FB_VLINE_VAL || strcmp(reply.name, l->name) != 0))
        st = fb_error_set(err, FB_ERR_PROTOCOL, "the board answered GET %s with something "
                                                "else than VAL %s",
                          l->name, l->name);
    if (st == FB_OK)
        *value = reply.value ^ l->cfg.active_low;
    return st;
}

const gpio_ops fb_gpio_virtual_ops = {"virtual", v_request, v_release, v_set, v_get, v_close};
