#include "fotabench/package.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "fotabench/crc16.h"
#include "fileio.h"

#define CHUNK (128u * 1024u)

static const char *core_refusal =
    "OpenCPU FOTA upgrades App images only; Core firmware is updated by Quectel's own "
    "tools, not by Ql_FOTA_StartUpgrade";

void fb_package_header_encode(uint8_t out[FB_PKG_HEADER_SIZE], fb_image_type type,
                              uint32_t special, uint32_t payload_length)
{
    memcpy(out, FB_PKG_MAGIC, FB_PKG_MAGIC_LEN);
    put_le16(out + 20, (uint16_t)type);
    /* What Quectel's GS3 tool writes (every real package seen, opencpu-fota.md §5). */
    put_le16(out + 22, FB_CHECKSUM_MD5);
    put_le32(out + 24, special);
    put_le32(out + 28, payload_length);
    put_le32(out + 32, FB_MD5_LEN);
    memset(out + 36, 0xFF, 40);
    put_le32(out + FB_PKG_CRC_OFFSET, fb_crc16_xmodem(0, out, FB_PKG_CRC_OFFSET));
}

static void decode_header(const uint8_t *h, fb_package_header *hd)
{
    memcpy(hd->magic, h, FB_PKG_MAGIC_LEN);
    hd->image_type = get_le16(h + 20);
    hd->checksum_type = get_le16(h + 22);
    hd->special = get_le32(h + 24);
    hd->payload_length = get_le32(h + 28);
    hd->digest_length = get_le32(h + 32);
    hd->crc_field = get_le32(h + FB_PKG_CRC_OFFSET);
    hd->crc_computed = fb_crc16_xmodem(0, h, FB_PKG_CRC_OFFSET);
}

static int all_ff(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0xFF)
            return 0;
    return 1;
}

static fb_status md5_range(const fb_source *src, uint64_t len, uint8_t out[FB_MD5_LEN],
                           fb_error *err)
{
    fb_status st;
    fb_md5 *md5 = fb_md5_new(err);
    if (!md5)
        return err ? err->code : FB_ERR_NOMEM;
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        fb_md5_free(md5);
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory allocating a read buffer");
    }
    st = FB_OK;
    for (uint64_t off = 0; off < len && st == FB_OK;) {
        size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
        st = src->read_at(src->ctx, off, buf, n, err);
        if (st == FB_OK)
            st = fb_md5_update(md5, buf, n, err);
        off += n;
    }
    if (st == FB_OK)
        st = fb_md5_final(md5, out, err);
    free(buf);
    fb_md5_free(md5);
    return st;
}

