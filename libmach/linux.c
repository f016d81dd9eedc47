/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "linux.h"
#include "protocol.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* libmach's hidden threads, by Linux thread id: they are no Mach threads
 * (task_threads never lists them).  A small array: there are a handful. */
#define LINUX_HELPERS_MAX 256
static pthread_mutex_t linux_helpers_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t linux_helpers[LINUX_HELPERS_MAX]; /* [linux_helpers_lock], 0 = free */
static __thread bool linux_helper_self;

struct linux_helper_start {
    void *(*fn)(void *);
    void *arg;
    _Atomic int registered; /* futex: the thread is marked a helper */
};

static void linux_helper_mark(pid_t tid, pid_t value)
{
    pthread_mutex_lock(&linux_helpers_lock);
    for (int i = 0; i < LINUX_HELPERS_MAX; i++) {
        if (linux_helpers[i] == tid) {
            linux_helpers[i] = value;
            break;
        }
    }
    pthread_mutex_unlock(&linux_helpers_lock);
}

/* Reads the Linux name of thread TID of process PID (PID 0: the calling
 * thread) into NAME[16], without a newline.  Returns false when it is
 * gone. */
static bool linux_thread_name_get(pid_t pid, pid_t tid, char *name)
{
    if (pid == 0) {
        return prctl(PR_GET_NAME, name) == 0; /* (no descriptor needed) */
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/comm", (int)pid, (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t len = fd >= 0 ? read(fd, name, 15) : -1;
    linux_close(fd);
    if (len <= 0) {
        return false;
    }
    name[len] = '\0';
    name[strcspn(name, "\n")] = '\0';
    return true;
}

static bool linux_name_is_helper(const char *name)
{
    return strncmp(name, LINUX_HELPER_NAME_PREFIX, strlen(LINUX_HELPER_NAME_PREFIX)) == 0;
}

/* Marks the calling thread hidden in its Linux name, keeping as much of
 * the name it has as fits. */
static void linux_helper_name_self(void)
{
    char name[16], marked[32];
    if (!linux_thread_name_get(0, 0, name) || linux_name_is_helper(name)) {
        return;
    }
    snprintf(marked, sizeof marked, "%s%s", LINUX_HELPER_NAME_PREFIX, name);
    marked[15] = '\0'; /* (Linux's limit) */
    (void)prctl(PR_SET_NAME, marked);
}

void linux_thread_name_set(pid_t tid, const char *name)
{
    bool hidden = linux_is_helper(tid);
    char comm[32];
    snprintf(comm, sizeof comm, "%s%.15s", hidden ? LINUX_HELPER_NAME_PREFIX : "", name);
    comm[15] = '\0'; /* (Linux's limit) */
    if (!hidden && linux_name_is_helper(comm)) {
        comm[strlen(LINUX_HELPER_NAME_PREFIX) - 1] = '-';
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, comm, strlen(comm));
        linux_close(fd);
    }
}

void linux_thread_name_unmark_self(void)
{
    char name[16], task_name[16];
    if (!linux_thread_name_get(0, 0, name) || !linux_name_is_helper(name) ||
        !linux_thread_name_get(getpid(), getpid(), task_name)) {
        return;
    }
    const char *plain = task_name;
    if (linux_name_is_helper(plain)) {
        plain += strlen(LINUX_HELPER_NAME_PREFIX); /* (the first thread is hidden) */
    }
    (void)prctl(PR_SET_NAME, plain);
}

long linux_mach_threads_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (dir == NULL) {
        return -1;
    }
    long n = 0;
    struct dirent *d;
    while ((d = readdir(dir)) != NULL) {
        pid_t tid = (pid_t)atoi(d->d_name);
        char name[16];
        if (tid > 0 && linux_thread_name_get(pid, tid, name)) {
            n += !linux_name_is_helper(name); /* (one gone meanwhile: not counted) */
        }
    }
    closedir(dir);
    return n;
}

static void *linux_helper_main(void *p)
{
    struct linux_helper_start *shared = p;
    struct linux_helper_start start = {.fn = shared->fn, .arg = shared->arg};
    pid_t tid = (pid_t)syscall(SYS_gettid);
    linux_helper_name_self(); /* (nothing when a helper started it: Linux copied its name) */
    linux_helper_self = true;
    linux_helper_mark(0, tid);
    /* The starter waits for this, so that no listing of the task's
     * threads ever sees a helper that is not yet marked. */
    atomic_store(&shared->registered, 1);
    linux_futex_wake(&shared->registered, 1, false);
    void *result = start.fn(start.arg);
    linux_helper_mark(tid, 0);
    return result;
}

