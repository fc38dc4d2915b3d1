#include "fotabench/md5.h"

#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 256 KiB reads: large enough that syscalls vanish next to hashing, small enough to
 * stay in L2 alongside the MD5 state. */
#define MD5_READ_CHUNK (256u * 1024u)

struct fb_md5 {
    EVP_MD_CTX *ctx;
};

static fb_status crypto_error(fb_error *err, const char *what)
{
    char buf[200];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return fb_error_set(err, FB_ERR_CRYPTO,
                        "OpenSSL %s failed (%s); is MD5 disabled by the OpenSSL configuration?",
                        what, e ? buf : "no detail");
}

fb_md5 *fb_md5_new(fb_error *err)
{
    fb_md5 *md5 = calloc(1, sizeof *md5);
    if (!md5) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory allocating an MD5 context");
        return NULL;
    }
    md5->ctx = EVP_MD_CTX_new();
    if (!md5->ctx) {
        free(md5);
        fb_error_set(err, FB_ERR_NOMEM, "out of memory allocating an OpenSSL digest context");
        return NULL;
    }
    if (fb_md5_reset(md5, err) != FB_OK) {
        fb_md5_free(md5);
        return NULL;
    }
    return md5;
}

fb_status fb_md5_reset(fb_md5 *md5, fb_error *err)
{
    if (EVP_DigestInit_ex(md5->ctx, EVP_md5(), NULL) != 1)
        return crypto_error(err, "MD5 init");
    return FB_OK;
}

fb_status fb_md5_update(fb_md5 *md5, const void *data, size_t len, fb_error *err)
{
    if (len && EVP_DigestUpdate(md5->ctx, data, len) != 1)
        return crypto_error(err, "MD5 update");
    return FB_OK;
}

fb_status fb_md5_final(fb_md5 *md5, uint8_t out[FB_MD5_LEN], fb_error *err)
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(md5->ctx, out, &n) != 1 || n != FB_MD5_LEN)
        return crypto_error(err, "MD5 final");
    return FB_OK;
}

void fb_md5_free(fb_md5 *md5)
{
    if (md5) {
        EVP_MD_CTX_free(md5->ctx);
        free(md5);
    }
}

fb_status fb_md5_fd(int fd, uint8_t out[FB_MD5_LEN], fb_error *err)
{
    fb_status st;
    fb_md5 *md5 = fb_md5_new(err);
    if (!md5)
        return err ? err->code : FB_ERR_NOMEM;
    uint8_t *buf = malloc(MD5_READ_CHUNK);
    if (!buf) {
        fb_md5_free(md5);
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory allocating a read buffer");
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        ssize_t n = read(fd, buf, MD5_READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = fb_error_set(err, FB_ERR_IO, "read failed: %s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if ((st = fb_md5_update(md5, buf, (size_t)n, err)) != FB_OK)
            goto out;
    }
    st = fb_md5_final(md5, out, err);
out:
    free(buf);
    fb_md5_free(md5);
    return st;
}

fb_status fb_md5_file(const char *path, uint8_t out[FB_MD5_LEN], fb_error *err)
{
    int fd;
    uint64_t size;
    /* A file is needed: a FIFO or device is refused without blocking in open(). */
    fb_status st = fb_open_regular(path, &fd, &size, err);
    if (st != FB_OK)
        return st;
    st = fb_md5_fd(fd, out, err);
    if (st == FB_ERR_IO && err) {
        /* Name the file: fb_md5_fd does not know it. */
        char detail[FB_ERROR_MSG_MAX];
        memcpy(detail, err->message, sizeof detail);
        fb_error_set(err, FB_ERR_IO, "%s: %s", path, detail);
    }
    close(fd);
    return st;
}

void fb_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}
