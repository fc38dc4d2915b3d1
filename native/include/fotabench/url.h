/* fotabench C core: URLs as the module's FOTA URL parser reads them.
 *
 * The rules are the module's, not RFC 3986's (opencpu-fota.md §3): HTTP takes
 * http://host[:port]/path; FTP takes ftp://host/dir/file:port@user:password with the
 * port AFTER the file and fixed field limits. A URL these functions accept is one the
 * module decodes into the fields fb_url holds; every refusal names the field, its
 * length and the limit. URLs also travel inside AT+FBUPG="..." on the bench UART, so
 * a '"' is refused everywhere. */
#ifndef FOTABENCH_URL_H
#define FOTABENCH_URL_H

#include <stddef.h>
#include <stdint.h>

#include "fotabench/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FB_URL_MAX_LEN 199          /* "keep the URL < 200 chars" (HTTP buffer) */
#define FB_HTTP_HOST_IP_MAX 29
#define FB_HTTP_HOST_NAME_MAX 150
#define FB_FTP_HOST_MAX 39
#define FB_FTP_PATH_MAX 59          /* the directory part, e.g. "/fota/v2" */
#define FB_FTP_FILE_MAX 24
#define FB_FTP_USER_MAX 19
#define FB_FTP_PASSWORD_MAX 19

typedef enum fb_url_scheme { FB_URL_HTTP = 1, FB_URL_FTP = 2 } fb_url_scheme;

typedef struct fb_url {
    fb_url_scheme scheme;
    char host[FB_HTTP_HOST_NAME_MAX + 1];
    int host_is_ip;                 /* dotted IPv4 literal (HTTP: UP_CONNECTING is reported) */
    uint16_t port;                  /* explicit or the default (80, 21) */
    char path[FB_URL_MAX_LEN + 1];  /* HTTP: request path "/dir/file.bin"; FTP: directory
                                       "/dir" ("" when the file is at the root) */
    char file[FB_URL_MAX_LEN + 1];  /* last path segment: the file fetched */
    char user[FB_FTP_USER_MAX + 1]; /* FTP only */
    char password[FB_FTP_PASSWORD_MAX + 1];
} fb_url;

/* Decode a URL the way the module does, refusing what it would refuse or mangle. */
fb_status fb_url_parse(const char *url, fb_url *out, fb_error *err);

/* Build a module-ready URL. path is the full path of the file on the server
 * ("/dir/file.bin"). HTTP omits the port when it is 80. The result is parsed back
 * before it is returned, so what is built is what the module decodes. */
fb_status fb_url_http(const char *host, uint16_t port, const char *path, char *out,
                      size_t out_size, fb_error *err);
/* FTP always carries ":port@user:password": without them the SDK's parser copies an
 * underflowed length. */
fb_status fb_url_ftp(const char *host, uint16_t port, const char *path, const char *user,
                     const char *password, char *out, size_t out_size, fb_error *err);

#ifdef __cplusplus
}
#endif
#endif
