/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vm_reap.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "futex_lock.h"
#include "linux.h"
#include "vm_maps.h"

/* The alignment a region keeps when moved aside: with the same offset
 * within a page-table page, Linux moves whole page tables (35 us for
 * 64 MiB, against 240 us entry by entry). */
#define VM_REAP_ALIGN ((vm_address_t)2 << 20)

/* A received region, mapped from the memfd whose inode is INO. */
struct vm_reap_note {
    vm_address_t start, end;
    uint64_t ino;
};

/* What the hidden thread is to release: the range [ADDR, ADDR + LEN) to
 * unmap, or, when FD is not negative, that descriptor to close (a memfd
 * of LEN bytes). */
struct vm_reap_range {
    void *addr;
    size_t len;
    int fd;
};

/* Locking keys: [Q] vm_reap_lock (the notes and the queue); [A] atomic. */
static struct futex_lock vm_reap_lock = FUTEX_LOCK_INIT;
/* Held by the thread from taking a descriptor off the queue until it is
 * closed, and by fork (vm_reap_fork_prepare): a child never has a copy
 * of a descriptor that is neither queued nor closed.  Taken before [Q]. */
static struct futex_lock vm_reap_closing = FUTEX_LOCK_INIT;
static struct vm_reap_note vm_reap_notes[VM_REAP_NOTES];     /* [Q] */
static atomic_uint vm_reap_nnotes;                           /* [Q] written, [A] read unlocked */
static unsigned vm_reap_oldest;                              /* [Q] replaced when full */
static struct vm_reap_range vm_reap_pending[VM_REAP_PENDING]; /* [Q] */
static atomic_uint vm_reap_npending;                         /* [Q] written, [A] read unlocked */
static size_t vm_reap_pending_bytes;                         /* [Q] their total length */
static bool vm_reap_started;                                 /* [Q] the thread runs */
static bool vm_reap_failed;                                  /* [Q] it could not start */
static _Atomic unsigned vm_reap_seq;                         /* [A] futex: bumped per range */

/* How many notes there are (exact under [Q], a hint without it). */
static unsigned vm_reap_count(void)
{
    return atomic_load_explicit(&vm_reap_nnotes, memory_order_relaxed);
}

/* Sets how many notes there are to N.  Expects [Q]. */
static void vm_reap_count_set(unsigned n)
{
    atomic_store_explicit(&vm_reap_nnotes, n, memory_order_relaxed);
}

/* Drops note I.  Expects [Q]. */
static void vm_reap_forget(unsigned i)
{
    unsigned n = vm_reap_count() - 1;
    vm_reap_notes[i] = vm_reap_notes[n];
    vm_reap_count_set(n);
    if (vm_reap_oldest >= n) {
        vm_reap_oldest = 0;
    }
}

/* Forgets the notes of the regions that meet [START, END); returns the
 * inode of the one that is exactly that range, or 0.  Expects [Q]. */
static uint64_t vm_reap_take_note(vm_address_t start, vm_address_t end)
{
    uint64_t ino = 0;
    unsigned i = 0;
    while (i < vm_reap_count()) {
        const struct vm_reap_note *n = &vm_reap_notes[i];
        if (n->start >= end || n->end <= start) {
            i++;
            continue;
        }
        if (n->start == start && n->end == end) {
            ino = n->ino;
        }
        vm_reap_forget(i);
    }
    return ino;
}

void vm_reap_note(void *addr, size_t size, uint64_t ino)
{
    if (size < VM_REAP_MIN) {
        return;
    }
    vm_address_t start = (vm_address_t)addr;
    struct vm_reap_note note = {.start = start, .end = start + ((size + 4095) & ~(size_t)4095),
                                .ino = ino};
    futex_lock_acquire(&vm_reap_lock);
    (void)vm_reap_take_note(note.start, note.end); /* stale: the range is this region's */
    unsigned n = vm_reap_count();
    if (n < VM_REAP_NOTES) {
        vm_reap_notes[n] = note;
        vm_reap_count_set(n + 1);
    } else {
        /* Most likely a region unmapped behind libmach's back. */
        vm_reap_notes[vm_reap_oldest] = note;
        vm_reap_oldest = (vm_reap_oldest + 1) % VM_REAP_NOTES;
    }
    futex_lock_release(&vm_reap_lock);
}

