/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What every benchmark needs: a clock, pinning to a CPU, and the line
 * bench/run expects ("bench: NAME: V UNIT; baseline BASE: B UNIT; ratio R").
 */
#ifndef HELL_BENCH_H
#define HELL_BENCH_H

#include <sched.h>
#include <stdio.h>
#include <time.h>

/* Microseconds on the monotonic clock. */
static inline double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Runs the calling thread (and what it starts later) on CPU only. */
static inline void bench_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* Prints one figure against its baseline. */
static inline void bench_report(const char *name, double value, const char *unit,
                                const char *base_name, double base)
{
    printf("bench: %s: %.2f %s; baseline %s: %.2f %s; ratio %.2f\n", name, value, unit,
           base_name, base, unit, value / base);
}

#endif
