/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The default processor set and the tasks in it (mach_host.defs), and the
 * new-task notification (gnumach.defs, task_notify.defs).
 *
 * GNU Mach in its default configuration (without MACH_HOST) has one
 * processor set: its name port is what every task sees, its control port
 * what the privileged host port gives (host_processor_set_priv), and
 * processor_set_tasks lists every task, the kernel's first.  Here the
 * kernel is the process that serves the privileged host port: machd for
 * the tasks of an instance, the process itself outside one.  It lists the
 * tasks created by the tasks it serves: a task that makes another
 * (task_create, hell_fork, hell_spawn) hands machd a send right to the
 * new task's port on a connection of its own (HELL_OP_TASKS), and waits
 * until it is listed, so that the new task is in the set when the call
 * returns.  A task leaves the list when its port dies (a dead-name request
 * of the kernel space).  A process made by a plain fork() is a task of its
 * own that no one created through Mach: it is in no list.
 *
 * Nothing checks that a port a task registers is a task's: the tasks of
 * an instance run as one Linux user, and each could already ptrace the
 * others.
 *
 * Without MACH_HOST, GNU Mach refuses to make sets or to move tasks and
 * threads between them (KERN_FAILURE); the set's policies and maximum
 * priority are recorded and reported, and thread_policy honours the
 * policies.
 */
#include <errno.h>
#include <mach/mig_errors.h>
#include <mach/notify.h>
#include <mach/policy.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ipc_janitor.h"
#include "ipc_msg.h"
#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "kern_notify.h"
#include "kern_thread.h"
#include "linux.h"
#include "mach.server.h"
#include "mach_host.server.h"
#include "gnumach.server.h"
#include "msg_destroy.h"
#include "protocol.h"

#define KERN_BASEPRI_SYSTEM 6        /* GNU Mach's default set's maximum priority */
#define KERN_MACH_NOTIFY_NEW_TASK 4400 /* task_notify.defs */
#define KERN_TASK_THREADS_ID 2011      /* mach.defs' task_threads */
/* How long processor_set_threads waits for all the tasks' answers. */
#define KERN_PSET_THREADS_TIMEOUT_MS 5000

/* [G] The set's ports (kernel space), made together on first use. */
static mach_port_name_t kern_pset_name_kname;
static mach_port_name_t kern_pset_control_kname;
static int kern_pset_policies_now = POLICY_TIMESHARE;          /* [G] */
static int kern_pset_max_priority_now = KERN_BASEPRI_SYSTEM;   /* [G] */

/* [G] The tasks created, as kernel-space send rights, in creation order
 * (this task, the kernel's, is not among them: it comes first). */
static mach_port_name_t *kern_pset_tasks;
/* [G] In step with kern_pset_tasks: the process of each (0 when Linux
 * did not say), which never changes. */
static pid_t *kern_pset_pids;
static size_t kern_pset_ntasks, kern_pset_tasks_cap;
/* [G] The kernel object on which their dead-name notifications come. */
static mach_port_name_t kern_pset_notify_kname;
/* [G] register_new_task_notification's port (kernel space), or 0. */
static mach_port_name_t kern_new_task_kname;

/* [T] This task's connection to machd (a task of an instance), and the
 * set's name port machd gave it. */
static pthread_mutex_t kern_tasks_lock = PTHREAD_MUTEX_INITIALIZER;
static int kern_tasks_sock = -1;
static bool kern_tasks_failed;
static mach_port_name_t kern_pset_remote_name;

/* Makes the set's ports if they are not yet.  Returns false when out of
 * descriptors.  Expects [G]. */
static bool kern_pset_make(void)
{
    struct ipc_port *port;
    if (kern_pset_name_kname == MACH_PORT_NULL &&
        kern_object_create(IKOT_PSET_NAME, &port, &kern_pset_name_kname) != KERN_SUCCESS) {
        kern_pset_name_kname = MACH_PORT_NULL;
    }
    if (kern_pset_control_kname == MACH_PORT_NULL &&
        kern_object_create(IKOT_PSET, &port, &kern_pset_control_kname) != KERN_SUCCESS) {
        kern_pset_control_kname = MACH_PORT_NULL;
    }
    return kern_pset_name_kname != MACH_PORT_NULL && kern_pset_control_kname != MACH_PORT_NULL;
}

