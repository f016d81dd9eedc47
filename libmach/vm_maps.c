/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vm_maps.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "futex_lock.h"
#include "linux.h"

bool vm_maps_open(struct vm_maps *maps)
{
    maps->file = fopen("/proc/self/maps", "re");
    return maps->file != NULL;
}

bool vm_maps_next(struct vm_maps *maps, struct vm_maps_entry *entry)
{
    char line[512];
    while (fgets(line, sizeof line, maps->file) != NULL) {
        uint64_t start, end, offset, inode;
        unsigned major, minor;
        char perms[5];
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64, &start, &end,
                   perms, &offset, &major, &minor, &inode) != 7) {
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
            .inode = inode,
        };
        return true;
    }
    return false;
}

void vm_maps_close(struct vm_maps *maps)
{
    fclose(maps->file);
}

/* Linux 6.11's query of one mapping (PROCMAP_QUERY, <linux/fs.h>; spelt
 * out here, since Debian 12's headers predate it). */
struct vm_maps_query {
    uint64_t size, query_flags, query_addr;
    uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
    uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
    uint64_t vma_name_addr, build_id_addr;
};
_Static_assert(sizeof(struct vm_maps_query) == 104, "PROCMAP_QUERY's layout");
#define VM_MAPS_QUERY _IOWR('f', 17, struct vm_maps_query)
#define VM_MAPS_QUERY_COVERING_OR_NEXT 0x10
#define VM_MAPS_QUERY_READ 0x1
#define VM_MAPS_QUERY_WRITE 0x2
#define VM_MAPS_QUERY_EXEC 0x4
#define VM_MAPS_QUERY_SHARED 0x8

/* The maps opened for queries (a child of fork() opens its own: the
 * descriptor reads the address space it was opened in).  Queries on one
 * descriptor are serialised: the kernel keeps per-file state for them. */
static struct futex_lock vm_maps_query_lock = FUTEX_LOCK_INIT;
static int vm_maps_query_fd = -1;     /* guarded by vm_maps_query_lock */
static atomic_bool vm_maps_query_off; /* the kernel has no PROCMAP_QUERY */

/* Queries the first mapping that ends above ADDR.  Returns 1 with *ENTRY,
 * 0 when there is none, -1 when the query cannot be made. */
static int vm_maps_query(vm_address_t addr, struct vm_maps_entry *entry)
{
    if (atomic_load_explicit(&vm_maps_query_off, memory_order_relaxed)) {
        return -1;
    }
    struct vm_maps_query q = {.size = sizeof q,
                              .query_flags = VM_MAPS_QUERY_COVERING_OR_NEXT,
                              .query_addr = addr};
    futex_lock_acquire(&vm_maps_query_lock);
    if (vm_maps_query_fd < 0) {
        vm_maps_query_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    }
    int r = vm_maps_query_fd < 0 ? -1 : ioctl(vm_maps_query_fd, VM_MAPS_QUERY, &q);
    int err = errno;
    futex_lock_release(&vm_maps_query_lock);
    if (r != 0) {
        if (err == ENOENT) {
            return 0;
        }
        if (err == ENOTTY || err == EINVAL) {
            atomic_store(&vm_maps_query_off, true);
        }
        return -1;
    }
    if (q.vma_start >= VM_MAPS_USER_MAX) {
        return 0;
    }
    *entry = (struct vm_maps_entry){
        .start = q.vma_start,
        .end = q.vma_end < VM_MAPS_USER_MAX ? q.vma_end : VM_MAPS_USER_MAX,
        .protection = ((q.vma_flags & VM_MAPS_QUERY_READ) ? VM_PROT_READ : 0) |
                      ((q.vma_flags & VM_MAPS_QUERY_WRITE) ? VM_PROT_WRITE : 0) |
                      ((q.vma_flags & VM_MAPS_QUERY_EXEC) ? VM_PROT_EXECUTE : 0),
        .shared = (q.vma_flags & VM_MAPS_QUERY_SHARED) != 0,
        .offset = q.vma_offset,
        .inode = q.inode,
    };
    return 1;
}

bool vm_maps_find(vm_address_t addr, struct vm_maps_entry *entry)
{
    int queried = vm_maps_query(addr, entry);
    if (queried >= 0) {
        return queried == 1;
    }
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

bool vm_maps_find_whole(vm_address_t start, vm_address_t end, uint64_t ino,
                        struct vm_maps_entry *entry)
{
    return vm_maps_find(start, entry) && entry->start == start && entry->end == end &&
           entry->offset == 0 && entry->inode == ino;
}

void vm_maps_fork_child(void)
{
    vm_maps_query_lock = (struct futex_lock)FUTEX_LOCK_INIT;
    linux_close(vm_maps_query_fd); /* the parent's */
    vm_maps_query_fd = -1;
}
