/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_notify.h"

#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <mach/notify.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc_janitor.h"
#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_watch.h"
#include "ipc_wire.h"
#include "ipc_wire_format.h"
#include "kern_notify.h"
#include "linux.h"

#define EXPORT __attribute__((visibility("default")))

enum ipc_notify_kind { IPC_NOTIFY_KERN, IPC_NOTIFY_ONCE, IPC_NOTIFY_RAW };

/* A notification waiting in a backlog. */
struct ipc_notify_item {
    struct ipc_notify_item *next;
    enum ipc_notify_kind kind;
    union {
        struct ipc_notify_kern kern; /* IPC_NOTIFY_KERN */
        uint64_t nonce;              /* IPC_NOTIFY_ONCE */
        struct {                     /* IPC_NOTIFY_RAW */
            char *msg;
            size_t len;
            int *fds;                /* copies, owned */
            unsigned nfds;
        } raw;
    };
};

/* The backlog of a destination port.  It exists while notifications wait
 * for the port or one is being sent to it out of [G] (busy); then it is
 * either on the ready list (ready: to be sent by the next flush), or
 * waiting for room (armed: in the epoll set), or being sent (busy).  What
 * waits is charged to it, within its share of the bounds.  Everything is
 * guarded by [G]. */
struct ipc_notify_dest {
    uint64_t ino;                 /* the port's identity */
    struct ipc_port *port;        /* a reference, or NULL (a bare send end) */
    int own_fd;                   /* a copy of the bare send end, or -1 */
    struct ipc_notify_item *head, **tail;
    struct ipc_notify_dest *next_ready;
    bool busy, ready, armed, registered;
    const bool *owner;            /* while busy: its thread's ipc_notify_draining */
    bool handoff;                 /* another thread appended while busy */
    unsigned nwaiting;            /* notifications in its backlog */
    unsigned nfds;                /* descriptors they and own_fd hold */
    bool reported_waiting;        /* a loss to its share of the count was reported */
    bool reported_fds;            /* one to its share of descriptors was */
};

static struct u64map ipc_notify_dests;          /* [G] ino -> struct ipc_notify_dest */
static struct ipc_notify_dest *ipc_notify_ready; /* [G] FIFO of ready backlogs */
static struct ipc_notify_dest **ipc_notify_ready_tail = &ipc_notify_ready; /* [G] */
static unsigned ipc_notify_waiting;   /* [G] notifications in backlogs */
static unsigned ipc_notify_fds;       /* [G] descriptors backlogs hold */
/* [G] The bounds on those (ipc_notify_lower_bounds). */
static unsigned ipc_notify_waiting_max = IPC_NOTIFY_BACKLOG_MAX;
static unsigned ipc_notify_fds_max = IPC_NOTIFY_FDS_MAX;
static bool ipc_notify_reported;      /* [G] a bound was reported */
/* [G] A notification holding more descriptors than a port's share was
 * reported (possible only with bounds lowered, ipc_notify_lower_bounds). */
static bool ipc_notify_reported_oversized;
static int ipc_notify_epoll = -1;     /* [G] send ends waiting for room */
static unsigned ipc_notify_nregistered; /* [G] backlogs in that set */
static unsigned ipc_notify_handoffs;  /* [G] busy backlogs with a handoff */
atomic_bool ipc_notify_pending;
/* This thread is sending a backlog: the mach_msg that sends a kernel
 * notification ends with a flush, which must not nest (the outer loop
 * takes what became ready meanwhile), or the stack would grow with the
 * number of ports waiting. */
static __thread bool ipc_notify_draining;

static int ipc_notify_dest_fd(const struct ipc_notify_dest *d)
{
    return d->port != NULL ? d->port->send_fd : d->own_fd;
}

/* The largest item fits in a port's share of descriptors, beside the
 * copy of its send end: with the bounds in force at start.  Bounds
 * lowered by ipc_notify_lower_bounds may make a share smaller (with 512
 * descriptors, 32: escrows of more than 31 are refused even when nothing
 * waits). */
_Static_assert(IPC_NOTIFY_FDS_MAX / IPC_NOTIFY_SHARES >= WIRE_MAX_FDS + 1,
               "a port's share of descriptors holds a raw message");

