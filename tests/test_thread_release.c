/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * thread_terminate_release (gnumach.defs 4201, a simpleroutine): how a
 * thread library's exiting thread frees its own stack.  GNU Mach
 * deallocates the thread's name and destroys its reply port in the task,
 * deallocates the range, then ends the thread.  A thread of thread_create
 * running on a vm_allocate'd stack releases that very stack; another
 * thread is ended first and its stack released after; a thread of
 * pthread_create releases a region that is not its stack.  With another
 * task's port, the names and the range are that task's (released through
 * it) and the thread may be any task's; a port that is no task's does
 * nothing.
 */
#include <linux/futex.h>
#include <mach.h>
#include <mach/gnumach.h>
#include <mach/thread_status.h>
#include <mach/mig_errors.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()
#define STACK_SIZE (64 * 1024)

/* Whether any page of [ADDR, ADDR + SIZE) is mapped. */
static bool any_mapped(vm_address_t addr, vm_size_t size)
{
    unsigned char vec;
    for (vm_size_t off = 0; off < size; off += 4096) {
        if (mincore((void *)(addr + off), 4096, &vec) == 0) {
            return true;
        }
    }
    return false;
}

static vm_address_t new_region(vm_size_t size)
{
    vm_address_t addr = 0;
    CHECK_KR(vm_allocate(SELF, &addr, size, TRUE), KERN_SUCCESS);
    memset((void *)addr, 0x5a, size);
    return addr;
}

static mach_port_type_t type_of(mach_port_t name)
{
    mach_port_type_t type = 0;
    if (mach_port_type(SELF, name, &type) != KERN_SUCCESS) {
        return 0;
    }
    return type;
}

/* What the releasing thread of thread_create works with.  While it runs,
 * it borrows the main thread's thread pointer (libmach needs one of
 * glibc's) and the main thread makes no call into libmach or glibc's
 * allocator: it waits with bare system calls. */
static struct {
    mach_port_t task, reply;
    vm_address_t stack;
    _Atomic uint32_t go;   /* futex: set once main is out of libmach */
    _Atomic pid_t tid;
    _Atomic bool returned; /* the call came back: it must not */
} rel;

static void releaser(void)
{
    while (atomic_load(&rel.go) == 0) {
        syscall(SYS_futex, &rel.go, FUTEX_WAIT, 0, NULL, NULL, 0);
    }
    atomic_store(&rel.tid, (pid_t)syscall(SYS_gettid));
    mach_port_t me = mach_thread_self();
    (void)thread_terminate_release(me, rel.task, me, rel.reply, rel.stack, STACK_SIZE);
    atomic_store(&rel.returned, true);
    for (;;) {
        syscall(SYS_pause);
    }
}

/* Waits with bare system calls until Linux thread TID is gone. */
static bool wait_gone(pid_t tid)
{
    struct timespec ms = {.tv_nsec = 1000000};
    for (int i = 0; i < 5000; i++) {
        if (tid != 0 && syscall(SYS_tgkill, getpid(), tid, 0) != 0) {
            return true;
        }
        syscall(SYS_nanosleep, &ms, NULL);
    }
    return false;
}

