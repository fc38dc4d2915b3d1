#include "fotabench/url.h"

#include <stdio.h>
#include <string.h>

/* Hand-written on purpose: the point is to reproduce the module's own, non-standard
 * parser (port after the file, '@' cutting, fixed buffers), which no URL library does. */

static int is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-';
}

/* Characters that break either the HTTP request line or the AT+FBUPG="..." command;
 * non-ASCII too: the module sends the bytes raw, and servers disagree on them. */
static int is_forbidden(char c)
{
    unsigned char u = (unsigned char)c;
    return u <= 0x20 || u >= 0x7F || c == '"';
}

static fb_status check_chars(const char *s, size_t n, const char *field, fb_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (is_forbidden(s[i]))
            return fb_error_set(err, FB_ERR_URL,
                                "%s has %s 0x%02X at offset %zu: spaces, control characters, "
                                "non-ASCII bytes (percent-encode them) and '\"' break the "
                                "request or the AT+FBUPG command",
                                field, s[i] == '"' ? "a quote" : "character",
                                (unsigned char)s[i], i);
    return FB_OK;
}

static fb_status check_len(const char *field, size_t len, size_t max, int may_be_empty,
                           fb_error *err)
{
    if (len == 0 && !may_be_empty)
        return fb_error_set(err, FB_ERR_URL, "%s is empty", field);
    if (len > max)
        return fb_error_set(err, FB_ERR_URL,
                            "%s is %zu characters; the module's limit is %zu", field, len, max);
    return FB_OK;
}

/* Dotted IPv4 literal? Returns 1 yes, 0 a name, -1 looks numeric but is malformed. */
static int ipv4_kind(const char *h, size_t n)
{
    int all_numeric = 1;
    for (size_t i = 0; i < n; i++)
        if (!(h[i] == '.' || (h[i] >= '0' && h[i] <= '9')))
            all_numeric = 0;
    if (!all_numeric)
        return 0;
    int parts = 0, digits = 0, value = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || h[i] == '.') {
            if (digits == 0 || value > 255)
                return -1;
            parts++;
            digits = value = 0;
        } else {
            if (++digits > 3)
                return -1;
            value = value * 10 + (h[i] - '0');
        }
    }
    return parts == 4 ? 1 : -1;
}

static fb_status check_host(const char *field, const char *h, size_t n, size_t ip_max,
                            size_t name_max, int *is_ip, fb_error *err)
{
    if (n == 0)
        return fb_error_set(err, FB_ERR_URL, "%s is empty", field);
    for (size_t i = 0; i < n; i++)
        if (!is_host_char(h[i]))
            return fb_error_set(err, FB_ERR_URL,
                                "%s has byte 0x%02X ('%c') at offset %zu: only letters, digits, "
                                "'.' and '-' are allowed in a host",
                                field, (unsigned char)h[i], is_forbidden(h[i]) ? '?' : h[i], i);
    int kind = ipv4_kind(h, n);
    if (kind < 0)
        return fb_error_set(err, FB_ERR_URL, "%s '%.*s' is not a valid IPv4 address", field,
                            (int)n, h);
    *is_ip = kind;
    char what[64];
    snprintf(what, sizeof what, "%s (%s)", field, kind ? "IP address" : "name");
    return check_len(what, n, kind ? ip_max : name_max, 0, err);
}

static fb_status parse_port(const char *p, size_t n, uint16_t *port, fb_error *err)
{
    if (n == 0)
        return fb_error_set(err, FB_ERR_URL, "port is empty after ':'");
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return fb_error_set(err, FB_ERR_URL, "port '%.*s' is not a number", (int)n, p);
        v = v * 10 + (unsigned long)(p[i] - '0');
        if (v > 65535)
            break;
    }
    if (v == 0 || v > 65535)
        return fb_error_set(err, FB_ERR_URL, "port '%.*s' is outside 1..65535", (int)n, p);
    *port = (uint16_t)v;
    return FB_OK;
}