bool kern_pset_is(mach_port_t kname, bool control_only)
{
    return MACH_PORT_VALID(kname) &&
           (kern_object_is(kname, IKOT_PSET) ||
            (!control_only && kern_object_is(kname, IKOT_PSET_NAME)));
}

/* Whether KNAME, a kernel-space name, is still a send right (a task that
 * died is a dead name).  Expects [G]. */
static bool kern_pset_task_live(mach_port_name_t kname)
{
    mach_port_type_t type = 0;
    return ipc_right_type(&ipc_spaces[SPACE_KERNEL], kname, &type) == KERN_SUCCESS &&
           (type & MACH_PORT_TYPE_SEND);
}

size_t kern_pset_task_count(void)
{
    size_t n = 1; /* this one */
    for (size_t i = 0; i < kern_pset_ntasks; i++) {
        n += kern_pset_task_live(kern_pset_tasks[i]);
    }
    return n;
}

/* The process that receives on KNAME, a kernel-space send right to a
 * task's port: the one that made the port's socket pair, as Linux
 * recorded it (a task makes its own port, and its receive right never
 * moves).  0 when there is none.  Expects [G]. */
static pid_t kern_pset_task_pid(mach_port_name_t kname)
{
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_KERNEL], kname);
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (entry == NULL || !(entry->type & MACH_PORT_TYPE_SEND) || entry->port == NULL ||
        getsockopt(entry->port->send_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return 0;
    }
    return cred.pid;
}

size_t kern_pset_thread_count(void)
{
    ipc_lock();
    size_t n = 0;
    pid_t *pids = malloc((kern_pset_ntasks + 1) * sizeof *pids);
    for (size_t i = 0; pids != NULL && i < kern_pset_ntasks; i++) {
        if (kern_pset_pids[i] > 0 && kern_pset_task_live(kern_pset_tasks[i])) {
            pids[n++] = kern_pset_pids[i];
        }
    }
    ipc_unlock();
    /* Outside [G]: /proc, never the tasks, answers. */
    size_t total = kern_thread_count();
    for (size_t i = 0; i < n; i++) {
        long threads = linux_mach_threads_of(pids[i]);
        total += threads > 0 ? (size_t)threads : 0; /* (one that just ended: none) */
    }
    free(pids);
    return total;
}

void kern_pset_sched(int *policies, int *max_priority)
{
    *policies = kern_pset_policies_now;
    *max_priority = kern_pset_max_priority_now;
}

void kern_pset_fork_child(void)
{
    /* (The parent's rights went with its name space.) */
    kern_pset_name_kname = kern_pset_control_kname = MACH_PORT_NULL;
    kern_pset_policies_now = POLICY_TIMESHARE;
    kern_pset_max_priority_now = KERN_BASEPRI_SYSTEM;
    free(kern_pset_tasks);
    kern_pset_tasks = NULL;
    free(kern_pset_pids);
    kern_pset_pids = NULL;
    kern_pset_ntasks = kern_pset_tasks_cap = 0;
    kern_pset_notify_kname = kern_new_task_kname = MACH_PORT_NULL;
    pthread_mutex_init(&kern_tasks_lock, NULL);
    kern_tasks_sock = -1; /* close-on-exec, and closed with the others */
    kern_tasks_failed = false;
    kern_pset_remote_name = MACH_PORT_NULL;
}

/* ---- the connection to machd ---- */

/* Connects to machd.  Returns whether there is a connection: not
 * outside an instance, nor in a kernel process (machd itself, nested in
 * another instance or not).  Expects [T]. */
static bool kern_tasks_connect(void)
{
    if (kern_tasks_sock >= 0) {
        return true;
    }
    const char *path = ipc_instance_path();
    if (path == NULL || kern_tasks_failed || kern_host_priv_made()) {
        return false;
    }
    int sock = linux_connect_own(path, 0);
    struct hell_request req = {.magic = HELL_PROTO_MAGIC, .op = HELL_OP_TASKS};
    if (sock < 0 || send(sock, &req, sizeof req, MSG_NOSIGNAL) != (ssize_t)sizeof req) {
        fprintf(stderr, "hell[%d]: tasks not listed with the instance: %s\n", (int)getpid(),
                strerror(errno));
        linux_close(sock);
        kern_tasks_failed = true;
        return false;
    }
    kern_tasks_sock = sock;
    return true;
}

/* Sends request OP with the rights RIGHTS[0..N) (consumed) and reads the
 * reply into *REPLY.  Returns false when the connection failed (it is
 * then closed for good).  Expects [T]. */
