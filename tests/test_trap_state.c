/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The state of a thread stopped inside mach_msg, as GNU Mach shows a
 * thread stopped inside its trap: thread_get_state gives the registers it
 * called mach_msg with (RIP the return address, the stack as after the
 * return, the callee-saved and argument registers), not those of the
 * libmach code it waits in; a state set meanwhile is entered when the
 * call returns (a message arrives, or thread_abort ends it), and a state
 * set back unchanged lets the call return as usual.
 */
#include <mach.h>
#include <mach/thread_status.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()
#define RCV_SIZE 256

#define MAGIC_RBX 0x1b1b1b1b1b1b1b1bull
#define MAGIC_RBP 0x2b2b2b2b2b2b2b2bull
#define MAGIC_R12 0x1212121212121212ull
#define MAGIC_R13 0x1313131313131313ull
#define MAGIC_R14 0x1414141414141414ull
#define MAGIC_R15 0x1515151515151515ull

/* trap_receive(msg, port): mach_msg(msg, MACH_RCV_MSG, 0, RCV_SIZE, port,
 * 0, MACH_PORT_NULL) called with the callee-saved registers set to the
 * magic values above; trap_call_rsp is its stack pointer at the call,
 * trap_call_return the address the call returns to. */
uint64_t trap_call_rsp;
mach_msg_return_t trap_receive(mach_msg_header_t *msg, mach_port_t port);
extern const char trap_call_return[];

__asm__(".text\n"
        ".globl trap_receive\n"
        ".type trap_receive, @function\n"
        "trap_receive:\n"
        "    pushq %rbx\n"
        "    pushq %rbp\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    pushq $0\n" /* notify, the seventh argument; %rsp 16-aligned */
        "    movl %esi, %r8d\n"
        "    movl $2, %esi\n" /* MACH_RCV_MSG */
        "    xorl %edx, %edx\n"
        "    movl $256, %ecx\n"
        "    xorl %r9d, %r9d\n"
        "    movabsq $0x1b1b1b1b1b1b1b1b, %rbx\n"
        "    movabsq $0x2b2b2b2b2b2b2b2b, %rbp\n"
        "    movabsq $0x1212121212121212, %r12\n"
        "    movabsq $0x1313131313131313, %r13\n"
        "    movabsq $0x1414141414141414, %r14\n"
        "    movabsq $0x1515151515151515, %r15\n"
        "    movq %rsp, trap_call_rsp(%rip)\n"
        "    call mach_msg@PLT\n"
        ".globl trap_call_return\n"
        "trap_call_return:\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbp\n"
        "    popq %rbx\n"
        "    ret\n"
        ".size trap_receive, .-trap_receive\n");

/* fs_landing(arg): entered with a thread pointer of the test's making,
 * which no compiled code may use: keeps it in landed_fs, loads
 * receiver_fs (glibc's) again, then calls landing(arg). */
uint64_t landed_fs, receiver_fs;
void fs_landing(uint64_t arg);

__asm__(".text\n"
        ".globl fs_landing\n"
        ".type fs_landing, @function\n"
        "fs_landing:\n"
        "    movq %rdi, %r12\n"
        "    movl $158, %eax\n" /* arch_prctl */
        "    movl $0x1003, %edi\n" /* ARCH_GET_FS */
        "    leaq landed_fs(%rip), %rsi\n"
        "    syscall\n"
        "    movl $158, %eax\n"
        "    movl $0x1002, %edi\n" /* ARCH_SET_FS */
        "    movq receiver_fs(%rip), %rsi\n"
        "    syscall\n"
        "    movq %r12, %rdi\n"
        "    andq $-16, %rsp\n"
        "    call landing\n"
        "    ud2\n"
        ".size fs_landing, .-fs_landing\n");

/* rax_landing: keeps %rax (the trap's return code) in landed_rax, then
 * goes on into landing. */
uint64_t landed_rax;
void rax_landing(uint64_t arg);

__asm__(".text\n"
        ".globl rax_landing\n"
        ".type rax_landing, @function\n"
        "rax_landing:\n"
        "    movq %rax, landed_rax(%rip)\n"
        "    jmp landing\n"
        ".size rax_landing, .-rax_landing\n");

