/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "futex_lock.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

__thread int futex_locks_held;
__thread bool futex_park_pending;
__thread struct futex_wait_mark futex_wait_mark;
void (*futex_clean_point_hook)(void);

void futex_lock_acquire_slow(struct futex_lock *lock)
{
    /* Mark the lock contended, then sleep until a release hands it over. */
    int state = atomic_exchange_explicit(&lock->state, 2, memory_order_acquire);
    while (state != 0) {
        syscall(SYS_futex, &lock->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        state = atomic_exchange_explicit(&lock->state, 2, memory_order_acquire);
    }
}

void futex_lock_wake(struct futex_lock *lock)
{
    syscall(SYS_futex, &lock->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
