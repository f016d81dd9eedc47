/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory objects served by machd: the task's side (vm_remote.h).
 *
 * The task keeps the ranges it maps objects in, so that unmapping,
 * syncing or naming (vm_region) memory that maps none costs no request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "futex_lock.h"
#include "ipc_janitor.h"
#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "linux.h"
#include "protocol.h"
#include "vm_fault.h"
#include "vm_object.h"
#include "vm_remote.h"

/* A range of this task that maps an object: PAGER (a kernel-space send
 * right the range holds a reference to) at OFFSET, kept so that a task
 * this one creates with inherited memory maps it too. */
struct vm_remote_range {
    uint64_t start, end;
    uint64_t offset;
    mach_port_name_t pager;
    struct vm_remote_range *next;
};

/* Frees RANGE, releasing its reference to its pager.  Expects [C]. */
static void vm_remote_range_free(struct vm_remote_range *range)
{
    kern_release_right(range->pager);
    free(range);
}

static struct futex_lock vm_remote_lock = FUTEX_LOCK_INIT; /* [C] */
static int vm_remote_sock = -1;          /* [C] the connection, or -1 */
static bool vm_remote_failed;            /* [C] no connection, for good */
static bool vm_remote_by_creator;        /* [C] served by our creator, not machd */
static struct vm_remote_range *vm_remote_ranges; /* [C] */

/* The connection is lost (machd is gone, or it hung up on a message it
 * could not make sense of): the mappings it served are no longer served,
 * so they become inaccessible (a touch is a fault, not a page of zeros
 * made in the cache behind the pager's back).  Expects [C]. */
static void vm_remote_lost(void)
{
    fprintf(stderr, "hell[%d]: lost machd's memory object service\n", (int)getpid());
    linux_close(vm_remote_sock);
    vm_remote_sock = -1;
    for (struct vm_remote_range *r = vm_remote_ranges; r != NULL; r = r->next) {
        (void)mprotect((void *)r->start, r->end - r->start, PROT_NONE);
    }
}

/* Sends REQ (LEN bytes) with this task's userfaultfd UFFD over SOCK (-1
 * for either: nothing is sent), then closes UFFD: the peer has its own.
 * Returns whether it was sent; if not, SOCK is closed too and errno says
 * why. */
static bool vm_remote_send_uffd(int sock, int uffd, void *req, size_t len)
{
    struct iovec iov = {.iov_base = req, .iov_len = len};
    bool ok = sock >= 0 && uffd >= 0 && wire_sendmsg(sock, &iov, 1, &uffd, 1, 0) == (int)len;
    int err = errno;
    linux_close(uffd);
    if (!ok) {
        linux_close(sock);
    }
    errno = err;
    return ok;
}

/* Connects to machd and hands it this task's userfaultfd.  Returns
 * whether it worked.  Expects [C]. */
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
    if (!vm_remote_send_uffd(sock, uffd, &req, sizeof req)) {
        fprintf(stderr, "hell[%d]: memory objects served by the task itself, not machd: %s\n",
                (int)getpid(), strerror(errno));
        vm_remote_failed = true;
        return false;
    }
    vm_remote_sock = sock;
    vm_fault_set_active();
    return true;
}

bool vm_remote_active(void)
{
    futex_lock_acquire(&vm_remote_lock);
    bool active = vm_remote_sock >= 0 || (!vm_remote_failed && vm_remote_connect());
    futex_lock_release(&vm_remote_lock);
    return active;
}

/* Sends REQ, then, with PAGER valid, a copy of that kernel-space send
 * right, and receives the reply: its handle into *HANDLE, a memfd into
 * *MEMFD when not NULL (-1 when none came or it could not be taken).
 * Returns the reply's code, or KERN_RESOURCE_SHORTAGE when the
 * connection failed.  Expects [C]. */