/* The descriptors ITEM holds while it waits (its own copies). */
static unsigned ipc_notify_item_fds(const struct ipc_notify_item *item)
{
    return item->kind == IPC_NOTIFY_RAW ? item->raw.nfds : 0;
}

/* The backlog of the port INO, or NULL when nothing waits for it.
 * Expects [G]. */
static struct ipc_notify_dest *ipc_notify_dest_lookup(uint64_t ino)
{
    return u64map_lookup(&ipc_notify_dests, ino);
}

/* Whether one more notification, holding NFDS descriptors, may wait in
 * its port's share: D is the port's backlog, or NULL when it has none
 * yet (BARE: the port is known by a bare send end, whose copy a new
 * backlog holds).  A refusal is said on stderr once per backlog and per
 * share (count, descriptors); one with no backlog (a notification
 * larger than a share, only with lowered bounds) once per process. */
static bool ipc_notify_admit_share(struct ipc_notify_dest *d, bool bare, unsigned nfds)
{
    unsigned waiting = (d != NULL ? d->nwaiting : 0) + 1;
    unsigned fds = (d != NULL ? d->nfds : 0) + nfds + (d == NULL && bare);
    unsigned waiting_share = ipc_notify_waiting_max / IPC_NOTIFY_SHARES;
    unsigned fds_share = ipc_notify_fds_max / IPC_NOTIFY_SHARES;
    if (waiting <= waiting_share && fds <= fds_share) {
        return true;
    }
    if (d == NULL) {
        if (!ipc_notify_reported_oversized) {
            fprintf(stderr,
                    "hell[%d]: a notification holding %u descriptors is more than a port's "
                    "share of them (%u): it is lost\n",
                    (int)getpid(), nfds, fds_share);
            ipc_notify_reported_oversized = true;
        }
    } else if (waiting > waiting_share) {
        if (!d->reported_waiting) {
            fprintf(stderr,
                    "hell[%d]: %u notifications wait for a port that does not read them, its "
                    "share: further ones to it are lost\n",
                    (int)getpid(), d->nwaiting);
            d->reported_waiting = true;
        }
    } else if (!d->reported_fds) {
        fprintf(stderr,
                "hell[%d]: notifications for a port that does not read them hold %u "
                "descriptors, its share: further ones to it holding descriptors are lost\n",
                (int)getpid(), d->nfds);
        d->reported_fds = true;
    }
    return false;
}

/* Whether one more notification, holding NFDS descriptors, may wait in
 * D, the backlog of its port, or NULL when it has none yet (BARE: the
 * port is known by a bare send end, whose copy a new backlog holds):
 * within the port's share of each bound, then within the bounds.  A
 * refusal is said on stderr: for a share as ipc_notify_admit_share
 * says, for the bounds once until the backlogs have emptied by half.
 * Expects [G]; the answer holds only if the caller queues the
 * notification under the same hold of [G]. */
static bool ipc_notify_admit(struct ipc_notify_dest *d, bool bare, unsigned nfds)
{
    if (!ipc_notify_admit_share(d, bare, nfds)) {
        return false;
    }
    nfds += d == NULL && bare;
    if (ipc_notify_waiting < ipc_notify_waiting_max / 2 &&
        ipc_notify_fds < ipc_notify_fds_max / 2) {
        ipc_notify_reported = false;
    }
    if (ipc_notify_waiting >= ipc_notify_waiting_max ||
        ipc_notify_fds + nfds > ipc_notify_fds_max) {
        if (!ipc_notify_reported) {
            fprintf(stderr,
                    "hell[%d]: %u notifications wait for ports that do not read them, "
                    "holding %u descriptors: further ones are lost\n",
                    (int)getpid(), ipc_notify_waiting, ipc_notify_fds);
            ipc_notify_reported = true;
        }
        return false;
    }
    return true;
}

/* ITEM joined D's backlog: charged to D and to the process.  Expects
 * [G]. */
static void ipc_notify_charge(struct ipc_notify_dest *d, const struct ipc_notify_item *item)
{
    unsigned nfds = ipc_notify_item_fds(item);
    d->nwaiting++;
    d->nfds += nfds;
    ipc_notify_waiting++;
    ipc_notify_fds += nfds;
}

