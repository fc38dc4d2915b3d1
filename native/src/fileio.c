#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

static const char *kind(mode_t mode)
{
    return S_ISDIR(mode)    ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO (named pipe)"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
                            : "not a regular file";
}

fb_status fb_open_regular(const char *path, int *fd_out, uint64_t *size_out, fb_error *err)
{
    struct stat st;
    /* O_NONBLOCK: opening a FIFO that has no writer would wait for one, deaf to Ctrl-C;
     * so would some devices. With it the open returns at once and fstat says what it is.
     * O_NOCTTY: a terminal given by mistake must not become our controlling tty. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENXIO && stat(path, &st) == 0) /* a socket cannot be opened at all */
            return fb_error_set(err, FB_ERR_IO, "%s is %s, not a regular file", path,
                                kind(st.st_mode));
        return fb_error_set(err, FB_ERR_IO, "cannot open %s: %s", path, strerror(e));
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fb_error_set(err, FB_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fb_error_set(err, FB_ERR_IO, "%s is %s, not a regular file", path,
                            kind(st.st_mode));
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    *fd_out = fd;
    *size_out = (uint64_t)st.st_size;
    return FB_OK;
}

fb_status fb_refuse_same_file(int in_fd, const char *in_path, const char *out_path,
                              fb_error *err)
{
    struct stat in, out;
    if (fstat(in_fd, &in) != 0 || stat(out_path, &out) != 0)
        return FB_OK; /* no output yet (or nothing to compare): nothing to destroy */
    if (in.st_dev == out.st_dev && in.st_ino == out.st_ino)
        return fb_error_set(err, FB_ERR_ARG,
                            "the output %s is the input %s (the same file): writing it would "
                            "destroy the input; choose another output",
                            out_path, in_path);
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

/* A name for the temporary file: six characters that differ between processes and
 * calls (pid, address of the struct, time, a counter); O_EXCL settles any clash. */
static void tmp_suffix(char out[7], const void *salt, unsigned attempt)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)salt ^
                 (uint64_t)ts.tv_nsec * 0xBF58476D1CE4E5B9ull ^ (uint64_t)ts.tv_sec ^
                 (uint64_t)attempt * 0x94D049BB133111EBull;
    for (int i = 0; i < 6; i++) {
        x ^= x >> 31;
        x *= 0xD6E8FEB86659FD93ull;
        out[i] = chars[(x >> 32) % (sizeof chars - 1)];
    }
    out[6] = '\0';
}

fb_status fb_atomic_open(fb_atomic_file *f, const char *path, const fb_cancel *cancel,
                         fb_error *err)
{
    f->fd = -1;
    f->tmp_path = NULL;
    f->cancel = cancel;
    f->final_path = dup_str(path);
    size_t n = strlen(path) + sizeof ".XXXXXX" + 1;
    char *tmp = malloc(n);
    if (!f->final_path || !tmp) {
        free(tmp);
        fb_atomic_abort(f);
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory");
    }
    /* Same directory as the target so rename() is atomic (no cross-device copy). Not
     * mkstemp: it makes 0600 whatever the umask; open(O_EXCL, 0666) lets the umask (and
     * a default ACL) decide, as for any file a command writes. */
    int fd = -1, e = EEXIST;
    for (unsigned attempt = 0; fd < 0 && e == EEXIST && attempt < 100; attempt++) {
        char suffix[7];
        tmp_suffix(suffix, f, attempt);
        snprintf(tmp, n, "%s.%s", path, suffix);
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
        e = fd < 0 ? errno : 0;
    }
    if (fd < 0) {
        free(tmp);
        fb_atomic_abort(f);
        return fb_error_set(err, FB_ERR_IO, "cannot create %s: %s", path, strerror(e));
    }
    /* Replacing a file keeps its permissions: a 0600 file stays private. */
    struct stat old;
    if (stat(path, &old) == 0 && S_ISREG(old.st_mode))
        (void)fchmod(fd, old.st_mode & 07777);
    f->fd = fd;
    f->tmp_path = tmp;
    return FB_OK;
}

fb_status fb_atomic_write(fb_atomic_file *f, const void *data, size_t n, fb_error *err)
{
    const uint8_t *p = data;
    if (fb_cancelled(f->cancel, err))
        return FB_ERR_CANCELLED;
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
