/* fotabench clean-room declarations: timers.
 *
 * Ql_Timer_Register: a task timer. Its callback runs in the task that registered it, from
 * that task's message loop: while the task is blocked (a long Ql_RIL_SendATCmd, a
 * Ql_Sleep) it does not run.
 *
 * Ql_Timer_RegisterFast: the GPT (general purpose hardware) timer, one per app. Its
 * callback runs in interrupt context, outside every task: it keeps running while the
 * task that started it is blocked. Intervals are multiples of 10 ms (>= 10). The callback
 * must be short and must not block or call the RIL. This is what real apps feed a watchdog
 * from (opencpu-fota.md §7: "from a fast (GPT) timer or another task").
 *
 * Ql_Timer_Start/Ql_Timer_Stop take either kind's id. */
#ifndef QL_TIMER_H
#define QL_TIMER_H

#include "ql_type.h"

typedef void (*Callback_Timer_OnTimer)(u32 timerId, void *param);

s32 Ql_Timer_Register(u32 timerId, Callback_Timer_OnTimer callback, void *param);
s32 Ql_Timer_RegisterFast(u32 timerId, Callback_Timer_OnTimer callback, void *param);
s32 Ql_Timer_Start(u32 timerId, u32 interval, bool autoRepeat);
s32 Ql_Timer_Stop(u32 timerId);

#endif
