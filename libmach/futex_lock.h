/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A small mutex on a Linux futex, for the process-wide IPC lock: taken
 * several times per message, where glibc's general mutex costs about 55
 * instructions a lock/unlock pair and this one a handful.  Three states:
 * 0 free, 1 held, 2 held with (possible) waiters.  Not recursive.
 */
#ifndef HELL_FUTEX_LOCK_H
#define HELL_FUTEX_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>

struct futex_lock {
    _Atomic int state;
};

/* How many futex locks the calling thread holds or waits for: a thread
 * with one is never stopped by thread_suspend where it stands (it would
 * stop the others that need the lock), only at its next clean point
 * (kern_control.h). */
extern __thread int futex_locks_held;

/* Set when the thread must stop once it holds no lock; then the hook runs
 * as its last lock is released (kern_control.c sets both). */
extern __thread bool futex_park_pending;
extern void (*futex_clean_point_hook)(void);

#define FUTEX_LOCK_INIT {0}

/* Waits for and takes the lock (slow path of futex_lock_acquire). */
void futex_lock_acquire_slow(struct futex_lock *lock);

/* Wakes one waiter (slow path of futex_lock_release). */
void futex_lock_wake(struct futex_lock *lock);

static inline void futex_lock_acquire(struct futex_lock *lock)
{
    futex_locks_held++;
    int expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&lock->state, &expected, 1,
                                                 memory_order_acquire,
                                                 memory_order_relaxed)) {
        futex_lock_acquire_slow(lock);
    }
}

/* Takes the lock if it is free; returns whether it did. */
static inline bool futex_lock_try(struct futex_lock *lock)
{
    int expected = 0;
    bool taken = atomic_compare_exchange_strong_explicit(&lock->state, &expected, 1,
                                                         memory_order_acquire,
                                                         memory_order_relaxed);
    futex_locks_held += taken;
    return taken;
}

static inline void futex_lock_release(struct futex_lock *lock)
{
    if (atomic_exchange_explicit(&lock->state, 0, memory_order_release) == 2) {
        futex_lock_wake(lock);
    }
    if (--futex_locks_held == 0 && futex_park_pending) {
        futex_clean_point_hook();
    }
}

#endif
