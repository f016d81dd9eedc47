/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * task_create with inherited memory: the new task starts with no thread,
 * a copy of our private memory and our shared memory shared, and our
 * bootstrap and exception ports; thread_create + thread_set_state +
 * thread_resume runs code in it from register state.  task_terminate
 * ends it, which its port's death tells.
 *
 * Without inherited memory: the new task has none of ours (and no
 * thread); it is loaded from outside as an exec server loads a program
 * (code, data and stack allocated and written into it, the code made
 * executable), and a thread started there from register state runs it.
 */
#include <hell.h>
#include <mach.h>
#include <mach/thread_status.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()

/* mov (%rdi),%rax; mov %rax,(%rsi); 1: pause; jmp 1b */
static const uint8_t code[] = {0x48, 0x8b, 0x07, 0x48, 0x89, 0x06, 0xf3, 0x90, 0xeb, 0xfc};

struct shared {
    uint8_t code[64];
    volatile uint64_t result;
    uint8_t stack[16384] __attribute__((aligned(16)));
};

/* Waits for the send right CHILD to a task to turn into a dead name,
 * and lets go of it and of the thread rights THREADS[0..N). */
static void await_death(mach_port_t child, const mach_port_t *threads, unsigned n)
{
    test_await_dead_name(child, 2000);
    for (unsigned i = 0; i < n; i++) {
        test_drop_dead_name(threads[i]);
    }
}

/* Reads the word at ADDR in TASK, or 0 when it cannot be read. */
static uint64_t peek(mach_port_t task, vm_address_t addr)
{
    vm_offset_t data = 0;
    mach_msg_type_number_t n = 0;
    vm_address_t page = addr & ~(vm_address_t)4095;
    if (vm_read(task, page, 4096, &data, &n) != KERN_SUCCESS) {
        return 0;
    }
    uint64_t word = *(uint64_t *)(data + (addr - page));
    CHECK_KR(vm_deallocate(SELF, data, n), KERN_SUCCESS);
    return word;
}

static void empty_task(mach_port_t boot)
{
    uint64_t *mine = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mine != MAP_FAILED);
    *mine = 0x454e494d; /* a mark the empty task has no copy of */
    mach_port_t child = MACH_PORT_NULL;
    CHECK_KR(task_create(SELF, FALSE, &child), KERN_SUCCESS);
    CHECK(test_thread_count(child) == 0);
    mach_port_t inherited = MACH_PORT_NULL;
    CHECK_KR(task_get_bootstrap_port(child, &inherited), KERN_SUCCESS);
    CHECK(inherited == boot);
    CHECK_KR(mach_port_deallocate(SELF, inherited), KERN_SUCCESS);
    CHECK(peek(child, (vm_address_t)mine) != *mine);

    /* Loaded from outside: code (made executable), data, a stack. */
    vm_address_t text = 0, mem = 0, stack = 0;
    CHECK_KR(vm_allocate(child, &text, 4096, TRUE), KERN_SUCCESS);
    CHECK_KR(vm_allocate(child, &mem, 8192, TRUE), KERN_SUCCESS);
    CHECK_KR(vm_allocate(child, &stack, 16384, TRUE), KERN_SUCCESS);
    uint8_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    memcpy(page, code, sizeof code);
    CHECK_KR(vm_write(child, text, (vm_offset_t)page, 4096), KERN_SUCCESS);
    CHECK_KR(vm_protect(child, text, 4096, FALSE, VM_PROT_READ | VM_PROT_EXECUTE),
             KERN_SUCCESS);
    memset(page, 0, 4096);
    *(uint64_t *)page = 5000;
    CHECK_KR(vm_write(child, mem, (vm_offset_t)page, 4096), KERN_SUCCESS);
    munmap(page, 4096);

    mach_port_t th = MACH_PORT_NULL;
    CHECK_KR(thread_create(child, &th), KERN_SUCCESS);
    struct i386_thread_state regs;
    mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_SUCCESS);
    regs.rip = text;
    regs.ursp = stack + 16384 - 64;
    regs.rdi = mem;        /* reads its word... */
    regs.rsi = mem + 4096; /* ...and stores it on its second page */
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs, count),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    for (int i = 0; i < 5000 && peek(child, mem + 4096) != 5000; i++) {
        usleep(1000);
    }
    CHECK(peek(child, mem + 4096) == 5000);
    CHECK(test_thread_count(child) == 1);

    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    await_death(child, &th, 1);
    munmap(mine, 4096);
}

