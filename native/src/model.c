#include "fotabench/model.h"

#include <strings.h>

/* opencpu-fota.md §6 (app regions from the SDKs' linker scripts). Read-only. */
static const fb_model models[] = {
    {"M66", 0x102C7000u, 360u * 1024u},
    {"MC60", 0x102DB000u, 0x50000u},
    {"MC60E", 0x1030D000u, 0x46000u},
    {"M26", 0x1021B000u, 0x50000u},
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
        if (strcasecmp(models[i].name, name) == 0)
            return &models[i];
    return NULL;
}

const fb_model *fb_model_by_load_address(uint32_t load_address)
{
    for (size_t i = 0; i < fb_model_count(); i++)
        if (models[i].load_address == load_address)
            return &models[i];
    return NULL;
}
