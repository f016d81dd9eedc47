/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * thread_create: a thread that starts from any register state.  The Mach
 * thread exists at once (its port, a suspend count of 1, GNU Mach's
 * initial state, which thread_set_state changes); its Linux thread is
 * made when thread_resume lets it run.  That thread's start routine is
 * its "kernel stack": it sets up a signal stack for the control handler,
 * loads FS/GS and enters the state with rt_sigreturn on a ucontext built
 * from it (the kernel validates the frame), and is where thread_terminate
 * comes back to (a siglongjmp from the handler), so that glibc frees the
 * thread's resources normally.
 */
#include <asm/prctl.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "ipc_space.h"
#include "kern.h"
#include "kern_control.h"
#include "kern_thread.h"
#include "linux.h"
#include "mach.server.h"

/* A signal stack, aligned to its size, whose lowest bytes name its
 * thread (kern_altstack_owner). */
#define KERN_ALTSTACK_SIZE (64 * 1024)
#define KERN_ALTSTACK_MAGIC 0x48454c4c53544b31ull /* "HELLSTK1" */

struct kern_altstack_head {
    uint64_t magic;
    struct kern_thread *owner;
};

/* Maps a signal stack for T; returns its base, or NULL. */
static void *kern_altstack_new(struct kern_thread *t)
{
    uint8_t *p = mmap(NULL, 2 * KERN_ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    uintptr_t base = ((uintptr_t)p + KERN_ALTSTACK_SIZE - 1) & ~(uintptr_t)(KERN_ALTSTACK_SIZE - 1);
    if (base > (uintptr_t)p) {
        munmap(p, base - (uintptr_t)p);
    }
    uintptr_t end = (uintptr_t)p + 2 * KERN_ALTSTACK_SIZE;
    if (end > base + KERN_ALTSTACK_SIZE) {
        munmap((void *)(base + KERN_ALTSTACK_SIZE), end - (base + KERN_ALTSTACK_SIZE));
    }
    struct kern_altstack_head *head = (void *)base;
    head->magic = KERN_ALTSTACK_MAGIC;
    head->owner = t;
    return (void *)base;
}

struct kern_thread *kern_altstack_owner(void)
{
    stack_t ss;
    /* Only on a signal stack (the kernel says), never guessing from an
     * arbitrary stack's memory. */
    long rc = linux_raw_syscall2(SYS_sigaltstack, 0, (long)&ss);
    if (rc != 0 || !(ss.ss_flags & SS_ONSTACK) || ss.ss_size != KERN_ALTSTACK_SIZE) {
        return NULL;
    }
    const struct kern_altstack_head *head = ss.ss_sp;
    return head->magic == KERN_ALTSTACK_MAGIC ? head->owner : NULL;
}

/* Enters the state in UC, which lies on the current stack: rt_sigreturn
 * reads its frame at RSP (the handler's return address slot popped). */
static __attribute__((noreturn)) void kern_sigreturn(ucontext_t *uc)
{
    __asm__ volatile("mov %0, %%rsp\n\t"
                     "mov %1, %%eax\n\t"
                     "syscall\n\t"
                     "ud2"
                     :
                     : "r"(uc), "i"(SYS_rt_sigreturn)
                     : "memory");
    __builtin_unreachable();
}

static void *kern_thread_start_main(void *arg)
{
    struct kern_thread *t = arg;
    ipc_lock();
    kern_thread_started(t, (pid_t)syscall(SYS_gettid));
    t->kernel_fs = (unsigned long)pthread_self();
    struct i386_thread_state state = t->start_state;
    unsigned long fs = t->fs_base, gs = t->gs_base;
    ipc_unlock();
    /* (Made by the service thread for another task, it has that hidden
     * thread's name: not one to be counted as a Mach thread's.) */
    linux_thread_name_unmark_self();
    atomic_store(&t->running, 1);
    linux_futex_wake(&t->running, 1, false);
    kern_thread_bind_self(t);

    stack_t alt = {.ss_size = KERN_ALTSTACK_SIZE, .ss_sp = kern_altstack_new(t)};
    if (alt.ss_sp != NULL) {
        sigaltstack(&alt, NULL);
    }
    if (sigsetjmp(t->exit_jmp, 0) == 0) {
        t->has_exit_jmp = true;
        ucontext_t uc __attribute__((aligned(64)));
        memset(&uc, 0, sizeof uc);
        kern_state_to_ucontext(&state, &uc);
        uc.uc_mcontext.gregs[REG_CSGSFS] = 0x33; /* cs; gs, fs 0 */
        uc.uc_mcontext.fpregs = NULL;            /* the initial FPU state */
        sigemptyset(&uc.uc_sigmask);
        sigaltstack(NULL, &uc.uc_stack);
        linux_raw_syscall2(SYS_arch_prctl, ARCH_SET_GS, (long)gs);
        linux_raw_syscall2(SYS_arch_prctl, ARCH_SET_FS, (long)fs); /* no thread-local from here on */
        kern_sigreturn(&uc);
    }
    /* thread_terminate came back here, on glibc's thread pointer; the
     * stack the thread ran on may go now (thread_terminate_release). */
    kern_exit_release_run();
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
    if (alt.ss_sp != NULL) {
        munmap(alt.ss_sp, KERN_ALTSTACK_SIZE);
    }
    return NULL;
}

kern_return_t kern_thread_start(struct kern_thread *t)
{
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    bool ok = pthread_create(&thread, &attr, kern_thread_start_main, t) == 0;
    pthread_attr_destroy(&attr);
    /* Back only once it is a Linux thread that controllers can signal. */
    while (ok && !atomic_load(&t->running)) {
        linux_futex_wait(&t->running, 0, -1, false);
    }
    return ok ? KERN_SUCCESS : KERN_RESOURCE_SHORTAGE;
}

kern_return_t kern_thread_create(mach_port_t task, mach_port_t *child)
{
    ipc_lock();
    kern_return_t kr = KERN_INVALID_ARGUMENT;
    if (kern_is_task(task)) {
        struct kern_thread *t = kern_thread_new_unstarted();
        kr = t != NULL ? KERN_SUCCESS : KERN_RESOURCE_SHORTAGE;
        if (t != NULL) {
            /* In a suspended task it is held by the task too: resumed to
             * 0 alone, it still waits for task_resume (GNU Mach). */
            if (kern_task_suspend_count() > 0) {
                t->task_held = true;
                t->suspend_count++;
            }
            *child = t->kname;
        }
    }
    ipc_unlock();
    return kr;
}
