/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Threads as kernel objects: every Linux thread of the task except
 * libmach's hidden ones is a Mach thread, with a thread port made when
 * first asked for (mach_thread_self, task_threads).  The list comes from
 * Linux (/proc/self/task), so threads made by plain pthread_create are
 * Mach threads too, and task_threads is exact.  A thread's port dies with
 * it: at once for a thread that asked for its own port (a thread-specific
 * destructor), otherwise when the task next lists its threads.
 */
#include "kern_thread.h"

#include <dirent.h>
#include <mach/policy.h>
#include <stddef.h>
#include <mach/mig_errors.h>
#include <mach/task_info.h>
#include <mach/thread_info.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ipc_msg.h"
#include "ipc_space.h"
#include "kern.h"
#include "linux.h"
#include "gnumach.server.h"
#include "mach.server.h"
#include "mach_host.server.h"

/* GNU Mach's scheduler: priorities 0 to 49, user threads at 25. */
#define KERN_NRQS 50
#define KERN_TICK_MS 10 /* GNU Mach's scheduler tick */
#define KERN_BASEPRI_USER 25

extern atomic_uint kern_fork_generation;

/* The lock-free index of records by thread id for signal handlers:
 * open addressing, written under [G], read by anyone.  A slot's tid is 0
 * when it was never used, -1 when its record left. */
#define KERN_TID_SLOTS 8192
static struct {
    _Atomic pid_t tid;
    struct kern_thread *_Atomic t;
} kern_tid_table[KERN_TID_SLOTS];

static size_t kern_tid_hash(pid_t tid)
{
    return ((size_t)tid * 2654435761u) % KERN_TID_SLOTS;
}

/* Publishes T under TID (a full table leaves it unpublished: its thread
 * cannot be stopped).  Expects [G]. */
static void kern_tid_publish(pid_t tid, struct kern_thread *t)
{
    size_t free_slot = KERN_TID_SLOTS;
    for (size_t i = 0, h = kern_tid_hash(tid); i < KERN_TID_SLOTS; i++, h = (h + 1) % KERN_TID_SLOTS) {
        pid_t cur = atomic_load(&kern_tid_table[h].tid);
        if (cur == tid) {
            atomic_store(&kern_tid_table[h].t, t);
            return;
        }
        if (cur == -1 && free_slot == KERN_TID_SLOTS) {
            free_slot = h;
        }
        if (cur == 0) {
            if (free_slot == KERN_TID_SLOTS) {
                free_slot = h;
            }
            break;
        }
    }
    if (free_slot < KERN_TID_SLOTS) {
        atomic_store(&kern_tid_table[free_slot].t, t);
        atomic_store(&kern_tid_table[free_slot].tid, tid);
    }
}

/* Withdraws T (published under TID).  Expects [G]. */
static void kern_tid_withdraw(pid_t tid, struct kern_thread *t)
{
    for (size_t i = 0, h = kern_tid_hash(tid); i < KERN_TID_SLOTS; i++, h = (h + 1) % KERN_TID_SLOTS) {
        pid_t cur = atomic_load(&kern_tid_table[h].tid);
        if (cur == 0) {
            return;
        }
        if (cur == tid && atomic_load(&kern_tid_table[h].t) == t) {
            atomic_store(&kern_tid_table[h].t, NULL);
            atomic_store(&kern_tid_table[h].tid, -1);
            return;
        }
    }
}

struct kern_thread *kern_tid_find(pid_t tid)
{
    for (size_t i = 0, h = kern_tid_hash(tid); i < KERN_TID_SLOTS; i++, h = (h + 1) % KERN_TID_SLOTS) {
        pid_t cur = atomic_load(&kern_tid_table[h].tid);
        if (cur == 0) {
            return NULL;
        }
        if (cur == tid) {
            return atomic_load(&kern_tid_table[h].t);
        }
    }
    return NULL;
}

/* [G] tid -> struct kern_thread *, and port serial -> the same. */
static struct u64map kern_threads_by_tid, kern_threads_by_port;
static pthread_key_t kern_thread_key;
static pthread_once_t kern_thread_key_once = PTHREAD_ONCE_INIT;
/* The calling thread's record, made on first use. */
static __thread struct kern_thread *kern_thread_self_cache;
static __thread unsigned kern_thread_self_generation;

