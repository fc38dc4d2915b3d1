/* C-level checks of the line splitter and the AT engine (detached, fed by hand, so
 * every interleaving is exact), under ASan/UBSan/LSan too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fotabench/at.h"
#include "fotabench/clock.h"
#include "linesplit.h"

typedef struct {
    char lines[16][64];
    unsigned flags[16];
    int n;
} got_lines;

static void collect(void *ctx, const char *line, size_t n, unsigned flags)
{
    got_lines *g = ctx;
    if (g->n < 16) {
        snprintf(g->lines[g->n], sizeof g->lines[g->n], "%.*s", (int)n, line);
        g->flags[g->n++] = flags;
    }
}

static void test_split(void)
{
    fb_linesplit s;
    fb_error err;
    CHECK_EQ_INT(fb_linesplit_init(&s, 8, &err), FB_OK);
    got_lines g = {0};
    const char *in = "OK\r\n\r\nA\rB\nlonger-than-8\r\npart";
    /* fed byte by byte: the split must not depend on chunking */
    for (size_t i = 0; i < strlen(in); i++)
        fb_linesplit_feed(&s, in + i, 1, collect, &g);
    CHECK_EQ_INT(g.n, 5);
    CHECK(strcmp(g.lines[0], "OK") == 0);
    CHECK(strcmp(g.lines[1], "A") == 0);
    CHECK(strcmp(g.lines[2], "B") == 0);
    CHECK(strcmp(g.lines[3], "longer-t") == 0);
    CHECK_EQ_INT(g.flags[3], FB_LINE_CUT);
    CHECK(strcmp(g.lines[4], "han-8") == 0);
    CHECK_EQ_INT(g.flags[4], FB_LINE_CONT);
    size_t n;
    const char *p = fb_linesplit_partial(&s, &n);
    CHECK_EQ_INT(n, 4);
    CHECK(memcmp(p, "part", 4) == 0);
    fb_linesplit_free(&s);
    CHECK_EQ_INT(fb_linesplit_init(&s, 1, &err), FB_ERR_ARG);
}

static void test_final(void)
{
    fb_at_result r;
    long code;
    CHECK(fb_at_final("OK", 2, NULL, &r, &code) && r == FB_AT_OK);
    CHECK(!fb_at_final("OKAY", 4, NULL, &r, &code));
    CHECK(fb_at_final("+CME ERROR: 3518", 16, NULL, &r, &code) && r == FB_AT_CME_ERROR &&
          code == 3518);
    CHECK(fb_at_final("+CMS ERROR: SIM busy", 20, NULL, &r, &code) && r == FB_AT_CMS_ERROR &&
          code == -1);
    CHECK(fb_at_final("+CME ERROR: 99999999999999999999", 32, NULL, &r, &code) && code == -1);
    CHECK(fb_at_final("> ", 2, "> ", &r, &code) && r == FB_AT_CUSTOM);
    CHECK(fb_at_final("NO CARRIER", 10, NULL, &r, &code) && r == FB_AT_OTHER);
}

static void feed(fb_at *at, const char *s)
{
    fb_at_feed(at, (const uint8_t *)s, strlen(s), fb_now_ns());
}

typedef struct {
    int n;
    char last[64];
} urc_seen;

static void on_urc(void *ctx, const char *line, size_t n, int64_t t)
{
    urc_seen *u = ctx;
    (void)t;
    u->n++;
    snprintf(u->last, sizeof u->last, "%.*s", (int)n, line);
}

