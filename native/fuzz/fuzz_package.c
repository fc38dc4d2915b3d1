/* libFuzzer target: fb_package_check_buffer on arbitrary bytes, and on packages built
 * in memory from parameters taken from the input, then tweaked or mutated.
 *
 *   make -C native fuzz && native/build/fuzz/fuzz_package CORPUS_DIR
 *
 * Seeds: native/fuzz/make_corpus.py OUT (writes OUT/fuzz_package/).
 * Every invariant violation prints what was wrong and abort()s, so libFuzzer saves
 * the input as crash-<sha1>. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/appimage.h"
#include "fotabench/crc16.h"
#include "fotabench/error.h"
#include "fotabench/md5.h"
#include "fotabench/model.h"
#include "fotabench/package.h"
#include "fotabench/report.h"
#include "fuzz_common.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static const fb_check *find_check(const fb_report *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->checks[i].name, name) == 0)
            return &r->checks[i];
    return NULL;
}

static void md5_of(const uint8_t *p, size_t n, uint8_t out[FB_MD5_LEN])
{
    fb_error err;
    fb_md5 *m = fb_md5_new(&err);
    FAIL_IF(!m, "fb_md5_new: %s", err.message);
    FAIL_IF(fb_md5_update(m, p, n, &err) != FB_OK, "fb_md5_update: %s", err.message);
    FAIL_IF(fb_md5_final(m, out, &err) != FB_OK, "fb_md5_final: %s", err.message);
    fb_md5_free(m);
}

/* Check a buffer with every invariant; returns the status. */
static fb_status check_buf(const uint8_t *data, size_t size, const fb_model *model,
                           fb_report *report)
{
    fb_package_info info;
    fb_error err;
    memset(&info, 0xA5, sizeof info);
    memset(&err, 0xA5, sizeof err); /* garbage: the call must terminate what it writes */
    fb_report_init(report);
    fb_status st = fb_package_check_buffer(data, size, model, &info, report, &err);
    FAIL_IF(st == FB_ERR_IO, "FB_ERR_IO on a buffer of %zu bytes: %s", size, err.message);
    check_report(report, st, &err);
    FAIL_IF(st != FB_OK && st != FB_ERR_PACKAGE && st != FB_ERR_CHECKSUM &&
                st != FB_ERR_UNSUPPORTED && st != FB_ERR_IMAGE && st != FB_ERR_MODEL,
            "unexpected status %s", fb_status_name(st));
    FAIL_IF(info.file_size != size, "info.file_size %llu != %zu",
            (unsigned long long)info.file_size, size);
    FAIL_IF(info.header_valid != (size >= FB_PKG_MIN_SIZE), "header_valid %d for %zu bytes",
            info.header_valid, size);
    if (size >= FB_PKG_MIN_SIZE) {
        FAIL_IF(!info.md5_valid, "md5 not computed");
        FAIL_IF(memcmp(info.md5_stored, data + size - FB_MD5_LEN, FB_MD5_LEN) != 0,
                "md5_stored is not the last 16 bytes");
        uint8_t md5[FB_MD5_LEN];
        md5_of(data, size - FB_MD5_LEN, md5);
        FAIL_IF(memcmp(info.md5_computed, md5, FB_MD5_LEN) != 0, "md5_computed is wrong");
        FAIL_IF(info.header.crc_computed != fb_crc16_xmodem(0, data, FB_PKG_CRC_OFFSET),
                "crc_computed is wrong");
        FAIL_IF(info.header.payload_length != le32(data + 28), "payload_length misdecoded");
        if (info.app_valid)
            FAIL_IF(!nul_terminated(info.app.id, sizeof info.app.id), "app.id not terminated");
    } else {
        FAIL_IF(st != FB_ERR_PACKAGE || report->count != 1, "short buffer: %s, %zu checks",
                fb_status_name(st), report->count);
    }
    if (st == FB_OK) {
        uint32_t payload = le32(data + 28);
        FAIL_IF(memcmp(data, FB_PKG_MAGIC, FB_PKG_MAGIC_LEN) != 0, "FB_OK without magic");
        FAIL_IF(le32(data + FB_PKG_CRC_OFFSET) != fb_crc16_xmodem(0, data, FB_PKG_CRC_OFFSET),
                "FB_OK with a wrong header CRC");
        FAIL_IF((uint64_t)FB_PKG_HEADER_SIZE + payload + FB_MD5_LEN != size || payload % 4,
                "FB_OK with payload_length %u in %zu bytes", payload, size);
        FAIL_IF(memcmp(info.md5_stored, info.md5_computed, FB_MD5_LEN) != 0,
                "FB_OK with an MD5 mismatch");
        FAIL_IF(!info.app_valid, "FB_OK without a valid app");
        /* No model: several models at the address (see fuzz_appimage for the rest). */
        FAIL_IF(!info.app.model && (model || info.app.n_candidates < 2),
                "FB_OK without a model and %zu candidates", info.app.n_candidates);
        FAIL_IF(model && info.app.model != model &&
                    info.app.model != fb_model_find_at(model->name, info.app.load_address),
                "FB_OK for the wrong model");
        FAIL_IF(le16(data + 22) > 1, "FB_OK with checksum type %u", le16(data + 22));
        uint32_t app_len = info.app.file_length;
        FAIL_IF(app_len > payload || payload - app_len > 3, "FB_OK: app %u in payload %u",
                app_len, payload);
        for (uint32_t i = app_len; i < payload; i++)
            FAIL_IF(data[FB_PKG_HEADER_SIZE + i] != 0xFF, "FB_OK with padding not 0xFF");
    }

    /* Same verdict with every optional argument NULL. */
    fb_status st2 = fb_package_check_buffer(data, size, model, NULL, NULL, NULL);
    FAIL_IF(st2 != st, "NULL report/info/err: %s, with them: %s", fb_status_name(st2),
            fb_status_name(st));
    return st;
}

