/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A receiver killed with SIGKILL: its senders get MACH_SEND_INVALID_DEST
 * and the send right becomes a dead name with the same user references.
 */
#include <hell.h>
#include <signal.h>

#include "test.h"

int main(void)
{
    (void)mig_get_reply_port(); /* this thread's reply port is set-up, not a leak */
    int fds_before = test_count_fds();
    mach_port_t reply;
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply),
             KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(mach_task_self(), reply, reply, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);

    mach_port_t child_task;
    pid_t pid = hell_fork(reply, &child_task);
    if (pid == 0) {
        /* The child makes a port and sends us a send right, then waits. */
        mach_port_t boot, port;
        CHECK_KR(task_get_bootstrap_port(mach_task_self(), &boot), KERN_SUCCESS);
        CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port),
                 KERN_SUCCESS);
        CHECK_KR(test_send_port(boot, port, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
        pause();
        _exit(1);
    }
    mach_port_t peer = MACH_PORT_NULL;
    mach_msg_type_name_t type_name = 0;
    CHECK_KR(test_receive_port(reply, 10000, &peer, &type_name), MACH_MSG_SUCCESS);
    CHECK(type_name == MACH_MSG_TYPE_PORT_SEND);
    CHECK_KR(mach_port_mod_refs(mach_task_self(), peer, MACH_PORT_RIGHT_SEND, 2), KERN_SUCCESS);

    /* Alive: a message goes through. */
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_remote_port = peer, .msgh_id = 2};
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, 0, 0, 0), MACH_MSG_SUCCESS);

    kill(pid, SIGKILL);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));

    m.msgh_remote_port = peer;
    m.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, 0, 0, 0), MACH_SEND_INVALID_DEST);
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(mach_task_self(), peer, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_DEAD_NAME);
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(mach_task_self(), peer, MACH_PORT_RIGHT_DEAD_NAME, &refs),
             KERN_SUCCESS);
    CHECK(refs == 3);
    CHECK_KR(mach_port_get_refs(mach_task_self(), peer, MACH_PORT_RIGHT_SEND, &refs),
             KERN_SUCCESS);
    CHECK(refs == 0);
    CHECK_KR(mach_port_mod_refs(mach_task_self(), peer, MACH_PORT_RIGHT_DEAD_NAME, -3),
             KERN_SUCCESS);
    CHECK_KR(mach_port_type(mach_task_self(), peer, &type), KERN_INVALID_NAME);

    CHECK_KR(mach_port_deallocate(mach_task_self(), child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), reply), KERN_SUCCESS);
    CHECK(test_count_fds() == fds_before);
    return test_done("dead_receiver");
}
