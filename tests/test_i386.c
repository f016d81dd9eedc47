/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The segment calls of mach_i386.defs with GNU Mach's checks: a thread's
 * LDT (seeded from the kernel's four entries, grown as set, refused below
 * selector 0x20 to the thread itself, only user code and data segments
 * and gates taken) and its two user GDT slots (0x4b and 0x53, handed out
 * for selector -1, KERN_NO_SPACE when both are used).  An LDT data
 * segment set reaches the processor: `lsl` and `lar` on its selector read
 * back its limit and access.  The calls work on another task's thread.
 *
 * Run again in a privileged instance (--io-perm): I/O permission ports,
 * made by machd on the device master port (GNU Mach's range and PCI
 * configuration rules, freed with their last send right), and given to
 * the calling thread through Linux's ioperm when Linux allows it.
 */
#include <errno.h>
#include <hell.h>
#include <mach.h>
#include <mach/mach_i386.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/io.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol.h"
#include "test.h"

#define SELF mach_task_self()

/* A descriptor from its fields (limit in bytes, or in pages when the
 * granularity has 0x8). */
static struct descriptor desc(uint32_t base, uint32_t limit, unsigned access, unsigned gran)
{
    return (struct descriptor){
        .low_word = (limit & 0xffff) | (base << 16),
        .high_word = ((base >> 16) & 0xff) | (access << 8) | (limit & 0xf0000) |
                     (gran << 20) | (base & 0xff000000)};
}

#define DATA_W_USER 0xf2 /* present, user, writable data */
#define CODE_R_USER 0xfa
#define SZ_32 0x4
#define SZ_64 0x2

static bool same(struct descriptor a, struct descriptor b)
{
    return a.low_word == b.low_word && a.high_word == b.high_word;
}

/* The limit and access rights the processor reads for SELECTOR. */
static bool segment_of(unsigned selector, unsigned *limit, unsigned *rights)
{
    unsigned char ok_lsl, ok_lar;
    __asm__ volatile("lsl %2, %0\n\tsetz %1" : "=r"(*limit), "=q"(ok_lsl) : "r"(selector) : "cc");
    __asm__ volatile("lar %2, %0\n\tsetz %1" : "=r"(*rights), "=q"(ok_lar) : "r"(selector) : "cc");
    return ok_lsl && ok_lar;
}

