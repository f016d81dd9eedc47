/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A receive with MACH_RCV_LARGE and a buffer too small leaves the
 * message at the head of its queue (GNU Mach's ipc_mqueue_receive).  It
 * stays there wherever the receive right goes:
 *
 * - ordered: A, B, C queued on Q; a child task keeps A and moves Q back
 *   to us: we receive A, B, C in that order, numbered from 0 as GNU Mach
 *   numbers a moved port's messages (ipc_port_clear_receiver);
 * - rights: A also carries a send-once right (its reply port), a send
 *   right, a small region (inline on the wire) and a large one (a sealed
 *   memfd): each arrives once and intact (the send right counted exactly:
 *   no-senders once we drop it; the send-once right good for one message,
 *   never notified), and neither task keeps a descriptor;
 * - in a set: the child keeps A through a port set Q is in, then moves Q;
 * - here: Q moves to another port of the same task, which receives it;
 * - failed: a move of Q to a full port times out: Q stays here, A first,
 *   its reply right good for one message (also with A carrying X's
 *   receive right, A' kept on X), and no descriptor is left behind;
 * - nested: A carries the receive right of a port X on which A' is kept:
 *   A comes first on Q, A' first on X; nested deeper than a move carries
 *   them (WIRE_PENDING_DEPTH), the deepest goes back to its queue's tail;
 * - a reply of our own kernel delivered straight to its reply port R
 *   (ipc_msg.c's deliver_local), not received yet when R moves, comes
 *   first at R's next holder;
 * - killed (a task of an instance only): the child holds Q with A kept
 *   and a port-destroyed request to us when it is killed: we get Q from
 *   machd's escrow, A first, its send-once right alive (machd notifies
 *   it not); and when the child received A before its death, we get B
 *   first, and A's send-once right is notified once; so too when A
 *   carries a send right or 8 MiB, which no escrow takes (and the send
 *   right's no-senders comes).
 *
 * The whole test runs as a plain process, then as a task of an instance.
 */
#include <hell.h>
#include <mach/notify.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>

#include "test.h"

#define SELF mach_task_self()
#define WAIT_MS 10000
#define QUIET_MS 300 /* no message comes within this */

#define BIG 65536                 /* A's data: more than the small buffers */
#define SMALL_REGION 8192         /* travels within the message */
#define LARGE_REGION (256 * 1024) /* travels as a sealed memfd */

static bool in_instance;
static mach_port_t notify_port; /* our no-senders requests */

/* A: large inline data, with (when RICH) a send right and two regions;
 * its reply port is a send-once right when the sender gives one. */
struct big_msg {
    mach_msg_header_t h;
    mach_msg_type_t send_t;
    mach_port_name_inlined_t send;
    mach_msg_type_t small_t;
    char *small;
    mach_msg_type_t large_t;
    char *large;
    mach_msg_type_t data_t;
    char data[BIG];
};

/* The same without the send right and the large region, as a port's
 * escrow takes it (no send right, and within its 96 KiB). */
struct lean_msg {
    mach_msg_header_t h;
    mach_msg_type_t small_t;
    char *small;
    mach_msg_type_t data_t;
    char data[BIG];
};

/* One region. */
struct region_msg {
    mach_msg_header_t h;
    mach_msg_type_t t;
    char *p;
};

/* Large data alone. */
struct data_msg {
    mach_msg_header_t h;
    mach_msg_type_t data_t;
    char data[BIG];
};

/* A message with a receive right and large data (nested). */
struct carrier_msg {
    mach_msg_header_t h;
    mach_msg_type_t port_t;
    mach_port_name_inlined_t port;
    mach_msg_type_t data_t;
    char data[BIG];
};

typedef union {
    mach_msg_header_t h;
    struct big_msg big;
    struct lean_msg lean;
    struct carrier_msg carrier;
    struct data_msg data;
    struct region_msg region;
    mach_port_destroyed_notification_t destroyed;
    char buf[BIG + 4096];
} msgbuf_t;

static msgbuf_t rbuf; /* (large: not on the stack) */

static char pattern(size_t i, unsigned seed)
{
    return (char)(i * 7 + seed);
}

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = pattern(i, seed);
    }
}

static bool filled(const char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != pattern(i, seed)) {
            return false;
        }
    }
    return true;
}

