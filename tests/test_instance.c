/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Instances: `hell start/run/stop` and machd.
 *
 * The program plays two roles.  Without arguments it drives `hell` (in a
 * private HELL_RUNTIME_DIR, as the subreaper that inherits each machd, so
 * it can tell when one has ended); run by `hell run` with --task it is the
 * task, checking what it was given:
 *
 * - two instances at once, a second start of one refused;
 * - a task's exit status, and a program that cannot be executed;
 * - with --priv the privileged host port (name 1, as `${host-port}`) and
 *   the device master port (name 2); without, neither, and the arguments
 *   are left alone; vm_wire through the privileged port wires the memory
 *   of the task it names, the caller's own or another's;
 * - `hell stop` ends a running task and machd, leaving no process;
 * - host_reboot on the privileged port ends its instance, the task that
 *   called it and the processes it made (a child task, a daemon in its own
 *   session) included, while the other instance goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <limits.h>
#include <mach/mig_errors.h>
#include <mach/vm_wire.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define WAIT_MS 10000

/* ---- the task role ---- */

/* What machd ignores or blocks for itself does not reach its tasks. */
static void task_signals(void)
{
    struct sigaction sa;
    CHECK(sigaction(SIGHUP, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    CHECK(sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL);
    sigset_t mask;
    CHECK(sigprocmask(SIG_BLOCK, NULL, &mask) == 0);
    CHECK(!sigismember(&mask, SIGHUP) && !sigismember(&mask, SIGTERM) &&
          !sigismember(&mask, SIGPIPE));
}

/* The processors, through the privileged host port: one port each, as
 * Linux configures them, with GNU Mach's answers. */
static void task_processors(mach_port_t host_priv)
{
    processor_array_t cpus = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(host_processors(mach_host_self(), &cpus, &n), KERN_INVALID_ARGUMENT);
    CHECK_KR(host_processors(host_priv, &cpus, &n), KERN_SUCCESS);
    CHECK(cpus != NULL && (long)n == sysconf(_SC_NPROCESSORS_CONF));
    /* (The default set as the privileged port's server names it.) */
    mach_port_t pset = MACH_PORT_NULL;
    CHECK_KR(processor_set_default(host_priv, &pset), KERN_SUCCESS);
    int running = 0;
    for (mach_msg_type_number_t i = 0; cpus != NULL && i < n; i++) {
        struct processor_basic_info basic;
        mach_msg_type_number_t count = PROCESSOR_BASIC_INFO_COUNT;
        mach_port_t host = MACH_PORT_NULL;
        CHECK_KR(processor_info(cpus[i], PROCESSOR_BASIC_INFO, &host, (processor_info_t)&basic,
                                &count),
                 KERN_SUCCESS);
        CHECK(count == PROCESSOR_BASIC_INFO_COUNT && basic.slot_num == (integer_t)i &&
              basic.is_master == (i == 0) && basic.cpu_type == CPU_TYPE_X86_64);
        running += basic.running != 0;
        CHECK(MACH_PORT_VALID(host));
        mach_port_deallocate(mach_task_self(), host);
        count = PROCESSOR_BASIC_INFO_COUNT - 1;
        CHECK_KR(processor_info(cpus[i], PROCESSOR_BASIC_INFO, &host, (processor_info_t)&basic,
                                &count),
                 KERN_FAILURE);
        mach_port_deallocate(mach_task_self(), host);
        count = PROCESSOR_BASIC_INFO_COUNT;
        CHECK_KR(processor_info(cpus[i], 7, &host, (processor_info_t)&basic, &count),
                 KERN_FAILURE);
        mach_port_deallocate(mach_task_self(), host);
        mach_port_t assigned = MACH_PORT_NULL;
        CHECK_KR(processor_get_assignment(cpus[i], &assigned), KERN_SUCCESS);
        CHECK(assigned == pset); /* the default set's name port */
        mach_port_deallocate(mach_task_self(), assigned);
        CHECK_KR(processor_start(cpus[i]), KERN_FAILURE);
        CHECK_KR(processor_exit(cpus[i]), KERN_FAILURE);
        CHECK_KR(processor_control(cpus[i], (processor_info_t)&basic, 1), KERN_FAILURE);
        CHECK_KR(processor_assign(cpus[i], pset, FALSE), KERN_FAILURE);
    }
    CHECK(running == sysconf(_SC_NPROCESSORS_ONLN));
    /* Asked again: the same ports. */
    processor_array_t again = NULL;
    mach_msg_type_number_t m = 0;
    CHECK_KR(host_processors(host_priv, &again, &m), KERN_SUCCESS);
    CHECK(again != NULL && m == n && memcmp(again, cpus, n * sizeof *cpus) == 0);
    /* Ports that are no processors. */
    struct processor_basic_info basic;
    mach_msg_type_number_t count = PROCESSOR_BASIC_INFO_COUNT;
    mach_port_t host = MACH_PORT_NULL;
    CHECK_KR(processor_info(host_priv, PROCESSOR_BASIC_INFO, &host, (processor_info_t)&basic,
                            &count),
             KERN_INVALID_ARGUMENT);
    if (MACH_PORT_VALID(host)) {
        mach_port_deallocate(mach_task_self(), host);
    }
    mach_port_t assigned;
    CHECK_KR(processor_get_assignment(pset, &assigned), KERN_INVALID_ARGUMENT);
    CHECK_KR(processor_start(host_priv), KERN_INVALID_ARGUMENT);
    for (mach_msg_type_number_t i = 0; cpus != NULL && i < n; i++) {
        mach_port_deallocate(mach_task_self(), cpus[i]);
        mach_port_deallocate(mach_task_self(), again[i]);
    }
    vm_deallocate(mach_task_self(), (vm_address_t)cpus, n * sizeof *cpus);
    vm_deallocate(mach_task_self(), (vm_address_t)again, m * sizeof *again);
    mach_port_deallocate(mach_task_self(), pset);
}

/* The default memory manager: recorded and given back, as GNU Mach. */
static void task_default_manager(mach_port_t host_priv)
{
    mach_port_t self = mach_task_self();
    mach_port_t manager = MACH_PORT_NULL;
    CHECK_KR(vm_set_default_memory_manager(mach_host_self(), &manager), KERN_INVALID_HOST);
    CHECK_KR(vm_set_default_memory_manager(host_priv, &manager), KERN_SUCCESS);
    CHECK(manager == MACH_PORT_NULL); /* none yet */
    mach_port_t first = test_new_port(false), second = test_new_port(false);
    manager = first;
    CHECK_KR(vm_set_default_memory_manager(host_priv, &manager), KERN_SUCCESS);
    CHECK(manager == MACH_PORT_NULL);
    manager = MACH_PORT_NULL;
    CHECK_KR(vm_set_default_memory_manager(host_priv, &manager), KERN_SUCCESS);
    CHECK(manager == first);
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(self, first, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    CHECK(refs == 1);
    manager = second;
    CHECK_KR(vm_set_default_memory_manager(host_priv, &manager), KERN_SUCCESS);
    CHECK(manager == first); /* the one it replaced, given back */
    CHECK_KR(mach_port_get_refs(self, first, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    CHECK(refs == 2);
    /* A manager that died is none. */
    CHECK_KR(mach_port_destroy(self, second), KERN_SUCCESS);
    manager = MACH_PORT_NULL;
    CHECK_KR(vm_set_default_memory_manager(host_priv, &manager), KERN_SUCCESS);
    CHECK(manager == MACH_PORT_NULL);
    CHECK_KR(mach_port_destroy(self, first), KERN_SUCCESS);
}

/* vm_wire and vm_wire_all through the privileged host port (served by
 * machd) wire the memory of the task named, where it lives: this task's
 * and a child task's.  A port that is no task: KERN_INVALID_TASK. */
static void task_wire(mach_port_t host_priv)
{
    const vm_size_t size = 4 * 4096;
    vm_address_t a = 0;
    CHECK_KR(vm_allocate(mach_task_self(), &a, size, TRUE), KERN_SUCCESS);
    long before = test_status_kb(getpid(), "VmLck");
    CHECK_KR(vm_wire(host_priv, mach_task_self(), a, size, VM_PROT_READ | VM_PROT_WRITE),
             KERN_SUCCESS);
    CHECK(!TEST_LOCKS_SEEN || test_status_kb(getpid(), "VmLck") == before + (long)(size / 1024));
    CHECK_KR(vm_wire(host_priv, mach_task_self(), a, size, VM_PROT_NONE), KERN_SUCCESS);
    CHECK(!TEST_LOCKS_SEEN || test_status_kb(getpid(), "VmLck") == before);
    CHECK_KR(vm_wire(host_priv, mach_task_self(), a, size, 0x100), KERN_INVALID_ARGUMENT);

    mach_port_t child = MACH_PORT_NULL;
    pid_t pid = hell_fork(MACH_PORT_NULL, &child);
    if (pid == 0) {
        for (;;) {
            pause();
        }
    }
    CHECK(pid > 0);
    vm_address_t c = 0;
    CHECK_KR(vm_allocate(child, &c, size, TRUE), KERN_SUCCESS);
    CHECK(test_status_kb(pid, "VmLck") == 0);
    CHECK_KR(vm_wire(host_priv, child, c, size, VM_PROT_READ), KERN_SUCCESS);
    CHECK(!TEST_LOCKS_SEEN || test_status_kb(pid, "VmLck") == (long)(size / 1024));
    CHECK_KR(vm_wire_all(host_priv, child, VM_WIRE_NONE), KERN_SUCCESS);
    CHECK(test_status_kb(pid, "VmLck") == 0);
    /* Through the child's own unprivileged host port, ours is refused. */
    CHECK_KR(vm_wire(mach_host_self(), child, c, size, VM_PROT_READ), KERN_INVALID_TASK);
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, NULL, 0) == pid);
    CHECK_KR(vm_wire(host_priv, child, c, size, VM_PROT_READ), KERN_INVALID_TASK); /* dead */
    CHECK_KR(mach_port_deallocate(mach_task_self(), child), KERN_SUCCESS);

    /* machd (our parent) keeps nothing of the tasks it forwarded to, nor,
     * once they died, of the tasks we created. */
    int machd_fds = test_count_fds_of(getppid());
    for (int i = 0; i < 8; i++) {
        pid = hell_fork(MACH_PORT_NULL, &child);
        if (pid == 0) {
            for (;;) {
                pause();
            }
        }
        CHECK(pid > 0);
        c = 0;
        CHECK_KR(vm_allocate(child, &c, size, TRUE), KERN_SUCCESS);
        CHECK_KR(vm_wire(host_priv, child, c, size, VM_PROT_READ), KERN_SUCCESS);
        kill(pid, SIGKILL);
        CHECK(waitpid(pid, NULL, 0) == pid);
        CHECK_KR(mach_port_deallocate(mach_task_self(), child), KERN_SUCCESS);
    }
    /* (machd drops its right to each from the set's list when it hears
     * of the task's death: a moment after.) */
    for (int i = 0; i < 500 && test_count_fds_of(getppid()) > machd_fds + 2; i++) {
        usleep(10000);
    }
    CHECK(test_count_fds_of(getppid()) <= machd_fds + 2);

    mach_port_t other = test_new_port(true);
    pthread_t server;
    CHECK(pthread_create(&server, NULL, test_bad_id_server, &other) == 0);
    CHECK_KR(vm_wire(host_priv, other, a, size, VM_PROT_READ), KERN_INVALID_TASK);
    CHECK_KR(vm_wire_all(host_priv, other, VM_WIRE_NONE), KERN_INVALID_TASK);
    CHECK_KR(mach_port_destroy(mach_task_self(), other), KERN_SUCCESS); /* ends the server */
    CHECK(pthread_join(server, NULL) == 0);
    CHECK_KR(vm_deallocate(mach_task_self(), a, size), KERN_SUCCESS);
}

static void task_priv(const char *host_arg, const char *device_arg)
{
    task_signals();
    CHECK(strcmp(host_arg, "1") == 0 && strcmp(device_arg, "2") == 0);
    mach_port_t host_priv = (mach_port_t)atoi(host_arg);
    mach_port_t master = (mach_port_t)atoi(device_arg);
    /* As GNU Mach's first tasks: no bootstrap port (a Hurd server takes
     * that for being started by the kernel). */
    mach_port_t boot = MACH_PORT_DEAD;
    CHECK_KR(task_get_bootstrap_port(mach_task_self(), &boot), KERN_SUCCESS);
    CHECK(boot == MACH_PORT_NULL);
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(mach_task_self(), host_priv, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_SEND);
    CHECK_KR(mach_port_type(mach_task_self(), master, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_SEND);
    /* The privileged port is a host port too. */
    struct host_basic_info info;
    mach_msg_type_number_t count = HOST_BASIC_INFO_COUNT;
    CHECK_KR(host_info(host_priv, HOST_BASIC_INFO, (host_info_t)&info, &count), KERN_SUCCESS);
    CHECK(info.avail_cpus > 0);
    kernel_version_t version;
    CHECK_KR(host_get_kernel_version(host_priv, version), KERN_SUCCESS);
    CHECK(strstr(version, "HELL") != NULL);
    /* Only it: the task's own host port is refused, as is the master. */
    CHECK_KR(host_reboot(mach_host_self(), 0), KERN_INVALID_HOST);
    time_value_t now = {0};
    CHECK_KR(host_set_time(mach_host_self(), now), KERN_INVALID_HOST);
    CHECK(host_reboot(master, 0) != KERN_SUCCESS);
    /* No kernel debugger to enter: it returns at once. */
    CHECK_KR(host_reboot(host_priv, 0x1000 /* RB_DEBUGGER */), KERN_SUCCESS);
    task_processors(host_priv);
    task_default_manager(host_priv);
    task_wire(host_priv);
}

static void task_unpriv(const char *arg)
{
    CHECK(strcmp(arg, "${host-port}") == 0);
    mach_port_t boot = MACH_PORT_DEAD;
    CHECK_KR(task_get_bootstrap_port(mach_task_self(), &boot), KERN_SUCCESS);
    CHECK(boot == MACH_PORT_NULL);
    mach_port_type_t type;
    CHECK_KR(mach_port_type(mach_task_self(), 1, &type), KERN_INVALID_NAME);
    CHECK_KR(mach_port_type(mach_task_self(), 2, &type), KERN_INVALID_NAME);
}

static void task_write_pids(const char *file, const pid_t *pids, int n)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    CHECK(f != NULL);
    for (int i = 0; f != NULL && i < n; i++) {
        fprintf(f, "%d\n", (int)pids[i]);
    }
    if (f != NULL) {
        fclose(f);
        CHECK(rename(tmp, file) == 0);
    }
}

/* A child task, and a daemon that left our session (double fork). */
static void task_make_descendants(pid_t *pids)
{
    mach_port_t child_task;
    pids[0] = hell_fork(MACH_PORT_NULL, &child_task);
    if (pids[0] == 0) {
        for (;;) {
            pause();
        }
    }
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    pid_t middle = fork();
    if (middle == 0) {
        setsid();
        pid_t daemon = fork();
        if (daemon == 0) {
            for (;;) {
                pause();
            }
        }
        (void)!write(pipefd[1], &daemon, sizeof daemon);
        _exit(0);
    }
    CHECK(read(pipefd[0], &pids[1], sizeof pids[1]) == sizeof pids[1]);
    waitpid(middle, NULL, 0);
    close(pipefd[0]);
    close(pipefd[1]);
}

static int task_main(int argc, char **argv)
{
    const char *mode = argv[2];
    if (strcmp(mode, "priv") == 0 && argc == 5) {
        task_priv(argv[3], argv[4]);
    } else if (strcmp(mode, "unpriv") == 0 && argc == 4) {
        task_unpriv(argv[3]);
    } else if (strcmp(mode, "exit") == 0 && argc == 4) {
        return atoi(argv[3]);
    } else if (strcmp(mode, "sleep") == 0 && argc == 4) {
        pid_t self = getpid();
        task_write_pids(argv[3], &self, 1);
        for (;;) {
            pause();
        }
    } else if (strcmp(mode, "reboot") == 0 && argc == 5) {
        pid_t pids[3];
        task_make_descendants(pids);
        pids[2] = getpid();
        task_write_pids(argv[4], pids, 3);
        host_reboot((mach_port_t)atoi(argv[3]), 0);
        return 99; /* not reached: the instance ended */
    } else {
        CHECK(!"unknown task mode");
    }
    return test_failures == 0 ? 0 : 1;
}

/* ---- the driver ---- */

static char self_path[PATH_MAX];
static char scratch[PATH_MAX];

#define HELL(...) test_hell((const char *const[]){__VA_ARGS__, NULL})

/* machd's pid for instance NAME, from `hell status`, or -1. */
static pid_t machd_pid(const char *name)
{
    char out[256];
    if (test_hell_output(out, sizeof out, (const char *const[]){"status", name, NULL}) != 0) {
        return -1;
    }
    const char *at = strstr(out, "pid ");
    return at != NULL ? atoi(at + 4) : -1;
}

/* Waits for machd PID, our child since we are the subreaper that
 * inherited it, to end.  Returns its wait status, or -1. */
static int machd_wait(pid_t pid)
{
    int status;
    for (int i = 0; i < WAIT_MS; i++) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) {
            return status;
        }
        usleep(1000);
    }
    return -1;
}

/* Reads the pids a task wrote to FILE (waiting for it).  Returns how many. */
static int read_pids(const char *file, pid_t *pids, int max)
{
    FILE *f = NULL;
    for (int i = 0; i < WAIT_MS && (f = fopen(file, "r")) == NULL; i++) {
        usleep(1000);
    }
    int n = 0, pid;
    while (f != NULL && n < max && fscanf(f, "%d", &pid) == 1) {
        pids[n++] = pid;
    }
    if (f != NULL) {
        fclose(f);
    }
    return n;
}

static bool gone(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* Starts `hell run NAME ARGS...` without waiting.  Returns its pid. */
static pid_t hell_run_async(const char *const *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        const char *argv[16] = {test_hell_path(), "run"};
        int n = 2;
        for (; args[n - 2] != NULL && n < 15; n++) {
            argv[n] = args[n - 2];
        }
        argv[n] = NULL;
        execv(argv[0], (char **)argv);
        _exit(126);
    }
    return pid;
}

static int driver_main(void)
{
    int fds_before = test_count_fds();
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    ssize_t len = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    CHECK(len > 0);
    self_path[len > 0 ? len : 0] = '\0';
    snprintf(scratch, sizeof scratch, "/tmp/hell-test-instance-XXXXXX");
    CHECK(mkdtemp(scratch) != NULL);
    setenv("HELL_RUNTIME_DIR", scratch, 1);

    /* Two instances; a second start of one is refused. */
    CHECK(HELL("start", "A") == 0);
    CHECK(HELL("start", "B") == 0);
    CHECK(HELL("start", "A") == 1);
    pid_t machd_a = machd_pid("A"), machd_b = machd_pid("B");
    CHECK(machd_a > 0 && machd_b > 0 && machd_a != machd_b);

    /* Tasks. */
    CHECK(HELL("run", "A", self_path, "--task", "exit", "7") == 7);
    CHECK(HELL("run", "A", "--priv", "--", self_path, "--task", "priv", "${host-port}",
               "${device-port}") == 0);
    CHECK(HELL("run", "B", self_path, "--task", "unpriv", "${host-port}") == 0);
    CHECK(HELL("run", "A", "/nonexistent/program") == 127);
    CHECK(HELL("run", "nosuchinstance", self_path, "--task", "exit", "0") == 1);

    /* stop ends a task still running, then machd. */
    char pidfile[PATH_MAX + 16];
    snprintf(pidfile, sizeof pidfile, "%s/sleeper", scratch);
    pid_t runner = hell_run_async((const char *const[]){"A", self_path, "--task", "sleep",
                                                        pidfile, NULL});
    pid_t sleeper = 0;
    CHECK(read_pids(pidfile, &sleeper, 1) == 1);
    CHECK(sleeper > 0 && !gone(sleeper));
    /* A program that never answers the handshake (not linked with
     * libmach) holds up only its own `hell run`, not the instance. */
    pid_t stuck = hell_run_async((const char *const[]){"A", "/bin/sleep", "600", NULL});
    usleep(100000);
    CHECK(HELL("run", "A", self_path, "--task", "exit", "3") == 3);
    CHECK(HELL("stop", "A") == 0);
    int status;
    CHECK(waitpid(runner, &status, 0) == runner);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL);
    CHECK(waitpid(stuck, &status, 0) == stuck && WIFEXITED(status) &&
          WEXITSTATUS(status) != 0);
    status = machd_wait(machd_a);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(gone(sleeper));
    CHECK(HELL("status", "A") == 1);

    /* B did not notice; host_reboot from one of its tasks ends it. */
    CHECK(HELL("run", "B", self_path, "--task", "exit", "0") == 0);
    snprintf(pidfile, sizeof pidfile, "%s/rebooter", scratch);
    CHECK(HELL("run", "B", "--priv", self_path, "--task", "reboot", "${host-port}", pidfile) ==
          128 + SIGKILL);
    status = machd_wait(machd_b);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pid_t pids[3] = {0};
    CHECK(read_pids(pidfile, pids, 3) == 3);
    for (int i = 0; i < 3; i++) {
        CHECK(pids[i] > 0 && gone(pids[i]));
    }
    CHECK(HELL("status", "B") == 1);
    /* A start after the end works (the stale socket is gone or replaced);
     * of two at once, one wins and the other says so. */
    pid_t second = fork();
    if (second == 0) {
        _exit(HELL("start", "B"));
    }
    int first = HELL("start", "B");
    CHECK(waitpid(second, &status, 0) == second && WIFEXITED(status));
    CHECK((first == 0 && WEXITSTATUS(status) == 1) || (first == 1 && WEXITSTATUS(status) == 0));
    machd_b = machd_pid("B");
    CHECK(HELL("stop", "B") == 0);
    status = machd_wait(machd_b);
    CHECK(WIFEXITED(status));

    /* Nothing left: no socket, no child, no descriptor. */
    unlink(pidfile);
    snprintf(pidfile, sizeof pidfile, "%s/sleeper", scratch);
    unlink(pidfile);
    CHECK(rmdir(scratch) == 0);
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
    CHECK(test_count_fds() == fds_before);
    return test_done("instance");
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--task") == 0) {
        return task_main(argc, argv);
    }
    return driver_main();
}
