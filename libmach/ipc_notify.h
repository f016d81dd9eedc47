/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Notifications libmach generates itself (GNU Mach notify.defs formats),
 * and how they reach their ports.
 *
 * GNU Mach queues a kernel notification whatever its port's queue holds
 * (ipc_mqueue_send_always): one is never lost while its port lives.  A
 * port's queue here is a socket, whose buffer is bounded (a sender can
 * fill it), and the code that makes a notification may hold [G], so it
 * cannot wait for room.  So a notification that finds its port's socket
 * full waits in that port's backlog, a FIFO per destination port, and
 * goes out in order as room appears: the watchdog waits for the send end
 * to be writable (EPOLLOUT).  While a port has a backlog, every
 * notification to it joins the tail: none overtakes an earlier one to
 * the same port.  A notification whose port dies before it is sent
 * releases the rights it carries as a failed send does.
 *
 * Bounds: at most IPC_NOTIFY_BACKLOG_MAX notifications wait in a process
 * (GNU Mach's bound is its memory; these hold tens of bytes each, and
 * the rights they carry exist anyway), and they hold at most
 * IPC_NOTIFY_FDS_MAX descriptors of their own (machd's: the copies of
 * its janitor's raw messages, and of the bare send ends of their ports).
 * Each destination port may take at most 1/IPC_NOTIFY_SHARES of either:
 * a notification waits because its port is not read, so a port that
 * is not read loses its own past its share, and the bounds stay for the
 * other ports (in machd, those of every other task of the instance).
 * Past a share or a bound, a notification is released as if its port
 * were dead, and stderr says so once (per backlog and share for a
 * share).  A share is taken of the bounds in force: bounds lowered by
 * ipc_notify_lower_bounds may make a share of descriptors too small for
 * the largest raw message (WIRE_MAX_FDS), which is then refused even
 * when nothing waits.  A port
 * with a backlog costs nothing more than memory (its send end is watched
 * through an epoll set of the watchdog's, open while some port needs
 * it); one known only by a bare send end (machd's janitor) costs a copy
 * of that descriptor while it waits.
 */
#ifndef HELL_IPC_NOTIFY_H
#define HELL_IPC_NOTIFY_H

#include <stdatomic.h>
#include <stddef.h>

#include "ipc_types.h"

#define IPC_NOTIFY_BACKLOG_MAX (1u << 20)
#define IPC_NOTIFY_FDS_MAX 4096u
/* A port's share of each bound is this fraction of it. */
#define IPC_NOTIFY_SHARES 16u
/* The least either bound may be lowered to: a share of one. */
#define IPC_NOTIFY_LOWEST_BOUND IPC_NOTIFY_SHARES

/* A notification of the kernel space (kern_notify.c): the kernel-space
 * send-once right it goes through, its id and its value (a make-send
 * count, a name, or for port-destroyed the kernel-space name of the
 * receive right it carries). */
struct ipc_notify_kern {
    mach_port_name_t notify;
    mach_msg_id_t id;
    uint32_t value;
};

/* Uses the send-once right NONCE to PORT to deliver a
 * MACH_NOTIFY_SEND_ONCE message: what a destroyed send-once right
 * produces.  Sent at once, unless the port's socket is full or a backlog
 * waits: then queued (the right listed with machd's janitor again until
 * it goes, ipc_janitor.h; the caller releases its listing first).  A
 * dead port loses it, as in GNU Mach.  Never blocks.  Expects [G]; does
 * not consume the port reference. */
void ipc_notify_send_once(struct ipc_port *port, uint64_t nonce);

/* Queues N (its rights, in the kernel space, consumed) for DEST, the
 * port of its notify right, behind whatever waits for DEST; it is sent
 * by the next ipc_notify_flush.  Expects [G]. */
void ipc_notify_kern(struct ipc_port *dest, const struct ipc_notify_kern *n);

/* Sends the notifications queued by ipc_notify_kern, and what waits
 * behind them, as far as their ports' sockets take them.  A notification
 * this thread queued behind one another thread is sending (never
 * waiting for room) is sent by that thread: the flush waits for it, so
 * that what a call queued has been tried when the call returns.  Does
 * nothing inside a drain of this thread (a kernel notification's own
 * mach_msg).  Expects [G] not held. */
void ipc_notify_flush(void);

/* Whether ipc_notify_flush has something to do (read without [G]: a
 * hint). */
extern atomic_bool ipc_notify_pending;

/* Sends the send-once notification of the right NONCE through SEND_FD, a
 * bare send end (machd's janitor), queued behind the port's backlog or
 * when its socket is full.  Returns 0 when sent or queued, -1 when the
 * port is dead (or the bound is reached).  Takes [G]. */
int ipc_notify_send_once_fd(int send_fd, uint64_t nonce);

/* Sends MSG[0..LEN), a message as it goes on the wire, with the
 * descriptors FDS[0..NFDS) (copied; at most WIRE_MAX_FDS) through
 * SEND_FD, a bare send end, as ipc_notify_send_once_fd does.  Should its
 * port die before it goes, the message is destroyed as a message queued
 * on a dead task's port is (its rights released, receive rights
 * destroyed with their queues).  Returns 0 when sent or queued, -1 when
 * the port is dead, a bound is reached or descriptors run out: the
 * caller then still owns what the message stands for.  Takes [G]. */
int ipc_notify_send_raw_fd(int send_fd, const void *msg, size_t len, const int *fds,
                           unsigned nfds);

/* Lowers the bounds on what waits in this process to WAITING_MAX
 * notifications and FDS_MAX descriptors; a value above the bound in
 * force, or below IPC_NOTIFY_LOWEST_BOUND, leaves it.  For tests (machd
 * reads them from HELL_MACHD_NOTIFY_MAX): the bounds are then reached by
 * a test's few notifications, through the same code as at the real
 * bounds.  Takes [G]. */
void ipc_notify_lower_bounds(unsigned waiting_max, unsigned fds_max);

/* The watchdog saw the backlogs' epoll set ready: sends what the ports
 * with room now take.  Expects [G]; releases it while a kernel
 * notification is sent, and returns with it. */
void ipc_notify_writable(void);

/* The child side of fork(): nothing waits (the descriptors kept for
 * backlogs are closed). */
void ipc_notify_fork_child(void);

#endif