static kern_return_t vm_remote_call_locked(struct hell_vm_request *req, mach_port_name_t pager,
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
        /* The right goes as a bootstrap message; when it cannot, one with
         * no right keeps machd in step (it answers that no pager came). */
        struct kright right;
        ipc_lock();
        bool copied = ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], pager,
                                       MACH_MSG_TYPE_COPY_SEND, false, &right) == KERN_SUCCESS;
        if (copied && wire_send_bootstrap(vm_remote_sock, &right, 1) != MACH_MSG_SUCCESS) {
            kright_destroy(&right);
            copied = false;
        }
        ok = copied || wire_send_bootstrap(vm_remote_sock, NULL, 0) == MACH_MSG_SUCCESS;
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
        (msg.msg_flags & MSG_TRUNC)) {
        linux_close(fd);
        vm_remote_lost();
        return KERN_RESOURCE_SHORTAGE;
    }
    /* (A descriptor this task had no room for is lost, the reply not.) */
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

/* vm_remote_call_locked, taking [C]. */
static kern_return_t vm_remote_call(struct hell_vm_request *req, mach_port_name_t pager,
                                    uint64_t *handle, int *memfd)
{
    futex_lock_acquire(&vm_remote_lock);
    kern_return_t kr = vm_remote_call_locked(req, pager, handle, memfd);
    futex_lock_release(&vm_remote_lock);
    return kr;
}

kern_return_t vm_remote_enter(mach_port_name_t pager, uint64_t end, uint64_t *handle,
                              int *memfd)
{
    struct hell_vm_request req = {.op = HELL_VM_ENTER, .end = end};
    kern_return_t kr = vm_remote_call(&req, pager, handle, memfd);
    if (kr == KERN_SUCCESS && *memfd < 0) {
        if (*handle != HELL_VM_DIRECT) {
            vm_remote_release(*handle);
        }
        kr = KERN_RESOURCE_SHORTAGE;
    } else if (kr != KERN_SUCCESS) {
        linux_close(*memfd);
    }
    return kr;
}

kern_return_t vm_remote_add(uint64_t handle, uint64_t start, uint64_t end, uint64_t offset,
                            mach_port_name_t pager)
{
    struct vm_remote_range *range = malloc(sizeof *range);
    if (range == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    if (kern_retain_right(pager) != KERN_SUCCESS) {
        free(range);
        return KERN_RESOURCE_SHORTAGE;
    }
    struct hell_vm_request req = {.op = HELL_VM_ADD, .handle = handle, .start = start,
                                  .end = end, .offset = offset};
    futex_lock_acquire(&vm_remote_lock);
    kern_return_t kr = vm_remote_call_locked(&req, MACH_PORT_NULL, NULL, NULL);
    if (kr == KERN_SUCCESS) {
        *range = (struct vm_remote_range){.start = start, .end = end, .offset = offset,
                                          .pager = pager, .next = vm_remote_ranges};
        vm_remote_ranges = range;
    } else {
        range->pager = pager;
        vm_remote_range_free(range);
    }
    futex_lock_release(&vm_remote_lock);
    return kr;
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

/* Whether [START, END) meets a range mapping an object.  Expects [C]. */
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
    futex_lock_acquire(&vm_remote_lock);
    if (!vm_remote_maps(start, end)) {
        futex_lock_release(&vm_remote_lock);
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
            if (tail != NULL && kern_retain_right(r->pager) != KERN_SUCCESS) {
                free(tail);
                tail = NULL;
            }
            if (tail != NULL) {
                *tail = (struct vm_remote_range){.start = end, .end = r->end,
                                                 .offset = r->offset + (end - r->start),
                                                 .pager = r->pager, .next = r->next};
                r->end = start;
                r->next = tail;
            }
            link = &r->next;
        } else if (r->start < start) {
            r->end = start;
            link = &r->next;
        } else if (r->end > end) {
            r->offset += end - r->start;
            r->start = end;
            link = &r->next;
        } else {
            *link = r->next;
            vm_remote_range_free(r);
        }
    }
    struct hell_vm_request req = {.op = HELL_VM_UNMAP, .start = start, .end = end};
    (void)vm_remote_call_locked(&req, MACH_PORT_NULL, NULL, NULL);
    futex_lock_release(&vm_remote_lock);
}

