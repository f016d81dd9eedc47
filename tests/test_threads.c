/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Threads and tasks as kernel objects: task_threads lists exactly the
 * task's threads (those made by plain pthread_create too, never
 * libmach's hidden ones), in this task and in another one through its
 * task port; a thread's port dies with it; thread_info and task_info
 * report Linux's view with GNU Mach's layouts and count rules; a thread's
 * MIG reply port goes with it.
 */
#include <hell.h>
#include <mach.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()
#define NTHREADS 3

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate = PTHREAD_COND_INITIALIZER;
static bool open_gate;
static mach_port_t self_ports[NTHREADS];

static void *sleeper(void *arg)
{
    int i = (int)(intptr_t)arg;
    if (i == 0) {
        self_ports[0] = mach_thread_self(); /* one asks for its own port */
    }
    pthread_mutex_lock(&gate_lock);
    while (!open_gate) {
        pthread_cond_wait(&gate, &gate_lock);
    }
    pthread_mutex_unlock(&gate_lock);
    return NULL;
}

static void *pauser(void *arg)
{
    pause();
    return arg;
}

static thread_array_t list_threads(mach_port_t task, mach_msg_type_number_t *n)
{
    thread_array_t list = NULL;
    *n = 0;
    CHECK_KR(task_threads(task, &list, n), KERN_SUCCESS);
    return list;
}

static void release_list(thread_array_t list, mach_msg_type_number_t n)
{
    for (mach_msg_type_number_t i = 0; i < n; i++) {
        CHECK_KR(mach_port_deallocate(SELF, list[i]), KERN_SUCCESS);
    }
    if (n > 0) {
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)list, n * sizeof *list), KERN_SUCCESS);
    }
}

/* Starts libmach's hidden threads: the watchdog (a sender waits on a
 * full queue) and the service thread (our task port leaves the task). */
static void start_helpers(void)
{
    mach_port_t p;
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(test_send_port(p, SELF, MACH_MSG_TYPE_COPY_SEND, 1), MACH_MSG_SUCCESS);
    mach_msg_return_t mr = MACH_MSG_SUCCESS;
    for (int i = 0; i < 10 && mr == MACH_MSG_SUCCESS; i++) {
        mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                               .msgh_remote_port = p};
        mr = mach_msg(&m, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof m, 0, MACH_PORT_NULL, 1,
                      MACH_PORT_NULL);
    }
    CHECK_KR(mr, MACH_SEND_TIMED_OUT);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

