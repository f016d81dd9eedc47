/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "kern_notify.h"

#include <mach/notify.h>
#include <poll.h>
#include <stdlib.h>

#include "ipc_janitor.h"
#include "ipc_msg.h"
#include "ipc_notify.h"
#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_watch.h"
#include "ipc_wire.h"
#include "kern.h"
#include "mach_port.server.h"


/* Queues the notification ID with VALUE through the kernel-space
 * send-once right NOTIFY (consumed), for the next flush.  Expects [G]. */
static void kern_notify_queue_add(mach_port_name_t notify, mach_msg_id_t id, uint32_t value)
{
    struct ipc_notify_kern n = {.notify = notify, .id = id, .value = value};
    struct ipc_port *dest;
    uint64_t nonce;
    if (!kern_notify_request_right(notify, &dest, &nonce)) {
        kern_notify_discard(&n); /* (never: requests hold send-once rights) */
        return;
    }
    ipc_notify_kern(dest, &n);
}

/* The layout of notify.defs messages with one argument: 32 bits, or a
 * port in an 8-byte slot (port-destroyed). */
struct kern_notify_msg {
    mach_msg_header_t head;
    mach_msg_type_t type;
    uint32_t value;
    uint32_t pad;
};

/* The notification of id ID with VALUE through the kernel-space
 * send-once right NOTIFY, as the kernel space sends it. */
static struct kern_notify_msg kern_notify_msg_make(mach_msg_id_t id, mach_port_name_t notify,
                                                   uint32_t value)
{
    bool destroyed = id == MACH_NOTIFY_PORT_DESTROYED;
    return (struct kern_notify_msg){
        .head = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0) |
                              (destroyed ? MACH_MSGH_BITS_COMPLEX : 0),
                 .msgh_size = sizeof(struct kern_notify_msg),
                 .msgh_remote_port = notify,
                 .msgh_id = id},
        .type = {.msgt_name = destroyed                       ? MACH_MSG_TYPE_MOVE_RECEIVE
                              : id == MACH_NOTIFY_NO_SENDERS ? MACH_MSG_TYPE_INTEGER_32
                                                              : MACH_MSG_TYPE_PORT_NAME,
                 .msgt_size = destroyed ? 64 : 32,
                 .msgt_number = 1,
                 .msgt_inline = TRUE},
        .value = value,
    };
}

mach_msg_return_t kern_notify_deliver(const struct ipc_notify_kern *n)
{
    struct kern_notify_msg msg = kern_notify_msg_make(n->id, n->notify, n->value);
    return ipc_mach_msg(SPACE_KERNEL, &msg.head, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof msg, 0,
                        MACH_PORT_NULL, 0);
}

void kern_notify_discard(const struct ipc_notify_kern *n)
{
    /* Drop the right, and destroy the receive right a port-destroyed
     * notification carried. */
    (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], n->notify);
    if (n->id == MACH_NOTIFY_PORT_DESTROYED) {
        (void)ipc_right_delta(&ipc_spaces[SPACE_KERNEL], n->value, MACH_PORT_RIGHT_RECEIVE, -1);
    }
}

void kern_notify_flush(void)
{
    ipc_notify_flush();
}

void kern_notify_entry_dead(struct ipc_entry *entry)
{
    if (entry->dnrequest == 0) {
        return;
    }
    /* GNU Mach gives the notification its own user reference. */
    entry->urefs++;
    kern_notify_queue_add(entry->dnrequest, MACH_NOTIFY_DEAD_NAME, entry->name);
    entry->dnrequest = 0;
    if (entry->port != NULL) {
        entry->port->dnrequests--;
    }
}

void kern_notify_entry_deleted(struct ipc_entry *entry)
{
    if (entry->dnrequest == 0) {
        return;
    }
    kern_notify_queue_add(entry->dnrequest, MACH_NOTIFY_PORT_DELETED, entry->name);
    entry->dnrequest = 0;
    if (entry->port != NULL) {
        entry->port->dnrequests--;
    }
}