/* Takes the oldest range or descriptor waiting; {.fd = -1} when there is
 * none. */
static struct vm_reap_range vm_reap_take(void)
{
    futex_lock_acquire(&vm_reap_lock);
    struct vm_reap_range range = {.fd = -1};
    unsigned n = atomic_load_explicit(&vm_reap_npending, memory_order_relaxed);
    if (n > 0) {
        range = vm_reap_pending[0];
        vm_reap_pending_bytes -= range.len;
        for (unsigned i = 0; i + 1 < n; i++) {
            vm_reap_pending[i] = vm_reap_pending[i + 1];
        }
        atomic_store_explicit(&vm_reap_npending, n - 1, memory_order_relaxed);
    }
    futex_lock_release(&vm_reap_lock);
    return range;
}

/* Unmaps [ADDR, ADDR + LEN) a page-table page (2 MiB) at a time: the
 * address space's lock, which the task's own mmap, munmap and mremap wait
 * for, is held for one piece at a time (about 70 us; 2-3 ms for 64 MiB
 * at once). */
static void vm_reap_unmap_chunks(void *addr, size_t len)
{
    vm_address_t at = (vm_address_t)addr, end = at + len;
    while (at < end) {
        vm_address_t next = (at | (VM_REAP_ALIGN - 1)) + 1;
        if (next > end) {
            next = end;
        }
        (void)munmap((void *)at, next - at);
        at = next;
    }
}

/* The hidden thread: releases what is handed to it, in order.  A
 * background thread (linux_thread_background): as an ordinary one, it
 * took the processor from the task's threads when woken, and kept it from
 * the thread its own task's message had just woken there (the sender of
 * a region, waiting for the answer) while it freed the region's pages. */
static void *vm_reap_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    linux_thread_background();
    for (;;) {
        /* Read before the queue: a range queued after this reading
         * changes it, and the wait returns at once. */
        unsigned seq = atomic_load(&vm_reap_seq);
        if (atomic_load_explicit(&vm_reap_npending, memory_order_acquire) == 0) {
            linux_futex_wait(&vm_reap_seq, seq, -1, false);
            continue;
        }
        futex_lock_acquire(&vm_reap_closing);
        struct vm_reap_range range = vm_reap_take();
        if (range.fd >= 0) {
            linux_close(range.fd);
        }
        futex_lock_release(&vm_reap_closing);
        if (range.fd < 0 && range.addr != NULL) {
            vm_reap_unmap_chunks(range.addr, range.len); /* (MADV_DONTFORK: no child's) */
        }
    }
    return NULL;
}

/* Tells the thread that the queue has grown.  Needs no lock. */
static void vm_reap_wake(void)
{
    atomic_fetch_add(&vm_reap_seq, 1);
    linux_futex_wake(&vm_reap_seq, 1, false);
}

/* Whether a range of LEN bytes can wait for the thread.  Expects [Q]. */
static bool vm_reap_room(size_t len)
{
    return atomic_load_explicit(&vm_reap_npending, memory_order_relaxed) < VM_REAP_PENDING &&
           vm_reap_pending_bytes + len <= VM_REAP_PENDING_BYTES;
}

/* Queues R for the thread, which vm_reap_room allowed.  Expects [Q]. */
static void vm_reap_queue(struct vm_reap_range r)
{
    unsigned n = atomic_load_explicit(&vm_reap_npending, memory_order_relaxed);
    vm_reap_pending[n] = r;
    vm_reap_pending_bytes += r.len;
    atomic_store_explicit(&vm_reap_npending, n + 1, memory_order_release);
}

/* Whether the thread runs, started now if need be.  Expects [Q]. */
static bool vm_reap_start(void)
{
    if (!vm_reap_started && !vm_reap_failed) {
        vm_reap_started = linux_thread_start(vm_reap_main, NULL);
        vm_reap_failed = !vm_reap_started;
    }
    return vm_reap_started;
}

/* Moves the mapping [START, END) aside, with its alignment within a
 * page-table page, and returns the whole reservation it landed in, to
 * unmap (its len is 0 when the mapping could not be moved). */
