/* fotabench C core: OpenCPU app images (MediaTek GFH FILE_INFO header + code).
 *
 * Layout: opencpu-fota.md §6. The header carries no version or checksum; what a
 * flasher and the FOTA path check is the magic, the id, the length field against the
 * file size, and (for us) the load address and size against the module's app region. */
#ifndef FOTABENCH_APPIMAGE_H
#define FOTABENCH_APPIMAGE_H

#include <stdint.h>

#include "fotabench/error.h"
#include "fotabench/model.h"
#include "fotabench/report.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FB_GFH_SIZE 64u

typedef struct fb_app_info {
    uint8_t magic[3];
    uint8_t gfh_version;
    uint16_t gfh_size;
    uint16_t gfh_type;
    char id[13];           /* NUL-terminated copy of the 12-byte id field */
    uint32_t file_ver;
    uint16_t file_type;
    uint8_t flash_dev;
    uint8_t sig_type;
    uint32_t load_address;
    uint32_t file_length;  /* the header's length field (header included) */
    uint32_t max_size;
    uint32_t content_offset;
    uint32_t sig_len;
    uint32_t jump_offset;
    uint32_t attr;
    uint64_t image_size;   /* bytes actually present */
    /* The model row the image was checked against: the named model's row at the image's
     * address, the only candidate, or NULL (several candidates, or none). */
    const fb_model *model;
    /* Auto-detection (and a named model's neighbours): every row at the load address
     * whose region holds the image (all rows there when none does). */
    size_t n_candidates;
    const fb_model *candidates[FB_MODEL_MAX_CANDIDATES];
    fb_platform platform;  /* what the load address says about the chip */
} fb_app_info;

/* The 64-byte header a Quectel GFH generator writes for an app of file_length bytes
 * (header included) loaded at load_address. */
void fb_app_image_header(uint8_t out[FB_GFH_SIZE], uint32_t load_address, uint32_t file_length);

/* Check a header (hdr_len bytes of it available, normally 64) of an image that is
 * image_size bytes long. model NULL = auto: every model known at the load address
 * whose region holds the image is a candidate; an address no model is known at fails
 * (naming the platform), an NB-IoT (0x08xxxxxx) address is refused as unsupported.
 * A named model must be known at the address, unless the address is in the OpenCPU
 * app area and no model is known there: then it passes with a warning (on the user's
 * word) and the model's usual region bounds the size. Every check lands in report (may
 * be NULL); info (may be NULL) gets the decoded fields. Returns FB_OK or the first
 * failed check's status, with err set. */
fb_status fb_app_image_check(const uint8_t *hdr, size_t hdr_len, uint64_t image_size,
                             const fb_model *model, fb_app_info *info, fb_report *report,
                             fb_error *err);

/* fb_app_image_check on a file. FB_ERR_IO when it cannot be read. */
fb_status fb_app_image_inspect(const char *path, const fb_model *model, fb_app_info *info,
                               fb_report *report, fb_error *err);

/* Prepend a correct header to a raw application binary: what Quectel's Windows-only
 * GFH generator does, at model's load address (a row of the table: fb_model_find_at
 * picks a model's other address). The output appears only when complete; an output
 * that is the input file is refused. info and report (may be NULL) get the check of
 * the header written; cancel as for fb_package_build. */
fb_status fb_app_image_wrap(const char *raw_path, const fb_model *model, const char *out_path,
                            const fb_cancel *cancel, fb_app_info *info, fb_report *report,
                            fb_error *err);

#ifdef __cplusplus
}
#endif
#endif