struct receiver {
    pthread_t thread;
    mach_port_t port;
    _Atomic mach_port_t self;
    _Atomic pid_t tid;
    union {
        mach_msg_header_t h;
        char buf[RCV_SIZE];
    } msg;
    mach_msg_return_t mr;
    jmp_buf landed_back;
    _Atomic uint64_t landed; /* the argument landing() was entered with */
    _Atomic bool done;
};

static struct receiver *current;

/* Where a state set on the stopped receiver sends it: records ARG, then
 * back into receiver_main (its frame lies above this stack). */
void landing(uint64_t arg);

void landing(uint64_t arg)
{
    atomic_store(&current->landed, arg);
    longjmp(current->landed_back, 1);
}

static void *receiver_main(void *arg)
{
    struct receiver *r = arg;
    atomic_store(&r->tid, gettid());
    atomic_store(&r->self, mach_thread_self());
    if (setjmp(r->landed_back) == 0) {
        r->mr = trap_receive(&r->msg.h, r->port);
    }
    atomic_store(&r->done, true);
    return NULL;
}

/* Starts a receiver on a new port and stops it inside its mach_msg;
 * returns its thread port, its state in *S. */
static mach_port_t stop_in_trap(struct receiver *r, struct i386_thread_state *s)
{
    *r = (struct receiver){.port = test_new_port(true)};
    current = r;
    CHECK(pthread_create(&r->thread, NULL, receiver_main, r) == 0);
    while (atomic_load(&r->self) == MACH_PORT_NULL) {
        usleep(1000);
    }
    mach_port_t th = atomic_load(&r->self);
    /* Until it stops inside the call (it may not have made it yet). */
    for (int i = 0; i < 5000; i++) {
        CHECK_KR(thread_suspend(th), KERN_SUCCESS);
        mach_msg_type_number_t n = i386_THREAD_STATE_COUNT;
        memset(s, 0, sizeof *s); /* (its padding) */
        CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)s, &n), KERN_SUCCESS);
        if (s->rip == (uint64_t)(uintptr_t)trap_call_return) {
            return th;
        }
        CHECK_KR(thread_resume(th), KERN_SUCCESS);
        usleep(1000);
    }
    CHECK(!"the receiver never stopped inside mach_msg");
    return th;
}

static void send_id(mach_port_t port, mach_msg_id_t id)
{
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_remote_port = port, .msgh_id = id};
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
}

/* Waits for the receiver to end; returns how many messages its port
 * still holds, and frees the port and TH. */
static unsigned finish(struct receiver *r, mach_port_t th)
{
    CHECK(pthread_join(r->thread, NULL) == 0);
    mach_port_status_t st = {0};
    CHECK_KR(mach_port_get_receive_status(SELF, r->port, &st), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, r->port), KERN_SUCCESS);
    return st.mps_msgcount;
}

/* The state shows the call, not libmach's insides. */
static void test_state_at_call(void)
{
    struct receiver r;
    struct i386_thread_state s;
    mach_port_t th = stop_in_trap(&r, &s);
    CHECK(s.rbx == MAGIC_RBX && s.rbp == MAGIC_RBP);
    CHECK(s.r12 == MAGIC_R12 && s.r13 == MAGIC_R13 && s.r14 == MAGIC_R14 &&
          s.r15 == MAGIC_R15);
    CHECK(s.ursp == trap_call_rsp);
    CHECK(s.rdi == (uint64_t)(uintptr_t)&r.msg.h && s.rsi == MACH_RCV_MSG && s.rdx == 0 &&
          s.rcx == RCV_SIZE && s.r8 == r.port && s.r9 == 0);
    /* Asked again while still stopped: the same. */
    struct i386_thread_state again = {0};
    mach_msg_type_number_t n = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&again, &n),
             KERN_SUCCESS);
    CHECK(memcmp(&s, &again, sizeof s) == 0);
    /* Set back unchanged: the call returns as usual. */
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&s,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    send_id(r.port, 41);
    CHECK(finish(&r, th) == 0);
    CHECK_KR(r.mr, MACH_MSG_SUCCESS);
    CHECK(r.msg.h.msgh_id == 41 && atomic_load(&r.landed) == 0);
}

/* S redirected to landing(ARG) through rax_landing, on a stack below
 * the stopped call, with a RAX the trap's return overwrites. */
