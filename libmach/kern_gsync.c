/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * gsync (gnumach.defs): wait and wake on a word of memory, which glibc's
 * Hurd port builds its locks on.  Linux futexes have GNU Mach's keys
 * exactly: a private futex meets by (address space, address), as a local
 * gsync does; a shared one by (file, offset) for shared memory, as a
 * GSYNC_SHARED one meets by (memory object, offset), so two tasks, or two
 * mappings in one task, meet only with GSYNC_SHARED.
 *
 * A call on this task's own port runs in the calling thread.  A wait
 * asked by another task (through our task port) must not block the
 * service thread: it is handed to a thread of its own, which replies when
 * the wait ends.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <mach/gsync.h>
#include <mach/mig_errors.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ipc_msg.h"
#include "ipc_space.h"
#include "kern.h"
#include "kern_control.h"
#include "linux.h"
#include "gnumach.server.h"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
/* futex_waitv flags (Linux 5.16): a 32-bit word, private to the task. */
#define KERN_FUTEX2_U32 FUTEX_32
#define KERN_FUTEX2_PRIVATE FUTEX_PRIVATE_FLAG

static int kern_futex_op(int flags, int op)
{
    return (flags & GSYNC_SHARED) ? op : op | FUTEX_PRIVATE_FLAG;
}

/* Whether TASK (kernel-space name) is this task's port. */
static bool kern_gsync_task_ok(mach_port_t task)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    return ok;
}

/* Waits while ADDR holds VAL1 (and ADDR + 4 holds VAL2 with GSYNC_QUAD),
 * at most MSEC ms with GSYNC_TIMED.  Returns GNU Mach's codes. */
