/* Minimal assertion helpers for the C test drivers. Hand-written: pytest runs each
 * driver and reads its exit status and output, so a full C test framework would only
 * add a dependency. Each CHECK prints file:line and the failing expression. */
#ifndef FOTABENCH_TEST_CHECK_H
#define FOTABENCH_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(expr)                                                                       \
    do {                                                                                  \
        if (!(expr)) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);      \
            check_failures++;                                                             \
        }                                                                                 \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                \
    do {                                                                                  \
        long long va_ = (long long)(a), vb_ = (long long)(b);                             \
        if (va_ != vb_) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,   \
                    __LINE__, #a, #b, va_, vb_);                                          \
            check_failures++;                                                             \
        }                                                                                 \
    } while (0)

#define CHECK_CONTAINS(haystack, needle)                                                  \
    do {                                                                                  \
        if (!strstr((haystack), (needle))) {                                              \
            fprintf(stderr, "%s:%d: CHECK failed: '%s' does not contain '%s'\n", __FILE__, \
                    __LINE__, (haystack), (needle));                                      \
            check_failures++;                                                             \
        }                                                                                 \
    } while (0)

#define CHECK_DONE()                                                                      \
    do {                                                                                  \
        if (check_failures) {                                                             \
            fprintf(stderr, "%d check(s) failed\n", check_failures);                      \
            return 1;                                                                     \
        }                                                                                 \
        printf("all checks passed\n");                                                    \
        return 0;                                                                         \
    } while (0)

#endif
