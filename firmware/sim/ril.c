/* fotabench virtual module: the core's side of the RIL. The AT commands the flows need
 * (AT, ATI, AT+CGMR, AT+CSQ, AT+CREG?, AT+CGATT?, the TCP/IP context commands, the FTP
 * commands), the network registration schedule with its URCs, the link model, and the
 * core's FTP client (libcurl) that AT+QFTP* and FTP FOTA share. */
#define _GNU_SOURCE
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ql_type.h"
#include "ql_system.h"
#include "ril.h"
#include "sim.h"

struct net_state g_net;
static pthread_mutex_t s_netmu = PTHREAD_MUTEX_INITIALIZER;

/* ---- link model ------------------------------------------------------------------ */

void link_before_connect(void)
{
    sim_sleep_ms(g_cfg.latency_ms);
}

/* Token bucket on the downlink: called after `bytes` of a transfer that began at t0
 * were received, it sleeps until the link could have carried them. Sleeping in the
 * receive callback stops the socket reads, so TCP pushes back on the server. */
void link_pace(int64_t t0, long long bytes)
{
    if (g_cfg.link_rate_bps <= 0)
        return;
    int64_t due = t0 + (int64_t)((double)bytes * 8.0 * 1e9 / g_cfg.link_rate_bps);
    int64_t now = sim_now_ns();
    if (due > now)
        sim_sleep_ms((due - now + 999999) / 1000000LL);
}

/* ---- registration schedule (times from the MC60 trace of opencpu-fota.md §8) ------ */

static void *net_thread(void *arg)
{
    (void)arg;
    static const struct { int ms, urc, value; } plan[] = {
        {450, URC_CFUN_STATE_IND, 1},
        {750, URC_SIM_CARD_STATE_IND, SIM_STAT_READY},
        {3900, URC_SYS_INIT_STATE_IND, SYS_STATE_CALLOK},
        {5500, URC_SYS_INIT_STATE_IND, SYS_STATE_SMSOK},
        {11700, URC_GSM_NW_STATE_IND, 1},
        {16400, URC_GPRS_NW_STATE_IND, 1},
    };
    int64_t t0 = sim_now_ns();
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
        int64_t due = t0 + sim_core_ms(plan[i].ms) * 1000000LL;
        int64_t now = sim_now_ns();
        if (due > now)
            sim_sleep_ms((due - now) / 1000000LL);
        pthread_mutex_lock(&s_netmu);
        if (plan[i].urc == URC_SIM_CARD_STATE_IND)
            g_net.creg = 2; /* searching */
        if (plan[i].urc == URC_GSM_NW_STATE_IND)
            g_net.creg = 1;
        int send = 1;
        if (plan[i].urc == URC_GPRS_NW_STATE_IND) {
            if (g_cfg.attach_fail)
                send = 0;
            else
                g_net.cgatt = 1;
        }
        pthread_mutex_unlock(&s_netmu);
        if (send)
            rt_post_msg(MSG_ID_URC_INDICATION, (uint32_t)plan[i].urc, (uint32_t)plan[i].value);
    }
    return NULL;
}

void net_start(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&th, &attr, net_thread, NULL);
}

static int net_get(int *cgatt)
{
    pthread_mutex_lock(&s_netmu);
    int creg = g_net.creg;
    *cgatt = g_net.cgatt;
    pthread_mutex_unlock(&s_netmu);
    return creg;
}

int pdp_activate(void)
{
    int cgatt;
    net_get(&cgatt);
    sim_sleep_ms(sim_core_ms(340)); /* PDP activation time of the trace */
    if (g_cfg.pdp_fail || !cgatt)
        return -1;
    pthread_mutex_lock(&s_netmu);
    g_net.pdp = 1;
    pthread_mutex_unlock(&s_netmu);
    return 0;
}

static void pdp_deactivate(void)
{
    pthread_mutex_lock(&s_netmu);
    g_net.pdp = 0;
    pthread_mutex_unlock(&s_netmu);
}