int main(void)
{
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE | PROT_EXEC,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    memcpy(sh->code, code, sizeof code);
    uint64_t *private = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(private != MAP_FAILED);
    *private = 1111;

    mach_port_t boot = test_new_port(true);
    CHECK_KR(task_set_bootstrap_port(SELF, boot), KERN_SUCCESS);

    mach_port_t child = MACH_PORT_NULL;
    CHECK_KR(task_create(SELF, TRUE, &child), KERN_SUCCESS);
    CHECK(MACH_PORT_VALID(child) && child != SELF);
    /* Our memory changes after the copy: the child keeps the old value. */
    *private = 2222;

    CHECK(test_thread_count(child) == 0); /* no thread yet, none of HELL's shown */
    mach_port_t inherited = MACH_PORT_NULL;
    CHECK_KR(task_get_bootstrap_port(child, &inherited), KERN_SUCCESS);
    CHECK(inherited == boot);
    CHECK_KR(mach_port_deallocate(SELF, inherited), KERN_SUCCESS);

    mach_port_t th;
    CHECK_KR(thread_create(child, &th), KERN_SUCCESS);
    struct i386_thread_state regs;
    mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_SUCCESS);
    regs.rip = (uint64_t)(uintptr_t)sh->code;
    regs.ursp = (uint64_t)(uintptr_t)(sh->stack + sizeof sh->stack - 64);
    regs.rdi = (uint64_t)(uintptr_t)private;
    regs.rsi = (uint64_t)(uintptr_t)&sh->result;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs, count),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th), KERN_SUCCESS);
    for (int i = 0; i < 5000 && sh->result == 0; i++) {
        usleep(1000);
    }
    CHECK(sh->result == 1111); /* copied memory, shared memory */
    CHECK(test_thread_count(child) == 1);

    /* Filled from outside: memory allocated in it, written, run on, read
     * back (vm_allocate, vm_write, vm_read through its task port). */
    vm_address_t mem = 0;
    CHECK_KR(vm_allocate(child, &mem, 8192, TRUE), KERN_SUCCESS);
    uint64_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    page[0] = 4000;
    CHECK_KR(vm_write(child, mem, (vm_offset_t)page, 4096), KERN_SUCCESS);
    mach_port_t th2;
    CHECK_KR(thread_create(child, &th2), KERN_SUCCESS);
    regs.rip = (uint64_t)(uintptr_t)sh->code;
    regs.ursp = (uint64_t)(uintptr_t)(sh->stack + sizeof sh->stack - 256);
    regs.rdi = mem;         /* reads its word... */
    regs.rsi = mem + 4096;  /* ...and stores it on its second page */
    CHECK_KR(thread_set_state(th2, i386_THREAD_STATE, (thread_state_t)&regs, count),
             KERN_SUCCESS);
    CHECK_KR(thread_resume(th2), KERN_SUCCESS);
    vm_offset_t data = 0;
    mach_msg_type_number_t n = 0;
    for (int i = 0; i < 5000; i++) {
        CHECK_KR(vm_read(child, mem + 4096, 4096, &data, &n), KERN_SUCCESS);
        uint64_t got = data != 0 ? *(uint64_t *)data : 0;
        if (data != 0) {
            CHECK_KR(vm_deallocate(SELF, data, n), KERN_SUCCESS);
        }
        if (got == 4000) {
            break;
        }
        usleep(1000);
    }
    CHECK_KR(vm_read(child, mem + 4096, 4096, &data, &n), KERN_SUCCESS);
    CHECK(n == 4096 && *(uint64_t *)data == 4000);
    CHECK_KR(vm_deallocate(SELF, data, n), KERN_SUCCESS);
    /* GNU Mach's refusals. */
    CHECK_KR(vm_read(child, mem + 1, 4096, &data, &n), KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_read(child, 0x1000, 4096, &data, &n), KERN_INVALID_ADDRESS);
    CHECK_KR(vm_write(child, 0x1000, (vm_offset_t)page, 4096), KERN_INVALID_ADDRESS);
    munmap(page, 4096);

    /* Ended: its port dies, and with it the thread's. */
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    await_death(child, (mach_port_t[]){th, th2}, 2);

    empty_task(boot);

    /* Not from a port that is no task. */
    mach_port_t none;
    CHECK_KR(task_create(mach_host_self(), TRUE, &none), KERN_INVALID_ARGUMENT);
    CHECK_KR(task_create(mach_host_self(), FALSE, &none), KERN_INVALID_ARGUMENT);
    CHECK_KR(task_set_bootstrap_port(SELF, MACH_PORT_NULL), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    return test_done("task_create");
}
