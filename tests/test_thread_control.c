/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Thread control without ptrace: thread_suspend/thread_resume (counted),
 * thread_get_state/thread_set_state on a stopped thread (general
 * registers, FS/GS base, XSAVE state), thread_abort of a thread blocked
 * in mach_msg and in gsync_wait, a stopped receiver that leaves its
 * message queued, and task_suspend/task_resume of another task.
 */
#include <hell.h>
#include <mach.h>
#include <mach/gsync.h>
#include <mach/mach_i386.h>
#include <mach/thread_status.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()
#define MAGIC_R12 0x1234u
#define STOP_R12 0x5678u

/* Counts in R13 (published at *ARG) until R12 becomes STOP_R12, which
 * only thread_set_state can do. */
static void *spinner(void *arg)
{
    volatile uint64_t *out = arg;
    __asm__ volatile("mov %1, %%r12\n\t"
                     "xor %%r13, %%r13\n"
                     "1:\n\t"
                     "inc %%r13\n\t"
                     "mov %%r13, (%0)\n\t"
                     "cmp %2, %%r12\n\t"
                     "jne 1b\n"
                     :
                     : "r"(out), "i"(MAGIC_R12), "i"(STOP_R12)
                     : "r12", "r13", "memory", "cc");
    return NULL;
}

/* The thread port of a pthread: it sends it to us through PORT. */
static mach_port_t thread_port_of(volatile mach_port_t *slot)
{
    while (*slot == MACH_PORT_NULL) {
        usleep(1000);
    }
    return *slot;
}

struct spin {
    pthread_t thread;
    volatile uint64_t count;
    volatile mach_port_t port;
};

static void *spin_main(void *arg)
{
    struct spin *s = arg;
    s->port = mach_thread_self();
    return spinner((void *)&s->count);
}

/* Whether *COUNT moves (within 5 s: a busy machine may keep the counting
 * thread off the processors for a while). */
