/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The VM calls of mach.defs, mach_host.defs and gnumach.defs on anonymous
 * memory, with GNU Mach's semantics and error codes (its vm_user.c and
 * vm_map.c, where they differ from the manual):
 *
 * - vm_allocate: size 0, fixed on taken pages, beyond the user range;
 *   vm_deallocate succeeds over holes;
 * - vm_protect: current and maximum protection, KERN_PROTECTION_FAILURE
 *   past the maximum, the current protection cut by a lower maximum,
 *   holes skipped;
 * - vm_inherit: SHARE, COPY and NONE as task_create with inherited memory
 *   honours them (written and read from outside with vm_write/vm_read);
 * - vm_region: regions cut where attributes change, KERN_NO_SPACE above
 *   the last;
 * - vm_copy: overlapping copies, alignment and protection errors in GNU
 *   Mach's order;
 * - vm_statistics, vm_cache_statistics, vm_wire, vm_wire_all, vm_msync;
 * - regions written by vm_write on one's own task (lent to the kernel);
 * - a port that is no task port, and the calls served for another task.
 */
#include <hell.h>
#include <mach.h>
#include <mach/vm_attributes.h>
#include <mach/vm_cache_statistics.h>
#include <mach/vm_statistics.h>
#include <mach/vm_sync.h>
#include <mach/vm_wire.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()
#define PAGE 4096u

/* SIZE bytes of fresh memory with a hole on each side: Linux merges
 * neighbouring mappings alike (as GNU Mach coalesces map entries), and a
 * region the tests look at must start and end where they made it. */
static vm_address_t alloc(vm_size_t size)
{
    vm_address_t a = 0;
    CHECK_KR(vm_allocate(SELF, &a, size + 2 * PAGE, TRUE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, a, PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, a + PAGE + size, PAGE), KERN_SUCCESS);
    return a + PAGE;
}

struct region {
    vm_address_t address;
    vm_size_t size;
    vm_prot_t prot, max;
    vm_inherit_t inherit;
    boolean_t shared;
};

static kern_return_t region_of(mach_port_t task, vm_address_t at, struct region *r)
{
    mach_port_t name = MACH_PORT_NULL;
    vm_offset_t offset;
    r->address = at;
    kern_return_t kr = vm_region(task, &r->address, &r->size, &r->prot, &r->max, &r->inherit,
                                 &r->shared, &name, &offset);
    CHECK(name == MACH_PORT_NULL);
    return kr;
}

static void allocate_rules(void)
{
    vm_address_t a = 1234;
    CHECK_KR(vm_allocate(SELF, &a, 0, FALSE), KERN_SUCCESS);
    CHECK(a == 0);
    vm_address_t taken = alloc(4 * PAGE);
    a = taken + PAGE;
    CHECK_KR(vm_allocate(SELF, &a, PAGE, FALSE), KERN_NO_SPACE);
    a = 0x800000000000ull - PAGE;
    CHECK_KR(vm_allocate(SELF, &a, 2 * PAGE, FALSE), KERN_INVALID_ADDRESS);
    /* A hole at the third page; refilled by a fixed, unaligned
     * allocation, truncated to its page. */
    CHECK_KR(vm_deallocate(SELF, taken + 2 * PAGE, PAGE), KERN_SUCCESS);
    a = taken + 2 * PAGE + 100;
    CHECK_KR(vm_allocate(SELF, &a, PAGE, FALSE), KERN_SUCCESS);
    CHECK(a == taken + 2 * PAGE);
    CHECK_KR(vm_deallocate(SELF, taken + 2 * PAGE, PAGE), KERN_SUCCESS);
    /* Over the hole, unaligned ends, size 0: all fine. */
    CHECK_KR(vm_deallocate(SELF, taken, 0), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, taken + PAGE + 10, 2 * PAGE), KERN_SUCCESS);
    struct region r;
    CHECK_KR(region_of(SELF, taken, &r), KERN_SUCCESS);
    CHECK(r.address == taken && r.size == PAGE);
    /* (The end rounds up: pages 1 to 3 went.) */
    CHECK_KR(region_of(SELF, taken + PAGE, &r), KERN_SUCCESS);
    CHECK(r.address >= taken + 4 * PAGE); /* the next region after the hole */
    CHECK_KR(vm_deallocate(SELF, taken, PAGE), KERN_SUCCESS);
    /* Not a task. */
    a = 0;
    CHECK_KR(vm_allocate(mach_host_self(), &a, PAGE, TRUE), KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_deallocate(mach_host_self(), taken, PAGE), KERN_INVALID_ARGUMENT);
}

