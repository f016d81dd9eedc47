/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_msg.h"

#include <mach/notify.h>
#include <signal.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdlib.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipc_janitor.h"
#include "ipc_kmsg.h"
#include "ipc_port.h"
#include "ipc_pset.h"
#include "ipc_space.h"
#include "ipc_watch.h"
#include "ipc_wire.h"
#include "kern.h"
#include "kern_control.h"
#include "kern_notify.h"
#include "kern_trap_frame.h"
#include "linux.h"

extern atomic_uint kern_fork_generation;

int ipc_wake_signal(void)
{
    return SIGRTMAX - 1;
}

/* The calling thread's id, without a system call per receive.  The cache
 * is dropped by fork() (the child's thread has a new id). */
static pid_t ipc_self_tid(void)
{
    static __thread pid_t tid;
    static __thread unsigned generation;
    unsigned now = atomic_load(&kern_fork_generation);
    if (tid == 0 || generation != now) {
        tid = (pid_t)syscall(SYS_gettid);
        generation = now;
    }
    return tid;
}

/* Takes the dequeue lock of every receive right KMSG moves, interrupting
 * a local thread blocked on one, so that nobody here dequeues from a port
 * that now belongs to another task.  Expects [G]; returns with [G]. */
static void ipc_msg_lock_moving(struct kmsg *kmsg, struct ipc_port_rcv **rcvs,
                                unsigned *n)
{
    *n = 0;
    for (unsigned i = 0; i < kmsg->nrights; i++) {
        struct kright *right = &kmsg->rights[i];
        if (right->kind == KRIGHT_RECEIVE && right->port->rcv != NULL) {
            rcvs[(*n)++] = ipc_port_rcv_enter(right->port);
        }
    }
    if (*n == 0) {
        return;
    }
    ipc_unlock();
    for (unsigned i = 0; i < *n; i++) {
        while (!futex_lock_try(&rcvs[i]->rlock)) {
            pid_t waiter = atomic_load(&rcvs[i]->waiter);
            if (waiter != 0) {
                syscall(SYS_tgkill, getpid(), waiter, ipc_wake_signal());
            }
            usleep(200);
        }
    }
    ipc_lock();
}

static void ipc_msg_unlock_moving(struct ipc_port_rcv **rcvs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        futex_lock_release(&rcvs[i]->rlock);
        ipc_port_rcv_leave(rcvs[i]);
    }
}

/* A message left queued by MACH_RCV_LARGE goes with its receive right,
 * ahead of the queue (ipc_wire.h): the receive rights it carries
 * are no longer listed as this task's before they leave (a send that
 * fails lists them again as it puts the right back, ipc_space.c).
 * Expects [G]. */
static void ipc_msg_pending_leave(struct kmsg *kmsg)
{
    for (unsigned i = 0; i < kmsg->nrights; i++) {
        struct kright *right = &kmsg->rights[i];
        struct ipc_port_rcv *rcv = right->kind == KRIGHT_RECEIVE ? right->port->rcv : NULL;
        if (rcv != NULL && rcv->pending != NULL) {
            ipc_janitor_unkeep_kept(rcv->pending);
        }
    }
}

/* Keeps KMSG, about to be kept, from nesting more than BUDGET kept
 * messages, itself included: the message kept on a receive right it
 * carries BUDGET deep goes back to the tail of its own queue instead
 * (wire_pending_requeue), so that no move nests deeper than a receiver
 * takes (WIRE_PENDING_DEPTH).  Expects [G]. */
static void ipc_msg_pending_bound(struct kmsg *kmsg, unsigned budget)
{
    for (unsigned i = 0; i < kmsg->nrights; i++) {
        struct kright *right = &kmsg->rights[i];
        struct ipc_port_rcv *rcv = right->kind == KRIGHT_RECEIVE ? right->port->rcv : NULL;
        if (rcv == NULL || rcv->pending == NULL) {
            continue;
        }
        if (budget > 1) {
            ipc_msg_pending_bound(rcv->pending, budget - 1);
            continue;
        }
        struct kmsg *kept = rcv->pending;
        rcv->pending = NULL;
        wire_pending_requeue(right->port, kept);
    }
}

