/* fotabench virtual module: a clean-room Ql_FOTA_* (opencpu-fota.md §2-4, §8).
 *
 * Ql_FOTA_StartUpgrade decodes the URL with the module's own rules (modside.c, not the
 * bench's core: the two must be able to disagree) and runs the download in a worker thread; every state is delivered to
 * the app's callback in its main task. HTTP is libcurl shaped to the module's client
 * (request headers, refusals, 512-byte flash writes, percentages in steps of 5, never
 * UP_GET_FILE_OK); FTP goes through the core's FTP client behind AT+QFTP* (5 connection
 * tries 2 s apart, whole file in RAM, no intermediate percentages). The spare area is
 * the file "fota.bin" of the state directory, the update flag "fota.flag". */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ql_type.h"
#include "ql_error.h"
#include "ql_fota.h"
#include "ql_system.h"
#include "sim.h"

#define FOTA_WRITE_MAX 512
#define HTTP_HEADER_LINE_MAX 512

static pthread_mutex_t s_fmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_fcv = PTHREAD_COND_INITIALIZER;
static int s_busy;
static Callback_Upgrade_State s_cb;
static int s_answer_ready, s_answer;

/* ---- the FOTA (spare) area --------------------------------------------------------- */

static int s_fd = -1;
static long long s_woff;
static int s_finished;

static void state_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", g_cfg.state, name);
}

static long long area_size(void)
{
    return sim_fota_area_size(g_cfg.model);
}

s32 Ql_FOTA_Init(ST_FotaConfig *pFotaCfg)
{
    char path[PATH_MAX + 16];
    (void)pFotaCfg; /* the core feeds the pin named in ST_ExtWatchdogCfg */
    state_path(path, sizeof(path), "fota.bin");
    pthread_mutex_lock(&s_fmu);
    if (s_fd >= 0)
        close(s_fd);
    s_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644); /* erase */
    s_woff = 0;
    s_finished = 0;
    int ok = s_fd >= 0;
    pthread_mutex_unlock(&s_fmu);
    return ok ? QL_RET_OK : QL_RET_ERR_RAW_FLASH_ERASEFAIL;
}

s32 Ql_FOTA_WriteData(s32 length, s8 *buffer)
{
    s32 ret = QL_RET_OK;
    pthread_mutex_lock(&s_fmu);
    if (s_fd < 0)
        ret = QL_RET_ERR_RAW_FLASH_UNINITIALIZED;
    else if (!buffer || length <= 0)
        ret = QL_RET_ERR_PARAM;
    else if (length > FOTA_WRITE_MAX)
        ret = QL_RET_ERR_RAW_FLASH_MAXLENGATH;
    else if (s_woff + length > area_size())
        ret = QL_RET_ERR_RAW_FLASH_OVERRANGE;
    else if (pwrite(s_fd, buffer, (size_t)length, (off_t)s_woff) != length)
        ret = QL_RET_ERR_RAW_FLASH_WRITEFAIL;
    else
        s_woff += length;
    s_finished = 0;
    pthread_mutex_unlock(&s_fmu);
    return ret;
}

s32 Ql_FOTA_ReadData(u32 offset, u32 len, u8 *pBuffer)
{
    s32 ret;
    pthread_mutex_lock(&s_fmu);
    if (s_fd < 0)
        ret = QL_RET_ERR_RAW_FLASH_UNINITIALIZED;
    else if (!pBuffer || (long long)offset + len > s_woff)
        ret = QL_RET_ERR_PARAM;
    else
        ret = pread(s_fd, pBuffer, len, (off_t)offset) == (ssize_t)len
                  ? (s32)len : QL_RET_ERR_RAW_FLASH_READFAIL;
    pthread_mutex_unlock(&s_fmu);
    return ret;
}

/* "Checks the checksum" (§8): the MD5 trailer over the bytes written, and with
 * --package-check full the header and the app image too (modside.c). */
