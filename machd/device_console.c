/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The console device of machd's device server (device.c): reads, writes,
 * the reads that have to wait, and the console thread that answers them.
 *
 * What callers see is in device.h; what device.c calls is in
 * device_console.h.  A read of the console that has to wait is not waited
 * for in a server thread: its request (with its reply right) is queued
 * and the console thread serves it again once input comes, then sends
 * the reply; GNU Mach likewise queues I/O and replies when it completes.
 * A console port closed for the last time is buried: queued behind the
 * reads waiting on it, and destroyed by the console thread once they are
 * answered (D_NO_SUCH_DEVICE, since the port is closed by then).
 *
 * A waiting read whose reply port dies (its task killed) is dropped
 * without reading, as GNU Mach's tty_portdeath drops it from the tty's
 * delayed reads: else it would keep its reply right and its place in the
 * queue until input came, then take that input and lose it with the
 * reply.  A dead-name request on each queued reply right tells the
 * console thread (through the notify port) to look; it looks again just
 * before it answers, in case the notification is still on its way.
 *
 * Locking keys:
 *   (c) constant once device_setup has returned (device_console_init)
 *   (Q) device_console.lock: the console's queue of waiting reads
 *   (R) device_console.read_lock: reading the console
 *   (W) device_console.write_lock: writing to the console
 * R is taken under Q only with a try-lock; none of them is held with
 * device.c's (L), which the console thread takes alone (through
 * device_is_open_console).  Q is held across mach_port_type and
 * mach_port_request_notification, which take only libmach's own lock
 * (and send their notifications once they have released it).  Console
 * I/O runs under R or W alone, so a slow console holds up only the
 * thread serving it, and no server thread waits for console input.
 */
#include "device_console.h"

#include <assert.h>
#include <errno.h>
#include <mach/notify.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device_i.h"
#include "device_tty.h"

#define DEVICE_CONSOLE_QUEUE_MAX 64u /* console reads waiting */

/* A console read waiting for input: a copy of its request, which owns
 * the reply right; or, with BURY, a closed console port to destroy once
 * the reads queued before it are answered. */
struct device_pending {
    struct device_pending *next;
    mach_port_t bury;
    mach_msg_header_t request[];
};

static struct {
    pthread_mutex_t lock;
    pthread_mutex_t read_lock;
    pthread_mutex_t write_lock;
    int in;                          /* (c) */
    int out;                         /* (c) */
    int wake;                        /* (c) eventfd: queue or state changed */
    mach_port_t notify;              /* (c) receive right: reply ports' deaths */
    atomic_bool reply_died;          /* (atomic) a queued read's reply port died */
    struct device_pending *head;     /* (Q) oldest waiting read */
    struct device_pending **tail;    /* (Q) */
    unsigned queued;                 /* (Q) */
} device_console = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .read_lock = PTHREAD_MUTEX_INITIALIZER,
    .write_lock = PTHREAD_MUTEX_INITIALIZER,
    .in = -1,
    .out = -1,
    .wake = -1,
    .notify = MACH_PORT_NULL,
};

/* Whether the calling thread is the console thread, which may wait. */
static _Thread_local bool device_console_thread_self;

/* ---- set-up ---- */

