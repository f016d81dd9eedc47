/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * gsync_wait, gsync_wake and gsync_requeue (gnumach.defs) with GNU Mach's
 * semantics and codes: within a task between threads, local and shared
 * keys (two mappings of one page meet only with GSYNC_SHARED), across
 * tasks on shared memory, and a wait asked by another task through the
 * task port (served without blocking the target's service thread).
 * gsync_wake and gsync_requeue are simple routines: their callers see no
 * kernel return code, so the tests look at who is still waiting (Linux
 * shows a thread blocked in a futex in /proc/PID/task/TID/syscall).
 */
#include <hell.h>
#include <mach.h>
#include <mach/gsync.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()

struct waiter {
    pthread_t thread;
    _Atomic pid_t tid;
    uint32_t *word;
    unsigned val1, val2;
    natural_t msec;
    int flags;
    _Atomic int done;
    kern_return_t kr;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    atomic_store(&w->tid, (pid_t)syscall(SYS_gettid));
    w->kr = gsync_wait(SELF, (vm_address_t)w->word, w->val1, w->val2, w->msec, w->flags);
    atomic_store(&w->done, 1);
    return NULL;
}

static void waiter_start(struct waiter *w, uint32_t *word, unsigned val1, int flags)
{
    *w = (struct waiter){.word = word, .val1 = val1, .flags = flags};
    CHECK(pthread_create(&w->thread, NULL, waiter_main, w) == 0);
}

/* Whether thread TID of process PID is blocked in a futex system call,
 * on ADDR unless ADDR is 0. */
static bool in_futex_of(pid_t pid, pid_t tid, uintptr_t addr)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
    FILE *f = fopen(path, "r");
    long nr = -1;
    unsigned long a0 = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %lx", &nr, &a0) < 1) {
            nr = -1;
        }
        fclose(f);
    }
    return (nr == SYS_futex || nr == 449 /* futex_waitv */) && (addr == 0 || a0 == addr);
}

static bool in_futex(pid_t tid)
{
    return in_futex_of(getpid(), tid, 0);
}

/* Whether some thread of PID waits in a futex on ADDR. */
static bool someone_waits_on(pid_t pid, uintptr_t addr)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    bool found = false;
    struct dirent *d;
    while (dir != NULL && !found && (d = readdir(dir)) != NULL) {
        pid_t tid = (pid_t)atoi(d->d_name);
        found = tid > 0 && in_futex_of(pid, tid, addr);
    }
    if (dir != NULL) {
        closedir(dir);
    }
    return found;
}

