/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The default processor set, as GNU Mach without MACH_HOST has it: its
 * name and control ports, the tasks and threads in it (the kernel's task
 * first, then every task created through Mach), its policies and maximum
 * priority, the calls that would move tasks and threads between sets
 * (KERN_FAILURE), and the new-task notification.
 *
 * Run twice: in a process of its own, which is its own kernel (its
 * privileged host port made with hell_host_priv_create), and as a task of
 * an instance given machd's privileged host port, where machd keeps the
 * list and the set.
 */
#include <hell.h>
#include <mach/mig_errors.h>
#include <mach/policy.h>
#include <mach/processor_info.h>
#include <mach/thread_status.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include "test.h"

#define SELF mach_task_self()

static bool list_has(const mach_port_t *list, mach_msg_type_number_t n, mach_port_t name)
{
    for (mach_msg_type_number_t i = 0; i < n; i++) {
        if (list[i] == name) {
            return true;
        }
    }
    return false;
}

static void list_free(mach_port_t *list, mach_msg_type_number_t n)
{
    for (mach_msg_type_number_t i = 0; i < n; i++) {
        if (MACH_PORT_VALID(list[i])) {
            CHECK_KR(mach_port_deallocate(SELF, list[i]), KERN_SUCCESS);
        }
    }
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)list, n * sizeof *list), KERN_SUCCESS);
}

/* Whether TASK is listed in SET now. */
static bool set_lists(mach_port_t set, mach_port_t task)
{
    task_array_t tasks;
    mach_msg_type_number_t n;
    CHECK_KR(processor_set_tasks(set, &tasks, &n), KERN_SUCCESS);
    bool found = list_has(tasks, n, task);
    list_free(tasks, n);
    return found;
}

/* The name port, from the host and as the assignment of tasks and
 * threads, is one port; the privileged host port turns it into the
 * control port. */
static void check_ports(mach_port_t priv, bool kernel_is_self, mach_port_t *name,
                        mach_port_t *control)
{
    mach_port_t host = mach_host_self();
    processor_set_name_array_t sets;
    mach_msg_type_number_t n;
    CHECK_KR(host_processor_sets(host, &sets, &n), KERN_SUCCESS);
    CHECK(n == 1);
    *name = sets[0];
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)sets, n * sizeof *sets), KERN_SUCCESS);
    mach_port_t same;
    CHECK_KR(processor_set_default(host, &same), KERN_SUCCESS);
    CHECK(same == *name);
    CHECK_KR(task_get_assignment(SELF, &same), KERN_SUCCESS);
    CHECK(same == *name);
    CHECK_KR(thread_get_assignment(mach_thread_self(), &same), KERN_SUCCESS);
    CHECK(same == *name);
    CHECK_KR(task_get_assignment(host, &same), KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_get_assignment(host, &same), KERN_INVALID_ARGUMENT);

    /* One check in GNU Mach: an unprivileged host, or no set's port. */
    CHECK_KR(host_processor_set_priv(host, *name, control), KERN_INVALID_ARGUMENT);
    CHECK_KR(host_processor_set_priv(priv, host, control), KERN_INVALID_ARGUMENT);
    CHECK_KR(host_processor_set_priv(priv, *name, control), KERN_SUCCESS);
    CHECK(MACH_PORT_VALID(*control) && *control != *name);
    CHECK_KR(host_processor_set_priv(priv, *control, &same), KERN_SUCCESS);
    CHECK(same == *control);

    struct processor_set_basic_info basic;
    mach_msg_type_number_t count = PROCESSOR_SET_BASIC_INFO_COUNT;
    CHECK_KR(processor_set_info(*control, PROCESSOR_SET_BASIC_INFO, &host, (processor_set_info_t)&basic,
                                &count),
             KERN_SUCCESS);
    CHECK(basic.task_count >= (kernel_is_self ? 1 : 2)); /* the kernel's, this one */
}

