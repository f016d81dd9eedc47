/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory objects: the cache, the faults, and the kernel's side of the
 * memory object protocol (vm_object.h).
 *
 * GNU Mach's rules followed here (its vm/memory_object.c and
 * vm/vm_fault.c): data supplied for a page already cached is ignored;
 * partial pages are discarded; a lock request restricts access, then
 * returns, then flushes, and is acknowledged once; only threads waiting
 * when data_error arrives are affected; an object whose pager lets it
 * be cached outlives its last mapping.
 *
 * A page locked against reading (its lock value holds VM_PROT_READ,
 * which on x86 locks out every access: GNU Mach's faults ask for read,
 * or read and write, and an instruction fetch is a read) is kept out of
 * the memfd, in the object's aside store at the same offset: every
 * access to it is then a missing-page fault, which asks the pager to
 * unlock (memory_object_data_unlock, once) and waits.  Unlocking puts the
 * data back.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <mach/memory_object.h>
#include <mach/mig_errors.h>
#include <mach/notify.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "futex_lock.h"
#include "ipc_msg.h"
#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "kern_notify.h"
#include "linux.h"
#include "gnumach.server.h"
#include "mach.server.h"
#include "memory_object.kuser.h"
#include "u64map.h"
#include "vm_fault.h"
#include "vm_object.h"
#include "vm_pager_stub.h"

/* The state of a page of an object's cache. */
enum {
    PG_PRESENT = 0x01,   /* in the memfd */
    PG_REQUESTED = 0x02, /* asked of the pager, not yet answered */
    PG_DIRTY = 0x04,     /* written since supplied or last returned */
    PG_PRECIOUS = 0x08,  /* the pager wants it back even clean */
    PG_UNLOCKING = 0x80, /* data_unlock sent, not yet answered */
};
#define PG_LOCK_SHIFT 4 /* bits 4-6: the access the pager locked out */
#define PG_LOCK(st) ((vm_prot_t)(((st) >> PG_LOCK_SHIFT) & VM_PROT_ALL))

/* Whether a page in state ST is cached but locked against reading: its
 * data is in the aside store, not in the memfd. */
static bool vm_page_hidden(uint8_t st)
{
    return (st & PG_PRESENT) && (PG_LOCK(st) & VM_PROT_READ);
}

#define VM_CHUNK_PAGES 512
struct vm_chunk {
    uint8_t page[VM_CHUNK_PAGES];
};

/* The largest run asked (data_request) or returned (data_return) in one
 * message; sequential faults grow the run up to it.  Each request costs
 * about 35 system calls and four context switches whatever its size:
 * 256 pages (1 MiB) read a large mapping in a sixth less time than 64. */
#define VM_CLUSTER_MAX 256
/* Unreferenced objects the kernel keeps cached (may_cache): at most
 * VM_CACHED_MAX, holding at most vm_cache_limit_bytes of memory together
 * (GNU Mach lets its page-out daemon shrink the cache; here nothing else
 * would free a cached object's pages). */
#define VM_CACHED_MAX 64
#define VM_CACHE_DEFAULT_MB 256

/* A thread waiting for a page: a faulting thread of a space (MAPPING
 * set), or this process reading the object (vm_object_read). */
struct vm_waiter {
    struct vm_mapping *mapping;
    uint64_t offset; /* the page, in the object */
    uint64_t addr;   /* the page, in the space */
    pid_t tid;
    bool unlock;     /* waits for the answer to data_unlock */
    uint64_t deadline_ms;
    _Atomic int *done; /* a reader's: 1 supplied, -1 failed */
    struct vm_waiter *next;
};

struct vm_object {
    mach_port_name_t pager;   /* kernel-space send right */
    mach_port_name_t control; /* kernel-space receive right (and send) */
    mach_port_name_t name;    /* kernel-space receive right */
    int memfd;
    uint64_t memfd_size;
    int aside;                /* the data of the pages locked against reading
                                 (vm_page_hidden), at their offsets; -1 until
                                 the first such page */
    bool ready, may_cache;
    memory_object_copy_strategy_t copy_strategy;
    bool destroyed;           /* memory_object_destroy: faults fail */
    bool pager_dead;          /* sends to the pager fail: faults fail */
    bool terminated;          /* its ports went back to the pager */
    bool rearm;               /* pages were flushed: their write protection
                                 went with them and is set again on fill */
    unsigned refs;
    struct vm_mapping *maps;
    struct u64map chunks;     /* page index / VM_CHUNK_PAGES -> struct vm_chunk */
    struct vm_waiter *waiters;
    uint64_t seq_next;        /* the offset after the last request */
    unsigned cluster;         /* pages of the next sequential request */
    struct vm_object *next;
};

static struct futex_lock vm_lock_word = FUTEX_LOCK_INIT;
static struct u64map vm_by_pager;   /* [V] pager kname -> object */
static struct u64map vm_by_control; /* [V] control kname -> object */
static struct vm_object *vm_objects; /* [V] every object */
/* Bumped (and futex-woken) whenever a reader's wait ends. */
static _Atomic unsigned vm_generation;

/* Wake-ups of faulting threads are made once [V] is released: a thread
 * woken while the waker holds it (on one CPU it often runs at once, in
 * a fault thread that needs [V]) would only wait for it.  Each thread
 * defers up to VM_WAKES_DEFERRED; the wakes of a space must be made
 * before its userfaultfd closes (vm_wakes_wait_idle). */
#define VM_WAKES_DEFERRED 16
struct vm_deferred_wake {
    int uffd;
    uint64_t addr;
};
static __thread struct vm_deferred_wake vm_wakes[VM_WAKES_DEFERRED];
static __thread unsigned vm_nwakes;
/* Threads holding deferred wakes, or making them. */
static _Atomic unsigned vm_wakers;

/* Makes the wake-ups in WAKES[0..N). */
static void vm_wakes_make(const struct vm_deferred_wake *wakes, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct uffdio_range range = {.start = wakes[i].addr, .len = VM_PAGE};
        (void)ioctl(wakes[i].uffd, UFFDIO_WAKE, &range);
    }
}

void vm_wakes_wait_idle(void)
{
    if (vm_nwakes > 0) {
        vm_wakes_make(vm_wakes, vm_nwakes); /* ours, under [V] */
        vm_nwakes = 0;
        atomic_fetch_sub(&vm_wakers, 1);
    }
    while (atomic_load(&vm_wakers) != 0) {
        sched_yield(); /* others make theirs without [V]: a few ioctls */
    }
}

void vm_lock(void)
{
    futex_lock_acquire(&vm_lock_word);
}

void vm_unlock(void)
{
    unsigned n = vm_nwakes;
    struct vm_deferred_wake wakes[VM_WAKES_DEFERRED];
    if (n > 0) {
        memcpy(wakes, vm_wakes, n * sizeof wakes[0]);
        vm_nwakes = 0;
    }
    futex_lock_release(&vm_lock_word);
    if (n > 0) {
        vm_wakes_make(wakes, n);
        atomic_fetch_sub(&vm_wakers, 1);
    }
}

/* [V] vm_pager_timeout_ms's value (0: not read yet). */
static int vm_timeout_ms;

int vm_pager_timeout_ms(void)
{
    if (vm_timeout_ms == 0) {
        const char *env = getenv("HELL_PAGER_TIMEOUT_MS");
        long ms = env != NULL ? strtol(env, NULL, 10) : 0;
        vm_timeout_ms = ms > 0 && ms < 3600000 ? (int)ms : 30000;
    }
    return vm_timeout_ms;
}

mach_msg_return_t vm_pager_mach_msg(mach_msg_header_t *msg, mach_msg_option_t option,
                                    mach_msg_size_t send_size, mach_msg_size_t rcv_size,
                                    mach_port_name_t rcv_name, mach_msg_timeout_t timeout,
                                    mach_port_name_t notify)
{
    (void)timeout;
    (void)notify;
    return ipc_mach_msg(SPACE_KERNEL, msg, option | MACH_SEND_ALWAYS | MACH_SEND_TIMEOUT,
                        send_size, rcv_size, rcv_name, 0);
}

/* ---- page state ---- */

/* The state byte of the page at OFFSET, made when CREATE (NULL when out
 * of memory), else NULL when the page never had one. */
static uint8_t *vm_page(struct vm_object *object, uint64_t offset, bool create)
{
    uint64_t index = offset / VM_PAGE;
    uint64_t key = index / VM_CHUNK_PAGES + 1;
    struct vm_chunk *chunk = u64map_lookup(&object->chunks, key);
    if (chunk == NULL) {
        if (!create || (chunk = calloc(1, sizeof *chunk)) == NULL) {
            return NULL;
        }
        if (!u64map_insert(&object->chunks, key, chunk)) {
            free(chunk);
            return NULL;
        }
    }
    return &chunk->page[index % VM_CHUNK_PAGES];
}

