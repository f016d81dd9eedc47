/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mach_msg on a given name space: the user space for mach_msg itself,
 * the kernel space for the task's kernel service.
 */
#ifndef HELL_IPC_MSG_H
#define HELL_IPC_MSG_H

#include "ipc_types.h"

/* The whole of mach_msg (send, receive, or both) on space SPACE_ID.
 * Expects no lock held. */
mach_msg_return_t ipc_mach_msg(int space_id, mach_msg_header_t *msg,
                               mach_msg_option_t option,
                               mach_msg_size_t send_size,
                               mach_msg_size_t rcv_size,
                               mach_port_name_t rcv_name,
                               mach_msg_timeout_t timeout);

/* Messages this task sent and received since it started (task_info's
 * TASK_EVENTS_INFO).  Need no lock. */
unsigned long ipc_messages_sent(void);
unsigned long ipc_messages_received(void);

/* The signal that interrupts a thread blocked dequeuing from a port whose
 * receive right is being moved away. */
int ipc_wake_signal(void);

#endif
