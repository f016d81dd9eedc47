/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A sample external pager serving a Linux file (filepager.h).
 */
#include <errno.h>
#include <mach/gnumach.h>
#include <mach/memory_object.h>
#include <mach/notify.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "filepager.h"
#include "memory_object.server.h"

/* The server stubs reach the pager through its port's name: one pager
 * per process is served by filepager_serve at a time per thread. */
static __thread struct filepager *filepager_current;

/* The largest request read into a thread's own buffer: the most a
 * request of libmach's kernel asks (256 pages). */
#define FILEPAGER_BUF (1024 * 1024)

static pthread_key_t filepager_buf_key;
static pthread_once_t filepager_buf_once = PTHREAD_ONCE_INIT;

static void filepager_buf_release(void *buf)
{
    munmap(buf, FILEPAGER_BUF);
}

static void filepager_buf_key_create(void)
{
    (void)pthread_key_create(&filepager_buf_key, filepager_buf_release);
}

/* The calling thread's buffer (NULL when it cannot be mapped), released
 * when the thread exits. */
static char *filepager_thread_buf(void)
{
    static __thread char *buf;
    if (buf == NULL) {
        void *p = mmap(NULL, FILEPAGER_BUF, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            return NULL;
        }
        pthread_once(&filepager_buf_once, filepager_buf_key_create);
        pthread_setspecific(filepager_buf_key, p);
        buf = p;
    }
    return buf;
}

static struct filepager *filepager_of(mach_port_t object)
{
    struct filepager *pager = filepager_current;
    return pager != NULL && pager->object == object ? pager : NULL;
}

struct filepager *filepager_create(int fd, bool writable)
{
    struct filepager *pager = calloc(1, sizeof *pager);
    if (pager == NULL) {
        return NULL;
    }
    pager->fd = fd;
    pager->writable = writable;
    if (mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &pager->object) !=
        KERN_SUCCESS) {
        free(pager);
        return NULL;
    }
    return pager;
}

/* Lets go of the send right to CONTROL a call brought: of every right
 * to it when the pager keeps none. */
static void filepager_release_control(struct filepager *pager, mach_port_t control)
{
    if (pager == NULL || !pager->keeps_no_control) {
        /* One reference, on every request: mach_port_deallocate, unlike
         * mach_port_mod_refs, need not ask Linux whether the port died
         * while the name keeps other references (and takes a dead name's
         * reference too). */
        mach_port_deallocate(mach_task_self(), control);
        return;
    }
    mach_port_urefs_t refs = 1;
    if (mach_port_get_refs(mach_task_self(), control, MACH_PORT_RIGHT_SEND, &refs) !=
        KERN_SUCCESS) {
        refs = 1;
    }
    mach_port_mod_refs(mach_task_self(), control, MACH_PORT_RIGHT_SEND, -(int)refs);
}