/* What a thread waits for after sending a request: a reply through the
 * send-once right NONCE to REPLY, from a server receiving on DEST.  DEST
 * is referenced while set; REPLY is only compared with the port received
 * on (which the receive itself holds). */
struct ipc_rpc_wait {
    struct ipc_port *reply, *dest;
    uint64_t nonce;
    struct ipc_watch_waiter waiter; /* linked in DEST while set */
};

/* Starts watching for DEST's death on behalf of the calling thread. */
static void ipc_rpc_wait_begin(struct ipc_rpc_wait *wait)
{
    wait->waiter.tid = ipc_self_tid();
    ipc_watch_wait_begin(wait->dest, &wait->waiter);
}

static void ipc_rpc_wait_clear(struct ipc_rpc_wait *wait)
{
    if (wait->dest != NULL) {
        ipc_watch_wait_end(wait->dest, &wait->waiter);
        ipc_port_unref(wait->dest);
    }
    *wait = (struct ipc_rpc_wait){0};
}

/* Gives KMSG's lent regions (wire_region_release) mappings of their own,
 * before the receive buffer they lie in is reused.  Returns false when
 * out of memory. */
static bool ipc_msg_own_regions(struct kmsg *kmsg)
{
    for (unsigned i = 0; i < kmsg->nool; i++) {
        struct kool *ool = &kmsg->ool[i];
        if (!ool->lent) {
            continue;
        }
        void *p = mmap(NULL, ool->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED) {
            return false;
        }
        memcpy(p, ool->addr, ool->size);
        *ool = (struct kool){.addr = p, .size = ool->size, .dealloc = true, .memfd = -1};
    }
    return true;
}

/* Makes KMSG (whose body may lie in a per-thread buffer) the next
 * message of PORT, whose receive state is RCV, taking it over.  Returns
 * false, KMSG still the caller's, when out of memory.  Expects [G] and
 * the port's rlock. */
static bool ipc_msg_set_pending(struct ipc_port *port, struct ipc_port_rcv *rcv,
                                struct kmsg *kmsg)
{
    struct kmsg *copy = malloc(sizeof *copy);
    char *body = malloc(kmsg->body_size + 1);
    if (copy == NULL || body == NULL || !ipc_msg_own_regions(kmsg)) {
        free(copy);
        free(body);
        return false;
    }
    memcpy(body, kmsg->body, kmsg->body_size);
    free(kmsg->body_owned); /* (a message taken from pending and kept again) */
    *copy = *kmsg;
    copy->body = body;
    copy->body_owned = body;
    ipc_msg_pending_bound(copy, WIRE_PENDING_DEPTH);
    rcv->pending = copy;
    if (rcv->pset != NULL) {
        rcv->pset->npending++;
    }
    /* The message lies in this task now, not in a queue machd could
     * destroy: a task killed before it takes the message again has its
     * rights destroyed by machd. */
    ipc_janitor_keep_kept(copy);
    ipc_janitor_pending_changed(port);
    return true;
}

/* Keeps KMSG as the next message of PORT (MACH_RCV_LARGE), or destroys
 * it when out of memory.  Expects [G] and the port's rlock. */
static void ipc_msg_keep_pending(struct ipc_port *port, struct ipc_port_rcv *rcv,
                                 struct kmsg *kmsg)
{
    if (!ipc_msg_set_pending(port, rcv, kmsg)) {
        ipc_kmsg_destroy(kmsg);
    }
}