/* Input bytes consumed by the structured mode, in order. */
typedef struct params {
    const uint8_t *p;
    size_t n, pos;
} params;

static uint8_t take8(params *q)
{
    return q->pos < q->n ? q->p[q->pos++] : 0;
}

static uint32_t take32(params *q)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)take8(q) << (8 * i);
    return v;
}

enum tweak {
    TWEAK_NONE,
    TWEAK_CORE,          /* image type Core, header CRC and MD5 consistent */
    TWEAK_SPECIAL,       /* an undefined special-option bit */
    TWEAK_PADDING,       /* a padding byte that is not 0xFF */
    TWEAK_APP_LENGTH,    /* app length field no longer matches */
    TWEAK_TRAILING,      /* 4 more payload bytes than the app + padding */
    TWEAK_REGION_EXACT,  /* app exactly as large as the region: valid */
    TWEAK_REGION_OVER,   /* app larger than the region */
    TWEAK_WRONG_MODEL,   /* checked against another model */
    TWEAK_CHECKSUM_TYPE, /* checksum type not MD5 */
    TWEAK_DIGEST_LENGTH, /* digest length not 16 */
    TWEAK_RESERVED,      /* a reserved header byte not 0xFF */
    TWEAK_COUNT
};

/* Build header + app + padding + MD5 for an app of app_len bytes at the model's address. */
static uint8_t *build(const fb_model *m, uint32_t app_len, uint32_t special, uint32_t extra,
                      params *q, size_t *out_len, uint32_t *payload_out)
{
    uint32_t payload = ((app_len + 3u) & ~3u) + extra;
    size_t total = FB_PKG_HEADER_SIZE + (size_t)payload + FB_MD5_LEN;
    uint8_t *pkg = malloc(total);
    FAIL_IF(!pkg, "out of memory for %zu bytes", total);
    fb_package_header_encode(pkg, FB_IMAGE_APP, special, payload);
    fb_app_image_header(pkg + FB_PKG_HEADER_SIZE, m->load_address, app_len);
    /* Code bytes: the rest of the input, repeated (0 when there is none). */
    uint8_t *code = pkg + FB_PKG_HEADER_SIZE + FB_GFH_SIZE;
    size_t code_len = app_len - FB_GFH_SIZE;
    size_t rest = q->n - q->pos;
    if (!rest)
        memset(code, 0, code_len);
    for (size_t i = 0; rest && i < code_len; i += rest)
        memcpy(code + i, q->p + q->pos, code_len - i < rest ? code_len - i : rest);
    memset(pkg + FB_PKG_HEADER_SIZE + app_len, 0xFF, payload - app_len);
    *out_len = total;
    *payload_out = payload;
    return pkg;
}

