/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * machd: the kernel process of a HELL instance.
 *
 * It owns what no task can serve for itself: the privileged host port
 * (host_reboot ends the instance) and the device master port, and it is
 * the subreaper of every task of the instance.  It is never on the path
 * of messages between tasks.  Started by `hell start`, see tools/hell.c.
 */
#include <errno.h>
#include <hell.h>
#include <limits.h>
#include <mach.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "control.h"
#include "device.h"
#include "janitor.h"

#define MACHD_DEVICE_THREADS 4
#define MACHD_MAX_DISKS 32

static void machd_usage(FILE *out)
{
    fprintf(out,
            "Usage: machd [OPTION]... NAME\n"
            "The kernel process of the HELL instance NAME (normally started by\n"
            "`hell start`).\n"
            "\n"
            "  --disk DEV=PATH      serve the file or block device PATH as disk DEV\n"
            "  --disk-ro DEV=PATH   the same, read-only\n"
            "  --ready-fd FD        write one byte to FD once the instance is ready\n"
            "  --help               show this help\n");
}

/* host_reboot on the privileged host port. */
static void machd_reboot(int options)
{
    (void)options; /* halting and rebooting both end the instance */
    control_end_instance();
}

/* Ends the instance on SIGTERM or SIGINT; SIGHUP and SIGPIPE are taken
 * and dropped (blocked rather than ignored: an ignored signal would stay
 * ignored in the tasks machd starts). */
static void *machd_signal_main(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    while (sigwait(set, &sig) != 0 || sig == SIGHUP || sig == SIGPIPE) {
    }
    control_end_instance();
}

/* Parses DEV=PATH into DISK.  Returns false when malformed. */
static bool machd_parse_disk(char *spec, bool readonly, struct device_disk *disk)
{
    char *eq = strchr(spec, '=');
    if (eq == NULL || eq == spec || eq[1] == '\0') {
        return false;
    }
    *eq = '\0';
    *disk = (struct device_disk){.name = spec, .path = eq + 1, .readonly = readonly};
    return true;
}

/* HELL_MACHD_NOTIFY_MAX=WAITING,FDS lowers the bounds on the
 * notifications machd keeps for full ports (hell_notify_lower_bounds):
 * for tests, which then reach them, and each port's share of them, with
 * a few notifications. */
static void machd_notify_bounds(void)
{
    const char *env = getenv("HELL_MACHD_NOTIFY_MAX");
    char *end = NULL;
    unsigned long waiting = env != NULL ? strtoul(env, &end, 10) : 0;
    unsigned long fds = end != NULL && *end == ',' ? strtoul(end + 1, &end, 10) : 0;
    if (env != NULL && (*end != '\0' || waiting > UINT_MAX || fds > UINT_MAX)) {
        fprintf(stderr, "machd: bad HELL_MACHD_NOTIFY_MAX '%s' (WAITING,FDS): ignored\n", env);
        return;
    }
    if (env != NULL) {
        hell_notify_lower_bounds((unsigned)waiting, (unsigned)fds);
    }
}

int main(int argc, char **argv)
{
    struct device_disk disks[MACHD_MAX_DISKS];
    unsigned ndisks = 0;
    int ready_fd = -1;
    const char *name = NULL;
    for (int i = 1; i < argc; i++) {
        bool ro = strcmp(argv[i], "--disk-ro") == 0;
        if (strcmp(argv[i], "--help") == 0) {
            machd_usage(stdout);
            return 0;
        } else if ((ro || strcmp(argv[i], "--disk") == 0) && i + 1 < argc) {
            if (ndisks == MACHD_MAX_DISKS || !machd_parse_disk(argv[++i], ro, &disks[ndisks])) {
                fprintf(stderr, "machd: bad disk '%s' (DEV=PATH, at most %d)\n", argv[i],
                        MACHD_MAX_DISKS);
                return 1;
            }
            ndisks++;
        } else if (strcmp(argv[i], "--ready-fd") == 0 && i + 1 < argc) {
            ready_fd = atoi(argv[++i]);
        } else if (argv[i][0] != '-' && name == NULL) {
            name = argv[i];
        } else {
            machd_usage(stderr);
            return 1;
        }
    }
    if (name == NULL) {
        machd_usage(stderr);
        return 1;
    }

    /* Every thread made from here on leaves these to the signal thread. */
    static sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    sigaddset(&stop_signals, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        perror("machd: PR_SET_CHILD_SUBREAPER");
        return 1;
    }
    int listen_fd = control_listen(name);
    if (listen_fd < 0) {
        return 1;
    }
    mach_port_t host_priv = hell_host_priv_create(machd_reboot);
    mach_port_t master = MACH_PORT_NULL;
    if (!MACH_PORT_VALID(host_priv)) {
        fprintf(stderr, "machd: cannot make the privileged host port\n");
        control_end_instance();
    }
    if (device_setup(disks, ndisks, STDIN_FILENO, STDOUT_FILENO, &master) != 0 ||
        device_serve(MACHD_DEVICE_THREADS) != 0) {
        control_end_instance();
    }
    control_set_priv_ports(host_priv, master);
    machd_notify_bounds();
    if (janitor_start() != 0) {
        perror("machd: janitor");
        control_end_instance();
    }

    pthread_t thread;
    if (pthread_create(&thread, NULL, machd_signal_main, &stop_signals) != 0) {
        fprintf(stderr, "machd: cannot start the signal thread\n");
        control_end_instance();
    }
    if (ready_fd >= 0) {
        (void)!write(ready_fd, "", 1);
        close(ready_fd);
    }
    control_serve(listen_fd);
}