static bool kern_tasks_call(uint32_t op, struct kright *rights, unsigned n,
                            struct hell_tasks_reply *reply)
{
    struct hell_tasks_request req = {.magic = HELL_PROTO_MAGIC, .op = op};
    ssize_t sent;
    while ((sent = send(kern_tasks_sock, &req, sizeof req, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    bool ok = sent == (ssize_t)sizeof req;
    if (n > 0) {
        ipc_lock();
        if (!ok || wire_send_bootstrap(kern_tasks_sock, rights, n) != MACH_MSG_SUCCESS) {
            ok = false;
            for (unsigned i = 0; i < n; i++) {
                kright_destroy(&rights[i]);
            }
        }
        ipc_unlock();
    }
    ssize_t got = -1;
    while (ok && (got = recv(kern_tasks_sock, reply, sizeof *reply, 0)) < 0 && errno == EINTR) {
    }
    ok = ok && got == (ssize_t)sizeof *reply && reply->magic == HELL_PROTO_MAGIC;
    if (!ok) {
        fprintf(stderr, "hell[%d]: lost machd's list of tasks\n", (int)getpid());
        linux_close(kern_tasks_sock);
        kern_tasks_sock = -1;
        kern_tasks_failed = true;
    }
    return ok;
}

/* ---- the list ---- */

/* Sends the new-task notification of CHILD, whose parent is PARENT (both
 * kernel-space send rights, not consumed), if one is registered: never
 * blocking, past the queue limit (GNU Mach's mach_msg_send_from_kernel).
 * Expects no lock. */
static void kern_pset_notify_new_task(mach_port_name_t child, mach_port_name_t parent)
{
    ipc_lock();
    mach_port_name_t notify = kern_new_task_kname;
    bool held = MACH_PORT_VALID(notify) &&
                ipc_right_delta(&ipc_spaces[SPACE_KERNEL], notify, MACH_PORT_RIGHT_SEND, 1) ==
                    KERN_SUCCESS;
    ipc_unlock();
    if (!held) {
        return;
    }
    struct {
        mach_msg_header_t head;
        mach_msg_type_t task_type;
        mach_port_name_inlined_t task;
        mach_msg_type_t parent_type;
        mach_port_name_inlined_t parent;
    } msg = {
        .head = {.msgh_bits = MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND, 0),
                 .msgh_size = sizeof msg,
                 .msgh_remote_port = notify,
                 .msgh_id = KERN_MACH_NOTIFY_NEW_TASK},
        .task_type = {.msgt_name = MACH_MSG_TYPE_COPY_SEND, .msgt_size = 64, .msgt_number = 1,
                      .msgt_inline = TRUE},
        .task = {.name = child},
        .parent_type = {.msgt_name = MACH_MSG_TYPE_COPY_SEND, .msgt_size = 64,
                        .msgt_number = 1, .msgt_inline = TRUE},
        .parent = {.name = parent},
    };
    if (ipc_mach_msg(SPACE_KERNEL, &msg.head,
                     MACH_SEND_MSG | MACH_SEND_ALWAYS | MACH_SEND_TIMEOUT, sizeof msg, 0,
                     MACH_PORT_NULL, 0) != MACH_MSG_SUCCESS) {
        kern_release_right(notify); /* (a dead name) */
    }
}

/* Lists CHILD, created by PARENT (kernel-space send rights, consumed).
 * Expects no lock. */
static void kern_pset_register(mach_port_name_t child, mach_port_name_t parent)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    ipc_lock();
    bool listed = false;
    for (size_t i = 0; i < kern_pset_ntasks && !listed; i++) {
        listed = kern_pset_tasks[i] == child;
    }
    if (!listed && kern_pset_ntasks == kern_pset_tasks_cap) {
        size_t cap = kern_pset_tasks_cap > 0 ? 2 * kern_pset_tasks_cap : 16;
        pid_t *pids = realloc(kern_pset_pids, cap * sizeof *pids);
        if (pids != NULL) {
            kern_pset_pids = pids; /* (larger than the list until both grew) */
            mach_port_name_t *grown = realloc(kern_pset_tasks, cap * sizeof *grown);
            if (grown != NULL) {
                kern_pset_tasks = grown;
                kern_pset_tasks_cap = cap;
            }
        }
    }
    bool added = !listed && kern_pset_ntasks < kern_pset_tasks_cap;
    if (added) {
        kern_pset_pids[kern_pset_ntasks] = kern_pset_task_pid(child);
        kern_pset_tasks[kern_pset_ntasks++] = child; /* the list's reference */
        kern_notify_watch(child, IKOT_PSET_NOTIFY, &kern_pset_notify_kname);
    }
    ipc_unlock();
    kern_pset_notify_new_task(child, parent);
    ipc_lock();
    if (!added) {
        (void)ipc_right_dealloc(kspace, child);
    }
    (void)ipc_right_dealloc(kspace, parent);
    ipc_unlock();
}

boolean_t kern_pset_notify_server(mach_msg_header_t *in, mach_msg_header_t *out)
{
    ipc_lock();
    bool ours = MACH_PORT_VALID(kern_pset_notify_kname) &&
                (mach_port_name_t)in->msgh_local_port == kern_pset_notify_kname;
    ipc_unlock();
    if (!ours) {
        return FALSE;
    }
    mig_reply_header_t *reply = (mig_reply_header_t *)out;
    reply->Head = (mach_msg_header_t){.msgh_size = sizeof *reply, .msgh_id = in->msgh_id + 100};
    reply->RetCode = MIG_NO_REPLY;
    if (in->msgh_id != MACH_NOTIFY_DEAD_NAME ||
        in->msgh_size < sizeof(mach_dead_name_notification_t)) {
        return TRUE;
    }
    mach_port_name_t name = ((mach_dead_name_notification_t *)in)->not_port;
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    ipc_lock();
    for (size_t i = 0; i < kern_pset_ntasks; i++) {
        if (kern_pset_tasks[i] == name) {
            memmove(&kern_pset_tasks[i], &kern_pset_tasks[i + 1],
                    (kern_pset_ntasks - i - 1) * sizeof *kern_pset_tasks);
            memmove(&kern_pset_pids[i], &kern_pset_pids[i + 1],
                    (kern_pset_ntasks - i - 1) * sizeof *kern_pset_pids);
            kern_pset_ntasks--;
            (void)ipc_right_dealloc(kspace, name); /* the list's reference */
            break;
        }
    }
    (void)ipc_right_dealloc(kspace, name); /* the notification's */
    ipc_unlock();
    return TRUE;
}

void kern_pset_task_created(struct kright *child)
{
    if (child->kind == KRIGHT_NONE) {
        return;
    }
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    struct kright rights[2] = {*child, {.kind = KRIGHT_NONE}};
    ipc_lock();
    if (ipc_right_copyin(kspace, kern_task_name(), MACH_MSG_TYPE_COPY_SEND, false,
                         &rights[1]) != KERN_SUCCESS) {
        rights[1] = (struct kright){.kind = KRIGHT_NONE};
    }
    ipc_unlock();
    pthread_mutex_lock(&kern_tasks_lock);
    if (rights[1].kind != KRIGHT_NONE && kern_tasks_connect()) {
        struct hell_tasks_reply reply;
        (void)kern_tasks_call(HELL_TASKS_REGISTER, rights, 2, &reply);
        pthread_mutex_unlock(&kern_tasks_lock);
        return;
    }
    pthread_mutex_unlock(&kern_tasks_lock);
    /* Only a process with a privileged host port can be asked for its
     * set's tasks: any other keeps no list (and no right to its
     * children's ports). */
    bool kernel = kern_host_priv_made();
    mach_port_name_t names[2] = {MACH_PORT_NULL, MACH_PORT_NULL};
    ipc_lock();
    for (int i = 0; i < 2; i++) {
        if (!kernel) {
            kright_destroy(&rights[i]);
        } else if (rights[i].kind != KRIGHT_NONE &&
                   ipc_right_copyout(kspace, &rights[i], &names[i]) != KERN_SUCCESS) {
            names[i] = MACH_PORT_NULL; /* (consumed either way) */
        }
    }
    ipc_unlock();
    if (MACH_PORT_VALID(names[0])) {
        kern_pset_register(names[0], names[1]);
    }
}

mach_port_name_t kern_pset_default_name(void)
{
    pthread_mutex_lock(&kern_tasks_lock);
    mach_port_name_t name = kern_pset_remote_name;
    struct hell_tasks_reply reply;
    if (name == MACH_PORT_NULL && kern_tasks_connect() &&
        kern_tasks_call(HELL_TASKS_PSET_NAME, NULL, 0, &reply) && reply.kr == KERN_SUCCESS) {
        struct kright right;
        if (wire_recv_bootstrap(kern_tasks_sock, &right, 1) == 1) {
            ipc_lock();
            if (ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], &right, &name) != KERN_SUCCESS) {
                name = MACH_PORT_NULL;
            }
            ipc_unlock();
            kern_pset_remote_name = name;
        }
    }
    pthread_mutex_unlock(&kern_tasks_lock);
    if (name != MACH_PORT_NULL) {
        return name;
    }
    /* Outside an instance, or machd is out of reach: our own. */
    ipc_lock();
    name = kern_pset_make() ? kern_pset_name_kname : MACH_PORT_NULL;
    ipc_unlock();
    return name;
}