static void protect_rules(void)
{
    vm_address_t a = alloc(3 * PAGE);
    struct region r;
    CHECK_KR(region_of(SELF, a, &r), KERN_SUCCESS);
    CHECK(r.address == a && r.prot == (VM_PROT_READ | VM_PROT_WRITE) && r.max == VM_PROT_ALL &&
          r.inherit == VM_INHERIT_COPY && !r.shared);

    /* Read-only: a write from outside is refused. */
    CHECK_KR(vm_protect(SELF, a, PAGE, FALSE, VM_PROT_READ), KERN_SUCCESS);
    CHECK_KR(region_of(SELF, a, &r), KERN_SUCCESS);
    CHECK(r.address == a && r.size == PAGE && r.prot == VM_PROT_READ);
    static char page[PAGE] __attribute__((aligned(PAGE)));
    CHECK_KR(vm_write(SELF, a, (vm_offset_t)page, PAGE), KERN_PROTECTION_FAILURE);

    /* A lower maximum cuts the current protection; past it, refused,
     * and nothing changes. */
    CHECK_KR(vm_protect(SELF, a + PAGE, PAGE, TRUE, VM_PROT_READ), KERN_SUCCESS);
    CHECK_KR(region_of(SELF, a + PAGE, &r), KERN_SUCCESS);
    CHECK(r.address == a + PAGE && r.size == PAGE && r.prot == VM_PROT_READ &&
          r.max == VM_PROT_READ);
    CHECK_KR(vm_protect(SELF, a, 3 * PAGE, FALSE, VM_PROT_READ | VM_PROT_WRITE),
             KERN_PROTECTION_FAILURE);
    CHECK_KR(region_of(SELF, a, &r), KERN_SUCCESS);
    CHECK(r.prot == VM_PROT_READ); /* the first page was not changed */
    CHECK_KR(vm_protect(SELF, a + PAGE, PAGE, TRUE, VM_PROT_ALL), KERN_PROTECTION_FAILURE);
    CHECK_KR(vm_protect(SELF, a, PAGE, FALSE, 0x100), KERN_INVALID_ARGUMENT);

    /* Holes are skipped. */
    CHECK_KR(vm_deallocate(SELF, a + 2 * PAGE, PAGE), KERN_SUCCESS);
    CHECK_KR(vm_protect(SELF, a, 3 * PAGE, FALSE, VM_PROT_READ), KERN_SUCCESS);
    CHECK_KR(vm_protect(SELF, a + 2 * PAGE, PAGE, FALSE, VM_PROT_ALL), KERN_SUCCESS);

    /* Deallocated pages forget their maximum. */
    CHECK_KR(vm_deallocate(SELF, a, 2 * PAGE), KERN_SUCCESS);
    vm_address_t again = a + PAGE;
    if (vm_allocate(SELF, &again, PAGE, FALSE) == KERN_SUCCESS) {
        CHECK_KR(region_of(SELF, again, &r), KERN_SUCCESS);
        CHECK(r.max == VM_PROT_ALL);
        CHECK_KR(vm_deallocate(SELF, again, PAGE), KERN_SUCCESS);
    }
}

