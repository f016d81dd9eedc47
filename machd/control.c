/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * machd's control socket (protocol.h).
 *
 * Each client gets a thread for its one request.  A task run for a client
 * is machd's child: the client's socket waits in the task table until
 * the reaper thread reaps the task and sends its wait status.  Ending the
 * instance kills the whole tree below machd (descendants.c).
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "descendants.h"
#include "janitor.h"
#include "protocol.h"

#define CONTROL_MAX_STRINGS 65536 /* arguments and environment entries */

/* A task run for a client, until it is reaped. */
struct control_task {
    pid_t pid;
    int client_fd; /* where its wait status goes; -1 once sent */
};

/* Locking key: [L] control_lock. */
static pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t control_children = PTHREAD_COND_INITIALIZER; /* [L] a task started */
static unsigned long control_started;        /* [L] tasks started so far */
/* [L] Children reaped before their task was recorded (a task can end
 * while its spawner, which holds no lock, is still finishing). */
#define CONTROL_EARLY_MAX 64
static struct {
    pid_t pid;
    int status;
    unsigned long seq;
} control_early[CONTROL_EARLY_MAX];
static unsigned long control_reaps; /* [L] children reaped so far */
static struct control_task *control_tasks;   /* [L] */
static size_t control_ntasks, control_cap;   /* [L] */
static bool control_stopping;                /* [L] no new task once set */
static int control_stop_clients[16];         /* [L] waiting for HELL_REPLY_STOPPED */
static unsigned control_nstop_clients;       /* [L] */
static char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static char control_lock_path[sizeof control_path + 8];
static mach_port_t control_host_priv, control_device_master;

