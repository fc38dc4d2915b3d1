/* fotabench clean-room declarations: watchdog (opencpu-fota.md §7).
 * Ql_WTD_Init makes the core toggle the external watchdog's WDI pin every interval ms
 * (>= 200); Ql_WTD_Start starts a logic watchdog (interval >= 400 ms) the app must feed
 * with Ql_WTD_Feed; when it expires the core stops toggling and the chip resets the module. */
#ifndef QL_WTD_H
#define QL_WTD_H

#include "ql_type.h"
#include "ql_gpio.h"

s32 Ql_WTD_Init(s32 resetMode, Enum_PinName wtdPin, u32 interval);
s32 Ql_WTD_Start(u32 interval);
void Ql_WTD_Feed(s32 wtdID);
void Ql_WTD_Stop(s32 wtdID);

#endif