static pid_t kern_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

mach_port_name_t kern_sself_get(const struct kern_sself *s, mach_port_name_t base)
{
    return s->set ? s->kname : base;
}

void kern_sself_release(struct kern_sself *s)
{
    if (s->set && MACH_PORT_VALID(s->kname)) {
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], s->kname);
    }
    *s = (struct kern_sself){0};
}

void kern_sself_put(struct kern_sself *s, mach_port_name_t base, mach_port_name_t port)
{
    kern_sself_release(s);
    if (port == base) {
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], port);
    } else {
        *s = (struct kern_sself){.kname = port, .set = true};
    }
}

mach_port_name_t kern_thread_self_kname(const struct kern_thread *t)
{
    return kern_sself_get(&t->sself, t->kname);
}

/* Forgets T and destroys its port; the memory goes with the last
 * reference.  Expects [G]. */
void kern_thread_free(struct kern_thread *t)
{
    if (!t->unstarted && u64map_lookup(&kern_threads_by_tid, (uint64_t)t->tid) == t) {
        u64map_remove(&kern_threads_by_tid, (uint64_t)t->tid);
    }
    if (t->tid != 0) {
        kern_tid_withdraw(t->tid, t);
    }
    u64map_remove(&kern_threads_by_port, t->port->serial);
    (void)ipc_right_destroy(&ipc_spaces[SPACE_KERNEL], t->kname);
    if (MACH_PORT_VALID(t->exception_kname)) {
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], t->exception_kname);
    }
    if (MACH_PORT_VALID(t->exc_reply)) {
        (void)ipc_right_destroy(&ipc_spaces[SPACE_KERNEL], t->exc_reply);
    }
    kern_sself_release(&t->sself);
    t->exception_kname = t->exc_reply = MACH_PORT_NULL;
    kern_i386_thread_free(t);
    t->gone = true;
    if (t->refs == 0) {
        free(t);
    }
}

void kern_thread_ref(struct kern_thread *t)
{
    t->refs++;
}

void kern_thread_unref(struct kern_thread *t)
{
    if (--t->refs == 0 && t->gone) {
        free(t);
    }
}

/* A thread that had its record exits: its port dies with it. */
static void kern_thread_exit(void *arg)
{
    struct kern_thread *t = arg;
    ipc_lock();
    if (t->generation == atomic_load(&kern_fork_generation)) {
        bool self_ref = t->holds_self_ref;
        t->holds_self_ref = false;
        /* A thread ended by thread_terminate leaves its port to the
         * caller, which answers first. */
        if (!atomic_load(&t->reaped) &&
            u64map_lookup(&kern_threads_by_tid, (uint64_t)t->tid) == t) {
            kern_thread_free(t);
        }
        if (self_ref) {
            kern_thread_unref(t);
        }
    }
    ipc_unlock();
}

static void kern_thread_key_create(void)
{
    pthread_key_create(&kern_thread_key, kern_thread_exit);
}

/* The record of thread TID, made (with its port) if needed.  Returns NULL
 * when out of descriptors or memory.  Expects [G]. */