/* A region moved away out of line leaves no attribute behind. */
static void moved_region_forgotten(void)
{
    vm_address_t a = alloc(PAGE);
    CHECK_KR(vm_protect(SELF, a, PAGE, TRUE, VM_PROT_READ), KERN_SUCCESS);
    mach_port_t port = test_new_port(true);
    struct {
        mach_msg_header_t h;
        mach_msg_type_long_t t;
        vm_address_t addr;
    } m = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .msgh_remote_port = port, .msgh_id = 1},
        .t = {.msgtl_name = MACH_MSG_TYPE_BYTE, .msgtl_size = 8, .msgtl_number = PAGE,
              .msgtl_inline = FALSE, .msgtl_deallocate = TRUE, .msgtl_longform = TRUE},
        .addr = a,
    };
    CHECK_KR(mach_msg(&m.h, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    vm_address_t again = a;
    CHECK_KR(vm_allocate(SELF, &again, PAGE, FALSE), KERN_SUCCESS);
    struct region r;
    CHECK_KR(region_of(SELF, a, &r), KERN_SUCCESS);
    CHECK(r.max == VM_PROT_ALL);
    CHECK_KR(vm_deallocate(SELF, a, PAGE), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS); /* and the queued region */
}

static void region_rules(void)
{
    vm_address_t a = alloc(3 * PAGE);
    CHECK_KR(vm_inherit(SELF, a + PAGE, PAGE, VM_INHERIT_NONE), KERN_SUCCESS);
    struct region r;
    CHECK_KR(region_of(SELF, a, &r), KERN_SUCCESS);
    CHECK(r.address == a && r.size == PAGE && r.inherit == VM_INHERIT_COPY);
    CHECK_KR(region_of(SELF, a + PAGE + 7, &r), KERN_SUCCESS);
    CHECK(r.address == a + PAGE && r.size == PAGE && r.inherit == VM_INHERIT_NONE);
    CHECK_KR(region_of(SELF, a + 2 * PAGE, &r), KERN_SUCCESS);
    CHECK(r.address == a + 2 * PAGE && r.inherit == VM_INHERIT_COPY);
    /* Nothing above the top of the user range's last mapping. */
    CHECK_KR(region_of(SELF, 0x800000000000ull - PAGE, &r), KERN_NO_SPACE);
    CHECK_KR(region_of(mach_host_self(), a, &r), KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_inherit(SELF, a, PAGE, 7), KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_deallocate(SELF, a, 3 * PAGE), KERN_SUCCESS);
}

/* A small region sent to one's own kernel is copied into a buffer of the
 * calling thread (kern_deliver) and lent from there to the routine, as
 * a received one is: the routine sees what was sent, the sender's memory
 * stays as it was, and the buffer is neither unmapped by the routine's
 * release nor kept from the next calls (a write of each page's last
 * bytes checks that no other call overwrote it). */
static void own_kernel_regions(void)
{
    vm_address_t from = 0, dst = 0;
    CHECK_KR(vm_allocate(SELF, &from, 2 * PAGE, TRUE), KERN_SUCCESS);
    CHECK_KR(vm_allocate(SELF, &dst, 2 * PAGE, TRUE), KERN_SUCCESS);
    char *src = (char *)from;
    for (int i = 0; i < 300; i++) {
        vm_size_t size = (i % 2 + 1) * PAGE;
        memset(src, i, size);
        src[size - 1] = (char)~i;
        CHECK_KR(vm_write(SELF, dst, (vm_offset_t)src, (mach_msg_type_number_t)size),
                 KERN_SUCCESS);
        CHECK(((volatile char *)dst)[17] == (char)i);
        CHECK(((volatile char *)dst)[size - 1] == (char)~i);
        CHECK(src[17] == (char)i && src[size - 1] == (char)~i);
    }
    CHECK_KR(vm_deallocate(SELF, dst, 2 * PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, from, 2 * PAGE), KERN_SUCCESS);
}

/* SHARE, COPY and NONE through task_create with inherited memory. */
static void inherit_rules(void)
{
    vm_address_t a = alloc(3 * PAGE);
    memset((void *)a, 'p', 3 * PAGE);
    CHECK_KR(vm_inherit(SELF, a, PAGE, VM_INHERIT_SHARE), KERN_SUCCESS);
    CHECK_KR(vm_inherit(SELF, a + 2 * PAGE, PAGE, VM_INHERIT_NONE), KERN_SUCCESS);
    CHECK(((char *)a)[0] == 'p'); /* the contents stayed */
    struct region r;
    CHECK_KR(region_of(SELF, a, &r), KERN_SUCCESS);
    CHECK(r.inherit == VM_INHERIT_SHARE && r.shared && r.size == PAGE);

    mach_port_t child;
    CHECK_KR(task_create(SELF, TRUE, &child), KERN_SUCCESS);
    static char page[PAGE] __attribute__((aligned(PAGE)));
    memset(page, 'c', PAGE);
    CHECK_KR(vm_write(child, a, (vm_offset_t)page, PAGE), KERN_SUCCESS);
    CHECK_KR(vm_write(child, a + PAGE, (vm_offset_t)page, PAGE), KERN_SUCCESS);
    CHECK(((char *)a)[0] == 'c');        /* shared */
    CHECK(((char *)a)[PAGE] == 'p');     /* copied */
    vm_offset_t data = 0;
    mach_msg_type_number_t n = 0;
    /* None: not there (the child may have mapped something of its own
     * in the hole since, never our data). */
    kern_return_t kr = vm_read(child, a + 2 * PAGE, PAGE, &data, &n);
    CHECK(kr == KERN_INVALID_ADDRESS || (kr == KERN_SUCCESS && ((char *)data)[0] != 'p'));
    if (kr == KERN_SUCCESS) {
        CHECK_KR(vm_deallocate(SELF, data, n), KERN_SUCCESS);
    }
    CHECK_KR(region_of(child, a, &r), KERN_SUCCESS);
    CHECK(r.address == a && r.inherit == VM_INHERIT_SHARE);
    /* Attributes are served for the other task too. */
    CHECK_KR(vm_protect(child, a + PAGE, PAGE, TRUE, VM_PROT_READ), KERN_SUCCESS);
    CHECK_KR(region_of(child, a + PAGE, &r), KERN_SUCCESS);
    CHECK(r.max == VM_PROT_READ && r.prot == VM_PROT_READ);
    CHECK_KR(region_of(SELF, a + PAGE, &r), KERN_SUCCESS);
    CHECK(r.max == VM_PROT_ALL); /* ours unchanged */

    /* Back to COPY: a later child gets a copy again. */
    CHECK_KR(vm_inherit(SELF, a, PAGE, VM_INHERIT_COPY), KERN_SUCCESS);
    CHECK(((char *)a)[0] == 'c');
    CHECK_KR(region_of(SELF, a, &r), KERN_SUCCESS);
    CHECK(r.inherit == VM_INHERIT_COPY && !r.shared);
    mach_port_t child2;
    CHECK_KR(task_create(SELF, TRUE, &child2), KERN_SUCCESS);
    memset(page, 'd', PAGE);
    CHECK_KR(vm_write(child2, a, (vm_offset_t)page, PAGE), KERN_SUCCESS);
    CHECK(((char *)a)[0] == 'c');

    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    CHECK_KR(task_terminate(child2), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child2), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, a, 3 * PAGE), KERN_SUCCESS);
}

