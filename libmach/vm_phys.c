/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Physical memory from Linux (vm_phys.h).  Contiguous memory of more than
 * a page is made of transparent huge pages (MADV_HUGEPAGE): a pool of them
 * is filled and locked, sorted by physical address, and the first run long
 * enough that ends at or below the limit is moved (mremap moves a huge
 * page's page table entry, not its memory) into one mapping, in order,
 * then trimmed to the size.  The pool grows a few times while no run
 * fits (what it holds stays out of the next fill), then is released.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "linux.h"
#include "vm_maps.h"
#include "vm_phys.h"

#define VM_PHYS_PAGE 4096ul
#define VM_PHYS_HUGE (2ul << 20) /* a transparent huge page */

/* How many times the pool grows (or a page is asked for) before giving
 * up. */
#define VM_PHYS_TRIES 4

/* /proc/self/pagemap: one 64-bit entry per page. */
#define VM_PHYS_PRESENT (1ull << 63)
#define VM_PHYS_PFN ((1ull << 55) - 1)
#define VM_PHYS_READ_MAX 512 /* entries read at once */

/* Opens /proc/self/pagemap; returns its descriptor, or -1. */
static int vm_phys_pagemap_open(void)
{
    return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

/* vm_phys_read through the pagemap descriptor FD. */
static kern_return_t vm_phys_read_fd(int fd, vm_address_t address, size_t n,
                                     rpc_phys_addr_t *out)
{
    uint64_t entries[VM_PHYS_READ_MAX];
    kern_return_t kr = KERN_SUCCESS;
    size_t i = 0;
    while (i < n && kr == KERN_SUCCESS) {
        vm_address_t at = address + i * VM_PHYS_PAGE;
        if (at >= VM_MAPS_USER_MAX) {
            out[i++] = 0;
            continue;
        }
        /* A run within the user range (so without wrapping). */
        size_t run = n - i;
        size_t room = (VM_MAPS_USER_MAX - at) / VM_PHYS_PAGE;
        run = run < room ? run : room;
        run = run < VM_PHYS_READ_MAX ? run : VM_PHYS_READ_MAX;
        uint64_t got = linux_pread_full(fd, entries, run * sizeof entries[0],
                                        at / VM_PHYS_PAGE * sizeof entries[0]) /
                       sizeof entries[0];
        for (size_t j = 0; j < run; j++) {
            uint64_t e = j < got ? entries[j] : 0;
            out[i + j] = 0;
            if (e & VM_PHYS_PRESENT) {
                /* (Frame 0 is never a process's: a hidden frame.) */
                if ((e & VM_PHYS_PFN) == 0) {
                    kr = KERN_NO_ACCESS;
                }
                out[i + j] = (e & VM_PHYS_PFN) * VM_PHYS_PAGE;
            }
        }
        i += run;
    }
    return kr;
}

kern_return_t vm_phys_read(vm_address_t address, size_t n, rpc_phys_addr_t *out)
{
    int fd = vm_phys_pagemap_open();
    if (fd < 0) {
        return KERN_RESOURCE_SHORTAGE;
    }
    kern_return_t kr = vm_phys_read_fd(fd, address, n, out);
    linux_close(fd);
    return kr;
}

/* Whether the LEN bytes (page multiple) from START are in memory and
 * physically contiguous: KERN_SUCCESS with the address of the first in
 * *PADDR, or KERN_FAILURE; or vm_phys_read's failure.  FD is the
 * pagemap's. */
static kern_return_t vm_phys_contiguous(int fd, vm_address_t start, vm_size_t len,
                                        rpc_phys_addr_t *paddr)
{
    rpc_phys_addr_t run[VM_PHYS_READ_MAX];
    size_t n = len / VM_PHYS_PAGE;
    for (size_t i = 0; i < n; i += VM_PHYS_READ_MAX) {
        size_t k = n - i < VM_PHYS_READ_MAX ? n - i : VM_PHYS_READ_MAX;
        kern_return_t kr = vm_phys_read_fd(fd, start + i * VM_PHYS_PAGE, k, run);
        if (kr != KERN_SUCCESS) {
            return kr;
        }
        if (i == 0) {
            *paddr = run[0];
        }
        for (size_t j = 0; j < k; j++) {
            if (run[j] == 0 || run[j] != *paddr + (i + j) * VM_PHYS_PAGE) {
                return KERN_FAILURE;
            }
        }
    }
    return KERN_SUCCESS;
}

/* Maps LEN bytes (page multiple) of zeros at an address aligned to ALIGN
 * (a power of two, at least a page), readable and writable, asking for
 * huge pages when HUGE, filled and locked.  Returns the address, or 0 when
 * Linux refuses (no memory, or none it lets this process lock). */
static vm_address_t vm_phys_map_locked(vm_size_t len, vm_size_t align, bool huge)
{
    vm_size_t room = len + align - VM_PHYS_PAGE;
    char *r = mmap(NULL, room, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) {
        return 0;
    }
    vm_address_t at = ((vm_address_t)r + align - 1) & ~(align - 1);
    if (at > (vm_address_t)r) {
        (void)munmap(r, at - (vm_address_t)r);
    }
    if ((vm_address_t)r + room > at + len) {
        (void)munmap((void *)(at + len), (vm_address_t)r + room - (at + len));
    }
    if (huge) {
        (void)madvise((void *)at, len, MADV_HUGEPAGE); /* (EINVAL: no THP; checked later) */
    }
    bool filled = madvise((void *)at, len, MADV_POPULATE_WRITE) == 0;
    if (!filled && errno == EINVAL) { /* a kernel before 5.14 */
        for (vm_address_t p = at; p < at + len; p += VM_PHYS_PAGE) {
            *(volatile char *)p = 0;
        }
        filled = true;
    }
    if (!filled || mlock((void *)at, len) != 0) {
        (void)munmap((void *)at, len);
        return 0;
    }
    return at;
}

/* vm_phys_alloc_contiguous of a page; FD is the pagemap's. */
static kern_return_t vm_phys_alloc_page(int fd, rpc_phys_addr_t pmax, vm_address_t *start,
                                        rpc_phys_addr_t *paddr)
{
    vm_address_t aside[VM_PHYS_TRIES]; /* pages above PMAX, kept while trying */
    unsigned n = 0;
    kern_return_t kr = KERN_FAILURE;
    while (kr == KERN_FAILURE && n < VM_PHYS_TRIES) {
        vm_address_t at = vm_phys_map_locked(VM_PHYS_PAGE, VM_PHYS_PAGE, false);
        if (at == 0) {
            kr = KERN_RESOURCE_SHORTAGE;
            break;
        }
        kr = vm_phys_contiguous(fd, at, VM_PHYS_PAGE, paddr);
        if (kr == KERN_SUCCESS && *paddr > pmax - VM_PHYS_PAGE) {
            kr = KERN_FAILURE;
        }
        if (kr == KERN_SUCCESS) {
            *start = at;
        } else if (kr == KERN_FAILURE) {
            aside[n++] = at;
        } else {
            (void)munmap((void *)at, VM_PHYS_PAGE);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        (void)munmap((void *)aside[i], VM_PHYS_PAGE);
    }
    return kr == KERN_FAILURE ? KERN_RESOURCE_SHORTAGE : kr;
}

/* A huge page of the pool: where it is mapped (0 once moved out) and its
 * physical address. */
struct vm_phys_huge {
    vm_address_t va;
    rpc_phys_addr_t pa;
};

static int vm_phys_huge_order(const void *a, const void *b)
{
    rpc_phys_addr_t x = ((const struct vm_phys_huge *)a)->pa;
    rpc_phys_addr_t y = ((const struct vm_phys_huge *)b)->pa;
    return x < y ? -1 : x > y;
}

/* Adds to POOL (*COUNT entries, room for N more) N fresh huge pages;
 * those Linux did not make one huge page (no THP, or none free) are
 * unmapped.  Returns KERN_SUCCESS, or vm_phys_alloc_contiguous's
 * failure.  FD is the pagemap's. */
static kern_return_t vm_phys_pool_grow(int fd, struct vm_phys_huge *pool, size_t *count,
                                       size_t n)
{
    vm_address_t at = vm_phys_map_locked(n * VM_PHYS_HUGE, VM_PHYS_HUGE, true);
    if (at == 0) {
        return KERN_RESOURCE_SHORTAGE;
    }
    for (size_t i = 0; i < n; i++) {
        vm_address_t va = at + i * VM_PHYS_HUGE;
        rpc_phys_addr_t pa;
        kern_return_t kr = vm_phys_contiguous(fd, va, VM_PHYS_HUGE, &pa);
        if (kr == KERN_SUCCESS) {
            pool[(*count)++] = (struct vm_phys_huge){.va = va, .pa = pa};
            continue;
        }
        (void)munmap((void *)va, VM_PHYS_HUGE);
        if (kr != KERN_FAILURE) {
            (void)munmap((void *)(va + VM_PHYS_HUGE), (n - i - 1) * VM_PHYS_HUGE);
            return kr;
        }
    }
    return KERN_SUCCESS;
}

/* The index in POOL (COUNT entries, sorted by physical address) of the
 * first of K huge pages in a row whose first LEN bytes end at or below
 * PMAX (at least LEN), or COUNT when there is none. */
static size_t vm_phys_pool_find(const struct vm_phys_huge *pool, size_t count, size_t k,
                                vm_size_t len, rpc_phys_addr_t pmax)
{
    size_t run = 0;
    for (size_t i = 0; i < count; i++) {
        run = i > 0 && pool[i].pa == pool[i - 1].pa + VM_PHYS_HUGE ? run + 1 : 1;
        if (run >= k && pool[i + 1 - k].pa <= pmax - len) {
            return i + 1 - k;
        }
    }
    return count;
}

/* Moves the K huge pages from POOL[FIRST] into one new mapping, in
 * order, unless they already are, and marks them taken.  Returns its
 * address, or 0 (those moved are unmapped). */
static vm_address_t vm_phys_pool_join(struct vm_phys_huge *pool, size_t first, size_t k)
{
    bool in_order = true;
    for (size_t i = 1; i < k; i++) {
        in_order = in_order && pool[first + i].va == pool[first].va + i * VM_PHYS_HUGE;
    }
    if (in_order) { /* already one after the other (one huge page, say) */
        vm_address_t va = pool[first].va;
        for (size_t i = 0; i < k; i++) {
            pool[first + i].va = 0;
        }
        return va;
    }
    vm_size_t len = k * VM_PHYS_HUGE, room = len + VM_PHYS_HUGE;
    char *r = mmap(NULL, room, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) {
        return 0;
    }
    vm_address_t at = ((vm_address_t)r + VM_PHYS_HUGE - 1) & ~(VM_PHYS_HUGE - 1);
    if (at > (vm_address_t)r) {
        (void)munmap(r, at - (vm_address_t)r);
    }
    (void)munmap((void *)(at + len), (vm_address_t)r + room - (at + len));
    for (size_t i = 0; i < k; i++) {
        struct vm_phys_huge *h = &pool[first + i];
        if (mremap((void *)h->va, VM_PHYS_HUGE, VM_PHYS_HUGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                   (void *)(at + i * VM_PHYS_HUGE)) == MAP_FAILED) {
            (void)munmap((void *)at, len);
            return 0;
        }
        h->va = 0;
    }
    return at;
}

/* vm_phys_alloc_contiguous of more than a page; FD is the pagemap's. */
static kern_return_t vm_phys_alloc_huge(int fd, vm_size_t len, rpc_phys_addr_t pmax,
                                        vm_address_t *start, rpc_phys_addr_t *paddr)
{
    size_t k = (len + VM_PHYS_HUGE - 1) / VM_PHYS_HUGE;
    struct vm_phys_huge *pool = malloc(VM_PHYS_TRIES * k * sizeof *pool);
    if (pool == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    size_t count = 0;
    vm_address_t at = 0;
    kern_return_t kr = KERN_FAILURE;
    for (unsigned tries = 0; kr == KERN_FAILURE && tries < VM_PHYS_TRIES; tries++) {
        kr = vm_phys_pool_grow(fd, pool, &count, k);
        if (kr != KERN_SUCCESS) {
            break;
        }
        qsort(pool, count, sizeof *pool, vm_phys_huge_order);
        size_t first = vm_phys_pool_find(pool, count, k, len, pmax);
        kr = KERN_FAILURE;
        if (first < count) {
            *paddr = pool[first].pa;
            at = vm_phys_pool_join(pool, first, k);
            kr = at != 0 ? KERN_SUCCESS : KERN_RESOURCE_SHORTAGE;
        }
    }
    for (size_t i = 0; i < count; i++) {
        if (pool[i].va != 0) {
            (void)munmap((void *)pool[i].va, VM_PHYS_HUGE);
        }
    }
    free(pool);
    if (kr != KERN_SUCCESS) {
        return kr == KERN_FAILURE ? KERN_RESOURCE_SHORTAGE : kr;
    }
    /* Checked again where it now is, then trimmed to the size (its last
     * huge page split: the pages kept stay where they are). */
    rpc_phys_addr_t again;
    if (vm_phys_contiguous(fd, at, len, &again) != KERN_SUCCESS || again != *paddr) {
        (void)munmap((void *)at, k * VM_PHYS_HUGE);
        return KERN_RESOURCE_SHORTAGE;
    }
    if (k * VM_PHYS_HUGE > len) {
        (void)munmap((void *)(at + len), k * VM_PHYS_HUGE - len);
    }
    /* No later collapse into a new huge page, which would move it. */
    (void)madvise((void *)at, len, MADV_NOHUGEPAGE);
    *start = at;
    return KERN_SUCCESS;
}

kern_return_t vm_phys_alloc_contiguous(vm_size_t len, rpc_phys_addr_t pmax, vm_address_t *start,
                                       rpc_phys_addr_t *paddr)
{
    if (len > pmax || len > VM_MAPS_USER_MAX - VM_PHYS_HUGE) {
        return KERN_RESOURCE_SHORTAGE; /* nothing could fit */
    }
    int fd = vm_phys_pagemap_open();
    if (fd < 0) {
        return KERN_RESOURCE_SHORTAGE;
    }
    kern_return_t kr = len <= VM_PHYS_PAGE ? vm_phys_alloc_page(fd, pmax, start, paddr)
                                           : vm_phys_alloc_huge(fd, len, pmax, start, paddr);
    linux_close(fd);
    return kr;
}
