/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "device_time.h"

#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <mach/time_value.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define DEVICE_TIME_PAGE 4096u
#define DEVICE_TIME_TICK_NS 10000000L /* GNU Mach's HZ of 100 */

static volatile mapped_time_value_t *device_time_page; /* constant once made */
static mach_port_t device_time_object;                 /* constant once made */
static pthread_once_t device_time_once = PTHREAD_ONCE_INIT;
static bool device_time_running;                       /* set once, under the once */

/* Writes the time of day and the uptime, each guarded as GNU Mach guards
 * it: the check fields first, then the fractions, then the seconds
 * (readers read the seconds, then the fractions, then the checks). */
static void device_time_update(void)
{
    volatile mapped_time_value_t *t = device_time_page;
    struct timespec now, up;
    clock_gettime(CLOCK_REALTIME, &now);
    clock_gettime(CLOCK_BOOTTIME, &up); /* host_get_uptime64's clock */
    t->check_seconds = (integer_t)now.tv_sec;
    t->check_seconds64 = now.tv_sec;
    atomic_thread_fence(memory_order_seq_cst);
    t->microseconds = (integer_t)(now.tv_nsec / 1000);
    t->time_value.nanoseconds = now.tv_nsec;
    atomic_thread_fence(memory_order_seq_cst);
    t->seconds = (integer_t)now.tv_sec;
    t->time_value.seconds = now.tv_sec;

    t->check_upseconds64 = up.tv_sec;
    atomic_thread_fence(memory_order_seq_cst);
    t->uptime_value.nanoseconds = up.tv_nsec;
    atomic_thread_fence(memory_order_seq_cst);
    t->uptime_value.seconds = up.tv_sec;
}

static void *device_time_main(void *arg)
{
    (void)arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        device_time_update();
        next.tv_nsec += DEVICE_TIME_TICK_NS;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
    }
    return NULL;
}

static void device_time_start(void)
{
    device_time_update(); /* right from the first mapping */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    device_time_running = pthread_create(&thread, &attr, device_time_main, NULL) == 0;
    pthread_attr_destroy(&attr);
}

int device_time_init(mach_port_t set)
{
    int fd = memfd_create("hell-time", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *page = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, DEVICE_TIME_PAGE) == 0) {
        page = mmap(NULL, DEVICE_TIME_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    /* Only this mapping writes it: a task that reopens its descriptor
     * read-write (/proc) can neither write, map it writable nor resize
     * it. */
    if (page != MAP_FAILED &&
        fcntl(fd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) != 0) {
        munmap(page, DEVICE_TIME_PAGE);
        page = MAP_FAILED;
    }
    mach_port_t self = mach_task_self();
    mach_port_t port = MACH_PORT_NULL;
    kern_return_t kr = page == MAP_FAILED ? KERN_RESOURCE_SHORTAGE
                                          : mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE,
                                                               &port);
    if (kr == KERN_SUCCESS) {
        kr = mach_port_insert_right(self, port, port, MACH_MSG_TYPE_MAKE_SEND);
    }
    if (kr == KERN_SUCCESS) {
        kr = mach_port_move_member(self, port, set);
    }
    if (kr == KERN_SUCCESS && hell_vm_direct_object(port, fd) != 0) {
        kr = KERN_RESOURCE_SHORTAGE;
    }
    if (fd >= 0) {
        close(fd); /* the mapping and the VM server's descriptor keep it */
    }
    if (kr != KERN_SUCCESS) {
        fprintf(stderr, "machd: time device: %s\n",
                page == MAP_FAILED ? strerror(errno) : "no memory object port");
        if (MACH_PORT_VALID(port)) {
            (void)mach_port_destroy(self, port);
        }
        if (page != MAP_FAILED) {
            munmap(page, DEVICE_TIME_PAGE);
        }
        return -1;
    }
    device_time_page = page;
    device_time_object = port;
    return 0;
}

mach_port_t device_time_pager(void)
{
    pthread_once(&device_time_once, device_time_start);
    return device_time_running ? device_time_object : MACH_PORT_NULL;
}