static void test_engine(void)
{
    fb_error err;
    fb_timeline *tl = fb_timeline_new(&err);
    fb_at *at = fb_at_new(NULL, tl, "uart1", 0, 4, &err);
    CHECK(at != NULL);
    if (!at)
        return;
    urc_seen u = {0, ""};
    CHECK_EQ_INT(fb_at_set_urc_callback(at, on_urc, &u, &err), FB_OK);
    fb_at_response r;
    int done;
    /* Echo, own +CREG: line, a URC in the middle, final OK. */
    CHECK_EQ_INT(fb_at_start(at, "AT+CREG?", NULL, &err), FB_OK);
    CHECK_EQ_INT(fb_at_start(at, "AT", NULL, &err), FB_ERR_ARG); /* busy */
    feed(at, "AT+CREG?\r\r\n+CREG: 0,1\r\n+FBSTATE: UP_GETTING_FILE,45\r\n\r\nOK\r\n");
    CHECK_EQ_INT(fb_at_wait(at, fb_now_ns(), FB_DEADLINE_NEVER, FB_DEADLINE_NEVER, &r, &done, &err), FB_OK);
    CHECK_EQ_INT(done, 1);
    CHECK_EQ_INT(r.result, FB_AT_OK);
    CHECK_EQ_INT(r.echoed, 1);
    CHECK_EQ_INT(r.count, 1);
    CHECK(r.count == 1 && strcmp(r.lines[0], "+CREG: 0,1") == 0);
    fb_at_response_free(&r);
    CHECK_EQ_INT(fb_at_flush_callbacks(at, fb_now_ns() + 5 * FB_NS_PER_S), 1);
    CHECK_EQ_INT(u.n, 1);
    CHECK_EQ_INT(fb_at_urc_dropped(at), 0);
    CHECK(strcmp(u.last, "+FBSTATE: UP_GETTING_FILE,45") == 0);
    char *line;
    size_t n;
    int64_t t;
    int urc;
    CHECK_EQ_INT(fb_at_next_line(at, 0, &line, &n, &t, &urc, &err), FB_OK);
    CHECK(line && strcmp(line, "+FBSTATE: UP_GETTING_FILE,45") == 0 && urc == 1);
    free(line);
    CHECK_EQ_INT(fb_at_next_line(at, 0, &line, &n, &t, &urc, &err), FB_OK);
    CHECK(line == NULL);

    /* +CME ERROR with a number. */
    CHECK_EQ_INT(fb_at_start(at, "AT+FBUPG=\"http://x/y.bin\"", NULL, &err), FB_OK);
    feed(at, "+CME ERROR: 3518\r\n");
    CHECK_EQ_INT(fb_at_wait(at, fb_now_ns(), FB_DEADLINE_NEVER, FB_DEADLINE_NEVER, &r, &done, &err), FB_OK);
    CHECK(done && r.result == FB_AT_CME_ERROR && r.error_code == 3518 && !r.echoed);
    fb_at_response_free(&r);

    /* A module that never answers: the absolute timeout, then the inactivity one. */
    CHECK_EQ_INT(fb_at_start(at, "AT+CSQ", NULL, &err), FB_OK);
    feed(at, "+CSQ: 20,0\r\n");
    CHECK_EQ_INT(fb_at_wait(at, fb_now_ns() + FB_NS_PER_S, fb_now_ns() + 20 * FB_NS_PER_MS,
                            FB_DEADLINE_NEVER, &r, &done, &err),
                 FB_ERR_TIMEOUT);
    CHECK_CONTAINS(err.message, "AT+CSQ");
    CHECK_CONTAINS(err.message, "1 response line so far");
    CHECK_EQ_INT(fb_at_start(at, "AT+CSQ", NULL, &err), FB_OK);
    CHECK_EQ_INT(fb_at_wait(at, fb_now_ns() + FB_NS_PER_S, FB_DEADLINE_NEVER, 20 * FB_NS_PER_MS,
                            &r, &done, &err),
                 FB_ERR_TIMEOUT);
    CHECK_CONTAINS(err.message, "no byte received for 0.0 s");
    /* A late answer after a timeout is unsolicited, never a later command's. */
    feed(at, "OK\r\n");
    CHECK_EQ_INT(fb_at_next_line(at, 0, &line, &n, &t, &urc, &err), FB_OK);
    CHECK(line && strcmp(line, "OK") == 0 && urc == 0);
    free(line);

    /* Custom terminator without a line end (a prompt). */
    CHECK_EQ_INT(fb_at_start(at, "AT+CMGS=\"123\"", "> ", &err), FB_OK);
    feed(at, "AT+CMGS=\"123\"\r\r\n> ");
    CHECK_EQ_INT(fb_at_wait(at, fb_now_ns(), FB_DEADLINE_NEVER, FB_DEADLINE_NEVER, &r, &done, &err), FB_OK);
    CHECK(done && r.result == FB_AT_CUSTOM && r.echoed);
    fb_at_response_free(&r);

    /* Queue overflow (capacity 4) is reported once, then the newest lines come. */
    feed(at, "a\r\nb\r\nc\r\nd\r\ne\r\nf\r\n");
    CHECK_EQ_INT(fb_at_next_line(at, 0, &line, &n, &t, &urc, &err), FB_ERR_LOST);
    CHECK_CONTAINS(err.message, "2 unsolicited lines");
    CHECK_EQ_INT(fb_at_next_line(at, 0, &line, &n, &t, &urc, &err), FB_OK);
    CHECK(line && strcmp(line, "c") == 0);
    free(line);

    /* Garbage: NULs and binary inside a line are kept as bytes. */
    fb_at_feed(at, (const uint8_t *)"x\0\xff y\r\n", 6, fb_now_ns());
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(fb_at_next_line(at, 0, &line, &n, &t, &urc, &err), FB_OK);
        free(line);
    }
    CHECK_EQ_INT(fb_at_next_line(at, 0, &line, &n, &t, &urc, &err), FB_OK);
    CHECK(line && n == 5 && memcmp(line, "x\0\xff y", 5) == 0);
    free(line);

    CHECK_EQ_INT(fb_at_start(at, "AT\r\nAT", NULL, &err), FB_ERR_ARG);
    CHECK(fb_timeline_count(tl) > 5);
    fb_at_free(at);
    fb_timeline_free(tl);
}