static fb_status check_header(const fb_package_header *hd, uint64_t file_size, fb_report *r)
{
    int magic_ok = memcmp(hd->magic, FB_PKG_MAGIC, FB_PKG_MAGIC_LEN) == 0;
    fb_report_add(r, "magic", magic_ok, FB_ERR_PACKAGE, "%s",
                  magic_ok ? "QUECTEL_FOTA_UPGRADE"
                           : "not 'QUECTEL_FOTA_UPGRADE': not a FOTA package (an app image "
                             "must be packaged with `fotabench package` first)");
    int crc_ok = hd->crc_field == hd->crc_computed;
    fb_report_add(r, "header_crc", crc_ok, FB_ERR_CHECKSUM,
                  "stored 0x%08X, computed 0x%04X%s", hd->crc_field, hd->crc_computed,
                  crc_ok ? "" : ": the header was altered or damaged");
    if (hd->image_type == FB_IMAGE_APP)
        fb_report_add(r, "image_type", 1, FB_OK, "0 (App)");
    else
        fb_report_add(r, "image_type", 0, FB_ERR_UNSUPPORTED, "%u (%s): %s", hd->image_type,
                      hd->image_type == FB_IMAGE_CORE         ? "Core"
                      : hd->image_type == FB_IMAGE_CORE_DELTA ? "Core delta"
                                                              : "unknown",
                      core_refusal);
    if (hd->checksum_type == FB_CHECKSUM_MD5)
        fb_report_add(r, "checksum_type", 1, FB_OK, "1 (MD5)");
    else if (hd->checksum_type == FB_CHECKSUM_MD5_GS2)
        fb_report_warn(r, "checksum_type",
                       "0: not what Quectel's GS3 tool writes (1); the GS2 tool's reading, "
                       "the trailer is checked as MD5");
    else
        fb_report_add(r, "checksum_type", 0, FB_ERR_PACKAGE,
                      "%u: unknown; Quectel's GS3 tool writes 1 (MD5 trailer)",
                      hd->checksum_type);
    int special_ok = (hd->special & ~FB_SPECIAL_KNOWN_BITS) == 0;
    fb_report_add(r, "special", special_ok, FB_ERR_PACKAGE, "0x%X (%s)%s", hd->special,
                  hd->special == 0                        ? "none"
                  : hd->special == FB_SPECIAL_CLEAR_NVRAM ? "clear NVRAM"
                  : hd->special == FB_SPECIAL_FORMAT_FS   ? "format file system"
                  : special_ok                            ? "clear NVRAM + format file system"
                                                          : "unknown bits",
                  special_ok ? "" : ": only bits 0 and 1 are defined");
    fb_report_add(r, "digest_length", hd->digest_length == FB_MD5_LEN, FB_ERR_PACKAGE, "%u%s",
                  hd->digest_length, hd->digest_length == FB_MD5_LEN ? "" : ": MD5 is 16 bytes");
    uint64_t expect = (uint64_t)FB_PKG_HEADER_SIZE + hd->payload_length + FB_MD5_LEN;
    int len_ok = hd->payload_length % 4 == 0 && expect == file_size;
    if (len_ok)
        fb_report_add(r, "payload_length", 1, FB_OK, "%u", hd->payload_length);
    else if (hd->payload_length % 4)
        fb_report_add(r, "payload_length", 0, FB_ERR_PACKAGE,
                      "%u: not a multiple of 4 as the layout requires", hd->payload_length);
    else
        fb_report_add(r, "payload_length", 0, FB_ERR_PACKAGE,
                      "%u: the file is %llu bytes, the header says %llu (80 + payload + 16): "
                      "truncated or trailing data",
                      hd->payload_length, (unsigned long long)file_size,
                      (unsigned long long)expect);
    return len_ok;
}

