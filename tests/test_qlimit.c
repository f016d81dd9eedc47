/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Queue limits (GNU Mach's qlimit, MACH_PORT_QLIMIT_DEFAULT 5): messages
 * through send rights are admitted while fewer than qlimit are queued,
 * senders wait (or time out, or are interrupted) when the queue is full,
 * dequeuing or raising the limit lets them in, send-once messages are
 * never held back, and the count travels with a moved receive right.
 * Within a task and across tasks; a receiver killed under a waiting
 * sender; a queue page scribbled over by a hostile sender.
 */
#include <hell.h>
#include <mach.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()

static mach_msg_return_t send_id(mach_port_t dest, mach_msg_type_name_t disposition,
                                 mach_msg_id_t id, mach_msg_option_t option,
                                 mach_msg_timeout_t timeout)
{
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(disposition, 0),
                           .msgh_remote_port = dest,
                           .msgh_id = id};
    return mach_msg(&m, MACH_SEND_MSG | option, sizeof m, 0, MACH_PORT_NULL, timeout,
                    MACH_PORT_NULL);
}

/* Sends without waiting for room: MACH_SEND_TIMEOUT with 0. */
static mach_msg_return_t try_send(mach_port_t dest, mach_msg_id_t id)
{
    return send_id(dest, MACH_MSG_TYPE_COPY_SEND, id, MACH_SEND_TIMEOUT, 0);
}

/* Receives one message; returns its id, or -1. */
static mach_msg_id_t receive_id(mach_port_t port, mach_msg_timeout_t timeout)
{
    union {
        mach_msg_header_t h;
        char buf[256];
    } r;
    if (mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, port, timeout,
                 MACH_PORT_NULL) != MACH_MSG_SUCCESS) {
        return -1;
    }
    return r.h.msgh_id;
}

static mach_port_status_t status_of(mach_port_t port)
{
    mach_port_status_t st = {0};
    CHECK_KR(mach_port_get_receive_status(SELF, port, &st), KERN_SUCCESS);
    return st;
}

/* A thread that sends one message and records the outcome. */
struct sender {
    pthread_t thread;
    mach_port_t dest;
    mach_msg_option_t option;
    mach_msg_timeout_t timeout;
    _Atomic int done;
    mach_msg_return_t mr;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    s->mr = send_id(s->dest, MACH_MSG_TYPE_COPY_SEND, 77, s->option, s->timeout);
    atomic_store(&s->done, 1);
    return NULL;
}

static void sender_start(struct sender *s, mach_port_t dest)
{
    *s = (struct sender){.dest = dest};
    CHECK(pthread_create(&s->thread, NULL, sender_main, s) == 0);
}

/* Whether S is still blocked after a while.  A sender that is let in
 * too early is caught here; one blocked for good is caught by the
 * joins that follow. */
static bool sender_blocked(struct sender *s)
{
    usleep(150000);
    return !atomic_load(&s->done);
}

