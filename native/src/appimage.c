#include "fotabench/appimage.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "fileio.h"

static const char gfh_id[12] = "FILE_INFO"; /* zero-padded to 12 */

void fb_app_image_header(uint8_t out[FB_GFH_SIZE], uint32_t load_address, uint32_t file_length)
{
    memset(out, 0, FB_GFH_SIZE);
    memcpy(out, "MMM", 3);
    out[3] = 1;               /* GFH version */
    put_le16(out + 4, 0x40);  /* header size */
    put_le16(out + 6, 0);     /* type: FILE_INFO */
    memcpy(out + 8, gfh_id, sizeof gfh_id);
    put_le32(out + 0x14, 1);  /* file_ver */
    put_le16(out + 0x18, 0x7000);
    out[0x1A] = 7;            /* flash_dev: serial flash */
    out[0x1B] = 0;            /* sig_type: none */
    put_le32(out + 0x1C, load_address);
    put_le32(out + 0x20, file_length);
    put_le32(out + 0x24, 0xFFFFFFFFu); /* max size */
    put_le32(out + 0x28, 0x40);        /* content offset */
    put_le32(out + 0x2C, 0);           /* sig_len */
    put_le32(out + 0x30, 0x40);        /* jump offset */
    put_le32(out + 0x34, 3);           /* attr */
}

static void decode(const uint8_t *h, uint64_t image_size, fb_app_info *info)
{
    memset(info, 0, sizeof *info);
    memcpy(info->magic, h, 3);
    info->gfh_version = h[3];
    info->gfh_size = get_le16(h + 4);
    info->gfh_type = get_le16(h + 6);
    memcpy(info->id, h + 8, 12);
    info->id[12] = '\0';
    info->file_ver = get_le32(h + 0x14);
    info->file_type = get_le16(h + 0x18);
    info->flash_dev = h[0x1A];
    info->sig_type = h[0x1B];
    info->load_address = get_le32(h + 0x1C);
    info->file_length = get_le32(h + 0x20);
    info->max_size = get_le32(h + 0x24);
    info->content_offset = get_le32(h + 0x28);
    info->sig_len = get_le32(h + 0x2C);
    info->jump_offset = get_le32(h + 0x30);
    info->attr = get_le32(h + 0x34);
    info->image_size = image_size;
}

/* Printable rendering of untrusted bytes for a message: non-printables as \xNN. */
static void printable(const uint8_t *p, size_t n, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < out_size; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7F && p[i] != '\\')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, out_size - o, "\\x%02x", p[i]);
    }
    out[o] = '\0';
}

fb_status fb_app_image_check(const uint8_t *hdr, size_t hdr_len, uint64_t image_size,
                             const fb_model *model, fb_app_info *info, fb_report *report,
                             fb_error *err)
{
    fb_report local;
    fb_app_info local_info;
    if (!report) {
        report = &local;
        fb_report_init(report);
    }
    if (!info)
        info = &local_info;
    size_t first = report->count;
    char shown[64];
    char detail[FB_CHECK_DETAIL_MAX];

    int whole = image_size >= FB_GFH_SIZE && hdr_len >= FB_GFH_SIZE;
    fb_report_add(report, "size", whole, FB_ERR_IMAGE, "%llu bytes%s",
                  (unsigned long long)image_size,
                  whole ? "" : ": truncated, an app image starts with a 64-byte GFH header");
    if (!whole) {
        memset(info, 0, sizeof *info);
        info->image_size = image_size;
        info->model = model;
        goto done;
    }
    decode(hdr, image_size, info);

    int magic_ok = memcmp(hdr, "MMM", 3) == 0 && hdr[3] == 1;
    printable(hdr, 4, shown, sizeof shown);
    fb_report_add(report, "magic", magic_ok, FB_ERR_IMAGE, "'%s'%s", shown,
                  magic_ok ? ""
                           : ": expected 'MMM' version 1; not an OpenCPU app image (a raw "
                             "binary needs `fotabench app wrap` first)");
    int size_ok = info->gfh_size == 0x40 && info->gfh_type == 0;
    fb_report_add(report, "header_size", size_ok, FB_ERR_IMAGE, "size 0x%x type %u%s",
                  info->gfh_size, info->gfh_type,
                  size_ok ? "" : ": expected size 0x40 type 0 (GFH FILE_INFO)");
    int id_ok = memcmp(hdr + 8, gfh_id, sizeof gfh_id) == 0;
    size_t id_len = 12;
    while (id_len && hdr[8 + id_len - 1] == 0)
        id_len--; /* trailing NUL padding is normal: not worth showing */
    printable(hdr + 8, id_len, shown, sizeof shown);
    fb_report_add(report, "id", id_ok, FB_ERR_IMAGE, "'%s'%s", shown,
                  id_ok ? "" : ": expected 'FILE_INFO'; a flasher rejects this image");
    int len_ok = (uint64_t)info->file_length == image_size;
    fb_report_add(report, "length", len_ok, FB_ERR_IMAGE,
                  "length field %u, file %llu bytes%s", info->file_length,
                  (unsigned long long)image_size,
                  len_ok ? ""
                         : ": they must be equal (truncated, or changed after the header "
                           "was written)");

    /* The usual mistake is the wrong model: name the model the address belongs to. */
    const fb_model *owner = fb_model_by_load_address(info->load_address);
    int addr_ok;
    if (model) {
        addr_ok = info->load_address == model->load_address;
        if (addr_ok)
            snprintf(detail, sizeof detail, "0x%08X (%s)", info->load_address, model->name);
        else if (owner)
            snprintf(detail, sizeof detail,
                     "0x%08X is the %s app address, not the %s one (0x%08X): wrong model or "
                     "wrong image",
                     info->load_address, owner->name, model->name, model->load_address);
        else
            snprintf(detail, sizeof detail,
                     "0x%08X is no known model's app address; the %s app loads at 0x%08X",
                     info->load_address, model->name, model->load_address);
    } else {
        addr_ok = owner != NULL;
        if (addr_ok)
            snprintf(detail, sizeof detail, "0x%08X (%s, detected)", info->load_address,
                     owner->name);
        else
            snprintf(detail, sizeof detail,
                     "0x%08X is no known model's app address: name the model explicitly",
                     info->load_address);
        model = owner;
    }
    fb_report_add(report, "load_address", addr_ok, FB_ERR_MODEL, "%s", detail);
    info->model = model;
    if (model) {
        int fits = image_size <= model->region_size;
        fb_report_add(report, "region", fits, FB_ERR_MODEL,
                      "%llu of %u bytes in the %s app region%s", (unsigned long long)image_size,
                      model->region_size, model->name,
                      fits ? "" : ": the image is larger than the region");
    }
done:
    for (size_t i = first; i < report->count; i++)
        if (!report->checks[i].ok)
            return fb_error_set(err, report->checks[i].code, "app image %s: %s",
                                report->checks[i].name, report->checks[i].detail);
    fb_error_clear(err);
    return FB_OK;
}