s32 Ql_FOTA_Finish(void)
{
    pthread_mutex_lock(&s_fmu);
    s32 ret = QL_RET_ERR_RAW_FLASH_UNINITIALIZED;
    if (s_fd >= 0) {
        fsync(s_fd);
        size_t len = (size_t)s_woff;
        unsigned char *buf = malloc(len ? len : 1);
        char why[200];
        if (!buf || pread(s_fd, buf, len, 0) != (ssize_t)len) {
            module_debug("FOTA: package check failed: cannot read the FOTA area");
            ret = QL_RET_ERR_RAW_FLASH_READFAIL;
        } else if (sim_package_check(buf, len, g_cfg.model, g_cfg.package_check, why,
                                     sizeof(why)) == 0) {
            s_finished = 1;
            ret = QL_RET_OK;
        } else {
            module_debug("FOTA: package check failed: %s", why);
            ret = QL_RET_ERR_PARAM;
        }
        free(buf);
    }
    pthread_mutex_unlock(&s_fmu);
    return ret;
}

/* Flag the update for the boot loader (written atomically) and reboot. */
s32 Ql_FOTA_Update(void)
{
    char path[PATH_MAX + 16], tmp[PATH_MAX + 16];
    pthread_mutex_lock(&s_fmu);
    int finished = s_finished;
    pthread_mutex_unlock(&s_fmu);
    if (!finished)
        return QL_RET_ERR_INVALID_OP;
    state_path(path, sizeof(path), "fota.flag");
    state_path(tmp, sizeof(tmp), "fota.flag.tmp");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "UPDATE\n", 7) != 7 || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        return QL_RET_ERR_RAW_FLASH_WRITEFAIL;
    }
    close(fd);
    if (rename(tmp, path) != 0)
        return QL_RET_ERR_RAW_FLASH_WRITEFAIL;
    int dfd = open(g_cfg.state, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    module_debug("FOTA: update flagged, rebooting");
    module_reboot();
}

s32 Ql_FOTA_StopUpgrade(void)
{
    return QL_RET_OK; /* does nothing in the SDK either */
}

/* ---- states to the app ------------------------------------------------------------- */

static const char *const s_names[] = {
    "UP_FOTAINITFAIL", "UP_START", "UP_URLDECODEFAIL", "UP_CONNECTING", "UP_CONNECTED",
    "UP_GETTING_FILE", "UP_GET_FILE_OK", "UP_SYSTEM_REBOOT", "UP_UPGRADFAILED",
};

static void post_state(int state, int percent)
{
    struct q_item it;
    memset(&it, 0, sizeof(it));
    it.kind = Q_FOTA_CB;
    it.state = state;
    it.percent = percent;
    module_debug("FOTA: %s,%d", s_names[state], percent);
    rt_post(&it);
}

void fota_dispatch(int state, int percent)
{
    pthread_mutex_lock(&s_fmu);
    Callback_Upgrade_State cb = s_cb;
    pthread_mutex_unlock(&s_fmu);
    bool ret = TRUE; /* the default callback prints (above) and returns TRUE */
    if (cb)
        ret = cb((Upgrade_State)state, percent);
    if (state == UP_SYSTEM_REBOOT) {
        pthread_mutex_lock(&s_fmu);
        s_answer = ret ? 1 : 0;
        s_answer_ready = 1;
        pthread_cond_broadcast(&s_fcv);
        pthread_mutex_unlock(&s_fmu);
    }
}

static void finish_worker(void)
{
    pthread_mutex_lock(&s_fmu);
    s_busy = 0;
    pthread_mutex_unlock(&s_fmu);
}

/* UP_SYSTEM_REBOOT: TRUE = wait ~300 ms and update; FALSE = wait for Ql_FOTA_Update.
 * With TRUE the worker stays busy until the reboot: a Ql_FOTA_StartUpgrade in the
 * 300 ms returns -1 instead of erasing the spare area under the pending update. */
static void reboot_state(void)
{
    pthread_mutex_lock(&s_fmu);
    s_answer_ready = 0;
    pthread_mutex_unlock(&s_fmu);
    post_state(UP_SYSTEM_REBOOT, 100);
    pthread_mutex_lock(&s_fmu);
    while (!s_answer_ready)
        pthread_cond_wait(&s_fcv, &s_fmu);
    int go = s_answer;
    if (!go)
        s_busy = 0;
    pthread_mutex_unlock(&s_fmu);
    if (go) {
        sim_sleep_ms(300);
        Ql_FOTA_Update();
    }
}

