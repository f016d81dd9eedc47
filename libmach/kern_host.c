/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The host as every task sees it (mach_host.defs, mach_i386.defs): host
 * information, time, the kernel version, the default processor set.
 * Each task serves its own host port from what Linux tells it.  The
 * privileged host port is made by the kernel process of an instance
 * (machd, hell_host_priv_create) and served there: the privileged calls
 * refuse any other host port with KERN_INVALID_HOST, as GNU Mach refuses
 * an unprivileged host port.
 */
#include <cpuid.h>
#include <mach/host_info.h>
#include <mach/machine.h>
#include <mach/policy.h>
#include <mach/processor_info.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "ipc_space.h"
#include "kern.h"
#include "mach.server.h"
#include "mach_host.server.h"
#include "mach_i386.server.h"

/* GNU Mach's scheduler tick (kern/sched.h): 10 ms. */
#define KERN_TICK_MS 10

static mach_port_name_t kern_default_manager; /* [G] kernel-space send right, or 0 */

/* [G] The privileged host port (kernel space), and what host_reboot on
 * it calls. */
static mach_port_name_t kern_host_priv_kname;
static void (*kern_reboot_handler)(int options);

bool kern_host_port_ok(mach_port_t host, bool *privileged)
{
    ipc_lock();
    *privileged = kern_object_is(host, IKOT_HOST_PRIV);
    bool ok = *privileged || kern_object_is(host, IKOT_HOST);
    ipc_unlock();
    return ok;
}

/* Whether HOST (kernel space) is a host port, privileged or not. */
static bool kern_is_host(mach_port_t host)
{
    bool privileged;
    return kern_host_port_ok(host, &privileged);
}

bool kern_host_priv_made(void)
{
    ipc_lock();
    bool made = kern_host_priv_kname != MACH_PORT_NULL;
    ipc_unlock();
    return made;
}

bool kern_is_host_priv(mach_port_t host)
{
    bool privileged;
    return kern_host_port_ok(host, &privileged) && privileged;
}

void kern_host_fork_child(void)
{
    kern_host_priv_kname = MACH_PORT_NULL;
    kern_default_manager = MACH_PORT_NULL;
    kern_processor_fork_child();
    kern_reboot_handler = NULL;
}

__attribute__((visibility("default"))) mach_port_t
hell_host_priv_create(void (*on_reboot)(int options))
{
    struct ipc_port *port;
    ipc_lock();
    kern_reboot_handler = on_reboot;
    if (kern_host_priv_kname == MACH_PORT_NULL &&
        kern_object_create(IKOT_HOST_PRIV, &port, &kern_host_priv_kname) != KERN_SUCCESS) {
        kern_host_priv_kname = MACH_PORT_NULL;
    }
    mach_port_name_t name = kern_give_send(kern_host_priv_kname);
    ipc_unlock();
    kern_service_start();
    return name;
}

integer_t kern_cpus_configured(void)
{
    long n = sysconf(_SC_NPROCESSORS_CONF);
    return n > 0 ? (integer_t)n : 1;
}

static integer_t kern_cpus_online(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (integer_t)n : 1;
}

/* The load averages scaled by LOAD_SCALE, from /proc/loadavg. */
static void kern_load(integer_t avenrun[3])
{
    double load[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "re");
    if (f != NULL) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) {
            load[0] = load[1] = load[2] = 0;
        }
        fclose(f);
    }
    for (int i = 0; i < 3; i++) {
        avenrun[i] = (integer_t)(load[i] * LOAD_SCALE);
    }
}

/* GNU Mach's mach factor: the processors left over, never below 0. */
static integer_t kern_mach_factor(integer_t avenrun, integer_t cpus)
{
    integer_t free = cpus * LOAD_SCALE - avenrun;
    return free > 0 ? free : 0;
}

