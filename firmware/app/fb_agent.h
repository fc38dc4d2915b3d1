/* fotabench bench agent: the UART1 protocol (shared/spec/bench-agent.md, docs/bench-agent.md).
 * Self-contained so users' own apps can add it: call fb_agent_init() from the main task,
 * fb_agent_on_message() for every message, and feed bytes from UART1 with fb_agent_rx(). */
#ifndef FB_AGENT_H
#define FB_AGENT_H

#include "ql_type.h"
#include "ql_system.h"

void fb_agent_init(void);
void fb_agent_on_message(const ST_MSG *msg);
void fb_agent_rx(const u8 *data, u32 len);
/* Called by the watchdog feed timer (GPT, interrupt context): FALSE after AT+FBWDT=0. */
bool fb_agent_feeding(void);

#endif
