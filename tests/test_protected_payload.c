/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Protected payloads (GNU Mach 1.7 and later): a receive right given a
 * payload with mach_port_set_protected_payload delivers its messages with
 * MACH_MSG_TYPE_PROTECTED_PAYLOAD local bits and the payload in place of
 * the local port name, also through a port set; the payload goes away with
 * mach_port_clear_protected_payload and when the receive right moves to
 * another task (ipc_right_copyin of MOVE_RECEIVE clears it).
 */
#include <hell.h>
#include <mach/notify.h>
#include <stdint.h>

#include "test.h"

#define SELF mach_task_self()
#define NAME_UNKNOWN 0x00fedc00u /* a name nobody allocated */
#define PAYLOAD 0x1122334455667788ull
#define PAYLOAD2 0x8877665544332211ull
#define PP MACH_MSG_TYPE_PROTECTED_PAYLOAD
#define LOCAL_IS_PAYLOAD(h, pl)                                                \
    (MACH_MSGH_BITS_LOCAL((h).msgh_bits) == PP &&                              \
     (h).msgh_protected_payload == (rpc_uintptr_t)(pl))
#define LOCAL_IS_PORT(h, name)                                                 \
    (MACH_MSGH_BITS_LOCAL((h).msgh_bits) == MACH_MSG_TYPE_PORT_SEND &&         \
     (h).msgh_local_port == (name))

static mach_port_t new_port(int with_send)
{
    mach_port_t p = MACH_PORT_NULL;
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
    if (with_send) {
        CHECK_KR(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    }
    return p;
}

static mach_port_type_t type_of(mach_port_t name)
{
    mach_port_type_t t = 0;
    return mach_port_type(SELF, name, &t) == KERN_SUCCESS ? t : 0;
}

typedef union {
    mach_msg_header_t h;
    unsigned char buf[256];
} msgbuf_t;

/* Sends a header-only message of id ID to DEST (COPY_SEND) with REPLY
 * (MAKE_SEND_ONCE) if not null, as a MIG request does. */
static mach_msg_return_t send_req(mach_port_t dest, mach_port_t reply, mach_msg_id_t id)
{
    mach_msg_header_t m = {
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND,
                                    reply != MACH_PORT_NULL ? MACH_MSG_TYPE_MAKE_SEND_ONCE : 0),
        .msgh_remote_port = dest, .msgh_local_port = reply, .msgh_id = id};
    return mach_msg(&m, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof m, 0, MACH_PORT_NULL, 10000,
                    MACH_PORT_NULL);
}

static mach_msg_return_t rcv(msgbuf_t *m, mach_port_t name, mach_msg_timeout_t timeout)
{
    memset(m, 0, sizeof *m);
    return mach_msg(&m->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof *m, name, timeout,
                    MACH_PORT_NULL);
}

