/* fotabench bench agent: the UART1 protocol of shared/spec/bench-agent.md.
 *
 * Embedded C for OpenCPU: only the Ql_* API (firmware/include), no libc, no heap. One
 * command at a time: each command is answered completely (its own lines, then OK or an
 * error line) before the next message is handled; FOTA callback lines that arrive while a
 * command runs are held and printed after its final result. */
#include "ql_type.h"
#include "ql_stdlib.h"
#include "ql_system.h"
#include "ql_uart.h"
#include "ql_fota.h"
#include "ril.h"
#include "fb_config.h"
#include "fb_agent.h"

#define CME_NOT_ALLOWED 3
#define CME_NOT_SUPPORTED 4
#define CME_BAD_PARAM 50

#define PENDING_MAX 16
#define PENDING_LEN 48

static char s_line[FB_LINE_MAX + 1];
static u32 s_len;
static bool s_overlong;
static bool s_malformed;

static bool s_in_cmd;
static char s_pending[PENDING_MAX][PENDING_LEN];
static u32 s_npending;

static volatile bool s_feeding = TRUE; /* read by the GPT timer (interrupt context) */
static bool s_busy;         /* an upgrade is running */
static bool s_reboot = TRUE; /* callback's answer at UP_SYSTEM_REBOOT */
static bool s_download_ok;  /* UP_SYSTEM_REBOOT seen: Ql_FOTA_Update may be called */
static bool s_final_seen;
static ST_GprsConfig s_apn;

static const char *const s_state_names[] = {
    "UP_FOTAINITFAIL", "UP_START", "UP_URLDECODEFAIL", "UP_CONNECTING", "UP_CONNECTED",
    "UP_GETTING_FILE", "UP_GET_FILE_OK", "UP_SYSTEM_REBOOT", "UP_UPGRADFAILED",
};

static void put_line(const char *text)
{
    char out[FB_LINE_MAX + 8];
    u32 n = Ql_strlen(text);
    if (n > FB_LINE_MAX)
        n = FB_LINE_MAX;
    Ql_memcpy(out, text, n);
    out[n] = '\r';
    out[n + 1] = '\n';
    Ql_UART_Write(UART_PORT1, (u8 *)out, n + 2);
}

static void debug_line(const char *text)
{
    char out[FB_LINE_MAX + 8];
    Ql_snprintf(out, sizeof(out), "<-- %s -->\r\n", text);
    Ql_UART_Write(UART_PORT2, (u8 *)out, Ql_strlen(out));
}

static void cme_error(s32 code)
{
    char out[32];
    Ql_sprintf(out, "+CME ERROR: %d", code);
    put_line(out);
}

/* An unsolicited line: printed now, or held until the running command's final result. */
static void urc_line(const char *text)
{
    if (!s_in_cmd) {
        put_line(text);
        return;
    }
    if (s_npending < PENDING_MAX) {
        Ql_strncpy(s_pending[s_npending], text, PENDING_LEN - 1);
        s_pending[s_npending][PENDING_LEN - 1] = '\0';
        s_npending++;
    }
}

static void flush_pending(void)
{
    u32 i;
    for (i = 0; i < s_npending; i++)
        put_line(s_pending[i]);
    s_npending = 0;
}

static bool fota_cb(Upgrade_State state, s32 percent)
{
    char out[PENDING_LEN];
    const char *name = ((u32)state <= (u32)UP_UPGRADFAILED)
                           ? s_state_names[state] : "FOTA_STATE_END";
    Ql_snprintf(out, sizeof(out), "+FBSTATE: %s,%d", name, percent);
    urc_line(out);
    if (state == UP_UPGRADFAILED) {
        s_busy = FALSE;
    } else if (state == UP_SYSTEM_REBOOT) {
        /* TRUE: the core updates and reboots ~300 ms later; until then stay busy, or a
         * second AT+FBUPG would erase the spare area under the pending update. FALSE:
         * nothing happens until AT+FBUPDATE, and a new upgrade may replace this one. */
        s_busy = s_reboot;
        s_download_ok = TRUE;
        return s_reboot;
    }
    return TRUE;
}

