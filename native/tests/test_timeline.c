/* C-level checks of the timeline: concurrent appends, visiting, JSON lines export and
 * the JSON string writer on hostile bytes (run under ASan/UBSan/LSan too). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fotabench/clock.h"
#include "fotabench/timeline.h"

#define THREADS 4
#define PER_THREAD 5000

static void *adder(void *arg)
{
    fb_timeline *tl = arg;
    for (int i = 0; i < PER_THREAD; i++)
        fb_timeline_addf(tl, 0, "thread", "n", NULL, "{\"i\":%d}", i);
    return NULL;
}

typedef struct {
    uint64_t next;
    int64_t last_t;
    int bad;
} order_ctx;

static int check_order(void *ctx, const fb_event *ev)
{
    order_ctx *c = ctx;
    if (ev->seq != c->next++)
        c->bad = 1;
    return 0;
}

static void test_concurrent(void)
{
    fb_error err;
    fb_timeline *tl = fb_timeline_new(&err);
    CHECK(tl != NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, adder, tl);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(fb_timeline_count(tl), THREADS * PER_THREAD);
    order_ctx c = {0, 0, 0};
    fb_timeline_visit(tl, 0, check_order, &c);
    CHECK_EQ_INT(c.bad, 0);
    CHECK_EQ_INT(c.next, THREADS * PER_THREAD);
    /* A wait that is already satisfied returns at once; one in the future times out. */
    CHECK_EQ_INT(fb_timeline_wait(tl, 0, fb_now_ns() + FB_NS_PER_S), THREADS * PER_THREAD);
    CHECK_EQ_INT(fb_timeline_wait(tl, THREADS * PER_THREAD, fb_now_ns() + 1000000),
                 THREADS * PER_THREAD);
    fb_timeline_free(tl);
}

static void test_args(void)
{
    fb_error err;
    fb_timeline *tl = fb_timeline_new(&err);
    char long_name[100];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    CHECK_EQ_INT(fb_timeline_add(tl, 0, "", "k", NULL, NULL, &err), FB_ERR_ARG);
    CHECK_EQ_INT(fb_timeline_add(tl, 0, long_name, "k", NULL, NULL, &err), FB_ERR_ARG);
    CHECK_CONTAINS(err.message, "1 to 64 bytes");
    CHECK_EQ_INT(fb_timeline_add(NULL, 0, "s", "k", NULL, NULL, &err), FB_ERR_ARG);
    uint64_t seq = 99;
    CHECK_EQ_INT(fb_timeline_add(tl, 42, "s", "k", NULL, &seq, &err), FB_OK);
    CHECK_EQ_INT(seq, 0);
    /* A long data object goes through the allocation path of addf. */
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ_INT(fb_timeline_addf(tl, 0, "s", "big", &err, "{\"t\":\"%s\"}", big), FB_OK);
    CHECK_EQ_INT(fb_timeline_count(tl), 2);
    fb_timeline_free(tl);
}

static void test_export(const char *dir)
{
    fb_error err;
    fb_timeline *tl = fb_timeline_new(&err);
    char path[512];
    snprintf(path, sizeof path, "%s/t.jsonl", dir);
    fb_timeline_add(tl, 7, "uart1", "line", "{\"text\":\"OK\"}", NULL, &err);
    fb_timeline_add(tl, 8, "gpio:\"WDI\"", "edge", NULL, NULL, &err);
    CHECK_EQ_INT(fb_timeline_write_jsonl(tl, path, 0, &err), FB_OK);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char buf[1024] = {0};
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    CHECK(strcmp(buf, "{\"seq\":0,\"t_ns\":7,\"source\":\"uart1\",\"kind\":\"line\",\"data\":{\"text\""
                      ":\"OK\"}}\n{\"seq\":1,\"t_ns\":8,\"source\":\"gpio:\\\"WDI\\\"\",\"kind\":"
                      "\"edge\",\"data\":{}}\n") == 0);
    snprintf(path, sizeof path, "%s/missing/t.jsonl", dir);
    CHECK_EQ_INT(fb_timeline_write_jsonl(tl, path, 0, &err), FB_ERR_IO);
    CHECK_CONTAINS(err.message, "missing/t.jsonl");
    fb_timeline_free(tl);
}

static void test_json_string(void)
{
    char out[64];
    int lossy = -1;
    fb_json_string(out, sizeof out, "a\"b\\c\r\n\x01", 8, &lossy);
    CHECK(strcmp(out, "\"a\\\"b\\\\c\\r\\n\\u0001\"") == 0);
    CHECK_EQ_INT(lossy, 0);
    /* NUL inside, valid UTF-8 (é), invalid bytes (lone continuation, overlong, surrogate). */
    fb_json_string(out, sizeof out, "x\0\xC3\xA9\x80\xC0\xAF\xED\xA0\x80", 10, &lossy);
    CHECK(strcmp(out, "\"x\\u0000\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF"
                      "\xBD\xEF\xBF\xBD\"") == 0);
    CHECK_EQ_INT(lossy, 1);
    /* Cut: always terminated and quoted, never mid-escape. */
    char small[8];
    size_t n = fb_json_string(small, sizeof small, "\x01\x02\x03", 3, &lossy);
    CHECK(strcmp(small, "\"\"") == 0); /* quotes around \u0001 need 9 bytes */
    CHECK_EQ_INT(n, strlen(small));
    CHECK_EQ_INT(lossy, 1);
    char tiny[2];
    CHECK_EQ_INT(fb_json_string(tiny, sizeof tiny, "abc", 3, &lossy), 0);
    CHECK_EQ_INT(tiny[0], '\0');
}

static void *add_late(void *arg)
{
    struct timespec ts = {0, 60 * 1000000L};
    nanosleep(&ts, NULL);
    fb_timeline_add(arg, 0, "t", "late", NULL, NULL, NULL);
    return NULL;
}

/* The one wait rule: 0 polls, FB_DEADLINE_NEVER waits until the timeline grows. */
static void test_wait_rule(void)
{
    fb_error err;
    fb_timeline *tl = fb_timeline_new(&err);
    CHECK(tl != NULL);
    if (!tl)
        return;
    int64_t t0 = fb_now_ns();
    CHECK_EQ_INT(fb_timeline_wait(tl, 0, 0), 0);
    CHECK_EQ_INT(fb_timeline_wait(tl, 0, t0 - FB_NS_PER_S), 0);
    CHECK(fb_now_ns() - t0 < 20 * FB_NS_PER_MS);
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, add_late, tl), 0);
    CHECK_EQ_INT(fb_timeline_wait(tl, 0, FB_DEADLINE_NEVER), 1);
    CHECK(fb_now_ns() - t0 >= 50 * FB_NS_PER_MS);
    pthread_join(th, NULL);
    fb_timeline_free(tl);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    test_concurrent();
    test_args();
    test_export(dir);
    test_json_string();
    test_wait_rule();
    CHECK_DONE();
}