static void control_reply(int fd, enum hell_reply_kind kind, int32_t value)
{
    struct hell_reply r = {.magic = HELL_PROTO_MAGIC, .kind = kind, .value = value};
    (void)send(fd, &r, sizeof r, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Sends the last reply on FD and closes it. */
static void control_answer(int fd, enum hell_reply_kind kind, int32_t value)
{
    control_reply(fd, kind, value);
    close(fd);
}

int control_listen(const char *name)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (hell_socket_path(name, addr.sun_path, sizeof addr.sun_path) != 0) {
        fprintf(stderr, "machd: bad instance name '%s'\n", name);
        return -1;
    }
    if (hell_socket_dir_make() != 0) {
        fprintf(stderr, "machd: cannot use the directory of %s: %s\n", addr.sun_path,
                strerror(errno));
        return -1;
    }
    /* Held for machd's life: two starts of one name cannot both decide
     * that the socket they find is a dead instance's. */
    snprintf(control_lock_path, sizeof control_lock_path, "%.*s.lock",
             (int)(strlen(addr.sun_path) - strlen(".sock")), addr.sun_path);
    int lock_fd = open(control_lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "machd: instance %s is already running (or starting)\n", name);
        if (lock_fd >= 0) {
            close(lock_fd);
        }
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("machd: socket");
        return -1;
    }
    /* A socket nobody listens on is left by an instance that died. */
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        fprintf(stderr, "machd: instance %s is already running\n", name);
        close(fd);
        return -1;
    }
    if (errno == ECONNREFUSED) {
        unlink(addr.sun_path);
    }
    close(fd);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 64) != 0) {
        fprintf(stderr, "machd: cannot listen on %s: %s\n", addr.sun_path,
                errno == EADDRINUSE ? "instance already running" : strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    memcpy(control_path, addr.sun_path, sizeof control_path);
    return fd;
}

void control_set_priv_ports(mach_port_t host_priv, mach_port_t device_master)
{
    control_host_priv = host_priv;
    control_device_master = device_master;
}

/* ---- the task table ---- */

/* Records PID, whose status goes to CLIENT_FD (now owned by the table).
 * Returns false when out of memory.  Expects [L]. */
static bool control_task_add(pid_t pid, int client_fd)
{
    if (control_ntasks == control_cap) {
        size_t cap = control_cap ? control_cap * 2 : 16;
        struct control_task *t = realloc(control_tasks, cap * sizeof *t);
        if (t == NULL) {
            return false;
        }
        control_tasks = t;
        control_cap = cap;
    }
    control_tasks[control_ntasks++] = (struct control_task){pid, client_fd};
    control_started++;
    pthread_cond_broadcast(&control_children);
    return true;
}

/* A child was reaped: its client, if any, learns how it ended; a child
 * not recorded (yet) is remembered a while. */
static void control_reaped(pid_t pid, int status)
{
    pthread_mutex_lock(&control_lock);
    unsigned long seq = ++control_reaps;
    bool known = false;
    for (size_t i = 0; i < control_ntasks && !known; i++) {
        if (control_tasks[i].pid == pid) {
            control_answer(control_tasks[i].client_fd, HELL_REPLY_EXITED, status);
            control_tasks[i] = control_tasks[--control_ntasks];
            known = true;
        }
    }
    if (!known) {
        unsigned slot = (unsigned)(seq % CONTROL_EARLY_MAX);
        control_early[slot].pid = pid;
        control_early[slot].status = status;
        control_early[slot].seq = seq;
    }
    pthread_mutex_unlock(&control_lock);
}

/* Whether PID was reaped after reap number SINCE, before it was
 * recorded; its wait status in *STATUS.  Expects [L]. */
static bool control_reaped_early(pid_t pid, unsigned long since, int *status)
{
    unsigned long best = 0;
    for (unsigned i = 0; i < CONTROL_EARLY_MAX; i++) {
        if (control_early[i].pid == pid && control_early[i].seq > since &&
            control_early[i].seq > best) {
            best = control_early[i].seq;
            *status = control_early[i].status;
        }
    }
    return best != 0;
}

/* Reaps every process of the instance that ends: tasks, and orphans the
 * subreaper inherits.  With no child at all it waits for the next task. */
static void *control_reaper_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&control_lock);
        unsigned long started = control_started;
        pthread_mutex_unlock(&control_lock);
        int status;
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid > 0) {
            control_reaped(pid, status);
        } else if (errno == ECHILD) {
            /* No process left in the instance (an orphan is reparented
             * before its parent can be reaped): sleep until a task starts
             * after the count read above. */
            pthread_mutex_lock(&control_lock);
            while (control_started == started) {
                pthread_cond_wait(&control_children, &control_lock);
            }
            pthread_mutex_unlock(&control_lock);
        }
    }
    return NULL;
}

/* ---- requests ---- */

/* A request as received: the header, its strings split, the descriptors. */
struct control_request {
    struct hell_request hdr;
    char *buf; /* the datagram */
    const char *cwd;
    char **argv; /* argc + 1 */
    char **envp; /* envc + 1 */
    int fds[3];
    unsigned nfds;
};

static void control_request_free(struct control_request *req)
{
    for (unsigned i = 0; i < req->nfds; i++) {
        close(req->fds[i]);
    }
    if (req->argv != NULL) {
        for (uint32_t i = 0; i < req->hdr.argc; i++) {
            free(req->argv[i]);
        }
    }
    free(req->argv);
    free(req->envp);
    free(req->buf);
}

/* Receives and checks one request on FD.  Returns NULL, or what is wrong
 * with it. */
