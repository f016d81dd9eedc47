/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Minimal test support: CHECK(cond) records a failure (with its line) and
 * goes on; test_done() checks for leaked descriptors and mappings, prints
 * the verdict and returns the exit status.  Each test is its own process;
 * tests/run applies a timeout.
 */
#ifndef HELL_TEST_H
#define HELL_TEST_H

#include <dirent.h>
#include <fcntl.h>
#include <hell.h>
#include <mach.h>
#include <mach/thread_status.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int test_failures __attribute__((unused));

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#define CHECK_KR(expr, want)                                                   \
    do {                                                                       \
        kern_return_t kr_ = (expr);                                            \
        if (kr_ != (kern_return_t)(want)) {                                    \
            fprintf(stderr, "%s:%d: %s = 0x%x, want %s (0x%x)\n", __FILE__,    \
                    __LINE__, #expr, kr_, #want, (unsigned)(want));            \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

/* CHECK and CHECK_KR for helpers that check on behalf of a caller:
 * failures name the caller's FILE and LINE (pass __FILE__, __LINE__
 * through a wrapper macro). */
#define CHECK_AT(file, line, cond)                                             \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", (file), (line),       \
                    #cond);                                                    \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#define CHECK_KR_AT(file, line, expr, want)                                    \
    do {                                                                       \
        kern_return_t kr_ = (expr);                                            \
        if (kr_ != (kern_return_t)(want)) {                                    \
            fprintf(stderr, "%s:%d: %s = 0x%x, want %s (0x%x)\n", (file),      \
                    (line), #expr, kr_, #want, (unsigned)(want));              \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

static inline int test_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    if (d != NULL) {
        closedir(d);
    }
    return n - 1;
}

/* The descriptors process PID has open (its /proc directory's entries,
 * "." and ".." included: compare counts, not values). */
static inline int test_count_fds_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    while (d != NULL && readdir(d) != NULL) {
        n++;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* A field of process PID's /proc status, in kB, or -1. */
static inline long test_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    long kb = -1;
    size_t len = strlen(field);
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            kb = strtol(line + len + 1, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb;
}

/* Whether VmLck shows what mlock locked: AddressSanitizer makes mlock
 * do nothing. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_LOCKS_SEEN false
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_LOCKS_SEEN false
#endif
#endif
#ifndef TEST_LOCKS_SEEN
#define TEST_LOCKS_SEEN true
#endif

static inline long test_count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;
    while (f != NULL && (c = fgetc(f)) != EOF) {
        n += c == '\n';
    }
    if (f != NULL) {
        fclose(f);
    }
    return n;
}

/* Waits for PID and checks it exited with status 0. */
static inline void test_wait_ok(pid_t pid)
{
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A message carrying one inline port right. */
struct test_port_msg {
    mach_msg_header_t h;
    mach_msg_type_t t;
    mach_port_name_inlined_t p;
};

/* Sends PORT, with DISPOSITION, in a message of id ID to DEST (a send
 * right the caller keeps). */
static inline mach_msg_return_t test_send_port(mach_port_t dest, mach_port_t port,
                                               mach_msg_type_name_t disposition,
                                               mach_msg_id_t id)
{
    struct test_port_msg m = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) |
                           MACH_MSGH_BITS_COMPLEX,
              .msgh_remote_port = dest,
              .msgh_id = id},
        .t = {.msgt_name = (unsigned char)disposition, .msgt_size = 64,
              .msgt_number = 1, .msgt_inline = TRUE},
        .p = {.name = port},
    };
    return mach_msg(&m.h, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL,
                    MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL);
}

/* Receives on RCV (waiting at most TIMEOUT ms) a message sent by
 * test_send_port; stores the right's name and received type. */
static inline mach_msg_return_t test_receive_port(mach_port_t rcv,
                                                  mach_msg_timeout_t timeout,
                                                  mach_port_t *port,
                                                  mach_msg_type_name_t *type)
{
    union {
        struct test_port_msg m;
        char buf[256];
    } r;
    mach_msg_return_t mr = mach_msg(&r.m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0,
                                    sizeof r, rcv, timeout, MACH_PORT_NULL);
    if (mr == MACH_MSG_SUCCESS) {
        *port = r.m.p.name;
        *type = r.m.t.msgt_name;
    }
    return mr;
}

/* A new port: its receive right and, with WITH_SEND, a send right under
 * the same name. */
static inline mach_port_t test_new_port(bool with_send)
{
    mach_port_t port = MACH_PORT_NULL;
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port),
             KERN_SUCCESS);
    if (with_send) {
        CHECK_KR(mach_port_insert_right(mach_task_self(), port, port, MACH_MSG_TYPE_MAKE_SEND),
                 KERN_SUCCESS);
    }
    return port;
}

/* How many notifications a flood makes. */
#define TEST_FLOOD_N 1000

/* The id of the messages test_fill_port sends. */
#define TEST_FILL_ID 9999

/* A message test_fill_port sends: a couple of kilobytes of data. */
struct test_fill_msg {
    mach_msg_header_t head;
    mach_msg_type_t type;
    char data[2048];
};

/* Fills the socket of PORT (a receive right of this task) through
 * send-once rights, not limited by the queue limit, until a send times
 * out; the right of that one is then destroyed, which makes one more
 * send-once notification.  Returns how many messages went in.  Failures
 * name the caller's FILE and LINE. */
static inline int test_fill_port_at(const char *file, int line, mach_port_t port)
{
    for (int n = 0;; n++) {
        mach_port_t once;
        mach_msg_type_name_t type;
        CHECK_KR_AT(file, line,
                    mach_port_extract_right(mach_task_self(), port, MACH_MSG_TYPE_MAKE_SEND_ONCE,
                                            &once, &type),
                    KERN_SUCCESS);
        struct test_fill_msg m = {
            .head = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
                     .msgh_size = sizeof m, .msgh_remote_port = once, .msgh_id = TEST_FILL_ID},
            .type = {.msgt_name = MACH_MSG_TYPE_CHAR, .msgt_size = 8,
                     .msgt_number = sizeof m.data, .msgt_inline = TRUE},
        };
        mach_msg_return_t mr = mach_msg(&m.head, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof m, 0,
                                        MACH_PORT_NULL, 0, MACH_PORT_NULL);
        if (mr != MACH_MSG_SUCCESS || n > 100000) {
            CHECK_KR_AT(file, line, mr, MACH_SEND_TIMED_OUT);
            CHECK_KR_AT(file, line, mach_port_deallocate(mach_task_self(), once), KERN_SUCCESS);
            return n;
        }
    }
}
#define test_fill_port(port) test_fill_port_at(__FILE__, __LINE__, port)

/* Drops every reference of this task to the dead name NAME.  Failures
 * name the caller's FILE and LINE. */
static inline void test_drop_dead_name_at(const char *file, int line, mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR_AT(file, line,
                mach_port_get_refs(mach_task_self(), name, MACH_PORT_RIGHT_DEAD_NAME, &refs),
                KERN_SUCCESS);
    CHECK_KR_AT(file, line,
                mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_DEAD_NAME,
                                   -(int)refs),
                KERN_SUCCESS);
}
#define test_drop_dead_name(name) test_drop_dead_name_at(__FILE__, __LINE__, name)

