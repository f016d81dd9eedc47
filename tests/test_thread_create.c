/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * thread_create + thread_set_state + thread_resume: a thread started from
 * arbitrary register state (its own code, its own stack, no glibc thread
 * pointer), in this task and in another task through its task port (the
 * way an exec server starts a program); then stopped, read, and ended by
 * thread_terminate, its port dying with it.
 */
#include <hell.h>
#include <mach.h>
#include <mach/thread_status.h>
#include <mach/x86_64/fp_reg.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()

/* mov %rdi,(%rsi); 1: pause; jmp 1b */
static const uint8_t code[] = {0x48, 0x89, 0x3e, 0xf3, 0x90, 0xeb, 0xfc};

struct area {
    uint8_t code[64];
    volatile uint64_t result;
    uint8_t stack[16384] __attribute__((aligned(16)));
};

static struct area *new_area(void)
{
    struct area *a = mmap(NULL, sizeof *a, PROT_READ | PROT_WRITE | PROT_EXEC,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED);
    memcpy(a->code, code, sizeof code);
    a->result = 0;
    return a;
}


static bool wait_result(volatile uint64_t *r, uint64_t want)
{
    for (int i = 0; i < 5000 && *r != want; i++) {
        usleep(1000);
    }
    return *r == want;
}

/* Makes a thread in TASK that writes VALUE into A->result from A's code
 * and stack, and starts it. */
static mach_port_t start_thread(mach_port_t task, struct area *a, uint64_t value)
{
    mach_port_t th = MACH_PORT_NULL;
    CHECK_KR(thread_create(task, &th), KERN_SUCCESS);
    struct i386_thread_state regs;
    mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_SUCCESS);
    /* GNU Mach's new thread: zeroed, user selectors, interrupts on. */
    CHECK(regs.rip == 0 && regs.ursp == 0 && regs.cs == 0x33 && regs.ss == 0x2b);
    CHECK(regs.rfl == 0x200);
    thread_basic_info_data_t info;
    count = THREAD_BASIC_INFO_COUNT;
    CHECK_KR(thread_info(th, THREAD_BASIC_INFO, (thread_info_t)&info, &count), KERN_SUCCESS);
    CHECK(info.suspend_count >= 1 && info.run_state == TH_STATE_STOPPED);

    regs.rip = (uint64_t)(uintptr_t)a->code;
    regs.ursp = (uint64_t)(uintptr_t)(a->stack + sizeof a->stack - 64);
    regs.rdi = value;
    regs.rsi = (uint64_t)(uintptr_t)&a->result;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs,
                              i386_THREAD_STATE_COUNT),
             KERN_SUCCESS);
    struct i386_fsgs_base_state fsgs = {0};
    count = i386_FSGS_BASE_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_FSGS_BASE_STATE, (thread_state_t)&fsgs, &count),
             KERN_SUCCESS);
    CHECK(fsgs.fs_base == 0); /* no thread pointer: none of glibc's */
    CHECK(a->result == 0);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    return th;
}

