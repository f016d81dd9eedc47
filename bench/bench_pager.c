/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory objects through an external pager, each against a baseline
 * measured in the same run, everything pinned to one CPU, first with
 * the cache kept by the mapping task itself (outside an instance), then
 * by machd (the bench runs again as a task of an instance):
 *   - a first touch of a page mapped from a memory object (a fault, a
 *     data_request to the pager, its data_supply, the wake-up), against a
 *     userfaultfd fault served in the same process by a thread that
 *     writes the page into the shared memory and wakes the fault; the
 *     pager runs in the same process, then in another task;
 *   - reading 256 MiB mapped from a memory object, one byte per cache
 *     line, against reading the same file through mmap.
 * Every ratio is HELL's cost over the baseline's.
 */
#include <fcntl.h>
#include <hell.h>
#include <linux/userfaultfd.h>
#include <mach.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filepager.h"
#include "bench.h"
#include "test.h"

#define PAGE 4096u

/* A memfd of SIZE bytes, every page holding its index. */
static int make_file(size_t size)
{
    int fd = memfd_create("bench-file", MFD_CLOEXEC);
    char *buf = malloc(1 << 20);
    for (size_t at = 0; at < size; at += 1 << 20) {
        for (size_t p = 0; p < (1 << 20); p += PAGE) {
            memset(buf + p, (int)((at + p) / PAGE), PAGE);
        }
        if (pwrite(fd, buf, 1 << 20, (off_t)at) != 1 << 20) {
            perror("pwrite");
            exit(1);
        }
    }
    free(buf);
    return fd;
}

/* Touches every other page of [P, P + PAGES pages) from the top down, so
 * that no fault is sequential (each is one request).  Returns the time
 * per touch in us. */
static double touch_faults(volatile char *p, size_t pages)
{
    double t0 = bench_now_us();
    unsigned sum = 0;
    size_t n = 0;
    for (size_t i = pages; i >= 2; i -= 2) {
        sum += (unsigned char)p[(i - 1) * PAGE];
        n++;
    }
    double t = (bench_now_us() - t0) / (double)n;
    (void)sum;
    return t;
}

/* ---- the baseline: userfaultfd served in the same process ---- */

static int base_uffd, base_fd;
static int base_file = -1; /* the file a fault's page is read from, or -1 */
static char *base_map;

static void *base_handler(void *arg)
{
    (void)arg;
    char page[PAGE];
    memset(page, 7, sizeof page);
    for (;;) {
        struct pollfd pfd = {.fd = base_uffd, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0) {
            return NULL;
        }
        struct uffd_msg m;
        if (read(base_uffd, &m, sizeof m) != sizeof m) {
            continue;
        }
        if (m.event != UFFD_EVENT_PAGEFAULT) {
            continue;
        }
        uint64_t addr = m.arg.pagefault.address & ~(uint64_t)(PAGE - 1);
        if (base_file >= 0 &&
            pread(base_file, page, PAGE, (off_t)(addr - (uint64_t)base_map)) != PAGE) {
            return NULL;
        }
        if (pwrite(base_fd, page, PAGE, (off_t)(addr - (uint64_t)base_map)) != PAGE) {
            return NULL;
        }
        struct uffdio_range range = {.start = addr, .len = PAGE};
        ioctl(base_uffd, UFFDIO_WAKE, &range);
    }
}

/* Faults on PAGES pages served by a thread of this process, which reads
 * each page from FILE (-1: writes a constant page); us per fault. */
static double uffd_baseline(size_t pages, int file)
{
    base_file = file;
    base_fd = memfd_create("bench-uffd", MFD_CLOEXEC);
    if (ftruncate(base_fd, (off_t)(pages * PAGE)) != 0) {
        return -1;
    }
    base_map = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, base_fd, 0);
    base_uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM};
    struct uffdio_register reg = {.range = {.start = (uint64_t)base_map, .len = pages * PAGE},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (base_uffd < 0 || ioctl(base_uffd, UFFDIO_API, &api) != 0 ||
        ioctl(base_uffd, UFFDIO_REGISTER, &reg) != 0) {
        perror("userfaultfd");
        exit(1);
    }
    pthread_t t;
    pthread_create(&t, NULL, base_handler, NULL);
    double per = touch_faults(base_map, pages);
    munmap(base_map, pages * PAGE);
    close(base_fd);
    return per;
}

/* ---- through a pager ---- */

static volatile char *map_object(mach_port_t object, size_t size)
{
    vm_address_t a = 0;
    if (vm_map(mach_task_self(), &a, size, 0, TRUE, object, 0, FALSE, VM_PROT_READ,
               VM_PROT_READ, VM_INHERIT_NONE) != KERN_SUCCESS) {
        fprintf(stderr, "bench_pager: vm_map failed\n");
        exit(1);
    }
    return (volatile char *)a;
}