static struct kern_thread *kern_thread_get(pid_t tid)
{
    struct kern_thread *t = u64map_lookup(&kern_threads_by_tid, (uint64_t)tid);
    if (t != NULL) {
        return t;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    t->tid = tid;
    t->generation = atomic_load(&kern_fork_generation);
    clock_gettime(CLOCK_REALTIME, &t->creation);
    t->priority = t->max_priority = KERN_BASEPRI_USER;
    t->policy = POLICY_TIMESHARE;
    if (kern_object_create(IKOT_THREAD, &t->port, &t->kname) != KERN_SUCCESS) {
        free(t);
        return NULL;
    }
    if (!u64map_insert(&kern_threads_by_tid, (uint64_t)tid, t) ||
        !u64map_insert(&kern_threads_by_port, t->port->serial, t)) {
        u64map_remove(&kern_threads_by_tid, (uint64_t)tid);
        (void)ipc_right_destroy(&ipc_spaces[SPACE_KERNEL], t->kname);
        free(t);
        return NULL;
    }
    kern_tid_publish(tid, t);
    return t;
}

struct kern_thread *kern_thread_new_unstarted(void)
{
    struct kern_thread *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    t->generation = atomic_load(&kern_fork_generation);
    clock_gettime(CLOCK_REALTIME, &t->creation);
    t->unstarted = true;
    t->suspend_count = 1;
    t->priority = t->max_priority = KERN_BASEPRI_USER;
    t->policy = POLICY_TIMESHARE;
    atomic_store(&t->park_req, 1);
    /* GNU Mach's new thread: zeroed, user selectors, interrupts on. */
    t->start_state.cs = 0x33;
    t->start_state.ss = 0x2b;
    t->start_state.rfl = 0x200;
    if (kern_object_create(IKOT_THREAD, &t->port, &t->kname) != KERN_SUCCESS) {
        free(t);
        return NULL;
    }
    if (!u64map_insert(&kern_threads_by_port, t->port->serial, t)) {
        (void)ipc_right_destroy(&ipc_spaces[SPACE_KERNEL], t->kname);
        free(t);
        return NULL;
    }
    return t;
}

/* The Linux nice value standing for PRIORITY: GNU Mach's user base 25 is
 * nice 0, its lowest 49 nice 19, its highest 0 nice -20. */
static int kern_priority_nice(int priority)
{
    int d = priority - KERN_BASEPRI_USER;
    return d >= 0 ? d * 19 / (KERN_NRQS - 1 - KERN_BASEPRI_USER) : d * 20 / KERN_BASEPRI_USER;
}

/* Gives Linux thread TID (0: not started) the nice value of PRIORITY.
 * Lowering always works; raising above the start value takes
 * CAP_SYS_NICE or RLIMIT_NICE, without which the thread keeps its Linux
 * priority while Mach reports the one set, as a scheduling hint. */
static void kern_priority_apply(pid_t tid, int priority)
{
    if (tid > 0) {
        (void)setpriority(PRIO_PROCESS, (id_t)tid, kern_priority_nice(priority));
    }
}

void kern_thread_started(struct kern_thread *t, pid_t tid)
{
    t->tid = tid;
    t->unstarted = false;
    t->starting = false;
    if (!u64map_insert(&kern_threads_by_tid, (uint64_t)tid, t)) {
        t->tid = tid; /* listed by /proc anyway: a new record would be made */
    }
    kern_tid_publish(tid, t);
    if (t->priority != KERN_BASEPRI_USER) {
        kern_priority_apply(tid, t->priority); /* set before it started */
    }
}

void kern_thread_unbind_self(void)
{
    pthread_once(&kern_thread_key_once, kern_thread_key_create);
    pthread_setspecific(kern_thread_key, NULL);
    kern_thread_self_cache = NULL;
}

void kern_thread_bind_self(struct kern_thread *t)
{
    pthread_once(&kern_thread_key_once, kern_thread_key_create);
    kern_thread_self_cache = t;
    kern_thread_self_generation = atomic_load(&kern_fork_generation);
    pthread_setspecific(kern_thread_key, t);
}

struct kern_thread *kern_thread_self(void)
{
    unsigned generation = atomic_load(&kern_fork_generation);
    if (kern_thread_self_cache != NULL && kern_thread_self_generation == generation) {
        return kern_thread_self_cache;
    }
    pthread_once(&kern_thread_key_once, kern_thread_key_create);
    struct kern_thread *t = kern_thread_get(kern_gettid());
    if (t != NULL) {
        if (t->kernel_fs == 0) {
            t->kernel_fs = (unsigned long)pthread_self();
        }
        kern_thread_self_cache = t;
        kern_thread_self_generation = generation;
        pthread_setspecific(kern_thread_key, t);
    }
    return t;
}

struct kern_thread *kern_thread_lookup(mach_port_t kname)
{
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_KERNEL], kname);
    if (entry == NULL || !(entry->type & MACH_PORT_TYPE_RECEIVE) ||
        entry->port->rcv->kobject_type != IKOT_THREAD) {
        return NULL;
    }
    return u64map_lookup(&kern_threads_by_port, entry->port->serial);
}

/* Calls FN(TID, ARG) for each Mach thread of the task (its Linux threads
 * but libmach's), in Linux's order; stops when FN returns false. */
