/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The send-once rights of a task that dies: GNU Mach destroys them with
 * the task's space, which sends each one's send-once notification (how
 * a client waiting for a reply learns that nobody will send it).  A
 * killed Linux process runs no code, so a task of an instance lists the
 * send-once rights it holds where its kernel process (machd) can read
 * them after its death: a table in a memfd shared with machd, one slot
 * per right (the port's serial, and the nonce that authenticates the
 * notification).  Each port appears to machd once, with a copy of its
 * send end.  When the task's connection to machd closes (the task died,
 * or executed another program, which also ends its rights), machd sends
 * the notification of every right still listed.
 *
 * Cost: two stores when a right arrives and one when it leaves; a
 * message to machd the first time the task holds a send-once right to a
 * given port (a client's reply port, once per client thread).  A task
 * outside an instance (no HELL_INSTANCE) lists nothing.
 *
 * Not covered: a right taken out of its name for a message that the
 * task dies before sending, and rights in messages queued on the port of
 * a task that dies (its socket's queue dies with it).
 *
 * Every function here but the first two expects ipc_lock held ([G]).
 */
#ifndef HELL_IPC_JANITOR_H
#define HELL_IPC_JANITOR_H

#include <stdint.h>

#include "ipc_types.h"

/* Reads HELL_INSTANCE (the instance's control socket) once, at start. */
void ipc_janitor_init(void);

/* The instance's control socket (HELL_INSTANCE at start), or NULL when
 * the task belongs to no instance.  Needs no lock. */
const char *ipc_instance_path(void);

/* A send-once right to PORT with NONCE is now held by this task (a name
 * in one of its spaces): listed for machd. */
void ipc_janitor_hold(struct ipc_port *port, uint64_t nonce);

/* The right with NONCE is no longer held here (sent, used, destroyed, or
 * its port died). */
void ipc_janitor_release(uint64_t nonce);

/* PORT is being freed here: machd may close its copy of the send end
 * (a right to the same port later comes with a new serial). */
void ipc_janitor_port_freed(struct ipc_port *port);

/* The child side of fork(): a new task, with nothing listed yet. */
void ipc_janitor_fork_child(void);

#endif