static void copy_field(char *dst, size_t dst_size, const char *src, size_t n)
{
    if (n >= dst_size)
        n = dst_size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int prefix_nocase(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != *prefix)
            return 0;
    }
    return 1;
}

static fb_status parse_http(const char *url, size_t len, fb_url *u, fb_error *err)
{
    const char *p = url + 7, *end = url + len;
    fb_status st;
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at)
        return fb_error_set(err, FB_ERR_URL,
                            "HTTP URL has '@' at offset %zu: the module cuts the URL there and "
                            "would request '%.*s'",
                            (size_t)(at - url), (int)(at - url), url);
    const char *h = p;
    while (p < end && *p != ':' && *p != '/')
        p++;
    if ((st = check_host("HTTP host", h, (size_t)(p - h), FB_HTTP_HOST_IP_MAX,
                         FB_HTTP_HOST_NAME_MAX, &u->host_is_ip, err)) != FB_OK)
        return st;
    copy_field(u->host, sizeof u->host, h, (size_t)(p - h));
    u->port = 80;
    if (p < end && *p == ':') {
        const char *ps = ++p;
        while (p < end && *p != '/')
            p++;
        if ((st = parse_port(ps, (size_t)(p - ps), &u->port, err)) != FB_OK)
            return st;
    }
    if (p == end)
        return fb_error_set(err, FB_ERR_URL, "HTTP URL has no path: name the package file, "
                                             "e.g. http://host/fota/app.bin");
    const char *path = p;
    const char *colon = memchr(path, ':', (size_t)(end - path));
    if (colon)
        return fb_error_set(err, FB_ERR_URL,
                            "HTTP path has ':' at offset %zu: the module sends it as part of the "
                            "request path; the port goes right after the host "
                            "(http://host:8080/dir/file.bin)",
                            (size_t)(colon - url));
    const char *slash = strrchr(path, '/');
    if (!slash[1])
        return fb_error_set(err, FB_ERR_URL,
                            "HTTP path '%s' ends with '/': name the package file", path);
    copy_field(u->path, sizeof u->path, path, (size_t)(end - path));
    copy_field(u->file, sizeof u->file, slash + 1, (size_t)(end - slash - 1));
    return FB_OK;
}

