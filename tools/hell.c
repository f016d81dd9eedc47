/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hell: starts and stops HELL instances, and runs Mach programs as tasks
 * in them.  It talks to an instance's machd over its control socket
 * (machd/protocol.h); it is not itself a task.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol.h"

extern char **environ;

static void hell_usage(FILE *out)
{
    fprintf(out,
            "Usage: hell start NAME [--disk DEV=PATH]... [--disk-ro DEV=PATH]...\n"
            "       hell run NAME [--priv] [--] PROGRAM [ARG]...\n"
            "       hell stop NAME\n"
            "       hell status NAME\n"
            "\n"
            "HELL runs GNU Mach programs (linked against libmach) as tasks on Linux.\n"
            "An instance is a kernel process (machd) and the tasks it runs; instances\n"
            "are independent of each other.\n"
            "\n"
            "  start    start instance NAME; its console is this terminal (standard\n"
            "           input and output); --disk serves a file or block device as\n"
            "           disk DEV of the device master port, --disk-ro read-only\n"
            "  run      run PROGRAM as a task of NAME with this command's standard\n"
            "           input, output and error, its directory and environment, and\n"
            "           exit with its status (128+N when killed by signal N);\n"
            "           --priv gives the task the privileged host port and the\n"
            "           device master port, under the names that replace\n"
            "           ${host-port} and ${device-port} in its arguments\n"
            "  stop     end every task of NAME, then the instance\n"
            "  status   exit 0 if NAME is running (and print machd's pid)\n"
            "\n"
            "Sockets live in $HELL_RUNTIME_DIR, else $XDG_RUNTIME_DIR/hell, else\n"
            "/tmp/hell-UID.  machd is looked for in $HELL_MACHD, else next to hell.\n");
}

/* Connects to instance NAME.  Returns the socket, or -1 with a message
 * unless QUIET. */
static int hell_connect(const char *name, bool quiet)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (hell_socket_path(name, addr.sun_path, sizeof addr.sun_path) != 0) {
        fprintf(stderr, "hell: bad instance name '%s'\n", name);
        return -1;
    }
    if (hell_socket_dir_check() != 0 && errno == EACCES) {
        fprintf(stderr, "hell: the directory of %s is not private to this user\n",
                addr.sun_path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        if (hell_peer_is_us(fd)) {
            return fd;
        }
        fprintf(stderr, "hell: %s belongs to another user\n", addr.sun_path);
        close(fd);
        return -1;
    }
    if (!quiet) {
        fprintf(stderr, "hell: instance %s is not running\n", name);
    }
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

/* Sends HDR and STRINGS (LEN bytes) with descriptors FDS (NFDS). */
static int hell_send(int fd, struct hell_request *hdr, const char *strings, size_t len,
                     const int *fds, unsigned nfds)
{
    hdr->magic = HELL_PROTO_MAGIC;
    hdr->strings_len = (uint32_t)len;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(3 * sizeof(int))];
    } control;
    struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof *hdr},
                           {.iov_base = (void *)strings, .iov_len = len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    if (nfds > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    return sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)(sizeof *hdr + len) ? 0 : -1;
}

/* Receives one reply.  Returns 0, or -1 when the connection ended. */
static int hell_recv(int fd, struct hell_reply *r)
{
    ssize_t len;
    do {
        len = recv(fd, r, sizeof *r, 0);
    } while (len < 0 && errno == EINTR);
    return len == (ssize_t)sizeof *r && r->magic == HELL_PROTO_MAGIC ? 0 : -1;
}

/* The directory holding this program. */
static void hell_self_dir(char *buf, size_t size)
{
    ssize_t len = readlink("/proc/self/exe", buf, size - 1);
    buf[len > 0 ? len : 0] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
}

static int hell_start(const char *name, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--disk") != 0 && strcmp(argv[i], "--disk-ro") != 0) ||
            i + 1 == argc) {
            hell_usage(stderr);
            return 2;
        }
        i++;
    }
    int fd = hell_connect(name, true);
    if (fd >= 0) {
        close(fd);
        fprintf(stderr, "hell: instance %s is already running\n", name);
        return 1;
    }
    /* Started from a task of another instance, the new one would still be
     * below that one's machd (its subreaper) and end with it; at least it
     * lists its rights with no one. */
    unsetenv(HELL_INSTANCE_ENV);
    char machd[PATH_MAX];
    const char *env = getenv("HELL_MACHD");
    if (env != NULL && env[0] != '\0') {
        snprintf(machd, sizeof machd, "%s", env);
    } else {
        char dir[PATH_MAX - 16];
        hell_self_dir(dir, sizeof dir);
        snprintf(machd, sizeof machd, "%s/machd", dir);
    }
    int ready[2];
    if (pipe(ready) != 0) {
        perror("hell: pipe");
        return 1;
    }
    char ready_arg[16];
    snprintf(ready_arg, sizeof ready_arg, "%d", ready[1]);
    char **args = calloc((size_t)argc + 5, sizeof *args);
    if (args == NULL) {
        perror("hell");
        return 1;
    }
    int n = 0;
    args[n++] = machd;
    args[n++] = "--ready-fd";
    args[n++] = ready_arg;
    for (int i = 0; i < argc; i++) {
        args[n++] = argv[i];
    }
    args[n++] = (char *)name;
    pid_t pid = fork();
    if (pid == 0) {
        /* Its own session: the instance outlives this terminal's job
         * control; the terminal stays its console. */
        close(ready[0]);
        setsid();
        execv(machd, args);
        fprintf(stderr, "hell: cannot execute %s: %s\n", machd, strerror(errno));
        _exit(127);
    }
    free(args);
    close(ready[1]);
    if (pid < 0) {
        perror("hell: fork");
        return 1;
    }
    char byte;
    ssize_t got;
    do {
        got = read(ready[0], &byte, 1);
    } while (got < 0 && errno == EINTR);
    close(ready[0]);
    if (got == 1) {
        return 0; /* machd goes on; init reaps it when it ends */
    }
    int status;
    waitpid(pid, &status, 0);
    fprintf(stderr, "hell: instance %s did not start\n", name);
    return 1;
}

