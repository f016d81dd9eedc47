/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_kmsg.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ipc_janitor.h"
#include "ipc_port.h"
#include "ipc_space.h"
#include "kern_vm.h"
#include "linux.h"

mach_msg_type_name_t ipc_received_type(mach_msg_type_name_t disposition)
{
    switch (disposition) {
    case MACH_MSG_TYPE_MOVE_RECEIVE:
        return MACH_MSG_TYPE_PORT_RECEIVE;
    case MACH_MSG_TYPE_MOVE_SEND:
    case MACH_MSG_TYPE_COPY_SEND:
    case MACH_MSG_TYPE_MAKE_SEND:
        return MACH_MSG_TYPE_PORT_SEND;
    case MACH_MSG_TYPE_MOVE_SEND_ONCE:
    case MACH_MSG_TYPE_MAKE_SEND_ONCE:
        return MACH_MSG_TYPE_PORT_SEND_ONCE;
    default:
        return disposition;
    }
}

static bool ipc_disposition_is_send(mach_msg_type_name_t type)
{
    return MACH_MSG_TYPE_PORT_ANY_SEND(type);
}

static void ipc_undo_right(struct ipc_space *space, struct kright *right,
                           mach_msg_type_name_t disp, mach_port_name_t name);

/* ---- header ---- */

static mach_msg_return_t ipc_copyin_dest(struct ipc_space *space,
                                         struct ipc_entry *entry,
                                         mach_msg_type_name_t type,
                                         struct kright *out)
{
    if (entry == NULL) {
        return MACH_SEND_INVALID_DEST;
    }
    kern_return_t kr = ipc_right_copyin_entry(space, entry, type, false, out);
    return kr == KERN_SUCCESS ? MACH_MSG_SUCCESS : MACH_SEND_INVALID_DEST;
}

mach_msg_return_t ipc_kmsg_copyin_header(struct ipc_space *space,
                                         const mach_msg_header_t *msg,
                                         struct kmsg *kmsg)
{
    mach_msg_bits_t bits = msg->msgh_bits & ~MACH_MSGH_BITS_CIRCULAR;
    mach_msg_type_name_t dest_type = MACH_MSGH_BITS_REMOTE(bits);
    mach_msg_type_name_t reply_type = MACH_MSGH_BITS_LOCAL(bits);
    mach_port_name_t dest_name = (mach_port_name_t)msg->msgh_remote_port;
    mach_port_name_t reply_name = (mach_port_name_t)msg->msgh_local_port;

    if (!ipc_disposition_is_send(dest_type)) {
        return MACH_SEND_INVALID_HEADER;
    }
    if (reply_type == 0 ? reply_name != MACH_PORT_NULL
                        : !ipc_disposition_is_send(reply_type)) {
        return MACH_SEND_INVALID_HEADER;
    }

    kmsg->hdr = *msg;
    kmsg->hdr.msgh_bits = bits;
    kmsg->reply = (struct kright){.kind = KRIGHT_NONE};

    if (dest_name == reply_name) {
        struct ipc_entry *entry = ipc_entry_lookup(space, dest_name);
        if (entry == NULL) {
            return MACH_SEND_INVALID_DEST;
        }
        if (!ipc_right_copyin_check(entry, reply_type)) {
            return MACH_SEND_INVALID_REPLY;
        }
        if (dest_type == MACH_MSG_TYPE_MOVE_SEND_ONCE ||
            reply_type == MACH_MSG_TYPE_MOVE_SEND_ONCE) {
            return MACH_SEND_INVALID_DEST;
        }
        if (dest_type == MACH_MSG_TYPE_MOVE_SEND &&
            reply_type == MACH_MSG_TYPE_MOVE_SEND) {
            ipc_right_check(space, entry, false);
            if (!(entry->type & MACH_PORT_TYPE_SEND) || entry->urefs < 2) {
                return MACH_SEND_INVALID_DEST;
            }
        }
        /* Copy in the reply first when the destination moves the entry's
         * last reference away. */
        bool reply_first = dest_type == MACH_MSG_TYPE_MOVE_SEND;
        mach_msg_return_t mr;
        if (reply_first) {
            if (ipc_right_copyin(space, reply_name, reply_type, true,
                                 &kmsg->reply) != KERN_SUCCESS) {
                return MACH_SEND_INVALID_DEST;
            }
        }
        mr = ipc_copyin_dest(space, ipc_entry_lookup(space, dest_name), dest_type,
                             &kmsg->dest);
        if (mr != MACH_MSG_SUCCESS) {
            if (reply_first) {
                ipc_undo_right(space, &kmsg->reply, reply_type, reply_name);
            }
            return mr;
        }
        if (!reply_first && ipc_right_copyin(space, reply_name, reply_type,
                                             true, &kmsg->reply) != KERN_SUCCESS) {
            ipc_undo_right(space, &kmsg->dest, dest_type, dest_name);
            return MACH_SEND_INVALID_DEST;
        }
        return MACH_MSG_SUCCESS;
    }

