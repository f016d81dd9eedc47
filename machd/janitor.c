/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The janitor's thread: one epoll set over the connections of the tasks
 * that list send-once rights.  A connection carries the ports a task
 * shows (each with its send end); its end is the task's end (it dies or
 * executes another program: the descriptor is close-on-exec and not kept
 * across fork).  Then every right the task's table still lists gets its
 * send-once notification, through the send end of its port.
 *
 * A task also shows the receive end of each port whose receive right it
 * holds and that can have senders, and lists the right in its table
 * while it holds it; when the right moves away, the task unlists it and
 * tells us to close our copy.  Each end is in the epoll set, which
 * reports it hung up when its receiver destroys the port (the receiver
 * destroys the queue itself): then our copy closes.  When the task ends,
 * the queue of every port whose right its table still lists is destroyed
 * as GNU Mach destroys a dead task's ports (with the rights the messages
 * carry), and the ports die.
 *
 * For a receive right with a port-destroyed request, the task keeps an
 * escrow here: the notification it would send, with its descriptors.
 * When the task ends with the right listed under that escrow's id, the
 * escrow goes to the request's holder instead of the queue being
 * destroyed (and the send-once rights it carries are not notified).
 *
 * The send ends and receive ends kept per task are swept whenever their
 * number doubles (of dead ports, of ports whose receive right the task
 * gave away), so a long-lived server that has answered many clients
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
#include <sys/un.h>
#include <unistd.h>

#include "protocol.h"

/* What an event of the epoll set is about. */
enum janitor_kind { JANITOR_TASK, JANITOR_RECEIVE };

/* A port a task showed. */
struct janitor_port {
    uint64_t key;
    int send_fd;
};

struct janitor_task;

/* A port-destroyed notification kept for a task's death
 * (struct hell_janitor_escrow). */
struct janitor_escrow {
    struct hell_janitor_escrow head;
    char *msg; /* what follows the head: the kept nonces, then the
                  notification on the wire */
    size_t len;
    int *fds;
    unsigned nfds;
};

/* The receive end of a port of a task. */
struct janitor_receive {
    enum janitor_kind kind; /* JANITOR_RECEIVE */
    struct janitor_task *task;
    uint64_t key;
    int fd;
    size_t index; /* in task->receives */
};

/* A task that lists its rights.  Owned by the janitor's thread once in
 * the epoll set. */
struct janitor_task {
    enum janitor_kind kind; /* JANITOR_TASK */
    int conn_fd;
    int table_fd;
    struct janitor_port *ports;
    size_t nports, cap, swept_at;
    struct janitor_receive **receives;
    size_t nreceives, rcap, rswept_at;
    struct janitor_escrow *escrows;
    size_t nescrows, ecap;
    size_t escrow_fds;    /* descriptors the escrows hold */
    size_t escrow_bytes;  /* bytes they hold */
};

/* The most descriptors the escrows of one task hold. */
#define JANITOR_ESCROW_FDS_MAX 4096
/* The most bytes they hold; and at most two per receive end kept (a
 * task escrows only ports whose receive end it showed), plus a few. */
#define JANITOR_ESCROW_BYTES_MAX (64u << 20)
#define JANITOR_ESCROW_SPARE 64

static int janitor_epoll = -1;

/* Maps T's table for reading; *N gets its number of slots.  Returns
 * MAP_FAILED when it cannot be read. */
static struct hell_janitor_slot *janitor_table_map(const struct janitor_task *t, size_t *n)
{
    struct stat st;
    *n = 0;
    /* (Sealed against shrinking, checked on adoption: it cannot fault
     * us.)  No larger than a task may list. */
    if (fstat(t->table_fd, &st) != 0 || st.st_size < (off_t)sizeof(struct hell_janitor_slot)) {
        return MAP_FAILED;
    }
    *n = (size_t)st.st_size / sizeof(struct hell_janitor_slot);
    if (*n > HELL_JANITOR_MAX_SLOTS) {
        *n = HELL_JANITOR_MAX_SLOTS;
    }
    return mmap(NULL, *n * sizeof(struct hell_janitor_slot), PROT_READ, MAP_SHARED, t->table_fd,
                0);
}

static int janitor_key_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A right a task's table lists: its key and its slot's value (a
 * send-once right's nonce; for a receive right 1, or the id of its
 * current escrow). */
