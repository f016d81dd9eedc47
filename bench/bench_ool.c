/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Out-of-line memory and crash notification, each against a baseline
 * measured in the same run:
 *   - sending 1 MiB and 64 MiB out of line between two tasks and touching
 *     every page on arrival, against memcpy of the same size plus touching
 *     the copy: plain memory copied and moved (one copy), a region that
 *     vm_allocate made moved (no copy); then making, filling and moving a
 *     region, against making, filling and copying it with memcpy;
 *   - the time from SIGKILL of a task to the dead-name notification of a
 *     port it received on, against the time from SIGKILL to waitpid; then
 *     again as tasks of an instance, where the instance's machd destroys
 *     the killed task's ports (libmach/ipc_janitor.h);
 *   - what that costs a port: making a port, a send right to it, and
 *     destroying it, in an instance against outside one.
 * Every ratio is HELL's cost over the baseline's.
 */
#include <hell.h>
#include <mach.h>
#include <mach/notify.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "test.h"

struct ool_msg {
    mach_msg_header_t head;
    mach_msg_type_long_t type;
    void *addr;
};

/* A child that receives out-of-line regions on its bootstrap port's
 * sibling and answers each with an empty message once it touched every
 * page of it. */
static pid_t start_sink(mach_port_t *sink, mach_port_t *ack)
{
    mach_port_t boot;
    mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &boot);
    mach_port_insert_right(mach_task_self(), boot, boot, MACH_MSG_TYPE_MAKE_SEND);
    mach_port_t child_task;
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        mach_port_t parent, in;
        task_get_bootstrap_port(mach_task_self(), &parent);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &in);
        test_send_port(parent, in, MACH_MSG_TYPE_MAKE_SEND, 1);
        for (;;) {
            union {
                struct ool_msg m;
                char buf[256];
            } r;
            if (mach_msg(&r.m.head, MACH_RCV_MSG, 0, sizeof r, in, 0, MACH_PORT_NULL) !=
                MACH_MSG_SUCCESS) {
                _exit(1);
            }
            size_t size = r.m.type.msgtl_number;
            volatile char sum = 0;
            for (size_t off = 0; off < size; off += 4096) {
                sum += ((char *)r.m.addr)[off];
            }
            vm_deallocate(mach_task_self(), (vm_address_t)r.m.addr, size);
            mach_msg_header_t done = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                      .msgh_remote_port = parent, .msgh_id = 2};
            mach_msg(&done, MACH_SEND_MSG, sizeof done, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
        }
    }
    mach_msg_type_name_t type;
    test_receive_port(boot, 10000, sink, &type);
    mach_port_deallocate(mach_task_self(), child_task);
    *ack = boot;
    return pid;
}

/* Sends SIZE bytes at ADDR out of line (moved when DEALLOC) and waits for
 * the sink to have touched them; microseconds. */
static double ool_send(mach_port_t sink, mach_port_t ack, void *addr, size_t size, bool dealloc)
{
    struct ool_msg m = {
        .head = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
                 .msgh_remote_port = sink,
                 .msgh_id = 1},
        .type = {.msgtl_name = MACH_MSG_TYPE_BYTE, .msgtl_size = 8, .msgtl_number = size,
                 .msgtl_inline = FALSE, .msgtl_longform = TRUE, .msgtl_deallocate = dealloc},
        .addr = addr,
    };
    double t0 = bench_now_us();
    if (mach_msg(&m.head, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL) !=
        MACH_MSG_SUCCESS) {
        fprintf(stderr, "bench: out-of-line send failed\n");
        exit(1);
    }
    mach_msg_header_t done;
    mach_msg(&done, MACH_RCV_MSG, 0, sizeof done, ack, 0, MACH_PORT_NULL);
    return bench_now_us() - t0;
}

static double memcpy_touch(void *src, size_t size)
{
    double t0 = bench_now_us();
    char *dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(dst, src, size);
    volatile char sum = 0;
    for (size_t off = 0; off < size; off += 4096) {
        sum += dst[off];
    }
    munmap(dst, size);
    return bench_now_us() - t0;
}

static char *vm_allocated(size_t size, int fill)
{
    vm_address_t a = 0;
    if (vm_allocate(mach_task_self(), &a, size, TRUE) != KERN_SUCCESS) {
        fprintf(stderr, "bench: vm_allocate failed\n");
        exit(1);
    }
    memset((void *)a, fill, size);
    return (char *)a;
}

static void report(const char *name, const char *label, double t, const char *base, double b)
{
    printf("bench: %s_%s: %.0f us; baseline %s_%s: %.0f us; ratio %.2f\n", name, label, t, base,
           label, b, t / b);
}

static double least(double a, double b)
{
    return a < b ? a : b;
}

/* Plain memory sent (one copy), and a region that vm_allocate made moved
 * whole (no copy: vm_movable.h), each against mmap + memcpy + touching
 * the copy; then the whole story, making and filling the region
 * included, against the same with memcpy. */
static void bench_ool(mach_port_t sink, mach_port_t ack, size_t size, const char *label)
{
    double copy = 1e18, move = 1e18, move_plain = 1e18, base = 1e18;
    double whole = 1e18, whole_base = 1e18;
    for (int r = 0; r < 5; r++) {
        char *src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memset(src, r + 1, size);
        base = least(base, memcpy_touch(src, size));
        copy = least(copy, ool_send(sink, ack, src, size, false));
        move_plain = least(move_plain, ool_send(sink, ack, src, size, true)); /* src gone */

        src = vm_allocated(size, r + 1);
        move = least(move, ool_send(sink, ack, src, size, true));

        double t0 = bench_now_us();
        src = vm_allocated(size, r + 1);
        ool_send(sink, ack, src, size, true);
        whole = least(whole, bench_now_us() - t0);
        t0 = bench_now_us();
        src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memset(src, r + 1, size);
        memcpy_touch(src, size);
        munmap(src, size);
        whole_base = least(whole_base, bench_now_us() - t0);
    }
    report("ool_copy", label, copy, "memcpy", base);
    report("ool_move_plain_memory", label, move_plain, "memcpy", base);
    report("ool_move_vm_allocated", label, move, "memcpy", base);
    report("ool_allocate_fill_move", label, whole, "mmap_fill_memcpy", whole_base);
}

