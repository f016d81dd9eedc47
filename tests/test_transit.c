/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Rights in queued messages die with the queue (GNU Mach reference manual,
 * "Exchanging Port Rights": when a port dies, "any messages queued at the
 * port are destroyed, which deallocates the port rights and out-of-line
 * memory in the messages").
 *
 * transit: a receive right X (MOVE_RECEIVE) is queued on a port P whose
 * receive right is then destroyed before anyone receives it.  X dies: its
 * sender gets a dead-name notification and MACH_SEND_INVALID_DEST, and
 * X's own queue is destroyed (a send right queued there gives its port a
 * no-senders notification).
 *
 * queued: messages queued on P carry a send right, a receive right and a
 * port array of send rights; destroying P gives no-senders notifications
 * and the carried receive right dies (dead-name at its sender).
 *
 * Each runs with P in this task (mach_port_destroy) and in a peer task
 * that destroys it with mach_port_destroy, with mach_port_mod_refs, or is
 * killed with SIGKILL.
 *
 * returning: a receive right X with a port-destroyed request, queued on
 * P when P dies, comes back in the notification with its own queue;
 * unless the request names X itself (GNU Mach's circularity check): then
 * X is destroyed, and the send-once right in its queue notified.
 *
 * within: receive rights moved, one after another, to a port that
 * another thread of the same task receives on: each arrives with the
 * message queued on it (the right is released by its sender before the
 * receiving thread can take it).
 *
 * A send-once right in a destroyed queue gives its port a send-once
 * notification.  When the queue's task is killed, only the instance's
 * machd can destroy the queue (it keeps the receive ends of its tasks'
 * ports: libmach/ipc_janitor.h), so the whole test runs twice, as a
 * plain process and as a task of an instance, and the killed-peer cases
 * of send-once rights and port-destroyed requests are checked in the
 * second run (in the first, they die with the queue: docs/ARCHITECTURE.md).
 */
#include <hell.h>
#include <mach/notify.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define SELF mach_task_self()
#define WAIT_MS 10000

enum mode { LOCAL, PEER_DESTROY, PEER_MOD_REFS, PEER_KILL };
static const char *const mode_name[] = {"local", "peer destroy", "peer mod_refs",
                                        "peer SIGKILL"};

/* Commands to the peer, on its control port. */
enum { CMD_DESTROY = 10, CMD_MOD_REFS = 11, CMD_EXIT = 12 };

static mach_port_t notify_port;

/* Whether a killed peer's queues are destroyed (a task of an instance). */
static bool in_instance;

struct notification {
    mach_msg_header_t head;
    mach_msg_type_t type;
    uint32_t value;
    uint32_t pad;
    char spare[64];
};

/* Up to three inline rights, one descriptor each. */
struct rights_msg {
    mach_msg_header_t h;
    struct {
        mach_msg_type_t t;
        mach_port_name_inlined_t p;
    } item[3];
};

/* Sends to DEST (a send right kept) N rights NAMES[i] with DISPS[i]. */
static mach_msg_return_t send_rights(mach_port_t dest, unsigned n, const mach_port_t *names,
                                     const mach_msg_type_name_t *disps, mach_msg_id_t id)
{
    struct rights_msg m = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .msgh_size = 0,
              .msgh_remote_port = dest,
              .msgh_id = id},
    };
    for (unsigned i = 0; i < n; i++) {
        m.item[i].t = (mach_msg_type_t){.msgt_name = (unsigned char)disps[i], .msgt_size = 64,
                                        .msgt_number = 1, .msgt_inline = TRUE};
        m.item[i].p.name = names[i];
    }
    mach_msg_size_t size = (mach_msg_size_t)(sizeof m.h + n * sizeof m.item[0]);
    return mach_msg(&m.h, MACH_SEND_MSG, size, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

/* An out-of-line array of N send rights made from the receive rights
 * NAMES (MAKE_SEND), to DEST. */
static mach_msg_return_t send_ool_rights(mach_port_t dest, mach_port_t *names, unsigned n)
{
    struct {
        mach_msg_header_t h;
        mach_msg_type_long_t t;
        mach_port_t *ports;
    } m = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .msgh_remote_port = dest,
              .msgh_id = 4},
        .t = {.msgtl_name = MACH_MSG_TYPE_MAKE_SEND, .msgtl_size = 32, .msgtl_number = n,
              .msgtl_inline = FALSE, .msgtl_longform = TRUE},
        .ports = names,
    };
    return mach_msg(&m.h, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

static mach_msg_return_t send_empty(mach_port_t dest, mach_msg_id_t id)
{
    mach_msg_header_t h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_remote_port = dest, .msgh_id = id};
    return mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

static kern_return_t request(mach_port_t name, mach_msg_id_t id, mach_port_mscount_t sync)
{
    mach_port_t prev = MACH_PORT_NULL;
    kern_return_t kr = mach_port_request_notification(SELF, name, id, sync, notify_port,
                                                      MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev);
    CHECK(prev == MACH_PORT_NULL);
    return kr;
}

/* Receives N notifications on NOTIFY_PORT, in any order, and checks each
 * against one of the expected (IDS[i], VALUES[i]), in notify.defs format. */
static void expect_all(unsigned n, const mach_msg_id_t *ids, const uint32_t *values)
{
    bool seen[16] = {false};
    for (unsigned k = 0; k < n; k++) {
        struct notification m;
        memset(&m, 0, sizeof m);
        mach_msg_return_t mr = mach_msg(&m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m,
                                        notify_port, WAIT_MS, MACH_PORT_NULL);
        CHECK_KR(mr, MACH_MSG_SUCCESS);
        if (mr != MACH_MSG_SUCCESS) {
            return;
        }
        CHECK(m.head.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
        CHECK(m.head.msgh_remote_port == MACH_PORT_NULL);
        CHECK(m.head.msgh_local_port == notify_port);
        CHECK(m.head.msgh_size == 48);
        CHECK(m.type.msgt_size == 32 && m.type.msgt_number == 1 && m.type.msgt_inline);
        CHECK(m.type.msgt_name == (m.head.msgh_id == MACH_NOTIFY_NO_SENDERS
                                       ? MACH_MSG_TYPE_INTEGER_32
                                       : MACH_MSG_TYPE_PORT_NAME));
        unsigned i = 0;
        while (i < n && (seen[i] || ids[i] != m.head.msgh_id || values[i] != m.value)) {
            i++;
        }
        if (i == n) {
            fprintf(stderr, "unexpected notification id %d value 0x%x\n", m.head.msgh_id,
                    m.value);
        }
        CHECK(i < n);
        if (i < n) {
            seen[i] = true;
        }
    }
}

static void expect_nothing(mach_port_t port)
{
    struct notification m;
    CHECK_KR(mach_msg(&m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, port, 0,
                      MACH_PORT_NULL),
             MACH_RCV_TIMED_OUT);
}

/* Receives the send-once notification of a right to PORT. */
static void expect_send_once(mach_port_t port)
{
    struct notification n;
    CHECK_KR(mach_msg(&n.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof n, port, WAIT_MS,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(n.head.msgh_id == MACH_NOTIFY_SEND_ONCE);
}

static mach_port_type_t ptype(mach_port_t name)
{
    mach_port_type_t t = 0;
    return mach_port_type(SELF, name, &t) == KERN_SUCCESS ? t : 0;
}

static mach_port_urefs_t refs(mach_port_t name, mach_port_right_t right)
{
    mach_port_urefs_t n = 0;
    return mach_port_get_refs(SELF, name, right, &n) == KERN_SUCCESS ? n : ~0u;
}

/* The port P whose queue is destroyed: ours, or a peer task's. */
struct outer {
    enum mode mode;
    mach_port_t p;       /* a send right (the receive right too when LOCAL) */
    mach_port_t control; /* the peer's control port (send right) */
    mach_port_t task;    /* the peer's task port */
    pid_t pid;
};

/* The peer: makes P and a control port, gives us send rights to both,
 * and obeys commands (each answered through the request's reply right). */
static void __attribute__((noreturn)) peer_main(void)
{
    mach_port_t boot = MACH_PORT_NULL, p = MACH_PORT_NULL, control = MACH_PORT_NULL;
    if (task_get_bootstrap_port(SELF, &boot) != KERN_SUCCESS ||
        mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &p) != KERN_SUCCESS ||
        mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &control) != KERN_SUCCESS ||
        test_send_port(boot, p, MACH_MSG_TYPE_MAKE_SEND, 1) != MACH_MSG_SUCCESS ||
        test_send_port(boot, control, MACH_MSG_TYPE_MAKE_SEND, 2) != MACH_MSG_SUCCESS) {
        _exit(2);
    }
    for (;;) {
        mach_msg_header_t m;
        if (mach_msg(&m, MACH_RCV_MSG, 0, sizeof m, control, 0, MACH_PORT_NULL) !=
            MACH_MSG_SUCCESS) {
            _exit(3);
        }
        kern_return_t kr = KERN_SUCCESS;
        mach_msg_id_t id = m.msgh_id;
        if (id == CMD_DESTROY) {
            kr = mach_port_destroy(SELF, p);
        } else if (id == CMD_MOD_REFS) {
            kr = mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, -1);
        }
        /* P's name is free now (the peer held no send right to it). */
        mach_port_type_t type;
        if (id != CMD_EXIT && mach_port_type(SELF, p, &type) != KERN_INVALID_NAME) {
            kr = KERN_FAILURE;
        }
        mach_msg_header_t reply = {
            .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
            .msgh_remote_port = m.msgh_remote_port,
            .msgh_id = kr == KERN_SUCCESS ? id + 100 : -1};
        (void)mach_msg(&reply, MACH_SEND_MSG, sizeof reply, 0, MACH_PORT_NULL, 0,
                       MACH_PORT_NULL);
        if (id == CMD_EXIT) {
            _exit(0);
        }
    }
}

static void outer_start(struct outer *o, enum mode mode)
{
    *o = (struct outer){.mode = mode};
    if (mode == LOCAL) {
        o->p = test_new_port(true);
        return;
    }
    mach_port_t boot = test_new_port(true);
    o->pid = hell_fork(boot, &o->task);
    if (o->pid == 0) {
        peer_main();
    }
    CHECK(o->pid > 0);
    mach_msg_type_name_t type = 0;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &o->p, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_SEND);
    CHECK_KR(test_receive_port(boot, WAIT_MS, &o->control, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_SEND);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* Sends command ID to the peer and waits for its answer. */
static void command(struct outer *o, mach_msg_id_t id)
{
    mach_port_t reply = test_new_port(false);
    mach_msg_header_t m = {
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE),
        .msgh_remote_port = o->control, .msgh_local_port = reply, .msgh_id = id};
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK_KR(mach_msg(&m, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, reply, WAIT_MS,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(m.msgh_id == id + 100);
    CHECK_KR(mach_port_destroy(SELF, reply), KERN_SUCCESS);
}

/* Destroys P's receive right as the mode says. */
static void outer_destroy(struct outer *o)
{
    switch (o->mode) {
    case LOCAL:
        CHECK_KR(mach_port_destroy(SELF, o->p), KERN_SUCCESS);
        o->p = MACH_PORT_NULL;
        return;
    case PEER_DESTROY:
        command(o, CMD_DESTROY);
        break;
    case PEER_MOD_REFS:
        command(o, CMD_MOD_REFS);
        break;
    case PEER_KILL: {
        CHECK(kill(o->pid, SIGKILL) == 0);
        int status = 0;
        CHECK(waitpid(o->pid, &status, 0) == o->pid && WIFSIGNALED(status));
        o->pid = 0;
        break;
    }
    }
    /* Our send right to P is dead now; after a kill in an instance, once
     * machd has destroyed the queue, a moment after the process ended. */
    for (int ms = 0; ms < WAIT_MS && ptype(o->p) != MACH_PORT_TYPE_DEAD_NAME; ms++) {
        usleep(1000);
    }
    CHECK_KR(send_empty(o->p, 1), MACH_SEND_INVALID_DEST);
    CHECK(ptype(o->p) == MACH_PORT_TYPE_DEAD_NAME);
}

static void outer_finish(struct outer *o)
{
    if (o->mode == LOCAL) {
        return;
    }
    if (o->pid > 0) {
        command(o, CMD_EXIT);
        test_wait_ok(o->pid);
    }
    CHECK_KR(mach_port_destroy(SELF, o->p), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, o->control), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, o->task), KERN_SUCCESS);
}

/* X dies in transit; so do the rights queued on it. */
static void transit(enum mode mode)
{
    struct outer o;
    outer_start(&o, mode);

    /* N's only send right waits in X's queue. */
    mach_port_t x = test_new_port(true), n = test_new_port(true);
    CHECK_KR(request(n, MACH_NOTIFY_NO_SENDERS, 0), KERN_SUCCESS);
    CHECK_KR(send_rights(x, 1, &n, &(mach_msg_type_name_t){MACH_MSG_TYPE_MOVE_SEND}, 2),
             MACH_MSG_SUCCESS);
    CHECK(ptype(n) == MACH_PORT_TYPE_RECEIVE);

    /* X's receive right waits in P's queue; we keep a send right to X. */
    CHECK_KR(test_send_port(o.p, x, MACH_MSG_TYPE_MOVE_RECEIVE, 3), MACH_MSG_SUCCESS);
    CHECK(ptype(x) == MACH_PORT_TYPE_SEND);
    CHECK_KR(request(x, MACH_NOTIFY_DEAD_NAME, 0), KERN_SUCCESS);
    CHECK_KR(send_empty(x, 4), MACH_MSG_SUCCESS); /* alive, in transit */
    expect_nothing(notify_port);

    outer_destroy(&o);

    expect_all(2, (mach_msg_id_t[]){MACH_NOTIFY_DEAD_NAME, MACH_NOTIFY_NO_SENDERS},
               (uint32_t[]){x, 1});
    expect_nothing(notify_port);
    CHECK_KR(send_empty(x, 5), MACH_SEND_INVALID_DEST);
    CHECK(ptype(x) == MACH_PORT_TYPE_DEAD_NAME);
    CHECK(refs(x, MACH_PORT_RIGHT_DEAD_NAME) == 2); /* the right's and the notification's */
    CHECK_KR(mach_port_mod_refs(SELF, x, MACH_PORT_RIGHT_DEAD_NAME, -2), KERN_SUCCESS);
    CHECK(ptype(x) == 0);
    CHECK_KR(mach_port_destroy(SELF, n), KERN_SUCCESS);
    outer_finish(&o);
}

#define ARRAY 8

/* Messages queued on P carry a send right, a receive right and an array
 * of send rights; destroying P releases them all. */
static void queued(enum mode mode)
{
    struct outer o;
    outer_start(&o, mode);

    mach_port_t s = test_new_port(true), r = test_new_port(true), arr[ARRAY];
    CHECK_KR(request(s, MACH_NOTIFY_NO_SENDERS, 0), KERN_SUCCESS);
    CHECK_KR(send_rights(o.p, 1, &s, &(mach_msg_type_name_t){MACH_MSG_TYPE_MOVE_SEND}, 1),
             MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(o.p, r, MACH_MSG_TYPE_MOVE_RECEIVE, 2), MACH_MSG_SUCCESS);
    CHECK_KR(request(r, MACH_NOTIFY_DEAD_NAME, 0), KERN_SUCCESS);
    /* Ports whose only send rights are made in the message: no send right
     * exists yet and sync 1 is above the make-send count, so the request
     * waits (GNU Mach's ipc_port_nsrequest). */
    for (int i = 0; i < ARRAY; i++) {
        arr[i] = test_new_port(false);
        CHECK_KR(request(arr[i], MACH_NOTIFY_NO_SENDERS, 1), KERN_SUCCESS);
    }
    CHECK_KR(send_ool_rights(o.p, arr, ARRAY), MACH_MSG_SUCCESS);
    mach_port_t so = test_new_port(false);
    CHECK_KR(test_send_port(o.p, so, MACH_MSG_TYPE_MAKE_SEND_ONCE, 3), MACH_MSG_SUCCESS);
    expect_nothing(notify_port);

    outer_destroy(&o);

    if (mode != PEER_KILL || in_instance) {
        expect_send_once(so);
        mach_port_status_t st;
        CHECK_KR(mach_port_get_receive_status(SELF, so, &st), KERN_SUCCESS);
        CHECK(st.mps_sorights == 0 && st.mps_msgcount == 0);
    }
    CHECK_KR(mach_port_destroy(SELF, so), KERN_SUCCESS);

    /* s's no-senders, r's dead name, and a no-senders for each element,
     * all with make-send count 1. */
    mach_msg_id_t ids[ARRAY + 2] = {MACH_NOTIFY_DEAD_NAME};
    uint32_t values[ARRAY + 2] = {r};
    for (int i = 1; i < ARRAY + 2; i++) {
        ids[i] = MACH_NOTIFY_NO_SENDERS;
        values[i] = 1;
    }
    expect_all(ARRAY + 2, ids, values);
    expect_nothing(notify_port);
    CHECK_KR(send_empty(r, 5), MACH_SEND_INVALID_DEST);
    CHECK(ptype(r) == MACH_PORT_TYPE_DEAD_NAME && refs(r, MACH_PORT_RIGHT_DEAD_NAME) == 2);
    CHECK_KR(mach_port_destroy(SELF, r), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, s), KERN_SUCCESS);
    for (int i = 0; i < ARRAY; i++) {
        mach_port_status_t st;
        CHECK_KR(mach_port_get_receive_status(SELF, arr[i], &st), KERN_SUCCESS);
        CHECK(!st.mps_srights && st.mps_mscount == 1 && !st.mps_nsrequest);
        CHECK_KR(mach_port_destroy(SELF, arr[i]), KERN_SUCCESS);
    }
    outer_finish(&o);
}