static void redirect(struct i386_thread_state *s, uint64_t arg)
{
    landed_rax = 0xdead;
    s->rip = (uint64_t)(uintptr_t)rax_landing;
    s->rax = 0xbeef;
    s->rdi = arg;
    s->ursp = ((s->ursp - 4096) & ~(uint64_t)15) - 8; /* as after a call */
}

/* A state set inside the call is entered when the call returns: here
 * when its message comes (which the receive still takes). */
static void test_set_then_message(void)
{
    struct receiver r;
    struct i386_thread_state s;
    mach_port_t th = stop_in_trap(&r, &s);
    redirect(&s, 0x77);
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&s,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    /* What is set is what is shown. */
    struct i386_thread_state shown;
    mach_msg_type_number_t n = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&shown, &n),
             KERN_SUCCESS);
    CHECK(shown.rip == s.rip && shown.rdi == 0x77 && shown.ursp == s.ursp);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    CHECK(!atomic_load(&r.done) || !"left its call without a message");
    send_id(r.port, 42);
    CHECK(finish(&r, th) == 0);
    CHECK(atomic_load(&r.landed) == 0x77);
    CHECK(r.msg.h.msgh_id == 42); /* received, then the state entered */
    CHECK(landed_rax == MACH_MSG_SUCCESS); /* the call's code, as GNU Mach */
}

/* The Hurd's way to deliver a signal: suspend, abort, set the state,
 * resume. */
static void test_abort_then_set(void)
{
    struct receiver r;
    struct i386_thread_state s;
    mach_port_t th = stop_in_trap(&r, &s);
    CHECK_KR(thread_abort(th), KERN_SUCCESS);
    redirect(&s, 0x88);
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&s,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    CHECK(finish(&r, th) == 0);
    CHECK(atomic_load(&r.landed) == 0x88);
    CHECK(landed_rax == MACH_RCV_INTERRUPTED);
}

/* A thread pointer set inside the call is loaded with the state when
 * the call returns, never inside libmach (whose thread-locals it would
 * lose). */
static void test_fs_set_in_trap(void)
{
    struct receiver r;
    struct i386_thread_state s;
    mach_port_t th = stop_in_trap(&r, &s);
    struct i386_fsgs_base_state fsgs;
    mach_msg_type_number_t n = i386_FSGS_BASE_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_FSGS_BASE_STATE, (thread_state_t)&fsgs, &n),
             KERN_SUCCESS);
    receiver_fs = fsgs.fs_base;
    CHECK(receiver_fs == (uint64_t)r.thread); /* glibc's */
    fsgs.fs_base = 0x10000;
    CHECK_KR(thread_set_state(th, i386_FSGS_BASE_STATE, (thread_state_t)&fsgs,
                              i386_FSGS_BASE_STATE_COUNT),
             KERN_SUCCESS);
    redirect(&s, 0x99);
    s.rip = (uint64_t)(uintptr_t)fs_landing;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&s,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    send_id(r.port, 43); /* libmach receives it under glibc's pointer */
    CHECK(finish(&r, th) == 0);
    CHECK(atomic_load(&r.landed) == 0x99 && landed_fs == 0x10000);
    CHECK(r.msg.h.msgh_id == 43);
}

static _Atomic bool in_handler, leave_handler;

static void spin_handler(int sig)
{
    (void)sig;
    atomic_store(&in_handler, true);
    while (!atomic_load(&leave_handler)) {
    }
}

/* Signals the receiver R, resumed and waiting again inside its call, with
 * HANDLER for SIGUSR1, and waits until the handler runs. */
static void run_handler_on_top(struct receiver *r, void (*handler)(int))
{
    struct sigaction sa = {.sa_handler = handler};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    atomic_store(&in_handler, false);
    atomic_store(&leave_handler, false);
    /* In the wait itself, where libmach holds the port's dequeue lock. */
    CHECK(test_wait_syscall(atomic_load(&r->tid), SYS_recvmsg));
    CHECK(pthread_kill(r->thread, SIGUSR1) == 0);
    while (!atomic_load(&in_handler)) {
        usleep(1000);
    }
}

/* Starts a receiver R stopped in its call, resumes it, runs HANDLER on
 * top of its wait and stops it there; returns its thread port. */
