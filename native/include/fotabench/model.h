/* fotabench C core: module profiles (where an OpenCPU app lives in flash).
 *
 * The table is opencpu-fota.md §6: one row per (model, load address) seen. A load
 * address does not name one model (MC60 and MC20 share 0x102DB000) and a model may
 * have several addresses (M26: 0x1021B000 and 0x10270000), so detection returns every
 * candidate, and a caller that needs one asks the user. */
#ifndef FOTABENCH_MODEL_H
#define FOTABENCH_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fb_model_evidence {
    FB_EVIDENCE_LINKER = 0, /* the linker scripts of several public SDK copies */
    FB_EVIDENCE_SEEN_ONCE   /* a single source (one project or one built app) */
} fb_model_evidence;

typedef struct fb_model {
    const char *name;      /* "M66", "MC60", ...; NULL for an address seen once whose
                              model the source does not record */
    uint32_t load_address; /* GFH load address of the app region */
    uint32_t region_size;  /* bytes available to the app image, header included; 0 unknown */
    fb_model_evidence evidence;
    const char *source;    /* where the row comes from, for a person */
} fb_model;

/* Most candidates one address can have (the table's widest address plus margin). */
#define FB_MODEL_MAX_CANDIDATES 4

size_t fb_model_count(void);
const fb_model *fb_model_at(size_t index);
/* A model by name, case-insensitive: its first row (its usual address, the one
 * `app wrap` writes). NULL when unknown. */
const fb_model *fb_model_find(const char *name);
/* The row of model `name` at load_address; NULL when that model is not known there. */
const fb_model *fb_model_find_at(const char *name, uint32_t load_address);
/* Every row at load_address (up to max into out); returns how many there are. */
size_t fb_model_candidates(uint32_t load_address, const fb_model **out, size_t max);
/* The first row at load_address, NULL when none. */
const fb_model *fb_model_by_load_address(uint32_t load_address);

typedef enum fb_platform {
    FB_PLATFORM_UNKNOWN = 0,  /* not an address of any MediaTek module we know */
    FB_PLATFORM_OPENCPU,      /* 0x10xxxxxx: MT6261/MT2503 serial flash, OpenCPU app area */
    FB_PLATFORM_NBIOT         /* 0x08xxxxxx: MT2625 (BC26, BC20), not this kind of FOTA */
} fb_platform;

/* What an address says about the chip when no model is known there. */
fb_platform fb_model_platform(uint32_t load_address);
/* One line for a person, e.g. "MediaTek MT6261/MT2503 OpenCPU app area". */
const char *fb_platform_name(fb_platform platform);

#ifdef __cplusplus
}
#endif
#endif
