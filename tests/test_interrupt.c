/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Signals during mach_msg: with MACH_RCV_INTERRUPT a blocked receive ends
 * with MACH_RCV_INTERRUPTED; without it, the receive goes on and gets the
 * message sent later (glibc's mach_msg retries).  The same for a send
 * blocked on a full queue with MACH_SEND_INTERRUPT.
 */
#include <pthread.h>
#include <signal.h>

#include "test.h"

static mach_port_t port;
static pthread_t target;

static void on_signal(int sig)
{
    (void)sig;
}

static void *poke(void *arg)
{
    usleep(100000);
    pthread_kill(target, SIGUSR1);
    if (arg != NULL) {
        /* Then let the uninterruptible call complete. */
        usleep(100000);
        mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0),
                               .msgh_remote_port = port, .msgh_id = 9};
        mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
    }
    return NULL;
}

static mach_msg_return_t receive(mach_msg_option_t extra, mach_msg_header_t *r)
{
    return mach_msg(r, MACH_RCV_MSG | extra, 0, sizeof *r + 64, port, 0, MACH_PORT_NULL);
}

int main(void)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port), KERN_SUCCESS);
    target = pthread_self();

    /* With MACH_RCV_INTERRUPT: the signal ends the receive. */
    union {
        mach_msg_header_t h;
        char buf[128];
    } r;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, poke, NULL) == 0);
    CHECK_KR(receive(MACH_RCV_INTERRUPT, &r.h), MACH_RCV_INTERRUPTED);
    pthread_join(t, NULL);

    /* Without it: the receive goes on and gets the message sent after. */
    CHECK(pthread_create(&t, NULL, poke, (void *)1) == 0);
    CHECK_KR(receive(0, &r.h), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 9);
    pthread_join(t, NULL);

    /* The same with a timeout: interrupted, or going on to time out. */
    CHECK(pthread_create(&t, NULL, poke, NULL) == 0);
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT | MACH_RCV_INTERRUPT, 0, sizeof r,
                      port, 5000, MACH_PORT_NULL),
             MACH_RCV_INTERRUPTED);
    pthread_join(t, NULL);
    CHECK(pthread_create(&t, NULL, poke, NULL) == 0);
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, port, 300,
                      MACH_PORT_NULL),
             MACH_RCV_TIMED_OUT);
    pthread_join(t, NULL);

    /* A send blocked on a full queue: MACH_SEND_INTERRUPT ends it, and the
     * sender keeps its rights. */
    CHECK_KR(mach_port_insert_right(mach_task_self(), port, port, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_remote_port = port};
    int queued = 0;
    while (mach_msg(&m, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof m, 0, MACH_PORT_NULL, 0,
                    MACH_PORT_NULL) == MACH_MSG_SUCCESS && queued < 100000) {
        queued++;
    }
    CHECK(pthread_create(&t, NULL, poke, NULL) == 0);
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG | MACH_SEND_INTERRUPT, sizeof m, 0, MACH_PORT_NULL, 0,
                      MACH_PORT_NULL),
             MACH_SEND_INTERRUPTED);
    pthread_join(t, NULL);
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(mach_task_self(), port, MACH_PORT_RIGHT_SEND, &refs),
             KERN_SUCCESS);
    CHECK(refs == 1);

    CHECK_KR(mach_port_destroy(mach_task_self(), port), KERN_SUCCESS);
    return test_done("interrupt");
}
