/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the kernel-side exc.defs user stub (build/gen/exc.kuser.c) calls
 * instead of mach_msg and the MIG reply-port functions: their kernel-space
 * versions (kern_exc.c).
 */
#ifndef HELL_KERN_EXC_STUB_H
#define HELL_KERN_EXC_STUB_H

#include <mach/message.h>

/* mach_msg on the kernel space.  Expects no lock. */
mach_msg_return_t kern_exc_mach_msg(mach_msg_header_t *msg, mach_msg_option_t option,
                                    mach_msg_size_t send_size, mach_msg_size_t rcv_size,
                                    mach_port_name_t rcv_name, mach_msg_timeout_t timeout,
                                    mach_port_name_t notify);

/* The calling thread's kernel-space reply port for exception_raise
 * (made on first use, kept in its record); MACH_PORT_NULL when out of
 * descriptors.  Expects no lock. */
mach_port_t kern_exc_reply_port(void);

/* Destroys it (a failed RPC); the next call makes a new one. */
void kern_exc_dealloc_reply_port(mach_port_t port);

/* Gives it back after a successful RPC (it stays the thread's). */
void kern_exc_put_reply_port(mach_port_t port);

#endif
