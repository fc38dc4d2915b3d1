/* libFuzzer target: the virtual line protocol parser (gpio.sock, docs/architecture.md)
 * on arbitrary lines from a board. Invariants: accepted lines have sane fields and
 * parse back identically when written out canonically; nothing reads past the input.
 *
 *   make -C native fuzz && native/build/fuzz/fuzz_vline CORPUS_DIR */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/gpio.h"
#include "fuzz_common.h"

static void canonical(const fb_vline *v, char *out, size_t cap)
{
    switch (v->kind) {
    case FB_VLINE_OK: snprintf(out, cap, "OK %" PRId64, v->t_ns); break;
    case FB_VLINE_ERR: snprintf(out, cap, "ERR %s", v->name); break;
    case FB_VLINE_BYE: snprintf(out, cap, "BYE %s", v->name); break;
    case FB_VLINE_VAL: snprintf(out, cap, "VAL %s %d %" PRId64, v->name, v->value, v->t_ns); break;
    case FB_VLINE_EDGE:
        snprintf(out, cap, "EDGE %s %d %" PRId64 " %" PRIu64, v->name, v->value, v->t_ns, v->seq);
        break;
    case FB_VLINE_LINE:
        snprintf(out, cap, "LINE %s %s %d", v->name, v->is_output ? "out" : "in", v->value);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024)
        return 0;
    /* An exact-size copy, so ASan sees any read past the line. */
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    fb_vline v, w;
    if (fb_vline_parse(s, size, &v) == 0) {
        FAIL_IF(!memchr(v.name, '\0', sizeof v.name), "name not terminated");
        FAIL_IF(v.value != 0 && v.value != 1, "value %d", v.value);
        FAIL_IF(v.t_ns < 0, "negative time");
        FAIL_IF(v.kind == FB_VLINE_EDGE && v.seq == 0, "EDGE with seq 0");
        char out[256];
        canonical(&v, out, sizeof out);
        if (v.kind != FB_VLINE_ERR && v.kind != FB_VLINE_BYE) {
            FAIL_IF(fb_vline_parse(out, strlen(out), &w) != 0, "canonical '%s' refused", out);
            FAIL_IF(w.kind != v.kind || strcmp(w.name, v.name) != 0 || w.value != v.value ||
                        w.t_ns != v.t_ns || w.seq != v.seq || w.is_output != v.is_output,
                    "'%s' parses differently", out);
        }
    }
    free(s);
    return 0;
}