void kern_notify_port_died(struct ipc_port *port)
{
    ipc_port_ref(port); /* the entries that go may hold the last references */
    /* The kernel space's own requests (the VM watching its pagers). */
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    struct ipc_entry *entry = ipc_entry_lookup(kspace, port->name[SPACE_KERNEL]);
    if (entry != NULL && entry->port == port && entry->dnrequest != 0) {
        ipc_right_check(kspace, entry, false);
    }
    struct ipc_space *space = &ipc_spaces[SPACE_USER];
    entry = ipc_entry_lookup(space, port->name[SPACE_USER]);
    if (entry != NULL && entry->port == port) {
        ipc_right_check(space, entry, false);
    }
    /* Requests may remain on send-once rights, each under a name of its
     * own: find them (a port's death is rare next to its messages). */
    uint64_t key;
    void *value;
    for (size_t i = 0; port->dnrequests > 0 && u64map_next(&space->names, &i, &key, &value);) {
        entry = value;
        if (entry->port == port && entry->dnrequest != 0) {
            ipc_right_check(space, entry, false);
        }
    }
    ipc_port_unref(port);
}

void kern_notify_no_senders(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    /* A request made when no send right existed waits for one to be made
     * and to go (kern_notify_send_made arms it). */
    if (rcv != NULL && rcv->nsrequest != 0 && rcv->ns_armed) {
        kern_notify_queue_add(rcv->nsrequest, MACH_NOTIFY_NO_SENDERS, rcv->mscount);
        rcv->nsrequest = 0;
        ipc_janitor_receive_changed(port);
    }
}

void kern_notify_send_made(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    if (rcv->nsrequest != 0 && !rcv->ns_watched) {
        rcv->ns_armed = true;
        ipc_watch_no_senders(port);
    }
}

void kern_notify_receive_gone(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    ipc_watch_no_senders_stop(port);
    if (rcv == NULL) {
        return;
    }
    /* The requests go with the right: their notify rights are destroyed,
     * which their receivers see as send-once notifications. */
    if (rcv->nsrequest != 0) {
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], rcv->nsrequest);
        rcv->nsrequest = 0;
    }
    if (rcv->pdrequest != 0) {
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], rcv->pdrequest);
        rcv->pdrequest = 0;
    }
}

void kern_notify_receive_leaving(struct ipc_port *port)
{
    ipc_watch_no_senders_stop(port);
}

void kern_notify_receive_arrived(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    if (rcv->nsrequest != 0 && rcv->ns_armed && !rcv->ns_watched) {
        ipc_watch_no_senders(port);
    }
}

bool kern_notify_request_right(mach_port_name_t name, struct ipc_port **port,
                               uint64_t *nonce)
{
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_KERNEL], name);
    if (name == 0 || entry == NULL || !(entry->type & MACH_PORT_TYPE_SEND_ONCE)) {
        return false;
    }
    *port = entry->port;
    *nonce = entry->nonce;
    return true;
}

void kern_notify_requests_moved(struct ipc_port_rcv *rcv)
{
    mach_port_name_t *requests[] = {&rcv->nsrequest, &rcv->pdrequest};
    for (unsigned i = 0; i < 2; i++) {
        struct kright right;
        if (*requests[i] != 0 &&
            ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], *requests[i],
                             MACH_MSG_TYPE_MOVE_SEND_ONCE, false, &right) == KERN_SUCCESS) {
            /* Moved: its nonce lives on elsewhere. */
            ipc_janitor_release(right.nonce);
            ipc_port_unref(right.port);
        }
        *requests[i] = 0;
    }
}

mach_port_name_t kern_notify_request_adopt(struct kright *right)
{
    mach_port_name_t name = 0;
    if (ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], right, &name) != KERN_SUCCESS) {
        return 0; /* the right was destroyed */
    }
    return name;
}

/* Whether the receive state RCV of PORT has a port-destroyed request
 * that can be honoured: GNU Mach's circularity check refuses a port sent
 * to itself (it would live on in its own queue, unreachable), which is
 * destroyed instead.  (A notify port whose receive right waits in this
 * port's queue is not seen: the two then die together, unnotified.) */
static bool kern_notify_pd_request_ok(struct ipc_port *port, struct ipc_port_rcv *rcv)
{
    struct ipc_port *target;
    uint64_t nonce;
    return rcv != NULL && rcv->pdrequest != 0 &&
           kern_notify_request_right(rcv->pdrequest, &target, &nonce) && target != port;
}

bool kern_notify_port_destroyed(struct ipc_space *space, mach_port_name_t name)
{
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    if (space->id != SPACE_USER || entry == NULL || !(entry->type & MACH_PORT_TYPE_RECEIVE) ||
        !kern_notify_pd_request_ok(entry->port, entry->port->rcv)) {
        return false;
    }
    struct kright right;
    if (ipc_right_copyin(space, name, MACH_MSG_TYPE_MOVE_RECEIVE, false, &right) !=
        KERN_SUCCESS) {
        return false;
    }
    return kern_notify_port_destroyed_right(&right);
}

