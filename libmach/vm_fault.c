/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The spaces this process serves and their fault thread (vm_fault.h).
 *
 * A userfaultfd reports a fault on a missing page or a write-protected
 * one with the faulting thread's id; the thread waits in Linux until its
 * fault is woken (UFFDIO_WAKE, or unprotecting the page), or until a
 * signal, which is how a memory error reaches it (vm_object.c).  The
 * userfaultfd acts on the address space that made it, whichever process
 * holds it: machd registers, protects and wakes a task's mappings
 * through the task's.
 *
 * One thread serves every space: it waits on an epoll set holding the
 * spaces' userfaultfds (each known by an id, never by a pointer a
 * removal could free under it), and handles each fault under [V].
 *
 * The same thread receives what pagers send the objects' control ports
 * (data_supply, ...): they are members of a kernel port set of their
 * own, whose descriptor is in the epoll set too.  A fault then costs
 * four context switches, as its path has four steps (the faulting
 * thread, this one, the pager, this one again).  With the answers
 * served by another thread, Linux preempted this one as its request
 * woke the pager (at the return from sendmsg) and ran it again only to
 * go back to waiting: six switches, about 3 us more per fault.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipc_space.h"
#include "kern.h"
#include "linux.h"
#include "u64map.h"
#include "vm_fault.h"

static int vm_epoll = -1;           /* [V] the fault thread's set, or -1 */
static struct u64map vm_spaces;     /* [V] id -> struct vm_space */
static uint64_t vm_space_last_id;   /* [V] */
static struct vm_space *vm_self;    /* [V] this process's space, or NULL */
static bool vm_active;              /* atomic: vm_fault_active */
/* [V] The kernel port set of the control ports the fault thread serves,
 * or MACH_PORT_NULL (no fault thread, or the set could not be made: the
 * service thread serves them). */
static mach_port_name_t vm_pagers;

/* The epoll datum of the control ports' set (spaces' ids start at 1). */
#define VM_PAGERS_EVENT 0
/* Requests served from pagers between two looks at the faults. */
#define VM_PAGERS_BATCH 16

/* What the fault thread starts with: made by its creator, not by the
 * thread (a thread that allocates or frees as the program may fork could
 * leave AddressSanitizer's allocator locked in the child:
 * kern_service_start).  One fault thread per process: static. */
static struct vm_fault_start {
    int epoll;
    mach_port_name_t pagers; /* or MACH_PORT_NULL */
    mach_msg_header_t *buf;  /* KERN_REQUEST_MAX bytes, the thread's */
} vm_fault_start_args;

/* How many fault messages one read takes, and reads one wake-up makes. */
#define VM_FAULT_BATCH 16
#define VM_FAULT_READS 4

/* Handles the faults SPACE has reported.  Expects [V].  Returns false
 * when its userfaultfd fails for good (it is then left alone). */
static bool vm_fault_drain(struct vm_space *space)
{
    struct uffd_msg msgs[VM_FAULT_BATCH];
    for (int r = 0; r < VM_FAULT_READS; r++) {
        ssize_t n = read(space->uffd, msgs, sizeof msgs);
        if (n <= 0) {
            if (n == 0) {
                errno = EPIPE;
            }
            return n < 0 && (errno == EAGAIN || errno == EINTR);
        }
        for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++) {
            if (msgs[i].event == UFFD_EVENT_FORK) {
                /* (Asked for by no one here: a task's own features.) */
                linux_close((int)msgs[i].arg.fork.ufd);
                continue;
            }
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
        if ((size_t)n < sizeof msgs) {
            break;
        }
    }
    return true;
}

/* Serves what pagers sent the control ports in the set PAGERS, at most
 * VM_PAGERS_BATCH requests (the set stays readable for the next round).
 * Expects no lock. */
static void vm_fault_serve_pagers(mach_port_name_t pagers, mach_msg_header_t **buf,
                                  size_t *size)
{
    for (int i = 0; i < VM_PAGERS_BATCH; i++) {
        if (kern_receive_serve(pagers, 0, buf, size) != MACH_MSG_SUCCESS) {
            return;
        }
    }
}

/* ARG: vm_fault_start_args. */
static void *vm_fault_main(void *arg)
{
    struct vm_fault_start start = *(struct vm_fault_start *)arg;
    size_t size = KERN_REQUEST_MAX;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    struct epoll_event events[VM_FAULT_BATCH];
    vm_lock();
    int timeout = vm_object_expire();
    vm_unlock();
    for (;;) {
        int n = epoll_wait(start.epoll, events, VM_FAULT_BATCH, timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "hell: the fault thread stops: %s\n", strerror(errno));
            free(start.buf);
            return NULL;
        }
        bool pagers = false;
        vm_lock();
        for (int i = 0; i < n; i++) {
            if (events[i].data.u64 == VM_PAGERS_EVENT) {
                pagers = true;
                continue;
            }
            struct vm_space *space = u64map_lookup(&vm_spaces, events[i].data.u64);
            if (space != NULL && !vm_fault_drain(space)) {
                fprintf(stderr, "hell: faults of process %d no longer served: %s\n",
                        (int)space->pid, strerror(errno));
                (void)epoll_ctl(start.epoll, EPOLL_CTL_DEL, space->uffd, NULL);
            }
        }
        timeout = vm_object_expire(); /* (for the next wait) */
        vm_unlock();
        if (pagers) {
            vm_fault_serve_pagers(start.pagers, &start.buf, &size);
        }
    }
}

