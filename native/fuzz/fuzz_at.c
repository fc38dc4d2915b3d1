/* libFuzzer target: the serial line splitter and the AT engine on arbitrary bytes
 * from a module (garbage, NULs, endless lines, stray finals, URCs mid-response).
 *
 *   make -C native fuzz && native/build/fuzz/fuzz_at CORPUS_DIR
 *
 * Input: byte 0 picks the line buffer size (2..65) and byte 1 the chunking; a command
 * is pending while the rest is fed in chunks. Invariants: the split does not depend on
 * the chunking, no line holds CR or LF or exceeds the buffer, the engine's lines and
 * response are well formed, and every call returns a defined status. Violations
 * abort() so libFuzzer saves the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/at.h"
#include "fotabench/clock.h"
#include "linesplit.h"
#include "fuzz_common.h"

typedef struct {
    uint8_t out[8192];
    size_t len, max;
    size_t lines;
} record;

/* Lines joined with a separator byte the splitter never emits ('\n'), with flags. */
static void rec(void *ctx, const char *line, size_t n, unsigned flags)
{
    record *r = ctx;
    FAIL_IF(n == 0, "empty line delivered");
    FAIL_IF(n > r->max, "line of %zu bytes, buffer %zu", n, r->max);
    FAIL_IF(memchr(line, '\r', n) || memchr(line, '\n', n), "line with CR/LF");
    FAIL_IF(flags > (FB_LINE_CUT | FB_LINE_CONT), "flags %u", flags);
    r->lines++;
    if (r->len + n + 2 <= sizeof r->out) {
        memcpy(r->out + r->len, line, n);
        r->len += n;
        r->out[r->len++] = (uint8_t)('0' + flags);
        r->out[r->len++] = '\n';
    }
}

static void check_split(const uint8_t *d, size_t n, size_t max, uint8_t chunking)
{
    fb_linesplit a, b;
    FAIL_IF(fb_linesplit_init(&a, max, NULL) != FB_OK, "init");
    FAIL_IF(fb_linesplit_init(&b, max, NULL) != FB_OK, "init");
    record ra = {.max = max}, rb = {.max = max};
    fb_linesplit_feed(&a, (const char *)d, n, rec, &ra);
    size_t step = (size_t)(chunking % 7) + 1;
    for (size_t i = 0; i < n; i += step)
        fb_linesplit_feed(&b, (const char *)d + i, n - i < step ? n - i : step, rec, &rb);
    size_t pa, pb;
    const char *qa = fb_linesplit_partial(&a, &pa), *qb = fb_linesplit_partial(&b, &pb);
    FAIL_IF(ra.lines != rb.lines || ra.len != rb.len || memcmp(ra.out, rb.out, ra.len) != 0,
            "chunking changed the lines (%zu vs %zu)", ra.lines, rb.lines);
    FAIL_IF(pa != pb || memcmp(qa, qb, pa) != 0, "chunking changed the partial line");
    FAIL_IF(pa > max, "partial of %zu", pa);
    fb_linesplit_free(&a);
    fb_linesplit_free(&b);
}

static void check_engine(const uint8_t *d, size_t n, size_t max, uint8_t chunking)
{
    fb_error err;
    fb_at *at = fb_at_new(NULL, NULL, "fuzz", max, 8, &err);
    FAIL_IF(!at, "fb_at_new: %s", err.message);
    const char *cmds[] = {"AT", "AT+CREG?", "AT+FBVER?", "AT+CMGS=\"1\""};
    const char *term = (chunking & 0x80) ? "> " : NULL;
    fb_status st = fb_at_start(at, cmds[chunking & 3], term, &err);
    FAIL_IF(st != FB_OK, "start: %s", err.message);
    size_t step = (size_t)(chunking % 5) + 1;
    for (size_t i = 0; i < n; i += step) {
        fb_at_feed(at, d + i, n - i < step ? n - i : step, fb_now_ns());
        fb_at_response r;
        int done = 0;
        st = fb_at_wait(at, 0, FB_DEADLINE_NEVER, FB_DEADLINE_NEVER, &r, &done, &err);
        if (st == FB_OK && done) {
            FAIL_IF(r.final == NULL && r.final_len, "final");
            for (size_t k = 0; k < r.count; k++)
                FAIL_IF(r.lens[k] > max || memchr(r.lines[k], '\n', r.lens[k]),
                        "response line %zu", k);
            FAIL_IF(r.result > FB_AT_OTHER, "result %d", (int)r.result);
            fb_at_response_free(&r);
            st = fb_at_start(at, cmds[(i + chunking) & 3], term, &err);
            FAIL_IF(st != FB_OK, "restart: %s", err.message);
        } else {
            FAIL_IF(st != FB_OK, "wait: %s", err.message);
        }
    }
    for (;;) {
        char *line;
        size_t ln;
        int64_t t;
        int urc;
        st = fb_at_next_line(at, 0, &line, &ln, &t, &urc, &err);
        FAIL_IF(st != FB_OK && st != FB_ERR_LOST, "next_line %d", (int)st);
        if (st == FB_OK && !line)
            break;
        if (line) {
            FAIL_IF(ln > max || line[ln] != '\0', "queued line of %zu", ln);
            free(line);
        }
    }
    char part[128];
    FAIL_IF(fb_at_partial(at, part, sizeof part) > max, "partial");
    fb_at_free(at);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 8192)
        return 0;
    size_t max = (size_t)(data[0] % 64) + 2;
    check_split(data + 2, size - 2, max, data[1]);
    check_engine(data + 2, size - 2, max, data[1]);
    fb_at_result res;
    long code;
    (void)fb_at_final((const char *)data, size, "> ", &res, &code);
    return 0;
}
