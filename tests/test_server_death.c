/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A server that dies during an RPC never leaves its client hanging: the
 * client's MIG call ends with MIG_SERVER_DIED (the send-once notification
 * of its destroyed reply right), whether the server died before reading
 * the request or while holding the reply right; a reply sent just before
 * the death is still delivered.  A server that destroys the port it was
 * asked on (libports does, when a port's last reference goes during an
 * RPC on it) still owes the reply: it arrives, or the server's death or
 * its destroying the reply right ends the call.  Each case runs the
 * server in a child task;
 * the watchdog notices the death at once (the whole test takes well under
 * a second), though only "never hangs" is asserted.
 */
#include <hell.h>
#include <pthread.h>
#include <signal.h>

#include "hell_test.h"
#include "test.h"

boolean_t hell_test_server(mach_msg_header_t *in, mach_msg_header_t *out);

kern_return_t S_test_null(mach_port_t server)
{
    return KERN_SUCCESS;
}

enum server_fate {
    DIES_BEFORE_READING, /* killed by the client's parent while idle */
    DIES_HOLDING_REPLY,  /* reads the request, then SIGKILLs itself */
    REPLIES_THEN_DIES,   /* answers, then SIGKILLs itself */
    DESTROYS_THEN_REPLIES, /* reads, destroys its port, answers later */
    DESTROYS_THEN_DIES,    /* reads, destroys its port, dies later */
    DESTROYS_THEN_DROPS,   /* reads, destroys its port, then the reply right */
};

/* Long enough for the client's watchdog to see the port die first. */
#define LATER_US 100000

/* Starts a server child that makes a port, sends us a send right to it,
 * and meets FATE on the first request. */
static pid_t start_server(enum server_fate fate, mach_port_t *server)
{
    mach_port_t boot;
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &boot),
             KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(mach_task_self(), boot, boot, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    mach_port_t child_task;
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        mach_port_t parent, svc;
        task_get_bootstrap_port(mach_task_self(), &parent);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &svc);
        test_send_port(parent, svc, MACH_MSG_TYPE_MAKE_SEND, 1);
        if (fate == DIES_BEFORE_READING) {
            pause();
        }
        union {
            mach_msg_header_t h;
            char buf[1024];
        } req, rep;
        mach_msg(&req.h, MACH_RCV_MSG, 0, sizeof req, svc, 0, MACH_PORT_NULL);
        if (fate >= DESTROYS_THEN_REPLIES) {
            mach_port_destroy(mach_task_self(), svc);
            usleep(LATER_US);
        }
        if (fate == DESTROYS_THEN_DROPS) {
            mach_port_deallocate(mach_task_self(), req.h.msgh_remote_port);
            usleep(LATER_US);
        }
        if (fate == REPLIES_THEN_DIES || fate == DESTROYS_THEN_REPLIES) {
            hell_test_server(&req.h, &rep.h);
            mach_msg(&rep.h, MACH_SEND_MSG, rep.h.msgh_size, 0, MACH_PORT_NULL, 0,
                     MACH_PORT_NULL);
        }
        raise(SIGKILL);
    }
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, 10000, server, &type), MACH_MSG_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), boot), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(mach_task_self(), child_task), KERN_SUCCESS);
    return pid;
}

static void *kill_later(void *arg)
{
    usleep(200000);
    kill((pid_t)(intptr_t)arg, SIGKILL);
    return NULL;
}

