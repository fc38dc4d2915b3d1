/* Internal: splitting a serial byte stream into lines (the AT engine's input).
 *
 * CR, LF and CR LF all end a line; empty lines are skipped (so CR LF gives one line).
 * Bytes are kept as they are, NULs and invalid UTF-8 included: a line is (pointer,
 * length). A line longer than the buffer is delivered in pieces of `max` bytes, each
 * flagged, so a flood without line ends costs bounded memory and is never lost. */
#ifndef FOTABENCH_LINESPLIT_H
#define FOTABENCH_LINESPLIT_H

#include <stddef.h>

#include "fotabench/error.h"

#define FB_LINE_CUT 1u  /* this piece ended because the buffer was full */
#define FB_LINE_CONT 2u /* this piece continues a cut line */

typedef void (*fb_line_fn)(void *ctx, const char *line, size_t n, unsigned flags);

typedef struct fb_linesplit {
    char *buf;
    size_t max, len;
    int cont; /* the current piece continues a cut line */
} fb_linesplit;

fb_status fb_linesplit_init(fb_linesplit *s, size_t max, fb_error *err);
void fb_linesplit_free(fb_linesplit *s);
void fb_linesplit_feed(fb_linesplit *s, const char *data, size_t n, fb_line_fn fn, void *ctx);
/* The bytes of the line not yet ended (prompts such as "> "). */
const char *fb_linesplit_partial(const fb_linesplit *s, size_t *n);
void fb_linesplit_reset(fb_linesplit *s);

#endif
