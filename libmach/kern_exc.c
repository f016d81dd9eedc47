/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Exceptions: a fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) becomes
 * GNU Mach's exception_raise RPC (exc.defs) to the thread's exception
 * port, else the task's, with GNU Mach's exception and code values (the
 * x86 trap number and error code Linux reports make its mapping exact).
 * The faulting thread waits for the reply in its signal handler; while
 * it waits, its state as thread_get_state and thread_set_state see it is
 * the fault's (kern_fault_uc), and a success reply resumes it with that
 * state, changes included.  Any other reply, after the task's port was
 * tried, terminates the task, as GNU Mach does; without an exception
 * port the fault takes Linux's default action, as for any program.
 *
 * The RPC is sent from the kernel space by a MIG user stub generated from
 * exc.defs (build/gen/exc.kuser.c) whose mach_msg and reply-port calls
 * are the kern_exc_* functions below.
 */
#include <asm/prctl.h>
#include <errno.h>
#include <mach/exception.h>
#include <mach/thread_special_ports.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "exc.kuser.h"
#include "kern_exc_stub.h"
#include "futex_lock.h"
#include "ipc_msg.h"
#include "ipc_space.h"
#include "kern.h"
#include "kern_control.h"
#include "kern_thread.h"
#include "mach.server.h"

__thread ucontext_t *kern_fault_uc;

/* ---- the stub's hooks: mach_msg and reply ports in the kernel space ---- */

mach_msg_return_t kern_exc_mach_msg(mach_msg_header_t *msg, mach_msg_option_t option,
                                    mach_msg_size_t send_size, mach_msg_size_t rcv_size,
                                    mach_port_name_t rcv_name, mach_msg_timeout_t timeout,
                                    mach_port_name_t notify)
{
    (void)notify;
    return ipc_mach_msg(SPACE_KERNEL, msg, option, send_size, rcv_size, rcv_name, timeout);
}

mach_port_t kern_exc_reply_port(void)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_self();
    mach_port_name_t name = MACH_PORT_NULL;
    if (t != NULL) {
        struct ipc_entry *entry;
        if (t->exc_reply == MACH_PORT_NULL &&
            ipc_right_new_receive(&ipc_spaces[SPACE_KERNEL], &entry) == KERN_SUCCESS) {
            t->exc_reply = entry->name;
        }
        name = t->exc_reply;
    }
    ipc_unlock();
    return name;
}

void kern_exc_dealloc_reply_port(mach_port_t port)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_self();
    if (t != NULL && t->exc_reply == port) {
        t->exc_reply = MACH_PORT_NULL;
    }
    (void)ipc_right_destroy(&ipc_spaces[SPACE_KERNEL], port);
    ipc_unlock();
}

void kern_exc_put_reply_port(mach_port_t port)
{
    (void)port; /* kept for the thread's next exception */
}

/* ---- special ports of threads ---- */

kern_return_t kern_thread_get_special_port(mach_port_t thread, int which, mach_port_t *port)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    kern_return_t kr = KERN_SUCCESS;
    if (t == NULL) {
        kr = KERN_INVALID_ARGUMENT;
    } else if (which == THREAD_KERNEL_PORT) {
        *port = kern_thread_self_kname(t);
    } else if (which == THREAD_EXCEPTION_PORT) {
        *port = t->exception_kname;
    } else {
        kr = KERN_INVALID_ARGUMENT;
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_thread_set_special_port(mach_port_t thread, int which, mach_port_t port)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    kern_return_t kr = KERN_SUCCESS;
    if (t == NULL || (which != THREAD_EXCEPTION_PORT && which != THREAD_KERNEL_PORT)) {
        kr = KERN_INVALID_ARGUMENT;
    } else if (which == THREAD_KERNEL_PORT) {
        /* As GNU Mach's ith_sself: what mach_thread_self() and the
         * thread's exception messages give from now on; the thread port
         * put back is the plain case again.  The request's send right
         * becomes the record's (MIG leaves it to us on success). */
        kern_sself_put(&t->sself, t->kname, port);
    } else {
        if (MACH_PORT_VALID(t->exception_kname)) {
            (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], t->exception_kname);
        }
        t->exception_kname = port;
    }
    ipc_unlock();
    return kr;
}

/* ---- faults ---- */

/* The SIMD floating-point exception (#XM). */
#define KERN_TRAP_SIMD 19

/* GNU Mach's exception, code and subcode for a fault (i386/i386/trap.c's
 * user_trap, from the trap number and error code). */