/* SIGKILL of a task to the dead-name notification for its port, against
 * SIGKILL to waitpid of the same kind of child. */
static void bench_dead_name(const char *suffix)
{
    mach_port_t notify;
    mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &notify);
    double best_notify = 1e18, best_wait = 1e18;
    for (int r = 0; r < 10; r++) {
        pid_t plain = fork();
        if (plain == 0) {
            pause();
            _exit(0);
        }
        usleep(1000);
        double t0 = bench_now_us();
        kill(plain, SIGKILL);
        waitpid(plain, NULL, 0);
        double t = bench_now_us() - t0;
        best_wait = t < best_wait ? t : best_wait;

        mach_port_t sink, ack;
        pid_t pid = start_sink(&sink, &ack);
        mach_port_t previous;
        mach_port_request_notification(mach_task_self(), sink, MACH_NOTIFY_DEAD_NAME, 0, notify,
                                       MACH_MSG_TYPE_MAKE_SEND_ONCE, &previous);
        usleep(1000);
        union {
            mach_msg_header_t head;
            char buf[128];
        } n;
        t0 = bench_now_us();
        kill(pid, SIGKILL);
        mach_msg(&n.head, MACH_RCV_MSG, 0, sizeof n, notify, 0, MACH_PORT_NULL);
        t = bench_now_us() - t0;
        best_notify = t < best_notify ? t : best_notify;
        waitpid(pid, NULL, 0);
        mach_port_mod_refs(mach_task_self(), sink, MACH_PORT_RIGHT_DEAD_NAME, -2);
        mach_port_destroy(mach_task_self(), ack);
    }
    printf("bench: sigkill_to_dead_name_notification%s: %.0f us; baseline sigkill_to_waitpid: "
           "%.0f us; ratio %.2f\n",
           suffix, best_notify, best_wait, best_notify / best_wait);
}

/* A port with a send right made and destroyed: microseconds, best of 5
 * rounds. */
static double port_cycle_us(void)
{
    enum { ROUNDS = 5, CYCLES = 2000 };
    double best = 1e18;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < CYCLES; i++) {
            mach_port_t port;
            if (mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port) !=
                    KERN_SUCCESS ||
                mach_port_insert_right(mach_task_self(), port, port,
                                       MACH_MSG_TYPE_MAKE_SEND) != KERN_SUCCESS ||
                mach_port_destroy(mach_task_self(), port) != KERN_SUCCESS) {
                fprintf(stderr, "bench: port calls failed\n");
                exit(1);
            }
        }
        double t = (bench_now_us() - t0) / CYCLES;
        best = t < best ? t : best;
    }
    return best;
}

/* A send right made and released on one port: microseconds, best of 5
 * rounds.  With a port-destroyed request, each right made remakes the
 * port's escrow with machd (libmach/ipc_janitor.h). */
static double make_send_us(bool requested)
{
    enum { ROUNDS = 5, CYCLES = 2000 };
    mach_port_t self = mach_task_self(), port, backup = MACH_PORT_NULL, previous;
    mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &port);
    if (requested) {
        mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &backup);
        mach_port_request_notification(self, port, MACH_NOTIFY_PORT_DESTROYED, 0, backup,
                                       MACH_MSG_TYPE_MAKE_SEND_ONCE, &previous);
    }
    double best = 1e18;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < CYCLES; i++) {
            if (mach_port_insert_right(self, port, port, MACH_MSG_TYPE_MAKE_SEND) !=
                    KERN_SUCCESS ||
                mach_port_deallocate(self, port) != KERN_SUCCESS) {
                fprintf(stderr, "bench: port calls failed\n");
                exit(1);
            }
        }
        double t = (bench_now_us() - t0) / CYCLES;
        best = t < best ? t : best;
    }
    mach_port_destroy(self, port);
    if (requested) {
        mach_port_destroy(self, backup); /* (with the port, in its notification) */
    }
    return best;
}

#define OUTSIDE_ENV "BENCH_OOL_PORT_CYCLE_US"

/* The part that runs as a task of an instance. */
static int in_instance(void)
{
    bench_dead_name("_in_instance");
    const char *outside = getenv(OUTSIDE_ENV);
    double base = outside != NULL ? strtod(outside, NULL) : 0;
    double t = port_cycle_us();
    if (base > 0) {
        bench_report("port_make_send_destroy_in_instance", t, "us",
                     "port_make_send_destroy_outside", base);
    }
    double plain = make_send_us(false);
    bench_report("make_send_with_port_destroyed_request_in_instance", make_send_us(true), "us",
                 "make_send_in_instance", plain);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--in-instance") == 0) {
        return in_instance();
    }
    mach_port_t sink, ack;
    pid_t pid = start_sink(&sink, &ack);
    bench_ool(sink, ack, 1 << 20, "1MiB");
    bench_ool(sink, ack, 64 << 20, "64MiB");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    bench_dead_name("");
    char outside[32];
    snprintf(outside, sizeof outside, "%.3f", port_cycle_us());
    setenv(OUTSIDE_ENV, outside, 1);
    if (test_rerun_in_instance("--in-instance") != 0) {
        fprintf(stderr, "bench_ool: the instance run failed\n");
        return 1;
    }
    return 0;
}