/* A pager of FD in a task of its own; its object's send right. */
static pid_t remote_pager(int fd, mach_port_t *object)
{
    mach_port_t boot = test_new_port(true);
    pid_t pid = hell_fork(boot, NULL);
    if (pid == 0) {
        struct filepager *p = filepager_create(fd, false);
        mach_port_t parent;
        task_get_bootstrap_port(mach_task_self(), &parent);
        test_send_port(parent, p->object, MACH_MSG_TYPE_MAKE_SEND, 1);
        filepager_serve(p);
        _exit(0);
    }
    mach_msg_type_name_t type;
    test_receive_port(boot, 10000, object, &type);
    return pid;
}

/* Unmaps the SIZE bytes at M mapping OBJECT, and ends OBJECT's pager PID. */
static void remote_pager_end(volatile char *m, size_t size, mach_port_t object, pid_t pid)
{
    vm_deallocate(mach_task_self(), (vm_address_t)m, size);
    mach_port_deallocate(mach_task_self(), object);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* First touches, best of 3 runs of each (KERNEL names who keeps the
 * cache, for the report). */
static void first_touch(const char *kernel)
{
    const size_t fault_pages = 4096;
    int fd = make_file(fault_pages * PAGE);
    double base = 1e9, base_read = 1e9, local = 1e9, remote = 1e9;
    for (int run = 0; run < 3; run++) {
        double b = uffd_baseline(fault_pages, -1);
        base = b < base ? b : base;
        b = uffd_baseline(fault_pages, fd);
        base_read = b < base_read ? b : base_read;

        struct filepager *p = filepager_create(dup(fd), false);
        filepager_start(p);
        mach_port_insert_right(mach_task_self(), p->object, p->object, MACH_MSG_TYPE_MAKE_SEND);
        volatile char *m = map_object(p->object, fault_pages * PAGE);
        double l = touch_faults(m, fault_pages);
        local = l < local ? l : local;
        vm_deallocate(mach_task_self(), (vm_address_t)m, fault_pages * PAGE);
        /* The pager's port goes (its thread ends), and the cached object
         * with it: otherwise every run's cache would stay, and the next
         * runs would write pages the machine has never touched (a VM's
         * host then faults each one in, several times a write's cost). */
        mach_port_mod_refs(mach_task_self(), p->object, MACH_PORT_RIGHT_RECEIVE, -1);
        mach_port_deallocate(mach_task_self(), p->object);

        mach_port_t object;
        pid_t pid = remote_pager(dup(fd), &object);
        m = map_object(object, fault_pages * PAGE);
        double r = touch_faults(m, fault_pages);
        remote = r < remote ? r : remote;
        remote_pager_end(m, fault_pages * PAGE, object, pid);
    }
    char name[128];
    snprintf(name, sizeof name, "first-touch fault, %s, pager in the same task", kernel);
    bench_report(name, local, "us", "userfaultfd fault", base);
    snprintf(name, sizeof name, "first-touch fault, %s, pager in another task", kernel);
    bench_report(name, remote, "us", "userfaultfd fault", base);
    /* Where the time goes: the same, against a baseline that also reads
     * each page from the file, as the pager must (the goal stands against
     * the one above). */
    snprintf(name, sizeof name,
             "first-touch fault, %s, pager in another task, against a file read", kernel);
    bench_report(name, remote, "us", "userfaultfd fault reading the file", base_read);
    close(fd);
}

/* A sequential read of 256 MiB: best of 3. */
static void sequential(const char *kernel)
{
    const size_t big = 256u << 20;
    int fd = make_file(big);
    double mmap_us = 1e18, pager_us = 1e18;
    for (int run = 0; run < 3; run++) {
        volatile char *plain = mmap(NULL, big, PROT_READ, MAP_SHARED, fd, 0);
        double t0 = bench_now_us();
        unsigned sum = 0;
        for (size_t at = 0; at < big; at += 64) {
            sum += (unsigned char)plain[at];
        }
        double t = bench_now_us() - t0;
        mmap_us = t < mmap_us ? t : mmap_us;
        munmap((void *)plain, big);

        mach_port_t object;
        pid_t pid = remote_pager(dup(fd), &object);
        volatile char *m = map_object(object, big);
        t0 = bench_now_us();
        for (size_t at = 0; at < big; at += 64) {
            sum += (unsigned char)m[at];
        }
        t = bench_now_us() - t0;
        pager_us = t < pager_us ? t : pager_us;
        remote_pager_end(m, big, object, pid);
        (void)sum;
    }
    char name[128];
    snprintf(name, sizeof name, "sequential read 256 MiB through a pager, %s", kernel);
    bench_report(name, pager_us / 1000, "ms", "mmap of the file", mmap_us / 1000);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--in-instance") == 0) {
        first_touch("cache in machd");
        sequential("cache in machd");
        return 0;
    }
    /* Pinned before the instance starts: machd inherits the CPU. */
    bench_pin(0);
    first_touch("cache in the task");
    sequential("cache in the task");
    if (test_rerun_in_instance("--in-instance") != 0) {
        fprintf(stderr, "bench_pager: the instance run failed\n");
        return 1;
    }
    return 0;
}