static void test_limit_and_order(void)
{
    mach_port_t p = test_new_port(true);
    mach_port_status_t st = status_of(p);
    CHECK(st.mps_qlimit == MACH_PORT_QLIMIT_DEFAULT && st.mps_msgcount == 0);

    for (int i = 0; i < 5; i++) {
        CHECK_KR(try_send(p, i), MACH_MSG_SUCCESS);
    }
    CHECK(status_of(p).mps_msgcount == 5);
    /* Full: refused at once, and after a timeout; the right stays. */
    CHECK_KR(try_send(p, 99), MACH_SEND_TIMED_OUT);
    CHECK_KR(send_id(p, MACH_MSG_TYPE_COPY_SEND, 99, MACH_SEND_TIMEOUT, 50),
             MACH_SEND_TIMED_OUT);
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(SELF, p, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    CHECK(refs == 1);
    /* A send-once message is never held back (nor counted). */
    CHECK_KR(send_id(p, MACH_MSG_TYPE_MAKE_SEND_ONCE, 100, MACH_SEND_TIMEOUT, 0),
             MACH_MSG_SUCCESS);
    CHECK(status_of(p).mps_msgcount == 5);

    /* One out, one in; then everything comes out in order. */
    CHECK(receive_id(p, 0) == 0);
    CHECK(status_of(p).mps_msgcount == 4);
    CHECK_KR(try_send(p, 5), MACH_MSG_SUCCESS);
    CHECK_KR(try_send(p, 99), MACH_SEND_TIMED_OUT);
    static const mach_msg_id_t order[] = {1, 2, 3, 4, 100, 5};
    for (unsigned i = 0; i < sizeof order / sizeof order[0]; i++) {
        CHECK(receive_id(p, 0) == order[i]);
    }
    CHECK(receive_id(p, 0) == -1);
    CHECK(status_of(p).mps_msgcount == 0);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

static void test_set_qlimit(void)
{
    mach_port_t p = test_new_port(true);
    CHECK_KR(mach_port_set_qlimit(SELF, p, MACH_PORT_QLIMIT_MAX + 1), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_set_qlimit(SELF, p + 0x100, 3), KERN_INVALID_NAME);
    CHECK_KR(mach_port_set_qlimit(SELF, p, 1), KERN_SUCCESS);
    CHECK(status_of(p).mps_qlimit == 1);
    CHECK_KR(try_send(p, 1), MACH_MSG_SUCCESS);
    CHECK_KR(try_send(p, 2), MACH_SEND_TIMED_OUT);

    /* A sender waiting on the full queue gets in when the limit rises. */
    struct sender s;
    sender_start(&s, p);
    CHECK(sender_blocked(&s));
    CHECK_KR(mach_port_set_qlimit(SELF, p, MACH_PORT_QLIMIT_MAX), KERN_SUCCESS);
    pthread_join(s.thread, NULL);
    CHECK_KR(s.mr, MACH_MSG_SUCCESS);
    for (mach_msg_id_t i = 2; i < (mach_msg_id_t)MACH_PORT_QLIMIT_MAX; i++) {
        CHECK_KR(try_send(p, i), MACH_MSG_SUCCESS);
    }
    CHECK(status_of(p).mps_msgcount == MACH_PORT_QLIMIT_MAX);
    CHECK_KR(try_send(p, 99), MACH_SEND_TIMED_OUT);

    /* Lowering it below the count: nothing gets in until the queue has
     * drained below the new limit. */
    CHECK_KR(mach_port_set_qlimit(SELF, p, 2), KERN_SUCCESS);
    for (unsigned i = 0; i < MACH_PORT_QLIMIT_MAX - 2; i++) {
        CHECK(receive_id(p, 0) >= 0);
        CHECK_KR(try_send(p, 99), MACH_SEND_TIMED_OUT);
    }
    CHECK(receive_id(p, 0) >= 0);
    CHECK_KR(try_send(p, 3), MACH_MSG_SUCCESS);

    /* qlimit 0: an empty queue still takes one message (HELL's rule, see
     * ipc_qlimit.h), a non-empty one none. */
    CHECK_KR(mach_port_set_qlimit(SELF, p, 0), KERN_SUCCESS);
    CHECK_KR(try_send(p, 99), MACH_SEND_TIMED_OUT);
    while (receive_id(p, 0) >= 0) {
    }
    CHECK_KR(try_send(p, 4), MACH_MSG_SUCCESS);
    CHECK_KR(try_send(p, 99), MACH_SEND_TIMED_OUT);
    CHECK(receive_id(p, 0) == 4);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

/* A blocked sender wakes when the receiver dequeues, and ends with
 * MACH_SEND_INVALID_DEST when the port is destroyed under it. */
static void test_wakeups(void)
{
    mach_port_t p = test_new_port(true);
    for (int i = 0; i < 5; i++) {
        CHECK_KR(try_send(p, i), MACH_MSG_SUCCESS);
    }
    struct sender s;
    sender_start(&s, p);
    CHECK(sender_blocked(&s));
    CHECK(receive_id(p, 0) == 0);
    pthread_join(s.thread, NULL);
    CHECK_KR(s.mr, MACH_MSG_SUCCESS);
    CHECK(status_of(p).mps_msgcount == 5);

    sender_start(&s, p);
    CHECK(sender_blocked(&s));
    CHECK_KR(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
    pthread_join(s.thread, NULL);
    CHECK_KR(s.mr, MACH_SEND_INVALID_DEST);
    CHECK_KR(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_DEAD_NAME, -1), KERN_SUCCESS);
}

/* A child task that gets a send right to the parent's port P through its
 * bootstrap port and runs BODY on it; returns its pid. */
static pid_t child_with(mach_port_t p, int (*body)(mach_port_t))
{
    mach_port_t boot = test_new_port(true);
    mach_port_t child_task;
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        mach_port_t parent, inbox, got;
        mach_msg_type_name_t type;
        task_get_bootstrap_port(mach_task_self(), &parent);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &inbox);
        test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1);
        if (test_receive_port(inbox, 10000, &got, &type) != MACH_MSG_SUCCESS) {
            _exit(2);
        }
        _exit(body(got));
    }
    mach_port_t inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, 10000, &inbox, &type), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(inbox, p, MACH_MSG_TYPE_COPY_SEND, 2), MACH_MSG_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child_task), KERN_SUCCESS);
    return pid;
}