kern_return_t filepager_memory_object_init(mach_port_t object, mach_port_t control,
                                           mach_port_t name, vm_size_t page_size)
{
    struct filepager *pager = filepager_of(object);
    if (pager == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    atomic_fetch_add(&pager->stats.inits, 1);
    if (pager->initialized || page_size != (vm_size_t)getpagesize()) {
        /* One kernel at a time: a second one is turned away. */
        (void)memory_object_destroy(control, KERN_FAILURE);
        mach_port_deallocate(mach_task_self(), control);
        mach_port_deallocate(mach_task_self(), name);
        return KERN_SUCCESS;
    }
    pager->initialized = true;
    pager->name = name; /* for filepager_object_sync */
    kern_return_t kr = memory_object_ready(control, !pager->uncached, MEMORY_OBJECT_COPY_DELAY);
    if (pager->keeps_no_control) {
        filepager_release_control(pager, control);
    } else {
        pager->control = control;
    }
    return kr;
}

/* Waits up to TIMEOUT ms for a message on PORT; returns its id, or -1. */
static mach_msg_id_t filepager_wait_id(mach_port_t port, mach_msg_timeout_t timeout)
{
    union {
        mach_msg_header_t head;
        char buf[256];
    } m;
    if (mach_msg(&m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, port, timeout,
                 MACH_PORT_NULL) != MACH_MSG_SUCCESS) {
        return -1;
    }
    mach_msg_destroy(&m.head);
    return m.head.msgh_id;
}

/* Counts whether CONTROL, whose receive right just came with
 * memory_object_terminate, sees no-senders exactly when due: at once when
 * the pager holds no send right to it (KEEPS_ONE false), else only after
 * the pager drops the one it kept since init (then done here). */
static void filepager_check_no_senders(struct filepager *pager, mach_port_t control,
                                       bool keeps_one)
{
    mach_port_t notify, previous = MACH_PORT_NULL;
    bool exact = false;
    if (mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &notify) !=
        KERN_SUCCESS) {
        atomic_fetch_add(&pager->stats.ns_wrong, 1);
        return;
    }
    if (mach_port_request_notification(mach_task_self(), control, MACH_NOTIFY_NO_SENDERS, 0,
                                       notify, MACH_MSG_TYPE_MAKE_SEND_ONCE,
                                       &previous) == KERN_SUCCESS) {
        if (keeps_one) {
            exact = filepager_wait_id(notify, 200) == -1;
            mach_port_deallocate(mach_task_self(), control);
        } else {
            exact = true;
        }
        exact = exact && filepager_wait_id(notify, 5000) == MACH_NOTIFY_NO_SENDERS;
    } else if (keeps_one) {
        mach_port_deallocate(mach_task_self(), control);
    }
    mach_port_mod_refs(mach_task_self(), notify, MACH_PORT_RIGHT_RECEIVE, -1);
    atomic_fetch_add(exact ? &pager->stats.ns_exact : &pager->stats.ns_wrong, 1);
}

kern_return_t filepager_memory_object_terminate(mach_port_t object, mach_port_t control,
                                                mach_port_t name)
{
    struct filepager *pager = filepager_of(object);
    bool ours = pager != NULL && pager->initialized &&
                (pager->keeps_no_control || control == pager->control);
    if (ours) {
        atomic_fetch_add(&pager->stats.terminates, 1);
    }
    bool keeps_one = ours && !pager->keeps_no_control;
    if (ours && pager->checks_no_senders) {
        filepager_check_no_senders(pager, control, keeps_one);
        keeps_one = false; /* dropped there */
    }
    /* The receive rights of both ports come with the call; the send right
     * to the control port kept since init goes too (a dead name by now). */
    mach_port_mod_refs(mach_task_self(), control, MACH_PORT_RIGHT_RECEIVE, -1);
    mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_RECEIVE, -1);
    if (keeps_one) {
        mach_port_deallocate(mach_task_self(), control);
    }
    if (ours) {
        mach_port_deallocate(mach_task_self(), pager->name); /* dead too by now */
        pager->name = MACH_PORT_NULL;
        pager->control = MACH_PORT_NULL;
        pager->initialized = false;
    }
    return KERN_SUCCESS;
}

kern_return_t filepager_memory_object_copy(mach_port_t old_object, mach_port_t old_control,
                                           vm_offset_t offset, vm_size_t length,
                                           mach_port_t new_object)
{
    (void)old_object;
    (void)offset;
    (void)length;
    mach_port_deallocate(mach_task_self(), old_control);
    mach_port_mod_refs(mach_task_self(), new_object, MACH_PORT_RIGHT_RECEIVE, -1);
    return KERN_SUCCESS; /* asked only of COPY_CALL objects, which this is not */
}

/* Answers a request for [OFFSET, OFFSET + LENGTH) from the file: its
 * data, zeros past its end, or data_unavailable when it starts there.
 *
 * The data is read into this thread's buffer, whose pages stay mapped
 * from one request to the next, and copied into the message.  Read
 * instead into memory from vm_allocate that the message moves away
 * whole (its pages go without a copy), a request of 64 pages took a
 * third longer end to end: every page was a fresh one of shared memory
 * (the region's memfd) that the read faulted in and cleared, and
 * unmapped again after the send, which costs Linux far more than copying
 * a page.  Only a request too large for the buffer is read that way. */