/* Copy a quoted string starting at *p (which must be '"') into out; *p moves past it. */
static bool take_quoted(const char **p, char *out, u32 max)
{
    const char *s = *p;
    u32 n = 0;
    if (*s != '"')
        return FALSE;
    s++;
    while (*s && *s != '"') {
        if (n >= max)
            return FALSE;
        out[n++] = *s++;
    }
    if (*s != '"')
        return FALSE;
    out[n] = '\0';
    *p = s + 1;
    return TRUE;
}

static void cmd_fbupg(const char *args)
{
    static char url[FB_LINE_MAX + 1];
    const char *p = args;
    bool reboot = TRUE;
    s32 ret;
    char out[32];

    if (!take_quoted(&p, url, FB_LINE_MAX) || url[0] == '\0') {
        cme_error(CME_BAD_PARAM);
        return;
    }
    if (*p == ',') {
        p++;
        if ((p[0] != '0' && p[0] != '1') || p[1] != '\0') {
            cme_error(CME_BAD_PARAM);
            return;
        }
        reboot = (p[0] == '1');
    } else if (*p != '\0') {
        cme_error(CME_BAD_PARAM);
        return;
    }
    if (s_busy) {
        cme_error(CME_NOT_ALLOWED);
        return;
    }
    s_reboot = reboot;
    s_download_ok = FALSE;
    ret = Ql_FOTA_StartUpgrade((u8 *)url, &s_apn, fota_cb);
    if (ret == 0) {
        s_busy = TRUE;
    } else {
        Ql_sprintf(out, "+FBUPG: %d", ret);
        put_line(out);
    }
    put_line("OK");
}

static void cmd_fbapn(const char *args)
{
    const char *p = args;
    ST_GprsConfig apn;
    Ql_memset(&apn, 0, sizeof(apn));
    if (!take_quoted(&p, (char *)apn.apnName, sizeof(apn.apnName) - 1) || *p++ != ',' ||
        !take_quoted(&p, (char *)apn.apnUserId, sizeof(apn.apnUserId) - 1) || *p++ != ',' ||
        !take_quoted(&p, (char *)apn.apnPasswd, sizeof(apn.apnPasswd) - 1) || *p != '\0') {
        cme_error(CME_BAD_PARAM);
        return;
    }
    Ql_memcpy(&s_apn, &apn, sizeof(apn));
    put_line("OK");
}

static s32 relay_cb(char *line, u32 len, void *userData)
{
    char buf[FB_LINE_MAX + 1];
    (void)userData;
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    if (len == 0)
        return RIL_ATRSP_CONTINUE;
    if (len > FB_LINE_MAX)
        len = FB_LINE_MAX;
    Ql_memcpy(buf, line, len);
    buf[len] = '\0';
    put_line(buf);
    if (Ql_strcmp(buf, "OK") == 0 || Ql_strcmp(buf, "DEACT OK") == 0) {
        s_final_seen = TRUE;
        return RIL_ATRSP_SUCCESS;
    }
    if (Ql_strcmp(buf, "ERROR") == 0 || Ql_strncmp(buf, "+CME ERROR:", 11) == 0 ||
        Ql_strncmp(buf, "+CMS ERROR:", 11) == 0) {
        s_final_seen = TRUE;
        return RIL_ATRSP_FAILED;
    }
    return RIL_ATRSP_CONTINUE;
}

static void cmd_forward(char *line)
{
    s32 ret;
    s_final_seen = FALSE;
    ret = Ql_RIL_SendATCmd(line, Ql_strlen(line), relay_cb, NULL, 0);
    if (!s_final_seen)
        put_line(ret == RIL_AT_SUCCESS ? "OK" : "ERROR");
}

static bool starts_with(const char *s, const char *prefix)
{
    return Ql_strncmp(s, prefix, Ql_strlen(prefix)) == 0;
}