/* Delivers KMSG, a reply of this task's kernel, straight to its
 * destination when that port's receive right is here and nobody waits
 * on it: a kernel call served in the calling thread (mach_port_deallocate
 * on one's own task, say) then costs no socket round trip.  Only a
 * message carrying nothing but data goes this way, to a port outside any
 * set whose queue is empty (so that nothing overtakes an older message)
 * and whose dequeue lock is free (so that no receiver sleeps on the
 * socket): the message becomes the port's pending one, which the next
 * receive takes first.  Returns whether it did; then the send-once right
 * is used and KMSG holds nothing.  Expects [G]. */
static bool ipc_msg_deliver_local(struct kmsg *kmsg)
{
    struct ipc_port *dest = kmsg->dest.port;
    struct ipc_port_rcv *rcv = dest->rcv;
    if (kmsg->dest.kind != KRIGHT_SEND_ONCE || kmsg->reply.kind != KRIGHT_NONE ||
        kmsg->nrights > 0 || kmsg->nool > 0 || rcv == NULL || rcv->space != SPACE_USER ||
        rcv->pset != NULL || rcv->pending != NULL || atomic_load(&rcv->orphan) ||
        atomic_load(&rcv->leaving) || !futex_lock_try(&rcv->rlock)) {
        return false;
    }
    /* As a message off the wire: the header's bits, size and id (its
     * number comes when it is taken). */
    struct kmsg received = {.hdr = {.msgh_bits = kmsg->hdr.msgh_bits,
                                    .msgh_size = kmsg->hdr.msgh_size,
                                    .msgh_id = kmsg->hdr.msgh_id},
                            .body = kmsg->body, .body_size = kmsg->body_size};
    /* Whatever waits in the socket of a port that never had a send right
     * and whose one live send-once right is this message's would be
     * dropped when received (its nonce is spent): it is older but is no
     * message, and need not be asked for (a MIG reply port). */
    int queued = -1;
    bool alone = !rcv->send_made && rcv->sorights == 1;
    bool ok = rcv->pending == NULL && ipc_port_rcv_has_nonce(rcv, kmsg->dest.nonce) &&
              (alone || (ioctl(rcv->recv_fd, SIOCINQ, &queued) == 0 && queued == 0)) &&
              ipc_msg_set_pending(dest, rcv, &received);
    if (ok) {
        (void)ipc_port_rcv_consume_nonce(rcv, kmsg->dest.nonce);
        ipc_janitor_release(kmsg->dest.nonce);
        ipc_port_unref(dest);
        kmsg->dest = (struct kright){.kind = KRIGHT_NONE};
    }
    futex_lock_release(&rcv->rlock);
    return ok;
}

/* Sends MSG.  With KEEP_LOCKED (a receive follows), a successful send
 * may return with [G] still held, saying so in *LOCKED; WAIT (or NULL)
 * learns whether the message was a request whose reply comes back to
 * this task. */
