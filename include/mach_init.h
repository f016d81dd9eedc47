/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The Mach "system calls" of a task, as GNU Mach programs know them.
 *
 * In HELL a task is a Linux process.  These functions are the traps: they
 * never block and never fail except as documented.
 */
#ifndef _MACH_INIT_H
#define _MACH_INIT_H

#include <mach/mach_types.h>
#include <mach/port.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the calling task's name for a send right to its own task port.
 * The name is created on first use and cached: callers do not own a
 * user reference and must not deallocate it (as with glibc's
 * __mach_task_self_).  Never fails. */
mach_port_t mach_task_self(void);

/* Returns the calling thread's name for a send right to its thread port.
 * As with GNU Mach's trap, every call adds one user reference to the send
 * right, which the caller owns. */
mach_port_t mach_thread_self(void);

/* Returns a new user reference to a send right for the host port.  In
 * HELL the host port is served by the task's own kernel service; it
 * answers what the implemented host RPCs need.  The caller owns the
 * reference. */
mach_port_t mach_host_self(void);

/* Creates a port and returns the name of its receive right, or
 * MACH_PORT_NULL when the name space or the descriptor table is full. */
mach_port_t mach_reply_port(void);

/* The page size (4096 on x86_64). */
extern vm_size_t vm_page_size;

#define __mach_task_self() mach_task_self()

#ifdef __cplusplus
}
#endif

#endif /* _MACH_INIT_H */
