/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "kern_control.h"

#include <asm/prctl.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <linux/futex.h>
#include <mach/mig_errors.h>
#include <mach/thread_status.h>
#include <mach/x86_64/eflags.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "futex_lock.h"
#include "ipc_space.h"
#include "kern.h"
#include "kern_fpu.h"
#include "kern_thread.h"
#include "kern_trap_frame.h"
#include "linux.h"
#include "gnumach.server.h"
#include "kern_vm.h"
#include "mach.server.h"
#include "mach_port.server.h"

/* The control signal.  SA_RESTART: stopping a thread must not make the
 * system calls of its own code fail with EINTR (poll and epoll_wait do
 * anyway, as after a SIGSTOP). */
#define KERN_CONTROL_SIGNAL (SIGRTMAX - 2)
/* How often a controller waiting for a thread to stop signals it again
 * (a thread that entered a blocking wait inside libmach just after the
 * first signal would otherwise not notice). */
#define KERN_CONTROL_RESIGNAL_MS 10
/* How long thread_terminate_release waits for another task to answer each
 * of its calls there. */
#define KERN_RELEASE_CALL_MS 5000

/* GNU Mach's flags a user thread always has and never has (x86_64's
 * EFL_USER_SET and EFL_USER_CLEAR). */
#define KERN_EFL_USER_SET EFL_IF
#define KERN_EFL_USER_CLEAR (EFL_IOPL | EFL_NT | EFL_RF | EFL_VM)
/* Linux's flat user selectors on x86_64. */
#define KERN_USER_CS 0x33
#define KERN_USER_CS32 0x23
#define KERN_USER_SS 0x2b

/* The flags a user thread may have, as GNU Mach applies them. */
static uint64_t kern_user_rfl(uint64_t rfl)
{
    return (rfl & ~(uint64_t)KERN_EFL_USER_CLEAR) | KERN_EFL_USER_SET;
}

/* The calling thread's record while a stop or an abort is pending. */
__thread struct kern_thread *kern_control_self;
/* Traps entered and not left (mach_msg). */
__thread int kern_trap_depth;

/* The user state that thread_set_state gave the calling thread while it
 * was stopped inside its trap: entered when the trap returns, as GNU
 * Mach's trap returns to the state set meanwhile (kern_trap_exit_slow
 * signals the thread, whose handler loads it). */
static __thread struct {
    bool regs_set, fs_set;
    bool entering; /* kern_trap_exit_slow's own signal is on its way */
    greg_t gregs[NGREG]; /* of them, kern_user_regs and REG_EFL */
    unsigned long fs;
} kern_trap_resume;

/* The registers a user state is made of (the rest of a ucontext's
 * gregs, selectors and fault information, is the signal frame's own). */
static const int kern_user_regs[] = {
    REG_RAX, REG_RBX, REG_RCX, REG_RDX, REG_RSI, REG_RDI, REG_RBP, REG_RSP, REG_R8,
    REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15, REG_RIP, REG_EFL,
};

/* [start, end) of libmach's code (kern_control_init): a thread is
 * inside its trap only while it runs there, not in a signal handler of
 * its program that runs on top of the trap. */
static uintptr_t kern_text_start, kern_text_end;

static int kern_find_text(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t here = (uintptr_t)arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && start <= here &&
            here - start < ph->p_memsz) {
            kern_text_start = start;
            kern_text_end = start + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

/* Copies the user registers FROM into TO; a REG_EFL of 0 (which no
 * user state has: its bit 1 is always set) leaves TO's flags alone. */
static void kern_user_regs_copy(greg_t *to, const greg_t *from)
{
    for (size_t i = 0; i < sizeof kern_user_regs / sizeof *kern_user_regs; i++) {
        int r = kern_user_regs[i];
        if (r != REG_EFL || from[r] != 0) {
            to[r] = from[r];
        }
    }
}

static bool kern_in_libmach(const ucontext_t *uc)
{
    uintptr_t rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    return rip >= kern_text_start && rip < kern_text_end;
}

/* How far below a wait's mark its system call's stack pointer may be:
 * the libc wrapper's arguments and return address.  A handler's signal
 * frame alone is larger. */
#define KERN_WAIT_SLACK 256

bool kern_lock_free_at(const ucontext_t *uc)
{
    if (futex_locks_held == 0) {
        return true;
    }
    struct futex_wait_mark wait = futex_wait_mark;
    uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    bool at_the_wait = sp <= wait.sp && sp + KERN_WAIT_SLACK >= wait.sp;
    return wait.sp != 0 && wait.held == futex_locks_held && !at_the_wait;
}

static pid_t kern_gettid(void)
{
    return (pid_t)linux_raw_syscall2(SYS_gettid, 0, 0);
}

/* Raises the control signal on the calling thread (its record T), from
 * libmach's own code: delivered before the call returns, unless the
 * program blocks it. */
static void kern_signal_self(struct kern_thread *t)
{
    atomic_store(&t->sig_inflight, 1);
    linux_raw_syscall3(SYS_tgkill, getpid(), t->tid, KERN_CONTROL_SIGNAL);
}

static unsigned long kern_get_base(int code)
{
    unsigned long value = 0;
    linux_raw_syscall2(SYS_arch_prctl, code, (long)&value);
    return value;
}

static void kern_set_base(int code, unsigned long value)
{
    linux_raw_syscall2(SYS_arch_prctl, code, (long)value);
}

static __attribute__((noreturn)) void kern_thread_die(struct kern_thread *t);

unsigned long kern_fs_enter(void)
{
    unsigned long fs = kern_get_base(ARCH_GET_FS);
    struct kern_thread *t = kern_altstack_owner();
    if (t != NULL && t->kernel_fs != 0 && fs != t->kernel_fs) {
        kern_set_base(ARCH_SET_FS, t->kernel_fs);
    }
    return fs;
}

void kern_fs_leave(unsigned long fs)
{
    if (kern_get_base(ARCH_GET_FS) != fs) {
        kern_set_base(ARCH_SET_FS, fs);
    }
}

/* Stops the calling thread (its record T) until its suspend count is 0,
 * exposing UC and USER_FS, its thread pointer.  Runs in the control
 * signal's handler; ends the thread if thread_terminate asks. */
static void kern_park(struct kern_thread *t, ucontext_t *uc, unsigned long user_fs)
{
    t->fs_base = user_fs;
    t->gs_base = kern_get_base(ARCH_GET_GS);
    t->fsgs_dirty = false;
    t->uc = uc;
    for (;;) {
        atomic_store(&t->parked, 1);
        linux_futex_wake(&t->parked, INT_MAX, false);
        /* Ended while its handler runs on top of a wait of libmach's, the
         * thread goes on instead: it ends back in the wait, which then
         * gives back the locks it holds. */
        bool ends_below = false;
        for (;;) {
            unsigned seq = atomic_load(&t->resume_seq);
            if (atomic_load(&t->terminate_req)) {
                ends_below = futex_locks_held > 0;
                if (ends_below) {
                    break;
                }
                t->uc = NULL;
                atomic_store(&t->parked, 0);
                kern_thread_die(t);
            }
            if (!atomic_load(&t->park_req)) {
                break;
            }
            linux_futex_wait(&t->resume_seq, seq, -1, false);
        }
        /* A controller that saw "parked" just before it was cleared may
         * have asked again: look once more after clearing it (the context
         * stays valid until then). */
        atomic_store(&t->parked, 0);
        if (ends_below || (!atomic_load(&t->park_req) && !atomic_load(&t->terminate_req))) {
            break;
        }
    }
    linux_futex_wake(&t->parked, INT_MAX, false);
    if (t->fsgs_dirty) {
        kern_set_base(ARCH_SET_GS, t->gs_base);
    }
    t->uc = NULL;
}

/* A blocking system call that the kernel rewound to restart it after the
 * handler (RIP on the `syscall` instruction, RAX its number) is made to
 * return EINTR instead, so that libmach's loop around it can reach a
 * clean point. */
static void kern_force_eintr(ucontext_t *uc)
{
    greg_t *g = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)g[REG_RIP];
    long nr = (long)g[REG_RAX];
    /* Only waits: a wake skipped would be lost (the thread may also be
     * caught just before a `syscall` it has not made yet). */
    int futex_op = (int)(g[REG_RSI] & FUTEX_CMD_MASK);
    bool wait = nr == SYS_recvmsg || nr == SYS_epoll_wait || nr == SYS_poll ||
                nr == 449 /* futex_waitv */ ||
                (nr == SYS_futex && (futex_op == FUTEX_WAIT || futex_op == FUTEX_WAIT_BITSET));
    if (ip[0] == 0x0f && ip[1] == 0x05 && wait) {
        g[REG_RAX] = -EINTR;
        g[REG_RIP] += 2;
    }
}