static mach_msg_return_t ipc_msg_send(int space_id, mach_msg_header_t *msg,
                                      mach_msg_option_t option,
                                      mach_msg_size_t send_size,
                                      mach_msg_timeout_t timeout, bool keep_locked,
                                      bool *locked, struct ipc_rpc_wait *wait)
{
    *locked = false;
    if (send_size < sizeof(mach_msg_header_t) || send_size % 8 != 0) {
        return MACH_SEND_MSG_TOO_SMALL;
    }
    struct ipc_space *space = &ipc_spaces[space_id];
    mach_port_name_t dest_name = (mach_port_name_t)msg->msgh_remote_port;
    mach_port_name_t reply_name = (mach_port_name_t)msg->msgh_local_port;
    struct kmsg kmsg = {0};

    ipc_lock();
    mach_msg_return_t mr = ipc_kmsg_copyin_header(space, msg, &kmsg);
    if (mr != MACH_MSG_SUCCESS) {
        ipc_unlock();
        return mr;
    }
    kmsg.hdr.msgh_size = send_size;
    kmsg.body = (const char *)(msg + 1);
    kmsg.body_size = send_size - sizeof(mach_msg_header_t);
    mr = ipc_kmsg_copyin_body(space, &kmsg);
    if (mr != MACH_MSG_SUCCESS) {
        ipc_unlock();
        return mr;
    }

    struct ipc_port *dest = kmsg.dest.port;
    if (dest->rcv != NULL && dest->rcv->space == SPACE_KERNEL &&
        dest->rcv->kobject_type != IKOT_NONE) {
        /* A kernel object of this task: served synchronously, as GNU Mach
         * serves its kernel ports in the sender's context. */
        return kern_deliver(&kmsg); /* unlocks */
    }

    struct ipc_port_rcv *moving[64];
    unsigned nmoving = 0;
    if (kmsg.nrights > 0) {
        unsigned nreceive = 0;
        for (unsigned i = 0; i < kmsg.nrights; i++) {
            nreceive += kmsg.rights[i].kind == KRIGHT_RECEIVE;
        }
        if (nreceive > 64) {
            ipc_kmsg_undo_copyin(space, &kmsg, dest_name, reply_name);
            ipc_kmsg_destroy(&kmsg);
            ipc_unlock();
            return MACH_SEND_NO_BUFFER;
        }
        ipc_msg_lock_moving(&kmsg, moving, &nmoving);
        ipc_msg_pending_leave(&kmsg);
    }
    struct ipc_rpc_wait request = {0};
    if (wait != NULL && kmsg.reply.kind == KRIGHT_SEND_ONCE && kmsg.reply.port->rcv != NULL &&
        dest->rcv == NULL) {
        request = (struct ipc_rpc_wait){
            .reply = kmsg.reply.port, .dest = dest, .nonce = kmsg.reply.nonce};
        ipc_port_ref(request.dest);
    }
    if (space_id == SPACE_KERNEL && ipc_msg_deliver_local(&kmsg)) {
        mr = MACH_MSG_SUCCESS;
    } else {
        mr = wire_send(&kmsg, option, timeout);
    }
    if (mr == MACH_MSG_SUCCESS && wait != NULL && request.dest != NULL) {
        *wait = request;
        ipc_rpc_wait_begin(wait);
    } else if (request.dest != NULL) {
        ipc_port_unref(request.dest);
    }
    if (mr != MACH_MSG_SUCCESS) {
        ipc_kmsg_undo_copyin(space, &kmsg, dest_name, reply_name);
        if (mr == MACH_SEND_INVALID_DEST) {
            struct ipc_entry *entry = ipc_entry_lookup(space, dest_name);
            if (entry != NULL) {
                ipc_right_check(space, entry, false);
            }
        }
    }
    ipc_kmsg_destroy(&kmsg);
    ipc_msg_unlock_moving(moving, nmoving);
    if (keep_locked && mr == MACH_MSG_SUCCESS) {
        *locked = true;
    } else {
        ipc_unlock();
    }
    return mr;
}

/* Writes the header GNU Mach returns for a message too large to receive
 * (the message itself is gone). */
static void ipc_msg_too_large_header(struct kmsg *kmsg, mach_port_name_t local,
                                     mach_msg_header_t *msg)
{
    mach_msg_bits_t bits = kmsg->hdr.msgh_bits;
    msg->msgh_bits = MACH_MSGH_BITS_OTHER(bits) |
                     MACH_MSGH_BITS(ipc_received_type(MACH_MSGH_BITS_LOCAL(bits)),
                                    ipc_received_type(MACH_MSGH_BITS_REMOTE(bits)));
    msg->msgh_size = kmsg->hdr.msgh_size;
    msg->msgh_remote_port_do_not_use =
        kmsg->reply.kind == KRIGHT_DEAD ? MACH_PORT_DEAD : MACH_PORT_NULL;
    msg->msgh_protected_payload = local;
    msg->msgh_seqno = kmsg->hdr.msgh_seqno;
    msg->msgh_id = kmsg->hdr.msgh_id;
}

/* Takes the message MACH_RCV_LARGE left at the head of PORT, whose
 * receive state is RCV, and numbers it: GNU Mach numbers a message when
 * it leaves the queue.  Expects [G] and the port's rlock. */