static void test_list(void)
{
    mach_msg_type_number_t n;
    thread_array_t list = list_threads(SELF, &n);
    CHECK(n == 1); /* main alone: no helper listed */
    mach_port_t me = mach_thread_self();
    CHECK(n == 1 && list[0] == me);
    release_list(list, n);

    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        CHECK(pthread_create(&th[i], NULL, sleeper, (void *)(intptr_t)i) == 0);
    }
    while (self_ports[0] == MACH_PORT_NULL) {
        usleep(1000);
    }
    list = list_threads(SELF, &n);
    CHECK(n == NTHREADS + 1);
    int found_me = 0, found_zero = 0;
    for (mach_msg_type_number_t i = 0; i < n; i++) {
        found_me += list[i] == me;
        found_zero += list[i] == self_ports[0];
    }
    CHECK(found_me == 1 && found_zero == 1);

    /* thread_info on a sleeper and on ourselves. */
    thread_basic_info_data_t info;
    mach_msg_type_number_t count;
    /* (It reaches its wait soon after it took its port.) */
    for (int i = 0; i < 2000; i++) {
        count = THREAD_BASIC_INFO_COUNT;
        CHECK_KR(thread_info(self_ports[0], THREAD_BASIC_INFO, (thread_info_t)&info, &count),
                 KERN_SUCCESS);
        if (info.run_state == TH_STATE_WAITING) {
            break;
        }
        usleep(1000);
    }
    CHECK(count == THREAD_BASIC_INFO_COUNT);
    CHECK(info.run_state == TH_STATE_WAITING && info.suspend_count == 0);
    CHECK(info.creation_time64.seconds > 0);
    count = THREAD_BASIC_INFO_COUNT;
    CHECK_KR(thread_info(me, THREAD_BASIC_INFO, (thread_info_t)&info, &count), KERN_SUCCESS);
    CHECK(info.run_state == TH_STATE_RUNNING);
    /* GNU Mach's count before the 64-bit times is accepted. */
    count = (mach_msg_type_number_t)(offsetof(thread_basic_info_data_t, user_time64) /
                                     sizeof(natural_t));
    mach_msg_type_number_t old = count;
    CHECK_KR(thread_info(me, THREAD_BASIC_INFO, (thread_info_t)&info, &count), KERN_SUCCESS);
    CHECK(count == old);
    count = 3;
    CHECK_KR(thread_info(me, THREAD_BASIC_INFO, (thread_info_t)&info, &count),
             KERN_INVALID_ARGUMENT);
    count = THREAD_BASIC_INFO_COUNT;
    CHECK_KR(thread_info(me, 77, (thread_info_t)&info, &count), KERN_INVALID_ARGUMENT);
    CHECK_KR(thread_info(SELF, THREAD_BASIC_INFO, (thread_info_t)&info, &count),
             KERN_INVALID_ARGUMENT);

    /* The threads end: their ports die, the list shrinks back. */
    pthread_mutex_lock(&gate_lock);
    open_gate = true;
    pthread_cond_broadcast(&gate);
    pthread_mutex_unlock(&gate_lock);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    mach_msg_type_number_t n2;
    thread_array_t list2 = list_threads(SELF, &n2);
    CHECK(n2 == 1 && list2[0] == me);
    release_list(list2, n2);
    for (mach_msg_type_number_t i = 0; i < n; i++) {
        mach_port_type_t type = 0;
        CHECK_KR(mach_port_type(SELF, list[i], &type), KERN_SUCCESS);
        CHECK(list[i] == me ? type == MACH_PORT_TYPE_SEND : type == MACH_PORT_TYPE_DEAD_NAME);
    }
    /* The listing's references, and the one self_ports[0] took. */
    CHECK_KR(mach_port_mod_refs(SELF, self_ports[0], MACH_PORT_RIGHT_DEAD_NAME, -1),
             KERN_SUCCESS);
    for (mach_msg_type_number_t i = 0; i < n; i++) {
        CHECK_KR(mach_port_mod_refs(SELF, list[i],
                                    list[i] == me ? MACH_PORT_RIGHT_SEND
                                                  : MACH_PORT_RIGHT_DEAD_NAME,
                                    -1),
                 KERN_SUCCESS);
    }
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)list, n * sizeof *list), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, me), KERN_SUCCESS);
}

