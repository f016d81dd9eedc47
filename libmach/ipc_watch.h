/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The watchdog: a hidden thread that watches, with epoll, the send ends
 * of the ports that threads of this task await replies from (or hold
 * dead-name requests for), and the counting pipes of ports with a
 * no-senders request.  When one
 * hangs up (its receive right died, with its task or not), the port is
 * marked dead and, once nobody owes replies to requests sent to it
 * (server_gone), every thread waiting on it is interrupted, so that its
 * RPC ends with the send-once notification of its destroyed reply right
 * instead of hanging.  A receiver that destroyed the right itself may
 * still answer what it took: then the watchdog waits for that task's
 * death instead (a pidfd), as GNU Mach keeps a reply right alive as long
 * as its holder.  Nothing is paid per RPC: a destination is added to the
 * epoll set once, the first time a reply is awaited from it.  It also
 * sends the notifications that wait for room in their ports' sockets.
 *
 * Every function here expects ipc_lock held ([G]).
 */
#ifndef HELL_IPC_WATCH_H
#define HELL_IPC_WATCH_H

#include "ipc_types.h"

/* A thread waiting for a reply from a port (on the waiting thread's
 * stack, linked in the port while it waits). */
struct ipc_watch_waiter {
    pid_t tid;
    struct ipc_watch_waiter *next;
};

/* Records that WAITER's thread awaits a reply from PORT, which is watched
 * from now on. */
void ipc_watch_wait_begin(struct ipc_port *port, struct ipc_watch_waiter *waiter);

/* The thread stopped waiting. */
void ipc_watch_wait_end(struct ipc_port *port, struct ipc_watch_waiter *waiter);

/* Watches PORT's send end (a dead-name request): when it hangs up,
 * kern_notify_port_died runs. */
void ipc_watch_port(struct ipc_port *port);

/* PORT is dead (its receive right is gone): decides whether requests
 * sent to it can still be answered, sets server_gone if not (and
 * interrupts its waiters), else watches the task that destroyed it. */
void ipc_watch_port_died(struct ipc_port *port);

/* PORT is being freed: stop watching it (before its send end closes). */
void ipc_watch_forget(struct ipc_port *port);

/* Watches the counting pipe of PORT (receive right held here) until no
 * send right is left anywhere: then kern_notify_no_senders runs, once. */
void ipc_watch_no_senders(struct ipc_port *port);

/* Stops watching PORT's counting pipe (its receive right leaves). */
void ipc_watch_no_senders_stop(struct ipc_port *port);

/* Watches FD, the epoll set of the send ends whose ports have
 * notifications waiting for room (ipc_notify.h), starting the watchdog
 * if need be: when FD is ready, ipc_notify_writable runs.  Returns
 * whether it is watched. */
bool ipc_watch_backlogs(int fd);

/* Stops watching FD (before it closes). */
void ipc_watch_backlogs_stop(int fd);

/* The child side of fork(): no watchdog, nothing watched. */
void ipc_watch_fork_child(void);

#endif