    struct ipc_entry *dest_entry = ipc_entry_lookup(space, dest_name);
    if (!MACH_PORT_VALID(reply_name)) {
        kmsg->reply.kind = reply_name == MACH_PORT_DEAD ? KRIGHT_DEAD : KRIGHT_NONE;
        return ipc_copyin_dest(space, dest_entry, dest_type, &kmsg->dest);
    }

    if (dest_entry == NULL) {
        return MACH_SEND_INVALID_DEST;
    }
    struct ipc_entry *reply_entry = ipc_entry_lookup(space, reply_name);
    if (reply_entry == NULL || !ipc_right_copyin_check(reply_entry, reply_type)) {
        return MACH_SEND_INVALID_REPLY;
    }
    mach_msg_return_t mr = ipc_copyin_dest(space, dest_entry, dest_type, &kmsg->dest);
    if (mr != MACH_MSG_SUCCESS) {
        return mr;
    }
    /* Different names: copying the destination in did not free this entry. */
    kern_return_t kr = ipc_right_copyin_entry(space, reply_entry, reply_type, true,
                                              &kmsg->reply);
    if (kr != KERN_SUCCESS) {
        /* Only a resource shortage gets here (the check passed). */
        ipc_undo_right(space, &kmsg->dest, dest_type, dest_name);
        return MACH_SEND_NO_BUFFER;
    }
    return MACH_MSG_SUCCESS;
}

/* ---- body ---- */

mach_msg_return_t ipc_body_walk(char *body, size_t size, ipc_body_visit_t visit,
                                void *ctx)
{
    size_t off = 0;
    while (off < size) {
        if (size - off < sizeof(mach_msg_type_t)) {
            return MACH_SEND_MSG_TOO_SMALL;
        }
        mach_msg_type_t *type = (mach_msg_type_t *)(body + off);
        off += sizeof(mach_msg_type_t);
        unsigned name = type->msgt_name;
        unsigned bits = type->msgt_size;
        bool is_inline = type->msgt_inline;
        if (type->msgt_unused != 0 || (type->msgt_deallocate && is_inline)) {
            return MACH_SEND_INVALID_TYPE;
        }
        if (MACH_MSG_TYPE_PORT_ANY(name) && bits != (is_inline ? 64u : 32u)) {
            return MACH_SEND_INVALID_TYPE;
        }
        uint64_t length = ((uint64_t)type->msgt_number * bits + 7) / 8;
        char *data = body + off;
        if (is_inline) {
            if (size - off < length) {
                return MACH_SEND_MSG_TOO_SMALL;
            }
            off += length;
        } else {
            if (size - off < sizeof(void *)) {
                return MACH_SEND_MSG_TOO_SMALL;
            }
            off += sizeof(void *);
        }
        off = (off + 7) & ~(size_t)7;
        mach_msg_return_t mr = visit(ctx, type, data, (size_t)length);
        if (mr != MACH_MSG_SUCCESS) {
            return mr;
        }
    }
    return MACH_MSG_SUCCESS;
}

struct copyin_ctx {
    struct ipc_space *space;
    struct kmsg *kmsg;
    unsigned rights_cap, ool_cap;
    bool complex; /* a right or a region was found */
};

static bool kmsg_grow(void **array, unsigned *cap, unsigned need, size_t elem)
{
    if (need <= *cap) {
        return true;
    }
    unsigned cap2 = *cap ? *cap : 8;
    while (cap2 < need) {
        cap2 *= 2;
    }
    void *p = realloc(*array, (size_t)cap2 * elem);
    if (p == NULL) {
        return false;
    }
    *array = p;
    *cap = cap2;
    return true;
}

