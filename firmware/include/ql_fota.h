/* fotabench clean-room declarations: OpenCPU FOTA (opencpu-fota.md §2, §8). */
#ifndef QL_FOTA_H
#define QL_FOTA_H

#include "ql_type.h"

typedef enum {
    UP_FOTAINITFAIL = 0,
    UP_START,
    UP_URLDECODEFAIL,
    UP_CONNECTING,
    UP_CONNECTED,
    UP_GETTING_FILE,
    UP_GET_FILE_OK,
    UP_SYSTEM_REBOOT,
    UP_UPGRADFAILED,
    FOTA_STATE_END
} Upgrade_State;

typedef bool (*Callback_Upgrade_State)(Upgrade_State state, s32 fileDLPercent);

typedef struct {
    u8 apnName[100];
    u8 apnUserId[32];
    u8 apnPasswd[32];
    u8 authtype;
    void *Reserved1;
    void *Reserved2;
} ST_GprsConfig;

typedef struct {
    s16 Q_gpio_pin1;
    s16 Q_feed_interval1;
    s16 Q_gpio_pin2;
    s16 Q_feed_interval2;
    s32 reserved1;
    s32 reserved2;
} ST_FotaConfig;

s32 Ql_FOTA_StartUpgrade(u8 *url, ST_GprsConfig *apnCfg, Callback_Upgrade_State cb);
s32 Ql_FOTA_StopUpgrade(void);
s32 Ql_FOTA_Init(ST_FotaConfig *pFotaCfg);
s32 Ql_FOTA_WriteData(s32 length, s8 *buffer);
s32 Ql_FOTA_ReadData(u32 offset, u32 len, u8 *pBuffer);
s32 Ql_FOTA_Finish(void);
s32 Ql_FOTA_Update(void);

#endif
