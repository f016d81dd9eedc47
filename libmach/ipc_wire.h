/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Messages on the wire: how a kmsg crosses from one process to another
 * through a port's socket, and how a receiver turns untrusted bytes and
 * descriptors back into a kmsg.
 *
 * A message is [wire_hdr][wire_right x nrights][receive blocks][wire_ool x
 * nool][Mach body], with descriptors attached by SCM_RIGHTS in the order
 * the rights and regions name them.  The receiver checks everything: a
 * message that does not parse, whose descriptors do not match their
 * claimed identity, or whose authenticator is wrong is dropped, its
 * descriptors closed, and a line goes to stderr.
 */
#ifndef HELL_IPC_WIRE_H
#define HELL_IPC_WIRE_H

#include <sys/uio.h>

#include "ipc_kmsg.h"

/* The largest message body carried inline. */
#define WIRE_BODY_MAX (512u * 1024u)

/* In a task that maps memory objects, faults in the regions of KMSG
 * (with KEPT_ONLY, those the sender keeps) before they are copied under
 * [G]: a page its pager has yet to supply would otherwise wait for a
 * request that needs [G].  Expects [G]; releases it meanwhile when some
 * region needs it. */
void wire_ool_prepare(struct kmsg *kmsg, bool kept_only);

/* Sends KMSG to its destination.  Expects [G]; releases it around the
 * blocking sendmsg and takes it again.  On success the rights and regions
 * of KMSG are gone (in flight).  On failure KMSG is intact and the caller
 * undoes or destroys it.  Returns MACH_SEND_INVALID_DEST (the port died),
 * MACH_SEND_TIMED_OUT, MACH_SEND_INTERRUPTED, MACH_SEND_INVALID_MEMORY or
 * MACH_SEND_NO_BUFFER. */
mach_msg_return_t wire_send(struct kmsg *kmsg, mach_msg_option_t option,
                            mach_msg_timeout_t timeout);

/* Dequeues the next valid message of PORT (receive right held here) into
 * *KMSG, whose body points into a per-thread buffer valid until this
 * thread's next wire_recv.  TIMEOUT_MS < 0 waits forever.  Expects the
 * port's rlock held and [G] not held.  Returns MACH_MSG_SUCCESS with [G]
 * held (the caller copies the message out at once), or, without [G],
 * MACH_RCV_TIMED_OUT, MACH_RCV_INTERRUPTED (only when INTERRUPTIBLE) or
 * MACH_RCV_PORT_DIED. */
mach_msg_return_t wire_recv(struct ipc_port *port, int timeout_ms,
                            bool interruptible, struct kmsg *kmsg);

/* Destroys every message queued on PORT, whose receive right RCV is being
 * destroyed and whose receive end is already shut down (nothing more can
 * come): the rights they carry are released as GNU Mach releases them,
 * send-once rights with their notification.  PORT is NULL for the queue
 * of a port whose receiver died (machd's janitor destroys it): RCV then
 * holds its receive end and, as transports, the send ends its messages
 * may name, and messages are destroyed unauthenticated (none is
 * delivered, and a forged right only names what its forger could
 * already name).  Expects [G]; never blocks. */
void wire_drain_locked(struct ipc_port *port, struct ipc_port_rcv *rcv);

/* Sends on the plain socket FD, without blocking, one datagram: PREFIX
 * (PREFIX_LEN bytes), then KMSG (no out-of-line region) as wire_send
 * would send it to its destination, with its descriptors.  KMSG keeps
 * everything: the datagram carries copies (a copy of a message kept for
 * later, machd's escrow: ipc_janitor.h).  The message MACH_RCV_LARGE
 * kept on a receive right KMSG carries comes too WITH_KEPT, else not;
 * what it holds counts as the datagram's own.  Returns
 * MACH_MSG_SUCCESS, or MACH_SEND_NO_BUFFER when it would exceed MAX
 * bytes or WIRE_MAX_FDS descriptors with the kept message, memory or
 * descriptors run out, or FD cannot take it now.  Expects [G]. */
mach_msg_return_t wire_send_copy(int fd, const void *prefix, size_t prefix_len,
                                 struct kmsg *kmsg, size_t max, bool with_pending);