struct janitor_listed_right {
    uint64_t key;
    uint64_t value;
};

/* The rights a task's table lists: the receive rights, sorted by key, and
 * when asked for the send-once rights, in the table's order. */
struct janitor_listed {
    bool ok;       /* the table was read whole (else nothing counts) */
    struct janitor_listed_right *receives;
    size_t nreceives;
    struct janitor_listed_right *send_onces;
    size_t nsend_onces;
};

static void janitor_listed_free(struct janitor_listed *listed)
{
    free(listed->receives);
    free(listed->send_onces);
}

/* Appends KEY and VALUE to *ARRAY, of *N rights with room for *CAP.
 * Returns false when out of memory. */
static bool janitor_listed_add(struct janitor_listed_right **array, size_t *n, size_t *cap,
                               uint64_t key, uint64_t value)
{
    if (*n == *cap) {
        size_t more = *cap ? *cap * 2 : 64;
        struct janitor_listed_right *p = realloc(*array, more * sizeof *p);
        if (p == NULL) {
            return false;
        }
        *array = p;
        *cap = more;
    }
    (*array)[(*n)++] = (struct janitor_listed_right){key, value};
    return true;
}

/* Reads T's table into *OUT (its arrays for the caller to free with
 * janitor_listed_free): the receive rights, and with SEND_ONCES the
 * send-once rights too. */
static void janitor_table_read(struct janitor_task *t, bool send_onces,
                               struct janitor_listed *out)
{
    size_t nslots, rcap = 0, scap = 0;
    *out = (struct janitor_listed){0};
    struct hell_janitor_slot *slots = janitor_table_map(t, &nslots);
    out->ok = slots != MAP_FAILED;
    for (size_t i = 0; out->ok && i < nslots; i++) {
        uint64_t nonce = __atomic_load_n(&slots[i].nonce, __ATOMIC_ACQUIRE);
        uint64_t key = __atomic_load_n(&slots[i].key, __ATOMIC_RELAXED);
        bool receive = key & HELL_JANITOR_SLOT_RECEIVE;
        if (nonce == 0 || (!receive && !send_onces)) {
            continue;
        }
        bool added = receive ? janitor_listed_add(&out->receives, &out->nreceives, &rcap,
                                                  key & ~HELL_JANITOR_SLOT_RECEIVE, nonce)
                             : janitor_listed_add(&out->send_onces, &out->nsend_onces, &scap,
                                                  key, nonce);
        if (!added) {
            janitor_listed_free(out);
            *out = (struct janitor_listed){0};
        }
    }
    if (slots != MAP_FAILED) {
        munmap(slots, nslots * sizeof *slots);
    }
    if (out->nreceives > 1) {
        qsort(out->receives, out->nreceives, sizeof *out->receives, janitor_key_cmp);
    }
}

/* The entry of the receive right KEY in LISTED, or NULL when it is not
 * listed.  (libmach lists each receive right once.) */
static struct janitor_listed_right *janitor_receive_find(const struct janitor_listed *listed,
                                                         uint64_t key)
{
    return listed->nreceives > 0 ? bsearch(&key, listed->receives, listed->nreceives,
                                           sizeof *listed->receives, janitor_key_cmp)
                                 : NULL;
}

/* The slot's value of the receive right KEY in LISTED, or 0 when it is
 * not listed. */
static uint64_t janitor_receive_listed(const struct janitor_listed *listed, uint64_t key)
{
    const struct janitor_listed_right *r = janitor_receive_find(listed, key);
    return r != NULL ? r->value : 0;
}

/* The send ends T showed (still T's), in an array the caller frees, or
 * NULL. */
static int *janitor_send_fds(const struct janitor_task *t)
{
    int *fds = malloc((t->nports + 1) * sizeof *fds);
    for (size_t i = 0; fds != NULL && i < t->nports; i++) {
        fds[i] = t->ports[i].send_fd;
    }
    return fds;
}

static void janitor_close_fds(const int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        close(fds[i]);
    }
}

/* Frees T's escrow I (closing its descriptors). */
static void janitor_escrow_free(struct janitor_task *t, size_t i)
{
    struct janitor_escrow *e = &t->escrows[i];
    janitor_close_fds(e->fds, e->nfds);
    t->escrow_fds -= e->nfds;
    t->escrow_bytes -= e->len;
    free(e->fds);
    free(e->msg);
    t->escrows[i] = t->escrows[--t->nescrows];
}

