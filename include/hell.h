/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * HELL's own API (not part of GNU Mach): starting tasks.
 */
#ifndef _HELL_H
#define _HELL_H

#include <mach/mach_types.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Forks a new task.  The child starts with a fresh name space whose
 * bootstrap port (task_get_bootstrap_port) is a copy of the caller's send
 * right BOOTSTRAP (or null).  Returns 0 in the child; in the parent the
 * child's pid, with *CHILD_TASK naming a send right to the child's task
 * port.  Returns -1 with errno set when the child could not be started. */
pid_t hell_fork(mach_port_t bootstrap, mach_port_t *child_task);

/* Like hell_fork, then executes PATH with ARGV in the child (with the
 * environment of the caller). */
pid_t hell_spawn(const char *path, char *const argv[], mach_port_t bootstrap,
                 mach_port_t *child_task);

/* Messages this task dropped as malformed or forged. */
unsigned long hell_dropped_messages(void);

#ifdef __cplusplus
}
#endif

#endif /* _HELL_H */
