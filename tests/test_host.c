/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The host port every task holds (mach_host.defs, mach_i386.defs), served
 * by the task itself and, for a host port another task sends us, by that
 * task's service thread: host_info flavors and counts, time, uptime, the
 * kernel version, the default processor set, the privileged calls refused
 * on the unprivileged port; and the scheduling and print traps.
 */
#include <hell.h>
#include <mach.h>
#include <mach/mach_i386.h>
#include <mach/processor_info.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()

static void test_info(mach_port_t host)
{
    host_basic_info_data_t basic;
    mach_msg_type_number_t count = HOST_BASIC_INFO_COUNT;
    CHECK_KR(host_info(host, HOST_BASIC_INFO, (host_info_t)&basic, &count), KERN_SUCCESS);
    CHECK(count == HOST_BASIC_INFO_COUNT);
    CHECK(basic.max_cpus == sysconf(_SC_NPROCESSORS_CONF));
    CHECK(basic.avail_cpus >= 1 && basic.avail_cpus <= basic.max_cpus);
    CHECK(basic.memory_size == (rpc_vm_size_t)sysconf(_SC_PHYS_PAGES) * 4096);
    CHECK(basic.cpu_type == CPU_TYPE_X86_64);
    count = HOST_BASIC_INFO_COUNT - 1;
    CHECK_KR(host_info(host, HOST_BASIC_INFO, (host_info_t)&basic, &count), KERN_FAILURE);

    integer_t slots[64];
    count = 64;
    CHECK_KR(host_info(host, HOST_PROCESSOR_SLOTS, slots, &count), KERN_SUCCESS);
    CHECK(count == (mach_msg_type_number_t)basic.max_cpus && slots[count - 1] == (integer_t)count - 1);

    host_sched_info_data_t sched;
    count = HOST_SCHED_INFO_COUNT;
    CHECK_KR(host_info(host, HOST_SCHED_INFO, (host_info_t)&sched, &count), KERN_SUCCESS);
    CHECK(sched.min_timeout > 0 && sched.min_quantum > 0);

    host_load_info_data_t load;
    count = HOST_LOAD_INFO_COUNT;
    CHECK_KR(host_info(host, HOST_LOAD_INFO, (host_info_t)&load, &count), KERN_SUCCESS);
    CHECK(load.avenrun[0] >= 0 && load.mach_factor[0] >= 0);

    count = 64;
    CHECK_KR(host_info(host, 99, slots, &count), KERN_INVALID_ARGUMENT);
    /* Not a host port. */
    count = HOST_BASIC_INFO_COUNT;
    CHECK_KR(host_info(SELF, HOST_BASIC_INFO, (host_info_t)&basic, &count), KERN_INVALID_HOST);
}

static void test_time_and_version(mach_port_t host)
{
    time_value_t t;
    struct timespec before, after;
    clock_gettime(CLOCK_REALTIME, &before);
    CHECK_KR(host_get_time(host, &t), KERN_SUCCESS);
    time_value64_t t64;
    CHECK_KR(host_get_time64(host, &t64), KERN_SUCCESS);
    clock_gettime(CLOCK_REALTIME, &after);
    CHECK(t.seconds >= before.tv_sec && t.seconds <= after.tv_sec);
    CHECK(t.microseconds >= 0 && t.microseconds < 1000000);
    CHECK(t64.seconds >= before.tv_sec && t64.seconds <= after.tv_sec);
    CHECK(t64.nanoseconds >= 0 && t64.nanoseconds < 1000000000);

    time_value64_t up;
    struct timespec boot;
    CHECK_KR(host_get_uptime64(host, &up), KERN_SUCCESS);
    clock_gettime(CLOCK_BOOTTIME, &boot);
    CHECK(up.seconds > 0 && up.seconds <= boot.tv_sec);

    kernel_version_t version;
    memset(version, 0, sizeof version);
    CHECK_KR(host_get_kernel_version(host, version), KERN_SUCCESS);
    CHECK(strstr(version, "HELL") != NULL && strstr(version, "GNU Mach") != NULL);
    /* HELL's version, as the hell command gives it ("hell (HELL) V"). */
    char out[256] = {0};
    const char *const args[] = {"--version", NULL};
    CHECK(test_hell_output(out, sizeof out, args) == 0);
    const char *number = strstr(out, "(HELL) ");
    CHECK(number != NULL);
    if (number != NULL) {
        char want[64];
        snprintf(want, sizeof want, "HELL %.*s:", (int)strcspn(number + 7, "\n"), number + 7);
        CHECK(strstr(version, want) != NULL);
    }

    vm_size_t xsize = 0;
    CHECK_KR(i386_get_xstate_size(host, &xsize), KERN_SUCCESS);
    CHECK(xsize >= 16 + 512 + 64 && xsize % 4 == 0);
}