static void test_set_and_clear(void)
{
    mach_port_t p = new_port(1), reply = new_port(0);
    msgbuf_t r;
    CHECK_KR(mach_port_set_protected_payload(SELF, p, PAYLOAD), KERN_SUCCESS);
    /* A plain message. */
    CHECK_KR(send_req(p, MACH_PORT_NULL, 1), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, PP) && r.h.msgh_id == 1);
    CHECK(r.h.msgh_protected_payload == (rpc_uintptr_t)PAYLOAD);
    CHECK(r.h.msgh_remote_port == MACH_PORT_NULL && r.h.msgh_seqno == 0);
    CHECK(r.h.msgh_size == sizeof(mach_msg_header_t));

    /* A MIG-style request: the reply right is unchanged, and works. */
    CHECK_KR(send_req(p, reply, 2), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND_ONCE, PP));
    CHECK(LOCAL_IS_PAYLOAD(r.h, PAYLOAD) && r.h.msgh_id == 2 && r.h.msgh_seqno == 1);
    mach_port_t so = r.h.msgh_remote_port;
    CHECK(MACH_PORT_VALID(so) && type_of(so) == MACH_PORT_TYPE_SEND_ONCE);
    mach_msg_header_t rep = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
                             .msgh_remote_port = so, .msgh_id = 102};
    CHECK_KR(mach_msg(&rep, MACH_SEND_MSG, sizeof rep, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, reply, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
    CHECK(r.h.msgh_local_port == reply && r.h.msgh_id == 102);

    /* A new payload replaces the old one, for messages already queued too. */
    CHECK_KR(send_req(p, MACH_PORT_NULL, 3), MACH_MSG_SUCCESS);
    CHECK_KR(mach_port_set_protected_payload(SELF, p, PAYLOAD2), KERN_SUCCESS);
    CHECK_KR(rcv(&r, p, 5000), MACH_MSG_SUCCESS);
    CHECK(LOCAL_IS_PAYLOAD(r.h, PAYLOAD2) && r.h.msgh_id == 3);
    /* Payload 0 is still a payload. */
    CHECK_KR(mach_port_set_protected_payload(SELF, p, 0), KERN_SUCCESS);
    CHECK_KR(send_req(p, MACH_PORT_NULL, 4), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, 5000), MACH_MSG_SUCCESS);
    CHECK(LOCAL_IS_PAYLOAD(r.h, 0) && r.h.msgh_id == 4);

    /* Cleared: the local port name is back. */
    CHECK_KR(mach_port_set_protected_payload(SELF, p, PAYLOAD), KERN_SUCCESS);
    CHECK_KR(mach_port_clear_protected_payload(SELF, p), KERN_SUCCESS);
    CHECK_KR(send_req(p, reply, 5), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits ==
          MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND_ONCE, MACH_MSG_TYPE_PORT_SEND));
    CHECK(LOCAL_IS_PORT(r.h, p) && r.h.msgh_id == 5 && r.h.msgh_seqno == 4);
    CHECK(type_of(r.h.msgh_remote_port) == MACH_PORT_TYPE_SEND_ONCE);
    CHECK_KR(mach_port_deallocate(SELF, r.h.msgh_remote_port), KERN_SUCCESS);
    CHECK_KR(rcv(&r, reply, 5000), MACH_MSG_SUCCESS); /* the send-once notification */
    CHECK(r.h.msgh_id == MACH_NOTIFY_SEND_ONCE && r.h.msgh_local_port == reply);
    /* Clearing twice, or a port that never had one, is fine. */
    CHECK_KR(mach_port_clear_protected_payload(SELF, p), KERN_SUCCESS);
    CHECK_KR(mach_port_clear_protected_payload(SELF, reply), KERN_SUCCESS);
    CHECK_KR(send_req(p, MACH_PORT_NULL, 6), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND) && LOCAL_IS_PORT(r.h, p));
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, reply), KERN_SUCCESS);
}

static void test_errors(void)
{
    mach_port_t set = MACH_PORT_NULL, dead = MACH_PORT_NULL;
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &set), KERN_SUCCESS);
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &dead), KERN_SUCCESS);
    /* A send right, a port set, a dead name: not receive rights. */
    const mach_port_t not_receive[] = {SELF, set, dead};
    for (int i = 0; i < 3; i++) {
        CHECK_KR(mach_port_set_protected_payload(SELF, not_receive[i], PAYLOAD),
                 KERN_INVALID_RIGHT);
        CHECK_KR(mach_port_clear_protected_payload(SELF, not_receive[i]), KERN_INVALID_RIGHT);
    }
    CHECK_KR(mach_port_set_protected_payload(SELF, NAME_UNKNOWN, PAYLOAD), KERN_INVALID_NAME);
    CHECK_KR(mach_port_clear_protected_payload(SELF, NAME_UNKNOWN), KERN_INVALID_NAME);
    CHECK_KR(mach_port_destroy(SELF, set), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, dead), KERN_SUCCESS);
}