/* The first page at or after AT, before END, whose chunk has states (the
 * walks of large ranges skip what was never touched), or END. */
static uint64_t vm_next_state(struct vm_object *object, uint64_t at, uint64_t end)
{
    while (at < end) {
        uint64_t chunk = at / VM_PAGE / VM_CHUNK_PAGES;
        if (u64map_lookup(&object->chunks, chunk + 1) != NULL) {
            return at;
        }
        uint64_t next = (chunk + 1) * VM_CHUNK_PAGES * VM_PAGE;
        if (next <= at) {
            break;
        }
        at = next;
    }
    return end;
}

static uint8_t vm_page_state(struct vm_object *object, uint64_t offset)
{
    uint8_t *st = vm_page(object, offset, false);
    return st != NULL ? *st : 0;
}

/* The end of [OFFSET, OFFSET + SIZE) (the top of the offsets when it
 * wraps), no further than the cache reaches. */
static uint64_t vm_cached_end(const struct vm_object *object, uint64_t offset, uint64_t size)
{
    uint64_t end = offset + size < offset ? UINT64_MAX : offset + size;
    return end < object->memfd_size ? end : object->memfd_size;
}

/* ---- userfaultfd on the mappings ---- */

/* Write-protects (WP) or unprotects [OFFSET, OFFSET + SIZE) of OBJECT in
 * MAPPING, or in every mapping when MAPPING is NULL.  Unprotecting wakes
 * the threads faulting there. */
static void vm_protect_range(struct vm_object *object, struct vm_mapping *mapping,
                             uint64_t offset, uint64_t size, bool wp)
{
    for (struct vm_mapping *m = mapping != NULL ? mapping : object->maps; m != NULL;
         m = mapping != NULL ? NULL : m->object_next) {
        uint64_t lo = offset > m->offset ? offset : m->offset;
        uint64_t hi = offset + size;
        uint64_t mend = m->offset + (m->end - m->start);
        if (hi > mend) {
            hi = mend;
        }
        if (lo >= hi) {
            continue;
        }
        struct uffdio_writeprotect arg = {
            .range = {.start = m->start + (lo - m->offset), .len = hi - lo},
            .mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
        };
        if (ioctl(m->space->uffd, UFFDIO_WRITEPROTECT, &arg) != 0 && errno != ENOENT) {
            fprintf(stderr, "hell: write-protecting a mapped object: %s\n", strerror(errno));
        }
    }
}

/* Wakes the threads of MAPPING faulting on the page at ADDR, once [V]
 * is released.  Expects [V]. */
static void vm_wake(struct vm_mapping *mapping, uint64_t addr)
{
    struct vm_deferred_wake wake = {.uffd = mapping->space->uffd, .addr = addr};
    if (vm_nwakes == VM_WAKES_DEFERRED) {
        vm_wakes_make(&wake, 1);
        return;
    }
    if (vm_nwakes == 0) {
        atomic_fetch_add(&vm_wakers, 1);
    }
    vm_wakes[vm_nwakes++] = wake;
}

/* Gives thread TID of process PID a memory error at ADDR: a SIGBUS whose
 * value is the address, which the fault handler turns into
 * EXC_BAD_ACCESS / KERN_MEMORY_ERROR (kern_exc.c).  The signal also ends
 * the thread's wait in Linux for the page. */
static void vm_memory_error(pid_t pid, pid_t tid, uint64_t addr)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGBUS;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_ptr = (void *)(uintptr_t)addr;
    (void)syscall(SYS_rt_tgsigqueueinfo, pid, tid, SIGBUS, &si);
}

/* ---- pages locked against reading ---- */

/* OBJECT's aside store, made on first use (-1 when it cannot be). */
static int vm_aside_fd(struct vm_object *object)
{
    if (object->aside < 0) {
        object->aside = memfd_create("hell-object-locked", MFD_CLOEXEC);
    }
    return object->aside;
}

/* Copies [AT, AT + LEN) of the file FROM into the same range of TO.
 * Returns whether it all went. */
static bool vm_copy_pages(int from, int to, uint64_t at, uint64_t len)
{
    uint64_t done = 0;
    while (done < len) {
        loff_t in = (loff_t)(at + done), out = (loff_t)(at + done);
        ssize_t n = copy_file_range(from, &in, to, &out, len - done, 0);
        if (n > 0) {
            done += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0 || (errno != EXDEV && errno != EINVAL && errno != ENOSYS)) {
            return false;
        }
        /* (Where Linux cannot copy between these files itself.) */
        char page[VM_PAGE];
        while (done < len) {
            if (linux_pread_full(from, page, VM_PAGE, at + done) != VM_PAGE ||
                pwrite(to, page, VM_PAGE, (off_t)(at + done)) != (ssize_t)VM_PAGE) {
                return false;
            }
            done += VM_PAGE;
        }
    }
    return true;
}

/* Takes the cached pages [AT, AT + LEN) of OBJECT out of the memfd (so
 * out of every mapping) into its aside store: every access to them then
 * faults.  Writes are stopped first, so that none is lost between the
 * copy and the punch.  Returns false when the pages could not move (they
 * stay in the memfd). */
static bool vm_hide(struct vm_object *object, uint64_t at, uint64_t len)
{
    int aside = vm_aside_fd(object);
    if (aside < 0) {
        return false;
    }
    vm_protect_range(object, NULL, at, len, true);
    if (!vm_copy_pages(object->memfd, aside, at, len)) {
        (void)fallocate(aside, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)at,
                        (off_t)len);
        return false;
    }
    (void)fallocate(object->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)at,
                    (off_t)len);
    object->rearm = true;
    return true;
}

/* Puts the pages [AT, AT + LEN) of OBJECT's aside store back into the
 * memfd, write-protected in every mapping as every page of the cache
 * starts (their first write is seen).  Returns false when they could not
 * move (they stay aside). */
static bool vm_show(struct vm_object *object, uint64_t at, uint64_t len)
{
    vm_protect_range(object, NULL, at, len, true);
    if (object->aside < 0 || !vm_copy_pages(object->aside, object->memfd, at, len)) {
        (void)fallocate(object->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)at,
                        (off_t)len);
        return false;
    }
    (void)fallocate(object->aside, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)at,
                    (off_t)len);
    return true;
}

/* The file holding the data of a cached page in state ST. */
static int vm_page_fd(const struct vm_object *object, uint8_t st)
{
    return vm_page_hidden(st) ? object->aside : object->memfd;
}

/* ---- waiters ---- */

static void vm_reader_signal(_Atomic int *done, int value)
{
    atomic_store(done, value);
    atomic_fetch_add(&vm_generation, 1);
    linux_futex_wake(&vm_generation, INT32_MAX, false);
}

/* Ends the wait of W: woken to fault again (FAILED false) or failed with
 * a memory error.  Frees W. */
static void vm_waiter_end(struct vm_waiter *w, bool failed)
{
    if (w->done != NULL) {
        vm_reader_signal(w->done, failed ? -1 : 1);
    } else if (failed) {
        vm_memory_error(w->mapping->space->pid, w->tid, w->addr);
    } else {
        vm_wake(w->mapping, w->addr);
    }
    free(w);
}

/* Ends the waits of OBJECT on pages in [OFFSET, OFFSET + SIZE) that MATCH
 * accepts (NULL: all). */
static void vm_waiters_end(struct vm_object *object, uint64_t offset, uint64_t size,
                           bool failed, bool (*match)(struct vm_object *, struct vm_waiter *))
{
    struct vm_waiter **link = &object->waiters;
    while (*link != NULL) {
        struct vm_waiter *w = *link;
        if (w->offset >= offset && w->offset - offset < size &&
            (match == NULL || match(object, w))) {
            *link = w->next;
            vm_waiter_end(w, failed);
        } else {
            link = &w->next;
        }
    }
}

/* Whether W waits for data that is now there (a page locked against
 * reading too: its thread faults again, and asks to unlock it). */
static bool vm_waiter_supplied(struct vm_object *object, struct vm_waiter *w)
{
    return !w->unlock && (vm_page_state(object, w->offset) & PG_PRESENT);
}

/* Whether W waits for an unlock.  Such waits end whenever the pager sets
 * the page's lock, lowered or not, or the page goes: the thread faults
 * again and asks again if it must (GNU Mach restarts unlock requests on
 * every lock_request that sets a lock value). */
