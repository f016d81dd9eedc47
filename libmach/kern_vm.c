/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The part of mach.defs' virtual memory calls that tasks need today:
 * vm_allocate, vm_deallocate, vm_read and vm_write, on the task that
 * serves the call (its own calls inline, another task's through its
 * service thread: so they work on any task whose port one holds).  The
 * rest of the VM is issue 5.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ipc_space.h"
#include "kern.h"
#include "mach.server.h"


static bool kern_vm_task_ok(mach_port_t task)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    return ok;
}

kern_return_t kern_vm_allocate(mach_port_t target_task, vm_address_t *address,
                               vm_size_t size, boolean_t anywhere)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_TASK;
    }
    if (size == 0) {
        *address = anywhere ? 0 : *address;
        return KERN_SUCCESS;
    }
    vm_size_t len = (size + 4095) & ~(vm_size_t)4095;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    void *hint = NULL;
    if (!anywhere) {
        if (*address & 4095) {
            *address &= ~(vm_address_t)4095;
        }
        hint = (void *)*address;
        flags |= MAP_FIXED_NOREPLACE;
    }
    void *p = mmap(hint, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
        return errno == EEXIST ? KERN_NO_SPACE : KERN_RESOURCE_SHORTAGE;
    }
    *address = (vm_address_t)p;
    return KERN_SUCCESS;
}

kern_return_t kern_vm_deallocate(mach_port_t target_task, vm_address_t address,
                                 vm_size_t size)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_TASK;
    }
    if (size == 0) {
        return KERN_SUCCESS;
    }
    vm_address_t start = address & ~(vm_address_t)4095;
    vm_size_t len = ((address + size + 4095) & ~(vm_address_t)4095) - start;
    if (munmap((void *)start, len) != 0) {
        return KERN_INVALID_ADDRESS;
    }
    return KERN_SUCCESS;
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
        return KERN_INVALID_TASK;
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
    void *copy = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED) {
        return KERN_RESOURCE_SHORTAGE;
    }
    kern_return_t kr = kern_vm_copy_checked(copy, NULL, size, false, address);
    if (kr != KERN_SUCCESS) {
        munmap(copy, size);
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
        return KERN_INVALID_TASK;
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
        munmap((void *)data, count);
    }
    return kr;
}
