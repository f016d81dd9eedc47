/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vm_movable.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "futex_lock.h"
#include "kern_vm.h"
#include "linux.h"
#include "vm_maps.h"

/* One movable region: [start, end) is a shared mapping of the whole of
 * FD, whose inode is INO. */
struct vm_movable {
    vm_address_t start, end;
    int fd;
    uint64_t ino;
};

/* The movable regions, sorted by address. */
static struct futex_lock vm_movable_lock = FUTEX_LOCK_INIT;
static struct vm_movable vm_movables[VM_MOVABLE_MAX]; /* guarded by vm_movable_lock */
static unsigned vm_movable_count;                      /* guarded by vm_movable_lock */

#define VM_MOVABLE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

/* Removes entry I, closing its descriptor (its mappings keep the
 * memory).  Expects the lock. */
static void vm_movable_remove(unsigned i)
{
    linux_close(vm_movables[i].fd);
    memmove(&vm_movables[i], &vm_movables[i + 1],
            (vm_movable_count - i - 1) * sizeof vm_movables[0]);
    vm_movable_count--;
}

void *vm_movable_map(void *hint, size_t len, bool fixed)
{
    if (len < VM_MOVABLE_MIN) {
        return NULL;
    }
    futex_lock_acquire(&vm_movable_lock);
    void *p = NULL;
    int fd = -1;
    struct stat st;
    if (vm_movable_count < VM_MOVABLE_MAX &&
        (fd = memfd_create("hell-vm", MFD_CLOEXEC | MFD_ALLOW_SEALING)) >= 0 &&
        ftruncate(fd, (off_t)len) == 0 && fstat(fd, &st) == 0) {
        p = mmap(hint, len, PROT_READ | PROT_WRITE, MAP_SHARED | (fixed ? MAP_FIXED_NOREPLACE : 0),
                 fd, 0);
    }
    if (p == NULL || p == MAP_FAILED) {
        int err = errno;
        linux_close(fd);
        futex_lock_release(&vm_movable_lock);
        errno = err;
        return p;
    }
    vm_address_t start = (vm_address_t)p;
    unsigned i = vm_movable_count;
    while (i > 0 && vm_movables[i - 1].start > start) {
        vm_movables[i] = vm_movables[i - 1];
        i--;
    }
    vm_movables[i] = (struct vm_movable){
        .start = start, .end = start + len, .fd = fd, .ino = st.st_ino};
    vm_movable_count++;
    futex_lock_release(&vm_movable_lock);
    return p;
}

/* Makes region I private where it is still the shared mapping made for
 * it, each piece with the protection Linux has for it (a plain mprotect
 * may have split it), and forgets it.  Expects the lock. */
static void vm_movable_make_private(unsigned i)
{
    const struct vm_movable *r = &vm_movables[i];
    struct vm_maps_entry m;
    bool found = false;
    for (vm_address_t at = r->start; at < r->end && vm_maps_find(at, &m) && m.start < r->end;
         at = m.end) {
        found = true;
        if (!m.shared || m.inode != r->ino) {
            continue; /* something else was mapped there */
        }
        vm_address_t a = m.start > at ? m.start : at;
        vm_address_t b = m.end < r->end ? m.end : r->end;
        /* Atomic: a write racing it lands in the file or in the copy.
         * (Failing, only for want of memory, it leaves the piece shared.) */
        (void)mmap((void *)a, b - a, kern_vm_linux_prot(m.protection), MAP_PRIVATE | MAP_FIXED,
                   r->fd, (off_t)(m.offset + (a - m.start)));
    }
    if (!found) {
        /* The maps could not be read: the region as it was made. */
        (void)mmap((void *)r->start, r->end - r->start, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_FIXED, r->fd, 0);
    }
    vm_movable_remove(i);
}

/* Applies to each region that meets [START, END): forgets it when it lies
 * inside and FORGET_INSIDE, else makes it private. */
static void vm_movable_each(vm_address_t start, vm_address_t end, bool forget_inside)
{
    futex_lock_acquire(&vm_movable_lock);
    unsigned i = 0;
    while (i < vm_movable_count && vm_movables[i].start < end) {
        const struct vm_movable *r = &vm_movables[i];
        if (r->end <= start) {
            i++;
        } else if (forget_inside && start <= r->start && r->end <= end) {
            vm_movable_remove(i);
        } else {
            vm_movable_make_private(i);
        }
    }
    futex_lock_release(&vm_movable_lock);
}

void vm_movable_unmap(vm_address_t start, vm_address_t end)
{
    vm_movable_each(start, end, true);
}

void vm_movable_privatize(vm_address_t start, vm_address_t end)
{
    vm_movable_each(start, end, false);
}

void vm_movable_share(vm_address_t start, vm_address_t end)
{
    vm_movable_each(start, end, true);
}

bool vm_movable_holds(vm_address_t start, vm_address_t end)
{
    futex_lock_acquire(&vm_movable_lock);
    bool holds = false;
    for (unsigned i = 0; i < vm_movable_count && vm_movables[i].start <= start && !holds; i++) {
        holds = end <= vm_movables[i].end;
    }
    futex_lock_release(&vm_movable_lock);
    return holds;
}

int vm_movable_take(void *addr, size_t size)
{
    vm_address_t start = (vm_address_t)addr;
    vm_address_t end = (start + size + 4095) & ~(vm_address_t)4095;
    if ((start & 4095) != 0 || size < VM_MOVABLE_MIN || end < start) {
        return -1;
    }
    futex_lock_acquire(&vm_movable_lock);
    unsigned i = 0;
    while (i < vm_movable_count && vm_movables[i].start < start) {
        i++;
    }
    if (i == vm_movable_count || vm_movables[i].start != start || vm_movables[i].end != end) {
        futex_lock_release(&vm_movable_lock);
        return -1; /* not a whole movable region */
    }
    struct vm_movable r = vm_movables[i];
    /* Still the one mapping made for it?  (A plain munmap, mmap or
     * mprotect would have changed it; then it is copied.) */
    struct vm_maps_entry m;
    bool intact = vm_maps_find(start, &m) && m.start == start && m.end == end && m.shared &&
                  m.inode == r.ino && m.offset == 0 &&
                  m.protection == (VM_PROT_READ | VM_PROT_WRITE);
    if (!intact) {
        vm_movable_make_private(i);
        futex_lock_release(&vm_movable_lock);
        return -1;
    }
    /* The sender keeps a copy-on-write view (unmapped after a move once
     * the message is sent), which does not stop the seal. */
    if (mmap((void *)start, end - start, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, r.fd,
             0) == MAP_FAILED) {
        futex_lock_release(&vm_movable_lock);
        return -1; /* out of memory: still movable, copied this time */
    }
    vm_movables[i].fd = -1; /* now the caller's */
    vm_movable_remove(i);
    futex_lock_release(&vm_movable_lock);
    if (fcntl(r.fd, F_ADD_SEALS, VM_MOVABLE_SEALS) != 0) {
        /* The memfd is mapped writable elsewhere (not by libmach): the
         * view is copied. */
        linux_close(r.fd);
        return -1;
    }
    return r.fd;
}

void vm_movable_fork_prepare(void)
{
    futex_lock_acquire(&vm_movable_lock);
    while (vm_movable_count > 0) {
        vm_movable_make_private(vm_movable_count - 1);
    }
}

void vm_movable_fork_parent(void)
{
    futex_lock_release(&vm_movable_lock);
}

void vm_movable_fork_child(void)
{
    vm_movable_lock = (struct futex_lock)FUTEX_LOCK_INIT;
}
