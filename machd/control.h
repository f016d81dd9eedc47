/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * machd's control socket: what `hell` asks of a running instance (run a
 * task, stop), see protocol.h.
 */
#ifndef HELL_MACHD_CONTROL_H
#define HELL_MACHD_CONTROL_H

#include <mach.h>

/* Binds the control socket of instance NAME.  Returns the listening
 * descriptor, or -1 with a message on standard error (among the reasons:
 * the instance is already running). */
int control_listen(const char *name);

/* The privileged ports a task run with HELL_RUN_PRIV gets (send rights
 * the control module copies; the caller keeps them). */
void control_set_priv_ports(mach_port_t host_priv, mach_port_t device_master);

/* Serves LISTEN_FD until the instance ends: one thread per client, and a
 * thread reaping the instance's processes.  Never returns. */
__attribute__((noreturn)) void control_serve(int listen_fd);

/* Ends the instance: refuses new tasks, kills every process of it, tells
 * the waiting clients how their tasks ended, removes the socket, exits
 * machd with status 0.  Callable from any thread, once or more. */
__attribute__((noreturn)) void control_end_instance(void);

#endif
