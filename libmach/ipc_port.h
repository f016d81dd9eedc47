/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Ports known to this process: creation, the table by identity,
 * references, send-right accounting and send-once nonces.
 *
 * Every function here expects ipc_lock held ([G]) unless it says otherwise.
 */
#ifndef HELL_IPC_PORT_H
#define HELL_IPC_PORT_H

#include "ipc_types.h"

/* Creates a port whose receive right this process holds, in SPACE.
 * Returns KERN_SUCCESS with *PORT holding one reference, or
 * KERN_RESOURCE_SHORTAGE when out of descriptors or memory. */
kern_return_t ipc_port_create(int space, struct ipc_port **port);

/* Returns the port with identity INO (no new reference), or NULL. */
struct ipc_port *ipc_port_lookup(uint64_t ino);

/* Adopts SEND_FD, a send end whose identity INO was verified by the
 * caller: returns the known port with a new reference (closing SEND_FD),
 * or a new port that owns SEND_FD.  Returns NULL when out of memory
 * (SEND_FD is closed). */
struct ipc_port *ipc_port_adopt(int send_fd, uint64_t ino);

void ipc_port_ref(struct ipc_port *port);

/* Drops a reference; the last one closes the port's descriptors. */
void ipc_port_unref(struct ipc_port *port);

/* Accounts for one more send right held by this process (the receiver
 * gives the port its queue page on the first).  Returns
 * KERN_RESOURCE_SHORTAGE when a counting descriptor or the queue page
 * cannot be made. */
kern_return_t ipc_port_srights_add(struct ipc_port *port);

/* Adopts COUNT_FD, the counting descriptor that came with a received
 * send right, and accounts for that right. */
void ipc_port_srights_adopt(struct ipc_port *port, int count_fd);

/* Accounts for one send right fewer; the last one closes the counting
 * descriptor so that the receiver can see no-senders, unless the port
 * keeps it as a spare (ipc_port_count_spare_keep). */
void ipc_port_srights_drop(struct ipc_port *port);

/* Keeps PORT's counting descriptor open from now on even while this
 * process holds no send right to it, so that send rights sent by
 * reference (a memory object's control port, which its kernel sends with
 * every request and which carries no counting descriptor then) are
 * counted by it.  Only the receiver can see no-senders, and the kernel
 * holding the control port's receive right never asks for it: the spare
 * goes when the receive right comes here (ipc_port_count_spare_end),
 * before any no-senders request of this process can see it.  Does
 * nothing while this process holds the receive right.  Expects [G]. */
void ipc_port_count_spare_keep(struct ipc_port *port);

/* Ends PORT's spare counting descriptor, if any: its receive right came
 * here, and counting must be exact from now on.  Expects [G]. */
void ipc_port_count_spare_end(struct ipc_port *port);

/* Accounts for a send right to PORT that came by reference, without a
 * counting descriptor: counted by the descriptor this process keeps for
 * the port, or by one the receive right held here makes.  Returns false
 * when there is none (then nothing is accounted: the right cannot be
 * counted and must arrive dead).  Expects [G]. */
bool ipc_port_srights_adopt_by_reference(struct ipc_port *port);

/* Makes a send-once right from the receive right held here: returns its
 * nonce (never 0). */
uint64_t ipc_port_make_send_once(struct ipc_port *port);

/* Consumes the live send-once right NONCE of PORT (receive right held
 * here).  Returns false when NONCE is not live: a forged or replayed
 * message. */
bool ipc_port_consume_nonce(struct ipc_port *port, uint64_t nonce);

/* The same on receive state RCV, which may be an orphan (its right was
 * destroyed while a thread of ours was dequeuing). */
bool ipc_port_rcv_consume_nonce(struct ipc_port_rcv *rcv, uint64_t nonce);

/* Whether NONCE is a live send-once right to the port of RCV (nothing
 * consumed).  Expects [G]. */
bool ipc_port_rcv_has_nonce(const struct ipc_port_rcv *rcv, uint64_t nonce);

/* Records in the transport table of RCV that its senders passed the send
 * end of PORT (a new reference is taken).  Growing tables are swept of
 * ports whose receive right died, with one poll() over the table. */
void ipc_port_transport_add(struct ipc_port_rcv *rcv, struct ipc_port *port);

/* Returns true when the receive right of PORT is known to be destroyed.
 * With PROBE, asks the kernel first (one poll of the send end, never
 * blocking); without, answers from what sends have already seen, which
 * is what the message path uses: a send to a dead port fails with EPIPE
 * and is undone, so it needs no system call to find out beforehand. */
bool ipc_port_is_dead(struct ipc_port *port, bool probe);

/* Destroys the receive right held here: closes the receive end (senders
 * then see a dead port) and releases the receive state. */
void ipc_port_destroy_receive(struct ipc_port *port);

/* Destroys the ports whose receive ends are RECV_FDS[0..NRECV) (taken),
 * held by a task that died without destroying them (machd's janitor):
 * their queues are read and every message destroyed, then the ends shut
 * down and closed.  SEND_FDS[0..NSEND) (copied) are the send ends of the
 * ports that task knew: what a queued message names by identity, its
 * send end having come in an earlier message. */
void ipc_port_destroy_orphans(const int *recv_fds, size_t nrecv, const int *send_fds,
                              size_t nsend);

/* Releases the receive state after the right was moved to another task
 * (the descriptors now travel in a message). */
void ipc_port_release_receive(struct ipc_port *port);

/* Pins PORT's receive state for a thread that will dequeue or move it
 * without [G]; returns NULL when the receive right is not held here. */
struct ipc_port_rcv *ipc_port_rcv_enter(struct ipc_port *port);

/* Unpins receive state; frees it when it was detached meanwhile. */
void ipc_port_rcv_leave(struct ipc_port_rcv *rcv);

/* Closes every descriptor and forgets every port: the child side of
 * fork(), which starts with a fresh name space. */
void ipc_port_forget_all(void);

#endif
