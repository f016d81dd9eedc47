/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The janitor's thread: one epoll set over the connections of the tasks
 * that list send-once rights.  A connection carries the ports a task
 * shows (each with its send end); its end is the task's end (it dies or
 * executes another program: the descriptor is close-on-exec and not kept
 * across fork).  Then every right the task's table still lists gets its
 * send-once notification, through the send end of its port.
 *
 * The send ends kept per task are swept of dead ports whenever their
 * number doubles, so a long-lived server that has answered many clients
 * does not pile up descriptors here.
 */
#include "janitor.h"

#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol.h"

/* A port a task showed. */
struct janitor_port {
    uint64_t key;
    int send_fd;
};

/* A task that lists its rights.  Owned by the janitor's thread once in
 * the epoll set. */
struct janitor_task {
    int conn_fd;
    int table_fd;
    struct janitor_port *ports;
    size_t nports, cap, swept_at;
};

static int janitor_epoll = -1;


/* Closes the send ends of T's dead ports. */
static void janitor_sweep(struct janitor_task *t)
{
    size_t k = 0;
    for (size_t i = 0; i < t->nports; i++) {
        struct pollfd pfd = {.fd = t->ports[i].send_fd};
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR))) {
            close(t->ports[i].send_fd);
        } else {
            t->ports[k++] = t->ports[i];
        }
    }
    t->nports = k;
    t->swept_at = k;
}

/* Adds the port T shows, with its send end FD (taken). */
static void janitor_add_port(struct janitor_task *t, uint64_t key, int fd)
{
    if (t->nports >= 2 * t->swept_at + 64) {
        janitor_sweep(t);
    }
    if (t->nports == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct janitor_port *p = realloc(t->ports, cap * sizeof *p);
        if (p == NULL) {
            close(fd); /* its rights go unnotified; the task lives on */
            return;
        }
        t->ports = p;
        t->cap = cap;
    }
    t->ports[t->nports++] = (struct janitor_port){key, fd};
}

static int janitor_port_cmp(const void *a, const void *b);

/* T forgets the port KEY.  (Keys grow as a task shows ports, and the
 * array keeps their order, so it is sorted.) */
static void janitor_forget_port(struct janitor_task *t, uint64_t key)
{
    struct janitor_port probe = {.key = key};
    struct janitor_port *p =
        bsearch(&probe, t->ports, t->nports, sizeof *t->ports, janitor_port_cmp);
    if (p != NULL) {
        close(p->send_fd);
        memmove(p, p + 1, (size_t)(t->ports + t->nports - (p + 1)) * sizeof *p);
        t->nports--;
    }
}

/* Takes the ports waiting on T's connection.  Returns false once it
 * has ended. */
static bool janitor_read(struct janitor_task *t)
{
    for (;;) {
        struct hell_janitor_port reg;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = {.iov_base = &reg, .iov_len = sizeof reg};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf};
        ssize_t len = recvmsg(t->conn_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (len < 0 && (errno == EAGAIN || errno == EINTR)) {
            return true;
        }
        if (len <= 0) {
            return false;
        }
        int fd = -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int))) {
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
        }
        bool ok = len == (ssize_t)sizeof reg && reg.magic == HELL_PROTO_MAGIC &&
                  !(msg.msg_flags & MSG_CTRUNC);
        if (ok && reg.flags == HELL_JANITOR_FORGET && fd < 0) {
            janitor_forget_port(t, reg.key);
            continue;
        }
        /* Only a socket is a send end: anything else (whose close might
         * even block this thread) is refused. */
        struct stat st;
        if (!ok || reg.flags != 0 || fd < 0 || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
            if (fd >= 0) {
                close(fd);
            }
            continue; /* malformed: only that task's rights suffer */
        }
        janitor_add_port(t, reg.key, fd);
    }
}

static int janitor_port_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct janitor_port *)a)->key;
    uint64_t y = ((const struct janitor_port *)b)->key;
    return x < y ? -1 : x > y;
}

/* T ended: notifies what its table lists, frees T. */
static void janitor_task_end(struct janitor_task *t)
{
    epoll_ctl(janitor_epoll, EPOLL_CTL_DEL, t->conn_fd, NULL);
    qsort(t->ports, t->nports, sizeof *t->ports, janitor_port_cmp);
    struct stat st;
    struct hell_janitor_slot *slots = MAP_FAILED;
    size_t n = 0;
    /* (Sealed against shrinking, checked on adoption: it cannot fault
     * us.)  No larger than a task may list. */
    if (fstat(t->table_fd, &st) == 0 && st.st_size >= (off_t)sizeof *slots) {
        n = (size_t)st.st_size / sizeof *slots;
        if (n > HELL_JANITOR_MAX_SLOTS) {
            n = HELL_JANITOR_MAX_SLOTS;
        }
        slots = mmap(NULL, n * sizeof *slots, PROT_READ, MAP_SHARED, t->table_fd, 0);
    }
    for (size_t i = 0; slots != MAP_FAILED && i < n; i++) {
        uint64_t nonce = __atomic_load_n(&slots[i].nonce, __ATOMIC_ACQUIRE);
        struct janitor_port key = {.key = slots[i].key};
        struct janitor_port *p =
            nonce != 0 ? bsearch(&key, t->ports, t->nports, sizeof *t->ports, janitor_port_cmp)
                       : NULL;
        if (p != NULL) {
            (void)hell_janitor_send_once(p->send_fd, nonce);
        }
    }
    if (slots != MAP_FAILED) {
        munmap(slots, n * sizeof *slots);
    }
    for (size_t i = 0; i < t->nports; i++) {
        close(t->ports[i].send_fd);
    }
    close(t->conn_fd);
    close(t->table_fd);
    free(t->ports);
    free(t);
}

static void *janitor_main(void *arg)
{
    (void)arg;
    struct epoll_event events[32];
    for (;;) {
        int n = epoll_wait(janitor_epoll, events, 32, -1);
        for (int i = 0; i < n; i++) {
            struct janitor_task *t = events[i].data.ptr;
            /* Ports sent just before the end come first. */
            bool open = janitor_read(t);
            if (!open || (events[i].events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))) {
                janitor_task_end(t);
            }
        }
    }
    return NULL;
}

int janitor_start(void)
{
    janitor_epoll = epoll_create1(EPOLL_CLOEXEC);
    if (janitor_epoll < 0) {
        return -1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int err = pthread_create(&thread, &attr, janitor_main, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        close(janitor_epoll);
        janitor_epoll = -1;
        errno = err;
        return -1;
    }
    return 0;
}

void janitor_adopt(int conn_fd, int table_fd)
{
    /* Only a memfd sealed against shrinking is a table (anything else
     * might fault us when mapped, or block when closed). */
    int seals = fcntl(table_fd, F_GET_SEALS);
    struct janitor_task *t =
        seals >= 0 && (seals & F_SEAL_SHRINK) ? calloc(1, sizeof *t) : NULL;
    if (t == NULL || janitor_epoll < 0) {
        free(t);
        close(conn_fd);
        close(table_fd);
        return;
    }
    t->conn_fd = conn_fd;
    t->table_fd = table_fd;
    struct epoll_event event = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = t};
    if (epoll_ctl(janitor_epoll, EPOLL_CTL_ADD, conn_fd, &event) != 0) {
        free(t);
        close(conn_fd);
        close(table_fd);
    }
}