/* Waits until some thread of PID waits on ADDR (at most 10 s). */
static bool wait_for_waiter(pid_t pid, uintptr_t addr)
{
    for (int i = 0; i < 10000; i++) {
        if (someone_waits_on(pid, addr)) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

/* Waits until W is blocked in its gsync_wait (at most 10 s). */
static void blocked(struct waiter *w)
{
    for (int i = 0; i < 10000 && (atomic_load(&w->tid) == 0 || !in_futex(w->tid)); i++) {
        usleep(1000);
    }
    CHECK(in_futex(w->tid));
}

/* Gives a waiter that was just woken time to finish. */
static void settle(void)
{
    usleep(50000);
}

static void test_errors(void)
{
    static uint32_t word = 7;
    CHECK_KR(gsync_wait(SELF, (vm_address_t)&word + 1, 7, 0, 0, 0), KERN_INVALID_ADDRESS);
    CHECK_KR(gsync_wait(SELF, 0x1000, 0, 0, 0, 0), KERN_INVALID_ADDRESS);
    /* The value differs: no wait at all. */
    CHECK_KR(gsync_wait(SELF, (vm_address_t)&word, 8, 0, 0, 0), KERN_INVALID_ARGUMENT);
    CHECK_KR(gsync_wait(SELF, (vm_address_t)&word, 7, 0, 50, GSYNC_TIMED), KERN_TIMEDOUT);
    CHECK_KR(gsync_wait(mach_host_self(), (vm_address_t)&word, 7, 0, 0, 0), KERN_INVALID_TASK);
    /* Waking nobody, at a bad address, or a word that is not mapped: the
     * simple routines are sent, and nothing happens. */
    CHECK_KR(gsync_wake(SELF, (vm_address_t)&word, 0, 0), KERN_SUCCESS);
    CHECK_KR(gsync_wake(SELF, (vm_address_t)&word + 2, 1, GSYNC_MUTATE), KERN_SUCCESS);
    CHECK_KR(gsync_wake(SELF, 0x1000, 1, GSYNC_MUTATE), KERN_SUCCESS);
    CHECK_KR(gsync_requeue(SELF, (vm_address_t)&word, (vm_address_t)&word + 4, TRUE, 0),
             KERN_SUCCESS);
    CHECK(word == 7);
}

static void test_wake_one_and_all(void)
{
    static uint32_t word;
    struct waiter w[3];
    for (int i = 0; i < 3; i++) {
        waiter_start(&w[i], &word, 0, 0);
    }
    for (int i = 0; i < 3; i++) {
        blocked(&w[i]);
    }
    CHECK_KR(gsync_wake(SELF, (vm_address_t)&word, 0, 0), KERN_SUCCESS);
    for (int i = 0; i < 1000 && !(w[0].done || w[1].done || w[2].done); i++) {
        usleep(1000);
    }
    settle();
    int done = 0;
    for (int i = 0; i < 3; i++) {
        done += atomic_load(&w[i].done);
    }
    CHECK(done == 1);
    /* MUTATE stores before waking; BROADCAST wakes the rest. */
    CHECK_KR(gsync_wake(SELF, (vm_address_t)&word, 5, GSYNC_MUTATE | GSYNC_BROADCAST),
             KERN_SUCCESS);
    for (int i = 0; i < 3; i++) {
        pthread_join(w[i].thread, NULL);
        CHECK_KR(w[i].kr, KERN_SUCCESS);
    }
    CHECK(word == 5);
}

static void test_quad_and_requeue(void)
{
    static uint64_t pair; /* 8-byte aligned */
    uint32_t *lo = (uint32_t *)&pair;
    lo[0] = 1;
    lo[1] = 2;
    /* Both words must match. */
    CHECK_KR(gsync_wait(SELF, (vm_address_t)lo, 1, 3, 0, GSYNC_QUAD), KERN_INVALID_ARGUMENT);
    CHECK_KR(gsync_wait(SELF, (vm_address_t)lo, 1, 2, 30, GSYNC_QUAD | GSYNC_TIMED),
             KERN_TIMEDOUT);
    struct waiter q = {.word = lo, .val1 = 1, .val2 = 2, .flags = GSYNC_QUAD};
    CHECK(pthread_create(&q.thread, NULL, waiter_main, &q) == 0);
    blocked(&q);
    CHECK_KR(gsync_wake(SELF, (vm_address_t)lo, 0, 0), KERN_SUCCESS);
    pthread_join(q.thread, NULL);
    CHECK_KR(q.kr, KERN_SUCCESS);

    /* Requeue: waiters on A move to B; a wake on A finds none. */
    static uint32_t a, b;
    struct waiter w[2];
    waiter_start(&w[0], &a, 0, 0);
    waiter_start(&w[1], &a, 0, 0);
    blocked(&w[0]);
    blocked(&w[1]);
    CHECK_KR(gsync_requeue(SELF, (vm_address_t)&a, (vm_address_t)&b, FALSE, GSYNC_BROADCAST),
             KERN_SUCCESS);
    CHECK_KR(gsync_wake(SELF, (vm_address_t)&a, 0, GSYNC_BROADCAST), KERN_SUCCESS);
    settle();
    CHECK(!w[0].done && !w[1].done); /* they wait on B now */
    CHECK_KR(gsync_wake(SELF, (vm_address_t)&b, 0, GSYNC_BROADCAST), KERN_SUCCESS);
    for (int i = 0; i < 2; i++) {
        pthread_join(w[i].thread, NULL);
        CHECK_KR(w[i].kr, KERN_SUCCESS);
    }
}

/* Two mappings of one page: a local wait is keyed by address, a shared
 * one by the page. */
static void test_local_and_shared_keys(void)
{
    int fd = memfd_create("gsync", MFD_CLOEXEC);
    CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);
    uint32_t *m1 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    uint32_t *m2 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m1 != MAP_FAILED && m2 != MAP_FAILED);
    struct waiter w;
    waiter_start(&w, m1, 0, 0);
    blocked(&w);
    CHECK_KR(gsync_wake(SELF, (vm_address_t)m2, 0, 0), KERN_SUCCESS);
    CHECK_KR(gsync_wake(SELF, (vm_address_t)m1, 0, GSYNC_SHARED), KERN_SUCCESS);
    settle();
    CHECK(!w.done); /* a local wait meets only a local wake at its address */
    CHECK_KR(gsync_wake(SELF, (vm_address_t)m1, 0, 0), KERN_SUCCESS);
    pthread_join(w.thread, NULL);
    CHECK_KR(w.kr, KERN_SUCCESS);

    waiter_start(&w, m1, 0, GSYNC_SHARED);
    blocked(&w);
    CHECK_KR(gsync_wake(SELF, (vm_address_t)m2, 0, 0), KERN_SUCCESS);
    settle();
    CHECK(!w.done);
    /* A shared one meets a shared wake through any mapping of the page. */
    CHECK_KR(gsync_wake(SELF, (vm_address_t)m2, 0, GSYNC_SHARED), KERN_SUCCESS);
    pthread_join(w.thread, NULL);
    CHECK_KR(w.kr, KERN_SUCCESS);
    munmap(m1, 4096);
    munmap(m2, 4096);
    close(fd);
}