/* Forgets T's escrows of port KEY, but its newest with KEEP_NEWEST. */
static void janitor_escrow_forget(struct janitor_task *t, uint64_t key, bool keep_newest)
{
    uint64_t newest = 0;
    for (size_t i = 0; keep_newest && i < t->nescrows; i++) {
        if (t->escrows[i].head.key == key && t->escrows[i].head.id > newest) {
            newest = t->escrows[i].head.id;
        }
    }
    for (size_t i = t->nescrows; i-- > 0;) {
        if (t->escrows[i].head.key == key && t->escrows[i].head.id != newest) {
            janitor_escrow_free(t, i);
        }
    }
}

/* Whether FD is something an escrow may carry: a socket, a pipe or a
 * memfd (whose close never blocks this thread). */
static bool janitor_escrow_fd_ok(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 &&
           (S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode) ||
            (S_ISREG(st.st_mode) && fcntl(fd, F_GET_SEALS) >= 0));
}

/* Keeps the escrow HEAD, MSG[0..LEN) with FDS[0..NFDS) (all taken), as
 * T's newest for its port; the one before stays too (the task lists the
 * new one only once it is sent). */
static void janitor_escrow_add(struct janitor_task *t, const struct hell_janitor_escrow *head,
                               const char *msg, size_t len, int *fds, unsigned nfds)
{
    /* The one before stays (it is current until the task stores the new
     * id); older ones go first, so that they do not count. */
    janitor_escrow_forget(t, head->key, true);
    /* (RESERVED is 0 from a task that knows this format: anything else
     * is a request this machd does not understand.) */
    bool ok = head->reserved == 0 && len / sizeof(uint64_t) > head->npending &&
              t->escrow_fds + nfds <= JANITOR_ESCROW_FDS_MAX &&
              t->escrow_bytes + len <= JANITOR_ESCROW_BYTES_MAX &&
              t->nescrows < 2 * t->nreceives + JANITOR_ESCROW_SPARE;
    for (unsigned i = 0; ok && i < nfds; i++) {
        ok = janitor_escrow_fd_ok(fds[i]);
    }
    if (ok && t->nescrows == t->ecap) {
        size_t cap = t->ecap ? t->ecap * 2 : 8;
        struct janitor_escrow *p = realloc(t->escrows, cap * sizeof *p);
        ok = p != NULL;
        if (ok) {
            t->escrows = p;
            t->ecap = cap;
        }
    }
    struct janitor_escrow e = {.head = *head, .len = len, .nfds = nfds};
    e.msg = ok ? malloc(len) : NULL;
    e.fds = ok && e.msg != NULL ? malloc((nfds + 1) * sizeof *fds) : NULL;
    if (e.fds == NULL) {
        free(e.msg);
        janitor_close_fds(fds, nfds); /* the request goes unhonoured */
        return;
    }
    memcpy(e.msg, msg, len);
    memcpy(e.fds, fds, nfds * sizeof *fds);
    t->escrows[t->nescrows++] = e;
    t->escrow_fds += nfds;
    t->escrow_bytes += len;
}

/* Takes R out of its task and of the epoll set, closes this copy of
 * its receive end, and frees it. */
static void janitor_receive_drop(struct janitor_receive *r)
{
    struct janitor_task *t = r->task;
    epoll_ctl(janitor_epoll, EPOLL_CTL_DEL, r->fd, NULL);
    close(r->fd);
    t->receives[r->index] = t->receives[--t->nreceives];
    t->receives[r->index]->index = r->index;
    free(r);
}

/* Closes T's copies of receive ends whose right T no longer lists (it
 * gave the right away and our copy was not closed then).  (Ends that
 * hang up are closed as epoll reports them.) */
static void janitor_sweep_receives(struct janitor_task *t)
{
    struct janitor_listed listed;
    janitor_table_read(t, false, &listed);
    for (size_t i = t->nreceives; listed.ok && i-- > 0;) {
        if (!janitor_receive_listed(&listed, t->receives[i]->key)) {
            janitor_receive_drop(t->receives[i]);
        }
    }
    for (size_t i = t->nescrows; listed.ok && i-- > 0;) {
        if (!janitor_receive_listed(&listed, t->escrows[i].head.key)) {
            janitor_escrow_free(t, i);
        }
    }
    janitor_listed_free(&listed);
    t->rswept_at = t->nreceives;
}