/* The range thread_terminate_release asked the calling thread, ending
 * itself, to release once it has left it (size 0: none). */
static __thread struct {
    vm_address_t address;
    vm_size_t size;
} kern_exit_release;

void kern_exit_release_run(void)
{
    vm_address_t address = kern_exit_release.address;
    vm_size_t size = kern_exit_release.size;
    kern_exit_release.address = kern_exit_release.size = 0;
    if (size != 0) {
        kern_vm_release(address, size);
    }
}

/* Ends the calling thread (thread_terminate): back into the start routine
 * of a thread made by thread_create, else through pthread_exit; glibc
 * frees it either way. */
static __attribute__((noreturn)) void kern_thread_die(struct kern_thread *t)
{
    /* Nothing of T is touched once its terminator may go on (and free
     * it): copy what is needed first. */
    sigjmp_buf back;
    bool has_back = t->has_exit_jmp;
    unsigned long glibc_fs = t->kernel_fs;
    /* (The range was noted under the thread pointer the call ran with.) */
    vm_address_t release_address = kern_exit_release.address;
    vm_size_t release_size = kern_exit_release.size;
    kern_exit_release.address = kern_exit_release.size = 0;
    if (has_back) {
        memcpy(back, t->exit_jmp, sizeof back);
    } else if (release_size != 0) {
        /* A thread of glibc's making runs on glibc's stack, which glibc
         * frees: a range holding the stack it stands on stays. */
        uintptr_t here = (uintptr_t)__builtin_frame_address(0);
        if (here - release_address >= release_size) {
            kern_vm_release(release_address, release_size);
        }
    }
    if (atomic_load(&t->reaped)) {
        kern_thread_unbind_self();
    }
    if (t->holds_self_ref) {
        /* Its terminator (or its exit destructor) still holds it. */
        ipc_lock();
        t->holds_self_ref = false;
        kern_thread_unref(t);
        ipc_unlock();
    }
    kern_control_self = NULL;
    atomic_store(&t->ended, 1);
    linux_futex_wake(&t->ended, INT_MAX, false);
    if (has_back) {
        /* (Ended on its way out of a call, the thread may still run with
         * a thread pointer of its own: the start routine needs glibc's.) */
        if (glibc_fs != 0 && kern_get_base(ARCH_GET_FS) != glibc_fs) {
            kern_set_base(ARCH_SET_FS, glibc_fs);
        }
        kern_exit_release.address = release_address;
        kern_exit_release.size = release_size;
        siglongjmp(back, 1);
    }
    /* Any other thread leaves through glibc, so that it frees the thread
     * (its stack and thread-specific data are reused by the next thread:
     * a bare exit would hand them over stale).  glibc unwinds from here
     * and, where the interrupted code has no unwind tables, jumps straight
     * to the thread's end. */
    pthread_exit(NULL);
}

/* The thread pointer thread_set_state gave the calling thread while it
 * waited for its exception's reply. */
static __thread bool kern_fault_fs_set;
static __thread unsigned long kern_fault_fs;

bool kern_fault_fs_take(unsigned long *fs)
{
    if (!kern_fault_fs_set) {
        return false;
    }
    kern_fault_fs_set = false;
    *fs = kern_fault_fs;
    return true;
}

/* The general registers, RIP and RSP of the calling thread's trap frame
 * into G (the rest left alone): the frame's fields are the first of
 * kern_user_regs, in order. */
static void kern_trap_frame_regs(greg_t *g)
{
    _Static_assert(sizeof kern_trap_frame == 17 * sizeof(uint64_t) &&
                       sizeof kern_user_regs / sizeof *kern_user_regs == 18,
                   "the frame is kern_user_regs but REG_EFL");
    const uint64_t *f = (const uint64_t *)&kern_trap_frame;
    for (size_t i = 0; i < sizeof kern_trap_frame / sizeof *f; i++) {
        g[kern_user_regs[i]] = (greg_t)f[i];
    }
}