static void copy_rules(void)
{
    vm_address_t a = alloc(4 * PAGE);
    for (unsigned i = 0; i < 4; i++) {
        memset((void *)(a + i * PAGE), 'a' + (int)i, PAGE);
    }
    /* Overlapping: as memmove. */
    CHECK_KR(vm_copy(SELF, a, 2 * PAGE, a + PAGE), KERN_SUCCESS);
    CHECK(((char *)a)[PAGE] == 'a' && ((char *)a)[2 * PAGE] == 'b' &&
          ((char *)a)[3 * PAGE] == 'd');
    CHECK_KR(vm_copy(SELF, a, 0, a + PAGE), KERN_SUCCESS);
    CHECK_KR(vm_copy(SELF, a + 1, PAGE, a + PAGE), KERN_INVALID_ARGUMENT);
    /* The source is checked before the alignment. */
    CHECK_KR(vm_copy(SELF, 0x1000 + 1, PAGE, a), KERN_INVALID_ADDRESS);
    CHECK_KR(vm_protect(SELF, a + 3 * PAGE, PAGE, FALSE, VM_PROT_NONE), KERN_SUCCESS);
    CHECK_KR(vm_copy(SELF, a + 2 * PAGE, 2 * PAGE, a), KERN_PROTECTION_FAILURE);
    CHECK_KR(vm_protect(SELF, a, PAGE, FALSE, VM_PROT_READ), KERN_SUCCESS);
    CHECK_KR(vm_copy(SELF, a + PAGE, PAGE, a), KERN_PROTECTION_FAILURE);
    CHECK_KR(vm_deallocate(SELF, a + 2 * PAGE, PAGE), KERN_SUCCESS);
    CHECK_KR(vm_copy(SELF, a + PAGE, 2 * PAGE, a + PAGE), KERN_INVALID_ADDRESS);
    CHECK_KR(vm_copy(mach_host_self(), a, PAGE, a + PAGE), KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_deallocate(SELF, a, 4 * PAGE), KERN_SUCCESS);
}

