/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The part of mach.defs' virtual memory calls that the IPC layer needs:
 * vm_allocate and vm_deallocate on the calling task (out-of-line memory
 * is released with vm_deallocate).  The rest of the VM is issue 5.
 */
#include <errno.h>
#include <sys/mman.h>

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