/* Parks the calling thread (record T), stopped inside its trap, showing
 * the registers it called mach_msg with (kern_trap_frame.h), or the
 * state set since, and USER_FS, its thread pointer.  A state changed
 * while it is parked is kept for the trap's return. */
static void kern_park_in_trap(struct kern_thread *t, ucontext_t *uc, unsigned long user_fs)
{
    ucontext_t view = *uc; /* (its FPU state is UC's own) */
    greg_t *g = view.uc_mcontext.gregs;
    if (kern_trap_resume.regs_set) {
        kern_user_regs_copy(g, kern_trap_resume.gregs);
    } else {
        kern_trap_frame_regs(g);
    }
    greg_t shown[NGREG];
    memcpy(shown, g, sizeof shown);
    kern_park(t, &view, kern_trap_resume.fs_set ? kern_trap_resume.fs : user_fs);
    if (memcmp(shown, g, sizeof shown) != 0) {
        memcpy(kern_trap_resume.gregs, g, sizeof kern_trap_resume.gregs);
        kern_trap_resume.regs_set = true;
    }
    if (t->fsgs_dirty) {
        kern_trap_resume.fs = t->fs_base;
        kern_trap_resume.fs_set = true;
    }
    if (kern_trap_resume.regs_set || kern_trap_resume.fs_set) {
        kern_control_self = t; /* the trap's return takes the slow way */
    }
}

/* Enters, through the handler's UC and *USER_FS, a state set while the
 * thread was inside the trap that has just returned; the rest of the
 * trap's exit is skipped, so it is done here. */
static void kern_trap_resume_enter(struct kern_thread *t, ucontext_t *uc,
                                   unsigned long *user_fs)
{
    if (kern_trap_resume.regs_set) {
        kern_user_regs_copy(uc->uc_mcontext.gregs, kern_trap_resume.gregs);
    }
    if (kern_trap_resume.fs_set) {
        *user_fs = kern_trap_resume.fs;
    }
    kern_trap_resume.regs_set = kern_trap_resume.fs_set = kern_trap_resume.entering = false;
    atomic_store(&t->abort_req, 0);
    kern_control_self = NULL;
}

static void kern_control_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ucv;
    /* Its record by its own thread id, never from the signal's value: any
     * process of the same user can queue this signal to us. */
    struct kern_thread *t = kern_tid_find(kern_gettid());
    if (t == NULL) {
        return;
    }
    atomic_fetch_add(&t->handler_seq, 1);
    atomic_store(&t->sig_inflight, 0);
    /* The thread may run with a thread pointer of its own (a state set
     * by thread_set_state): use glibc's while in here. */
    unsigned long user_fs = kern_get_base(ARCH_GET_FS);
    if (t->kernel_fs == 0) {
        t->kernel_fs = user_fs;
    } else if (user_fs != t->kernel_fs) {
        kern_set_base(ARCH_SET_FS, t->kernel_fs);
    }
    int saved_errno = errno;
    if (kern_trap_resume.entering) {
        /* (A controller's signal between the trap's end and this one
         * finds libmach's state, as at any point of libmach.) */
        kern_trap_resume_enter(t, uc, &user_fs);
    }
    bool abort = atomic_load(&t->abort_req) || atomic_load(&t->terminate_req);
    bool park = atomic_load(&t->park_req);
    if (!kern_lock_free_at(uc) || (abort && kern_trap_depth > 0) ||
        (atomic_load(&t->terminate_req) && futex_locks_held > 0)) {
        /* Inside libmach (or on top of a wait, to end: the wait gives
         * back its locks first): end its wait; it stops, returns
         * interrupted or ends at its next clean point. */
        kern_control_self = t;
        futex_park_pending = park;
        kern_force_eintr(uc);
    } else if (atomic_load(&t->terminate_req)) {
        kern_thread_die(t);
    } else if (park) {
        if (kern_fault_uc != NULL) {
            /* A thread waiting for its exception's reply shows its fault;
             * a thread pointer set meanwhile is loaded with the fault's
             * state (kern_fault_fs_take), not in here. */
            kern_park(t, kern_fault_uc, kern_fault_fs_set ? kern_fault_fs : user_fs);
            if (t->fsgs_dirty) {
                kern_fault_fs = t->fs_base;
                kern_fault_fs_set = true;
            }
        } else if (kern_trap_depth > 0 && kern_in_libmach(uc)) {
            kern_park_in_trap(t, uc, user_fs);
        } else {
            kern_park(t, uc, user_fs);
            if (t->fsgs_dirty) {
                user_fs = t->fs_base;
            }
        }
        /* thread_abort stops the thread first, then asks: inside a trap,
         * the wait it was stopped in ends now. */
        if (atomic_load(&t->abort_req)) {
            if (kern_trap_depth > 0) {
                kern_control_self = t;
                kern_force_eintr(uc);
            } else {
                atomic_store(&t->abort_req, 0);
            }
        }
    } else if (abort) {
        atomic_store(&t->abort_req, 0); /* in user code: nothing to end */
    }
    errno = saved_errno;
    if (user_fs != t->kernel_fs) {
        kern_set_base(ARCH_SET_FS, user_fs);
    }
    atomic_fetch_add(&t->handler_seq, 1);
}

/* The hook of the last lock released with a stop pending. */
static void kern_clean_point(void)
{
    futex_park_pending = false;
    struct kern_thread *t = kern_control_self;
    if (t != NULL && atomic_load(&t->park_req)) {
        /* Stop through the handler, with a context of its own (inside
         * libmach). */
        kern_signal_self(t);
    }
}

bool kern_park_wanted(void)
{
    return futex_park_pending;
}

bool kern_abort_take(void)
{
    struct kern_thread *t = kern_control_self;
    return t != NULL &&
           (atomic_exchange(&t->abort_req, 0) != 0 || atomic_load(&t->terminate_req));
}

