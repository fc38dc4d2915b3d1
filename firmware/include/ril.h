/* fotabench clean-room declarations: the RIL (AT commands to the core, URCs to the app). */
#ifndef RIL_H
#define RIL_H

#include "ql_type.h"

typedef s32 (*Callback_ATResponse)(char *line, u32 len, void *userData);

/* Callback_ATResponse returns one of these */
#define RIL_ATRSP_FAILED (-1)
#define RIL_ATRSP_SUCCESS 0
#define RIL_ATRSP_CONTINUE 1

/* Ql_RIL_SendATCmd returns one of these */
#define RIL_AT_SUCCESS 0
#define RIL_AT_FAILED (-1)
#define RIL_AT_TIMEOUT (-2)
#define RIL_AT_BUSY (-3)
#define RIL_AT_INVALID_PARAM (-4)
#define RIL_AT_UNINITIALIZED (-5)

/* MSG_ID_URC_INDICATION: param1 is one of these, param2 the value */
#define URC_SYS_INIT_STATE_IND 0
#define URC_SIM_CARD_STATE_IND 1
#define URC_GSM_NW_STATE_IND 2
#define URC_GPRS_NW_STATE_IND 3
#define URC_CFUN_STATE_IND 4

/* URC_SYS_INIT_STATE_IND values */
#define SYS_STATE_START 0
#define SYS_STATE_ATOK 1
#define SYS_STATE_PHBOK 2
#define SYS_STATE_SMSOK 3
#define SYS_STATE_CALLOK 4
/* URC_SIM_CARD_STATE_IND values */
#define SIM_STAT_READY 1

void Ql_RIL_Initialize(void);
s32 Ql_RIL_SendATCmd(char *atCmd, u32 atCmdLen, Callback_ATResponse atRsp_callBack,
                     void *userData, u32 timeOut);

#endif