static mach_msg_type_t data_type(mach_msg_type_number_t n, bool in_line)
{
    return (mach_msg_type_t){.msgt_name = MACH_MSG_TYPE_CHAR, .msgt_size = 8, .msgt_number = n,
                             .msgt_inline = in_line};
}

static mach_msg_type_t port_type(mach_msg_type_name_t disposition)
{
    return (mach_msg_type_t){.msgt_name = (unsigned char)disposition, .msgt_size = 64,
                             .msgt_number = 1, .msgt_inline = TRUE};
}

/* The header of a message with id ID to DEST (DEST_DISP) with REPLY
 * made a send-once right from the receive right (or none). */
static mach_msg_header_t header(mach_port_t dest, mach_msg_type_name_t dest_disp,
                                mach_port_t reply, mach_msg_id_t id, bool complex)
{
    return (mach_msg_header_t){
        .msgh_bits = MACH_MSGH_BITS(dest_disp, reply != MACH_PORT_NULL
                                                   ? MACH_MSG_TYPE_MAKE_SEND_ONCE
                                                   : 0) |
                     (complex ? MACH_MSGH_BITS_COMPLEX : 0),
        .msgh_remote_port = dest,
        .msgh_local_port = reply,
        .msgh_id = id};
}

static mach_msg_return_t send(mach_msg_header_t *h, mach_msg_size_t size)
{
    return mach_msg(h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, size, 0, MACH_PORT_NULL, WAIT_MS,
                    MACH_PORT_NULL);
}

static mach_msg_return_t send_empty(mach_port_t dest, mach_msg_type_name_t disp,
                                    mach_msg_id_t id)
{
    mach_msg_header_t h = header(dest, disp, MACH_PORT_NULL, id, false);
    return send(&h, sizeof h);
}

static mach_msg_return_t receive(mach_port_t port, mach_msg_timeout_t ms)
{
    memset(&rbuf.h, 0, sizeof rbuf.h);
    return mach_msg(&rbuf.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof rbuf, port, ms,
                    MACH_PORT_NULL);
}

/* Receives on PORT a message with id ID and sequence number SEQNO.
 * Failures name the caller's line. */
#define expect(port, id, seqno) expect_at(__LINE__, port, id, seqno)
static void expect_at(int line, mach_port_t port, mach_msg_id_t id, mach_port_seqno_t seqno)
{
    CHECK_KR_AT(__FILE__, line, receive(port, WAIT_MS), MACH_MSG_SUCCESS);
    if (rbuf.h.msgh_id != id || rbuf.h.msgh_seqno != seqno) {
        fprintf(stderr, "%s:%d: got id %d seqno %u, want id %d seqno %u\n", __FILE__, line,
                rbuf.h.msgh_id, rbuf.h.msgh_seqno, id, seqno);
        test_failures++;
    }
}

#define expect_nothing(port) CHECK_KR(receive(port, QUIET_MS), MACH_RCV_TIMED_OUT)

static mach_port_urefs_t refs(mach_port_t name, mach_port_right_t right)
{
    mach_port_urefs_t n = 0;
    return mach_port_get_refs(SELF, name, right, &n) == KERN_SUCCESS ? n : ~0u;
}

/* Sends A (id 1) to Q: with REPLY as its reply port (a send-once right,
 * or none); when SEND is not null, a send right made from it and the
 * large region too. */
static void send_a(mach_port_t q, mach_port_t reply, mach_port_t send_port, unsigned seed)
{
    static struct big_msg m;
    static char small[SMALL_REGION], large[LARGE_REGION];
    fill(small, sizeof small, seed + 1);
    fill(large, sizeof large, seed + 2);
    fill(m.data, sizeof m.data, seed);
    m.h = header(q, MACH_MSG_TYPE_COPY_SEND, reply, 1, true);
    m.send_t = port_type(MACH_MSG_TYPE_MAKE_SEND);
    m.send.name = send_port;
    m.small_t = data_type(SMALL_REGION, false);
    m.small = small;
    m.large_t = data_type(LARGE_REGION, false);
    m.large = large;
    m.data_t = data_type(BIG, true);
    if (send_port != MACH_PORT_NULL) {
        CHECK_KR(send(&m.h, sizeof m), MACH_MSG_SUCCESS);
        return;
    }
    static struct lean_msg lean;
    lean.h = m.h;
    lean.small_t = m.small_t;
    lean.small = small;
    lean.data_t = m.data_t;
    memcpy(lean.data, m.data, sizeof lean.data);
    CHECK_KR(send(&lean.h, sizeof lean), MACH_MSG_SUCCESS);
}

