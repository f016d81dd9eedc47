/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A sent region's memfd closed by vm_reap's thread (libmach/vm_reap.h,
 * vm_reap_close): a small one at once, a large one a moment later, after
 * what was queued before it; a child forked while it waits never holds
 * it; and the thread is a background one (linux_thread_background:
 * SCHED_BATCH, with the longest slice where Linux has custom slices).
 *
 * vm_reap_close is libmach's own, so this test is linked with libmach's
 * objects.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "test_region.h"
#include "vm_reap.h"

#define LARGE ((size_t)1 << 20)
#define AHEAD ((size_t)32 << 20) /* freed by the thread in several ms */

/* Whether a descriptor of this process is open on the file whose inode
 * is INO. */
static bool fd_open_on(uint64_t ino)
{
    DIR *dir = opendir("/proc/self/fd");
    CHECK(dir != NULL);
    bool open_on = false;
    struct dirent *e;
    while (!open_on && (e = readdir(dir)) != NULL) {
        struct stat st;
        open_on = e->d_name[0] != '.' && atoi(e->d_name) != dirfd(dir) &&
                  fstatat(dirfd(dir), e->d_name, &st, 0) == 0 && st.st_ino == ino;
    }
    closedir(dir);
    return open_on;
}

/* Whether no descriptor is open on inode INO within about two seconds. */
static bool closed_soon(uint64_t ino)
{
    for (int i = 0; i < 200 && fd_open_on(ino); i++) {
        struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return !fd_open_on(ino);
}

/* Whether no mapping of inode INO is left within about two seconds. */
static bool unmapped_soon(uint64_t ino)
{
    for (int i = 0; i < 200 && test_maps_inode(NULL, ino, NULL) != 0; i++) {
        struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return test_maps_inode(NULL, ino, NULL) == 0;
}

/* A memfd holding SIZE bytes of C (its pages exist); its inode in *INO. */
static int memfd_of(size_t size, char c, uint64_t *ino)
{
    int fd = memfd_create("test-reap-close", MFD_CLOEXEC);
    CHECK(fd >= 0);
    char page[4096];
    memset(page, c, sizeof page);
    for (size_t done = 0; done < size; done += sizeof page) {
        CHECK(write(fd, page, sizeof page) == (ssize_t)sizeof page);
    }
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    *ino = st.st_ino;
    return fd;
}

/* Queues work for the thread: a received region of SIZE bytes, the last
 * reference to its memfd, deallocated.  Returns the memfd's inode. */
static uint64_t queue_unmap(size_t size)
{
    uint64_t ino;
    int fd = memfd_of(size, 'w', &ino);
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED);
    CHECK(test_all(p, size, 'w'));
    close(fd);
    vm_reap_note(p, size, ino);
    CHECK(vm_reap_unmap((vm_address_t)p, (vm_address_t)p + size));
    CHECK(!test_mapped(p) && !test_mapped(p + size - 1));
    return ino;
}

/* A small memfd is closed before vm_reap_close returns. */
static void small_at_once(void)
{
    uint64_t ino;
    int fd = memfd_of(VM_REAP_MIN / 4, 's', &ino);
    vm_reap_close(fd, VM_REAP_MIN / 4);
    CHECK(!fd_open_on(ino));
    vm_reap_close(-1, LARGE); /* nothing */
}

/* A large one is closed by the thread, soon. */
static void large_later(void)
{
    uint64_t ino;
    int fd = memfd_of(LARGE, 'l', &ino);
    vm_reap_close(fd, LARGE);
    CHECK(closed_soon(ino));
}

/* A fork while the close waits behind other work: the child has no
 * descriptor of the memfd, and the parent's goes. */
static void never_inherited(void)
{
    bool seen_waiting = false;
    for (int round = 0; round < 5 && !seen_waiting; round++) {
        uint64_t ahead = queue_unmap(AHEAD);
        uint64_t ino;
        int fd = memfd_of(LARGE, 'f', &ino);
        vm_reap_close(fd, LARGE);
        seen_waiting = fd_open_on(ino);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            _exit(fd_open_on(ino) ? 1 : 0);
        }
        test_wait_ok(pid);
        CHECK(closed_soon(ino));
        CHECK(unmapped_soon(ahead));
    }
    CHECK(seen_waiting); /* the case above did happen */
}

/* sched_getattr's argument, its first version. */
struct sched_attr_v0 {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

/* The thread (started by now) is this process's only SCHED_BATCH one, of
 * the main thread's weight (its nice, whatever the test was started at:
 * `nice -n 5`, as root or not), with a slice of 100 ms where Linux
 * reports slices (6.12 and later). */
static void thread_in_background(void)
{
    struct sched_attr_v0 main_attr = {0};
    CHECK(syscall(SYS_sched_getattr, getpid(), &main_attr, sizeof main_attr, 0) == 0);
    DIR *dir = opendir("/proc/self/task");
    CHECK(dir != NULL);
    int batch = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        pid_t tid = atoi(e->d_name);
        struct sched_attr_v0 attr = {0};
        if (tid <= 0 || syscall(SYS_sched_getattr, tid, &attr, sizeof attr, 0) != 0 ||
            attr.policy != SCHED_BATCH) {
            continue;
        }
        batch++;
        CHECK(attr.nice == main_attr.nice);
        CHECK(attr.runtime == 0 || attr.runtime == 100 * 1000 * 1000);
    }
    closedir(dir);
    CHECK(batch == 1);
}

int main(void)
{
    int fds_before = test_count_fds();
    small_at_once();
    large_later();
    thread_in_background();
    never_inherited();
    CHECK(test_count_fds() <= fds_before + 1); /* + the maps' queries */
    return test_done("reap_close");
}
