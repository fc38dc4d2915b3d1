/* fotabench C core: flashing an app image over UART through the MediaTek BootROM.
 *
 * The host side of the protocol in opencpu-fota.md §10 (docs/flashing.md has it as
 * implemented, with what is a reading): the BootROM handshake and its echoed commands,
 * chip identification (MT6261 for M66/M26, MT2503 for MC60/MC60E), the download agent
 * (DA) sent and started, then the DA's own protocol: setup, flash descriptors, speed
 * switch, erase of the app region, 4096-byte packets with sums and resends, the file
 * checksum, optional read-back, finish.
 *
 * The DA is a MediaTek binary the user supplies (it ships with Quectel's QFlash);
 * fotabench never bundles one. fb_da_file reads it in mtkclient's legacy DA loader
 * layout ("MTK_DOWNLOAD_AGENT" header, one entry per chip with its load regions).
 *
 * One fb_flasher per port and session. It does not own the port or the DA file: both
 * must outlive it. Every byte on the wire can go to a trace callback, every phase and
 * progress step goes on the timeline, and an fb_cancel polled at least every 50 ms
 * ends a session promptly (FB_ERR_CANCELLED). */
#ifndef FOTABENCH_FLASH_H
#define FOTABENCH_FLASH_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"
#include "fotabench/model.h"
#include "fotabench/serial.h"
#include "fotabench/timeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The DA file (mtkclient's legacy DA loader layout; docs/flashing.md) ---------- */

#define FB_DA_HEADER_SIZE 0x6Cu
#define FB_DA_ENTRY_SIZE 0xDCu
#define FB_DA_MAX_REGIONS 10u
#define FB_DA_ENTRY_MAGIC 0xDADAu
#define FB_DA_FILE_MAGIC 0x22668899u

typedef struct fb_da_region {
    uint32_t file_offset;   /* m_buf: where the region's bytes start in the file */
    uint32_t length;        /* m_len: bytes sent, signature included */
    uint32_t start_address; /* m_start_addr: where the BootROM puts them */
    uint32_t start_offset;  /* m_start_offset (kept, not used) */
    uint32_t sig_len;       /* m_sig_len: trailing signature bytes (D7's third argument) */
} fb_da_region;

typedef struct fb_da_entry {
    uint16_t magic; /* 0xDADA */
    uint16_t hw_code;
    uint16_t hw_sub_code;
    uint16_t hw_version;
    uint16_t sw_version;
    uint16_t pagesize;
    uint16_t entry_region_index; /* first region that is sent (1 in the files seen) */
    uint16_t region_count;       /* regions in the table, 0..FB_DA_MAX_REGIONS */
    fb_da_region regions[FB_DA_MAX_REGIONS];
} fb_da_entry;

typedef struct fb_da_file fb_da_file; /* opaque */

/* Parse a DA file held in memory (copied). FB_ERR_IMAGE with a message naming the
 * field and what file is expected when the layout is wrong. */
fb_da_file *fb_da_file_parse(const uint8_t *data, size_t n, fb_error *err);
/* Read and parse a file; FB_ERR_IO when it cannot be read. */
fb_da_file *fb_da_file_load(const char *path, fb_error *err);
void fb_da_file_free(fb_da_file *da);

const char *fb_da_file_id(const fb_da_file *da); /* the 64-byte id string, NUL-terminated */
uint32_t fb_da_file_version(const fb_da_file *da);
size_t fb_da_file_count(const fb_da_file *da);
const fb_da_entry *fb_da_file_entry(const fb_da_file *da, size_t index);
/* The entry for a DA hw code (fb_chip.da_hw_code), or NULL. */
const fb_da_entry *fb_da_file_find(const fb_da_file *da, uint16_t hw_code);
/* The bytes of a region of an entry of this file (checked to lie in the file). */
const uint8_t *fb_da_file_region_data(const fb_da_file *da, const fb_da_region *region);

/* Build a file in this layout (for tests and the virtual module: a SYNTHETIC agent,
 * never a MediaTek binary). Each entry's regions point into `blobs` laid out after
 * the entry table in order; *out is malloc'd. */
typedef struct fb_da_build_region {
    uint32_t start_address;
    uint32_t sig_len;
    const uint8_t *data;
    uint32_t length;
} fb_da_build_region;
typedef struct fb_da_build_entry {
    uint16_t hw_code;
    size_t count; /* agent parts; region 0 is written empty, parts from index 1 */
    fb_da_build_region parts[FB_DA_MAX_REGIONS - 1];
} fb_da_build_entry;
fb_status fb_da_file_build(const char *id, const fb_da_build_entry *entries, size_t count,
                           uint8_t **out, size_t *out_len, fb_error *err);

/* ---- Chips ------------------------------------------------------------------------ */

typedef struct fb_chip {
    const char *name;       /* "MT6261", "MT2503", "MT2503DV" */
    uint16_t hw_id;         /* upper 16 bits of the word at 0xA01C0108 */
    uint16_t da_hw_code;    /* hw_code of its entry in the DA file */
    const char *models[4];  /* module models built on it (NULL-terminated) */
} fb_chip;