/* A child task on a shared page; then a wait the parent asks of the
 * child through its task port, on the child's memory. */
static void test_across_tasks(void)
{
    uint32_t *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
    CHECK(shared != MAP_FAILED);
    shared[0] = 0; /* the child waits on it */
    shared[1] = 0; /* the child's word for the remote wait: its address */
    shared[2] = 0; /* set by the child once it has seen the remote waiter */
    mach_port_t boot = test_new_port(true);
    mach_port_t child;
    pid_t pid = hell_fork(boot, &child);
    if (pid == 0) {
        kern_return_t kr = gsync_wait(SELF, (vm_address_t)shared, 0, 0, 0, GSYNC_SHARED);
        if (kr != KERN_SUCCESS || shared[0] != 1) {
            _exit(2);
        }
        /* A private word of ours, which the parent will wait on. */
        static uint32_t mine = 9;
        __atomic_store_n(&shared[1], (uint32_t)((uintptr_t)&mine & 0xffffffff), __ATOMIC_SEQ_CST);
        __atomic_store_n(&shared[3], (uint32_t)((uintptr_t)&mine >> 32), __ATOMIC_SEQ_CST);
        /* The parent's wait runs in a thread of ours. */
        if (!wait_for_waiter(getpid(), (uintptr_t)&mine)) {
            _exit(3);
        }
        gsync_wake(SELF, (vm_address_t)&mine, 10, GSYNC_MUTATE);
        /* Our thread still has to answer: stay until the parent got it. */
        while (__atomic_load_n(&shared[2], __ATOMIC_SEQ_CST) == 0) {
            usleep(1000);
        }
        _exit(mine == 10 ? 0 : 4);
    }
    CHECK(wait_for_waiter(pid, (uintptr_t)shared));
    shared[0] = 1;
    CHECK_KR(gsync_wake(SELF, (vm_address_t)shared, 0, GSYNC_SHARED), KERN_SUCCESS);
    while (__atomic_load_n(&shared[1], __ATOMIC_SEQ_CST) == 0) {
        usleep(1000);
    }
    vm_address_t theirs = ((vm_address_t)shared[3] << 32) | shared[1];
    /* A mismatch is refused at once, remotely too. */
    CHECK_KR(gsync_wait(child, theirs, 12345, 0, 0, 0), KERN_INVALID_ARGUMENT);
    /* Blocks in the child until it wakes its own word. */
    CHECK_KR(gsync_wait(child, theirs, 9, 0, 10000, GSYNC_TIMED), KERN_SUCCESS);
    __atomic_store_n(&shared[2], 1, __ATOMIC_SEQ_CST);
    test_wait_ok(pid);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    munmap(shared, 4096);
}

int main(void)
{
    test_errors();
    test_wake_one_and_all();
    test_quad_and_requeue();
    test_local_and_shared_keys();
    test_across_tasks();
    return test_done("gsync");
}
