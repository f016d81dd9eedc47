/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "linux.h"

#include <errno.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

bool linux_is_pipe(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

#define LINUX_RANDOM_WORDS 64

uint64_t linux_random_u64(void)
{
    static __thread uint64_t pool[LINUX_RANDOM_WORDS];
    static __thread unsigned left;
    for (;;) {
        if (left == 0) {
            size_t got = 0;
            while (got < sizeof pool) {
                ssize_t n = getrandom((char *)pool + got, sizeof pool - got, 0);
                if (n > 0) {
                    got += (size_t)n;
                }
            }
            left = LINUX_RANDOM_WORDS;
        }
        uint64_t v = pool[--left];
        pool[left] = 0; /* never hand the same bits out twice */
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
