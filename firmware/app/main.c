/* fotabench bench agent: the main task. Opens UART1 (protocol) and UART2 (debug), feeds the
 * external watchdog, and hands every message to the protocol (fb_agent.c).
 *
 * The logic watchdog is fed from the GPT timer, whose callback runs in interrupt context:
 * a forwarded AT command can block this task in the RIL for a minute (AT+QFTPGET of a
 * large file on GPRS), and a task timer would stop feeding meanwhile, letting the
 * watchdog reset the module in the middle of the command. */
#include "ql_type.h"
#include "ql_stdlib.h"
#include "ql_system.h"
#include "ql_uart.h"
#include "ql_timer.h"
#include "ql_wtd.h"
#include "ril.h"
#include "fb_config.h"
#include "fb_agent.h"

#define FB_TIMER_FEED 0x100

static s32 s_wtd_id = -1;

/* Interrupt context: short, no RIL, reads only the feeding flag. */
static void feed_timer(u32 timerId, void *param)
{
    (void)timerId;
    (void)param;
    if (s_wtd_id >= 0 && fb_agent_feeding())
        Ql_WTD_Feed(s_wtd_id);
}

static void uart_cb(Enum_SerialPort port, Enum_UARTEventType event, bool pinLevel, void *para)
{
    u8 buf[128];
    s32 n;
    (void)pinLevel;
    (void)para;
    if (port != UART_PORT1 || event != EVENT_UART_READY_TO_READ)
        return;
    for (;;) {
        n = Ql_UART_Read(port, buf, sizeof(buf));
        if (n <= 0)
            break;
        fb_agent_rx(buf, (u32)n);
        if ((u32)n < sizeof(buf))
            break;
    }
}

void proc_main_task(s32 taskId)
{
    ST_MSG msg;
    (void)taskId;

    Ql_UART_Register(UART_PORT1, uart_cb, NULL);
    Ql_UART_Open(UART_PORT1, 115200, FC_NONE);
    Ql_UART_Open(UART_PORT2, 115200, FC_NONE);

    Ql_WTD_Init(0, FB_WDI_PIN, FB_WDI_TOGGLE_MS);
    s_wtd_id = Ql_WTD_Start(FB_WTD_LOGIC_MS);
    Ql_Timer_RegisterFast(FB_TIMER_FEED, feed_timer, NULL);
    Ql_Timer_Start(FB_TIMER_FEED, FB_WTD_FEED_MS, TRUE);

    fb_agent_init();
    for (;;) {
        Ql_OS_GetMessage(&msg);
        if (msg.message == MSG_ID_RIL_READY)
            Ql_RIL_Initialize();
        fb_agent_on_message(&msg);
    }
}