static mach_msg_return_t ipc_copyin_port(struct copyin_ctx *c,
                                         mach_msg_type_name_t disp,
                                         mach_port_name_t name)
{
    struct kmsg *k = c->kmsg;
    if (!kmsg_grow((void **)&k->rights, &c->rights_cap, k->nrights + 1,
                   sizeof *k->rights)) {
        return MACH_SEND_NO_BUFFER;
    }
    struct kright *right = &k->rights[k->nrights];
    if (!MACH_PORT_VALID(name)) {
        *right = (struct kright){.kind = name == MACH_PORT_DEAD ? KRIGHT_DEAD
                                                                : KRIGHT_NONE};
    } else {
        kern_return_t kr = ipc_right_copyin(c->space, name, disp, true, right);
        if (kr != KERN_SUCCESS) {
            /* Out of descriptors (a first send right needs one) is a
             * resource shortage, not an invalid right. */
            return kr == KERN_RESOURCE_SHORTAGE ? MACH_SEND_NO_BUFFER
                                                : MACH_SEND_INVALID_RIGHT;
        }
    }
    right->from_disposition = disp;
    right->from_name = name;
    k->nrights++;
    return MACH_MSG_SUCCESS;
}

static mach_msg_return_t ipc_copyin_visit(void *ctx, mach_msg_type_t *type,
                                          char *data, size_t length)
{
    struct copyin_ctx *c = ctx;
    struct kmsg *k = c->kmsg;
    mach_msg_type_name_t name = type->msgt_name;
    c->complex |= !type->msgt_inline || MACH_MSG_TYPE_PORT_ANY(name);
    if (!type->msgt_inline) {
        if (!kmsg_grow((void **)&k->ool, &c->ool_cap, k->nool + 1, sizeof *k->ool)) {
            return MACH_SEND_NO_BUFFER;
        }
        void *addr;
        memcpy(&addr, data, sizeof addr);
        k->ool[k->nool++] = (struct kool){
            .addr = addr,
            .size = length,
            .dealloc = type->msgt_deallocate,
            .ports = MACH_MSG_TYPE_PORT_ANY(name),
            .memfd = -1};
    }
    if (!MACH_MSG_TYPE_PORT_ANY(name)) {
        return MACH_MSG_SUCCESS;
    }
    for (size_t i = 0; i < type->msgt_number; i++) {
        mach_port_name_t port_name;
        if (type->msgt_inline) {
            memcpy(&port_name, data + i * 8, sizeof port_name);
        } else {
            port_name = ((mach_port_name_t *)k->ool[k->nool - 1].addr)[i];
        }
        mach_msg_return_t mr = ipc_copyin_port(c, name, port_name);
        if (mr != MACH_MSG_SUCCESS) {
            return mr;
        }
    }
    return MACH_MSG_SUCCESS;
}

mach_msg_return_t ipc_kmsg_copyin_body(struct ipc_space *space,
                                       struct kmsg *kmsg)
{
    if (!(kmsg->hdr.msgh_bits & MACH_MSGH_BITS_COMPLEX)) {
        return MACH_MSG_SUCCESS;
    }
    struct copyin_ctx c = {.space = space, .kmsg = kmsg};
    mach_msg_return_t mr =
        ipc_body_walk((char *)kmsg->body, kmsg->body_size, ipc_copyin_visit, &c);
    if (mr == MACH_MSG_SUCCESS && !c.complex) {
        kmsg->hdr.msgh_bits &= ~MACH_MSGH_BITS_COMPLEX; /* as GNU Mach does */
    }
    if (mr == MACH_SEND_NO_BUFFER) {
        /* A resource shortage: as in GNU Mach, the call did nothing. */
        ipc_kmsg_undo_copyin(space, kmsg, (mach_port_name_t)kmsg->hdr.msgh_remote_port,
                             (mach_port_name_t)kmsg->hdr.msgh_local_port);
        ipc_kmsg_destroy(kmsg);
    } else if (mr != MACH_MSG_SUCCESS) {
        /* GNU Mach destroys what it copied in, header rights included;
         * the sender keeps its out-of-line memory. */
        for (unsigned i = 0; i < kmsg->nool; i++) {
            kmsg->ool[i].dealloc = false;
        }
        ipc_kmsg_destroy(kmsg);
    }
    return mr;
}

/* ---- copyout ---- */

struct copyout_ctx {
    struct ipc_space *space;
    struct kmsg *kmsg;
    unsigned next_right, next_ool;
    mach_msg_return_t error;
};

