/* C-level checks of the core, run by tests/test_native.py (normally and under
 * ASan/UBSan/LSan, which is where leaks and overflows in these paths show up).
 * The rules themselves are covered in depth by the Python tests. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fotabench/appimage.h"
#include "fotabench/crc16.h"
#include "fotabench/md5.h"
#include "fotabench/package.h"
#include "fotabench/url.h"

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void test_crc16(void)
{
    CHECK_EQ_INT(fb_crc16_xmodem(0, "123456789", 9), 0x31C3);
    /* Chained calls equal one call. */
    CHECK_EQ_INT(fb_crc16_xmodem(fb_crc16_xmodem(0, "1234", 4), "56789", 5), 0x31C3);
    CHECK_EQ_INT(fb_crc16_xmodem(0, "", 0), 0);
}

static void test_md5(const char *dir)
{
    uint8_t d[FB_MD5_LEN];
    char hex[FB_MD5_HEX_LEN];
    fb_error err;
    char path[512];
    /* RFC 1321 test suite. */
    snprintf(path, sizeof path, "%s/abc", dir);
    write_file(path, "abc", 3);
    CHECK_EQ_INT(fb_md5_file(path, d, &err), FB_OK);
    fb_hex(d, sizeof d, hex);
    CHECK(strcmp(hex, "900150983cd24fb0d6963f7d28e17f72") == 0);
    snprintf(path, sizeof path, "%s/empty", dir);
    write_file(path, "", 0);
    CHECK_EQ_INT(fb_md5_file(path, d, &err), FB_OK);
    fb_hex(d, sizeof d, hex);
    CHECK(strcmp(hex, "d41d8cd98f00b204e9800998ecf8427e") == 0);
    snprintf(path, sizeof path, "%s/missing", dir);
    CHECK_EQ_INT(fb_md5_file(path, d, &err), FB_ERR_IO);
    CHECK_CONTAINS(err.message, "missing");
    CHECK_CONTAINS(err.message, "No such file");
    /* Streaming API: reuse after reset. */
    fb_md5 *m = fb_md5_new(&err);
    CHECK(m != NULL);
    if (m) {
        CHECK_EQ_INT(fb_md5_update(m, "a", 1, &err), FB_OK);
        CHECK_EQ_INT(fb_md5_update(m, "bc", 2, &err), FB_OK);
        CHECK_EQ_INT(fb_md5_final(m, d, &err), FB_OK);
        fb_hex(d, sizeof d, hex);
        CHECK(strcmp(hex, "900150983cd24fb0d6963f7d28e17f72") == 0);
        CHECK_EQ_INT(fb_md5_reset(m, &err), FB_OK);
        CHECK_EQ_INT(fb_md5_final(m, d, &err), FB_OK);
        fb_hex(d, sizeof d, hex);
        CHECK(strcmp(hex, "d41d8cd98f00b204e9800998ecf8427e") == 0);
        fb_md5_free(m);
    }
}

static void test_image_and_package(const char *dir)
{
    const fb_model *m66 = fb_model_find("m66");
    CHECK(m66 != NULL);
    char raw[512], app[512], pkg[512];
    snprintf(raw, sizeof raw, "%s/raw.bin", dir);
    snprintf(app, sizeof app, "%s/app.bin", dir);
    snprintf(pkg, sizeof pkg, "%s/pkg.bin", dir);
    uint8_t code[1001];
    for (size_t i = 0; i < sizeof code; i++)
        code[i] = (uint8_t)(i * 7);
    write_file(raw, code, sizeof code);

    fb_error err;
    fb_app_info info;
    CHECK_EQ_INT(fb_app_image_wrap(raw, m66, app, NULL, &info, NULL, &err), FB_OK);
    CHECK_EQ_INT(info.file_length, sizeof code + 64);
    CHECK(info.model == m66);
    /* Wrapping an image again is refused: it would nest two headers. */
    CHECK_EQ_INT(fb_app_image_wrap(app, m66, pkg, NULL, &info, NULL, &err), FB_ERR_IMAGE);
    CHECK(access(pkg, F_OK) != 0);

    fb_report report;
    fb_report_init(&report);
    CHECK_EQ_INT(fb_app_image_inspect(app, NULL, &info, &report, &err), FB_OK);
    CHECK_EQ_INT(fb_report_failures(&report), 0);
    fb_report_init(&report);
    CHECK_EQ_INT(fb_app_image_inspect(app, fb_model_find("MC60"), &info, &report, &err),
                 FB_ERR_MODEL);
    CHECK_CONTAINS(err.message, "M66");

    fb_package_info pinfo;
    CHECK_EQ_INT(fb_package_build(app, pkg, NULL, FB_IMAGE_APP, 0, NULL, &pinfo, NULL, &err), FB_OK);
    CHECK_EQ_INT(pinfo.file_size, 80 + 1068 + 16); /* 1065 rounded up to 1068 */
    CHECK_EQ_INT(fb_package_build(app, pkg, NULL, FB_IMAGE_CORE, 0, NULL, &pinfo, NULL, &err),
                 FB_ERR_UNSUPPORTED);
    fb_report_init(&report);
    CHECK_EQ_INT(fb_package_check_file(pkg, m66, &pinfo, &report, &err), FB_OK);
    CHECK_EQ_INT(fb_report_failures(&report), 0);

    /* A flipped payload byte is an MD5 failure, in a buffer as in a file. */
    FILE *f = fopen(pkg, "rb");
    uint8_t buf[2048];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    CHECK_EQ_INT(n, pinfo.file_size);
    buf[500] ^= 1;
    fb_report_init(&report);
    CHECK_EQ_INT(fb_package_check_buffer(buf, n, NULL, &pinfo, &report, &err),
                 FB_ERR_CHECKSUM);
    CHECK_CONTAINS(err.message, "md5");
    /* Every short prefix fails cleanly. */
    for (size_t k = 0; k < n; k += 37) {
        fb_report_init(&report);
        CHECK(fb_package_check_buffer(buf, k, NULL, &pinfo, &report, &err) != FB_OK);
    }
}

static void test_url(void)
{
    char out[256];
    fb_error err;
    fb_url u;
    CHECK_EQ_INT(fb_url_ftp("10.0.0.1", 2121, "/fota/app.bin", "u", "p@ss", out, sizeof out,
                            &err),
                 FB_OK);
    CHECK(strcmp(out, "ftp://10.0.0.1/fota/app.bin:2121@u:p@ss") == 0);
    CHECK_EQ_INT(fb_url_parse(out, &u, &err), FB_OK);
    CHECK(strcmp(u.password, "p@ss") == 0 && strcmp(u.path, "/fota") == 0);
    CHECK_EQ_INT(fb_url_http("example.com", 80, "/a.bin", out, 8, &err), FB_ERR_ARG);
    CHECK_EQ_INT(fb_url_parse(NULL, &u, &err), FB_ERR_ARG);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    test_crc16();
    test_md5(argv[1]);
    test_image_and_package(argv[1]);
    test_url();
    CHECK_DONE();
}