static kern_return_t filepager_supply(struct filepager *pager, mach_port_t control,
                                      vm_offset_t offset, vm_size_t length)
{
    char *buf = length <= FILEPAGER_BUF ? filepager_thread_buf() : NULL;
    bool own = buf == NULL;
    vm_address_t mem = 0;
    if (own && vm_allocate(mach_task_self(), &mem, length, TRUE) != KERN_SUCCESS) {
        return memory_object_data_error(control, offset, length, KERN_RESOURCE_SHORTAGE);
    }
    if (own) {
        buf = (char *)mem;
    }
    ssize_t n = pread(pager->fd, buf, length, (off_t)offset);
    if (n <= 0) {
        if (own) {
            vm_deallocate(mach_task_self(), mem, length);
        }
        return n == 0 ? memory_object_data_unavailable(control, offset, length)
                      : memory_object_data_error(control, offset, length, KERN_MEMORY_ERROR);
    }
    if (!own && (size_t)n < length) {
        memset(buf + n, 0, length - (size_t)n); /* (a fresh mapping is zero) */
    }
    return memory_object_data_supply(control, offset, (vm_offset_t)buf,
                                     (mach_msg_type_number_t)length, own, pager->supply_lock,
                                     pager->precious, MACH_PORT_NULL);
}

