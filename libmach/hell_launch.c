/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Starting tasks: fork (and exec) with the bootstrap handshake.
 *
 * The parent and the child share a private socket pair.  The parent sends
 * the child's first rights in one message (its bootstrap port; for a
 * spawn with grants, an empty exception slot and the granted rights,
 * whose names follow in a second datagram); the child answers with a
 * send right to its task port.  An executed child finds the socket in
 * HELL_BOOTSTRAP_FD.  A child of hell_fork first gets the rights of the
 * pagers whose objects it inherits mappings of (kern_vm.h), as a task
 * made by task_create with inherited memory does.
 */
#include "hell_launch.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "kern_vm.h"
#include "linux.h"
#include "vm_movable.h"

#define EXPORT __attribute__((visibility("default")))

#define BOOTSTRAP_ENV "HELL_BOOTSTRAP_FD="
#define FD_DIGITS 10 /* room for any descriptor number */
#define EMPTY_TASK_ENV "HELL_EMPTY_TASK="
#define EMPTY_TASK_PROGRAM "hell-task"

#ifndef HELL_BINDIR
#define HELL_BINDIR "/usr/local/bin"
#endif

extern char **environ;

/* Copies the caller's rights ATTR names into RIGHTS (kern.h's
 * KERN_BOOT_* layout: ATTR's bootstrap port, no exception port, this
 * task's registered ports, ATTR's grants) and returns how many to send,
 * or -1 (nothing held) when one is not a send right.  Expects [G]. */
static int hell_grant_rights(const struct hell_spawn_attr *attr, struct kright *rights)
{
    int n = KERN_BOOT_FIXED + (int)attr->ngrants;
    for (int i = 0; i < n; i++) {
        rights[i] = (struct kright){.kind = KRIGHT_NONE};
    }
    kern_registered_copy(&rights[KERN_BOOT_REGISTERED]);
    struct ipc_space *space = &ipc_spaces[SPACE_USER];
    bool ok = !MACH_PORT_VALID(attr->bootstrap) ||
              ipc_right_copyin(space, attr->bootstrap, MACH_MSG_TYPE_COPY_SEND, true,
                               &rights[KERN_BOOT_BOOTSTRAP]) == KERN_SUCCESS;
    for (unsigned i = 0; ok && i < attr->ngrants; i++) {
        ok = ipc_right_copyin(space, attr->grants[i].right, MACH_MSG_TYPE_COPY_SEND, false,
                              &rights[KERN_BOOT_FIXED + i]) == KERN_SUCCESS;
    }
    if (!ok) {
        for (int i = 0; i < n; i++) {
            kright_destroy(&rights[i]);
        }
        return -1;
    }
    return n;
}

/* The parent's half: send the rights ATTR gives, receive the child's task
 * port.  Returns 0, or -1 with errno set. */
static int hell_bootstrap_parent(int fd, const struct hell_spawn_attr *attr,
                                 mach_port_t *child_task)
{
    struct kright rights[KERN_BOOT_FIXED + HELL_GRANTS_MAX];
    ipc_lock();
    int n = hell_grant_rights(attr, rights);
    if (n < 0) {
        ipc_unlock();
        errno = EINVAL;
        return -1;
    }
    mach_msg_return_t mr = wire_send_bootstrap(fd, rights, (unsigned)n);
    if (mr != MACH_MSG_SUCCESS) {
        for (int i = 0; i < n; i++) {
            kright_destroy(&rights[i]);
        }
    }
    ipc_unlock();
    if (mr == MACH_MSG_SUCCESS && attr->ngrants > 0) {
        mach_port_name_t names[HELL_GRANTS_MAX];
        for (unsigned i = 0; i < attr->ngrants; i++) {
            names[i] = attr->grants[i].name;
        }
        size_t len = attr->ngrants * sizeof names[0];
        if (send(fd, names, len, MSG_NOSIGNAL) != (ssize_t)len) {
            mr = MACH_SEND_INVALID_DEST;
        }
    }
    struct kright task;
    if (mr != MACH_MSG_SUCCESS || wire_recv_bootstrap(fd, &task, 1) != 1) {
        errno = EPIPE;
        return -1;
    }
    ipc_lock();
    mach_port_name_t name = MACH_PORT_NULL;
    struct kright listed = {.kind = KRIGHT_NONE};
    if (ipc_right_copyout(&ipc_spaces[SPACE_USER], &task, &name) == KERN_SUCCESS &&
        ipc_right_copyin(&ipc_spaces[SPACE_USER], name, MACH_MSG_TYPE_COPY_SEND, false,
                         &listed) != KERN_SUCCESS) {
        listed = (struct kright){.kind = KRIGHT_NONE};
    }
    ipc_unlock();
    kern_pset_task_created(&listed);
    if (child_task != NULL) {
        *child_task = name;
    } else if (MACH_PORT_VALID(name)) {
        ipc_lock();
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_USER], name);
        ipc_unlock();
    }
    return 0;
}

