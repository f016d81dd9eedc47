/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vm_movable.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "futex_lock.h"
#include "kern_vm.h"
#include "linux.h"
#include "vm_attr.h"
#include "vm_maps.h"

/* One movable region: [start, end) was made a shared mapping of the whole
 * of FD, whose inode is INO (whether it still is whole, Linux's maps
 * say: vm_movable_take). */
struct vm_movable {
    vm_address_t start, end;
    int fd;
    uint64_t ino;
};

/* The movable regions, sorted by address. */
static struct futex_lock vm_movable_lock = FUTEX_LOCK_INIT;
static struct vm_movable vm_movables[VM_MOVABLE_MAX]; /* guarded by vm_movable_lock */
static unsigned vm_movable_count;                      /* guarded by vm_movable_lock */

/* Set by the thread about to fork when the child will exec. */
static __thread bool vm_movable_exec;

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

/* Whether FD leaves three quarters of the descriptors to the rest. */
static bool vm_movable_fd_ok(int fd)
{
    struct rlimit nofile;
    return getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
           (nofile.rlim_cur == RLIM_INFINITY || (rlim_t)fd < nofile.rlim_cur / 4);
}

void vm_movable_adopt(void *p, size_t len)
{
    if (len < VM_MOVABLE_MIN) {
        return;
    }
    futex_lock_acquire(&vm_movable_lock);
    int fd = -1;
    struct stat st;
    bool ready = vm_movable_count < VM_MOVABLE_MAX &&
                 (fd = memfd_create("hell-vm", MFD_CLOEXEC | MFD_ALLOW_SEALING)) >= 0 &&
                 vm_movable_fd_ok(fd) && ftruncate(fd, (off_t)len) == 0 && fstat(fd, &st) == 0;
    if (ready &&
        mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        /* A failed MAP_FIXED may have unmapped the range: fresh zeros
         * again (the memory is untouched). */
        (void)mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        ready = false;
    }
    if (ready) {
        vm_address_t start = (vm_address_t)p;
        unsigned i = vm_movable_count;
        while (i > 0 && vm_movables[i - 1].start > start) {
            vm_movables[i] = vm_movables[i - 1];
            i--;
        }
        vm_movables[i] = (struct vm_movable){
            .start = start, .end = start + len, .fd = fd, .ino = st.st_ino};
        vm_movable_count++;
    } else {
        linux_close(fd);
    }
    futex_lock_release(&vm_movable_lock);
}

/* A piece of a region: [a, b) still its shared mapping, with its
 * protection and the file offset of A. */
struct vm_movable_piece {
    vm_address_t a, b;
    vm_prot_t prot;
    off_t offset;
};

/* The first piece of region R in [FROM, TO) into *PIECE.  Returns false
 * when there is none (or the maps cannot be read). */
static bool vm_movable_next_piece(const struct vm_movable *r, vm_address_t from, vm_address_t to,
                                  struct vm_movable_piece *piece)
{
    struct vm_maps_entry m;
    for (vm_address_t at = from; at < to && vm_maps_find(at, &m) && m.start < to; at = m.end) {
        if (m.shared && m.inode == r->ino) {
            vm_address_t a = m.start > at ? m.start : at;
            *piece = (struct vm_movable_piece){
                .a = a,
                .b = m.end < to ? m.end : to,
                .prot = m.protection,
                .offset = (off_t)(m.offset + (a - m.start)),
            };
            return true;
        }
    }
    return false;
}

/* Marks the pages of [A, B) whose inheritance is NONE MADV_DONTFORK
 * again: a new mapping over them dropped the mark.  Expects
 * vm_attr_lock. */
static void vm_movable_keep_none(vm_address_t a, vm_address_t b)
{
    struct vm_attr attr;
    for (vm_address_t at = a, next; at < b; at = next) {
        next = vm_attr_get(at, b, &attr);
        if (next <= at) {
            break;
        }
        if (attr.inheritance == VM_INHERIT_NONE) {
            (void)madvise((void *)at, next - at, MADV_DONTFORK);
        }
    }
}

/* Makes region I private where it is still its shared mapping, but for
 * [KEEP_START, KEEP_END), which stays shared (each piece copy-on-write
 * from the memfd, with its own protection, and its NONE pages kept out
 * of children), and forgets it.  A piece that cannot be remapped is kept
 * out of a child rather than shared with it.  Expects vm_attr_lock and
 * the lock. */
static void vm_movable_make_private(unsigned i, vm_address_t keep_start, vm_address_t keep_end)
{
    const struct vm_movable *r = &vm_movables[i];
    struct vm_movable_piece p;
    for (vm_address_t at = r->start; vm_movable_next_piece(r, at, r->end, &p); at = p.b) {
        if (keep_start <= p.a && p.a < keep_end) {
            p.b = p.b < keep_end ? p.b : keep_end; /* shared it stays */
            continue;
        }
        p.b = p.a < keep_start && keep_start < p.b ? keep_start : p.b;
        /* Atomic: a write racing it lands in the file or in the copy.
         * Not charged, as the shared mapping was not. */
        if (mmap((void *)p.a, p.b - p.a, kern_vm_linux_prot(p.prot),
                 MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, r->fd, p.offset) == MAP_FAILED) {
            (void)madvise((void *)p.a, p.b - p.a, MADV_DONTFORK);
        } else {
            vm_movable_keep_none(p.a, p.b);
        }
    }
    vm_movable_remove(i);
}

