/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Thread control without ptrace (kern_control.c): thread_suspend and
 * thread_resume (counted), thread_get_state and thread_set_state,
 * thread_abort, task_suspend and task_resume.
 *
 * A controller sends the thread a real-time signal carrying its record;
 * the handler parks the thread (a futex wait) and exposes the signal's
 * ucontext, whose registers a controller reads and writes and which take
 * effect when the handler returns.  A thread inside libmach (holding or
 * waiting for one of its locks) is never parked where it stands: its
 * blocking wait is made to fail with EINTR and libmach parks it at the
 * next clean point (the last lock it releases: futex_lock.h), or when
 * its trap returns.  Parked inside mach_msg, it shows the registers it
 * called mach_msg with, and a state set meanwhile is entered when that
 * call returns (kern_trap_frame.h).
 */
#ifndef HELL_KERN_CONTROL_H
#define HELL_KERN_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <ucontext.h>

/* Installs the control signal's handler (task start-up). */
void kern_control_init(void);

/* Installs the fault handlers that raise Mach exceptions (kern_exc.c),
 * where the program has none of its own. */
void kern_exc_init(void);

/* The fault context of the calling thread while it waits for the reply
 * to its exception_raise: the state thread_get_state and thread_set_state
 * see and change (kern_exc.c sets it). */
extern __thread struct ucontext_t *kern_fault_uc;

/* Whether thread_set_state gave the calling thread a thread pointer
 * while it waited for its exception's reply: then *FS is the one to
 * return to the fault with (consumed).  Needs no lock. */
bool kern_fault_fs_take(unsigned long *fs);

/* For a signal handler: switches to the thread's glibc thread pointer if
 * it runs with another one (a thread started by thread_create), touching
 * no thread-local before; returns the thread pointer it had, for
 * kern_fs_leave.  Needs no lock. */
unsigned long kern_fs_enter(void);
void kern_fs_leave(unsigned long fs);

/* Whether a controller asked the calling thread to stop while it held a
 * libmach lock: it stops when it releases its last one (futex_lock.h's
 * clean point), so a loop that waits holding a lock must let go of it
 * when this is true.  Needs no lock. */
bool kern_park_wanted(void);

/* Whether thread_abort was called on the calling thread during its
 * current trap (consumes the request).  Needs no lock. */
bool kern_abort_take(void);

/* Whether the calling thread, interrupted at UC (in a signal handler),
 * holds no libmach lock there: it holds none, or it runs on top of a wait
 * of libmach's (a handler of the program interrupted it) and holds no
 * more than the wait below, whose locks the code on top never touches
 * (futex_wait_mark).  Then it may stop there or make calls. */
bool kern_lock_free_at(const ucontext_t *uc);

/* Releases the range thread_terminate_release gave the calling thread,
 * ending itself, once it stands on another stack (its start routine's,
 * for a thread of thread_create).  Expects no lock. */
void kern_exit_release_run(void);

/* Traps under way on the calling thread (mach_msg; its entry point
 * counts them, kern_trap_exit uncounts): thread_abort ends the blocking
 * waits inside one, and only those. */
extern __thread int kern_trap_depth;
extern __thread struct kern_thread *kern_control_self;
void kern_trap_exit_slow(long ret);

/* Ends a trap returning RET.  Inline: every mach_msg passes here. */
static inline void kern_trap_exit(long ret)
{
    if (--kern_trap_depth == 0 && kern_control_self != NULL) {
        kern_trap_exit_slow(ret); /* an abort, a terminate or a state set */
    }
}

#endif