/* PROG as execve needs it: a name without '/' is looked up in $PATH. */
static char *hell_resolve(const char *prog)
{
    if (strchr(prog, '/') != NULL) {
        return strdup(prog);
    }
    const char *path = getenv("PATH");
    if (path == NULL) {
        path = "/usr/local/bin:/usr/bin:/bin";
    }
    while (*path != '\0') {
        size_t len = strcspn(path, ":");
        char *cand;
        if (asprintf(&cand, "%.*s/%s", (int)(len ? len : 1), len ? path : ".", prog) < 0) {
            return NULL;
        }
        if (access(cand, X_OK) == 0) {
            return cand;
        }
        free(cand);
        path += len + (path[len] == ':');
    }
    return strdup(prog); /* machd reports that it cannot be executed */
}

/* Appends S and its NUL to the request strings.  Returns false when the
 * request would be too large. */
static bool hell_put(char *buf, size_t *len, const char *s)
{
    size_t n = strlen(s) + 1;
    if (*len + n > HELL_PROTO_MAX - sizeof(struct hell_request)) {
        return false;
    }
    memcpy(buf + *len, s, n);
    *len += n;
    return true;
}

static int hell_run(const char *name, int argc, char **argv)
{
    uint32_t flags = 0;
    int i = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--priv") == 0) {
            flags |= HELL_RUN_PRIV;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            hell_usage(stderr);
            return 2;
        }
    }
    if (i == argc) {
        hell_usage(stderr);
        return 2;
    }
    char *strings = malloc(HELL_PROTO_MAX);
    char *prog = hell_resolve(argv[i]);
    char cwd[PATH_MAX];
    if (strings == NULL || prog == NULL || getcwd(cwd, sizeof cwd) == NULL) {
        perror("hell");
        return 1;
    }
    size_t len = 0;
    bool fits = hell_put(strings, &len, cwd) && hell_put(strings, &len, prog);
    for (int k = i + 1; fits && k < argc; k++) {
        fits = hell_put(strings, &len, argv[k]);
    }
    uint32_t envc = 0;
    for (char **e = environ; fits && *e != NULL; e++, envc++) {
        fits = hell_put(strings, &len, *e);
    }
    if (!fits) {
        fprintf(stderr, "hell: argument list too long\n");
        return 1;
    }
    int fd = hell_connect(name, false);
    if (fd < 0) {
        return 1;
    }
    struct hell_request req = {.op = HELL_OP_RUN, .flags = flags,
                               .argc = (uint32_t)(argc - i), .envc = envc};
    int stdio[3] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO};
    struct hell_reply r;
    if (hell_send(fd, &req, strings, len, stdio, 3) != 0 || hell_recv(fd, &r) != 0) {
        fprintf(stderr, "hell: instance %s did not answer\n", name);
        return 1;
    }
    if (r.kind == HELL_REPLY_ERROR) {
        fprintf(stderr, "hell: cannot run %s: %s\n", prog, strerror(r.value));
        return 127;
    }
    if (hell_recv(fd, &r) != 0 || r.kind != HELL_REPLY_EXITED) {
        fprintf(stderr, "hell: instance %s ended before the task\n", name);
        return 128 + SIGKILL;
    }
    if (WIFEXITED(r.value)) {
        return WEXITSTATUS(r.value);
    }
    return 128 + (WIFSIGNALED(r.value) ? WTERMSIG(r.value) : 0);
}

/* Sends OP alone to NAME and waits for its reply (or for machd to end the
 * connection, as STOP does).  Returns the reply kind, or -1. */
static int hell_simple(const char *name, enum hell_op op, struct hell_reply *r, bool quiet)
{
    int fd = hell_connect(name, quiet);
    if (fd < 0) {
        return -1;
    }
    struct hell_request req = {.op = op};
    int kind = -1;
    if (hell_send(fd, &req, NULL, 0, NULL, 0) == 0 && hell_recv(fd, r) == 0) {
        kind = (int)r->kind;
    }
    close(fd);
    return kind;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        hell_usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("hell (HELL) %s\n", HELL_VERSION);
        return 0;
    }
    if (argc < 3) {
        hell_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1], *name = argv[2];
    struct hell_reply r;
    if (strcmp(cmd, "start") == 0) {
        return hell_start(name, argc - 3, argv + 3);
    } else if (strcmp(cmd, "run") == 0) {
        return hell_run(name, argc - 3, argv + 3);
    } else if (strcmp(cmd, "stop") == 0 && argc == 3) {
        if (hell_simple(name, HELL_OP_STOP, &r, false) != HELL_REPLY_STOPPED) {
            return 1;
        }
        return 0;
    } else if (strcmp(cmd, "status") == 0 && argc == 3) {
        if (hell_simple(name, HELL_OP_PING, &r, false) != HELL_REPLY_STARTED) {
            return 1;
        }
        printf("instance %s: machd pid %d\n", name, r.value);
        return 0;
    }
    hell_usage(stderr);
    return 2;
}
