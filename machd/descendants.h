/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The processes of an instance: every descendant of machd, which is their
 * subreaper (an orphan of the instance comes back to it).
 */
#ifndef HELL_MACHD_DESCENDANTS_H
#define HELL_MACHD_DESCENDANTS_H

#include <sys/types.h>

/* Called for each child machd reaps, with its pid and wait status.  Runs
 * in the thread that reaped it. */
typedef void descendants_reaped_fn(pid_t pid, int status);

/* Sends SIGKILL to every descendant of this process, reaps its children,
 * and repeats until it has none left: then no process of the instance
 * remains.  Calls REAPED for each child reaped.  Returns when done. */
void descendants_kill_all(descendants_reaped_fn *reaped);

#endif
