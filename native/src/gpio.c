/* fb_gpio: the backend-independent part: lines, the edge queue with its sequence
 * check, listeners, timeline events. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "fotabench/clock.h"
#include "gpio_backend.h"

#define DEFAULT_EDGE_QUEUE 4096

void fb_gpio_line_config_init(fb_gpio_line_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->direction = FB_GPIO_INPUT;
    cfg->bias = FB_GPIO_BIAS_AS_IS;
}

fb_gpio *fb_gpio_alloc(const gpio_ops *ops, void *bdata, fb_timeline *tl, fb_error *err)
{
    fb_gpio *g = calloc(1, sizeof *g);
    if (!g) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory opening GPIO");
        return NULL;
    }
    g->ops = ops;
    g->bdata = bdata;
    g->tl = tl;
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

const char *fb_gpio_backend_name(const fb_gpio *g)
{
    return g->ops->name;
}

static void line_free(fb_gpio_line *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    pthread_mutex_destroy(&l->listen_lock);
    free(l->queue);
    free(l);
}

void fb_gpio_close(fb_gpio *g)
{
    if (!g)
        return;
    while (g->n_lines)
        fb_gpio_release(g->lines[g->n_lines - 1]);
    g->ops->close(g);
    free(g->lines);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

void fb_gpio_deliver_level(fb_gpio *g, const char *name, int level, int64_t t_ns, uint64_t seq)
{
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n_lines; i++) {
        fb_gpio_line *l = g->lines[i];
        if (strcmp(l->name, name) == 0 && l->cfg.direction == FB_GPIO_INPUT && l->cfg.edges) {
            fb_gpio_deliver(l, level ^ l->cfg.active_low, t_ns, seq);
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
}

fb_gpio_line *fb_gpio_find(fb_gpio *g, const char *name)
{
    fb_gpio_line *found = NULL;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n_lines && !found; i++)
        if (strcmp(g->lines[i]->name, name) == 0)
            found = g->lines[i];
    pthread_mutex_unlock(&g->lock);
    return found;
}

fb_gpio_line *fb_gpio_request(fb_gpio *g, const char *name, int offset,
                              const fb_gpio_line_config *cfg_in, fb_error *err)
{
    fb_gpio_line_config cfg;
    if (cfg_in)
        cfg = *cfg_in;
    else
        fb_gpio_line_config_init(&cfg);
    if ((!name || !*name) && offset < 0) {
        fb_error_set(err, FB_ERR_ARG, "a GPIO line needs a name or an offset >= 0");
        return NULL;
    }
    if (name && strlen(name) >= sizeof ((fb_gpio_line *)0)->name) {
        fb_error_set(err, FB_ERR_ARG, "GPIO line name '%.40s...' is too long (max 63)", name);
        return NULL;
    }
    if (cfg.direction != FB_GPIO_INPUT && cfg.direction != FB_GPIO_OUTPUT) {
        fb_error_set(err, FB_ERR_ARG, "unknown GPIO direction %d", (int)cfg.direction);
        return NULL;
    }
    if (cfg.bias < FB_GPIO_BIAS_AS_IS || cfg.bias > FB_GPIO_BIAS_PULL_DOWN) {
        fb_error_set(err, FB_ERR_ARG, "unknown GPIO bias %d", (int)cfg.bias);
        return NULL;
    }
    if (name && fb_gpio_find(g, name)) {
        fb_error_set(err, FB_ERR_ARG, "GPIO line %s is already requested in this session", name);
        return NULL;
    }
    fb_gpio_line *l = calloc(1, sizeof *l);
    if (!l) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory requesting a GPIO line");
        return NULL;
    }
    l->gpio = g;
    l->offset = offset;
    l->cfg = cfg;
    l->cfg.initial = !!cfg.initial;
    l->cfg.active_low = !!cfg.active_low;
    if (name)
        snprintf(l->name, sizeof l->name, "%s", name);
    l->q_cap = cfg.queue_max ? cfg.queue_max : DEFAULT_EDGE_QUEUE;
    l->queue = calloc(l->q_cap, sizeof *l->queue);
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_init(&l->listen_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!l->queue) {
        line_free(l);
        fb_error_set(err, FB_ERR_NOMEM, "out of memory for an edge queue");
        return NULL;
    }
    pthread_mutex_lock(&g->lock);
    int grown = 1;
    if (g->n_lines == g->cap_lines) {
        size_t cap = g->cap_lines ? g->cap_lines * 2 : 8;
        fb_gpio_line **n = realloc(g->lines, cap * sizeof *n);
        if (n) {
            g->lines = n;
            g->cap_lines = cap;
        } else {
            grown = 0;
        }
    }
    pthread_mutex_unlock(&g->lock);
    if (!grown) {
        line_free(l);
        fb_error_set(err, FB_ERR_NOMEM, "out of memory requesting a GPIO line");
        return NULL;
    }
    /* The backend may start delivering edges as soon as it requested the line, so
     * the line is in the list (found by name) before. */
    if (!l->name[0])
        snprintf(l->name, sizeof l->name, "%d", offset);
    snprintf(l->source, sizeof l->source, "gpio:%s", l->name);
    pthread_mutex_lock(&g->lock);
    g->lines[g->n_lines++] = l;
    pthread_mutex_unlock(&g->lock);
    fb_status st = g->ops->request(g, l, err);
    if (st != FB_OK) {
        pthread_mutex_lock(&g->lock);
        for (size_t i = 0; i < g->n_lines; i++)
            if (g->lines[i] == l) {
                g->lines[i] = g->lines[--g->n_lines];
                break;
            }
        pthread_mutex_unlock(&g->lock);
        line_free(l);
        return NULL;
    }
    snprintf(l->source, sizeof l->source, "gpio:%s", l->name);
    if (g->tl)
        fb_timeline_addf(g->tl, 0, l->source, "gpio.request", NULL,
                         "{\"direction\":\"%s\",\"active_low\":%s,\"backend\":\"%s\"}",
                         cfg.direction == FB_GPIO_OUTPUT ? "output" : "input",
                         cfg.active_low ? "true" : "false", g->ops->name);
    return l;
}

