#include "fotabench/model.h"

#include <strings.h>

/* opencpu-fota.md §6: app regions from the linker scripts of 37 public OpenCPU SDK copies
 * (ROM ORIGIN - 0x40 = load address), plus addresses seen in a single source. A model's
 * first row is its usual address. Read-only. */
static const fb_model models[] = {
    {"M66", 0x102C7000u, 0x5A000u, FB_EVIDENCE_LINKER, "SDK V1.7-V2.6 linker scripts"},
    {"MC60", 0x102DB000u, 0x50000u, FB_EVIDENCE_LINKER, "SDK V1.6-V1.8 linker scripts"},
    {"MC60E", 0x1030D000u, 0x46000u, FB_EVIDENCE_LINKER, "SDK V1.6-V1.8 linker scripts"},
    {"M26", 0x1021B000u, 0x50000u, FB_EVIDENCE_LINKER,
     "SDK V1.6, V2.1, V2.2 linker scripts (firmware-variant dependent)"},
    {"M26", 0x10270000u, 0x32000u, FB_EVIDENCE_LINKER,
     "SDK V2.0, V2.2 linker scripts (firmware-variant dependent)"},
    {"MC20", 0x102DB000u, 0x50000u, FB_EVIDENCE_LINKER,
     "SDK V1.3, V1.4, V1.7: the MC60 linker script"},
    {"MC20", 0x1030D000u, 0x46000u, FB_EVIDENCE_SEEN_ONCE, "one MC20 project (MC60E script)"},
    /* A real MC20-type app (GS3 SDK V1.3, 189,776 bytes); no linker script seen, so the
     * region's size is not known. */
    {"MC20", 0x10312000u, 0, FB_EVIDENCE_SEEN_ONCE, "one built MC20-type app, no linker script"},
    /* Single sources naming M66 TTS, M56, M26 variants (HX, SPU, THA) and M203C; the spec
     * does not record which address is which model, so none is named. */
    {NULL, 0x102B5000u, 0, FB_EVIDENCE_SEEN_ONCE,
     "a single source (M66 TTS, M56, M26 HX/SPU/THA or M203C)"},
    {NULL, 0x10268000u, 0, FB_EVIDENCE_SEEN_ONCE,
     "a single source (M66 TTS, M56, M26 HX/SPU/THA or M203C)"},
    {NULL, 0x10292000u, 0, FB_EVIDENCE_SEEN_ONCE,
     "a single source (M66 TTS, M56, M26 HX/SPU/THA or M203C)"},
    {NULL, 0x10293000u, 0, FB_EVIDENCE_SEEN_ONCE,
     "a single source (M66 TTS, M56, M26 HX/SPU/THA or M203C)"},
    {NULL, 0x1025C000u, 0, FB_EVIDENCE_SEEN_ONCE,
     "a single source (M66 TTS, M56, M26 HX/SPU/THA or M203C)"},
    {NULL, 0x102EF000u, 0, FB_EVIDENCE_SEEN_ONCE,
     "a single source (M66 TTS, M56, M26 HX/SPU/THA or M203C)"},
};

size_t fb_model_count(void)
{
    return sizeof models / sizeof models[0];
}

const fb_model *fb_model_at(size_t index)
{
    return index < fb_model_count() ? &models[index] : NULL;
}

const fb_model *fb_model_find(const char *name)
{
    for (size_t i = 0; name && i < fb_model_count(); i++)
        if (models[i].name && strcasecmp(models[i].name, name) == 0)
            return &models[i];
    return NULL;
}

const fb_model *fb_model_find_at(const char *name, uint32_t load_address)
{
    for (size_t i = 0; name && i < fb_model_count(); i++)
        if (models[i].name && models[i].load_address == load_address &&
            strcasecmp(models[i].name, name) == 0)
            return &models[i];
    return NULL;
}

size_t fb_model_candidates(uint32_t load_address, const fb_model **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < fb_model_count(); i++)
        if (models[i].load_address == load_address) {
            if (out && n < max)
                out[n] = &models[i];
            n++;
        }
    return n;
}

const fb_model *fb_model_by_load_address(uint32_t load_address)
{
    const fb_model *first = NULL;
    fb_model_candidates(load_address, &first, 1);
    return first;
}

fb_platform fb_model_platform(uint32_t load_address)
{
    switch (load_address >> 24) {
    case 0x10:
        return FB_PLATFORM_OPENCPU;
    case 0x08:
        return FB_PLATFORM_NBIOT;
    default:
        return FB_PLATFORM_UNKNOWN;
    }
}

const char *fb_platform_name(fb_platform platform)
{
    switch (platform) {
    case FB_PLATFORM_OPENCPU:
        return "MediaTek MT6261/MT2503 OpenCPU app area";
    case FB_PLATFORM_NBIOT:
        return "MediaTek MT2625 NB-IoT (BC26, BC20)";
    default:
        return "no known module's flash";
    }
}
