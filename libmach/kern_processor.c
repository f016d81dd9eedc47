/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Processors (mach_host.defs): host_processors and the calls on a
 * processor port.  One kernel object per processor Linux has configured,
 * made by the first host_processors of the process that serves the
 * privileged host port (machd, in an instance).
 *
 * GNU Mach's answers, for a kernel built as Debian builds it (no
 * MACH_HOST): host_processors on a port that is not the privileged host
 * port is KERN_INVALID_ARGUMENT; processor_info has one flavor,
 * PROCESSOR_BASIC_INFO (another, or too small a count, KERN_FAILURE);
 * processor_get_assignment names the default processor set (an offline
 * processor: KERN_FAILURE); processor_assign is KERN_FAILURE.  processor_start, processor_exit and
 * processor_control are KERN_FAILURE too: Linux's processors are not the
 * task's to start or stop (GNU Mach starts a stopped processor, stops a
 * running one, and its x86 cpu_control refuses every command).  A port
 * that is no processor: KERN_INVALID_ARGUMENT, as GNU Mach's
 * PROCESSOR_NULL.
 */
#include <mach/processor_info.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ipc_space.h"
#include "kern.h"
#include "mach_host.server.h"

#define KERN_PROCESSORS_MAX 4096

static mach_port_name_t kern_processor_knames[KERN_PROCESSORS_MAX]; /* [G] */
static integer_t kern_processor_count;                              /* [G] made */

/* The processor KNAME stands for, or -1.  Expects [G]. */
static integer_t kern_processor_slot(mach_port_t kname)
{
    if (!MACH_PORT_VALID(kname) || !kern_object_is(kname, IKOT_PROCESSOR)) {
        return -1;
    }
    for (integer_t i = 0; i < kern_processor_count; i++) {
        if (kern_processor_knames[i] == kname) {
            return i;
        }
    }
    return -1;
}

/* Whether processor SLOT is online (Linux's list of online processors,
 * "0-3,5"; a processor it does not name is offline). */
static bool kern_processor_online(integer_t slot)
{
    FILE *f = fopen("/sys/devices/system/cpu/online", "re");
    char list[4096];
    bool online = false;
    if (f == NULL || fgets(list, sizeof list, f) == NULL) {
        online = slot == 0; /* no list: the one processor known to run */
    } else {
        /* Ranges "lo" or "lo-hi" separated by commas. */
        for (const char *p = list; *p >= '0' && *p <= '9' && !online;) {
            char *end;
            long lo = strtol(p, &end, 10), hi = lo;
            if (*end == '-') {
                hi = strtol(end + 1, &end, 10);
            }
            online = lo <= slot && slot <= hi;
            p = *end == ',' ? end + 1 : end;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return online;
}

kern_return_t kern_host_processors(mach_port_t host_priv, processor_array_t *list,
                                   mach_msg_type_number_t *count)
{
    if (!kern_is_host_priv(host_priv)) {
        return KERN_INVALID_ARGUMENT; /* GNU Mach's HOST_NULL */
    }
    integer_t cpus = kern_cpus_configured();
    cpus = cpus < KERN_PROCESSORS_MAX ? cpus : KERN_PROCESSORS_MAX;
    size_t size = (size_t)cpus * sizeof(mach_port_name_t);
    mach_port_name_t *names;
    if (kern_array_alloc((size_t)cpus, sizeof *names, (void **)&names) != KERN_SUCCESS) {
        return KERN_RESOURCE_SHORTAGE;
    }
    kern_return_t kr = KERN_SUCCESS;
    ipc_lock();
    while (kr == KERN_SUCCESS && kern_processor_count < cpus) {
        struct ipc_port *port;
        kr = kern_object_create(IKOT_PROCESSOR, &port,
                                &kern_processor_knames[kern_processor_count]);
        kern_processor_count += kr == KERN_SUCCESS;
    }
    if (kr == KERN_SUCCESS) {
        memcpy(names, kern_processor_knames, size);
    }
    ipc_unlock();
    if (kr != KERN_SUCCESS) {
        munmap(names, size);
        return KERN_RESOURCE_SHORTAGE;
    }
    *list = names;
    *count = (mach_msg_type_number_t)cpus;
    return KERN_SUCCESS;
}

kern_return_t kern_processor_info(mach_port_t processor, int flavor, mach_port_t *host,
                                  processor_info_t info, mach_msg_type_number_t *count)
{
    ipc_lock();
    integer_t slot = kern_processor_slot(processor);
    *host = kern_host_name();
    ipc_unlock();
    if (slot < 0) {
        return KERN_INVALID_ARGUMENT;
    }
    if (flavor != PROCESSOR_BASIC_INFO || *count < PROCESSOR_BASIC_INFO_COUNT) {
        return KERN_FAILURE;
    }
    struct processor_basic_info basic = {
        .cpu_type = CPU_TYPE_X86_64,
        .cpu_subtype = CPU_SUBTYPE_AT386,
        .running = kern_processor_online(slot),
        .slot_num = slot,
        .is_master = slot == 0,
    };
    memcpy(info, &basic, sizeof basic);
    *count = PROCESSOR_BASIC_INFO_COUNT;
    return KERN_SUCCESS;
}

/* KERN_FAILURE for a processor, KERN_INVALID_ARGUMENT for anything
 * else. */
static kern_return_t kern_processor_refused(mach_port_t processor)
{
    ipc_lock();
    integer_t slot = kern_processor_slot(processor);
    ipc_unlock();
    return slot < 0 ? KERN_INVALID_ARGUMENT : KERN_FAILURE;
}

kern_return_t kern_processor_start(mach_port_t processor)
{
    return kern_processor_refused(processor);
}

kern_return_t kern_processor_exit(mach_port_t processor)
{
    return kern_processor_refused(processor);
}

kern_return_t kern_processor_control(mach_port_t processor, const processor_info_t cmd,
                                     mach_msg_type_number_t count)
{
    return kern_processor_refused(processor);
}

kern_return_t kern_processor_assign(mach_port_t processor, mach_port_t new_set, boolean_t wait)
{
    return KERN_FAILURE; /* GNU Mach without MACH_HOST, whatever the ports */
}

kern_return_t kern_processor_get_assignment(mach_port_t processor, mach_port_t *assigned_set)
{
    ipc_lock();
    integer_t slot = kern_processor_slot(processor);
    ipc_unlock();
    if (slot < 0) {
        return KERN_INVALID_ARGUMENT;
    }
    if (!kern_processor_online(slot)) {
        return KERN_FAILURE; /* an offline processor is in no set */
    }
    *assigned_set = kern_pset_default_name();
    return *assigned_set == MACH_PORT_NULL ? KERN_RESOURCE_SHORTAGE : KERN_SUCCESS;
}

void kern_processor_fork_child(void)
{
    kern_processor_count = 0;
}
