/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The spaces whose faults this process serves (vm_object.h), and the
 * hidden thread that serves them: this process's own space outside an
 * instance; in machd, the space of every task of the instance that maps
 * memory objects (their userfaultfds, which the tasks hand over).
 */
#ifndef HELL_VM_FAULT_H
#define HELL_VM_FAULT_H

#include "vm_object.h"

/* Opens a userfaultfd on this process's memory with what the VM uses
 * (missing pages and write protection of shared memory, thread ids),
 * non-blocking and close-on-exec.  Returns it, or -1 with errno set
 * (ENOSYS, or EPERM when vm.unprivileged_userfaultfd is 0 without
 * CAP_SYS_PTRACE).  Needs no lock. */
int vm_uffd_open(void);

/* Adds the space of process PID whose userfaultfd is UFFD (taken over on
 * success), whose faults wait at most TIMEOUT_MS for a pager, and serves
 * its faults (starting the fault thread the first time).  Returns the
 * space, or NULL with errno set (UFFD stays the caller's).  Expects [V]. */
struct vm_space *vm_space_add(int uffd, pid_t pid, int timeout_ms);

/* The kernel port set whose members, the control ports of memory
 * objects, the fault thread serves (kern_object_create_in), or
 * MACH_PORT_NULL when there is none yet (then the service thread serves
 * them).  Expects [V]. */
mach_port_name_t vm_fault_pagers(void);

/* Removes SPACE (its process died or hung up): its mappings are cut,
 * which releases their objects, its userfaultfd closed, SPACE freed.
 * Expects [V]. */
void vm_space_remove(struct vm_space *space);

/* The space of this process, made on first use.  Returns NULL with errno
 * set when Linux refuses a userfaultfd.  Expects [V]. */
struct vm_space *vm_space_self(void);

/* The space of this process if it has one yet, else NULL.  Expects [V]. */
struct vm_space *vm_space_self_if_any(void);

/* Whether this process maps memory objects, served here or by machd
 * (then memory it reads may fault to a pager).  Needs no lock. */
bool vm_fault_active(void);

/* This process maps memory objects from now on (vm_fault_active).
 * Needs no lock. */
void vm_fault_set_active(void);

/* Faults in [ADDR, ADDR + SIZE) for reading, so that a copy made later
 * under [G] cannot wait for a pager (whose request needs [G]): a region
 * sent out of line from a mapped object.  Errors are left for the copy
 * to find.  Expects [G] not held. */
void vm_fault_prepare(const void *addr, size_t size);

/* The child side of fork(): the spaces served here are the parent's
 * (their userfaultfds serve the parent's memory), and the fault thread
 * did not follow; the child starts with none.  Expects a single thread
 * and runs before vm_object_fork_child. */
void vm_fault_fork_child(void);

#endif