/* Checks that rbuf holds A as send_a sent it (SEND_PORT as there), its
 * reply right a send-once right when WITH_REPLY; returns its name. */
static mach_port_t check_a(mach_port_t send_port, bool with_reply, unsigned seed)
{
    mach_port_t reply = rbuf.h.msgh_remote_port;
    CHECK(rbuf.h.msgh_id == 1);
    CHECK(MACH_MSGH_BITS_REMOTE(rbuf.h.msgh_bits) ==
          (with_reply ? MACH_MSG_TYPE_PORT_SEND_ONCE : 0));
    CHECK(with_reply ? MACH_PORT_VALID(reply) : reply == MACH_PORT_NULL);
    if (send_port == MACH_PORT_NULL) {
        struct lean_msg *m = &rbuf.lean;
        CHECK(m->h.msgh_size == sizeof *m);
        CHECK(m->small != NULL && filled(m->small, SMALL_REGION, seed + 1));
        CHECK(filled(m->data, BIG, seed));
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)m->small, SMALL_REGION), KERN_SUCCESS);
        return reply;
    }
    struct big_msg *m = &rbuf.big;
    CHECK(m->h.msgh_size == sizeof *m);
    CHECK(m->send_t.msgt_name == MACH_MSG_TYPE_PORT_SEND && m->send.name == send_port);
    CHECK(m->small != NULL && filled(m->small, SMALL_REGION, seed + 1));
    CHECK(m->large != NULL && filled(m->large, LARGE_REGION, seed + 2));
    CHECK(filled(m->data, BIG, seed));
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m->small, SMALL_REGION), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m->large, LARGE_REGION), KERN_SUCCESS);
    return reply;
}

/* Sends one message through the send-once right REPLY (to our port SO)
 * and receives it there; nothing else comes to SO. */
static void use_reply(mach_port_t reply, mach_port_t so)
{
    CHECK_KR(send_empty(reply, MACH_MSG_TYPE_MOVE_SEND_ONCE, 77), MACH_MSG_SUCCESS);
    CHECK_KR(receive(so, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(rbuf.h.msgh_id == 77);
    expect_nothing(so);
}

/* ---- the child tasks ---- */

static pid_t start_child(mach_port_t boot, void (*fn)(mach_port_t parent, uintptr_t arg),
                         uintptr_t arg)
{
    mach_port_t task;
    pid_t pid = hell_fork(boot, &task);
    if (pid == 0) {
        test_failures = 0; /* (the child's own) */
        mach_port_t parent = MACH_PORT_NULL;
        task_get_bootstrap_port(SELF, &parent);
        fn(parent, arg);
        _exit(test_failures == 0 ? 0 : 1);
    }
    CHECK(pid > 0);
    CHECK_KR(mach_port_deallocate(SELF, task), KERN_SUCCESS);
    return pid;
}

/* Starts FN in a child task; returns its pid and, in *INBOX, the send
 * right it gives us first. */
static pid_t start_with_inbox(mach_port_t boot, void (*fn)(mach_port_t parent, uintptr_t arg),
                              uintptr_t arg, mach_port_t *inbox)
{
    pid_t pid = start_child(boot, fn, arg);
    mach_msg_type_name_t type = 0;
    CHECK_KR(test_receive_port(boot, WAIT_MS, inbox, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_SEND);
    return pid;
}

/* A child's inbox, given to its parent. */
static mach_port_t child_inbox(mach_port_t parent)
{
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    return inbox;
}

/* Receives a right on INBOX and checks its type. */
static mach_port_t take_right(mach_port_t inbox, mach_msg_type_name_t want)
{
    mach_port_t port = MACH_PORT_NULL;
    mach_msg_type_name_t type = 0;
    CHECK_KR(test_receive_port(inbox, WAIT_MS, &port, &type), MACH_MSG_SUCCESS);
    CHECK(type == want);
    return port;
}

/* Receives on NAME with MACH_RCV_LARGE into a header: the next message
 * (larger than that) stays. */
static void keep_next(mach_port_t name)
{
    mach_msg_header_t h;
    CHECK_KR(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_LARGE | MACH_RCV_TIMEOUT, 0, sizeof h, name,
                      WAIT_MS, MACH_PORT_NULL),
             MACH_RCV_TOO_LARGE);
    CHECK(h.msgh_size > sizeof h);
}

/* How many mappings of regions received as memfds this task has. */
static int region_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[512];
    int n = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, "hell-ool") != NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return n;
}