int linux_futex_wait(void *word, unsigned seen, int ms, bool shared)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    int op = shared ? FUTEX_WAIT : FUTEX_WAIT_PRIVATE;
    return syscall(SYS_futex, word, op, seen, ms >= 0 ? &ts : NULL, NULL, 0) == 0 ? 0 : errno;
}

void linux_futex_wake(void *word, int n, bool shared)
{
    syscall(SYS_futex, word, shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

bool linux_thread_start(void *(*fn)(void *), void *arg)
{
    struct linux_helper_start *start = malloc(sizeof *start);
    if (start == NULL) {
        return false;
    }
    *start = (struct linux_helper_start){.fn = fn, .arg = arg};
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    bool started = pthread_create(&thread, &attr, linux_helper_main, start) == 0;
    pthread_attr_destroy(&attr);
    while (started && !atomic_load(&start->registered)) {
        linux_futex_wait(&start->registered, 0, -1, false);
    }
    free(start);
    return started;
}

/* sched_setattr's argument, its first version (no glibc wrapper). */
struct linux_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period; /* runtime: the slice, in ns */
};

void linux_thread_background(void)
{
    /* The thread's nice is kept as it is (sched_setattr sets it too): a
     * process started niced keeps its background work at least as nice,
     * and only root may lower a nice. */
    struct linux_sched_attr now = {0};
    struct linux_sched_attr attr = {.size = sizeof attr,
                                    .policy = SCHED_BATCH,
                                    .runtime = 100 * 1000 * 1000}; /* Linux's maximum */
    bool known = syscall(SYS_sched_getattr, 0, &now, sizeof now, 0) == 0;
    attr.nice = now.nice;
    if (!known || syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
        struct sched_param none = {0};
        (void)sched_setscheduler(0, SCHED_BATCH, &none); /* Linux before 3.14 */
    }
}

void linux_helper_adopt_self(void)
{
    linux_helper_name_self();
    linux_helper_self = true;
    linux_helper_mark(0, (pid_t)syscall(SYS_gettid));
}

/* The calling thread's buffers (linux_thread_buf), unmapped by a
 * destructor of the key whose value is this very structure. */
struct linux_thread_bufs {
    void *addr[LINUX_NBUFS];
    size_t size[LINUX_NBUFS];
};
static __thread struct linux_thread_bufs linux_bufs;
static pthread_key_t linux_bufs_key;
static pthread_once_t linux_bufs_once = PTHREAD_ONCE_INIT;

static void linux_bufs_release(void *arg)
{
    struct linux_thread_bufs *b = arg;
    for (int i = 0; i < LINUX_NBUFS; i++) {
        if (b->addr[i] != NULL) {
            munmap(b->addr[i], b->size[i]);
            b->addr[i] = NULL; /* (a later destructor may map it again) */
        }
    }
}

static void linux_bufs_key_create(void)
{
    (void)pthread_key_create(&linux_bufs_key, linux_bufs_release);
}

void *linux_thread_buf(enum linux_thread_buf_id id, size_t size)
{
    if (linux_bufs.addr[id] == NULL) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            return NULL;
        }
        pthread_once(&linux_bufs_once, linux_bufs_key_create);
        pthread_setspecific(linux_bufs_key, &linux_bufs);
        linux_bufs.size[id] = size;
        linux_bufs.addr[id] = p;
    }
    return linux_bufs.addr[id];
}

void *linux_thread_buf_if_any(enum linux_thread_buf_id id)
{
    return linux_bufs.addr[id];
}

bool linux_is_helper(pid_t tid)
{
    bool found = false;
    pthread_mutex_lock(&linux_helpers_lock);
    for (int i = 0; i < LINUX_HELPERS_MAX && !found; i++) {
        found = linux_helpers[i] == tid;
    }
    pthread_mutex_unlock(&linux_helpers_lock);
    return found;
}

bool linux_self_is_helper(void)
{
    return linux_helper_self;
}

void linux_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        /* Linux releases the descriptor even when close reports EINTR. */
        (void)close(fd);
        errno = saved;
    }
}

bool linux_socket_ino(int fd, uint64_t *ino)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return false;
    }
    *ino = (uint64_t)st.st_ino;
    return true;
}

bool linux_socket_sent_unread(int fd)
{
    int queued = 0;
    return ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0;
}

