#include "fotabench/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *fb_status_name(fb_status code)
{
    switch (code) {
    case FB_OK: return "FB_OK";
    case FB_ERR_ARG: return "FB_ERR_ARG";
    case FB_ERR_IO: return "FB_ERR_IO";
    case FB_ERR_NOMEM: return "FB_ERR_NOMEM";
    case FB_ERR_IMAGE: return "FB_ERR_IMAGE";
    case FB_ERR_MODEL: return "FB_ERR_MODEL";
    case FB_ERR_PACKAGE: return "FB_ERR_PACKAGE";
    case FB_ERR_CHECKSUM: return "FB_ERR_CHECKSUM";
    case FB_ERR_URL: return "FB_ERR_URL";
    case FB_ERR_CRYPTO: return "FB_ERR_CRYPTO";
    case FB_ERR_UNSUPPORTED: return "FB_ERR_UNSUPPORTED";
    case FB_ERR_TIMEOUT: return "FB_ERR_TIMEOUT";
    case FB_ERR_CLOSED: return "FB_ERR_CLOSED";
    case FB_ERR_LOST: return "FB_ERR_LOST";
    case FB_ERR_PROTOCOL: return "FB_ERR_PROTOCOL";
    case FB_ERR_CANCELLED: return "FB_ERR_CANCELLED";
    case FB_ERR_BUSY: return "FB_ERR_BUSY";
    }
    return "FB_ERR_UNKNOWN";
}

fb_status fb_error_set(fb_error *err, fb_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void fb_error_clear(fb_error *err)
{
    if (err) {
        err->code = FB_OK;
        err->message[0] = '\0';
    }
}

int fb_cancelled(const fb_cancel *cancel, fb_error *err)
{
    if (!cancel || !cancel->stop || !cancel->stop(cancel->ctx))
        return 0;
    fb_error_set(err, FB_ERR_CANCELLED, "stopped before the end (interrupted)");
    return 1;
}