bool kern_pset_control_check(mach_port_t pset, int *policies)
{
    ipc_lock();
    bool local = kern_pset_is(pset, true);
    *policies = kern_pset_policies_now;
    struct kright right = {.kind = KRIGHT_NONE};
    if (!local && MACH_PORT_VALID(pset) &&
        ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], pset, MACH_MSG_TYPE_COPY_SEND, false,
                         &right) != KERN_SUCCESS) {
        right = (struct kright){.kind = KRIGHT_NONE};
    }
    ipc_unlock();
    if (local || right.kind == KRIGHT_NONE) {
        return local;
    }
    pthread_mutex_lock(&kern_tasks_lock);
    struct hell_tasks_reply reply;
    bool connected = kern_tasks_connect();
    bool asked = connected && kern_tasks_call(HELL_TASKS_PSET_CHECK, &right, 1, &reply);
    pthread_mutex_unlock(&kern_tasks_lock);
    if (!connected) {
        ipc_lock();
        kright_destroy(&right); /* (no instance: this task's set is the one) */
        ipc_unlock();
    }
    if (!asked) {
        return false;
    }
    *policies = reply.policies;
    return reply.kr == KERN_SUCCESS;
}

int kern_pset_current_policies(void)
{
    int policies;
    (void)kern_pset_control_check(kern_pset_default_name(), &policies);
    return policies;
}