static void kern_each_tid(bool (*fn)(pid_t, void *), void *arg)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *d;
    while (dir != NULL && (d = readdir(dir)) != NULL) {
        pid_t tid = (pid_t)atoi(d->d_name);
        if (tid > 0 && !linux_is_helper(tid) && !fn(tid, arg)) {
            break;
        }
    }
    if (dir != NULL) {
        closedir(dir);
    }
}

static bool kern_thread_count_add(pid_t tid, void *arg)
{
    (void)tid;
    ++*(size_t *)arg;
    return true;
}

size_t kern_thread_count(void)
{
    size_t n = 0;
    kern_each_tid(kern_thread_count_add, &n);
    return n;
}

struct kern_thread_list {
    struct kern_thread **v;
    size_t n, cap;
    bool failed;
};

static bool kern_thread_list_add(pid_t tid, void *arg)
{
    struct kern_thread_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct kern_thread **v = realloc(l->v, cap * sizeof *v);
        if (v == NULL) {
            l->failed = true;
            return false;
        }
        l->v = v;
        l->cap = cap;
    }
    ipc_lock();
    struct kern_thread *t = kern_thread_get(tid);
    if (t != NULL) {
        t->seen = true;
    }
    ipc_unlock();
    if (t == NULL) {
        l->failed = true;
        return false;
    }
    l->v[l->n++] = t;
    return true;
}

/* Lists the task's Mach threads into L (records made as needed) and
 * forgets the records of threads that are gone.  Returns false when out
 * of memory or descriptors. */
static bool kern_threads_list(struct kern_thread_list *l)
{
    kern_each_tid(kern_thread_list_add, l);
    ipc_lock();
    /* Threads made by thread_create that do not run yet. */
    uint64_t pkey;
    void *pvalue;
    for (size_t i = 0; !l->failed && u64map_next(&kern_threads_by_port, &i, &pkey, &pvalue);) {
        struct kern_thread *t = pvalue;
        if (t->unstarted) {
            if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                struct kern_thread **v = realloc(l->v, cap * sizeof *v);
                if (v == NULL) {
                    l->failed = true;
                    break;
                }
                l->v = v;
                l->cap = cap;
            }
            l->v[l->n++] = t;
        }
    }
    struct kern_thread **gone = calloc(kern_threads_by_tid.count + 1, sizeof *gone);
    size_t ngone = 0;
    uint64_t key;
    void *value;
    for (size_t i = 0; u64map_next(&kern_threads_by_tid, &i, &key, &value);) {
        struct kern_thread *t = value;
        /* Not listed: gone, unless it started after /proc was read (its
         * record made since by mach_thread_self): Linux says which. */
        if (!t->seen && !l->failed && gone != NULL && !t->unstarted &&
            syscall(SYS_tgkill, getpid(), t->tid, 0) != 0) {
            gone[ngone++] = t;
        }
        t->seen = false;
    }
    for (size_t i = 0; i < ngone; i++) {
        kern_thread_free(gone[i]);
    }
    ipc_unlock();
    free(gone);
    return !l->failed;
}

struct kern_thread **kern_threads_snapshot(size_t *n)
{
    struct kern_thread_list l = {0};
    if (!kern_threads_list(&l)) {
        free(l.v);
        return NULL;
    }
    if (l.v == NULL && (l.v = malloc(sizeof *l.v)) == NULL) {
        return NULL; /* an empty list still needs an array */
    }
    ipc_lock();
    for (size_t i = 0; i < l.n; i++) {
        kern_thread_ref(l.v[i]);
    }
    ipc_unlock();
    *n = l.n;
    return l.v;
}