static fb_status parse_ftp(const char *url, size_t len, fb_url *u, fb_error *err)
{
    const char *p = url + 6, *end = url + len;
    fb_status st;
    const char *h = p;
    while (p < end && *p != ':' && *p != '/' && *p != '@')
        p++;
    if (p < end && *p == ':')
        return fb_error_set(err, FB_ERR_URL,
                            "FTP URL puts the port before the path: the module's parser does "
                            "not support ftp://host:PORT/...; write "
                            "ftp://host/dir/file.bin:PORT@user:password");
    if (p < end && *p == '@')
        return fb_error_set(err, FB_ERR_URL,
                            "FTP URL has '@' in the host part: user and password go at the end "
                            "(ftp://host/dir/file.bin:21@user:password)");
    if ((st = check_host("FTP host", h, (size_t)(p - h), FB_FTP_HOST_MAX, FB_FTP_HOST_MAX,
                         &u->host_is_ip, err)) != FB_OK)
        return st;
    copy_field(u->host, sizeof u->host, h, (size_t)(p - h));
    if (p == end)
        return fb_error_set(err, FB_ERR_URL, "FTP URL has no path: name the package file");

    const char *path = p;
    while (p < end && *p != ':' && *p != '@')
        p++;
    const char *path_end = p;
    if (p == end || *p == '@')
        return fb_error_set(err, FB_ERR_URL,
                            "FTP URL lacks ':port' after the file: always write "
                            "ftp://host/dir/file.bin:21@user:password (the module's parser "
                            "mis-reads URLs without them)");
    const char *ps = ++p;
    while (p < end && *p != '@')
        p++;
    if (p == end)
        return fb_error_set(err, FB_ERR_URL,
                            "FTP URL lacks '@user:password' after the port: always write "
                            "both, e.g. ...:21@anonymous:guest (':' is not allowed in the "
                            "path)");
    if ((st = parse_port(ps, (size_t)(p - ps), &u->port, err)) != FB_OK)
        return st;
    const char *us = ++p;
    while (p < end && *p != ':')
        p++;
    if (p == end)
        return fb_error_set(err, FB_ERR_URL,
                            "FTP URL lacks ':password' after the user name");
    if ((st = check_len("FTP user", (size_t)(p - us), FB_FTP_USER_MAX, 0, err)) != FB_OK)
        return st;
    /* Which '@' the SDK splits at is not known; a second one makes the URL ambiguous,
     * and the builder never writes one, so refuse it. */
    if (memchr(us, '@', (size_t)(p - us)))
        return fb_error_set(err, FB_ERR_URL,
                            "FTP user has '@': the module's parser splits the user part at "
                            "'@', so the user name cannot contain one");
    copy_field(u->user, sizeof u->user, us, (size_t)(p - us));
    p++;
    if ((st = check_len("FTP password", (size_t)(end - p), FB_FTP_PASSWORD_MAX, 1, err)) !=
        FB_OK)
        return st;
    copy_field(u->password, sizeof u->password, p, (size_t)(end - p));

    const char *slash = path;
    for (const char *q = path; q < path_end; q++)
        if (*q == '/')
            slash = q;
    if ((st = check_len("FTP path (directory)", (size_t)(slash - path), FB_FTP_PATH_MAX, 1,
                        err)) != FB_OK)
        return st;
    if ((st = check_len("FTP file name", (size_t)(path_end - slash - 1), FB_FTP_FILE_MAX, 0,
                        err)) != FB_OK)
        return st;
    copy_field(u->path, sizeof u->path, path, (size_t)(slash - path));
    copy_field(u->file, sizeof u->file, slash + 1, (size_t)(path_end - slash - 1));
    return FB_OK;
}

fb_status fb_url_parse(const char *url, fb_url *out, fb_error *err)
{
    fb_url u;
    memset(&u, 0, sizeof u);
    if (!url)
        return fb_error_set(err, FB_ERR_ARG, "URL is NULL");
    size_t len = strlen(url);
    if (len > FB_URL_MAX_LEN)
        return fb_error_set(err, FB_ERR_URL,
                            "URL is %zu characters; the module's limit is %d", len,
                            FB_URL_MAX_LEN);
    fb_status st = check_chars(url, len, "URL", err);
    if (st != FB_OK)
        return st;
    if (prefix_nocase(url, "https://"))
        return fb_error_set(err, FB_ERR_URL,
                            "https is not supported by the module's FOTA client: serve the "
                            "package over http:// or ftp://");
    if (prefix_nocase(url, "http://")) {
        u.scheme = FB_URL_HTTP;
        st = parse_http(url, len, &u, err);
    } else if (prefix_nocase(url, "ftp://")) {
        u.scheme = FB_URL_FTP;
        st = parse_ftp(url, len, &u, err);
    } else {
        return fb_error_set(err, FB_ERR_URL,
                            "unknown scheme: the module accepts http:// and ftp:// only "
                            "(Ql_FOTA_StartUpgrade returns -1 without any callback)");
    }
    if (st != FB_OK)
        return st;
    if (out)
        *out = u;
    fb_error_clear(err);
    return FB_OK;
}

static fb_status finish(const char *built, int n, char *out, size_t out_size, fb_error *err)
{
    if (n < 0 || (size_t)n > FB_URL_MAX_LEN)
        return fb_error_set(err, FB_ERR_URL,
                            "URL would be %d characters; the module's limit is %d", n,
                            FB_URL_MAX_LEN);
    fb_status st = fb_url_parse(built, NULL, err);
    if (st != FB_OK)
        return st;
    if ((size_t)n >= out_size)
        return fb_error_set(err, FB_ERR_ARG, "output buffer of %zu bytes is too small for %d",
                            out_size, n + 1);
    memcpy(out, built, (size_t)n + 1);
    return FB_OK;
}

