/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Kernel objects against what Linux does for the same job, measured in
 * the same run (best of several rounds):
 *   - thread_create + thread_set_state + thread_resume of a thread that
 *     runs machine code that stores a word and wakes the futex on it,
 *     until the word is seen, then thread_terminate; against
 *     pthread_create of a thread that does the same, and pthread_join;
 *   - task_create with inherited memory and task_terminate; against fork
 *     of a child that exits at once, and waitpid;
 *   - thread_suspend + thread_get_state + thread_resume of a spinning
 *     thread; against a round trip of two threads on a futex (the
 *     cheapest Linux exchange with a running thread).
 * Every ratio is HELL's cost over the baseline's.
 */
#include <hell.h>
#include <linux/futex.h>
#include <mach.h>
#include <mach/thread_status.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define SELF mach_task_self()
#define ROUNDS 5

/* Stores RDI at (RSI) and wakes a waiter of that word, then spins:
 *   mov %rdi,(%rsi); mov %rsi,%rdi; mov $SYS_futex,%eax;
 *   mov $FUTEX_WAKE_PRIVATE,%esi; mov $1,%edx; syscall; 1: pause; jmp 1b
 * The creator sleeps on the futex rather than polling with sched_yield,
 * which on an EEVDF kernel need not let the new thread run: the figure
 * then measured the scheduler's whims (0.4 to 3 ms), not the calls. */
static const uint8_t store_code[] = {
    0x48, 0x89, 0x3e, 0x48, 0x89, 0xf7, 0xb8, 0xca, 0x00, 0x00, 0x00, 0xbe, 0x81, 0x00,
    0x00, 0x00, 0xba, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xf3, 0x90, 0xeb, 0xfc,
};
_Static_assert(SYS_futex == 0xca && FUTEX_WAKE_PRIVATE == 0x81, "store_code's constants");

struct area {
    uint8_t code[64];
    volatile uint64_t word;
    uint8_t stack[16384] __attribute__((aligned(16)));
};

/* Sleeps until *WORD (a word another thread changes, then wakes) is
 * VALUE.  The futex is its low half: each round's value differs there. */
static void wait_word(volatile uint64_t *word, uint64_t value)
{
    uint64_t now;
    while ((now = *word) != value) {
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, (uint32_t)now, NULL, NULL, 0);
    }
}

static double mach_thread_once(struct area *a, uint64_t value)
{
    double t0 = bench_now_us();
    mach_port_t th;
    if (thread_create(SELF, &th) != KERN_SUCCESS) {
        fprintf(stderr, "bench: thread_create failed\n");
        exit(1);
    }
    struct i386_thread_state regs = {0};
    regs.rip = (uint64_t)(uintptr_t)a->code;
    regs.ursp = (uint64_t)(uintptr_t)(a->stack + sizeof a->stack - 64);
    regs.rdi = value;
    regs.rsi = (uint64_t)(uintptr_t)&a->word;
    thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs, i386_THREAD_STATE_COUNT);
    thread_resume(th);
    wait_word(&a->word, value);
    thread_terminate(th);
    double t = bench_now_us() - t0;
    mach_port_mod_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, -1);
    return t;
}

static volatile uint64_t pthread_word;

