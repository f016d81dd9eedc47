/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Movable regions: memory that vm_allocate gives a memfd of its own, so
 * that sending the whole region out of line passes its pages, not a copy
 * of them (GNU Mach's page-list move).  Linux sees a shared mapping of the
 * memfd; Mach sees an ordinary private region (inheritance COPY).
 *
 * A region stays movable while it is exactly as vm_allocate made it: any
 * call that would split it or change what Linux must know of it
 * (vm_protect, vm_inherit, a partial vm_deallocate, fork) first makes it
 * private: a private mapping of the same memfd, copy-on-write, with no
 * copy made.  Its first send out of line makes it private too (the
 * sender keeps a copy-on-write view, which a move then unmaps) and seals
 * the memfd, which goes to the receiver (ipc_wire.c): no copy at all,
 * whether the region is moved or copied.
 *
 * Shared memory costs Linux about twice what anonymous memory does to
 * fault in and free, so only regions of VM_MOVABLE_MIN bytes and more are
 * made movable, and at most VM_MOVABLE_MAX at once (each holds a
 * descriptor).
 *
 * Lock order: the table's lock is taken under [G], [V] and vm_attr_lock
 * alike; under it only vm_maps_find's own lock is taken.
 */
#ifndef HELL_VM_MOVABLE_H
#define HELL_VM_MOVABLE_H

#include <mach/std_types.h>
#include <stdbool.h>
#include <stddef.h>

#define VM_MOVABLE_MIN ((size_t)64 * 1024)
#define VM_MOVABLE_MAX 256

/* Maps LEN bytes (a page multiple, at least VM_MOVABLE_MIN) of zeros,
 * readable and writable, as a movable region: at HINT exactly when FIXED
 * (MAP_FIXED_NOREPLACE), else anywhere.  Returns the address, or
 * MAP_FAILED with errno set by mmap; NULL when no movable region can be
 * made (no descriptor, the table full): the caller maps anonymous memory
 * instead. */
void *vm_movable_map(void *hint, size_t len, bool fixed);

/* [START, END) is about to be unmapped (vm_deallocate): the regions
 * within it are forgotten, those it cuts made private first.  Call before
 * the munmap, so that the range cannot be mapped anew in between. */
void vm_movable_unmap(vm_address_t start, vm_address_t end);

/* The regions that meet [START, END) become private: call before a call
 * changes their protection or inheritance. */
void vm_movable_privatize(vm_address_t start, vm_address_t end);

/* The regions that meet [START, END) become what Linux says they are,
 * shared (vm_inherit SHARE): forgotten, mappings unchanged. */
void vm_movable_share(vm_address_t start, vm_address_t end);

/* Whether [START, END) lies in a movable region (a shared mapping for
 * Linux that is private for Mach: vm_region). */
bool vm_movable_holds(vm_address_t start, vm_address_t end);

/* The region of SIZE bytes at ADDR is being sent out of line: when it is
 * a whole movable region, as vm_allocate made it, returns its memfd,
 * sealed against writing, growing and shrinking, which the caller then
 * owns, and leaves a private copy-on-write view of it in its place (which
 * a move unmaps once sent, as any region moved).  Returns -1 when the
 * region must be copied (not movable, changed behind libmach's back, or
 * its memfd mapped writable elsewhere). */
int vm_movable_take(void *addr, size_t size);

/* fork() handlers: before it, every movable region becomes private (so
 * that parent and child each get a copy-on-write view, Mach's COPY) and
 * the table stays locked until the fork is done, so that no region is
 * made meanwhile. */
void vm_movable_fork_prepare(void);
void vm_movable_fork_parent(void);
void vm_movable_fork_child(void);

#endif