/* Tasks: the kernel's first, then those created, until they die. */
static void check_tasks(mach_port_t name, mach_port_t control, bool kernel_is_self)
{
    task_array_t tasks;
    mach_msg_type_number_t n;
    CHECK_KR(processor_set_tasks(name, &tasks, &n), KERN_INVALID_ARGUMENT);
    CHECK_KR(processor_set_tasks(control, &tasks, &n), KERN_SUCCESS);
    CHECK(n >= 1);
    CHECK(kernel_is_self ? tasks[0] == SELF : tasks[0] != SELF && list_has(tasks, n, SELF));
    list_free(tasks, n);

    mach_port_t child;
    pid_t pid = test_fork_idle(&child);
    CHECK(set_lists(control, child));
    mach_port_t empty;
    CHECK_KR(task_create(SELF, FALSE, &empty), KERN_SUCCESS);
    CHECK(set_lists(control, empty));

    /* Their threads, and ours, are the set's. */
    thread_array_t threads, theirs;
    mach_msg_type_number_t nthreads, ntheirs;
    CHECK_KR(processor_set_threads(name, &threads, &nthreads), KERN_INVALID_ARGUMENT);
    CHECK_KR(processor_set_threads(control, &threads, &nthreads), KERN_SUCCESS);
    mach_port_t me = mach_thread_self();
    CHECK(list_has(threads, nthreads, me));
    CHECK_KR(task_threads(child, &theirs, &ntheirs), KERN_SUCCESS);
    CHECK(ntheirs == 1);
    for (mach_msg_type_number_t i = 0; i < ntheirs; i++) {
        CHECK(list_has(threads, nthreads, theirs[i]));
    }
    list_free(theirs, ntheirs);
    list_free(threads, nthreads);
    CHECK_KR(mach_port_deallocate(SELF, me), KERN_SUCCESS);

    /* A task that dies leaves the set. */
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_KR(task_terminate(empty), KERN_SUCCESS);
    bool gone = false;
    for (int i = 0; i < 500 && !gone; i++) {
        gone = !set_lists(control, child) && !set_lists(control, empty);
        if (!gone) {
            usleep(10000);
        }
    }
    CHECK(gone);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, empty), KERN_SUCCESS);
}

/* The set's counts now (processor_set_info). */
static struct processor_set_basic_info basic_info(mach_port_t set)
{
    struct processor_set_basic_info basic = {0};
    mach_msg_type_number_t count = PROCESSOR_SET_BASIC_INFO_COUNT;
    mach_port_t host;
    CHECK_KR(processor_set_info(set, PROCESSOR_SET_BASIC_INFO, &host,
                                (processor_set_info_t)&basic, &count),
             KERN_SUCCESS);
    return basic;
}

/* Whether the counts of the set are those of its tasks now: as many
 * tasks as processor_set_tasks lists, as many threads as task_threads of
 * each lists.  *THREADS gets the thread count. */
static bool counts_exact(mach_port_t control, integer_t *threads)
{
    struct processor_set_basic_info basic = basic_info(control);
    task_array_t tasks;
    mach_msg_type_number_t n;
    CHECK_KR(processor_set_tasks(control, &tasks, &n), KERN_SUCCESS);
    integer_t sum = 0;
    for (mach_msg_type_number_t i = 0; i < n; i++) {
        sum += (integer_t)test_thread_count(tasks[i]);
    }
    list_free(tasks, n);
    *threads = basic.thread_count;
    return basic.task_count == (integer_t)n && basic.thread_count == sum;
}

/* Waits (5 s at most) until the set counts exactly its tasks' threads
 * (counts_exact) while CHILD has WANT of them.  The whole count is not
 * compared with a number taken earlier: a helper thread another task
 * starts is listed, for a moment, under its program's name. */
static bool wait_counts(mach_port_t control, mach_port_t child, mach_msg_type_number_t want)
{
    for (int i = 0; i < 500; i++) {
        integer_t total;
        if (test_thread_count(child) == want && counts_exact(control, &total)) {
            return true;
        }
        usleep(10000);
    }
    return false;
}

#define EXTRA_THREADS 3

/* processor_set_info counts every Mach thread of the set's tasks, none of
 * libmach's own: a child's new threads add exactly their number. */
