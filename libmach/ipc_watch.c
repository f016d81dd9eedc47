/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_watch.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipc_msg.h"
#include "ipc_notify.h"
#include "ipc_port.h"
#include "ipc_qlimit.h"
#include "ipc_space.h"
#include "kern_notify.h"
#include "linux.h"

/* How often the watchdog interrupts again threads still waiting on a dead
 * port (a signal can land just before its thread blocks). */
#define IPC_WATCH_KICK_MS 10

static int ipc_watch_epoll = -1;     /* [G] */
static bool ipc_watch_running;       /* [G] */
static struct u64map ipc_watch_ports; /* [G] serial -> port: send end watched */
static struct u64map ipc_watch_ns;    /* [G] serial -> port: counting pipe watched */
#define IPC_WATCH_NS_TAG (1ull << 63) /* epoll data of a counting pipe */
static struct u64map ipc_watch_owners; /* [G] serial -> dead port whose
                                          destroyer's pidfd is watched */
#define IPC_WATCH_OWNER_TAG (1ull << 62) /* epoll data of such a pidfd */
#define IPC_WATCH_BACKLOG_TAG (1ull << 61) /* epoll data of ipc_notify's set */
static struct u64map ipc_watch_dead;  /* [G] serial -> dead port with waiters
                                         (referenced) */

static void ipc_watch_kick(struct ipc_port *port)
{
    for (struct ipc_watch_waiter *w = port->waiters; w != NULL; w = w->next) {
        syscall(SYS_tgkill, getpid(), w->tid, ipc_wake_signal());
    }
}

static bool ipc_watch_start(void);

/* Stops watching the task that destroyed PORT's receive right. */
static void ipc_watch_owner_stop(struct ipc_port *port)
{
    if (port->owner_pidfd >= 0) {
        epoll_ctl(ipc_watch_epoll, EPOLL_CTL_DEL, port->owner_pidfd, NULL);
        linux_close(port->owner_pidfd);
        port->owner_pidfd = -1;
        u64map_remove(&ipc_watch_owners, port->serial);
    }
}

/* Nobody will answer requests sent to PORT: its waiters are interrupted
 * (again every IPC_WATCH_KICK_MS until they have left). */
static void ipc_watch_server_gone(struct ipc_port *port)
{
    ipc_watch_owner_stop(port);
    atomic_store(&port->server_gone, true);
    if (port->waiters != NULL && u64map_insert(&ipc_watch_dead, port->serial, port)) {
        ipc_port_ref(port);
    }
}

void ipc_watch_port_died(struct ipc_port *port)
{
    /* Decided already, or for nobody: a thread that starts waiting on a
     * dead port decides then (its request may have gone in just before
     * the death; the task that took it may still answer). */
    if (atomic_load(&port->server_gone) || port->owner_pidfd >= 0 || port->waiters == NULL) {
        return;
    }
    /* Watched only while someone waits: the last waiter stops it. */
    int pidfd = ipc_watch_start() ? ipc_qlimit_destroyer_pidfd(port) : -1;
    if (pidfd >= 0) {
        struct epoll_event event = {.events = EPOLLIN,
                                    .data.u64 = port->serial | IPC_WATCH_OWNER_TAG};
        if (u64map_insert(&ipc_watch_owners, port->serial, port)) {
            if (epoll_ctl(ipc_watch_epoll, EPOLL_CTL_ADD, pidfd, &event) == 0) {
                port->owner_pidfd = pidfd;
                return;
            }
            u64map_remove(&ipc_watch_owners, port->serial);
        }
        linux_close(pidfd);
    }
    ipc_watch_server_gone(port);
}

/* Handles hang-ups and kicks waiters on dead ports; *WRITABLE tells
 * whether ports with notifications waiting have room.  Expects [G].
 * Returns whether some remain to be kicked again. */
static bool ipc_watch_pass(struct epoll_event *events, int n, bool *writable)
{
    *writable = false;
    for (int i = 0; i < n; i++) {
        uint64_t tag = events[i].data.u64;
        if (tag == IPC_WATCH_BACKLOG_TAG) {
            *writable = true;
            continue;
        }
        if (tag & IPC_WATCH_OWNER_TAG) {
            /* The task that destroyed the port died with our replies. */
            struct ipc_port *port = u64map_lookup(&ipc_watch_owners, tag & ~IPC_WATCH_OWNER_TAG);
            if (port != NULL) {
                ipc_watch_server_gone(port);
            }
            continue;
        }
        if (tag & IPC_WATCH_NS_TAG) {
            struct ipc_port *port = u64map_lookup(&ipc_watch_ns, tag & ~IPC_WATCH_NS_TAG);
            if (port != NULL) {
                ipc_watch_no_senders_stop(port);
                kern_notify_no_senders(port);
            }
            continue;
        }
        struct ipc_port *port = u64map_remove(&ipc_watch_ports, tag);
        if (port == NULL) {
            continue; /* forgotten meanwhile */
        }
        epoll_ctl(ipc_watch_epoll, EPOLL_CTL_DEL, port->send_fd, NULL);
        port->watched = false;
        port->dead = port->rcv == NULL;
        if (port->dead) {
            ipc_watch_port_died(port);
            kern_notify_port_died(port);
        }
    }
    uint64_t key;
    void *value;
    for (size_t c = 0; u64map_next(&ipc_watch_dead, &c, &key, &value);) {
        struct ipc_port *port = value;
        if (port->waiters == NULL) {
            u64map_remove(&ipc_watch_dead, key);
            ipc_port_unref(port);
            c = 0; /* the table changed: walk it again */
            continue;
        }
        ipc_watch_kick(port);
    }
    return ipc_watch_dead.count > 0;
}