kern_return_t kern_host_info(mach_port_t host, int flavor, host_info_t info,
                             mach_msg_type_number_t *count)
{
    if (!kern_is_host(host)) {
        return KERN_INVALID_HOST;
    }
    switch (flavor) {
    case HOST_BASIC_INFO: {
        if (*count < HOST_BASIC_INFO_COUNT) {
            return KERN_FAILURE;
        }
        long pages = sysconf(_SC_PHYS_PAGES);
        struct host_basic_info basic = {
            .max_cpus = kern_cpus_configured(),
            .avail_cpus = kern_cpus_online(),
            .memory_size = pages > 0 ? (rpc_vm_size_t)pages * (rpc_vm_size_t)getpagesize() : 0,
            .cpu_type = CPU_TYPE_X86_64,
            .cpu_subtype = CPU_SUBTYPE_AT386,
        };
        memcpy(info, &basic, sizeof basic);
        *count = HOST_BASIC_INFO_COUNT;
        return KERN_SUCCESS;
    }
    case HOST_PROCESSOR_SLOTS: {
        integer_t cpus = kern_cpus_configured();
        if (*count < (mach_msg_type_number_t)cpus) {
            return KERN_FAILURE;
        }
        for (integer_t i = 0; i < cpus; i++) {
            info[i] = i;
        }
        *count = (mach_msg_type_number_t)cpus;
        return KERN_SUCCESS;
    }
    case HOST_SCHED_INFO: {
        if (*count < HOST_SCHED_INFO_COUNT) {
            return KERN_FAILURE;
        }
        struct host_sched_info sched = {.min_timeout = KERN_TICK_MS,
                                        .min_quantum = KERN_TICK_MS};
        memcpy(info, &sched, sizeof sched);
        *count = HOST_SCHED_INFO_COUNT;
        return KERN_SUCCESS;
    }
    case HOST_LOAD_INFO: {
        if (*count < HOST_LOAD_INFO_COUNT) {
            return KERN_FAILURE;
        }
        struct host_load_info load;
        kern_load(load.avenrun);
        for (int i = 0; i < 3; i++) {
            load.mach_factor[i] = kern_mach_factor(load.avenrun[i], kern_cpus_online());
        }
        memcpy(info, &load, sizeof load);
        *count = HOST_LOAD_INFO_COUNT;
        return KERN_SUCCESS;
    }
    default:
        return KERN_INVALID_ARGUMENT;
    }
}

kern_return_t kern_host_get_kernel_version(mach_port_t host, kernel_version_t version)
{
    if (!kern_is_host(host)) {
        return KERN_INVALID_HOST;
    }
    struct utsname u;
    if (uname(&u) != 0) {
        strcpy(u.release, "?");
        strcpy(u.machine, "x86_64");
    }
    snprintf(version, sizeof(kernel_version_t),
             "GNU Mach 1.8 (HELL %s: the Hurd Emulation Layer on Linux %s %s)\n", HELL_VERSION,
             u.release, u.machine);
    return KERN_SUCCESS;
}

