/* libFuzzer target: the DA file parser (fb_da_file_parse) on arbitrary bytes, and on
 * files built by fb_da_file_build from parts taken from the input.
 *
 *   make -C native fuzz && native/build/fuzz/fuzz_dafile CORPUS_DIR
 *
 * Seeds: native/fuzz/make_corpus.py OUT (writes OUT/fuzz_dafile/). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/flash.h"
#include "fuzz_common.h"

static void check_parsed(const fb_da_file *da, const uint8_t *data, size_t size)
{
    FAIL_IF(fb_da_file_count(da) == 0, "a parsed file without entries");
    FAIL_IF(!nul_terminated(fb_da_file_id(da), 65), "id not terminated");
    for (size_t i = 0; i < fb_da_file_count(da); i++) {
        const fb_da_entry *e = fb_da_file_entry(da, i);
        FAIL_IF(e->magic != FB_DA_ENTRY_MAGIC, "entry %zu magic 0x%04X", i, e->magic);
        FAIL_IF(e->region_count > FB_DA_MAX_REGIONS, "entry %zu: %u regions", i,
                e->region_count);
        FAIL_IF(e->entry_region_index >= e->region_count, "entry %zu: first region %u of %u",
                i, e->entry_region_index, e->region_count);
        FAIL_IF(fb_da_file_find(da, e->hw_code) == NULL, "find 0x%04X", e->hw_code);
        for (uint16_t r = 0; r < e->region_count; r++) {
            const fb_da_region *reg = &e->regions[r];
            FAIL_IF((uint64_t)reg->file_offset + reg->length > size, "region past the end");
            FAIL_IF(reg->sig_len > reg->length, "signature longer than its region");
            const uint8_t *p = fb_da_file_region_data(da, reg);
            FAIL_IF(!p, "region data NULL");
            FAIL_IF(reg->length && memcmp(p, data + reg->file_offset, reg->length) != 0,
                    "region data differs from the file");
        }
    }
    FAIL_IF(fb_da_file_entry(da, fb_da_file_count(da)) != NULL, "entry past the count");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fb_error err;
    memset(&err, 0xA5, sizeof err);
    fb_da_file *da = fb_da_file_parse(data, size, &err);
    if (da) {
        check_parsed(da, data, size);
        fb_da_file_free(da);
    } else {
        FAIL_IF(err.code != FB_ERR_IMAGE, "refusal with %s", fb_status_name(err.code));
        FAIL_IF(!nul_terminated(err.message, sizeof err.message), "message not terminated");
        FAIL_IF(!strstr(err.message, "QFlash"), "refusal does not say where the DA comes "
                "from: %s", err.message);
    }
    /* A file built from the input's bytes parses back to the same parts. */
    if (size >= 4) {
        fb_da_build_entry e[2];
        memset(e, 0, sizeof e);
        size_t count = 1 + (data[0] & 1), off = 4;
        for (size_t i = 0; i < count; i++) {
            e[i].hw_code = (uint16_t)(data[1] << 8 | data[2] | i);
            e[i].count = 1 + (size_t)(data[3] >> (4 * i) & 7) % 9;
            for (size_t r = 0; r < e[i].count; r++) {
                uint32_t len = off < size ? (uint32_t)(data[off] % 64 + 1) : 1;
                if (off + len > size)
                    len = off < size ? (uint32_t)(size - off) : 0;
                e[i].parts[r].start_address = 0x70007000u + (uint32_t)r * 0x1000;
                e[i].parts[r].data = data + (off < size ? off : 0);
                e[i].parts[r].length = len ? len : 1;
                if (off + e[i].parts[r].length > size)
                    e[i].parts[r].data = (const uint8_t *)"x";
                off += len ? len : 1;
            }
        }
        uint8_t *file = NULL;
        size_t len = 0;
        FAIL_IF(fb_da_file_build("fuzz", e, count, &file, &len, &err) != FB_OK, "build: %s",
                err.message);
        da = fb_da_file_parse(file, len, &err);
        FAIL_IF(!da, "a built file does not parse: %s", err.message);
        check_parsed(da, file, len);
        for (size_t i = 0; i < count; i++) {
            const fb_da_entry *got = fb_da_file_entry(da, i);
            FAIL_IF(got->region_count != e[i].count + 1 || got->entry_region_index != 1,
                    "built entry %zu: %u regions", i, got->region_count);
            for (size_t r = 0; r < e[i].count; r++) {
                const fb_da_region *reg = &got->regions[r + 1];
                FAIL_IF(reg->length != e[i].parts[r].length ||
                            memcmp(fb_da_file_region_data(da, reg), e[i].parts[r].data,
                                   reg->length) != 0,
                        "built part %zu/%zu differs", i, r);
            }
        }
        fb_da_file_free(da);
        free(file);
    }
    return 0;
}
