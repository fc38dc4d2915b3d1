/* fotabench bench agent: system configuration the core reads at boot. The core feeds the
 * external watchdog on this pin while it boots and while it copies a FOTA image; the
 * app feeds the same pin while it runs (main.c). */
#include "ql_type.h"
#include "ql_gpio.h"
#include "ql_system.h"
#include "fb_config.h"

const ST_ExtWatchdogCfg wtdCfg = {
    FB_WDI_PIN,  /* pinWtd1: WDI of the external watchdog chip */
    PINNAME_END  /* pinWtd2: not used */
};
