/* Internal: what the GPIO backends (gpio_gpiod.c, gpio_virtual.c) share with gpio.c. */
#ifndef FOTABENCH_GPIO_BACKEND_H
#define FOTABENCH_GPIO_BACKEND_H

#include <pthread.h>

#include "fotabench/gpio.h"

#define GPIO_MAX_LISTENERS 8

typedef struct gpio_ops {
    const char *name;
    /* Resolve and configure the line (l->name / l->offset / l->cfg are set). */
    fb_status (*request)(fb_gpio *g, fb_gpio_line *l, fb_error *err);
    void (*release)(fb_gpio *g, fb_gpio_line *l);
    /* Values are logical (active_low applied by the backend). */
    fb_status (*set)(fb_gpio *g, fb_gpio_line *l, int value, int64_t *t_ns, fb_error *err);
    fb_status (*get)(fb_gpio *g, fb_gpio_line *l, int *value, fb_error *err);
    void (*close)(fb_gpio *g);
} gpio_ops;

struct fb_gpio_line {
    fb_gpio *gpio;
    char name[64];
    int offset;
    fb_gpio_line_config cfg;
    char source[72]; /* timeline source: "gpio:<name>" */
    void *bdata;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    fb_gpio_edge *queue;
    size_t q_cap, q_head, q_len;
    uint64_t pending_dropped, pending_lost;
    uint64_t last_seq;
    /* The backend numbers this line's edges from 1 (the kernel's line_seqno of a new
     * request): a first edge with seq > 1 follows missed ones. The virtual board
     * numbers from its own start, so there the first seq seen proves nothing. */
    int seq_from_one;
    fb_gpio_line_stats stats;

    pthread_mutex_t listen_lock; /* held while listeners run */
    struct {
        fb_gpio_edge_fn fn;
        void *ctx;
    } listeners[GPIO_MAX_LISTENERS];
    int n_listeners;
};

struct fb_gpio {
    const gpio_ops *ops;
    void *bdata;
    fb_timeline *tl;
    pthread_mutex_t lock; /* the lines list */
    fb_gpio_line **lines;
    size_t n_lines, cap_lines;
};

/* gpio.c: a new fb_gpio with ops and backend data (the backend's open calls it). */
fb_gpio *fb_gpio_alloc(const gpio_ops *ops, void *bdata, fb_timeline *tl, fb_error *err);
/* Called by a backend's thread for every edge of a line (logical value). */
void fb_gpio_deliver(fb_gpio_line *l, int value, int64_t t_ns, uint64_t seq);
/* An edge of the line called name at physical level `level`, if it is requested and
 * watched: found and delivered under g->lock, so a release waits for it. */
void fb_gpio_deliver_level(fb_gpio *g, const char *name, int level, int64_t t_ns, uint64_t seq);
/* Find a requested line by name (NULL if none); takes g->lock. */
fb_gpio_line *fb_gpio_find(fb_gpio *g, const char *name);

extern const gpio_ops fb_gpio_gpiod_ops;
extern const gpio_ops fb_gpio_virtual_ops;

#endif