/* T forgets the receive end KEY (the right left the task): every copy
 * kept under KEY closes. */
static void janitor_forget_receive(struct janitor_task *t, uint64_t key)
{
    for (size_t i = t->nreceives; i-- > 0;) {
        if (t->receives[i]->key == key) {
            janitor_receive_drop(t->receives[i]);
        }
    }
    janitor_escrow_forget(t, key, false);
}

/* Whether T's connection has ended (the task died or executed another
 * program), before the janitor has read its end. */
static bool janitor_task_ended(const struct janitor_task *t)
{
    struct pollfd pfd = {.fd = t->conn_fd, .events = POLLRDHUP};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* R's receive end hung up.  A live task's receiver destroyed the port
 * (and destroyed its queue itself), or a sender shut the shared send end
 * down: the copy closes, the queue is left to the receiver.  A dead
 * task's ends wait for its end, which destroys what they hold. */
static void janitor_receive_hung_up(struct janitor_receive *r)
{
    if (janitor_task_ended(r->task)) {
        epoll_ctl(janitor_epoll, EPOLL_CTL_DEL, r->fd, NULL);
    } else {
        janitor_escrow_forget(r->task, r->key, false);
        janitor_receive_drop(r);
    }
}

/* Keeps FD (taken), the receive end of T's port KEY, until the port dies
 * or T ends. */
static void janitor_add_receive(struct janitor_task *t, uint64_t key, int fd)
{
    if (t->nreceives >= 2 * t->rswept_at + 64) {
        janitor_sweep_receives(t);
    }
    struct janitor_receive *r = malloc(sizeof *r);
    if (r != NULL && t->nreceives == t->rcap) {
        size_t cap = t->rcap ? t->rcap * 2 : 64;
        struct janitor_receive **p = realloc(t->receives, cap * sizeof *p);
        if (p == NULL) {
            free(r);
            r = NULL;
        } else {
            t->receives = p;
            t->rcap = cap;
        }
    }
    if (r == NULL) {
        close(fd); /* the queue is not kept: the task lives on */
        return;
    }
    *r = (struct janitor_receive){JANITOR_RECEIVE, t, key, fd, t->nreceives};
    /* No event asked: epoll reports a hang-up (the receiver destroyed
     * the port) whatever the mask. */
    struct epoll_event event = {.events = 0, .data.ptr = r};
    if (epoll_ctl(janitor_epoll, EPOLL_CTL_ADD, fd, &event) != 0) {
        free(r);
        close(fd);
        return;
    }
    t->receives[t->nreceives++] = r;
}


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
    /* Kept sorted by key.  Keys are serials given as ports are made, and
     * a port is shown later, when it is first needed: nearly always at
     * the end. */
    size_t at = t->nports;
    while (at > 0 && t->ports[at - 1].key > key) {
        at--;
    }
    memmove(&t->ports[at + 1], &t->ports[at], (t->nports - at) * sizeof *t->ports);
    t->ports[at] = (struct janitor_port){key, fd};
    t->nports++;
}

static int janitor_port_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct janitor_port *)a)->key;
    uint64_t y = ((const struct janitor_port *)b)->key;
    return x < y ? -1 : x > y;
}

/* The port T showed under KEY, or NULL. */
static struct janitor_port *janitor_port_find(struct janitor_task *t, uint64_t key)
{
    struct janitor_port probe = {.key = key};
    return t->nports > 0
               ? bsearch(&probe, t->ports, t->nports, sizeof *t->ports, janitor_port_cmp)
               : NULL;
}

/* T forgets the port KEY. */
static void janitor_forget_port(struct janitor_task *t, uint64_t key)
{
    struct janitor_port *p = janitor_port_find(t, key);
    if (p != NULL) {
        close(p->send_fd);
        memmove(p, p + 1, (size_t)(t->ports + t->nports - (p + 1)) * sizeof *p);
        t->nports--;
    }
}

/* Whether FD is an end of a port: a SOCK_SEQPACKET socket of an unnamed
 * pair (not, say, the task's end of its connection to us, which would
 * then never hang up). */
