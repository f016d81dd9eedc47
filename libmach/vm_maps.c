/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vm_maps.h"

#include <inttypes.h>

bool vm_maps_open(struct vm_maps *maps)
{
    maps->file = fopen("/proc/self/maps", "re");
    return maps->file != NULL;
}

bool vm_maps_next(struct vm_maps *maps, struct vm_maps_entry *entry)
{
    char line[512];
    while (fgets(line, sizeof line, maps->file) != NULL) {
        uint64_t start, end, offset;
        char perms[5];
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64, &start, &end, perms,
                   &offset) != 4) {
            continue;
        }
        if (start >= VM_MAPS_USER_MAX) {
            return false; /* the vsyscall page and the like: not Mach's */
        }
        *entry = (struct vm_maps_entry){
            .start = start,
            .end = end < VM_MAPS_USER_MAX ? end : VM_MAPS_USER_MAX,
            .protection = (perms[0] == 'r' ? VM_PROT_READ : 0) |
                          (perms[1] == 'w' ? VM_PROT_WRITE : 0) |
                          (perms[2] == 'x' ? VM_PROT_EXECUTE : 0),
            .shared = perms[3] == 's',
            .offset = offset,
        };
        return true;
    }
    return false;
}

void vm_maps_close(struct vm_maps *maps)
{
    fclose(maps->file);
}

bool vm_maps_find(vm_address_t addr, struct vm_maps_entry *entry)
{
    struct vm_maps maps;
    if (!vm_maps_open(&maps)) {
        return false;
    }
    bool found = false;
    while (!found && vm_maps_next(&maps, entry)) {
        found = entry->end > addr;
    }
    vm_maps_close(&maps);
    return found;
}
