/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Threads as kernel objects (kern_thread.c): the record and port of each
 * Mach thread of the task.
 */
#ifndef HELL_KERN_THREAD_H
#define HELL_KERN_THREAD_H

#include <time.h>

#include "ipc_types.h"

struct kern_thread {
    pid_t tid;                    /* [C] Linux thread id */
    struct ipc_port *port;        /* [C] its thread port (kernel object) */
    mach_port_name_t kname;       /* [C] ... named in the kernel space */
    unsigned generation;          /* [C] kern_fork_generation at creation */
    struct timespec creation;     /* [C] when HELL first saw it */
    unsigned suspend_count;       /* [G] */
    bool seen;                    /* [G] listed by the current listing */
};

/* The calling thread's record, made with its port on first use; NULL
 * when out of descriptors or memory.  Expects [G]. */
struct kern_thread *kern_thread_self(void);

/* The thread whose port KNAME names in the kernel space, or NULL.
 * Expects [G]. */
struct kern_thread *kern_thread_lookup(mach_port_t kname);

/* The child side of fork(): no thread is known. */
void kern_thread_fork_child(void);

#endif
