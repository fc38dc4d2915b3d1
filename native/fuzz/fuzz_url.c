/* libFuzzer target: fb_url_parse on arbitrary strings, with a round trip through the
 * builders (fb_url_http / fb_url_ftp) for every URL it accepts, and the builders on
 * fields taken from the input.
 *
 *   make -C native fuzz && native/build/fuzz/fuzz_url CORPUS_DIR
 *
 * Seeds: native/fuzz/make_corpus.py OUT (writes OUT/fuzz_url/).
 * Every invariant violation prints what was wrong and abort()s, so libFuzzer saves
 * the input as crash-<sha1>. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fotabench/error.h"
#include "fotabench/url.h"
#include "fuzz_common.h"

static void check_err(fb_status st, const fb_error *err)
{
    FAIL_IF(!nul_terminated(err->message, sizeof err->message), "err.message not terminated");
    FAIL_IF(err->code != st, "err.code %s, returned %s", fb_status_name(err->code),
            fb_status_name(st));
    if (st == FB_OK)
        FAIL_IF(err->message[0] != '\0', "FB_OK with message '%s'", err->message);
    else
        FAIL_IF(err->message[0] == '\0', "%s with an empty message", fb_status_name(st));
}

static int host_ok(const char *h)
{
    if (!*h)
        return 0;
    for (; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
              *h == '.' || *h == '-'))
            return 0;
    return 1;
}

static int has_forbidden(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7F || *s == '"')
            return 1;
    return 0;
}

/* What every accepted URL's fields must satisfy. */
static void check_fields(const fb_url *u, const char *url)
{
    FAIL_IF(!nul_terminated(u->host, sizeof u->host) || !nul_terminated(u->path, sizeof u->path) ||
                !nul_terminated(u->file, sizeof u->file) ||
                !nul_terminated(u->user, sizeof u->user) ||
                !nul_terminated(u->password, sizeof u->password),
            "a field of '%s' is not terminated", url);
    FAIL_IF(!host_ok(u->host), "'%s': host '%s'", url, u->host);
    FAIL_IF(u->port == 0, "'%s': port 0", url);
    FAIL_IF(u->file[0] == '\0', "'%s': empty file", url);
    FAIL_IF(strchr(u->file, '/') || strpbrk(u->path, ":@") || strpbrk(u->file, ":@"),
            "'%s': path '%s' file '%s'", url, u->path, u->file);
    FAIL_IF(has_forbidden(u->host) || has_forbidden(u->path) || has_forbidden(u->user) ||
                has_forbidden(u->password),
            "'%s': a field has a forbidden character", url);
    if (u->scheme == FB_URL_HTTP) {
        FAIL_IF(strlen(u->host) > (u->host_is_ip ? FB_HTTP_HOST_IP_MAX : FB_HTTP_HOST_NAME_MAX),
                "'%s': HTTP host of %zu", url, strlen(u->host));
        FAIL_IF(u->path[0] != '/', "'%s': HTTP path '%s'", url, u->path);
        const char *last = strrchr(u->path, '/') + 1;
        FAIL_IF(strcmp(last, u->file) != 0, "'%s': HTTP file '%s' is not the end of '%s'", url,
                u->file, u->path);
        FAIL_IF(u->user[0] || u->password[0], "'%s': HTTP with user or password", url);
    } else {
        FAIL_IF(u->scheme != FB_URL_FTP, "'%s': scheme %d", url, (int)u->scheme);
        FAIL_IF(strlen(u->host) > FB_FTP_HOST_MAX, "'%s': FTP host of %zu", url,
                strlen(u->host));
        FAIL_IF(strlen(u->path) > FB_FTP_PATH_MAX, "'%s': FTP directory of %zu", url,
                strlen(u->path));
        FAIL_IF(u->path[0] && u->path[0] != '/', "'%s': FTP directory '%s'", url, u->path);
        FAIL_IF(strlen(u->file) > FB_FTP_FILE_MAX, "'%s': FTP file of %zu", url,
                strlen(u->file));
        FAIL_IF(u->user[0] == '\0' || strlen(u->user) > FB_FTP_USER_MAX ||
                    strpbrk(u->user, ":@"),
                "'%s': FTP user '%s'", url, u->user);
        FAIL_IF(strlen(u->password) > FB_FTP_PASSWORD_MAX, "'%s': FTP password of %zu", url,
                strlen(u->password));
    }
}

static void same_fields(const fb_url *a, const fb_url *b, const char *url, const char *built)
{
    FAIL_IF(a->scheme != b->scheme || strcmp(a->host, b->host) != 0 ||
                a->host_is_ip != b->host_is_ip || a->port != b->port ||
                strcmp(a->path, b->path) != 0 || strcmp(a->file, b->file) != 0 ||
                strcmp(a->user, b->user) != 0 || strcmp(a->password, b->password) != 0,
            "'%s' rebuilt as '%s' decodes differently:\n"
            "  host '%s'/'%s' ip %d/%d port %u/%u path '%s'/'%s' file '%s'/'%s' user "
            "'%s'/'%s' password '%s'/'%s'",
            url, built, a->host, b->host, a->host_is_ip, b->host_is_ip, a->port, b->port,
            a->path, b->path, a->file, b->file, a->user, b->user, a->password, b->password);
}