/* Waits (up to MS ms) until NAME, a send right of this task, is a dead
 * name, checks that it became one and drops every reference to it.
 * Failures name the caller's FILE and LINE. */
static inline void test_await_dead_name_at(const char *file, int line, mach_port_t name, int ms)
{
    mach_port_type_t type = 0;
    for (int i = 0; i < ms; i++) {
        if (mach_port_type(mach_task_self(), name, &type) == KERN_SUCCESS &&
            type == MACH_PORT_TYPE_DEAD_NAME) {
            break;
        }
        usleep(1000);
    }
    CHECK_AT(file, line, type == MACH_PORT_TYPE_DEAD_NAME);
    test_drop_dead_name_at(file, line, name);
}
#define test_await_dead_name(name, ms) test_await_dead_name_at(__FILE__, __LINE__, name, ms)

/* A page of code for threads started with test_start_thread: at offset 0
 * "mov %rdi,(%rsi)", then (from TEST_SPIN_LOOP) "1: pause; jmp 1b".
 * Returns the page (4096 bytes, executable; munmap it), NULL with a
 * failed check when it cannot be mapped. */
#define TEST_SPIN_LOOP 3
static inline uint8_t *test_spin_page_at(const char *file, int line)
{
    static const uint8_t spin[] = {0x48, 0x89, 0x3e, 0xf3, 0x90, 0xeb, 0xfc};
    uint8_t *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK_AT(file, line, code != MAP_FAILED);
    if (code == MAP_FAILED) {
        return NULL;
    }
    memcpy(code, spin, sizeof spin);
    return code;
}
#define test_spin_page() test_spin_page_at(__FILE__, __LINE__)

