/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The scheduling and debugging traps: swtch, swtch_pri, thread_switch and
 * mach_print (include/mach/mach_traps.h).
 */
#include <errno.h>
#include <mach/mach_traps.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT boolean_t swtch(void)
{
    sched_yield();
    return TRUE;
}

EXPORT boolean_t swtch_pri(int priority)
{
    (void)priority;
    sched_yield();
    return TRUE;
}

EXPORT kern_return_t thread_switch(mach_port_t thread, int option, mach_msg_timeout_t time)
{
    (void)thread; /* a hint only: Linux has no directed yield */
    switch (option) {
    case SWITCH_OPTION_NONE:
    case SWITCH_OPTION_DEPRESS:
        sched_yield();
        return KERN_SUCCESS;
    case SWITCH_OPTION_WAIT: {
        struct timespec ts = {.tv_sec = time / 1000, .tv_nsec = (long)(time % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        return KERN_SUCCESS;
    }
    default:
        return KERN_INVALID_ARGUMENT;
    }
}

EXPORT void mach_print(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, s, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        s += n;
        len -= (size_t)n;
    }
}