static void run_case(enum server_fate fate, kern_return_t want)
{
    mach_port_t server;
    pid_t pid = start_server(fate, &server);
    pthread_t killer;
    if (fate == DIES_BEFORE_READING) {
        CHECK(pthread_create(&killer, NULL, kill_later, (void *)(intptr_t)pid) == 0);
    }
    CHECK_KR(test_null(server), want);
    if (fate == DIES_BEFORE_READING) {
        pthread_join(killer, NULL);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
    /* The server's port is a dead name now. */
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(mach_task_self(), server, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_DEAD_NAME);
    CHECK_KR(mach_port_deallocate(mach_task_self(), server), KERN_SUCCESS);
    /* The reply port keeps working for the next call. */
    mach_port_type_t self_type;
    CHECK_KR(mach_port_type(mach_task_self(), mach_task_self(), &self_type), KERN_SUCCESS);
}

/* A call whose reply goes to one port while it receives on another: the
 * server's death ends nothing there, the receive times out as asked
 * (it used to spin, looking for a reply where none could come). */
static void receive_elsewhere(void)
{
    mach_port_t server;
    pid_t pid = start_server(DIES_HOLDING_REPLY, &server);
    mach_port_t reply = test_new_port(false), other = test_new_port(false);
    union {
        mach_msg_header_t h;
        char buf[256];
    } m = {.h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND,
                                             MACH_MSG_TYPE_MAKE_SEND_ONCE),
                 .msgh_remote_port = server, .msgh_local_port = reply, .msgh_id = 1}};
    CHECK_KR(mach_msg(&m.h, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT,
                      sizeof(mach_msg_header_t), sizeof m, other, 500, MACH_PORT_NULL),
             MACH_RCV_TIMED_OUT);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
    /* (The reply right died with the server; its notification comes
     * only in an instance, from the janitor: test_janitor.) */
    CHECK_KR(mach_port_destroy(mach_task_self(), reply), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), other), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(mach_task_self(), server), KERN_SUCCESS);
}

/* The other side: the client is killed while we hold its reply right.
 * Replying fails with MACH_SEND_INVALID_DEST and the server goes on. */
static void client_dies(void)
{
    mach_port_t service;
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &service),
             KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(mach_task_self(), service, service, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    mach_port_t child_task;
    pid_t pid = hell_fork(service, &child_task);
    if (pid == 0) {
        mach_port_t server;
        task_get_bootstrap_port(mach_task_self(), &server);
        test_null(server); /* never answered: killed meanwhile */
        _exit(1);
    }
    union {
        mach_msg_header_t h;
        char buf[1024];
    } req, rep;
    CHECK_KR(mach_msg(&req.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof req, service, 10000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    kill(pid, SIGKILL);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
    CHECK(hell_test_server(&req.h, &rep.h));
    CHECK_KR(mach_msg(&rep.h, MACH_SEND_MSG, rep.h.msgh_size, 0, MACH_PORT_NULL, 0,
                      MACH_PORT_NULL),
             MACH_SEND_INVALID_DEST);
    mach_msg_destroy(&rep.h); /* as mach_msg_server does */
    /* The service port still works. */
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_remote_port = service, .msgh_id = 5};
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK_KR(mach_msg(&req.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof req, service, 10000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(req.h.msgh_id == 5);
    CHECK_KR(mach_port_deallocate(mach_task_self(), child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), service), KERN_SUCCESS);
}

int main(void)
{
    mach_port_type_t self_type;
    CHECK_KR(mach_port_type(mach_task_self(), mach_task_self(), &self_type), KERN_SUCCESS);
    int fds_before = test_count_fds();
    run_case(DIES_HOLDING_REPLY, MIG_SERVER_DIED);
    run_case(DIES_BEFORE_READING, MIG_SERVER_DIED);
    run_case(REPLIES_THEN_DIES, KERN_SUCCESS);
    run_case(DESTROYS_THEN_REPLIES, KERN_SUCCESS);
    run_case(DESTROYS_THEN_DIES, MIG_SERVER_DIED);
    run_case(DESTROYS_THEN_DROPS, MIG_SERVER_DIED);
    receive_elsewhere();
    client_dies();
    /* Nothing leaked but the watchdog's epoll instance, made once per task
     * on its first RPC to another task. */
    CHECK(test_count_fds() == fds_before + 1);
    return test_done("server_death");
}
