/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory objects served by machd: machd's side (hell_vm_serve, hell.h;
 * the task's side is vm_remote.c).
 *
 * A connection is a task's space: its userfaultfd joins the fault
 * thread's set, and its requests map and unmap objects there.  The
 * references a task holds between HELL_VM_ENTER and HELL_VM_ADD are the
 * connection's, released when it closes, as are the task's mappings.
 * Every request is checked: a task can name only its own handles and
 * ranges, and a kernel object of machd is no pager.
 */
#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "futex_lock.h"
#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "linux.h"
#include "protocol.h"
#include "u64map.h"
#include "vm_fault.h"
#include "vm_object.h"
#include "vm_server.h"

/* The most references a task holds between HELL_VM_ENTER and the
 * request that uses them (libmach holds one at a time). */
#define VM_SERVER_HANDLES_MAX 16

/* A connection: one task's space and the references it holds. */
struct vm_client {
    int conn;
    bool child;               /* a task this process created (HELL_VM_ATTACH) */
    struct vm_space *space;   /* [V] */
    struct u64map handles;    /* [V] handle -> struct vm_object */
    uint64_t last_handle;     /* [V] */
};

/* Sends REPLY, with FD (not given away) when not negative.  A reply that
 * cannot go ends the connection: the task would wait for it forever. */
static void vm_server_reply(struct vm_client *client, kern_return_t kr, uint64_t handle, int fd)
{
    struct hell_vm_reply reply = {.magic = HELL_PROTO_MAGIC, .kr = kr, .handle = handle};
    struct iovec iov = {.iov_base = &reply, .iov_len = sizeof reply};
    if (wire_sendmsg(client->conn, &iov, 1, &fd, fd >= 0 ? 1 : 0, 0) != (int)sizeof reply) {
        (void)shutdown(client->conn, SHUT_RDWR);
    }
}

/* Whether FD is a userfaultfd, made non-blocking (the fault thread reads
 * it under [V] and must never wait there). */
static bool vm_server_uffd_ok(int fd)
{
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0) {
        return false;
    }
    target[n] = '\0';
    int flags = fcntl(fd, F_GETFL);
    return strcmp(target, "anon_inode:[userfaultfd]") == 0 && flags >= 0 &&
           fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

/* Receives the pager of HELL_VM_ENTER into machd's kernel space.
 * Returns its name, or MACH_PORT_NULL when none came or it is no pager
 * (a kernel object of machd's, a dead port). */
static mach_port_name_t vm_server_recv_pager(struct vm_client *client)
{
    struct kright right;
    if (wire_recv_bootstrap(client->conn, &right, 1) != 1) {
        return MACH_PORT_NULL;
    }
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    mach_port_name_t name = MACH_PORT_NULL;
    ipc_lock();
    if (right.kind != KRIGHT_SEND) {
        kright_destroy(&right);
    } else if (ipc_right_copyout(kspace, &right, &name) == KERN_SUCCESS &&
               MACH_PORT_VALID(name)) {
        struct ipc_entry *entry = ipc_entry_lookup(kspace, name);
        if (entry == NULL || (entry->type & (MACH_PORT_TYPE_RECEIVE | MACH_PORT_TYPE_DEAD_NAME))) {
            (void)ipc_right_dealloc(kspace, name);
            name = MACH_PORT_NULL;
        }
    } else {
        name = MACH_PORT_NULL;
    }
    ipc_unlock();
    return name;
}

/* Memory objects that are memory as it is (hell_vm_direct_object). */
#define VM_SERVER_DIRECT_MAX 4
static struct vm_server_direct {
    struct ipc_port *port; /* a reference */
    int fd;                /* read-only */
} vm_server_directs[VM_SERVER_DIRECT_MAX]; /* [G] */
static unsigned vm_server_ndirect;        /* [G] */

__attribute__((visibility("default"))) int hell_vm_direct_object(mach_port_t pager, int fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int readonly = open(path, O_RDONLY | O_CLOEXEC);
    if (readonly < 0) {
        return -1;
    }
    int err = 0;
    ipc_lock();
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_USER], pager);
    if (entry == NULL || !(entry->type & MACH_PORT_TYPE_RECEIVE)) {
        err = EINVAL;
    } else if (vm_server_ndirect == VM_SERVER_DIRECT_MAX) {
        err = ENOSPC;
    } else {
        ipc_port_ref(entry->port);
        vm_server_directs[vm_server_ndirect++] =
            (struct vm_server_direct){.port = entry->port, .fd = readonly};
    }
    ipc_unlock();
    if (err != 0) {
        linux_close(readonly);
        errno = err;
        return -1;
    }
    return 0;
}