static void statistics_and_wiring(void)
{
    vm_statistics_data_t st;
    CHECK_KR(vm_statistics(SELF, &st), KERN_SUCCESS);
    CHECK(st.pagesize == PAGE && st.free_count > 0 && st.faults > 0 && st.active_count > 0);
    CHECK_KR(vm_statistics(mach_host_self(), &st), KERN_INVALID_ARGUMENT);
    vm_cache_statistics_data_t cache;
    CHECK_KR(vm_cache_statistics(SELF, &cache), KERN_SUCCESS);
    CHECK(cache.cache_object_count == 0);

    vm_address_t a = alloc(2 * PAGE);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
    if (rl.rlim_cur >= 2 * PAGE) {
        CHECK_KR(vm_wire(mach_host_self(), SELF, a, 2 * PAGE, VM_PROT_READ), KERN_SUCCESS);
        CHECK_KR(vm_wire(mach_host_self(), SELF, a, 2 * PAGE, VM_PROT_NONE), KERN_SUCCESS);
    } else {
        printf("skipped: vm_wire success (RLIMIT_MEMLOCK %lu)\n", (unsigned long)rl.rlim_cur);
    }
    /* Unprivileged: at most 8 MiB. */
    CHECK_KR(vm_wire(mach_host_self(), SELF, a, 9u << 20, VM_PROT_READ), KERN_NO_ACCESS);
    CHECK_KR(vm_wire(mach_host_self(), SELF, 0x1000, PAGE, VM_PROT_READ), KERN_NO_SPACE);
    CHECK_KR(vm_wire(mach_host_self(), SELF, a, PAGE, 0x100), KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_wire(SELF, SELF, a, PAGE, VM_PROT_READ), KERN_INVALID_HOST);
    CHECK_KR(vm_wire(mach_host_self(), mach_host_self(), a, PAGE, VM_PROT_READ),
             KERN_INVALID_TASK);
    CHECK_KR(vm_wire_all(mach_host_self(), SELF, VM_WIRE_NONE), KERN_INVALID_HOST);

    /* GNU Mach's vm_msync checks its flags and does nothing else yet. */
    CHECK_KR(vm_msync(SELF, a, PAGE, VM_SYNC_ASYNCHRONOUS | VM_SYNC_SYNCHRONOUS),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_msync(SELF, a, 0, VM_SYNC_SYNCHRONOUS), KERN_SUCCESS);
    CHECK_KR(vm_msync(SELF, a, PAGE, VM_SYNC_SYNCHRONOUS), KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_deallocate(SELF, a, 2 * PAGE), KERN_SUCCESS);
}

/* GNU Mach's x86 answer: the range checked, then KERN_INVALID_ADDRESS
 * (no machine attribute to set), the value untouched (another task's:
 * test_task_ports). */
static void machine_attribute_rules(void)
{
    vm_address_t a = 0;
    CHECK_KR(vm_allocate(SELF, &a, PAGE, TRUE), KERN_SUCCESS);
    vm_machine_attribute_val_t value = MATTR_VAL_CACHE_FLUSH;
    CHECK_KR(vm_machine_attribute(SELF, a, PAGE, MATTR_CACHE, &value), KERN_INVALID_ADDRESS);
    CHECK(value == MATTR_VAL_CACHE_FLUSH);
    CHECK_KR(vm_machine_attribute(SELF, 0x7ffffffff000ull, 2 * PAGE, MATTR_CACHE, &value),
             KERN_INVALID_ARGUMENT); /* past the user range */
    mach_port_t host = mach_host_self(); /* a kernel port, no task's */
    CHECK_KR(vm_machine_attribute(host, a, PAGE, MATTR_CACHE, &value), KERN_INVALID_ARGUMENT);
    CHECK_KR(mach_port_deallocate(SELF, host), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, a, PAGE), KERN_SUCCESS);
}

int main(void)
{
    (void)mig_get_reply_port();
    int fds_before = test_count_fds();
    allocate_rules();
    protect_rules();
    region_rules();
    moved_region_forgotten();
    own_kernel_regions();
    inherit_rules();
    copy_rules();
    statistics_and_wiring();
    machine_attribute_rules();
    /* The children's task ports went with their names (task_create's
     * kernel side keeps no copy); the watchdog's epoll set and the
     * descriptor of the maps' queries (vm_maps.h) stay. */
    CHECK(test_count_fds() <= fds_before + 2);
    return test_done("vm");
}