fb_status fb_package_check(const fb_source *src, const fb_model *model, fb_package_info *info,
                           fb_report *report, fb_error *err)
{
    fb_report local;
    fb_package_info local_info;
    fb_status st;
    if (!report) {
        report = &local;
        fb_report_init(report);
    }
    if (!info)
        info = &local_info;
    memset(info, 0, sizeof *info);
    info->file_size = src->size;
    size_t first = report->count;

    if (!fb_report_add(report, "size", src->size >= FB_PKG_MIN_SIZE, FB_ERR_PACKAGE,
                       "%llu bytes%s", (unsigned long long)src->size,
                       src->size >= FB_PKG_MIN_SIZE
                           ? ""
                           : ": truncated, a package has at least 96 (80 header + 16 MD5)"))
        goto done;

    uint8_t h[FB_PKG_HEADER_SIZE];
    if ((st = src->read_at(src->ctx, 0, h, sizeof h, err)) != FB_OK)
        return st;
    decode_header(h, &info->header);
    info->header_valid = 1;
    int lengths_ok = check_header(&info->header, src->size, report);
    fb_report_add(report, "reserved", all_ff(h + 36, 40), FB_ERR_PACKAGE, "%s",
                  all_ff(h + 36, 40) ? "bytes 36..75 all 0xFF"
                                     : "bytes 36..75 are not all 0xFF: written by an unknown tool");

    uint64_t body = src->size - FB_MD5_LEN;
    if ((st = src->read_at(src->ctx, body, info->md5_stored, FB_MD5_LEN, err)) != FB_OK)
        return st;
    if ((st = md5_range(src, body, info->md5_computed, err)) != FB_OK)
        return st;
    info->md5_valid = 1;
    char stored[FB_MD5_HEX_LEN], computed[FB_MD5_HEX_LEN];
    fb_hex(info->md5_stored, FB_MD5_LEN, stored);
    fb_hex(info->md5_computed, FB_MD5_LEN, computed);
    int md5_ok = memcmp(info->md5_stored, info->md5_computed, FB_MD5_LEN) == 0;
    fb_report_add(report, "md5", md5_ok, FB_ERR_CHECKSUM, "stored %s, computed %s%s", stored,
                  computed, md5_ok ? "" : ": the package was damaged (the module would refuse it)");

    /* The embedded app image: only meaningful where the lengths add up. */
    uint64_t payload = src->size - FB_PKG_MIN_SIZE;
    if (lengths_ok)
        payload = info->header.payload_length;
    uint8_t app_hdr[FB_GFH_SIZE];
    size_t n = payload < FB_GFH_SIZE ? (size_t)payload : FB_GFH_SIZE;
    if ((st = src->read_at(src->ctx, FB_PKG_HEADER_SIZE, app_hdr, n, err)) != FB_OK)
        return st;
    uint32_t app_len = n >= 0x24 ? get_le32(app_hdr + 0x20) : 0;
    /* The app image is checked against the length its own header claims; the padding
     * must then be the 0..3 bytes that round it up to the payload length. */
    int pad_ok = app_len <= payload && payload - app_len < 4 && payload % 4 == 0;
    fb_report *app_report = report;
    size_t app_first = report->count;
    fb_app_image_check(app_hdr, n, pad_ok ? app_len : payload, model, &info->app, app_report,
                       NULL);
    info->app_valid = n >= FB_GFH_SIZE;
    for (size_t i = app_first; i < report->count; i++) {
        /* Prefix the app checks so names stay unique in one report. */
        char name[FB_CHECK_NAME_MAX];
        memcpy(name, report->checks[i].name, sizeof name);
        snprintf(report->checks[i].name, sizeof report->checks[i].name, "app.%.27s", name);
    }
    if (pad_ok && payload > app_len) {
        uint8_t pad[4];
        size_t pn = (size_t)(payload - app_len);
        if ((st = src->read_at(src->ctx, FB_PKG_HEADER_SIZE + app_len, pad, pn, err)) != FB_OK)
            return st;
        fb_report_add(report, "padding", all_ff(pad, pn), FB_ERR_PACKAGE,
                      "%zu byte(s)%s", pn, all_ff(pad, pn) ? " of 0xFF" : " not 0xFF");
    } else if (!pad_ok && n >= FB_GFH_SIZE) {
        fb_report_add(report, "padding", 0, FB_ERR_PACKAGE,
                      "app image length %u does not round up to the payload length %llu",
                      app_len, (unsigned long long)payload);
    }
done:
    for (size_t i = first; i < report->count; i++)
        if (!report->checks[i].ok)
            return fb_error_set(err, report->checks[i].code, "package %s: %s",
                                report->checks[i].name, report->checks[i].detail);
    fb_error_clear(err);
    return FB_OK;
}

typedef struct file_ctx {
    int fd;
    const char *path;
    const fb_cancel *cancel; /* verifying a large build reads it all again */
} file_ctx;

static fb_status file_read_at(void *ctx, uint64_t off, void *buf, size_t n, fb_error *err)
{
    file_ctx *f = ctx;
    if (fb_cancelled(f->cancel, err))
        return FB_ERR_CANCELLED;
    return fb_pread_full(f->fd, buf, n, off, f->path, err);
}

fb_status fb_package_check_file(const char *path, const fb_model *model, fb_package_info *info,
                                fb_report *report, fb_error *err)
{
    file_ctx f = {.path = path, .cancel = NULL};
    uint64_t size;
    fb_status st = fb_open_regular(path, &f.fd, &size, err);
    if (st != FB_OK)
        return st;
    (void)posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    fb_source src = {file_read_at, &f, size};
    st = fb_package_check(&src, model, info, report, err);
    close(f.fd);
    return st;
}

typedef struct buf_ctx {
    const uint8_t *data;
    size_t len;
} buf_ctx;

static fb_status buf_read_at(void *ctx, uint64_t off, void *buf, size_t n, fb_error *err)
{
    buf_ctx *b = ctx;
    if (off > b->len || n > b->len - off)
        return fb_error_set(err, FB_ERR_IO, "read past the end of the buffer");
    memcpy(buf, b->data + off, n);
    return FB_OK;
}