static void *pthread_store(void *arg)
{
    pthread_word = (uint64_t)(uintptr_t)arg;
    syscall(SYS_futex, (uint32_t *)&pthread_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    return NULL;
}

static double linux_thread_once(uint64_t value)
{
    double t0 = bench_now_us();
    pthread_t t;
    pthread_create(&t, NULL, pthread_store, (void *)(uintptr_t)value);
    wait_word(&pthread_word, value);
    pthread_join(t, NULL);
    return bench_now_us() - t0;
}

static void bench_threads(void)
{
    struct area *a = mmap(NULL, sizeof *a, PROT_READ | PROT_WRITE | PROT_EXEC,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(a->code, store_code, sizeof store_code);
    double best_mach = 1e18, best_linux = 1e18;
    uint64_t v = 1;
    for (int r = 0; r < ROUNDS; r++) {
        double m = 0, l = 0;
        for (int i = 0; i < 50; i++) {
            m += mach_thread_once(a, ++v);
            l += linux_thread_once(++v);
        }
        best_mach = m / 50 < best_mach ? m / 50 : best_mach;
        best_linux = l / 50 < best_linux ? l / 50 : best_linux;
    }
    bench_report("thread_create_resume_terminate", best_mach, "us", "pthread_create_join",
                 best_linux);
    munmap(a, sizeof *a);
}

static double task_once(boolean_t inherit)
{
    double t0 = bench_now_us();
    mach_port_t child;
    if (task_create(SELF, inherit, &child) != KERN_SUCCESS) {
        fprintf(stderr, "bench: task_create failed\n");
        exit(1);
    }
    task_terminate(child);
    double t = bench_now_us() - t0;
    mach_port_deallocate(SELF, child);
    return t;
}

static double fork_once(void)
{
    double t0 = bench_now_us();
    pid_t pid = fork();
    if (pid == 0) {
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    return bench_now_us() - t0;
}

/* The baseline of an empty task: a process that executes a program. */
static double fork_exec_once(void)
{
    double t0 = bench_now_us();
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, NULL, 0);
    return bench_now_us() - t0;
}

static void bench_tasks(void)
{
    double best_mach = 1e18, best_linux = 1e18, best_empty = 1e18, best_exec = 1e18;
    for (int r = 0; r < ROUNDS; r++) {
        double m = 0, l = 0, e = 0, x = 0;
        for (int i = 0; i < 20; i++) {
            m += task_once(TRUE);
            l += fork_once();
            e += task_once(FALSE);
            x += fork_exec_once();
        }
        best_mach = m / 20 < best_mach ? m / 20 : best_mach;
        best_linux = l / 20 < best_linux ? l / 20 : best_linux;
        best_empty = e / 20 < best_empty ? e / 20 : best_empty;
        best_exec = x / 20 < best_exec ? x / 20 : best_exec;
    }
    bench_report("task_create_terminate", best_mach, "us", "fork_exit_waitpid", best_linux);
    bench_report("task_create_empty_terminate", best_empty, "us", "fork_exec_true_waitpid",
                 best_exec);
}

/* ---- stopping a running thread ---- */

static volatile mach_port_t spin_port;
static volatile int spin_stop;

static void *spinner(void *arg)
{
    spin_port = mach_thread_self();
    while (!spin_stop) {
        __asm__ volatile("pause");
    }
    return arg;
}

static _Atomic uint32_t ping, pong;

/* Answers ARG pings, each with a pong, through futexes. */
static void *ponger(void *arg)
{
    uint32_t n = (uint32_t)(uintptr_t)arg;
    for (uint32_t i = 1; i <= n; i++) {
        while (atomic_load(&ping) != i) {
            syscall(SYS_futex, &ping, FUTEX_WAIT_PRIVATE, i - 1, NULL, NULL, 0);
        }
        atomic_store(&pong, i);
        syscall(SYS_futex, &pong, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    return NULL;
}

static void bench_control(void)
{
    pthread_t t;
    pthread_create(&t, NULL, spinner, NULL);
    while (spin_port == MACH_PORT_NULL) {
        sched_yield();
    }
    enum { N = 500 };
    double best_mach = 1e18, best_linux = 1e18;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < N; i++) {
            struct i386_thread_state regs;
            mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
            thread_suspend(spin_port);
            thread_get_state(spin_port, i386_THREAD_STATE, (thread_state_t)&regs, &count);
            thread_resume(spin_port);
        }
        double m = (bench_now_us() - t0) / N;
        best_mach = m < best_mach ? m : best_mach;
    }
    spin_stop = 1;
    pthread_join(t, NULL);
    mach_port_deallocate(SELF, spin_port);

    for (int r = 0; r < ROUNDS; r++) {
        atomic_store(&ping, 0);
        atomic_store(&pong, 0);
        pthread_t p;
        pthread_create(&p, NULL, ponger, (void *)(uintptr_t)N);
        double t0 = bench_now_us();
        for (uint32_t i = 1; i <= N; i++) {
            atomic_store(&ping, i);
            syscall(SYS_futex, &ping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
            while (atomic_load(&pong) != i) {
                syscall(SYS_futex, &pong, FUTEX_WAIT_PRIVATE, i - 1, NULL, NULL, 0);
            }
        }
        double l = (bench_now_us() - t0) / N;
        pthread_join(p, NULL);
        best_linux = l < best_linux ? l : best_linux;
    }
    bench_report("thread_suspend_get_state_resume", best_mach, "us", "futex_round_trip",
                 best_linux);
}

int main(void)
{
    /* Creation is measured on both CPUs (pinned to one, it costs about
     * the same now that the creator sleeps on a futex); stopping a thread
     * on one CPU, as its futex baseline. */
    bench_threads();
    bench_tasks();
    bench_pin(0);
    bench_control();
    return 0;
}
