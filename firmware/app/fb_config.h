/* fotabench bench agent: build options (override with -D on the compiler line). */
#ifndef FB_CONFIG_H
#define FB_CONFIG_H

/* SDK builds (make opencpu) get the version from a generated header. */
#ifdef FB_USE_VERSION_H
#include "fb_version.h"
#endif

#ifndef FB_VERSION
#define FB_VERSION "0.0.0"
#endif
#ifndef FB_BUILD
#define FB_BUILD "local"
#endif
/* The external watchdog's WDI pin, named in ST_ExtWatchdogCfg and fed by the app. */
#ifndef FB_WDI_PIN
#define FB_WDI_PIN PINNAME_GPIO0
#endif
/* WDI toggle period while the app runs (Ql_WTD_Init, >= 200 ms). With the
 * TPS3823's 1.6 s timeout, an edge every 200 ms keeps well under 2/3 of it. */
#ifndef FB_WDI_TOGGLE_MS
#define FB_WDI_TOGGLE_MS 200
#endif
/* The logic watchdog (Ql_WTD_Start, >= 400 ms) and how often the app feeds it from its
 * GPT timer (a multiple of 10 ms). */
#ifndef FB_WTD_LOGIC_MS
#define FB_WTD_LOGIC_MS 2000
#endif
#ifndef FB_WTD_FEED_MS
#define FB_WTD_FEED_MS 500
#endif
/* Longest command line accepted on UART1 (longer ones get an error line). */
#ifndef FB_LINE_MAX
#define FB_LINE_MAX 256
#endif

#endif
