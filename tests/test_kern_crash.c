/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A task that dies in the middle of kernel calls made on it: another
 * task's calls (task_threads, thread_get_state, thread_suspend, vm_read,
 * task_info, gsync_wait...) end with an error, never hang, and leave no
 * descriptor behind, whenever the SIGKILL lands.
 */
#include <hell.h>
#include <mach.h>
#include <mach/gsync.h>
#include <mach/thread_status.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()
#define ROUNDS 12

static void *spin(void *arg)
{
    for (volatile uint64_t *c = arg;; ++*c) {
    }
    return NULL;
}

/* One round: a child with a spinning thread; calls on it in a loop while
 * it is killed after DELAY_US. */
static void round_once(int delay_us, int *failures_seen)
{
    mach_port_t boot = test_new_port(true);
    static uint64_t counter;
    mach_port_t child;
    pid_t pid = hell_fork(boot, &child);
    if (pid == 0) {
        pthread_t t;
        pthread_create(&t, NULL, spin, &counter);
        for (;;) {
            pause();
        }
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    bool killed = false;
    for (int i = 0; i < 400; i++) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long us = (now.tv_sec - start.tv_sec) * 1000000 + (now.tv_nsec - start.tv_nsec) / 1000;
        if (!killed && us >= delay_us) {
            kill(pid, SIGKILL);
            killed = true;
        }
        thread_array_t list = NULL;
        mach_msg_type_number_t n = 0;
        kern_return_t kr = task_threads(child, &list, &n);
        if (kr == KERN_SUCCESS) {
            for (mach_msg_type_number_t j = 0; j < n; j++) {
                struct i386_thread_state regs;
                mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
                kern_return_t k2 = thread_suspend(list[j]);
                (void)thread_get_state(list[j], i386_THREAD_STATE, (thread_state_t)&regs,
                                       &count);
                if (k2 == KERN_SUCCESS) {
                    (void)thread_resume(list[j]);
                }
                mach_port_deallocate(SELF, list[j]);
            }
            if (n > 0) {
                vm_deallocate(SELF, (vm_address_t)list, n * sizeof *list);
            }
        } else {
            (*failures_seen)++;
        }
        vm_offset_t data;
        mach_msg_type_number_t count;
        if (vm_read(child, (vm_address_t)&counter & ~(vm_address_t)4095, 4096, &data, &count) ==
            KERN_SUCCESS) {
            vm_deallocate(SELF, data, count);
        }
        task_basic_info_data_t info;
        count = TASK_BASIC_INFO_COUNT;
        (void)task_info(child, TASK_BASIC_INFO, (task_info_t)&info, &count);
        /* A remote wait that the death must end. */
        (void)gsync_wait(child, (vm_address_t)&counter, 12345, 0, 0, 0);
        if (killed && kr != KERN_SUCCESS) {
            break; /* it is dead and its port says so */
        }
    }
    if (!killed) {
        kill(pid, SIGKILL);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
    test_await_dead_name(child, 1000);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

int main(void)
{
    /* The first round starts the watchdog and the reaper. */
    int failures = 0;
    round_once(1000, &failures);
    int fds = test_count_fds();
    for (int r = 0; r < ROUNDS; r++) {
        round_once(500 + r * 1500, &failures);
    }
    CHECK(failures > 0); /* the deaths were seen */
    for (int i = 0; i < 200 && test_count_fds() != fds; i++) {
        usleep(10000);
    }
    CHECK(test_count_fds() == fds);
    return test_done("kern_crash");
}