/* The read-only descriptor of the memory of the direct object PAGER (a
 * kernel-space name), or -1 when it is no such object.  The descriptor
 * stays the table's. */
static int vm_server_direct_fd(mach_port_name_t pager)
{
    int fd = -1;
    ipc_lock();
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_KERNEL], pager);
    for (unsigned i = 0; entry != NULL && i < vm_server_ndirect && fd < 0; i++) {
        if (vm_server_directs[i].port == entry->port) {
            fd = vm_server_directs[i].fd;
        }
    }
    ipc_unlock();
    return fd;
}

static void vm_server_enter(struct vm_client *client, const struct hell_vm_request *req)
{
    mach_port_name_t pager = vm_server_recv_pager(client);
    if (!MACH_PORT_VALID(pager)) {
        vm_server_reply(client, KERN_INVALID_ARGUMENT, 0, -1);
        return;
    }
    int direct = vm_server_direct_fd(pager);
    if (direct >= 0) {
        kern_release_right(pager);
        vm_server_reply(client, KERN_SUCCESS, HELL_VM_DIRECT, direct);
        return;
    }
    vm_lock();
    struct vm_object *object = NULL;
    kern_return_t kr = client->handles.count >= VM_SERVER_HANDLES_MAX
                           ? KERN_RESOURCE_SHORTAGE
                           : vm_object_enter(pager, &object);
    if (kr != KERN_SUCCESS) {
        vm_unlock();
        kern_release_right(pager);
        vm_server_reply(client, kr, 0, -1);
        return;
    }
    /* (Read-only mappings get a writable descriptor too: Linux registers
     * with a userfaultfd only shared mappings that may be written.) */
    int fd = vm_object_memfd(object, req->end);
    uint64_t handle = ++client->last_handle;
    if (fd < 0 || !u64map_insert(&client->handles, handle, object)) {
        vm_object_release(object);
        vm_unlock();
        vm_server_reply(client, KERN_RESOURCE_SHORTAGE, 0, -1);
        return;
    }
    /* The handle's reference keeps the memfd open. */
    vm_unlock();
    vm_server_reply(client, KERN_SUCCESS, handle, fd);
}

/* Whether [START, END) is a page-aligned, non-empty range of user
 * memory. */
static bool vm_server_range_ok(uint64_t start, uint64_t end)
{
    return start < end && !((start | end) & (VM_PAGE - 1)) && end <= (UINT64_C(1) << 47);
}

static kern_return_t vm_server_add(struct vm_client *client, const struct hell_vm_request *req)
{
    if (!vm_server_range_ok(req->start, req->end) || (req->offset & (VM_PAGE - 1)) ||
        req->offset + (req->end - req->start) < req->offset) {
        return KERN_INVALID_ARGUMENT;
    }
    struct vm_object *object = u64map_lookup(&client->handles, req->handle);
    if (object == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    /* Never twice over the same memory: what was there is gone. */
    vm_space_unmap(client->space, req->start, req->end);
    kern_return_t kr = vm_mapping_add(client->space, object, req->start, req->end, req->offset);
    if (kr == KERN_SUCCESS) {
        u64map_remove(&client->handles, req->handle);
    }
    return kr;
}

static kern_return_t vm_server_copy(struct vm_client *client, const struct hell_vm_request *req,
                                    int *fd)
{
    uint64_t size = req->end;
    vm_lock();
    struct vm_object *object = u64map_lookup(&client->handles, req->handle);
    int timeout_ms = client->space->timeout_ms;
    vm_unlock();
    if (object == NULL || size == 0 || (size & (VM_PAGE - 1)) || (req->offset & (VM_PAGE - 1)) ||
        req->offset + size < req->offset || size > (UINT64_C(1) << 47)) {
        return KERN_INVALID_ARGUMENT;
    }
    /* The handle stays until this task asks again: only this thread
     * serves its requests, so OBJECT lives while it is read. */
    *fd = memfd_create("hell-object-copy", MFD_CLOEXEC);
    void *dst = MAP_FAILED;
    if (*fd >= 0 && ftruncate(*fd, (off_t)size) == 0) {
        dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    }
    if (dst == MAP_FAILED) {
        return KERN_RESOURCE_SHORTAGE;
    }
    kern_return_t kr = vm_object_read(object, req->offset, size, dst, timeout_ms);
    munmap(dst, size);
    return kr;
}

/* HELL_VM_NAME: a send right to the name port of the object CLIENT maps
 * at REQ->start, after the reply (a bootstrap message, as a pager comes
 * with HELL_VM_ENTER; an empty one when the right cannot go, which the
 * task takes for no name). */
static void vm_server_name(struct vm_client *client, const struct hell_vm_request *req)
{
    vm_lock();
    mach_port_name_t name = vm_space_object_name(client->space, req->start);
    vm_unlock();
    struct kright right;
    ipc_lock();
    bool moved = MACH_PORT_VALID(name) &&
                 ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], name, MACH_MSG_TYPE_MOVE_SEND,
                                  false, &right) == KERN_SUCCESS;
    ipc_unlock();
    if (!moved) {
        kern_release_right(name);
        vm_server_reply(client, KERN_INVALID_ADDRESS, 0, -1);
        return;
    }
    vm_server_reply(client, KERN_SUCCESS, 0, -1);
    /* Never waiting for room under [G]: a task that does not read its
     * connection would hold the whole kernel.  One that cannot take the
     * right now loses its connection (it would wait forever). */
    ipc_lock();
    if (wire_send_bootstrap_nowait(client->conn, &right, 1) != MACH_MSG_SUCCESS) {
        kright_destroy(&right);
        if (wire_send_bootstrap_nowait(client->conn, NULL, 0) != MACH_MSG_SUCCESS) {
            (void)shutdown(client->conn, SHUT_RDWR);
        }
    }
    ipc_unlock();
}

