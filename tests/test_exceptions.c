/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Exceptions: faults become exception_raise RPCs (exc.defs, id 2400) to
 * the thread's exception port, else the task's, with GNU Mach's values
 * (i386/i386/trap.c, i386/i386/fpu.c); an exception server that fixes
 * the faulting thread's state and answers KERN_SUCCESS resumes it; a
 * thread's server that answers anything else passes the exception on to
 * the task's (kern/exception.c), whose refusal ends the task; without an
 * exception port a fault is an ordinary Linux fault.  The server may be
 * another task, working on the faulting thread through its port.
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
static const uint8_t trap_hlt[] = {0xf4};                    /* hlt: privileged */
static const uint8_t trap_int10[] = {0xcd, 0x10};            /* int $0x10: a kernel gate */
/* 1 / 0 with the x87's zero-divide exception unmasked; it is raised by
 * the next waiting instruction (fwait, at 14). */
static const uint8_t trap_x87[] = {
    0x68, 0x7b, 0x03, 0x00, 0x00, /* push $0x37b (control word, ZM clear) */
    0xd9, 0x2c, 0x24,             /* fldcw (%rsp) */
    0xd9, 0xe8,                   /* fld1 */
    0xd9, 0xee,                   /* fldz */
    0xde, 0xf9,                   /* fdivp: st(1) = st(1) / st(0) */
    0x9b,                         /* fwait */
};
/* 1.0f / 0.0f with SSE's zero-divide exception unmasked: raised by the
 * divss itself (at 21). */
static const uint8_t trap_sse[] = {
    0x68, 0x80, 0x1d, 0x00, 0x00, /* push $0x1d80 (MXCSR, ZM clear) */
    0x0f, 0xae, 0x14, 0x24,       /* ldmxcsr (%rsp) */
    0xb8, 0x01, 0x00, 0x00, 0x00, /* mov $1,%eax */
    0xf3, 0x0f, 0x2a, 0xc0,       /* cvtsi2ss %eax,%xmm0 */
    0x0f, 0x57, 0xc9,             /* xorps %xmm1,%xmm1 */
    0xf3, 0x0f, 0x5e, 0xc1,       /* divss %xmm1,%xmm0 */
};
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
    mach_port_t state_thread; /* whose state to use, when the message's
                                 thread port stands in for another */
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
    mach_port_t state = MACH_PORT_VALID(seen.state_thread) ? seen.state_thread : thread;
    if (thread_get_state(state, i386_THREAD_STATE, (thread_state_t)&regs, &count) ==
        KERN_SUCCESS) {
        seen.rip = regs.rip;
        if (seen.answer == KERN_SUCCESS) {
            regs.rip += seen.skip;
            regs.rax = seen.rax;
            thread_set_state(state, i386_THREAD_STATE, (thread_state_t)&regs, count);
        }
    }
    /* MIG's rule: the rights are ours only when we succeed; otherwise
     * the server loop destroys the request, and them with it. */
    if (seen.answer == KERN_SUCCESS) {
        mach_port_deallocate(SELF, thread);
        mach_port_deallocate(SELF, task);
    }
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

/* Receives one request on PORT (waiting at most 5 s), has exc_server
 * answer it as `seen` says, and sends the reply, as mach_msg_server
 * would.  Returns whether a request came. */