static void *ipc_watch_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    bool kicking = false;
    for (;;) {
        struct epoll_event events[16];
        int n = epoll_wait(ipc_watch_epoll, events, 16, kicking ? IPC_WATCH_KICK_MS : -1);
        if (n < 0 && errno != EINTR) {
            return NULL;
        }
        bool writable;
        ipc_lock();
        kicking = ipc_watch_pass(events, n < 0 ? 0 : n, &writable);
        if (writable) {
            ipc_notify_writable(); /* (releases [G] while it sends one of the kernel's) */
        }
        ipc_unlock();
        kern_notify_flush();
    }
}

static bool ipc_watch_start(void)
{
    if (ipc_watch_running) {
        return true;
    }
    if (ipc_watch_epoll < 0) {
        ipc_watch_epoll = epoll_create1(EPOLL_CLOEXEC);
        if (ipc_watch_epoll < 0) {
            return false;
        }
    }
    ipc_watch_running = linux_thread_start(ipc_watch_main, NULL);
    return ipc_watch_running;
}

void ipc_watch_wait_begin(struct ipc_port *port, struct ipc_watch_waiter *waiter)
{
    waiter->next = port->waiters;
    port->waiters = waiter;
    if (port->dead) {
        ipc_watch_port_died(port); /* died before we looked */
    } else {
        ipc_watch_port(port);
    }
}

void ipc_watch_port(struct ipc_port *port)
{
    if (port->watched || port->dead || !ipc_watch_start()) {
        return;
    }
    /* A hang-up is always reported: no event needs asking for. */
    struct epoll_event event = {.events = 0, .data.u64 = port->serial};
    if (u64map_insert(&ipc_watch_ports, port->serial, port)) {
        if (epoll_ctl(ipc_watch_epoll, EPOLL_CTL_ADD, port->send_fd, &event) == 0) {
            port->watched = true;
        } else {
            u64map_remove(&ipc_watch_ports, port->serial);
        }
    }
}

void ipc_watch_wait_end(struct ipc_port *port, struct ipc_watch_waiter *waiter)
{
    for (struct ipc_watch_waiter **p = &port->waiters; *p != NULL; p = &(*p)->next) {
        if (*p == waiter) {
            *p = waiter->next;
            break;
        }
    }
    /* The last waiter on a dead port takes it off the kick list now, so
     * that its descriptors close when its last right goes, not at the
     * watchdog's next pass.  (The caller still holds a reference.) */
    if (port->waiters == NULL) {
        ipc_watch_owner_stop(port);
    }
    if (port->waiters == NULL && u64map_remove(&ipc_watch_dead, port->serial) != NULL) {
        ipc_port_unref(port);
    }
}

void ipc_watch_forget(struct ipc_port *port)
{
    ipc_watch_owner_stop(port);
    if (port->watched) {
        epoll_ctl(ipc_watch_epoll, EPOLL_CTL_DEL, port->send_fd, NULL);
        u64map_remove(&ipc_watch_ports, port->serial);
        port->watched = false;
    }
}

void ipc_watch_no_senders(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    if (rcv->ns_watched || !ipc_watch_start()) {
        return;
    }
    struct epoll_event event = {.events = 0, .data.u64 = port->serial | IPC_WATCH_NS_TAG};
    if (u64map_insert(&ipc_watch_ns, port->serial, port)) {
        if (epoll_ctl(ipc_watch_epoll, EPOLL_CTL_ADD, rcv->count_rfd, &event) == 0) {
            rcv->ns_watched = true;
        } else {
            u64map_remove(&ipc_watch_ns, port->serial);
        }
    }
}

void ipc_watch_no_senders_stop(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    if (rcv != NULL && rcv->ns_watched) {
        epoll_ctl(ipc_watch_epoll, EPOLL_CTL_DEL, rcv->count_rfd, NULL);
        u64map_remove(&ipc_watch_ns, port->serial);
        rcv->ns_watched = false;
    }
}

bool ipc_watch_backlogs(int fd)
{
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = IPC_WATCH_BACKLOG_TAG};
    return ipc_watch_start() && epoll_ctl(ipc_watch_epoll, EPOLL_CTL_ADD, fd, &event) == 0;
}

void ipc_watch_backlogs_stop(int fd)
{
    epoll_ctl(ipc_watch_epoll, EPOLL_CTL_DEL, fd, NULL);
}

void ipc_watch_fork_child(void)
{
    linux_close(ipc_watch_epoll);
    ipc_watch_epoll = -1;
    ipc_watch_running = false;
    ipc_watch_ports = (struct u64map){0};
    ipc_watch_ns = (struct u64map){0};
    ipc_watch_dead = (struct u64map){0};
    ipc_watch_owners = (struct u64map){0};
}
