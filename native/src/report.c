#include "fotabench/report.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void fb_report_init(fb_report *report)
{
    memset(report, 0, sizeof *report);
}

static void add(fb_report *report, const char *name, int ok, int warning, fb_status code,
                const char *fmt, va_list ap)
{
    if (!report || report->count >= FB_REPORT_MAX_CHECKS)
        return;
    fb_check *c = &report->checks[report->count++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->ok = ok ? 1 : 0;
    c->warning = ok && warning;
    c->code = ok ? FB_OK : code;
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
}

int fb_report_add(fb_report *report, const char *name, int ok, fb_status code_if_failed,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(report, name, ok, 0, code_if_failed, fmt, ap);
    va_end(ap);
    return ok;
}

int fb_report_warn(fb_report *report, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(report, name, 1, 1, FB_OK, fmt, ap);
    va_end(ap);
    return 1;
}

size_t fb_report_warnings(const fb_report *report)
{
    size_t n = 0;
    for (size_t i = 0; i < report->count; i++)
        n += report->checks[i].warning != 0;
    return n;
}

size_t fb_report_failures(const fb_report *report)
{
    size_t n = 0;
    for (size_t i = 0; i < report->count; i++)
        n += !report->checks[i].ok;
    return n;
}

fb_status fb_report_status(const fb_report *report, fb_error *err)
{
    for (size_t i = 0; i < report->count; i++) {
        const fb_check *c = &report->checks[i];
        if (!c->ok)
            return fb_error_set(err, c->code, "%s: %s", c->name, c->detail);
    }
    fb_error_clear(err);
    return FB_OK;
}