static int write_flash(const unsigned char *data, size_t len)
{
    while (len > 0) {
        size_t n = len < FOTA_WRITE_MAX ? len : FOTA_WRITE_MAX;
        if (Ql_FOTA_WriteData((s32)n, (s8 *)(uintptr_t)data) != QL_RET_OK)
            return -1;
        data += n;
        len -= n;
    }
    return 0;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

struct http_job {
    struct mod_url url;
    int url_ok;
    int status, fail, have_len, headers_done, last_pct;
    long long clen, got;
    int64_t t0;
    int64_t last_ns; /* when data last arrived (the no-data timeout counts from it) */
    char why[160];
};

static int http_prereq(void *ud, char *ip, char *lip, int port, int lport)
{
    (void)ud;
    (void)ip;
    (void)lip;
    (void)port;
    (void)lport;
    post_state(UP_CONNECTED, 0);
    return CURL_PREREQFUNC_OK;
}

static size_t http_fail(struct http_job *j, const char *why)
{
    j->fail = 1;
    snprintf(j->why, sizeof(j->why), "%s", why);
    return 0;
}

static size_t http_header(char *buf, size_t size, size_t nitems, void *ud)
{
    struct http_job *j = ud;
    size_t n = size * nitems;
    char line[HTTP_HEADER_LINE_MAX + 3];
    if (n > HTTP_HEADER_LINE_MAX + 2)
        return http_fail(j, "header line longer than 512 bytes");
    memcpy(line, buf, n);
    line[n] = '\0';
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n'))
        line[--n] = '\0';
    j->last_ns = sim_now_ns();
    if (!strncmp(line, "HTTP/", 5)) {
        const char *sp = strchr(line, ' ');
        j->status = sp ? atoi(sp + 1) : 0;
        if (j->status < 200 || j->status > 299)
            return http_fail(j, "status is not 2xx (redirects are not followed)");
        return size * nitems;
    }
    if (n == 0) {
        if (!j->have_len)
            return http_fail(j, "no Content-Length");
        if (j->clen <= 0 || j->clen > area_size())
            return http_fail(j, "Content-Length does not fit the FOTA area");
        j->headers_done = 1;
        post_state(UP_GETTING_FILE, 0);
        return size * nitems;
    }
    if (!strncasecmp(line, "Content-Length:", 15)) {
        j->have_len = 1;
        j->clen = atoll(line + 15);
    } else if (!strncasecmp(line, "Transfer-Encoding:", 18)) {
        return http_fail(j, "Transfer-Encoding (chunked) is not supported");
    }
    return size * nitems;
}

static size_t http_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct http_job *j = ud;
    size_t n = size * nmemb;
    if (!j->headers_done)
        return http_fail(j, "body before headers");
    if (j->got + (long long)n > j->clen)
        n = (size_t)(j->clen - j->got);
    if (write_flash((const unsigned char *)ptr, n) != 0)
        return http_fail(j, "flash write failed");
    j->got += (long long)n;
    if (j->t0 == 0)
        j->t0 = sim_now_ns();
    link_pace(j->t0, j->got);
    j->last_ns = sim_now_ns(); /* after the link's pacing: that is not the server's silence */
    int pct = (int)(j->got * 100 / j->clen) / 5 * 5;
    if (pct > j->last_pct) {
        j->last_pct = pct;
        post_state(UP_GETTING_FILE, pct);
    }
    return size * nmemb;
}

/* Runs the transfer with the module's no-data timeout: --http-timeout seconds after the
 * last byte (or the start), before the headers and mid-body alike. curl's low-speed
 * check only looks once a second over a whole window and overshot by up to ~6 s; here
 * the deadline is checked at least every 100 ms. */
