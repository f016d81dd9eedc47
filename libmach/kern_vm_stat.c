/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vm_statistics (mach.defs) and vm_cache_statistics (gnumach.defs): the
 * host's figures, as GNU Mach gives them whatever the task, from what
 * Linux counts (/proc/meminfo, /proc/vmstat).
 */
#include <inttypes.h>
#include <mach/vm_cache_statistics.h>
#include <mach/vm_statistics.h>
#include <stdio.h>
#include <string.h>

#include "kern.h"
#include "kern_vm.h"
#include "gnumach.server.h"
#include "mach.server.h"

/* The value of KEY in the "key value" (or "key: value kB") file PATH, or
 * 0. */
static uint64_t kern_vm_stat_read(const char *path, const char *key)
{
    FILE *f = fopen(path, "re");
    char line[256];
    uint64_t value = 0;
    size_t len = strlen(key);
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, len) == 0 && (line[len] == ' ' || line[len] == ':')) {
            sscanf(line + len + 1, " %" SCNu64, &value);
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return value;
}

/* A count as integer_t (GNU Mach's counters are 32-bit and wrap). */
static integer_t kern_vm_stat_int(uint64_t v)
{
    return (integer_t)(uint32_t)v;
}

kern_return_t kern_vm_statistics(mach_port_t target_task, vm_statistics_data_t *stats)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    const char *mem = "/proc/meminfo", *vm = "/proc/vmstat";
    uint64_t kib_per_page = 4;
    uint64_t faults = kern_vm_stat_read(vm, "pgfault");
    uint64_t major = kern_vm_stat_read(vm, "pgmajfault");
    *stats = (vm_statistics_data_t){
        .pagesize = 4096,
        .free_count = kern_vm_stat_int(kern_vm_stat_read(mem, "MemFree") / kib_per_page),
        .active_count = kern_vm_stat_int(kern_vm_stat_read(mem, "Active") / kib_per_page),
        .inactive_count = kern_vm_stat_int(kern_vm_stat_read(mem, "Inactive") / kib_per_page),
        .wire_count = kern_vm_stat_int(kern_vm_stat_read(mem, "Unevictable") / kib_per_page),
        /* Faults served without I/O stand for zero-fill and copy-on-write
         * ones, which Linux does not count apart. */
        .zero_fill_count = kern_vm_stat_int(faults - major),
        .reactivations = kern_vm_stat_int(kern_vm_stat_read(vm, "pgactivate")),
        .pageins = kern_vm_stat_int(kern_vm_stat_read(vm, "pgpgin") / kib_per_page),
        .pageouts = kern_vm_stat_int(kern_vm_stat_read(vm, "pgpgout") / kib_per_page),
        .faults = kern_vm_stat_int(faults),
        .cow_faults = 0,
        .lookups = kern_vm_stat_int(faults),
        .hits = kern_vm_stat_int(faults - major),
    };
    return KERN_SUCCESS;
}

/* No memory objects are cached yet (issue 5): GNU Mach's two counts are
 * 0, and the rest it always gives as 0. */
kern_return_t kern_vm_cache_statistics(mach_port_t target_task,
                                       vm_cache_statistics_data_t *stats)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    memset(stats, 0, sizeof *stats);
    return KERN_SUCCESS;
}
