/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * GNU Mach's scheduling and debugging traps (mach/syscall_sw.h: swtch_pri
 * -59, swtch -60, thread_switch -61, mach_print -30), as functions.
 */
#ifndef _MACH_MACH_TRAPS_H
#define _MACH_MACH_TRAPS_H

#include <mach/mach_types.h>
#include <mach/message.h>
#include <mach/thread_switch.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Gives the processor to another runnable thread, if any.  Returns TRUE
 * (HELL cannot tell cheaply whether another thread ran). */
boolean_t swtch(void);

/* As swtch; PRIORITY is accepted and ignored (no priority depression). */
boolean_t swtch_pri(int priority);

/* Hands the processor off, as a hint, to THREAD (a thread port of this
 * task, or MACH_PORT_NULL for any thread).  OPTION SWITCH_OPTION_WAIT
 * blocks for TIME milliseconds; SWITCH_OPTION_DEPRESS yields (the
 * depression itself is not modelled).  Returns KERN_SUCCESS, or
 * KERN_INVALID_ARGUMENT for an unknown OPTION. */
kern_return_t thread_switch(mach_port_t thread, int option, mach_msg_timeout_t time);

/* Writes S to the console (HELL: the task's standard error). */
void mach_print(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* _MACH_MACH_TRAPS_H */