static void test_own_stack(void)
{
    unsigned before = test_thread_count(SELF);
    rel.task = SELF;
    rel.reply = test_new_port(false);
    rel.stack = new_region(STACK_SIZE);
    mach_port_t th;
    CHECK_KR(thread_create(SELF, &th), KERN_SUCCESS);
    struct i386_thread_state regs = {0};
    regs.rip = (uint64_t)(uintptr_t)releaser;
    regs.ursp = rel.stack + STACK_SIZE - 8; /* as just called */
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    struct i386_fsgs_base_state fsgs = {.fs_base = (uint64_t)pthread_self()};
    CHECK_KR(thread_set_state(th, i386_FSGS_BASE_STATE, (thread_state_t)&fsgs,
                              i386_FSGS_BASE_STATE_COUNT),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    atomic_store(&rel.go, 1);
    syscall(SYS_futex, &rel.go, FUTEX_WAKE, 1, NULL, NULL, 0);
    struct timespec ms = {.tv_nsec = 1000000};
    for (int i = 0; i < 5000 && atomic_load(&rel.tid) == 0; i++) {
        syscall(SYS_nanosleep, &ms, NULL);
    }
    bool gone = wait_gone(atomic_load(&rel.tid));
    CHECK(gone);
    if (!gone) {
        return; /* it still runs on borrowed thread-locals: touch nothing */
    }
    CHECK(!atomic_load(&rel.returned));
    CHECK(!any_mapped(rel.stack, STACK_SIZE));
    CHECK(type_of(rel.reply) == 0); /* destroyed */
    /* Of the two references (thread_create's, mach_thread_self's), one
     * was released; the other names the dead port. */
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, &refs), KERN_SUCCESS);
    CHECK(refs == 1);
    CHECK_KR(mach_port_mod_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, -1), KERN_SUCCESS);
    CHECK(test_thread_count(SELF) == before);
}

static void test_other_thread(void)
{
    /* A port that is no task's: its server answers MIG_BAD_ID. */
    mach_port_t stranger = test_new_port(true);
    pthread_t server;
    CHECK(pthread_create(&server, NULL, test_bad_id_server, &stranger) == 0);
    unsigned before = test_thread_count(SELF);
    uint8_t *code = test_spin_page();
    volatile uint64_t result = 0;
    vm_address_t stack = new_region(STACK_SIZE);
    mach_port_t reply = test_new_port(false);
    mach_port_t th;
    CHECK_KR(thread_create(SELF, &th), KERN_SUCCESS);
    struct i386_thread_state regs = {0};
    regs.rip = (uint64_t)(uintptr_t)code;
    regs.ursp = stack + STACK_SIZE - 64;
    regs.rdi = 0x77;
    regs.rsi = (uint64_t)(uintptr_t)&result;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    for (int i = 0; i < 5000 && result != 0x77; i++) {
        usleep(1000);
    }
    CHECK(result == 0x77);
    /* No task, or a port that is no task's: nothing happens. */
    CHECK_KR(thread_terminate_release(th, MACH_PORT_NULL, th, reply, stack, STACK_SIZE),
             KERN_SUCCESS); /* (sent: a simpleroutine has no answer) */
    CHECK_KR(thread_terminate_release(th, stranger, th, reply, stack, STACK_SIZE),
             KERN_SUCCESS);
    CHECK(test_thread_count(SELF) == before + 1);
    CHECK(any_mapped(stack, STACK_SIZE) && type_of(reply) == MACH_PORT_TYPE_RECEIVE);
    CHECK(type_of(th) == MACH_PORT_TYPE_SEND);
    /* Served before the send returns: the thread is gone, then its
     * stack; the name's one reference went with it. */
    CHECK_KR(thread_terminate_release(th, SELF, th, reply, stack, STACK_SIZE), KERN_SUCCESS);
    CHECK(test_thread_count(SELF) == before);
    CHECK(!any_mapped(stack, STACK_SIZE));
    CHECK(type_of(reply) == 0 && type_of(th) == 0);
    munmap(code, 4096);
    CHECK_KR(mach_port_destroy(SELF, stranger), KERN_SUCCESS);
    CHECK(pthread_join(server, NULL) == 0);
}

/* ---- with another task's port ---- */

#define CHILD_NAME 0x7f01 /* the child's name for a thread, inserted */

/* Starts a thread in TASK spinning on the code at CODE (mapped there too)
 * with its stack pointer at SP; returns its port. */
static mach_port_t start_spinner(mach_port_t task, const uint8_t *code, vm_address_t sp)
{
    return test_start_thread(task, (uint64_t)(uintptr_t)(code + TEST_SPIN_LOOP), sp);
}

