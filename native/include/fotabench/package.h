/* fotabench C core: OpenCPU FOTA upgrade packages.
 *
 * Layout (opencpu-fota.md §5): an 80-byte header whose last field is a
 * CRC-16/XMODEM of the first 76 bytes, the app image unchanged, 0xFF padding to a
 * multiple of 4, and the MD5 of every byte before it. Building and verifying both
 * stream the file: memory use does not grow with its size. */
#ifndef FOTABENCH_PACKAGE_H
#define FOTABENCH_PACKAGE_H

#include <stdint.h>

#include "fotabench/appimage.h"
#include "fotabench/error.h"
#include "fotabench/md5.h"
#include "fotabench/model.h"
#include "fotabench/report.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FB_PKG_MAGIC "QUECTEL_FOTA_UPGRADE"
#define FB_PKG_MAGIC_LEN 20u
#define FB_PKG_HEADER_SIZE 80u
#define FB_PKG_CRC_OFFSET 76u
#define FB_PKG_MIN_SIZE (FB_PKG_HEADER_SIZE + FB_MD5_LEN)

typedef enum fb_image_type {
    FB_IMAGE_APP = 0,
    FB_IMAGE_CORE = 1,      /* not supported by OpenCPU FOTA */
    FB_IMAGE_CORE_DELTA = 2 /* not supported by OpenCPU FOTA */
} fb_image_type;

/* The u16 at offset 22. Every package made by Quectel's GS3 tool has 1; the GS2 tool's
 * reading said 0. Both mean an MD5 trailer; fotabench writes 1, accepts 0 with a warning. */
#define FB_CHECKSUM_MD5 1u
#define FB_CHECKSUM_MD5_GS2 0u

typedef enum fb_special {
    FB_SPECIAL_NONE = 0,
    FB_SPECIAL_CLEAR_NVRAM = 1u << 0,
    FB_SPECIAL_FORMAT_FS = 1u << 1
} fb_special;
#define FB_SPECIAL_KNOWN_BITS 3u

typedef struct fb_package_header {
    uint8_t magic[FB_PKG_MAGIC_LEN];
    uint16_t image_type;
    uint16_t checksum_type;  /* FB_CHECKSUM_MD5 (GS3 tool) or FB_CHECKSUM_MD5_GS2 */
    uint32_t special;
    uint32_t payload_length; /* app image + padding */
    uint32_t digest_length;
    uint32_t crc_field;      /* as stored (CRC in the low 16 bits) */
    uint16_t crc_computed;
} fb_package_header;

typedef struct fb_package_info {
    uint64_t file_size;
    int header_valid;  /* the header could be read (file >= 80 bytes) */
    fb_package_header header;
    int md5_valid;     /* both digests below were obtained */
    uint8_t md5_stored[FB_MD5_LEN];
    uint8_t md5_computed[FB_MD5_LEN];
    int app_valid;     /* an app header was present to decode */
    fb_app_info app;
} fb_package_info;

/* Where package bytes come from: a file, a buffer, anything with random access.
 * read_at must fill exactly n bytes or fail with err set. */
typedef struct fb_source {
    fb_status (*read_at)(void *ctx, uint64_t offset, void *buf, size_t n, fb_error *err);
    void *ctx;
    uint64_t size;
} fb_source;

/* Encode a header for an App payload of payload_length bytes (already a multiple of 4),
 * as Quectel's GS3 tool does (checksum type 1). */
void fb_package_header_encode(uint8_t out[FB_PKG_HEADER_SIZE], fb_image_type type,
                              uint32_t special, uint32_t payload_length);

/* Every check of a package: header fields and CRC, lengths, MD5, the embedded app
 * image (against model, or auto when NULL) and its padding. Check failures land in
 * report and are returned as the first failure's status; FB_ERR_IO means the source
 * could not be read (the report is then incomplete). */
fb_status fb_package_check(const fb_source *src, const fb_model *model, fb_package_info *info,
                           fb_report *report, fb_error *err);
fb_status fb_package_check_file(const char *path, const fb_model *model, fb_package_info *info,
                                fb_report *report, fb_error *err);
fb_status fb_package_check_buffer(const uint8_t *data, size_t len, const fb_model *model,
                                  fb_package_info *info, fb_report *report, fb_error *err);

/* Build a package from an app image, which must pass fb_app_image_check against model
 * (NULL = detect from its load address). Only FB_IMAGE_APP is accepted; an output that
 * is the input file (by any path) is refused. The output appears under out_path only
 * when complete and verified; info and report (each may be NULL) get the verification
 * of what this call wrote, before the rename (never re-read from out_path, where another
 * writer may have put its own). cancel (may be NULL) is asked between chunks: stopping
 * leaves no temporary file and returns FB_ERR_CANCELLED. */
fb_status fb_package_build(const char *app_path, const char *out_path, const fb_model *model,
                           fb_image_type type, uint32_t special, const fb_cancel *cancel,
                           fb_package_info *info, fb_report *report, fb_error *err);

#ifdef __cplusplus
}
#endif
#endif
