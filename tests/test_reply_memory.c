/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A kernel call that answers with out-of-line data (an array of names,
 * vm_read's copy) gives that memory away with the reply, as GNU Mach's
 * copy objects do: the "kernel", which is the task served, keeps none of
 * it.  Checked for calls on one's own task (served in the calling thread)
 * and on another task (served by its service thread: the memory would
 * pile up in that task).
 */
#include <signal.h>
#include <sys/wait.h>

#include <hell.h>

#include "test.h"

#define SELF mach_task_self()

#define CALLS 2000
/* A page kept per call would be 8 MiB; allocators' own growth is far less. */
#define GROWTH_MAX_KB 2048

static char page[4096] __attribute__((aligned(4096)));

/* Makes CALLS calls of each kind on TASK. */
static void call_many(mach_port_t task, vm_address_t readable)
{
    for (int i = 0; i < CALLS; i++) {
        thread_array_t threads;
        mach_msg_type_number_t n;
        CHECK_KR(task_threads(task, &threads, &n), KERN_SUCCESS);
        for (mach_msg_type_number_t j = 0; j < n; j++) {
            CHECK_KR(mach_port_deallocate(SELF, threads[j]), KERN_SUCCESS);
        }
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)threads, n * sizeof *threads),
                 KERN_SUCCESS);

        mach_port_name_array_t names;
        mach_port_type_array_t types;
        mach_msg_type_number_t nnames, ntypes;
        CHECK_KR(mach_port_names(task, &names, &nnames, &types, &ntypes), KERN_SUCCESS);
        CHECK(nnames == ntypes);
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)names, nnames * sizeof *names),
                 KERN_SUCCESS);
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)types, ntypes * sizeof *types),
                 KERN_SUCCESS);

        vm_offset_t data;
        mach_msg_type_number_t count;
        CHECK_KR(vm_read(task, readable, sizeof page, &data, &count), KERN_SUCCESS);
        CHECK(count == sizeof page && ((char *)data)[0] == 'x');
        CHECK_KR(vm_deallocate(SELF, data, count), KERN_SUCCESS);
    }
}

static void test_own_task(void)
{
    call_many(SELF, (vm_address_t)page); /* the allocators settle */
    long before = test_status_kb(getpid(), "VmSize");
    call_many(SELF, (vm_address_t)page);
    long grown = test_status_kb(getpid(), "VmSize") - before;
    if (grown >= GROWTH_MAX_KB) {
        fprintf(stderr, "own task: VmSize grew by %ld kB over %d calls\n", grown, 3 * CALLS);
    }
    CHECK(grown < GROWTH_MAX_KB);
}

static void test_other_task(void)
{
    mach_port_t child;
    pid_t pid = test_fork_idle(&child);
    call_many(child, (vm_address_t)page); /* (the child has the page too) */
    long before = test_status_kb(pid, "VmSize");
    call_many(child, (vm_address_t)page);
    long grown = test_status_kb(pid, "VmSize") - before;
    if (grown >= GROWTH_MAX_KB) {
        fprintf(stderr, "other task: VmSize grew by %ld kB over %d calls\n", grown, 3 * CALLS);
    }
    CHECK(grown < GROWTH_MAX_KB);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
}

int main(void)
{
    page[0] = 'x';
    test_own_task();
    test_other_task();
    return test_done("reply_memory");
}