static bool advancing(volatile uint64_t *count)
{
    uint64_t a = *count;
    for (int i = 0; i < 5000; i++) {
        if (*count != a) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

/* Whether *COUNT stays still for 30 ms (a stopped thread never moves it). */
static bool still(volatile uint64_t *count)
{
    uint64_t a = *count;
    usleep(30000);
    return *count == a;
}

static void test_suspend_and_state(void)
{
    struct spin s = {0};
    CHECK(pthread_create(&s.thread, NULL, spin_main, &s) == 0);
    mach_port_t th = thread_port_of(&s.port);
    CHECK(advancing(&s.count));

    CHECK_KR(thread_suspend(th), KERN_SUCCESS);
    CHECK(still(&s.count));
    CHECK_KR(thread_suspend(th), KERN_SUCCESS);
    thread_basic_info_data_t info;
    mach_msg_type_number_t count = THREAD_BASIC_INFO_COUNT;
    CHECK_KR(thread_info(th, THREAD_BASIC_INFO, (thread_info_t)&info, &count), KERN_SUCCESS);
    CHECK(info.suspend_count == 2 && info.run_state == TH_STATE_STOPPED);

    struct i386_thread_state regs;
    count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_SUCCESS);
    CHECK(count == i386_THREAD_STATE_COUNT);
    CHECK(regs.r12 == MAGIC_R12);
    CHECK(regs.r13 == s.count || regs.r13 == s.count + 1);
    CHECK(regs.cs == 0x33 && regs.ss == 0x2b && regs.rsp == 0 && regs.ursp != 0);
    CHECK(regs.rfl & 0x200); /* IF */
    count = i386_THREAD_STATE_COUNT - 1;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_INVALID_ARGUMENT);

    struct i386_fsgs_base_state fsgs;
    count = i386_FSGS_BASE_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_FSGS_BASE_STATE, (thread_state_t)&fsgs, &count),
             KERN_SUCCESS);
    CHECK(fsgs.fs_base == (unsigned long)s.thread); /* glibc's TCB */

    /* The XSAVE image, written back with a new XMM1, read again. */
    vm_size_t xsize = 0;
    CHECK_KR(i386_get_xstate_size(mach_host_self(), &xsize), KERN_SUCCESS);
    natural_t *x = calloc(1, xsize + 64);
    count = (mach_msg_type_number_t)(xsize / sizeof(natural_t));
    CHECK_KR(thread_get_state(th, i386_XFLOAT_STATE, x, &count), KERN_SUCCESS);
    struct i386_xfloat_state *xf = (struct i386_xfloat_state *)x;
    CHECK(xf->fp_save_kind == 2 && xf->initialized);
    static const uint8_t pattern[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    memcpy(xf->hw_state + 160 + 16, pattern, 16); /* XMM1 in the legacy area */
    CHECK_KR(thread_set_state(th, i386_XFLOAT_STATE, x, count), KERN_SUCCESS);
    memset(x, 0, xsize);
    count = (mach_msg_type_number_t)(xsize / sizeof(natural_t));
    CHECK_KR(thread_get_state(th, i386_XFLOAT_STATE, x, &count), KERN_SUCCESS);
    CHECK(memcmp(xf->hw_state + 160 + 16, pattern, 16) == 0);
    free(x);

    natural_t flavors[8];
    count = 8;
    CHECK_KR(thread_get_state(th, THREAD_STATE_FLAVOR_LIST, flavors, &count), KERN_SUCCESS);
    CHECK(count == 3 && flavors[0] == i386_THREAD_STATE);

    /* Counted: one resume leaves it stopped, the second lets it go. */
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    CHECK(still(&s.count));
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    CHECK(advancing(&s.count));
    CHECK_KR(thread_resume(th), KERN_FAILURE);

    /* A state change on a running thread (GNU Mach stops it meanwhile):
     * R12 tells it to leave its loop. */
    count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_SUCCESS);
    regs.r12 = STOP_R12;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs, count),
             KERN_SUCCESS);
    CHECK(pthread_join(s.thread, NULL) == 0);

    /* Debug registers: none set (Linux keeps them to ptrace), read on
     * oneself too; enabling a breakpoint is refused. */
    mach_port_t me = mach_thread_self();
    struct i386_debug_state dbg;
    memset(&dbg, 0xaa, sizeof dbg);
    count = i386_DEBUG_STATE_COUNT;
    CHECK_KR(thread_get_state(me, i386_DEBUG_STATE, (thread_state_t)&dbg, &count), KERN_SUCCESS);
    CHECK(count == i386_DEBUG_STATE_COUNT && dbg.dr[0] == 0 && dbg.dr[7] == 0);
    CHECK_KR(thread_set_state(me, i386_DEBUG_STATE, (thread_state_t)&dbg, count), KERN_SUCCESS);
    dbg.dr[7] = 1;
    CHECK_KR(thread_set_state(me, i386_DEBUG_STATE, (thread_state_t)&dbg, count),
             KERN_INVALID_ARGUMENT);

    /* Not on oneself; not on a port that is no thread. */
    count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(me, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_abort(me), KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_suspend(SELF), KERN_INVALID_ARGUMENT);
    CHECK_KR(mach_port_deallocate(SELF, me), KERN_SUCCESS);
}

/* ---- blocked threads ---- */

struct blocked {
    pthread_t thread;
    mach_port_t port;
    volatile mach_port_t self;
    mach_msg_return_t mr;
    mach_msg_id_t id;
    _Atomic int done;
};

static void *receiver(void *arg)
{
    struct blocked *b = arg;
    b->self = mach_thread_self();
    union {
        mach_msg_header_t h;
        char buf[128];
    } m;
    b->mr = mach_msg(&m.h, MACH_RCV_MSG, 0, sizeof m, b->port, 0, MACH_PORT_NULL);
    b->id = m.h.msgh_id;
    atomic_store(&b->done, 1);
    return NULL;
}

static uint32_t gsync_word;

static void *gsync_waiter(void *arg)
{
    struct blocked *b = arg;
    b->self = mach_thread_self();
    b->mr = gsync_wait(SELF, (vm_address_t)&gsync_word, 0, 0, 0, 0);
    atomic_store(&b->done, 1);
    return NULL;
}

static void send_id(mach_port_t p, mach_msg_id_t id)
{
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_remote_port = p, .msgh_id = id};
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
}