static void ldt_own_thread(void)
{
    mach_port_t me = mach_thread_self();
    descriptor_list_t got = NULL;
    mach_msg_type_number_t n = 99;
    /* No LDT of its own yet: none to give. */
    CHECK_KR(i386_get_ldt(me, 0, 8, &got, &n), KERN_SUCCESS);
    CHECK(n == 0);

    struct descriptor data = desc(0, 0x1234, DATA_W_USER, SZ_32);
    /* The kernel's entries are not the thread's own to change. */
    CHECK_KR(i386_set_ldt(me, 0x17, &data, 1), KERN_INVALID_ARGUMENT);
    /* Past the LDT's 8192 entries. */
    CHECK_KR(i386_set_ldt(me, 8191 << 3, &data, 1), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_get_ldt(me, 8192 << 3, 1, &got, &n), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_get_ldt(me, 0, 8192, &got, &n), KERN_INVALID_ARGUMENT);
    /* A kernel-level code segment, a TSS: not for a user LDT. */
    struct descriptor bad[2] = {desc(0, 0xfffff, 0x9a, SZ_32), data};
    CHECK_KR(i386_set_ldt(me, 0x27, bad, 2), KERN_INVALID_ARGUMENT);
    struct descriptor tss = desc(0, 0x67, 0x89, 0);
    CHECK_KR(i386_set_ldt(me, 0x27, &tss, 1), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_get_ldt(me, 0, 8, &got, &n), KERN_SUCCESS);
    CHECK(n == 0); /* nothing was set by a refused call */

    /* Entry 4 (selector 0x27: LDT, user level). */
    CHECK_KR(i386_set_ldt(me, 0x27, &data, 1), KERN_SUCCESS);
    unsigned limit = 0, rights = 0;
    CHECK(segment_of(0x27, &limit, &rights));
    CHECK(limit == 0x1234);
    CHECK(((rights >> 8) & 0xfe) == DATA_W_USER);
    CHECK(((rights >> 20) & 0xf) == SZ_32);

    /* The LDT now: the kernel's four entries, then the one set. */
    CHECK_KR(i386_get_ldt(me, 0, 8, &got, &n), KERN_SUCCESS);
    CHECK(n == 5);
    if (n == 5) {
        CHECK(got[0].low_word == 0 && got[0].high_word == 0);
        CHECK(got[2].high_word == 0x00affa00 && got[3].high_word == 0x00aff200);
        CHECK(same(got[4], data));
    }
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, n * sizeof *got), KERN_SUCCESS);

    /* Grown past its end: the entries between are present-only. */
    struct descriptor code = desc(0x10000, 0xff, CODE_R_USER, SZ_32);
    struct descriptor list[2] = {code, data};
    CHECK_KR(i386_set_ldt(me, (9 << 3) | 7, list, 2), KERN_SUCCESS);
    CHECK_KR(i386_get_ldt(me, 4 << 3, 100, &got, &n), KERN_SUCCESS);
    CHECK(n == 7);
    if (n == 7) {
        CHECK(same(got[0], data));
        CHECK(got[1].low_word == 0 && got[1].high_word == 0x8000);
        CHECK(same(got[5], code) && same(got[6], data));
    }
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, n * sizeof *got), KERN_SUCCESS);
    CHECK(segment_of(0x4f, &limit, &rights) && limit == 0xff &&
          ((rights >> 8) & 0xfe) == CODE_R_USER);
    /* Asked from past the end: none. */
    CHECK_KR(i386_get_ldt(me, 40 << 3, 4, &got, &n), KERN_SUCCESS);
    CHECK(n == 0);

    /* Emptied again: the processor no longer takes the selector. */
    struct descriptor empty = {0};
    CHECK_KR(i386_set_ldt(me, 0x27, &empty, 1), KERN_SUCCESS);
    CHECK(!segment_of(0x27, &limit, &rights));

    /* A task port is no thread. */
    CHECK_KR(i386_set_ldt(SELF, 0x27, &data, 1), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_get_ldt(SELF, 0, 1, &got, &n), KERN_INVALID_ARGUMENT);
    CHECK_KR(mach_port_deallocate(SELF, me), KERN_SUCCESS);
}

/* Publishes its thread port in *ARG, then sleeps. */
static void *sleeper(void *arg)
{
    atomic_store((_Atomic mach_port_t *)arg, mach_thread_self());
    for (;;) {
        pause();
    }
    return NULL;
}

/* Another thread's LDT: the kernel's entries may be replaced there. */
static void ldt_other_thread(void)
{
    pthread_t th;
    _Atomic mach_port_t port = MACH_PORT_NULL;
    CHECK(pthread_create(&th, NULL, sleeper, &port) == 0);
    mach_port_t other;
    while ((other = atomic_load(&port)) == MACH_PORT_NULL) {
        usleep(1000);
    }
    struct descriptor data = desc(0x2000, 0x10, DATA_W_USER, SZ_32);
    CHECK_KR(i386_set_ldt(other, 0x07, &data, 1), KERN_SUCCESS);
    descriptor_list_t got = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(i386_get_ldt(other, 0, 2, &got, &n), KERN_SUCCESS);
    CHECK(n == 2 && same(got[0], data) && got[1].high_word == 0);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, n * sizeof *got), KERN_SUCCESS);
    /* Linux's LDT is the process's: what the other thread set stays
     * loadable when this thread's own LDT grows. */
    struct descriptor mark = desc(0, 0x55, DATA_W_USER, SZ_32);
    CHECK_KR(i386_set_ldt(other, 0x2f, &mark, 1), KERN_SUCCESS);
    unsigned limit = 0, rights = 0;
    CHECK(segment_of(0x2f, &limit, &rights) && limit == 0x55);
    mach_port_t me = mach_thread_self();
    CHECK_KR(i386_set_ldt(me, (30 << 3) | 7, &data, 1), KERN_SUCCESS);
    CHECK(segment_of(0x2f, &limit, &rights) && limit == 0x55);
    /* A 64-bit code segment: recorded, not loadable (Linux would make it
     * a 16-bit one). */
    struct descriptor code64 = desc(0, 0xfffff, CODE_R_USER, SZ_64 | 0x8);
    CHECK_KR(i386_set_ldt(me, 0x2f, &code64, 1), KERN_SUCCESS);
    CHECK(!segment_of(0x2f, &limit, &rights));
    CHECK_KR(mach_port_deallocate(SELF, me), KERN_SUCCESS);
    pthread_cancel(th);
    pthread_join(th, NULL);
    (void)mach_port_deallocate(SELF, other); /* (dead by now, or soon) */
}

