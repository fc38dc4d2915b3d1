/* libFuzzer target: the virtual module's own parsers of outside input (sim/modside.c):
 * the URL an app hands to Ql_FOTA_StartUpgrade, the package a server sends, the app
 * area's GFH. abort() on any broken invariant; ASan/UBSan catch memory errors.
 *
 *   make -C firmware fuzz && firmware/build/fuzz/fuzz_modside -max_total_time=60 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_url(const char *url, int scheme, int short_form)
{
    struct mod_url u;
    char why[200];
    why[0] = '\0';
    if (sim_url_decode(url, scheme, short_form, &u, why, sizeof(why)) != 0) {
        if (!why[0] || !memchr(why, '\0', sizeof(why)))
            abort(); /* every refusal says why */
        return;
    }
    if (u.scheme != scheme || u.port < 1 || u.port > 65535 || !u.host[0])
        abort();
    if (scheme == MURL_HTTP) {
        if (strlen(u.host) > 150 || (u.host_is_ip && strlen(u.host) > 29) || u.path[0] != '/' ||
            strchr(u.host, '@') || strchr(u.path, '@') || strlen(url) >= 200)
            abort();
    } else {
        if (strlen(u.host) > 39 || strlen(u.file) > 24 || !u.file[0] || strlen(u.user) > 19 ||
            strlen(u.pass) > 19 || u.path[0] != '/' || strlen(u.path) > 60 ||
            strchr(u.host, '/') || strchr(u.host, ':') || strchr(u.file, '/'))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* as a URL: NUL-terminated, under both schemes and both short-form choices */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_url(s, MURL_HTTP, FTP_SHORT_REFUSE);
    check_url(s, MURL_FTP, FTP_SHORT_REFUSE);
    check_url(s, MURL_FTP, FTP_SHORT_ACCEPT);
    free(s);

    /* as a package and as an app image, for every model */
    char why[200];
    for (size_t i = 0; i < sim_model_count(); i++) {
        const struct sim_model *m = sim_model_at(i);
        int full = sim_package_check(data, size, m, PKG_CHECK_FULL, why, sizeof(why));
        int md5 = sim_package_check(data, size, m, PKG_CHECK_MD5, why, sizeof(why));
        if (full == 0 && md5 != 0)
            abort(); /* full checks everything md5 does */
        if (full == 0 && (size < PKG_HEADER_SIZE + GFH_SIZE + 16 ||
                          memcmp(data, "QUECTEL_FOTA_UPGRADE", 20) != 0))
            abort();
        if (sim_gfh_check(data, size, m, why, sizeof(why)) == 0) {
            uint32_t len = (uint32_t)data[0x20] | (uint32_t)data[0x21] << 8 |
                           (uint32_t)data[0x22] << 16 | (uint32_t)data[0x23] << 24;
            uint32_t load = (uint32_t)data[0x1C] | (uint32_t)data[0x1D] << 8 |
                            (uint32_t)data[0x1E] << 16 | (uint32_t)data[0x1F] << 24;
            if (size < GFH_SIZE || len != size || load != m->load_address ||
                len > m->region_size)
                abort();
        }
    }
    return 0;
}
