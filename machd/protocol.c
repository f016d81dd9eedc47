/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Where an instance's control socket lives, and the descriptors a
 * message to it carries (shared by machd and hell).
 */
#include "protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The directory of the instance sockets, in BUF.  Returns 0, or -1 when
 * it does not fit. */
static int hell_socket_dir(char *buf, size_t size)
{
    const char *dir = getenv("HELL_RUNTIME_DIR");
    int len;
    if (dir != NULL && dir[0] != '\0') {
        len = snprintf(buf, size, "%s", dir);
    } else if ((dir = getenv("XDG_RUNTIME_DIR")) != NULL && dir[0] != '\0') {
        len = snprintf(buf, size, "%s/hell", dir);
    } else {
        len = snprintf(buf, size, "/tmp/hell-%u", (unsigned)getuid());
    }
    return len >= 0 && (size_t)len < size ? 0 : -1;
}

int hell_socket_path(const char *name, char *buf, size_t size)
{
    if (name == NULL || name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL) {
        return -1;
    }
    char dir[256];
    if (hell_socket_dir(dir, sizeof dir) != 0) {
        return -1;
    }
    int len = snprintf(buf, size, "%s/%s.sock", dir, name);
    return len >= 0 && (size_t)len < size ? 0 : -1;
}

int hell_socket_dir_check(void)
{
    char dir[256];
    if (hell_socket_dir(dir, sizeof dir) != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* Someone else's directory (a /tmp squatter, or a link to one) is not
     * ours to use. */
    struct stat st;
    if (lstat(dir, &st) != 0) {
        return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077) != 0) {
        errno = EACCES;
        return -1;
    }
    return 0;
}

int hell_socket_dir_make(void)
{
    char dir[256];
    if (hell_socket_dir(dir, sizeof dir) != 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return -1;
    }
    return hell_socket_dir_check();
}


unsigned hell_received_fds(struct msghdr *msg, int *fds, unsigned max)
{
    unsigned n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        unsigned count = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (unsigned i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (n < max) {
                fds[n++] = fd;
            } else {
                close(fd);
            }
        }
    }
    return n;
}
