/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hell-task: the body of a task that task_create made without inherited
 * memory.  The creating task executes it with the bootstrap handshake's
 * socket and HELL_EMPTY_TASK in its environment; by the time main runs,
 * libmach's start-up has hidden this thread (a task starts with no Mach
 * thread) and handed the creator this task's port.  Everything else
 * happens through that port: memory allocated and written from outside,
 * threads created and started from register state, as an exec server
 * loads a program.  Not meant to be run by hand.
 */
#include <hell.h>
#include <stdio.h>

int main(void)
{
    hell_task_idle(); /* returns only when not started by task_create */
    fprintf(stderr, "hell-task: the body of an empty task, started by task_create\n");
    return 2;
}
