/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory objects served by machd: the task's side (vm_remote.h).
 *
 * The task keeps the ranges it maps objects in, so that unmapping or
 * syncing memory that maps none costs no request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc_janitor.h"
#include "ipc_space.h"
#include "ipc_wire.h"
#include "linux.h"
#include "protocol.h"
#include "vm_fault.h"
#include "vm_remote.h"

/* A range of this task that maps an object. */
struct vm_remote_range {
    uint64_t start, end;
    struct vm_remote_range *next;
};

static int vm_remote_sock = -1;          /* [V] the connection, or -1 */
static bool vm_remote_failed;            /* [V] no connection, for good */
static struct vm_remote_range *vm_remote_ranges; /* [V] */

/* Connects to machd and hands it this task's userfaultfd.  Returns
 * whether it worked. */
static bool vm_remote_connect(void)
{
    const char *path = ipc_instance_path();
    if (path == NULL) {
        vm_remote_failed = true;
        return false;
    }
    int uffd = vm_uffd_open();
    int sock = uffd < 0 ? -1 : linux_connect_own(path, 0);
    struct hell_request req = {.magic = HELL_PROTO_MAGIC, .op = HELL_OP_VM,
                               .flags = (uint32_t)vm_pager_timeout_ms()};
    struct iovec iov = {.iov_base = &req, .iov_len = sizeof req};
    bool ok = sock >= 0 && wire_sendmsg(sock, &iov, 1, &uffd, 1, 0) == (int)sizeof req;
    int err = errno;
    linux_close(uffd); /* machd has its own */
    if (!ok) {
        linux_close(sock);
        fprintf(stderr, "hell[%d]: memory objects served by the task itself, not machd: %s\n",
                (int)getpid(), strerror(err));
        vm_remote_failed = true;
        return false;
    }
    vm_remote_sock = sock;
    vm_fault_set_active();
    return true;
}

bool vm_remote_active(void)
{
    return vm_remote_sock >= 0 || (!vm_remote_failed && vm_remote_connect());
}

/* Sends REQ, then, with PAGER valid, a copy of that kernel-space send
 * right, and receives the reply: its handle into *HANDLE, a memfd into
 * *MEMFD when not NULL (-1 when none came).  Returns the reply's code,
 * or KERN_RESOURCE_SHORTAGE when the connection failed (machd is gone:
 * the instance is ending). */
static kern_return_t vm_remote_call(struct hell_vm_request *req, mach_port_name_t pager,
                                    uint64_t *handle, int *memfd)
{
    if (memfd != NULL) {
        *memfd = -1;
    }
    if (vm_remote_sock < 0) {
        return KERN_RESOURCE_SHORTAGE;
    }
    req->magic = HELL_PROTO_MAGIC;
    struct iovec iov = {.iov_base = req, .iov_len = sizeof *req};
    bool ok = wire_sendmsg(vm_remote_sock, &iov, 1, NULL, 0, 0) == (int)sizeof *req;
    if (ok && MACH_PORT_VALID(pager)) {
        struct kright right;
        ipc_lock();
        ok = ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], pager, MACH_MSG_TYPE_COPY_SEND, false,
                              &right) == KERN_SUCCESS;
        if (ok && wire_send_bootstrap(vm_remote_sock, &right, 1) != MACH_MSG_SUCCESS) {
            kright_destroy(&right);
            ok = false;
        }
        ipc_unlock();
    }
    struct hell_vm_reply reply;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    ssize_t n = -1;
    struct msghdr msg = {0};
    while (ok) {
        iov = (struct iovec){.iov_base = &reply, .iov_len = sizeof reply};
        msg = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                              .msg_controllen = sizeof control.buf};
        n = recvmsg(vm_remote_sock, &msg, MSG_CMSG_CLOEXEC);
        if (n >= 0 || errno != EINTR) {
            break;
        }
    }
    int fd = -1;
    struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
    }
    if (n != (ssize_t)sizeof reply || reply.magic != HELL_PROTO_MAGIC ||
        (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        linux_close(fd);
        fprintf(stderr, "hell[%d]: lost machd's memory object service\n", (int)getpid());
        linux_close(vm_remote_sock);
        vm_remote_sock = -1;
        return KERN_RESOURCE_SHORTAGE;
    }
    if (memfd != NULL) {
        *memfd = fd;
    } else {
        linux_close(fd);
    }
    if (handle != NULL) {
        *handle = reply.handle;
    }
    return reply.kr;
}

