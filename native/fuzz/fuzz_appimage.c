/* libFuzzer target: fb_app_image_check on arbitrary bytes, and on headers built by
 * fb_app_image_header from fields taken from the input.
 *
 *   make -C native fuzz && native/build/fuzz/fuzz_appimage CORPUS_DIR
 *
 * Seeds: native/fuzz/make_corpus.py OUT (writes OUT/fuzz_appimage/).
 * Every invariant violation prints what was wrong and abort()s, so libFuzzer saves
 * the input as crash-<sha1>. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/appimage.h"
#include "fotabench/error.h"
#include "fotabench/model.h"
#include "fotabench/report.h"
#include "fuzz_common.h"

/* info.candidates: the rows at the address that hold the image (all when none does);
 * info.model: the named model's row there (or the model itself), else the only one. */
static void check_candidates(const fb_app_info *info, const fb_model *model)
{
    uint32_t addr = info->load_address;
    size_t n_all = fb_model_candidates(addr, NULL, 0), n_fit = 0;
    for (size_t i = 0; i < fb_model_count(); i++) {
        const fb_model *m = fb_model_at(i);
        n_fit += m->load_address == addr && (!m->region_size || info->image_size <= m->region_size);
    }
    FAIL_IF(info->n_candidates != (n_fit ? n_fit : n_all), "%zu candidates at 0x%08X, expected %zu",
            info->n_candidates, addr, n_fit ? n_fit : n_all);
    for (size_t i = 0; i < info->n_candidates; i++)
        FAIL_IF(info->candidates[i]->load_address != addr, "candidate at another address");
    if (model) {
        const fb_model *row = model->load_address == addr ? model
                                                          : fb_model_find_at(model->name, addr);
        FAIL_IF(info->model != (row ? row : model), "named model: info.model is %s",
                info->model && info->model->name ? info->model->name : "NULL/unnamed");
    } else if (fb_model_platform(addr) != FB_PLATFORM_NBIOT) {
        FAIL_IF(info->model != (info->n_candidates == 1 ? info->candidates[0] : NULL),
                "auto: info.model with %zu candidates", info->n_candidates);
    }
}