static bool serve_one(mach_port_t port)
{
    union {
        mach_msg_header_t h;
        char buf[512];
    } req, rep;
    if (mach_msg(&req.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof req, port, 5000,
                 MACH_PORT_NULL) != MACH_MSG_SUCCESS) {
        return false;
    }
    CHECK(req.h.msgh_id == 2400);
    CHECK(exc_server(&req.h, &rep.h));
    if (((mig_reply_header_t *)&rep.h)->RetCode != KERN_SUCCESS) {
        req.h.msgh_remote_port = MACH_PORT_NULL; /* the reply right is used below */
        mach_msg_destroy(&req.h);
    }
    CHECK_KR(mach_msg(&rep.h, MACH_SEND_MSG, rep.h.msgh_size, 0, MACH_PORT_NULL, 0,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    return true;
}

/* Makes a thread of TASK, not started yet, that will run A's code with
 * RDI = RDI (RCX 0); returns it. */
static mach_port_t prepare(mach_port_t task, struct area *a, uint64_t rdi)
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
    return th;
}

/* prepare, then started. */
static mach_port_t run(mach_port_t task, struct area *a, uint64_t rdi)
{
    mach_port_t th = prepare(task, a, rdi);
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

/* A fault, what it should raise, and how the server gets past it. */
struct fault {
    const char *what;
    const uint8_t *code;
    size_t n;
    uint64_t rdi;
    integer_t exc, code_value;
    rpc_long_integer_t subcode;
    size_t at;   /* RIP's offset in the code when the exception is raised */
    size_t skip; /* bytes the server advances RIP by */
};

/* A fault fixed by the server: the thread goes on past it. */
static void test_fixed(const struct fault *f)
{
    struct area *a = new_area(f->code, f->n);
    memset(&seen, 0, sizeof seen);
    seen.answer = KERN_SUCCESS;
    seen.skip = f->skip;
    seen.rax = 0x5150;
    mach_port_t th = run(SELF, a, f->rdi);
    bool ok = wait_result(a, 0x5150);
    CHECK(ok);
    CHECK(seen.calls == 1 && seen.exception == f->exc && seen.code == f->code_value);
    CHECK(seen.subcode == f->subcode);
    /* The state it saw was the fault's. */
    CHECK(seen.rip == (uintptr_t)a->code + f->at);
    if (!ok || seen.calls != 1 || seen.exception != f->exc || seen.code != f->code_value ||
        seen.subcode != f->subcode) {
        fprintf(stderr, "  (%s: %d calls, exception %d, code %d, subcode %#lx)\n", f->what,
                seen.calls, seen.exception, seen.code, (unsigned long)seen.subcode);
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

    /* Page faults have the address as subcode; a general protection
     * fault the error code (for a gate: its vector << 3 | 2); an x87
     * error the status word: here B, TOP 6, ES and ZE (fdivp did not
     * pop). */
    static const struct fault faults[] = {
        {"unmapped read", load_fault, sizeof load_fault, 0x10, EXC_BAD_ACCESS,
         KERN_INVALID_ADDRESS, 0x10, 0, sizeof load_fault},
        {"int3", trap_int3, sizeof trap_int3, 0, EXC_BREAKPOINT, EXC_I386_BPT, 0, 1, 0},
        {"ud2", trap_ud2, sizeof trap_ud2, 0, EXC_BAD_INSTRUCTION, EXC_I386_INVOP, 0, 0,
         sizeof trap_ud2},
        {"divide by 0", trap_div, sizeof trap_div, 0, EXC_ARITHMETIC, EXC_I386_DIV, 0, 0,
         sizeof trap_div},
        {"hlt", trap_hlt, sizeof trap_hlt, 0, EXC_BAD_INSTRUCTION, EXC_I386_GPFLT, 0, 0,
         sizeof trap_hlt},
        {"int $0x10", trap_int10, sizeof trap_int10, 0, EXC_BAD_INSTRUCTION, EXC_I386_GPFLT,
         0x10 << 3 | 2, 0, sizeof trap_int10},
        {"x87 zero divide", trap_x87, sizeof trap_x87, 0, EXC_ARITHMETIC, EXC_I386_EXTERR,
         0xb084, 14, 1},
        /* GNU Mach leaves CR4.OSXMMEXCPT clear: the CPU makes an
         * unmasked SSE exception an invalid opcode there. */
        {"SSE zero divide", trap_sse, sizeof trap_sse, 0, EXC_BAD_INSTRUCTION,
         EXC_I386_INVOP, 0, 21, 4},
    };
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        test_fixed(&faults[i]);
    }

    /* A read-only page: a protection failure. */
    uint64_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const uint8_t store_fault[] = {0x48, 0x89, 0x07}; /* mov %rax,(%rdi) */
    uintptr_t ro_addr = (uintptr_t)ro;
    test_fixed(&(struct fault){"read-only write", store_fault, sizeof store_fault, ro_addr,
                               EXC_BAD_ACCESS, KERN_PROTECTION_FAILURE,
                               (rpc_long_integer_t)ro_addr, 0, sizeof store_fault});
    munmap(ro, 4096);

    /* The thread's own exception port comes first. */
    mach_port_t mine;
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &mine), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(SELF, mine, mine, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    struct area *a = new_area(load_fault, sizeof load_fault);
    memset(&seen, 0, sizeof seen);
    seen.answer = KERN_SUCCESS;
    seen.skip = sizeof load_fault;
    seen.rax = 0x5150;
    mach_port_t th = prepare(SELF, a, 0x20);
    CHECK_KR(thread_set_exception_port(th, mine), KERN_SUCCESS);
    mach_port_t got = MACH_PORT_NULL;
    CHECK_KR(thread_get_exception_port(th, &got), KERN_SUCCESS);
    CHECK(got == mine);
    CHECK_KR(mach_port_deallocate(SELF, got), KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    /* Received on the thread's port, not the task's (whose server saw
     * nothing). */
    CHECK(serve_one(mine));
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

/* ---- across tasks ---- */

/* A routine for the child's own code: mov (%rdi),%rax; ret. */
static const uint8_t load_ret[] = {0x48, 0x8b, 0x07, 0xc3};

/* The server is another task: this one serves the exceptions of a child
 * made by hell_fork (its exception port set through its task port), the
 * fault in the child's own thread, in code the child calls.  The server
 * reads and fixes the thread's state through the thread port it got;
 * the child sees the value the server put in RAX.  With STAND_INS, the
 * child's task and thread kernel ports are first set to ports of this
 * task (as rpctrace does): the exception names those (GNU Mach's
 * itk_sself and ith_sself), and the state goes through the real thread
 * port. */
static void test_server_in_other_task(bool stand_ins)
{
    struct area *a = new_area(load_ret, sizeof load_ret);
    int go[2];
    CHECK(pipe(go) == 0);
    mach_port_t boot = test_new_port(true);
    mach_port_t child;
    pid_t pid = hell_fork(boot, &child);
    if (pid == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) {
            _exit(2);
        }
        uint64_t (*load)(uint64_t) = (uint64_t (*)(uint64_t))(uintptr_t)a->code;
        _exit(load(0x40) == 0x5150 ? 0 : 1);
    }
    close(go[0]);
    mach_port_t port = test_new_port(true);
    CHECK_KR(task_set_exception_port(child, port), KERN_SUCCESS);
    mach_port_t got = MACH_PORT_NULL;
    CHECK_KR(task_get_exception_port(child, &got), KERN_SUCCESS);
    CHECK(got == port);
    CHECK_KR(mach_port_deallocate(SELF, got), KERN_SUCCESS);
    /* The child's only thread: the one that will fault. */
    thread_array_t list = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(task_threads(child, &list, &n), KERN_SUCCESS);
    CHECK(n == 1);
    mach_port_t main_thread = n > 0 ? list[0] : MACH_PORT_NULL;
    for (mach_msg_type_number_t i = 1; i < n; i++) {
        mach_port_deallocate(SELF, list[i]);
    }
    vm_deallocate(SELF, (vm_address_t)list, n * sizeof *list);
    mach_port_t stand_task = MACH_PORT_NULL, stand_thread = MACH_PORT_NULL;
    if (stand_ins) {
        stand_task = test_new_port(true);
        stand_thread = test_new_port(true);
        CHECK_KR(task_set_special_port(child, TASK_KERNEL_PORT, stand_task), KERN_SUCCESS);
        CHECK_KR(thread_set_special_port(main_thread, THREAD_KERNEL_PORT, stand_thread),
                 KERN_SUCCESS);
    }

    memset(&seen, 0, sizeof seen);
    seen.answer = KERN_SUCCESS;
    seen.skip = 3; /* the load */
    seen.rax = 0x5150;
    seen.state_thread = stand_ins ? main_thread : MACH_PORT_NULL;
    CHECK(write(go[1], "g", 1) == 1);
    CHECK(serve_one(port));
    CHECK(seen.calls == 1 && seen.exception == EXC_BAD_ACCESS &&
          seen.code == KERN_INVALID_ADDRESS && seen.subcode == 0x40);
    /* The ports are the child's (the names this task already had for
     * them), or what stands in for them; the state the fault's. */
    if (stand_ins) {
        CHECK(seen.task == stand_task && seen.thread == stand_thread);
        CHECK_KR(mach_port_destroy(SELF, stand_task), KERN_SUCCESS);
        CHECK_KR(mach_port_destroy(SELF, stand_thread), KERN_SUCCESS);
    } else {
        CHECK(seen.task == child && seen.thread == main_thread);
    }
    CHECK(seen.rip == (uintptr_t)a->code);
    test_wait_ok(pid);

    close(go[1]);
    CHECK_KR(mach_port_deallocate(SELF, main_thread), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);
    munmap(a, sizeof *a);
}

/* How the thread's exception port fails the fault. */
enum fallback {
    FALLBACK_REFUSED,      /* its server answers KERN_FAILURE */
    FALLBACK_OTHER_ANSWER, /* ... or KERN_INVALID_ARGUMENT: any code but success */
    FALLBACK_DEAD,         /* it has no receiver any more */
    FALLBACK_BOTH_REFUSE,  /* and the task's server refuses too */
};

/* GNU Mach (kern/exception.c) goes from a thread's exception port to
 * its task's when the first has no receiver or its server answers
 * anything but KERN_SUCCESS; when the task's refuses too, the task is
 * terminated.  Here in a child task, its thread made by this one and
 * both ports served by this one. */
static void test_fallback(enum fallback how)
{
    struct area *a = new_area(load_fault, sizeof load_fault);
    mach_port_t child;
    pid_t pid = test_fork_idle(&child);
    mach_port_t task_port = test_new_port(true), thread_port = test_new_port(true);
    CHECK_KR(task_set_exception_port(child, task_port), KERN_SUCCESS);
    mach_port_t th = prepare(child, a, 0x50);
    CHECK_KR(thread_set_exception_port(th, thread_port), KERN_SUCCESS);
    if (how == FALLBACK_DEAD) {
        CHECK_KR(mach_port_destroy(SELF, thread_port), KERN_SUCCESS);
    }
    CHECK_KR(thread_resume(th), KERN_SUCCESS);

    if (how != FALLBACK_DEAD) {
        memset(&seen, 0, sizeof seen);
        seen.answer = how == FALLBACK_OTHER_ANSWER ? KERN_INVALID_ARGUMENT : KERN_FAILURE;
        CHECK(serve_one(thread_port));
        CHECK(seen.calls == 1 && seen.exception == EXC_BAD_ACCESS &&
              seen.code == KERN_INVALID_ADDRESS && seen.subcode == 0x50);
        CHECK(seen.thread == th && seen.task == child);
        CHECK(seen.rip == (uintptr_t)a->code);
    }
    /* Then the task's port, with the same exception and the state still
     * the fault's. */
    memset(&seen, 0, sizeof seen);
    seen.answer = how == FALLBACK_BOTH_REFUSE ? KERN_FAILURE : KERN_SUCCESS;
    seen.skip = sizeof load_fault;
    seen.rax = 0x5150;
    CHECK(serve_one(task_port));
    CHECK(seen.calls == 1 && seen.exception == EXC_BAD_ACCESS &&
          seen.code == KERN_INVALID_ADDRESS && seen.subcode == 0x50);
    CHECK(seen.thread == th && seen.task == child);
    CHECK(seen.rip == (uintptr_t)a->code);

    if (how == FALLBACK_BOTH_REFUSE) {
        /* No server took it: the task ends (within 5 s; else it is
         * ended here, the check failed). */
        int status = 0;
        pid_t got = 0;
        for (int i = 0; i < 5000 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++) {
            usleep(1000);
        }
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        CHECK(got == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        CHECK(a->result == 0);
    } else {
        CHECK(wait_result(a, 0x5150));
        /* Once: no second request on either port. */
        mach_msg_header_t m;
        CHECK_KR(mach_msg(&m, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, task_port, 0,
                          MACH_PORT_NULL),
                 MACH_RCV_TIMED_OUT);
        if (how != FALLBACK_DEAD) {
            CHECK_KR(mach_msg(&m, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, thread_port,
                              0, MACH_PORT_NULL),
                     MACH_RCV_TIMED_OUT);
        }
        CHECK_KR(thread_terminate(th), KERN_SUCCESS);
        CHECK_KR(task_terminate(child), KERN_SUCCESS);
        waitpid(pid, NULL, 0);
    }
    /* A send right or, its thread gone, a dead name: either way one
     * reference. */
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, task_port), KERN_SUCCESS);
    if (how != FALLBACK_DEAD) {
        CHECK_KR(mach_port_destroy(SELF, thread_port), KERN_SUCCESS);
    }
    munmap(a, sizeof *a);
}

int main(void)
{
    test_in_task();
    test_default_and_refusal();
    test_server_in_other_task(false);
    test_server_in_other_task(true);
    test_fallback(FALLBACK_REFUSED);
    test_fallback(FALLBACK_OTHER_ANSWER);
    test_fallback(FALLBACK_DEAD);
    test_fallback(FALLBACK_BOTH_REFUSE);
    return test_done("exceptions");
}
