/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Exceptions: faults become exception_raise RPCs (exc.defs, id 2400) to
 * the thread's exception port, else the task's, with GNU Mach's values;
 * an exception server that fixes the faulting thread's state and answers
 * KERN_SUCCESS resumes it; any other answer ends the task; without an
 * exception port a fault is an ordinary Linux fault.
 */
#include <hell.h>
#include <mach.h>
#include <mach/exception.h>
#include <mach/thread_status.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hell_exc.h"
#include "test.h"

#define SELF mach_task_self()

boolean_t exc_server(mach_msg_header_t *in, mach_msg_header_t *out);

/* Under AddressSanitizer the faults are ours to turn into exceptions: its
 * own handlers would otherwise be installed first (and libmach leaves a
 * program's handlers alone). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "handle_segv=0:handle_sigbus=0:handle_sigill=0:handle_sigfpe=0:detect_leaks=0";
}

/* Faulting code, each followed by: mov %rax,(%rsi); 1: pause; jmp 1b */
static const uint8_t load_fault[] = {0x48, 0x8b, 0x07};      /* mov (%rdi),%rax */
static const uint8_t trap_int3[] = {0xcc};                   /* int3 */
static const uint8_t trap_ud2[] = {0x0f, 0x0b};              /* ud2 */
static const uint8_t trap_div[] = {0x48, 0xf7, 0xf1};        /* div %rcx (rcx 0) */
static const uint8_t tail[] = {0x48, 0x89, 0x06, 0xf3, 0x90, 0xeb, 0xfc};

struct area {
    uint8_t code[64];
    volatile uint64_t result;
    uint8_t stack[16384] __attribute__((aligned(16)));
};

/* What the exception server saw and does. */
static struct {
    int calls;
    integer_t exception, code;
    rpc_long_integer_t subcode;
    uint64_t rip;
    mach_port_t thread, task;
    kern_return_t answer;   /* what it replies */
    size_t skip;            /* bytes to advance RIP by (0: leave it) */
    uint64_t rax;           /* value to put in RAX */
} seen;

kern_return_t catch_exception_raise(mach_port_t port, mach_port_t thread, mach_port_t task,
                                    integer_t exception, integer_t code,
                                    rpc_long_integer_t subcode)
{
    (void)port;
    seen.calls++;
    seen.exception = exception;
    seen.code = code;
    seen.subcode = subcode;
    seen.thread = thread;
    seen.task = task;
    struct i386_thread_state regs;
    mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
    if (thread_get_state(thread, i386_THREAD_STATE, (thread_state_t)&regs, &count) ==
        KERN_SUCCESS) {
        seen.rip = regs.rip;
        if (seen.answer == KERN_SUCCESS) {
            regs.rip += seen.skip;
            regs.rax = seen.rax;
            thread_set_state(thread, i386_THREAD_STATE, (thread_state_t)&regs, count);
        }
    }
    mach_port_deallocate(SELF, thread);
    mach_port_deallocate(SELF, task);
    return seen.answer;
}

static mach_port_t exc_port;

static void *exc_server_main(void *arg)
{
    (void)arg;
    mach_msg_server(exc_server, 0, exc_port);
    return NULL;
}

static struct area *new_area(const uint8_t *fault, size_t n)
{
    struct area *a = mmap(NULL, sizeof *a, PROT_READ | PROT_WRITE | PROT_EXEC,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED);
    memcpy(a->code, fault, n);
    memcpy(a->code + n, tail, sizeof tail);
    return a;
}

/* Runs A's code in a new thread of TASK with RDI = RDI (RCX 0) and waits
 * for its result; returns the thread. */
static mach_port_t run(mach_port_t task, struct area *a, uint64_t rdi)
{
    mach_port_t th;
    CHECK_KR(thread_create(task, &th), KERN_SUCCESS);
    struct i386_thread_state regs = {0};
    regs.rip = (uint64_t)(uintptr_t)a->code;
    regs.ursp = (uint64_t)(uintptr_t)(a->stack + sizeof a->stack - 64);
    regs.rdi = rdi;
    regs.rsi = (uint64_t)(uintptr_t)&a->result;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    return th;
}