/* HELL_VM_FORK: a new connection, served from now on, for a task that
 * CLIENT, itself a task this process created, creates with inherited
 * memory.  Returns its other end (the caller's to close), or -1. */
static int vm_server_fork(struct vm_client *client)
{
    int sv[2];
    if (!client->child || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        return -1;
    }
    if (!vm_server_child_start(sv[0])) {
        linux_close(sv[1]);
        return -1;
    }
    return sv[1];
}

static void vm_server_request(struct vm_client *client, const struct hell_vm_request *req)
{
    kern_return_t kr = KERN_INVALID_ARGUMENT;
    int fd = -1;
    switch (req->op) {
    case HELL_VM_ENTER:
        vm_server_enter(client, req);
        return;
    case HELL_VM_NAME:
        vm_server_name(client, req);
        return;
    case HELL_VM_FORK:
        fd = vm_server_fork(client);
        vm_server_reply(client, fd >= 0 ? KERN_SUCCESS : KERN_RESOURCE_SHORTAGE, 0, fd);
        linux_close(fd);
        return;
    case HELL_VM_COPY:
        kr = vm_server_copy(client, req, &fd);
        vm_server_reply(client, kr, 0, kr == KERN_SUCCESS ? fd : -1);
        linux_close(fd);
        return;
    case HELL_VM_ADD:
        vm_lock();
        kr = vm_server_add(client, req);
        vm_unlock();
        break;
    case HELL_VM_RELEASE:
        vm_lock();
        struct vm_object *object = u64map_remove(&client->handles, req->handle);
        if (object != NULL) {
            vm_object_release(object);
            kr = KERN_SUCCESS;
        }
        vm_unlock();
        break;
    case HELL_VM_UNMAP:
        if (req->start < req->end) {
            vm_lock();
            vm_space_unmap(client->space, req->start, req->end);
            vm_unlock();
            kr = KERN_SUCCESS;
        }
        break;
    case HELL_VM_SYNC:
        vm_lock();
        kr = req->start < req->end && vm_space_sync(client->space, req->start, req->end,
                                                    (req->flags & HELL_VM_INVALIDATE) != 0)
                 ? KERN_SUCCESS
                 : KERN_INVALID_ARGUMENT;
        vm_unlock();
        break;
    default:
        break;
    }
    vm_server_reply(client, kr, 0, -1);
}

/* Serves the space of process PID (-1: the peer of CONN) whose
 * userfaultfd is UFFD (taken) over CONN (left open) until it hangs up. */
