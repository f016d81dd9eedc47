/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Movable regions: memory that vm_allocate gives a memfd of its own, so
 * that moving the whole region out of line passes its pages, not a copy
 * of them (GNU Mach's page-list move).  Linux sees a shared mapping of the
 * memfd; Mach sees an ordinary private region (inheritance COPY).
 *
 * A region stays a shared mapping, with its own memfd, for as long as it
 * lives, whatever vm_protect or a partial vm_deallocate does to it (the
 * pages deallocated are punched out of the memfd); only then is it
 * private memory for Linux too:
 *   - moved whole, as vm_allocate made it (ipc_wire.c): its memfd is
 *     sealed and goes to the receiver, and the sender's range, a
 *     copy-on-write view until the message is sent, is unmapped;
 *   - at fork: a private mapping of the memfd in parent and child, each
 *     copy-on-write (Mach's COPY; pages the parent rewrites are then held
 *     twice until the region goes, where GNU Mach frees the old ones once
 *     the child is gone).  A fork that execs skips this;
 *   - at vm_wire, made private the same way; at vm_inherit SHARE, the
 *     part shared stays shared for good, the rest is made private.
 * Every remapping keeps the pages set VM_INHERIT_NONE out of children.
 * A copy sent out of line is an ordinary copy.
 *
 * Shared memory costs Linux about twice what anonymous memory does to
 * fault in and free, so only regions of VM_MOVABLE_MIN bytes and more are
 * made movable, at most VM_MOVABLE_MAX at once (each holds a descriptor),
 * and only while their descriptors stay in the lowest quarter of
 * RLIMIT_NOFILE, leaving the rest to ports.  Plain Linux calls on such
 * a region behave as on shared memory (MADV_DONTNEED keeps the data).
 *
 * Lock order: the table's lock is taken under [G], [V] and vm_attr_lock
 * alike; under it only vm_maps_find's own lock is taken.  The fork
 * handler and the calls that remap take vm_attr_lock first.
 */
#ifndef HELL_VM_MOVABLE_H
#define HELL_VM_MOVABLE_H

#include <mach/std_types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_MOVABLE_MIN ((size_t)64 * 1024)
#define VM_MOVABLE_MAX 256

/* Makes [P, P + LEN), a fresh anonymous mapping of zeros, readable and
 * writable, that no one has touched yet, a movable region when it can
 * (large enough, a descriptor to spare).  Either way the memory is the
 * caller's as it was: placed, and charged by Linux, as anonymous memory. */
void vm_movable_adopt(void *p, size_t len);

/* [START, END) is about to be unmapped by libmach: the regions within it
 * are forgotten, the pages of those it cuts punched out of their memfds.
 * Call before the munmap, so that the range cannot be mapped anew in
 * between. */
void vm_movable_unmap(vm_address_t start, vm_address_t end);

/* [START, END) is set VM_INHERIT_SHARE: what the regions that meet it
 * have there stays shared, the rest of them is made private (a private
 * mapping of the memfd, as at fork); all are forgotten.  Expects no
 * vm_attr_lock (it takes it). */
void vm_movable_share(vm_address_t start, vm_address_t end);

/* The regions that meet [START, END) are made private and forgotten
 * (vm_wire: a region is locked where it will stay; mlock then copies the
 * writable pages out of the memfd, whose own stay until the region
 * goes).  Expects no vm_attr_lock (it takes it). */
void vm_movable_unshare(vm_address_t start, vm_address_t end);

/* Whether [START, END), mapping the file of inode INO, lies in a movable
 * region: a shared mapping for Linux that is private for Mach. */
bool vm_movable_holds(vm_address_t start, vm_address_t end, uint64_t ino);

/* The region of SIZE bytes at ADDR is being moved out of line: when it is
 * a whole movable region, as vm_allocate made it, returns its memfd,
 * sealed against writing, growing and shrinking, which the caller then
 * owns, and leaves a private copy-on-write view of it in its place, for
 * the caller to unmap once the message is sent (or keep, the send
 * failed).  Returns -1 when the region must be copied (not movable, cut
 * or changed, or its pages held elsewhere).  May wait for the seal:
 * call without [G]. */
int vm_movable_take(void *addr, size_t size);

/* fork() handlers: before it, every movable region becomes private (so
 * that parent and child each get a copy-on-write view, Mach's COPY) and
 * the table stays locked until the fork is done, so that no region is
 * made meanwhile.  When the calling thread said the child will exec
 * (vm_movable_exec_follows), the regions are left as they are. */
void vm_movable_fork_prepare(void);
void vm_movable_fork_parent(void);
void vm_movable_fork_child(void);

/* Tells the fork handlers whether the calling thread's next fork() is
 * followed by an exec in the child (true before, false after it). */
void vm_movable_exec_follows(bool exec);

#endif
