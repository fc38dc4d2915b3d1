/* GPIO backend for real chips: libgpiod v2 (/dev/gpiochipN). Each line is its own
 * request, held until released; an input watched for edges gets a thread reading the
 * request's edge events (kernel timestamps on CLOCK_MONOTONIC, line sequence
 * numbers). */
#define _GNU_SOURCE /* pipe2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gpiod.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fotabench/clock.h"
#include "gpio_backend.h"

#define EVENT_BATCH 64

typedef struct gchip {
    struct gpiod_chip *chip;
    char path[256];
} gchip;

typedef struct gline {
    struct gpiod_line_request *req;
    unsigned int offset;
    pthread_t thread;
    int thread_started;
    int wake[2];
    fb_gpio_line *line;
} gline;

/* A chip given without a '/' (as station files allow): "gpiochipN" is /dev/gpiochipN,
 * anything else a chip label (gpiodetect's first column vs its label), looked up
 * among /dev/gpiochip*. Writes the device path to out; 0, or -1 when no chip has it. */
static int resolve_chip(const char *name, char *out, size_t cap)
{
    if (strchr(name, '/')) {
        snprintf(out, cap, "%s", name);
        return 0;
    }
    if (!strncmp(name, "gpiochip", 8)) {
        snprintf(out, cap, "/dev/%s", name);
        if (access(out, F_OK) == 0)
            return 0;
    }
    DIR *d = opendir("/dev");
    if (!d)
        return -1;
    int found = -1;
    struct dirent *de;
    while (found < 0 && (de = readdir(d))) {
        if (strncmp(de->d_name, "gpiochip", 8))
            continue;
        snprintf(out, cap, "/dev/%.200s", de->d_name);
        struct gpiod_chip *chip = gpiod_chip_open(out);
        struct gpiod_chip_info *info = chip ? gpiod_chip_get_info(chip) : NULL;
        if (info && !strcmp(gpiod_chip_info_get_label(info), name))
            found = 0;
        if (info)
            gpiod_chip_info_free(info);
        if (chip)
            gpiod_chip_close(chip);
    }
    closedir(d);
    return found;
}

fb_gpio *fb_gpio_open_chip(const char *path, fb_timeline *tl, fb_error *err)
{
    if (!path || !*path) {
        fb_error_set(err, FB_ERR_ARG, "no GPIO chip path given (e.g. /dev/gpiochip0)");
        return NULL;
    }
    gchip *c = calloc(1, sizeof *c);
    if (!c) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory opening %s", path);
        return NULL;
    }
    if (resolve_chip(path, c->path, sizeof c->path)) {
        fb_error_set(err, FB_ERR_CLOSED,
                     "no GPIO chip named or labelled %s (`gpiodetect` lists chips and labels)",
                     path);
        free(c);
        return NULL;
    }
    c->chip = gpiod_chip_open(c->path);
    if (!c->chip) {
        int e = errno;
        fb_error_set(err, e == ENOENT ? FB_ERR_CLOSED : FB_ERR_IO, "cannot open GPIO chip %s: %s%s",
                     c->path, strerror(e),
                     e == ENOENT   ? " (is the chip's driver loaded? `gpiodetect` lists chips)"
                     : e == EACCES ? " (add yourself to the gpio group or fix the udev rule)"
                                   : "");
        free(c);
        return NULL;
    }
    fb_gpio *g = fb_gpio_alloc(&fb_gpio_gpiod_ops, c, tl, err);
    if (!g) {
        gpiod_chip_close(c->chip);
        free(c);
    }
    return g;
}

static void g_close(fb_gpio *g)
{
    gchip *c = g->bdata;
    gpiod_chip_close(c->chip);
    free(c);
}