fb_status fb_package_check_buffer(const uint8_t *data, size_t len, const fb_model *model,
                                  fb_package_info *info, fb_report *report, fb_error *err)
{
    buf_ctx b = {data, len};
    fb_source src = {buf_read_at, &b, len};
    return fb_package_check(&src, model, info, report, err);
}

fb_status fb_package_build(const char *app_path, const char *out_path, const fb_model *model,
                           fb_image_type type, uint32_t special, const fb_cancel *cancel,
                           fb_package_info *info, fb_report *report, fb_error *err)
{
    if (type != FB_IMAGE_APP)
        return fb_error_set(err, FB_ERR_UNSUPPORTED, "image type %d refused: %s", (int)type,
                            core_refusal);
    if (special & ~FB_SPECIAL_KNOWN_BITS)
        return fb_error_set(err, FB_ERR_ARG,
                            "special option 0x%X: only none (0), clear NVRAM (1) and format "
                            "file system (2) are defined",
                            special);
    int fd;
    uint64_t app_size;
    fb_status st = fb_open_regular(app_path, &fd, &app_size, err);
    if (st != FB_OK)
        return st;
    uint8_t hdr[FB_PKG_HEADER_SIZE];
    uint8_t app_hdr[FB_GFH_SIZE];
    uint8_t *buf = NULL;
    fb_md5 *md5 = NULL;
    fb_atomic_file out = {.fd = -1};
    fb_app_info app;

    size_t n = app_size < FB_GFH_SIZE ? (size_t)app_size : FB_GFH_SIZE;
    if ((st = fb_refuse_same_file(fd, app_path, out_path, err)) != FB_OK)
        goto out;
    if ((st = fb_pread_full(fd, app_hdr, n, 0, app_path, err)) != FB_OK)
        goto out;
    if ((st = fb_app_image_check(app_hdr, n, app_size, model, &app, NULL, err)) != FB_OK)
        goto out;

    uint32_t payload = (uint32_t)((app_size + 3u) & ~(uint64_t)3u);
    fb_package_header_encode(hdr, FB_IMAGE_APP, special, payload);
    buf = malloc(CHUNK);
    md5 = fb_md5_new(err);
    if (!buf || !md5) {
        st = md5 ? fb_error_set(err, FB_ERR_NOMEM, "out of memory") : (err ? err->code : FB_ERR_NOMEM);
        goto out;
    }
    if ((st = fb_atomic_open(&out, out_path, cancel, err)) != FB_OK)
        goto out;
    if ((st = fb_md5_update(md5, hdr, sizeof hdr, err)) != FB_OK ||
        (st = fb_atomic_write(&out, hdr, sizeof hdr, err)) != FB_OK)
        goto out;
    for (uint64_t off = 0; off < app_size;) {
        size_t k = app_size - off < CHUNK ? (size_t)(app_size - off) : CHUNK;
        if ((st = fb_pread_full(fd, buf, k, off, app_path, err)) != FB_OK ||
            (st = fb_md5_update(md5, buf, k, err)) != FB_OK ||
            (st = fb_atomic_write(&out, buf, k, err)) != FB_OK)
            goto out;
        off += k;
    }
    uint8_t tail[3 + FB_MD5_LEN];
    size_t pad = payload - (size_t)app_size;
    memset(tail, 0xFF, pad);
    if ((st = fb_md5_update(md5, tail, pad, err)) != FB_OK ||
        (st = fb_md5_final(md5, tail + pad, err)) != FB_OK ||
        (st = fb_atomic_write(&out, tail, pad + FB_MD5_LEN, err)) != FB_OK)
        goto out;
    /* Verify what was written before it gets its name: a package that fails its own
     * check must never reach a server. */
    {
        file_ctx f = {out.fd, out.tmp_path, cancel};
        fb_source src = {file_read_at, &f, FB_PKG_HEADER_SIZE + (uint64_t)payload + FB_MD5_LEN};
        if ((st = fb_package_check(&src, app.model, info, report, err)) != FB_OK)
            goto out;
    }
    st = fb_atomic_commit(&out, err);
out:
    fb_atomic_abort(&out);
    fb_md5_free(md5);
    free(buf);
    close(fd);
    return st;
}