int linux_unix_peer_ino(int fd, uint64_t *peer)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return -EINVAL;
    }
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) {
        return -EOPNOTSUPP;
    }
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } query = {
        .nlh = {.nlmsg_len = sizeof query,
                .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST},
        .req = {.sdiag_family = AF_UNIX,
                .udiag_states = ~0u,
                .udiag_ino = (uint32_t)st.st_ino,
                .udiag_show = UDIAG_SHOW_PEER,
                .udiag_cookie = {~0u, ~0u}},
    };
    int rc = -EOPNOTSUPP;
    union {
        struct nlmsghdr nlh;
        char buf[4096];
    } answer;
    ssize_t n;
    if (send(nl, &query, sizeof query, 0) == (ssize_t)sizeof query &&
        (n = recv(nl, &answer, sizeof answer, 0)) > 0 &&
        NLMSG_OK(&answer.nlh, (size_t)n) && answer.nlh.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
        struct unix_diag_msg *msg = NLMSG_DATA(&answer.nlh);
        int len = (int)answer.nlh.nlmsg_len - (int)NLMSG_LENGTH(sizeof *msg);
        rc = -ENOTCONN;
        for (struct rtattr *at = (struct rtattr *)(msg + 1); RTA_OK(at, len);
             at = RTA_NEXT(at, len)) {
            if (at->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(at) >= sizeof(uint32_t)) {
                uint32_t ino;
                memcpy(&ino, RTA_DATA(at), sizeof ino);
                *peer = ino;
                rc = 0;
            }
        }
    }
    linux_close(nl);
    return rc;
}

bool linux_is_pipe(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

bool linux_is_unix_seqpacket(int fd)
{
    int domain = -1, type = -1;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX) {
        return false;
    }
    len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET;
}

#define LINUX_RANDOM_WORDS 64

/* Random words fetched ahead, per thread.  A fork child's thread starts
 * without them (linux_fork_child): it would hand out its parent's next
 * nonces. */
static __thread uint64_t linux_random_pool[LINUX_RANDOM_WORDS];
static __thread unsigned linux_random_left;

uint64_t linux_random_u64(void)
{
    uint64_t *pool = linux_random_pool;
    for (;;) {
        if (linux_random_left == 0) {
            size_t got = 0;
            while (got < sizeof linux_random_pool) {
                ssize_t n = getrandom((char *)pool + got, sizeof linux_random_pool - got, 0);
                if (n > 0) {
                    got += (size_t)n;
                }
            }
            linux_random_left = LINUX_RANDOM_WORDS;
        }
        uint64_t v = pool[--linux_random_left];
        pool[linux_random_left] = 0; /* never hand the same bits out twice */
        if (v != 0) {
            return v;
        }
    }
}

kern_return_t linux_errno_to_kern(int err)
{
    switch (err) {
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
    case ETOOMANYREFS:
        return KERN_RESOURCE_SHORTAGE;
    default:
        return KERN_FAILURE;
    }
}

void linux_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

uint64_t linux_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t linux_pread_full(int fd, void *buf, uint64_t size, uint64_t offset)
{
    uint64_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (char *)buf + done, size - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        done += (uint64_t)n;
    }
    return done;
}

/* The reaper: one thread closing descriptors that might block. */
static pthread_mutex_t linux_reaper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t linux_reaper_cond = PTHREAD_COND_INITIALIZER;
static int *linux_reaper_fds;        /* [linux_reaper_lock] */
static size_t linux_reaper_n, linux_reaper_cap;
static bool linux_reaper_running;
static bool linux_reaper_closing; /* [linux_reaper_lock] */

static void *linux_reaper_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    pthread_mutex_lock(&linux_reaper_lock);
    for (;;) {
        while (linux_reaper_n == 0) {
            pthread_cond_wait(&linux_reaper_cond, &linux_reaper_lock);
        }
        int fd = linux_reaper_fds[--linux_reaper_n];
        linux_reaper_closing = true;
        pthread_mutex_unlock(&linux_reaper_lock);
        close(fd);
        pthread_mutex_lock(&linux_reaper_lock);
        linux_reaper_closing = false;
    }
    return NULL;
}

