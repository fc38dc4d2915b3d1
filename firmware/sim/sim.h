/* fotabench virtual module: internals shared by the board (board.c) and the simulated
 * OpenCPU runtime that runs in the module process (module.c, ql_api.c, ril.c, fota.c). */
#ifndef FB_SIM_H
#define FB_SIM_H

#include <stdint.h>
#include <stddef.h>
#include <limits.h>

/* ---- the module's own rules (modside.c): no code shared with the bench's core ---- */

#define GFH_SIZE 64
#define PKG_HEADER_SIZE 80

struct sim_model {
    const char *name;      /* "M66", "MC60", "MC60E", "M26", "MC20" */
    const char *chip;      /* MT6261 (M66, M26) or MT2503 (MC60, MC60E, MC20) */
    uint32_t load_address; /* GFH load address of the app region (opencpu-fota.md §6) */
    uint32_t region_size;  /* bytes of the app region, header included */
    const char *ati_model; /* ATI / AT+CGMM */
    const char *revision;  /* AT+CGMR */
};
size_t sim_model_count(void);
const struct sim_model *sim_model_at(size_t i);
const struct sim_model *sim_model_find(const char *name);
long long sim_fota_area_size(const struct sim_model *m);

void sim_gfh_write(unsigned char hdr[GFH_SIZE], uint32_t load_address, uint32_t file_length);
int sim_gfh_check(const unsigned char *img, size_t len, const struct sim_model *m, char *why,
                  size_t why_size);

enum { PKG_CHECK_MD5 = 0, PKG_CHECK_FULL = 1 };
int sim_package_check(const unsigned char *pkg, size_t len, const struct sim_model *m, int mode,
                      char *why, size_t why_size);

enum { MURL_HTTP = 1, MURL_FTP = 2 };
enum { FTP_SHORT_REFUSE = 0, FTP_SHORT_ACCEPT = 1 };
struct mod_url {
    int scheme;
    char host[160];
    int port;
    int host_is_ip;
    char path[256]; /* HTTP: the request target as sent; FTP: the directory ("/" or "/dir") */
    char file[32];  /* FTP */
    char user[24], pass[24];
};
/* 0 = decoded; -1 = the module's decode failure (why says what). */
int sim_url_decode(const char *url, int scheme, int ftp_short, struct mod_url *out, char *why,
                   size_t why_size);

struct sim_cfg {
    char state[PATH_MAX];   /* absolute path of the state directory (flash) */
    char app[PATH_MAX];     /* --app, absolute, or "" */
    int fast;               /* --boot-timing fast: every core delay / 100 */
    double link_rate_bps;   /* downlink bits/s; 0 = unlimited */
    int latency_ms;         /* added before every connection set-up */
    int attach_fail;        /* GPRS never attaches */
    int pdp_fail;           /* AT+QIACT fails */
    double wdt_timeout;     /* external watchdog chip timeout, s; 0 = no chip */
    int http_timeout_s;     /* HTTP: seconds without data before failure (module: 120) */
    int ftp_retry_ms;       /* FTP: pause between connection tries (module: 2000) */
    double flash_rate;      /* boot loader copy speed, bytes/s; 0 = instant */
    int power_on;           /* power the module on at start */
    int reflash;            /* write --app into the app area even if one is there */
    const struct sim_model *model; /* --model (default M66) */
    int package_check;      /* --package-check: PKG_CHECK_MD5 (default) or PKG_CHECK_FULL */
    int ftp_short_url;      /* --ftp-short-url: FTP_SHORT_REFUSE (default) or _ACCEPT */
    char imei[16];          /* --imei, else kept in the state directory's "imei" */
    int download_always;    /* --download always: the BootROM listens at every power-up */
    int line_fault;         /* --line-fault: LINE_FAULT_* on the agent's write packets */
    int fault_start, fault_count; /* packets (0-based, every try counted) it hits */
    int pwrkey_low_at_power_up; /* set by the board before each power-up */
};
enum { LINE_FAULT_NONE = 0, LINE_FAULT_FLIP = 1, LINE_FAULT_DROP = 2 };

/* brom.c: the BootROM's handshake window at power-up, then its commands and the
 * download agent (never returns once a handshake came). */
void brom_power_up(int uart1_fd, int pwrkey_low);
extern struct sim_cfg g_cfg;

/* Events the module process sends to the board over a pipe (one write each). */
enum { EV_WDI = 1, EV_STATUS = 2 };
struct sim_event {
    uint8_t type;
    uint8_t value;
    uint8_t pad[6];
    int64_t t_ns;
};

/* Exit codes of the module process. */
#define MODULE_EXIT_POWERDOWN 0
#define MODULE_EXIT_REBOOT 3

int64_t sim_now_ns(void);
void sim_sleep_ms(int64_t ms);
/* A core delay of the real module (ms), scaled by --boot-timing. */
int64_t sim_core_ms(int64_t real_ms);

/* module.c */
void module_main(int uart1_fd, int uart2_fd, int ev_fd) __attribute__((noreturn));
void module_reboot(void) __attribute__((noreturn));
void module_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void module_uart_write(int port, const void *data, size_t len);
int module_port_fd(int port);

/* The runtime's message queue (main task). */
enum { Q_MSG = 1, Q_UART, Q_FOTA_CB };
struct q_item {
    int kind;
    uint32_t message, param1, param2;
    int port;
    int state, percent;
};
void rt_post(const struct q_item *item);
void rt_post_msg(uint32_t message, uint32_t param1, uint32_t param2);

/* watchdog feeding (module.c) */
enum { FEED_NONE = 0, FEED_CORE = 1, FEED_APP = 2 };
void wd_set_core_feeding(int on);
int wd_app_init(int pin, int interval_ms);
int wd_logic_start(int interval_ms);
void wd_logic_feed(int id);
void wd_logic_stop(int id);
void wd_set_level(int level);
int wd_pin(void);

/* network state (ril.c) */
struct net_state {
    int creg;     /* 0,<creg> */
    int cgatt;
    int pdp;
};
extern struct net_state g_net;
void net_start(void);  /* core thread: registration URCs on the boot schedule */
typedef void (*ril_emit_fn)(const char *line, void *ud);
/* Run one AT command line; emits every response line including the final one.
 * Returns 0 (OK) or -1 (error). */
int ril_exec(const char *line, ril_emit_fn emit, void *ud);

/* The core's FTP client behind AT+QFTP* (ril.c), used by FOTA too. */
int ftp_open(const char *host, int port, const char *user, const char *pass);
int ftp_set_path(const char *path);
long long ftp_size(const char *file);
/* Fetch into RAM; *out malloc'd; returns length or negative. */
long long ftp_get(const char *file, long long size, unsigned char **out);
void ftp_close(void);
int pdp_activate(void);

/* fota.c */
void fota_dispatch(int state, int percent); /* main task: run the app callback */

/* link model */
void link_before_connect(void);
void link_pace(int64_t t0, long long bytes); /* token bucket on received bytes */

#endif