int device_console_init(int in, int out)
{
    device_console.in = in;
    device_console.out = out;
    device_console.tail = &device_console.head;
    device_tty_init(in, out);
    device_console.wake = eventfd(0, EFD_CLOEXEC);
    if (device_console.wake < 0) {
        fprintf(stderr, "machd: eventfd: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

void device_console_destroy(void)
{
    close(device_console.wake);
    device_console.wake = -1;
}

bool device_console_has_input(void)
{
    return device_console.in >= 0;
}

kern_return_t device_console_notify_make(void)
{
    mach_port_t port = MACH_PORT_NULL;
    kern_return_t kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port);
    if (kr == KERN_SUCCESS) {
        kr = device_set_add(port);
        if (kr != KERN_SUCCESS) {
            (void)mach_port_mod_refs(mach_task_self(), port, MACH_PORT_RIGHT_RECEIVE, -1);
        }
    }
    if (kr == KERN_SUCCESS) {
        device_console.notify = port;
    }
    return kr;
}

/* ---- the queue of waiting reads ---- */

static void device_console_wake(void)
{
    uint64_t one = 1;
    if (device_console.wake >= 0) {
        (void)!write(device_console.wake, &one, sizeof one);
    }
}

/* Whether input (or its end) can be read from the console now. */
static bool device_console_ready(int timeout_ms)
{
    struct pollfd p = {.fd = device_console.in, .events = POLLIN};
    return poll(&p, 1, timeout_ms) > 0;
}

/* Queues the request being served for the console thread.  Expects (Q).
 * Returns MIG_NO_REPLY (the request, with its reply right, is kept) or
 * D_NO_MEMORY. */
static kern_return_t device_console_defer(void)
{
    mach_msg_header_t *req = device_request;
    if (req == NULL || device_console.queued >= DEVICE_CONSOLE_QUEUE_MAX) {
        return D_NO_MEMORY;
    }
    struct device_pending *p = malloc(sizeof *p + req->msgh_size);
    if (p == NULL) {
        return D_NO_MEMORY;
    }
    p->next = NULL;
    p->bury = MACH_PORT_NULL;
    memcpy(p->request, req, req->msgh_size);
    *device_console.tail = p;
    device_console.tail = &p->next;
    device_console.queued++;
    /* Told when the reply port dies (at once if it is dead already:
     * sync 1).  Should the request fail, the death is only found when
     * the read comes to be answered. */
    mach_port_t previous = MACH_PORT_NULL;
    if (mach_port_request_notification(mach_task_self(), req->msgh_remote_port,
                                       MACH_NOTIFY_DEAD_NAME, 1, device_console.notify,
                                       MACH_MSG_TYPE_MAKE_SEND_ONCE,
                                       &previous) == KERN_SUCCESS &&
        MACH_PORT_VALID(previous)) {
        (void)mach_port_deallocate(mach_task_self(), previous);
    }
    device_console_wake();
    return MIG_NO_REPLY;
}

/* Whether the reply port of P, a waiting read, is dead (probed: this
 * finds a death before its notification comes). */
static bool device_console_reply_dead(const struct device_pending *p)
{
    mach_port_type_t type = 0;
    return mach_port_type(mach_task_self(), p->request->msgh_remote_port, &type) ==
               KERN_SUCCESS &&
           (type & MACH_PORT_TYPE_DEAD_NAME);
}

/* Drops the waiting reads whose reply port died, with their requests.
 * Only the console thread, which alone takes reads off the queue.  Takes
 * and releases (Q). */
static void device_console_sweep(void)
{
    struct device_pending *dead = NULL;
    pthread_mutex_lock(&device_console.lock);
    struct device_pending **link = &device_console.head;
    while (*link != NULL) {
        struct device_pending *p = *link;
        if (p->bury == MACH_PORT_NULL && device_console_reply_dead(p)) {
            *link = p->next;
            p->next = dead;
            dead = p;
            device_console.queued--;
        } else {
            link = &p->next;
        }
    }
    device_console.tail = link;
    pthread_mutex_unlock(&device_console.lock);
    while (dead != NULL) {
        struct device_pending *next = dead->next;
        mach_msg_destroy(dead->request);
        free(dead);
        dead = next;
    }
}

boolean_t device_console_notify_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
    if (!MACH_PORT_VALID(in->msgh_local_port) || in->msgh_local_port != device_console.notify ||
        MACH_PORT_VALID(in->msgh_remote_port) || (in->msgh_bits & MACH_MSGH_BITS_COMPLEX)) {
        return FALSE;
    }
    if (in->msgh_id == MACH_NOTIFY_DEAD_NAME &&
        in->msgh_size == sizeof(mach_dead_name_notification_t)) {
        /* The notification's own reference to the dead name; the queued
         * request keeps the other until the console thread drops it. */
        const mach_dead_name_notification_t *n = (const void *)in;
        (void)mach_port_deallocate(mach_task_self(), n->not_port);
        atomic_store(&device_console.reply_died, true);
        device_console_wake();
    } else if (in->msgh_id != MACH_NOTIFY_PORT_DELETED) {
        return FALSE; /* (a read answered sends port-deleted: nothing to do) */
    }
    ((mig_reply_header_t *)out)->RetCode = MIG_NO_REPLY;
    ((mig_reply_header_t *)out)->Head.msgh_remote_port = MACH_PORT_NULL;
    return TRUE;
}

void device_console_bury(mach_port_t port)
{
    struct device_pending *p = malloc(sizeof *p);
    if (p == NULL) {
        device_port_destroy(port); /* its waiting reads die with it */
        return;
    }
    *p = (struct device_pending){.bury = port};
    pthread_mutex_lock(&device_console.lock);
    *device_console.tail = p;
    device_console.tail = &p->next;
    pthread_mutex_unlock(&device_console.lock);
    device_console_wake();
}

/* ---- reads and writes ---- */

kern_return_t device_console_read(dev_mode_t mode, char *buf, size_t count, size_t *done)
{
    *done = 0;
    if (device_console.in < 0) {
        return D_INVALID_OPERATION;
    }
    kern_return_t kr = D_SUCCESS;
    if (device_console_thread_self) {
        pthread_mutex_lock(&device_console.read_lock);
    } else {
        /* A server thread reads only what is there, and never waits for
         * (R): the console thread may hold it in a read that blocks
         * (another process took the input it polled for). */
        pthread_mutex_lock(&device_console.lock);
        if (device_console.head != NULL || !device_console_ready(0) ||
            pthread_mutex_trylock(&device_console.read_lock) != 0) {
            kr = (mode & D_NOWAIT) ? D_WOULD_BLOCK : device_console_defer();
        }
        pthread_mutex_unlock(&device_console.lock);
        if (kr != D_SUCCESS) {
            return kr;
        }
    }
    for (;;) {
        ssize_t n = read(device_console.in, buf, count);
        if (n >= 0) {
            *done = (size_t)n;
            break;
        }
        if (errno != EINTR) {
            kr = device_errno(errno);
            break;
        }
    }
    pthread_mutex_unlock(&device_console.read_lock);
    return kr;
}

kern_return_t device_console_write(const char *buf, size_t count, size_t *done)
{
    *done = 0;
    if (device_console.out < 0) {
        return D_INVALID_OPERATION;
    }
    kern_return_t kr = D_SUCCESS;
    device_tty_output_restart(); /* as GNU Mach's char_write */
    pthread_mutex_lock(&device_console.write_lock);
    while (*done < count) {
        ssize_t n = write(device_console.out, buf + *done, count - *done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            kr = n < 0 ? device_errno(errno) : D_IO_ERROR;
            break;
        }
        *done += (size_t)n;
    }
    pthread_mutex_unlock(&device_console.write_lock);
    return kr;
}

void device_console_discard(void)
{
    struct stat st;
    if (device_console.in < 0 || fstat(device_console.in, &st) != 0 ||
        !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) ||
        pthread_mutex_trylock(&device_console.read_lock) != 0) {
        return;
    }
    int waiting = 0;
    char buf[512];
    while (ioctl(device_console.in, FIONREAD, &waiting) == 0 && waiting > 0 &&
           device_console_ready(0)) {
        size_t n = (size_t)waiting < sizeof buf ? (size_t)waiting : sizeof buf;
        if (read(device_console.in, buf, n) <= 0) {
            break;
        }
    }
    pthread_mutex_unlock(&device_console.read_lock);
}

