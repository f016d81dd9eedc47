/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Sending to a full queue: MACH_SEND_TIMEOUT gives MACH_SEND_TIMED_OUT and
 * the sender keeps its rights; without it the sender blocks until the
 * receiver makes room.  The queue is bounded by the socket's buffer until
 * issue 3 brings Mach's per-port qlimit.
 */
#include <pthread.h>

#include "test.h"

static mach_port_t port, carried;

static mach_msg_return_t send_one(mach_msg_option_t option, mach_msg_timeout_t timeout,
                                  mach_msg_type_name_t disposition)
{
    struct test_port_msg m = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .msgh_remote_port = port,
              .msgh_id = 7},
        .t = {.msgt_name = (unsigned char)disposition, .msgt_size = 64, .msgt_number = 1,
              .msgt_inline = TRUE},
        .p = {.name = carried},
    };
    return mach_msg(&m.h, MACH_SEND_MSG | option, sizeof m, 0, MACH_PORT_NULL, timeout,
                    MACH_PORT_NULL);
}

static mach_port_urefs_t send_refs(mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(mach_task_self(), name, MACH_PORT_RIGHT_SEND, &refs),
             KERN_SUCCESS);
    return refs;
}

static void *blocked_sender(void *arg)
{
    *(mach_msg_return_t *)arg = send_one(0, 0, MACH_MSG_TYPE_COPY_SEND);
    return NULL;
}

static void drain(int n)
{
    for (int i = 0; i < n; i++) {
        mach_port_t got;
        mach_msg_type_name_t type;
        CHECK_KR(test_receive_port(port, 10000, &got, &type), MACH_MSG_SUCCESS);
        CHECK_KR(mach_port_deallocate(mach_task_self(), got), KERN_SUCCESS);
    }
}

int main(void)
{
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(mach_task_self(), port, port, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &carried),
             KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(mach_task_self(), carried, carried, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    int fds_before = test_count_fds();

    /* Fill the queue: a bounded number of messages fit. */
    int queued = 0;
    mach_msg_return_t mr;
    while ((mr = send_one(MACH_SEND_TIMEOUT, 0, MACH_MSG_TYPE_COPY_SEND)) == MACH_MSG_SUCCESS) {
        queued++;
        if (queued > 100000) {
            break;
        }
    }
    CHECK_KR(mr, MACH_SEND_TIMED_OUT);
    CHECK(queued >= 1 && queued <= 100000);
    /* Copies in flight are in the messages, not in the sender's space. */
    mach_port_urefs_t refs = send_refs(carried);
    CHECK(refs == 1);

    /* A timed-out MOVE_SEND leaves the right with the sender. */
    CHECK_KR(send_one(MACH_SEND_TIMEOUT, 20, MACH_MSG_TYPE_MOVE_SEND), MACH_SEND_TIMED_OUT);
    CHECK(send_refs(carried) == refs);

    /* Without a timeout the sender blocks until the receiver makes room
     * (Linux wakes it once the queue's buffer is a quarter full again;
     * Mach's per-port qlimit comes with issue 3). */
    mach_msg_return_t blocked = MACH_SEND_IN_PROGRESS;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocked_sender, &blocked) == 0);
    usleep(100000);
    CHECK(blocked == MACH_SEND_IN_PROGRESS); /* still waiting: the queue is full */
    drain(queued);
    pthread_join(t, NULL);
    CHECK_KR(blocked, MACH_MSG_SUCCESS);
    drain(1);
    mach_port_t none;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(port, 0, &none, &type), MACH_RCV_TIMED_OUT);
    CHECK(send_refs(carried) == 1);

    CHECK_KR(mach_port_destroy(mach_task_self(), port), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), carried), KERN_SUCCESS);
    CHECK(test_count_fds() <= fds_before);
    return test_done("send_timeout");
}