static int pdp_active(void)
{
    pthread_mutex_lock(&s_netmu);
    int p = g_net.pdp;
    pthread_mutex_unlock(&s_netmu);
    return p;
}

/* ---- FTP client ------------------------------------------------------------------- */

static struct {
    char host[64];
    int port;
    char user[32], pass[32];
    char path[200];
    CURL *c;
} s_ftp;
static pthread_mutex_t s_ftpmu = PTHREAD_MUTEX_INITIALIZER;

static void ftp_url(char *out, size_t size, const char *file)
{
    const char *path = s_ftp.path;
    while (*path == '/')
        path++; /* relative to the login directory, like the module's CWD */
    if (*path)
        snprintf(out, size, "ftp://%s:%d/%s/%s", s_ftp.host, s_ftp.port, path, file);
    else
        snprintf(out, size, "ftp://%s:%d/%s", s_ftp.host, s_ftp.port, file);
}

static void ftp_common(CURL *c)
{
    curl_easy_setopt(c, CURLOPT_USERNAME, s_ftp.user);
    curl_easy_setopt(c, CURLOPT_PASSWORD, s_ftp.pass);
    curl_easy_setopt(c, CURLOPT_FTP_USE_EPSV, 0L); /* plain PASV, AT+QFTPCFG=1,1 */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)g_cfg.http_timeout_s);
}

int ftp_open(const char *host, int port, const char *user, const char *pass)
{
    if (!pdp_active() && pdp_activate() != 0)
        return -1;
    pthread_mutex_lock(&s_ftpmu);
    if (s_ftp.c)
        curl_easy_cleanup(s_ftp.c);
    memset(&s_ftp, 0, sizeof(s_ftp));
    snprintf(s_ftp.host, sizeof(s_ftp.host), "%s", host);
    s_ftp.port = port;
    snprintf(s_ftp.user, sizeof(s_ftp.user), "%s", user);
    snprintf(s_ftp.pass, sizeof(s_ftp.pass), "%s", pass);
    s_ftp.c = curl_easy_init();
    int ret = -1;
    if (s_ftp.c) {
        char url[256];
        snprintf(url, sizeof(url), "ftp://%s:%d/", host, port);
        ftp_common(s_ftp.c);
        curl_easy_setopt(s_ftp.c, CURLOPT_URL, url);
        curl_easy_setopt(s_ftp.c, CURLOPT_NOBODY, 1L);
        link_before_connect();
        CURLcode rc = curl_easy_perform(s_ftp.c);
        if (rc == CURLE_OK) {
            ret = 0;
        } else {
            module_debug("FTP: open %s:%d failed: %s", host, port, curl_easy_strerror(rc));
            curl_easy_cleanup(s_ftp.c);
            s_ftp.c = NULL;
        }
    }
    pthread_mutex_unlock(&s_ftpmu);
    return ret;
}

int ftp_set_path(const char *path)
{
    pthread_mutex_lock(&s_ftpmu);
    int ok = s_ftp.c != NULL;
    if (ok)
        snprintf(s_ftp.path, sizeof(s_ftp.path), "%s", path);
    pthread_mutex_unlock(&s_ftpmu);
    return ok ? 0 : -1;
}

long long ftp_size(const char *file)
{
    long long size = -1;
    pthread_mutex_lock(&s_ftpmu);
    if (s_ftp.c) {
        char url[600];
        ftp_url(url, sizeof(url), file);
        curl_easy_setopt(s_ftp.c, CURLOPT_URL, url);
        curl_easy_setopt(s_ftp.c, CURLOPT_NOBODY, 1L);
        CURLcode rc = curl_easy_perform(s_ftp.c);
        curl_off_t len = -1;
        if (rc == CURLE_OK &&
            curl_easy_getinfo(s_ftp.c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len) == CURLE_OK)
            size = len;
        if (rc != CURLE_OK)
            module_debug("FTP: SIZE %s failed: %s", file, curl_easy_strerror(rc));
    }
    pthread_mutex_unlock(&s_ftpmu);
    return size;
}

struct membuf {
    unsigned char *data;
    size_t len, cap;
    int64_t t0;
};

