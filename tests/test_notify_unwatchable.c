/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A backlog that cannot be watched (ipc_notify.c): a notify port whose
 * socket is full gets a send-once and a port-deleted notification
 * while the backlogs' epoll set cannot be made (epoll_create1 fails with EMFILE, as when the
 * process is out of descriptors).  The notification is released as if
 * its port were dead, which destroys its notify right, a send-once right
 * to that same port: its send-once notification joins the backlog being
 * released and is released too.  The process survives (it once freed
 * the backlog twice), nothing reaches the port beyond what filled it,
 * no descriptor is left, and the port's notifications work again once
 * epoll sets can be made.
 */
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "test.h"

/* While set, epoll_create1 fails as when out of descriptors.  (This
 * definition is the one libmach calls: the executable's comes first.) */
static volatile int epoll_refused;

int epoll_create1(int flags)
{
    if (epoll_refused) {
        errno = EMFILE;
        return -1;
    }
    return (int)syscall(SYS_epoll_create1, flags);
}

/* Reads NOTIFY until empty; returns how many fill messages came, and
 * counts the other messages in *OTHERS. */
static int read_all(mach_port_t notify, int *others)
{
    int fills = 0;
    *others = 0;
    for (;;) {
        struct test_fill_msg m;
        if (mach_msg(&m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, notify, 200,
                     MACH_PORT_NULL) != MACH_MSG_SUCCESS) {
            return fills;
        }
        if (m.head.msgh_id == TEST_FILL_ID) {
            fills++;
        } else {
            ++*others;
        }
    }
}

/* A dead-name request on PORT (a send right only: its receive right is
 * queued in a message) whose notify right goes to NOTIFY; the last send
 * right deallocated makes a port-deleted notification. */
static void request_dead_name(mach_port_t port, mach_port_t notify)
{
    mach_port_t previous = MACH_PORT_NULL;
    CHECK_KR(mach_port_request_notification(mach_task_self(), port, MACH_NOTIFY_DEAD_NAME, 0,
                                            notify, MACH_MSG_TYPE_MAKE_SEND_ONCE, &previous),
             KERN_SUCCESS);
    CHECK(previous == MACH_PORT_NULL);
}

/* Fills NOTIFY's socket (the fill ends with a send-once right destroyed:
 * one send-once notification), then deallocates the last send right of
 * a port (its receive right held in HOLDER's queue) whose dead-name
 * request goes to NOTIFY (a port-deleted notification), with REFUSED
 * epoll sets refused meanwhile.  Returns how many notifications came
 * once NOTIFY is read. */
static int notify_full_port(mach_port_t notify, mach_port_t holder, bool refused)
{
    mach_port_t port = test_new_port(true);
    CHECK_KR(test_send_port(holder, port, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    request_dead_name(port, notify);
    epoll_refused = refused;
    int filled = test_fill_port(notify);
    CHECK(filled > 0);
    CHECK_KR(mach_port_deallocate(mach_task_self(), port), KERN_SUCCESS);
    epoll_refused = 0;
    int others;
    CHECK(read_all(notify, &others) == filled);
    return others;
}

int main(void)
{
    mach_port_t notify = test_new_port(false);
    mach_port_t holder = test_new_port(true);
    /* Both notifications arrive; this also opens the watchdog's epoll set
     * (kept), before descriptors are counted. */
    CHECK(notify_full_port(notify, holder, false) == 2);
    int fds_before = test_count_fds();
    /* The fill's send-once notification, the port-deleted notification
     * and its notify right's send-once notification are all lost: the
     * port could not be watched. */
    CHECK(notify_full_port(notify, holder, true) == 0);
    CHECK(test_count_fds() == fds_before);
    /* The port's notifications wait for room again once epoll sets can
     * be made. */
    CHECK(notify_full_port(notify, holder, false) == 2);
    CHECK(test_count_fds() == fds_before);
    CHECK_KR(mach_port_destroy(mach_task_self(), holder), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), notify), KERN_SUCCESS);
    return test_done("notify_unwatchable");
}
