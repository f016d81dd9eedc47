/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Threads as kernel objects (kern_thread.c): the record and port of each
 * Mach thread of the task.
 */
#ifndef HELL_KERN_THREAD_H
#define HELL_KERN_THREAD_H

#include <mach/thread_status.h>
#include <setjmp.h>
#include <time.h>
#include <ucontext.h>

#include "ipc_types.h"

/* What thread_set_special_port(THREAD_KERNEL_PORT) or
 * task_set_special_port(TASK_KERNEL_PORT) put in place of an object's
 * own port towards itself (GNU Mach's ith_sself and itk_sself). */
struct kern_sself {
    mach_port_name_t kname;       /* [G] a send right in the kernel space,
                                     MACH_PORT_NULL or MACH_PORT_DEAD ... */
    bool set;                     /* [G] ... when set: the own port otherwise */
};

/* What stands for BASE, the object's own port (kernel space), towards the
 * object: S's port when set, BASE otherwise.  No reference is given.
 * Expects [G]. */
mach_port_name_t kern_sself_get(const struct kern_sself *s, mach_port_name_t base);

/* Puts PORT (a kernel-space send right, consumed, or MACH_PORT_NULL or
 * MACH_PORT_DEAD) in S, in place of BASE, releasing what S held; BASE put
 * back is the plain case again (S cleared).  Expects [G]. */
void kern_sself_put(struct kern_sself *s, mach_port_name_t base, mach_port_name_t port);

/* Releases what S holds and clears it.  Expects [G]. */
void kern_sself_release(struct kern_sself *s);

struct kern_thread {
    pid_t tid;                    /* [C] Linux thread id */
    struct ipc_port *port;        /* [C] its thread port (kernel object) */
    mach_port_name_t kname;       /* [C] ... named in the kernel space */
    unsigned generation;          /* [C] kern_fork_generation at creation */
    struct timespec creation;     /* [C] when HELL first saw it */
    unsigned suspend_count;       /* [G] */
    bool seen;                    /* [G] listed by the current listing */
    unsigned refs;                /* [G] controllers using the record */
    bool gone;                    /* [G] the thread exited: freed at refs 0 */
    /* Control (kern_control.c): written by controllers and the thread. */
    _Atomic int park_req;         /* stop at the next clean point */
    _Atomic int abort_req;        /* thread_abort: end the current trap */
    _Atomic int parked;           /* futex: stopped in its handler */
    _Atomic unsigned resume_seq;  /* futex: bumped to let it go */
    struct ucontext_t *uc;        /* its registers while parked */
    unsigned long fs_base, gs_base; /* read when it parked */
    bool fsgs_dirty;              /* set while parked: load them on resume */
    bool task_held;               /* [G] holds one count for task_suspend */
    int priority, max_priority;   /* [G] GNU Mach's (0 highest .. 49) */
    int policy;                   /* [G] POLICY_TIMESHARE or POLICY_FIXEDPRI */
    int sched_data;               /* [G] POLICY_FIXEDPRI's quantum, in ticks */
    char name[32];                /* [G] thread_set_name's, or empty */
    mach_port_name_t exception_kname; /* [G] its exception port (a send
                                     right in the kernel space), or 0 */
    mach_port_name_t exc_reply;   /* [G] its kernel-space reply port for
                                     exception_raise (kern_exc.c), or 0 */
    struct kern_sself sself;      /* [G] what thread_set_special_port(
                                     THREAD_KERNEL_PORT) put in place of its
                                     port */
    _Atomic int terminate_req;    /* thread_terminate: end at a clean point */
    _Atomic int reaped;           /* another thread's thread_terminate frees
                                     the record, after answering */
    _Atomic unsigned ended;       /* futex: set as the thread ends */
    _Atomic unsigned running;     /* futex: set once a thread made by
                                     thread_create has its Linux thread */
    bool starting;                /* [G] its Linux thread is being made */
    bool holds_self_ref;          /* [G] its thread holds a reference */
    _Atomic int sig_inflight;     /* a control signal not yet handled */
    _Atomic unsigned handler_seq; /* odd while in the control handler */
    unsigned long kernel_fs;      /* [C] its glibc thread pointer, for the
                                     handler to switch to (0: unknown) */
    /* A thread made by thread_create (kern_thread_start.c). */
    bool unstarted;               /* [G] no Linux thread yet (tid 0) */
    struct i386_thread_state start_state; /* [G] while unstarted */
    sigjmp_buf exit_jmp;          /* back into its start routine */
    bool has_exit_jmp;            /* [C] once started by HELL */
    struct kern_i386_segments *segments; /* [G] its LDT and GDT slots
                                     (kern_i386.c), or NULL: none set */
};