static void *edge_main(void *arg)
{
    gline *gl = arg;
    struct gpiod_edge_event_buffer *buf = gpiod_edge_event_buffer_new(EVENT_BATCH);
    if (!buf)
        return NULL;
    int fd = gpiod_line_request_get_fd(gl->req);
    for (;;) {
        struct pollfd fds[2] = {{fd, POLLIN, 0}, {gl->wake[0], POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents)
            break;
        if (!(fds[0].revents & POLLIN))
            continue;
        int n = gpiod_line_request_read_edge_events(gl->req, buf, EVENT_BATCH);
        if (n < 0)
            break;
        for (int i = 0; i < n; i++) {
            struct gpiod_edge_event *ev = gpiod_edge_event_buffer_get_event(buf, (unsigned long)i);
            /* Edge types are logical in v2: active-low is already applied. */
            int value = gpiod_edge_event_get_event_type(ev) == GPIOD_EDGE_EVENT_RISING_EDGE;
            fb_gpio_deliver(gl->line, value, (int64_t)gpiod_edge_event_get_timestamp_ns(ev),
                            gpiod_edge_event_get_line_seqno(ev));
        }
    }
    gpiod_edge_event_buffer_free(buf);
    return NULL;
}

static fb_status g_request(fb_gpio *g, fb_gpio_line *l, fb_error *err)
{
    gchip *c = g->bdata;
    int offset = l->offset;
    if (offset < 0) {
        offset = gpiod_chip_get_line_offset_from_name(c->chip, l->name);
        if (offset < 0)
            return fb_error_set(err, FB_ERR_ARG, "GPIO chip %s has no line named %s (`gpioinfo` "
                                                 "lists them)",
                                c->path, l->name);
    }
    gline *gl = calloc(1, sizeof *gl);
    struct gpiod_line_settings *s = gpiod_line_settings_new();
    struct gpiod_line_config *lc = gpiod_line_config_new();
    struct gpiod_request_config *rc = gpiod_request_config_new();
    fb_status st = FB_OK;
    if (!gl || !s || !lc || !rc) {
        st = fb_error_set(err, FB_ERR_NOMEM, "out of memory requesting GPIO line %s", l->name);
        goto out;
    }
    gl->wake[0] = gl->wake[1] = -1;
    gl->offset = (unsigned int)offset;
    gl->line = l;
    int out = l->cfg.direction == FB_GPIO_OUTPUT;
    gpiod_line_settings_set_direction(s, out ? GPIOD_LINE_DIRECTION_OUTPUT
                                             : GPIOD_LINE_DIRECTION_INPUT);
    gpiod_line_settings_set_active_low(s, l->cfg.active_low);
    static const enum gpiod_line_bias biases[] = {GPIOD_LINE_BIAS_AS_IS, GPIOD_LINE_BIAS_DISABLED,
                                                  GPIOD_LINE_BIAS_PULL_UP,
                                                  GPIOD_LINE_BIAS_PULL_DOWN};
    gpiod_line_settings_set_bias(s, biases[l->cfg.bias]);
    if (out)
        gpiod_line_settings_set_output_value(s, l->cfg.initial ? GPIOD_LINE_VALUE_ACTIVE
                                                               : GPIOD_LINE_VALUE_INACTIVE);
    if (!out && l->cfg.edges) {
        gpiod_line_settings_set_edge_detection(s, GPIOD_LINE_EDGE_BOTH);
        gpiod_line_settings_set_event_clock(s, GPIOD_LINE_CLOCK_MONOTONIC);
    }
    if (gpiod_line_config_add_line_settings(lc, &gl->offset, 1, s) != 0) {
        st = fb_error_set(err, FB_ERR_IO, "configuring GPIO line %s failed: %s", l->name,
                          strerror(errno));
        goto out;
    }
    gpiod_request_config_set_consumer(rc, "fotabench");
    gl->req = gpiod_chip_request_lines(c->chip, rc, lc);
    if (!gl->req) {
        int e = errno;
        if (e == EBUSY) {
            /* The kernel tells who holds the line (its consumer label, not a pid). */
            char holder[80] = "";
            const char *kname = NULL;
            struct gpiod_line_info *info = gpiod_chip_get_line_info(c->chip, (unsigned)offset);
            if (info) {
                const char *who = gpiod_line_info_get_consumer(info);
                if (who && *who)
                    snprintf(holder, sizeof holder, "\"%.70s\"", who);
                kname = gpiod_line_info_get_name(info);
            }
            st = fb_error_set(err, FB_ERR_BUSY,
                              "GPIO line %s (offset %d%s%s%s) on %s is busy: held by %s "
                              "(`gpioinfo %s` shows the holder)",
                              l->name, offset, kname && *kname ? ", named \"" : "",
                              kname && *kname ? kname : "", kname && *kname ? "\"" : "",
                              c->path, holder[0] ? holder : "another program", c->path);
            if (info)
                gpiod_line_info_free(info);
            goto out;
        }
        st = fb_error_set(err, FB_ERR_IO, "requesting GPIO line %s (offset %d) on %s failed: %s",
                          l->name, offset, c->path, strerror(e));
        goto out;
    }
    l->offset = offset;
    l->bdata = gl;
    l->seq_from_one = 1; /* line_seqno of a new request starts at 1 */
    if (!out && l->cfg.edges) {
        if (pipe2(gl->wake, O_CLOEXEC | O_NONBLOCK) != 0 ||
            pthread_create(&gl->thread, NULL, edge_main, gl) != 0) {
            st = fb_error_set(err, FB_ERR_IO, "cannot start the edge thread of GPIO line %s",
                              l->name);
            gpiod_line_request_release(gl->req);
            l->bdata = NULL;
            goto out;
        }
        gl->thread_started = 1;
    }
out:
    if (st != FB_OK && gl) {
        if (gl->wake[0] >= 0)
            close(gl->wake[0]);
        if (gl->wake[1] >= 0)
            close(gl->wake[1]);
        free(gl);
    }
    gpiod_line_settings_free(s);
    gpiod_line_config_free(lc);
    gpiod_request_config_free(rc);
    return st;
}

static void g_release(fb_gpio *g, fb_gpio_line *l)
{
    (void)g;
    gline *gl = l->bdata;
    if (!gl)
        return;
    if (gl->thread_started) {
        char c = 1;
        while (write(gl->wake[1], &c, 1) < 0 && errno == EINTR) {
        }
        pthread_join(gl->thread, NULL);
        close(gl->wake[0]);
        close(gl->wake[1]);
    }
    gpiod_line_request_release(gl->req);
    free(gl);
    l->bdata = NULL;
}

static fb_status g_set(fb_gpio *g, fb_gpio_line *l, int value, int64_t *t_ns, fb_error *err)
{
    (void)g;
    gline *gl = l->bdata;
    if (gpiod_line_request_set_value(gl->req, gl->offset, value ? GPIOD_LINE_VALUE_ACTIVE
                                                                : GPIOD_LINE_VALUE_INACTIVE) != 0)
        return fb_error_set(err, FB_ERR_IO, "setting GPIO line %s failed: %s", l->name,
                            strerror(errno));
    *t_ns = fb_now_ns();
    return FB_OK;
}

static fb_status g_get(fb_gpio *g, fb_gpio_line *l, int *value, fb_error *err)
{
    (void)g;
    gline *gl = l->bdata;
    enum gpiod_line_value v = gpiod_line_request_get_value(gl->req, gl->offset);
    if (v == GPIOD_LINE_VALUE_ERROR)
        return fb_error_set(err, FB_ERR_IO, "reading GPIO line %s failed: %s", l->name,
                            strerror(errno));
    *value = v == GPIOD_LINE_VALUE_ACTIVE;
    return FB_OK;
}

const gpio_ops fb_gpio_gpiod_ops = {"gpiod", g_request, g_release, g_set, g_get, g_close};
