/* fotabench: wrap the agent's host shared object in an M66 GFH app image (what Quectel's
 * GFH generator does for a real app binary), with optional padding bytes after it.
 *
 *   mkimage PAYLOAD.so OUT.bin [PAD_BYTES] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/appimage.h"
#include "fotabench/model.h"

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: mkimage PAYLOAD OUT [PAD_BYTES]\n");
        return 2;
    }
    long pad = argc == 4 ? strtol(argv[3], NULL, 10) : 0;
    FILE *in = fopen(argv[1], "rb");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    fseek(in, 0, SEEK_END);
    long len = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + (size_t)pad + 1);
    if (!buf || fread(buf, 1, (size_t)len, in) != (size_t)len) {
        fprintf(stderr, "mkimage: cannot read %s\n", argv[1]);
        return 1;
    }
    fclose(in);
    for (long i = 0; i < pad; i++) /* not zeros: the padding must not compress away */
        buf[len + i] = (unsigned char)((i * 2654435761u) >> 24);
    const fb_model *m = fb_model_find("M66");
    unsigned long total = (unsigned long)(len + pad) + FB_GFH_SIZE;
    if (total > m->region_size) {
        fprintf(stderr, "mkimage: image of %lu bytes exceeds the M66 app region (%u)\n", total,
                m->region_size);
        return 1;
    }
    uint8_t hdr[FB_GFH_SIZE];
    fb_app_image_header(hdr, m->load_address, (uint32_t)total);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
    FILE *out = fopen(tmp, "wb");
    if (!out || fwrite(hdr, 1, sizeof(hdr), out) != sizeof(hdr) ||
        fwrite(buf, 1, (size_t)(len + pad), out) != (size_t)(len + pad) || fclose(out) != 0 ||
        rename(tmp, argv[2]) != 0) {
        perror(argv[2]);
        return 1;
    }
    free(buf);
    printf("%s: M66 app image, %lu bytes (payload %ld + padding %ld)\n", argv[2], total, len, pad);
    return 0;
}
