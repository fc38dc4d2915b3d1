/* fotabench virtual module: the module's own rules, written from opencpu-fota.md §2-§6 as
 * the module applies them. Deliberately independent of the bench's C core
 * (native/src/url.c, package.c, appimage.c, model.c): a rule the bench gets wrong must
 * show up as a disagreement between the bench and the virtual module, which shared code
 * would hide. So the module accepts what a module accepts (an HTTP URL with '@' is cut
 * there; the note's `file:port` form goes into the request path) even where the bench's
 * `url check` refuses, and the reverse.
 *
 * Where the spec says the real behaviour is unknown, the choice made here is named in a
 * comment and in docs/virtual-module.md, and the board options switch it. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "sim.h"

/* ---- models: the app regions of §6 (the sim's own table) ----------------------------- */

static const struct sim_model s_models[] = {
    /* name    chip      load address  region   ATI model      AT+CGMR revision */
    {"M66", "MT6261", 0x102C7000u, 0x5A000u, "Quectel_M66", "M66FAR01A12"},
    {"MC60", "MT2503", 0x102DB000u, 0x50000u, "Quectel_MC60", "MC60CAR01A10"},
    {"MC60E", "MT2503", 0x1030D000u, 0x46000u, "Quectel_MC60E", "MC60ECAR01A04"},
    /* the M26 has two app addresses (firmware variants, §6): the 0x1021B000 one here */
    {"M26", "MT6261", 0x1021B000u, 0x50000u, "Quectel_M26", "M26FBR03A02"},
    /* the MC20 shares the MC60's linker script (§6); one real MC20-type app loads at
     * 0x10312000, with no linker script seen: not modelled */
    {"MC20", "MT2503", 0x102DB000u, 0x50000u, "Quectel_MC20", "MC20CER01A05"},
};

size_t sim_model_count(void)
{
    return sizeof(s_models) / sizeof(s_models[0]);
}

const struct sim_model *sim_model_at(size_t i)
{
    return i < sim_model_count() ? &s_models[i] : NULL;
}

const struct sim_model *sim_model_find(const char *name)
{
    for (size_t i = 0; name && i < sim_model_count(); i++)
        if (!strcasecmp(s_models[i].name, name))
            return &s_models[i];
    return NULL;
}

