/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vm_attr.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A run of pages whose attributes are not the defaults. */
struct vm_attr_run {
    vm_address_t start, end;
    struct vm_attr attr;
};

static pthread_mutex_t vm_attr_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct vm_attr_run *vm_attr_runs; /* sorted, disjoint, not default */
static size_t vm_attr_nruns;

static const struct vm_attr vm_attr_default = {.max_protection = VM_PROT_ALL,
                                               .inheritance = VM_ATTR_INHERIT_UNSET};

void vm_attr_lock(void)
{
    pthread_mutex_lock(&vm_attr_mutex);
}

void vm_attr_unlock(void)
{
    pthread_mutex_unlock(&vm_attr_mutex);
}

static bool vm_attr_equal(const struct vm_attr *a, const struct vm_attr *b)
{
    return a->max_protection == b->max_protection && a->inheritance == b->inheritance;
}

vm_address_t vm_attr_get(vm_address_t addr, vm_address_t limit, struct vm_attr *attr)
{
    /* The first run that ends after ADDR. */
    size_t lo = 0, hi = vm_attr_nruns;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (vm_attr_runs[mid].end <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < vm_attr_nruns && vm_attr_runs[lo].start <= addr) {
        *attr = vm_attr_runs[lo].attr;
        return vm_attr_runs[lo].end < limit ? vm_attr_runs[lo].end : limit;
    }
    *attr = vm_attr_default;
    if (lo < vm_attr_nruns && vm_attr_runs[lo].start < limit) {
        return vm_attr_runs[lo].start;
    }
    return limit;
}

/* Appends a run to OUT (merging with the last one when they touch and
 * agree; default runs are left out). */
static void vm_attr_emit(struct vm_attr_run *out, size_t *n, vm_address_t start,
                         vm_address_t end, const struct vm_attr *attr)
{
    if (start >= end || vm_attr_equal(attr, &vm_attr_default)) {
        return;
    }
    if (*n > 0 && out[*n - 1].end == start && vm_attr_equal(&out[*n - 1].attr, attr)) {
        out[*n - 1].end = end;
        return;
    }
    out[(*n)++] = (struct vm_attr_run){start, end, *attr};
}

/* Rewrites [START, END): each page's attributes are passed through SET
 * (with ARG).  Returns false when out of memory (nothing changed). */
static bool vm_attr_update(vm_address_t start, vm_address_t end,
                           void (*set)(struct vm_attr *, const void *), const void *arg)
{
    if (start >= end) {
        return true;
    }
    /* At most one more run on each side of the range and one per gap. */
    size_t cap = 2 * vm_attr_nruns + 3;
    struct vm_attr_run *out = malloc(cap * sizeof *out);
    if (out == NULL) {
        return false;
    }
    size_t n = 0;
    vm_address_t at = start; /* next page of the range to emit */
    for (size_t i = 0; i < vm_attr_nruns; i++) {
        const struct vm_attr_run *r = &vm_attr_runs[i];
        if (r->end <= start || r->start >= end) {
            if (r->start >= end && at < end) {
                struct vm_attr a = vm_attr_default;
                set(&a, arg);
                vm_attr_emit(out, &n, at, end, &a);
                at = end;
            }
            vm_attr_emit(out, &n, r->start, r->end, &r->attr);
            continue;
        }
        /* R overlaps the range: its part before, the gap before it, its
         * part inside (changed), its part after. */
        vm_attr_emit(out, &n, r->start, start, &r->attr);
        struct vm_attr gap = vm_attr_default;
        set(&gap, arg);
        vm_attr_emit(out, &n, at, r->start > at ? r->start : at, &gap);
        struct vm_attr inside = r->attr;
        set(&inside, arg);
        vm_address_t from = r->start > start ? r->start : start;
        vm_address_t to = r->end < end ? r->end : end;
        vm_attr_emit(out, &n, from, to, &inside);
        at = to;
        vm_attr_emit(out, &n, end, r->end, &r->attr);
    }
    if (at < end) {
        struct vm_attr a = vm_attr_default;
        set(&a, arg);
        vm_attr_emit(out, &n, at, end, &a);
    }
    free(vm_attr_runs);
    vm_attr_runs = out;
    vm_attr_nruns = n;
    return true;
}

static void vm_attr_put_max(struct vm_attr *a, const void *arg)
{
    a->max_protection = *(const vm_prot_t *)arg;
}

static void vm_attr_put_inheritance(struct vm_attr *a, const void *arg)
{
    a->inheritance = *(const vm_inherit_t *)arg;
}

static void vm_attr_put_default(struct vm_attr *a, const void *arg)
{
    (void)arg;
    *a = vm_attr_default;
}

bool vm_attr_set_max(vm_address_t start, vm_address_t end, vm_prot_t max)
{
    return vm_attr_update(start, end, vm_attr_put_max, &max);
}

bool vm_attr_set_inheritance(vm_address_t start, vm_address_t end, vm_inherit_t inheritance)
{
    return vm_attr_update(start, end, vm_attr_put_inheritance, &inheritance);
}

void vm_attr_clear(vm_address_t start, vm_address_t end)
{
    /* (Out of memory leaves stale attributes on pages no longer mapped:
     * reported for what is mapped there next, never a crash.) */
    (void)vm_attr_update(start, end, vm_attr_put_default, NULL);
}

void vm_attr_forget(const void *addr, size_t size)
{
    vm_address_t start = (vm_address_t)addr & ~(vm_address_t)4095;
    vm_address_t end = ((vm_address_t)addr + size + 4095) & ~(vm_address_t)4095;
    vm_attr_lock();
    if (vm_attr_nruns > 0) {
        vm_attr_clear(start, end);
    }
    vm_attr_unlock();
}

void vm_attr_fork_child(void)
{
    pthread_mutex_init(&vm_attr_mutex, NULL);
    size_t k = 0;
    for (size_t i = 0; i < vm_attr_nruns; i++) {
        if (vm_attr_runs[i].attr.inheritance != VM_INHERIT_NONE) {
            vm_attr_runs[k++] = vm_attr_runs[i];
        }
    }
    vm_attr_nruns = k;
}
