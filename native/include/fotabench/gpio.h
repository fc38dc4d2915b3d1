/* fotabench C core: GPIO lines of a bench: a real chip through libgpiod v2
 * (/dev/gpiochipN) or a virtual module's board through its gpio.sock (the virtual line
 * protocol of docs/architecture.md), behind one interface.
 *
 * Outputs (PWRKEY, RESET, the VBAT relay) stay requested for the whole session: a
 * released line may revert. Values here are logical: with active_low, logical 1 is
 * the physical low level. Inputs watched for both edges deliver every edge with the
 * kernel's (or the board's) CLOCK_MONOTONIC timestamp and a per-line sequence number;
 * a gap in the numbers is counted and reported (FB_ERR_LOST), never hidden. */
#ifndef FOTABENCH_GPIO_H
#define FOTABENCH_GPIO_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"
#include "fotabench/timeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fb_gpio fb_gpio;           /* a chip or a virtual board: opaque */
typedef struct fb_gpio_line fb_gpio_line; /* a requested line, owned by its fb_gpio */

typedef enum fb_gpio_direction { FB_GPIO_INPUT = 0, FB_GPIO_OUTPUT = 1 } fb_gpio_direction;

typedef enum fb_gpio_bias {
    FB_GPIO_BIAS_AS_IS = 0,
    FB_GPIO_BIAS_DISABLED = 1,
    FB_GPIO_BIAS_PULL_UP = 2,
    FB_GPIO_BIAS_PULL_DOWN = 3
} fb_gpio_bias;

typedef struct fb_gpio_line_config {
    fb_gpio_direction direction;
    int active_low;
    fb_gpio_bias bias;
    int initial;      /* outputs: logical value at request */
    int edges;        /* inputs: watch both edges */
    size_t queue_max; /* edges kept for fb_gpio_next_edge; 0 = 4096 */
} fb_gpio_line_config;

void fb_gpio_line_config_init(fb_gpio_line_config *cfg);

/* path: /dev/gpiochipN, gpiochipN, or a chip's label (the first chip under /dev that
 * has it); FB_ERR_CLOSED when no chip has that name or label. */
fb_gpio *fb_gpio_open_chip(const char *path, fb_timeline *timeline, fb_error *err);
fb_gpio *fb_gpio_open_virtual(const char *socket_path, fb_timeline *timeline, fb_error *err);
/* Release every line and close. NULL is fine. */
void fb_gpio_close(fb_gpio *gpio);
const char *fb_gpio_backend_name(const fb_gpio *gpio); /* "gpiod" / "virtual" */

/* Request a line by name (offset < 0) or by offset (name NULL). FB_ERR_BUSY when
 * another program holds it (gpiochip: the message names the holder's consumer label
 * as the kernel reports it). */
fb_gpio_line *fb_gpio_request(fb_gpio *gpio, const char *name, int offset,
                              const fb_gpio_line_config *cfg, fb_error *err);
void fb_gpio_release(fb_gpio_line *line);
const char *fb_gpio_line_name(const fb_gpio_line *line);

/* Set a logical value; *t_ns (optional) when it was applied (the board's stamp for
 * virtual lines). */
fb_status fb_gpio_set(fb_gpio_line *line, int value, int64_t *t_ns, fb_error *err);
fb_status fb_gpio_get(fb_gpio_line *line, int *value, fb_error *err);
/* Hold value for duration_ns from the moment it was applied, then the opposite:
 * PWRKEY's power-on pulse. The times it was applied are returned. */
fb_status fb_gpio_pulse(fb_gpio_line *line, int value, int64_t duration_ns, int64_t *t_start,
                        int64_t *t_end, fb_error *err);

typedef struct fb_gpio_edge {
    int value;      /* logical value after the edge */
    int64_t t_ns;   /* kernel / board timestamp, CLOCK_MONOTONIC */
    uint64_t seq;   /* the line's own sequence number (kernel line_seqno / board seq) */
    uint64_t missed_before; /* edges missed just before this one (sequence gap) */
} fb_gpio_edge;

/* Next edge of a watched input, waiting until deadline (0 = do not wait,
 * FB_DEADLINE_NEVER = no limit); *got 0 at
 * the deadline. FB_ERR_LOST once where edges were missed, in stream order: before
 * the edge that follows a sequence gap, or first thing after the full queue dropped
 * its oldest; the next call goes on. */
fb_status fb_gpio_next_edge(fb_gpio_line *line, int64_t deadline, fb_gpio_edge *out, int *got,
                            fb_error *err);

/* Edge listeners run on the backend's thread for every edge, in order, before the
 * queue; removing waits for a call in progress. At most 8 per line. */
typedef void (*fb_gpio_edge_fn)(void *ctx, const fb_gpio_edge *edge);
fb_status fb_gpio_add_listener(fb_gpio_line *line, fb_gpio_edge_fn fn, void *ctx, fb_error *err);
void fb_gpio_remove_listener(fb_gpio_line *line, fb_gpio_edge_fn fn, void *ctx);

typedef struct fb_gpio_line_stats {
    uint64_t edges;         /* delivered */
    uint64_t lost;          /* missed per the sequence numbers */
    uint64_t dropped;       /* dropped from a full queue */
} fb_gpio_line_stats;
void fb_gpio_line_get_stats(fb_gpio_line *line, fb_gpio_line_stats *out);

/* Parse one line of the virtual line protocol (exposed for the fuzzer and tests).
 * Kinds: OK <t>, ERR <text>, VAL <line> <v> <t>, EDGE <line> <v> <t> <seq>,
 * LINE <name> <in|out> <v>, BYE <text> (the board closes the connection: why).
 * Returns 0 and fills out, or -1 for a malformed line. */
typedef enum fb_vline_kind {
    FB_VLINE_OK,
    FB_VLINE_ERR,
    FB_VLINE_VAL,
    FB_VLINE_EDGE,
    FB_VLINE_LINE,
    FB_VLINE_BYE
} fb_vline_kind;
typedef struct fb_vline {
    fb_vline_kind kind;
    char name[64]; /* line name, or the ERR / BYE text (cut) */
    int value;
    int is_output; /* LINE: "out" (a module output, the bench's input) */
    int64_t t_ns;
    uint64_t seq;
} fb_vline;
int fb_vline_parse(const char *s, size_t n, fb_vline *out);

#ifdef __cplusplus
}
#endif
#endif