/* ---- the console thread ---- */

/* Serves REQ again (now that input is there, or the console closed) and
 * sends its reply from REPLY (DEVICE_MSG_MAX bytes), as mach_msg_server
 * would (device_reply_send).  Consumes the rights and memory of REQ. */
static void device_console_answer(mach_msg_header_t *req, mach_msg_header_t *reply)
{
    (void)device_demux(req, reply);
    assert(((mig_reply_header_t *)reply)->RetCode != MIG_NO_REPLY);
    device_reply_send(req, reply);
}

/* Waits until the console has input or the state changes (a read queued,
 * the console closed): reads the wake-up counter when it fired. */
static void device_console_wait(bool for_input)
{
    struct pollfd p[2] = {
        {.fd = device_console.wake, .events = POLLIN},
        {.fd = for_input ? device_console.in : -1, .events = POLLIN},
    };
    if (poll(p, 2, -1) > 0 && (p[0].revents & POLLIN)) {
        uint64_t n;
        (void)!read(device_console.wake, &n, sizeof n);
    }
}

/* The request being answered stays at the head of the queue so that no
 * server thread reads before it. */
void *device_console_main(void *arg)
{
    (void)arg;
    device_console_thread_self = true;
    mach_msg_header_t *reply = malloc(DEVICE_MSG_MAX);
    if (reply == NULL) {
        fprintf(stderr, "machd: console thread: out of memory\n");
        return NULL;
    }
    for (;;) {
        if (atomic_exchange(&device_console.reply_died, false)) {
            device_console_sweep();
        }
        pthread_mutex_lock(&device_console.lock);
        struct device_pending *p = device_console.head;
        pthread_mutex_unlock(&device_console.lock);
        if (p == NULL) {
            device_console_wait(false);
            continue;
        }
        if (p->bury != MACH_PORT_NULL) {
            device_port_destroy(p->bury);
        } else if (device_is_open_console(p->request->msgh_local_port) &&
                   !device_console_ready(0)) {
            device_console_wait(true);
            continue; /* look again: input, a death, or the console closed */
        } else if (device_console_reply_dead(p)) {
            mach_msg_destroy(p->request); /* the input stays for the living */
        } else {
            device_console_answer(p->request, reply);
        }
        pthread_mutex_lock(&device_console.lock);
        device_console.head = p->next;
        if (device_console.head == NULL) {
            device_console.tail = &device_console.head;
        }
        device_console.queued -= p->bury == MACH_PORT_NULL;
        pthread_mutex_unlock(&device_console.lock);
        free(p);
    }
    return NULL;
}