void fb_gpio_release(fb_gpio_line *l)
{
    if (!l)
        return;
    fb_gpio *g = l->gpio;
    /* Out of the list first (waits for a delivery by name in progress), then the
     * backend stops its own deliveries to the line. */
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n_lines; i++)
        if (g->lines[i] == l) {
            g->lines[i] = g->lines[--g->n_lines];
            break;
        }
    pthread_mutex_unlock(&g->lock);
    g->ops->release(g, l);
    if (g->tl)
        fb_timeline_add(g->tl, 0, l->source, "gpio.release", NULL, NULL, NULL);
    line_free(l);
}

const char *fb_gpio_line_name(const fb_gpio_line *l)
{
    return l->name;
}

fb_status fb_gpio_set(fb_gpio_line *l, int value, int64_t *t_ns, fb_error *err)
{
    if (l->cfg.direction != FB_GPIO_OUTPUT)
        return fb_error_set(err, FB_ERR_ARG, "GPIO line %s is an input: request it as an output "
                                             "to drive it",
                            l->name);
    int64_t t = 0;
    fb_status st = l->gpio->ops->set(l->gpio, l, !!value, &t, err);
    if (st != FB_OK)
        return st;
    if (t_ns)
        *t_ns = t;
    if (l->gpio->tl)
        fb_timeline_addf(l->gpio->tl, t, l->source, "set", NULL, "{\"value\":%d,\"level\":%d}",
                         !!value, !!value ^ l->cfg.active_low);
    return FB_OK;
}

fb_status fb_gpio_get(fb_gpio_line *l, int *value, fb_error *err)
{
    return l->gpio->ops->get(l->gpio, l, value, err);
}

fb_status fb_gpio_pulse(fb_gpio_line *l, int value, int64_t duration_ns, int64_t *t_start,
                        int64_t *t_end, fb_error *err)
{
    if (duration_ns <= 0 || duration_ns > 3600 * FB_NS_PER_S)
        return fb_error_set(err, FB_ERR_ARG, "pulse duration must be > 0 and at most an hour");
    int64_t t0, t1;
    fb_status st = fb_gpio_set(l, value, &t0, err);
    if (st != FB_OK)
        return st;
    /* Sleep to an absolute time on the one clock: the pulse is measured from when the
     * level was applied, not from when this call started. */
    struct timespec until = fb_ns_to_timespec(t0 + duration_ns);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) != 0) {
    }
    st = fb_gpio_set(l, !value, &t1, err);
    if (st != FB_OK)
        return st;
    if (t_start)
        *t_start = t0;
    if (t_end)
        *t_end = t1;
    return FB_OK;
}