/* ---- machd's side of HELL_OP_TASKS ---- */

/* Answers REPLY (its magic set here), then, with RIGHT valid, sends it
 * (consumed).  Returns whether it went. */
static bool kern_tasks_answer(int conn, struct hell_tasks_reply *reply, struct kright *right)
{
    reply->magic = HELL_PROTO_MAGIC;
    bool ok = send(conn, reply, sizeof *reply, MSG_NOSIGNAL) == (ssize_t)sizeof *reply;
    if (right != NULL) {
        /* Never waiting for room under [G]: a task that does not read
         * would hold the whole kernel; it loses its connection instead. */
        ipc_lock();
        if (!ok || wire_send_bootstrap_nowait(conn, right, 1) != MACH_MSG_SUCCESS) {
            kright_destroy(right);
            ok = false;
        }
        ipc_unlock();
    }
    return ok;
}

/* Receives N rights into kernel-space NAMES.  Returns false on a
 * malformed message (nothing kept). */
static bool kern_tasks_take(int conn, mach_port_name_t *names, unsigned n)
{
    struct kright rights[2];
    int got = wire_recv_bootstrap(conn, rights, n);
    bool ok = got == (int)n;
    ipc_lock();
    for (int i = 0; i < got; i++) {
        names[i] = MACH_PORT_NULL;
        if (ok && (rights[i].kind != KRIGHT_SEND ||
                   ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], &rights[i], &names[i]) !=
                       KERN_SUCCESS)) {
            ok = false;
        }
        if (rights[i].kind != KRIGHT_NONE && names[i] == MACH_PORT_NULL) {
            kright_destroy(&rights[i]);
        }
    }
    if (!ok) {
        for (int i = 0; i < got; i++) {
            if (MACH_PORT_VALID(names[i])) {
                (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], names[i]);
            }
        }
    }
    ipc_unlock();
    return ok;
}