static void vm_server_run(int conn, int uffd, pid_t pid, unsigned timeout_ms)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    struct vm_client client = {.conn = conn, .child = pid > 0};
    if (timeout_ms == 0 || timeout_ms > 3600000) {
        timeout_ms = 30000;
    }
    if (!vm_server_uffd_ok(uffd)) {
        fprintf(stderr, "machd: a task's userfaultfd is none\n");
        errno = EBADF;
    } else if (pid > 0 || getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        vm_lock();
        client.space = vm_space_add(uffd, pid > 0 ? pid : cred.pid, (int)timeout_ms);
        vm_unlock();
    }
    if (client.space == NULL) {
        fprintf(stderr, "machd: cannot serve the faults of a task: %s\n", strerror(errno));
        linux_close(uffd);
        return;
    }
    for (;;) {
        struct hell_vm_request req;
        ssize_t n = recv(conn, &req, sizeof req, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n != (ssize_t)sizeof req || req.magic != HELL_PROTO_MAGIC) {
            break; /* the task is gone, or talks nonsense: it is let go */
        }
        vm_server_request(&client, &req);
    }
    vm_lock();
    size_t cursor = 0;
    uint64_t handle;
    void *object;
    while (u64map_next(&client.handles, &cursor, &handle, &object)) {
        vm_object_release(object);
    }
    u64map_destroy(&client.handles);
    vm_space_remove(client.space);
    vm_unlock();
}

__attribute__((visibility("default"))) void hell_vm_serve(int conn, int uffd,
                                                          unsigned timeout_ms)
{
    vm_server_run(conn, uffd, -1, timeout_ms);
    linux_close(conn);
}

/* The connections to tasks this one created and serves (a child of
 * fork() closes them: their tasks are not its). */
#define VM_SERVER_CHILDREN_MAX 256
static struct futex_lock vm_server_children_lock = FUTEX_LOCK_INIT; /* [K] */
static int vm_server_children[VM_SERVER_CHILDREN_MAX];              /* [K] */
static unsigned vm_server_nchildren;                                 /* [K] */

struct vm_server_child {
    int conn, uffd;
    pid_t pid;
    unsigned timeout_ms;
};

/* CONN is no longer served (and about to be closed).  Takes [K]. */
static void vm_server_children_remove(int conn)
{
    futex_lock_acquire(&vm_server_children_lock);
    for (unsigned i = 0; i < vm_server_nchildren; i++) {
        if (vm_server_children[i] == conn) {
            vm_server_children[i] = vm_server_children[--vm_server_nchildren];
            break;
        }
    }
    futex_lock_release(&vm_server_children_lock);
}

/* Receives HELL_VM_ATTACH on CONN into *CHILD.  Returns whether it came
 * whole, with a descriptor. */
static bool vm_server_recv_attach(int conn, struct vm_server_child *child)
{
    struct hell_vm_request req;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = &req, .iov_len = sizeof req};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    ssize_t n;
    do {
        n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    int fd = -1;
    struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
    }
    if (n != (ssize_t)sizeof req || req.magic != HELL_PROTO_MAGIC || req.op != HELL_VM_ATTACH ||
        fd < 0 || req.handle == 0 || req.handle > INT32_MAX) {
        linux_close(fd);
        return false;
    }
    *child = (struct vm_server_child){.conn = conn, .uffd = fd, .pid = (pid_t)req.handle,
                                      .timeout_ms = req.flags};
    return true;
}

/* The thread serving one connection (ARG, its descriptor): waits for
 * the HELL_VM_ATTACH, then serves the task until it hangs up. */
static void *vm_server_child_main(void *arg)
{
    int conn = (int)(intptr_t)arg;
    struct vm_server_child child;
    if (vm_server_recv_attach(conn, &child)) {
        vm_server_run(child.conn, child.uffd, child.pid, child.timeout_ms);
    }
    vm_server_children_remove(conn);
    linux_close(conn);
    return NULL;
}

bool vm_server_child_start(int conn)
{
    futex_lock_acquire(&vm_server_children_lock);
    bool room = vm_server_nchildren < VM_SERVER_CHILDREN_MAX;
    if (room) {
        vm_server_children[vm_server_nchildren++] = conn;
    }
    futex_lock_release(&vm_server_children_lock);
    if (!room || !linux_thread_start(vm_server_child_main, (void *)(intptr_t)conn)) {
        vm_server_children_remove(conn);
        linux_close(conn);
        return false;
    }
    return true;
}

void vm_server_fork_child(void)
{
    for (unsigned i = 0; i < vm_server_nchildren; i++) {
        linux_close(vm_server_children[i]);
    }
    vm_server_nchildren = 0;
    vm_server_children_lock = (struct futex_lock)FUTEX_LOCK_INIT;
}
