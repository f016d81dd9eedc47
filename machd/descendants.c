/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Ending every process of an instance.
 *
 * Linux has no process group that a process cannot leave, so the instance
 * is the tree below machd: the parent links in /proc, walked from machd
 * down.  Each pass kills what it finds; a process forked between the walk
 * and the kill is found by the next pass (a killed process forks no
 * more), and every orphan is reparented to machd, the subreaper, so once
 * machd has no child left the tree is empty.
 */
#include "descendants.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The parent of PID as /proc/PID/stat says, or -1 (gone, or a zombie:
 * nothing to kill). */
static pid_t descendants_parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0) {
        return -1;
    }
    buf[len] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
    char *end = strrchr(buf, ')');
    char state;
    int ppid;
    if (end == NULL || sscanf(end + 1, " %c %d", &state, &ppid) != 2 || state == 'Z') {
        return -1;
    }
    return ppid;
}

/* Kills PID if its parent is still PPID: through a pidfd, so that a
 * process reaped since the walk and its pid reused is not hit.  Returns
 * 1 if killed, else 0. */
static unsigned descendants_kill(pid_t pid, pid_t ppid)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        return 0;
    }
    unsigned killed = descendants_parent_of(pid) == ppid &&
                      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0;
    close(pidfd);
    return killed;
}

struct descendants_proc {
    pid_t pid, ppid;
};

/* Kills every descendant of ROOT found in one walk of /proc.  Returns how
 * many were killed. */
static unsigned descendants_kill_pass(pid_t root)
{
    DIR *dir = opendir("/proc");
    if (dir == NULL) {
        return 0;
    }
    struct descendants_proc *procs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *d;
    while ((d = readdir(dir)) != NULL) {
        char *end;
        long pid = strtol(d->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) {
            continue;
        }
        pid_t ppid = descendants_parent_of((pid_t)pid);
        if (ppid < 0) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            struct descendants_proc *p = realloc(procs, cap * sizeof *procs);
            if (p == NULL) {
                break;
            }
            procs = p;
        }
        procs[n++] = (struct descendants_proc){(pid_t)pid, ppid};
    }
    closedir(dir);
    /* Mark by widening the set of known descendants until it is stable
     * (the tree is shallow; n is the number of processes of the user). */
    bool *mine = calloc(n ? n : 1, sizeof *mine);
    unsigned killed = 0;
    for (bool grew = mine != NULL; grew;) {
        grew = false;
        for (size_t i = 0; i < n; i++) {
            if (mine[i]) {
                continue;
            }
            bool child = procs[i].ppid == root;
            for (size_t k = 0; !child && k < n; k++) {
                child = mine[k] && procs[k].pid == procs[i].ppid;
            }
            if (child) {
                mine[i] = grew = true;
                killed += descendants_kill(procs[i].pid, procs[i].ppid);
            }
        }
    }
    free(mine);
    free(procs);
    return killed;
}

void descendants_kill_all(descendants_reaped_fn *reaped)
{
    pid_t self = getpid();
    for (;;) {
        (void)descendants_kill_pass(self);
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0) {
            if (reaped != NULL) {
                reaped(pid, status);
            }
        }
        if (pid < 0 && errno == ECHILD) {
            return;
        }
        /* Killed children not yet dead, or orphans on their way to us. */
        nanosleep(&(struct timespec){.tv_nsec = 2 * 1000 * 1000}, NULL);
    }
}