static bool janitor_is_port_end(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET &&
           getpeername(fd, (struct sockaddr *)&peer, &plen) == 0 &&
           plen <= sizeof(sa_family_t);
}

/* The janitor thread's buffer for what a task sends (an escrow at most). */
static char janitor_buf[HELL_JANITOR_ESCROW_MAX];

/* Takes what waits on T's connection: ports shown or forgotten, and
 * escrows.  Returns false once it has ended. */
static bool janitor_read(struct janitor_task *t)
{
    for (;;) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * HELL_JANITOR_ESCROW_FDS)];
        } control;
        struct iovec iov = {.iov_base = janitor_buf, .iov_len = sizeof janitor_buf};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf};
        ssize_t len = recvmsg(t->conn_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (len < 0 && (errno == EAGAIN || errno == EINTR)) {
            return true;
        }
        if (len <= 0) {
            return false;
        }
        int fds[HELL_JANITOR_ESCROW_FDS];
        unsigned nfds = hell_received_fds(&msg, fds, HELL_JANITOR_ESCROW_FDS);
        struct hell_janitor_port reg;
        struct hell_janitor_escrow escrow;
        memcpy(&reg, janitor_buf, sizeof reg);
        memcpy(&escrow, janitor_buf, sizeof escrow);
        bool ok = len >= (ssize_t)sizeof reg && reg.magic == HELL_PROTO_MAGIC &&
                  !(msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC));
        int fd = nfds == 1 ? fds[0] : -1;
        if (ok && len == (ssize_t)sizeof reg) {
            if (reg.flags == HELL_JANITOR_FORGET && nfds == 0) {
                janitor_forget_port(t, reg.key);
                continue;
            }
            if (reg.flags == (HELL_JANITOR_FORGET | HELL_JANITOR_RECEIVE) && nfds == 0) {
                janitor_forget_receive(t, reg.key);
                continue;
            }
            if (reg.flags == HELL_JANITOR_RECEIVE && fd >= 0 && janitor_is_port_end(fd)) {
                janitor_add_receive(t, reg.key, fd);
                continue;
            }
            /* Only a socket is a send end: anything else (whose close
             * might even block this thread) is refused. */
            struct stat st;
            if (reg.flags == 0 && fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
                janitor_add_port(t, reg.key, fd);
                continue;
            }
        } else if (ok && len >= (ssize_t)sizeof escrow) {
            if (escrow.flags == (HELL_JANITOR_ESCROW | HELL_JANITOR_FORGET) &&
                len == (ssize_t)sizeof escrow && nfds == 0) {
                janitor_escrow_forget(t, escrow.key, false);
                continue;
            }
            if (escrow.flags == HELL_JANITOR_ESCROW) {
                janitor_escrow_add(t, &escrow, janitor_buf + sizeof escrow,
                                   (size_t)len - sizeof escrow, fds, nfds);
                continue;
            }
        }
        janitor_close_fds(fds, nfds); /* malformed: only that task's rights suffer */
    }
}

/* T ended: sends each escrow its table still names as current to its
 * notify port; the receive right of each one sent is no longer listed in
 * LISTED (its value is 0).  Returns the nonces the escrows sent carry,
 * sorted (an array the caller frees, *N its length), or NULL when out of
 * memory: then none is sent. */
static uint64_t *janitor_escrows_send(struct janitor_task *t, struct janitor_listed *listed,
                                      size_t *n)
{
    size_t most = 1;
    for (size_t i = 0; i < t->nescrows; i++) {
        most += 2 + t->escrows[i].head.npending;
    }
    uint64_t *spent = malloc(most * sizeof *spent);
    *n = 0;
    for (size_t i = 0; spent != NULL && i < t->nescrows; i++) {
        struct janitor_escrow *e = &t->escrows[i];
        struct janitor_port *notify = janitor_port_find(t, e->head.notify_key);
        struct janitor_listed_right *r = janitor_receive_find(listed, e->head.key);
        /* (A value of 0: an escrow of that port went already.) */
        if (r == NULL || r->value == 0 || r->value != e->head.id || notify == NULL) {
            continue;
        }
        /* A notify port that is dead: the port is destroyed with the
         * others, as GNU Mach destroys a right whose notification
         * cannot be sent.  (A full one keeps the escrow until there is
         * room, and destroys it should the port die first.) */
        size_t kept = e->head.npending * sizeof(uint64_t);
        if (hell_janitor_send_escrow(notify->send_fd, e->msg + kept, e->len - kept, e->fds,
                                     e->nfds) != 0) {
            continue;
        }
        r->value = 0; /* gone: not destroyed with the others */
        for (unsigned k = 0; k < 2; k++) {
            if (e->head.nonces[k] != 0) {
                spent[(*n)++] = e->head.nonces[k];
            }
        }
        memcpy(spent + *n, e->msg, kept);
        *n += e->head.npending;
    }
    /* Sorted, for the lookups of the task's end. */
    if (*n > 1) {
        qsort(spent, *n, sizeof *spent, janitor_key_cmp);
    }
    return spent;
}