/* ITEM left D's backlog (before it is done with).  Expects [G]. */
static void ipc_notify_uncharge(struct ipc_notify_dest *d, const struct ipc_notify_item *item)
{
    unsigned nfds = ipc_notify_item_fds(item);
    d->nwaiting--;
    d->nfds -= nfds;
    ipc_notify_waiting--;
    ipc_notify_fds -= nfds;
}

/* A new backlog for the port INO, which has none: for PORT (a reference
 * is taken), or else for the bare send end BARE_FD (copied).  Returns
 * NULL when out of memory or descriptors.  Expects [G]. */
static struct ipc_notify_dest *ipc_notify_dest_create(uint64_t ino, struct ipc_port *port,
                                                      int bare_fd)
{
    struct ipc_notify_dest *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return NULL;
    }
    *d = (struct ipc_notify_dest){.ino = ino, .port = port, .own_fd = -1, .tail = &d->head};
    if (port == NULL && (d->own_fd = fcntl(bare_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        free(d);
        return NULL;
    }
    if (!u64map_insert(&ipc_notify_dests, ino, d)) {
        linux_close(d->own_fd);
        free(d);
        return NULL;
    }
    if (port != NULL) {
        ipc_port_ref(port);
    } else {
        d->nfds = 1; /* the copy of the send end */
        ipc_notify_fds++;
    }
    return d;
}

/* Closes the backlogs' epoll set, in which nothing is registered, until
 * it is needed again. */
static void ipc_notify_epoll_close(void)
{
    ipc_watch_backlogs_stop(ipc_notify_epoll);
    linux_close(ipc_notify_epoll);
    ipc_notify_epoll = -1;
}

/* Frees D, which holds nothing and is not in use. */
static void ipc_notify_dest_free(struct ipc_notify_dest *d)
{
    if (d->registered) {
        epoll_ctl(ipc_notify_epoll, EPOLL_CTL_DEL, ipc_notify_dest_fd(d), NULL);
        if (--ipc_notify_nregistered == 0) {
            ipc_notify_epoll_close(); /* nothing waits for room */
        }
    }
    u64map_remove(&ipc_notify_dests, d->ino);
    if (d->port != NULL) {
        ipc_port_unref(d->port);
    } else {
        ipc_notify_fds--;
    }
    linux_close(d->own_fd);
    free(d);
}

static void ipc_notify_append(struct ipc_notify_dest *d, struct ipc_notify_item *item)
{
    item->next = NULL;
    *d->tail = item;
    d->tail = &item->next;
    if (d->busy && d->owner != &ipc_notify_draining && !d->handoff) {
        /* Another thread sends D's head: it sends this too, and the
         * flush that follows here waits until it has (a task that
         * exits right after the call that made it must not lose it). */
        d->handoff = true;
        ipc_notify_handoffs++;
        atomic_store(&ipc_notify_pending, true);
    }
}

static struct ipc_notify_item *ipc_notify_pop(struct ipc_notify_dest *d)
{
    struct ipc_notify_item *item = d->head;
    d->head = item->next;
    if (d->head == NULL) {
        d->tail = &d->head;
    }
    return item;
}

static void ipc_notify_push_front(struct ipc_notify_dest *d, struct ipc_notify_item *item)
{
    item->next = d->head;
    if (d->head == NULL) {
        d->tail = &item->next;
    }
    d->head = item;
}

static void ipc_notify_make_ready(struct ipc_notify_dest *d)
{
    d->ready = true;
    d->next_ready = NULL;
    *ipc_notify_ready_tail = d;
    ipc_notify_ready_tail = &d->next_ready;
    atomic_store(&ipc_notify_pending, true);
}

/* Destroys a raw message that cannot be sent as a message queued on a
 * dead task's port is destroyed: through a socket pair of its own,
 * whose receive end ipc_port_destroy_orphans drains. */
static void ipc_notify_raw_destroy(struct ipc_notify_item *item)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        fprintf(stderr, "hell[%d]: a notification that could not be sent is lost: %s\n",
                (int)getpid(), strerror(errno));
        return; /* its descriptors close: the rights die with them */
    }
    struct iovec iov = {.iov_base = item->raw.msg, .iov_len = item->raw.len};
    bool queued = wire_sendmsg(sv[1], &iov, 1, item->raw.fds, item->raw.nfds, MSG_DONTWAIT) >= 0;
    linux_close(sv[1]);
    if (queued) {
        ipc_port_destroy_orphans(&sv[0], 1, NULL, 0);
    } else {
        linux_close(sv[0]);
    }
}