static bool vm_waiter_unlocking(struct vm_object *object, struct vm_waiter *w)
{
    (void)object;
    return w->unlock;
}

/* Adds a waiter for the page at OFFSET: thread TID of MAPPING's space
 * faulting at ADDR, or a reader (DONE) waiting at most TIMEOUT_MS. */
static bool vm_waiter_add(struct vm_object *object, struct vm_mapping *mapping,
                          uint64_t offset, uint64_t addr, pid_t tid, bool unlock,
                          _Atomic int *done, int timeout_ms)
{
    struct vm_waiter *w = malloc(sizeof *w);
    if (w == NULL) {
        return false;
    }
    *w = (struct vm_waiter){.mapping = mapping, .offset = offset, .addr = addr, .tid = tid,
                            .unlock = unlock, .done = done,
                            .deadline_ms = linux_now_ms() + (uint64_t)timeout_ms,
                            .next = object->waiters};
    object->waiters = w;
    return true;
}

/* The pager is gone or refused: every wait fails. */
static void vm_object_fail_all(struct vm_object *object)
{
    vm_waiters_end(object, 0, UINT64_MAX, true, NULL);
}

/* ---- requests to the pager ---- */

/* What a failed send KR to the pager of OBJECT means: a dead pager
 * (every wait fails), or a message lost to a full queue or a lack of
 * descriptors (the waits end at their deadline, the faults ask again).
 * Returns whether the pager is dead. */
static bool vm_pager_failed(struct vm_object *object, kern_return_t kr)
{
    if (kr != MACH_SEND_INVALID_DEST && kr != MACH_SEND_INVALID_RIGHT) {
        fprintf(stderr, "hell: a message to a pager was lost (0x%x)\n", (unsigned)kr);
        return false;
    }
    object->pager_dead = true;
    vm_object_fail_all(object);
    return true;
}

/* Asks the pager for the page at OFFSET and the absent pages after it,
 * up to a cluster, and no further than LIMIT (the end of the mapping
 * that faulted, in the object). */
static void vm_request(struct vm_object *object, uint64_t offset, uint64_t limit,
                       vm_prot_t access)
{
    if (!object->ready) {
        return; /* asked once the pager says it is ready */
    }
    if (offset != object->seq_next) {
        object->cluster = 1;
    } else if (object->cluster < VM_CLUSTER_MAX) {
        object->cluster *= 2;
    }
    unsigned want = object->cluster;
    unsigned n = 0;
    while (n < want && offset + (uint64_t)n * VM_PAGE < limit) {
        uint8_t *st = vm_page(object, offset + (uint64_t)n * VM_PAGE, true);
        if (st == NULL || (*st & (PG_PRESENT | PG_REQUESTED))) {
            break;
        }
        *st |= PG_REQUESTED;
        n++;
    }
    if (n == 0) {
        return;
    }
    object->seq_next = offset + (uint64_t)n * VM_PAGE;
    kern_return_t kr = kmo_memory_object_data_request(object->pager, object->control, offset,
                                                      (vm_size_t)n * VM_PAGE, access);
    if (kr != KERN_SUCCESS && !vm_pager_failed(object, kr)) {
        for (unsigned i = 0; i < n; i++) {
            *vm_page(object, offset + (uint64_t)i * VM_PAGE, false) &= (uint8_t)~PG_REQUESTED;
        }
    }
}

/* Asks again for what waiters want that was never asked (the pager was
 * not ready). */
static void vm_request_waited(struct vm_object *object)
{
    for (struct vm_waiter *w = object->waiters, *next; w != NULL; w = next) {
        next = w->next;
        if (!w->unlock && !(vm_page_state(object, w->offset) & (PG_PRESENT | PG_REQUESTED))) {
            vm_request(object, w->offset, w->offset + VM_PAGE, VM_PROT_READ);
            if (object->pager_dead) {
                return; /* every waiter is gone, NEXT with them */
            }
        }
    }
}

/* ---- objects ---- */

static void vm_object_free(struct vm_object *object)
{
    for (struct vm_object **link = &vm_objects; *link != NULL; link = &(*link)->next) {
        if (*link == object) {
            *link = object->next;
            break;
        }
    }
    size_t cursor = 0;
    uint64_t key;
    void *chunk;
    while (u64map_next(&object->chunks, &cursor, &key, &chunk)) {
        free(chunk);
    }
    u64map_destroy(&object->chunks);
    linux_close(object->memfd);
    if (object->aside >= 0) {
        linux_close(object->aside);
    }
    free(object);
}

/* Whether a page in state ST goes back for SHOULD_RETURN: dirty ones for
 * RETURN_DIRTY, dirty and precious ones for RETURN_ALL. */
static bool vm_page_wanted(uint8_t st, int should_return)
{
    return (st & PG_PRESENT) &&
           ((should_return >= MEMORY_OBJECT_RETURN_DIRTY && (st & PG_DIRTY)) ||
            (should_return >= MEMORY_OBJECT_RETURN_ALL && (st & PG_PRECIOUS)));
}

/* Sends DATA_RETURN for the pages of [OFFSET, OFFSET + SIZE) the
 * request asks back (RETURN: memory_object_return_t), write-protecting
 * them first so that later writes dirty them again.  KERNEL_COPY: the
 * cache keeps them. */
static void vm_return_range(struct vm_object *object, uint64_t offset, uint64_t size,
                            int should_return, bool kernel_copy)
{
    if (should_return == MEMORY_OBJECT_RETURN_NONE || object->pager_dead) {
        return;
    }
    uint64_t end = vm_cached_end(object, offset, size);
    uint64_t at = offset;
    while ((at = vm_next_state(object, at, end)) < end) {
        uint8_t st = vm_page_state(object, at);
        bool want = vm_page_wanted(st, should_return);
        if (!want) {
            at += VM_PAGE;
            continue;
        }
        /* A run of pages to return with the same dirtiness, all in the
         * memfd or all aside (locked against reading: no task can write
         * them). */
        bool dirty = (st & PG_DIRTY) != 0;
        bool hidden = vm_page_hidden(st);
        uint64_t run = at;
        unsigned n = 0;
        while (run < end && n < VM_CLUSTER_MAX) {
            uint8_t s = vm_page_state(object, run);
            if (!vm_page_wanted(s, should_return) || ((s & PG_DIRTY) != 0) != dirty ||
                vm_page_hidden(s) != hidden) {
                break;
            }
            run += VM_PAGE;
            n++;
        }
        size_t len = (size_t)n * VM_PAGE;
        if (!hidden) {
            vm_protect_range(object, NULL, at, len, true);
        }
        void *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED ||
            pread(vm_page_fd(object, st), buf, len, (off_t)at) != (ssize_t)len) {
            fprintf(stderr, "hell: cannot read back pages of a memory object\n");
            if (buf != MAP_FAILED) {
                munmap(buf, len);
            }
            return;
        }
        kern_return_t kr = kmo_memory_object_data_return(
            object->pager, object->control, at, (vm_offset_t)buf, (mach_msg_type_number_t)len,
            dirty, kernel_copy);
        munmap(buf, len);
        if (kr != KERN_SUCCESS) {
            (void)vm_pager_failed(object, kr);
            return; /* the pages stay dirty */
        }
        for (uint64_t p = at; p < run; p += VM_PAGE) {
            *vm_page(object, p, false) &= (uint8_t)~PG_DIRTY;
        }
        at = run;
    }
}

/* Removes the pages of [OFFSET, OFFSET + SIZE) from the cache (and so
 * from every mapping): they will be asked for again. */
static void vm_flush_range(struct vm_object *object, uint64_t offset, uint64_t size)
{
    uint64_t end = vm_cached_end(object, offset, size);
    if (offset >= end) {
        return;
    }
    (void)fallocate(object->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
                    (off_t)(end - offset));
    if (object->aside >= 0) {
        (void)fallocate(object->aside, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        (off_t)offset, (off_t)(end - offset));
    }
    object->rearm = true;
    for (uint64_t p = offset; (p = vm_next_state(object, p, end)) < end; p += VM_PAGE) {
        uint8_t *st = vm_page(object, p, false);
        if (st != NULL) {
            *st &= PG_REQUESTED; /* an outstanding request stays outstanding */
        }
    }
    /* Whoever waited to write a flushed page faults again for its data. */
    vm_waiters_end(object, offset, end - offset, false, vm_waiter_unlocking);
}