bool kern_notify_port_destroyed_right(struct kright *right)
{
    struct ipc_port_rcv *rcv = right->kind == KRIGHT_RECEIVE ? right->port->rcv : NULL;
    if (!kern_notify_pd_request_ok(right->port, rcv)) {
        return false;
    }
    struct ipc_port *right_port = right->port;
    mach_port_name_t notify = rcv->pdrequest;
    rcv->pdrequest = 0;
    mach_port_name_t kname;
    if (ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], right, &kname) != KERN_SUCCESS) {
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], notify);
        return true; /* the right is gone: out of names */
    }
    kern_notify_queue_add(notify, MACH_NOTIFY_PORT_DESTROYED, kname);
    ipc_janitor_escrow(right_port, notify);
    return true;
}

mach_msg_return_t kern_notify_port_destroyed_copy(struct ipc_port *port,
                                                  struct ipc_port *notify, uint64_t nonce,
                                                  int fd, const void *prefix, size_t prefix_len,
                                                  size_t max, bool with_pending)
{
    struct ipc_port_rcv *rcv = port->rcv;
    /* The message kern_notify_deliver would send, the right copied in. */
    struct kern_notify_msg msg = kern_notify_msg_make(MACH_NOTIFY_PORT_DESTROYED, 0, 0);
    struct kright right = {.kind = KRIGHT_RECEIVE, .port = port};
    struct kmsg kmsg = {
        .hdr = msg.head,
        .dest = {.kind = KRIGHT_SEND_ONCE, .port = notify, .nonce = nonce},
        .reply = {.kind = KRIGHT_NONE},
        .body = (const char *)&msg + sizeof msg.head,
        .body_size = sizeof msg - sizeof msg.head,
        .nrights = 1,
        .rights = &right,
    };
    /* Without the request it honours, as kern_notify_port_destroyed_right
     * sends the right. */
    mach_port_name_t request = rcv->pdrequest;
    rcv->pdrequest = 0;
    mach_msg_return_t mr = wire_send_copy(fd, prefix, prefix_len, &kmsg, max, with_pending);
    rcv->pdrequest = request;
    return mr;
}

/* Returns true when no send right to PORT (receive right here) exists. */
static bool kern_no_senders_now(struct ipc_port *port)
{
    struct pollfd pfd = {.fd = port->rcv->count_rfd, .events = 0};
    return port->count_wfd < 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLHUP);
}

static kern_return_t kern_request_no_senders(struct ipc_entry *entry,
                                             mach_port_mscount_t sync,
                                             mach_port_t notify, mach_port_t *previous)
{
    if (!(entry->type & MACH_PORT_TYPE_RECEIVE)) {
        return KERN_INVALID_RIGHT;
    }
    struct ipc_port *port = entry->port;
    struct ipc_port_rcv *rcv = port->rcv;
    *previous = rcv->nsrequest;
    rcv->nsrequest = MACH_PORT_VALID(notify) ? notify : 0;
    rcv->ns_armed = false;
    if (rcv->nsrequest == 0) {
        ipc_watch_no_senders_stop(port);
    } else if (!kern_no_senders_now(port)) {
        rcv->ns_armed = true;
        ipc_watch_no_senders(port);
    } else if (sync <= rcv->mscount) {
        rcv->ns_armed = true;
        kern_notify_no_senders(port); /* GNU Mach: at once */
    }
    ipc_janitor_receive_changed(port);
    return KERN_SUCCESS;
}

static kern_return_t kern_request_dead_name(struct ipc_space *space, struct ipc_entry *entry,
                                            mach_port_mscount_t sync, mach_port_t notify,
                                            mach_port_t *previous)
{
    ipc_right_check(space, entry, true);
    if (entry->type & MACH_PORT_TYPE_DEAD_NAME) {
        if (sync == 0) {
            return KERN_INVALID_ARGUMENT;
        }
        /* Already dead: notified at once. */
        if (MACH_PORT_VALID(notify)) {
            entry->dnrequest = notify;
            kern_notify_entry_dead(entry);
        }
        return KERN_SUCCESS;
    }
    if (!(entry->type & (MACH_PORT_TYPE_SEND | MACH_PORT_TYPE_RECEIVE |
                         MACH_PORT_TYPE_SEND_ONCE))) {
        return KERN_INVALID_RIGHT; /* port sets */
    }
    struct ipc_port *port = entry->port;
    *previous = entry->dnrequest;
    if (entry->dnrequest != 0) {
        port->dnrequests--;
    }
    entry->dnrequest = MACH_PORT_VALID(notify) ? notify : 0;
    if (entry->dnrequest != 0) {
        port->dnrequests++;
        if (port->rcv == NULL) {
            ipc_watch_port(port);
        }
    }
    return KERN_SUCCESS;
}