void vm_movable_unmap(vm_address_t start, vm_address_t end)
{
    futex_lock_acquire(&vm_movable_lock);
    unsigned i = 0;
    while (i < vm_movable_count && vm_movables[i].start < end) {
        struct vm_movable *r = &vm_movables[i];
        if (r->end <= start) {
            i++;
            continue;
        }
        if (start <= r->start && r->end <= end) {
            vm_movable_remove(i);
            continue;
        }
        /* Cut: the pages going are freed from the memfd (only this
         * mapping reaches them); the region goes with its last piece. */
        vm_address_t a = start > r->start ? start : r->start;
        vm_address_t b = end < r->end ? end : r->end;
        (void)fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        (off_t)(a - r->start), (off_t)(b - a));
        struct vm_movable_piece p;
        if (!vm_movable_next_piece(r, r->start, a, &p) &&
            !vm_movable_next_piece(r, b, r->end, &p)) {
            vm_movable_remove(i);
        } else {
            i++;
        }
    }
    futex_lock_release(&vm_movable_lock);
}

/* Makes private every region that meets [START, END), but for the part
 * of each in [KEEP_START, KEEP_END), and forgets it. */
static void vm_movable_release(vm_address_t start, vm_address_t end, vm_address_t keep_start,
                               vm_address_t keep_end)
{
    vm_attr_lock();
    futex_lock_acquire(&vm_movable_lock);
    unsigned i = 0;
    while (i < vm_movable_count && vm_movables[i].start < end) {
        if (vm_movables[i].end <= start) {
            i++;
        } else {
            vm_movable_make_private(i, keep_start, keep_end);
        }
    }
    futex_lock_release(&vm_movable_lock);
    vm_attr_unlock();
}

void vm_movable_share(vm_address_t start, vm_address_t end)
{
    vm_movable_release(start, end, start, end);
}

void vm_movable_unshare(vm_address_t start, vm_address_t end)
{
    vm_movable_release(start, end, 0, 0);
}

bool vm_movable_holds(vm_address_t start, vm_address_t end, uint64_t ino)
{
    futex_lock_acquire(&vm_movable_lock);
    bool holds = false;
    for (unsigned i = 0; i < vm_movable_count && vm_movables[i].start <= start && !holds; i++) {
        holds = end <= vm_movables[i].end && vm_movables[i].ino == ino;
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
    struct vm_movable r = i < vm_movable_count ? vm_movables[i] : (struct vm_movable){0};
    /* Still the one mapping made for it?  (vm_protect, a partial
     * vm_deallocate, a plain munmap, mmap or mprotect would have changed
     * it; then it is copied.) */
    struct vm_maps_entry m;
    if (r.start != start || r.end != end || !vm_maps_find_whole(start, end, r.ino, &m) ||
        !m.shared || m.protection != (VM_PROT_READ | VM_PROT_WRITE) ||
        /* The sender's view until the message is sent; it does not stop
         * the seal. */
        mmap(addr, end - start, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
             r.fd, 0) == MAP_FAILED) {
        futex_lock_release(&vm_movable_lock);
        return -1;
    }
    vm_movables[i].fd = -1; /* now the caller's */
    vm_movable_remove(i);
    futex_lock_release(&vm_movable_lock);
    /* (Linux waits a moment for pages pinned elsewhere, then refuses: the
     * view is copied.) */
    if (fcntl(r.fd, F_ADD_SEALS, VM_MOVABLE_SEALS) != 0) {
        linux_close(r.fd);
        return -1;
    }
    return r.fd;
}

void vm_movable_fork_prepare(void)
{
    vm_attr_lock();
    futex_lock_acquire(&vm_movable_lock);
    while (!vm_movable_exec && vm_movable_count > 0) {
        vm_movable_make_private(vm_movable_count - 1, 0, 0);
    }
    vm_attr_unlock();
}

void vm_movable_fork_parent(void)
{
    futex_lock_release(&vm_movable_lock);
}

void vm_movable_fork_child(void)
{
    vm_movable_lock = (struct futex_lock)FUTEX_LOCK_INIT;
    if (vm_movable_exec) {
        /* The parent's regions, for the moment before the exec. */
        for (unsigned i = 0; i < vm_movable_count; i++) {
            linux_close(vm_movables[i].fd);
        }
        vm_movable_count = 0;
    }
}

void vm_movable_exec_follows(bool exec)
{
    vm_movable_exec = exec;
}