static void check_counts(mach_port_t control)
{
    uint8_t *code = test_spin_page();
    mach_port_t child;
    pid_t pid = test_fork_idle(&child); /* (with the code: a copy of us) */
    /* Tasks whose first thread is libmach's: none of theirs counts. */
    mach_port_t empty, copy;
    CHECK_KR(task_create(SELF, FALSE, &empty), KERN_SUCCESS);
    CHECK_KR(task_create(SELF, TRUE, &copy), KERN_SUCCESS);
    CHECK(test_thread_count(empty) == 0 && test_thread_count(copy) == 0);
    mach_msg_type_number_t base = test_thread_count(child);
    CHECK(wait_counts(control, child, base));
    mach_port_t threads[EXTRA_THREADS];
    vm_address_t stack = 0;
    CHECK_KR(vm_allocate(child, &stack, 4096 * EXTRA_THREADS, TRUE), KERN_SUCCESS);
    for (int i = 0; i < EXTRA_THREADS; i++) {
        threads[i] = test_start_thread(child, (uint64_t)(uintptr_t)(code + TEST_SPIN_LOOP),
                                       stack + 4096 * (vm_address_t)(i + 1) - 64);
    }
    CHECK(wait_counts(control, child, base + EXTRA_THREADS));
    for (int i = 0; i < EXTRA_THREADS; i++) {
        CHECK_KR(thread_terminate(threads[i]), KERN_SUCCESS);
        CHECK_KR(mach_port_deallocate(SELF, threads[i]), KERN_SUCCESS);
    }
    CHECK(wait_counts(control, child, base));
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    CHECK(waitpid(pid, NULL, 0) == pid);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(task_terminate(empty), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, empty), KERN_SUCCESS);
    CHECK_KR(task_terminate(copy), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, copy), KERN_SUCCESS);
    munmap(code, 4096);
}

/* Policies and priorities; the calls GNU Mach refuses without MACH_HOST. */
static void check_scheduling(mach_port_t priv, mach_port_t name, mach_port_t control)
{
    mach_port_t host = mach_host_self();
    mach_port_t thread = mach_thread_self();
    mach_port_t new_set, new_name;
    CHECK_KR(processor_set_create(host, &new_set, &new_name), KERN_FAILURE);
    CHECK_KR(processor_set_destroy(control), KERN_FAILURE);
    CHECK_KR(task_assign(SELF, control, FALSE), KERN_FAILURE);
    CHECK_KR(task_assign_default(SELF, FALSE), KERN_FAILURE);
    CHECK_KR(thread_assign(thread, control), KERN_FAILURE);
    CHECK_KR(thread_assign_default(thread), KERN_FAILURE);
    CHECK_KR(task_ras_control(SELF, 0, 0, 0), KERN_FAILURE);

    CHECK_KR(processor_set_max_priority(name, 10, FALSE), KERN_INVALID_ARGUMENT);
    CHECK_KR(processor_set_max_priority(control, -1, FALSE), KERN_INVALID_ARGUMENT);
    CHECK_KR(processor_set_max_priority(control, 10, FALSE), KERN_SUCCESS);
    struct processor_set_sched_info sched;
    mach_msg_type_number_t count = PROCESSOR_SET_SCHED_INFO_COUNT;
    CHECK_KR(processor_set_info(name, PROCESSOR_SET_SCHED_INFO, &host, (processor_set_info_t)&sched,
                                &count),
             KERN_SUCCESS);
    CHECK(sched.max_priority == 10 && sched.policies == POLICY_TIMESHARE);

    /* Fixed priority only once the set enables it. */
    CHECK_KR(thread_policy(thread, 7, 0), KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_policy(thread, POLICY_FIXEDPRI, 50), KERN_FAILURE);
    CHECK_KR(processor_set_policy_enable(name, POLICY_FIXEDPRI), KERN_INVALID_ARGUMENT);
    CHECK_KR(processor_set_policy_enable(control, 7), KERN_INVALID_ARGUMENT);
    CHECK_KR(processor_set_policy_enable(control, POLICY_FIXEDPRI), KERN_SUCCESS);
    CHECK_KR(thread_policy(thread, POLICY_FIXEDPRI, 45), KERN_SUCCESS);
    struct thread_sched_info tsched;
    count = THREAD_SCHED_INFO_COUNT;
    CHECK_KR(thread_info(thread, THREAD_SCHED_INFO, (thread_info_t)&tsched, &count),
             KERN_SUCCESS);
    CHECK(tsched.policy == POLICY_FIXEDPRI && tsched.data == 50); /* 45 ms: 5 ticks */
    CHECK_KR(processor_set_policy_disable(control, POLICY_TIMESHARE, FALSE),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(processor_set_policy_disable(control, POLICY_FIXEDPRI, FALSE), KERN_SUCCESS);
    CHECK_KR(thread_policy(thread, POLICY_TIMESHARE, 0), KERN_SUCCESS);
    CHECK_KR(thread_policy(thread, POLICY_FIXEDPRI, 50), KERN_FAILURE);

    CHECK_KR(thread_max_priority(thread, name, 30), KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_max_priority(thread, control, 99), KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_max_priority(thread, control, 30), KERN_SUCCESS);
    CHECK_KR(thread_info(thread, THREAD_SCHED_INFO, (thread_info_t)&tsched, &count),
             KERN_SUCCESS);
    CHECK(tsched.max_priority == 30 && tsched.base_priority == 30);

    CHECK_KR(thread_depress_abort(thread), KERN_SUCCESS);
    CHECK_KR(thread_depress_abort(host), KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_wire(host, thread, TRUE), KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_wire(priv, thread, TRUE), KERN_SUCCESS);
    CHECK_KR(thread_wire(priv, thread, FALSE), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, thread), KERN_SUCCESS);
}