/* The calling thread's record, made with its port on first use; NULL
 * when out of descriptors or memory.  Expects [G]. */
struct kern_thread *kern_thread_self(void);

/* The kernel-space name of what stands for T's port towards its task
 * (GNU Mach's ith_sself: mach_thread_self(), the thread in its exception
 * messages): its port, unless thread_set_special_port(THREAD_KERNEL_PORT)
 * put another there.  No reference is given.  Expects [G]. */
mach_port_name_t kern_thread_self_kname(const struct kern_thread *t);

/* The thread whose port KNAME names in the kernel space, or NULL.
 * Expects [G]. */
struct kern_thread *kern_thread_lookup(mach_port_t kname);

/* Frees T's segment descriptors (kern_i386.c).  Expects [G]. */
void kern_i386_thread_free(struct kern_thread *t);

/* Forgets T and destroys its port (its thread ended, or never started);
 * the memory goes with the last reference.  Expects [G]. */
void kern_thread_free(struct kern_thread *t);

/* Takes a reference on T so that it outlives a controller that waits
 * without [G].  Expects [G]. */
void kern_thread_ref(struct kern_thread *t);

/* Drops it; frees a record whose thread is gone.  Expects [G]. */
void kern_thread_unref(struct kern_thread *t);

/* The task's Mach threads now, each referenced (kern_thread_unref them),
 * in an array the caller frees; NULL when out of memory or descriptors.
 * Expects [G] not held. */
struct kern_thread **kern_threads_snapshot(size_t *n);

/* The number of the task's Mach threads now (its Linux threads but
 * libmach's hidden ones), read from /proc; 0 when it cannot be read.
 * Needs no lock. */
size_t kern_thread_count(void);

/* Makes the record and port of a thread that does not run yet
 * (thread_create): suspend count 1, GNU Mach's initial state.  Returns
 * NULL when out of descriptors or memory.  Expects [G]. */
struct kern_thread *kern_thread_new_unstarted(void);

/* Records that T (made by kern_thread_new_unstarted) now runs as Linux
 * thread TID.  Expects [G]. */
void kern_thread_started(struct kern_thread *t, pid_t tid);

/* Sets the calling thread's record's exit destructor (its port dies with
 * it).  Needs no lock. */
void kern_thread_bind_self(struct kern_thread *t);

/* Starts the Linux thread of T, made by thread_create, now that its
 * suspend count fell to 0 (kern_thread_start.c).  Returns KERN_SUCCESS or
 * KERN_RESOURCE_SHORTAGE.  Expects [G] not held. */
kern_return_t kern_thread_start(struct kern_thread *t);

/* The record of Linux thread TID of this task, or NULL: a lock-free
 * lookup that signal handlers use (async-signal-safe).  Records are
 * published with their thread id and withdrawn as they are freed. */
struct kern_thread *kern_tid_find(pid_t tid);

/* The record of the thread running on the calling thread's signal stack,
 * when that stack is one HELL made (kern_thread_start.c); found from the
 * stack pointer alone, so usable before the thread pointer is glibc's.
 * Needs no lock. */
struct kern_thread *kern_altstack_owner(void);

/* Writes the general registers of STATE into UC's, with GNU Mach's rules
 * for the flags (kern_control.c).  Needs no lock. */
void kern_state_to_ucontext(const struct i386_thread_state *state, ucontext_t *uc);

/* Forgets the calling thread's record (thread_terminate by another
 * thread, which frees it): no destructor touches it at exit.  Needs no
 * lock. */
void kern_thread_unbind_self(void);

/* The child side of fork(): no thread is known. */
void kern_thread_fork_child(void);

#endif