static void test_task_info(void)
{
    task_basic_info_data_t basic;
    mach_msg_type_number_t count = TASK_BASIC_INFO_COUNT;
    CHECK_KR(task_info(SELF, TASK_BASIC_INFO, (task_info_t)&basic, &count), KERN_SUCCESS);
    CHECK(count == TASK_BASIC_INFO_COUNT);
    CHECK(basic.virtual_size > basic.resident_size && basic.resident_size > 0);
    CHECK(basic.suspend_count == 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    CHECK(basic.creation_time64.seconds > 0 && basic.creation_time64.seconds <= now.tv_sec);
    CHECK(basic.creation_time.seconds == basic.creation_time64.seconds);

    task_events_info_data_t ev1, ev2;
    count = TASK_EVENTS_INFO_COUNT;
    CHECK_KR(task_info(SELF, TASK_EVENTS_INFO, (task_info_t)&ev1, &count), KERN_SUCCESS);
    count = TASK_EVENTS_INFO_COUNT;
    CHECK_KR(task_info(SELF, TASK_EVENTS_INFO, (task_info_t)&ev2, &count), KERN_SUCCESS);
    /* The first task_info RPC itself: one request sent, one reply
     * received (a call on our own task port is served in this thread). */
    CHECK(ev2.messages_sent >= ev1.messages_sent + 1);
    CHECK(ev2.messages_received >= ev1.messages_received + 1);
    CHECK(ev2.faults >= ev1.faults);

    /* Burn some CPU: the live threads' user time grows. */
    task_thread_times_info_data_t t1, t2;
    count = TASK_THREAD_TIMES_INFO_COUNT;
    CHECK_KR(task_info(SELF, TASK_THREAD_TIMES_INFO, (task_info_t)&t1, &count), KERN_SUCCESS);
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    volatile unsigned long sink = 0;
    do {
        for (int i = 0; i < 100000; i++) {
            sink += (unsigned long)i;
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    } while ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 < 50);
    count = TASK_THREAD_TIMES_INFO_COUNT;
    CHECK_KR(task_info(SELF, TASK_THREAD_TIMES_INFO, (task_info_t)&t2, &count), KERN_SUCCESS);
    int64_t before = t1.user_time64.seconds * 1000000000 + t1.user_time64.nanoseconds +
                     t1.system_time64.seconds * 1000000000 + t1.system_time64.nanoseconds;
    int64_t after = t2.user_time64.seconds * 1000000000 + t2.user_time64.nanoseconds +
                    t2.system_time64.seconds * 1000000000 + t2.system_time64.nanoseconds;
    CHECK(after > before);

    count = 2;
    CHECK_KR(task_info(SELF, TASK_BASIC_INFO, (task_info_t)&basic, &count),
             KERN_INVALID_ARGUMENT);
    count = TASK_BASIC_INFO_COUNT;
    CHECK_KR(task_info(SELF, 99, (task_info_t)&basic, &count), KERN_INVALID_ARGUMENT);
}

/* Another task's threads, through its task port: its main thread and
 * the one it started, not its service thread. */
static void test_remote(void)
{
    mach_port_t boot = test_new_port(true);
    mach_port_t child;
    pid_t pid = hell_fork(boot, &child);
    if (pid == 0) {
        pthread_t t;
        pthread_create(&t, NULL, pauser, NULL);
        mach_port_t parent;
        task_get_bootstrap_port(mach_task_self(), &parent);
        test_send_port(parent, MACH_PORT_NULL, MACH_MSG_TYPE_COPY_SEND, 5);
        pause();
        _exit(0);
    }
    mach_port_t none;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, 10000, &none, &type), MACH_MSG_SUCCESS);
    mach_msg_type_number_t n;
    thread_array_t list = list_threads(child, &n);
    CHECK(n == 2);
    thread_basic_info_data_t info;
    mach_msg_type_number_t count = THREAD_BASIC_INFO_COUNT;
    CHECK(n == 2 && thread_info(list[0], THREAD_BASIC_INFO, (thread_info_t)&info, &count) ==
                        KERN_SUCCESS);
    release_list(list, n);
    task_basic_info_data_t basic;
    count = TASK_BASIC_INFO_COUNT;
    CHECK_KR(task_info(child, TASK_BASIC_INFO, (task_info_t)&basic, &count), KERN_SUCCESS);
    CHECK(basic.resident_size > 0);
    /* task_set_name from another task: the child's Linux name (15
     * characters), which ps shows.  (A simpleroutine: the child's
     * service thread gets to it in its own time.) */
    CHECK_KR(task_set_name(child, "named-by-its-parent"), KERN_SUCCESS);
    char path[64], comm[32] = {0};
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    for (int tries = 0; tries < 500 && strcmp(comm, "named-by-its-pa\n") != 0; tries++) {
        usleep(tries == 0 ? 0 : 10000);
        FILE *f = fopen(path, "r");
        if (f == NULL || fgets(comm, sizeof comm, f) == NULL) {
            comm[0] = '\0';
        }
        if (f != NULL) {
            fclose(f);
        }
    }
    CHECK(strcmp(comm, "named-by-its-pa\n") == 0);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    waitpid(pid, NULL, 0);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