static void ipc_msg_take_pending(struct ipc_port *port, struct ipc_port_rcv *rcv,
                                 struct kmsg *kmsg)
{
    *kmsg = *rcv->pending;
    kmsg->hdr.msgh_seqno = rcv->seqno++;
    free(rcv->pending);
    rcv->pending = NULL;
    if (rcv->pset != NULL) {
        rcv->pset->npending--;
    }
    ipc_janitor_pending_changed(port);
}

/* For a thread awaiting WAIT's reply on PORT, when the watchdog says the
 * server's port died: any reply it sent is already queued; if none is,
 * the reply right died with the server, and the thread gets the
 * MACH_NOTIFY_SEND_ONCE that GNU Mach sends when a send-once right is
 * destroyed (MIG stubs turn it into MIG_SERVER_DIED).  Returns
 * MACH_MSG_SUCCESS with *KMSG and [G] held, or MACH_RCV_IN_PROGRESS
 * (keep waiting) without [G].  Expects the port's rlock. */
static mach_msg_return_t ipc_msg_check_server(struct ipc_port *port,
                                              struct ipc_rpc_wait *wait,
                                              struct kmsg *kmsg)
{
    if (wait->reply != port) {
        return MACH_RCV_IN_PROGRESS;
    }
    ipc_lock();
    if (ipc_port_is_dead(wait->dest, true)) {
        ipc_watch_port_died(wait->dest);
    }
    bool gone = atomic_load(&wait->dest->server_gone);
    ipc_unlock();
    if (!gone) {
        return MACH_RCV_IN_PROGRESS;
    }
    if (wire_recv(port, 0, true, kmsg) == MACH_MSG_SUCCESS) {
        return MACH_MSG_SUCCESS; /* the server answered before it died */
    }
    static const char empty[1];
    ipc_lock();
    if (!ipc_port_consume_nonce(port, wait->nonce)) {
        ipc_unlock(); /* the right was used after all: its message comes */
        return MACH_RCV_IN_PROGRESS;
    }
    *kmsg = (struct kmsg){
        .hdr = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
                .msgh_size = sizeof(mach_msg_header_t),
                .msgh_seqno = port->rcv->seqno++,
                .msgh_id = MACH_NOTIFY_SEND_ONCE},
        .body = empty,
    };
    return MACH_MSG_SUCCESS;
}

