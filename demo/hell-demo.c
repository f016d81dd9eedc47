/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hell-demo: two Mach tasks (Linux processes) talking through stubs that
 * Debian's MIG generated from tests/hell_test.defs.
 */
#include <ctype.h>
#include <hell.h>
#include <mach.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hell_test.h"

boolean_t hell_test_server(mach_msg_header_t *in, mach_msg_header_t *out);

kern_return_t S_test_mix(mach_port_t server, int a, int64_t b, const_string_t name,
                         int64_t *sum, int *length, string_t upper)
{
    printf("server (pid %d): test_mix(%d, %lld, \"%s\")\n", getpid(), a, (long long)b, name);
    *sum = a + b;
    *length = (int)strlen(name);
    for (size_t i = 0; i <= strlen(name); i++) {
        upper[i] = (char)toupper((unsigned char)name[i]);
    }
    return KERN_SUCCESS;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: hell-demo\n"
               "Starts a client task whose bootstrap port is a send right to a\n"
               "port served here, and has it call test_mix through MIG stubs.\n");
        return 0;
    }
    mach_port_t service;
    mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &service);
    mach_port_insert_right(mach_task_self(), service, service, MACH_MSG_TYPE_MAKE_SEND);
    mach_port_t child_task;
    pid_t pid = hell_fork(service, &child_task);
    if (pid == 0) {
        mach_port_t server;
        task_get_bootstrap_port(mach_task_self(), &server);
        int64_t sum;
        int length;
        char upper[256];
        kern_return_t kr = test_mix(server, 2, 40, "hello from a mach task", &sum, &length,
                                    upper);
        printf("client (pid %d): kr=%d sum=%lld length=%d upper=\"%s\"\n", getpid(), kr,
               (long long)sum, length, upper);
        return kr == KERN_SUCCESS ? 0 : 1;
    }
    if (pid < 0) {
        perror("hell_fork");
        return 1;
    }
    union {
        mach_msg_header_t h;
        char buf[4096];
    } req, rep;
    mach_msg(&req.h, MACH_RCV_MSG, 0, sizeof req, service, 0, MACH_PORT_NULL);
    hell_test_server(&req.h, &rep.h);
    mach_msg(&rep.h, MACH_SEND_MSG, rep.h.msgh_size, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
    int status;
    waitpid(pid, &status, 0);
    printf("demo: %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