void kern_trap_exit_slow(long ret)
{
    struct kern_thread *t = kern_control_self;
    if (atomic_load(&t->terminate_req)) {
        kern_thread_die(t);
    }
    if (kern_trap_resume.regs_set || kern_trap_resume.fs_set) {
        /* A state was set meanwhile (or only a thread pointer: then the
         * call's own return, from its frame): the handler enters it with
         * the trap's return code in RAX, as GNU Mach's trap return writes
         * it, and ends the exit; the call never returns. */
        if (!kern_trap_resume.regs_set) {
            kern_trap_frame_regs(kern_trap_resume.gregs);
            kern_trap_resume.gregs[REG_EFL] = 0; /* the signal frame's flags */
            kern_trap_resume.regs_set = true;
        }
        kern_trap_resume.gregs[REG_RAX] = (greg_t)ret;
        kern_trap_resume.entering = true;
        kern_signal_self(t);
        /* Still here: the program blocks the control signal, and the
         * state cannot be entered; it is dropped, not entered later at
         * some other point. */
        kern_trap_resume.regs_set = kern_trap_resume.fs_set = kern_trap_resume.entering = false;
    }
    atomic_store(&t->abort_req, 0); /* the trap is over */
    kern_control_self = NULL;
}

void kern_control_init(void)
{
    (void)dl_iterate_phdr(kern_find_text, (void *)(uintptr_t)kern_control_init);
    futex_clean_point_hook = kern_clean_point;
    struct sigaction sa = {.sa_sigaction = kern_control_handler,
                           .sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK};
    /* Every other signal waits while the handler runs: a thread parked
     * in it runs no handler of its program, which would run while
     * controllers take the thread for stopped. */
    sigfillset(&sa.sa_mask);
    sigaction(KERN_CONTROL_SIGNAL, &sa, NULL);
}

/* Signals T's thread, unless a signal is already on its way (so that a
 * thread blocking the signal does not pile them up); returns false when
 * the thread is gone. */
static bool kern_control_signal(struct kern_thread *t)
{
    if (atomic_exchange(&t->sig_inflight, 1)) {
        return syscall(SYS_tgkill, getpid(), t->tid, 0) == 0;
    }
    return syscall(SYS_tgkill, getpid(), t->tid, KERN_CONTROL_SIGNAL) == 0;
}

/* Whether Linux thread TID's signal mask blocks the control signal, which
 * waits pending: its status in /proc says. */
static bool kern_signal_blocked(pid_t tid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "re");
    unsigned long long pending = 0, blocked = 0;
    int found = 0;
    while (f != NULL && found < 2 && fgets(line, sizeof line, f) != NULL) {
        found += sscanf(line, "SigPnd: %llx", &pending) == 1;
        found += sscanf(line, "SigBlk: %llx", &blocked) == 1;
    }
    if (f != NULL) {
        fclose(f);
    }
    /* Blocked and still pending: a signal being handled is no longer. */
    unsigned long long bit = 1ull << (KERN_CONTROL_SIGNAL - 1);
    return found == 2 && (blocked & bit) && (pending & bit);
}

/* Whether T's thread blocks the control signal of its own accord (it would
 * never stop): its mask read while it was outside the control handler,
 * which blocks every signal as it runs. */
static bool kern_blocks_control(struct kern_thread *t)
{
    unsigned seq = atomic_load(&t->handler_seq);
    return seq % 2 == 0 && kern_signal_blocked(t->tid) && atomic_load(&t->handler_seq) == seq;
}

/* Waits while T's Linux thread is being made (thread_resume of a thread
 * from thread_create).  Expects [G] not held. */
static void kern_wait_running(struct kern_thread *t)
{
    for (;;) {
        ipc_lock();
        bool starting = t->starting;
        ipc_unlock();
        if (!starting) {
            return;
        }
        linux_futex_wait(&t->running, 0, KERN_CONTROL_RESIGNAL_MS, false);
    }
}

enum kern_parked { KERN_PARKED, KERN_GONE, KERN_BLOCKED };

/* Waits until T is parked (T referenced, held, [G] not held).  Returns
 * KERN_GONE when its thread exited, KERN_BLOCKED when it blocks the
 * control signal (it stops once it unblocks it). */
static enum kern_parked kern_wait_parked(struct kern_thread *t)
{
    kern_wait_running(t);
    ipc_lock();
    bool unstarted = t->unstarted; /* holds by its count alone */
    ipc_unlock();
    for (int waited = 0; !unstarted && !atomic_load(&t->parked);
         waited += KERN_CONTROL_RESIGNAL_MS) {
        if (!kern_control_signal(t)) {
            return KERN_GONE;
        }
        if (waited >= 100 && kern_blocks_control(t)) {
            return KERN_BLOCKED;
        }
        linux_futex_wait(&t->parked, 0, KERN_CONTROL_RESIGNAL_MS, false);
    }
    return KERN_PARKED;
}

/* Looks up THREAD and references it; *SELF says whether it is the
 * calling thread.  Returns NULL for a name that is no thread of ours. */
static struct kern_thread *kern_control_get(mach_port_t thread, bool *self)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    if (t != NULL) {
        kern_thread_ref(t);
        *self = t->tid == kern_gettid();
    }
    ipc_unlock();
    return t;
}

static void kern_control_put(struct kern_thread *t)
{
    ipc_lock();
    kern_thread_unref(t);
    ipc_unlock();
}

/* Adds one to T's suspend count; the first asks it to stop.  Expects [G]. */
static void kern_hold(struct kern_thread *t)
{
    if (t->suspend_count++ == 0) {
        atomic_store(&t->park_req, 1);
    }
}

/* Takes one off; the last lets it go.  Expects [G]. */
static void kern_release(struct kern_thread *t)
{
    if (--t->suspend_count == 0) {
        atomic_store(&t->park_req, 0);
        atomic_fetch_add(&t->resume_seq, 1);
        linux_futex_wake(&t->resume_seq, INT_MAX, false);
    }
}

/* Takes one off T's count; returns whether that lets a thread made by
 * thread_create start, which the caller then does (kern_start_released)
 * once it let go of [G].  Started once: others wait for it
 * (kern_wait_running), and the new thread holds the record until it ends.
 * Expects [G]. */
static bool kern_release_to_start(struct kern_thread *t)
{
    kern_release(t);
    if (!t->unstarted || t->suspend_count != 0 || t->starting) {
        return false;
    }
    t->starting = true;
    t->holds_self_ref = true;
    kern_thread_ref(t);
    return true;
}

/* Starts T as kern_release_to_start said.  Expects [G] not held. */
static kern_return_t kern_start_released(struct kern_thread *t)
{
    kern_return_t kr = kern_thread_start(t);
    if (kr != KERN_SUCCESS) {
        ipc_lock();
        t->starting = false;
        t->holds_self_ref = false;
        kern_thread_unref(t);
        kern_hold(t); /* not running after all */
        ipc_unlock();
    }
    return kr;
}

