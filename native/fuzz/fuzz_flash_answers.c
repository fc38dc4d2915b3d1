/* libFuzzer target: the host's parsers of what a module answers during a flash (the
 * agent's banner and flash report) and the protocol's two sums, on arbitrary bytes.
 *
 *   make -C native fuzz && native/build/fuzz/fuzz_flash_answers CORPUS_DIR
 *
 * Seeds: native/fuzz/make_corpus.py OUT (writes OUT/fuzz_flash_answers/). */
#include <stdint.h>
#include <string.h>

#include "fotabench/flash.h"
#include "fuzz_common.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fb_error err;
    memset(&err, 0xA5, sizeof err);
    fb_da_banner bn;
    fb_status st = fb_da_parse_banner(data, size, &bn, &err);
    FAIL_IF(st != FB_OK && st != FB_ERR_PROTOCOL, "banner: %s", fb_status_name(st));
    FAIL_IF((st == FB_OK) != (size >= 4 && data[0] == 0xC0), "banner verdict");
    if (st == FB_OK)
        FAIL_IF(bn.major != data[1] || bn.minor != data[2] || bn.baseband != data[3],
                "banner fields");
    else
        FAIL_IF(!nul_terminated(err.message, sizeof err.message), "message");

    fb_da_info info;
    st = fb_da_parse_info(data, size, &info, &err);
    FAIL_IF(st != FB_OK && st != FB_ERR_PROTOCOL, "info: %s", fb_status_name(st));
    int ok = size >= FB_DA_INFO_SIZE && data[32] == 0x5A && data[33] == 0x5A &&
             data[39] == 0xC1 && be32(data) == 0 && be32(data + 34) == 0;
    FAIL_IF((st == FB_OK) != ok, "info verdict %s", fb_status_name(st));
    if (ok)
        FAIL_IF(info.nor_id != be32(data + 4) || info.nor_size != be32(data + 12) ||
                    info.ram_size != be32(data + 28) || info.boot_style != data[38],
                "info fields");

    /* XOR of LE words: appending a word equal to the sum cancels it. */
    uint16_t x = fb_brom_xor16(data, size & ~(size_t)1);
    uint8_t w[2] = {(uint8_t)x, (uint8_t)(x >> 8)};
    uint16_t again = fb_brom_xor16(data, size & ~(size_t)1) ^ fb_brom_xor16(w, 2);
    FAIL_IF(again != 0, "xor16 self-cancel");
    uint16_t s = fb_da_sum16(data, size), parts = 0;
    for (size_t i = 0; i < size; i += 7)
        parts = (uint16_t)(parts + fb_da_sum16(data + i, size - i < 7 ? size - i : 7));
    FAIL_IF(s != parts, "sum16 is not additive");
    return 0;
}
