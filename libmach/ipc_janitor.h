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
 * The queues of a task's ports die with it too: GNU Mach destroys them,
 * and so the rights their messages carry (a client's reply right in a
 * request the server never read).  So machd keeps a copy of the receive
 * end of each port whose receive right the task holds, once the port can
 * have senders, and the table lists each such right while it stays.  When
 * the task ends, machd reads every listed port's queue and destroys its
 * messages; a port destroyed by its receiver hangs up machd's copy, which
 * machd then closes.
 *
 * Cost: two stores when a right arrives and one when it leaves; a
 * message to machd the first time the task holds a send-once right to a
 * given port (a client's reply port, once per client thread), and the
 * first time a port of the task gets a send or send-once right.  A task
 * outside an instance (no HELL_INSTANCE) lists nothing.
 *
 * A send-once right stays listed until its message is sent (or it is
 * destroyed), not only while it has a name: a task killed while its send
 * waits has it notified.  A task killed in the few instructions between
 * a completed send and the right's release has it notified although the
 * message carries it on: whichever of the notification and the right's
 * use comes second is refused by its port as a replay.
 *
 * GNU Mach honours the port-destroyed request of a receive right it
 * destroys with a dead task: the right, with its queue, goes to the
 * request's holder.  The receive state (its secret, the nonces of its
 * send-once rights, the senders' transports, its requests) lives in the
 * task, so while a listed right has such a request machd keeps an
 * escrow: a copy of the notification the task would send, descriptors
 * included, made again when that state changes (a send or send-once
 * right made, a transport kept, a request or limit changed: a message
 * to machd each time, on such ports only).  The table's slot for the
 * right says which escrow is current; when the task ends machd sends it
 * instead of destroying the queue, and if the notify port is dead, the
 * port is destroyed as GNU Mach destroys the right in a notification
 * that cannot be sent.
 *
 * A message kept by MACH_RCV_LARGE lies in the task's memory: its
 * send-once and receive rights are listed as held while it waits there.
 * A port's escrow carries it too when it has no send or receive right
 * (and fits): its send-once rights then follow the escrow's head, and
 * machd notifies none of them once the escrow is sent.
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
 * its port died); nothing when it is not listed. */
void ipc_janitor_release(uint64_t nonce);

/* PORT (receive right held here, not a kernel object's) may have
 * senders now: machd keeps its receive end, and the right is listed
 * until it leaves (ipc_janitor_forget_receive). */
void ipc_janitor_keep_receive(struct ipc_port *port);

/* KMSG, a message received here, is kept by MACH_RCV_LARGE in this
 * task's memory rather than in a queue machd could destroy: its
 * send-once rights are listed as held here, its receive rights as held
 * here (each is released where it goes: copyout lists it again under its
 * name, a send or a destroy releases it), and so, recursively, are the
 * rights of the messages kept on those receive rights (nested at most
 * WIRE_PENDING_DEPTH deep).  Expects [G]. */
void ipc_janitor_keep_kept(struct kmsg *kmsg);

/* KMSG, kept as above, is leaving this task with the receive right it
 * is kept on (ipc_msg.c, before the right is sent): its receive rights
 * are unlisted, machd told to close its copies of their receive ends,
 * and so, recursively, are those of the messages kept on them.  Its
 * send-once rights stay listed (they go as any right sent).  Expects
 * [G]. */
void ipc_janitor_unkeep_kept(struct kmsg *kmsg);

/* The receive right RCV of PORT is leaving this task: no longer listed.
 * MOVING (it is being copied into a message): before the right is sent,
 * so that machd never destroys the queue of a port another task holds;
 * machd is also told to close its copy of the receive end, which would
 * keep the port alive.  Else it is being destroyed: the receiver shuts
 * the end down, which closes machd's copy. */
void ipc_janitor_forget_receive(struct ipc_port *port, struct ipc_port_rcv *rcv, bool moving);

/* The port-destroyed request an escrow of RCV honours when the right
 * is where it stays: its own while in the user space, else none (0). */
static inline mach_port_name_t ipc_janitor_own_request(const struct ipc_port_rcv *rcv)
{
    return rcv->space == SPACE_USER ? rcv->pdrequest : 0;
}

/* Gives machd a fresh escrow of PORT's port-destroyed notification to
 * REQUEST, a kernel-space send-once right (PORT's receive right listed
 * here; nothing otherwise), or, when REQUEST is 0 or not one to honour,
 * makes the last one void.  REQUEST is ipc_janitor_own_request, or, for
 * a right in this task's kernel space that waits in the queue of
 * notifications to be sent to the request taken off it, that request:
 * so that a death before the notification goes still sends the port
 * there.  A copy that cannot be made now (machd behind, out of
 * descriptors, a state larger than HELL_JANITOR_ESCROW_MAX) leaves the
 * previous one current if it honours the same request (else the escrow
 * is void), and is tried again at the next change. */
void ipc_janitor_escrow(struct ipc_port *port, mach_port_name_t request);

/* PORT's receive state (here) changed: its escrow, if it has one or
 * making it failed, is made again.  (A transport kept by a message being
 * received waits for the message: the receive path makes it then.) */
static inline void ipc_janitor_receive_changed(struct ipc_port *port)
{
    if (port->rcv != NULL && (port->rcv->escrowed || port->rcv->escrow_stale)) {
        ipc_janitor_escrow(port, ipc_janitor_own_request(port->rcv));
    }
}

/* The message MACH_RCV_LARGE keeps on PORT (receive right here) was just
 * kept, or taken (PORT's pending message is then NULL): its escrow is
 * made again if the message goes in it, or went.  Before a taken
 * message's rights get names: an escrow must not hand it out again. */
void ipc_janitor_pending_changed(struct ipc_port *port);

/* PORT is being freed here: machd may close its copy of the send end
 * (a right to the same port later comes with a new serial). */
void ipc_janitor_port_freed(struct ipc_port *port);

/* The child side of fork(): a new task, with nothing listed yet. */
void ipc_janitor_fork_child(void);

#endif