/* How many names this task's space holds (mach_port_names; the lists
 * are released). */
static inline mach_msg_type_number_t test_count_names(void)
{
    mach_port_array_t names = NULL;
    mach_port_type_array_t types = NULL;
    mach_msg_type_number_t nnames = 0, ntypes = 0;
    CHECK_KR(mach_port_names(mach_task_self(), &names, &nnames, &types, &ntypes),
             KERN_SUCCESS);
    vm_deallocate(mach_task_self(), (vm_address_t)names, nnames * sizeof *names);
    vm_deallocate(mach_task_self(), (vm_address_t)types, ntypes * sizeof *types);
    return nnames;
}

/* How many threads TASK has (task_threads; the list is released). */
static inline unsigned test_thread_count_at(const char *file, int line, mach_port_t task)
{
    thread_array_t list = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR_AT(file, line, task_threads(task, &list, &n), KERN_SUCCESS);
    for (mach_msg_type_number_t i = 0; i < n; i++) {
        mach_port_deallocate(mach_task_self(), list[i]);
    }
    if (n > 0) {
        vm_deallocate(mach_task_self(), (vm_address_t)list, n * sizeof *list);
    }
    return n;
}
#define test_thread_count(task) test_thread_count_at(__FILE__, __LINE__, task)

/* Creates a thread in TASK, sets its instruction pointer to PC and its
 * stack pointer to SP (every other register 0), resumes it and returns
 * its port.  Failures name the caller's FILE and LINE. */
static inline mach_port_t test_start_thread_at(const char *file, int line, mach_port_t task,
                                               uint64_t pc, vm_address_t sp)
{
    mach_port_t th = MACH_PORT_NULL;
    CHECK_KR_AT(file, line, thread_create(task, &th), KERN_SUCCESS);
    struct i386_thread_state regs = {0};
    regs.rip = pc;
    regs.ursp = sp;
    CHECK_KR_AT(file, line,
                thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs,
                                 i386_THREAD_STATE_COUNT),
                KERN_SUCCESS);
    CHECK_KR_AT(file, line, thread_resume(th), KERN_SUCCESS);
    return th;
}
#define test_start_thread(task, pc, sp) test_start_thread_at(__FILE__, __LINE__, task, pc, sp)

static inline boolean_t test_no_routine(mach_msg_header_t *in, mach_msg_header_t *out)
{
    mig_reply_setup(in, out);
    ((mig_reply_header_t *)out)->RetCode = MIG_BAD_ID;
    return FALSE;
}

/* A thread's start routine: answers every request on the port at ARG
 * with MIG_BAD_ID, as a server of other interfaces does, until the port
 * goes. */
static inline void *test_bad_id_server(void *arg)
{
    (void)mach_msg_server(test_no_routine, 256, *(mach_port_t *)arg);
    return NULL;
}

/* Makes a task with hell_fork that only waits to be ended (task_terminate,
 * then waitpid); returns its pid, its task port in *CHILD.  Its bootstrap
 * port is destroyed here: it needs none. */