static size_t mem_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct membuf *m = ud;
    size_t n = size * nmemb;
    if (m->len + n > m->cap)
        return 0; /* more than announced: the RAM buffer is full */
    memcpy(m->data + m->len, ptr, n);
    m->len += n;
    link_pace(m->t0, (long long)m->len);
    return n;
}

long long ftp_get(const char *file, long long size, unsigned char **out)
{
    *out = NULL;
    if (size <= 0 || size > 4 * 1024 * 1024)
        return -1;
    long long ret = -1;
    pthread_mutex_lock(&s_ftpmu);
    if (s_ftp.c) {
        struct membuf m = {malloc((size_t)size), 0, (size_t)size, sim_now_ns()};
        if (m.data) {
            char url[600];
            ftp_url(url, sizeof(url), file);
            curl_easy_setopt(s_ftp.c, CURLOPT_URL, url);
            curl_easy_setopt(s_ftp.c, CURLOPT_NOBODY, 0L);
            curl_easy_setopt(s_ftp.c, CURLOPT_WRITEFUNCTION, mem_write);
            curl_easy_setopt(s_ftp.c, CURLOPT_WRITEDATA, &m);
            CURLcode rc = curl_easy_perform(s_ftp.c);
            curl_easy_setopt(s_ftp.c, CURLOPT_WRITEFUNCTION, NULL);
            curl_easy_setopt(s_ftp.c, CURLOPT_WRITEDATA, NULL);
            if (rc == CURLE_OK && (long long)m.len == size) {
                *out = m.data;
                ret = size;
            } else {
                module_debug("FTP: RETR %s failed after %zu of %lld bytes: %s", file, m.len,
                             size, curl_easy_strerror(rc));
                free(m.data);
            }
        }
    }
    pthread_mutex_unlock(&s_ftpmu);
    return ret;
}

void ftp_close(void)
{
    pthread_mutex_lock(&s_ftpmu);
    if (s_ftp.c)
        curl_easy_cleanup(s_ftp.c);
    s_ftp.c = NULL;
    pthread_mutex_unlock(&s_ftpmu);
}

/* ---- AT commands ----------------------------------------------------------------- */

static char s_ftp_user[32] = "anonymous", s_ftp_pass[32] = "";
static int s_cmee, s_echo = 1;

