/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The task's kernel service: the objects GNU Mach keeps in the kernel
 * (task port, special ports) and the MIG servers that answer kernel RPCs.
 *
 * Requests from this task are served synchronously in the sending thread;
 * requests from other tasks (holding our task port) by one hidden service
 * thread, started the first time the task port leaves the process.
 */
#ifndef HELL_KERN_H
#define HELL_KERN_H

#include "ipc_kmsg.h"

/* Delivers KMSG, whose destination is a kernel object of this task, and
 * runs the server.  Expects [G]; returns without it.  Returns
 * MACH_MSG_SUCCESS (errors travel in the reply, as in GNU Mach). */
mach_msg_return_t kern_deliver(struct kmsg *kmsg);

/* Starts the service thread for requests from other tasks (once). */
void kern_service_start(void);

/* The kernel-space port of this task (not referenced). */
struct ipc_port *kern_task_port(void);

/* Runs one request through the kernel servers and sends the reply.
 * REQUEST names rights in the kernel space.  Expects no lock. */
void kern_serve(mach_msg_header_t *request);

/* Sets up the task: kernel objects, signal handling, the bootstrap
 * handshake with a parent (HELL_BOOTSTRAP_FD).  Runs before main. */
void kern_task_init(void);

/* Resets the task in a child after fork(): a fresh name space. */
void kern_task_fork_child(void);

#endif
