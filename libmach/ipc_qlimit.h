/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Queue limits.  A port's queue is its socket, which counts bytes, not
 * messages, so the message count GNU Mach limits lives in user space: a
 * page of shared memory per port (a sealed memfd) that the receiver
 * creates when it first makes a send right, and that travels with every
 * send and receive right.  A sender through a send right takes a place
 * (count < qlimit) before sendmsg and sleeps on a futex in the page when
 * the queue is full; the receiver gives the place back when it dequeues
 * the message and wakes sleeping senders.  Messages through send-once
 * rights are neither limited nor counted, as in GNU Mach (which counts
 * them; HELL's mps_msgcount leaves them out).  Steady-state cost: one
 * atomic operation on each side, no system call.
 *
 * The page is advisory: a task holding a send right can write it, which
 * lets it slow that port's other senders down, as flooding the port
 * would; it cannot reach any other port.  A message is always admitted
 * into an empty queue, whatever the page says, so a port with qlimit 0
 * takes one message at a time (GNU Mach would block every sender).
 */
#ifndef HELL_IPC_QLIMIT_H
#define HELL_IPC_QLIMIT_H

#include "ipc_types.h"

/* Gives PORT (receive right held here) its queue page, holding the
 * receiver's qlimit, unless it has one.  Expects [G].  Returns
 * KERN_SUCCESS, or KERN_RESOURCE_SHORTAGE when out of descriptors or
 * memory. */
kern_return_t ipc_qlimit_create(struct ipc_port *port);

/* Takes FD, a queue page that came with a right to PORT: maps it unless
 * PORT has one already, and closes FD.  A descriptor that is not a
 * sealed page of the right size is refused: PORT then goes without
 * (its sends are unlimited).  Expects [G]. */
void ipc_qlimit_adopt(struct ipc_port *port, int fd);

/* Records in PORT's page (if it has one) that this task holds the
 * receive right now.  Expects [G]. */
void ipc_qlimit_claim(struct ipc_port *port);

/* Records in PORT's page that its receiver (this task) destroyed the
 * receive right, before the right's descriptors close.  Expects [G]. */
void ipc_qlimit_mark_destroyed(struct ipc_port *port);

/* For a dead PORT: a pidfd of the task that destroyed its receive right,
 * if its page says one did and that task still lives, else -1 (the
 * receiver died, or the port has no page).  The caller owns the pidfd.
 * Like everything in the page this is advisory: a task holding a send
 * right could name another live task, which makes clients wait for that
 * task as a full queue makes senders wait.  Expects [G]. */
int ipc_qlimit_destroyer_pidfd(struct ipc_port *port);

/* Unmaps PORT's page and closes its descriptor (the port is freed). */
void ipc_qlimit_release(struct ipc_port *port);

/* Takes a place in the queue of DEST for a message through a send right.
 * With MACH_SEND_ALWAYS in OPTION the limit is ignored (a message put
 * back into its queue).  Waits while the queue is full: up to DEADLINE
 * (linux_now_ms; 0 = none) with MACH_SEND_TIMEOUT (TIMEOUT 0 = never
 * waits), ending on a signal with MACH_SEND_INTERRUPT.  Expects [G] not
 * held and a reference on DEST.  Returns MACH_MSG_SUCCESS with *TAKEN
 * telling whether a place was taken (false when DEST has no page), or
 * MACH_SEND_TIMED_OUT, MACH_SEND_INTERRUPTED, or MACH_SEND_INVALID_DEST
 * when the port died meanwhile. */
mach_msg_return_t ipc_qlimit_reserve(struct ipc_port *dest, mach_msg_option_t option,
                                     mach_msg_timeout_t timeout, uint64_t deadline,
                                     bool *taken);

/* Gives back a place taken by ipc_qlimit_reserve (the send failed, or the
 * receiver dequeued the message) and wakes senders waiting for one.
 * Needs no lock. */
void ipc_qlimit_put_back(struct ipc_port *port);

/* Sets the queue limit in PORT's page (receive right held here) and wakes
 * the senders that the new limit lets in.  Expects [G]. */
void ipc_qlimit_set(struct ipc_port *port, mach_port_msgcount_t qlimit);

/* Messages queued on PORT through send rights. */
mach_port_msgcount_t ipc_qlimit_count(struct ipc_port *port);

/* Whether FD, the descriptor of a right, is acceptable as a queue page
 * (a sealed memfd of one page).  Needs no lock. */
bool ipc_qlimit_fd_ok(int fd);

#endif
