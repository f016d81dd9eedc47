/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Null RPC through a MIG stub between two tasks, against a raw
 * SOCK_SEQPACKET ping-pong between two processes measured in the same
 * run, with both processes on one CPU and on two CPUs.  Also RPC
 * throughput with several client threads against the raw baseline, and
 * a kernel call on the caller's own task against a system call.
 * Every ratio is HELL's cost over the baseline's (time per call): below 1,
 * HELL is faster.
 */
#include <hell.h>
#include <mach.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hell_test.h"
#include "bench.h"
#include "test.h"

boolean_t hell_test_server(mach_msg_header_t *in, mach_msg_header_t *out);

kern_return_t S_test_null(mach_port_t server)
{
    return KERN_SUCCESS;
}

/* A raw echo server: a process answering every datagram on a socket pair.
 * Returns the client end; *PID is the server. */
static int raw_start(int server_cpu, pid_t *pid)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
    *pid = fork();
    if (*pid == 0) {
        char buf[64];
        close(sv[1]);
        bench_pin(server_cpu);
        while (recv(sv[0], buf, sizeof buf, 0) > 0) {
            send(sv[0], buf, 32, 0);
        }
        _exit(0);
    }
    close(sv[0]);
    return sv[1];
}

/* N raw round trips, in microseconds per round trip. */
static double raw_batch(int fd, int n)
{
    char buf[64] = {0};
    double t0 = bench_now_us();
    for (int i = 0; i < n; i++) {
        send(fd, buf, 32, 0);
        recv(fd, buf, sizeof buf, 0);
    }
    return (bench_now_us() - t0) / n;
}

static pid_t start_server(int server_cpu, mach_port_t *server)
{
    mach_port_t port;
    mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port);
    mach_port_insert_right(mach_task_self(), port, port, MACH_MSG_TYPE_MAKE_SEND);
    mach_port_t child_task;
    /* The child is the server: it makes a port, sends us a send right to it
     * through its bootstrap port, and serves it. */
    pid_t pid = hell_fork(port, &child_task);
    if (pid == 0) {
        bench_pin(server_cpu);
        mach_port_t boot, svc;
        task_get_bootstrap_port(mach_task_self(), &boot);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &svc);
        test_send_port(boot, svc, MACH_MSG_TYPE_MAKE_SEND, 1);
        mach_msg_server(hell_test_server, 4096, svc);
        _exit(0);
    }
    mach_msg_type_name_t type;
    if (test_receive_port(port, 10000, server, &type) != MACH_MSG_SUCCESS) {
        fprintf(stderr, "bench: the server did not start\n");
        exit(1);
    }
    mach_port_destroy(mach_task_self(), port);
    mach_port_deallocate(mach_task_self(), child_task);
    return pid;
}

/* N null RPCs, in microseconds per call. */
static double mig_batch(mach_port_t server, int n)
{
    double t0 = bench_now_us();
    for (int i = 0; i < n; i++) {
        if (test_null(server) != KERN_SUCCESS) {
            fprintf(stderr, "bench: test_null failed\n");
            exit(1);
        }
    }
    return (bench_now_us() - t0) / n;
}

struct worker {
    mach_port_t server;
    int n;
    int raw_fd;
};

static void *rpc_worker(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        test_null(w->server);
    }
    return NULL;
}

static void *raw_worker(void *arg)
{
    struct worker *w = arg;
    char buf[64] = {0};
    for (int i = 0; i < w->n; i++) {
        send(w->raw_fd, buf, 32, 0);
        recv(w->raw_fd, buf, sizeof buf, 0);
    }
    return NULL;
}

/* Calls per second with THREADS client threads against one server thread:
 * raw, each client on its own socket pair served by one epoll loop; MIG,
 * all clients on one server port. */