#define FB_CHIP_ID_ADDR 0xA01C0108u

const fb_chip *fb_chip_by_hw_id(uint16_t hw_id);
size_t fb_chip_count(void);
const fb_chip *fb_chip_at(size_t index);
/* Whether a module model (fb_model.name) is built on this chip. */
int fb_chip_has_model(const fb_chip *chip, const char *model);

/* ---- The DA's answers (pure parsers, fuzzed) -------------------------------------- */

#define FB_DA_BANNER_SIZE 4u
typedef struct fb_da_banner {
    uint8_t major, minor, baseband;
} fb_da_banner;
/* C0 <major> <minor> <baseband>. */
fb_status fb_da_parse_banner(const uint8_t *b, size_t n, fb_da_banner *out, fb_error *err);

#define FB_DA_INFO_SIZE 40u
typedef struct fb_da_info {
    uint32_t nor_ret, nor_id, nor_base, nor_size;
    uint32_t nand_ret, emmc_ret;
    uint32_t ram_ret, ram_size;
    uint32_t status;
    uint8_t boot_style;
} fb_da_info;
/* The flash report after the descriptors (40 bytes, docs/flashing.md: a reading). */
fb_status fb_da_parse_info(const uint8_t *b, size_t n, fb_da_info *out, fb_error *err);

/* u16 sums of the protocol. */
uint16_t fb_brom_xor16(const uint8_t *data, size_t n); /* D7: XOR of LE 16-bit words */
uint16_t fb_da_sum16(const uint8_t *data, size_t n);   /* DA packets: byte sum */

/* ---- The session ------------------------------------------------------------------ */

#define FB_FLASH_PACKET 4096u
#define FB_FLASH_TRACE_TX 1 /* host to module */
#define FB_FLASH_TRACE_RX 0 /* module to host */

/* Every byte on the wire, as it is written or read. */
typedef void (*fb_flash_trace_fn)(void *ctx, int direction, const uint8_t *data, size_t n,
                                  int64_t t_ns);
/* Progress of a phase ("erase": units acknowledged, "write"/"verify": bytes). Return
 * non-zero to cancel. */
typedef int (*fb_flash_progress_fn)(void *ctx, const char *phase, uint64_t done,
                                    uint64_t total);

typedef struct fb_flash_config {
    int baud;                     /* DA speed: 921600 (default), 460800, 230400, 115200 */
    int verify;                   /* read the region back and compare; default 0 */
    int reset;                    /* finish with a reset (boot the app); default 1 */
    int64_t handshake_timeout_ns; /* how long to send A0; default 60 s; FB_DEADLINE_NEVER
                                     (clock.h) waits for ever, 0 tries once */
    int64_t answer_timeout_ns;    /* each answer of the module; default 3 s */
    int max_resends;              /* per packet before giving up; default 3 */
    fb_timeline *timeline;        /* optional; must outlive the flasher */
    const char *source;           /* timeline source; default "flash" */
    fb_flash_trace_fn trace;
    fb_flash_progress_fn progress;
    void *ctx;         /* for trace and progress */
    fb_cancel cancel;  /* polled at least every 50 ms while waiting (error.h) */
} fb_flash_config;

void fb_flash_config_init(fb_flash_config *cfg);

typedef struct fb_flash_result {
    const fb_chip *chip;
    const fb_model *model;   /* the image's model on this chip (NULL: its address names none) */
    uint16_t hw_id;
    uint8_t brom_version;
    uint32_t target_config;
    uint8_t me_id[16];
    fb_da_banner da;
    fb_da_info info;
    uint32_t address;        /* flash address the image went to (load address) */
    uint32_t length;
    uint16_t checksum;       /* file checksum (sum of the packet sums) */
    int baud;                /* speed of the data phase */
    unsigned packets, resends, erase_units;
    uint64_t tx_bytes, rx_bytes;
    uint64_t data_tx_bytes;  /* bytes on the wire during the write phase */
    int64_t handshake_ns, agent_ns, erase_ns, write_ns, verify_ns, total_ns;
    int verified;
} fb_flash_result;

typedef struct fb_flasher fb_flasher; /* opaque */

/* The port is set to 115200 8N1 without flow control when a flash starts. */
fb_flasher *fb_flasher_new(fb_serial *port, const fb_da_file *da, const fb_flash_config *cfg,
                           fb_error *err);
void fb_flasher_free(fb_flasher *fl);

/* Check the image (GFH header, length, known load address), wait for the BootROM,
 * identify the chip, check the image's model against it, send the agent and write the
 * image to its load address. FB_ERR_TIMEOUT when the handshake never answers,
 * FB_ERR_MODEL for an image of another chip, FB_ERR_CHECKSUM when packets keep being
 * refused or the read-back differs, FB_ERR_CANCELLED when cancel said so. result (may
 * be NULL) is filled as far as the session went. */
fb_status fb_flasher_flash(fb_flasher *fl, const uint8_t *image, size_t n,
                           fb_flash_result *result, fb_error *err);

#ifdef __cplusplus
}
#endif
#endif