/* How deep kept messages nest: one kept on a receive right carried by
 * one kept on a receive right...  Deeper ones never leave a sender (each
 * goes back to the tail of its own queue when kept: ipc_msg.c) and are
 * dropped on arrival. */
#define WIRE_PENDING_DEPTH 4

/* A message MACH_RCV_LARGE kept on a receive right travels with the
 * right, ahead of its queue (ipc_wire_format.h, WRCV_PENDING), nested
 * at most WIRE_PENDING_DEPTH deep.  This sends KEPT, kept on PORT
 * (receive right held here) but too deep, back to the tail of PORT's
 * queue instead, without waiting; when the queue cannot take it now,
 * it is destroyed.  KEPT (malloc'd) is consumed.  Expects [G]. */
void wire_pending_requeue(struct ipc_port *port, struct kmsg *kept);

/* Sends the rights RIGHTS[0..N) (consumed on success) over the plain
 * socket FD, authenticated as a bootstrap message: how a parent hands a
 * child its first rights.  Expects [G]. */
mach_msg_return_t wire_send_bootstrap(int fd, struct kright *rights, unsigned n);

/* The same without waiting for room: MACH_SEND_NO_BUFFER (nothing
 * consumed) when FD cannot take the message now.  For a peer that need
 * not read, sent under [G].  Expects [G]. */
mach_msg_return_t wire_send_bootstrap_nowait(int fd, struct kright *rights, unsigned n);

/* Receives up to MAX rights sent by wire_send_bootstrap on FD into RIGHTS
 * and returns how many, or -1 on a malformed or missing message.  Expects
 * [G] not held. */
int wire_recv_bootstrap(int fd, struct kright *rights, unsigned max);

/* Sends a header-only message of id ID through the send-once right NONCE
 * to PORT, without blocking and without releasing [G] (notifications
 * generated while a space is being changed). */
mach_msg_return_t wire_send_notify_locked(struct ipc_port *port, uint64_t nonce,
                                          mach_msg_id_t id);

/* Sends IOV (IOVCNT pieces) on socket FD with the NFDS descriptors FDS
 * (at most WIRE_MAX_FDS) as SCM_RIGHTS, with FLAGS | MSG_NOSIGNAL.
 * Returns what sendmsg returns (-1 with errno).  Needs no lock. */
int wire_sendmsg(int fd, struct iovec *iov, int iovcnt, const int *fds, unsigned nfds,
                 int flags);

/* The same through a bare send end SEND_FD (machd's janitor, which holds
 * no port).  Needs no lock. */
mach_msg_return_t wire_send_notify_fd(int send_fd, uint64_t nonce, mach_msg_id_t id);

/* The size of wire_lend_buf. */
#define WIRE_LEND_SIZE (64 * 1024)

/* The calling thread's buffer for the small regions it sends to this
 * process's own kernel ports (kern_deliver copies them there rather than
 * into a new mapping, which costs a mapping, a page fault and an unmap
 * per call): WIRE_LEND_SIZE bytes, or NULL when it cannot be mapped.
 * What lies there is lent as a received region is (wire_region_release).
 * Needs no lock. */
char *wire_lend_buf(void);

/* Gives back the region [ADDR, ADDR + SIZE) received out of line: unmaps
 * it, unless it lies in this thread's receive or lend buffer.  A small region
 * that came to one of this process's kernel ports is lent from there
 * instead of mapped (no mapping to make and unmap for a page of data):
 * valid until the thread's next receive, it is let go here like any
 * other.  Needs no lock. */
void wire_region_release(void *addr, size_t size);

/* Reads into DST the SIZE bytes of the region at ADDR, received out of
 * line by this thread's last message to a kernel port, from the sealed
 * memfd it came as, without faulting its mapping in.  Returns false when
 * the region did not come so or is no longer that mapping (then read it
 * where it lies).  Needs no lock. */
bool wire_region_read(const void *addr, size_t size, void *dst);

/* The child side of fork(): closes the memfds of regions the forking
 * thread kept (wire_region_read).  Single-threaded. */
void wire_fork_child(void);

/* Messages dropped as malformed or forged since the process started. */
unsigned long wire_dropped_count(void);

#endif
