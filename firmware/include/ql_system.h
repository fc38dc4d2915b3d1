/* fotabench clean-room declarations: tasks, messages, reset, system configuration. */
#ifndef QL_SYSTEM_H
#define QL_SYSTEM_H

#include "ql_type.h"
#include "ql_gpio.h"

typedef struct {
    u32 message;
    u32 param1;
    u32 param2;
    u32 srcTaskId;
} ST_MSG;

#define MSG_ID_RIL_READY 0x1000
#define MSG_ID_URC_INDICATION 0x1001
/* Sent by the FOTA code when every FTP connection try failed (no callback then). */
#define MSG_ID_RESET_MODULE_REQ 0x1002
#define MSG_ID_USER_START 0x1100

s32 Ql_OS_GetMessage(ST_MSG *msg);
s32 Ql_OS_SendMessage(s32 destTaskId, u32 msgId, u32 param1, u32 param2);
void Ql_Sleep(u32 msec);
void Ql_Reset(u8 resetType);
u64 Ql_GetMsSincePwrOn(void);

/* custom_sys_cfg.c: the external watchdog's WDI pin(s) the core feeds while it boots and
 * while it copies a FOTA image. PINNAME_END = no pin. */
typedef struct {
    Enum_PinName pinWtd1;
    Enum_PinName pinWtd2;
} ST_ExtWatchdogCfg;

/* The app's entry point (main task). */
void proc_main_task(s32 taskId);

#endif