static void test_names_and_priorities(void)
{
    mach_port_t me = mach_thread_self();
    CHECK_KR(thread_set_name(me, "hell-worker"), KERN_SUCCESS);
    kernel_debug_name_t name = {0};
    CHECK_KR(thread_get_name(me, name), KERN_SUCCESS);
    CHECK(strcmp(name, "hell-worker") == 0);
    char comm[32] = {0};
    FILE *f = fopen("/proc/thread-self/comm", "r");
    CHECK(f != NULL && fgets(comm, sizeof comm, f) != NULL);
    if (f != NULL) {
        fclose(f);
    }
    CHECK(strncmp(comm, "hell-worker", 11) == 0);
    CHECK_KR(task_set_name(SELF, "test_threads"), KERN_SUCCESS);
    f = fopen("/proc/self/comm", "r");
    CHECK(f != NULL && fgets(comm, sizeof comm, f) != NULL);
    if (f != NULL) {
        fclose(f);
    }
    CHECK(strcmp(comm, "test_threads\n") == 0); /* served in this thread: done */
    CHECK_KR(task_set_essential(SELF, FALSE), KERN_SUCCESS);

    thread_sched_info_data_t sched;
    mach_msg_type_number_t count = THREAD_SCHED_INFO_COUNT;
    CHECK_KR(thread_info(me, THREAD_SCHED_INFO, (thread_info_t)&sched, &count), KERN_SUCCESS);
    CHECK(sched.base_priority == 25 && sched.max_priority == 25);
    CHECK_KR(thread_priority(me, 30, FALSE), KERN_SUCCESS);
    /* Applied to Linux as a nice value (25 is 0, 49 is 19). */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    CHECK(getpriority(PRIO_PROCESS, (id_t)tid) == 3);
    /* Above its maximum: refused, and held at the maximum. */
    CHECK_KR(thread_priority(me, 10, FALSE), KERN_FAILURE);
    count = THREAD_SCHED_INFO_COUNT;
    CHECK_KR(thread_info(me, THREAD_SCHED_INFO, (thread_info_t)&sched, &count), KERN_SUCCESS);
    CHECK(sched.cur_priority == 25);
    CHECK_KR(thread_priority(me, 10, TRUE), KERN_SUCCESS);
    count = THREAD_SCHED_INFO_COUNT;
    CHECK_KR(thread_info(me, THREAD_SCHED_INFO, (thread_info_t)&sched, &count), KERN_SUCCESS);
    CHECK(sched.cur_priority == 10 && sched.max_priority == 10);
    CHECK_KR(thread_priority(me, 50, FALSE), KERN_INVALID_ARGUMENT);
    CHECK_KR(task_priority(SELF, 40, TRUE), KERN_SUCCESS);
    count = THREAD_SCHED_INFO_COUNT;
    CHECK_KR(thread_info(me, THREAD_SCHED_INFO, (thread_info_t)&sched, &count), KERN_SUCCESS);
    CHECK(sched.cur_priority == 40);
    /* Lower than before: Linux always allows it (raising takes
     * CAP_SYS_NICE, so 10 above may or may not have been applied). */
    CHECK(getpriority(PRIO_PROCESS, (id_t)tid) == 11);
    task_basic_info_data_t basic;
    count = TASK_BASIC_INFO_COUNT;
    CHECK_KR(task_info(SELF, TASK_BASIC_INFO, (task_info_t)&basic, &count), KERN_SUCCESS);
    CHECK(basic.base_priority == 40);
    CHECK_KR(task_priority(SELF, -1, FALSE), KERN_INVALID_ARGUMENT);
    CHECK_KR(mach_port_deallocate(SELF, me), KERN_SUCCESS);
}

