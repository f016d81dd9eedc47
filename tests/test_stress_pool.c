/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Stress: 64 client threads in 4 tasks make MIG RPCs to ports of one port
 * set served by a pool of 4 threads (libports' pattern).  Every request is
 * answered exactly once with its own arguments, nothing is lost or
 * duplicated, and no descriptor leaks.
 */
#include <hell.h>
#include <pthread.h>
#include <stdatomic.h>

#include "hell_test.h"
#include "test.h"

boolean_t hell_test_server(mach_msg_header_t *in, mach_msg_header_t *out);

#define TASKS 4
#define THREADS_PER_TASK 16
#define CALLS_PER_THREAD 200
#define MEMBERS 3
#define POOL 4

static atomic_uint served;
static atomic_uint seen[TASKS * THREADS_PER_TASK * CALLS_PER_THREAD];

kern_return_t S_test_mix(mach_port_t server, int a, int64_t b, const_string_t name,
                         int64_t *sum, int *length, string_t upper)
{
    /* a: the call's number; b: a value the client checks comes back. */
    if (a < 0 || a >= (int)(sizeof seen / sizeof seen[0])) {
        return KERN_INVALID_ARGUMENT;
    }
    atomic_fetch_add(&seen[a], 1);
    atomic_fetch_add(&served, 1);
    *sum = a + b;
    *length = (int)strlen(name);
    strcpy(upper, name);
    return KERN_SUCCESS;
}

static mach_port_t set;

static void *pool_thread(void *arg)
{
    (void)arg;
    /* Serves until no request came for a while. */
    mach_msg_server_timeout(hell_test_server, 4096, set, MACH_RCV_TIMEOUT, 3000);
    return NULL;
}

struct client {
    mach_port_t server;
    int first_call;
    int failures;
};

static void *client_thread(void *arg)
{
    struct client *c = arg;
    for (int i = 0; i < CALLS_PER_THREAD; i++) {
        int call = c->first_call + i;
        int64_t sum = 0;
        int length = 0;
        char upper[256] = "";
        kern_return_t kr = test_mix(c->server, call, 1000000007LL * call, "stress", &sum,
                                    &length, upper);
        if (kr != KERN_SUCCESS || sum != call + 1000000007LL * call || length != 6) {
            c->failures++;
        }
    }
    return NULL;
}

/* A client task: THREADS_PER_TASK threads, each on one of the members. */
static int run_client_task(int task, mach_port_t *members)
{
    pthread_t threads[THREADS_PER_TASK];
    struct client clients[THREADS_PER_TASK];
    for (int t = 0; t < THREADS_PER_TASK; t++) {
        clients[t] = (struct client){
            .server = members[t % MEMBERS],
            .first_call = (task * THREADS_PER_TASK + t) * CALLS_PER_THREAD};
        pthread_create(&threads[t], NULL, client_thread, &clients[t]);
    }
    int failures = 0;
    for (int t = 0; t < THREADS_PER_TASK; t++) {
        pthread_join(threads[t], NULL);
        failures += clients[t].failures;
    }
    return failures;
}

int main(void)
{
    mach_port_t self = mach_task_self();
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_PORT_SET, &set), KERN_SUCCESS);
    mach_port_t members[MEMBERS];
    for (int m = 0; m < MEMBERS; m++) {
        CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &members[m]), KERN_SUCCESS);
        CHECK_KR(mach_port_insert_right(self, members[m], members[m], MACH_MSG_TYPE_MAKE_SEND),
                 KERN_SUCCESS);
        CHECK_KR(mach_port_move_member(self, members[m], set), KERN_SUCCESS);
    }
    int fds_before = test_count_fds();

    /* Each client task gets the members through its bootstrap port: a
     * port of ours on which it receives them. */
    pid_t pids[TASKS];
    for (int task = 0; task < TASKS; task++) {
        mach_port_t handoff;
        CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &handoff), KERN_SUCCESS);
        CHECK_KR(mach_port_insert_right(self, handoff, handoff, MACH_MSG_TYPE_MAKE_SEND),
                 KERN_SUCCESS);
        mach_port_t child_task;
        pid_t pid = hell_fork(handoff, &child_task);
        if (pid == 0) {
            mach_port_t boot, inbox, got[MEMBERS];
            mach_msg_type_name_t type;
            task_get_bootstrap_port(mach_task_self(), &boot);
            mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &inbox);
            test_send_port(boot, inbox, MACH_MSG_TYPE_MAKE_SEND, 1);
            for (int m = 0; m < MEMBERS; m++) {
                if (test_receive_port(inbox, 10000, &got[m], &type) != MACH_MSG_SUCCESS) {
                    _exit(2);
                }
            }
            _exit(run_client_task(task, got) == 0 ? 0 : 1);
        }
        pids[task] = pid;
        mach_port_t inbox = MACH_PORT_NULL;
        mach_msg_type_name_t type;
        CHECK_KR(test_receive_port(handoff, 10000, &inbox, &type), MACH_MSG_SUCCESS);
        for (int m = 0; m < MEMBERS; m++) {
            CHECK_KR(test_send_port(inbox, members[m], MACH_MSG_TYPE_COPY_SEND, 2),
                     MACH_MSG_SUCCESS);
        }
        CHECK_KR(mach_port_deallocate(self, inbox), KERN_SUCCESS);
        CHECK_KR(mach_port_destroy(self, handoff), KERN_SUCCESS);
        CHECK_KR(mach_port_deallocate(self, child_task), KERN_SUCCESS);
    }

    pthread_t pool[POOL];
    for (int p = 0; p < POOL; p++) {
        CHECK(pthread_create(&pool[p], NULL, pool_thread, NULL) == 0);
    }
    for (int task = 0; task < TASKS; task++) {
        test_wait_ok(pids[task]);
    }
    for (int p = 0; p < POOL; p++) {
        pthread_join(pool[p], NULL);
    }

    unsigned total = TASKS * THREADS_PER_TASK * CALLS_PER_THREAD;
    CHECK(atomic_load(&served) == total);
    unsigned wrong = 0;
    for (unsigned i = 0; i < total; i++) {
        wrong += atomic_load(&seen[i]) != 1;
    }
    CHECK(wrong == 0);

    for (int m = 0; m < MEMBERS; m++) {
        CHECK_KR(mach_port_destroy(self, members[m]), KERN_SUCCESS);
    }
    CHECK_KR(mach_port_destroy(self, set), KERN_SUCCESS);
    /* The members' descriptors are gone; the set and ports made before
     * counting are the only difference (5 per port: the socket pair, both
     * ends of the counting pipe and the queue page; 2 for the set). */
    CHECK(test_count_fds() == fds_before - MEMBERS * 5 - 2);
    return test_done("stress_pool");
}