static void test_processor_set(mach_port_t host)
{
    mach_port_t pset = MACH_PORT_NULL;
    CHECK_KR(processor_set_default(host, &pset), KERN_SUCCESS);
    CHECK(MACH_PORT_VALID(pset));
    processor_set_basic_info_data_t basic;
    mach_msg_type_number_t count = PROCESSOR_SET_BASIC_INFO_COUNT;
    mach_port_t back = MACH_PORT_NULL;
    CHECK_KR(processor_set_info(pset, PROCESSOR_SET_BASIC_INFO, &back, (processor_set_info_t)&basic,
                                &count),
             KERN_SUCCESS);
    CHECK(basic.processor_count == sysconf(_SC_NPROCESSORS_ONLN));
    CHECK(back == host); /* the same host port, under the same name */
    CHECK_KR(mach_port_deallocate(SELF, back), KERN_SUCCESS);
    processor_set_sched_info_data_t sched;
    count = PROCESSOR_SET_SCHED_INFO_COUNT;
    CHECK_KR(processor_set_info(pset, PROCESSOR_SET_SCHED_INFO, &back,
                                (processor_set_info_t)&sched, &count),
             KERN_SUCCESS);
    CHECK(sched.policies != 0);
    CHECK_KR(mach_port_deallocate(SELF, back), KERN_SUCCESS);
    count = PROCESSOR_SET_BASIC_INFO_COUNT;
    CHECK_KR(processor_set_info(host, PROCESSOR_SET_BASIC_INFO, &back,
                                (processor_set_info_t)&basic, &count),
             KERN_INVALID_ARGUMENT);

    processor_set_name_array_t sets = NULL;
    mach_msg_type_number_t nsets = 0;
    CHECK_KR(host_processor_sets(host, &sets, &nsets), KERN_SUCCESS);
    CHECK(nsets == 1 && sets != NULL && sets[0] == pset);
    if (sets != NULL) {
        CHECK_KR(mach_port_deallocate(SELF, sets[0]), KERN_SUCCESS);
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)sets, nsets * sizeof *sets), KERN_SUCCESS);
    }
    CHECK_KR(mach_port_deallocate(SELF, pset), KERN_SUCCESS);
}

/* The unprivileged host port: every privileged call is refused. */
static void test_privileged(mach_port_t host)
{
    CHECK_KR(host_reboot(host, 0), KERN_INVALID_HOST);
    time_value_t t = {0}, old;
    CHECK_KR(host_set_time(host, t), KERN_INVALID_HOST);
    CHECK_KR(host_adjust_time(host, t, &old), KERN_INVALID_HOST);
    processor_array_t cpus;
    mach_msg_type_number_t n;
    CHECK_KR(host_processors(host, &cpus, &n), KERN_INVALID_ARGUMENT);
}

/* Another task's host port, served by its service thread. */
static void test_remote(void)
{
    mach_port_t boot = test_new_port(true);
    mach_port_t child;
    pid_t pid = hell_fork(boot, &child);
    if (pid == 0) {
        mach_port_t parent;
        task_get_bootstrap_port(mach_task_self(), &parent);
        test_send_port(parent, mach_host_self(), MACH_MSG_TYPE_MOVE_SEND, 1);
        pause();
        _exit(0);
    }
    mach_port_t theirs = MACH_PORT_NULL;
    mach_msg_type_name_t type = 0;
    CHECK_KR(test_receive_port(boot, 10000, &theirs, &type), MACH_MSG_SUCCESS);
    CHECK(MACH_PORT_VALID(theirs) && theirs != mach_host_self());
    kernel_version_t version;
    CHECK_KR(host_get_kernel_version(theirs, version), KERN_SUCCESS);
    CHECK(strstr(version, "HELL") != NULL);
    test_info(theirs);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_KR(host_get_kernel_version(theirs, version), MACH_SEND_INVALID_DEST);
    CHECK_KR(mach_port_mod_refs(SELF, theirs, MACH_PORT_RIGHT_DEAD_NAME, -1), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

static void test_traps(void)
{
    CHECK(swtch() == TRUE);
    CHECK(swtch_pri(0) == TRUE);
    CHECK_KR(thread_switch(MACH_PORT_NULL, SWITCH_OPTION_NONE, 0), KERN_SUCCESS);
    CHECK_KR(thread_switch(MACH_PORT_NULL, SWITCH_OPTION_DEPRESS, 10), KERN_SUCCESS);
    CHECK_KR(thread_switch(MACH_PORT_NULL, 7, 0), KERN_INVALID_ARGUMENT);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK_KR(thread_switch(MACH_PORT_NULL, SWITCH_OPTION_WAIT, 20), KERN_SUCCESS);
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) >= 20000000L);

    /* mach_print writes to the console: here, standard error. */
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    int saved = dup(2);
    dup2(pipefd[1], 2);
    mach_print("hello from mach_print\n");
    dup2(saved, 2);
    close(saved);
    close(pipefd[1]);
    char buf[64] = {0};
    CHECK(read(pipefd[0], buf, sizeof buf - 1) == 22);
    CHECK(strcmp(buf, "hello from mach_print\n") == 0);
    close(pipefd[0]);
}

int main(void)
{
    mach_port_t host = mach_host_self();
    CHECK(MACH_PORT_VALID(host));
    test_info(host);
    test_time_and_version(host);
    test_processor_set(host);
    test_privileged(host);
    test_remote();
    test_traps();
    CHECK_KR(mach_port_deallocate(SELF, host), KERN_SUCCESS);
    return test_done("host");
}