static void throughput(mach_port_t server, int threads, int n)
{
    pthread_t t[16];
    struct worker w[16];
    cpu_set_t all;
    CPU_ZERO(&all);
    CPU_SET(0, &all);
    CPU_SET(1, &all);
    sched_setaffinity(0, sizeof all, &all);

    int fds[16];
    pid_t raw_pid = -1;
    int pairs[16][2];
    for (int i = 0; i < threads; i++) {
        socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pairs[i]);
    }
    raw_pid = fork();
    if (raw_pid == 0) {
        /* One server thread for all clients, as the MIG server has. */
        int ep = epoll_create1(0);
        for (int i = 0; i < threads; i++) {
            close(pairs[i][1]);
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = pairs[i][0]};
            epoll_ctl(ep, EPOLL_CTL_ADD, pairs[i][0], &ev);
        }
        int open_clients = threads;
        while (open_clients > 0) {
            struct epoll_event evs[16];
            int n = epoll_wait(ep, evs, 16, -1);
            for (int i = 0; i < n; i++) {
                char buf[64];
                if (recv(evs[i].data.fd, buf, sizeof buf, 0) > 0) {
                    send(evs[i].data.fd, buf, 32, 0);
                } else {
                    epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
                    open_clients--;
                }
            }
        }
        _exit(0);
    }
    for (int i = 0; i < threads; i++) {
        close(pairs[i][0]);
        fds[i] = pairs[i][1];
    }
    double t0 = bench_now_us();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.n = n, .raw_fd = fds[i]};
        pthread_create(&t[i], NULL, raw_worker, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
    }
    double raw = threads * n / ((bench_now_us() - t0) / 1e6);
    for (int i = 0; i < threads; i++) {
        close(fds[i]);
    }
    waitpid(raw_pid, NULL, 0); /* the echo loop ends when every client closed */

    t0 = bench_now_us();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.server = server, .n = n};
        pthread_create(&t[i], NULL, rpc_worker, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
    }
    double rpc = threads * n / ((bench_now_us() - t0) / 1e6);
    printf("bench: mig_null_rpc_throughput_%dthreads: %.0f calls/s; baseline "
           "raw_seqpacket_throughput_%dthreads: %.0f calls/s; ratio %.2f\n",
           threads, rpc, threads, raw, raw / rpc);
}

#define ROUNDS 9

/* A kernel call on the caller's own task (mach_port_type of its task
 * port: served in the calling thread, its reply delivered without a
 * socket), against the cheapest system call: best of ROUNDS batches. */
static void own_kernel_call(int n)
{
    double call = 1e9, sys = 1e9;
    mach_port_type_t type;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < n / ROUNDS; i++) {
            (void)syscall(SYS_getppid);
        }
        double t = (bench_now_us() - t0) / (n / ROUNDS);
        sys = t < sys ? t : sys;
        t0 = bench_now_us();
        for (int i = 0; i < n / ROUNDS; i++) {
            (void)mach_port_type(mach_task_self(), mach_task_self(), &type);
        }
        t = (bench_now_us() - t0) / (n / ROUNDS);
        call = t < call ? t : call;
    }
    bench_report("kernel call on the own task", call, "us", "getppid system call", sys);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    bench_pin(0);
    own_kernel_call(n);
    for (int cross = 0; cross < 2; cross++) {
        int server_cpu = cross ? 1 : 0;
        const char *where = cross ? "cross_cpu" : "same_cpu";
        /* Both servers stay up; raw and MIG batches alternate, and each
         * side keeps its best batch, so that interference from the shared
         * machine cannot land on one side only. */
        pid_t raw_pid;
        int raw_fd = raw_start(server_cpu, &raw_pid);
        mach_port_t server;
        pid_t pid = start_server(server_cpu, &server);
        double raw = 1e9, mig = 1e9;
        for (int r = 0; r < ROUNDS; r++) {
            double t = raw_batch(raw_fd, n / ROUNDS);
            raw = t < raw ? t : raw;
            t = mig_batch(server, n / ROUNDS);
            mig = t < mig ? t : mig;
        }
        /* The MIG server, forked later, holds a copy of RAW_FD: the echo
         * server would never see the end of the stream. */
        close(raw_fd);
        kill(raw_pid, SIGKILL);
        waitpid(raw_pid, NULL, 0);
        char name[64], base_name[64];
        snprintf(name, sizeof name, "mig_null_rpc_%s", where);
        snprintf(base_name, sizeof base_name, "raw_seqpacket_pingpong_%s", where);
        bench_report(name, mig, "us", base_name, raw);
        if (cross) {
            throughput(server, 4, n / 4);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        mach_port_deallocate(mach_task_self(), server);
    }
    return 0;
}
