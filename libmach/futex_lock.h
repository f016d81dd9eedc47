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
#include <stdint.h>

struct futex_lock {
    _Atomic int state;
};

/* How many futex locks the calling thread holds or waits for: a thread
 * with one is never stopped by thread_suspend where it stands (it would
 * stop the others that need the lock), only at its next clean point
 * (kern_control.h). */
extern __thread int futex_locks_held;

/* Set while the thread blocks in a system call holding locks (a receive
 * holds its port's dequeue lock): SP, its stack pointer at the call, and
 * HELD, its futex_locks_held then.  A signal handler of the program that
 * interrupts the wait runs on top of it, below SP, and holds none of
 * those locks itself (kern_control.c, kern_exc.c).  Zero otherwise. */
struct futex_wait_mark {
    uintptr_t sp;
    int held;
};
extern __thread struct futex_wait_mark futex_wait_mark;

/* Set when the thread must stop once it holds no lock; then the hook runs
 * as its last lock is released (kern_control.c sets both): the last but
 * the locks of a wait that a handler of the program runs on top of. */
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
    /* (A thread whose handler runs on top of a wait is clean once it
     * holds no more than the wait below.) */
    futex_locks_held--;
    if (futex_park_pending && futex_locks_held == futex_wait_mark.held) {
        futex_clean_point_hook();
    }
}

/* Marks the wait the calling thread is about to block in (inlined: the
 * mark is its caller's stack pointer); returns the mark of an outer wait,
 * for futex_wait_end. */
static inline __attribute__((always_inline)) struct futex_wait_mark futex_wait_begin(void)
{
    struct futex_wait_mark outer = futex_wait_mark;
    uintptr_t sp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
    futex_wait_mark = (struct futex_wait_mark){.sp = sp, .held = futex_locks_held};
    atomic_signal_fence(memory_order_seq_cst);
    return outer;
}

static inline void futex_wait_end(struct futex_wait_mark outer)
{
    atomic_signal_fence(memory_order_seq_cst);
    futex_wait_mark = outer;
}

#endif