kern_return_t kern_thread_suspend(mach_port_t thread)
{
    bool self;
    struct kern_thread *t = kern_control_get(thread, &self);
    if (t == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    ipc_lock();
    kern_hold(t);
    ipc_unlock();
    /* GNU Mach waits for another thread to stop; the calling thread
     * stops on its way out of this call (its locks released). */
    kern_return_t kr = KERN_SUCCESS;
    if (self) {
        kern_control_self = t;
        futex_park_pending = true;
    } else if (kern_wait_parked(t) == KERN_GONE) {
        kr = KERN_INVALID_ARGUMENT; /* it exited */
    }
    /* (A thread that blocks the control signal stops when it unblocks
     * it: the count is taken.) */
    kern_control_put(t);
    return kr;
}

kern_return_t kern_thread_resume(mach_port_t thread)
{
    bool self;
    struct kern_thread *t = kern_control_get(thread, &self);
    if (t == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    kern_wait_running(t);
    ipc_lock();
    kern_return_t kr = KERN_FAILURE; /* not suspended */
    bool start = false;
    if (t->suspend_count > 0) {
        start = kern_release_to_start(t);
        kr = KERN_SUCCESS;
    }
    ipc_unlock();
    if (start) {
        kr = kern_start_released(t);
    }
    kern_control_put(t);
    return kr;
}

kern_return_t kern_thread_terminate(mach_port_t thread)
{
    bool self;
    struct kern_thread *t = kern_control_get(thread, &self);
    if (t == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    kern_wait_running(t);
    ipc_lock();
    if (t->unstarted) {
        kern_thread_free(t); /* it never ran: only its port goes */
        kern_thread_unref(t);
        ipc_unlock();
        return KERN_SUCCESS;
    }
    ipc_unlock();
    if (self) {
        /* Ends on its way out of this call. */
        atomic_store(&t->terminate_req, 1);
        kern_control_self = t;
        kern_control_put(t);
        return KERN_SUCCESS;
    }
    atomic_store(&t->reaped, 1);
    atomic_store(&t->terminate_req, 1);
    /* Wake it if stopped; signal it until it is gone. */
    atomic_fetch_add(&t->resume_seq, 1);
    linux_futex_wake(&t->resume_seq, INT_MAX, false);
    while (!atomic_load(&t->ended) && kern_control_signal(t)) {
        linux_futex_wait(&t->ended, 0, KERN_CONTROL_RESIGNAL_MS, false);
    }
    /* It runs no user code any more; wait the few microseconds until
     * Linux has it gone too, so that task_threads never lists it again. */
    linux_thread_wait_gone(t->tid);
    /* Another task asking hears of it before the thread port it sent
     * the request to goes (it would take that for the server's death). */
    const mach_msg_header_t *request = kern_current_request();
    bool replied = false;
    if (kern_serving_other_task() && request != NULL) {
        kern_reply((mach_port_name_t)request->msgh_remote_port, request->msgh_id,
                   KERN_SUCCESS);
        replied = true;
    }
    ipc_lock();
    if (!t->gone) {
        kern_thread_free(t); /* its destructor leaves that to us */
    }
    kern_thread_unref(t);
    ipc_unlock();
    return replied ? MIG_NO_REPLY : KERN_SUCCESS;
}

/* thread_terminate_release's releases in TASK, another task's port (a
 * kernel-space send right, kept), through that task: the name of the
 * thread, then the reply port, then the range, as GNU Mach.  Returns
 * false, having done nothing, when TASK does not answer the first call as
 * a task does (no task's port, or one that does not answer in time).
 * Expects no lock; blocks. */
static bool kern_release_in_task(mach_port_t task, mach_port_name_t thread_name,
                                 mach_port_name_t reply_port, vm_address_t address,
                                 vm_size_t size)
{
    /* (GNU Mach ignores what each call returns.) */
    kern_return_t kr;
    if (!kern_task_call_port(task, false, thread_name, KERN_RELEASE_CALL_MS, &kr)) {
        return false;
    }
    if (reply_port != MACH_PORT_NULL) {
        (void)kern_task_call_port(task, true, reply_port, KERN_RELEASE_CALL_MS, &kr);
    }
    if (address != 0 || size != 0) {
        (void)kern_task_call_vm_deallocate(task, address, size, KERN_RELEASE_CALL_MS, &kr);
    }
    return true;
}

kern_return_t kern_thread_terminate_release(mach_port_t thread, mach_port_t task,
                                            mach_port_name_t thread_name,
                                            mach_port_name_t reply_port, vm_address_t address,
                                            vm_size_t size)
{
    bool self;
    struct kern_thread *t = kern_control_get(thread, &self);
    if (t == NULL || !MACH_PORT_VALID(task)) {
        if (t != NULL) {
            kern_control_put(t);
        }
        return KERN_INVALID_ARGUMENT; /* as GNU Mach for a null task or thread */
    }
    kern_control_put(t);
    ipc_lock();
    bool ours = kern_is_task(task);
    ipc_unlock();
    if (!ours) {
        /* The names and the range are another task's, which answers for
         * them: not in the service thread. */
        if (kern_serving_other_task() && kern_serve_elsewhere()) {
            return MIG_NO_REPLY;
        }
        if (!kern_release_in_task(task, thread_name, reply_port, address, size)) {
            return KERN_INVALID_ARGUMENT; /* GNU Mach's code for no task */
        }
        kern_release_right(task); /* the request's */
        (void)kern_thread_terminate(thread);
        return KERN_SUCCESS;
    }
    (void)kern_mach_port_deallocate(task, thread_name);
    if (reply_port != MACH_PORT_NULL) {
        (void)kern_mach_port_destroy(task, reply_port);
    }
    kern_release_right(task); /* the request's */
    if (self) {
        /* Its stack, most likely: released once the thread has left it. */
        kern_exit_release.address = address;
        kern_exit_release.size = size;
        (void)kern_thread_terminate(thread);
    } else if (kern_thread_terminate(thread) != KERN_INVALID_ARGUMENT) {
        /* Another thread ends first, then its stack goes: GNU Mach's
         * order would pull the stack from under a running thread. */
        kern_vm_release(address, size);
    }
    /* (A simpleroutine: nobody hears the code, and what the request
     * carried is used, not to be destroyed again.) */
    return KERN_SUCCESS;
}

kern_return_t kern_thread_abort(mach_port_t thread)
{
    bool self;
    struct kern_thread *t = kern_control_get(thread, &self);
    if (t == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    kern_return_t kr = KERN_SUCCESS;
    if (self) {
        kr = KERN_INVALID_ARGUMENT; /* as GNU Mach */
    } else {
        /* As GNU Mach: stop it, mark its trap aborted, let it go, so that
         * an abort between a suspend and a resume is not lost. */
        ipc_lock();
        kern_hold(t);
        ipc_unlock();
        enum kern_parked parked = kern_wait_parked(t);
        if (parked != KERN_GONE) {
            atomic_store(&t->abort_req, 1);
        }
        ipc_lock();
        kern_release(t);
        ipc_unlock();
    }
    kern_control_put(t);
    return kr;
}

/* Stops T for a state operation: holds it (a temporary hold when it was
 * running) and waits.  Returns false when it exited or blocks the
 * control signal (released). */
static bool kern_state_begin(struct kern_thread *t)
{
    ipc_lock();
    kern_hold(t);
    ipc_unlock();
    if (kern_wait_parked(t) == KERN_PARKED) {
        return true;
    }
    ipc_lock();
    kern_release(t);
    ipc_unlock();
    return false;
}

static void kern_state_end(struct kern_thread *t)
{
    ipc_lock();
    kern_release(t);
    ipc_unlock();
}

static void kern_get_regs(const ucontext_t *uc, struct i386_thread_state *s)
{
    const greg_t *g = uc->uc_mcontext.gregs;
    /* Field by field over zeros: the padding after cs and ss carries
     * nothing of ours out. */
    memset(s, 0, sizeof *s);
    s->r8 = (uint64_t)g[REG_R8];
    s->r9 = (uint64_t)g[REG_R9];
    s->r10 = (uint64_t)g[REG_R10];
    s->r11 = (uint64_t)g[REG_R11];
    s->r12 = (uint64_t)g[REG_R12];
    s->r13 = (uint64_t)g[REG_R13];
    s->r14 = (uint64_t)g[REG_R14];
    s->r15 = (uint64_t)g[REG_R15];
    s->rdi = (uint64_t)g[REG_RDI];
    s->rsi = (uint64_t)g[REG_RSI];
    s->rbp = (uint64_t)g[REG_RBP];
    s->rsp = 0; /* GNU Mach's x86_64 keeps the stack pointer in ursp */
    s->rbx = (uint64_t)g[REG_RBX];
    s->rdx = (uint64_t)g[REG_RDX];
    s->rcx = (uint64_t)g[REG_RCX];
    s->rax = (uint64_t)g[REG_RAX];
    s->rip = (uint64_t)g[REG_RIP];
    s->cs = KERN_USER_CS;
    s->rfl = (uint64_t)g[REG_EFL];
    s->ursp = (uint64_t)g[REG_RSP];
    s->ss = KERN_USER_SS;
}

void kern_state_to_ucontext(const struct i386_thread_state *s, ucontext_t *uc)
{
    greg_t *g = uc->uc_mcontext.gregs;
    g[REG_R8] = (greg_t)s->r8;
    g[REG_R9] = (greg_t)s->r9;
    g[REG_R10] = (greg_t)s->r10;
    g[REG_R11] = (greg_t)s->r11;
    g[REG_R12] = (greg_t)s->r12;
    g[REG_R13] = (greg_t)s->r13;
    g[REG_R14] = (greg_t)s->r14;
    g[REG_R15] = (greg_t)s->r15;
    g[REG_RDI] = (greg_t)s->rdi;
    g[REG_RSI] = (greg_t)s->rsi;
    g[REG_RBP] = (greg_t)s->rbp;
    g[REG_RBX] = (greg_t)s->rbx;
    g[REG_RDX] = (greg_t)s->rdx;
    g[REG_RCX] = (greg_t)s->rcx;
    g[REG_RAX] = (greg_t)s->rax;
    g[REG_RIP] = (greg_t)s->rip;
    g[REG_RSP] = (greg_t)s->ursp;
    g[REG_EFL] = (greg_t)kern_user_rfl(s->rfl);
}

/* The size of the XSAVE area of a signal frame (its software-reserved
 * bytes say), or 0 when the frame has none. */
static size_t kern_xstate_size(const ucontext_t *uc)
{
    const uint8_t *fp = (const uint8_t *)uc->uc_mcontext.fpregs;
    if (fp == NULL) {
        return 0;
    }
    /* struct _fpx_sw_bytes at 464: magic1, extended_size, xfeatures (8
     * bytes), xstate_size. */
    uint32_t magic, size;
    memcpy(&magic, fp + 464, 4);
    memcpy(&size, fp + 464 + 16, 4);
    return magic == 0x46505853u ? size : 512;
}

#define KERN_FP_XSAVE 2 /* GNU Mach's fp_save_kind FP_XSAVE: the standard format */

/* The state of a thread made by thread_create that does not run yet:
 * kept in its record.  Expect [G]. */
static kern_return_t kern_unstarted_get(struct kern_thread *t, int flavor,
                                        thread_state_t state, mach_msg_type_number_t *count)
{
    switch (flavor) {
    case i386_THREAD_STATE:
    case i386_REGS_SEGS_STATE:
        if (*count < i386_THREAD_STATE_COUNT) {
            return KERN_INVALID_ARGUMENT;
        }
        memcpy(state, &t->start_state, sizeof t->start_state);
        ((struct i386_thread_state *)state)->rsp = 0;
        *count = i386_THREAD_STATE_COUNT;
        return KERN_SUCCESS;
    case i386_FSGS_BASE_STATE:
        if (*count < i386_FSGS_BASE_STATE_COUNT) {
            return KERN_INVALID_ARGUMENT;
        }
        *(struct i386_fsgs_base_state *)state =
            (struct i386_fsgs_base_state){.fs_base = t->fs_base, .gs_base = t->gs_base};
        *count = i386_FSGS_BASE_STATE_COUNT;
        return KERN_SUCCESS;
    default:
        return KERN_INVALID_ARGUMENT;
    }
}

static kern_return_t kern_unstarted_set(struct kern_thread *t, int flavor,
                                        const natural_t *state, mach_msg_type_number_t count)
{
    switch (flavor) {
    case i386_THREAD_STATE:
    case i386_REGS_SEGS_STATE: {
        const struct i386_thread_state *s = (const void *)state;
        if (count < i386_THREAD_STATE_COUNT) {
            return KERN_INVALID_ARGUMENT;
        }
        t->start_state = *s;
        t->start_state.cs = KERN_USER_CS;
        t->start_state.ss = KERN_USER_SS;
        t->start_state.rfl = kern_user_rfl(s->rfl);
        return KERN_SUCCESS;
    }
    case i386_FSGS_BASE_STATE: {
        const struct i386_fsgs_base_state *fsgs = (const void *)state;
        if (count < i386_FSGS_BASE_STATE_COUNT) {
            return KERN_INVALID_ARGUMENT;
        }
        t->fs_base = fsgs->fs_base;
        t->gs_base = fsgs->gs_base & ~(1ul << 63);
        return KERN_SUCCESS;
    }
    default:
        return KERN_INVALID_ARGUMENT;
    }
}
#define KERN_FP_387X 5  /* fpkind FP_387X: an FPU with XSAVE */

/* The referenced record of THREAD for a state call (KR KERN_SUCCESS so
 * far), or NULL with the call's code in *KR: no such thread, or a thread
 * made by thread_create that has not started, whose state (kept in its
 * record) was read or written (SET) here already. */
static struct kern_thread *kern_state_target(mach_port_t thread, int flavor,
                                             natural_t *state, mach_msg_type_number_t *count,
                                             bool set, bool *self, kern_return_t *kr)
{
    struct kern_thread *t = kern_control_get(thread, self);
    if (t == NULL) {
        *kr = KERN_INVALID_ARGUMENT;
        return NULL;
    }
    *kr = KERN_SUCCESS;
    ipc_lock();
    bool unstarted = t->unstarted;
    if (unstarted) {
        *kr = set ? kern_unstarted_set(t, flavor, state, *count)
                  : kern_unstarted_get(t, flavor, state, count);
        kern_thread_unref(t);
    }
    ipc_unlock();
    return unstarted ? NULL : t;
}

kern_return_t kern_thread_get_state(mach_port_t thread, int flavor, thread_state_t state,
                                    mach_msg_type_number_t *count)
{
    if (flavor == THREAD_STATE_FLAVOR_LIST) {
        if (*count < 3) {
            return KERN_INVALID_ARGUMENT;
        }
        state[0] = i386_THREAD_STATE;
        state[1] = i386_FLOAT_STATE;
        state[2] = i386_ISA_PORT_MAP_STATE;
        *count = 3;
        return KERN_SUCCESS;
    }
    if (flavor == i386_DEBUG_STATE) {
        /* Linux gives hardware breakpoints only to ptrace and perf: none
         * are ever set, so they all read as 0 (on any thread, the calling
         * one included, as GNU Mach allows). */
        if (*count < i386_DEBUG_STATE_COUNT) {
            return KERN_INVALID_ARGUMENT;
        }
        ipc_lock();
        bool ok = kern_thread_lookup(thread) != NULL;
        ipc_unlock();
        if (!ok) {
            return KERN_INVALID_ARGUMENT;
        }
        memset(state, 0, sizeof(struct i386_debug_state));
        *count = i386_DEBUG_STATE_COUNT;
        return KERN_SUCCESS;
    }
    bool self;
    kern_return_t kr;
    struct kern_thread *t = kern_state_target(thread, flavor, state, count, false, &self, &kr);
    if (t == NULL) {
        return kr;
    }
    if (self) {
        kr = KERN_INVALID_ARGUMENT; /* GNU Mach: not on the current thread */
    } else if (!kern_state_begin(t)) {
        kr = KERN_INVALID_ARGUMENT;
    } else {
        switch (flavor) {
        case i386_THREAD_STATE:
        case i386_REGS_SEGS_STATE:
            if (*count < i386_THREAD_STATE_COUNT) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            kern_get_regs(t->uc, (struct i386_thread_state *)state);
            *count = i386_THREAD_STATE_COUNT;
            break;
        case i386_FSGS_BASE_STATE:
            if (*count < i386_FSGS_BASE_STATE_COUNT) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            *(struct i386_fsgs_base_state *)state =
                (struct i386_fsgs_base_state){.fs_base = t->fs_base, .gs_base = t->gs_base};
            *count = i386_FSGS_BASE_STATE_COUNT;
            break;
        case i386_ISA_PORT_MAP_STATE:
            if (*count < i386_ISA_PORT_MAP_STATE_COUNT) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            memset(state, 0xff, sizeof(struct i386_isa_port_map_state)); /* no I/O ports */
            *count = i386_ISA_PORT_MAP_STATE_COUNT;
            break;
        case i386_FLOAT_STATE:
            if (*count < i386_FLOAT_STATE_COUNT || kern_xstate_size(t->uc) == 0) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            kern_fpu_to_float_state((const uint8_t *)t->uc->uc_mcontext.fpregs,
                                    (struct i386_float_state *)state);
            *count = i386_FLOAT_STATE_COUNT;
            break;
        case i386_XFLOAT_STATE: {
            size_t size = kern_xstate_size(t->uc);
            size_t need = (sizeof(struct i386_xfloat_state) + size) / sizeof(natural_t);
            if (size == 0 || *count < need) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            struct i386_xfloat_state *x = (struct i386_xfloat_state *)state;
            x->fpkind = KERN_FP_387X;
            x->initialized = 1;
            x->exc_status = 0;
            x->fp_save_kind = KERN_FP_XSAVE;
            memcpy(x->hw_state, t->uc->uc_mcontext.fpregs, size);
            *count = (mach_msg_type_number_t)need;
            break;
        }
        default:
            kr = KERN_INVALID_ARGUMENT;
            break;
        }
        kern_state_end(t);
    }
    kern_control_put(t);
    return kr;
}

kern_return_t kern_thread_set_state(mach_port_t thread, int flavor, thread_state_t state,
                                    mach_msg_type_number_t count)
{
    if (flavor == i386_DEBUG_STATE) {
        /* Only a state with no breakpoint enabled (DR7's enable bits) can
         * be honoured: see thread_get_state. */
        ipc_lock();
        bool ok = kern_thread_lookup(thread) != NULL;
        ipc_unlock();
        const struct i386_debug_state *d = (const void *)state;
        return ok && count >= i386_DEBUG_STATE_COUNT && (d->dr[7] & 0xff) == 0
                   ? KERN_SUCCESS
                   : KERN_INVALID_ARGUMENT;
    }
    bool self;
    kern_return_t kr;
    struct kern_thread *t = kern_state_target(thread, flavor, state, &count, true, &self, &kr);
    if (t == NULL) {
        return kr;
    }
    if (self && flavor == i386_FSGS_BASE_STATE) {
        /* Allowed on oneself, as in GNU Mach (at the caller's risk: glibc
         * keeps its thread data at FS). */
        const struct i386_fsgs_base_state *fsgs = (const void *)state;
        if (count < i386_FSGS_BASE_STATE_COUNT) {
            kr = KERN_INVALID_ARGUMENT;
        } else {
            syscall(SYS_arch_prctl, ARCH_SET_FS, fsgs->fs_base);
            syscall(SYS_arch_prctl, ARCH_SET_GS, fsgs->gs_base & ~(1ul << 63));
        }
    } else if (self || !kern_state_begin(t)) {
        kr = KERN_INVALID_ARGUMENT;
    } else {
        switch (flavor) {
        case i386_THREAD_STATE:
        case i386_REGS_SEGS_STATE: {
            const struct i386_thread_state *s = (const void *)state;
            if (count < i386_THREAD_STATE_COUNT ||
                (flavor == i386_REGS_SEGS_STATE &&
                 ((s->cs != KERN_USER_CS && s->cs != KERN_USER_CS32) ||
                  s->ss != KERN_USER_SS))) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            kern_state_to_ucontext(s, t->uc);
            break;
        }
        case i386_FSGS_BASE_STATE: {
            const struct i386_fsgs_base_state *fsgs = (const void *)state;
            if (count < i386_FSGS_BASE_STATE_COUNT) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            t->fs_base = fsgs->fs_base;
            t->gs_base = fsgs->gs_base & ~(1ul << 63);
            t->fsgs_dirty = true;
            break;
        }
        case i386_ISA_PORT_MAP_STATE:
            break; /* as GNU Mach: accepted, no effect */
        case i386_FLOAT_STATE: {
            size_t size = kern_xstate_size(t->uc);
            if (count < i386_FLOAT_STATE_COUNT || size == 0) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            kern_fpu_from_float_state((const struct i386_float_state *)state,
                                      (uint8_t *)t->uc->uc_mcontext.fpregs, size);
            break;
        }
        case i386_XFLOAT_STATE: {
            const struct i386_xfloat_state *x = (const void *)state;
            size_t size = kern_xstate_size(t->uc);
            if (size == 0 || count * sizeof(natural_t) < sizeof *x + size ||
                (x->initialized && x->fp_save_kind != KERN_FP_XSAVE)) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            /* The legacy area's MXCSR reserved bits would make sigreturn
             * fail (and kill the thread): refuse them. */
            uint32_t mxcsr, mask;
            memcpy(&mxcsr, x->hw_state + 24, 4);
            memcpy(&mask, (const uint8_t *)t->uc->uc_mcontext.fpregs + 28, 4);
            if (mask == 0) {
                mask = 0xffbf;
            }
            if (mxcsr & ~mask) {
                kr = KERN_INVALID_ARGUMENT;
                break;
            }
            /* Keep the frame's own software-reserved bytes (its size). */
            uint8_t *fp = (uint8_t *)t->uc->uc_mcontext.fpregs;
            uint8_t reserved[48];
            memcpy(reserved, fp + 464, sizeof reserved);
            memcpy(fp, x->hw_state, size);
            memcpy(fp + 464, reserved, sizeof reserved);
            break;
        }
        default:
            kr = KERN_INVALID_ARGUMENT;
            break;
        }
        kern_state_end(t);
    }
    kern_control_put(t);
    return kr;
}

/* task_suspend (HOLD) and task_resume: GNU Mach's counted task hold,
 * one count on each thread while the task's count is positive.  The
 * calling thread, when it belongs to the task, stops last, on its way
 * out. */
static kern_return_t kern_task_hold(bool hold)
{
    /* The threads first, then the count and their holds in one critical
     * section: a task_resume cannot slip between the two. */
    size_t n = 0;
    struct kern_thread **v = kern_threads_snapshot(&n);
    bool *start = v != NULL ? calloc(n + 1, sizeof *start) : NULL;
    if (start == NULL) {
        if (v != NULL) {
            ipc_lock();
            for (size_t i = 0; i < n; i++) {
                kern_thread_unref(v[i]);
            }
            ipc_unlock();
            free(v);
        }
        return KERN_RESOURCE_SHORTAGE;
    }
    pid_t me = kern_gettid();
    struct kern_thread *self = NULL;
    kern_return_t kr = KERN_SUCCESS;
    ipc_lock();
    unsigned count = kern_task_suspend_count();
    bool first = hold && count == 0, last = !hold && count == 1;
    if (!hold && count == 0) {
        kr = KERN_FAILURE;
    } else {
        kern_task_set_suspend_count(hold ? count + 1 : count - 1);
        for (size_t i = 0; i < n; i++) {
            struct kern_thread *t = v[i];
            if (first && !t->task_held) {
                t->task_held = true;
                kern_hold(t);
            } else if (last && t->task_held) {
                t->task_held = false;
                /* A thread made while the task was suspended starts now
                 * if its own count is 0. */
                start[i] = kern_release_to_start(t);
            }
            if (t->tid != 0 && t->tid == me) {
                self = t;
            }
        }
    }
    ipc_unlock();
    for (size_t i = 0; i < n; i++) {
        if (start[i]) {
            (void)kern_start_released(v[i]);
        }
    }
    for (size_t i = 0; first && i < n; i++) {
        if (v[i] != self) {
            (void)kern_wait_parked(v[i]);
        }
    }
    if (first && self != NULL) {
        kern_control_self = self;
        futex_park_pending = true;
    }
    ipc_lock();
    for (size_t i = 0; i < n; i++) {
        kern_thread_unref(v[i]);
    }
    ipc_unlock();
    free(v);
    free(start);
    return kr;
}

kern_return_t kern_task_suspend(mach_port_t task)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    return kern_task_hold(true);
}

kern_return_t kern_task_resume(mach_port_t task)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    return kern_task_hold(false);
}