static void gdt_slots(mach_port_t thread)
{
    struct descriptor tls = desc(0x10000, 0xfffff, DATA_W_USER, SZ_32 | 0x8);
    struct descriptor got;
    int sel = -1, sel2 = -1, sel3 = -1;
    CHECK_KR(i386_get_gdt(thread, 0x4b, &got), KERN_SUCCESS);
    CHECK(got.low_word == 0 && got.high_word == 0);
    CHECK_KR(i386_set_gdt(thread, &sel, tls), KERN_SUCCESS);
    CHECK(sel == 0x4b);
    CHECK_KR(i386_set_gdt(thread, &sel2, tls), KERN_SUCCESS);
    CHECK(sel2 == 0x53);
    CHECK_KR(i386_set_gdt(thread, &sel3, tls), KERN_NO_SPACE);
    CHECK_KR(i386_get_gdt(thread, 0x53, &got), KERN_SUCCESS);
    CHECK(same(got, tls));
    /* Not present: the slot is free again. */
    sel = 0x4b;
    CHECK_KR(i386_set_gdt(thread, &sel, (struct descriptor){0}), KERN_SUCCESS);
    sel3 = -1;
    CHECK_KR(i386_set_gdt(thread, &sel3, tls), KERN_SUCCESS);
    CHECK(sel3 == 0x4b);
    /* Selectors that name no user slot; descriptors no user may have. */
    int wrong[] = {0x43, 0x5b, 0x4b | 4, 0x48, 0x50};
    for (unsigned i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        sel = wrong[i];
        CHECK_KR(i386_set_gdt(thread, &sel, tls), KERN_INVALID_ARGUMENT);
        CHECK_KR(i386_get_gdt(thread, wrong[i], &got), KERN_INVALID_ARGUMENT);
    }
    sel = 0x53;
    CHECK_KR(i386_set_gdt(thread, &sel, desc(0, 0xfffff, CODE_R_USER, SZ_64)),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_set_gdt(thread, &sel, desc(0, 0xfffff, 0x9a, SZ_32)), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_set_gdt(thread, &sel, desc(0, 0x67, 0xe9, 0)), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_get_gdt(thread, 0x53, &got), KERN_SUCCESS);
    CHECK(same(got, tls)); /* unchanged by the refusals */
    sel = -1;
    CHECK_KR(i386_set_gdt(SELF, &sel, tls), KERN_INVALID_ARGUMENT);
}

/* The same calls on the thread of another task. */
static void other_task(void)
{
    mach_port_t child;
    pid_t pid = test_fork_idle(&child);
    thread_array_t threads = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(task_threads(child, &threads, &n), KERN_SUCCESS);
    CHECK(n == 1);
    if (n >= 1) {
        struct descriptor data = desc(0, 0x777, DATA_W_USER, SZ_32);
        CHECK_KR(i386_set_ldt(threads[0], 0x07, &data, 1), KERN_SUCCESS);
        descriptor_list_t got = NULL;
        mach_msg_type_number_t count = 0;
        CHECK_KR(i386_get_ldt(threads[0], 0, 1, &got, &count), KERN_SUCCESS);
        CHECK(count == 1 && same(got[0], data));
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, count * sizeof *got), KERN_SUCCESS);
        gdt_slots(threads[0]);
    }
    for (unsigned i = 0; i < n; i++) {
        CHECK_KR(mach_port_deallocate(SELF, threads[i]), KERN_SUCCESS);
    }
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)threads, n * sizeof *threads), KERN_SUCCESS);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    waitpid(pid, NULL, 0);
}

