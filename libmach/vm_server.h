/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Serving the memory objects of other tasks (vm_server.c): machd's, for
 * the tasks of its instance (hell_vm_serve, hell.h), and a task's own,
 * outside an instance, for a task it created with inherited memory that
 * maps the creator's objects (the two share the creator's cache, as
 * tasks of one kernel do).
 */
#ifndef HELL_VM_SERVER_H
#define HELL_VM_SERVER_H
#include <stdbool.h>
/* Receives the HELL_VM_ATTACH of a task just created on CONN (taken
 * over; waits for it), then serves that task's objects and faults from
 * a hidden thread until it hangs up: its requests name objects of this
 * process's cache.  Returns whether the thread started (CONN closed
 * otherwise).  Expects no lock. */
bool vm_server_child_start(int conn);
/* The child side of fork(): the connections served are the parent's;
 * they are closed here.  Expects a single thread. */
void vm_server_fork_child(void);
#endif
