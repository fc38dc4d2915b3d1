/* fotabench clean-room declarations: GPIO. Pin numbers are ours (only the names follow
 * the application notes); an app built against the real SDK gets Quectel's values. */
#ifndef QL_GPIO_H
#define QL_GPIO_H

#include "ql_type.h"

typedef enum {
    PINNAME_NETLIGHT = 0,
    PINNAME_DTR,
    PINNAME_RI,
    PINNAME_DCD,
    PINNAME_CTS,
    PINNAME_RTS,
    PINNAME_PCM_CLK,
    PINNAME_PCM_SYNC,
    PINNAME_PCM_IN,
    PINNAME_PCM_OUT,
    PINNAME_GPIO0,
    PINNAME_GPIO1,
    PINNAME_END
} Enum_PinName;

typedef enum { PINDIRECTION_IN = 0, PINDIRECTION_OUT = 1 } Enum_PinDirection;
typedef enum { PINLEVEL_LOW = 0, PINLEVEL_HIGH = 1 } Enum_PinLevel;
typedef enum { PINPULLSEL_DISABLE = 0, PINPULLSEL_PULLDOWN = 1, PINPULLSEL_PULLUP = 2 } Enum_PinPullSel;

s32 Ql_GPIO_Init(Enum_PinName pinName, Enum_PinDirection dir, Enum_PinLevel level,
                 Enum_PinPullSel pullSel);
s32 Ql_GPIO_SetLevel(Enum_PinName pinName, Enum_PinLevel level);
s32 Ql_GPIO_GetLevel(Enum_PinName pinName);

#endif