/* Ends OBJECT for this kernel: its pages go back (GIVE_BACK), then
 * memory_object_terminate gives the pager the control and name ports.
 * The cache stays until vm_object_terminate frees it.  Expects no
 * waiter. */
static void vm_object_disconnect(struct vm_object *object, bool give_back)
{
    if (object->terminated) {
        return;
    }
    object->terminated = true;
    u64map_remove(&vm_by_pager, object->pager);
    u64map_remove(&vm_by_control, object->control);
    if (give_back) {
        vm_return_range(object, 0, object->memfd_size, MEMORY_OBJECT_RETURN_ALL, false);
    }
    kern_return_t kr = object->pager_dead
                           ? KERN_FAILURE
                           : kmo_memory_object_terminate(object->pager, object->control,
                                                         object->name);
    ipc_lock();
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    if (kr != KERN_SUCCESS) {
        (void)ipc_right_dealloc(kspace, object->pager);
        (void)ipc_right_destroy(kspace, object->control);
        (void)ipc_right_destroy(kspace, object->name);
    } else {
        /* The receive rights went; the send rights made with them stay. */
        (void)ipc_right_dealloc(kspace, object->control);
        (void)ipc_right_dealloc(kspace, object->name);
    }
    ipc_unlock();
    object->pager_dead = true; /* nothing more goes to the pager */
}

/* Disconnects OBJECT (returning its pages unless destroyed) and frees
 * its cache.  Expects no mapping and no waiter. */
static void vm_object_terminate(struct vm_object *object)
{
    vm_object_disconnect(object, !object->destroyed);
    vm_object_free(object);
}

/* The kernel object port on which the VM hears of its pagers' deaths. */
static mach_port_name_t vm_notify_kname;

/* Asks for the dead-name notification of PAGER (kernel space).  Expects
 * [V]. */
static void vm_watch_pager(mach_port_name_t pager)
{
    ipc_lock();
    kern_notify_watch(pager, IKOT_VM_NOTIFY, &vm_notify_kname);
    ipc_unlock();
}

boolean_t vm_notify_server(mach_msg_header_t *in, mach_msg_header_t *out)
{
    if (vm_notify_kname == MACH_PORT_NULL ||
        (mach_port_name_t)in->msgh_local_port != vm_notify_kname) {
        return FALSE;
    }
    mig_reply_header_t *reply = (mig_reply_header_t *)out;
    reply->Head = (mach_msg_header_t){.msgh_bits = 0, .msgh_size = sizeof *reply,
                                      .msgh_id = in->msgh_id + 100};
    reply->RetCode = MIG_NO_REPLY;
    if (in->msgh_id != MACH_NOTIFY_DEAD_NAME ||
        in->msgh_size < sizeof(mach_dead_name_notification_t)) {
        return TRUE; /* port deleted (the VM gave the right away), send-once */
    }
    mach_port_name_t name = ((mach_dead_name_notification_t *)in)->not_port;
    vm_lock();
    struct vm_object *object = u64map_lookup(&vm_by_pager, name);
    if (object != NULL) {
        object->pager_dead = true;
        vm_object_fail_all(object);
        if (object->refs == 0) {
            vm_object_terminate(object); /* cached: nothing keeps it */
        }
    }
    vm_unlock();
    /* The notification's own reference to the dead name. */
    kern_release_right(name);
    return TRUE;
}