/* register_new_task_notification: privileged, once for good; each task
 * created then is announced with its parent. */
static void check_new_task_notification(mach_port_t priv)
{
    mach_port_t notify = test_new_port(false);
    CHECK_KR(register_new_task_notification(mach_host_self(), notify, MACH_MSG_TYPE_MAKE_SEND),
             KERN_INVALID_HOST);
    CHECK_KR(register_new_task_notification(priv, notify, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    CHECK_KR(register_new_task_notification(priv, notify, MACH_MSG_TYPE_MAKE_SEND),
             KERN_NO_ACCESS);

    mach_port_t child;
    CHECK_KR(task_create(SELF, FALSE, &child), KERN_SUCCESS);
    struct {
        mach_msg_header_t head;
        mach_msg_type_t task_type;
        mach_port_name_inlined_t task;
        mach_msg_type_t parent_type;
        mach_port_name_inlined_t parent;
        char trailer[64];
    } msg;
    CHECK_KR(mach_msg(&msg.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof msg, notify, 10000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(msg.head.msgh_id == 4400 && (msg.head.msgh_bits & MACH_MSGH_BITS_COMPLEX) &&
          msg.head.msgh_size == 64 && msg.head.msgh_remote_port == MACH_PORT_NULL);
    CHECK(msg.task_type.msgt_name == MACH_MSG_TYPE_PORT_SEND &&
          msg.parent_type.msgt_name == MACH_MSG_TYPE_PORT_SEND);
    CHECK(msg.task.name == child && msg.parent.name == SELF);
    CHECK_KR(mach_port_deallocate(SELF, msg.task.name), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, msg.parent.name), KERN_SUCCESS);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
}

static void check_all(mach_port_t priv, bool kernel_is_self)
{
    mach_port_t name, control;
    check_ports(priv, kernel_is_self, &name, &control);
    check_tasks(name, control, kernel_is_self);
    check_counts(control);
    check_scheduling(priv, name, control);
    check_new_task_notification(priv);
    CHECK_KR(mach_port_deallocate(SELF, control), KERN_SUCCESS);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--in-instance") == 0) {
        check_all((mach_port_t)atoi(argv[2]), false);
        return test_done("pset (in an instance)");
    }
    mach_port_t priv = hell_host_priv_create(NULL);
    CHECK(MACH_PORT_VALID(priv));
    check_all(priv, true);
    CHECK(test_rerun_in_instance_as("--in-instance", true) == 0);
    return test_done("pset");
}
