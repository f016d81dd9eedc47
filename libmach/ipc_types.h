/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The core IPC objects of a task (a Linux process).
 *
 * A port is a connected AF_UNIX SOCK_SEQPACKET pair: the receiver reads the
 * receive end, senders write the send end, so the queue lives in the
 * kernel and travels with the receive right.  Every process keeps one
 * struct ipc_port per port it knows, found by the inode of the send end
 * (its identity, which no task can forge).  See docs/ARCHITECTURE.md.
 *
 * Locking keys:
 *   [G]  ipc_lock, the process-wide IPC lock (ipc_space.h)
 *   [R]  port->rcv->rlock, held by the thread dequeuing from the port
 *   [C]  constant after creation
 * Lock order: [R] before [G].  Nothing blocks while holding [G].
 */
#ifndef HELL_IPC_TYPES_H
#define HELL_IPC_TYPES_H

#include <mach/mach_types.h>
#include <mach/message.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "futex_lock.h"
#include "u64map.h"

struct kmsg;
struct ipc_watch_waiter;
struct ipc_pset;
struct ipc_qstate;

/* Receive-side state, present while this process holds the receive right. */
struct ipc_port_rcv {
    struct futex_lock rlock;      /* [R] serialises dequeuing */
    int recv_fd;                  /* [C] receive end of the socket pair */
    int count_rfd;                /* [C] read end of the sender-counting pipe */
    uint64_t secret;              /* [G] authenticates send-right messages */
    mach_port_seqno_t seqno;      /* [R] next sequence number */
    mach_port_mscount_t mscount;  /* [G] make-send count */
    mach_port_msgcount_t qlimit;  /* [G] */
    unsigned sorights;            /* [G] send-once rights outstanding */
    bool send_made;               /* [G] a send right to it may exist or
                                     have existed (made here, or before
                                     the right came here) */
    struct u64map nonces;         /* [G] nonce -> port: live send-once rights */
    struct u64map transports;     /* [G] ino -> struct ipc_port *: send ends
                                     senders passed to this port once; dead
                                     ones are pruned (ipc_port.h) */
    size_t transports_sweep_at;   /* [G] table size of the next sweep */
    struct kmsg *pending;         /* [R] and [G] to write, either to read:
                                     message left queued by MACH_RCV_LARGE
                                     (or a reply of this task's kernel),
                                     the next one received; it moves with
                                     the right (ipc_wire_format.h) */
    int space;                    /* [G] SPACE_USER or SPACE_KERNEL */
    _Atomic pid_t waiter;         /* thread blocked dequeuing, or 0 */
    _Atomic bool leaving;         /* [G] to write; right being moved */
    _Atomic bool orphan;          /* [G] to write; detached from its port */
    unsigned users;               /* [G] threads using this state */
    int kobject_type;             /* [C] IKOT_* for kernel-served ports */
    struct ipc_pset *pset;        /* [G] the set it is a member of, or NULL */
    mach_port_name_t nsrequest;   /* [G] kernel-space send-once right for
                                     no-senders, or 0 */
    bool ns_armed;                /* [G] send rights existed since the request:
                                     their end fires it */
    mach_port_name_t pdrequest;   /* [G] kernel-space send-once right for
                                     port-destroyed, or 0 */
    bool ns_watched;              /* [G] counting pipe in the watchdog */
    uint32_t janitor_slot;        /* [G] 1 + the slot listing the right in
                                     machd's table, its receive end shown
                                     to machd (ipc_janitor.h), or 0 */
    bool escrowed;                /* [G] machd keeps the port-destroyed
                                     notification for this task's death
                                     (ipc_janitor_escrow) */
    bool escrow_stale;            /* [G] making that copy again failed: it
                                     is tried again at the next change */
    bool escrow_after_receive;    /* [G] that copy is to be made again once
                                     the message being received is in (it
                                     kept a transport) */
    uint64_t escrow_nonce;        /* [G] the nonce of the request that copy
                                     honours, when escrowed */
    const struct kmsg *escrow_pending; /* [G] the pending message that copy
                                     carries, or NULL */
    uint64_t payload;             /* [G] protected payload, when has_payload */
    bool has_payload;             /* [G] (cleared when the right moves) */
};

