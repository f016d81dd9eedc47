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
/* Starts a hidden thread that receives the HELL_VM_ATTACH of a task just
 * created on CONN (taken over), then serves that task's objects and
 * faults until it hangs up: its requests name objects of this process's
 * cache, and its HELL_VM_FORK gets a connection served the same way for
 * a task it creates in turn.  Returns whether the thread started (CONN
 * closed otherwise); a task that never attaches (it died) ends the
 * thread when CONN's other end closes.  Expects no lock. */
bool vm_server_child_start(int conn);
/* The child side of fork(): the connections served are the parent's;
 * they are closed here.  Expects a single thread. */
void vm_server_fork_child(void);
#endif
