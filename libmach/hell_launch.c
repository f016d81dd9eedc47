/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Starting tasks: fork (and exec) with the bootstrap handshake.
 *
 * The parent and the child share a private socket pair.  The parent sends
 * the child's first rights (its bootstrap port) in one message; the child
 * answers with a send right to its task port.
 */
#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "linux.h"

#define EXPORT __attribute__((visibility("default")))

/* The parent's half: send BOOTSTRAP, receive the child's task port. */
static int hell_bootstrap_parent(int fd, mach_port_t bootstrap, mach_port_t *child_task)
{
    struct kright right = {.kind = KRIGHT_NONE};
    ipc_lock();
    if (MACH_PORT_VALID(bootstrap) &&
        ipc_right_copyin(&ipc_spaces[SPACE_USER], bootstrap, MACH_MSG_TYPE_COPY_SEND,
                         true, &right) != KERN_SUCCESS) {
        ipc_unlock();
        errno = EINVAL;
        return -1;
    }
    mach_msg_return_t mr = wire_send_bootstrap(fd, &right, 1);
    if (mr != MACH_MSG_SUCCESS) {
        kright_destroy(&right);
    }
    ipc_unlock();
    if (mr != MACH_MSG_SUCCESS) {
        errno = EPIPE;
        return -1;
    }
    struct kright task;
    if (wire_recv_bootstrap(fd, &task, 1) != 1) {
        errno = EPIPE;
        return -1;
    }
    ipc_lock();
    mach_port_name_t name = MACH_PORT_NULL;
    (void)ipc_right_copyout(&ipc_spaces[SPACE_USER], &task, &name);
    ipc_unlock();
    if (child_task != NULL) {
        *child_task = name;
    }
    return 0;
}

static pid_t hell_start(const char *path, char *const argv[], mach_port_t bootstrap,
                        mach_port_t *child_task)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        linux_close(sv[0]);
        linux_close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        if (path != NULL) {
            char env[32];
            snprintf(env, sizeof env, "%d", sv[1]);
            fcntl(sv[1], F_SETFD, 0);
            setenv("HELL_BOOTSTRAP_FD", env, 1);
            execv(path, argv);
            fprintf(stderr, "hell: cannot execute %s\n", path);
            _exit(127);
        }
        if (kern_bootstrap_child(sv[1]) != 0) {
            fprintf(stderr, "hell: bootstrap handshake with the parent failed\n");
            _exit(127);
        }
        close(sv[1]);
        return 0;
    }
    close(sv[1]);
    int rc = hell_bootstrap_parent(sv[0], bootstrap, child_task);
    close(sv[0]);
    if (rc != 0) {
        return -1;
    }
    return pid;
}

EXPORT pid_t hell_fork(mach_port_t bootstrap, mach_port_t *child_task)
{
    return hell_start(NULL, NULL, bootstrap, child_task);
}

EXPORT pid_t hell_spawn(const char *path, char *const argv[], mach_port_t bootstrap,
                        mach_port_t *child_task)
{
    return hell_start(path, argv, bootstrap, child_task);
}

EXPORT unsigned long hell_dropped_messages(void)
{
    return wire_dropped_count();
}
