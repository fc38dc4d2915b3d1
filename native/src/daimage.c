/* The download agent file, in mtkclient's legacy DA loader layout (our reading of
 * mtkclient's daconfig.py; every field we rely on is listed in docs/flashing.md):
 *
 *   0x00  32  "MTK_DOWNLOAD_AGENT", NUL-padded
 *   0x20  64  id string (e.g. "MTK_AllInOne_DA_v3..."), NUL-padded
 *   0x60   4  u32 LE version
 *   0x64   4  u32 LE magic 0x22668899
 *   0x68   4  u32 LE number of entries
 *   0x6C      entries, 0xDC bytes each:
 *        10 x u16 LE: magic 0xDADA, hw_code, hw_sub_code, hw_version, sw_version,
 *                     reserved, pagesize, reserved, entry_region_index, region_count
 *        10 x 20-byte regions: u32 LE m_buf, m_len, m_start_addr, m_start_offset, m_sig_len
 *
 * Hand-written: no packaged library reads this format. */
#include "fotabench/flash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "fileio.h"

static const char da_magic_text[] = "MTK_DOWNLOAD_AGENT";

#define WHERE_TO_GET                                                                      \
    "fotabench needs MediaTek's download agent for MT6261/MT2503 as shipped with "        \
    "Quectel's QFlash (the file named MTK_AllInOne_DA.bin in QFlash's folder); pass it "  \
    "with --da"

struct fb_da_file {
    uint8_t *data;
    size_t size;
    char id[65];
    uint32_t version;
    size_t count;
    fb_da_entry *entries;
};

fb_da_file *fb_da_file_parse(const uint8_t *data, size_t n, fb_error *err)
{
    if (!data || n < FB_DA_HEADER_SIZE) {
        fb_error_set(err, FB_ERR_IMAGE,
                     "not a download agent file: %zu bytes, shorter than its 108-byte header; "
                     WHERE_TO_GET, n);
        return NULL;
    }
    if (memcmp(data, da_magic_text, sizeof da_magic_text - 1) != 0) {
        fb_error_set(err, FB_ERR_IMAGE,
                     "not a download agent file: it does not start with MTK_DOWNLOAD_AGENT; "
                     WHERE_TO_GET);
        return NULL;
    }
    uint32_t magic = get_le32(data + 0x64);
    if (magic != FB_DA_FILE_MAGIC) {
        fb_error_set(err, FB_ERR_IMAGE,
                     "download agent file: magic 0x%08X at 0x64, expected 0x22668899 (a newer "
                     "DA layout than the MT6261/MT2503 legacy one?); " WHERE_TO_GET, magic);
        return NULL;
    }
    uint32_t count = get_le32(data + 0x68);
    if (count == 0 || count > (n - FB_DA_HEADER_SIZE) / FB_DA_ENTRY_SIZE) {
        fb_error_set(err, FB_ERR_IMAGE,
                     "download agent file: %u entries announced, the file (%zu bytes) holds "
                     "room for %zu; the file is truncated or not a DA; " WHERE_TO_GET,
                     count, n, (n - FB_DA_HEADER_SIZE) / FB_DA_ENTRY_SIZE);
        return NULL;
    }
    fb_da_file *da = calloc(1, sizeof *da);
    if (!da) {
        fb_error_set(err, FB_ERR_NOMEM, "out of memory reading the download agent file");
        return NULL;
    }
    da->data = malloc(n);
    da->entries = calloc(count, sizeof *da->entries);
    if (!da->data || !da->entries) {
        fb_da_file_free(da);
        fb_error_set(err, FB_ERR_NOMEM, "out of memory reading the download agent file");
        return NULL;
    }
    memcpy(da->data, data, n);
    da->size = n;
    memcpy(da->id, data + 0x20, 64);
    da->id[64] = '\0';
    da->version = get_le32(data + 0x60);
    da->count = count;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = data + FB_DA_HEADER_SIZE + (size_t)i * FB_DA_ENTRY_SIZE;
        fb_da_entry *out = &da->entries[i];
        out->magic = get_le16(e);
        out->hw_code = get_le16(e + 2);
        out->hw_sub_code = get_le16(e + 4);
        out->hw_version = get_le16(e + 6);
        out->sw_version = get_le16(e + 8);
        out->pagesize = get_le16(e + 12);
        out->entry_region_index = get_le16(e + 16);
        out->region_count = get_le16(e + 18);
        const char *bad = NULL;
        if (out->magic != FB_DA_ENTRY_MAGIC)
            bad = "its magic is not 0xDADA";
        else if (out->region_count > FB_DA_MAX_REGIONS)
            bad = "it announces more than 10 regions";
        else if (out->entry_region_index >= out->region_count)
            bad = "its first agent region is past its region table";
        for (uint16_t r = 0; !bad && r < out->region_count; r++) {
            const uint8_t *rp = e + 20 + (size_t)r * 20;
            fb_da_region *reg = &out->regions[r];
            reg->file_offset = get_le32(rp);
            reg->length = get_le32(rp + 4);
            reg->start_address = get_le32(rp + 8);
            reg->start_offset = get_le32(rp + 12);
            reg->sig_len = get_le32(rp + 16);
            if ((uint64_t)reg->file_offset + reg->length > n)
                bad = "a region lies past the end of the file";
            else if (reg->sig_len > reg->length)
                bad = "a region's signature is longer than the region";
            else if (r >= out->entry_region_index && reg->length == 0)
                bad = "an agent region is empty";
        }
        if (bad) {
            fb_error_set(err, FB_ERR_IMAGE,
                         "download agent file: entry %u (hw code 0x%04X): %s; the file is "
                         "damaged or not a DA; " WHERE_TO_GET,
                         i, out->hw_code, bad);
            fb_da_file_free(da);
            return NULL;
        }
    }
    return da;
}

