/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Starting the body of an empty task (task_create without inherited
 * memory): the program hell-task, executed with the bootstrap
 * handshake's socket and HELL_EMPTY_TASK in its environment.  The rest of
 * hell_launch.c is exported (hell.h: hell_fork, hell_spawn...).
 */
#ifndef HELL_HELL_LAUNCH_H
#define HELL_HELL_LAUNCH_H

#include <stdbool.h>

/* What the child of fork needs to execute hell-task, made beforehand
 * (nothing may be allocated between fork and exec). */
struct hell_empty_task {
    char *path;  /* hell-task */
    char **env;  /* ours, with HELL_EMPTY_TASK, and a HELL_BOOTSTRAP_FD slot */
    char *slot;  /* that slot */
};

/* Fills TASK.  Returns false (with a line on stderr when hell-task is not
 * found) when it cannot. */
bool hell_empty_task_prepare(struct hell_empty_task *task);

/* In the child of fork: executes hell-task with SOCK as its handshake
 * socket.  Async-signal-safe; exits with 127 when the exec fails. */
__attribute__((noreturn)) void hell_empty_task_exec(const struct hell_empty_task *task,
                                                    int sock);

/* Frees what hell_empty_task_prepare made. */
void hell_empty_task_free(struct hell_empty_task *task);

#endif
