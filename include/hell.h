/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * HELL's own API (not part of GNU Mach): starting tasks.
 */
#ifndef _HELL_H
#define _HELL_H

#include <mach/mach_types.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Forks a new task.  The child starts with a fresh name space whose
 * bootstrap port (task_get_bootstrap_port) is a copy of the caller's send
 * right BOOTSTRAP (or null), and with the caller's mappings of memory
 * objects as their inheritance says, as task_create with inherited memory
 * gives them (SHARE: the object itself; COPY: a copy, made at once, of
 * what the caller sees; NONE: nothing); the rest of its memory is fork's
 * copy.  (A plain fork() leaves holes where objects were mapped.)
 * Returns 0 in the child; in the parent the child's pid, with
 * *CHILD_TASK naming a send right to the child's task port.  Returns -1
 * with errno set when the child could not be started (ENOMEM: memory or
 * descriptors ran short listing the mappings, or a connection to the
 * cache serving them could not be had; EPIPE: the child could not map
 * them, or the handshake failed; the child is reaped).  A COPY piece
 * (the default inheritance) is read whole from the cache before the
 * call returns, asking the pager for each page not cached: a slow or
 * stopped pager makes hell_fork wait, up to the pager timeout
 * (HELL_PAGER_TIMEOUT_MS, 30 s) per request, and a pager that does not
 * answer in time, or answers an error, makes it fail (EPIPE), where GNU
 * Mach's fork never waits for a pager.  Mappings set VM_INHERIT_NONE or SHARE avoid it. */
pid_t hell_fork(mach_port_t bootstrap, mach_port_t *child_task);

/* Like hell_fork, then executes PATH with ARGV in the child (with the
 * environment of the caller).  Returns -1 with errno set (the execve
 * error among them) when the child could not be started. */
pid_t hell_spawn(const char *path, char *const argv[], mach_port_t bootstrap,
                 mach_port_t *child_task);

/* The most rights hell_spawn_attr can grant a new task. */
#define HELL_GRANTS_MAX 8

/* A send right given to a new task under a name of the parent's choosing,
 * as GNU Mach's boot script gives its first tasks the host and device
 * ports. */
struct hell_port_grant {
    mach_port_t right;     /* a send right of the caller; a copy is given */
    mach_port_name_t name; /* its name in the new task */
};

/* How hell_spawn_attr starts a task.  Zero-initialise, then set what
 * differs from hell_spawn's defaults. */
struct hell_spawn_attr {
    mach_port_t bootstrap;                 /* copied, as for hell_spawn */
    const struct hell_port_grant *grants;  /* NGRANTS of them */
    unsigned ngrants;                      /* at most HELL_GRANTS_MAX */
    const int *stdio;     /* 3 descriptors for the task's 0, 1, 2; NULL: the caller's */
    char *const *envp;    /* the environment; NULL: the caller's */
    const char *cwd;      /* the working directory; NULL: the caller's */
};

/* Starts PATH with ARGV as a new task as ATTR says.  The granted rights
 * are in the task's space under their names before its main runs (the
 * names must be valid and distinct).  Returns the child's pid with
 * *CHILD_TASK (if not NULL) naming a send right to its task port, or -1
 * with errno set: EINVAL for a bad ATTR, the execve error when PATH could
 * not be executed, EPIPE when the handshake failed (the child is reaped).
 * Safe to call from a multi-threaded program. */
pid_t hell_spawn_attr(const char *path, char *const argv[], const struct hell_spawn_attr *attr,
                      mach_port_t *child_task);

/* Makes this task's privileged host port (once) and returns a send right
 * to it, or MACH_PORT_NULL when out of descriptors.  For the kernel
 * process of an instance (machd): the calls of mach_host.defs that want
 * the privileged port accept it, and host_reboot on it calls ON_REBOOT
 * with its options in the thread serving it (ON_REBOOT ends the instance
 * and does not return; if it does, host_reboot answers KERN_SUCCESS).
 * Later calls return another send right to the same port. */
mach_port_t hell_host_priv_create(void (*on_reboot)(int options));