/* A port known to this process. */
struct ipc_port {
    unsigned refs;                /* [G] */
    uint64_t ino;                 /* [C] identity: inode of the send end */
    uint64_t serial;              /* [C] unique in this process (an inode
                                     can be reused once a socket is gone) */
    int send_fd;                  /* [C] send end (the transport) */
    int count_wfd;                /* [G] write end of the counting pipe while
                                     this process holds send rights, else -1 */
    unsigned srights;             /* [G] send rights held here (entries with
                                     SEND, send rights in kernel messages) */
    bool count_spare;             /* [G] count_wfd stays open without send
                                     rights here: the port's kernel sends
                                     them by reference (ipc_port.h) */
    uint64_t secret;              /* [G] valid when has_secret */
    bool has_secret;              /* [G] */
    _Atomic bool dead;            /* [G] to write: receive right destroyed */
    struct u64map peer_has;       /* [G] serial -> (void *)1: send ends
                                     already passed to this port's receiver,
                                     which keeps them while they live */
    struct ipc_port_rcv *rcv;     /* [G] receive state, or NULL */
    struct ipc_watch_waiter *waiters; /* [G] threads awaiting a reply from it */
    unsigned dnrequests;          /* [G] dead-name requests on it here */
    int q_fd;                     /* [G] queue page descriptor, or -1 */
    struct ipc_qstate *_Atomic q; /* [G] to set: the queue page mapped
                                     (ipc_qlimit.h), or NULL */
    bool watched;                 /* [G] in the watchdog's epoll set */
    bool janitor_known;           /* [G] its send end shown to machd */
    _Atomic bool server_gone;     /* [G] to write: dead, and nobody owes
                                     replies to requests sent to it any
                                     more (its receiver died) */
    int owner_pidfd;              /* [G] while dead but not server_gone:
                                     the task that destroyed the receive
                                     right, watched for its death, or -1 */
    mach_port_name_t name[2];     /* [G] send/receive entry per space, or 0 */
};

/* Rights in a message or in a kernel call, between two name spaces. */
enum kright_kind {
    KRIGHT_NONE = 0,   /* MACH_PORT_NULL */
    KRIGHT_DEAD,       /* MACH_PORT_DEAD */
    KRIGHT_SEND,
    KRIGHT_SEND_ONCE,
    KRIGHT_RECEIVE,
    KRIGHT_LOST,       /* a right that arrived without the descriptors it
                          needed (the receiver ran out): already destroyed,
                          received as MACH_PORT_NULL with MACH_MSG_IPC_SPACE */
};

struct kright {
    enum kright_kind kind;
    struct ipc_port *port;  /* a reference, for SEND, SEND_ONCE, RECEIVE */
    uint64_t nonce;         /* SEND_ONCE: proves the right to the receiver */
    /* Sender side only: how the right left its space, to put it back if
     * the send fails after copyin. */
    mach_msg_type_name_t from_disposition;
    mach_port_name_t from_name;
};

/* An entry of a name space. */
struct ipc_entry {
    mach_port_name_t name;
    mach_port_type_t type;    /* MACH_PORT_TYPE_* bits */
    mach_port_urefs_t urefs;  /* send or dead-name user references */
    struct ipc_port *port;    /* a reference, or NULL (dead name, set) */
    uint64_t nonce;           /* send-once */
    struct ipc_pset *pset;    /* a reference, for a port set */
    mach_port_name_t dnrequest; /* kernel-space send-once right to notify
                                   when the port dies, or 0 */
    struct ipc_entry *next_free; /* on the space's free list */
};

enum { SPACE_USER = 0, SPACE_KERNEL = 1 };

/* A name space.  The user space is what mach_port_* calls see; the
 * kernel space holds the rights of the kernel service of this task
 * (its task port, rights carried by kernel calls). */
struct ipc_space {
    int id;
    struct u64map names;          /* [G] name -> struct ipc_entry * */
    struct ipc_entry *free_list;  /* [G] released entries (LIFO), each with
                                     its old name, for generation reuse */
    uint32_t next_index;          /* [G] */
};

/* Kernel object types served by the task's kernel service. */
enum {
    IKOT_NONE = 0,
    IKOT_TASK = 1,
    IKOT_HOST = 2,
    IKOT_THREAD = 3,
    IKOT_PSET_NAME = 4,
    IKOT_HOST_PRIV = 5,
    IKOT_PAGER_CONTROL = 6, /* a memory object's control port (vm_object.c) */
    IKOT_PAGER_NAME = 7,    /* a memory object's name port */
    IKOT_VM_NOTIFY = 8,     /* where the VM hears of its pagers' deaths */
    IKOT_PROCESSOR = 9,     /* a processor (kern_processor.c) */
    IKOT_PSET = 10,         /* the default processor set's control port */
    IKOT_PSET_NOTIFY = 11,  /* where the set hears of its tasks' deaths */
};

#endif
