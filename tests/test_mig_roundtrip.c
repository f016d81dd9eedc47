/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A MIG round trip across processes: an interface of our own compiled by
 * Debian's MIG, the server in a child task, the client here; in and out
 * arguments of several types and port rights both ways.
 */
#include <ctype.h>
#include <hell.h>

#include "hell_test.h"
#include "test.h"

boolean_t hell_test_server(mach_msg_header_t *in, mach_msg_header_t *out);

static mach_port_t server_made_port;

kern_return_t S_test_null(mach_port_t server)
{
    return KERN_SUCCESS;
}

kern_return_t S_test_mix(mach_port_t server, int a, int64_t b, const_string_t name,
                         int64_t *sum, int *length, string_t upper)
{
    *sum = a + b;
    *length = (int)strlen(name);
    for (size_t i = 0; i <= strlen(name); i++) {
        upper[i] = (char)toupper((unsigned char)name[i]);
    }
    return KERN_SUCCESS;
}

kern_return_t S_test_ports(mach_port_t server, mach_port_t given, mach_port_t *made)
{
    /* Check the right we were given is a live send right, then drop it. */
    mach_port_type_t type = 0;
    if (mach_port_type(mach_task_self(), given, &type) != KERN_SUCCESS ||
        !(type & MACH_PORT_TYPE_SEND)) {
        return KERN_INVALID_RIGHT;
    }
    mach_port_deallocate(mach_task_self(), given);
    if (server_made_port == MACH_PORT_NULL &&
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE,
                           &server_made_port) != KERN_SUCCESS) {
        return KERN_RESOURCE_SHORTAGE;
    }
    *made = server_made_port;
    return KERN_SUCCESS;
}

int main(void)
{
    /* One kernel call and one receive first: this thread's reply port and
     * receive buffer are set-up, not leaks. */
    mach_port_type_t self_type;
    CHECK_KR(mach_port_type(mach_task_self(), mach_task_self(), &self_type), KERN_SUCCESS);
    mach_port_t warm;
    mach_msg_header_t none;
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &warm), KERN_SUCCESS);
    CHECK_KR(mach_msg(&none, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof none, warm, 0,
                      MACH_PORT_NULL),
             MACH_RCV_TIMED_OUT);
    CHECK_KR(mach_port_mod_refs(mach_task_self(), warm, MACH_PORT_RIGHT_RECEIVE, -1),
             KERN_SUCCESS);
    int fds_before = test_count_fds();
    long maps_before = test_count_maps();
    mach_port_t service;
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &service),
             KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(mach_task_self(), service, service,
                                    MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);

    /* The child is the client: it finds the server through its bootstrap
     * port, which is a send right to our service port. */
    mach_port_t child_task;
    pid_t pid = hell_fork(service, &child_task);
    if (pid == 0) {
        mach_port_t server;
        CHECK_KR(task_get_bootstrap_port(mach_task_self(), &server), KERN_SUCCESS);
        CHECK(MACH_PORT_VALID(server));
        CHECK_KR(test_null(server), KERN_SUCCESS);
        int64_t sum = 0;
        int length = 0;
        char upper[256] = "";
        CHECK_KR(test_mix(server, 40, 5000000000LL, "hurd on linux", &sum, &length, upper),
                 KERN_SUCCESS);
        CHECK(sum == 5000000040LL);
        CHECK(length == 13);
        CHECK(strcmp(upper, "HURD ON LINUX") == 0);

        mach_port_t mine, made = MACH_PORT_NULL;
        CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &mine),
                 KERN_SUCCESS);
        CHECK_KR(test_ports(server, mine, &made), KERN_SUCCESS);
        mach_port_type_t type = 0;
        CHECK_KR(mach_port_type(mach_task_self(), made, &type), KERN_SUCCESS);
        CHECK(type == MACH_PORT_TYPE_SEND);
        /* The same port again coalesces under the same name. */
        mach_port_t made2 = MACH_PORT_NULL;
        CHECK_KR(test_ports(server, mine, &made2), KERN_SUCCESS);
        CHECK(made2 == made);
        mach_port_urefs_t refs = 0;
        CHECK_KR(mach_port_get_refs(mach_task_self(), made, MACH_PORT_RIGHT_SEND, &refs),
                 KERN_SUCCESS);
        CHECK(refs == 2);
        exit(test_failures ? 1 : 0);
    }
    CHECK(pid > 0);
    CHECK(MACH_PORT_VALID(child_task));

    /* Serve until the child is done: three test_* calls and one more. */
    union {
        mach_msg_header_t h;
        char buf[4096];
    } req, rep;
    for (int i = 0; i < 4; i++) {
        CHECK_KR(mach_msg(&req.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof req, service,
                          10000, MACH_PORT_NULL),
                 MACH_MSG_SUCCESS);
        CHECK(hell_test_server(&req.h, &rep.h));
        CHECK_KR(mach_msg(&rep.h, MACH_SEND_MSG, rep.h.msgh_size, 0, MACH_PORT_NULL, 0,
                          MACH_PORT_NULL),
                 MACH_MSG_SUCCESS);
    }
    test_wait_ok(pid);

    CHECK_KR(mach_port_deallocate(mach_task_self(), child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(mach_task_self(), service, MACH_PORT_RIGHT_RECEIVE, -1),
             KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), server_made_port), KERN_SUCCESS);
    CHECK(test_count_fds() == fds_before);
#ifndef __SANITIZE_ADDRESS__
    CHECK(test_count_maps() == maps_before);
#endif
    (void)maps_before;
    return test_done("mig_roundtrip");
}