fb_status fb_app_image_inspect(const char *path, const fb_model *model, fb_app_info *info,
                               fb_report *report, fb_error *err)
{
    int fd;
    uint64_t size;
    uint8_t hdr[FB_GFH_SIZE];
    fb_status st = fb_open_regular(path, &fd, &size, err);
    if (st != FB_OK)
        return st;
    size_t n = size < FB_GFH_SIZE ? (size_t)size : FB_GFH_SIZE;
    st = fb_pread_full(fd, hdr, n, 0, path, err);
    close(fd);
    if (st != FB_OK)
        return st;
    return fb_app_image_check(hdr, n, size, model, info, report, err);
}

fb_status fb_app_image_wrap(const char *raw_path, const fb_model *model, const char *out_path,
                            fb_app_info *info, fb_error *err)
{
    if (!model)
        return fb_error_set(err, FB_ERR_ARG,
                            "wrapping needs a module model (M66, MC60, MC60E or M26): the "
                            "load address depends on it");
    int fd;
    uint64_t raw_size;
    fb_status st = fb_open_regular(raw_path, &fd, &raw_size, err);
    if (st != FB_OK)
        return st;
    uint8_t head[FB_GFH_SIZE];
    uint8_t buf[64 * 1024];
    fb_atomic_file out = {.fd = -1};

    if (raw_size == 0) {
        st = fb_error_set(err, FB_ERR_IMAGE, "%s is empty: nothing to wrap", raw_path);
        goto fail;
    }
    if (raw_size + FB_GFH_SIZE > model->region_size) {
        st = fb_error_set(err, FB_ERR_MODEL,
                          "%s is %llu bytes; with the 64-byte header it exceeds the %s app "
                          "region of %u bytes",
                          raw_path, (unsigned long long)raw_size, model->name,
                          model->region_size);
        goto fail;
    }
    size_t peek = raw_size < 12 ? (size_t)raw_size : 12;
    if ((st = fb_pread_full(fd, head, peek, 0, raw_path, err)) != FB_OK)
        goto fail;
    if (peek >= 12 && memcmp(head, "MMM", 3) == 0 && memcmp(head + 8, "FILE", 4) == 0) {
        st = fb_error_set(err, FB_ERR_IMAGE,
                          "%s already starts with a GFH header: it is an app image, not a raw "
                          "binary (inspect it with `fotabench app inspect`)",
                          raw_path);
        goto fail;
    }
    uint32_t total = (uint32_t)(raw_size + FB_GFH_SIZE);
    fb_app_image_header(head, model->load_address, total);
    if ((st = fb_atomic_open(&out, out_path, err)) != FB_OK)
        goto fail;
    if ((st = fb_atomic_write(&out, head, FB_GFH_SIZE, err)) != FB_OK)
        goto fail;
    for (uint64_t off = 0; off < raw_size;) {
        size_t n = raw_size - off < sizeof buf ? (size_t)(raw_size - off) : sizeof buf;
        if ((st = fb_pread_full(fd, buf, n, off, raw_path, err)) != FB_OK)
            goto fail;
        if ((st = fb_atomic_write(&out, buf, n, err)) != FB_OK)
            goto fail;
        off += n;
    }
    if ((st = fb_atomic_commit(&out, err)) != FB_OK)
        goto fail;
    close(fd);
    return fb_app_image_check(head, FB_GFH_SIZE, total, model, info, NULL, err);
fail:
    fb_atomic_abort(&out);
    close(fd);
    return st;
}