static bool wait_result(struct area *a, uint64_t want)
{
    for (int i = 0; i < 5000 && a->result != want; i++) {
        usleep(1000);
    }
    return a->result == want;
}

static void end(mach_port_t th)
{
    CHECK_KR(thread_terminate(th), KERN_SUCCESS);
    mach_port_mod_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, -1);
}

/* A fault fixed by the server: the thread goes on past it. */
static void test_fixed(const char *what, const uint8_t *fault, size_t n, uint64_t rdi,
                       integer_t exc, integer_t code, bool subcode_is_addr, size_t skip)
{
    struct area *a = new_area(fault, n);
    memset(&seen, 0, sizeof seen);
    seen.answer = KERN_SUCCESS;
    seen.skip = skip;
    seen.rax = 0x5150;
    mach_port_t th = run(SELF, a, rdi);
    bool ok = wait_result(a, 0x5150);
    CHECK(ok);
    CHECK(seen.calls == 1 && seen.exception == exc && seen.code == code);
    if (subcode_is_addr) {
        CHECK(seen.subcode == (rpc_long_integer_t)rdi);
    }
    /* The state it saw was the fault's. */
    uintptr_t at = (uintptr_t)a->code + (fault == trap_int3 ? n : 0);
    CHECK(seen.rip == at);
    if (!ok || seen.calls != 1) {
        fprintf(stderr, "  (%s)\n", what);
    }
    end(th);
    munmap(a, sizeof *a);
}

static _Atomic bool on_top_done;

/* A program's signal handler that faults (ud2). */
static void faulting_handler(int sig)
{
    (void)sig;
    __asm__ volatile("ud2" ::: "rax", "memory");
    atomic_store(&on_top_done, true);
}

struct blocked_receiver {
    mach_port_t port;
    _Atomic pid_t tid;
    mach_msg_return_t mr;
};

static void *blocked_receiver_main(void *arg)
{
    struct blocked_receiver *b = arg;
    atomic_store(&b->tid, gettid());
    mach_msg_header_t m;
    b->mr = mach_msg(&m, MACH_RCV_MSG, 0, sizeof m, b->port, 0, MACH_PORT_NULL);
    return NULL;
}

/* A fault in a signal handler running on top of a blocked mach_msg is
 * the program's: it goes to the exception server like any other, and
 * the call below goes on. */
static void test_fault_on_top_of_receive(void)
{
    struct sigaction sa = {.sa_handler = faulting_handler};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    struct blocked_receiver b = {.port = test_new_port(true)};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_receiver_main, &b) == 0);
    while (atomic_load(&b.tid) == 0) {
        usleep(1000);
    }
    CHECK(test_wait_syscall(atomic_load(&b.tid), SYS_recvmsg));
    memset(&seen, 0, sizeof seen);
    seen.answer = KERN_SUCCESS;
    seen.skip = sizeof trap_ud2;
    CHECK(pthread_kill(th, SIGUSR1) == 0);
    for (int i = 0; i < 5000 && !atomic_load(&on_top_done); i++) {
        usleep(1000);
    }
    CHECK(atomic_load(&on_top_done));
    CHECK(seen.calls == 1 && seen.exception == EXC_BAD_INSTRUCTION);
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_remote_port = b.port, .msgh_id = 7};
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_KR(b.mr, MACH_MSG_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, b.port), KERN_SUCCESS);
    signal(SIGUSR1, SIG_DFL);
}

