#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

fb_status fb_pread_full(int fd, void *buf, size_t n, uint64_t offset, const char *what,
                        fb_error *err)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, (off_t)(offset + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return fb_error_set(err, FB_ERR_IO, "reading %s failed: %s", what, strerror(errno));
        if (r == 0)
            return fb_error_set(err, FB_ERR_IO,
                                "reading %s: file ended after %llu of %zu bytes (was it truncated "
                                "or changed while being read?)",
                                what, (unsigned long long)done, n);
        done += (size_t)r;
    }
    return FB_OK;
}

fb_status fb_open_regular(const char *path, int *fd_out, uint64_t *size_out, fb_error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fb_error_set(err, FB_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fb_error_set(err, FB_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fb_error_set(err, FB_ERR_IO, "%s is not a regular file", path);
    }
    *fd_out = fd;
    *size_out = (uint64_t)st.st_size;
    return FB_OK;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

fb_status fb_atomic_open(fb_atomic_file *f, const char *path, fb_error *err)
{
    f->fd = -1;
    f->tmp_path = NULL;
    f->final_path = dup_str(path);
    size_t n = strlen(path) + sizeof ".XXXXXX" + 1;
    char *tmp = malloc(n);
    if (!f->final_path || !tmp) {
        free(tmp);
        fb_atomic_abort(f);
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory");
    }
    /* Same directory as the target so rename() is atomic (no cross-device copy). */
    snprintf(tmp, n, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        fb_atomic_abort(f);
        return fb_error_set(err, FB_ERR_IO, "cannot create %s: %s", path, strerror(e));
    }
    /* mkstemp makes 0600; a package is meant to be served, so make it readable. */
    (void)fchmod(fd, 0644);
    f->fd = fd;
    f->tmp_path = tmp;
    return FB_OK;
}

fb_status fb_atomic_write(fb_atomic_file *f, const void *data, size_t n, fb_error *err)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fb_error_set(err, FB_ERR_IO, "writing %s failed: %s", f->final_path,
                                strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return FB_OK;
}

fb_status fb_atomic_commit(fb_atomic_file *f, fb_error *err)
{
    fb_status st = FB_OK;
    if (fsync(f->fd) != 0)
        st = fb_error_set(err, FB_ERR_IO, "flushing %s failed: %s", f->final_path,
                          strerror(errno));
    if (close(f->fd) != 0 && st == FB_OK)
        st = fb_error_set(err, FB_ERR_IO, "closing %s failed: %s", f->final_path,
                          strerror(errno));
    f->fd = -1;
    if (st == FB_OK && rename(f->tmp_path, f->final_path) != 0)
        st = fb_error_set(err, FB_ERR_IO, "cannot move the finished file to %s: %s",
                          f->final_path, strerror(errno));
    if (st == FB_OK) {
        free(f->tmp_path);
        f->tmp_path = NULL;
    }
    fb_atomic_abort(f);
    return st;
}

void fb_atomic_abort(fb_atomic_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->tmp_path)
        unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->final_path);
    f->tmp_path = NULL;
    f->final_path = NULL;
}
