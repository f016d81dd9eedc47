/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The wire format of a message on a port's socket (ipc_wire.c writes and
 * parses it): a header, then the right descriptors with what follows
 * them, the region table, the inline regions, and the typed body; the
 * descriptors ride along as SCM_RIGHTS.  Private to libmach, and to the
 * tests that write messages by hand.
 */
#ifndef HELL_IPC_WIRE_FORMAT_H
#define HELL_IPC_WIRE_FORMAT_H

#include <stdint.h>

#define WIRE_MAGIC 0x4c4c4548u /* "HELL" */
#define WIRE_MAX_FDS 253       /* SCM_MAX_FD: descriptors one sendmsg carries */
/* Descriptors one message may carry; past WIRE_MAX_FDS they travel through
 * an auxiliary socket pair (wire_send_aux). */
#define WIRE_MSG_FDS 8192
#define WIRE_DESC_MAX (64u * 1024u)

enum wire_auth {
    WIRE_AUTH_SEND = 1,      /* auth is the port's send secret */
    WIRE_AUTH_SEND_ONCE = 2, /* auth is the nonce of a send-once right */
    WIRE_AUTH_BOOTSTRAP = 3, /* a private socket, no port */
};

enum {
    WR_SEND_FD = 1,  /* the port's send end is attached */
    WR_COUNT_FD = 2, /* a counting descriptor is attached (send rights) */
    WR_RECEIVE = 4,  /* a receive block follows, with its descriptors */
    WR_QUEUE_FD = 8, /* the port's queue page is attached (ipc_qlimit.h) */
    WR_KEEP = 16,    /* a send right's send end: the receiving port keeps it
                        in its transport table (send-once rights' always is) */
};

enum { WO_FD = 1, WO_PORTS = 2, WO_INLINE = 4 };

/* A region this small travels in the message itself (after the region
 * table, padded to 8 bytes) rather than in a sealed memfd: a copy is far
 * cheaper than making, sealing and mapping a file (a pager's page). */
#define WIRE_OOL_INLINE_MAX (16u * 1024u)
#define WIRE_OOL_INLINE_TOTAL (32u * 1024u)
#define WIRE_PAD8(n) (((n) + 7u) & ~(size_t)7u)

struct wire_hdr {
    uint32_t magic;
    uint32_t auth_kind;
    uint64_t auth;
    uint32_t bits; /* the sender's dispositions */
    uint32_t size; /* msgh_size */
    int32_t id;
    uint32_t nrights; /* the reply right, then the body rights */
    uint32_t nool;
    uint32_t nfds;
    uint32_t desc_size;
    uint32_t flags; /* WIRE_HDR_* */
};

/* The last attached descriptor is a socket whose queue holds the
 * descriptors past the first WIRE_MAX_FDS - 1, in datagrams of at most
 * WIRE_MAX_FDS (queued, and its other end closed, before the message). */
#define WIRE_HDR_AUX 1u
/* The sender took a place in the queue (ipc_qlimit.h): the receiver gives
 * it back on dequeuing. */
#define WIRE_HDR_COUNTED 2u

struct wire_right {
    uint32_t kind;
    uint32_t flags;
    uint64_t ino;
    uint64_t auth; /* send secret or send-once nonce */
};

struct wire_rcv {
    uint64_t secret;
    uint32_t mscount, qlimit, ntransports, nnonces;
    uint32_t requests; /* WRCV_* */
    uint32_t reserved;
    /* then nnonces u64 nonces, ntransports u64 inos, and a wire_right
     * per request (no-senders first); descriptors: receive end, counting
     * read end, one send end per transport, one per request, then with
     * WRCV_PENDING the socket holding the kept message */
};

/* The requests that travel with a receive right (GNU Mach keeps them in
 * the port): the notify right of each follows the transports. */
enum {
    WRCV_NS_REQUEST = 1, /* a no-senders request */
    WRCV_NS_ARMED = 2,   /* ... armed: send rights existed since it was made */
    WRCV_PD_REQUEST = 4, /* a port-destroyed request */
    /* The message MACH_RCV_LARGE kept at the head of the queue travels
     * too, ahead of what the queue holds: as the one message, written
     * as to the port (authenticated by its secret, uncounted), of a
     * socket of its own whose writing end is closed. */
    WRCV_PENDING = 8,
};

/* (How deep kept messages nest: WIRE_PENDING_DEPTH, ipc_wire.h.) */

struct wire_ool {
    uint64_t size;
    uint32_t flags;
    uint32_t reserved;
};

#endif