/* ITEM is done with: sent (SENT) or not (its rights released as a failed
 * send releases them).  Frees it. */
static void ipc_notify_item_done(struct ipc_notify_item *item, bool sent)
{
    switch (item->kind) {
    case IPC_NOTIFY_KERN:
        if (!sent) {
            kern_notify_discard(&item->kern);
        }
        break;
    case IPC_NOTIFY_ONCE:
        ipc_janitor_release(item->nonce);
        break;
    case IPC_NOTIFY_RAW:
        if (!sent) {
            ipc_notify_raw_destroy(item);
        }
        for (unsigned i = 0; i < item->raw.nfds; i++) {
            linux_close(item->raw.fds[i]);
        }
        free(item->raw.fds);
        free(item->raw.msg);
        break;
    }
    free(item);
}

enum ipc_notify_outcome { IPC_NOTIFY_SENT, IPC_NOTIFY_FULL, IPC_NOTIFY_FAILED };

/* Sends ITEM to D without waiting.  A kernel notification is sent
 * through the kernel space's mach_msg, without [G] (D is busy
 * meanwhile).  Expects [G]; returns with it. */
static enum ipc_notify_outcome ipc_notify_item_send(const struct ipc_notify_dest *d,
                                                    const struct ipc_notify_item *item)
{
    mach_msg_return_t mr;
    switch (item->kind) {
    case IPC_NOTIFY_KERN:
        ipc_unlock();
        mr = kern_notify_deliver(&item->kern);
        ipc_lock();
        break;
    case IPC_NOTIFY_ONCE:
        mr = wire_send_notify_fd(ipc_notify_dest_fd(d), item->nonce, MACH_NOTIFY_SEND_ONCE);
        break;
    default: {
        struct iovec iov = {.iov_base = item->raw.msg, .iov_len = item->raw.len};
        mr = wire_sendmsg(ipc_notify_dest_fd(d), &iov, 1, item->raw.fds, item->raw.nfds,
                          MSG_DONTWAIT) >= 0 ? MACH_MSG_SUCCESS
             : errno == EAGAIN               ? MACH_SEND_TIMED_OUT
                                             : MACH_SEND_INVALID_DEST;
        break;
    }
    }
    return mr == MACH_MSG_SUCCESS       ? IPC_NOTIFY_SENT
           : mr == MACH_SEND_TIMED_OUT ? IPC_NOTIFY_FULL
                                       : IPC_NOTIFY_FAILED;
}

/* Waits for room in D's socket (the watchdog sends what waits then).
 * Returns false when it cannot be watched. */
static bool ipc_notify_arm(struct ipc_notify_dest *d)
{
    if (ipc_notify_epoll < 0) {
        ipc_notify_epoll = epoll_create1(EPOLL_CLOEXEC);
        if (ipc_notify_epoll < 0) {
            return false;
        }
        if (!ipc_watch_backlogs(ipc_notify_epoll)) {
            linux_close(ipc_notify_epoll);
            ipc_notify_epoll = -1;
            return false;
        }
    }
    /* One event per arming: a backlog whose head another thread is
     * sending must not wake the watchdog again and again. */
    struct epoll_event event = {.events = EPOLLOUT | EPOLLONESHOT, .data.u64 = d->ino};
    int fd = ipc_notify_dest_fd(d);
    if (epoll_ctl(ipc_notify_epoll, d->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd,
                  &event) != 0) {
        if (ipc_notify_nregistered == 0) {
            ipc_notify_epoll_close();
        }
        return false;
    }
    if (!d->registered) {
        d->registered = true;
        ipc_notify_nregistered++;
    }
    d->armed = true;
    return true;
}

