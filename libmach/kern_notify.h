/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Notification requests (mach_port_request_notification) and the
 * notifications they produce, in GNU Mach's notify.defs formats: no-senders,
 * dead-name, port-deleted.  A request's notify right is a send-once right
 * held in the kernel space.  Notifications are queued under [G] by the
 * code that notices the event, and sent by kern_notify_flush once [G] is
 * released (sending may need to take it); one whose port's socket is
 * full waits for room, behind the others to that port (ipc_notify.h).
 */
#ifndef HELL_KERN_NOTIFY_H
#define HELL_KERN_NOTIFY_H

#include <stdatomic.h>

#include "ipc_notify.h"
#include "ipc_types.h"

/* PORT's send end hung up: its receive right is gone.  Converts the user
 * entry naming it and fires its dead-name request.  Expects [G]. */
void kern_notify_port_died(struct ipc_port *port);

/* PORT's counting pipe hung up: no send right exists anywhere.  Fires its
 * no-senders request.  Expects [G]. */
void kern_notify_no_senders(struct ipc_port *port);

/* ENTRY (user space) is being turned into a dead name: fires its
 * dead-name request (one more user reference for the notification).
 * Expects [G]. */
void kern_notify_entry_dead(struct ipc_entry *entry);

/* ENTRY (user space) loses its last right with a dead-name request
 * pending: port-deleted.  Expects [G]. */
void kern_notify_entry_deleted(struct ipc_entry *entry);

/* A send right to PORT (receive right here) was made: a no-senders
 * request waiting for it is watched again.  Expects [G]. */
void kern_notify_send_made(struct ipc_port *port);

/* The receive right of PORT is destroyed: its no-senders and
 * port-destroyed requests go (their notify rights are destroyed, which
 * their receivers see as send-once notifications).  Expects [G]. */
void kern_notify_receive_gone(struct ipc_port *port);

/* The receive right of PORT leaves its name space (in a message or a
 * kernel call): its requests stay with it, only the no-senders watch
 * stops.  Expects [G]. */
void kern_notify_receive_leaving(struct ipc_port *port);

/* The receive right of PORT was put into a name space: an armed
 * no-senders request is watched again.  Expects [G]. */
void kern_notify_receive_arrived(struct ipc_port *port);

/* Finds the notify right of the request NAME (a kernel-space send-once
 * right, nsrequest or pdrequest) for a message that carries its receive
 * right: *PORT (no new reference) and *NONCE.  Returns false when there
 * is none.  Expects [G]. */
bool kern_notify_request_right(mach_port_name_t name, struct ipc_port **port,
                               uint64_t *nonce);

/* The receive right RCV left this task in a message, its requests with
 * it: forgets their notify rights here without a notification.  Expects
 * [G]. */
void kern_notify_requests_moved(struct ipc_port_rcv *rcv);

/* Takes RIGHT (consumed), the notify right of a request that came with a
 * receive right, into the kernel space.  Returns its name there, or 0
 * when out of names (the right is destroyed).  Expects [G]. */
mach_port_name_t kern_notify_request_adopt(struct kright *right);

/* The receive right named NAME in SPACE (the user space) is about to be
 * destroyed: when it has a port-destroyed request, takes it out of SPACE
 * instead (as a MOVE_RECEIVE would: send rights under NAME stay) and
 * queues it in a port-destroyed notification; returns true then.
 * Expects [G]. */
bool kern_notify_port_destroyed(struct ipc_space *space, mach_port_name_t name);

/* The same for RIGHT, a receive right in a message or kernel call being
 * destroyed (in transit): when its port has a port-destroyed request
 * whose notify port is another port, RIGHT is consumed into the
 * notification (or destroyed when the kernel space is out of names) and
 * true is returned.  Expects [G]. */
bool kern_notify_port_destroyed_right(struct kright *right);

/* Sends on the plain socket FD, after PREFIX, a copy of the
 * port-destroyed notification that destroying PORT's receive right
 * would send now to its request, the send-once right to NOTIFY (not
 * PORT) with NONCE (wire_send_copy: PORT keeps its right and request;
 * the copy carries the right without one), with the message
 * MACH_RCV_LARGE keeps on PORT when WITH_KEPT.  For machd to send
 * should this task die first (ipc_janitor.h).  Returns what
 * wire_send_copy returns (MAX bounds the datagram).  Expects [G]. */
mach_msg_return_t kern_notify_port_destroyed_copy(struct ipc_port *port,
                                                  struct ipc_port *notify, uint64_t nonce,
                                                  int fd, const void *prefix, size_t prefix_len,
                                                  size_t max, bool with_pending);

/* Sends the queued notifications (ipc_notify_flush).  Expects [G] not
 * held. */
void kern_notify_flush(void);

/* Sends N through the kernel space's mach_msg without waiting.  Returns
 * MACH_MSG_SUCCESS (its rights gone with it), MACH_SEND_TIMED_OUT when
 * its port's socket is full (its rights back under their names), or
 * another error (likewise; the port is dead).  Expects [G] not held. */
mach_msg_return_t kern_notify_deliver(const struct ipc_notify_kern *n);

/* Releases the rights of N, which will not be sent, as GNU Mach does
 * with a notification it cannot deliver: its notify right is destroyed,
 * and the receive right of a port-destroyed notification.  Expects
 * [G]. */
void kern_notify_discard(const struct ipc_notify_kern *n);

/* Asks for a dead-name notification of NAME, a send right of the kernel
 * space, through NOTIFY, a kernel-space send-once right (consumed): how
 * the kernel learns that a pager died.  A dead NAME is notified at once.
 * Expects [G]; the notification is sent at the next flush. */
kern_return_t kern_notify_request_dead_name_kernel(mach_port_name_t name,
                                                   mach_port_name_t notify);

/* Asks for the dead-name notification of NAME, a kernel-space send
 * right, on *NOTIFY_KNAME, a kernel object of type KOTYPE made there on
 * first use (its server hears of the death).  Nothing is asked when out
 * of descriptors.  Expects [G]. */
void kern_notify_watch(mach_port_name_t name, int kotype, mach_port_name_t *notify_kname);

/* Flushes when something is queued: one load on the message path. */
static inline void kern_notify_flush_pending(void)
{
    if (atomic_load_explicit(&ipc_notify_pending, memory_order_relaxed)) {
        kern_notify_flush();
    }
}

#endif
