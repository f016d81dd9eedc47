/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the kernel-side memory_object.defs user stubs
 * (build/gen/memory_object.kuser.c) call instead of mach_msg: a send from
 * the kernel space that never waits, as GNU Mach's kernel sends to pagers
 * (MACH_SEND_ALWAYS: past the queue limit, never blocking the fault path).
 */
#ifndef HELL_VM_PAGER_STUB_H
#define HELL_VM_PAGER_STUB_H

#include <mach/message.h>

/* mach_msg on the kernel space with MACH_SEND_ALWAYS and a zero send
 * timeout (a queue whose socket is full loses the message:
 * MACH_SEND_TIMED_OUT).  Expects no lock but [V] may be held. */
mach_msg_return_t vm_pager_mach_msg(mach_msg_header_t *msg, mach_msg_option_t option,
                                    mach_msg_size_t send_size, mach_msg_size_t rcv_size,
                                    mach_port_name_t rcv_name, mach_msg_timeout_t timeout,
                                    mach_port_name_t notify);

#endif