static const char *control_request_read(int fd, struct control_request *req)
{
    *req = (struct control_request){.buf = malloc(HELL_PROTO_MAX)};
    if (req->buf == NULL) {
        return "out of memory";
    }
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(3 * sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = req->buf, .iov_len = HELL_PROTO_MAX};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    ssize_t len = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    req->nfds = hell_received_fds(&msg, req->fds, 3);
    if (len < (ssize_t)sizeof req->hdr || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        return len == 0 ? "no request" : "truncated request";
    }
    memcpy(&req->hdr, req->buf, sizeof req->hdr);
    const struct hell_request *h = &req->hdr;
    if (h->magic != HELL_PROTO_MAGIC || h->strings_len != (size_t)len - sizeof *h) {
        return "not a hell request";
    }
    if (h->op != HELL_OP_RUN) {
        return NULL;
    }
    if (h->argc == 0 || h->argc > CONTROL_MAX_STRINGS || h->envc > CONTROL_MAX_STRINGS ||
        req->nfds != 3) {
        return "malformed run request";
    }
    req->argv = calloc(h->argc + 1, sizeof *req->argv);
    req->envp = calloc(h->envc + 1, sizeof *req->envp);
    if (req->argv == NULL || req->envp == NULL) {
        return "out of memory";
    }
    /* cwd, the arguments, the environment: each ends with NUL. */
    char *p = req->buf + sizeof *h, *end = req->buf + len;
    for (uint32_t i = 0; i < 1 + h->argc + h->envc; i++) {
        char *nul = memchr(p, '\0', (size_t)(end - p));
        if (nul == NULL) {
            return "malformed run request";
        }
        if (i == 0) {
            req->cwd = p;
        } else if (i <= h->argc) {
            if ((req->argv[i - 1] = strdup(p)) == NULL) {
                return "out of memory";
            }
        } else {
            req->envp[i - 1 - h->argc] = p;
        }
        p = nul + 1;
    }
    return p == end ? NULL : "malformed run request";
}

/* Replaces every VAR in *ARG by VALUE.  Returns false when out of memory. */
static bool control_substitute(char **arg, const char *var, const char *value)
{
    char *at;
    while ((at = strstr(*arg, var)) != NULL) {
        char *s;
        if (asprintf(&s, "%.*s%s%s", (int)(at - *arg), *arg, value, at + strlen(var)) < 0) {
            return false;
        }
        free(*arg);
        *arg = s;
    }
    return true;
}

/* Runs the task REQ asks for; CLIENT_FD passes to the task table. */
static void control_run(int client_fd, struct control_request *req)
{
    struct hell_port_grant grants[2] = {
        {.right = control_host_priv, .name = HELL_HOST_PRIV_NAME},
        {.right = control_device_master, .name = HELL_DEVICE_MASTER_NAME},
    };
    bool priv = req->hdr.flags & HELL_RUN_PRIV;
    char host_name[16], device_name[16];
    snprintf(host_name, sizeof host_name, "%u", HELL_HOST_PRIV_NAME);
    snprintf(device_name, sizeof device_name, "%u", HELL_DEVICE_MASTER_NAME);
    for (uint32_t i = 0; priv && i < req->hdr.argc; i++) {
        if (!control_substitute(&req->argv[i], "${host-port}", host_name) ||
            !control_substitute(&req->argv[i], "${device-port}", device_name)) {
            control_answer(client_fd, HELL_REPLY_ERROR, ENOMEM);
            return;
        }
    }
    /* The task's environment, with the instance it belongs to (its
     * rights are listed with our janitor). */
    char instance[sizeof control_path + sizeof HELL_INSTANCE_ENV + 1];
    snprintf(instance, sizeof instance, "%s=%s", HELL_INSTANCE_ENV, control_path);
    char **envp = calloc(req->hdr.envc + 2, sizeof *envp);
    if (envp == NULL) {
        control_answer(client_fd, HELL_REPLY_ERROR, ENOMEM);
        return;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < req->hdr.envc; i++) {
        if (strncmp(req->envp[i], HELL_INSTANCE_ENV "=", strlen(HELL_INSTANCE_ENV) + 1) != 0) {
            envp[n++] = req->envp[i];
        }
    }
    envp[n] = instance;
    struct hell_spawn_attr attr = {
        .grants = priv ? grants : NULL,
        .ngrants = priv ? 2 : 0,
        .stdio = req->fds,
        .envp = envp,
        .cwd = req->cwd,
    };
    /* The spawn waits for the task's handshake: without the lock, so
     * that a program slow to answer (or never: one not linked with
     * libmach answers by exiting) holds up only its own client. */
    pthread_mutex_lock(&control_lock);
    bool stopping = control_stopping;
    unsigned long reaps_before = control_reaps;
    pthread_mutex_unlock(&control_lock);
    int err = 0, status = 0;
    pid_t pid = -1;
    if (stopping) {
        err = ESHUTDOWN;
    } else if ((pid = hell_spawn_attr(req->argv[0], req->argv, &attr, NULL)) < 0) {
        err = errno;
    }
    pthread_mutex_lock(&control_lock);
    if (err == 0 && control_reaped_early(pid, reaps_before, &status)) {
        control_reply(client_fd, HELL_REPLY_STARTED, pid);
        control_answer(client_fd, HELL_REPLY_EXITED, status);
    } else if (err == 0 && !control_task_add(pid, client_fd)) {
        kill(pid, SIGKILL); /* not reaped: the reaper reaps it */
        err = ENOMEM;
    } else if (err == 0) {
        control_reply(client_fd, HELL_REPLY_STARTED, pid);
    }
    pthread_mutex_unlock(&control_lock);
    free(envp);
    if (err != 0) {
        control_answer(client_fd, HELL_REPLY_ERROR, err);
    }
}