static void test_abort(void)
{
    /* A receive without MACH_RCV_INTERRUPT: only thread_abort ends it. */
    struct blocked b = {.port = test_new_port(true)};
    CHECK(pthread_create(&b.thread, NULL, receiver, &b) == 0);
    mach_port_t th = thread_port_of(&b.self);
    usleep(50000);
    CHECK(!atomic_load(&b.done));
    CHECK_KR(thread_abort(th), KERN_SUCCESS);
    pthread_join(b.thread, NULL);
    CHECK_KR(b.mr, MACH_RCV_INTERRUPTED);
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);

    /* A gsync wait ends with KERN_INTERRUPTED. */
    struct blocked g = {0};
    CHECK(pthread_create(&g.thread, NULL, gsync_waiter, &g) == 0);
    th = thread_port_of(&g.self);
    usleep(50000);
    CHECK(!atomic_load(&g.done));
    CHECK_KR(thread_abort(th), KERN_SUCCESS);
    pthread_join(g.thread, NULL);
    CHECK_KR(g.mr, KERN_INTERRUPTED);
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);

    /* The Hurd's way to interrupt an RPC: suspend, abort, resume. */
    struct blocked h = {.port = b.port};
    CHECK(pthread_create(&h.thread, NULL, receiver, &h) == 0);
    th = thread_port_of(&h.self);
    usleep(50000);
    CHECK_KR(thread_suspend(th), KERN_SUCCESS);
    CHECK_KR(thread_abort(th), KERN_SUCCESS);
    usleep(20000);
    CHECK(!atomic_load(&h.done)); /* still stopped */
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    pthread_join(h.thread, NULL);
    CHECK_KR(h.mr, MACH_RCV_INTERRUPTED);
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);

    /* A stopped receiver leaves a message queued until resumed. */
    struct blocked s = {.port = b.port};
    CHECK(pthread_create(&s.thread, NULL, receiver, &s) == 0);
    th = thread_port_of(&s.self);
    usleep(50000);
    CHECK_KR(thread_suspend(th), KERN_SUCCESS);
    send_id(s.port, 42);
    usleep(50000);
    CHECK(!atomic_load(&s.done));
    mach_port_status_t st;
    CHECK_KR(mach_port_get_receive_status(SELF, s.port, &st), KERN_SUCCESS);
    CHECK(st.mps_msgcount == 1);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    pthread_join(s.thread, NULL);
    CHECK_KR(s.mr, MACH_MSG_SUCCESS);
    CHECK(s.id == 42);
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, b.port), KERN_SUCCESS);
}

/* A thread that blocks every signal cannot be stopped: the calls that
 * need it stopped fail instead of hanging; suspend takes its count. */
static volatile int blocker_stop;
static volatile mach_port_t blocker_port;

static void *blocker(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    blocker_port = mach_thread_self();
    while (!blocker_stop) {
        usleep(1000);
    }
    return arg;
}

static void test_blocked_signal(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocker, NULL) == 0);
    mach_port_t th = thread_port_of(&blocker_port);
    struct i386_thread_state regs;
    mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_suspend(th), KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_FAILURE);
    blocker_stop = 1;
    pthread_join(t, NULL);
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);
}

/* ---- task_suspend of another task ---- */

static void test_task_suspend(void)
{
    volatile uint64_t *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    mach_port_t boot = test_new_port(true);
    mach_port_t child;
    pid_t pid = hell_fork(boot, &child);
    if (pid == 0) {
        pthread_t t;
        pthread_create(&t, NULL, spinner, (void *)shared);
        for (;;) {
            pause();
        }
    }
    while (*shared == 0) {
        usleep(1000);
    }
    CHECK(advancing(shared));
    CHECK_KR(task_suspend(child), KERN_SUCCESS);
    CHECK(still(shared));
    task_basic_info_data_t info;
    mach_msg_type_number_t count = TASK_BASIC_INFO_COUNT;
    CHECK_KR(task_info(child, TASK_BASIC_INFO, (task_info_t)&info, &count), KERN_SUCCESS);
    CHECK(info.suspend_count == 1);
    CHECK_KR(task_suspend(child), KERN_SUCCESS);
    CHECK_KR(task_resume(child), KERN_SUCCESS);
    CHECK(still(shared));
    CHECK_KR(task_resume(child), KERN_SUCCESS);
    CHECK(advancing(shared));
    CHECK_KR(task_resume(child), KERN_FAILURE);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    waitpid(pid, NULL, 0);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    munmap((void *)shared, 4096);
}

int main(void)
{
    test_suspend_and_state();
    test_abort();
    test_blocked_signal();
    test_task_suspend();
    return test_done("thread_control");
}