static kern_return_t kern_gsync_block(vm_address_t addr, unsigned val1, unsigned val2,
                                      natural_t msec, int flags)
{
    struct timespec deadline = {0};
    if (flags & GSYNC_TIMED) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += msec / 1000;
        deadline.tv_nsec += (long)(msec % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    for (;;) {
        long rc;
        if (flags & GSYNC_QUAD) {
            /* Both words compared atomically with queueing. */
            uint32_t f = KERN_FUTEX2_U32 | ((flags & GSYNC_SHARED) ? 0 : KERN_FUTEX2_PRIVATE);
            struct futex_waitv w[2] = {
                {.val = val1, .uaddr = addr, .flags = f},
                {.val = val2, .uaddr = addr + 4, .flags = f},
            };
            rc = syscall(SYS_futex_waitv, w, 2, 0, (flags & GSYNC_TIMED) ? &deadline : NULL,
                         CLOCK_MONOTONIC);
        } else {
            rc = syscall(SYS_futex, (uint32_t *)addr,
                         kern_futex_op(flags, FUTEX_WAIT_BITSET), val1,
                         (flags & GSYNC_TIMED) ? &deadline : NULL, NULL, FUTEX_BITSET_MATCH_ANY);
        }
        if (rc >= 0) {
            return KERN_SUCCESS;
        }
        switch (errno) {
        case EINTR:
            if (kern_abort_take()) {
                return KERN_INTERRUPTED; /* thread_abort */
            }
            continue; /* a signal: wait on (until the deadline) */
        case EAGAIN:
            return KERN_INVALID_ARGUMENT; /* the word(s) changed */
        case ETIMEDOUT:
            return KERN_TIMEDOUT;
        case EFAULT:
            return KERN_INVALID_ADDRESS;
        default:
            return KERN_INVALID_ARGUMENT;
        }
    }
}

/* Waits asked by other tasks that are in progress, and their bound (the
 * hidden threads of a task are tracked up to 256). */
#define KERN_GSYNC_REMOTE_MAX 128
static atomic_uint kern_gsync_remote_waits;

/* A wait asked by another task, done by a thread of its own. */
struct kern_gsync_deferred {
    vm_address_t addr;
    unsigned val1, val2;
    natural_t msec;
    int flags;
    mach_port_name_t reply;    /* kernel-space send-once right */
    mach_msg_id_t request_id;
};

static void *kern_gsync_deferred_main(void *arg)
{
    struct kern_gsync_deferred *d = arg;
    kern_return_t kr = kern_gsync_block(d->addr, d->val1, d->val2, d->msec, d->flags);
    kern_reply(d->reply, d->request_id, kr);
    free(d);
    atomic_fetch_sub(&kern_gsync_remote_waits, 1);
    return NULL;
}

kern_return_t kern_gsync_wait(mach_port_t task, vm_address_t addr, unsigned val1,
                              unsigned val2, natural_t msec, int flags)
{
    if (!kern_gsync_task_ok(task)) {
        return KERN_INVALID_TASK;
    }
    if (addr % 4 != 0) {
        return KERN_INVALID_ADDRESS;
    }
    const mach_msg_header_t *request = kern_current_request();
    if (request == NULL || !kern_serving_other_task()) {
        return kern_gsync_block(addr, val1, val2, msec, flags);
    }
    /* A thread per remote wait, within bounds (each is a Linux thread of
     * this task; a client that never wakes its waits cannot exhaust us). */
    if (atomic_fetch_add(&kern_gsync_remote_waits, 1) >= KERN_GSYNC_REMOTE_MAX) {
        atomic_fetch_sub(&kern_gsync_remote_waits, 1);
        return KERN_RESOURCE_SHORTAGE;
    }
    struct kern_gsync_deferred *d = malloc(sizeof *d);
    if (d == NULL) {
        atomic_fetch_sub(&kern_gsync_remote_waits, 1);
        return KERN_RESOURCE_SHORTAGE;
    }
    *d = (struct kern_gsync_deferred){
        .addr = addr, .val1 = val1, .val2 = val2, .msec = msec, .flags = flags,
        .reply = (mach_port_name_t)request->msgh_remote_port,
        .request_id = request->msgh_id};
    if (!linux_thread_start(kern_gsync_deferred_main, d)) {
        free(d);
        atomic_fetch_sub(&kern_gsync_remote_waits, 1);
        return KERN_RESOURCE_SHORTAGE;
    }
    return MIG_NO_REPLY; /* the thread answers */
}

kern_return_t kern_gsync_wake(mach_port_t task, vm_address_t addr, unsigned val, int flags)
{
    if (!kern_gsync_task_ok(task)) {
        return KERN_INVALID_TASK;
    }
    if (addr % 4 != 0) {
        return KERN_INVALID_ADDRESS;
    }
    if (flags & GSYNC_MUTATE) {
        /* Stored before waking: a waiter that comes after sees it.  The
         * word must be writable: a FUTEX_WAKE_OP that adds 0 and wakes no
         * one checks it without changing it. */
        if (syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG, 0, NULL,
                    (uint32_t *)addr, FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_EQ, 0)) < 0) {
            return KERN_INVALID_ADDRESS;
        }
        __atomic_store_n((uint32_t *)addr, val, __ATOMIC_SEQ_CST);
    }
    long woken = syscall(SYS_futex, (uint32_t *)addr, kern_futex_op(flags, FUTEX_WAKE),
                         (flags & GSYNC_BROADCAST) ? INT_MAX : 1, NULL, NULL, 0);
    if (woken < 0) {
        return KERN_INVALID_ADDRESS;
    }
    return woken > 0 ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
}

kern_return_t kern_gsync_requeue(mach_port_t task, vm_address_t src, vm_address_t dst,
                                 boolean_t wake_one, int flags)
{
    if (!kern_gsync_task_ok(task)) {
        return KERN_INVALID_TASK;
    }
    if (src % 4 != 0 || dst % 4 != 0) {
        return KERN_INVALID_ADDRESS;
    }
    long moved = syscall(SYS_futex, (uint32_t *)src, kern_futex_op(flags, FUTEX_REQUEUE),
                         wake_one ? 1 : 0,
                         (void *)(uintptr_t)((flags & GSYNC_BROADCAST) ? INT_MAX : 1),
                         (uint32_t *)dst, 0);
    if (moved < 0) {
        return KERN_INVALID_ADDRESS;
    }
    return moved > 0 ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
}
