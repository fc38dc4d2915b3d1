/* fotabench C core: module profiles (where an OpenCPU app lives in flash). */
#ifndef FOTABENCH_MODEL_H
#define FOTABENCH_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fb_model {
    const char *name;      /* "M66", "MC60", "MC60E", "M26" */
    uint32_t load_address; /* GFH load address of the app region */
    uint32_t region_size;  /* bytes available to the app image, header included */
} fb_model;

size_t fb_model_count(void);
const fb_model *fb_model_at(size_t index);
/* Case-insensitive; NULL when unknown. */
const fb_model *fb_model_find(const char *name);
/* NULL when no known model loads apps at that address. */
const fb_model *fb_model_by_load_address(uint32_t load_address);

#ifdef __cplusplus
}
#endif
#endif
