/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The task's system call emulation vector (mach.defs:
 * task_get_emulation_vector 2009, task_set_emulation_vector 2010,
 * task_set_emulation 2070): entry points for system call numbers, kept
 * as GNU Mach keeps them.  The vector covers [start, start + count);
 * setting entries outside it grows it to cover both ranges (the new
 * entries zero).  HELL records the vector and reports it; it dispatches
 * nothing through it (a task's system calls are Linux's).  A task made
 * by fork has its creator's vector, as GNU Mach's children share it.
 */
#include <mach.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "mach.server.h"

/* GNU Mach's answer for a port that is no task (kern/syscall_emulation.h):
 * err_kern | err_sub(2) | 1. */
#define EML_BAD_TASK ((kern_return_t)0x04008001)

/* HELL's bound on the entries a vector covers (GNU Mach's is the kernel
 * heap): past it, KERN_RESOURCE_SHORTAGE. */
#define KERN_EMULATION_MAX (1 << 20)

/* [G] The vector: COUNT entries for numbers START .. START + COUNT - 1;
 * none until first set. */
static struct {
    bool set;
    int64_t start;
    size_t count;
    vm_offset_t *entries;
} kern_emulation;

/* Makes the vector cover [START, START + COUNT) as well.  Returns
 * KERN_SUCCESS or KERN_RESOURCE_SHORTAGE.  Expects [G]. */
static kern_return_t kern_emulation_cover(int64_t start, size_t count)
{
    int64_t lo = start, hi = start + (int64_t)count;
    if (kern_emulation.set) {
        int64_t old_hi = kern_emulation.start + (int64_t)kern_emulation.count;
        if (kern_emulation.start <= lo && hi <= old_hi) {
            return KERN_SUCCESS;
        }
        lo = lo < kern_emulation.start ? lo : kern_emulation.start;
        hi = hi > old_hi ? hi : old_hi;
    }
    if (hi - lo > KERN_EMULATION_MAX) {
        return KERN_RESOURCE_SHORTAGE;
    }
    vm_offset_t *entries = NULL;
    if (hi > lo && (entries = calloc((size_t)(hi - lo), sizeof *entries)) == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    if (kern_emulation.count > 0) {
        memcpy(&entries[kern_emulation.start - lo], kern_emulation.entries,
               kern_emulation.count * sizeof *entries);
    }
    free(kern_emulation.entries);
    kern_emulation.entries = entries;
    kern_emulation.start = lo;
    kern_emulation.count = (size_t)(hi - lo);
    kern_emulation.set = true;
    return KERN_SUCCESS;
}

/* Sets entries START .. START + COUNT - 1 to VECTOR's.  Expects [G]. */
static kern_return_t kern_emulation_set(int64_t start, const vm_offset_t *vector, size_t count)
{
    kern_return_t kr = kern_emulation_cover(start, count);
    if (kr == KERN_SUCCESS && count > 0) {
        memcpy(&kern_emulation.entries[start - kern_emulation.start], vector,
               count * sizeof *vector);
    }
    return kr;
}

kern_return_t kern_task_set_emulation_vector(mach_port_t task, int vector_start,
                                             emulation_vector_t vector,
                                             mach_msg_type_number_t count)
{
    ipc_lock();
    kern_return_t kr = kern_is_task(task) ? kern_emulation_set(vector_start, vector, count)
                                          : EML_BAD_TASK;
    ipc_unlock();
    if (kr == KERN_SUCCESS && count > 0) {
        wire_region_release(vector, count * sizeof *vector); /* now the kernel's */
    }
    return kr;
}

kern_return_t kern_task_set_emulation(mach_port_t task, vm_address_t routine_entry_pt,
                                      int routine_number)
{
    vm_offset_t entry = routine_entry_pt;
    ipc_lock();
    kern_return_t kr = kern_is_task(task) ? kern_emulation_set(routine_number, &entry, 1)
                                          : EML_BAD_TASK;
    ipc_unlock();
    return kr;
}

kern_return_t kern_task_get_emulation_vector(mach_port_t task, int *vector_start,
                                             emulation_vector_t *vector,
                                             mach_msg_type_number_t *count)
{
    ipc_lock();
    if (!kern_is_task(task)) {
        ipc_unlock();
        return EML_BAD_TASK;
    }
    size_t n = kern_emulation.count;
    *vector_start = kern_emulation.set ? (int)kern_emulation.start : 0;
    *count = 0;
    kern_return_t kr = kern_array_alloc(n, sizeof **vector, (void **)vector);
    if (kr == KERN_SUCCESS && n > 0) {
        memcpy(*vector, kern_emulation.entries, n * sizeof **vector);
        *count = (mach_msg_type_number_t)n;
    }
    ipc_unlock();
    return kr;
}
