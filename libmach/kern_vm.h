/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the VM calls' files (kern_vm*.c) share.
 */
#ifndef HELL_KERN_VM_H
#define HELL_KERN_VM_H

#include <mach/kern_return.h>
#include <mach/message.h>
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
 * mappings, which need [V], taken before [G]).  May be called with
 * [G]. */
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

/* The Linux protection of the Mach protection PROT. */
static inline int kern_vm_linux_prot(vm_prot_t prot)
{
    return ((prot & VM_PROT_READ) ? PROT_READ : 0) | ((prot & VM_PROT_WRITE) ? PROT_WRITE : 0) |
           ((prot & VM_PROT_EXECUTE) ? PROT_EXEC : 0);
}

#endif