static void test_own_task(void)
{
    unsigned before = test_thread_count(SELF);
    struct area *a = new_area();
    mach_port_t th = start_thread(SELF, a, 42);
    CHECK(wait_result(&a->result, 42));
    CHECK(test_thread_count(SELF) == before + 1);

    /* Stopped in its loop: its registers are the ones it was given. */
    CHECK_KR(thread_suspend(th), KERN_SUCCESS);
    struct i386_thread_state regs;
    mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_SUCCESS);
    uintptr_t rip = (uintptr_t)regs.rip;
    CHECK(rip >= (uintptr_t)a->code + 3 && rip < (uintptr_t)a->code + sizeof code);
    CHECK(regs.rdi == 42 && regs.rsi == (uint64_t)(uintptr_t)&a->result);
    CHECK(regs.ursp == (uint64_t)(uintptr_t)(a->stack + sizeof a->stack - 64));
    /* Sent back to the first instruction with another value. */
    regs.rip = (uint64_t)(uintptr_t)a->code;
    regs.rdi = 43;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs, count),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    CHECK(wait_result(&a->result, 43));

    /* Ended: gone from the list, its port a dead name. */
    CHECK_KR(thread_terminate(th), KERN_SUCCESS);
    CHECK(test_thread_count(SELF) == before);
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(SELF, th, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_DEAD_NAME);
    CHECK_KR(mach_port_mod_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, -1), KERN_SUCCESS);

    /* A thread that never ran: listed while it exists, then gone. */
    mach_port_t idle;
    CHECK_KR(thread_create(SELF, &idle), KERN_SUCCESS);
    CHECK(test_thread_count(SELF) == before + 1);
    CHECK_KR(thread_suspend(idle), KERN_SUCCESS);
    CHECK_KR(thread_resume(idle), KERN_SUCCESS); /* back to 1: still not running */
    CHECK_KR(thread_terminate(idle), KERN_SUCCESS);
    CHECK(test_thread_count(SELF) == before);
    CHECK_KR(mach_port_mod_refs(SELF, idle, MACH_PORT_RIGHT_DEAD_NAME, -1), KERN_SUCCESS);
    CHECK_KR(thread_create(mach_host_self(), &idle), KERN_INVALID_ARGUMENT);
    munmap(a, sizeof *a);
}

/* A child task that only waits: its pid, with *BOOT the receive right
 * of its bootstrap port (ours to destroy) and *CHILD its task port. */
static pid_t idle_task(mach_port_t *boot, mach_port_t *child)
{
    *boot = test_new_port(true);
    pid_t pid = hell_fork(*boot, child);
    if (pid == 0) {
        for (;;) {
            pause();
        }
    }
    return pid;
}

/* The way an exec server starts a program: in another task, through its
 * task port (here on memory the two share). */
static void test_other_task(void)
{
    struct area *a = new_area();
    mach_port_t boot, child;
    pid_t pid = idle_task(&boot, &child);
    unsigned before = test_thread_count(child);
    CHECK(before == 1);
    mach_port_t th = start_thread(child, a, 77);
    CHECK(wait_result(&a->result, 77));
    CHECK(test_thread_count(child) == 2);
    CHECK_KR(thread_terminate(th), KERN_SUCCESS);
    CHECK(test_thread_count(child) == 1);
    CHECK_KR(mach_port_mod_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, -1), KERN_SUCCESS);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    waitpid(pid, NULL, 0);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    munmap(a, sizeof *a);
}

/* The x87 state (i386_FLOAT_STATE, GNU Mach's FNSAVE view): a thread
 * pushes 1 and pi, waits for R12 to change, then stores ST0. */
static const uint8_t x87_code[] = {
    0xd9, 0xe8,                               /* fld1 */
    0xd9, 0xeb,                               /* fldpi */
    0xf3, 0x90,                               /* 1: pause */
    0x49, 0x81, 0xfc, 0x78, 0x56, 0x00, 0x00, /* cmp $0x5678,%r12 */
    0x75, 0xf5,                               /* jne 1b */
    0xdd, 0x1e,                               /* fstpl (%rsi) */
    0xf3, 0x90, 0xeb, 0xfc,                   /* 2: pause; jmp 2b */
};