static void test_in_task(void)
{
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &exc_port), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(SELF, exc_port, exc_port, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    CHECK_KR(task_set_exception_port(SELF, exc_port), KERN_SUCCESS);
    pthread_t server;
    CHECK(pthread_create(&server, NULL, exc_server_main, NULL) == 0);

    test_fixed("unmapped read", load_fault, sizeof load_fault, 0x10, EXC_BAD_ACCESS,
               KERN_INVALID_ADDRESS, true, sizeof load_fault);
    test_fixed("int3", trap_int3, sizeof trap_int3, 0, EXC_BREAKPOINT, EXC_I386_BPT, false, 0);
    test_fixed("ud2", trap_ud2, sizeof trap_ud2, 0, EXC_BAD_INSTRUCTION, EXC_I386_INVOP,
               false, sizeof trap_ud2);
    test_fixed("divide by 0", trap_div, sizeof trap_div, 0, EXC_ARITHMETIC, EXC_I386_DIV,
               false, sizeof trap_div);

    /* A read-only page: a protection failure. */
    uint64_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const uint8_t store_fault[] = {0x48, 0x89, 0x07}; /* mov %rax,(%rdi) */
    test_fixed("read-only write", store_fault, sizeof store_fault, (uint64_t)(uintptr_t)ro,
               EXC_BAD_ACCESS, KERN_PROTECTION_FAILURE, true, sizeof store_fault);
    munmap(ro, 4096);

    /* The thread's own exception port comes first. */
    mach_port_t mine;
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &mine), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(SELF, mine, mine, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    struct area *a = new_area(load_fault, sizeof load_fault);
    mach_port_t th;
    CHECK_KR(thread_create(SELF, &th), KERN_SUCCESS);
    CHECK_KR(thread_set_exception_port(th, mine), KERN_SUCCESS);
    mach_port_t got = MACH_PORT_NULL;
    CHECK_KR(thread_get_exception_port(th, &got), KERN_SUCCESS);
    CHECK(got == mine);
    CHECK_KR(mach_port_deallocate(SELF, got), KERN_SUCCESS);
    struct i386_thread_state regs = {0};
    regs.rip = (uint64_t)(uintptr_t)a->code;
    regs.ursp = (uint64_t)(uintptr_t)(a->stack + sizeof a->stack - 64);
    regs.rdi = 0x20;
    regs.rsi = (uint64_t)(uintptr_t)&a->result;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    memset(&seen, 0, sizeof seen);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    /* Received on the thread's port, not the task's (whose server saw
     * nothing). */
    union {
        mach_msg_header_t h;
        char buf[512];
    } req, rep;
    CHECK_KR(mach_msg(&req.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof req, mine, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(req.h.msgh_id == 2400);
    seen.answer = KERN_SUCCESS;
    seen.skip = sizeof load_fault;
    seen.rax = 0x5150;
    CHECK(exc_server(&req.h, &rep.h));
    CHECK_KR(mach_msg(&rep.h, MACH_SEND_MSG, rep.h.msgh_size, 0, MACH_PORT_NULL, 0,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(wait_result(a, 0x5150));
    CHECK(seen.calls == 1 && seen.subcode == 0x20);
    end(th);
    munmap(a, sizeof *a);
    CHECK_KR(mach_port_destroy(SELF, mine), KERN_SUCCESS);
    test_fault_on_top_of_receive();
    CHECK_KR(task_set_exception_port(SELF, MACH_PORT_NULL), KERN_SUCCESS);
}

/* In a child task: no exception port means Linux's default action; a
 * server that refuses the exception ends the task. */
static int child_fault(bool with_refusing_server)
{
    if (with_refusing_server) {
        mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &exc_port);
        mach_port_insert_right(SELF, exc_port, exc_port, MACH_MSG_TYPE_MAKE_SEND);
        task_set_exception_port(SELF, exc_port);
        seen.answer = KERN_FAILURE;
        pthread_t server;
        pthread_create(&server, NULL, exc_server_main, NULL);
    }
    /* An address the compiler cannot see through. */
    volatile uintptr_t where = 0x30;
    return *(volatile int *)where;
}

static void test_default_and_refusal(void)
{
    for (int refuse = 0; refuse < 2; refuse++) {
        mach_port_t boot = test_new_port(true);
        mach_port_t child;
        pid_t pid = hell_fork(boot, &child);
        if (pid == 0) {
            _exit(child_fault(refuse));
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == (refuse ? SIGKILL : SIGSEGV));
        CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
        CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    }
}

int main(void)
{
    test_in_task();
    test_default_and_refusal();
    return test_done("exceptions");
}
