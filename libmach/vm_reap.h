/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Received regions released off the caller's path.  A region that came
 * out of line to user space as a sealed memfd (ipc_wire.c; the kernel
 * space reads its own from the memfd and releases them at once, on a
 * thread with more to serve: no gain there) is a private mapping of
 * shared memory, whose pages cost Linux more to free than anonymous ones
 * (each leaves the memfd's page cache too): 64 MiB take about 11 ms to
 * unmap and free, where writing them into the memfd took 23 ms and the
 * receiver's touching them 7 ms.  When libmach unmaps such a region
 * whole (vm_deallocate, a message destroyed or moved on), the range is
 * vacated at once, as Mach requires, by moving the mapping elsewhere
 * (mremap: its page tables move, nothing is freed), and a hidden thread
 * unmaps it there, which frees the pages.  The work is the same; it runs
 * on another processor when one is idle, and the memory comes back to
 * Linux a moment later.
 *
 * The sender's close of the memfd it sent costs the same when it is the
 * last reference: the receiver, woken on the sender's processor, took it
 * from the sender at once and was done with the region before the sender
 * ran again.  Such a close goes to the same thread (vm_reap_close).  The
 * thread is a background one (linux_thread_background): woken, it takes
 * no processor from a running thread, and a thread woken where it runs
 * takes the processor from it.
 *
 * A region moved aside is MADV_DONTFORK: a child never inherits one, and
 * forgets those its parent had pending; it closes its copies of the
 * descriptors waiting.  A fork waits for a close under way (the module's
 * own fork handlers), so that these are all the child has.
 *
 * Only regions of VM_REAP_MIN bytes and more are noted, at most
 * VM_REAP_NOTES at once (the oldest note is dropped for a new one: the
 * region is then unmapped in place), and at most
 * VM_REAP_PENDING ranges and descriptors, of VM_REAP_PENDING_BYTES in
 * all, wait for the thread (past that, in place: a releaser never gets
 * ahead of it by more than that much memory).
 *
 * Lock order: the module's lock is a leaf, taken under [G] and [V]
 * alike; vm_maps_find is called without it.  The thread holds a second
 * lock across each close, taken before the first and by nothing else
 * but fork's prepare handler (registered so as to run after libmach's
 * others).
 */
#ifndef HELL_VM_REAP_H
#define HELL_VM_REAP_H

#include <mach/std_types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_REAP_MIN ((size_t)256 * 1024)
#define VM_REAP_NOTES 64
#define VM_REAP_PENDING 32
#define VM_REAP_PENDING_BYTES ((size_t)256 << 20)

/* Notes that [ADDR, ADDR + SIZE) (ADDR page-aligned) was just mapped,
 * whole and private, from the memfd whose inode is INO, as a received
 * region.  Does nothing for a region under VM_REAP_MIN bytes.  Needs no
 * lock. */
void vm_reap_note(void *addr, size_t size, uint64_t ino);

/* [START, END) (page-aligned) is about to be unmapped by libmach.  When
 * it is exactly a noted region, still that mapping (Linux's maps say),
 * vacates it and leaves the unmapping to the hidden thread: returns true,
 * and the caller must not unmap.  Otherwise forgets the notes of regions
 * that meet the range and returns false: the caller unmaps.  Needs no
 * lock. */
bool vm_reap_unmap(vm_address_t start, vm_address_t end);

/* Closes FD (ignored when negative), a memfd of SIZE bytes whose pages
 * its last reference frees: a region's sealed copy, once the message
 * carrying it is sent.  At VM_REAP_MIN bytes and more, the hidden thread
 * closes it, after what was queued before; smaller, or past the queue's
 * limits, it is closed at once.  Needs no lock. */
void vm_reap_close(int fd, size_t size);

/* The child side of fork(): forgets the notes and the parent's pending
 * regions (never inherited) and its thread, and closes its copies of the
 * descriptors that were waiting (all it has of those given to
 * vm_reap_close).  Single-threaded. */
void vm_reap_fork_child(void);

#endif
