/* fotabench C core: a list of named checks, each passed, passed with a warning, or
 * failed, with a reason.
 *
 * Inspecting an image or a package runs every check it can instead of stopping at
 * the first failure, so a station operator sees everything that is wrong at once. A
 * warning does not fail anything: it marks what passes but differs from what Quectel's
 * own tools write, or what could not be checked. */
#ifndef FOTABENCH_REPORT_H
#define FOTABENCH_REPORT_H

#include <stddef.h>

#include "fotabench/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FB_REPORT_MAX_CHECKS 32
#define FB_CHECK_NAME_MAX 32
#define FB_CHECK_DETAIL_MAX 240

typedef struct fb_check {
    char name[FB_CHECK_NAME_MAX];     /* stable id, e.g. "header_crc", "app.magic" */
    int ok;                           /* 1 passed (perhaps with a warning), 0 failed */
    int warning;                      /* 1 passed with a warning (ok is 1 too) */
    fb_status code;                   /* status a failure maps to, FB_OK when passed */
    char detail[FB_CHECK_DETAIL_MAX]; /* what was found, and on failure why it matters */
} fb_check;

typedef struct fb_report {
    size_t count;
    fb_check checks[FB_REPORT_MAX_CHECKS];
} fb_report;

void fb_report_init(fb_report *report);

/* Append a check; returns ok. A NULL report is allowed (the check is only evaluated). */
int fb_report_add(fb_report *report, const char *name, int ok, fb_status code_if_failed,
                  const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Append a check that passed with a warning; returns 1. */
int fb_report_warn(fb_report *report, const char *name, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

size_t fb_report_failures(const fb_report *report);
size_t fb_report_warnings(const fb_report *report);

/* FB_OK if every check passed, else the first failed check's status, with
 * "<name>: <detail>" as the error message. */
fb_status fb_report_status(const fb_report *report, fb_error *err);

#ifdef __cplusplus
}
#endif
#endif