static void reseal(uint8_t *pkg, size_t len)
{
    put32(pkg + FB_PKG_CRC_OFFSET, fb_crc16_xmodem(0, pkg, FB_PKG_CRC_OFFSET));
    md5_of(pkg, len - FB_MD5_LEN, pkg + len - FB_MD5_LEN);
}

static void expect_failed(const fb_report *r, fb_status st, const char *name, fb_status code,
                          const char *what)
{
    const fb_check *c = find_check(r, name);
    FAIL_IF(st == FB_OK, "%s: the package passed", what);
    FAIL_IF(!c, "%s: no check %s", what, name);
    FAIL_IF(c->ok || c->code != code, "%s: check %s ok=%d code %s, expected %s failed", what,
            name, c->ok, fb_status_name(c->code), fb_status_name(code));
}

static void structured(const uint8_t *data, size_t size)
{
    params q = {data, size, 0};
    size_t nmodels = fb_model_count();
    const fb_model *m = fb_model_at(take8(&q) % nmodels);
    unsigned tweak = take8(&q) % TWEAK_COUNT;
    uint32_t app_len = FB_GFH_SIZE + (take32(&q) % 4096u);
    uint32_t special = take8(&q) & FB_SPECIAL_KNOWN_BITS;
    uint32_t where = take32(&q);
    uint8_t xor = take8(&q);
    uint8_t arg = take8(&q);
    uint32_t extra = 0;
    const fb_model *check_model = m;
    fb_report report;

    /* Region-sized packages are ~100x slower to check: 1 in 8 of their selections; a
     * row whose region size is unknown has no region to fill. */
    if ((tweak == TWEAK_REGION_EXACT || tweak == TWEAK_REGION_OVER) &&
        ((arg & 0x70) != 0x70 || !m->region_size))
        tweak = TWEAK_NONE;
    if (tweak == TWEAK_REGION_EXACT)
        app_len = m->region_size;
    else if (tweak == TWEAK_REGION_OVER)
        app_len = m->region_size + 1 + arg % 8;
    else if (tweak == TWEAK_TRAILING)
        extra = 4;

    size_t len;
    uint32_t payload;
    uint8_t *pkg = build(m, app_len, special, extra, &q, &len, &payload);
    reseal(pkg, len);

    fb_status st;
    switch (tweak) {
    case TWEAK_NONE:
    case TWEAK_REGION_EXACT:
        break;
    case TWEAK_CORE:
        fb_package_header_encode(pkg, arg & 1 ? FB_IMAGE_CORE : FB_IMAGE_CORE_DELTA, special,
                                 payload);
        reseal(pkg, len);
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "image_type", FB_ERR_UNSUPPORTED, "Core image type");
        goto out;
    case TWEAK_SPECIAL:
        put32(pkg + 24, special | (4u << (arg % 30)));
        reseal(pkg, len);
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "special", FB_ERR_PACKAGE, "undefined special bit");
        goto out;
    case TWEAK_PADDING:
        if (payload == app_len)
            break; /* no padding to tweak: the package stays valid */
        pkg[FB_PKG_HEADER_SIZE + app_len + arg % (payload - app_len)] = (uint8_t)(arg >> 2);
        reseal(pkg, len);
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "padding", FB_ERR_PACKAGE, "padding not 0xFF");
        goto out;
    case TWEAK_APP_LENGTH: {
        uint32_t bad = app_len + 1 + arg;
        if (arg & 1)
            bad = app_len - 1 - arg % (app_len - FB_GFH_SIZE + 1);
        put32(pkg + FB_PKG_HEADER_SIZE + 0x20, bad);
        reseal(pkg, len);
        /* Still valid only when it reads as another app whose padding is all 0xFF:
         * bad in payload-3..payload, and every byte from bad to the payload is 0xFF. */
        int valid = bad >= FB_GFH_SIZE && bad <= payload && payload - bad < 4 &&
                    (!m->region_size || bad <= m->region_size);
        for (uint32_t i = bad; valid && i < payload; i++)
            valid = pkg[FB_PKG_HEADER_SIZE + i] == 0xFF;
        st = check_buf(pkg, len, check_model, &report);
        FAIL_IF((st == FB_OK) != valid, "app length field %u in a %u-byte app (payload %u): %s",
                bad, app_len, payload, fb_status_name(st));
        goto out;
    }
    case TWEAK_TRAILING:
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "padding", FB_ERR_PACKAGE, "4 trailing payload bytes");
        goto out;
    case TWEAK_REGION_OVER:
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "app.region", FB_ERR_MODEL, "app larger than the region");
        goto out;
    case TWEAK_WRONG_MODEL:
        /* The next row, from a pick, that names a model not known at m's address. */
        for (size_t i = 0; i < nmodels; i++) {
            check_model = fb_model_at((arg + i) % nmodels);
            if (check_model->name && check_model->load_address != m->load_address &&
                !fb_model_find_at(check_model->name, m->load_address))
                break;
        }
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "app.load_address", FB_ERR_MODEL, "wrong model");
        goto out;
    case TWEAK_CHECKSUM_TYPE:
        /* 1 is what Quectel's GS3 tool writes, 0 passes with a warning: the rest fail. */
        pkg[22] = (uint8_t)(arg < 2 ? arg + 2 : arg);
        pkg[23] = xor;
        reseal(pkg, len);
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "checksum_type", FB_ERR_PACKAGE, "checksum type");
        goto out;
    case TWEAK_DIGEST_LENGTH:
        put32(pkg + 32, arg == FB_MD5_LEN ? 0 : arg);
        reseal(pkg, len);
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "digest_length", FB_ERR_PACKAGE, "digest length");
        goto out;
    case TWEAK_RESERVED:
        pkg[36 + arg % 40] = (uint8_t)(xor == 0xFF ? 0 : xor);
        reseal(pkg, len);
        st = check_buf(pkg, len, check_model, &report);
        expect_failed(&report, st, "reserved", FB_ERR_PACKAGE, "reserved byte");
        goto out;
    }

    /* A valid package passes, for its model and auto-detected. */
    st = check_buf(pkg, len, m, &report);
    FAIL_IF(st != FB_OK, "valid %s package (app %u, special %u, tweak %u) refused",
            m->name ? m->name : "(unnamed)", app_len, special, tweak);
    st = check_buf(pkg, len, NULL, &report);
    FAIL_IF(st != FB_OK, "valid %s package refused with auto-detect",
            m->name ? m->name : "(unnamed)");

    /* Any single-byte change is caught (the MD5 covers every byte, itself included). */
    size_t at = where % len;
    pkg[at] ^= xor;
    st = check_buf(pkg, len, m, &report);
    if (xor == 0)
        FAIL_IF(st != FB_OK, "no-op mutation at %zu refused", at);
    else
        FAIL_IF(st == FB_OK, "byte %zu of %zu changed (xor 0x%02X) and the package passed",
                at, len, xor);
    pkg[at] ^= xor;

    /* Truncated by 1..4 bytes or extended: refused. */
    size_t cut = 1 + arg % 4;
    st = check_buf(pkg, len - cut, m, &report);
    FAIL_IF(st == FB_OK, "package truncated by %zu bytes passed", cut);
out:
    free(pkg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fb_report report;
    check_buf(data, size, NULL, &report);
    check_buf(data, size, fb_model_find("M66"), &report);
    structured(data, size);
    return 0;
}