/* Sends the send-once notification of the right NONCE through SEND_FD,
 * a port's send end.  For the kernel process: it destroys the send-once
 * rights a task of the instance held when it died.  Never waits: when
 * the port's queue is full, the notification is kept (SEND_FD is copied)
 * and sent, in order with the others to that port, once there is room.
 * Returns 0 (sent or kept), or -1 when the port is dead (or, past
 * libmach's bounds on kept notifications, or past the port's share of
 * them, a sixteenth, which stderr reports, lost). */
int hell_janitor_send_once(int send_fd, uint64_t nonce);

/* Sends MSG[0..LEN), an escrow a task of the instance left (the
 * notification it would send, as it goes on the wire), with its
 * descriptors FDS[0..NFDS) (copied; at most HELL_JANITOR_ESCROW_FDS)
 * through SEND_FD, a port's send end, without waiting: for the kernel
 * process, when the task has died.  A full queue keeps it (with copies
 * of SEND_FD and FDS) until there is room, as hell_janitor_send_once
 * does; should the port die first, the message is destroyed as one
 * queued on a dead task's port (the receive right it carries destroyed
 * with its queue).  Returns 0 (sent or kept), or -1 when the port is
 * dead, or nothing more can be kept (bounds, the port's share of them,
 * descriptors): the caller then destroys what the escrow stands for. */
int hell_janitor_send_escrow(int send_fd, const void *msg, size_t len, const int *fds,
                             unsigned nfds);

/* Lowers the bounds on the notifications this process keeps while their
 * ports are full (2^20 notifications holding 4096 descriptors, of which
 * each port may take a sixteenth) to WAITING_MAX notifications and
 * FDS_MAX descriptors; a value above the bound in force, or below 16,
 * leaves it.  For the kernel process, under test (HELL_MACHD_NOTIFY_MAX):
 * a test then reaches the bounds and shares with a few notifications. */
void hell_notify_lower_bounds(unsigned waiting_max, unsigned fds_max);

/* Destroys the ports whose receive ends RECV_FDS[0..NRECV) (taken)
 * belonged to a task of the instance that died, as GNU Mach destroys a
 * dead task's receive rights: for the kernel process.  Every queued
 * message is destroyed (its send-once rights notified, its receive
 * rights destroyed in turn, its send rights released), then the ends are
 * shut down, which senders see as the ports' death.  SEND_FDS[0..NSEND)
 * (not taken) are the send ends of ports the task knew, which a message
 * may name without carrying.  Takes the library's lock. */
void hell_janitor_destroy_receives(const int *recv_fds, size_t nrecv, const int *send_fds,
                                   size_t nsend);

/* Serves the memory objects of the task at the other end of CONN (a
 * HELL_OP_VM connection to the kernel process of an instance, machd),
 * whose userfaultfd is UFFD and whose faults wait at most TIMEOUT_MS for
 * a pager (0: 30 s): maps and unmaps objects as it asks, and serves its
 * faults in the caller's fault thread.  Returns when the task hangs up
 * or dies, its mappings removed; CONN and UFFD are taken over. */
void hell_vm_serve(int conn, int uffd, unsigned timeout_ms);

/* Serves the requests of the task at the other end of CONN (a
 * HELL_OP_TASKS connection to the kernel process of an instance, machd):
 * lists the tasks it creates in the default processor set and names the
 * set for it.  Returns when the task hangs up, dies or sends anything
 * that is no request; CONN is taken over. */
void hell_tasks_serve(int conn);

/* Makes the file FD (not taken: a read-only descriptor of it is kept)
 * the memory of the memory object PAGER, a port whose receive right this
 * process holds: a task's vm_map of PAGER through this process
 * (hell_vm_serve) then maps the file itself, shared and read-only, with
 * no pager protocol (machd's device memory: the time page).  Returns 0,
 * or -1 with errno (EINVAL: PAGER names no receive right; ENOSPC: the
 * table of such objects is full). */
int hell_vm_direct_object(mach_port_t pager, int fd);

/* For hell-task, the program that is the body of a task made by
 * task_create without inherited memory: when this process was started as
 * one, never returns (its thread waits, hidden from task_threads, while
 * the task is served through its port); otherwise returns at once. */
void hell_task_idle(void);

/* Messages this task dropped as malformed or forged. */
unsigned long hell_dropped_messages(void);

#ifdef __cplusplus
}
#endif

#endif /* _HELL_H */