static void check_one(const uint8_t *data, size_t size, const fb_model *model)
{
    fb_app_info info;
    fb_report report;
    fb_error err;
    memset(&info, 0xA5, sizeof info);
    memset(&err, 0xA5, sizeof err); /* garbage: the call must terminate what it writes */
    fb_report_init(&report);
    fb_status st = fb_app_image_check(data, size, size, model, &info, &report, &err);
    check_report(&report, st, &err);

    FAIL_IF(st != FB_OK && st != FB_ERR_IMAGE && st != FB_ERR_MODEL &&
                st != FB_ERR_UNSUPPORTED,
            "unexpected status %s", fb_status_name(st));
    FAIL_IF(info.image_size != size, "info.image_size %llu != %zu",
            (unsigned long long)info.image_size, size);
    FAIL_IF(strcmp(report.checks[0].name, "size") != 0, "first check is %s",
            report.checks[0].name);
    if (size < FB_GFH_SIZE) {
        FAIL_IF(st != FB_ERR_IMAGE || report.count != 1, "truncated image: %s, %zu checks",
                fb_status_name(st), report.count);
        FAIL_IF(info.model != model, "truncated image: info.model changed");
    } else {
        FAIL_IF(!nul_terminated(info.id, sizeof info.id), "info.id not terminated");
        FAIL_IF(info.file_length != le32(data + 0x20) || info.load_address != le32(data + 0x1C),
                "decoded fields differ from the header bytes");
        check_candidates(&info, model);
    }
    if (st == FB_OK) {
        const fb_model *m = info.model;
        uint32_t addr = le32(data + 0x1C);
        FAIL_IF(size < FB_GFH_SIZE, "FB_OK for %zu bytes", size);
        FAIL_IF(memcmp(data, "MMM", 3) != 0 || data[3] != 1, "FB_OK without magic");
        FAIL_IF(memcmp(data + 8, "FILE_INFO\0\0\0", 12) != 0, "FB_OK without the id");
        FAIL_IF(le32(data + 0x20) != size, "FB_OK with length field %u for %zu bytes",
                le32(data + 0x20), size);
        FAIL_IF(fb_model_platform(addr) != FB_PLATFORM_OPENCPU,
                "FB_OK at 0x%08X, outside the OpenCPU app area", addr);
        if (m && m->load_address != addr)
            /* only a named model at an address no model is known at, with a warning */
            FAIL_IF(!model || fb_model_candidates(addr, NULL, 0) != 0 ||
                        fb_report_warnings(&report) == 0,
                    "FB_OK for %s at 0x%08X without a warning", m->name ? m->name : "?",
                    addr);
        if (m)
            FAIL_IF(m->region_size && size > m->region_size,
                    "FB_OK for %zu bytes in a %u-byte region", size, m->region_size);
        else
            FAIL_IF(model || info.n_candidates < 2, "FB_OK with no model and %zu candidates",
                    info.n_candidates);
    }

    /* Same verdict with every optional argument NULL, and deterministic. */
    fb_status st2 = fb_app_image_check(data, size, size, model, NULL, NULL, NULL);
    FAIL_IF(st2 != st, "NULL report/info/err: %s, with them: %s", fb_status_name(st2),
            fb_status_name(st));

    /* hdr_len shorter than the image: only the first 64 bytes are ever needed. */
    if (size > FB_GFH_SIZE) {
        st2 = fb_app_image_check(data, FB_GFH_SIZE, size, model, NULL, NULL, NULL);
        FAIL_IF(st2 != st, "hdr_len 64: %s, hdr_len %zu: %s", fb_status_name(st2), size,
                fb_status_name(st));
    }
}

/* A header made by fb_app_image_header for a model row and a length that fits it must
 * pass, explicitly and auto-detected; the wrong model or a wrong size must not. */
