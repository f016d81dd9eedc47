/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What Linux says of this process's address space: /proc/self/maps read
 * one mapping at a time, limited to the Mach user range.
 */
#ifndef HELL_VM_MAPS_H
#define HELL_VM_MAPS_H

#include <mach/vm_prot.h>
#include <mach/std_types.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* GNU Mach's x86_64 user range (machine/vm_param.h). */
#define VM_MAPS_USER_MIN ((vm_address_t)0)
#define VM_MAPS_USER_MAX ((vm_address_t)0x800000000000ull)

/* One mapping. */
struct vm_maps_entry {
    vm_address_t start, end;
    vm_prot_t protection; /* VM_PROT_* */
    bool shared;          /* MAP_SHARED */
    vm_offset_t offset;   /* in its file, 0 when anonymous */
    uint64_t inode;       /* its file's, 0 when anonymous */
};

/* A reading of the maps. */
struct vm_maps {
    FILE *file;
};

/* Opens the maps.  Returns false when they cannot be read. */
bool vm_maps_open(struct vm_maps *maps);

/* The next mapping of the user range in *ENTRY.  Returns false at the
 * end. */
bool vm_maps_next(struct vm_maps *maps, struct vm_maps_entry *entry);

void vm_maps_close(struct vm_maps *maps);

/* The first mapping that ends above ADDR in *ENTRY.  Returns false when
 * there is none (or the maps cannot be read).  One query of Linux (about
 * 0.4 us) where the kernel has PROCMAP_QUERY (6.11), else a reading of
 * the maps up to ADDR.  Thread-safe. */
bool vm_maps_find(vm_address_t addr, struct vm_maps_entry *entry);

/* True when [START, END) is exactly one mapping, of the file with inode
 * INO from its offset 0; that mapping is then in *ENTRY (so the caller can
 * test its sharing and protection).  One vm_maps_find.  Thread-safe. */
bool vm_maps_find_whole(vm_address_t start, vm_address_t end, uint64_t ino,
                        struct vm_maps_entry *entry);

/* The child side of fork(): forgets the parent's descriptor.
 * Single-threaded. */
void vm_maps_fork_child(void);

#endif