/* D cannot be watched: what waits in it is released, as if its port were
 * dead.  Releasing may queue more for D (a kernel notification's notify
 * right is a send-once right, perhaps to D's own port): D is busy
 * meanwhile, so that only joins its tail and is released in turn, and D
 * is neither settled again nor freed under this loop.  Expects [G] and D
 * idle; leaves D idle and empty. */
static void ipc_notify_release_all(struct ipc_notify_dest *d)
{
    fprintf(stderr, "hell[%d]: cannot wait for room in a port: its notifications are lost\n",
            (int)getpid());
    d->busy = true;
    d->owner = &ipc_notify_draining;
    while (d->head != NULL) {
        struct ipc_notify_item *item = ipc_notify_pop(d);
        ipc_notify_uncharge(d, item);
        ipc_notify_item_done(item, false);
    }
    d->busy = false;
    if (d->handoff) {
        d->handoff = false;
        ipc_notify_handoffs--;
    }
}

/* D is idle (not busy, ready or armed): freed when empty, else armed;
 * what cannot be watched is released, as if its port were dead. */
static void ipc_notify_settle(struct ipc_notify_dest *d)
{
    if (d->head != NULL && !ipc_notify_arm(d)) {
        ipc_notify_release_all(d);
    }
    if (d->head == NULL) {
        ipc_notify_dest_free(d);
    }
}

/* Sends what waits in D, in order, until its socket is full.  Expects
 * [G] (released while a kernel notification is sent) and D idle. */
static void ipc_notify_drain(struct ipc_notify_dest *d)
{
    bool nested = ipc_notify_draining;
    ipc_notify_draining = true;
    d->busy = true;
    d->owner = &ipc_notify_draining;
    while (d->head != NULL) {
        struct ipc_notify_item *item = ipc_notify_pop(d);
        enum ipc_notify_outcome outcome = ipc_notify_item_send(d, item);
        if (outcome == IPC_NOTIFY_FULL) {
            ipc_notify_push_front(d, item);
            break;
        }
        ipc_notify_uncharge(d, item);
        /* (Releasing may queue more for D itself: a dead port's notify
         * right destroyed.  They fail in turn.) */
        ipc_notify_item_done(item, outcome == IPC_NOTIFY_SENT);
    }
    d->busy = false;
    if (d->handoff) {
        d->handoff = false;
        ipc_notify_handoffs--;
    }
    ipc_notify_settle(d);
    ipc_notify_draining = nested;
}

/* Queues ITEM, admitted by ipc_notify_admit under this hold of [G], for
 * the port INO, of PORT or of the bare send end BARE_FD: behind D, its
 * backlog (the one admitted), or when D is NULL in a new one, which is
 * made ready (READY: sent by the next flush) or else armed (its socket
 * is full).  Returns false when out of memory or descriptors (ITEM is
 * then the caller's).  Expects [G]. */
static bool ipc_notify_queue(struct ipc_notify_dest *d, uint64_t ino, struct ipc_port *port,
                             int bare_fd, struct ipc_notify_item *item, bool ready)
{
    if (d == NULL && (d = ipc_notify_dest_create(ino, port, bare_fd)) == NULL) {
        return false;
    }
    ipc_notify_append(d, item);
    ipc_notify_charge(d, item);
    if (!d->busy && !d->ready && !d->armed) {
        if (ready) {
            ipc_notify_make_ready(d);
        } else {
            ipc_notify_settle(d);
        }
    }
    return true;
}

void ipc_notify_kern(struct ipc_port *dest, const struct ipc_notify_kern *n)
{
    struct ipc_notify_dest *d = ipc_notify_dest_lookup(dest->ino);
    struct ipc_notify_item *item = ipc_notify_admit(d, false, 0) ? malloc(sizeof *item) : NULL;
    if (item != NULL) {
        *item = (struct ipc_notify_item){.kind = IPC_NOTIFY_KERN, .kern = *n};
        if (ipc_notify_queue(d, dest->ino, dest, -1, item, true)) {
            return;
        }
    }
    free(item);
    kern_notify_discard(n);
}

