/* fotabench clean-room declarations: per-task timers (callbacks run in the task that
 * registered them, from its message loop). */
#ifndef QL_TIMER_H
#define QL_TIMER_H

#include "ql_type.h"

typedef void (*Callback_Timer_OnTimer)(u32 timerId, void *param);

s32 Ql_Timer_Register(u32 timerId, Callback_Timer_OnTimer callback, void *param);
s32 Ql_Timer_Start(u32 timerId, u32 interval, bool autoRepeat);
s32 Ql_Timer_Stop(u32 timerId);

#endif
