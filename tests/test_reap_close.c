/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A sent region's memfd closed by vm_reap's thread (libmach/vm_reap.h,
 * vm_reap_close): a small one at once, a large one a moment later, after
 * what was queued before it; a child forked while it waits, or while the
 * thread closes it, never holds it; and the thread is a background one (linux_thread_background:
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "test_region.h"
#include "vm_reap.h"

#define LARGE ((size_t)1 << 20)
#define AHEAD ((size_t)32 << 20) /* freed by the thread in several ms */

/* A file's identity: its device and inode. */
struct file_id {
    dev_t dev;
    ino_t ino;
};

/* The identity of the file open as FD. */
static struct file_id file_id_of(int fd)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    return (struct file_id){.dev = st.st_dev, .ino = st.st_ino};
}

/* Whether FD is open on the file ID. */
static bool fd_is(int fd, struct file_id id)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == id.dev && st.st_ino == id.ino;
}

/* Whether a descriptor of this process is open on the file ID. */
static bool fd_open_on(struct file_id id)
{
    DIR *dir = opendir("/proc/self/fd");
    CHECK(dir != NULL);
    bool open_on = false;
    struct dirent *e;
    while (!open_on && (e = readdir(dir)) != NULL) {
        struct stat st;
        open_on = e->d_name[0] != '.' && atoi(e->d_name) != dirfd(dir) &&
                  fstatat(dirfd(dir), e->d_name, &st, 0) == 0 && st.st_dev == id.dev &&
                  st.st_ino == id.ino;
    }
    closedir(dir);
    return open_on;
}

/* Whether no descriptor is open on the file ID within about two
 * seconds. */
static bool closed_soon(struct file_id id)
{
    for (int i = 0; i < 200 && fd_open_on(id); i++) {
        struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return !fd_open_on(id);
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

/* A memfd holding SIZE bytes of C (its pages exist); its identity in
 * *ID. */
static int memfd_of(size_t size, char c, struct file_id *id)
{
    int fd = memfd_create("test-reap-close", MFD_CLOEXEC);
    CHECK(fd >= 0);
    char page[4096];
    memset(page, c, sizeof page);
    for (size_t done = 0; done < size; done += sizeof page) {
        CHECK(write(fd, page, sizeof page) == (ssize_t)sizeof page);
    }
    *id = file_id_of(fd);
    return fd;
}

/* Queues work for the thread: a received region of SIZE bytes, the last
 * reference to its memfd, deallocated.  Returns the memfd's inode. */
static uint64_t queue_unmap(size_t size)
{
    struct file_id id;
    int fd = memfd_of(size, 'w', &id);
    uint64_t ino = id.ino; /* (the maps name the device apart) */
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
    struct file_id id;
    int fd = memfd_of(VM_REAP_MIN / 4, 's', &id);
    vm_reap_close(fd, VM_REAP_MIN / 4);
    CHECK(!fd_open_on(id));
    vm_reap_close(-1, LARGE); /* nothing */
}

/* A large one is closed by the thread, soon. */
static void large_later(void)
{
    struct file_id id;
    int fd = memfd_of(LARGE, 'l', &id);
    vm_reap_close(fd, LARGE);
    CHECK(closed_soon(id));
}

/* A fork while the close waits behind other work: the child has no
 * descriptor of the memfd, and the parent's goes. */
static void never_inherited(void)
{
    bool seen_waiting = false;
    for (int round = 0; round < 5 && !seen_waiting; round++) {
        uint64_t ahead = queue_unmap(AHEAD);
        struct file_id id;
        int fd = memfd_of(LARGE, 'f', &id);
        vm_reap_close(fd, LARGE);
        seen_waiting = fd_open_on(id);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            _exit(fd_open_on(id) ? 1 : 0);
        }
        test_wait_ok(pid);
        CHECK(closed_soon(id));
        CHECK(unmapped_soon(ahead));
    }
    CHECK(seen_waiting); /* the case above did happen */
}

/* Forks at every moment of the thread's work on a close queued just
 * before (a spin of varying length between them): no child ever has a
 * copy of the memfd, not even one the thread had taken off its queue
 * but not closed yet.  Without vm_reap's fork handlers, about 1 fork in
 * 150 left the child a copy. */
static void fork_storm(void)
{
    enum { ROUNDS = 1500 };
    int held = 0;
    struct file_id id = {0};
    for (int round = 0; round < ROUNDS; round++) {
        int fd = memfd_create("test-reap-storm", MFD_CLOEXEC);
        CHECK(fd >= 0 && ftruncate(fd, LARGE) == 0); /* no page: a quick close */
        id = file_id_of(fd);
        vm_reap_close(fd, LARGE);
        for (volatile int spin = 0; spin < (round % 50) * 20; spin++) {
        }
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            _exit(fd_is(fd, id) ? 1 : 0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
        held += WEXITSTATUS(status) != 0;
    }
    CHECK(closed_soon(id)); /* the last one too, in this process */
    if (held != 0) {
        fprintf(stderr, "children held the memfd in %d of %d forks\n", held, ROUNDS);
    }
    CHECK(held == 0);
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
    fork_storm();
    CHECK(test_count_fds() <= fds_before + 1); /* + the maps' queries */
    return test_done("reap_close");
}