static void kern_fault_to_exception(int sig, const siginfo_t *si, const ucontext_t *uc,
                                    integer_t *exc, integer_t *code, rpc_long_integer_t *subcode)
{
    long trapno = (long)uc->uc_mcontext.gregs[REG_TRAPNO];
    long err = (long)uc->uc_mcontext.gregs[REG_ERR];
    const uint8_t *fp = (const uint8_t *)uc->uc_mcontext.fpregs;
    *subcode = 0;
    switch (sig) {
    case SIGSEGV:
        if (trapno == EXC_I386_PGFLT) {
            *exc = EXC_BAD_ACCESS;
            *code = si->si_code == SEGV_ACCERR ? KERN_PROTECTION_FAILURE : KERN_INVALID_ADDRESS;
            *subcode = (rpc_long_integer_t)(uintptr_t)si->si_addr;
        } else {
            /* General protection and the other segment faults. */
            *exc = EXC_BAD_INSTRUCTION;
            *code = trapno == EXC_I386_INVTSSFLT || trapno == EXC_I386_SEGNPFLT ||
                            trapno == EXC_I386_STKFLT
                        ? (integer_t)trapno
                        : EXC_I386_GPFLT;
            *subcode = err & 0xffff;
        }
        break;
    case SIGBUS:
        /* Memory its pager could not supply: past the end of a memfd, or
         * a page the pager failed to give (vm_object.c queues the signal
         * with the address as its value). */
        *exc = EXC_BAD_ACCESS;
        *code = KERN_MEMORY_ERROR;
        *subcode = si->si_code == SI_QUEUE ? (rpc_long_integer_t)(uintptr_t)si->si_value.sival_ptr
                                           : (rpc_long_integer_t)(uintptr_t)si->si_addr;
        break;
    case SIGILL:
        *exc = EXC_BAD_INSTRUCTION;
        *code = EXC_I386_INVOP;
        break;
    case SIGFPE:
        *exc = EXC_ARITHMETIC;
        if (trapno == EXC_I386_DIVERR || si->si_code == FPE_INTDIV) {
            *code = EXC_I386_DIV;
        } else if (trapno == KERN_TRAP_SIMD) {
            /* GNU Mach never sets CR4.OSXMMEXCPT (fpu.c's init_fpu), so
             * there an unmasked SSE exception is an invalid opcode. */
            *exc = EXC_BAD_INSTRUCTION;
            *code = EXC_I386_INVOP;
        } else {
            /* x87 (trap 16): its status word, as fpextovrflt gives it. */
            uint16_t fsw = 0;
            if (fp != NULL) {
                memcpy(&fsw, fp + 2, sizeof fsw);
            }
            *code = EXC_I386_EXTERR;
            *subcode = (rpc_long_integer_t)fsw;
        }
        break;
    default: /* SIGTRAP */
        *exc = EXC_BREAKPOINT;
        *code = trapno == EXC_I386_SGLSTP ? EXC_I386_SGL : EXC_I386_BPT;
        break;
    }
}

static const int kern_fault_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP};

/* Gives the fault Linux's default action: the signal again, undefined. */
static void kern_fault_default(int sig)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
}

/* Sends exception_raise for the calling thread to its exception port,
 * then its task's.  Returns the reply's code (KERN_SUCCESS resumes), or
 * KERN_FAILURE when there is no exception port at all (*NONE). */
static kern_return_t kern_raise(integer_t exc, integer_t code, rpc_long_integer_t subcode,
                                bool *none)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    ipc_lock();
    struct kern_thread *t = kern_thread_self();
    /* The exception ports, then the thread and the task as they stand
     * towards themselves (GNU Mach's ith_sself and itk_sself: whatever
     * thread_set_special_port and task_set_special_port put there). */
    enum { THREAD_EXC, TASK_EXC, THREAD, TASK, NPORTS };
    mach_port_name_t ports[NPORTS] = {
        [THREAD_EXC] = t != NULL ? t->exception_kname : MACH_PORT_NULL,
        [TASK_EXC] = kern_exception_port(),
        [THREAD] = t != NULL ? kern_thread_self_kname(t) : MACH_PORT_NULL,
        [TASK] = kern_task_self_kname(),
    };
    /* A reference of our own on each: a concurrent set_special_port
     * cannot take a name away during the RPC. */
    for (int i = 0; i < NPORTS; i++) {
        if (MACH_PORT_VALID(ports[i]) &&
            ipc_right_delta(kspace, ports[i], MACH_PORT_RIGHT_SEND, 1) != KERN_SUCCESS) {
            ports[i] = MACH_PORT_NULL;
        }
    }
    ipc_unlock();
    *none = !MACH_PORT_VALID(ports[THREAD_EXC]) && !MACH_PORT_VALID(ports[TASK_EXC]);
    kern_return_t kr = KERN_FAILURE;
    for (int i = THREAD_EXC; i <= TASK_EXC && kr != KERN_SUCCESS; i++) {
        if (MACH_PORT_VALID(ports[i]) && t != NULL) {
            kr = kern_exception_raise(ports[i], ports[THREAD], ports[TASK], exc, code,
                                      subcode);
        }
    }
    ipc_lock();
    for (int i = 0; i < NPORTS; i++) {
        if (MACH_PORT_VALID(ports[i])) {
            (void)ipc_right_dealloc(kspace, ports[i]);
        }
    }
    ipc_unlock();
    return kr;
}

static void kern_fault_handler(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    /* A thread started by thread_create may run with a thread pointer of
     * its own: find glibc's through its signal stack first. */
    unsigned long user_fs = kern_fs_enter();
    int saved_errno = errno;
    if (!kern_lock_free_at(uc)) {
        /* libmach itself faulted: no RPC can be made from here. */
        kern_fault_default(sig);
    } else {
        integer_t exc, code;
        rpc_long_integer_t subcode;
        kern_fault_to_exception(sig, si, uc, &exc, &code, &subcode);
        bool none;
        ucontext_t *outer = kern_fault_uc;
        kern_fault_uc = uc;
        kern_return_t kr = kern_raise(exc, code, subcode, &none);
        kern_fault_uc = outer;
        unsigned long set_fs;
        if (kern_fault_fs_take(&set_fs)) {
            user_fs = set_fs; /* the handler's new state has its own */
        }
        if (none) {
            kern_fault_default(sig);
        } else if (kr != KERN_SUCCESS) {
            /* No server would handle it: the task ends (GNU Mach's
             * exception_no_server). */
            kill(getpid(), SIGKILL);
        }
    }
    errno = saved_errno;
    kern_fs_leave(user_fs);
}

void kern_exc_init(void)
{
    struct sigaction sa = {.sa_sigaction = kern_fault_handler,
                           .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof kern_fault_signals / sizeof kern_fault_signals[0]; i++) {
        struct sigaction old;
        /* A handler the program installed before us stays. */
        if (sigaction(kern_fault_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            sigaction(kern_fault_signals[i], &sa, NULL);
        }
    }
}