kern_return_t vm_remote_enter(mach_port_name_t pager, uint64_t end, uint64_t *handle,
                              int *memfd)
{
    struct hell_vm_request req = {.op = HELL_VM_ENTER, .end = end};
    kern_return_t kr = vm_remote_call(&req, pager, handle, memfd);
    if (kr == KERN_SUCCESS && *memfd < 0) {
        vm_remote_release(*handle);
        kr = KERN_RESOURCE_SHORTAGE;
    } else if (kr != KERN_SUCCESS) {
        linux_close(*memfd);
    }
    return kr;
}

kern_return_t vm_remote_add(uint64_t handle, uint64_t start, uint64_t end, uint64_t offset)
{
    struct vm_remote_range *range = malloc(sizeof *range);
    if (range == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    struct hell_vm_request req = {.op = HELL_VM_ADD, .handle = handle, .start = start,
                                  .end = end, .offset = offset};
    kern_return_t kr = vm_remote_call(&req, MACH_PORT_NULL, NULL, NULL);
    if (kr != KERN_SUCCESS) {
        free(range);
        return kr;
    }
    *range = (struct vm_remote_range){.start = start, .end = end, .next = vm_remote_ranges};
    vm_remote_ranges = range;
    return KERN_SUCCESS;
}

void vm_remote_release(uint64_t handle)
{
    struct hell_vm_request req = {.op = HELL_VM_RELEASE, .handle = handle};
    (void)vm_remote_call(&req, MACH_PORT_NULL, NULL, NULL);
}

kern_return_t vm_remote_copy(uint64_t handle, uint64_t offset, uint64_t size, int *memfd)
{
    struct hell_vm_request req = {.op = HELL_VM_COPY, .handle = handle, .offset = offset,
                                  .end = size};
    kern_return_t kr = vm_remote_call(&req, MACH_PORT_NULL, NULL, memfd);
    if (kr == KERN_SUCCESS && *memfd < 0) {
        kr = KERN_RESOURCE_SHORTAGE;
    } else if (kr != KERN_SUCCESS) {
        linux_close(*memfd);
    }
    return kr;
}

/* Whether [START, END) meets a range mapping an object. */
static bool vm_remote_maps(uint64_t start, uint64_t end)
{
    for (struct vm_remote_range *r = vm_remote_ranges; r != NULL; r = r->next) {
        if (r->start < end && start < r->end) {
            return true;
        }
    }
    return false;
}

void vm_remote_unmap(uint64_t start, uint64_t end)
{
    if (!vm_remote_maps(start, end)) {
        return;
    }
    for (struct vm_remote_range **link = &vm_remote_ranges; *link != NULL;) {
        struct vm_remote_range *r = *link;
        if (r->end <= start || r->start >= end) {
            link = &r->next;
        } else if (r->start < start && r->end > end) {
            /* A hole in the middle: the tail is a range of its own (when
             * memory is short, machd's word is enough: it stays whole). */
            struct vm_remote_range *tail = malloc(sizeof *tail);
            if (tail != NULL) {
                *tail = (struct vm_remote_range){.start = end, .end = r->end, .next = r->next};
                r->end = start;
                r->next = tail;
            }
            link = &r->next;
        } else if (r->start < start) {
            r->end = start;
            link = &r->next;
        } else if (r->end > end) {
            r->start = end;
            link = &r->next;
        } else {
            *link = r->next;
            free(r);
        }
    }
    struct hell_vm_request req = {.op = HELL_VM_UNMAP, .start = start, .end = end};
    (void)vm_remote_call(&req, MACH_PORT_NULL, NULL, NULL);
}

bool vm_remote_sync(uint64_t start, uint64_t end, bool invalidate)
{
    if (!vm_remote_maps(start, end)) {
        return false;
    }
    struct hell_vm_request req = {.op = HELL_VM_SYNC, .start = start, .end = end,
                                  .flags = invalidate ? HELL_VM_INVALIDATE : 0};
    return vm_remote_call(&req, MACH_PORT_NULL, NULL, NULL) == KERN_SUCCESS;
}

void vm_remote_fork_child(void)
{
    linux_close(vm_remote_sock);
    vm_remote_sock = -1;
    vm_remote_failed = false;
    while (vm_remote_ranges != NULL) {
        struct vm_remote_range *next = vm_remote_ranges->next;
        free(vm_remote_ranges);
        vm_remote_ranges = next;
    }
}
