/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Physical memory as Linux lets a process see and get it: the frame of
 * each of its pages (/proc/self/pagemap, whose frame numbers Linux gives
 * only to a reader with CAP_SYS_ADMIN and reads as 0 to others), and
 * physically contiguous memory, which Linux does not promise: a page is
 * contiguous by itself, a transparent huge page is 2 MiB of it, and huge
 * pages that happen to follow each other are joined.
 *
 * Locked pages stay in memory, but Linux may still move them: compaction
 * moves them when vm.compact_unevictable_allowed is 1, and a write after
 * fork() copies a page shared with the child.
 *
 * Needs no lock; thread-safe.
 */
#ifndef HELL_VM_PHYS_H
#define HELL_VM_PHYS_H

#include <mach/kern_return.h>
#include <mach/std_types.h> /* (rpc_phys_addr_t too) */
#include <stddef.h>

/* The physical addresses of the N pages from ADDRESS (wrapping past the
 * top as GNU Mach's loop does) into OUT: 0 for a page not in memory,
 * nothing mapped there, or beyond the user range.  Faults nothing in.
 * Returns KERN_SUCCESS; KERN_NO_ACCESS when a page is in memory but Linux
 * hides its frame (no CAP_SYS_ADMIN); KERN_RESOURCE_SHORTAGE when pagemap
 * cannot be opened (no descriptor to spare). */
kern_return_t vm_phys_read(vm_address_t address, size_t n, rpc_phys_addr_t *out);

/* Maps LEN bytes (a page multiple, not 0, at most the user range) of
 * zeros, readable and writable, locked (mlock), whose pages are
 * physically contiguous and end at or below PMAX.  Returns KERN_SUCCESS
 * with the mapping at *START (the caller's) and its physical address at
 * *PADDR; KERN_RESOURCE_SHORTAGE when no memory Linux gives (or lets this
 * process lock) fits, after a few tries; KERN_NO_ACCESS as vm_phys_read.
 * For a moment it may hold up to four times LEN, in 2 MiB pages. */
kern_return_t vm_phys_alloc_contiguous(vm_size_t len, rpc_phys_addr_t pmax, vm_address_t *start,
                                       rpc_phys_addr_t *paddr);

#endif