bool vm_remote_sync(uint64_t start, uint64_t end, bool invalidate)
{
    futex_lock_acquire(&vm_remote_lock);
    bool any = vm_remote_maps(start, end);
    struct hell_vm_request req = {.op = HELL_VM_SYNC, .start = start, .end = end,
                                  .flags = invalidate ? HELL_VM_INVALIDATE : 0};
    any = any && vm_remote_call_locked(&req, MACH_PORT_NULL, NULL, NULL) == KERN_SUCCESS;
    futex_lock_release(&vm_remote_lock);
    return any;
}

mach_port_name_t vm_remote_name(uint64_t addr)
{
    mach_port_name_t name = MACH_PORT_NULL;
    futex_lock_acquire(&vm_remote_lock);
    struct hell_vm_request req = {.op = HELL_VM_NAME, .start = addr};
    struct kright right;
    if (vm_remote_maps(addr, addr + 1) &&
        vm_remote_call_locked(&req, MACH_PORT_NULL, NULL, NULL) == KERN_SUCCESS &&
        wire_recv_bootstrap(vm_remote_sock, &right, 1) == 1) {
        ipc_lock();
        if (right.kind != KRIGHT_SEND) {
            kright_destroy(&right);
        } else if (ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], &right, &name) !=
                   KERN_SUCCESS) {
            name = MACH_PORT_NULL; /* (the right went) */
        }
        ipc_unlock();
    }
    futex_lock_release(&vm_remote_lock);
    return name;
}

bool vm_remote_ranges_list(struct vm_object_range **ranges, size_t *n, size_t *cap)
{
    bool ok = true;
    futex_lock_acquire(&vm_remote_lock);
    for (struct vm_remote_range *r = vm_remote_ranges; ok && r != NULL; r = r->next) {
        struct vm_object_range range = {.start = r->start, .end = r->end, .offset = r->offset,
                                         .pager = r->pager};
        ok = vm_object_range_append(ranges, n, cap, &range);
    }
    futex_lock_release(&vm_remote_lock);
    return ok;
}

bool vm_remote_attach(int sock)
{
    int uffd = vm_uffd_open();
    struct hell_vm_request req = {.magic = HELL_PROTO_MAGIC, .op = HELL_VM_ATTACH,
                                  .flags = (uint32_t)vm_pager_timeout_ms(),
                                  .handle = (uint64_t)getpid()};
    if (!vm_remote_send_uffd(sock, uffd, &req, sizeof req)) {
        return false;
    }
    futex_lock_acquire(&vm_remote_lock);
    vm_remote_sock = sock;
    vm_remote_by_creator = true;
    futex_lock_release(&vm_remote_lock);
    vm_fault_set_active();
    return true;
}

bool vm_remote_by_creator_now(void)
{
    futex_lock_acquire(&vm_remote_lock);
    bool by_creator = vm_remote_by_creator;
    futex_lock_release(&vm_remote_lock);
    return by_creator;
}

int vm_remote_fork_conn(void)
{
    struct hell_vm_request req = {.op = HELL_VM_FORK};
    int sock = -1;
    futex_lock_acquire(&vm_remote_lock);
    kern_return_t kr = vm_remote_by_creator
                           ? vm_remote_call_locked(&req, MACH_PORT_NULL, NULL, &sock)
                           : KERN_INVALID_ARGUMENT;
    futex_lock_release(&vm_remote_lock);
    if (kr != KERN_SUCCESS) {
        linux_close(sock);
        return -1;
    }
    return sock;
}

void vm_remote_fork_child(void)
{
    vm_remote_lock = (struct futex_lock)FUTEX_LOCK_INIT;
    linux_close(vm_remote_sock);
    vm_remote_sock = -1;
    vm_remote_failed = false;
    vm_remote_by_creator = false;
    while (vm_remote_ranges != NULL) {
        /* (Its pager's name was the parent's: nothing to release.) */
        struct vm_remote_range *next = vm_remote_ranges->next;
        free(vm_remote_ranges);
        vm_remote_ranges = next;
    }
}
