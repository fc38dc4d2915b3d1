/* Shared by the libFuzzer targets: the invariant macro and the checks every report
 * and error of the core must satisfy. Header-only: each target is one program. */
#ifndef FOTABENCH_FUZZ_COMMON_H
#define FOTABENCH_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/error.h"
#include "fotabench/report.h"

#define FAIL_IF(cond, ...)                                                                \
    do {                                                                                  \
        if (cond) {                                                                       \
            fprintf(stderr, "%s:%d: invariant violated: %s\n  ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static inline unsigned le16(const uint8_t *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static inline uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline int nul_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* The report and error invariants every check function must keep. */
static inline void check_report(const fb_report *r, fb_status st, const fb_error *err)
{
    FAIL_IF(r->count == 0 || r->count > FB_REPORT_MAX_CHECKS, "count %zu", r->count);
    size_t failures = fb_report_failures(r);
    FAIL_IF((st == FB_OK) != (failures == 0), "status %s with %zu failed check(s)",
            fb_status_name(st), failures);
    FAIL_IF(!nul_terminated(err->message, sizeof err->message), "err.message not terminated");
    FAIL_IF(err->code != st, "err.code %s, returned %s", fb_status_name(err->code),
            fb_status_name(st));
    if (st == FB_OK)
        FAIL_IF(err->message[0] != '\0', "FB_OK with message '%s'", err->message);
    else
        FAIL_IF(err->message[0] == '\0', "%s with an empty message", fb_status_name(st));
    const fb_check *first_failed = NULL;
    for (size_t i = 0; i < r->count; i++) {
        const fb_check *c = &r->checks[i];
        FAIL_IF(!nul_terminated(c->name, sizeof c->name), "check %zu name not terminated", i);
        FAIL_IF(c->name[0] == '\0', "check %zu has an empty name", i);
        FAIL_IF(!nul_terminated(c->detail, sizeof c->detail), "check %s detail not terminated",
                c->name);
        FAIL_IF(c->ok != 0 && c->ok != 1, "check %s ok=%d", c->name, c->ok);
        FAIL_IF(c->warning != 0 && c->warning != 1, "check %s warning=%d", c->name,
                c->warning);
        FAIL_IF(c->warning && !c->ok, "check %s failed and warned", c->name);
        FAIL_IF(c->ok && c->code != FB_OK, "passed check %s with code %s", c->name,
                fb_status_name(c->code));
        FAIL_IF(!c->ok && c->code == FB_OK, "failed check %s with code FB_OK", c->name);
        for (size_t j = 0; j < i; j++)
            FAIL_IF(strcmp(r->checks[j].name, c->name) == 0, "duplicate check name %s", c->name);
        if (!c->ok && !first_failed)
            first_failed = c;
    }
    if (first_failed) {
        FAIL_IF(st != first_failed->code, "returned %s, first failed check %s is %s",
                fb_status_name(st), first_failed->name, fb_status_name(first_failed->code));
        FAIL_IF(!strstr(err->message, first_failed->name), "message '%s' does not name %s",
                err->message, first_failed->name);
    }
}

#endif