static void test_through_set(void)
{
    mach_port_t set = MACH_PORT_NULL, p = new_port(1), q = new_port(1);
    msgbuf_t r;
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &set), KERN_SUCCESS);
    CHECK_KR(mach_port_move_member(SELF, p, set), KERN_SUCCESS);
    CHECK_KR(mach_port_move_member(SELF, q, set), KERN_SUCCESS);
    CHECK_KR(mach_port_set_protected_payload(SELF, p, PAYLOAD), KERN_SUCCESS);
    CHECK_KR(send_req(p, MACH_PORT_NULL, 10), MACH_MSG_SUCCESS);
    CHECK_KR(send_req(q, MACH_PORT_NULL, 11), MACH_MSG_SUCCESS);
    for (int i = 0; i < 2; i++) {
        CHECK_KR(rcv(&r, set, 5000), MACH_MSG_SUCCESS);
        if (r.h.msgh_id == 10) {
            CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, PP) && LOCAL_IS_PAYLOAD(r.h, PAYLOAD));
        } else {
            CHECK(r.h.msgh_id == 11 && LOCAL_IS_PORT(r.h, q));
        }
    }
    /* Set while a member: the next message carries it. */
    CHECK_KR(mach_port_set_protected_payload(SELF, q, PAYLOAD2), KERN_SUCCESS);
    CHECK_KR(send_req(q, MACH_PORT_NULL, 12), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, set, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 12 && LOCAL_IS_PAYLOAD(r.h, PAYLOAD2));
    /* Leaving the set keeps the payload. */
    CHECK_KR(mach_port_move_member(SELF, p, MACH_PORT_NULL), KERN_SUCCESS);
    CHECK_KR(send_req(p, MACH_PORT_NULL, 13), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 13 && LOCAL_IS_PAYLOAD(r.h, PAYLOAD));
    CHECK_KR(mach_port_destroy(SELF, set), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
}

/* The child's side of test_move: the moved receive right has lost the
 * payload, for the queued message and a new one; the child's own
 * payload then applies. */
static void move_child(void)
{
    test_failures = 0;
    mach_port_t boot = MACH_PORT_NULL, mine = new_port(0), moved = MACH_PORT_NULL;
    mach_msg_type_name_t type = 0;
    msgbuf_t r;
    CHECK_KR(task_get_bootstrap_port(SELF, &boot), KERN_SUCCESS);
    CHECK_KR(test_send_port(boot, mine, MACH_MSG_TYPE_MAKE_SEND, 60), MACH_MSG_SUCCESS);
    CHECK_KR(test_receive_port(mine, 10000, &moved, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_RECEIVE && type_of(moved) == MACH_PORT_TYPE_RECEIVE);
    for (int i = 0; i < 2; i++) {
        CHECK_KR(rcv(&r, moved, 10000), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_id == 20 + i && LOCAL_IS_PORT(r.h, moved));
        CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));
    }
    CHECK_KR(mach_port_set_protected_payload(SELF, moved, PAYLOAD2), KERN_SUCCESS);
    CHECK_KR(rcv(&r, moved, 10000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 22 && LOCAL_IS_PAYLOAD(r.h, PAYLOAD2));
    exit(test_failures ? 1 : 0);
}

static void test_move(void)
{
    mach_port_t boot = new_port(1), p = new_port(1);
    mach_port_t child_task = MACH_PORT_NULL, child_port = MACH_PORT_NULL;
    mach_msg_type_name_t type = 0;
    CHECK_KR(mach_port_set_protected_payload(SELF, p, PAYLOAD), KERN_SUCCESS);
    CHECK_KR(send_req(p, MACH_PORT_NULL, 20), MACH_MSG_SUCCESS);
    fflush(NULL);
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        move_child();
    }
    CHECK(pid > 0);
    CHECK_KR(test_receive_port(boot, 10000, &child_port, &type), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(child_port, p, MACH_MSG_TYPE_MOVE_RECEIVE, 61), MACH_MSG_SUCCESS);
    CHECK(type_of(p) == MACH_PORT_TYPE_SEND);
    CHECK_KR(mach_port_set_protected_payload(SELF, p, PAYLOAD), KERN_INVALID_RIGHT);
    CHECK_KR(send_req(p, MACH_PORT_NULL, 21), MACH_MSG_SUCCESS);
    CHECK_KR(send_req(p, MACH_PORT_NULL, 22), MACH_MSG_SUCCESS);
    if (pid > 0) {
        test_wait_ok(pid);
    }
    mach_port_t names[] = {boot, p, child_port, child_task};
    for (int i = 0; i < 4; i++) {
        CHECK_KR(mach_port_destroy(SELF, names[i]), KERN_SUCCESS);
    }
}

int main(void)
{
    /* Set-up: the task port and this thread's MIG reply port exist. */
    mach_port_destroy(SELF, new_port(0));
    int fds = test_count_fds();
    test_set_and_clear();
    test_errors();
    test_through_set();
    test_move();
    CHECK(test_count_fds() == fds);
    return test_done("protected_payload");
}