static void test_float_state(void)
{
    struct area *a = new_area();
    memcpy(a->code, x87_code, sizeof x87_code);
    mach_port_t th = start_thread(SELF, a, 0);
    struct i386_float_state fs;
    mach_msg_type_number_t count;
    /* Wait until both values are pushed (the tag word says so). */
    for (int i = 0; i < 1000; i++) {
        CHECK_KR(thread_suspend(th), KERN_SUCCESS);
        count = i386_FLOAT_STATE_COUNT;
        CHECK_KR(thread_get_state(th, i386_FLOAT_STATE, (thread_state_t)&fs, &count),
                 KERN_SUCCESS);
        struct i386_fp_save save;
        memcpy(&save, fs.hw_state, sizeof save);
        if (((save.fp_status >> 11) & 7) == 6) {
            break;
        }
        CHECK_KR(thread_resume(th), KERN_SUCCESS);
        usleep(1000);
    }
    struct i386_fp_save save;
    memcpy(&save, fs.hw_state, sizeof save);
    CHECK(count == i386_FLOAT_STATE_COUNT && fs.initialized);
    CHECK(((save.fp_status >> 11) & 7) == 6);
    /* Physical registers 6 (pi: valid) and 7 (1: valid), the rest empty. */
    CHECK(save.fp_tag == 0x0fff);
    const uint8_t *st0 = fs.hw_state + sizeof save, *st1 = st0 + 10;
    uint64_t m0, m1;
    memcpy(&m0, st0, 8);
    memcpy(&m1, st1, 8);
    CHECK(m0 == 0xc90fdaa22168c235ull && (st0[8] | st0[9] << 8) == 0x4000); /* pi */
    CHECK(m1 == 0x8000000000000000ull && (st1[8] | st1[9] << 8) == 0x3fff); /* 1 */

    /* ST0 becomes 2; R12 lets it store it. */
    uint64_t two = 0x8000000000000000ull;
    memcpy(fs.hw_state + sizeof save, &two, 8);
    fs.hw_state[sizeof save + 8] = 0x00;
    fs.hw_state[sizeof save + 9] = 0x40;
    CHECK_KR(thread_set_state(th, i386_FLOAT_STATE, (thread_state_t)&fs, count), KERN_SUCCESS);
    struct i386_thread_state regs;
    count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_SUCCESS);
    regs.r12 = 0x5678;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs, count),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    double two_d = 2.0;
    uint64_t want;
    memcpy(&want, &two_d, sizeof want);
    CHECK(wait_result(&a->result, want));
    CHECK_KR(thread_terminate(th), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, -1), KERN_SUCCESS);
    munmap(a, sizeof *a);
}

/* A thread created in a suspended task waits for task_resume too. */
static void test_in_suspended_task(void)
{
    struct area *a = new_area();
    mach_port_t boot, child;
    pid_t pid = idle_task(&boot, &child);
    CHECK_KR(task_suspend(child), KERN_SUCCESS);
    mach_port_t th = start_thread(child, a, 55); /* resumed to its own 0 */
    usleep(50000);
    CHECK(a->result == 0);
    thread_basic_info_data_t info;
    mach_msg_type_number_t count = THREAD_BASIC_INFO_COUNT;
    CHECK_KR(thread_info(th, THREAD_BASIC_INFO, (thread_info_t)&info, &count), KERN_SUCCESS);
    CHECK(info.suspend_count == 1 && info.run_state == TH_STATE_STOPPED);
    CHECK_KR(task_resume(child), KERN_SUCCESS);
    CHECK(wait_result(&a->result, 55));
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    waitpid(pid, NULL, 0);
    mach_port_urefs_t refs = 0;
    (void)mach_port_get_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, &refs);
    if (refs > 0) {
        CHECK_KR(mach_port_mod_refs(SELF, th, MACH_PORT_RIGHT_DEAD_NAME, -(int)refs),
                 KERN_SUCCESS);
    } else {
        CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);
    }
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    munmap(a, sizeof *a);
}

/* A thread that ends itself. */
static volatile mach_port_t suicide_port;

static void *suicide(void *arg)
{
    suicide_port = mach_thread_self();
    mach_port_t me = mach_thread_self();
    thread_terminate(me); /* does not return */
    return arg;
}

static void test_terminate_self(void)
{
    unsigned before = test_thread_count(SELF);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, suicide, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(test_thread_count(SELF) == before);
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(SELF, suicide_port, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_DEAD_NAME);
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(SELF, suicide_port, MACH_PORT_RIGHT_DEAD_NAME, &refs),
             KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(SELF, suicide_port, MACH_PORT_RIGHT_DEAD_NAME, -(int)refs),
             KERN_SUCCESS);
}

int main(void)
{
    test_own_task();
    test_other_task();
    test_terminate_self();
    test_float_state();
    test_in_suspended_task();
    return test_done("thread_create");
}