kern_return_t kern_host_get_time(mach_port_t host, time_value_t *now)
{
    if (!kern_is_host(host)) {
        return KERN_INVALID_HOST;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    now->seconds = ts.tv_sec;
    now->microseconds = (integer_t)(ts.tv_nsec / 1000);
    return KERN_SUCCESS;
}

kern_return_t kern_host_get_time64(mach_port_t host, time_value64_t *now)
{
    if (!kern_is_host(host)) {
        return KERN_INVALID_HOST;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *now = (time_value64_t){.seconds = ts.tv_sec, .nanoseconds = ts.tv_nsec};
    return KERN_SUCCESS;
}

kern_return_t kern_host_get_uptime64(mach_port_t host, time_value64_t *uptime)
{
    if (!kern_is_host(host)) {
        return KERN_INVALID_HOST;
    }
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    *uptime = (time_value64_t){.seconds = ts.tv_sec, .nanoseconds = ts.tv_nsec};
    return KERN_SUCCESS;
}

/* The privileged calls: only the port hell_host_priv_create made. */

/* GNU Mach's host_reboot options (sys/reboot.h). */
#define KERN_RB_DEBUGGER 0x1000

/* Ends the instance (the kernel process's handler), or with RB_DEBUGGER
 * returns at once: there is no kernel debugger to enter. */
kern_return_t kern_host_reboot(mach_port_t host_priv, int options)
{
    if (!kern_is_host_priv(host_priv)) {
        return KERN_INVALID_HOST;
    }
    ipc_lock();
    void (*handler)(int) = kern_reboot_handler;
    ipc_unlock();
    if (!(options & KERN_RB_DEBUGGER) && handler != NULL) {
        handler(options);
    }
    return KERN_SUCCESS;
}

/* Sets the clock to SECONDS and NANOSECONDS through HOST_PRIV.  Setting
 * it is Linux's business: it takes CAP_SYS_TIME (else KERN_NO_ACCESS). */
static kern_return_t kern_set_clock(mach_port_t host_priv, int64_t seconds,
                                    int64_t nanoseconds)
{
    if (!kern_is_host_priv(host_priv)) {
        return KERN_INVALID_HOST;
    }
    if (seconds < 0 || nanoseconds < 0 || nanoseconds >= 1000000000) {
        return KERN_INVALID_ARGUMENT;
    }
    struct timespec ts = {.tv_sec = seconds, .tv_nsec = nanoseconds};
    return clock_settime(CLOCK_REALTIME, &ts) == 0 ? KERN_SUCCESS : KERN_NO_ACCESS;
}

kern_return_t kern_host_set_time(mach_port_t host_priv, time_value_t new_time)
{
    return kern_set_clock(host_priv, new_time.seconds, (int64_t)new_time.microseconds * 1000);
}

kern_return_t kern_host_set_time64(mach_port_t host_priv, time_value64_t new_time)
{
    return kern_set_clock(host_priv, new_time.seconds, new_time.nanoseconds);
}

/* The largest adjustment taken, in microseconds: Linux's adjtime takes
 * about 2145 seconds (its 32-bit microsecond offset). */
#define KERN_ADJUST_MAX_US (2000ll * 1000000)

/* Gradual adjustment (adjtime) needs CAP_SYS_TIME as well: refused
 * with KERN_NO_ACCESS without it. */
static kern_return_t kern_adjust_clock(int64_t delta_us, int64_t *old_us)
{
    if (delta_us < -KERN_ADJUST_MAX_US || delta_us > KERN_ADJUST_MAX_US) {
        return KERN_INVALID_ARGUMENT;
    }
    struct timeval delta = {.tv_sec = delta_us / 1000000, .tv_usec = delta_us % 1000000};
    struct timeval old;
    if (adjtime(&delta, &old) != 0) {
        return KERN_NO_ACCESS;
    }
    *old_us = (int64_t)old.tv_sec * 1000000 + old.tv_usec;
    return KERN_SUCCESS;
}

kern_return_t kern_host_adjust_time(mach_port_t host_priv, time_value_t delta,
                                    time_value_t *old)
{
    if (!kern_is_host_priv(host_priv)) {
        return KERN_INVALID_HOST;
    }
    int64_t old_us = 0;
    /* (32-bit fields: no overflow in 64 bits.) */
    kern_return_t kr =
        kern_adjust_clock((int64_t)delta.seconds * 1000000 + delta.microseconds, &old_us);
    if (kr == KERN_SUCCESS) {
        *old = (time_value_t){.seconds = (integer_t)(old_us / 1000000),
                              .microseconds = (integer_t)(old_us % 1000000)};
    }
    return kr;
}

kern_return_t kern_host_adjust_time64(mach_port_t host_priv, time_value64_t delta,
                                      time_value64_t *old)
{
    if (!kern_is_host_priv(host_priv)) {
        return KERN_INVALID_HOST;
    }
    int64_t old_us = 0;
    if (delta.seconds < -KERN_ADJUST_MAX_US / 1000000 ||
        delta.seconds > KERN_ADJUST_MAX_US / 1000000) {
        return KERN_INVALID_ARGUMENT; /* before the product can overflow */
    }
    kern_return_t kr =
        kern_adjust_clock(delta.seconds * 1000000 + delta.nanoseconds / 1000, &old_us);
    if (kr == KERN_SUCCESS) {
        *old = (time_value64_t){.seconds = old_us / 1000000,
                                .nanoseconds = (old_us % 1000000) * 1000};
    }
    return kr;
}

/* The default memory manager: recorded and given back as GNU Mach does,
 * never sent memory_object_create (anonymous memory is Linux's, paged to
 * its swap). */
kern_return_t kern_vm_set_default_memory_manager(mach_port_t host_priv,
                                                 mach_port_t *default_manager)
{
    if (!kern_is_host_priv(host_priv)) {
        return KERN_INVALID_HOST;
    }
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    mach_port_name_t supplied = *default_manager; /* ours on success */
    ipc_lock();
    mach_port_name_t current = kern_default_manager;
    mach_port_type_t type = 0;
    if (MACH_PORT_VALID(current) &&
        (ipc_right_type(kspace, current, &type) != KERN_SUCCESS ||
         !(type & MACH_PORT_TYPE_SEND))) {
        (void)ipc_right_dealloc(kspace, current); /* it died */
        current = kern_default_manager = MACH_PORT_NULL;
    }
    if (MACH_PORT_VALID(supplied)) {
        kern_default_manager = supplied; /* the current one goes to the caller */
    } else if (MACH_PORT_VALID(current) &&
               ipc_right_delta(kspace, current, MACH_PORT_RIGHT_SEND, 1) != KERN_SUCCESS) {
        current = MACH_PORT_NULL; /* (no more references to give) */
    }
    ipc_unlock();
    *default_manager = current; /* moved by the reply */
    return KERN_SUCCESS;
}

kern_return_t kern_processor_set_info(mach_port_t set_name, int flavor, mach_port_t *host,
                                      processor_set_info_t info,
                                      mach_msg_type_number_t *count)
{
    ipc_lock();
    bool ok = kern_pset_is(set_name, false);
    *host = kern_host_name();
    size_t tasks = kern_pset_task_count();
    int policies, max_priority;
    kern_pset_sched(&policies, &max_priority);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    switch (flavor) {
    case PROCESSOR_SET_BASIC_INFO: {
        if (*count < PROCESSOR_SET_BASIC_INFO_COUNT) {
            return KERN_FAILURE;
        }
        integer_t avenrun[3];
        kern_load(avenrun);
        integer_t cpus = kern_cpus_online();
        struct processor_set_basic_info basic = {
            .processor_count = cpus,
            .task_count = (integer_t)tasks,
            .thread_count = (integer_t)kern_pset_thread_count(),
            .load_average = avenrun[0],
            .mach_factor = kern_mach_factor(avenrun[0], cpus),
        };
        memcpy(info, &basic, sizeof basic);
        *count = PROCESSOR_SET_BASIC_INFO_COUNT;
        return KERN_SUCCESS;
    }
    case PROCESSOR_SET_SCHED_INFO: {
        if (*count < PROCESSOR_SET_SCHED_INFO_COUNT) {
            return KERN_FAILURE;
        }
        struct processor_set_sched_info sched = {.policies = policies,
                                                 .max_priority = max_priority};
        memcpy(info, &sched, sizeof sched);
        *count = PROCESSOR_SET_SCHED_INFO_COUNT;
        return KERN_SUCCESS;
    }
    default:
        return KERN_INVALID_ARGUMENT;
    }
}

/* The size of the i386_XFLOAT_STATE flavor: its 16-byte header and the
 * processor's standard-format XSAVE area for the enabled features
 * (CPUID leaf 0xD, EBX), what a signal frame holds on Linux. */
kern_return_t kern_i386_get_xstate_size(mach_port_t host, vm_size_t *size)
{
    if (!kern_is_host(host)) {
        return KERN_INVALID_HOST;
    }
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx) || ebx == 0) {
        ebx = 512 + 64; /* FXSAVE area and XSAVE header */
    }
    *size = 16 + ebx;
    return KERN_SUCCESS;
}