kern_return_t filepager_memory_object_data_request(mach_port_t object, mach_port_t control,
                                                   vm_offset_t offset, vm_size_t length,
                                                   vm_prot_t desired_access)
{
    (void)desired_access;
    struct filepager *pager = filepager_of(object);
    if (pager == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    atomic_fetch_add(&pager->stats.requests, 1);
    atomic_fetch_add(&pager->stats.pages_requested, (unsigned)(length / getpagesize()));
    mach_port_type_t type = 0;
    if (pager->keeps_no_control &&
        (mach_port_type(mach_task_self(), control, &type) != KERN_SUCCESS ||
         type != MACH_PORT_TYPE_SEND)) {
        atomic_fetch_add(&pager->stats.bad_controls, 1);
    }
    kern_return_t kr = KERN_SUCCESS;
    switch (atomic_load(&pager->mode)) {
    case FILEPAGER_SILENT:
        break;
    case FILEPAGER_ERROR:
        kr = memory_object_data_error(control, offset, length, KERN_MEMORY_ERROR);
        break;
    default:
        kr = filepager_supply(pager, control, offset, length);
        break;
    }
    filepager_release_control(pager, control);
    return kr;
}

kern_return_t filepager_memory_object_data_unlock(mach_port_t object, mach_port_t control,
                                                  vm_offset_t offset, vm_size_t length,
                                                  vm_prot_t desired_access)
{
    struct filepager *pager = filepager_of(object);
    if (pager == NULL) {
        return KERN_INVALID_ARGUMENT;
    }
    atomic_store(&pager->stats.unlock_access, (unsigned)desired_access);
    atomic_fetch_add(&pager->stats.unlocks, 1);
    int answer = pager->writable ? atomic_load(&pager->unlock_mode) : FILEPAGER_UNLOCK_ERROR;
    kern_return_t kr = KERN_SUCCESS;
    if (answer == FILEPAGER_UNLOCK_GRANT) {
        kr = memory_object_lock_request(control, offset, length, MEMORY_OBJECT_RETURN_NONE,
                                        FALSE, VM_PROT_NONE, MACH_PORT_NULL);
    } else if (answer == FILEPAGER_UNLOCK_ERROR) {
        kr = memory_object_data_error(control, offset, length, KERN_PROTECTION_FAILURE);
    }
    mach_port_deallocate(mach_task_self(), control);
    return kr;
}

kern_return_t filepager_memory_object_lock_completed(mach_port_t object, mach_port_t control,
                                                     vm_offset_t offset, vm_size_t length)
{
    (void)offset;
    (void)length;
    struct filepager *pager = filepager_of(object);
    if (pager != NULL) {
        atomic_fetch_add(&pager->stats.lock_completed, 1);
    }
    mach_port_deallocate(mach_task_self(), control);
    return KERN_SUCCESS;
}

kern_return_t filepager_memory_object_supply_completed(mach_port_t object, mach_port_t control,
                                                       vm_offset_t offset, vm_size_t length,
                                                       kern_return_t result,
                                                       vm_offset_t error_offset)
{
    (void)object;
    (void)offset;
    (void)length;
    (void)result;
    (void)error_offset;
    mach_port_deallocate(mach_task_self(), control);
    return KERN_SUCCESS;
}

kern_return_t filepager_memory_object_data_return(mach_port_t object, mach_port_t control,
                                                  vm_offset_t offset, vm_offset_t data,
                                                  mach_msg_type_number_t size, boolean_t dirty,
                                                  boolean_t kernel_copy)
{
    (void)kernel_copy;
    struct filepager *pager = filepager_of(object);
    if (pager != NULL) {
        atomic_fetch_add(&pager->stats.returns, 1);
        atomic_fetch_add(&pager->stats.pages_returned, size / (unsigned)getpagesize());
        if (dirty) {
            atomic_fetch_add(&pager->stats.dirty_returned, size / (unsigned)getpagesize());
        }
        if (dirty && pager->writable &&
            pwrite(pager->fd, (void *)data, size, (off_t)offset) != (ssize_t)size) {
            fprintf(stderr, "filepager: cannot write back %u bytes at %lu: %s\n", size,
                    (unsigned long)offset, strerror(errno));
        }
    }
    /* The request is consumed whatever happened: no error (MIG would
     * destroy what it carried a second time). */
    vm_deallocate(mach_task_self(), data, size);
    mach_port_deallocate(mach_task_self(), control);
    return KERN_SUCCESS;
}

kern_return_t filepager_memory_object_change_completed(mach_port_t object, boolean_t may_cache,
                                                       memory_object_copy_strategy_t strategy)
{
    (void)object;
    (void)may_cache;
    (void)strategy;
    return KERN_SUCCESS;
}

extern boolean_t memory_object_server(mach_msg_header_t *in, mach_msg_header_t *out);

void filepager_serve(struct filepager *pager)
{
    filepager_current = pager;
    (void)mach_msg_server(memory_object_server, 64 * 1024, pager->object);
}

static void *filepager_main(void *arg)
{
    filepager_serve(arg);
    return NULL;
}

bool filepager_start(struct filepager *pager)
{
    pthread_t thread;
    if (pthread_create(&thread, NULL, filepager_main, pager) != 0) {
        return false;
    }
    pthread_detach(thread);
    return true;
}

/* Sends a lock request and waits for its completion. */
static kern_return_t filepager_lock(struct filepager *pager, vm_offset_t offset,
                                    vm_size_t size, memory_object_return_t should_return,
                                    bool flush, vm_prot_t lock, int timeout_ms)
{
    if (!MACH_PORT_VALID(pager->control)) {
        return KERN_INVALID_ARGUMENT;
    }
    unsigned seen = atomic_load(&pager->stats.lock_completed);
    kern_return_t kr = memory_object_lock_request(pager->control, offset, size, should_return,
                                                  flush, lock, pager->object);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    for (int waited = 0; atomic_load(&pager->stats.lock_completed) == seen; waited++) {
        if (waited >= timeout_ms) {
            return KERN_TIMEDOUT;
        }
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    return KERN_SUCCESS;
}

kern_return_t filepager_sync(struct filepager *pager, vm_offset_t offset, vm_size_t size,
                             bool flush, int timeout_ms)
{
    return filepager_lock(pager, offset, size, MEMORY_OBJECT_RETURN_DIRTY, flush,
                          VM_PROT_NO_CHANGE, timeout_ms);
}

kern_return_t filepager_object_sync(struct filepager *pager, vm_offset_t offset, vm_size_t size,
                                    bool flush)
{
    if (!pager->initialized) {
        return KERN_INVALID_ARGUMENT;
    }
    return vm_object_sync(pager->name, offset, size, flush, TRUE, FALSE);
}

kern_return_t filepager_lock_writes(struct filepager *pager, vm_offset_t offset,
                                    vm_size_t size, int timeout_ms)
{
    return filepager_set_lock(pager, offset, size, VM_PROT_WRITE, timeout_ms);
}

kern_return_t filepager_set_lock(struct filepager *pager, vm_offset_t offset, vm_size_t size,
                                 vm_prot_t lock, int timeout_ms)
{
    return filepager_lock(pager, offset, size, MEMORY_OBJECT_RETURN_NONE, false, lock,
                          timeout_ms);
}