kern_return_t kern_task_threads(mach_port_t task, thread_array_t *list,
                                mach_msg_type_number_t *count)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    size_t n = 0;
    struct kern_thread **v = kern_threads_snapshot(&n);
    if (v == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    mach_port_t *names = NULL;
    kern_return_t kr = KERN_SUCCESS;
    if (n > 0) {
        names = mmap(NULL, n * sizeof *names, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (names == MAP_FAILED) {
            names = NULL;
            kr = KERN_RESOURCE_SHORTAGE;
        }
    }
    /* The records are referenced, and their names read under [G]: a
     * thread that ends meanwhile cannot take them away. */
    ipc_lock();
    for (size_t i = 0; i < n; i++) {
        if (names != NULL) {
            names[i] = v[i]->gone ? MACH_PORT_DEAD : v[i]->kname;
        }
        kern_thread_unref(v[i]);
    }
    ipc_unlock();
    free(v);
    *list = names;
    *count = names != NULL ? (mach_msg_type_number_t)n : 0;
    return kr;
}

/* ---- times and states from Linux ---- */

/* Reads user and system time (clock ticks), the run state and the
 * start time (ticks after boot) of thread TID.  Returns false when the
 * thread is gone. */
static bool kern_tid_stat(pid_t tid, unsigned long long *utime, unsigned long long *stime,
                          char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The name is in parentheses and may hold anything: skip past it. */
    const char *p = strrchr(buf, ')');
    if (p == NULL) {
        return false;
    }
    /* Fields 3 (state) ... 14 (utime) and 15 (stime). */
    return sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", state, utime,
                  stime) == 3;
}

static time_value64_t kern_ticks_to_time(unsigned long long ticks)
{
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0) {
        hz = 100;
    }
    return (time_value64_t){.seconds = (int64_t)(ticks / (unsigned long long)hz),
                            .nanoseconds = (int64_t)(ticks % (unsigned long long)hz) *
                                           (1000000000 / hz)};
}

/* The words of an info structure TYPE before FIELD: the count GNU Mach
 * accepted before its 64-bit times were appended. */
#define KERN_INFO_OLD_COUNT(type, field) \
    ((mach_msg_type_number_t)(offsetof(type, field) / sizeof(natural_t)))

/* Copies the info structure SRC of FULL words into INFO, or only its
 * first OLD words when *COUNT has no room for them all, and says how many
 * in *COUNT.  Expects *COUNT >= OLD. */
static void kern_info_copyout(void *info, mach_msg_type_number_t *count, const void *src,
                              mach_msg_type_number_t old, mach_msg_type_number_t full)
{
    *count = *count < full ? old : full;
    memcpy(info, src, *count * sizeof(natural_t));
}

static rpc_time_value_t kern_time_to_rpc(time_value64_t t)
{
    return (rpc_time_value_t){.seconds = t.seconds,
                              .microseconds = (integer_t)(t.nanoseconds / 1000)};
}

kern_return_t kern_thread_info(mach_port_t thread, int flavor, thread_info_t info,
                               mach_msg_type_number_t *count)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    pid_t tid = t != NULL ? t->tid : 0;
    unsigned suspend = t != NULL ? t->suspend_count : 0;
    struct timespec creation = t != NULL ? t->creation : (struct timespec){0};
    int priority = t != NULL ? t->priority : 0, max_priority = t != NULL ? t->max_priority : 0;
    int policy = t != NULL ? t->policy : 0, sched_data = t != NULL ? t->sched_data : 0;
    ipc_unlock();
    if (t == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    switch (flavor) {
    case THREAD_BASIC_INFO: {
        /* GNU Mach accepts the count before the 64-bit times were added. */
        mach_msg_type_number_t old = KERN_INFO_OLD_COUNT(struct thread_basic_info, user_time64);
        if (*count < old) {
            return KERN_INVALID_ARGUMENT;
        }
        unsigned long long ut = 0, st = 0;
        char state = 'T'; /* made by thread_create, not started */
        if (tid != 0 && !kern_tid_stat(tid, &ut, &st, &state)) {
            return KERN_INVALID_ARGUMENT; /* it just exited */
        }
        struct thread_basic_info b = {0};
        b.user_time64 = kern_ticks_to_time(ut);
        b.system_time64 = kern_ticks_to_time(st);
        b.user_time = kern_time_to_rpc(b.user_time64);
        b.system_time = kern_time_to_rpc(b.system_time64);
        b.base_priority = b.cur_priority = priority;
        b.run_state = suspend > 0 ? TH_STATE_STOPPED
                      : state == 'R' ? TH_STATE_RUNNING
                      : state == 'D' ? TH_STATE_UNINTERRUPTIBLE
                      : state == 't' || state == 'T' ? TH_STATE_STOPPED
                                                     : TH_STATE_WAITING;
        b.suspend_count = (integer_t)suspend;
        b.creation_time64 = (time_value64_t){.seconds = creation.tv_sec,
                                             .nanoseconds = creation.tv_nsec};
        b.creation_time = kern_time_to_rpc(b.creation_time64);
        kern_info_copyout(info, count, &b, old, THREAD_BASIC_INFO_COUNT);
        return KERN_SUCCESS;
    }
    case THREAD_SCHED_INFO: {
        if (*count < THREAD_SCHED_INFO_COUNT) {
            return KERN_INVALID_ARGUMENT;
        }
        struct thread_sched_info s = {.policy = policy,
                                      /* the quantum in ms, as GNU Mach */
                                      .data = policy == POLICY_FIXEDPRI
                                                  ? sched_data * KERN_TICK_MS
                                                  : 0,
                                      .base_priority = priority,
                                      .max_priority = max_priority,
                                      .cur_priority = priority};
        memcpy(info, &s, sizeof s);
        *count = THREAD_SCHED_INFO_COUNT;
        return KERN_SUCCESS;
    }
    default:
        return KERN_INVALID_ARGUMENT;
    }
}

