/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_qlimit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_watch.h"
#include "kern_control.h"
#include "linux.h"

#define IPC_QLIMIT_PAGE 4096
#define IPC_QLIMIT_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
/* A sleeping sender looks again at least this often at the socket (is the
 * queue really full?) and at the port (did it die?  The watchdog wakes it
 * at once too).  A signal that lands during a look is not seen until the
 * next sleep ends, so looks are rare. */
#define IPC_QLIMIT_SLICE_MS 1000

/* The shared page.  Every field may hold anything a sender wrote. */
struct ipc_qstate {
    _Atomic uint32_t count;    /* messages queued through send rights */
    _Atomic uint32_t qlimit;   /* the receiver's limit */
    _Atomic uint32_t wakeups;  /* futex word: bumped to wake sleepers */
    _Atomic uint32_t sleepers; /* senders between deciding to sleep and
                                  waking up */
    /* The task holding the receive right (ipc_qlimit_claim), and whether
     * it destroyed the right: a waiting client then still expects the
     * replies that task owes it (ipc_qlimit_destroyer_pidfd). */
    _Atomic uint32_t destroyed;
    _Atomic int32_t owner_pid;
    _Atomic uint64_t owner_start;
};

static struct ipc_qstate *ipc_qlimit_page(struct ipc_port *port)
{
    return atomic_load_explicit(&port->q, memory_order_acquire);
}

static void ipc_qlimit_install(struct ipc_port *port, int fd, void *page)
{
    port->q_fd = fd;
    atomic_store_explicit(&port->q, page, memory_order_release);
}