static mach_msg_return_t ipc_copyout_visit(void *ctx, mach_msg_type_t *type,
                                           char *data, size_t length)
{
    struct copyout_ctx *c = ctx;
    struct kmsg *k = c->kmsg;
    bool is_port = MACH_MSG_TYPE_PORT_ANY(type->msgt_name);
    mach_port_name_t *ool_names = NULL;
    if (!type->msgt_inline) {
        struct kool *ool = &k->ool[c->next_ool++];
        if (is_port && type->msgt_number > 0) {
            size_t size = (size_t)type->msgt_number * sizeof(mach_port_name_t);
            void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                c->error = MACH_RCV_BODY_ERROR | MACH_MSG_VM_SPACE;
                p = NULL;
            }
            ool->addr = p;
            ool_names = p;
        }
        if (!is_port && ool->size > 0 && ool->addr == NULL) {
            c->error = MACH_RCV_BODY_ERROR | MACH_MSG_VM_SPACE; /* lost on arrival */
        }
        memcpy(data, &ool->addr, sizeof ool->addr);
        ool->addr = NULL; /* the receiver owns it now */
        type->msgt_deallocate = TRUE;
    }
    if (!is_port) {
        return MACH_MSG_SUCCESS;
    }
    type->msgt_name = ipc_received_type(type->msgt_name);
    for (size_t i = 0; i < type->msgt_number; i++) {
        struct kright *right = &k->rights[c->next_right++];
        mach_port_name_t name;
        if (ipc_right_copyout(c->space, right, &name) != KERN_SUCCESS) {
            c->error = MACH_RCV_BODY_ERROR | MACH_MSG_IPC_SPACE;
        }
        if (type->msgt_inline) {
            uint64_t slot = name;
            memcpy(data + i * 8, &slot, sizeof slot);
        } else if (ool_names != NULL) {
            ool_names[i] = name;
        }
    }
    (void)length;
    return MACH_MSG_SUCCESS;
}

mach_msg_return_t ipc_kmsg_copyout(struct ipc_space *space, struct kmsg *kmsg,
                                   mach_port_name_t local_name, const uint64_t *payload,
                                   mach_msg_header_t *buf)
{
    mach_msg_type_name_t dest_type = MACH_MSGH_BITS_REMOTE(kmsg->hdr.msgh_bits);
    mach_msg_type_name_t reply_type = MACH_MSGH_BITS_LOCAL(kmsg->hdr.msgh_bits);
    mach_port_name_t reply_name;
    mach_msg_return_t mr = MACH_MSG_SUCCESS;
    if (ipc_right_copyout(space, &kmsg->reply, &reply_name) != KERN_SUCCESS) {
        mr = MACH_RCV_HEADER_ERROR | MACH_MSG_IPC_SPACE;
    }
    /* The destination right is consumed by the delivery. */
    kright_destroy(&kmsg->dest);

    buf->msgh_bits = MACH_MSGH_BITS_OTHER(kmsg->hdr.msgh_bits) |
                     MACH_MSGH_BITS(ipc_received_type(reply_type),
                                    payload != NULL ? MACH_MSG_TYPE_PROTECTED_PAYLOAD
                                                    : ipc_received_type(dest_type));
    buf->msgh_size = kmsg->hdr.msgh_size;
    buf->msgh_remote_port_do_not_use = reply_name;
    buf->msgh_protected_payload = payload != NULL ? *payload : local_name;
    buf->msgh_seqno = kmsg->hdr.msgh_seqno;
    buf->msgh_id = kmsg->hdr.msgh_id;
    if (mr != MACH_MSG_SUCCESS) {
        /* As GNU Mach (ipc_kmsg_copyout_dest): only the header comes out,
         * the body's rights and memory are destroyed. */
        buf->msgh_bits &= ~MACH_MSGH_BITS_COMPLEX;
        ipc_kmsg_destroy(kmsg);
        return mr;
    }
    memcpy(buf + 1, kmsg->body, kmsg->body_size);

    if (kmsg->hdr.msgh_bits & MACH_MSGH_BITS_COMPLEX) {
        struct copyout_ctx c = {.space = space, .kmsg = kmsg};
        mach_msg_return_t walk =
            ipc_body_walk((char *)(buf + 1), kmsg->body_size, ipc_copyout_visit, &c);
        assert(walk == MACH_MSG_SUCCESS); /* validated on arrival */
        (void)walk;
        if (c.error != MACH_MSG_SUCCESS && mr == MACH_MSG_SUCCESS) {
            mr = c.error;
        }
    }
    kmsg->nrights = 0;
    kmsg->nool = 0;
    return mr;
}