void fb_gpio_deliver(fb_gpio_line *l, int value, int64_t t_ns, uint64_t seq)
{
    fb_gpio_edge e = {value, t_ns, seq, 0};
    uint64_t missed = 0;
    pthread_mutex_lock(&l->lock);
    if (seq && (l->last_seq || l->seq_from_one) && seq > l->last_seq + 1)
        missed = seq - l->last_seq - 1;
    if (seq)
        l->last_seq = seq;
    l->stats.edges++;
    l->stats.lost += missed;
    e.missed_before = missed;
    pthread_mutex_unlock(&l->lock);

    fb_timeline *tl = l->gpio->tl;
    if (tl) {
        if (missed)
            fb_timeline_addf(tl, t_ns, l->source, "edge.lost", NULL,
                             "{\"missed\":%" PRIu64 ",\"seq\":%" PRIu64 "}", missed, seq);
        fb_timeline_addf(tl, t_ns, l->source, "edge", NULL,
                         "{\"value\":%d,\"seq\":%" PRIu64 "}", value, seq);
    }
    pthread_mutex_lock(&l->listen_lock);
    for (int i = 0; i < l->n_listeners; i++)
        l->listeners[i].fn(l->listeners[i].ctx, &e);
    pthread_mutex_unlock(&l->listen_lock);

    pthread_mutex_lock(&l->lock);
    if (l->q_len == l->q_cap) { /* the oldest goes; counted */
        l->pending_lost += l->queue[l->q_head].missed_before;
        l->q_head = (l->q_head + 1) % l->q_cap;
        l->q_len--;
        l->pending_dropped++;
        l->stats.dropped++;
    }
    l->queue[(l->q_head + l->q_len) % l->q_cap] = e;
    l->q_len++;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

fb_status fb_gpio_next_edge(fb_gpio_line *l, int64_t deadline, fb_gpio_edge *out, int *got,
                            fb_error *err)
{
    *got = 0;
    fb_status st = FB_OK;
    if (l->cfg.direction != FB_GPIO_INPUT || !l->cfg.edges)
        return fb_error_set(err, FB_ERR_ARG, "GPIO line %s is not watched for edges: request "
                                             "it as an input with edges",
                            l->name);
    pthread_mutex_lock(&l->lock);
    for (;;) {
        if (l->pending_lost || l->pending_dropped) {
            st = fb_error_set(err, FB_ERR_LOST,
                              "GPIO line %s: %" PRIu64 " edge(s) missed (sequence gap) and %" PRIu64
                              " dropped from the full queue of %zu; the counts are in the "
                              "line's stats and on the timeline",
                              l->name, l->pending_lost, l->pending_dropped, l->q_cap);
            l->pending_lost = l->pending_dropped = 0;
            break;
        }
        if (l->q_len && l->queue[l->q_head].missed_before) {
            st = fb_error_set(err, FB_ERR_LOST,
                              "GPIO line %s: %" PRIu64 " edge(s) missed before the edge with "
                              "seq %" PRIu64 " (sequence gap); counts are in the line's stats "
                              "and on the timeline",
                              l->name, l->queue[l->q_head].missed_before,
                              l->queue[l->q_head].seq);
            l->queue[l->q_head].missed_before = 0;
            break;
        }
        if (l->q_len) {
            *out = l->queue[l->q_head];
            l->q_head = (l->q_head + 1) % l->q_cap;
            l->q_len--;
            *got = 1;
            break;
        }
        if (fb_cond_wait_until(&l->cond, &l->lock, deadline) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&l->lock);
    return st;
}

fb_status fb_gpio_add_listener(fb_gpio_line *l, fb_gpio_edge_fn fn, void *ctx, fb_error *err)
{
    fb_status st = FB_OK;
    pthread_mutex_lock(&l->listen_lock);
    if (l->n_listeners == GPIO_MAX_LISTENERS)
        st = fb_error_set(err, FB_ERR_ARG, "GPIO line %s has %d listeners already", l->name,
                          GPIO_MAX_LISTENERS);
    else {
        l->listeners[l->n_listeners].fn = fn;
        l->listeners[l->n_listeners].ctx = ctx;
        l->n_listeners++;
    }
    pthread_mutex_unlock(&l->listen_lock);
    return st;
}

void fb_gpio_remove_listener(fb_gpio_line *l, fb_gpio_edge_fn fn, void *ctx)
{
    pthread_mutex_lock(&l->listen_lock);
    for (int i = 0; i < l->n_listeners; i++)
        if (l->listeners[i].fn == fn && l->listeners[i].ctx == ctx) {
            memmove(&l->listeners[i], &l->listeners[i + 1],
                    (size_t)(l->n_listeners - i - 1) * sizeof l->listeners[0]);
            l->n_listeners--;
            break;
        }
    pthread_mutex_unlock(&l->listen_lock);
}

void fb_gpio_line_get_stats(fb_gpio_line *l, fb_gpio_line_stats *out)
{
    pthread_mutex_lock(&l->lock);
    *out = l->stats;
    pthread_mutex_unlock(&l->lock);
}