/* Fills the queue (5 in, the 6th refused), then sends a 6th, 7th and
 * 8th that wait for room. */
static int child_fill(mach_port_t p)
{
    for (int i = 0; i < 5; i++) {
        if (try_send(p, i) != MACH_MSG_SUCCESS) {
            return 3;
        }
    }
    if (try_send(p, 99) != MACH_SEND_TIMED_OUT) {
        return 4;
    }
    for (int i = 5; i < 8; i++) {
        if (send_id(p, MACH_MSG_TYPE_COPY_SEND, i, 0, 0) != MACH_MSG_SUCCESS) {
            return 5;
        }
    }
    return 0;
}

/* Waits forever on a full queue: the parent kills its receiver. */
static int child_wait_for_dead(mach_port_t p)
{
    for (int i = 0; i < 5; i++) {
        try_send(p, i);
    }
    return send_id(p, MACH_MSG_TYPE_COPY_SEND, 5, 0, 0) == MACH_SEND_INVALID_DEST ? 0 : 6;
}

static void test_across_tasks(void)
{
    /* Another task's senders are held to our limit, and woken by our
     * receives. */
    mach_port_t p = test_new_port(true);
    pid_t pid = child_with(p, child_fill);
    for (int i = 0; i < 50 && status_of(p).mps_msgcount < 5; i++) {
        usleep(20000);
    }
    usleep(100000); /* the child is now blocked on its 6th */
    CHECK(status_of(p).mps_msgcount == 5);
    for (int i = 0; i < 8; i++) {
        CHECK(receive_id(p, 5000) == i);
    }
    test_wait_ok(pid);
    CHECK(status_of(p).mps_msgcount == 0);

    /* The count travels with the receive right. */
    for (int i = 0; i < 5; i++) {
        CHECK_KR(try_send(p, i), MACH_MSG_SUCCESS);
    }
    mach_port_t holder = test_new_port(true);
    CHECK_KR(test_send_port(holder, p, MACH_MSG_TYPE_MOVE_RECEIVE, 3), MACH_MSG_SUCCESS);
    CHECK_KR(try_send(p, 99), MACH_SEND_TIMED_OUT);
    mach_port_t back = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(holder, 0, &back, &type), MACH_MSG_SUCCESS);
    CHECK(back == p && type == MACH_MSG_TYPE_PORT_RECEIVE);
    CHECK(status_of(p).mps_msgcount == 5);
    CHECK_KR(mach_port_destroy(SELF, holder), KERN_SUCCESS);

    /* A task waiting for room in a port whose receiver dies. */
    pid = child_with(p, child_wait_for_dead);
    usleep(200000);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
    test_wait_ok(pid);
}

/* A hostile sender writes the queue pages it can reach: every count
 * full, every limit 0.  Senders are slowed to one message at a time,
 * never stopped. */
static void test_scribbled_page(void)
{
    mach_port_t p = test_new_port(true);
    FILE *maps = fopen("/proc/self/maps", "r");
    CHECK(maps != NULL);
    char line[512];
    int scribbled = 0;
    while (maps != NULL && fgets(line, sizeof line, maps) != NULL) {
        unsigned long start;
        if (strstr(line, "memfd:hell-queue") != NULL && sscanf(line, "%lx-", &start) == 1) {
            uint32_t *page = (uint32_t *)start;
            page[0] = 0xfffffff0u; /* count */
            page[1] = 0;           /* qlimit */
            scribbled++;
        }
    }
    if (maps != NULL) {
        fclose(maps);
    }
    CHECK(scribbled > 0);
    CHECK_KR(send_id(p, MACH_MSG_TYPE_COPY_SEND, 1, 0, 0), MACH_MSG_SUCCESS);
    CHECK_KR(try_send(p, 99), MACH_SEND_TIMED_OUT);
    CHECK(receive_id(p, 0) == 1);
    CHECK_KR(try_send(p, 2), MACH_MSG_SUCCESS);
    CHECK(receive_id(p, 0) == 2);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

int main(void)
{
    /* Set-up: the task port, this thread's reply port, the watchdog. */
    mach_port_destroy(SELF, test_new_port(true));
    int fds = test_count_fds();
    test_limit_and_order();
    test_set_qlimit();
    test_wakeups();
    fds++; /* the watchdog's epoll instance, made by the first wait */
    CHECK(test_count_fds() == fds);
    test_across_tasks();
    test_scribbled_page();
    CHECK(test_count_fds() == fds);
    return test_done("qlimit");
}