static CURLcode http_perform(CURL *c, struct http_job *j)
{
    CURLM *m = curl_multi_init();
    if (!m)
        return CURLE_OUT_OF_MEMORY;
    if (curl_multi_add_handle(m, c) != CURLM_OK) {
        curl_multi_cleanup(m);
        return CURLE_FAILED_INIT;
    }
    const int64_t limit_ns = (int64_t)g_cfg.http_timeout_s * 1000000000LL;
    CURLcode rc = CURLE_OK;
    int running = 1, done = 0;
    j->last_ns = sim_now_ns();
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            rc = CURLE_RECV_ERROR;
            break;
        }
        if (!running)
            break;
        int64_t left = j->last_ns + limit_ns - sim_now_ns();
        if (left <= 0) {
            if (!j->fail)
                snprintf(j->why, sizeof(j->why), "no data for %d s", g_cfg.http_timeout_s);
            j->fail = 1;
            break;
        }
        int wait_ms = (int)(left / 1000000LL) + 1;
        curl_multi_poll(m, NULL, 0, wait_ms < 100 ? wait_ms : 100, NULL);
    }
    CURLMsg *msg;
    int queued;
    while ((msg = curl_multi_info_read(m, &queued)) != NULL) {
        if (msg->msg == CURLMSG_DONE) {
            rc = msg->data.result;
            done = 1;
        }
    }
    if (!done && rc == CURLE_OK && !j->fail)
        rc = CURLE_RECV_ERROR;
    curl_multi_remove_handle(m, c); /* closes the connection: the server sees it */
    curl_multi_cleanup(m);
    return rc;
}

static void *http_worker(void *arg)
{
    struct http_job *j = arg;
    post_state(UP_START, 0);
    if (!j->url_ok) {
        post_state(UP_URLDECODEFAIL, 0);
        goto failed;
    }
    if (Ql_FOTA_Init(NULL) != QL_RET_OK || pdp_activate() != 0) {
        module_debug("FOTA: no PDP context");
        goto failed;
    }
    if (j->url.host_is_ip)
        post_state(UP_CONNECTING, 0);
    CURL *c = curl_easy_init();
    if (!c) {
        goto failed;
    }
    char urlbuf[512], host[sizeof(j->url.host) + 32];
    snprintf(urlbuf, sizeof(urlbuf), "http://%s:%d/", j->url.host, j->url.port);
    snprintf(host, sizeof(host), "Host: %s:%d", j->url.host, j->url.port);
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, host);
    hdrs = curl_slist_append(hdrs, "Accept: */*");
    hdrs = curl_slist_append(hdrs, "User-Agent: QUECTEL_MODULE");
    hdrs = curl_slist_append(hdrs, "Connection: Keep-Alive");
    curl_easy_setopt(c, CURLOPT_URL, urlbuf);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    /* the path exactly as the URL had it (the note's file:port form included): the
     * module writes it into the request line without parsing it */
    curl_easy_setopt(c, CURLOPT_REQUEST_TARGET, j->url.path);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)g_cfg.http_timeout_s);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 1024L);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, http_prereq);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, j);
    link_before_connect();
    CURLcode rc = http_perform(c, j);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK || j->fail || !j->headers_done || j->got != j->clen) {
        module_debug("FOTA: HTTP download failed: %s (%lld of %lld bytes)",
                     j->fail ? j->why : curl_easy_strerror(rc), j->got, j->clen);
        goto failed;
    }
    if (Ql_FOTA_Finish() != QL_RET_OK) {
        goto failed;
    }
    free(j);
    reboot_state();
    return NULL;
failed:
    free(j);
    /* Free the worker before reporting, so a bench that retries at once on
     * UP_UPGRADFAILED can start again. */
    finish_worker();
    post_state(UP_UPGRADFAILED, 0);
    return NULL;
}

/* ---- FTP ----------------------------------------------------------------------------- */

struct ftp_job {
    struct mod_url url;
};

