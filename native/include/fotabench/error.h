/* fotabench C core: status codes and error reports.
 *
 * Every core call that can fail returns an fb_status and, when the caller passes
 * a non-NULL fb_error, fills it with the same code and a one-line message that
 * says what was wrong and what to do about it. No global error state: each call
 * reports through its own argument, so threads never see each other's errors. */
#ifndef FOTABENCH_ERROR_H
#define FOTABENCH_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fb_status {
    FB_OK = 0,
    FB_ERR_ARG = -1,         /* a caller's argument is out of range */
    FB_ERR_IO = -2,          /* open/read/write/rename failed (errno in the message) */
    FB_ERR_NOMEM = -3,       /* allocation failed */
    FB_ERR_IMAGE = -4,       /* not a valid OpenCPU app image (GFH header) */
    FB_ERR_MODEL = -5,       /* image does not fit the selected module model */
    FB_ERR_PACKAGE = -6,     /* not a valid FOTA package (layout or header) */
    FB_ERR_CHECKSUM = -7,    /* header CRC or MD5 mismatch */
    FB_ERR_URL = -8,         /* URL the module's parser would refuse */
    FB_ERR_CRYPTO = -9,      /* OpenSSL refused an operation */
    FB_ERR_UNSUPPORTED = -10, /* valid but not supported by the module (e.g. Core image) */
    FB_ERR_TIMEOUT = -11,    /* a bench wait ran out (absolute or inactivity timeout) */
    FB_ERR_CLOSED = -12,     /* port/line/connection closed or gone (unplugged, peer exited) */
    FB_ERR_LOST = -13,       /* data or events were lost (buffer overflow, sequence gap) */
    FB_ERR_PROTOCOL = -14,   /* the other side answered something the protocol does not allow */
    FB_ERR_CANCELLED = -15,  /* stopped because the caller asked (fb_cancel: a signal) */
    FB_ERR_BUSY = -16        /* taken by another user (a port's byte stream by its AT engine) */
} fb_status;

#define FB_ERROR_MSG_MAX 400

typedef struct fb_error {
    fb_status code;
    char message[FB_ERROR_MSG_MAX];
} fb_error;

/* Asked between chunks of a long operation (building a package, wrapping an image):
 * nonzero stops it; it cleans up (no temporary file left) and returns FB_ERR_CANCELLED
 * with the message set by whoever stopped it, if any. NULL = never stop. */
typedef struct fb_cancel {
    int (*stop)(void *ctx);
    void *ctx;
} fb_cancel;

/* 1 when cancel asks to stop (err set to FB_ERR_CANCELLED), else 0. */
int fb_cancelled(const fb_cancel *cancel, fb_error *err);

/* Short stable name of a status, e.g. "FB_ERR_CHECKSUM". */
const char *fb_status_name(fb_status code);

/* Fill err (if not NULL) and return code. printf-style message. */
fb_status fb_error_set(fb_error *err, fb_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Reset err to FB_OK with an empty message. */
void fb_error_clear(fb_error *err);

#ifdef __cplusplus
}
#endif
#endif
