/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vm_map: anonymous memory and memory objects, with GNU Mach's checks in
 * its order (vm/vm_user.c vm_map, vm/vm_map.c vm_map_enter):
 *
 *  - a target that is no task, a protection outside VM_PROT_ALL, an
 *    unknown inheritance or a size of 0: KERN_INVALID_ARGUMENT;
 *  - the address is truncated and the size rounded to pages;
 *  - a null or dead memory object maps zero-filled memory (offset and
 *    copy ignored), a port that cannot be a pager KERN_INVALID_ARGUMENT;
 *  - placed anywhere: the first free range whose start has no bit of
 *    MASK set, else KERN_NO_SPACE; at a fixed address: KERN_NO_SPACE when
 *    the address has a bit of MASK set or the range is in use,
 *    KERN_INVALID_ADDRESS outside the user range.
 *
 * A memory object is mapped shared from its cache (vm_object.h), kept
 * by machd in an instance (vm_remote.h), else by the task itself.  With
 * copy, the task gets a private copy of the object's data as it is at
 * the call, made at once (GNU Mach's vm_object_copy_slowly): the data is
 * asked of the pager before the call returns.
 */
#include <errno.h>
#include <sys/mman.h>

#include "ipc_space.h"
#include "kern.h"
#include "kern_vm.h"
#include "linux.h"
#include "mach.server.h"
#include "protocol.h"
#include "vm_attr.h"
#include "vm_fault.h"
#include "vm_maps.h"
#include "vm_object.h"
#include "vm_remote.h"

/* Maps LEN bytes (FD at OFFSET, or anonymous when FD < 0) with PROT and
 * FLAGS, at *ADDRESS or anywhere whose start has no bit of MASK set.
 * Returns KERN_SUCCESS with *ADDRESS, or GNU Mach's code. */
static kern_return_t kern_vm_place(vm_address_t *address, vm_size_t len, vm_address_t mask,
                                   bool anywhere, int prot, int flags, int fd, off_t offset)
{
    if (fd < 0) {
        flags |= MAP_ANONYMOUS;
    }
    if (!anywhere) {
        vm_address_t start = *address;
        if (start & mask) {
            return KERN_NO_SPACE;
        }
        if (start + len < start || start + len > VM_MAPS_USER_MAX) {
            return KERN_INVALID_ADDRESS;
        }
        void *p = mmap((void *)start, len, prot, flags | MAP_FIXED_NOREPLACE, fd, offset);
        if (p == MAP_FAILED) {
            return errno == EEXIST || errno == EPERM ? KERN_NO_SPACE : KERN_RESOURCE_SHORTAGE;
        }
        return KERN_SUCCESS;
    }
    mask |= VM_PAGE - 1;
    if (len + mask + 1 < len) {
        return KERN_NO_SPACE;
    }
    /* Reserve room for any alignment, then map over the aligned part. */
    char *room = mmap(NULL, len + mask + 1, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (room == MAP_FAILED) {
        return KERN_NO_SPACE;
    }
    vm_address_t start = ((vm_address_t)room + mask) & ~mask;
    void *p = mmap((void *)start, len, prot, flags | MAP_FIXED, fd, offset);
    if (p == MAP_FAILED) {
        munmap(room, len + mask + 1);
        return KERN_RESOURCE_SHORTAGE;
    }
    if (start > (vm_address_t)room) {
        munmap(room, start - (vm_address_t)room);
    }
    vm_address_t room_end = (vm_address_t)room + len + mask + 1;
    if (start + len < room_end) {
        munmap((void *)(start + len), room_end - (start + len));
    }
    *address = start;
    return KERN_SUCCESS;
}

/* Records Mach's attributes of a new mapping [START, START + LEN). */
static void kern_vm_map_attrs(vm_address_t start, vm_size_t len, vm_prot_t max,
                              vm_inherit_t inheritance)
{
    vm_attr_lock();
    (void)vm_attr_set_max(start, start + len, max);
    (void)vm_attr_set_inheritance(start, start + len, inheritance);
    vm_attr_unlock();
}

/* The copy of [OFFSET, OFFSET + LEN) of OBJECT, placed as asked, each
 * page waited for at most TIMEOUT_MS.  Expects no lock. */
static kern_return_t kern_vm_map_copy(struct vm_object *object, vm_address_t *address,
                                      vm_size_t len, vm_address_t mask, bool anywhere,
                                      vm_offset_t offset, vm_prot_t cur, int timeout_ms)
{
    vm_address_t at = *address;
    kern_return_t kr = kern_vm_place(&at, len, mask, anywhere, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE, -1, 0);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    kr = vm_object_read(object, offset, len, (void *)at, timeout_ms);
    if (kr == KERN_SUCCESS && mprotect((void *)at, len, kern_vm_linux_prot(cur)) != 0) {
        kr = KERN_RESOURCE_SHORTAGE;
    }
    if (kr != KERN_SUCCESS) {
        munmap((void *)at, len);
        return kr;
    }
    *address = at;
    return KERN_SUCCESS;
}

/* The shared mapping of [OFFSET, OFFSET + LEN) of OBJECT (whose reference
 * it takes on success), placed as asked.  Expects [V]. */
static kern_return_t kern_vm_map_shared(struct vm_object *object, vm_address_t *address,
                                        vm_size_t len, vm_address_t mask, bool anywhere,
                                        vm_offset_t offset, vm_prot_t cur)
{
    struct vm_space *space = vm_space_self();
    int fd = offset + len < offset ? -1 : vm_object_memfd(object, offset + len);
    if (space == NULL || fd < 0) {
        return KERN_RESOURCE_SHORTAGE;
    }
    vm_address_t at = *address;
    kern_return_t kr = kern_vm_place(&at, len, mask, anywhere, kern_vm_linux_prot(cur),
                                     MAP_SHARED, fd, (off_t)offset);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    /* A child of fork() would read the cache without its faults (a
     * missing page would be made there, zero-filled): it gets a hole. */
    (void)madvise((void *)at, len, MADV_DONTFORK);
    kr = vm_mapping_add(space, object, at, at + len, offset);
    if (kr != KERN_SUCCESS) {
        munmap((void *)at, len);
        return kr;
    }
    *address = at;
    return KERN_SUCCESS;
}

/* The mapping (or with COPY the copy) of [OFFSET, OFFSET + LEN) of
 * memory machd lends as it is (HELL_VM_DIRECT: FD, read-only, is the
 * memory itself), placed as asked.  A mapping that may write is refused:
 * only the copy is the task's to write. */
static kern_return_t kern_vm_map_direct(int fd, vm_address_t *address, vm_size_t len,
                                        vm_address_t mask, bool anywhere, vm_offset_t offset,
                                        bool copy, vm_prot_t cur)
{
    if (!copy) {
        if (cur & VM_PROT_WRITE) {
            return KERN_PROTECTION_FAILURE;
        }
        return kern_vm_place(address, len, mask, anywhere, kern_vm_linux_prot(cur), MAP_SHARED,
                             fd, (off_t)offset);
    }
    vm_address_t at = *address;
    kern_return_t kr = kern_vm_place(&at, len, mask, anywhere, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE, -1, 0);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    /* What lies past the end of the memory reads as zeros. */
    (void)linux_pread_full(fd, (void *)at, len, offset);
    if (mprotect((void *)at, len, kern_vm_linux_prot(cur)) != 0) {
        munmap((void *)at, len);
        return KERN_RESOURCE_SHORTAGE;
    }
    *address = at;
    return KERN_SUCCESS;
}

/* The mapping (or with COPY the copy) of [OFFSET, OFFSET + LEN) of the
 * object of PAGER (a kernel-space send right, left to the caller), from
 * machd's cache, placed as asked.  Expects [V]; lets it go while a copy
 * waits for the pager. */
static kern_return_t kern_vm_map_remote(mach_port_name_t pager, vm_address_t *address,
                                        vm_size_t len, vm_address_t mask, bool anywhere,
                                        vm_offset_t offset, bool copy, vm_prot_t cur)
{
    uint64_t handle;
    int memfd;
    if (offset + len < offset) {
        return KERN_RESOURCE_SHORTAGE; /* as a cache that cannot grow so far */
    }
    kern_return_t kr = vm_remote_enter(pager, offset + len, &handle, &memfd);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    if (handle == HELL_VM_DIRECT) {
        kr = kern_vm_map_direct(memfd, address, len, mask, anywhere, offset, copy, cur);
        linux_close(memfd);
        return kr;
    }
    vm_address_t at = *address;
    if (copy) {
        int copy_fd;
        vm_unlock();
        kr = vm_remote_copy(handle, offset, len, &copy_fd);
        vm_lock();
        vm_remote_release(handle);
        if (kr == KERN_SUCCESS) {
            kr = kern_vm_place(&at, len, mask, anywhere, kern_vm_linux_prot(cur), MAP_PRIVATE,
                               copy_fd, 0);
            linux_close(copy_fd);
        }
    } else {
        /* Inaccessible until machd serves its faults: a touch before would
         * put a page into the cache behind the VM's back. */
        kr = kern_vm_place(&at, len, mask, anywhere, PROT_NONE, MAP_SHARED, memfd,
                           (off_t)offset);
        bool added = false;
        if (kr == KERN_SUCCESS) {
            /* A child of fork() gets a hole (its faults are not served). */
            (void)madvise((void *)at, len, MADV_DONTFORK);
            kr = vm_remote_add(handle, at, at + len, offset, pager);
            added = kr == KERN_SUCCESS;
            if (added && mprotect((void *)at, len, kern_vm_linux_prot(cur)) != 0) {
                kr = KERN_RESOURCE_SHORTAGE;
            }
            if (kr != KERN_SUCCESS) {
                munmap((void *)at, len);
            }
        }
        if (added && kr != KERN_SUCCESS) {
            vm_remote_unmap(at, at + len); /* the mapping held the reference */
        } else if (!added) {
            vm_remote_release(handle);
        }
    }
    linux_close(memfd);
    if (kr == KERN_SUCCESS) {
        *address = at;
    }
    return kr;
}

/* The mapping (or with COPY the copy) of [OFFSET, OFFSET + LEN) of the
 * object of PAGER (a kernel-space send right, left to the caller), from
 * this task's own cache, placed as asked.  Expects [V]; lets it go while
 * a copy reads. */
static kern_return_t kern_vm_map_local(mach_port_name_t pager, vm_address_t *address,
                                       vm_size_t len, vm_address_t mask, bool anywhere,
                                       vm_offset_t offset, bool copy, vm_prot_t cur)
{
    /* The object takes a reference of its own. */
    if (kern_retain_right(pager) != KERN_SUCCESS) {
        return KERN_INVALID_ARGUMENT;
    }
    /* The fault thread first, so that it serves the control port of an
     * object mapped as it is (vm_fault_pagers; failing here, the mapping
     * fails below). */
    if (!copy) {
        (void)vm_space_self();
    }
    struct vm_object *object;
    kern_return_t kr = vm_object_enter(pager, &object);
    if (kr != KERN_SUCCESS) {
        kern_release_right(pager); /* the object's */
        return kr;
    }
    if (copy) {
        int timeout_ms = vm_pager_timeout_ms();
        vm_unlock();
        kr = kern_vm_map_copy(object, address, len, mask, anywhere, offset, cur, timeout_ms);
        vm_lock();
        vm_object_release(object);
    } else {
        kr = kern_vm_map_shared(object, address, len, mask, anywhere, offset, cur);
        if (kr != KERN_SUCCESS) {
            vm_object_release(object);
        }
    }
    return kr;
}

/* Maps [OFFSET, OFFSET + LEN) of the object of PAGER (left to the caller)
 * as placed, through machd when this task's objects are served there,
 * else from this task's own cache.  Takes [V]. */
static kern_return_t kern_vm_map_object(mach_port_name_t pager, vm_address_t *address,
                                        vm_size_t len, vm_address_t mask, bool anywhere,
                                        vm_offset_t offset, bool copy, vm_prot_t cur)
{
    vm_lock();
    kern_return_t kr =
        vm_remote_active()
            ? kern_vm_map_remote(pager, address, len, mask, anywhere, offset, copy, cur)
            : kern_vm_map_local(pager, address, len, mask, anywhere, offset, copy, cur);
    vm_unlock();
    return kr;
}

kern_return_t kern_vm_map(mach_port_t target_task, vm_address_t *address, vm_size_t size,
                          vm_address_t mask, boolean_t anywhere, mach_port_t memory_object,
                          vm_offset_t offset, boolean_t copy, vm_prot_t cur_protection,
                          vm_prot_t max_protection, vm_inherit_t inheritance)
{
    if (!kern_vm_task_ok(target_task) || (cur_protection & ~VM_PROT_ALL) ||
        (max_protection & ~VM_PROT_ALL)) {
        return KERN_INVALID_ARGUMENT;
    }
    if (inheritance != VM_INHERIT_NONE && inheritance != VM_INHERIT_COPY &&
        inheritance != VM_INHERIT_SHARE) {
        return KERN_INVALID_ARGUMENT;
    }
    if (size == 0) {
        return KERN_INVALID_ARGUMENT;
    }
    vm_address_t at = *address & ~(vm_address_t)(VM_PAGE - 1);
    vm_size_t len = (size + VM_PAGE - 1) & ~(vm_size_t)(VM_PAGE - 1);
    if (len == 0) {
        return anywhere ? KERN_NO_SPACE : KERN_INVALID_ADDRESS;
    }
    ipc_lock();
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_KERNEL], memory_object);
    bool dead = entry != NULL && (entry->type & MACH_PORT_TYPE_DEAD_NAME);
    /* A kernel object (a receive right here) is no pager. */
    bool pager = entry != NULL && (entry->type & MACH_PORT_TYPE_SEND) &&
                 !(entry->type & MACH_PORT_TYPE_RECEIVE);
    ipc_unlock();
    kern_return_t kr;
    if (!MACH_PORT_VALID(memory_object) || dead) {
        kr = kern_vm_place(&at, len, mask, anywhere, kern_vm_linux_prot(cur_protection),
                           MAP_PRIVATE, -1, 0);
    } else if (!pager || (offset & (VM_PAGE - 1))) {
        /* (An object offset must be a page boundary: Linux maps files by
         * page.) */
        return KERN_INVALID_ARGUMENT;
    } else {
        kr = kern_vm_map_object(memory_object, &at, len, mask, anywhere, offset, copy,
                                cur_protection);
    }
    if (kr == KERN_SUCCESS) {
        kern_vm_map_attrs(at, len, max_protection, inheritance);
        kern_release_right(memory_object); /* a successful routine owns it */
        *address = at;
    }
    return kr;
}

kern_return_t kern_vm_map_fixed_object(vm_address_t at, vm_size_t len, mach_port_name_t pager,
                                       vm_offset_t offset, bool copy, vm_prot_t cur,
                                       vm_prot_t max, vm_inherit_t inherit)
{
    kern_return_t kr = kern_vm_map_object(pager, &at, len, 0, false, offset, copy, cur);
    if (kr == KERN_SUCCESS) {
        kern_vm_map_attrs(at, len, max, inherit);
    }
    kern_release_right(pager);
    return kr;
}