/* ICCID: "89860" + 14 digits of the IMEI + a Luhn check digit (20 digits, like a SIM's). */
static void iccid(char out[21])
{
    memcpy(out, "89860", 5);
    memcpy(out + 5, g_cfg.imei + 1, 14);
    int sum = 0;
    for (int i = 0; i < 19; i++) {
        int v = out[18 - i] - '0';
        if (i % 2 == 0) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    out[19] = (char)('0' + (10 - sum % 10) % 10);
    out[20] = '\0';
}

/* One quoted argument; returns a pointer past it or NULL. */
static const char *quoted(const char *p, char *out, size_t max)
{
    size_t n = 0;
    if (*p != '"')
        return NULL;
    p++;
    while (*p && *p != '"') {
        if (n + 1 >= max)
            return NULL;
        out[n++] = *p++;
    }
    if (*p != '"')
        return NULL;
    out[n] = '\0';
    return p + 1;
}

static void emitf(ril_emit_fn emit, void *ud, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void emitf(ril_emit_fn emit, void *ud, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    emit(buf, ud);
}

int ril_exec(const char *line, ril_emit_fn emit, void *ud)
{
    char name[32], arg[160];
    size_t i = 0;
    int cgatt;
    while (line[i] && line[i] != '=' && line[i] != '?' && i < sizeof(name) - 1) {
        name[i] = (char)toupper((unsigned char)line[i]);
        i++;
    }
    name[i] = '\0';
    const char *rest = line + i;
    int ok = 1;

    const struct sim_model *m = g_cfg.model;
    if (!strcmp(name, "AT") && !*rest) {
    } else if ((!strcmp(name, "ATE0") || !strcmp(name, "ATE1") || !strcmp(name, "ATE")) &&
               !*rest) {
        s_echo = name[3] == '1'; /* the core's echo; the agent's UART1 never echoes */
    } else if (!strcmp(name, "ATI") && !*rest) {
        emit("Quectel_Ltd", ud);
        emit(m->ati_model, ud);
        emitf(emit, ud, "Revision: %s", m->revision);
    } else if (!strcmp(name, "AT+CGMI") && !*rest) {
        emit("Quectel_Ltd", ud);
    } else if (!strcmp(name, "AT+CGMM") && !*rest) {
        emit(m->ati_model, ud);
    } else if (!strcmp(name, "AT+CGMR") && !*rest) {
        emitf(emit, ud, "Revision: %s", m->revision);
    } else if ((!strcmp(name, "AT+GSN") || !strcmp(name, "AT+CGSN")) && !*rest) {
        emit(g_cfg.imei, ud);
    } else if (!strcmp(name, "AT+QCCID") && !*rest) {
        char id[21];
        iccid(id);
        emit(id, ud);
    } else if (!strcmp(name, "AT+CMEE") && rest[0] == '=' && rest[1] >= '0' && rest[1] <= '2' &&
               !rest[2]) {
        s_cmee = rest[1] - '0';
    } else if (!strcmp(name, "AT+CMEE") && !strcmp(rest, "?")) {
        emitf(emit, ud, "+CMEE: %d", s_cmee);
    } else if (!strcmp(name, "AT+COPS") && !strcmp(rest, "?")) {
        if (net_get(&cgatt) == 1)
            emit("+COPS: 0,0,\"CHINA MOBILE\"", ud);
        else
            emit("+COPS: 0", ud);
    } else if (!strcmp(name, "AT+CSQ") && !*rest) {
        emit("+CSQ: 24,0", ud);
    } else if (!strcmp(name, "AT+CREG") && !strcmp(rest, "?")) {
        emitf(emit, ud, "+CREG: 0,%d", net_get(&cgatt));
    } else if (!strcmp(name, "AT+CGREG") && !strcmp(rest, "?")) {
        net_get(&cgatt);
        emitf(emit, ud, "+CGREG: 0,%d", cgatt ? 1 : 2);
    } else if (!strcmp(name, "AT+CGATT") && !strcmp(rest, "?")) {
        net_get(&cgatt);
        emitf(emit, ud, "+CGATT: %d", cgatt);
    } else if (!strcmp(name, "AT+CFUN") && !strcmp(rest, "?")) {
        emit("+CFUN: 1", ud);
    } else if (!strcmp(name, "AT+CPIN") && !strcmp(rest, "?")) {
        emit("+CPIN: READY", ud);
    } else if (!strcmp(name, "AT+QIFGCNT") && rest[0] == '=' && isdigit((unsigned char)rest[1])) {
    } else if (!strcmp(name, "AT+QICSGP") && rest[0] == '=') {
    } else if (!strcmp(name, "AT+QIREGAPP") && (!*rest || rest[0] == '=')) {
        net_get(&cgatt);
        ok = cgatt;
    } else if (!strcmp(name, "AT+QIACT") && !*rest) {
        ok = pdp_active() || pdp_activate() == 0;
    } else if (!strcmp(name, "AT+QIDEACT") && !*rest) {
        pdp_deactivate();
        emit("DEACT OK", ud);
        return 0;
    } else if (!strcmp(name, "AT+QFTPUSER") && rest[0] == '=') {
        ok = quoted(rest + 1, s_ftp_user, sizeof(s_ftp_user)) != NULL;
    } else if (!strcmp(name, "AT+QFTPPASS") && rest[0] == '=') {
        ok = quoted(rest + 1, s_ftp_pass, sizeof(s_ftp_pass)) != NULL;
    } else if (!strcmp(name, "AT+QFTPCFG") && rest[0] == '=') {
    } else if (!strcmp(name, "AT+QFTPOPEN") && rest[0] == '=') {
        /* Result URCs come before OK here (the RIL is synchronous); the module sends OK
         * first and the URC when the operation ends. */
        const char *p = quoted(rest + 1, arg, sizeof(arg));
        int port = 21;
        if (p && *p == ',') {
            char ps[8];
            const char *q = p[1] == '"' ? quoted(p + 1, ps, sizeof(ps)) : NULL;
            port = q ? atoi(ps) : atoi(p + 1);
        }
        ok = p != NULL;
        if (ok)
            emitf(emit, ud, "+QFTPOPEN:%d", ftp_open(arg, port, s_ftp_user, s_ftp_pass));
    } else if (!strcmp(name, "AT+QFTPPATH") && rest[0] == '=') {
        ok = quoted(rest + 1, arg, sizeof(arg)) != NULL;
        if (ok)
            emitf(emit, ud, "+QFTPPATH:%d", ftp_set_path(arg));
    } else if (!strcmp(name, "AT+QFTPSIZE") && rest[0] == '=') {
        ok = quoted(rest + 1, arg, sizeof(arg)) != NULL;
        if (ok)
            emitf(emit, ud, "+QFTPSIZE:%lld", ftp_size(arg));
    } else if (!strcmp(name, "AT+QFTPGET") && rest[0] == '=') {
        const char *p = quoted(rest + 1, arg, sizeof(arg));
        ok = p != NULL;
        if (ok) {
            long long size = (*p == ',') ? atoll(p + 1) : ftp_size(arg);
            unsigned char *data = NULL;
            long long got = ftp_get(arg, size, &data);
            free(data); /* to RAM; the bench only sees the length */
            emitf(emit, ud, "+QFTPGET:%lld", got);
        }
    } else if (!strcmp(name, "AT+QFTPCLOSE") && !*rest) {
        ftp_close();
        emit("+QFTPCLOSE:0", ud);
    } else {
        ok = 0;
    }
    emit(ok ? "OK" : "ERROR", ud);
    return ok ? 0 : -1;
}

/* ---- Ql_RIL_* ----------------------------------------------------------------------- */

static pthread_mutex_t s_rilmu = PTHREAD_MUTEX_INITIALIZER;

struct relay {
    Callback_ATResponse cb;
    void *ud;
    int done;
    int result;
};

static void relay_emit(const char *line, void *ud)
{
    struct relay *r = ud;
    if (r->done)
        return;
    if (!r->cb) {
        if (!strcmp(line, "OK") || !strcmp(line, "ERROR") || !strncmp(line, "+CME ERROR:", 11)) {
            r->done = 1;
            r->result = strcmp(line, "OK") ? RIL_AT_FAILED : RIL_AT_SUCCESS;
        }
        return;
    }
    char buf[260];
    size_t n = strlen(line);
    if (n > sizeof(buf) - 3)
        n = sizeof(buf) - 3;
    memcpy(buf, line, n);
    memcpy(buf + n, "\r\n", 3);
    s32 rc = r->cb(buf, (u32)(n + 2), r->ud);
    if (rc == RIL_ATRSP_SUCCESS || rc == RIL_ATRSP_FAILED) {
        r->done = 1;
        r->result = rc == RIL_ATRSP_SUCCESS ? RIL_AT_SUCCESS : RIL_AT_FAILED;
    }
}

void Ql_RIL_Initialize(void)
{
}

s32 Ql_RIL_SendATCmd(char *atCmd, u32 atCmdLen, Callback_ATResponse atRsp_callBack,
                     void *userData, u32 timeOut)
{
    char line[512];
    (void)timeOut;
    if (!atCmd || atCmdLen == 0 || atCmdLen >= sizeof(line))
        return RIL_AT_INVALID_PARAM;
    memcpy(line, atCmd, atCmdLen);
    line[atCmdLen] = '\0';
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n'))
        line[--n] = '\0';
    struct relay r = {atRsp_callBack, userData, 0, RIL_AT_FAILED};
    pthread_mutex_lock(&s_rilmu);
    int rc = ril_exec(line, relay_emit, &r);
    pthread_mutex_unlock(&s_rilmu);
    if (!r.done)
        r.result = rc == 0 ? RIL_AT_SUCCESS : RIL_AT_FAILED;
    return r.result;
}
