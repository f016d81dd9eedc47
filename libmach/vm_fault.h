/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * This process's own address space as a space of the VM (vm_object.h):
 * its userfaultfd, and the hidden thread that serves its faults on
 * mapped memory objects.
 */
#ifndef HELL_VM_FAULT_H
#define HELL_VM_FAULT_H

#include "vm_object.h"

/* The space of this process, made on first use (a userfaultfd for
 * missing pages and write protection on shared memory, and its fault
 * thread).  Returns NULL when Linux refuses (errno set: no userfaultfd,
 * or vm.unprivileged_userfaultfd is 0 without CAP_SYS_PTRACE).
 * Expects [V]. */
struct vm_space *vm_space_self(void);

/* The space of this process if it has one yet, else NULL.  Expects [V]. */
struct vm_space *vm_space_self_if_any(void);

/* Whether this process maps memory objects (then memory it reads may
 * fault to a pager).  Needs no lock. */
bool vm_fault_active(void);

/* Faults in [ADDR, ADDR + SIZE) for reading, so that a copy made later
 * under [G] cannot wait for a pager (whose request needs [G]): a region
 * sent out of line from a mapped object.  Errors are left for the copy
 * to find.  Expects [G] not held. */
void vm_fault_prepare(const void *addr, size_t size);

/* The child side of fork(): the parent's space is not the child's (its
 * userfaultfd serves the parent's memory); the child starts without one.
 * Expects a single thread. */
void vm_fault_fork_child(void);

#endif
