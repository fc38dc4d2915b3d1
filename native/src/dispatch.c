#include "fotabench/dispatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "fotabench/clock.h"

typedef struct item {
    struct item *next;
    size_t n;
    unsigned char data[];
} item;

struct fb_dispatch {
    fb_dispatch_fn fn;
    void *ctx;
    size_t max, len;
    item *head, *tail;
    uint64_t dropped;
    int quit, busy;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* posted, handled, quit */
    pthread_t thread;
};

static void *dispatch_main(void *arg)
{
    fb_dispatch *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->head && !d->quit)
            pthread_cond_wait(&d->cond, &d->lock);
        if (d->quit)
            break;
        item *it = d->head;
        d->head = it->next;
        if (!d->head)
            d->tail = NULL;
        d->len--;
        d->busy = 1;
        pthread_mutex_unlock(&d->lock);
        d->fn(d->ctx, it->data, it->n);
        free(it);
        pthread_mutex_lock(&d->lock);
        d->busy = 0;
        pthread_cond_broadcast(&d->cond);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

fb_dispatch *fb_dispatch_new(fb_dispatch_fn fn, void *ctx, size_t max_items, fb_error *err)
{
    fb_dispatch *d = calloc(1, sizeof *d);
    if (!d) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory for a callback dispatcher");
        return NULL;
    }
    d->fn = fn;
    d->ctx = ctx;
    d->max = max_items ? max_items : FB_DISPATCH_DEFAULT_MAX;
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&d->thread, NULL, dispatch_main, d);
    if (e != 0) {
        pthread_cond_destroy(&d->cond);
        pthread_mutex_destroy(&d->lock);
        free(d);
        fb_error_set(err, FB_ERR_IO, "cannot start the callback thread: %s", strerror(e));
        return NULL;
    }
    return d;
}

int fb_dispatch_post(fb_dispatch *d, const void *data, size_t n)
{
    item *it = malloc(sizeof *it + n);
    pthread_mutex_lock(&d->lock);
    if (!it || d->len >= d->max || d->quit) {
        d->dropped++;
        pthread_mutex_unlock(&d->lock);
        free(it);
        return -1;
    }
    it->next = NULL;
    it->n = n;
    memcpy(it->data, data, n);
    if (d->tail)
        d->tail->next = it;
    else
        d->head = it;
    d->tail = it;
    d->len++;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

uint64_t fb_dispatch_dropped(fb_dispatch *d)
{
    pthread_mutex_lock(&d->lock);
    uint64_t n = d->dropped;
    pthread_mutex_unlock(&d->lock);
    return n;
}

int fb_dispatch_flush(fb_dispatch *d, int64_t deadline_ns)
{
    pthread_mutex_lock(&d->lock);
    while ((d->head || d->busy) && !d->quit)
        if (fb_cond_wait_until(&d->cond, &d->lock, deadline_ns) == ETIMEDOUT)
            break;
    int idle = !d->head && !d->busy;
    pthread_mutex_unlock(&d->lock);
    return idle;
}

void fb_dispatch_free(fb_dispatch *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->quit = 1;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    for (item *it = d->head; it;) {
        item *next = it->next;
        free(it);
        it = next;
    }
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}