/* Whether ATTR is one hell_spawn_attr can honour. */
static bool hell_attr_valid(const struct hell_spawn_attr *attr)
{
    if (attr->ngrants > HELL_GRANTS_MAX || (attr->ngrants > 0 && attr->grants == NULL)) {
        return false;
    }
    for (unsigned i = 0; i < attr->ngrants; i++) {
        if (!MACH_PORT_VALID(attr->grants[i].name)) {
            return false;
        }
        for (unsigned k = 0; k < i; k++) {
            if (attr->grants[k].name == attr->grants[i].name) {
                return false;
            }
        }
    }
    return attr->stdio == NULL ||
           (attr->stdio[0] >= 0 && attr->stdio[1] >= 0 && attr->stdio[2] >= 0);
}

/* The environment of an executed child: ENVP (or ours) without any
 * HELL_BOOTSTRAP_FD, then EXTRA (unless NULL), then a HELL_BOOTSTRAP_FD
 * entry whose digits the child fills in (*SLOT, malloc'd).  Returns a
 * malloc'd array whose other entries are ENVP's strings and EXTRA, or
 * NULL when out of memory. */
static char **hell_env_make(char *const *envp, const char *extra, char **slot)
{
    if (envp == NULL) {
        envp = environ;
    }
    size_t n = 0;
    while (envp != NULL && envp[n] != NULL) {
        n++;
    }
    char **env = calloc(n + 3, sizeof *env);
    if (env == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(envp[i], BOOTSTRAP_ENV, strlen(BOOTSTRAP_ENV)) != 0) {
            env[k++] = envp[i];
        }
    }
    if (extra != NULL) {
        env[k++] = (char *)extra;
    }
    *slot = calloc(1, strlen(BOOTSTRAP_ENV) + FD_DIGITS + 1);
    if (*slot == NULL) {
        free(env);
        return NULL;
    }
    memcpy(*slot, BOOTSTRAP_ENV, strlen(BOOTSTRAP_ENV));
    env[k] = *slot;
    return env;
}

/* Writes FD in decimal at DIGITS (FD_DIGITS bytes, then NUL).
 * Async-signal-safe. */