/* Waits until this task maps no more such regions than N (they are
 * unmapped off the releaser's path). */
static bool region_maps_back_to(int n)
{
    for (int ms = 0; ms < WAIT_MS && region_maps() > n; ms += 10) {
        usleep(10000);
    }
    return region_maps() == n;
}

/* Sends a port of its own a region and receives it: what libmach makes
 * once, on the first message (a reply port, helper threads, their
 * descriptors), is then made. */
static void warm_up(void)
{
    mach_port_t port = test_new_port(false);
    static char large[LARGE_REGION];
    struct region_msg m = {.h = header(port, MACH_MSG_TYPE_MAKE_SEND, MACH_PORT_NULL, 4, true),
                           .t = data_type(LARGE_REGION, false),
                           .p = large};
    CHECK_KR(send(&m.h, sizeof m), MACH_MSG_SUCCESS);
    CHECK_KR(receive(port, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(rbuf.h.msgh_id == 4 && rbuf.region.p != NULL);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)rbuf.region.p, LARGE_REGION), KERN_SUCCESS);
    mach_port_status_t st;
    CHECK_KR(mach_port_get_receive_status(SELF, port, &st), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);
    CHECK(region_maps_back_to(0));
}

/* Keeps the first message of the port whose receive right comes to its
 * inbox (through a port set with ARG), and gives the right back. */
static void keeper_main(mach_port_t parent, uintptr_t in_set)
{
    warm_up();
    mach_port_t inbox = child_inbox(parent);
    int fds = test_count_fds();
    int maps = region_maps();
    mach_port_t q = take_right(inbox, MACH_MSG_TYPE_PORT_RECEIVE), set = MACH_PORT_NULL;
    if (in_set) {
        CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &set), KERN_SUCCESS);
        CHECK_KR(mach_port_move_member(SELF, q, set), KERN_SUCCESS);
    }
    keep_next(in_set ? set : q);
    mach_port_status_t st;
    CHECK_KR(mach_port_get_receive_status(SELF, q, &st), KERN_SUCCESS);
    CHECK(st.mps_msgcount == 3 && st.mps_seqno == 0); /* (none left the queue) */
    CHECK_KR(test_send_port(parent, q, MACH_MSG_TYPE_MOVE_RECEIVE, 2), MACH_MSG_SUCCESS);
    if (in_set) {
        CHECK_KR(mach_port_destroy(SELF, set), KERN_SUCCESS);
    }
    /* Nothing of Q's or of A's stays here. */
    CHECK(test_count_fds() == fds);
    CHECK(region_maps_back_to(maps));
    CHECK_KR(mach_port_destroy(SELF, inbox), KERN_SUCCESS);
}

/* ---- the cases ---- */

/* A (with rights and regions when RICH), B and C on Q, A kept by a
 * child (through a set with IN_SET): they come back in order. */