static void check_built(const uint8_t *data) /* at least 16 bytes */
{
    size_t nmodels = fb_model_count();
    const fb_model *m = fb_model_at(data[0] % nmodels);
    /* An unknown region size: any length the header can hold is the image's. */
    uint32_t region = m->region_size ? m->region_size : 0x100000u;
    uint32_t span = region - FB_GFH_SIZE + 1;
    uint32_t len = FB_GFH_SIZE + le32(data + 1) % span; /* 64 .. region */
    uint8_t hdr[FB_GFH_SIZE];
    fb_app_info info;
    fb_report report;
    fb_error err;
    const char *name = m->name ? m->name : "(unnamed)";

    fb_app_image_header(hdr, m->load_address, len);
    fb_report_init(&report);
    fb_status st = fb_app_image_check(hdr, sizeof hdr, len, m, &info, &report, &err);
    check_report(&report, st, &err);
    FAIL_IF(st != FB_OK, "built header for %s, %u bytes: %s", name, len, err.message);
    FAIL_IF(info.model != m || info.file_length != len || info.load_address != m->load_address,
            "built header decodes wrongly");
    FAIL_IF((m->evidence == FB_EVIDENCE_SEEN_ONCE) != (fb_report_warnings(&report) > 0),
            "%s at 0x%08X (%s): %zu warnings", name, m->load_address,
            m->evidence == FB_EVIDENCE_SEEN_ONCE ? "seen once" : "linker scripts",
            fb_report_warnings(&report));
    FAIL_IF(info.gfh_version != 1 || info.gfh_size != 0x40 || info.gfh_type != 0 ||
                info.file_ver != 1 || info.file_type != 0x7000 || info.flash_dev != 7 ||
                info.sig_type != 0 || info.max_size != 0xFFFFFFFFu ||
                info.content_offset != 0x40 || info.sig_len != 0 || info.jump_offset != 0x40 ||
                info.attr != 3 || strcmp(info.id, "FILE_INFO") != 0,
            "built header fields differ from opencpu-fota.md section 6");

    fb_report_init(&report);
    st = fb_app_image_check(hdr, sizeof hdr, len, NULL, &info, &report, &err);
    check_report(&report, st, &err);
    FAIL_IF(st != FB_OK, "auto-detect of a %s header: %s", name, err.message);
    int found = 0;
    for (size_t i = 0; i < info.n_candidates; i++)
        found |= info.candidates[i] == m;
    FAIL_IF(!found, "auto-detect of a %s header: not among the %zu candidates", name,
            info.n_candidates);
    FAIL_IF(info.model != (info.n_candidates == 1 ? m : NULL), "auto: info.model");

    /* Header plus the rest of the input as code: the check reads only the header. */
    st = fb_app_image_check(hdr, sizeof hdr, len, m, NULL, NULL, NULL);
    FAIL_IF(st != FB_OK, "second check differs");

    /* Against every model not known at this address: refused as the wrong model. */
    for (size_t i = 0; i < nmodels; i++) {
        const fb_model *other = fb_model_at(i);
        if (other->load_address == m->load_address ||
            fb_model_find_at(other->name, m->load_address))
            continue;
        st = fb_app_image_check(hdr, sizeof hdr, len, other, NULL, NULL, &err);
        FAIL_IF(st != FB_ERR_MODEL, "%s header checked as %s: %s", name,
                other->name ? other->name : "(unnamed)", fb_status_name(st));
        FAIL_IF(m->name && !strstr(err.message, m->name),
                "wrong-model message does not name %s: %s", name, err.message);
    }

    /* Image size one off from the length field: refused. */
    uint64_t off = (data[5] & 1) ? (uint64_t)len + 1 + data[6] : (uint64_t)len - 1;
    st = fb_app_image_check(hdr, sizeof hdr, off, m, NULL, NULL, NULL);
    FAIL_IF(st != FB_ERR_IMAGE, "length %u, file %llu: %s", len, (unsigned long long)off,
            fb_status_name(st));

    /* Larger than a known region (consistent header): refused as a model problem. */
    if (m->region_size) {
        uint32_t big = m->region_size + 1 + (data[7] % 64);
        fb_app_image_header(hdr, m->load_address, big);
        st = fb_app_image_check(hdr, sizeof hdr, big, m, NULL, NULL, NULL);
        FAIL_IF(st != FB_ERR_MODEL, "%u bytes in %s's %u-byte region: %s", big, name,
                m->region_size, fb_status_name(st));
    }

    /* Arbitrary load address and length from the input, consistent with the size: it
     * passes auto-detection exactly when some row at that address holds it. */
    uint32_t addr = le32(data + 8), alen = le32(data + 12);
    fb_app_image_header(hdr, addr, alen);
    st = fb_app_image_check(hdr, sizeof hdr, alen, NULL, &info, NULL, &err);
    int expect_ok = 0;
    for (size_t i = 0; alen >= FB_GFH_SIZE && i < nmodels; i++) {
        const fb_model *r = fb_model_at(i);
        expect_ok |= r->load_address == addr && (!r->region_size || alen <= r->region_size);
    }
    FAIL_IF((st == FB_OK) != expect_ok, "address 0x%08X length %u: %s (%s)", addr, alen,
            fb_status_name(st), err.message);
    if (fb_model_platform(addr) == FB_PLATFORM_NBIOT && alen >= FB_GFH_SIZE)
        FAIL_IF(st != FB_ERR_UNSUPPORTED, "NB-IoT address 0x%08X: %s", addr,
                fb_status_name(st));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size, NULL);
    for (size_t i = 0; i < fb_model_count(); i++)
        check_one(data, size, fb_model_at(i));
    if (size >= 64)
        check_built(data);
    return 0;
}
