/* fotabench clean-room declarations: UART ports (opencpu-fota.md §8). */
#ifndef QL_UART_H
#define QL_UART_H

#include "ql_type.h"

typedef enum {
    UART_PORT1 = 10, /* main port, RTS/CTS */
    UART_PORT2 = 11, /* debug port */
    UART_PORT3 = 12
} Enum_SerialPort;

typedef enum { FC_NONE = 1, FC_HW, FC_SW } Enum_FlowCtrl;

typedef enum {
    EVENT_UART_READY_TO_READ = 0,
    EVENT_UART_READY_TO_WRITE,
    EVENT_UART_FE_IND,
    EVENT_UART_RI_IND,
    EVENT_UART_DCD_IND,
    EVENT_UART_DTR_IND
} Enum_UARTEventType;

typedef void (*CallBack_UART_Notify)(Enum_SerialPort port, Enum_UARTEventType event,
                                     bool pinLevel, void *customizePara);

s32 Ql_UART_Register(Enum_SerialPort port, CallBack_UART_Notify callback, void *customizePara);
s32 Ql_UART_Open(Enum_SerialPort port, u32 baudrate, Enum_FlowCtrl flowCtrl);
s32 Ql_UART_Write(Enum_SerialPort port, u8 *data, u32 writeLen);
s32 Ql_UART_Read(Enum_SerialPort port, u8 *data, u32 readLen);
void Ql_UART_Close(Enum_SerialPort port);

#endif
