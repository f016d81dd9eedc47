/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_port.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc_janitor.h"
#include "ipc_kmsg.h"
#include "ipc_pset.h"
#include "ipc_qlimit.h"
#include "kern_notify.h"
#include "ipc_space.h"
#include "ipc_watch.h"
#include "ipc_wire.h"
#include "linux.h"

/* Senders write up to this much; the receive end buffers as much. */
#define IPC_PORT_SOCKBUF (1024 * 1024)

static struct u64map ipc_port_table; /* [G] ino -> struct ipc_port * */
static uint64_t ipc_port_next_serial = 1; /* [G] */

struct ipc_port *ipc_port_lookup(uint64_t ino)
{
    return u64map_lookup(&ipc_port_table, ino);
}

static struct ipc_port *ipc_port_alloc(int send_fd, uint64_t ino)
{
    struct ipc_port *port = calloc(1, sizeof *port);
    if (port == NULL) {
        return NULL;
    }
    port->refs = 1;
    port->ino = ino;
    port->serial = ipc_port_next_serial++;
    port->send_fd = send_fd;
    port->count_wfd = -1;
    port->q_fd = -1;
    port->owner_pidfd = -1;
    if (!u64map_insert(&ipc_port_table, ino, port)) {
        free(port);
        return NULL;
    }
    return port;
}

kern_return_t ipc_port_create(int space, struct ipc_port **out)
{
    int sv[2], cp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        return linux_errno_to_kern(errno);
    }
    if (pipe2(cp, O_CLOEXEC | O_NONBLOCK) != 0) {
        kern_return_t kr = linux_errno_to_kern(errno);
        linux_close(sv[0]);
        linux_close(sv[1]);
        return kr;
    }
    int size = IPC_PORT_SOCKBUF;
    (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    (void)setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);

    uint64_t ino;
    struct ipc_port_rcv *rcv = calloc(1, sizeof *rcv);
    struct ipc_port *port = NULL;
    if (rcv == NULL || !linux_socket_ino(sv[1], &ino) ||
        (port = ipc_port_alloc(sv[1], ino)) == NULL) {
        free(rcv);
        linux_close(sv[0]);
        linux_close(sv[1]);
        linux_close(cp[0]);
        linux_close(cp[1]);
        return KERN_RESOURCE_SHORTAGE;
    }
    /* No send right exists yet: the write end is reopened on MAKE_SEND. */
    linux_close(cp[1]);
    rcv->recv_fd = sv[0];
    rcv->count_rfd = cp[0];
    rcv->secret = linux_random_u64();
    rcv->qlimit = MACH_PORT_QLIMIT_DEFAULT;
    rcv->space = space;
    port->rcv = rcv;
    port->secret = rcv->secret;
    port->has_secret = true;
    *out = port;
    return KERN_SUCCESS;
}

struct ipc_port *ipc_port_adopt(int send_fd, uint64_t ino)
{
    struct ipc_port *port = ipc_port_lookup(ino);
    if (port != NULL) {
        linux_close(send_fd);
        ipc_port_ref(port);
        return port;
    }
    port = ipc_port_alloc(send_fd, ino);
    if (port == NULL) {
        linux_close(send_fd);
    }
    return port;
}

void ipc_port_ref(struct ipc_port *port)
{
    assert(port->refs > 0);
    port->refs++;
}

static void ipc_port_free_rcv(struct ipc_port_rcv *rcv)
{
    rcv->orphan = true;
    if (rcv->users > 0) {
        return; /* the last user frees it */
    }
    uint64_t key;
    void *value;
    for (size_t i = 0; u64map_next(&rcv->transports, &i, &key, &value);) {
        ipc_port_unref(value);
    }
    u64map_destroy(&rcv->transports);
    u64map_destroy(&rcv->nonces);
    if (rcv->pending != NULL) {
        ipc_kmsg_destroy(rcv->pending);
        free(rcv->pending);
    }
    linux_close(rcv->recv_fd);
    linux_close(rcv->count_rfd);
    free(rcv);
}

void ipc_port_unref(struct ipc_port *port)
{
    assert(port->refs > 0);
    if (--port->refs > 0) {
        return;
    }
    assert(port->rcv == NULL && port->srights == 0 && port->waiters == NULL);
    ipc_watch_forget(port);
    ipc_janitor_port_freed(port);
    u64map_remove(&ipc_port_table, port->ino);
    u64map_destroy(&port->peer_has);
    linux_close(port->send_fd);
    linux_close(port->count_wfd);
    ipc_qlimit_release(port);
    free(port);
}