/* Parse; when accepted, rebuild from the fields and parse that again. */
static void round_trip(const char *url)
{
    fb_url u, v;
    fb_error err;
    memset(&u, 0xA5, sizeof u);
    memset(&err, 0xA5, sizeof err);
    fb_status st = fb_url_parse(url, &u, &err);
    check_err(st, &err);
    FAIL_IF(st != FB_OK && st != FB_ERR_URL, "'%s': status %s", url, fb_status_name(st));
    FAIL_IF(fb_url_parse(url, NULL, NULL) != st, "'%s': verdict differs without out/err", url);
    if (st != FB_OK)
        return;
    check_fields(&u, url);

    char built[512], path[FB_URL_MAX_LEN * 2 + 2];
    memset(built, 0xA5, sizeof built);
    memset(&err, 0xA5, sizeof err);
    if (u.scheme == FB_URL_HTTP) {
        st = fb_url_http(u.host, u.port, u.path, built, sizeof built, &err);
    } else {
        snprintf(path, sizeof path, "%s/%s", u.path, u.file);
        st = fb_url_ftp(u.host, u.port, path, u.user, u.password, built, sizeof built, &err);
    }
    check_err(st, &err);
    FAIL_IF(st != FB_OK, "'%s' is accepted but its fields cannot be rebuilt: %s", url,
            err.message);
    FAIL_IF(!nul_terminated(built, sizeof built), "built URL not terminated");
    /* The builder writes the canonical form: never longer than what was parsed. */
    FAIL_IF(strlen(built) > strlen(url), "'%s' rebuilt longer as '%s'", url, built);
    memset(&v, 0x5A, sizeof v);
    st = fb_url_parse(built, &v, &err);
    FAIL_IF(st != FB_OK, "rebuilt '%s' (from '%s') refused: %s", built, url, err.message);
    same_fields(&u, &v, url, built);
    if (u.scheme == FB_URL_HTTP && u.port == 80)
        FAIL_IF(strstr(built, ":80/") != NULL, "'%s': the builder kept ':80'", built);
}

/* Split the input at '\n' into host, path, user, password and port; build; a built URL
 * must parse back to the same fields. */
static void build_from_fields(const char *s)
{
    char f[5][256];
    size_t k = 0;
    memset(f, 0, sizeof f);
    for (const char *p = s; k < 5;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n >= sizeof f[k])
            n = sizeof f[k] - 1;
        memcpy(f[k++], p, n);
        if (!nl)
            break;
        p = nl + 1;
    }
    if (k < 2)
        return;
    unsigned long portv = strtoul(f[4], NULL, 10);
    uint16_t port = f[4][0] ? (uint16_t)portv : 21;

    char out[512];
    fb_url v;
    fb_error err;
    memset(&err, 0xA5, sizeof err);
    fb_status st = fb_url_http(f[0], f[4][0] ? port : 80, f[1], out, sizeof out, &err);
    check_err(st, &err);
    if (st == FB_OK) {
        FAIL_IF(fb_url_parse(out, &v, &err) != FB_OK, "built '%s' refused: %s", out,
                err.message);
        FAIL_IF(v.scheme != FB_URL_HTTP || strcmp(v.host, f[0]) || strcmp(v.path, f[1]) ||
                    v.port != (f[4][0] ? port : 80),
                "http('%s', %u, '%s') built '%s', decoded host '%s' port %u path '%s'", f[0],
                f[4][0] ? port : 80, f[1], out, v.host, v.port, v.path);
    }
    memset(&err, 0xA5, sizeof err);
    st = fb_url_ftp(f[0], port, f[1], f[2], f[3], out, sizeof out, &err);
    check_err(st, &err);
    if (st == FB_OK) {
        FAIL_IF(fb_url_parse(out, &v, &err) != FB_OK, "built '%s' refused: %s", out,
                err.message);
        char path[FB_URL_MAX_LEN * 2 + 2];
        snprintf(path, sizeof path, "%s/%s", v.path, v.file);
        FAIL_IF(v.scheme != FB_URL_FTP || strcmp(v.host, f[0]) || strcmp(path, f[1]) ||
                    v.port != port || strcmp(v.user, f[2]) || strcmp(v.password, f[3]),
                "ftp('%s', %u, '%s', '%s', '%s') built '%s', decoded host '%s' port %u path "
                "'%s' user '%s' password '%s'",
                f[0], port, f[1], f[2], f[3], out, v.host, v.port, path, v.user, v.password);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    round_trip(s);
    if (memchr(s, '\n', strlen(s)))
        build_from_fields(s);
    free(s);
    return 0;
}
