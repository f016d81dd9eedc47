/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What Mach keeps on ranges of a task's address space that Linux does
 * not: the maximum protection and the inheritance.  Linux says what is
 * mapped and its current protection (/proc/self/maps, mprotect); this
 * table holds only the ranges whose attributes differ from the defaults
 * (maximum VM_PROT_ALL; inheritance VM_INHERIT_COPY, or SHARE for a
 * mapping Linux shares), sorted and page aligned.
 *
 * Every function here expects vm_attr_lock held.
 */
#ifndef HELL_VM_ATTR_H
#define HELL_VM_ATTR_H

#include <mach/vm_inherit.h>
#include <mach/vm_prot.h>
#include <mach/std_types.h>
#include <stdbool.h>
#include <stddef.h>

/* The inheritance of a page nobody set: the mapping's own (COPY for a
 * private mapping, SHARE for a shared one). */
#define VM_ATTR_INHERIT_UNSET ((vm_inherit_t)-1)

/* The attributes of one page. */
struct vm_attr {
    vm_prot_t max_protection;
    vm_inherit_t inheritance; /* or VM_ATTR_INHERIT_UNSET */
};

void vm_attr_lock(void);
void vm_attr_unlock(void);

/* The attributes at ADDR in *ATTR, and the end of the run of pages from
 * ADDR that share them (at most LIMIT). */
vm_address_t vm_attr_get(vm_address_t addr, vm_address_t limit, struct vm_attr *attr);

/* Sets the maximum protection of [START, END) to MAX.  Returns false when
 * out of memory (nothing changed). */
bool vm_attr_set_max(vm_address_t start, vm_address_t end, vm_prot_t max);

/* Sets the inheritance of [START, END).  Returns false when out of memory
 * (nothing changed). */
bool vm_attr_set_inheritance(vm_address_t start, vm_address_t end, vm_inherit_t inheritance);

/* [START, END) is no longer mapped: back to the defaults. */
void vm_attr_clear(vm_address_t start, vm_address_t end);

/* [ADDR, ADDR + SIZE) (pages rounded out) is being unmapped by libmach
 * (an out-of-line region moved or destroyed): forgets its attributes.
 * Takes and releases vm_attr_lock; may be called with ipc_lock held
 * (never the other way round). */
void vm_attr_forget(const void *addr, size_t size);

/* The child side of fork(): the parent's attributes hold in the child
 * (it inherited the mappings), except where the inheritance was NONE:
 * those ranges are gone.  Single-threaded. */
void vm_attr_fork_child(void);

#endif