kern_return_t ipc_port_srights_add(struct ipc_port *port)
{
    /* Kernel objects are served without a queue limit (their messages
     * are answered at once, inline or by the service thread). */
    if (port->rcv != NULL && port->q == NULL && port->rcv->kobject_type == IKOT_NONE) {
        kern_return_t kr = ipc_qlimit_create(port);
        if (kr != KERN_SUCCESS) {
            return kr;
        }
    }
    if (port->count_wfd < 0) {
        /* Only the receiver can mint a counting descriptor: it reopens the
         * write end of its pipe through /proc. */
        if (port->rcv == NULL) {
            return KERN_INVALID_RIGHT;
        }
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", port->rcv->count_rfd);
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            return linux_errno_to_kern(errno);
        }
        port->count_wfd = fd;
    }
    port->srights++;
    if (port->rcv != NULL) {
        port->rcv->send_made = true;
    }
    if (port->rcv != NULL && port->rcv->janitor_slot == 0) {
        ipc_janitor_keep_receive(port);
    }
    return KERN_SUCCESS;
}

void ipc_port_srights_adopt(struct ipc_port *port, int count_fd)
{
    if (port->count_wfd < 0) {
        port->count_wfd = count_fd;
    } else {
        linux_close(count_fd);
    }
    port->srights++;
}

void ipc_port_srights_drop(struct ipc_port *port)
{
    assert(port->srights > 0);
    if (--port->srights == 0 && !port->count_spare) {
        linux_close(port->count_wfd);
        port->count_wfd = -1;
    }
}

void ipc_port_count_spare_keep(struct ipc_port *port)
{
    if (port->rcv == NULL && port->count_wfd >= 0) {
        port->count_spare = true;
    }
}

void ipc_port_count_spare_end(struct ipc_port *port)
{
    if (port->count_spare) {
        port->count_spare = false;
        if (port->srights == 0) {
            linux_close(port->count_wfd);
            port->count_wfd = -1;
        }
    }
}

bool ipc_port_srights_adopt_by_reference(struct ipc_port *port)
{
    if (port->count_wfd >= 0) {
        port->srights++;
        return true;
    }
    return port->rcv != NULL && ipc_port_srights_add(port) == KERN_SUCCESS;
}

uint64_t ipc_port_make_send_once(struct ipc_port *port)
{
    assert(port->rcv != NULL);
    uint64_t nonce;
    do {
        nonce = linux_random_u64();
    } while (u64map_lookup(&port->rcv->nonces, nonce) != NULL);
    if (!u64map_insert(&port->rcv->nonces, nonce, port)) {
        abort(); /* out of memory for a few bytes: nothing sane remains */
    }
    port->rcv->sorights++;
    if (port->rcv->janitor_slot == 0) {
        ipc_janitor_keep_receive(port);
    } else {
        ipc_janitor_receive_changed(port); /* the escrow needs the nonce */
    }
    return nonce;
}

bool ipc_port_rcv_consume_nonce(struct ipc_port_rcv *rcv, uint64_t nonce)
{
    if (nonce == 0 || u64map_remove(&rcv->nonces, nonce) == NULL) {
        return false;
    }
    rcv->sorights--;
    return true;
}

bool ipc_port_rcv_has_nonce(const struct ipc_port_rcv *rcv, uint64_t nonce)
{
    return nonce != 0 && u64map_lookup(&rcv->nonces, nonce) != NULL;
}

bool ipc_port_consume_nonce(struct ipc_port *port, uint64_t nonce)
{
    assert(port->rcv != NULL);
    return ipc_port_rcv_consume_nonce(port->rcv, nonce);
}

#define IPC_PORT_SWEEP_MIN 64

/* Removes from RCV's transport table the ports whose receive right died. */
static void ipc_port_transports_sweep(struct ipc_port_rcv *rcv)
{
    size_t n = rcv->transports.count;
    struct pollfd *pfds = calloc(n, sizeof *pfds);
    struct ipc_port **ports = calloc(n, sizeof *ports);
    if (pfds != NULL && ports != NULL) {
        uint64_t key;
        void *value;
        size_t i = 0;
        for (size_t c = 0; u64map_next(&rcv->transports, &c, &key, &value); i++) {
            ports[i] = value;
            pfds[i] = (struct pollfd){.fd = ports[i]->send_fd};
        }
        (void)poll(pfds, n, 0);
        for (i = 0; i < n; i++) {
            if (ports[i]->dead || (ports[i]->rcv == NULL &&
                                   (pfds[i].revents & (POLLHUP | POLLERR)))) {
                ports[i]->dead = ports[i]->rcv == NULL;
                u64map_remove(&rcv->transports, ports[i]->ino);
                ipc_port_unref(ports[i]);
            }
        }
    }
    free(pfds);
    free(ports);
    rcv->transports_sweep_at = rcv->transports.count * 2;
    if (rcv->transports_sweep_at < IPC_PORT_SWEEP_MIN) {
        rcv->transports_sweep_at = IPC_PORT_SWEEP_MIN;
    }
}

void ipc_port_transport_add(struct ipc_port_rcv *rcv, struct ipc_port *port)
{
    if (u64map_lookup(&rcv->transports, port->ino) != NULL) {
        return;
    }
    if (rcv->transports.count >= rcv->transports_sweep_at) {
        ipc_port_transports_sweep(rcv);
    }
    ipc_port_ref(port);
    if (!u64map_insert(&rcv->transports, port->ino, port)) {
        ipc_port_unref(port); /* senders will see the port as dead */
    } else if (rcv->escrowed) {
        rcv->escrow_after_receive = true; /* made again once the message is in */
    }
}