kern_return_t ipc_qlimit_create(struct ipc_port *port)
{
    if (port->q != NULL) {
        return KERN_SUCCESS;
    }
    int fd = memfd_create("hell-queue", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return KERN_RESOURCE_SHORTAGE;
    }
    void *page = MAP_FAILED;
    if (ftruncate(fd, IPC_QLIMIT_PAGE) == 0 &&
        fcntl(fd, F_ADD_SEALS, IPC_QLIMIT_SEALS) == 0) {
        page = mmap(NULL, IPC_QLIMIT_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    if (page == MAP_FAILED) {
        linux_close(fd);
        return KERN_RESOURCE_SHORTAGE;
    }
    struct ipc_qstate *q = page;
    atomic_store(&q->qlimit, port->rcv->qlimit);
    ipc_qlimit_install(port, fd, page);
    ipc_qlimit_claim(port);
    return KERN_SUCCESS;
}

void ipc_qlimit_claim(struct ipc_port *port)
{
    struct ipc_qstate *q = ipc_qlimit_page(port);
    if (q != NULL) {
        atomic_store(&q->owner_start, linux_self_start_time());
        atomic_store(&q->owner_pid, (int32_t)getpid());
        atomic_store(&q->destroyed, 0);
    }
}

void ipc_qlimit_mark_destroyed(struct ipc_port *port)
{
    struct ipc_qstate *q = ipc_qlimit_page(port);
    if (q != NULL) {
        atomic_store(&q->destroyed, 1);
    }
}

int ipc_qlimit_destroyer_pidfd(struct ipc_port *port)
{
    struct ipc_qstate *q = ipc_qlimit_page(port);
    if (q == NULL || atomic_load(&q->destroyed) != 1) {
        return -1;
    }
    return linux_pidfd_of((pid_t)atomic_load(&q->owner_pid), atomic_load(&q->owner_start));
}

bool ipc_qlimit_fd_ok(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
           st.st_size == IPC_QLIMIT_PAGE && fcntl(fd, F_GET_SEALS) == IPC_QLIMIT_SEALS;
}

void ipc_qlimit_adopt(struct ipc_port *port, int fd)
{
    if (port->q != NULL) {
        linux_close(fd);
        return;
    }
    void *page = mmap(NULL, IPC_QLIMIT_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (page == MAP_FAILED) {
        linux_close(fd);
        return;
    }
    ipc_qlimit_install(port, fd, page);
}

void ipc_qlimit_release(struct ipc_port *port)
{
    if (port->q != NULL) {
        munmap(port->q, IPC_QLIMIT_PAGE);
        port->q = NULL;
    }
    linux_close(port->q_fd);
    port->q_fd = -1;
}

/* Takes a place if the queue has room (or ALWAYS).  Returns whether it
 * did. */
static bool ipc_qlimit_try(struct ipc_qstate *q, bool always)
{
    if (always) {
        atomic_fetch_add(&q->count, 1);
        return true;
    }
    uint32_t count = atomic_load(&q->count);
    while (count < atomic_load(&q->qlimit)) {
        if (atomic_compare_exchange_weak(&q->count, &count, count + 1)) {
            return true;
        }
    }
    return false;
}

/* Whether the socket of PORT holds no message at all: then a sender goes
 * ahead whatever the page says, so that no one who writes the page can
 * stop a port for good.  (The count can also be off for a moment when
 * places were taken by senders that have not sent yet.) */
static bool ipc_qlimit_socket_empty(struct ipc_port *port)
{
    int queued = 0;
    return ioctl(port->send_fd, SIOCOUTQ, &queued) == 0 && queued == 0;
}

/* Whether PORT's receive right is gone, asking the kernel. */
static bool ipc_qlimit_port_dead(struct ipc_port *port)
{
    if (atomic_load(&port->dead)) {
        return true;
    }
    struct pollfd pfd = {.fd = port->send_fd};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR));
}

/* The slow path of ipc_qlimit_reserve: sleeps until a place frees up.
 * The watchdog interrupts the sleep when DEST dies. */
static mach_msg_return_t ipc_qlimit_wait(struct ipc_port *dest, struct ipc_qstate *q,
                                         mach_msg_option_t option, uint64_t deadline,
                                         bool *taken)
{
    struct ipc_watch_waiter waiter = {.tid = (pid_t)syscall(SYS_gettid)};
    ipc_lock();
    ipc_watch_wait_begin(dest, &waiter);
    ipc_unlock();
    mach_msg_return_t mr = MACH_MSG_SUCCESS;
    for (;;) {
        uint32_t seen = atomic_load(&q->wakeups);
        atomic_fetch_add(&q->sleepers, 1);
        int ms = IPC_QLIMIT_SLICE_MS;
        if (deadline != 0) {
            uint64_t now = linux_now_ms();
            ms = now >= deadline ? 0 : deadline - now < (uint64_t)ms ? (int)(deadline - now) : ms;
        }
        int err = 0;
        if (ipc_qlimit_try(q, false)) {
            *taken = true;
        } else if (ipc_qlimit_port_dead(dest)) {
            mr = MACH_SEND_INVALID_DEST;
        } else if (ipc_qlimit_socket_empty(dest)) {
            *taken = ipc_qlimit_try(q, true);
        } else if (ms == 0) {
            mr = MACH_SEND_TIMED_OUT;
        } else {
            err = linux_futex_wait(&q->wakeups, seen, ms, true); /* interruptible */
        }
        atomic_fetch_sub(&q->sleepers, 1);
        if (*taken || mr != MACH_MSG_SUCCESS) {
            break;
        }
        if (err == EINTR && ((option & MACH_SEND_INTERRUPT) || kern_abort_take())) {
            mr = MACH_SEND_INTERRUPTED;
            break;
        }
    }
    ipc_lock();
    ipc_watch_wait_end(dest, &waiter);
    ipc_unlock();
    return mr;
}

mach_msg_return_t ipc_qlimit_reserve(struct ipc_port *dest, mach_msg_option_t option,
                                     mach_msg_timeout_t timeout, uint64_t deadline,
                                     bool *taken)
{
    *taken = false;
    struct ipc_qstate *q = ipc_qlimit_page(dest);
    if (q == NULL) {
        return MACH_MSG_SUCCESS;
    }
    if (ipc_qlimit_try(q, (option & MACH_SEND_ALWAYS) != 0)) {
        *taken = true;
        return MACH_MSG_SUCCESS;
    }
    if ((option & MACH_SEND_TIMEOUT) && timeout == 0) {
        if (ipc_qlimit_socket_empty(dest)) {
            *taken = ipc_qlimit_try(q, true);
            return MACH_MSG_SUCCESS;
        }
        return MACH_SEND_TIMED_OUT;
    }
    return ipc_qlimit_wait(dest, q, option, deadline, taken);
}

/* Wakes the senders sleeping on Q, if any. */
static void ipc_qlimit_wake(struct ipc_qstate *q)
{
    if (atomic_load(&q->sleepers) != 0) {
        atomic_fetch_add(&q->wakeups, 1);
        linux_futex_wake(&q->wakeups, INT_MAX, true);
    }
}

void ipc_qlimit_put_back(struct ipc_port *port)
{
    struct ipc_qstate *q = ipc_qlimit_page(port);
    if (q == NULL) {
        return;
    }
    uint32_t count = atomic_load(&q->count);
    while (count > 0 && !atomic_compare_exchange_weak(&q->count, &count, count - 1)) {
    }
    ipc_qlimit_wake(q);
}

void ipc_qlimit_set(struct ipc_port *port, mach_port_msgcount_t qlimit)
{
    struct ipc_qstate *q = ipc_qlimit_page(port);
    if (q != NULL) {
        atomic_store(&q->qlimit, qlimit);
        ipc_qlimit_wake(q);
    }
}

mach_port_msgcount_t ipc_qlimit_count(struct ipc_port *port)
{
    struct ipc_qstate *q = ipc_qlimit_page(port);
    return q == NULL ? 0 : atomic_load(&q->count);
}