__attribute__((visibility("default"))) void hell_tasks_serve(int conn)
{
    /* Answers are sent under [G]: a task that does not read them (its
     * socket full) holds machd at most this long, then loses the
     * connection.  The protocol is a request, then its answer, so an
     * honest task never fills the socket. */
    struct timeval limit = {.tv_usec = 100 * 1000};
    if (setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit) != 0) {
        linux_close(conn);
        return;
    }
    struct hell_tasks_request req;
    for (;;) {
        ssize_t len = recv(conn, &req, sizeof req, 0);
        if (len < 0 && errno == EINTR) {
            continue;
        }
        if (len != (ssize_t)sizeof req || req.magic != HELL_PROTO_MAGIC) {
            break; /* hung up, or no request */
        }
        struct hell_tasks_reply reply = {.kr = KERN_SUCCESS};
        mach_port_name_t names[2];
        struct kright right = {.kind = KRIGHT_NONE};
        if (req.op == HELL_TASKS_REGISTER) {
            if (!kern_tasks_take(conn, names, 2)) {
                break;
            }
            kern_pset_register(names[0], names[1]);
        } else if (req.op == HELL_TASKS_PSET_NAME) {
            ipc_lock();
            if (!kern_pset_make() ||
                ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], kern_pset_name_kname,
                                 MACH_MSG_TYPE_COPY_SEND, false, &right) != KERN_SUCCESS) {
                right = (struct kright){.kind = KRIGHT_NONE};
                reply.kr = KERN_RESOURCE_SHORTAGE;
            }
            ipc_unlock();
        } else if (req.op == HELL_TASKS_PSET_CHECK) {
            if (!kern_tasks_take(conn, names, 1)) {
                break;
            }
            ipc_lock();
            reply.kr = kern_pset_is(names[0], true) ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
            reply.policies = kern_pset_policies_now;
            (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], names[0]);
            ipc_unlock();
        } else {
            break;
        }
        if (!kern_tasks_answer(conn, &reply, right.kind != KRIGHT_NONE ? &right : NULL)) {
            break;
        }
    }
    linux_close(conn);
}

/* ---- mach_host.defs ---- */

kern_return_t kern_processor_set_default(mach_port_t host, mach_port_t *set)
{
    bool privileged;
    if (!kern_host_port_ok(host, &privileged)) {
        return KERN_INVALID_HOST;
    }
    *set = kern_pset_default_name();
    return *set == MACH_PORT_NULL ? KERN_RESOURCE_SHORTAGE : KERN_SUCCESS;
}

kern_return_t kern_host_processor_sets(mach_port_t host, processor_set_name_array_t *sets,
                                       mach_msg_type_number_t *count)
{
    bool privileged;
    if (!kern_host_port_ok(host, &privileged)) {
        return KERN_INVALID_HOST;
    }
    mach_port_name_t name = kern_pset_default_name();
    mach_port_name_t *array;
    if (name == MACH_PORT_NULL || kern_array_alloc(1, sizeof name, (void **)&array) !=
                                      KERN_SUCCESS) {
        return KERN_RESOURCE_SHORTAGE;
    }
    array[0] = name;
    *sets = array;
    *count = 1;
    return KERN_SUCCESS;
}

