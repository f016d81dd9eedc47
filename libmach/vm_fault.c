/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * This process's space and its fault thread (vm_fault.h).
 *
 * The userfaultfd reports a fault on a missing page or a write-protected
 * one with the faulting thread's id; the thread waits in Linux until its
 * fault is woken (UFFDIO_WAKE, or unprotecting the page), or until a
 * signal, which is how a memory error reaches it (vm_object.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "linux.h"
#include "vm_fault.h"

static struct vm_space vm_self = {.uffd = -1};
static bool vm_self_ready; /* [V] */

/* How many fault messages one read takes. */
#define VM_FAULT_BATCH 16

static void *vm_fault_main(void *arg)
{
    struct vm_space *space = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    struct uffd_msg msgs[VM_FAULT_BATCH];
    for (;;) {
        vm_lock();
        int timeout = vm_object_expire();
        vm_unlock();
        struct pollfd pfd = {.fd = space->uffd, .events = POLLIN};
        int rc = poll(&pfd, 1, timeout);
        if (rc < 0 && errno != EINTR) {
            fprintf(stderr, "hell: the fault thread stops: %s\n", strerror(errno));
            return NULL;
        }
        if (rc <= 0) {
            continue;
        }
        ssize_t n = read(space->uffd, msgs, sizeof msgs);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "hell: the fault thread stops: %s\n", strerror(errno));
                return NULL;
            }
            continue;
        }
        vm_lock();
        for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
                continue;
            }
            uint64_t addr = msgs[i].arg.pagefault.address;
            struct vm_mapping *m = vm_space_lookup(space, addr);
            if (m != NULL) {
                vm_object_fault(m, addr, (unsigned)msgs[i].arg.pagefault.flags,
                                (pid_t)msgs[i].arg.pagefault.feat.ptid);
            } else {
                /* Unmapped since: the thread faults again on what is there. */
                struct uffdio_range range = {.start = addr & ~(uint64_t)(VM_PAGE - 1),
                                             .len = VM_PAGE};
                (void)ioctl(space->uffd, UFFDIO_WAKE, &range);
            }
        }
        vm_unlock();
    }
}

bool vm_fault_active(void)
{
    return __atomic_load_n(&vm_self_ready, __ATOMIC_ACQUIRE);
}

void vm_fault_prepare(const void *addr, size_t size)
{
    uintptr_t lo = (uintptr_t)addr & ~(uintptr_t)(VM_PAGE - 1);
    uintptr_t hi = ((uintptr_t)addr + size + VM_PAGE - 1) & ~(uintptr_t)(VM_PAGE - 1);
    if (size > 0 && hi > lo) {
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
    }
}

struct vm_space *vm_space_self_if_any(void)
{
    return vm_fault_active() ? &vm_self : NULL;
}

struct vm_space *vm_space_self(void)
{
    if (vm_self_ready) {
        return &vm_self;
    }
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
        return NULL;
    }
    struct uffdio_api api = {
        .api = UFFD_API,
        .features = UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_MISSING_SHMEM |
                    UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
    };
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        int err = errno;
        linux_close(uffd);
        errno = err;
        return NULL;
    }
    vm_self.uffd = uffd;
    vm_self.pid = getpid();
    vm_self.maps = NULL;
    if (!linux_thread_start(vm_fault_main, &vm_self)) {
        linux_close(uffd);
        vm_self.uffd = -1;
        errno = EAGAIN;
        return NULL;
    }
    __atomic_store_n(&vm_self_ready, true, __ATOMIC_RELEASE);
    return &vm_self;
}

void vm_fault_fork_child(void)
{
    if (vm_self_ready) {
        linux_close(vm_self.uffd);
    }
    vm_self = (struct vm_space){.uffd = -1};
    vm_self_ready = false;
}