static inline pid_t test_fork_idle(mach_port_t *child)
{
    mach_port_t boot = test_new_port(true);
    pid_t pid = hell_fork(boot, child);
    if (pid == 0) {
        for (;;) {
            pause();
        }
    }
    CHECK(pid > 0);
    CHECK_KR(mach_port_destroy(mach_task_self(), boot), KERN_SUCCESS);
    return pid;
}

/* Waits (up to 5 s) until thread TID of this process blocks in system
 * call NR (its /proc syscall file); returns whether it did. */
static inline bool test_wait_syscall(pid_t tid, long nr)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    for (int i = 0; i < 5000; i++) {
        FILE *f = fopen(path, "re");
        long now = -1;
        bool read = f != NULL && fscanf(f, "%ld", &now) == 1;
        if (f != NULL) {
            fclose(f);
        }
        if (read && now == nr) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

/* The hell of this build: bin/hell beside the directory of this program
 * (empty when it cannot be told). */
static inline const char *test_hell_path(void)
{
    static char path[4096];
    if (path[0] == '\0') {
        ssize_t len = readlink("/proc/self/exe", path, sizeof path - 32);
        if (len <= 0) {
            return "";
        }
        path[len] = '\0';
        *strrchr(path, '/') = '\0';
        strcat(path, "/../bin/hell");
    }
    return path;
}

/* Runs `hell ARGS...` (NULL-terminated, at most 14); its standard output
 * goes to OUT if not NULL (up to SIZE - 1 bytes, NUL-terminated).
 * Returns its exit status, or -1. */
static inline int test_hell_output(char *out, size_t size, const char *const *args)
{
    const char *argv[16] = {test_hell_path()};
    int n = 1;
    for (; args[n - 1] != NULL && n < 15; n++) {
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    int pipefd[2];
    /* Close-on-exec: a machd started by this hell must not hold it. */
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (out != NULL) {
            dup2(pipefd[1], STDOUT_FILENO);
        }
        execv(argv[0], (char **)argv);
        _exit(126);
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t got;
    char discard[256];
    while ((got = read(pipefd[0], out != NULL ? out + len : discard,
                       out != NULL ? size - 1 - len : sizeof discard)) > 0) {
        if (out != NULL) {
            len += (size_t)got;
        }
    }
    if (out != NULL) {
        out[len] = '\0';
    }
    close(pipefd[0]);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
        return -1;
    }
    return WEXITSTATUS(status);
}

/* test_hell_output, the output left alone. */
static inline int test_hell(const char *const *args)
{
    return test_hell_output(NULL, 0, args);
}

/* Runs this program again with the argument ARG as a task of an
 * instance of its own (started in a private runtime directory, stopped
 * after); with PRIV, given the privileged host port, whose name follows
 * ARG.  Returns the task's exit status, or -1 when the instance could
 * not be started or stopped. */
static inline int test_rerun_in_instance_as(const char *arg, bool priv)
{
    char scratch[] = "/tmp/hell-test-XXXXXX";
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0 || mkdtemp(scratch) == NULL) {
        return -1;
    }
    self[len] = '\0';
    setenv("HELL_RUNTIME_DIR", scratch, 1);
    if (test_hell((const char *[]){"start", "test", NULL}) != 0) {
        rmdir(scratch);
        return -1;
    }
    int status = priv ? test_hell((const char *[]){"run", "test", "--priv", "--", self, arg,
                                                   "${host-port}", NULL})
                      : test_hell((const char *[]){"run", "test", self, arg, NULL});
    if (test_hell((const char *[]){"stop", "test", NULL}) != 0 || rmdir(scratch) != 0) {
        status = -1;
    }
    unsetenv("HELL_RUNTIME_DIR");
    return status;
}

static inline int test_rerun_in_instance(const char *arg)
{
    return test_rerun_in_instance_as(arg, false);
}

static inline int test_done(const char *name)
{
    if (test_failures == 0) {
        printf("ok: %s\n", name);
        return 0;
    }
    printf("FAIL: %s (%d checks)\n", name, test_failures);
    return 1;
}

#endif