/* The I/O permission calls, with MASTER the device master port. */
static void io_perm_calls(mach_port_t master)
{
    mach_port_t perm, pci, pci2, other;
    CHECK_KR(i386_io_perm_create(master, 0x81, 0x80, &perm), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_io_perm_create(SELF, 0x80, 0x80, &perm), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_io_perm_create(master, 0x80, 0x80, &perm), KERN_SUCCESS);
    CHECK_KR(i386_io_perm_create(master, 0xcf0, 0xcf8, &pci), KERN_SUCCESS);
    /* The PCI configuration ports are one holder's at a time. */
    CHECK_KR(i386_io_perm_create(master, 0xcfc, 0xd00, &pci2), KERN_PROTECTION_FAILURE);
    CHECK_KR(i386_io_perm_create(master, 0xd00, 0xd10, &other), KERN_SUCCESS);

    /* Not a permission, not a task. */
    CHECK_KR(i386_io_perm_modify(SELF, MACH_PORT_NULL, TRUE), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_io_perm_modify(SELF, master, TRUE), KERN_INVALID_ARGUMENT);
    CHECK_KR(i386_io_perm_modify(master, perm, TRUE), KERN_INVALID_ARGUMENT);
    mach_port_t me = mach_thread_self();
    CHECK_KR(i386_io_perm_modify(me, perm, TRUE), KERN_INVALID_ARGUMENT);
    CHECK_KR(mach_port_deallocate(SELF, me), KERN_SUCCESS);

    /* Given to this thread when Linux gives I/O ports at all (a kernel
     * with I/O bitmaps, CAP_SYS_RAWIO); refused otherwise. */
    bool linux_gives = ioperm(0x80, 1, 1) == 0;
    if (linux_gives) {
        CHECK(ioperm(0x80, 1, 0) == 0);
        CHECK_KR(i386_io_perm_modify(SELF, perm, TRUE), KERN_SUCCESS);
        (void)inb(0x80); /* faults without the permission */
        CHECK_KR(i386_io_perm_modify(SELF, perm, FALSE), KERN_SUCCESS);
    } else {
        printf("note: Linux gives no I/O ports here (%s): the grant is refused\n",
               strerror(errno));
        CHECK_KR(i386_io_perm_modify(SELF, perm, TRUE), KERN_PROTECTION_FAILURE);
        CHECK_KR(i386_io_perm_modify(SELF, perm, FALSE), KERN_PROTECTION_FAILURE);
    }
    /* For another task: no thread of it asked. */
    mach_port_t child;
    pid_t pid = test_fork_idle(&child);
    CHECK_KR(i386_io_perm_modify(child, perm, TRUE), KERN_PROTECTION_FAILURE);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    waitpid(pid, NULL, 0);

    /* With its last send right gone, the PCI holder lets go. */
    CHECK_KR(mach_port_deallocate(SELF, pci), KERN_SUCCESS);
    kern_return_t kr = KERN_PROTECTION_FAILURE;
    for (int i = 0; i < 2000 && kr == KERN_PROTECTION_FAILURE; i++) {
        kr = i386_io_perm_create(master, 0xcfc, 0xd00, &pci2);
        if (kr == KERN_PROTECTION_FAILURE) {
            usleep(1000);
        }
    }
    CHECK_KR(kr, KERN_SUCCESS);
    mach_port_t ports[] = {perm, pci2, other};
    for (unsigned i = 0; i < 3; i++) {
        CHECK_KR(mach_port_deallocate(SELF, ports[i]), KERN_SUCCESS);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--io-perm") == 0) {
        io_perm_calls(HELL_DEVICE_MASTER_NAME);
        return test_done("i386 I/O permissions");
    }
    ldt_own_thread();
    ldt_other_thread();
    mach_port_t me = mach_thread_self();
    gdt_slots(me);
    CHECK_KR(mach_port_deallocate(SELF, me), KERN_SUCCESS);
    other_task();
    CHECK(test_rerun_in_instance_as("--io-perm", true) == 0);
    return test_done("i386");
}
