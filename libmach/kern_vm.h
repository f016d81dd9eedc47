/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the VM calls' files (kern_vm*.c) share.
 */
#ifndef HELL_KERN_VM_H
#define HELL_KERN_VM_H

#include <mach/kern_return.h>
#include <mach/message.h>
#include <mach/vm_inherit.h>
#include <mach/vm_prot.h>
#include <mach/std_types.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>

/* Whether TASK, a kernel-space name, is this task's port (a call on any
 * other port gets KERN_INVALID_ARGUMENT, as GNU Mach's null map, or
 * KERN_INVALID_TASK where GNU Mach says so).  Expects no lock. */
bool kern_vm_task_ok(mach_port_t task);

/* The pages of [ADDRESS, ADDRESS + SIZE) clipped to the user range, in
 * [*START, *END), as GNU Mach rounds a range.  Returns false when the
 * range is empty (a wrap-around makes it so, as in GNU Mach). */
bool kern_vm_range(vm_address_t address, vm_size_t size, vm_address_t *start,
                   vm_address_t *end);

/* What is wrong with [START, START + SIZE) for ACCESS, in the order GNU
 * Mach finds it walking the range: a hole (or an unmapped start) is
 * KERN_INVALID_ADDRESS, a page without ACCESS KERN_PROTECTION_FAILURE,
 * whichever comes first; KERN_RESOURCE_SHORTAGE when the maps cannot be
 * read.  Returns KERN_SUCCESS when all is well. */
kern_return_t kern_vm_check_range(vm_address_t start, vm_size_t size, vm_prot_t access);

/* Maps LEN bytes (a page multiple) of zeros, readable and writable, at
 * HINT exactly when FIXED (never replacing a mapping), else anywhere:
 * movable (vm_movable.h) when large enough, else anonymous.  Returns the
 * address, or MAP_FAILED with errno set (EEXIST: the place is taken). */
void *kern_vm_zeros(void *hint, size_t len, bool fixed);

/* Unmaps the pages of [ADDR, ADDR + SIZE) (rounded out) for libmach, an
 * out-of-line region moved or destroyed, forgetting what libmach keeps
 * on them (movable regions, attributes; not the records of memory object
 * mappings, which need [V], taken before [G]).  The range is free on
 * return; a large received region is freed by a hidden thread
 * (vm_reap.h).  May be called with [G]. */
void kern_vm_unmap(const void *addr, size_t size);

/* vm_deallocate of [ADDRESS, ADDRESS + SIZE) in this task, as GNU Mach
 * rounds and clips it (an empty range does nothing).  Expects no lock. */
void kern_vm_release(vm_address_t address, vm_size_t size);

/* Serves HELL's own request that machd sends a task's port to wire the
 * task's memory (kern_vm_attr.c: vm_wire and vm_wire_all through the
 * privileged host port, which machd serves); FALSE for any other
 * message.  Expects no lock. */
boolean_t kern_wire_forward_server(mach_msg_header_t *in, mach_msg_header_t *out);

/* Serves HELL's own request that the server of the privileged host port
 * sends a task's port for vm_pages_phys and vm_allocate_contiguous on
 * that task's memory (kern_vm_phys.c); FALSE for any other message.
 * Expects no lock. */
boolean_t kern_vm_phys_forward_server(mach_msg_header_t *in, mach_msg_header_t *out);

/* The part of task_create with inherited memory (and of hell_fork) that
 * gives the new task its creator's mappings of memory objects
 * (kern_vm_inherit.c): fork() leaves them holes (MADV_DONTFORK), and
 * each is mapped again here as its inheritance says: SHARE the object
 * itself, COPY a copy of it as the creator sees it, NONE nothing.  The
 * creator lists them before it forks (kern_vm_inherit_prepare); the new
 * task, whose memory holds the list, gets the pagers' rights on the
 * handshake socket and maps each (kern_vm_inherit_child).  Both share
 * one cache: machd's in an instance, else the creator's, which then
 * serves the new task's objects (vm_server.h). */
struct kern_vm_inherit {
    struct kern_vm_inherit_piece *pieces; /* malloc'd */
    size_t npieces;
    bool serve; /* the creator is the new task's kernel for objects */
    /* With SERVE: the creator's end, the new task's.  When the creator's
     * own creator serves the objects given: -1, and the new task's end of
     * a connection that one made for it (vm_remote_fork_conn). */
    int vm_sock[2];
};
/* Lists this task's mappings of objects to give a new task in *INH,
 * holding a reference to each pager, and gets the new task's connection
 * to the cache that serves them (outside an instance: a socket pair with
 * SERVE, else one asked of this task's own server).  Returns false when
 * resources ran short or the connection could not be had (*INH empty
 * then).  Expects no lock. */
bool kern_vm_inherit_prepare(struct kern_vm_inherit *inh);
/* The creator's side after fork(): sends the pagers' rights on FD (the
 * handshake socket) and, with SERVE, starts serving the new task (its
 * end of the pair closed here).  Returns false when that failed (the
 * new task then fails too).  Expects no lock. */
bool kern_vm_inherit_parent(struct kern_vm_inherit *inh, int fd);
/* The new task's side: takes every pager's right, then maps each piece
 * (a mapping may ask the creator, which sends all the rights before it
 * serves).  Returns false when one could
 * not be mapped (the task must then end).  Expects a single thread and
 * no lock. */
bool kern_vm_inherit_child(struct kern_vm_inherit *inh, int fd);
/* Releases what *INH holds (the creator's; the new task's copy is let
 * go by kern_vm_inherit_child).  Expects no lock. */
void kern_vm_inherit_free(struct kern_vm_inherit *inh);
struct vm_object_range;
/* The ranges of this task that map objects (vm_object.h), in a new array
 * (*RANGES), each holding a reference to its pager: the first *NLOCAL
 * from this task's own cache, the rest from machd's.  Returns false when
 * memory ran short (nothing then held).  Expects no lock. */
bool kern_vm_object_ranges(struct vm_object_range **ranges, size_t *n, size_t *nlocal);
/* Releases what kern_vm_object_ranges gave.  Expects no lock. */
void kern_vm_object_ranges_free(struct vm_object_range *ranges, size_t n);
/* Maps [AT, AT + LEN) of this task at that very address to the object
 * of PAGER (a kernel-space send right, consumed) at OFFSET, a copy with
 * COPY, with the protections and inheritance given.  Returns
 * KERN_SUCCESS or what vm_map would.  Expects no lock. */
kern_return_t kern_vm_map_fixed_object(vm_address_t at, vm_size_t len, mach_port_name_t pager,
                                       vm_offset_t offset, bool copy, vm_prot_t cur,
                                       vm_prot_t max, vm_inherit_t inherit);

/* The Linux protection of the Mach protection PROT. */
static inline int kern_vm_linux_prot(vm_prot_t prot)
{
    return ((prot & VM_PROT_READ) ? PROT_READ : 0) | ((prot & VM_PROT_WRITE) ? PROT_WRITE : 0) |
           ((prot & VM_PROT_EXECUTE) ? PROT_EXEC : 0);
}

#endif