static mach_port_t stop_in_handler_on_top(struct receiver *r, void (*handler)(int))
{
    struct i386_thread_state s;
    mach_port_t th = stop_in_trap(r, &s);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    run_handler_on_top(r, handler);
    CHECK_KR(thread_suspend(th), KERN_SUCCESS);
    return th;
}

/* A signal handler of the program running on top of a blocked mach_msg
 * is user code: the thread stops there, and shows where it runs, not the
 * call below. */
static void test_handler_on_top(void)
{
    struct receiver r;
    struct i386_thread_state s;
    mach_port_t th = stop_in_handler_on_top(&r, spin_handler);
    mach_msg_type_number_t n = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&s, &n), KERN_SUCCESS);
    CHECK(s.rip != (uint64_t)(uintptr_t)trap_call_return && s.ursp < trap_call_rsp);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    atomic_store(&leave_handler, true);
    send_id(r.port, 44); /* the receive goes on below the handler */
    CHECK(finish(&r, th) == 0);
    CHECK_KR(r.mr, MACH_MSG_SUCCESS);
    CHECK(r.msg.h.msgh_id == 44);
}

static void *leave_soon(void *arg)
{
    (void)arg;
    usleep(50000);
    atomic_store(&leave_handler, true);
    return NULL;
}

/* A thread ended while stopped in a handler on top of its receive ends
 * once back in the call, which gives back the port: others receive. */
static void test_ended_on_top(void)
{
    struct receiver r;
    mach_port_t th = stop_in_handler_on_top(&r, spin_handler);
    pthread_t helper;
    CHECK(pthread_create(&helper, NULL, leave_soon, NULL) == 0);
    CHECK_KR(thread_terminate(th), KERN_SUCCESS);
    CHECK(pthread_join(helper, NULL) == 0);
    CHECK(pthread_join(r.thread, NULL) == 0);
    send_id(r.port, 47);
    union {
        mach_msg_header_t h;
        char buf[RCV_SIZE];
    } m;
    CHECK_KR(mach_msg(&m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, r.port, 2000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 47);
    mach_port_mod_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, -1);
    CHECK_KR(mach_port_destroy(SELF, r.port), KERN_SUCCESS);
}

static mach_port_t nested_port;
static _Atomic mach_msg_return_t nested_mr = -1;

/* Receives on nested_port, on top of the receive it interrupted. */
static void receiving_handler(int sig)
{
    (void)sig;
    union {
        mach_msg_header_t h;
        char buf[RCV_SIZE];
    } m;
    atomic_store(&in_handler, true);
    atomic_store(&nested_mr, mach_msg(&m.h, MACH_RCV_MSG, 0, sizeof m, nested_port, 0,
                                      MACH_PORT_NULL));
}

/* A handler that calls mach_msg on top of a blocked one stops inside its
 * own call (showing the outer call's state: HELL records the outermost
 * trap's registers only); both calls then go on. */
static void test_nested_call_on_top(void)
{
    nested_port = test_new_port(true);
    struct receiver r;
    struct i386_thread_state s;
    mach_port_t th = stop_in_trap(&r, &s);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    run_handler_on_top(&r, receiving_handler);
    CHECK(test_wait_syscall(atomic_load(&r.tid), SYS_recvmsg)); /* the inner wait */
    CHECK_KR(thread_suspend(th), KERN_SUCCESS);
    mach_msg_type_number_t n = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&s, &n), KERN_SUCCESS);
    CHECK(s.rip == (uint64_t)(uintptr_t)trap_call_return && s.r8 == r.port);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    send_id(nested_port, 45);
    for (int i = 0; i < 5000 && atomic_load(&nested_mr) == (mach_msg_return_t)-1; i++) {
        usleep(1000);
    }
    CHECK_KR(atomic_load(&nested_mr), MACH_MSG_SUCCESS);
    send_id(r.port, 46);
    CHECK(finish(&r, th) == 0);
    CHECK_KR(r.mr, MACH_MSG_SUCCESS);
    CHECK(r.msg.h.msgh_id == 46);
    CHECK_KR(mach_port_destroy(SELF, nested_port), KERN_SUCCESS);
}

int main(void)
{
    test_state_at_call();
    test_set_then_message();
    test_abort_then_set();
    test_fs_set_in_trap();
    test_handler_on_top();
    test_nested_call_on_top();
    test_ended_on_top();
    return test_done("trap_state");
}
