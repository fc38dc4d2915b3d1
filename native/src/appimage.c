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

static const char *label(const fb_model *m)
{
    return m->name ? m->name : "a model not recorded";
}

/* "MC60 or MC20" for the rows in list. */
static void names(const fb_model *const *list, size_t n, char *out, size_t out_size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o < out_size; i++)
        o += (size_t)snprintf(out + o, out_size - o, "%s%s", i ? " or " : "", label(list[i]));
}

/* "0x1021B000 or 0x10270000": every address of the model (its own, if unnamed). */
static void addresses(const fb_model *model, char *out, size_t out_size)
{
    size_t o = (size_t)snprintf(out, out_size, "0x%08X", model->load_address);
    for (size_t i = 0; model->name && i < fb_model_count() && o < out_size; i++) {
        const fb_model *m = fb_model_at(i);
        if (m != model && m->name && strcmp(m->name, model->name) == 0)
            o += (size_t)snprintf(out + o, out_size - o, " or 0x%08X", m->load_address);
    }
}

static int fits(const fb_model *m, uint64_t image_size)
{
    return m->region_size == 0 || image_size <= m->region_size;
}

/* The load_address and region checks: which models the address names (opencpu-fota.md
 * §6), against the one the user named if any. */
static void check_address(fb_app_info *info, const fb_model *model, fb_report *report)
{
    uint32_t addr = info->load_address;
    uint64_t size = info->image_size;
    const fb_model *all[FB_MODEL_MAX_CANDIDATES];
    size_t n_all = fb_model_candidates(addr, all, FB_MODEL_MAX_CANDIDATES);
    if (n_all > FB_MODEL_MAX_CANDIDATES)
        n_all = FB_MODEL_MAX_CANDIDATES;
    char who[96], where[64];
    const char *platform = fb_platform_name(info->platform = fb_model_platform(addr));

    /* Candidates: the rows at the address whose region holds the image; all of them
     * when none does (the region check then says why). */
    info->n_candidates = 0;
    for (size_t i = 0; i < n_all; i++)
        if (fits(all[i], size))
            info->candidates[info->n_candidates++] = all[i];
    if (info->n_candidates == 0) {
        memcpy(info->candidates, all, n_all * sizeof all[0]);
        info->n_candidates = n_all;
    }
    names(info->candidates, info->n_candidates, who, sizeof who);

    const fb_model *checked = NULL; /* the row whose region bounds the image */
    if (info->platform == FB_PLATFORM_NBIOT) {
        fb_report_add(report, "load_address", 0, FB_ERR_UNSUPPORTED,
                      "0x%08X is a %s app address: those modules have no OpenCPU FOTA of "
                      "this kind",
                      addr, platform);
    } else if (model) {
        addresses(model, where, sizeof where);
        checked = model->load_address == addr ? model : fb_model_find_at(model->name, addr);
        if (checked && checked->evidence == FB_EVIDENCE_SEEN_ONCE)
            fb_report_warn(report, "load_address", "0x%08X (%s): seen in %s only",
                           addr, label(checked), checked->source);
        else if (checked)
            fb_report_add(report, "load_address", 1, FB_OK, "0x%08X (%s)", addr,
                          label(checked));
        else if (n_all)
            fb_report_add(report, "load_address", 0, FB_ERR_MODEL,
                          "0x%08X is an app address of %s, not of %s (%s): wrong model or "
                          "wrong image",
                          addr, who, label(model), where);
        else if (info->platform == FB_PLATFORM_OPENCPU) {
            /* A model has more app addresses than the SDKs seen (the M26 has two): the
             * user's word is taken, but said to be unverified. */
            checked = model;
            fb_report_warn(report, "load_address",
                           "0x%08X: in the %s, but no %s SDK seen loads apps there (%s); "
                           "taken as %s on your word",
                           addr, platform, label(model), where, label(model));
        } else
            fb_report_add(report, "load_address", 0, FB_ERR_MODEL,
                          "0x%08X is outside the %s (0x10xxxxxx); the %s app loads at %s",
                          addr, fb_platform_name(FB_PLATFORM_OPENCPU), label(model), where);
    } else if (n_all == 0) {
        if (info->platform == FB_PLATFORM_OPENCPU)
            fb_report_add(report, "load_address", 0, FB_ERR_MODEL,
                          "0x%08X is in the %s, but no SDK seen loads apps there: name the "
                          "model to check it against that model's region",
                          addr, platform);
        else
            fb_report_add(report, "load_address", 0, FB_ERR_MODEL,
                          "0x%08X is %s (OpenCPU apps load at 0x10xxxxxx): not an app image "
                          "for these modules, or a damaged header",
                          addr, platform);
    } else if (info->n_candidates == 1) {
        checked = info->candidates[0];
        if (checked->evidence == FB_EVIDENCE_SEEN_ONCE)
            fb_report_warn(report, "load_address", "0x%08X (%s, detected): seen in %s only",
                           addr, label(checked), checked->source);
        else
            fb_report_add(report, "load_address", 1, FB_OK, "0x%08X (%s, detected)", addr,
                          label(checked));
    } else {
        fb_report_add(report, "load_address", 1, FB_OK,
                      "0x%08X (%s, detected): the address does not tell them apart; name "
                      "the model to choose",
                      addr, who);
    }

    if (!checked && (model || n_all == 0)) {
        /* No region to check against: the load_address check already says why. */
    } else if (checked && checked->region_size == 0)
        fb_report_warn(report, "region",
                       "%llu bytes; the size of the %s app region at 0x%08X is not known "
                       "(no linker script seen): not checked",
                       (unsigned long long)size, label(checked), addr);
    else if (checked) {
        int ok = size <= checked->region_size;
        fb_report_add(report, "region", ok, FB_ERR_MODEL,
                      "%llu of %u bytes in the %s app region%s", (unsigned long long)size,
                      checked->region_size, label(checked),
                      ok ? "" : ": the image is larger than the region");
    } else {
        /* Several candidates: the image fits some of them, or none. */
        int ok = fits(info->candidates[0], size);
        uint32_t region = info->candidates[0]->region_size;
        for (size_t i = 1; i < info->n_candidates; i++)
            if (info->candidates[i]->region_size > region)
                region = info->candidates[i]->region_size;
        fb_report_add(report, "region", ok, FB_ERR_MODEL, "%llu of %u bytes in the %s app "
                      "region%s", (unsigned long long)size, region, who,
                      ok ? "" : ": the image is larger than the region");
    }
    info->model = checked ? checked : model; /* the model asked for, even when refused */
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

    check_address(info, model, report);
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
                            const fb_cancel *cancel, fb_app_info *info, fb_report *report,
                            fb_error *err)
{
    if (!model)
        return fb_error_set(err, FB_ERR_ARG,
                            "wrapping needs a module model (see `fotabench models`): the "
                            "load address depends on it");
    int fd;
    uint64_t raw_size;
    fb_status st = fb_open_regular(raw_path, &fd, &raw_size, err);
    if (st != FB_OK)
        return st;
    uint8_t head[FB_GFH_SIZE];
    uint8_t buf[64 * 1024];
    fb_atomic_file out = {.fd = -1};

    if ((st = fb_refuse_same_file(fd, raw_path, out_path, err)) != FB_OK)
        goto fail;
    if (raw_size == 0) {
        st = fb_error_set(err, FB_ERR_IMAGE, "%s is empty: nothing to wrap", raw_path);
        goto fail;
    }
    if (model->region_size && raw_size + FB_GFH_SIZE > model->region_size) {
        st = fb_error_set(err, FB_ERR_MODEL,
                          "%s is %llu bytes; with the 64-byte header it exceeds the %s app "
                          "region of %u bytes",
                          raw_path, (unsigned long long)raw_size, label(model),
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
    if ((st = fb_atomic_open(&out, out_path, cancel, err)) != FB_OK)
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
    return fb_app_image_check(head, FB_GFH_SIZE, total, model, info, report, err);
fail:
    fb_atomic_abort(&out);
    close(fd);
    return st;
}
