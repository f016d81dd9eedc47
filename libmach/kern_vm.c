/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mach.defs' calls that make, free and copy memory: vm_allocate,
 * vm_deallocate, vm_read, vm_write and vm_copy, served by the task that
 * owns the memory (its own calls inline, another task's through its
 * service thread: so they work on any task whose port one holds).
 * Attributes are in kern_vm_attr.c, vm_map in kern_vm_map.c.
 *
 * A port that is no task port gives KERN_INVALID_ARGUMENT, as GNU Mach's
 * null map does.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "kern_vm.h"
#include "mach.server.h"
#include "vm_attr.h"
#include "vm_fault.h"
#include "vm_remote.h"
#include "vm_maps.h"
#include "vm_movable.h"
#include "vm_reap.h"


bool kern_vm_task_ok(mach_port_t task)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    return ok;
}

bool kern_vm_range(vm_address_t address, vm_size_t size, vm_address_t *start,
                   vm_address_t *end)
{
    vm_address_t s = address & ~(vm_address_t)4095;
    vm_address_t e = address + size;
    if (e < address) {
        return false;
    }
    e = (e + 4095) & ~(vm_address_t)4095;
    if (e == 0 || e > VM_MAPS_USER_MAX) {
        e = VM_MAPS_USER_MAX;
    }
    *start = s;
    *end = e;
    return s < e;
}

void *kern_vm_zeros(void *hint, size_t len, bool fixed)
{
    /* Placed and charged as anonymous memory, whatever it becomes. */
    void *p = mmap(hint, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED_NOREPLACE : 0), -1, 0);
    if (p != MAP_FAILED) {
        vm_movable_adopt(p, len);
    }
    return p;
}

void kern_vm_unmap(const void *addr, size_t size)
{
    vm_address_t start = (vm_address_t)addr & ~(vm_address_t)4095;
    vm_address_t end = ((vm_address_t)addr + size + 4095) & ~(vm_address_t)4095;
    if (size == 0 || end <= start) {
        return;
    }
    vm_movable_unmap(start, end);
    if (!vm_reap_unmap(start, end)) {
        (void)munmap((void *)start, end - start);
    }
    vm_attr_forget((void *)start, end - start);
}

kern_return_t kern_vm_allocate(mach_port_t target_task, vm_address_t *address,
                               vm_size_t size, boolean_t anywhere)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    if (size == 0) {
        *address = 0;
        return KERN_SUCCESS;
    }
    vm_size_t len = (size + 4095) & ~(vm_size_t)4095;
    if (len == 0) {
        return KERN_INVALID_ARGUMENT; /* rounds past the top */
    }
    void *hint = NULL;
    if (!anywhere) {
        vm_address_t start = *address & ~(vm_address_t)4095;
        if (start + len < start || start + len > VM_MAPS_USER_MAX) {
            return KERN_INVALID_ADDRESS;
        }
        *address = start;
        hint = (void *)start;
    }
    void *p = kern_vm_zeros(hint, len, !anywhere);
    if (p == MAP_FAILED) {
        /* Taken (EEXIST), or below what Linux lets a process map
         * (vm.mmap_min_addr): no room there, as GNU Mach would say. */
        return errno == EEXIST || errno == EPERM ? KERN_NO_SPACE : KERN_RESOURCE_SHORTAGE;
    }
    *address = (vm_address_t)p;
    return KERN_SUCCESS;
}

/* GNU Mach removes what is mapped in the pages of the range, clipped to
 * the user range, and always succeeds (holes and all). */
kern_return_t kern_vm_deallocate(mach_port_t target_task, vm_address_t address,
                                 vm_size_t size)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    kern_vm_release(address, size);
    return KERN_SUCCESS;
}

void kern_vm_release(vm_address_t address, vm_size_t size)
{
    vm_address_t start, end;
    if (size != 0 && kern_vm_range(address, size, &start, &end)) {
        /* Under [V]: a vm_map cannot take the range between the unmapping
         * and the mappings' records going. */
        vm_lock();
        kern_vm_unmap((void *)start, end - start);
        struct vm_space *space = vm_space_self_if_any();
        if (space != NULL) {
            vm_space_unmap(space, start, end);
        }
        vm_remote_unmap(start, end);
        vm_unlock();
    }
}

/* Whether every page of [ADDRESS, ADDRESS + SIZE) is mapped. */
static bool kern_vm_mapped(vm_address_t address, vm_size_t size)
{
    vm_address_t start = address & ~(vm_address_t)4095;
    vm_address_t end = (address + size + 4095) & ~(vm_address_t)4095;
    unsigned char vec;
    for (vm_address_t p = start; p < end; p += 4096) {
        if (mincore((void *)p, 4096, &vec) != 0) {
            return false;
        }
    }
    return true;
}