kern_return_t vm_object_enter(mach_port_name_t pager, struct vm_object **result)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    struct vm_object *object = u64map_lookup(&vm_by_pager, pager);
    if (object != NULL) {
        ipc_lock();
        (void)ipc_right_dealloc(kspace, pager); /* the object holds one */
        ipc_unlock();
        object->refs++;
        *result = object;
        return KERN_SUCCESS;
    }
    object = calloc(1, sizeof *object);
    if (object == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    /* Sealed against shrinking: a task that holds it (vm_remote.h) must
     * not take pages from under the others' mappings. */
    object->memfd = memfd_create("hell-object", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (object->memfd >= 0 &&
        fcntl(object->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
        linux_close(object->memfd);
        object->memfd = -1;
    }
    object->pager = pager;
    object->aside = -1;
    object->cluster = 1;
    object->seq_next = UINT64_MAX;
    object->copy_strategy = MEMORY_OBJECT_COPY_DELAY;
    if (object->memfd < 0) {
        free(object);
        return KERN_RESOURCE_SHORTAGE;
    }
    mach_port_name_t pagers = vm_fault_pagers(); /* (none yet: the service thread's) */
    ipc_lock();
    struct ipc_port *port;
    kern_return_t kr = kern_object_create_in(IKOT_PAGER_CONTROL, pagers, &port, &object->control);
    if (kr == KERN_SUCCESS &&
        (kr = kern_object_create(IKOT_PAGER_NAME, &port, &object->name)) != KERN_SUCCESS) {
        (void)ipc_right_destroy(kspace, object->control);
    }
    ipc_unlock();
    if (kr != KERN_SUCCESS) {
        linux_close(object->memfd);
        free(object);
        return KERN_RESOURCE_SHORTAGE;
    }
    if (!u64map_insert(&vm_by_pager, pager, object) ||
        !u64map_insert(&vm_by_control, object->control, object)) {
        kr = KERN_RESOURCE_SHORTAGE;
    } else {
        kern_service_start(); /* the pager will call the control port */
        vm_watch_pager(pager);
        kr = kmo_memory_object_init(pager, object->control, object->name, VM_PAGE);
        if (kr != KERN_SUCCESS) {
            kr = KERN_INVALID_ARGUMENT;
        }
    }
    if (kr != KERN_SUCCESS) {
        u64map_remove(&vm_by_pager, pager);
        u64map_remove(&vm_by_control, object->control);
        ipc_lock();
        (void)ipc_right_destroy(kspace, object->control);
        (void)ipc_right_destroy(kspace, object->name);
        ipc_unlock();
        linux_close(object->memfd);
        free(object);
        return kr; /* the pager right stays the caller's */
    }
    object->refs = 1;
    object->next = vm_objects;
    vm_objects = object;
    *result = object;
    return KERN_SUCCESS;
}

/* [V] vm_cache_limit_bytes's value (0: not read yet). */
static uint64_t vm_cache_limit;

/* How much memory cached objects may hold together: HELL_OBJECT_CACHE_MB
 * (default VM_CACHE_DEFAULT_MB; 0 caches nothing), read once.  Expects
 * [V]. */
static uint64_t vm_cache_limit_bytes(void)
{
    if (vm_cache_limit == 0) {
        const char *env = getenv("HELL_OBJECT_CACHE_MB");
        char *end = NULL;
        long long mb = env != NULL ? strtoll(env, &end, 10) : -1;
        if (env == NULL || *env == '\0' || *end != '\0' || mb < 0 || mb > (1LL << 30)) {
            mb = VM_CACHE_DEFAULT_MB;
        }
        /* (1 byte stands for "nothing": 0 means not read yet.) */
        vm_cache_limit = mb > 0 ? (uint64_t)mb << 20 : 1;
    }
    return vm_cache_limit;
}

/* The memory OBJECT's cache holds (the memfd's allocated blocks). */
static uint64_t vm_object_resident(const struct vm_object *object)
{
    struct stat st;
    uint64_t bytes = fstat(object->memfd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
    if (object->aside >= 0 && fstat(object->aside, &st) == 0) {
        bytes += (uint64_t)st.st_blocks * 512;
    }
    return bytes;
}

void vm_object_release(struct vm_object *object)
{
    if (--object->refs > 0) {
        return;
    }
    if (!object->may_cache || object->pager_dead || object->destroyed) {
        vm_object_terminate(object);
        return;
    }
    /* Cached: the oldest unreferenced objects beyond the bounds go.  The
     * list is newest first, so the newest that fit stay and every older
     * one goes, as if the oldest had gone one at a time. */
    unsigned cached = 0;
    uint64_t bytes = 0;
    bool over = false; /* once past a bound, every older one goes unmeasured */
    for (struct vm_object *o = vm_objects, *next; o != NULL; o = next) {
        next = o->next;
        if (o->refs > 0) {
            continue;
        }
        if (!over) {
            cached++;
            bytes += vm_object_resident(o);
            over = cached > VM_CACHED_MAX || bytes > vm_cache_limit_bytes();
        }
        if (over) {
            vm_object_terminate(o);
        }
    }
}

int vm_object_memfd(struct vm_object *object, uint64_t end)
{
    if (end > object->memfd_size) {
        if (end > (uint64_t)INT64_MAX || ftruncate(object->memfd, (off_t)end) != 0) {
            return -1;
        }
        object->memfd_size = end;
    }
    return object->memfd;
}

/* ---- mappings ---- */

struct vm_mapping *vm_space_lookup(struct vm_space *space, uint64_t addr)
{
    for (struct vm_mapping *m = space->maps; m != NULL; m = m->space_next) {
        if (addr >= m->start && addr < m->end) {
            return m;
        }
    }
    return NULL;
}

mach_port_name_t vm_space_object_name(struct vm_space *space, uint64_t addr)
{
    struct vm_mapping *m = space != NULL ? vm_space_lookup(space, addr) : NULL;
    if (m == NULL || m->object->terminated) {
        return MACH_PORT_NULL;
    }
    mach_port_name_t name = m->object->name;
    return kern_retain_right(name) == KERN_SUCCESS ? name : MACH_PORT_NULL;
}

kern_return_t vm_mapping_add(struct vm_space *space, struct vm_object *object, uint64_t start,
                             uint64_t end, uint64_t offset)
{
    struct vm_mapping *m = malloc(sizeof *m);
    if (m == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    struct uffdio_register reg = {
        .range = {.start = start, .len = end - start},
        .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(space->uffd, UFFDIO_REGISTER, &reg) != 0) {
        free(m);
        return KERN_RESOURCE_SHORTAGE;
    }
    *m = (struct vm_mapping){.space = space, .object = object, .start = start, .end = end,
                             .offset = offset, .space_next = space->maps,
                             .object_next = object->maps};
    space->maps = m;
    object->maps = m;
    /* Every page starts write-protected: its first write is seen. */
    vm_protect_range(object, m, offset, end - start, true);
    return KERN_SUCCESS;
}

/* M lost [LO, HI): its threads waiting there fault again (on nothing
 * now); those at or past TAIL's start (a split) wait in TAIL. */
static void vm_mapping_cut_waiters(struct vm_mapping *m, uint64_t lo, uint64_t hi,
                                   struct vm_mapping *tail)
{
    struct vm_waiter **link = &m->object->waiters;
    while (*link != NULL) {
        struct vm_waiter *w = *link;
        if (w->mapping == m && w->addr >= lo && w->addr < hi) {
            *link = w->next;
            vm_waiter_end(w, false);
            continue;
        }
        if (tail != NULL && w->mapping == m && w->addr >= tail->start) {
            w->mapping = tail;
        }
        link = &w->next;
    }
}

/* Unlinks M from its object's list and frees it, its waiters woken (the
 * range is gone: they fault again and find no mapping). */
static void vm_mapping_free(struct vm_mapping *m)
{
    struct vm_object *object = m->object;
    for (struct vm_mapping **link = &object->maps; *link != NULL; link = &(*link)->object_next) {
        if (*link == m) {
            *link = m->object_next;
            break;
        }
    }
    vm_mapping_cut_waiters(m, 0, UINT64_MAX, NULL);
    free(m);
    vm_object_release(object);
}

void vm_space_unmap(struct vm_space *space, uint64_t start, uint64_t end)
{
    struct vm_mapping **link = &space->maps;
    while (*link != NULL) {
        struct vm_mapping *m = *link;
        if (m->end <= start || m->start >= end) {
            link = &m->space_next;
            continue;
        }
        if (start > m->start || end < m->end) {
            uint64_t lo = start > m->start ? start : m->start;
            uint64_t hi = end < m->end ? end : m->end;
            struct vm_mapping *tail = NULL;
            if (start > m->start && end < m->end) {
                tail = malloc(sizeof *tail);
                if (tail != NULL) {
                    *tail = *m;
                    tail->start = end;
                    tail->offset = m->offset + (end - m->start);
                    tail->space_next = m->space_next;
                    tail->object_next = m->object->maps;
                    m->object->maps = tail;
                    m->object->refs++;
                    m->space_next = tail;
                }
            }
            vm_mapping_cut_waiters(m, lo, hi, tail);
        }
        if (start > m->start) {
            /* (A hole in the middle: the tail became a mapping of its own,
             * next in the list, and starts at END.) */
            m->end = start;
            link = &m->space_next;
        } else if (end < m->end) {
            m->offset += end - m->start;
            m->start = end;
            link = &m->space_next;
        } else {
            *link = m->space_next;
            vm_mapping_free(m);
        }
    }
}

bool vm_space_sync(struct vm_space *space, uint64_t start, uint64_t end, bool invalidate)
{
    bool any = false;
    for (struct vm_mapping *m = space->maps; m != NULL; m = m->space_next) {
        uint64_t lo = start > m->start ? start : m->start;
        uint64_t hi = end < m->end ? end : m->end;
        if (lo >= hi) {
            continue;
        }
        any = true;
        struct vm_object *object = m->object;
        uint64_t offset = m->offset + (lo - m->start);
        vm_return_range(object, offset, hi - lo, MEMORY_OBJECT_RETURN_DIRTY, !invalidate);
        if (invalidate) {
            vm_flush_range(object, offset, hi - lo);
        }
    }
    return any;
}

/* ---- faults ---- */

/* Makes thread TID, faulting on PAGE (object offset OFFSET) of MAPPING,
 * wait for its data or, with UNLOCK, for an unlock.  Returns false when
 * it cannot wait (the object is gone, or out of memory): it got a memory
 * error instead. */
static bool vm_fault_wait(struct vm_mapping *mapping, uint64_t offset, uint64_t page, pid_t tid,
                          bool unlock)
{
    struct vm_object *object = mapping->object;
    if (object->destroyed || object->pager_dead ||
        !vm_waiter_add(object, mapping, offset, page, tid, unlock, NULL,
                       mapping->space->timeout_ms)) {
        vm_memory_error(mapping->space->pid, tid, page);
        return false;
    }
    return true;
}

/* Asks the pager of OBJECT to unlock ACCESS to its cached page at OFFSET
 * (state *ST), unless an unlock of it is already asked. */
static void vm_unlock_ask(struct vm_object *object, uint64_t offset, uint8_t *st,
                          vm_prot_t access)
{
    if (*st & PG_UNLOCKING) {
        return;
    }
    *st |= PG_UNLOCKING;
    kern_return_t kr = kmo_memory_object_data_unlock(object->pager, object->control, offset,
                                                     VM_PAGE, access);
    if (kr != KERN_SUCCESS && !vm_pager_failed(object, kr)) {
        *st &= (uint8_t)~PG_UNLOCKING;
    }
}

void vm_object_fault(struct vm_mapping *mapping, uint64_t addr, unsigned flags, pid_t tid)
{
    struct vm_object *object = mapping->object;
    uint64_t page = addr & ~(uint64_t)(VM_PAGE - 1);
    uint64_t offset = mapping->offset + (page - mapping->start);
    uint8_t *st = vm_page(object, offset, true);
    if (st == NULL) {
        vm_memory_error(mapping->space->pid, tid, page);
        return;
    }
    if (vm_page_hidden(*st)) {
        /* Locked against reading (whatever the fault says: it may have
         * been queued before the lock): every access waits for the
         * unlock, a write asking for writing too, as GNU Mach's faults
         * ask for read, or read and write. */
        vm_prot_t access = VM_PROT_READ;
        if (flags & UFFD_PAGEFAULT_FLAG_WRITE) {
            access |= VM_PROT_WRITE;
        }
        if (vm_fault_wait(mapping, offset, page, tid, true)) {
            vm_unlock_ask(object, offset, st, access);
        }
        return;
    }
    if ((flags & UFFD_PAGEFAULT_FLAG_WP) && (*st & PG_PRESENT)) {
        if (!(PG_LOCK(*st) & VM_PROT_WRITE)) {
            *st |= PG_DIRTY;
            vm_protect_range(object, mapping, offset, VM_PAGE, false);
            return;
        }
        /* The pager locked writes out: ask it to unlock (once). */
        if (vm_fault_wait(mapping, offset, page, tid, true)) {
            vm_unlock_ask(object, offset, st, VM_PROT_WRITE);
        }
        return;
    }
    if (*st & PG_PRESENT) {
        vm_wake(mapping, page); /* supplied since the fault */
        return;
    }
    if (!vm_fault_wait(mapping, offset, page, tid, false)) {
        return;
    }
    if (!(*st & PG_REQUESTED)) {
        vm_prot_t access = VM_PROT_READ;
        if (flags & UFFD_PAGEFAULT_FLAG_WRITE) {
            access |= VM_PROT_WRITE;
        }
        vm_request(object, offset, mapping->offset + (mapping->end - mapping->start), access);
    }
}

int vm_object_expire(void)
{
    uint64_t now = linux_now_ms();
    uint64_t next = UINT64_MAX;
    for (struct vm_object *object = vm_objects; object != NULL; object = object->next) {
        if (object->waiters == NULL) {
            continue;
        }
        struct vm_waiter **link = &object->waiters;
        while (*link != NULL) {
            struct vm_waiter *w = *link;
            if (object->pager_dead || w->deadline_ms <= now) {
                *link = w->next;
                vm_waiter_end(w, true);
            } else {
                if (w->deadline_ms < next) {
                    next = w->deadline_ms;
                }
                link = &w->next;
            }
        }
    }
    return next == UINT64_MAX ? -1 : (int)(next - now);
}

/* Whether every page of [OFFSET, OFFSET + SIZE) of OBJECT is in the
 * memfd; if not, stores the first that is not at *AT.  Expects [V]. */
static bool vm_readable(struct vm_object *object, uint64_t offset, uint64_t size, uint64_t *at)
{
    for (uint64_t p = offset; p < offset + size; p += VM_PAGE) {
        uint8_t st = vm_page_state(object, p);
        if (!(st & PG_PRESENT) || vm_page_hidden(st)) {
            *at = p;
            return false;
        }
    }
    return true;
}

kern_return_t vm_object_read(struct vm_object *object, uint64_t offset, uint64_t size,
                             void *dst, int timeout_ms)
{
    kern_return_t kr = KERN_SUCCESS;
    vm_lock();
    uint64_t from = offset; /* pages below it were there when seen */
    for (;;) {
        uint64_t at;
        if (vm_readable(object, from, offset + size - from, &at)) {
            if (from == offset) {
                break;
            }
            /* Each was there when seen, but [V] went while later ones
             * were awaited: one that left since (flushed, or locked
             * against reading) is awaited again. */
            from = offset;
            continue;
        }
        from = at;
        uint8_t st = vm_page_state(object, at);
        /* Wanted: its data, or (locked against reading) its unlock, as
         * GNU Mach's copy faults the page for reading. */
        bool unlock = (st & PG_PRESENT) != 0;
        _Atomic int done = 0;
        if (object->destroyed || object->pager_dead ||
            !vm_waiter_add(object, NULL, at, 0, 0, unlock, &done, timeout_ms)) {
            kr = KERN_MEMORY_ERROR;
            break;
        }
        if (unlock) {
            vm_unlock_ask(object, at, vm_page(object, at, false), VM_PROT_READ);
        } else if (!(st & PG_REQUESTED)) {
            vm_request(object, at, offset + size, VM_PROT_READ);
        }
        while (atomic_load(&done) == 0) {
            unsigned gen = atomic_load(&vm_generation);
            vm_unlock();
            if (kern_serving_other_task()) {
                /* The service thread serves meanwhile: the pager's answer
                 * (unless the fault thread takes it: vm_fault_pagers),
                 * and any other request, which must not wait behind a
                 * pager (a pager that calls this task while it answers). */
                kern_service_once(10);
            } else if (atomic_load(&done) == 0) {
                (void)linux_futex_wait(&vm_generation, gen, 50, false);
            }
            vm_lock();
            (void)vm_object_expire();
        }
        if (atomic_load(&done) < 0) {
            kr = KERN_MEMORY_ERROR;
            break;
        }
    }
    if (kr == KERN_SUCCESS && linux_pread_full(object->memfd, dst, size, offset) != size) {
        kr = KERN_MEMORY_ERROR;
    }
    vm_unlock();
    return kr;
}

/* ---- the pager's calls on the control port (mach.defs) ---- */

/* A completion reply through REPLY_TO (kernel space) was sent with
 * result KR: when it failed the right is still ours, and goes. */
static void vm_reply_sent(mach_port_name_t reply_to, kern_return_t kr)
{
    if (kr != KERN_SUCCESS) {
        kern_release_right(reply_to);
    }
}

/* Takes [V] and returns the object whose control port is CONTROL, or
 * returns NULL without [V]. */
static struct vm_object *vm_control_lock(mach_port_t control)
{
    vm_lock();
    struct vm_object *object = u64map_lookup(&vm_by_control, control);
    if (object == NULL || object->destroyed) {
        vm_unlock();
        return NULL;
    }
    return object;
}

/* The mapping of OBJECT through which its page at AT is best filled: the
 * one a thread faulted in waiting for it, else any that maps it (NULL:
 * none).  Expects [V]. */
static struct vm_mapping *vm_fill_mapping(struct vm_object *object, uint64_t at)
{
    for (struct vm_waiter *w = object->waiters; w != NULL; w = w->next) {
        if (w->mapping != NULL && !w->unlock && w->offset == at) {
            return w->mapping;
        }
    }
    for (struct vm_mapping *m = object->maps; m != NULL; m = m->object_next) {
        if (m->offset <= at && at - m->offset < m->end - m->start) {
            return m;
        }
    }
    return NULL;
}

/* Copies up to LEN bytes from SRC into the absent pages from AT of
 * OBJECT's cache through one of its mappings (UFFDIO_COPY, which adds
 * them to the memfd), and so maps them there at once, write-protected as
 * every page of the cache starts.  Returns how many bytes from AT are now
 * in the memfd: the caller writes the rest.  Expects [V].
 *
 * Why: a read fault of a page already in the memfd maps that page only
 * (Linux maps no neighbours in a range registered for write protection),
 * so a run written into the memfd cost the mapping that asked for it one
 * more fault per page.  A single page goes by pwrite as before: its
 * fault is retried anyway, and the first touch measured no faster. */
static uint64_t vm_fill_mapped(struct vm_object *object, uint64_t at, uint64_t len,
                               const char *src)
{
    struct vm_mapping *m = len > VM_PAGE ? vm_fill_mapping(object, at) : NULL;
    if (m == NULL) {
        return 0;
    }
    uint64_t reach = m->offset + (m->end - m->start) - at;
    struct uffdio_copy copy = {
        .dst = m->start + (at - m->offset),
        .src = (uint64_t)(uintptr_t)src,
        .len = len < reach ? len : reach,
        .mode = UFFDIO_COPY_MODE_DONTWAKE | UFFDIO_COPY_MODE_WP, /* wakes: vm_waiters_end */
    };
    uint64_t done = ioctl(m->space->uffd, UFFDIO_COPY, &copy) == 0 ? copy.len
                    : copy.copy > 0                                 ? (uint64_t)copy.copy
                                                                    : 0;
    /* Linux fills whatever its range registered at that address maps: a
     * task that mapped something else there privately (registering it
     * with its own copy of its userfaultfd) would keep the pages, and the
     * cache would lack them.  So they must be in the memfd, or are
     * written there. */
    if (done > 0 && lseek(object->memfd, (off_t)at, SEEK_HOLE) < (off_t)(at + done)) {
        return 0;
    }
    return done;
}

/* Fills the absent pages of [OFFSET, OFFSET + SIZE) of OBJECT (up to the
 * reach of its mappings): from DATA (NULL: zeros), with LOCK and
 * PRECIOUS (locked against reading, into the aside store).  Pages already
 * cached keep their data; with PRESENT_AT, the first one ends the fill
 * and its offset is stored there.  Returns false when Linux refuses the
 * data. */
static bool vm_fill(struct vm_object *object, uint64_t offset, uint64_t size, const char *data,
                    vm_prot_t lock, bool precious, uint64_t *present_at)
{
    /* Nothing is kept past what mappings reach (the memfd's size): a
     * pager cannot make the cache grow. */
    uint64_t end = offset + size < object->memfd_size ? offset + size : object->memfd_size;
    uint64_t at = offset;
    while (at < end) {
        if (vm_page_state(object, at) & PG_PRESENT) {
            if (present_at != NULL) {
                *present_at = at; /* GNU Mach stops there */
                break;
            }
            at += VM_PAGE;
            continue;
        }
        uint64_t run = at;
        while (run < end && !(vm_page_state(object, run) & PG_PRESENT)) {
            run += VM_PAGE;
        }
        /* Protected before the data appears, so that no write goes
         * unseen: a mapping's pages are from when it is added (Linux
         * keeps the protection of an empty page as a marker), until a
         * flush punches them out. */
        bool hide = (lock & VM_PROT_READ) != 0;
        if (object->rearm && !hide) {
            vm_protect_range(object, NULL, at, run - at, true);
        }
        int fd = hide ? vm_aside_fd(object) : object->memfd;
        bool ok = fd >= 0;
        if (ok && data != NULL) {
            const char *src = data + (at - offset);
            uint64_t done = hide ? 0 : vm_fill_mapped(object, at, run - at, src);
            while (ok && done < run - at) {
                ssize_t n = pwrite(fd, src + done, run - at - done, (off_t)(at + done));
                ok = n > 0 || (n < 0 && errno == EINTR);
                done += n > 0 ? (uint64_t)n : 0;
            }
        } else if (ok) {
            ok = fallocate(fd, 0, (off_t)at, (off_t)(run - at)) == 0;
        }
        if (!ok) {
            return false;
        }
        for (uint64_t p = at; p < run; p += VM_PAGE) {
            uint8_t *st = vm_page(object, p, true);
            if (st == NULL) {
                return false;
            }
            *st = (uint8_t)(PG_PRESENT | (precious ? PG_PRECIOUS : 0) |
                            ((lock & VM_PROT_ALL) << PG_LOCK_SHIFT));
        }
        at = run;
    }
    vm_waiters_end(object, offset, size, false, vm_waiter_supplied);
    return true;
}

/* The largest supply read into a thread's buffer (kern_memory_object_data_supply):
 * the largest run a request asks. */
#define VM_SUPPLY_BUF ((size_t)VM_CLUSTER_MAX * VM_PAGE)

/* The calling thread's buffer of VM_SUPPLY_BUF bytes (NULL when it cannot
 * be mapped), released when the thread exits. */
static char *vm_supply_buf(void)
{
    return linux_thread_buf(LINUX_BUF_SUPPLY, VM_SUPPLY_BUF);
}

/* The whole pages of [OFFSET, OFFSET + SIZE): partial ones are dropped. */
static bool vm_whole_pages(uint64_t *offset, uint64_t *size)
{
    uint64_t start = (*offset + VM_PAGE - 1) & ~(uint64_t)(VM_PAGE - 1);
    uint64_t end = (*offset + *size) & ~(uint64_t)(VM_PAGE - 1);
    if (*offset + *size < *offset || start >= end) {
        return false;
    }
    *offset = start;
    *size = end - start;
    return true;
}

kern_return_t kern_memory_object_data_supply(mach_port_t control, vm_offset_t offset,
                                             vm_offset_t data, mach_msg_type_number_t dataCnt,
                                             vm_prot_t lock_value, boolean_t precious,
                                             mach_port_t reply_to,
                                             mach_msg_type_name_t reply_toPoly)
{
    (void)reply_toPoly;
    /* A large region arrives as a private mapping of the sender's sealed
     * memfd, not yet in our page tables.  Read from the memfd into a
     * buffer of this thread that stays mapped, it is copied into the
     * cache at memcpy speed; populating the mapping instead made a
     * sequential read 4-10% slower, and faulting a page at a time inside
     * pwrite (or UFFDIO_COPY's slow path) was 4x slower still. */
    const char *src = (const char *)data;
    char *buf = dataCnt > 4 * VM_PAGE && dataCnt <= VM_SUPPLY_BUF ? vm_supply_buf() : NULL;
    if (buf != NULL && wire_region_read((const void *)data, dataCnt, buf)) {
        src = buf;
    } else if (dataCnt > 4 * VM_PAGE) {
        /* Only what the cache can take is faulted in: a sealed memfd
         * with holes could claim gigabytes, which populating would
         * allocate (and this thread may be the one serving faults). */
        struct vm_object *o = vm_control_lock(control);
        uint64_t reach = o != NULL && o->memfd_size > offset ? o->memfd_size - offset : 0;
        if (o != NULL) {
            vm_unlock();
        }
        vm_fault_prepare((const void *)data, dataCnt < reach ? dataCnt : (size_t)reach);
    }
    struct vm_object *object = vm_control_lock(control);
    if (object == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    kern_return_t result = KERN_SUCCESS;
    uint64_t at = offset, size = dataCnt;
    uint64_t skip = ((at + VM_PAGE - 1) & ~(uint64_t)(VM_PAGE - 1)) - at;
    uint64_t present_at = UINT64_MAX;
    if (vm_whole_pages(&at, &size) &&
        !vm_fill(object, at, size, src + skip, lock_value, precious,
                 &present_at)) {
        result = KERN_RESOURCE_SHORTAGE;
    }
    if (result == KERN_SUCCESS && present_at != UINT64_MAX) {
        result = KERN_MEMORY_PRESENT;
    }
    if (MACH_PORT_VALID(reply_to)) {
        vm_reply_sent(reply_to, kmo_memory_object_supply_completed(
                                    reply_to, MACH_MSG_TYPE_MOVE_SEND_ONCE, object->control,
                                    offset, dataCnt, result,
                                    present_at != UINT64_MAX ? present_at : 0));
    }
    vm_unlock();
    wire_region_release((void *)data, dataCnt); /* ours once used */
    return KERN_SUCCESS;
}

kern_return_t kern_memory_object_data_unavailable(mach_port_t control, vm_offset_t offset,
                                                  vm_size_t size)
{
    struct vm_object *object = vm_control_lock(control);
    if (object == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    kern_return_t kr = KERN_SUCCESS;
    uint64_t at = offset, len = size;
    if (vm_whole_pages(&at, &len) && !vm_fill(object, at, len, NULL, VM_PROT_NONE, false, NULL)) {
        kr = KERN_RESOURCE_SHORTAGE;
    }
    vm_unlock();
    return kr;
}

kern_return_t kern_memory_object_data_error(mach_port_t control, vm_offset_t offset,
                                            vm_size_t size, kern_return_t error_value)
{
    (void)error_value; /* GNU Mach reports every such fault as KERN_MEMORY_ERROR */
    struct vm_object *object = vm_control_lock(control);
    if (object == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    uint64_t at = offset & ~(uint64_t)(VM_PAGE - 1);
    uint64_t end = offset + size < offset ? UINT64_MAX : offset + size;
    uint64_t limit = vm_cached_end(object, offset, size);
    for (uint64_t p = at; (p = vm_next_state(object, p, limit)) < limit; p += VM_PAGE) {
        uint8_t *st = vm_page(object, p, false);
        if (st != NULL) {
            *st &= (uint8_t)~(*st & PG_PRESENT ? PG_UNLOCKING : PG_REQUESTED);
        }
    }
    /* Those waiting for the data, and those waiting for an unlock: the
     * pager refuses it.  (GNU Mach ignores a data_error for a page it
     * holds; its threads wait on until the lock is lowered.) */
    vm_waiters_end(object, at, end - at, true, NULL);
    vm_unlock();
    return KERN_SUCCESS;
}

kern_return_t kern_vm_object_sync(mach_port_t name, vm_offset_t offset, vm_size_t size,
                                  boolean_t should_flush, boolean_t should_return,
                                  boolean_t should_iosync)
{
    (void)should_iosync; /* always synchronous, as in GNU Mach */
    mach_port_name_t control = MACH_PORT_NULL;
    vm_lock();
    uint64_t key;
    void *value;
    for (size_t i = 0;
         control == MACH_PORT_NULL && u64map_next(&vm_by_control, &i, &key, &value);) {
        const struct vm_object *object = value;
        if (object->name == name) {
            control = object->control;
        }
    }
    vm_unlock();
    if (control == MACH_PORT_NULL) {
        return KERN_INVALID_ARGUMENT; /* no memory object's name port */
    }
    /* GNU Mach's: the whole pages, everything cached returned (or only
     * what the pager must have), flushed if asked. */
    vm_offset_t start = offset & ~(vm_offset_t)(VM_PAGE - 1);
    vm_size_t whole = ((offset + size + VM_PAGE - 1) & ~(vm_offset_t)(VM_PAGE - 1)) - start;
    return kern_memory_object_lock_request(control, start, whole,
                                           should_return ? MEMORY_OBJECT_RETURN_ALL
                                                         : MEMORY_OBJECT_RETURN_NONE,
                                           should_flush, VM_PROT_NO_CHANGE, MACH_PORT_NULL,
                                           0);
}

/* Ends a run of pages [LO, HI) of OBJECT whose lock changed to LOCK and
 * which must move: out of the memfd when LOCK forbids reading, back into
 * it otherwise.  Pages that cannot move keep where they are, and their
 * lock says so (the lock against reading is lost, or kept). */
static void vm_lock_move(struct vm_object *object, uint64_t lo, uint64_t hi, vm_prot_t lock)
{
    if (lo >= hi) {
        return;
    }
    bool hide = (lock & VM_PROT_READ) != 0;
    if (hide ? vm_hide(object, lo, hi - lo) : vm_show(object, lo, hi - lo)) {
        return;
    }
    fprintf(stderr, "hell: cannot %s pages of a memory object: %s\n",
            hide ? "lock out reads of" : "unlock reads of", strerror(errno));
    for (uint64_t p = lo; p < hi; p += VM_PAGE) {
        uint8_t *st = vm_page(object, p, false);
        *st = (uint8_t)(hide ? *st & ~(VM_PROT_READ << PG_LOCK_SHIFT)
                             : *st | (VM_PROT_READ << PG_LOCK_SHIFT));
    }
}

/* Sets the lock of the cached pages of [AT, END) of OBJECT to LOCK
 * (memory_object_lock_request's first step), restarting their unlock
 * requests: writes locked out are write-protected in every mapping;
 * pages whose reading is locked out or allowed again move out of the
 * memfd or back, in runs.  Expects [V]. */
static void vm_lock_range(struct vm_object *object, uint64_t at, uint64_t end, vm_prot_t lock)
{
    bool hide = (lock & VM_PROT_READ) != 0;
    uint64_t run = 0, run_end = 0; /* pages to move */
    for (uint64_t p = at; (p = vm_next_state(object, p, end)) < end; p += VM_PAGE) {
        uint8_t *st = vm_page(object, p, false);
        if (st == NULL || !(*st & PG_PRESENT)) {
            continue;
        }
        if (vm_page_hidden(*st) != hide) {
            if (p != run_end) {
                vm_lock_move(object, run, run_end, lock);
                run = p;
            }
            run_end = p + VM_PAGE;
        } else if (!hide && (lock & VM_PROT_WRITE) && !(PG_LOCK(*st) & VM_PROT_WRITE)) {
            vm_protect_range(object, NULL, p, VM_PAGE, true);
        }
        *st = (uint8_t)((*st & ~(VM_PROT_ALL << PG_LOCK_SHIFT) & ~PG_UNLOCKING) |
                        (lock << PG_LOCK_SHIFT));
    }
    vm_lock_move(object, run, run_end, lock);
}

kern_return_t kern_memory_object_lock_request(mach_port_t control, vm_offset_t offset,
                                              vm_size_t size,
                                              memory_object_return_t should_return,
                                              boolean_t should_flush, vm_prot_t lock_value,
                                              mach_port_t reply_to,
                                              mach_msg_type_name_t reply_toPoly)
{
    (void)reply_toPoly;
    if (should_return < MEMORY_OBJECT_RETURN_NONE ||
        should_return > MEMORY_OBJECT_RETURN_ALL ||
        (lock_value != VM_PROT_NO_CHANGE && (lock_value & ~VM_PROT_ALL))) {
        return KERN_INVALID_ARGUMENT;
    }
    struct vm_object *object = vm_control_lock(control);
    if (object == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    uint64_t at = offset & ~(uint64_t)(VM_PAGE - 1);
    uint64_t end = vm_cached_end(object, offset, size);
    /* 1: restrict access (a page flushed needs none: GNU Mach locks it
     * all, then frees it). */
    if (lock_value != VM_PROT_NO_CHANGE && !should_flush && at < end) {
        vm_lock_range(object, at, end, lock_value);
        /* Threads waiting for an unlock fault again: on a page unlocked,
         * a write goes on (dirtying it); on one still locked, they ask
         * again. */
        vm_waiters_end(object, at, end - at, false, vm_waiter_unlocking);
    }
    /* 2: write back; 3: flush. */
    if (at < end) {
        vm_return_range(object, at, end - at, should_return, !should_flush);
        if (should_flush) {
            vm_flush_range(object, at, end - at);
        }
    }
    if (MACH_PORT_VALID(reply_to)) {
        vm_reply_sent(reply_to, kmo_memory_object_lock_completed(
                                    reply_to, MACH_MSG_TYPE_MOVE_SEND_ONCE, object->control,
                                    offset, size));
    }
    vm_unlock();
    return KERN_SUCCESS;
}

/* memory_object_ready and change_attributes. */
static kern_return_t vm_set_attributes(mach_port_t control, boolean_t may_cache,
                                       memory_object_copy_strategy_t copy_strategy,
                                       mach_port_t reply_to)
{
    struct vm_object *object = vm_control_lock(control);
    if (object == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    object->may_cache = may_cache != 0;
    object->copy_strategy = copy_strategy;
    if (!object->ready) {
        object->ready = true;
        vm_request_waited(object);
    }
    if (MACH_PORT_VALID(reply_to)) {
        vm_reply_sent(reply_to, kmo_memory_object_change_completed(
                                    reply_to, MACH_MSG_TYPE_MOVE_SEND_ONCE, may_cache,
                                    copy_strategy));
    }
    if (object->refs == 0 && !object->may_cache) {
        vm_object_terminate(object); /* cached no longer */
    }
    vm_unlock();
    return KERN_SUCCESS;
}

kern_return_t kern_memory_object_ready(mach_port_t control, boolean_t may_cache,
                                       memory_object_copy_strategy_t copy_strategy)
{
    return vm_set_attributes(control, may_cache, copy_strategy, MACH_PORT_NULL);
}

kern_return_t kern_memory_object_change_attributes(mach_port_t control, boolean_t may_cache,
                                                   memory_object_copy_strategy_t copy_strategy,
                                                   mach_port_t reply_to,
                                                   mach_msg_type_name_t reply_toPoly)
{
    (void)reply_toPoly;
    return vm_set_attributes(control, may_cache, copy_strategy, reply_to);
}

kern_return_t kern_memory_object_get_attributes(mach_port_t control, boolean_t *object_ready,
                                                boolean_t *may_cache,
                                                memory_object_copy_strategy_t *copy_strategy)
{
    struct vm_object *object = vm_control_lock(control);
    if (object == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    *object_ready = object->ready;
    *may_cache = object->may_cache;
    *copy_strategy = object->copy_strategy;
    vm_unlock();
    return KERN_SUCCESS;
}

kern_return_t kern_memory_object_destroy(mach_port_t control, kern_return_t reason)
{
    (void)reason;
    struct vm_object *object = vm_control_lock(control);
    if (object == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    /* Its data is gone: mapped pages fault, and faults fail. */
    object->destroyed = true;
    vm_object_fail_all(object);
    vm_flush_range(object, 0, object->memfd_size);
    if (object->refs == 0) {
        vm_object_terminate(object);
    } else {
        vm_object_disconnect(object, false); /* the mappings keep the cache */
    }
    vm_unlock();
    return KERN_SUCCESS;
}

void vm_object_fork_child(void)
{
    /* The parent's objects are the parent's: their ports were not
     * inherited and their mappings are holes here (MADV_DONTFORK).  Only
     * the descriptors and the memory are let go. */
    for (struct vm_object *object = vm_objects, *next; object != NULL; object = next) {
        next = object->next;
        for (struct vm_mapping *m = object->maps, *mnext; m != NULL; m = mnext) {
            mnext = m->object_next;
            free(m);
        }
        for (struct vm_waiter *w = object->waiters, *wnext; w != NULL; w = wnext) {
            wnext = w->next;
            free(w);
        }
        object->maps = NULL;
        object->waiters = NULL;
        vm_object_free(object);
    }
    u64map_destroy(&vm_by_pager);
    u64map_destroy(&vm_by_control);
    vm_timeout_ms = 0;
    vm_cache_limit = 0;
    /* The wakes other threads held did not survive the fork. */
    vm_nwakes = 0;
    atomic_store(&vm_wakers, 0);
    vm_lock_word = (struct futex_lock)FUTEX_LOCK_INIT;
}

bool vm_object_range_append(struct vm_object_range **ranges, size_t *n, size_t *cap,
                            const struct vm_object_range *range)
{
    if (*n == *cap) {
        size_t room = *cap == 0 ? 8 : *cap * 2;
        struct vm_object_range *grown = realloc(*ranges, room * sizeof *grown);
        if (grown == NULL) {
            return false;
        }
        *ranges = grown;
        *cap = room;
    }
    if (kern_retain_right(range->pager) == KERN_SUCCESS) {
        (*ranges)[(*n)++] = *range;
    }
    return true;
}

bool vm_object_self_ranges(struct vm_object_range **ranges, size_t *n, size_t *cap)
{
    struct vm_space *space = vm_space_self_if_any();
    for (struct vm_mapping *m = space != NULL ? space->maps : NULL; m != NULL;
         m = m->space_next) {
        struct vm_object_range range = {.start = m->start, .end = m->end, .offset = m->offset,
                                         .pager = m->object->pager};
        if (!vm_object_range_append(ranges, n, cap, &range)) {
            return false;
        }
    }
    return true;
}
