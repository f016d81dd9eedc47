/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A message in transit between two name spaces ("kmsg", as in GNU Mach):
 * the Mach header and body bytes, with its rights held as objects instead
 * of names.  Copyin takes a message out of a sender's space with GNU
 * Mach's checks; copyout puts it into a receiver's space and buffer.
 */
#ifndef HELL_IPC_KMSG_H
#define HELL_IPC_KMSG_H

#include "ipc_types.h"

struct kool {
    void *addr;       /* the sender's region, or the mapping received */
    size_t size;
    bool dealloc;     /* the sender gives the region up */
    bool ports;       /* an out-of-line port array (travels as rights) */
    bool lent;        /* ADDR lies in a buffer of this thread (received:
                         its receive buffer; sent to its own kernel: its
                         lend buffer), not a mapping: wire_region_release */
    int memfd;        /* sealed copy in transit, or -1 */
};

struct kmsg {
    mach_msg_header_t hdr;      /* bits hold the sender's dispositions */
    struct kright dest;
    struct kright reply;
    const char *body;           /* msgh_size - 32 bytes */
    size_t body_size;
    char *body_owned;           /* when body is a private copy */
    unsigned nrights;
    struct kright *rights;      /* body rights, in order */
    unsigned nool;
    struct kool *ool;
};

/* Takes the header rights of MSG out of SPACE, with GNU Mach's order of
 * checks.  Returns MACH_SEND_INVALID_HEADER, MACH_SEND_INVALID_DEST or
 * MACH_SEND_INVALID_REPLY with the space unchanged.  Expects [G]. */
mach_msg_return_t ipc_kmsg_copyin_header(struct ipc_space *space,
                                         const mach_msg_header_t *msg,
                                         struct kmsg *kmsg);

/* Takes the body rights and out-of-line regions of a complex message
 * out of SPACE.  On failure (MACH_SEND_MSG_TOO_SMALL,
 * MACH_SEND_INVALID_TYPE, MACH_SEND_INVALID_RIGHT,
 * MACH_SEND_INVALID_MEMORY) the whole message is destroyed, header
 * rights included, as GNU Mach does; after MACH_SEND_NO_BUFFER (out of
 * memory or descriptors) every right is back under its name instead.
 * Expects [G]. */
mach_msg_return_t ipc_kmsg_copyin_body(struct ipc_space *space,
                                       struct kmsg *kmsg);

/* Puts the rights of KMSG (consumed) into SPACE and writes the message
 * into BUF as the receiver sees it: remote and local swapped, body names
 * and out-of-line addresses filled in.  LOCAL_NAME is the receiver's name
 * for the destination port; PAYLOAD, when not NULL, is the port's
 * protected payload, delivered instead of the name.  Expects [G]; BUF
 * holds hdr.msgh_size bytes. */
mach_msg_return_t ipc_kmsg_copyout(struct ipc_space *space, struct kmsg *kmsg,
                                   mach_port_name_t local_name, const uint64_t *payload,
                                   mach_msg_header_t *buf);

/* Destroys every right and region KMSG still holds.  Expects [G]. */
void ipc_kmsg_destroy(struct kmsg *kmsg);

/* Puts the rights copied in from SPACE back, as if the send had never
 * happened (a send that failed after copyin).  Expects [G]. */
void ipc_kmsg_undo_copyin(struct ipc_space *space, struct kmsg *kmsg,
                          mach_port_name_t dest_name,
                          mach_port_name_t reply_name);

/* Calls VISIT for each item of a typed message body of SIZE bytes: its
 * type descriptor, its data (inline bytes, or the slot holding the
 * out-of-line pointer) and the byte length of the data.  Returns
 * MACH_MSG_SUCCESS, MACH_SEND_MSG_TOO_SMALL or MACH_SEND_INVALID_TYPE
 * (GNU Mach's checks), or the first error VISIT returns. */
typedef mach_msg_return_t (*ipc_body_visit_t)(void *ctx, mach_msg_type_t *type,
                                              char *data, size_t length);
mach_msg_return_t ipc_body_walk(char *body, size_t size, ipc_body_visit_t visit,
                                void *ctx);

/* The received type name for a disposition (MACH_MSG_TYPE_PORT_*). */
mach_msg_type_name_t ipc_received_type(mach_msg_type_name_t disposition);

#endif