/* A MIG call to our own kernel: the calling thread gets a reply port. */
static void *mig_caller(void *arg)
{
    (void)arg;
    task_basic_info_data_t basic;
    mach_msg_type_number_t count = TASK_BASIC_INFO_COUNT;
    CHECK_KR(task_info(SELF, TASK_BASIC_INFO, (task_info_t)&basic, &count), KERN_SUCCESS);
    return NULL;
}

/* Starts and joins N threads that each make a MIG call. */
static void mig_callers(int n)
{
    for (int i = 0; i < n; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, mig_caller, NULL) == 0 && pthread_join(t, NULL) == 0);
    }
}

/* The descriptors of machd (our parent in an instance), once they stop
 * falling (it closes a port's as it hears of the port's end). */
static int machd_fds_settled(void)
{
    int n = test_count_fds_of(getppid());
    for (int i = 0; i < 50; i++) {
        usleep(10000);
        int now = test_count_fds_of(getppid());
        if (now >= n && i >= 10) {
            return now;
        }
        n = now < n ? now : n;
    }
    return n;
}

/* A thread's MIG reply port goes when the thread exits, as glibc's thread
 * exit releases it on the Hurd: threads that come and go (a libports
 * pool that shrinks) leave no name and no descriptor behind, here nor,
 * in an instance, in machd (our parent).  A first round makes what is
 * made once; the second must add nothing (a port kept per thread would
 * add 64 names, 192 descriptors here and 128 in machd). */
static void exited_threads_release_reply_ports(bool in_instance)
{
    mig_callers(64);
    mach_msg_type_number_t names = test_count_names(); /* (its first reply is out of line) */
    int fds = test_count_fds();
    int machd_fds = in_instance ? machd_fds_settled() : 0;
    mig_callers(64);
    CHECK(test_count_names() == names);
    CHECK(test_count_fds() == fds);
    if (in_instance) {
        CHECK(machd_fds_settled() <= machd_fds);
    }
}

static mach_port_t released_reply;
static pthread_mutex_t reply_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reply_cond = PTHREAD_COND_INITIALIZER;
static int reply_step;

/* Makes a MIG call, publishes its reply port, and exits once told to. */
static void *reply_publisher(void *arg)
{
    mig_caller(arg);
    pthread_mutex_lock(&reply_lock);
    released_reply = mig_get_reply_port();
    reply_step = 1;
    pthread_cond_broadcast(&reply_cond);
    while (reply_step != 2) {
        pthread_cond_wait(&reply_cond, &reply_lock);
    }
    pthread_mutex_unlock(&reply_lock);
    return NULL;
}

/* A reply port released by someone else (thread_terminate_release does
 * so) whose name a new port took: the thread's exit leaves the new port. */
static void reused_reply_name_survives(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, reply_publisher, NULL) == 0);
    pthread_mutex_lock(&reply_lock);
    while (reply_step != 1) {
        pthread_cond_wait(&reply_cond, &reply_lock);
    }
    pthread_mutex_unlock(&reply_lock);
    CHECK_KR(mach_port_destroy(SELF, released_reply), KERN_SUCCESS);
    CHECK_KR(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, released_reply),
             KERN_SUCCESS);
    pthread_mutex_lock(&reply_lock);
    reply_step = 2;
    pthread_cond_broadcast(&reply_cond);
    pthread_mutex_unlock(&reply_lock);
    CHECK(pthread_join(t, NULL) == 0);
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(SELF, released_reply, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_RECEIVE);
    CHECK_KR(mach_port_destroy(SELF, released_reply), KERN_SUCCESS);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--in-instance") == 0) {
        exited_threads_release_reply_ports(true);
        return test_done("threads (in an instance)");
    }
    start_helpers();
    test_list();
    test_task_info();
    test_remote();
    test_names_and_priorities();
    exited_threads_release_reply_ports(false);
    reused_reply_name_survives();
    CHECK(test_rerun_in_instance("--in-instance") == 0);
    return test_done("threads");
}