/* Forgets PORT, whose receive right was just destroyed here, in the
 * transport table of every port received here. */
static void ipc_port_transports_forget(struct ipc_port *port)
{
    uint64_t key;
    void *value;
    for (size_t i = 0; u64map_next(&ipc_port_table, &i, &key, &value);) {
        struct ipc_port *holder = value;
        if (holder->rcv != NULL &&
            u64map_remove(&holder->rcv->transports, port->ino) != NULL) {
            ipc_port_unref(port);
        }
    }
}

bool ipc_port_is_dead(struct ipc_port *port, bool probe)
{
    if (port->rcv != NULL) {
        return false;
    }
    if (probe && !port->dead) {
        struct pollfd pfd = {.fd = port->send_fd, .events = 0};
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR))) {
            port->dead = true;
        }
    }
    return port->dead;
}

void ipc_port_destroy_receive(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    assert(rcv != NULL);
    ipc_pset_remove(port);
    kern_notify_receive_gone(port);
    port->rcv = NULL;
    port->dead = true;
    ipc_janitor_forget_receive(port, rcv, false);
    /* Before the ends close: clients still waiting for replies to
     * requests we took must not take this death for ours. */
    ipc_qlimit_mark_destroyed(port);
    /* Wakes a thread of ours blocked on the receive end and turns every
     * send end into a dead port at once; then what was queued is
     * destroyed. */
    shutdown(rcv->recv_fd, SHUT_RDWR);
    wire_drain_locked(port, rcv);
    ipc_port_free_rcv(rcv);
    ipc_port_transports_forget(port);
}

/* Whether a message waits on the receive end FD. */
static bool ipc_port_fd_has_message(int fd)
{
    int queued = 0;
    return ioctl(fd, SIOCINQ, &queued) == 0 && queued > 0;
}

/* Makes the ports of the send ends SEND_FDS[0..N) (copied) the
 * transports of RCV. */
static void ipc_port_orphan_transports(struct ipc_port_rcv *rcv, const int *send_fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int fd = fcntl(send_fds[i], F_DUPFD_CLOEXEC, 0);
        uint64_t ino;
        if (fd < 0 || !linux_socket_ino(fd, &ino) || u64map_lookup(&rcv->transports, ino)) {
            linux_close(fd);
            continue;
        }
        struct ipc_port *port = ipc_port_adopt(fd, ino);
        if (port != NULL && !u64map_insert(&rcv->transports, ino, port)) {
            ipc_port_unref(port);
        }
    }
}

void ipc_port_destroy_orphans(const int *recv_fds, size_t nrecv, const int *send_fds,
                              size_t nsend)
{
    struct ipc_port_rcv *rcv = calloc(1, sizeof *rcv);
    bool transports_made = false;
    for (size_t i = 0; i < nrecv; i++) {
        /* What is queued first, before senders see the port die: a
         * client waiting for a reply then finds the notification of its
         * reply right already there.  Then what came meanwhile. */
        for (int pass = 0; pass < 2; pass++) {
            if (rcv != NULL && ipc_port_fd_has_message(recv_fds[i])) {
                if (!transports_made) {
                    ipc_port_orphan_transports(rcv, send_fds, nsend);
                    transports_made = true;
                }
                rcv->recv_fd = recv_fds[i];
                wire_drain_locked(NULL, rcv);
            }
            if (pass == 0) {
                shutdown(recv_fds[i], SHUT_RDWR);
            }
        }
        linux_close(recv_fds[i]);
    }
    if (rcv != NULL) {
        rcv->recv_fd = rcv->count_rfd = -1;
        ipc_port_free_rcv(rcv);
    }
}

void ipc_port_release_receive(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    assert(rcv != NULL);
    port->rcv = NULL;
    /* (Unlisted from the janitor by the copyin that took it, and never
     * listed again while leaving.) */
    assert(rcv->janitor_slot == 0);
    ipc_port_free_rcv(rcv);
}

struct ipc_port_rcv *ipc_port_rcv_enter(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    if (rcv != NULL) {
        rcv->users++;
    }
    return rcv;
}

void ipc_port_rcv_leave(struct ipc_port_rcv *rcv)
{
    assert(rcv->users > 0);
    if (--rcv->users == 0 && rcv->orphan) {
        ipc_port_free_rcv(rcv);
    }
}

void ipc_port_forget_all(void)
{
    uint64_t key;
    void *value;
    for (size_t i = 0; u64map_next(&ipc_port_table, &i, &key, &value);) {
        struct ipc_port *port = value;
        if (port->rcv != NULL) {
            linux_close(port->rcv->recv_fd);
            linux_close(port->rcv->count_rfd);
        }
        linux_close(port->send_fd);
        linux_close(port->count_wfd);
        if (port->owner_pidfd >= 0) {
            linux_close(port->owner_pidfd);
        }
        ipc_qlimit_release(port);
        /* The memory is left alone: other threads of the parent were
         * copied mid-flight, their structures cannot be trusted. */
    }
    ipc_port_table = (struct u64map){0};
}