void ipc_notify_flush(void)
{
    if (ipc_notify_draining) {
        return; /* the drain below us goes on with what is ready */
    }
    ipc_lock();
    for (;;) {
        while (ipc_notify_ready != NULL) {
            struct ipc_notify_dest *d = ipc_notify_ready;
            ipc_notify_ready = d->next_ready;
            if (ipc_notify_ready == NULL) {
                ipc_notify_ready_tail = &ipc_notify_ready;
            }
            d->ready = false;
            ipc_notify_drain(d);
        }
        if (ipc_notify_handoffs == 0) {
            break;
        }
        /* Notifications handed to threads sending their ports' heads:
         * those sends do not wait (a full socket arms the backlog), so
         * this wait is short.  (Which handoff is ours is not recorded:
         * rare enough to wait for all.) */
        ipc_unlock();
        usleep(50);
        ipc_lock();
    }
    atomic_store(&ipc_notify_pending, false);
    ipc_unlock();
}

void ipc_notify_send_once(struct ipc_port *port, uint64_t nonce)
{
    if (port->rcv != NULL && port->rcv->orphan) {
        return;
    }
    struct ipc_notify_dest *d = ipc_notify_dest_lookup(port->ino);
    if (d == NULL &&
        wire_send_notify_locked(port, nonce, MACH_NOTIFY_SEND_ONCE) != MACH_SEND_TIMED_OUT) {
        return; /* sent, or the port is dead: lost, as in GNU Mach */
    }
    struct ipc_notify_item *item = ipc_notify_admit(d, false, 0) ? malloc(sizeof *item) : NULL;
    if (item == NULL) {
        return;
    }
    *item = (struct ipc_notify_item){.kind = IPC_NOTIFY_ONCE, .nonce = nonce};
    /* Listed again until it goes: should this task die first, machd
     * sends it.  Listed before it is queued, since queueing may already
     * release it (a backlog that cannot be watched), which unlists it. */
    ipc_janitor_hold(port, nonce);
    if (!ipc_notify_queue(d, port->ino, port, -1, item, false)) {
        ipc_janitor_release(nonce);
        free(item);
    }
}

/* Copies ITEM, the caller's (a raw one's message and descriptors are not
 * its own), into a new item that owns its copies.  Returns NULL when
 * memory or descriptors run out.  Expects [G]. */
static struct ipc_notify_item *ipc_notify_bare_copy(const struct ipc_notify_item *item)
{
    struct ipc_notify_item *copy = malloc(sizeof *copy);
    if (copy == NULL) {
        return NULL;
    }
    *copy = *item;
    if (item->kind != IPC_NOTIFY_RAW) {
        return copy;
    }
    unsigned nfds = item->raw.nfds;
    copy->raw.msg = malloc(item->raw.len > 0 ? item->raw.len : 1);
    copy->raw.fds = malloc((nfds + 1) * sizeof *copy->raw.fds);
    bool ok = copy->raw.msg != NULL && copy->raw.fds != NULL;
    unsigned n = 0;
    while (ok && n < nfds) {
        int fd = fcntl(item->raw.fds[n], F_DUPFD_CLOEXEC, 0);
        ok = fd >= 0;
        if (ok) {
            copy->raw.fds[n++] = fd;
        }
    }
    if (!ok) {
        for (unsigned i = 0; i < n; i++) {
            linux_close(copy->raw.fds[i]);
        }
        free(copy->raw.fds);
        free(copy->raw.msg);
        free(copy);
        return NULL;
    }
    memcpy(copy->raw.msg, item->raw.msg, item->raw.len);
    return copy;
}

/* Sends ITEM, the caller's (a raw one's message and descriptors are not
 * its own), to the bare send end SEND_FD; queues a copy of it instead
 * when the port has a backlog (to keep the order) or its socket is full.
 * Returns 0 when sent or queued, -1 when the port is dead or the copy
 * could not be queued.  Takes [G]. */
