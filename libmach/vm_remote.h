/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory objects served by machd, for a task of an instance.
 *
 * Every task of an instance maps an object from one cache, machd's:
 * machd is the kernel its pager talks to (one memory_object_init, one
 * control port), so what one task writes the others see.  The task hands
 * machd its userfaultfd once (HELL_OP_VM, machd/protocol.h); machd
 * registers and write-protects the task's mappings through it and serves
 * their faults.  The task itself only maps the cache's memfd where vm_map
 * places it and tells machd what it maps and unmaps, over the
 * connection, one request and reply at a time.
 *
 * Outside an instance, or when the connection cannot be made, the task
 * is its own kernel (vm_object.h).
 *
 * Every function here but vm_remote_copy expects [V] (which keeps a
 * task's mappings and unmappings in order); each takes the connection's
 * own lock [C] after it, and may take [G] after that.
 */
#ifndef HELL_VM_REMOTE_H
#define HELL_VM_REMOTE_H

#include <mach/kern_return.h>
#include <mach/port.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm_object_range;

/* Whether machd serves this task's objects: in an instance, connected
 * (the first call connects; a failure is told on stderr once, and the
 * task serves its objects itself from then on). */
bool vm_remote_active(void);

/* Asks machd for the object whose pager is PAGER (a kernel-space send
 * right, of which a copy is sent), its cache reaching at least END.
 * Returns KERN_SUCCESS with *HANDLE (machd's reference to the object, to
 * be added or released) and *MEMFD (the cache, the caller's to close),
 * KERN_INVALID_ARGUMENT (no pager) or KERN_RESOURCE_SHORTAGE. */
kern_return_t vm_remote_enter(mach_port_name_t pager, uint64_t end, uint64_t *handle,
                              int *memfd);

/* [START, END) of this task maps HANDLE's cache at OFFSET (the caller
 * mapped it there): machd registers it and serves its faults; HANDLE's
 * reference moves into the mapping, which also takes a reference of its
 * own to PAGER (the object's pager, a kernel-space send right, released
 * when the range is unmapped).  Returns KERN_SUCCESS, or
 * KERN_RESOURCE_SHORTAGE (HANDLE stays the caller's). */
kern_return_t vm_remote_add(uint64_t handle, uint64_t start, uint64_t end, uint64_t offset,
                            mach_port_name_t pager);

/* Lets HANDLE go. */
void vm_remote_release(uint64_t handle);

/* A copy of [OFFSET, OFFSET + SIZE) of HANDLE's object, as it is now, in
 * a new memfd (*MEMFD, the caller's).  Returns KERN_SUCCESS,
 * KERN_MEMORY_ERROR (the pager failed, died or did not answer in time)
 * or KERN_RESOURCE_SHORTAGE.  Expects [V] not held: it waits for the
 * pager, which may be this task. */
kern_return_t vm_remote_copy(uint64_t handle, uint64_t offset, uint64_t size, int *memfd);

/* [START, END) of this task no longer maps what it mapped (the caller
 * unmapped it): the objects mapped there are told. */
void vm_remote_unmap(uint64_t start, uint64_t end);

/* vm_msync of [START, END): the dirty pages of the objects mapped there
 * go back to their pagers (and with INVALIDATE leave the cache).
 * Returns whether the range maps any object. */
bool vm_remote_sync(uint64_t start, uint64_t end, bool invalidate);

/* vm_region's object name at ADDR: when ADDR lies in a range of this
 * task that maps an object through machd, asks machd for a send right to
 * the object's name port (HELL_VM_NAME).  Returns its kernel-space name
 * with a reference the caller owns, or MACH_PORT_NULL (no such range, no
 * name, or the connection failed): a range that maps no object costs no
 * request. */
mach_port_name_t vm_remote_name(uint64_t addr);

/* Appends the ranges of this task that map objects through machd to
 * *RANGES as vm_object_self_ranges does (vm_object.h), each with a new
 * reference to its pager.  Returns false when memory ran short. */
bool vm_remote_ranges_list(struct vm_object_range **ranges, size_t *n, size_t *cap);
/* This task, just made by a task_create with inherited memory whose
 * creator is its own kernel for memory objects, has its objects served
 * by that creator over SOCK (taken over, closed on failure): sends it
 * this task's userfaultfd (HELL_VM_ATTACH).  Returns whether it worked.
 * Expects a single thread. */
bool vm_remote_attach(int sock);
/* Whether this task's objects are served by its creator (it attached,
 * vm_remote_attach), not by machd nor by itself.  Expects no lock. */
bool vm_remote_by_creator_now(void);
/* For a task this one creates with inherited memory, when this one's
 * objects are served by its creator: asks that creator for a connection
 * of the new task's own (HELL_VM_FORK), served from the same cache.
 * Returns it (the new task's end, to hand to vm_remote_attach; the
 * caller's to close), or -1 (not served by a creator, or the creator
 * could not or the connection is lost).  Expects no lock. */
int vm_remote_fork_conn(void);
/* The child side of fork(): the connection and the mappings are the
 * parent's (the child's copies of its mappings are holes).  Expects a
 * single thread. */
void vm_remote_fork_child(void);

#endif
