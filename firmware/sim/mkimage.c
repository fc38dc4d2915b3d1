/* fotabench: wrap the agent's host shared object in a GFH app image for one model (what
 * Quectel's GFH generator does for a real app binary), with optional padding bytes after
 * it. The load address and region come from the virtual module's own model table
 * (modside.c), the same one its boot checks against.
 *
 *   mkimage PAYLOAD.so OUT.bin [PAD_BYTES [MODEL]]      (MODEL default M66) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: mkimage PAYLOAD OUT [PAD_BYTES [MODEL]]\n");
        return 2;
    }
    long pad = argc >= 4 ? strtol(argv[3], NULL, 10) : 0;
    const char *name = argc == 5 ? argv[4] : "M66";
    const struct sim_model *m = sim_model_find(name);
    if (!m) {
        fprintf(stderr, "mkimage: unknown model %s; known:", name);
        for (size_t i = 0; i < sim_model_count(); i++)
            fprintf(stderr, " %s", sim_model_at(i)->name);
        fprintf(stderr, "\n");
        return 2;
    }
    if (pad < 0) {
        fprintf(stderr, "mkimage: negative padding\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    fseek(in, 0, SEEK_END);
    long len = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *buf = len >= 0 ? malloc((size_t)len + (size_t)pad + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)len, in) != (size_t)len) {
        fprintf(stderr, "mkimage: cannot read %s\n", argv[1]);
        fclose(in);
        free(buf);
        return 1;
    }
    fclose(in);
    for (long i = 0; i < pad; i++) /* not zeros: the padding must not compress away */
        buf[len + i] = (unsigned char)((i * 2654435761u) >> 24);
    unsigned long total = (unsigned long)(len + pad) + GFH_SIZE;
    if (total > m->region_size) {
        fprintf(stderr, "mkimage: image of %lu bytes exceeds the %s app region (%u)\n", total,
                m->name, m->region_size);
        free(buf);
        return 1;
    }
    unsigned char hdr[GFH_SIZE];
    sim_gfh_write(hdr, m->load_address, (uint32_t)total);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
    FILE *out = fopen(tmp, "wb");
    if (!out || fwrite(hdr, 1, sizeof(hdr), out) != sizeof(hdr) ||
        fwrite(buf, 1, (size_t)(len + pad), out) != (size_t)(len + pad) || fclose(out) != 0 ||
        rename(tmp, argv[2]) != 0) {
        perror(argv[2]);
        free(buf);
        return 1;
    }
    free(buf);
    printf("%s: %s app image (load address 0x%08X), %lu bytes (payload %ld + padding %ld)\n",
           argv[2], m->name, m->load_address, total, len, pad);
    return 0;
}