static void hell_put_fd(char *digits, int fd)
{
    char tmp[FD_DIGITS];
    int len = 0;
    unsigned v = (unsigned)fd;
    do {
        tmp[len++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && len < FD_DIGITS);
    for (int i = 0; i < len; i++) {
        digits[i] = tmp[len - 1 - i];
    }
    digits[len] = '\0';
}

/* The executed child, between fork and exec (async-signal-safe only):
 * standard descriptors, directory, signals, the socket's number in the
 * environment.  Reports a failure's errno on ERR_FD and exits. */
static __attribute__((noreturn)) void hell_exec_child(const char *path, char *const argv[],
                                                      const struct hell_spawn_attr *attr,
                                                      int sock, char **env, char *slot,
                                                      int err_fd)
{
    int high[3];
    /* Out of the way of 0-2 first: a descriptor given may be one of
     * them, or be where another must go. */
    int fd = fcntl(sock, F_DUPFD, 3);
    for (int i = 0; fd >= 0 && attr->stdio != NULL && i < 3; i++) {
        high[i] = fcntl(attr->stdio[i], F_DUPFD_CLOEXEC, 3);
        if (high[i] < 0) {
            fd = -1;
        }
    }
    for (int i = 0; fd >= 0 && attr->stdio != NULL && i < 3; i++) {
        if (dup2(high[i], i) < 0) {
            fd = -1;
        }
    }
    if (fd >= 0 && attr->cwd != NULL && chdir(attr->cwd) != 0) {
        fd = -1;
    }
    if (fd >= 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(SIGPIPE, &dfl, NULL);
        hell_put_fd(slot + strlen(BOOTSTRAP_ENV), fd);
        execve(path, argv, env);
    }
    int err = errno;
    (void)!write(err_fd, &err, sizeof err);
    _exit(127);
}

static pid_t hell_start(const char *path, char *const argv[], const struct hell_spawn_attr *attr,
                        mach_port_t *child_task)
{
    if (!hell_attr_valid(attr)) {
        errno = EINVAL;
        return -1;
    }
    /* A child that goes on running our code has our mappings of memory
     * objects as task_create with inherited memory gives them (fork()
     * leaves them holes); one that executes a program would drop them. */
    struct kern_vm_inherit inh = {.vm_sock = {-1, -1}};
    if (path == NULL && !kern_vm_inherit_prepare(&inh)) {
        errno = ENOMEM;
        return -1;
    }
    char *slot = NULL;
    char **env = NULL;
    int err_pipe[2] = {-1, -1};
    int sv[2];
    if (path != NULL && ((env = hell_env_make(attr->envp, NULL, &slot)) == NULL ||
                         pipe2(err_pipe, O_CLOEXEC) != 0)) {
        free(env);
        free(slot);
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        sv[0] = sv[1] = -1;
    }
    vm_movable_exec_follows(path != NULL);
    pid_t pid = sv[0] >= 0 ? fork() : -1;
    vm_movable_exec_follows(false);
    if (pid == 0) {
        if (path != NULL) {
            hell_exec_child(path, argv, attr, sv[1], env, slot, err_pipe[1]);
        }
        linux_close(sv[0]);
        /* The mappings first: the parent sends their pagers' rights
         * before the bootstrap rights. */
        if (!kern_vm_inherit_child(&inh, sv[1])) {
            fprintf(stderr, "hell: cannot map the parent's memory objects again\n");
            _exit(127);
        }
        if (kern_bootstrap_child(sv[1]) != 0) {
            fprintf(stderr, "hell: bootstrap handshake with the parent failed\n");
            _exit(127);
        }
        linux_close(sv[1]);
        return 0;
    }
    int err = errno;
    /* Our handle on the child: a failed start kills it through this, not
     * by a pid another thread's waitpid may have freed for reuse. */
    int pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    free(env);
    free(slot);
    if (sv[1] >= 0) {
        linux_close(sv[1]);
    }
    if (err_pipe[1] >= 0) {
        linux_close(err_pipe[1]);
    }
    int rc = -1;
    if (pid > 0 && !kern_vm_inherit_parent(&inh, sv[0])) {
        err = EPIPE; /* (the child, missing its pagers, fails too) */
    } else if (pid > 0) {
        rc = hell_bootstrap_parent(sv[0], attr, child_task);
        err = errno;
    }
    kern_vm_inherit_free(&inh);
    if (sv[0] >= 0) {
        linux_close(sv[0]);
    }
    if (pid > 0 && rc != 0) {
        /* The child is gone or going: say why, and reap it. */
        int child_err = 0;
        if (err_pipe[0] >= 0 && read(err_pipe[0], &child_err, sizeof child_err) ==
                                    (ssize_t)sizeof child_err) {
            err = child_err;
        }
        if (pidfd >= 0) {
            (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
            }
        }
    }
    if (pidfd >= 0) {
        linux_close(pidfd);
    }
    if (err_pipe[0] >= 0) {
        linux_close(err_pipe[0]);
    }
    if (rc != 0) {
        errno = err;
        return -1;
    }
    return pid;
}

EXPORT pid_t hell_fork(mach_port_t bootstrap, mach_port_t *child_task)
{
    struct hell_spawn_attr attr = {.bootstrap = bootstrap};
    return hell_start(NULL, NULL, &attr, child_task);
}

EXPORT pid_t hell_spawn(const char *path, char *const argv[], mach_port_t bootstrap,
                        mach_port_t *child_task)
{
    struct hell_spawn_attr attr = {.bootstrap = bootstrap};
    return hell_start(path, argv, &attr, child_task);
}

EXPORT pid_t hell_spawn_attr(const char *path, char *const argv[],
                             const struct hell_spawn_attr *attr, mach_port_t *child_task)
{
    if (path == NULL || argv == NULL || attr == NULL) {
        errno = EINVAL;
        return -1;
    }
    return hell_start(path, argv, attr, child_task);
}

EXPORT unsigned long hell_dropped_messages(void)
{
    return wire_dropped_count();
}

/* ---- the body of an empty task ---- */

/* Where hell-task is: in the bin directory beside libmach's (the build
 * tree, and an installation whose LIBDIR is PREFIX/lib), else in
 * HELL_BINDIR.  Returns a malloc'd path, or NULL when there is none. */
static char *hell_empty_task_path(void)
{
    Dl_info info;
    char *lib = NULL, *path = NULL;
    if (dladdr((void *)hell_fork, &info) != 0 && info.dli_fname != NULL) {
        lib = realpath(info.dli_fname, NULL);
    }
    char *slash = lib != NULL ? strrchr(lib, '/') : NULL;
    if (slash != NULL) {
        *slash = '\0';
        if (asprintf(&path, "%s/../bin/" EMPTY_TASK_PROGRAM, lib) < 0) {
            path = NULL;
        } else if (access(path, X_OK) != 0) {
            free(path);
            path = NULL;
        }
    }
    free(lib);
    if (path == NULL && asprintf(&path, HELL_BINDIR "/" EMPTY_TASK_PROGRAM) >= 0 &&
        access(path, X_OK) != 0) {
        free(path);
        path = NULL;
    }
    return path;
}

bool hell_empty_task_prepare(struct hell_empty_task *task)
{
    *task = (struct hell_empty_task){0};
    task->path = hell_empty_task_path();
    if (task->path == NULL) {
        fprintf(stderr, "hell[%d]: task_create: cannot find " EMPTY_TASK_PROGRAM "\n",
                (int)getpid());
        return false;
    }
    /* (Our own start-up took any HELL_EMPTY_TASK out of environ.) */
    task->env = hell_env_make(NULL, EMPTY_TASK_ENV "1", &task->slot);
    if (task->env == NULL) {
        hell_empty_task_free(task);
        return false;
    }
    return true;
}

void hell_empty_task_exec(const struct hell_empty_task *task, int sock)
{
    /* Nothing of the creator's leaks into the new program but its
     * standard descriptors and the handshake's socket (dup'ed anew). */
    (void)syscall(SYS_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC);
    static const struct hell_spawn_attr defaults;
    char *argv[] = {(char *)EMPTY_TASK_PROGRAM, NULL};
    hell_exec_child(task->path, argv, &defaults, sock, task->env, task->slot, -1);
}

void hell_empty_task_free(struct hell_empty_task *task)
{
    free(task->path);
    free(task->env);
    free(task->slot);
    *task = (struct hell_empty_task){0};
}