static struct vm_reap_range vm_reap_move(vm_address_t start, vm_address_t end)
{
    size_t len = end - start;
    struct vm_reap_range r = {.len = len + VM_REAP_ALIGN, .fd = -1};
    r.addr = mmap(NULL, r.len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r.addr == MAP_FAILED) {
        return (struct vm_reap_range){.fd = -1};
    }
    vm_address_t base = (vm_address_t)r.addr;
    vm_address_t to = base + ((start - base) & (VM_REAP_ALIGN - 1));
    /* Never inherited from here on, so a child has nothing to unmap. */
    (void)madvise(r.addr, r.len, MADV_DONTFORK);
    if (madvise((void *)start, len, MADV_DONTFORK) != 0 ||
        mremap((void *)start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)to) ==
            MAP_FAILED) {
        (void)munmap(r.addr, r.len);
        return (struct vm_reap_range){.fd = -1};
    }
    return r;
}

bool vm_reap_unmap(vm_address_t start, vm_address_t end)
{
    if (vm_reap_count() == 0) {
        return false;
    }
    futex_lock_acquire(&vm_reap_lock);
    uint64_t ino = vm_reap_take_note(start, end);
    bool room = ino != 0 && vm_reap_room(end - start + VM_REAP_ALIGN) && vm_reap_start();
    futex_lock_release(&vm_reap_lock);
    struct vm_maps_entry m;
    if (!room || !vm_maps_find_whole(start, end, ino, &m) || m.shared) {
        return false;
    }
    struct vm_reap_range r = vm_reap_move(start, end);
    if (r.len == 0) {
        return false;
    }
    futex_lock_acquire(&vm_reap_lock);
    bool queued = vm_reap_room(r.len);
    if (queued) {
        vm_reap_queue(r);
    }
    futex_lock_release(&vm_reap_lock);
    if (!queued) {
        (void)munmap(r.addr, r.len); /* others filled the queue meanwhile */
        return true;
    }
    vm_reap_wake();
    return true;
}

void vm_reap_close(int fd, size_t size)
{
    if (fd < 0) {
        return;
    }
    if (size >= VM_REAP_MIN) {
        futex_lock_acquire(&vm_reap_lock);
        bool queued = vm_reap_room(size) && vm_reap_start();
        if (queued) {
            vm_reap_queue((struct vm_reap_range){.len = size, .fd = fd});
        }
        futex_lock_release(&vm_reap_lock);
        if (queued) {
            vm_reap_wake();
            return;
        }
    }
    linux_close(fd);
}

/* Before fork: no close is under way and the queue holds still, so that
 * the child's copies of descriptors to close are exactly those queued
 * (vm_reap_fork_child closes them), and each queued number names the
 * memfd queued. */
static void vm_reap_fork_prepare(void)
{
    futex_lock_acquire(&vm_reap_closing);
    futex_lock_acquire(&vm_reap_lock);
}

static void vm_reap_fork_parent(void)
{
    futex_lock_release(&vm_reap_lock);
    futex_lock_release(&vm_reap_closing);
}

/* The child's locks, free again before any other of libmach's fork
 * handlers may use the module. */
static void vm_reap_fork_child_locks(void)
{
    vm_reap_lock = (struct futex_lock)FUTEX_LOCK_INIT;
    vm_reap_closing = (struct futex_lock)FUTEX_LOCK_INIT;
}

/* Registered before kern_task's handlers (by a constructor that runs
 * before the others): fork runs the prepare handlers in the reverse
 * order, so this one after theirs, which may release regions here while
 * holding other locks, and the parent and child handlers in order, so
 * these before theirs. */
__attribute__((constructor(101))) static void vm_reap_register_fork(void)
{
    (void)pthread_atfork(vm_reap_fork_prepare, vm_reap_fork_parent, vm_reap_fork_child_locks);
}

void vm_reap_fork_child(void)
{
    vm_reap_fork_child_locks();
    vm_reap_count_set(0);
    vm_reap_oldest = 0;
    /* The ranges are MADV_DONTFORK, not here; the descriptors are
     * inherited: this copy of each is closed now (the parent's thread
     * closes the parent's).  None was taken but not closed yet
     * (vm_reap_fork_prepare). */
    unsigned n = atomic_load_explicit(&vm_reap_npending, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        linux_close(vm_reap_pending[i].fd);
    }
    atomic_store_explicit(&vm_reap_npending, 0, memory_order_relaxed);
    vm_reap_pending_bytes = 0;
    vm_reap_started = false;
    vm_reap_failed = false;
}
