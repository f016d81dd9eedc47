/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A send right may travel without its send end once the receiving port
 * keeps that send end in its transport table (a memory object's control
 * port does, docs/ARCHITECTURE.md).  A sender that knows only the port's
 * inode must not get a send right accepted that way: without the send
 * end, only the port's secret vouches for the right.
 *
 * A receive right carries the message kept at the head of its queue in a
 * socket of its own (WRCV_PENDING): that message is checked as any other
 * sent to the port.  One vouched for by another secret or as a reply
 * (WIRE_AUTH_SEND_ONCE), counted in the queue, not alone in its socket,
 * or nested deeper than WIRE_PENDING_DEPTH is dropped, the right
 * arriving without it; a right
 * whose kept message is not in a socket like a port's drops the whole
 * message.
 *
 * The messages are written into the ports' sockets by hand
 * (ipc_wire_format.h), so this test is linked with libmach's objects and
 * reads the ports' secrets and inodes from their private state.
 */
#include <mach.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_wire.h"
#include "ipc_wire_format.h"
#include "linux.h"
#include "test.h"

#define SELF mach_task_self()

static struct ipc_port *port_of(mach_port_t name)
{
    ipc_lock();
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_USER], name);
    struct ipc_port *port = entry != NULL ? entry->port : NULL;
    ipc_unlock();
    return port;
}

/* Writes into P's socket a message whose reply right is a send right to
 * C without its send end, vouched for by AUTH; with WITH_COUNT_FD, a
 * counting pipe comes too (which no right by reference carries). */
static void send_by_reference(mach_port_t p, mach_port_t c, uint64_t auth, bool with_count_fd)
{
    struct ipc_port *pp = port_of(p), *cp = port_of(c);
    CHECK(pp != NULL && cp != NULL);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    struct {
        struct wire_hdr h;
        struct wire_right reply;
    } w = {
        .h = {.magic = WIRE_MAGIC, .auth_kind = WIRE_AUTH_SEND, .auth = pp->secret,
              .bits = MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND, MACH_MSG_TYPE_PORT_SEND),
              .size = sizeof(mach_msg_header_t), .id = 77, .nrights = 1,
              .nfds = with_count_fd ? 1 : 0, .desc_size = sizeof w.reply},
        .reply = {.kind = KRIGHT_SEND, .flags = with_count_fd ? WR_COUNT_FD : 0,
                  .ino = cp->ino, .auth = auth},
    };
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = &w, .iov_len = sizeof w};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (with_count_fd) {
        mh.msg_control = control;
        mh.msg_controllen = sizeof control;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pipefd[1], sizeof(int));
    }
    CHECK(sendmsg(pp->send_fd, &mh, 0) == (ssize_t)sizeof w);
    close(pipefd[0]);
    close(pipefd[1]);
}

/* ---- kept messages ---- */

/* A port made by hand: its socket pair, the read end of its counting
 * pipe, its identity and secret. */
struct raw_port {
    int send_fd, recv_fd, count_rfd;
    uint64_t ino, secret;
};