static int ipc_notify_send_bare(int send_fd, const struct ipc_notify_item *item)
{
    uint64_t ino;
    ipc_lock();
    /* The port's identity matters only when some backlog exists. */
    bool known = false;
    struct ipc_notify_dest *d = NULL;
    enum ipc_notify_outcome outcome;
    if (ipc_notify_dests.count > 0 && !(known = linux_socket_ino(send_fd, &ino))) {
        outcome = IPC_NOTIFY_FAILED;
    } else if (known && (d = ipc_notify_dest_lookup(ino)) != NULL) {
        outcome = IPC_NOTIFY_FULL;
    } else {
        struct ipc_notify_dest probe = {.own_fd = send_fd};
        outcome = ipc_notify_item_send(&probe, item);
    }
    int rc = outcome == IPC_NOTIFY_SENT ? 0 : -1;
    if (outcome == IPC_NOTIFY_FULL && (known || linux_socket_ino(send_fd, &ino)) &&
        ipc_notify_admit(d, true, ipc_notify_item_fds(item))) {
        struct ipc_notify_item *copy = ipc_notify_bare_copy(item);
        if (copy != NULL && ipc_notify_queue(d, ino, NULL, send_fd, copy, false)) {
            rc = 0;
        } else if (copy != NULL) {
            /* Never to be sent: the caller keeps what it stands for. */
            ipc_notify_item_done(copy, true);
        }
    }
    ipc_unlock();
    return rc;
}

int ipc_notify_send_once_fd(int send_fd, uint64_t nonce)
{
    struct ipc_notify_item item = {.kind = IPC_NOTIFY_ONCE, .nonce = nonce};
    return ipc_notify_send_bare(send_fd, &item);
}

int ipc_notify_send_raw_fd(int send_fd, const void *msg, size_t len, const int *fds,
                           unsigned nfds)
{
    if (nfds > WIRE_MAX_FDS) {
        return -1;
    }
    /* (Not modified: the item is only read, or copied.) */
    struct ipc_notify_item item = {
        .kind = IPC_NOTIFY_RAW,
        .raw = {.msg = (char *)msg, .len = len, .fds = (int *)fds, .nfds = nfds}};
    return ipc_notify_send_bare(send_fd, &item);
}

void ipc_notify_lower_bounds(unsigned waiting_max, unsigned fds_max)
{
    ipc_lock();
    if (waiting_max >= IPC_NOTIFY_LOWEST_BOUND && waiting_max < ipc_notify_waiting_max) {
        ipc_notify_waiting_max = waiting_max;
    }
    if (fds_max >= IPC_NOTIFY_LOWEST_BOUND && fds_max < ipc_notify_fds_max) {
        ipc_notify_fds_max = fds_max;
    }
    ipc_unlock();
}

EXPORT void hell_notify_lower_bounds(unsigned waiting_max, unsigned fds_max)
{
    ipc_notify_lower_bounds(waiting_max, fds_max);
}

void ipc_notify_writable(void)
{
    struct epoll_event events[64];
    int n = ipc_notify_epoll >= 0 ? epoll_wait(ipc_notify_epoll, events, 64, 0) : 0;
    for (int i = 0; i < n; i++) {
        /* Looked up again each time: draining one releases [G]. */
        struct ipc_notify_dest *d = u64map_lookup(&ipc_notify_dests, events[i].data.u64);
        if (d != NULL && d->armed) {
            d->armed = false;
            ipc_notify_drain(d);
        }
    }
}

void ipc_notify_fork_child(void)
{
    /* The parent's backlogs are its own: only their descriptors are
     * closed here (the memory is left alone, like the ports'). */
    uint64_t key;
    void *value;
    for (size_t i = 0; u64map_next(&ipc_notify_dests, &i, &key, &value);) {
        struct ipc_notify_dest *d = value;
        linux_close(d->own_fd);
        for (struct ipc_notify_item *item = d->head; item != NULL; item = item->next) {
            for (unsigned k = 0; item->kind == IPC_NOTIFY_RAW && k < item->raw.nfds; k++) {
                linux_close(item->raw.fds[k]);
            }
        }
    }
    linux_close(ipc_notify_epoll);
    ipc_notify_epoll = -1;
    ipc_notify_dests = (struct u64map){0};
    ipc_notify_ready = NULL;
    ipc_notify_ready_tail = &ipc_notify_ready;
    ipc_notify_waiting = ipc_notify_fds = ipc_notify_nregistered = 0;
    ipc_notify_handoffs = 0;
    ipc_notify_reported = ipc_notify_reported_oversized = false;
    atomic_store(&ipc_notify_pending, false);
}