static void *control_client_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct control_request req;
    const char *why = control_request_read(fd, &req);
    if (why != NULL) {
        control_answer(fd, HELL_REPLY_ERROR, EINVAL);
    } else if (req.hdr.op == HELL_OP_RUN) {
        control_run(fd, &req);
    } else if (req.hdr.op == HELL_OP_JANITOR && req.nfds == 1) {
        janitor_adopt(fd, req.fds[0]); /* both taken */
        req.nfds = 0;
    } else if (req.hdr.op == HELL_OP_VM && req.nfds == 1) {
        hell_vm_serve(fd, req.fds[0], req.hdr.flags); /* both taken */
        req.nfds = 0;
    } else if (req.hdr.op == HELL_OP_TASKS && req.nfds == 0) {
        hell_tasks_serve(fd); /* taken */
    } else if (req.hdr.op == HELL_OP_PING) {
        control_answer(fd, HELL_REPLY_STARTED, getpid());
    } else if (req.hdr.op == HELL_OP_STOP) {
        pthread_mutex_lock(&control_lock);
        if (control_nstop_clients < sizeof control_stop_clients / sizeof(int)) {
            control_stop_clients[control_nstop_clients++] = fd;
            fd = -1;
        }
        pthread_mutex_unlock(&control_lock);
        if (fd >= 0) {
            close(fd); /* its connection ends with machd anyway */
        }
        control_request_free(&req);
        control_end_instance();
    } else {
        control_answer(fd, HELL_REPLY_ERROR, EINVAL);
    }
    control_request_free(&req);
    return NULL;
}


void control_serve(int listen_fd)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    if (pthread_create(&thread, &attr, control_reaper_main, NULL) != 0) {
        fprintf(stderr, "machd: cannot start the reaper thread\n");
        control_end_instance();
    }
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED) {
                /* Out of descriptors: wait for clients to go. */
                usleep(10000);
            }
            continue;
        }
        if (!hell_peer_is_us(fd) || /* (the directory is private too) */
            pthread_create(&thread, &attr, control_client_main, (void *)(intptr_t)fd) != 0) {
            close(fd);
        }
    }
}

void control_end_instance(void)
{
    pthread_mutex_lock(&control_lock);
    bool first = !control_stopping;
    control_stopping = true;
    pthread_mutex_unlock(&control_lock);
    if (!first) {
        for (;;) {
            pause(); /* the first caller ends the process */
        }
    }
    if (control_path[0] != '\0') {
        unlink(control_path);
        unlink(control_lock_path); /* still ours: we hold it */
    }
    descendants_kill_all(control_reaped);
    pthread_mutex_lock(&control_lock);
    for (unsigned i = 0; i < control_nstop_clients; i++) {
        control_reply(control_stop_clients[i], HELL_REPLY_STOPPED, 0);
    }
    fflush(NULL);
    _exit(0);
}