/* ---- destruction ---- */

void ipc_kmsg_destroy(struct kmsg *kmsg)
{
    kright_destroy(&kmsg->dest);
    kright_destroy(&kmsg->reply);
    for (unsigned i = 0; i < kmsg->nrights; i++) {
        kright_destroy(&kmsg->rights[i]);
    }
    for (unsigned i = 0; i < kmsg->nool; i++) {
        struct kool *ool = &kmsg->ool[i];
        linux_close(ool->memfd);
        if (ool->dealloc && ool->addr != NULL && ool->size > 0) {
            kern_vm_unmap(ool->addr, ool->size);
        }
    }
    free(kmsg->rights);
    free(kmsg->ool);
    free(kmsg->body_owned);
    kmsg->rights = NULL;
    kmsg->ool = NULL;
    kmsg->body_owned = NULL;
    kmsg->nrights = 0;
    kmsg->nool = 0;
}

/* Gives one copied-in RIGHT back to SPACE under NAME. */
static void ipc_undo_right(struct ipc_space *space, struct kright *right,
                           mach_msg_type_name_t disp, mach_port_name_t name)
{
    switch (disp) {
    case MACH_MSG_TYPE_MAKE_SEND_ONCE:
        /* Never created as far as the task can tell: no notification. */
        if (right->kind == KRIGHT_SEND_ONCE && right->port->rcv != NULL) {
            ipc_port_consume_nonce(right->port, right->nonce);
            ipc_port_unref(right->port);
            *right = (struct kright){.kind = KRIGHT_NONE};
        }
        break;
    case MACH_MSG_TYPE_MAKE_SEND:
        if (right->kind == KRIGHT_SEND && right->port->rcv != NULL) {
            right->port->rcv->mscount--;
        }
        break;
    case MACH_MSG_TYPE_MOVE_SEND:
    case MACH_MSG_TYPE_MOVE_SEND_ONCE:
    case MACH_MSG_TYPE_MOVE_RECEIVE:
        if (MACH_PORT_VALID(name)) {
            bool dead = right->kind == KRIGHT_DEAD ||
                        ((right->kind == KRIGHT_SEND ||
                          right->kind == KRIGHT_SEND_ONCE) &&
                         right->port->dead);
            if (dead && right->port != NULL) {
                /* Back as the dead name GNU Mach would have left. */
                if (right->kind == KRIGHT_SEND) {
                    ipc_port_srights_drop(right->port);
                } else if (right->kind == KRIGHT_SEND_ONCE) {
                    ipc_janitor_release(right->nonce);
                }
                ipc_port_unref(right->port);
                *right = (struct kright){.kind = KRIGHT_DEAD};
            }
            if (dead) {
                struct ipc_entry *entry = ipc_entry_lookup(space, name);
                if (entry == NULL &&
                    ipc_entry_alloc_name(space, name, &entry) == KERN_SUCCESS) {
                    entry->type = MACH_PORT_TYPE_DEAD_NAME;
                }
                if (entry != NULL && (entry->type & MACH_PORT_TYPE_DEAD_NAME)) {
                    entry->urefs++;
                }
                *right = (struct kright){.kind = KRIGHT_NONE};
            } else {
                (void)ipc_right_copyout_name(space, right, name);
            }
        }
        break;
    default:
        break;
    }
    kright_destroy(right);
}

void ipc_kmsg_undo_copyin(struct ipc_space *space, struct kmsg *kmsg,
                          mach_port_name_t dest_name, mach_port_name_t reply_name)
{
    mach_msg_bits_t bits = kmsg->hdr.msgh_bits;
    for (unsigned i = kmsg->nrights; i-- > 0;) {
        ipc_undo_right(space, &kmsg->rights[i], kmsg->rights[i].from_disposition,
                       kmsg->rights[i].from_name);
    }
    kmsg->nrights = 0;
    ipc_undo_right(space, &kmsg->reply, MACH_MSGH_BITS_LOCAL(bits), reply_name);
    ipc_undo_right(space, &kmsg->dest, MACH_MSGH_BITS_REMOTE(bits), dest_name);
    for (unsigned i = 0; i < kmsg->nool; i++) {
        kmsg->ool[i].dealloc = false; /* the sender keeps its memory */
    }
}
