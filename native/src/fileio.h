/* Internal: file I/O helpers shared by the image and package code. */
#ifndef FOTABENCH_FILEIO_H
#define FOTABENCH_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"

/* Read exactly n bytes at offset, retrying short reads and EINTR. A short file is
 * FB_ERR_IO naming what was missing. */
fb_status fb_pread_full(int fd, void *buf, size_t n, uint64_t offset, const char *what,
                        fb_error *err);

/* Open for reading and get the size; a directory, FIFO, device or socket is refused at
 * once, saying which (a FIFO with no writer would otherwise block the open forever). */
fb_status fb_open_regular(const char *path, int *fd_out, uint64_t *size_out, fb_error *err);

/* FB_ERR_ARG when out_path names the file open as in_fd (same device and inode, by any
 * path): writing it would destroy the input. A missing out_path is fine. */
fb_status fb_refuse_same_file(int in_fd, const char *in_path, const char *out_path,
                              fb_error *err);

/* An output file that appears under its final name only when complete: written to a
 * temporary file in the same directory, flushed, then renamed over the target. Its mode
 * is 0666 less the umask, or the mode of the file it replaces. */
typedef struct fb_atomic_file {
    int fd;
    char *final_path;
    char *tmp_path;
    const fb_cancel *cancel; /* asked before each write; may be NULL */
} fb_atomic_file;

fb_status fb_atomic_open(fb_atomic_file *f, const char *path, const fb_cancel *cancel,
                         fb_error *err);
/* FB_ERR_CANCELLED when f->cancel asks to stop. */
fb_status fb_atomic_write(fb_atomic_file *f, const void *data, size_t n, fb_error *err);
/* fsync, close, rename; on failure the temporary file is removed. */
fb_status fb_atomic_commit(fb_atomic_file *f, fb_error *err);
/* Close and remove the temporary file; safe after commit and on a zeroed struct. */
void fb_atomic_abort(fb_atomic_file *f);

#endif