/* The one wait rule in the engine: a deadline or inactivity limit of 0 is already
 * over (no wait), FB_DEADLINE_NEVER is no limit; next_line polls with 0. */
static void test_wait_rule(void)
{
    fb_error err;
    fb_at *at = fb_at_new(NULL, NULL, "uart1", 0, 0, &err);
    CHECK(at != NULL);
    if (!at)
        return;
    fb_at_response r;
    int done = 0;
    int64_t t0 = fb_now_ns();
    CHECK_EQ_INT(fb_at_start(at, "AT", NULL, &err), FB_OK);
    CHECK_EQ_INT(fb_at_wait(at, FB_DEADLINE_NEVER, 0, FB_DEADLINE_NEVER, &r, &done, &err),
                 FB_ERR_TIMEOUT);
    CHECK_EQ_INT(fb_at_start(at, "AT", NULL, &err), FB_OK);
    CHECK_EQ_INT(fb_at_wait(at, FB_DEADLINE_NEVER, FB_DEADLINE_NEVER, 0, &r, &done, &err),
                 FB_ERR_TIMEOUT);
    CHECK_CONTAINS(err.message, "no byte received");
    /* Neither limit: only the slice ends the wait, with nothing done. */
    CHECK_EQ_INT(fb_at_start(at, "AT", NULL, &err), FB_OK);
    CHECK_EQ_INT(fb_at_wait(at, fb_now_ns() + 20 * FB_NS_PER_MS, FB_DEADLINE_NEVER,
                            FB_DEADLINE_NEVER, &r, &done, &err),
                 FB_OK);
    CHECK_EQ_INT(done, 0);
    feed(at, "OK\r\n");
    CHECK_EQ_INT(fb_at_wait(at, 0, FB_DEADLINE_NEVER, FB_DEADLINE_NEVER, &r, &done, &err),
                 FB_OK);
    CHECK_EQ_INT(done, 1);
    fb_at_response_free(&r);
    char *line = NULL;
    size_t n;
    int64_t t;
    int urc;
    CHECK_EQ_INT(fb_at_next_line(at, 0, &line, &n, &t, &urc, &err), FB_OK);
    CHECK(line == NULL);
    CHECK_EQ_INT(fb_at_next_line(at, fb_now_ns() - FB_NS_PER_S, &line, &n, &t, &urc, &err),
                 FB_OK);
    CHECK(line == NULL);
    CHECK(fb_now_ns() - t0 < FB_NS_PER_S);
    feed(at, "+CREG: 1\r\n");
    CHECK_EQ_INT(fb_at_next_line(at, FB_DEADLINE_NEVER, &line, &n, &t, &urc, &err), FB_OK);
    CHECK(line && strcmp(line, "+CREG: 1") == 0);
    free(line);
    uint64_t rx = fb_at_rx_count(at);
    t0 = fb_now_ns();
    fb_at_wait_rx(at, rx, 0);
    CHECK(fb_now_ns() - t0 < 20 * FB_NS_PER_MS);
    CHECK_EQ_INT(fb_at_flush_callbacks(at, 0), 1);
    fb_at_free(at);
}

int main(void)
{
    test_split();
    test_final();
    test_engine();
    test_wait_rule();
    CHECK_DONE();
}