static mach_port_type_t type_in(mach_port_t task, mach_port_t name)
{
    mach_port_type_t type = 0;
    if (mach_port_type(task, name, &type) != KERN_SUCCESS) {
        return 0;
    }
    return type;
}

/* Whether ADDR is in a region of TASK (vm_region). */
static bool mapped_in(mach_port_t task, vm_address_t addr)
{
    vm_address_t start = addr;
    vm_size_t size = 0;
    vm_prot_t prot, max_prot;
    vm_inherit_t inherit;
    boolean_t shared;
    mach_port_t object = MACH_PORT_NULL;
    vm_offset_t offset;
    kern_return_t kr = vm_region(task, &start, &size, &prot, &max_prot, &inherit, &shared,
                                 &object, &offset);
    if (MACH_PORT_VALID(object)) {
        mach_port_deallocate(SELF, object);
    }
    return kr == KERN_SUCCESS && start <= addr && addr - start < size;
}

/* What a release left in TASK: the thread count THREADS_IN has there,
 * the names and the range there.  Waits (up to 10 s) for all of it. */
struct released {
    mach_port_t threads_in;
    unsigned threads;
    mach_port_t task;
    mach_port_name_t name, reply;
    vm_address_t range;
};

static bool released_now(const struct released *r)
{
    return test_thread_count(r->threads_in) == r->threads && type_in(r->task, r->name) == 0 &&
           type_in(r->task, r->reply) == 0 && !mapped_in(r->task, r->range);
}

static void wait_released(const struct released *r)
{
    for (int i = 0; i < 1000 && !released_now(r); i++) {
        usleep(10000);
    }
    CHECK(test_thread_count(r->threads_in) == r->threads);
    CHECK(type_in(r->task, r->name) == 0);
    CHECK(type_in(r->task, r->reply) == 0);
    CHECK(!mapped_in(r->task, r->range));
}

/* A name for TH (a send right of ours) in the child, and a receive right
 * and a range there. */
static void child_names(mach_port_t child, mach_port_t th, mach_port_name_t *reply,
                        vm_address_t *range)
{
    CHECK_KR(mach_port_insert_right(child, CHILD_NAME, th, MACH_MSG_TYPE_COPY_SEND),
             KERN_SUCCESS);
    CHECK(type_in(child, CHILD_NAME) == MACH_PORT_TYPE_SEND);
    CHECK_KR(mach_port_allocate(child, MACH_PORT_RIGHT_RECEIVE, reply), KERN_SUCCESS);
    *range = 0;
    CHECK_KR(vm_allocate(child, range, STACK_SIZE, TRUE), KERN_SUCCESS);
    CHECK(mapped_in(child, *range));
}

/* A thread of a child, released with the child's own port by its parent:
 * its name, its reply port and its stack go there, then the thread. */
static void test_child_thread(const uint8_t *code, mach_port_t child)
{
    unsigned before = test_thread_count(child);
    vm_address_t stack = 0;
    CHECK_KR(vm_allocate(child, &stack, STACK_SIZE, TRUE), KERN_SUCCESS);
    mach_port_t th = start_spinner(child, code, stack + STACK_SIZE - 64);
    CHECK(test_thread_count(child) == before + 1);
    mach_port_name_t reply;
    vm_address_t unused;
    child_names(child, th, &reply, &unused);
    CHECK_KR(vm_deallocate(child, unused, STACK_SIZE), KERN_SUCCESS);
    CHECK_KR(thread_terminate_release(th, child, CHILD_NAME, reply, stack, STACK_SIZE),
             KERN_SUCCESS);
    wait_released(&(struct released){.threads_in = child, .threads = before, .task = child,
                                      .name = CHILD_NAME, .reply = reply, .range = stack});
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS); /* a dead name now */
}

/* A thread of ours released with the child's port: the names and the
 * range are the child's; the thread's own stack stays. */