kern_return_t kern_host_processor_set_priv(mach_port_t host_priv, mach_port_t set_name,
                                           mach_port_t *set)
{
    ipc_lock();
    /* One check, as GNU Mach's: a host port that is not the privileged one
     * and a port that is not the set's are both KERN_INVALID_ARGUMENT. */
    kern_return_t kr = KERN_INVALID_ARGUMENT;
    if (kern_object_is(host_priv, IKOT_HOST_PRIV) && kern_pset_is(set_name, false)) {
        *set = kern_pset_control_kname;
        kr = KERN_SUCCESS;
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_processor_set_create(mach_port_t host, mach_port_t *new_set,
                                        mach_port_t *new_name)
{
    return KERN_FAILURE; /* GNU Mach without MACH_HOST, whatever the port */
}

kern_return_t kern_processor_set_destroy(mach_port_t set)
{
    return KERN_FAILURE;
}

/* GNU Mach's valid priorities (kern_thread.c's range) and policies. */
static bool kern_pset_priority_ok(int priority)
{
    return priority >= 0 && priority < 50;
}

static bool kern_pset_policy_ok(int policy)
{
    return policy > 0 && policy <= POLICY_FIXEDPRI;
}

kern_return_t kern_processor_set_max_priority(mach_port_t set, int max_priority,
                                              boolean_t change_threads)
{
    ipc_lock();
    kern_return_t kr = KERN_INVALID_ARGUMENT;
    if (kern_pset_is(set, true) && kern_pset_priority_ok(max_priority)) {
        /* (change_threads would reach other tasks' threads, which each
         * task keeps; they are left as they are.) */
        kern_pset_max_priority_now = max_priority;
        kr = KERN_SUCCESS;
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_processor_set_policy_enable(mach_port_t set, int policy)
{
    ipc_lock();
    kern_return_t kr = KERN_INVALID_ARGUMENT;
    if (kern_pset_is(set, true) && kern_pset_policy_ok(policy)) {
        kern_pset_policies_now |= policy;
        kr = KERN_SUCCESS;
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_processor_set_policy_disable(mach_port_t set, int policy,
                                                boolean_t change_threads)
{
    ipc_lock();
    kern_return_t kr = KERN_INVALID_ARGUMENT;
    if (kern_pset_is(set, true) && policy != POLICY_TIMESHARE && kern_pset_policy_ok(policy)) {
        kern_pset_policies_now &= ~policy;
        kr = KERN_SUCCESS;
    }
    ipc_unlock();
    return kr;
}

/* The live tasks of the set, the kernel's first, as kernel-space names
 * each with a reference of the caller's, in *TASKS (malloc'd) and *N.
 * Returns KERN_INVALID_ARGUMENT when SET is not the control port.
 * Expects no lock. */
static kern_return_t kern_pset_snapshot(mach_port_t set, mach_port_name_t **tasks, size_t *n)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    ipc_lock();
    if (!kern_pset_is(set, true)) {
        ipc_unlock();
        return KERN_INVALID_ARGUMENT;
    }
    mach_port_name_t *v = malloc((kern_pset_ntasks + 1) * sizeof *v);
    size_t count = 0;
    for (size_t i = 0; v != NULL && i <= kern_pset_ntasks; i++) {
        mach_port_name_t name = i == 0 ? kern_task_name() : kern_pset_tasks[i - 1];
        if (ipc_right_delta(kspace, name, MACH_PORT_RIGHT_SEND, 1) == KERN_SUCCESS) {
            v[count++] = name; /* (a task that died is a dead name: left out) */
        }
    }
    ipc_unlock();
    if (v == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    *tasks = v;
    *n = count;
    return KERN_SUCCESS;
}

/* Releases the references of NAMES[0..N). */
static void kern_pset_release(const mach_port_name_t *names, size_t n)
{
    ipc_lock();
    for (size_t i = 0; i < n; i++) {
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], names[i]);
    }
    ipc_unlock();
}

kern_return_t kern_processor_set_tasks(mach_port_t set, task_array_t *list,
                                       mach_msg_type_number_t *count)
{
    mach_port_name_t *tasks;
    size_t n;
    kern_return_t kr = kern_pset_snapshot(set, &tasks, &n);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    mach_port_name_t *array = NULL;
    kr = kern_array_alloc(n, sizeof *array, (void **)&array);
    if (kr == KERN_SUCCESS) {
        memcpy(array, tasks, n * sizeof *array);
        for (size_t i = 0; i < n; i++) {
            kern_drop_after_reply(tasks[i]); /* the reply copies them */
        }
        *list = array;
        *count = (mach_msg_type_number_t)n;
    } else {
        kern_pset_release(tasks, n);
    }
    free(tasks);
    return kr;
}

/* Asks TASK (kernel space, another task's port) for its threads, waiting
 * at most TIMEOUT_MS; appends them (kernel-space names, each a reference
 * of the caller's) to *V.  A task that does not answer in time, or not as
 * a task, adds nothing.  Expects no lock. */
static void kern_pset_ask_threads(mach_port_name_t task, int timeout_ms, mach_port_name_t **v,
                                  size_t *n, size_t *cap)
{
    union {
        mach_msg_header_t in;
        struct {
            mach_msg_header_t head;
            mach_msg_type_t ret_code_type;
            kern_return_t ret_code;
            char pad[4];
            mach_msg_type_long_t list_type;
            mach_port_name_t *list;
        } out;
        char room[256];
    } m = {.in = {.msgh_remote_port = task, .msgh_id = KERN_TASK_THREADS_ID}};
    mach_msg_return_t mr = kern_call_timed(&m.in, sizeof m.in, sizeof m, timeout_ms);
    if (mr == MACH_MSG_SUCCESS) {
        bool ok = m.out.head.msgh_id == KERN_TASK_THREADS_ID + 100 &&
                  m.out.head.msgh_size == sizeof m.out &&
                  (m.out.head.msgh_bits & MACH_MSGH_BITS_COMPLEX) && m.out.ret_code == 0 &&
                  !m.out.list_type.msgtl_header.msgt_inline &&
                  m.out.list_type.msgtl_header.msgt_longform &&
                  m.out.list_type.msgtl_name == MACH_MSG_TYPE_PORT_SEND &&
                  m.out.list_type.msgtl_size == 8 * sizeof(mach_port_name_t);
        size_t got = ok ? m.out.list_type.msgtl_number : 0;
        if (ok && *n + got > *cap) {
            size_t want = *n + got + 16;
            mach_port_name_t *grown = realloc(*v, want * sizeof *grown);
            ok = grown != NULL;
            if (ok) {
                *v = grown;
                *cap = want;
            }
        }
        if (ok && got > 0) {
            memcpy(*v + *n, m.out.list, got * sizeof **v);
            *n += got;
            (void)munmap(m.out.list, got * sizeof **v);
        } else if (!ok) {
            msg_destroy_in(SPACE_KERNEL, &m.in, true); /* whatever it was */
        }
    }
}

kern_return_t kern_processor_set_threads(mach_port_t set, thread_array_t *list,
                                         mach_msg_type_number_t *count)
{
    ipc_lock();
    bool ok = kern_pset_is(set, true);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    /* Other tasks answer for their threads: not in the service thread. */
    if (kern_serve_elsewhere()) {
        return MIG_NO_REPLY;
    }
    mach_port_name_t *tasks;
    size_t ntasks;
    kern_return_t kr = kern_pset_snapshot(set, &tasks, &ntasks);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    /* This task's own threads first (names the task keeps: copied). */
    thread_array_t own = NULL;
    mach_msg_type_number_t nown = 0;
    kr = kern_task_threads(tasks[0], &own, &nown);
    mach_port_name_t *v = NULL;
    size_t n = 0, cap = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (size_t i = 1; kr == KERN_SUCCESS && i < ntasks; i++) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (spent >= KERN_PSET_THREADS_TIMEOUT_MS) {
            break; /* the tasks still to ask are left out */
        }
        kern_pset_ask_threads(tasks[i], (int)(KERN_PSET_THREADS_TIMEOUT_MS - spent), &v, &n,
                              &cap);
    }
    kern_pset_release(tasks, ntasks);
    free(tasks);
    mach_port_name_t *array = NULL;
    if (kr == KERN_SUCCESS) {
        kr = kern_array_alloc(nown + n, sizeof *array, (void **)&array);
    }
    if (kr == KERN_SUCCESS) {
        if (nown > 0) {
            memcpy(array, own, nown * sizeof *array);
        }
        if (n > 0) {
            memcpy(array + nown, v, n * sizeof *array);
        }
        for (size_t i = 0; i < n; i++) {
            kern_drop_after_reply(v[i]); /* the reply copies them */
        }
        *list = array;
        *count = (mach_msg_type_number_t)(nown + n);
    } else {
        kern_pset_release(v, n);
    }
    if (own != NULL) {
        (void)munmap(own, nown * sizeof *own);
    }
    free(v);
    return kr;
}

/* ---- tasks and threads in the set (mach_host.defs) ---- */

kern_return_t kern_task_assign(mach_port_t task, mach_port_t new_set, boolean_t assign_threads)
{
    return KERN_FAILURE; /* GNU Mach without MACH_HOST, whatever the ports */
}

kern_return_t kern_task_assign_default(mach_port_t task, boolean_t assign_threads)
{
    return KERN_FAILURE;
}

kern_return_t kern_task_get_assignment(mach_port_t task, mach_port_t *assigned_set)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    *assigned_set = kern_pset_default_name();
    return *assigned_set == MACH_PORT_NULL ? KERN_RESOURCE_SHORTAGE : KERN_SUCCESS;
}

kern_return_t kern_task_ras_control(mach_port_t task, vm_address_t start, vm_address_t end,
                                    int flavor)
{
    return KERN_FAILURE; /* GNU Mach without FAST_TAS, whatever the arguments */
}

/* ---- gnumach.defs ---- */

kern_return_t kern_register_new_task_notification(mach_port_t host_priv,
                                                  mach_port_t notification)
{
    if (!kern_is_host_priv(host_priv)) {
        return KERN_INVALID_HOST;
    }
    ipc_lock();
    kern_return_t kr = KERN_SUCCESS;
    if (kern_new_task_kname != MACH_PORT_NULL) {
        kr = KERN_NO_ACCESS; /* for good, as GNU Mach: there is no undoing it */
    } else if (MACH_PORT_VALID(notification)) {
        kern_new_task_kname = notification; /* the request's right, ours now */
    }
    ipc_unlock();
    return kr;
}