static void *ftp_worker(void *arg)
{
    struct ftp_job *j = arg;
    unsigned char *data = NULL;
    post_state(UP_START, 0);
    if (Ql_FOTA_Init(NULL) != QL_RET_OK) {
        goto failed;
    }
    /* AT+QIFGCNT=0, AT+QICSGP=1,"CMNET" (the app's APN is ignored), then AT+QFTPUSER/PASS,
     * AT+QFTPCFG=1,1 and AT+QFTPOPEN, which activates the context. */
    post_state(UP_CONNECTING, 0);
    const char *user = j->url.user;
    int opened = 0;
    for (int attempt = 1; attempt <= 5 && !opened; attempt++) {
        if (ftp_open(j->url.host, j->url.port, user, j->url.pass) == 0)
            opened = 1;
        else if (attempt < 5)
            sim_sleep_ms(g_cfg.ftp_retry_ms);
    }
    if (!opened) {
        module_debug("FOTA: FTP connection failed 5 times; asking the app to reset");
        rt_post_msg(MSG_ID_RESET_MODULE_REQ, 0, 0);
        goto out;
    }
    post_state(UP_CONNECTED, 0);
    long long size = -1;
    if (ftp_set_path(j->url.path) == 0)
        size = ftp_size(j->url.file);
    if (size <= 0 || size > area_size()) {
        module_debug("FOTA: FTP size of %s: %lld", j->url.file, size);
        ftp_close();
        goto failed;
    }
    post_state(UP_GETTING_FILE, 0);
    long long got = ftp_get(j->url.file, size, &data);
    ftp_close();
    if (got != size) {
        goto failed;
    }
    post_state(UP_GET_FILE_OK, 100);
    if (write_flash(data, (size_t)size) != 0 || Ql_FOTA_Finish() != QL_RET_OK) {
        goto failed;
    }
    free(data);
    free(j);
    reboot_state();
    return NULL;
failed:
    free(data);
    free(j);
    finish_worker(); /* before reporting, as in http_worker */
    post_state(UP_UPGRADFAILED, 0);
    return NULL;
out:
    free(data);
    free(j);
    finish_worker();
    return NULL;
}

/* ---- Ql_FOTA_StartUpgrade ------------------------------------------------------------ */

static int prefix_has(const char *url, const char *word)
{
    char head[6];
    size_t i;
    for (i = 0; i < 5 && url[i]; i++)
        head[i] = (char)tolower((unsigned char)url[i]);
    head[i] = '\0';
    return strstr(head, word) != NULL;
}

s32 Ql_FOTA_StartUpgrade(u8 *url, ST_GprsConfig *apnCfg, Callback_Upgrade_State cb)
{
    (void)apnCfg; /* ignored, as by the SDK: APN "CMNET", no credentials */
    if (!url)
        return -1;
    const char *u = (const char *)url;
    int ftp = prefix_has(u, "ftp"), http = prefix_has(u, "http");
    if (!ftp && !http)
        return -1;
    pthread_mutex_lock(&s_fmu);
    if (s_busy) {
        pthread_mutex_unlock(&s_fmu);
        return -1;
    }
    s_cb = cb;
    pthread_mutex_unlock(&s_fmu);

    struct mod_url parsed;
    char why[200];
    int ok = sim_url_decode(u, ftp ? MURL_FTP : MURL_HTTP, g_cfg.ftp_short_url, &parsed, why,
                            sizeof(why)) == 0;
    if (!ok)
        module_debug("FOTA: URL decode failed: %s", why);
    void *(*worker)(void *);
    void *job;
    if (ftp) {
        if (!ok) {
            post_state(UP_URLDECODEFAIL, 0);
            return -1;
        }
        struct ftp_job *fj = calloc(1, sizeof(*fj));
        if (!fj)
            return -1;
        fj->url = parsed;
        job = fj;
        worker = ftp_worker;
    } else {
        struct http_job *hj = calloc(1, sizeof(*hj));
        if (!hj)
            return -1;
        hj->url_ok = ok; /* a decode failure is reported, and the flow carries on to fail */
        if (ok)
            hj->url = parsed;
        hj->last_pct = 0;
        job = hj;
        worker = http_worker;
    }
    pthread_mutex_lock(&s_fmu);
    s_busy = 1;
    pthread_mutex_unlock(&s_fmu);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, worker, job) != 0) {
        free(job);
        finish_worker();
        return -1;
    }
    return 0;
}