/* ---- task information ---- */

static time_value64_t kern_timeval_to_time(struct timeval tv)
{
    return (time_value64_t){.seconds = tv.tv_sec, .nanoseconds = (int64_t)tv.tv_usec * 1000};
}

static time_value64_t kern_time_sub(time_value64_t a, time_value64_t b)
{
    int64_t ns = (a.seconds - b.seconds) * 1000000000 + (a.nanoseconds - b.nanoseconds);
    if (ns < 0) {
        ns = 0;
    }
    return (time_value64_t){.seconds = ns / 1000000000, .nanoseconds = ns % 1000000000};
}

static time_value64_t kern_time_add(time_value64_t a, time_value64_t b)
{
    int64_t ns = (a.seconds + b.seconds) * 1000000000 + (a.nanoseconds + b.nanoseconds);
    return (time_value64_t){.seconds = ns / 1000000000, .nanoseconds = ns % 1000000000};
}

/* Total user and system time of the task's live Mach threads. */
struct kern_times {
    time_value64_t user, system;
};

static bool kern_times_add(pid_t tid, void *arg)
{
    struct kern_times *sum = arg;
    unsigned long long ut, st;
    char state;
    if (kern_tid_stat(tid, &ut, &st, &state)) {
        sum->user = kern_time_add(sum->user, kern_ticks_to_time(ut));
        sum->system = kern_time_add(sum->system, kern_ticks_to_time(st));
    }
    return true;
}

kern_return_t kern_task_info(mach_port_t task, int flavor, task_info_t info,
                             mach_msg_type_number_t *count)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    switch (flavor) {
    case TASK_BASIC_INFO: {
        mach_msg_type_number_t old = KERN_INFO_OLD_COUNT(struct task_basic_info, user_time64);
        if (*count < old) {
            return KERN_INVALID_ARGUMENT;
        }
        struct task_basic_info b = {0};
        unsigned long long pages = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "re");
        if (f != NULL) {
            if (fscanf(f, "%llu %llu", &pages, &resident) != 2) {
                pages = resident = 0;
            }
            fclose(f);
        }
        long page = sysconf(_SC_PAGESIZE);
        b.virtual_size = (rpc_vm_size_t)(pages * (unsigned long long)page);
        b.resident_size = (rpc_vm_size_t)(resident * (unsigned long long)page);
        b.suspend_count = (integer_t)kern_task_suspend_count();
        ipc_lock();
        b.base_priority = kern_task_get_priority();
        ipc_unlock();
        /* Terminated threads: the whole task's time less the live ones'. */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        struct kern_times live = {0};
        kern_each_tid(kern_times_add, &live);
        b.user_time64 = kern_time_sub(kern_timeval_to_time(ru.ru_utime), live.user);
        b.system_time64 = kern_time_sub(kern_timeval_to_time(ru.ru_stime), live.system);
        b.user_time = kern_time_to_rpc(b.user_time64);
        b.system_time = kern_time_to_rpc(b.system_time64);
        b.creation_time64 = kern_task_creation_time();
        b.creation_time = kern_time_to_rpc(b.creation_time64);
        kern_info_copyout(info, count, &b, old, TASK_BASIC_INFO_COUNT);
        return KERN_SUCCESS;
    }
    case TASK_EVENTS_INFO: {
        if (*count < TASK_EVENTS_INFO_COUNT) {
            return KERN_INVALID_ARGUMENT;
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        struct task_events_info e = {
            .faults = (rpc_long_natural_t)(ru.ru_minflt + ru.ru_majflt),
            .pageins = (rpc_long_natural_t)ru.ru_majflt,
            .messages_sent = (rpc_long_natural_t)ipc_messages_sent(),
            .messages_received = (rpc_long_natural_t)ipc_messages_received(),
        };
        memcpy(info, &e, sizeof e);
        *count = TASK_EVENTS_INFO_COUNT;
        return KERN_SUCCESS;
    }
    case TASK_THREAD_TIMES_INFO: {
        mach_msg_type_number_t old =
            KERN_INFO_OLD_COUNT(struct task_thread_times_info, user_time64);
        if (*count < old) {
            return KERN_INVALID_ARGUMENT;
        }
        struct kern_times live = {0};
        kern_each_tid(kern_times_add, &live);
        struct task_thread_times_info tt = {
            .user_time = kern_time_to_rpc(live.user),
            .system_time = kern_time_to_rpc(live.system),
            .user_time64 = live.user,
            .system_time64 = live.system,
        };
        kern_info_copyout(info, count, &tt, old, TASK_THREAD_TIMES_INFO_COUNT);
        return KERN_SUCCESS;
    }
    default:
        return KERN_INVALID_ARGUMENT;
    }
}