static fb_status check_path_arg(const char *path, const char *field, fb_error *err)
{
    if (!path || path[0] != '/')
        return fb_error_set(err, FB_ERR_URL,
                            "%s must start with '/' (the file's path on the server)", field);
    size_t n = strlen(path);
    fb_status st = check_chars(path, n, field, err);
    if (st != FB_OK)
        return st;
    const char *bad = strpbrk(path, ":@");
    if (bad)
        return fb_error_set(err, FB_ERR_URL,
                            "%s has '%c' at offset %zu: the module's parser reads it as a "
                            "field separator; rename the directory or file",
                            field, *bad, (size_t)(bad - path));
    return FB_OK;
}

fb_status fb_url_http(const char *host, uint16_t port, const char *path, char *out,
                      size_t out_size, fb_error *err)
{
    char built[FB_URL_MAX_LEN + 64];
    int is_ip, n;
    fb_status st;
    if (!host)
        return fb_error_set(err, FB_ERR_URL, "HTTP host is empty");
    if ((st = check_host("HTTP host", host, strlen(host), FB_HTTP_HOST_IP_MAX,
                         FB_HTTP_HOST_NAME_MAX, &is_ip, err)) != FB_OK)
        return st;
    if (port == 0)
        return fb_error_set(err, FB_ERR_URL, "HTTP port 0 is outside 1..65535");
    if ((st = check_path_arg(path, "HTTP path", err)) != FB_OK)
        return st;
    if (port == 80)
        n = snprintf(built, sizeof built, "http://%s%s", host, path);
    else
        n = snprintf(built, sizeof built, "http://%s:%u%s", host, port, path);
    return finish(built, n, out, out_size, err);
}

fb_status fb_url_ftp(const char *host, uint16_t port, const char *path, const char *user,
                     const char *password, char *out, size_t out_size, fb_error *err)
{
    char built[FB_URL_MAX_LEN + 64];
    int is_ip;
    fb_status st;
    if (!host)
        return fb_error_set(err, FB_ERR_URL, "FTP host is empty");
    if ((st = check_host("FTP host", host, strlen(host), FB_FTP_HOST_MAX, FB_FTP_HOST_MAX,
                         &is_ip, err)) != FB_OK)
        return st;
    if (port == 0)
        return fb_error_set(err, FB_ERR_URL, "FTP port 0 is outside 1..65535");
    if ((st = check_path_arg(path, "FTP path", err)) != FB_OK)
        return st;
    const char *slash = strrchr(path, '/');
    if ((st = check_len("FTP path (directory)", (size_t)(slash - path), FB_FTP_PATH_MAX, 1,
                        err)) != FB_OK ||
        (st = check_len("FTP file name", strlen(slash + 1), FB_FTP_FILE_MAX, 0, err)) != FB_OK)
        return st;
    if (!user || !password)
        return fb_error_set(err, FB_ERR_URL, "FTP user and password are required");
    if ((st = check_len("FTP user", strlen(user), FB_FTP_USER_MAX, 0, err)) != FB_OK ||
        (st = check_chars(user, strlen(user), "FTP user", err)) != FB_OK)
        return st;
    if (strpbrk(user, ":@"))
        return fb_error_set(err, FB_ERR_URL,
                            "FTP user has ':' or '@': the module's parser splits the user "
                            "part there");
    if ((st = check_len("FTP password", strlen(password), FB_FTP_PASSWORD_MAX, 1, err)) !=
            FB_OK ||
        (st = check_chars(password, strlen(password), "FTP password", err)) != FB_OK)
        return st;
    int n = snprintf(built, sizeof built, "ftp://%s%s:%u@%s:%s", host, path, port, user,
                     password);
    return finish(built, n, out, out_size, err);
}