fb_da_file *fb_da_file_load(const char *path, fb_error *err)
{
    int fd;
    uint64_t size;
    if (fb_open_regular(path, &fd, &size, err) != FB_OK) {
        if (err)
            snprintf(err->message + strlen(err->message),
                     sizeof err->message - strlen(err->message), "; " WHERE_TO_GET);
        return NULL;
    }
    if (size > 64u * 1024 * 1024) {
        close(fd);
        fb_error_set(err, FB_ERR_IMAGE, "%s: %llu bytes is too large for a download agent; "
                     WHERE_TO_GET, path, (unsigned long long)size);
        return NULL;
    }
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        close(fd);
        fb_error_set(err, FB_ERR_NOMEM, "out of memory reading %s", path);
        return NULL;
    }
    fb_status st = fb_pread_full(fd, buf, (size_t)size, 0, path, err);
    close(fd);
    fb_da_file *da = NULL;
    if (st == FB_OK) {
        da = fb_da_file_parse(buf, (size_t)size, err);
        if (!da && err) {
            /* Name the file in the message. */
            char msg[FB_ERROR_MSG_MAX];
            memcpy(msg, err->message, sizeof msg);
            fb_error_set(err, err->code, "%s: %.*s", path, (int)(sizeof msg - 1), msg);
        }
    }
    free(buf);
    return da;
}

void fb_da_file_free(fb_da_file *da)
{
    if (!da)
        return;
    free(da->data);
    free(da->entries);
    free(da);
}

const char *fb_da_file_id(const fb_da_file *da)
{
    return da->id;
}

uint32_t fb_da_file_version(const fb_da_file *da)
{
    return da->version;
}

size_t fb_da_file_count(const fb_da_file *da)
{
    return da->count;
}

const fb_da_entry *fb_da_file_entry(const fb_da_file *da, size_t index)
{
    return index < da->count ? &da->entries[index] : NULL;
}

const fb_da_entry *fb_da_file_find(const fb_da_file *da, uint16_t hw_code)
{
    for (size_t i = 0; i < da->count; i++)
        if (da->entries[i].hw_code == hw_code)
            return &da->entries[i];
    return NULL;
}

const uint8_t *fb_da_file_region_data(const fb_da_file *da, const fb_da_region *region)
{
    if ((uint64_t)region->file_offset + region->length > da->size)
        return NULL;
    return da->data + region->file_offset;
}

fb_status fb_da_file_build(const char *id, const fb_da_build_entry *entries, size_t count,
                           uint8_t **out, size_t *out_len, fb_error *err)
{
    size_t total = FB_DA_HEADER_SIZE + count * FB_DA_ENTRY_SIZE;
    for (size_t i = 0; i < count; i++) {
        if (entries[i].count == 0 || entries[i].count > FB_DA_MAX_REGIONS - 1)
            return fb_error_set(err, FB_ERR_ARG, "a DA entry has 1..9 agent parts");
        for (size_t r = 0; r < entries[i].count; r++)
            total += entries[i].parts[r].length;
    }
    uint8_t *buf = calloc(1, total);
    if (!buf)
        return fb_error_set(err, FB_ERR_NOMEM, "out of memory building a DA file");
    memcpy(buf, da_magic_text, sizeof da_magic_text - 1);
    if (id)
        memcpy(buf + 0x20, id, strnlen(id, 63));
    put_le32(buf + 0x60, 4);
    put_le32(buf + 0x64, FB_DA_FILE_MAGIC);
    put_le32(buf + 0x68, (uint32_t)count);
    size_t blob = FB_DA_HEADER_SIZE + count * FB_DA_ENTRY_SIZE;
    for (size_t i = 0; i < count; i++) {
        uint8_t *e = buf + FB_DA_HEADER_SIZE + i * FB_DA_ENTRY_SIZE;
        put_le16(e, FB_DA_ENTRY_MAGIC);
        put_le16(e + 2, entries[i].hw_code);
        put_le16(e + 12, 0x200);
        put_le16(e + 16, 1);
        put_le16(e + 18, (uint16_t)(entries[i].count + 1));
        /* Region 0 stays zero: in the files seen it is not part of the agent. */
        for (size_t r = 0; r < entries[i].count; r++) {
            const fb_da_build_region *part = &entries[i].parts[r];
            uint8_t *rp = e + 20 + (r + 1) * 20;
            put_le32(rp, (uint32_t)blob);
            put_le32(rp + 4, part->length);
            put_le32(rp + 8, part->start_address);
            put_le32(rp + 16, part->sig_len);
            if (part->length)
                memcpy(buf + blob, part->data, part->length);
            blob += part->length;
        }
    }
    *out = buf;
    *out_len = total;
    return FB_OK;
}