/* The spare (FOTA) area: a package of the biggest app the region holds. */
long long sim_fota_area_size(const struct sim_model *m)
{
    return (long long)m->region_size + PKG_HEADER_SIZE + 3 + 16;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned le16(const unsigned char *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static int why(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int why(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (out && size)
        vsnprintf(out, size, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- the GFH FILE_INFO header (§6), as the boot checks it ----------------------------- */

void sim_gfh_write(unsigned char hdr[GFH_SIZE], uint32_t load_address, uint32_t file_length)
{
    static const unsigned char fixed[0x1C] = {
        'M', 'M', 'M', 1, 0x40, 0, 0, 0, 'F', 'I', 'L', 'E', '_', 'I', 'N', 'F', 'O', 0, 0, 0,
        1, 0, 0, 0, 0x00, 0x70, 7, 0};
    const uint32_t tail[] = {load_address, file_length, 0xFFFFFFFFu, 0x40, 0, 0x40, 3};
    memset(hdr, 0, GFH_SIZE);
    memcpy(hdr, fixed, sizeof(fixed));
    for (size_t i = 0; i < sizeof(tail) / sizeof(tail[0]); i++)
        for (int b = 0; b < 4; b++)
            hdr[0x1C + 4 * i + (size_t)b] = (unsigned char)(tail[i] >> (8 * b));
}

/* The boot's check of the app area: a GFH FILE_INFO whose length is the image's and
 * whose load address is this model's app region. A real module jumps to the region;
 * an app linked for another address would crash there (and the chip would reset it
 * again and again): the virtual one refuses it and runs without an app instead, which a
 * bench sees the same way (RDY, then no +FBREADY). */
int sim_gfh_check(const unsigned char *img, size_t len, const struct sim_model *m, char *w,
                  size_t wsize)
{
    if (len < GFH_SIZE)
        return why(w, wsize, "%zu bytes: shorter than the 64-byte GFH header", len);
    if (memcmp(img, "MMM", 3) != 0 || memcmp(img + 8, "FILE_INFO", 9) != 0)
        return why(w, wsize, "no GFH FILE_INFO header (magic or id wrong)");
    uint32_t load = le32(img + 0x1C), flen = le32(img + 0x20);
    if (flen != len)
        return why(w, wsize, "GFH length %u differs from the image's %zu bytes", flen, len);
    if (load != m->load_address)
        return why(w, wsize, "load address 0x%08X is not this %s's app region (0x%08X)", load,
                    m->name, m->load_address);
    if (flen > m->region_size)
        return why(w, wsize, "%u bytes do not fit the %s's app region of %u", flen, m->name,
                    m->region_size);
    return 0;
}

/* ---- the package check at the end of a download (§2, §5, §8) ---------------------------- */

/* CRC-16/XMODEM of the package header (§5). Hand-written: neither OpenSSL nor zlib has
 * this CRC, and the bench's own (native/src/crc16.c) must not be shared. */
static unsigned crc16_xmodem(const unsigned char *p, size_t n)
{
    unsigned crc = 0;
    while (n--) {
        crc ^= (unsigned)*p++ << 8;
        for (int i = 0; i < 8; i++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xFFFF : (crc << 1) & 0xFFFF;
    }
    return crc;
}

/* `Ql_FOTA_Finish() checks the checksum` (§8) and the module "downloads, checks the MD5"
 * (§1): the trailer is the MD5 of every byte before it (§5). What else a real core
 * checks is unknown; PKG_CHECK_MD5 (the default) checks only that, over the bytes written;
 * PKG_CHECK_FULL (board option --package-check full) also checks the header (magic,
 * image type App, checksum type, lengths, CRC) and the app's GFH against the model. */
int sim_package_check(const unsigned char *pkg, size_t len, const struct sim_model *m,
                      int mode, char *w, size_t wsize)
{
    if (len < 16 + 1)
        return why(w, wsize, "%zu bytes written: no room for the MD5 trailer", len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!EVP_Digest(pkg, len - 16, md, &mdlen, EVP_md5(), NULL) || mdlen != 16)
        return why(w, wsize, "MD5 could not be computed");
    if (memcmp(md, pkg + len - 16, 16) != 0)
        return why(w, wsize, "MD5 of the %zu bytes before the trailer does not match it",
                   len - 16);
    if (mode != PKG_CHECK_FULL)
        return 0;
    if (len < PKG_HEADER_SIZE + 16)
        return why(w, wsize, "%zu bytes: shorter than header and MD5", len);
    if (memcmp(pkg, "QUECTEL_FOTA_UPGRADE", 20) != 0)
        return why(w, wsize, "header magic is not QUECTEL_FOTA_UPGRADE");
    if (le16(pkg + 20) != 0)
        return why(w, wsize, "image type %u is not App (0)", le16(pkg + 20));
    if (le16(pkg + 22) > 1) /* 1 in every GS3 package seen, 0 in the GS2 reading */
        return why(w, wsize, "checksum type %u is not MD5", le16(pkg + 22));
    if (le32(pkg + 32) != 16)
        return why(w, wsize, "digest length %u is not 16", le32(pkg + 32));
    uint32_t payload = le32(pkg + 28);
    if ((uint64_t)PKG_HEADER_SIZE + payload + 16 != len)
        return why(w, wsize, "payload length %u does not match %zu bytes written", payload,
                   len);
    unsigned crc = crc16_xmodem(pkg, 76);
    if (le32(pkg + 76) != crc)
        return why(w, wsize, "header CRC 0x%04X differs from the computed 0x%04X",
                   le32(pkg + 76), crc);
    const unsigned char *app = pkg + PKG_HEADER_SIZE;
    if (payload < GFH_SIZE)
        return why(w, wsize, "payload of %u bytes holds no app image", payload);
    uint32_t flen = le32(app + 0x20);
    if (flen > payload || flen + 3 < payload)
        return why(w, wsize, "app length %u does not match the payload of %u", flen, payload);
    char gw[160];
    if (sim_gfh_check(app, flen, m, gw, sizeof(gw)) != 0)
        return why(w, wsize, "app image: %s", gw);
    return 0;
}

/* ---- URL decoding (§3) ----------------------------------------------------------------- */

static int copy_field(char *dst, size_t dsize, const char *src, size_t n, size_t limit,
                      const char *name, char *w, size_t wsize)
{
    if (n > limit || n >= dsize)
        return why(w, wsize, "%s is %zu characters; the module's limit is %zu", name, n, limit);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

static int parse_port(const char *s, size_t n, int *port, char *w, size_t wsize)
{
    long v = 0;
    if (n == 0 || n > 5)
        return why(w, wsize, "port '%.*s' is not a number 1-65535", (int)n, s);
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return why(w, wsize, "port '%.*s' is not a number 1-65535", (int)n, s);
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return why(w, wsize, "port %ld is not 1-65535", v);
    *port = (int)v;
    return 0;
}

static int is_ipv4_literal(const char *h)
{
    if (!*h)
        return 0;
    for (; *h; h++)
        if (!isdigit((unsigned char)*h) && *h != '.')
            return 0;
    return 1;
}

/* HTTP (§3): http://host[:port]/path, default port 80. Everything from the first '@' is
 * cut; the path (with any ':' in it, the note's file:port form) is the request target as
 * it is. Host <= 29 characters as an IP literal, <= 150 as a name; the URL < 200 (the
 * spec's "keep it under 200" taken as the module's buffer: longer is a decode failure). */
static int decode_http(const char *url, struct mod_url *u, char *w, size_t wsize)
{
    size_t total = strlen(url);
    if (total >= 200)
        return why(w, wsize, "URL is %zu characters; the module keeps < 200", total);
    char buf[200];
    memcpy(buf, url, total + 1);
    char *at = strchr(buf, '@');
    if (at)
        *at = '\0'; /* the module cuts everything from the first '@' */
    if (strncasecmp(buf, "http://", 7) != 0)
        return why(w, wsize, "not http:// (the module's client has no TLS)");
    const char *hp = buf + 7;
    const char *slash = strchr(hp, '/');
    if (!slash)
        return why(w, wsize, "no path after the host");
    const char *colon = memchr(hp, ':', (size_t)(slash - hp));
    size_t hlen = (size_t)((colon ? colon : slash) - hp);
    u->port = 80;
    if (colon && parse_port(colon + 1, (size_t)(slash - colon - 1), &u->port, w, wsize) != 0)
        return -1;
    if (hlen == 0)
        return why(w, wsize, "empty host");
    char host[160];
    if (copy_field(host, sizeof(host), hp, hlen, 150, "HTTP host", w, wsize) != 0)
        return -1;
    u->host_is_ip = is_ipv4_literal(host);
    if (u->host_is_ip && hlen > 29)
        return why(w, wsize, "IP host is %zu characters; the module's limit is 29", hlen);
    snprintf(u->host, sizeof(u->host), "%s", host);
    snprintf(u->path, sizeof(u->path), "%s", slash);
    u->scheme = MURL_HTTP;
    return 0;
}

/* FTP (§3): ftp://host/path/file.bin[:port][@user:password], default port 21. The host
 * ends at the first '/' or ':' and the rest is read as the path (so ftp://host:21/p
 * CWDs into "21/p" and fails there). The user part starts at the first '@'; the
 * password is everything after the first ':' behind it ('@' allowed). Limits: host 39,
 * path 59, file 24, user 19, password 19. */
static int decode_ftp(const char *url, struct mod_url *u, int short_form, char *w,
                      size_t wsize)
{
    if (strncasecmp(url, "ftp://", 6) != 0)
        return why(w, wsize, "not ftp://");
    const char *h = url + 6;
    size_t hlen = strcspn(h, "/:");
    if (h[hlen] == '\0')
        return why(w, wsize, "no path after the host");
    if (hlen == 0)
        return why(w, wsize, "empty host");
    if (copy_field(u->host, sizeof(u->host), h, hlen, 39, "FTP host", w, wsize) != 0)
        return -1;
    const char *r = h + hlen + 1;
    const char *at = strchr(r, '@');
    size_t llen = at ? (size_t)(at - r) : strlen(r);
    const char *colon = memchr(r, ':', llen);
    size_t pflen = colon ? (size_t)(colon - r) : llen;
    /* Without :port or @user:password the SDK's parser copies an underflowed length
     * (a reading, §3): what a module then does is unknown. Default: a decode failure;
     * --ftp-short-url accept takes the note's documented defaults instead. */
    if ((!colon || !at) && short_form != FTP_SHORT_ACCEPT)
        return why(w, wsize, "no %s (the SDK's parser needs both :port and @user:password)",
                   !colon ? ":port" : "@user:password");
    u->port = 21;
    if (colon && parse_port(colon + 1, llen - pflen - 1, &u->port, w, wsize) != 0)
        return -1;
    snprintf(u->user, sizeof(u->user), "anonymous");
    u->pass[0] = '\0';
    if (at) {
        const char *up = at + 1;
        const char *uc = strchr(up, ':');
        if (!uc)
            return why(w, wsize, "no ':' between user and password");
        if (copy_field(u->user, sizeof(u->user), up, (size_t)(uc - up), 19, "FTP user", w,
                       wsize) != 0 ||
            copy_field(u->pass, sizeof(u->pass), uc + 1, strlen(uc + 1), 19, "FTP password", w,
                       wsize) != 0)
            return -1;
    }
    const char *last = NULL;
    for (const char *p = r; p < r + pflen; p++)
        if (*p == '/')
            last = p;
    const char *file = last ? last + 1 : r;
    size_t flen = pflen - (size_t)(file - r);
    if (flen == 0)
        return why(w, wsize, "no file name");
    if (copy_field(u->file, sizeof(u->file), file, flen, 24, "FTP file name", w, wsize) != 0)
        return -1;
    size_t dlen = last ? (size_t)(last - r) : 0;
    u->path[0] = '/';
    if (copy_field(u->path + 1, sizeof(u->path) - 1, r, dlen, 59, "FTP path", w, wsize) != 0)
        return -1;
    u->host_is_ip = is_ipv4_literal(u->host);
    u->scheme = MURL_FTP;
    return 0;
}

int sim_url_decode(const char *url, int scheme, int ftp_short, struct mod_url *out, char *w,
                   size_t wsize)
{
    memset(out, 0, sizeof(*out));
    return scheme == MURL_FTP ? decode_ftp(url, out, ftp_short, w, wsize)
                              : decode_http(url, out, w, wsize);
}
