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
#include <mach.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int test_failures;

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