static void handle_line(char *line)
{
    char out[FB_LINE_MAX + 1];
    u32 i;

    /* Command names are case-insensitive; quoted arguments keep their case. */
    for (i = 0; line[i] && line[i] != '"'; i++)
        line[i] = (char)Ql_toupper(line[i]);
    if (line[0] != 'A' || line[1] != 'T') {
        put_line("ERROR");
        return;
    }
    if (Ql_strcmp(line, "AT+FBVER?") == 0) {
        Ql_snprintf(out, sizeof(out), "+FBVER: \"%s\",\"%s\"", FB_VERSION, FB_BUILD);
        put_line(out);
        put_line("OK");
    } else if (starts_with(line, "AT+FBUPG=")) {
        cmd_fbupg(line + 9);
    } else if (Ql_strcmp(line, "AT+FBUPDATE") == 0) {
        if (!s_download_ok) {
            cme_error(CME_NOT_ALLOWED);
            return;
        }
        put_line("OK");
        i = (u32)Ql_FOTA_Update(); /* reboots on success */
        Ql_sprintf(out, "+FBUPG: %d", (s32)i);
        urc_line(out);
    } else if (starts_with(line, "AT+FBAPN=")) {
        cmd_fbapn(line + 9);
    } else if (starts_with(line, "AT+FBWDT=")) {
        if ((line[9] != '0' && line[9] != '1') || line[10] != '\0') {
            cme_error(CME_BAD_PARAM);
            return;
        }
        s_feeding = (line[9] == '1');
        debug_line(s_feeding ? "watchdog feeding on" : "watchdog feeding off");
        put_line("OK");
    } else if (Ql_strcmp(line, "AT+FBRST") == 0) {
        put_line("OK");
        Ql_Reset(0);
    } else if (starts_with(line, "AT+FB")) {
        cme_error(CME_NOT_SUPPORTED);
    } else {
        cmd_forward(line);
    }
}

void fb_agent_rx(const u8 *data, u32 len)
{
    u32 i;
    for (i = 0; i < len; i++) {
        u8 c = data[i];
        if (c == '\r' || c == '\n') {
            if (s_overlong || s_malformed) {
                put_line(s_overlong ? "+CME ERROR: 50" : "ERROR");
            } else if (s_len > 0) {
                s_line[s_len] = '\0';
                s_in_cmd = TRUE;
                handle_line(s_line);
                s_in_cmd = FALSE;
                flush_pending();
            }
            s_len = 0;
            s_overlong = FALSE;
            s_malformed = FALSE;
            continue;
        }
        if (c < 0x20 || c > 0x7E) {
            s_malformed = TRUE;
            continue;
        }
        if (s_len >= FB_LINE_MAX) {
            s_overlong = TRUE;
            continue;
        }
        s_line[s_len++] = (char)c;
    }
}

bool fb_agent_feeding(void)
{
    return s_feeding;
}

void fb_agent_init(void)
{
    char out[96];
    Ql_memset(&s_apn, 0, sizeof(s_apn));
    Ql_strcpy((char *)s_apn.apnName, "CMNET");
    Ql_snprintf(out, sizeof(out), "+FBREADY: \"%s\",\"%s\"", FB_VERSION, FB_BUILD);
    put_line(out);
    Ql_snprintf(out, sizeof(out), "fotabench agent %s (%s)", FB_VERSION, FB_BUILD);
    debug_line(out);
}

void fb_agent_on_message(const ST_MSG *msg)
{
    char out[48];
    switch (msg->message) {
    case MSG_ID_URC_INDICATION:
        switch (msg->param1) {
        case URC_CFUN_STATE_IND:
            Ql_sprintf(out, "+CFUN: %d", (s32)msg->param2);
            urc_line(out);
            break;
        case URC_SIM_CARD_STATE_IND:
            urc_line(msg->param2 == SIM_STAT_READY ? "+CPIN: READY" : "+CPIN: NOT READY");
            break;
        case URC_SYS_INIT_STATE_IND:
            if (msg->param2 == SYS_STATE_CALLOK)
                urc_line("Call Ready");
            else if (msg->param2 == SYS_STATE_SMSOK)
                urc_line("SMS Ready");
            break;
        case URC_GSM_NW_STATE_IND:
            Ql_sprintf(out, "+CREG: %d", (s32)msg->param2);
            urc_line(out);
            break;
        case URC_GPRS_NW_STATE_IND:
            Ql_sprintf(out, "+CGREG: %d", (s32)msg->param2);
            urc_line(out);
            break;
        default:
            break;
        }
        break;
    case MSG_ID_RESET_MODULE_REQ:
        s_busy = FALSE;
        urc_line("+FBRESETREQ");
        debug_line("FOTA: every connection try failed, reset requested");
        break;
    default:
        break;
    }
}
