#include "linesplit.h"

#include <stdlib.h>
#include <string.h>

fb_status fb_linesplit_init(fb_linesplit *s, size_t max, fb_error *err)
{
    memset(s, 0, sizeof *s);
    if (max < 2)
        return fb_error_set(err, FB_ERR_ARG, "line buffer must be at least 2 bytes, got %zu", max);
    s->buf = malloc(max);
    if (!s->buf)
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory for a %zu-byte line buffer", max);
    s->max = max;
    return FB_OK;
}

void fb_linesplit_free(fb_linesplit *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->max = 0;
}

void fb_linesplit_reset(fb_linesplit *s)
{
    s->len = 0;
    s->cont = 0;
}

void fb_linesplit_feed(fb_linesplit *s, const char *data, size_t n, fb_line_fn fn, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        if (c == '\r' || c == '\n') {
            if (s->len)
                fn(ctx, s->buf, s->len, s->cont ? FB_LINE_CONT : 0);
            s->len = 0;
            s->cont = 0;
            continue;
        }
        if (s->len == s->max) {
            fn(ctx, s->buf, s->len, FB_LINE_CUT | (s->cont ? FB_LINE_CONT : 0));
            s->len = 0;
            s->cont = 1;
        }
        s->buf[s->len++] = c;
    }
}

const char *fb_linesplit_partial(const fb_linesplit *s, size_t *n)
{
    *n = s->len;
    return s->buf;
}
