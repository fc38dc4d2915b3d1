/* fotabench C core: MD5 through OpenSSL EVP, streaming, constant memory. */
#ifndef FOTABENCH_MD5_H
#define FOTABENCH_MD5_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FB_MD5_LEN 16
#define FB_MD5_HEX_LEN 33 /* 32 hex digits and a NUL */

typedef struct fb_md5 fb_md5; /* opaque: owns an EVP_MD_CTX */

fb_md5 *fb_md5_new(fb_error *err);
fb_status fb_md5_update(fb_md5 *md5, const void *data, size_t len, fb_error *err);
/* Writes the digest; the context can be reused after fb_md5_reset. */
fb_status fb_md5_final(fb_md5 *md5, uint8_t out[FB_MD5_LEN], fb_error *err);
fb_status fb_md5_reset(fb_md5 *md5, fb_error *err);
void fb_md5_free(fb_md5 *md5);

/* Digest of everything readable from fd until EOF. */
fb_status fb_md5_fd(int fd, uint8_t out[FB_MD5_LEN], fb_error *err);
/* Digest of a whole regular file (a FIFO or device is refused at once, without
 * blocking in open); path "-" is not special here (callers decide). */
fb_status fb_md5_file(const char *path, uint8_t out[FB_MD5_LEN], fb_error *err);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void fb_hex(const uint8_t *bytes, size_t n, char *out);

#ifdef __cplusplus
}
#endif
#endif