/* X, with a port-destroyed request, is in P's queue when P dies: it
 * comes back whole. */
static void returning(enum mode mode)
{
    struct outer o;
    outer_start(&o, mode);
    mach_port_t x = test_new_port(true);
    CHECK_KR(send_empty(x, 4), MACH_MSG_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, x), KERN_SUCCESS); /* the send right */
    CHECK_KR(request(x, MACH_NOTIFY_PORT_DESTROYED, 0), KERN_SUCCESS);
    CHECK_KR(test_send_port(o.p, x, MACH_MSG_TYPE_MOVE_RECEIVE, 3), MACH_MSG_SUCCESS);
    CHECK(ptype(x) == 0);

    outer_destroy(&o);

    if (mode == PEER_KILL && !in_instance) {
        outer_finish(&o);
        return; /* X died with the queue */
    }
    union {
        mach_port_destroyed_notification_t n;
        char buf[256];
    } m;
    CHECK_KR(mach_msg(&m.n.not_header, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m,
                      notify_port, WAIT_MS, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(m.n.not_header.msgh_id == MACH_NOTIFY_PORT_DESTROYED);
    CHECK(m.n.not_type.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE);
    x = m.n.not_port;
    CHECK(ptype(x) == MACH_PORT_TYPE_RECEIVE);
    mach_msg_header_t h;
    CHECK_KR(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof h, x, WAIT_MS,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(h.msgh_id == 4);
    expect_nothing(notify_port);
    CHECK_KR(mach_port_destroy(SELF, x), KERN_SUCCESS);
    outer_finish(&o);
}

/* X's port-destroyed request names X itself: X dies in P's queue. */
static void self_aimed(enum mode mode)
{
    struct outer o;
    outer_start(&o, mode);
    mach_port_t x = test_new_port(true), s = test_new_port(false);
    mach_msg_header_t h = {
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE),
        .msgh_remote_port = x, .msgh_local_port = s, .msgh_id = 6};
    CHECK_KR(mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    mach_port_t previous = MACH_PORT_NULL;
    CHECK_KR(mach_port_request_notification(SELF, x, MACH_NOTIFY_PORT_DESTROYED, 0, x,
                                            MACH_MSG_TYPE_MAKE_SEND_ONCE, &previous),
             KERN_SUCCESS);
    CHECK_KR(test_send_port(o.p, x, MACH_MSG_TYPE_MOVE_RECEIVE, 3), MACH_MSG_SUCCESS);

    outer_destroy(&o);

    if (mode != PEER_KILL || in_instance) {
        expect_send_once(s);
    }
    for (int ms = 0; ms < WAIT_MS && ptype(x) != MACH_PORT_TYPE_DEAD_NAME; ms++) {
        usleep(1000);
    }
    CHECK_KR(send_empty(x, 7), MACH_SEND_INVALID_DEST);
    expect_nothing(notify_port);
    CHECK_KR(mach_port_destroy(SELF, x), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, s), KERN_SUCCESS);
    outer_finish(&o);
}

#define WITHIN_ROUNDS 300

/* The receiving thread of within(): takes WITHIN_ROUNDS receive rights on
 * its port and counts those that arrive alive, each with its message. */
static void *within_receiver(void *arg)
{
    mach_port_t port = (mach_port_t)(uintptr_t)arg;
    uintptr_t good = 0;
    for (int i = 0; i < WITHIN_ROUNDS; i++) {
        mach_port_t x = MACH_PORT_NULL;
        mach_msg_type_name_t type;
        if (test_receive_port(port, 10000, &x, &type) != MACH_MSG_SUCCESS) {
            break;
        }
        struct test_port_msg m;
        if (type == MACH_MSG_TYPE_PORT_RECEIVE && ptype(x) == MACH_PORT_TYPE_RECEIVE &&
            mach_msg(&m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, x, 10000,
                     MACH_PORT_NULL) == MACH_MSG_SUCCESS &&
            m.h.msgh_id == 70 + (i & 7)) {
            good++;
        }
        mach_port_destroy(SELF, x);
    }
    return (void *)good;
}

static void within(void)
{
    mach_port_t p = test_new_port(true);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, within_receiver, (void *)(uintptr_t)p) == 0);
    for (int i = 0; i < WITHIN_ROUNDS; i++) {
        mach_port_t x = test_new_port(true);
        CHECK_KR(send_empty(x, 70 + (i & 7)), MACH_MSG_SUCCESS);
        CHECK_KR(mach_port_deallocate(SELF, x), KERN_SUCCESS);
        CHECK_KR(test_send_port(p, x, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    }
    void *good = NULL;
    CHECK(pthread_join(thread, &good) == 0);
    CHECK((uintptr_t)good == WITHIN_ROUNDS);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

int main(int argc, char **argv)
{
    in_instance = argc == 2 && strcmp(argv[1], "--in-instance") == 0;
    notify_port = test_new_port(false);
    (void)mig_get_reply_port();
    int fds_before = -1;
    for (enum mode m = LOCAL; m <= PEER_KILL; m++) {
        int failures = test_failures;
        transit(m);
        queued(m);
        returning(m);
        self_aimed(m);
        if (m == LOCAL) {
            within();
        }
        if (fds_before < 0) {
            /* The first round starts the watchdog (its epoll instance). */
            fds_before = test_count_fds();
        }
        if (test_failures != failures) {
            fprintf(stderr, "  (in mode %s)\n", mode_name[m]);
        }
    }
    /* In an instance, a task that created tasks keeps its connection to
     * machd's list of tasks (opened by the first, in a later round). */
    int fds_after = test_count_fds();
    CHECK(fds_after == fds_before || (in_instance && fds_after == fds_before + 1));
    CHECK_KR(mach_port_destroy(SELF, notify_port), KERN_SUCCESS);
    if (in_instance) {
        return test_failures == 0 ? 0 : 1;
    }
    CHECK(test_rerun_in_instance("--in-instance") == 0);
    return test_done("transit");
}