static void moved(bool rich, bool in_set)
{
    mach_port_t q = test_new_port(true), so = test_new_port(false);
    mach_port_t s = rich ? test_new_port(false) : MACH_PORT_NULL;
    if (rich) {
        mach_port_t prev = MACH_PORT_NULL;
        CHECK_KR(mach_port_request_notification(SELF, s, MACH_NOTIFY_NO_SENDERS, 1, notify_port,
                                                MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev),
                 KERN_SUCCESS);
    }
    send_a(q, rich ? so : MACH_PORT_NULL, s, 5);
    CHECK_KR(send_empty(q, MACH_MSG_TYPE_COPY_SEND, 2), MACH_MSG_SUCCESS);
    CHECK_KR(send_empty(q, MACH_MSG_TYPE_COPY_SEND, 3), MACH_MSG_SUCCESS);

    mach_port_t boot = test_new_port(true), inbox;
    pid_t pid = start_with_inbox(boot, keeper_main, in_set, &inbox);
    CHECK_KR(test_send_port(inbox, q, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    CHECK(take_right(boot, MACH_MSG_TYPE_PORT_RECEIVE) == q); /* with our send right */
    test_wait_ok(pid);

    expect(q, 1, 0);
    mach_port_t reply = check_a(s, rich, 5);
    expect(q, 2, 1);
    expect(q, 3, 2);
    expect_nothing(q);
    if (rich) {
        use_reply(reply, so);
        CHECK(refs(s, MACH_PORT_RIGHT_SEND) == 1);
        CHECK_KR(mach_port_deallocate(SELF, s), KERN_SUCCESS);
        CHECK_KR(receive(notify_port, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(rbuf.h.msgh_id == MACH_NOTIFY_NO_SENDERS);
        expect_nothing(notify_port);
        CHECK_KR(mach_port_destroy(SELF, s), KERN_SUCCESS);
    }
    expect_nothing(so);
    CHECK_KR(mach_port_destroy(SELF, so), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* Sends to X (with DISP) a large message with id ID moving the receive
 * right of INNER. */
static void send_carrier(mach_port_t x, mach_msg_type_name_t disp, mach_port_t inner,
                         mach_msg_id_t id)
{
    static struct carrier_msg a;
    a.h = header(x, disp, MACH_PORT_NULL, id, true);
    a.port_t = port_type(MACH_MSG_TYPE_MOVE_RECEIVE);
    a.port.name = inner;
    a.data_t = data_type(BIG, true);
    fill(a.data, BIG, (unsigned)id);
    CHECK_KR(send(&a.h, sizeof a), MACH_MSG_SUCCESS);
}

/* The same within this task: Q moves to another of our ports and back. */
static void moved_here(void)
{
    mach_port_t q = test_new_port(true), p = test_new_port(true);
    send_a(q, MACH_PORT_NULL, MACH_PORT_NULL, 11);
    CHECK_KR(send_empty(q, MACH_MSG_TYPE_COPY_SEND, 2), MACH_MSG_SUCCESS);
    CHECK_KR(send_empty(q, MACH_MSG_TYPE_COPY_SEND, 3), MACH_MSG_SUCCESS);
    keep_next(q);
    CHECK_KR(test_send_port(p, q, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    CHECK(take_right(p, MACH_MSG_TYPE_PORT_RECEIVE) == q);
    expect(q, 1, 0);
    check_a(MACH_PORT_NULL, false, 11);
    expect(q, 2, 1);
    expect(q, 3, 2);
    expect_nothing(q);
    CHECK_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

/* A move of Q that fails (its destination full, MACH_SEND_TIMED_OUT)
 * leaves Q here with A still first, A's reply right good for one
 * message; with NESTED, A carries the receive right of X, on which A'
 * (with the reply right) is kept: both stay first. */
static void failed_move(bool nested)
{
    mach_port_t q = test_new_port(true), so = test_new_port(false), d = test_new_port(true);
    mach_port_t x = nested ? test_new_port(true) : MACH_PORT_NULL;
    send_a(nested ? x : q, so, MACH_PORT_NULL, 13);
    if (nested) {
        CHECK_KR(send_empty(x, MACH_MSG_TYPE_COPY_SEND, 12), MACH_MSG_SUCCESS);
        keep_next(x);
        send_carrier(q, MACH_MSG_TYPE_COPY_SEND, x, 1);
    }
    CHECK_KR(send_empty(q, MACH_MSG_TYPE_COPY_SEND, 2), MACH_MSG_SUCCESS);
    keep_next(q);
    CHECK_KR(mach_port_set_qlimit(SELF, d, 1), KERN_SUCCESS);
    CHECK_KR(send_empty(d, MACH_MSG_TYPE_COPY_SEND, 50), MACH_MSG_SUCCESS);

    struct test_port_msg m = {
        .h = header(d, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 1, true),
        .t = port_type(MACH_MSG_TYPE_MOVE_RECEIVE),
        .p = {.name = q},
    };
    CHECK_KR(mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof m, 0, MACH_PORT_NULL, 0,
                      MACH_PORT_NULL),
             MACH_SEND_TIMED_OUT);
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(SELF, q, &type), KERN_SUCCESS);
    CHECK(type & MACH_PORT_TYPE_RECEIVE);

    expect(q, 1, 0);
    if (nested) {
        CHECK(rbuf.carrier.port_t.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE);
        CHECK(rbuf.carrier.port.name == x && filled(rbuf.carrier.data, BIG, 1));
        expect(x, 1, 0);
    }
    use_reply(check_a(MACH_PORT_NULL, true, 13), so);
    if (nested) {
        expect(x, 12, 1);
        expect_nothing(x);
        CHECK_KR(mach_port_destroy(SELF, x), KERN_SUCCESS);
    }
    expect(q, 2, 1);
    expect_nothing(q);
    expect(d, 50, 0);
    CHECK_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, so), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, d), KERN_SUCCESS);
}

/* Takes Q and X, keeps A' on X, sends X in A to Q, keeps A, sends C,
 * gives Q back. */
static void nester_main(mach_port_t parent, uintptr_t arg)
{
    (void)arg;
    mach_port_t inbox = child_inbox(parent);
    mach_port_t q = take_right(inbox, MACH_MSG_TYPE_PORT_RECEIVE);
    mach_port_t x = take_right(inbox, MACH_MSG_TYPE_PORT_RECEIVE);
    keep_next(x);
    send_carrier(q, MACH_MSG_TYPE_MAKE_SEND, x, 1);
    keep_next(q);
    CHECK_KR(send_empty(q, MACH_MSG_TYPE_MAKE_SEND, 3), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(parent, q, MACH_MSG_TYPE_MOVE_RECEIVE, 2), MACH_MSG_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, inbox), KERN_SUCCESS);
}

/* A message kept on a port whose receive right lies in a message kept
 * on another: both come first on their ports. */
static void nested(void)
{
    mach_port_t q = test_new_port(true), x = test_new_port(true);
    static struct data_msg a2;
    a2.h = header(x, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 11, false);
    a2.data_t = data_type(BIG, true);
    fill(a2.data, BIG, 3);
    CHECK_KR(send(&a2.h, sizeof a2), MACH_MSG_SUCCESS);
    CHECK_KR(send_empty(x, MACH_MSG_TYPE_COPY_SEND, 12), MACH_MSG_SUCCESS);

    mach_port_t boot = test_new_port(true), inbox;
    pid_t pid = start_with_inbox(boot, nester_main, 0, &inbox);
    CHECK_KR(test_send_port(inbox, q, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(inbox, x, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    CHECK(take_right(boot, MACH_MSG_TYPE_PORT_RECEIVE) == q);
    test_wait_ok(pid);

    expect(q, 1, 0);
    CHECK(rbuf.carrier.port_t.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE);
    CHECK(rbuf.carrier.port.name == x); /* (merged with our send right) */
    CHECK(filled(rbuf.carrier.data, BIG, 1));
    expect(q, 3, 1);
    expect_nothing(q);
    expect(x, 11, 0);
    CHECK(filled(rbuf.data.data, BIG, 3));
    expect(x, 12, 1);
    expect_nothing(x);
    CHECK_KR(mach_port_destroy(SELF, x), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* One more port than a move nests kept messages (WIRE_PENDING_DEPTH, 4,
 * plus one): X[i]'s kept message carries X[i + 1]'s right. */
#define DEEP 6

/* Kept messages nested deeper than a move carries them: keeping the
 * outer ones sends the deepest back to the tail of its queue (behind B
 * on X[5]); every other comes first. */
static void too_deep(void)
{
    mach_port_t x[DEEP];
    for (int i = 0; i < DEEP; i++) {
        x[i] = test_new_port(true);
    }
    static struct data_msg a;
    a.h = header(x[DEEP - 1], MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 1, false);
    a.data_t = data_type(BIG, true);
    CHECK_KR(send(&a.h, sizeof a), MACH_MSG_SUCCESS);
    CHECK_KR(send_empty(x[DEEP - 1], MACH_MSG_TYPE_COPY_SEND, 2), MACH_MSG_SUCCESS);
    keep_next(x[DEEP - 1]);
    for (int i = DEEP - 2; i >= 0; i--) {
        send_carrier(x[i], MACH_MSG_TYPE_COPY_SEND, x[i + 1], 10 + i);
        keep_next(x[i]);
    }
    mach_port_t p = test_new_port(true);
    CHECK_KR(test_send_port(p, x[0], MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    CHECK(take_right(p, MACH_MSG_TYPE_PORT_RECEIVE) == x[0]);
    for (int i = 0; i < DEEP - 1; i++) {
        expect(x[i], 10 + i, 0);
        CHECK(rbuf.carrier.port.name == x[i + 1] && filled(rbuf.carrier.data, BIG, 10 + i));
        expect_nothing(x[i]);
    }
    expect(x[DEEP - 1], 2, 0);
    expect(x[DEEP - 1], 1, 1);
    for (int i = 0; i < DEEP; i++) {
        CHECK_KR(mach_port_destroy(SELF, x[i]), KERN_SUCCESS);
    }
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

/* mach_port_type's request (mach_port.defs, id 3201) and reply (3301). */
struct type_request {
    mach_msg_header_t h;
    mach_msg_type_t name_t;
    mach_port_name_t name;
    char pad[4];
};

/* Receives the port whose receive right comes to its inbox and checks
 * its messages: our kernel's reply to mach_port_type, then B and C. */
static void reply_taker_main(mach_port_t parent, uintptr_t arg)
{
    (void)arg;
    mach_port_t inbox = child_inbox(parent);
    mach_port_t r = take_right(inbox, MACH_MSG_TYPE_PORT_RECEIVE);
    expect(r, 3301, 0);
    CHECK(rbuf.h.msgh_size == 64);
    expect(r, 2, 1);
    expect(r, 3, 2);
    expect_nothing(r);
    CHECK_KR(mach_port_destroy(SELF, r), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, inbox), KERN_SUCCESS);
}

/* A reply of our kernel waiting in R (the caller never received it)
 * comes first at R's next holder. */
static void local_reply(void)
{
    mach_port_t r = test_new_port(false);
    struct type_request req = {
        .h = header(SELF, MACH_MSG_TYPE_COPY_SEND, r, 3201, false),
        .name_t = {.msgt_name = MACH_MSG_TYPE_PORT_NAME, .msgt_size = 32, .msgt_number = 1,
                   .msgt_inline = TRUE},
        .name = r,
    };
    CHECK_KR(send(&req.h, sizeof req), MACH_MSG_SUCCESS);
    mach_port_status_t st;
    CHECK_KR(mach_port_get_receive_status(SELF, r, &st), KERN_SUCCESS);
    CHECK(st.mps_msgcount == 1);
    CHECK_KR(mach_port_insert_right(SELF, r, r, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(send_empty(r, MACH_MSG_TYPE_COPY_SEND, 2), MACH_MSG_SUCCESS);
    CHECK_KR(send_empty(r, MACH_MSG_TYPE_COPY_SEND, 3), MACH_MSG_SUCCESS);

    mach_port_t boot = test_new_port(true), inbox;
    pid_t pid = start_with_inbox(boot, reply_taker_main, 0, &inbox);
    CHECK_KR(test_send_port(inbox, r, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    test_wait_ok(pid);
    CHECK_KR(mach_port_destroy(SELF, r), KERN_SUCCESS); /* (a dead name now) */
    CHECK_KR(mach_port_deallocate(SELF, inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* Takes Q and a send right to our notify port, asks for Q's
 * port-destroyed notification, keeps A (and receives it whole with
 * ARG), says so and waits to be killed. */
static void doomed_keeper_main(mach_port_t parent, uintptr_t take)
{
    mach_port_t inbox = child_inbox(parent);
    mach_port_t q = take_right(inbox, MACH_MSG_TYPE_PORT_RECEIVE);
    mach_port_t pdn = take_right(inbox, MACH_MSG_TYPE_PORT_SEND_ONCE);
    mach_port_t prev = MACH_PORT_NULL;
    CHECK_KR(mach_port_request_notification(SELF, q, MACH_NOTIFY_PORT_DESTROYED, 0, pdn,
                                            MACH_MSG_TYPE_MOVE_SEND_ONCE, &prev),
             KERN_SUCCESS);
    keep_next(q);
    if (take) {
        expect(q, 1, 0);
    }
    CHECK_KR(send_empty(parent, MACH_MSG_TYPE_COPY_SEND, test_failures == 0 ? 5 : 6),
             MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

/* What the killed child did with A, and what A carried. */
enum doom {
    DOOM_KEPT,  /* kept, escrowed: the holder receives it first */
    DOOM_TAKEN, /* received before the death: gone with the child */
    DOOM_SEND,  /* kept, but with a send right: the escrow goes without it */
    DOOM_HUGE,  /* kept, but with 8 MiB: the escrow goes without it */
};

#define HUGE_REGION (8u << 20) /* more than an escrow's 96 KiB */

/* Sends to Q a message with id 1, a HUGE_REGION region and REPLY as its
 * reply port (a send-once right). */
static void send_huge(mach_port_t q, mach_port_t reply)
{
    static char huge[HUGE_REGION];
    fill(huge, 4096, 9);
    struct region_msg m = {.h = header(q, MACH_MSG_TYPE_COPY_SEND, reply, 1, true),
                           .t = data_type(HUGE_REGION, false),
                           .p = huge};
    CHECK_KR(send(&m.h, sizeof m), MACH_MSG_SUCCESS);
}

/* The child holding Q, A kept (or received) as DOOM says, is killed:
 * machd sends Q to its port-destroyed request, with A first when it
 * could go in the escrow; otherwise A is lost, its reply right notified
 * once (and a send right it carried released: no-senders comes). */
static void killed(enum doom doom)
{
    mach_port_t q = test_new_port(true), so = test_new_port(false), pdn = test_new_port(false);
    mach_port_t s = doom == DOOM_SEND ? test_new_port(false) : MACH_PORT_NULL;
    if (doom == DOOM_SEND) {
        mach_port_t prev = MACH_PORT_NULL;
        CHECK_KR(mach_port_request_notification(SELF, s, MACH_NOTIFY_NO_SENDERS, 1, notify_port,
                                                MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev),
                 KERN_SUCCESS);
    }
    if (doom == DOOM_HUGE) {
        send_huge(q, so);
    } else {
        send_a(q, so, s, 7);
    }
    CHECK_KR(send_empty(q, MACH_MSG_TYPE_COPY_SEND, 2), MACH_MSG_SUCCESS);
    CHECK_KR(send_empty(q, MACH_MSG_TYPE_COPY_SEND, 3), MACH_MSG_SUCCESS);

    mach_port_t boot = test_new_port(true), inbox;
    pid_t pid = start_with_inbox(boot, doomed_keeper_main, doom == DOOM_TAKEN, &inbox);
    CHECK_KR(test_send_port(inbox, q, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(inbox, pdn, MACH_MSG_TYPE_MAKE_SEND_ONCE, 1), MACH_MSG_SUCCESS);
    CHECK_KR(receive(boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(rbuf.h.msgh_id == 5);
    CHECK(kill(pid, SIGKILL) == 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));

    CHECK_KR(receive(pdn, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(rbuf.h.msgh_id == MACH_NOTIFY_PORT_DESTROYED);
    CHECK(rbuf.destroyed.not_type.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE);
    CHECK(rbuf.destroyed.not_port == q); /* (merged with our send right) */
    expect_nothing(pdn);
    if (doom != DOOM_KEPT) {
        /* A went with the child: its reply right is notified, once. */
        CHECK_KR(receive(so, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(rbuf.h.msgh_id == MACH_NOTIFY_SEND_ONCE);
        expect(q, 2, 0);
        expect(q, 3, 1);
    } else {
        expect(q, 1, 0);
        mach_port_t reply = check_a(MACH_PORT_NULL, true, 7);
        expect(q, 2, 1);
        expect(q, 3, 2);
        use_reply(reply, so);
    }
    if (doom == DOOM_SEND) {
        /* A's send right died with it. */
        CHECK_KR(receive(notify_port, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(rbuf.h.msgh_id == MACH_NOTIFY_NO_SENDERS);
        expect_nothing(notify_port);
        CHECK_KR(mach_port_destroy(SELF, s), KERN_SUCCESS);
    }
    expect_nothing(q);
    expect_nothing(so);
    CHECK_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, so), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, pdn), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

int main(int argc, char **argv)
{
    in_instance = argc == 2 && strcmp(argv[1], "--in-instance") == 0;
    notify_port = test_new_port(false);
    moved(true, false); /* (starts the helper threads and descriptors) */
    int fds = test_count_fds();
    moved(false, false);
    moved(true, false);
    moved(true, true);
    moved_here();
    failed_move(false);
    failed_move(true);
    nested();
    too_deep();
    local_reply();
    if (in_instance) {
        killed(DOOM_KEPT);
        killed(DOOM_TAKEN);
        killed(DOOM_SEND);
        killed(DOOM_HUGE);
    }
    /* In an instance, a task that created tasks keeps its connection to
     * machd's list of tasks. */
    int now = test_count_fds();
    CHECK(now == fds || (in_instance && now == fds + 1));
    CHECK_KR(mach_port_destroy(SELF, notify_port), KERN_SUCCESS);
    if (in_instance) {
        return test_failures == 0 ? 0 : 1;
    }
    CHECK(test_rerun_in_instance("--in-instance") == 0);
    return test_done("kept_message");
}