static void test_names_in_child(const uint8_t *code, mach_port_t child)
{
    unsigned before = test_thread_count(SELF);
    vm_address_t stack = new_region(STACK_SIZE);
    mach_port_t th = start_spinner(SELF, code, stack + STACK_SIZE - 64);
    CHECK(test_thread_count(SELF) == before + 1);
    mach_port_name_t reply;
    vm_address_t range;
    child_names(child, th, &reply, &range);
    CHECK_KR(thread_terminate_release(th, child, CHILD_NAME, reply, range, STACK_SIZE),
             KERN_SUCCESS);
    wait_released(&(struct released){.threads_in = SELF, .threads = before, .task = child,
                                      .name = CHILD_NAME, .reply = reply, .range = range});
    CHECK(any_mapped(stack, STACK_SIZE));
    CHECK_KR(vm_deallocate(SELF, stack, STACK_SIZE), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);
}

/* A thread of the child released with our port: the names and the range
 * are ours (released by the child through our task port). */
static void test_names_here(const uint8_t *code, mach_port_t child)
{
    unsigned before = test_thread_count(child);
    vm_address_t stack = 0;
    CHECK_KR(vm_allocate(child, &stack, STACK_SIZE, TRUE), KERN_SUCCESS);
    mach_port_t th = start_spinner(child, code, stack + STACK_SIZE - 64);
    CHECK(test_thread_count(child) == before + 1);
    mach_port_t reply = test_new_port(false);
    vm_address_t range = new_region(STACK_SIZE);
    /* (TH, our name for the thread, has thread_create's one reference.) */
    CHECK_KR(thread_terminate_release(th, SELF, th, reply, range, STACK_SIZE), KERN_SUCCESS);
    wait_released(&(struct released){.threads_in = child, .threads = before, .task = SELF,
                                      .name = th, .reply = reply, .range = range});
    CHECK(!any_mapped(range, STACK_SIZE));
    CHECK(mapped_in(child, stack)); /* the thread's own stack stays */
    CHECK_KR(vm_deallocate(child, stack, STACK_SIZE), KERN_SUCCESS);
}

static void test_other_task(void)
{
    uint8_t *code = test_spin_page();
    mach_port_t child;
    pid_t pid = test_fork_idle(&child); /* (with the code: a copy of us) */
    test_child_thread(code, child);
    test_names_in_child(code, child);
    test_names_here(code, child);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    waitpid(pid, NULL, 0);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    munmap(code, 4096);
}

struct plain {
    vm_address_t region;
    mach_port_t reply;
};

static void *plain_main(void *arg)
{
    struct plain *p = arg;
    mach_port_t me = mach_thread_self();
    (void)thread_terminate_release(me, SELF, me, p->reply, p->region, STACK_SIZE);
    return (void *)1; /* never: it ended in the call */
}

static void *exit_main(void *arg)
{
    pthread_exit(arg);
}

/* A thread of pthread_create ends through glibc (which frees its stack)
 * and releases a region of its own. */

static void test_plain_thread(void)
{
    /* glibc's first pthread_exit loads libgcc_s (its unwinder), which
     * could land where the released region was: loaded beforehand. */
    pthread_t warm;
    CHECK(pthread_create(&warm, NULL, exit_main, NULL) == 0);
    CHECK(pthread_join(warm, NULL) == 0);
    struct plain p = {.region = new_region(STACK_SIZE), .reply = test_new_port(false)};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, plain_main, &p) == 0);
    void *ret = NULL;
    CHECK(pthread_join(thread, &ret) == 0);
    CHECK(ret == PTHREAD_CANCELED || ret == NULL); /* pthread_exit's */
    CHECK(!any_mapped(p.region, STACK_SIZE));
    CHECK(type_of(p.reply) == 0);
}

int main(void)
{
    test_other_thread();
    test_other_task();
    test_plain_thread();
    test_own_stack();
    return test_done("thread_release");
}