/* Copies within this task with the pages' protections enforced (the
 * kernel refuses a read of an unreadable page or a write to a read-only
 * one, where a plain memcpy would fault): process_vm_readv/writev on our
 * own process. */
static kern_return_t kern_vm_copy_checked(void *to, const void *from, vm_size_t size,
                                          bool writing, vm_address_t target)
{
    struct iovec local = {.iov_base = writing ? (void *)from : to, .iov_len = size};
    struct iovec remote = {.iov_base = (void *)target, .iov_len = size};
    ssize_t n = writing ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
                        : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (n == (ssize_t)size) {
        return KERN_SUCCESS;
    }
    if (!kern_vm_mapped(target, size)) {
        return KERN_INVALID_ADDRESS;
    }
    return KERN_PROTECTION_FAILURE;
}

kern_return_t kern_vm_read(mach_port_t target_task, vm_address_t address, vm_size_t size,
                           vm_offset_t *data, mach_msg_type_number_t *count)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    /* GNU Mach reads whole pages. */
    if (address & 4095 || size & 4095) {
        return KERN_INVALID_ARGUMENT;
    }
    if (size == 0) {
        *data = 0;
        *count = 0;
        return KERN_SUCCESS;
    }
    /* Movable when large: the reply passes it on with no second copy. */
    void *copy = kern_vm_zeros(NULL, size, false);
    if (copy == MAP_FAILED) {
        return KERN_RESOURCE_SHORTAGE;
    }
    kern_return_t kr = kern_vm_copy_checked(copy, NULL, size, false, address);
    if (kr != KERN_SUCCESS) {
        kern_vm_unmap(copy, size);
        return kr;
    }
    *data = (vm_offset_t)copy;
    *count = (mach_msg_type_number_t)size;
    return KERN_SUCCESS;
}

kern_return_t kern_vm_write(mach_port_t target_task, vm_address_t address, vm_offset_t data,
                            mach_msg_type_number_t count)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    if (address & 4095 || count & 4095) {
        return KERN_INVALID_ARGUMENT;
    }
    kern_return_t kr = count == 0 ? KERN_SUCCESS
                                  : kern_vm_copy_checked(NULL, (const void *)data, count, true,
                                                         address);
    /* The request's region is ours once the call succeeded (MIG leaves it
     * to the routine). */
    if (kr == KERN_SUCCESS && count > 0) {
        wire_region_release((void *)data, count);
    }
    return kr;
}

kern_return_t kern_vm_check_range(vm_address_t start, vm_size_t size, vm_prot_t access)
{
    struct vm_maps maps;
    if (!vm_maps_open(&maps)) {
        return KERN_RESOURCE_SHORTAGE;
    }
    vm_address_t end = start + size, at = start;
    kern_return_t kr = KERN_SUCCESS;
    struct vm_maps_entry m;
    while (kr == KERN_SUCCESS && at < end && vm_maps_next(&maps, &m)) {
        if (m.end <= at) {
            continue;
        }
        if (m.start > at) {
            kr = KERN_INVALID_ADDRESS;
        } else if ((access & ~m.protection) != 0) {
            kr = KERN_PROTECTION_FAILURE;
        }
        at = m.end;
    }
    vm_maps_close(&maps);
    return kr == KERN_SUCCESS && at < end ? KERN_INVALID_ADDRESS : kr;
}

kern_return_t kern_vm_copy(mach_port_t target_task, vm_address_t source_address,
                           vm_size_t size, vm_address_t dest_address)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    if (size == 0) {
        return KERN_SUCCESS;
    }
    if (source_address + size < source_address || source_address + size > VM_MAPS_USER_MAX) {
        return KERN_INVALID_ADDRESS;
    }
    kern_return_t kr = kern_vm_check_range(source_address, size, VM_PROT_READ);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    if ((source_address | size | dest_address) & 4095) {
        return KERN_INVALID_ARGUMENT;
    }
    if (dest_address + size < dest_address || dest_address + size > VM_MAPS_USER_MAX) {
        return KERN_INVALID_ADDRESS;
    }
    kr = kern_vm_check_range(dest_address, size, VM_PROT_WRITE);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    /* A snapshot of the source first: overlapping ranges copy as memmove,
     * as GNU Mach's copy-on-write snapshot does. */
    void *copy = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED) {
        return KERN_RESOURCE_SHORTAGE;
    }
    kr = kern_vm_copy_checked(copy, NULL, size, false, source_address);
    if (kr == KERN_SUCCESS) {
        kr = kern_vm_copy_checked(NULL, copy, size, true, dest_address);
    }
    munmap(copy, size);
    return kr;
}