/* ---- names and priorities ---- */

kern_return_t kern_thread_set_name(mach_port_t thread, const_kernel_debug_name_t name)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    pid_t tid = t != NULL ? t->tid : 0;
    if (t != NULL) {
        snprintf(t->name, sizeof t->name, "%s", name);
    }
    ipc_unlock();
    if (t == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    if (tid != 0) {
        linux_thread_name_set(tid, name);
    }
    return KERN_SUCCESS;
}

kern_return_t kern_thread_get_name(mach_port_t thread, kernel_debug_name_t name)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    if (t != NULL) {
        snprintf(name, sizeof(kernel_debug_name_t), "%s", t->name);
    }
    ipc_unlock();
    return t != NULL ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
}

/* GNU Mach's valid priorities: 0 (highest) to NRQS - 1. */
static bool kern_priority_ok(int priority)
{
    return priority >= 0 && priority < KERN_NRQS;
}

kern_return_t kern_thread_priority(mach_port_t thread, int priority, boolean_t set_max)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    kern_return_t kr = KERN_SUCCESS;
    pid_t tid = 0;
    if (t == NULL || !kern_priority_ok(priority)) {
        kr = KERN_INVALID_ARGUMENT;
    } else {
        if (set_max) {
            t->max_priority = priority;
        }
        /* As GNU Mach: never above its maximum (numerically below). */
        if (priority < t->max_priority) {
            priority = t->max_priority;
            kr = KERN_FAILURE;
        }
        t->priority = priority;
        tid = t->unstarted ? 0 : t->tid;
    }
    ipc_unlock();
    if (kr != KERN_INVALID_ARGUMENT) {
        kern_priority_apply(tid, priority);
    }
    return kr;
}

kern_return_t kern_task_priority(mach_port_t task, int priority, boolean_t change_threads)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    if (!ok || !kern_priority_ok(priority)) {
        return KERN_INVALID_ARGUMENT;
    }
    kern_task_set_priority(priority);
    if (!change_threads) {
        return KERN_SUCCESS;
    }
    size_t n = 0;
    struct kern_thread **v = kern_threads_snapshot(&n);
    if (v == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    kern_return_t kr = KERN_SUCCESS;
    for (size_t i = 0; i < n; i++) {
        ipc_lock();
        if (priority < v[i]->max_priority) {
            v[i]->priority = v[i]->max_priority;
            kr = KERN_FAILURE;
        } else {
            v[i]->priority = priority;
        }
        int applied = v[i]->priority;
        pid_t tid = v[i]->unstarted ? 0 : v[i]->tid;
        kern_thread_unref(v[i]);
        ipc_unlock();
        kern_priority_apply(tid, applied);
    }
    free(v);
    return kr;
}