static void raw_port_make(struct raw_port *p, uint64_t secret)
{
    int sv[2], cp[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(pipe(cp) == 0);
    close(cp[1]);
    struct stat st;
    CHECK(fstat(sv[1], &st) == 0);
    *p = (struct raw_port){.send_fd = sv[1], .recv_fd = sv[0], .count_rfd = cp[0],
                           .ino = st.st_ino, .secret = secret};
}

static void raw_port_close(struct raw_port *p)
{
    close(p->send_fd);
    close(p->recv_fd);
    close(p->count_rfd);
}

/* Sends on FD the datagram BUF[0..LEN) with the descriptors FDS[0..N). */
static void raw_send(int fd, const void *buf, size_t len, const int *fds, unsigned n)
{
    char control[CMSG_SPACE(4 * sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0) {
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
    }
    CHECK(sendmsg(fd, &mh, 0) == (ssize_t)len);
}

/* Writes into FD a header-only message with id ID, vouched for by AUTH
 * of the kind AUTH_KIND, with the header flags FLAGS. */
static void write_plain_auth(int fd, uint32_t auth_kind, uint64_t auth, mach_msg_id_t id,
                             uint32_t flags)
{
    struct {
        struct wire_hdr h;
        struct wire_right reply;
    } w = {
        .h = {.magic = WIRE_MAGIC, .auth_kind = auth_kind, .auth = auth,
              .bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
              .size = sizeof(mach_msg_header_t), .id = id, .nrights = 1,
              .desc_size = sizeof w.reply, .flags = flags},
        .reply = {.kind = KRIGHT_NONE},
    };
    raw_send(fd, &w, sizeof w, NULL, 0);
}

/* The same vouched for by SECRET (as to a port with that secret). */
static void write_plain(int fd, uint64_t secret, mach_msg_id_t id, uint32_t flags)
{
    write_plain_auth(fd, WIRE_AUTH_SEND, secret, id, flags);
}

/* Writes into FD a message with id ID, vouched for by SECRET, that moves
 * the receive right of X, with KEPT (or -1) as its kept message. */
static void write_carrier(int fd, uint64_t secret, const struct raw_port *x, int kept,
                          mach_msg_id_t id)
{
    struct {
        struct wire_hdr h;
        struct wire_right reply, right;
        struct wire_rcv rcv;
        mach_msg_type_t type;
        mach_port_name_inlined_t name;
    } w = {
        .h = {.magic = WIRE_MAGIC, .auth_kind = WIRE_AUTH_SEND, .auth = secret,
              .bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .size = sizeof(mach_msg_header_t) + sizeof w.type + sizeof w.name, .id = id,
              .nrights = 2, .nfds = kept >= 0 ? 4 : 3,
              .desc_size = 2 * sizeof(struct wire_right) + sizeof w.rcv},
        .reply = {.kind = KRIGHT_NONE},
        .right = {.kind = KRIGHT_RECEIVE, .flags = WR_SEND_FD | WR_RECEIVE, .ino = x->ino},
        .rcv = {.secret = x->secret, .qlimit = MACH_PORT_QLIMIT_DEFAULT,
                .requests = kept >= 0 ? WRCV_PENDING : 0},
        .type = {.msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE, .msgt_size = 64, .msgt_number = 1,
                 .msgt_inline = TRUE},
    };
    int fds[4] = {x->send_fd, x->recv_fd, x->count_rfd, kept};
    raw_send(fd, &w, sizeof w, fds, w.h.nfds);
}

/* A socket whose one message (or what WRITE_TWICE adds) the caller
 * writes into *WRITE_FD and closes; returns its reading end. */
static int kept_socket(int *write_fd)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    *write_fd = sv[0];
    return sv[1];
}

/* Receives on P a message with id ID moving a receive right; returns it. */
static mach_port_t receive_carrier(mach_port_t p, mach_msg_id_t id)
{
    struct {
        struct test_port_msg m;
        char spare[256];
    } r = {0};
    CHECK_KR(mach_msg(&r.m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(r.m.h.msgh_id == id && r.m.t.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE);
    return r.m.p.name;
}

/* Receives on X a message with id ID and sequence number SEQNO, or
 * (ID 0) nothing. */
static void expect_on(mach_port_t x, mach_msg_id_t id, mach_port_seqno_t seqno)
{
    mach_msg_header_t h = {0};
    CHECK_KR(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof h, x, id ? 5000 : 100,
                      MACH_PORT_NULL),
             id ? MACH_MSG_SUCCESS : MACH_RCV_TIMED_OUT);
    CHECK(h.msgh_id == id && h.msgh_seqno == seqno);
}

/* X's kept message as WRITE_KEPT writes it is dropped; the right comes,
 * with what X's queue holds. */
static void kept_dropped(mach_port_t p, void (*write_kept)(int fd, const struct raw_port *x))
{
    struct ipc_port *pp = port_of(p);
    unsigned long dropped = wire_dropped_count();
    struct raw_port x;
    raw_port_make(&x, 0x5ec2e7);
    int w, kept = kept_socket(&w);
    write_kept(w, &x);
    close(w);
    write_plain(x.send_fd, x.secret, 22, 0); /* (what X's queue holds) */
    write_carrier(pp->send_fd, pp->secret, &x, kept, 20);
    close(kept);
    raw_port_close(&x);
    mach_port_t xr = receive_carrier(p, 20);
    expect_on(xr, 22, 0);
    expect_on(xr, 0, 0);
    CHECK(wire_dropped_count() == dropped + 1);
    CHECK_KR(mach_port_destroy(SELF, xr), KERN_SUCCESS);
}

static void kept_forged(int fd, const struct raw_port *x)
{
    write_plain(fd, x->secret ^ 1, 21, 0);
}

static void kept_counted(int fd, const struct raw_port *x)
{
    write_plain(fd, x->secret, 21, WIRE_HDR_COUNTED);
}

/* As a reply through a send-once right: a kept message is never one
 * (the port's secret alone vouches for it). */
static void kept_send_once(int fd, const struct raw_port *x)
{
    write_plain_auth(fd, WIRE_AUTH_SEND_ONCE, x->secret, 21, 0);
}

static void kept_twice(int fd, const struct raw_port *x)
{
    write_plain(fd, x->secret, 21, 0);
    write_plain(fd, x->secret, 23, 0);
}

/* Kept messages nested DEPTH deep: the ports X[0..DEPTH), each carried
 * by the kept message of the one before, the last one's a plain message
 * (id 100 + DEPTH).  What comes deeper than WIRE_PENDING_DEPTH is
 * dropped. */
static void kept_nested(mach_port_t p, unsigned depth)
{
    struct ipc_port *pp = port_of(p);
    unsigned long dropped = wire_dropped_count();
    struct raw_port x[WIRE_PENDING_DEPTH + 2];
    int kept[WIRE_PENDING_DEPTH + 2];
    for (unsigned i = 0; i < depth; i++) {
        raw_port_make(&x[i], 0xabc0 + i);
    }
    /* From the deepest out: X[i]'s kept message carries X[i + 1]. */
    for (unsigned i = depth; i-- > 0;) {
        int w;
        kept[i] = kept_socket(&w);
        if (i + 1 == depth) {
            write_plain(w, x[i].secret, (mach_msg_id_t)(100 + depth), 0);
        } else {
            write_carrier(w, x[i].secret, &x[i + 1], kept[i + 1], (mach_msg_id_t)(101 + i));
            close(kept[i + 1]);
        }
        close(w);
    }
    write_carrier(pp->send_fd, pp->secret, &x[0], kept[0], 100);
    close(kept[0]);
    for (unsigned i = 0; i < depth; i++) {
        raw_port_close(&x[i]);
    }
    mach_port_t xr = receive_carrier(p, 100);
    for (unsigned i = 0; i + 1 < depth; i++) {
        mach_port_t next = receive_carrier(xr, (mach_msg_id_t)(101 + i));
        CHECK_KR(mach_port_destroy(SELF, xr), KERN_SUCCESS);
        xr = next;
    }
    bool too_deep = depth > WIRE_PENDING_DEPTH;
    expect_on(xr, too_deep ? 0 : (mach_msg_id_t)(100 + depth), 0);
    CHECK(wire_dropped_count() == dropped + too_deep);
    CHECK_KR(mach_port_destroy(SELF, xr), KERN_SUCCESS);
}

/* A kept message claimed to wait in a pipe, or in a socket of another
 * kind than a port's (STREAM): the whole message is dropped (and the
 * right with it). */
static void kept_not_in_socket(mach_port_t p, bool stream)
{
    struct ipc_port *pp = port_of(p);
    unsigned long dropped = wire_dropped_count();
    struct raw_port x;
    raw_port_make(&x, 0x77);
    int pair[2];
    CHECK((stream ? socketpair(AF_UNIX, SOCK_STREAM, 0, pair) : pipe(pair)) == 0);
    if (stream) {
        write_plain(pair[1], x.secret, 31, 0);
    }
    write_carrier(pp->send_fd, pp->secret, &x, pair[0], 30);
    close(pair[0]);
    close(pair[1]);
    int probe = dup(x.send_fd);
    raw_port_close(&x);
    expect_on(p, 0, 0);
    CHECK(wire_dropped_count() == dropped + 1);
    /* Nothing kept the right alive: its port is dead. */
    char byte = 0;
    CHECK(send(probe, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0);
    close(probe);
}

static mach_port_urefs_t send_refs(mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(SELF, name, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    return refs;
}

int main(void)
{
    mach_port_t p = test_new_port(true), c = test_new_port(false);
    /* P's receiver (us) keeps C's send end: it came with a send-once
     * right to C. */
    mach_msg_header_t h = {
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE),
        .msgh_size = sizeof h, .msgh_remote_port = p, .msgh_local_port = c, .msgh_id = 1};
    CHECK_KR(mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    struct {
        mach_msg_header_t h;
        char spare[256];
    } r;
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(MACH_PORT_VALID(r.h.msgh_remote_port)); /* the send-once right: the reply */
    CHECK_KR(mach_port_deallocate(SELF, r.h.msgh_remote_port), KERN_SUCCESS);
    CHECK(send_refs(c) == 0);

    /* A right by reference with a counting descriptor is malformed: the
     * message is dropped. */
    send_by_reference(p, c, port_of(c)->secret, true);
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 200,
                      MACH_PORT_NULL),
             MACH_RCV_TIMED_OUT);
    CHECK(send_refs(c) == 0);

    /* Forged: the inode is known, the secret is not.  It arrives dead. */
    send_by_reference(p, c, port_of(c)->secret ^ 1, false);
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 77 && r.h.msgh_remote_port == MACH_PORT_DEAD);
    CHECK(send_refs(c) == 0);

    /* With the secret (what a holder of a send right knows): accepted. */
    send_by_reference(p, c, port_of(c)->secret, false);
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 77 && r.h.msgh_remote_port == c);
    CHECK(send_refs(c) == 1);

    CHECK_KR(mach_port_destroy(SELF, c), KERN_SUCCESS);

    int fds = test_count_fds();
    kept_dropped(p, kept_forged);
    kept_dropped(p, kept_counted);
    kept_dropped(p, kept_twice);
    kept_dropped(p, kept_send_once);
    for (unsigned depth = 1; depth <= WIRE_PENDING_DEPTH + 1; depth++) {
        kept_nested(p, depth);
    }
    kept_not_in_socket(p, false);
    kept_not_in_socket(p, true);
    linux_reaper_wait_idle(2000);
    CHECK(test_count_fds() == fds);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
    return test_done("wire_forgery");
}