bool linux_reaper_wait_idle(int ms)
{
    for (int waited = 0;; waited++) {
        pthread_mutex_lock(&linux_reaper_lock);
        bool idle = linux_reaper_n == 0 && !linux_reaper_closing;
        pthread_mutex_unlock(&linux_reaper_lock);
        if (idle || waited >= ms) {
            return idle;
        }
        struct timespec ts = {.tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
}

static bool linux_reaper_queue(int fd)
{
    bool queued = false;
    pthread_mutex_lock(&linux_reaper_lock);
    if (!linux_reaper_running) {
        linux_reaper_running = linux_thread_start(linux_reaper_main, NULL);
    }
    if (linux_reaper_running && linux_reaper_n == linux_reaper_cap) {
        size_t cap = linux_reaper_cap ? linux_reaper_cap * 2 : 64;
        int *fds = realloc(linux_reaper_fds, cap * sizeof *fds);
        if (fds != NULL) {
            linux_reaper_fds = fds;
            linux_reaper_cap = cap;
        }
    }
    if (linux_reaper_running && linux_reaper_n < linux_reaper_cap) {
        linux_reaper_fds[linux_reaper_n++] = fd;
        pthread_cond_signal(&linux_reaper_cond);
        queued = true;
    }
    pthread_mutex_unlock(&linux_reaper_lock);
    return queued;
}

void linux_close_untrusted(int fd)
{
    if (fd < 0) {
        return;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISSOCK(st.st_mode) && !S_ISFIFO(st.st_mode) &&
        fcntl(fd, F_GET_SEALS) < 0 && linux_reaper_queue(fd)) {
        return;
    }
    linux_close(fd);
}

/* This process's start time, 0 until read; reset in a fork child. */
static _Atomic uint64_t linux_self_start;

void linux_fork_child(void)
{
    atomic_store(&linux_self_start, 0);
    /* The parent's thread goes on drawing from the same words. */
    memset(linux_random_pool, 0, sizeof linux_random_pool);
    linux_random_left = 0;
    /* The helpers did not survive the fork. */
    pthread_mutex_init(&linux_helpers_lock, NULL);
    memset(linux_helpers, 0, sizeof linux_helpers);
    pthread_mutex_init(&linux_reaper_lock, NULL);
    pthread_cond_init(&linux_reaper_cond, NULL);
    for (size_t i = 0; i < linux_reaper_n; i++) {
        linux_close(linux_reaper_fds[i]);
    }
    linux_reaper_n = 0;
    linux_reaper_running = false;
    linux_reaper_closing = false;
}

uint64_t linux_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    ssize_t len = read(fd, buf, sizeof buf - 1);
    linux_close(fd);
    if (len <= 0) {
        return 0;
    }
    buf[len] = '\0';
    /* Field 22, counted after "pid (comm)": comm may hold anything. */
    char *p = strrchr(buf, ')');
    for (int field = 2; p != NULL && field < 22; field++) {
        p = strchr(p + 1, ' ');
    }
    return p != NULL ? strtoull(p + 1, NULL, 10) : 0;
}

uint64_t linux_self_start_time(void)
{
    uint64_t start = atomic_load_explicit(&linux_self_start, memory_order_relaxed);
    if (start == 0) {
        start = linux_start_time(getpid());
        atomic_store_explicit(&linux_self_start, start, memory_order_relaxed);
    }
    return start;
}

int linux_pidfd_of(pid_t pid, uint64_t start)
{
    if (pid <= 0 || start == 0) {
        return -1;
    }
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        return -1;
    }
    /* The pidfd pins the pid: if the start time matches now, it is the
     * process meant, and it stays so. */
    if (linux_start_time(pid) != start) {
        linux_close(fd);
        return -1;
    }
    return fd;
}

/* A pidfd of one thread rather than of its process (Linux 6.9). */
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

/* Whether the thread TID of this process still exists for Linux. */
static bool linux_thread_exists(pid_t tid)
{
    return syscall(SYS_tgkill, getpid(), tid, 0) == 0;
}

void linux_thread_wait_gone(pid_t tid)
{
    if (tid == getpid()) {
        return;
    }
    /* A thread's pidfd polls readable as it exits, just before Linux
     * reaps it: then at most a few microseconds remain. */
    int fd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
    if (fd >= 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n;
        while ((n = poll(&pfd, 1, 2000)) < 0 && errno == EINTR) {
        }
        linux_close(fd);
        if (n == 1) {
            /* Exited: gone in a moment (past that, its number could be
             * another thread's already). */
            for (int i = 0; i < 1000 && linux_thread_exists(tid); i++) {
            }
            return;
        }
    }
    /* Without thread pidfds (older Linux): sleep. */
    for (int i = 0; i < 100000 && linux_thread_exists(tid); i++) {
        struct timespec ts = {.tv_nsec = 20000};
        nanosleep(&ts, NULL);
    }
}

int linux_connect_own(const char *path, int sock_flags)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(addr.sun_path, path);
    int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | sock_flags, 0);
    if (sock < 0) {
        return -1;
    }
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
        linux_close(sock); /* preserves errno */
        return -1;
    }
    if (!hell_peer_is_us(sock)) {
        linux_close(sock);
        errno = EACCES; /* another user's socket gets nothing of ours */
        return -1;
    }
    return sock;
}