/* T ended: notifies the send-once rights its table lists, destroys the
 * ports whose receive rights it lists, frees T. */
static void janitor_task_end(struct janitor_task *t)
{
    epoll_ctl(janitor_epoll, EPOLL_CTL_DEL, t->conn_fd, NULL);
    /* The task is gone: its table no longer changes. */
    struct janitor_listed listed;
    janitor_table_read(t, true, &listed);
    /* The escrows first: the send-once rights they carry live on (they
     * went on in them, and are not notified). */
    size_t nspent = 0;
    uint64_t *spent = listed.ok ? janitor_escrows_send(t, &listed, &nspent) : NULL;
    for (size_t i = 0; i < listed.nsend_onces; i++) {
        uint64_t nonce = listed.send_onces[i].value;
        bool went = nspent > 0 &&
                    bsearch(&nonce, spent, nspent, sizeof *spent, janitor_key_cmp) != NULL;
        struct janitor_port *p = went ? NULL : janitor_port_find(t, listed.send_onces[i].key);
        if (p != NULL) {
            (void)hell_janitor_send_once(p->send_fd, nonce);
        }
    }
    free(spent);
    size_t ndead = 0;
    int *dead = malloc((t->nreceives + 1) * sizeof *dead);
    for (size_t i = 0; i < t->nreceives; i++) {
        struct janitor_receive *r = t->receives[i];
        epoll_ctl(janitor_epoll, EPOLL_CTL_DEL, r->fd, NULL);
        if (dead != NULL && janitor_receive_listed(&listed, r->key)) {
            dead[ndead++] = r->fd;
        } else {
            close(r->fd); /* given away: its port lives on elsewhere */
        }
        free(r);
    }
    while (t->nescrows > 0) {
        janitor_escrow_free(t, t->nescrows - 1);
    }
    free(t->escrows);
    int *sends = janitor_send_fds(t);
    hell_janitor_destroy_receives(dead, ndead, sends, sends != NULL ? t->nports : 0);
    free(sends);
    free(dead);
    janitor_listed_free(&listed);
    for (size_t i = 0; i < t->nports; i++) {
        close(t->ports[i].send_fd);
    }
    close(t->conn_fd);
    close(t->table_fd);
    free(t->ports);
    free(t->receives);
    free(t);
}

static void *janitor_main(void *arg)
{
    (void)arg;
    struct epoll_event events[32];
    for (;;) {
        int n = epoll_wait(janitor_epoll, events, 32, -1);
        /* Receive ends first: a task that ends frees its own, whose
         * events may follow in this batch.  (Kinds are read before
         * anything is freed.) */
        enum janitor_kind kinds[32];
        for (int i = 0; i < n; i++) {
            kinds[i] = *(enum janitor_kind *)events[i].data.ptr;
        }
        for (int i = 0; i < n; i++) {
            if (kinds[i] == JANITOR_RECEIVE) {
                janitor_receive_hung_up(events[i].data.ptr);
            }
        }
        for (int i = 0; i < n; i++) {
            if (kinds[i] != JANITOR_TASK) {
                continue;
            }
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
    t->kind = JANITOR_TASK;
    t->conn_fd = conn_fd;
    t->table_fd = table_fd;
    struct epoll_event event = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = t};
    if (epoll_ctl(janitor_epoll, EPOLL_CTL_ADD, conn_fd, &event) != 0) {
        free(t);
        close(conn_fd);
        close(table_fd);
    }
}