/* Makes the control ports' set and puts it into EPOLL.  Returns its name,
 * or MACH_PORT_NULL when it cannot be made (the service thread then
 * serves the control ports).  Expects [V]. */
static mach_port_name_t vm_fault_pagers_make(int epoll)
{
    mach_port_name_t set;
    int fd;
    ipc_lock();
    kern_return_t kr = kern_object_set_create(&set, &fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = VM_PAGERS_EVENT};
    if (kr == KERN_SUCCESS && epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev) != 0) {
        (void)ipc_right_destroy(&ipc_spaces[SPACE_KERNEL], set);
        kr = KERN_RESOURCE_SHORTAGE;
    }
    ipc_unlock();
    return kr == KERN_SUCCESS ? set : MACH_PORT_NULL;
}

/* Starts the fault thread on a new epoll set.  Returns that epoll
 * descriptor, or -1 with errno set.  Expects [V]. */
static int vm_fault_start(void)
{
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) {
        return -1;
    }
    void *buf = malloc(KERN_REQUEST_MAX);
    if (buf == NULL) {
        linux_close(epoll);
        errno = ENOMEM;
        return -1;
    }
    mach_port_name_t pagers = vm_fault_pagers_make(epoll);
    vm_fault_start_args = (struct vm_fault_start){.epoll = epoll, .pagers = pagers, .buf = buf};
    /* (The thread reads it once it runs, maybe after this returns: it is
     * written once per process.) */
    if (!linux_thread_start(vm_fault_main, &vm_fault_start_args)) {
        free(buf);
        if (pagers != MACH_PORT_NULL) {
            ipc_lock();
            (void)ipc_right_destroy(&ipc_spaces[SPACE_KERNEL], pagers);
            ipc_unlock();
        }
        linux_close(epoll);
        errno = EAGAIN;
        return -1;
    }
    vm_pagers = pagers;
    return epoll;
}

mach_port_name_t vm_fault_pagers(void)
{
    return vm_pagers;
}

int vm_uffd_open(void)
{
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0 && errno == EPERM) {
        /* Without CAP_SYS_PTRACE where vm.unprivileged_userfaultfd is 0
         * (Debian's default): faults from user mode only.  A system call
         * that touches an unfetched page of an object then fails with
         * EFAULT instead of waiting for the pager (libmach touches the
         * regions it sends first). */
        uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    }
    if (uffd < 0) {
        return -1;
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
        return -1;
    }
    return uffd;
}

struct vm_space *vm_space_add(int uffd, pid_t pid, int timeout_ms)
{
    if (vm_epoll < 0 && (vm_epoll = vm_fault_start()) < 0) {
        return NULL;
    }
    struct vm_space *space = malloc(sizeof *space);
    if (space == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    *space = (struct vm_space){.id = ++vm_space_last_id, .uffd = uffd, .pid = pid,
                               .timeout_ms = timeout_ms};
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = space->id};
    if (!u64map_insert(&vm_spaces, space->id, space)) {
        free(space);
        errno = ENOMEM;
        return NULL;
    }
    if (epoll_ctl(vm_epoll, EPOLL_CTL_ADD, uffd, &ev) != 0) {
        int err = errno;
        u64map_remove(&vm_spaces, space->id);
        free(space);
        errno = err;
        return NULL;
    }
    return space;
}

void vm_space_remove(struct vm_space *space)
{
    vm_space_unmap(space, 0, UINT64_MAX);
    u64map_remove(&vm_spaces, space->id);
    (void)epoll_ctl(vm_epoll, EPOLL_CTL_DEL, space->uffd, NULL);
    vm_wakes_wait_idle(); /* none may reach a reused descriptor */
    linux_close(space->uffd);
    if (space == vm_self) {
        vm_self = NULL;
    }
    free(space);
}

bool vm_fault_active(void)
{
    return __atomic_load_n(&vm_active, __ATOMIC_ACQUIRE);
}

void vm_fault_set_active(void)
{
    __atomic_store_n(&vm_active, true, __ATOMIC_RELEASE);
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
    return vm_self;
}

struct vm_space *vm_space_self(void)
{
    if (vm_self != NULL) {
        return vm_self;
    }
    int uffd = vm_uffd_open();
    if (uffd < 0) {
        return NULL;
    }
    vm_self = vm_space_add(uffd, getpid(), vm_pager_timeout_ms());
    if (vm_self == NULL) {
        int err = errno;
        linux_close(uffd);
        errno = err;
        return NULL;
    }
    vm_fault_set_active();
    return vm_self;
}

void vm_fault_fork_child(void)
{
    /* The mappings are vm_object_fork_child's to free. */
    size_t cursor = 0;
    uint64_t id;
    void *space;
    while (u64map_next(&vm_spaces, &cursor, &id, &space)) {
        linux_close(((struct vm_space *)space)->uffd);
        free(space);
    }
    u64map_destroy(&vm_spaces);
    if (vm_epoll >= 0) {
        linux_close(vm_epoll);
    }
    vm_epoll = -1;
    vm_pagers = MACH_PORT_NULL; /* (the kernel space starts over) */
    vm_self = NULL;
    vm_active = false;
}