void kern_thread_fork_child(void)
{
    /* The records belonged to threads of the parent: abandon them (their
     * ports were forgotten with the name space). */
    kern_threads_by_tid = (struct u64map){0};
    kern_threads_by_port = (struct u64map){0};
}

/* ---- processor sets and scheduling (mach_host.defs) ---- */

kern_return_t kern_thread_assign(mach_port_t thread, mach_port_t new_set)
{
    return KERN_FAILURE; /* GNU Mach without MACH_HOST, whatever the ports */
}

kern_return_t kern_thread_assign_default(mach_port_t thread)
{
    return KERN_FAILURE;
}

kern_return_t kern_thread_get_assignment(mach_port_t thread, mach_port_t *assigned_set)
{
    ipc_lock();
    bool ok = kern_thread_lookup(thread) != NULL;
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    *assigned_set = kern_pset_default_name();
    return *assigned_set == MACH_PORT_NULL ? KERN_RESOURCE_SHORTAGE : KERN_SUCCESS;
}

kern_return_t kern_thread_max_priority(mach_port_t thread, mach_port_t pset, int max_priority)
{
    int policies;
    ipc_lock();
    bool ok = kern_thread_lookup(thread) != NULL && kern_priority_ok(max_priority);
    ipc_unlock();
    /* (Without MACH_HOST, GNU Mach does not check the set is the
     * thread's: there is one.) */
    if (!ok || !kern_pset_control_check(pset, &policies)) {
        return KERN_INVALID_ARGUMENT;
    }
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    pid_t tid = 0;
    int priority = 0;
    if (t != NULL) {
        t->max_priority = max_priority;
        if (max_priority > t->priority) {
            t->priority = max_priority; /* numerically above: lower */
            tid = t->unstarted ? 0 : t->tid;
        }
        priority = t->priority;
    }
    ipc_unlock();
    if (t == NULL) {
        return KERN_INVALID_ARGUMENT; /* it ended meanwhile */
    }
    if (tid != 0) {
        kern_priority_apply(tid, priority);
    }
    return KERN_SUCCESS;
}

kern_return_t kern_thread_policy(mach_port_t thread, int policy, int data)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    int current = t != NULL ? t->policy : 0;
    ipc_unlock();
    if (t == NULL || policy <= 0 || policy > POLICY_FIXEDPRI) {
        return KERN_INVALID_ARGUMENT;
    }
    if (policy != current) {
        /* Allowed only if the set enables it. */
        if (!(kern_pset_current_policies() & policy)) {
            return KERN_FAILURE;
        }
    }
    ipc_lock();
    t = kern_thread_lookup(thread);
    if (t != NULL) {
        t->policy = policy;
        if (policy == POLICY_FIXEDPRI) {
            /* DATA is a quantum in milliseconds, rounded up to ticks. */
            t->sched_data = (data + KERN_TICK_MS - 1) / KERN_TICK_MS;
        }
    }
    ipc_unlock();
    return t != NULL ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
}

kern_return_t kern_thread_depress_abort(mach_port_t thread)
{
    ipc_lock();
    bool ok = kern_thread_lookup(thread) != NULL;
    ipc_unlock();
    /* A depression (thread_switch's SWITCH_OPTION_DEPRESS) lasts only
     * while the call runs here: nothing is left to cancel. */
    return ok ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
}

kern_return_t kern_thread_wire(mach_port_t host_priv, mach_port_t thread, boolean_t wired)
{
    ipc_lock();
    bool ok = kern_object_is(host_priv, IKOT_HOST_PRIV);
    struct kern_thread *t = ok ? kern_thread_lookup(thread) : NULL;
    struct kern_thread *self = kern_serving_other_task() ? NULL : kern_thread_self();
    ipc_unlock();
    /* GNU Mach grants the VM privilege to the calling thread only.  Linux
     * has no such privilege: the call checks and records nothing more.
     * The thread of a call from another task cannot be told here: any of
     * its threads' ports is taken. */
    if (!ok || !MACH_PORT_VALID(thread)) {
        return KERN_INVALID_ARGUMENT;
    }
    if (!kern_serving_other_task() && (t == NULL || t != self)) {
        return KERN_INVALID_ARGUMENT;
    }
    return KERN_SUCCESS;
}