kern_return_t kern_mach_port_request_notification(mach_port_t task, mach_port_name_t name,
                                                  mach_msg_id_t id, mach_port_mscount_t sync,
                                                  mach_port_t notify, mach_port_t *previous,
                                                  mach_msg_type_name_t *previousPoly)
{
    *previous = MACH_PORT_NULL;
    *previousPoly = MACH_MSG_TYPE_PORT_SEND_ONCE;
    if (notify == MACH_PORT_DEAD) {
        return KERN_INVALID_CAPABILITY;
    }
    if (id != MACH_NOTIFY_NO_SENDERS && id != MACH_NOTIFY_DEAD_NAME &&
        id != MACH_NOTIFY_PORT_DESTROYED) {
        return KERN_INVALID_VALUE;
    }
    if (id == MACH_NOTIFY_PORT_DESTROYED && sync != 0) {
        return KERN_INVALID_VALUE;
    }
    ipc_lock();
    if (!kern_is_task(task)) {
        ipc_unlock();
        return KERN_INVALID_TASK;
    }
    struct ipc_space *space = &ipc_spaces[SPACE_USER];
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    kern_return_t kr;
    if (entry == NULL) {
        kr = KERN_INVALID_NAME;
    } else if (id == MACH_NOTIFY_NO_SENDERS) {
        kr = kern_request_no_senders(entry, sync, notify, previous);
    } else if (id == MACH_NOTIFY_PORT_DESTROYED) {
        if (!(entry->type & MACH_PORT_TYPE_RECEIVE)) {
            kr = KERN_INVALID_RIGHT;
        } else {
            struct ipc_port *port = entry->port;
            *previous = port->rcv->pdrequest;
            port->rcv->pdrequest = MACH_PORT_VALID(notify) ? notify : 0;
            /* Listed, if it was not yet, so that machd can honour the
             * request should this task die (which escrows it). */
            if (port->rcv->janitor_slot == 0 && port->rcv->pdrequest != 0) {
                ipc_janitor_keep_receive(port);
            } else {
                ipc_janitor_escrow(port, ipc_janitor_own_request(port->rcv));
            }
            kr = KERN_SUCCESS;
        }
    } else {
        kr = kern_request_dead_name(space, entry, sync, notify, previous);
    }
    ipc_unlock();
    kern_notify_flush();
    return kr;
}

void kern_notify_watch(mach_port_name_t name, int kotype, mach_port_name_t *notify_kname)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    struct ipc_port *port;
    if (*notify_kname == MACH_PORT_NULL &&
        kern_object_create(kotype, &port, notify_kname) != KERN_SUCCESS) {
        *notify_kname = MACH_PORT_NULL;
        return;
    }
    struct kright once;
    mach_port_name_t notify;
    if (ipc_right_copyin(kspace, *notify_kname, MACH_MSG_TYPE_MAKE_SEND_ONCE, false, &once) ==
            KERN_SUCCESS &&
        ipc_right_copyout(kspace, &once, &notify) == KERN_SUCCESS &&
        kern_notify_request_dead_name_kernel(name, notify) != KERN_SUCCESS) {
        (void)ipc_right_dealloc(kspace, notify);
    }
}

kern_return_t kern_notify_request_dead_name_kernel(mach_port_name_t name,
                                                   mach_port_name_t notify)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    struct ipc_entry *entry = ipc_entry_lookup(kspace, name);
    if (entry == NULL) {
        return KERN_INVALID_NAME;
    }
    mach_port_t previous = MACH_PORT_NULL;
    kern_return_t kr = kern_request_dead_name(kspace, entry, 1, notify, &previous);
    if (MACH_PORT_VALID(previous)) {
        (void)ipc_right_dealloc(kspace, previous);
    }
    return kr;
}