/* Milliseconds left before DEADLINE (0 = none: TIMEOUT_MS as given). */
static int ipc_msg_time_left(int timeout_ms, uint64_t deadline)
{
    if (deadline == 0) {
        return timeout_ms;
    }
    uint64_t now = linux_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* Lets go of a port a receiver had taken: its dequeue lock, the pinned
 * receive state, the reference.  Expects [G]. */
static void ipc_msg_release_port(struct ipc_port *port, struct ipc_port_rcv *rcv)
{
    futex_lock_release(&rcv->rlock);
    ipc_port_rcv_leave(rcv);
    ipc_port_unref(port);
}

/* Hands the outcome MR of a dequeue from PORT (KMSG when MR is success)
 * to the receiver: into MSG, or its size when too large.  Expects [G]
 * and the port's rlock, entered RCV and a reference to PORT; releases
 * the last three and keeps [G]. */
static mach_msg_return_t ipc_msg_deliver(int space_id, mach_msg_header_t *msg,
                                         mach_msg_option_t option,
                                         mach_msg_size_t rcv_size, struct ipc_port *port,
                                         struct ipc_port_rcv *rcv, struct kmsg *kmsg,
                                         mach_msg_return_t mr)
{
    if (mr == MACH_MSG_SUCCESS && rcv->orphan) {
        ipc_kmsg_destroy(kmsg);
        mr = MACH_RCV_PORT_DIED;
    }
    if (mr == MACH_MSG_SUCCESS) {
        mach_port_name_t local = port->name[space_id];
        const uint64_t *payload = rcv->has_payload ? &rcv->payload : NULL;
        if (kmsg->hdr.msgh_size > rcv_size) {
            if (option & MACH_RCV_LARGE) {
                /* At the head of the queue still, as in GNU Mach: it
                 * gives its number back, and gets one when taken. */
                msg->msgh_size = kmsg->hdr.msgh_size;
                rcv->seqno--;
                ipc_msg_keep_pending(port, rcv, kmsg);
            } else {
                ipc_msg_too_large_header(kmsg, local, msg);
                ipc_kmsg_destroy(kmsg);
            }
            mr = MACH_RCV_TOO_LARGE;
        } else {
            mr = ipc_kmsg_copyout(&ipc_spaces[space_id], kmsg, local, payload, msg);
            ipc_kmsg_destroy(kmsg);
        }
    }
    ipc_msg_release_port(port, rcv);
    return mr;
}

/* Receives on one port (not in a set).  Expects [G], returns with it. */
static mach_msg_return_t ipc_msg_receive_port(int space_id, mach_msg_header_t *msg,
                                              mach_msg_option_t option,
                                              mach_msg_size_t rcv_size,
                                              struct ipc_port *port, int timeout_ms,
                                              struct ipc_rpc_wait *wait)
{
    ipc_port_ref(port);
    struct ipc_port_rcv *rcv = ipc_port_rcv_enter(port);
    ipc_unlock();

    uint64_t deadline = timeout_ms > 0 ? linux_now_ms() + (uint64_t)timeout_ms : 0;
    bool interruptible = (option & MACH_RCV_INTERRUPT) != 0;
    if (wait != NULL && wait->reply != port) {
        wait = NULL; /* the reply goes elsewhere: an ordinary receive */
    }
    /* Set once the reply right is known to have been used: its message
     * is coming, waited for like any other. */
    bool reply_coming = false;
    futex_lock_acquire(&rcv->rlock);
    struct kmsg kmsg;
    mach_msg_return_t mr;
    /* Each way out of this loop holds [G]. */
    for (;;) {
        if (atomic_load(&rcv->orphan) || atomic_load(&rcv->leaving)) {
            ipc_lock();
            mr = MACH_RCV_PORT_DIED;
            break;
        }
        if (rcv->pending != NULL) { /* [R] */
            ipc_lock();
            ipc_msg_take_pending(port, rcv, &kmsg);
            mr = MACH_MSG_SUCCESS;
            break;
        }
        int wait_ms = ipc_msg_time_left(timeout_ms, deadline);
        bool server_gone = wait != NULL && wait->dest != NULL && !reply_coming &&
                           atomic_load(&wait->dest->server_gone);
        mr = MACH_RCV_IN_PROGRESS;
        if (!server_gone) {
            atomic_store(&rcv->waiter, ipc_self_tid());
            mr = wire_recv(port, wait_ms, true, &kmsg);
            atomic_store(&rcv->waiter, 0);
        }
        if (server_gone || (mr == MACH_RCV_INTERRUPTED && wait != NULL && wait->dest != NULL &&
                            !reply_coming && atomic_load(&wait->dest->dead))) {
            mach_msg_return_t checked = ipc_msg_check_server(port, wait, &kmsg);
            if (checked == MACH_MSG_SUCCESS) {
                mr = checked;
            } else if (atomic_load(&wait->dest->server_gone)) {
                /* Gone, yet the right was used: its message comes. */
                reply_coming = true;
                mr = checked;
            }
            /* Otherwise the port's receiver still owes us the reply: an
             * interruption is handled as on a live port. */
        }
        if (mr == MACH_MSG_SUCCESS) {
            break;
        }
        if (mr == MACH_RCV_IN_PROGRESS) {
            continue;
        }
        if (mr != MACH_RCV_INTERRUPTED || interruptible || kern_abort_take()) {
            ipc_lock();
            break;
        }
        if (kern_park_wanted()) {
            /* Stopped by thread_suspend: at a clean point, without the
             * port's dequeue lock, then on with the receive (unless
             * thread_abort asked while it was stopped). */
            futex_lock_release(&rcv->rlock);
            futex_lock_acquire(&rcv->rlock);
            if (kern_abort_take()) {
                ipc_lock();
                break;
            }
        }
    }
    return ipc_msg_deliver(space_id, msg, option, rcv_size, port, rcv, &kmsg, mr);
}

/* Takes a message left by MACH_RCV_LARGE on a member of PSET, if any:
 * returns the member with its rlock held, entered and referenced.
 * Expects [G], returns with it. */
static struct ipc_port *ipc_msg_pset_pending(struct ipc_pset *pset, struct kmsg *kmsg,
                                             struct ipc_port_rcv **rcvp)
{
    uint64_t key;
    void *value;
    for (size_t c = 0; pset->npending > 0 && u64map_next(&pset->members, &c, &key, &value);) {
        struct ipc_port *port = value;
        struct ipc_port_rcv *rcv = port->rcv;
        if (rcv->pending != NULL && futex_lock_try(&rcv->rlock)) {
            ipc_port_ref(port);
            *rcvp = ipc_port_rcv_enter(port);
            ipc_msg_take_pending(port, rcv, kmsg);
            return port;
        }
    }
    return NULL;
}

/* Receives on a port set: from whichever member has a message, and only
 * one receiver gets each message.  Expects [G], returns with it. */
static mach_msg_return_t ipc_msg_receive_pset(int space_id, mach_msg_header_t *msg,
                                              mach_msg_option_t option,
                                              mach_msg_size_t rcv_size,
                                              struct ipc_pset *pset, int timeout_ms)
{
    ipc_pset_ref(pset);
    uint64_t deadline = timeout_ms > 0 ? linux_now_ms() + (uint64_t)timeout_ms : 0;
    bool interruptible = (option & MACH_RCV_INTERRUPT) != 0;
    mach_msg_return_t mr;
    for (;;) {
        /* [G] held here. */
        if (pset->dead) {
            mr = MACH_RCV_PORT_DIED;
            break;
        }
        struct kmsg kmsg;
        struct ipc_port_rcv *rcv;
        struct ipc_port *port = ipc_msg_pset_pending(pset, &kmsg, &rcv);
        if (port != NULL) {
            mr = ipc_msg_deliver(space_id, msg, option, rcv_size, port, rcv, &kmsg,
                                 MACH_MSG_SUCCESS);
            break;
        }
        ipc_unlock();
        struct epoll_event ev;
        int n = epoll_wait(pset->epfd, &ev, 1, ipc_msg_time_left(timeout_ms, deadline));
        ipc_lock();
        if (n < 0) {
            if (errno == EINTR && !interruptible && !kern_abort_take()) {
                continue;
            }
            mr = MACH_RCV_INTERRUPTED;
            break;
        }
        if (n == 0) {
            mr = MACH_RCV_TIMED_OUT;
            break;
        }
        port = ev.data.u64 != 0 ? u64map_lookup(&pset->members, ev.data.u64) : NULL;
        if (port == NULL || !futex_lock_try(&port->rcv->rlock)) {
            continue; /* gone, or another receiver is on it */
        }
        ipc_port_ref(port);
        rcv = ipc_port_rcv_enter(port);
        ipc_unlock();
        mr = wire_recv(port, 0, true, &kmsg);
        if (mr == MACH_MSG_SUCCESS) {
            mr = ipc_msg_deliver(space_id, msg, option, rcv_size, port, rcv, &kmsg, mr);
            break;
        }
        /* Another receiver took it first. */
        ipc_lock();
        ipc_msg_release_port(port, rcv);
    }
    ipc_pset_unref(pset);
    return mr;
}

/* Receives into MSG; LOCKED says whether the caller holds [G]; WAIT (or
 * NULL) is the request this receive awaits the reply of, cleared here. */
static mach_msg_return_t ipc_msg_receive(int space_id, mach_msg_header_t *msg,
                                         mach_msg_option_t option,
                                         mach_msg_size_t rcv_size,
                                         mach_port_name_t rcv_name,
                                         mach_msg_timeout_t timeout, bool locked,
                                         struct ipc_rpc_wait *wait)
{
    struct ipc_space *space = &ipc_spaces[space_id];
    if (!locked) {
        ipc_lock();
    }
    int timeout_ms = (option & MACH_RCV_TIMEOUT) ? (int)timeout : -1;
    struct ipc_entry *entry = ipc_entry_lookup(space, rcv_name);
    mach_msg_return_t mr;
    if (entry != NULL && (entry->type & MACH_PORT_TYPE_PORT_SET)) {
        mr = ipc_msg_receive_pset(space_id, msg, option, rcv_size, entry->pset, timeout_ms);
    } else if (entry == NULL || !(entry->type & MACH_PORT_TYPE_RECEIVE)) {
        mr = MACH_RCV_INVALID_NAME;
    } else if (entry->port->rcv->pset != NULL) {
        mr = MACH_RCV_IN_SET;
    } else {
        mr = ipc_msg_receive_port(space_id, msg, option, rcv_size, entry->port, timeout_ms,
                                  wait);
    }
    if (wait != NULL) {
        ipc_rpc_wait_clear(wait);
    }
    ipc_unlock();
    return mr;
}

static atomic_ulong ipc_sent, ipc_received;

unsigned long ipc_messages_sent(void)
{
    return atomic_load_explicit(&ipc_sent, memory_order_relaxed);
}

unsigned long ipc_messages_received(void)
{
    return atomic_load_explicit(&ipc_received, memory_order_relaxed);
}

mach_msg_return_t ipc_mach_msg(int space_id, mach_msg_header_t *msg,
                               mach_msg_option_t option,
                               mach_msg_size_t send_size,
                               mach_msg_size_t rcv_size,
                               mach_port_name_t rcv_name,
                               mach_msg_timeout_t timeout)
{
    bool locked = false;
    bool rpc = (option & (MACH_SEND_MSG | MACH_RCV_MSG)) == (MACH_SEND_MSG | MACH_RCV_MSG);
    struct ipc_rpc_wait wait = {0};
    if (option & MACH_SEND_MSG) {
        mach_msg_return_t mr = ipc_msg_send(space_id, msg, option, send_size, timeout,
                                            rpc, &locked, rpc ? &wait : NULL);
        if (mr != MACH_MSG_SUCCESS) {
            return mr;
        }
        atomic_fetch_add_explicit(&ipc_sent, 1, memory_order_relaxed);
    }
    if (option & MACH_RCV_MSG) {
        mach_msg_return_t mr = ipc_msg_receive(space_id, msg, option, rcv_size, rcv_name,
                                               timeout, locked, rpc ? &wait : NULL);
        if (mr == MACH_MSG_SUCCESS) {
            atomic_fetch_add_explicit(&ipc_received, 1, memory_order_relaxed);
        }
        return mr;
    }
    return MACH_MSG_SUCCESS;
}

/* mach_msg, mach_msg_trap: their entry point is kern_trap_entry.c's,
 * which has counted the trap. */
mach_msg_return_t ipc_mach_msg_user(mach_msg_header_t *msg, mach_msg_option_t option,
                                    mach_msg_size_t send_size, mach_msg_size_t rcv_size,
                                    mach_port_name_t rcv_name, mach_msg_timeout_t timeout,
                                    mach_port_name_t notify)
{
    (void)notify;
    option &= ~MACH_SEND_ALWAYS; /* GNU Mach's own, for the kernel */
    mach_msg_return_t mr = ipc_mach_msg(SPACE_USER, msg, option, send_size, rcv_size,
                                        rcv_name, timeout);
    kern_notify_flush_pending();
    kern_trap_exit(mr);
    return mr;
}
