/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Send-once rights held by a task that dies are destroyed as GNU Mach
 * destroys them with its space: the holder of the receive right gets the
 * send-once notification, from the instance's machd.  Run as a task of
 * an instance (the driver starts one and runs itself in it):
 *
 * - a reply right forwarded to a third task that is killed: the client's
 *   RPC ends with MIG_SERVER_DIED although the server it called lives;
 * - a server that gave the receive right of the port it was called on
 *   away, then was killed: the same;
 * - rights in a killed task's user space and in its kernel space (the
 *   notify right of a dead-name request), and in a task that exits
 *   normally: each notified once;
 * - a right the task used before it was killed: no notification (the
 *   message came, nothing else);
 * - messages queued on a port of a killed task that never read them: the
 *   send-once right of one is notified, the send right of another
 *   released (no-senders), the receive right of a third destroyed with
 *   its port-destroyed request honoured (the right comes back with its
 *   own queue); and a port the task gave away before it was killed
 *   lives on;
 * - a killed task's own port with a port-destroyed request: the right
 *   goes to the request's holder with its queue, its send-once rights
 *   and the transports of its senders; with the request withdrawn, or
 *   its port dead, the port dies instead; and machd keeps nothing of
 *   the escrows of ports a task made and destroyed;
 * - a right taken out of its name for a send that the task is killed
 *   before completing (it waits for room in a full queue): notified;
 * - the rights of a message that MACH_RCV_LARGE kept in a task that is
 *   then killed: send-once rights notified, receive rights destroyed
 *   (their queues too) or sent to their port-destroyed requests;
 * - a receive right given to a task outside the instance, which is then
 *   killed: the port dies (machd keeps no copy of it alive);
 * - a server that makes and destroys a port per call leaves machd with no
 *   more descriptors than it had;
 * - a killed task held TEST_FLOOD_N send-once rights to a port whose socket a
 *   sender had filled: every notification comes once the port is read
 *   (machd keeps them until there is room), and machd is left with no
 *   more descriptors than before.
 */
#include <dirent.h>
#include <errno.h>
#include <hell.h>
#include <limits.h>
#include <mach/notify.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hell_test.h"
#include "test.h"

#define SELF mach_task_self()
#define WAIT_MS 10000
#define QUIET_MS 300 /* no notification comes within this */

boolean_t hell_test_server(mach_msg_header_t *in, mach_msg_header_t *out);

kern_return_t S_test_null(mach_port_t server)
{
    return KERN_SUCCESS;
}

typedef union {
    mach_msg_header_t h;
    char buf[1024];
} msgbuf_t;

static mach_msg_return_t receive(msgbuf_t *m, mach_port_t port, mach_msg_timeout_t ms)
{
    return mach_msg(&m->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof *m, port, ms,
                    MACH_PORT_NULL);
}

/* Sends to DEST a header-only message with id ID carrying RIGHT (with
 * DISP) as its reply port. */
static mach_msg_return_t send_right(mach_port_t dest, mach_msg_id_t id, mach_port_t right,
                                    mach_msg_type_name_t disp)
{
    mach_msg_header_t h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, disp),
                           .msgh_remote_port = dest, .msgh_local_port = right,
                           .msgh_id = id};
    return mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

/* Sends a header-only message with id ID through the send-once right
 * RIGHT (which it uses up). */
static mach_msg_return_t send_once(mach_port_t right, mach_msg_id_t id)
{
    mach_msg_header_t h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
                           .msgh_remote_port = right, .msgh_id = id};
    return mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

/* Destroys the N ports PORTS; failures name the caller's LINE. */
static void destroy_all_at(int line, const mach_port_t *ports, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        CHECK_KR_AT(__FILE__, line, mach_port_destroy(SELF, ports[i]), KERN_SUCCESS);
    }
}
/* destroy_all(port, ...): destroys each port given. */
#define destroy_all(...)                                                                   \
    destroy_all_at(__LINE__, (const mach_port_t[]){__VA_ARGS__},                           \
                   sizeof((const mach_port_t[]){__VA_ARGS__}) / sizeof(mach_port_t))

/* Starts a child task running FN(ARG) with our port BOOT (send right
 * made) as its bootstrap port.  Returns its pid, and a send right to its
 * task port in *TASK unless TASK is NULL. */
static pid_t start_child_task(mach_port_t boot, void (*fn)(mach_port_t parent, void *arg),
                              void *arg, mach_port_t *task)
{
    mach_port_t child_task;
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        mach_port_t parent = MACH_PORT_NULL;
        task_get_bootstrap_port(SELF, &parent);
        fn(parent, arg);
        _exit(test_failures == 0 ? 0 : 1);
    }
    CHECK(pid > 0);
    if (task != NULL) {
        *task = child_task;
    } else {
        CHECK_KR(mach_port_deallocate(SELF, child_task), KERN_SUCCESS);
    }
    return pid;
}

static pid_t start_child(mach_port_t boot, void (*fn)(mach_port_t parent, void *arg), void *arg)
{
    return start_child_task(boot, fn, arg, NULL);
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
}

/* ---- a reply right forwarded to a task that is killed ---- */

/* The holder: takes what the forwarder sends, says so, waits. */
static void holder_main(mach_port_t parent, void *arg)
{
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, inbox, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(MACH_MSGH_BITS_REMOTE(m.h.msgh_bits) == MACH_MSG_TYPE_PORT_SEND_ONCE);
    CHECK_KR(send_right(parent, 2, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

/* The forwarder: is given the holder's port, then serves one request by
 * passing its reply right on to the holder, and lives on. */
static void forwarder_main(mach_port_t parent, void *arg)
{
    mach_port_t svc = test_new_port(false);
    CHECK_KR(test_send_port(parent, svc, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    mach_port_t to_holder = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(svc, WAIT_MS, &to_holder, &type), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, svc, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK_KR(send_right(to_holder, 7, m.h.msgh_remote_port, MACH_MSG_TYPE_MOVE_SEND_ONCE),
             MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

struct rpc {
    mach_port_t server;
    kern_return_t kr;
};

static void *rpc_main(void *arg)
{
    struct rpc *r = arg;
    r->kr = test_null(r->server);
    return NULL;
}

/* Waits for the RPC thread: a call that never ends fails the test
 * instead of hanging it. */
static void rpc_join(pthread_t thread, struct rpc *r)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    if (pthread_timedjoin_np(thread, NULL, &deadline) != 0) {
        CHECK(!"the RPC never ended");
        r->kr = KERN_FAILURE;
        pthread_detach(thread);
    }
}

static void forwarded_reply(void)
{
    mach_port_t boot = test_new_port(true);
    pid_t holder = start_child(boot, holder_main, NULL);
    mach_port_t holder_inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &holder_inbox, &type), MACH_MSG_SUCCESS);
    pid_t forwarder = start_child(boot, forwarder_main, NULL);
    mach_port_t svc = MACH_PORT_NULL;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &svc, &type), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(svc, holder_inbox, MACH_MSG_TYPE_COPY_SEND, 1), MACH_MSG_SUCCESS);

    struct rpc r = {.server = svc};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, rpc_main, &r) == 0);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS); /* the holder has it */
    CHECK(m.h.msgh_id == 2);
    kill_and_reap(holder);
    rpc_join(thread, &r);
    CHECK_KR(r.kr, MIG_SERVER_DIED);

    kill_and_reap(forwarder);
    mach_port_deallocate(SELF, svc);
    mach_port_deallocate(SELF, holder_inbox);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* ---- a server that gave its port away ---- */

static void giver_main(mach_port_t parent, void *arg)
{
    mach_port_t svc = test_new_port(false);
    CHECK_KR(test_send_port(parent, svc, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, svc, WAIT_MS), MACH_MSG_SUCCESS);
    /* Keeps the reply right, gives the port to the client itself. */
    CHECK_KR(test_send_port(parent, svc, MACH_MSG_TYPE_MOVE_RECEIVE, 3), MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

static void port_given_away(void)
{
    mach_port_t boot = test_new_port(true);
    pid_t giver = start_child(boot, giver_main, NULL);
    mach_port_t svc = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &svc, &type), MACH_MSG_SUCCESS);
    struct rpc r = {.server = svc};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, rpc_main, &r) == 0);
    mach_port_t received = MACH_PORT_NULL;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &received, &type), MACH_MSG_SUCCESS);
    CHECK(received == svc && type == MACH_MSG_TYPE_PORT_RECEIVE);
    kill_and_reap(giver);
    rpc_join(thread, &r);
    CHECK_KR(r.kr, MIG_SERVER_DIED);
    CHECK_KR(mach_port_destroy(SELF, svc), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* ---- rights in both spaces of a task that ends ---- */

enum holder_end { KILLED, EXITS, USES_THEN_KILLED };

struct keeper_arg {
    enum holder_end end;
};

/* Receives two send-once rights: keeps the first in its space, makes the
 * second the notify right of a dead-name request on a send right to the
 * parent's port; or uses the first. */
static void keeper_main(mach_port_t parent, void *arg)
{
    struct keeper_arg *k = arg;
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    msgbuf_t m1, m2;
    CHECK_KR(receive(&m1, inbox, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK_KR(receive(&m2, inbox, WAIT_MS), MACH_MSG_SUCCESS);
    mach_port_t previous;
    CHECK_KR(mach_port_request_notification(SELF, parent, MACH_NOTIFY_DEAD_NAME, 0,
                                            m2.h.msgh_remote_port,
                                            MACH_MSG_TYPE_MOVE_SEND_ONCE, &previous),
             KERN_SUCCESS);
    if (k->end == USES_THEN_KILLED) {
        CHECK_KR(send_once(m1.h.msgh_remote_port, 42), MACH_MSG_SUCCESS);
    }
    CHECK_KR(send_right(parent, 2, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    if (k->end == EXITS) {
        return; /* exits */
    }
    for (;;) {
        pause();
    }
}

static void rights_of_a_task(enum holder_end end)
{
    mach_port_t boot = test_new_port(true);
    mach_port_t n1 = test_new_port(false), n2 = test_new_port(false);
    struct keeper_arg arg = {.end = end};
    pid_t keeper = start_child(boot, keeper_main, &arg);
    mach_port_t inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &inbox, &type), MACH_MSG_SUCCESS);
    CHECK_KR(send_right(inbox, 1, n1, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    CHECK_KR(send_right(inbox, 1, n2, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 2);
    if (end == EXITS) {
        test_wait_ok(keeper);
    } else {
        kill_and_reap(keeper);
    }
    /* N1: its message if it was used, else the notification; then no
     * more.  N2 (a notify right in the keeper's kernel space): the
     * notification. */
    CHECK_KR(receive(&m, n1, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == (end == USES_THEN_KILLED ? 42 : MACH_NOTIFY_SEND_ONCE));
    CHECK_KR(receive(&m, n1, QUIET_MS), MACH_RCV_TIMED_OUT);
    CHECK_KR(receive(&m, n2, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == MACH_NOTIFY_SEND_ONCE);
    CHECK_KR(receive(&m, n2, QUIET_MS), MACH_RCV_TIMED_OUT);

    mach_port_deallocate(SELF, inbox);
    CHECK_KR(mach_port_destroy(SELF, n1), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, n2), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* ---- the queues of a killed task's ports ---- */

/* Shows the parent a port it never reads, gives the parent the receive
 * right of another port it made (with a send right: machd keeps its
 * receive end until the right leaves), says so, waits. */
static void sink_main(mach_port_t parent, void *arg)
{
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    mach_port_t given = test_new_port(true);
    CHECK_KR(test_send_port(parent, given, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    CHECK_KR(send_right(parent, 2, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

/* Requests a notification of kind ID on PORT to NOTIFY (for no-senders,
 * once a send right has been made: sync 1). */
static void request(mach_port_t port, mach_msg_id_t id, mach_port_t notify)
{
    mach_port_t previous = MACH_PORT_NULL;
    CHECK_KR(mach_port_request_notification(SELF, port, id, id == MACH_NOTIFY_NO_SENDERS, notify,
                                            MACH_MSG_TYPE_MAKE_SEND_ONCE, &previous),
             KERN_SUCCESS);
    CHECK(previous == MACH_PORT_NULL);
}

static void queued_at_killed_task(void)
{
    mach_port_t boot = test_new_port(true);
    pid_t sink = start_child(boot, sink_main, NULL);
    mach_port_t inbox = MACH_PORT_NULL, given = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &inbox, &type), MACH_MSG_SUCCESS);
    CHECK_KR(test_receive_port(boot, WAIT_MS, &given, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_RECEIVE);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 2);

    /* Three messages the sink will never read: a send-once right to
     * REPLY; the only send right to ALONE (no-senders requested); the
     * receive right of CARRIED (port-destroyed requested), in whose own
     * queue a send-once right to INNER waits. */
    mach_port_t reply = test_new_port(false), alone = test_new_port(false);
    mach_port_t carried = test_new_port(true), inner = test_new_port(false);
    mach_port_t notify = test_new_port(false);
    request(alone, MACH_NOTIFY_NO_SENDERS, notify);
    request(carried, MACH_NOTIFY_PORT_DESTROYED, notify);
    CHECK_KR(send_right(inbox, 1, reply, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(inbox, alone, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    CHECK_KR(send_right(carried, 3, inner, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, carried), KERN_SUCCESS); /* the send right */
    CHECK_KR(test_send_port(inbox, carried, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    CHECK_KR(receive(&m, reply, QUIET_MS), MACH_RCV_TIMED_OUT);

    kill_and_reap(sink);
    CHECK_KR(receive(&m, reply, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == MACH_NOTIFY_SEND_ONCE);
    CHECK_KR(receive(&m, reply, QUIET_MS), MACH_RCV_TIMED_OUT);
    bool no_senders = false, destroyed = false;
    for (int i = 0; i < 2; i++) {
        CHECK_KR(receive(&m, notify, WAIT_MS), MACH_MSG_SUCCESS);
        if (m.h.msgh_id == MACH_NOTIFY_NO_SENDERS) {
            /* (Linux closes the send right's descriptor with the queue.) */
            no_senders = ((const mach_no_senders_notification_t *)(const void *)&m)->not_count == 1;
        } else if (m.h.msgh_id == MACH_NOTIFY_PORT_DESTROYED) {
            const mach_port_destroyed_notification_t *n = (const void *)&m;
            destroyed = n->not_type.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE;
            carried = n->not_port;
        }
    }
    CHECK(no_senders && destroyed);
    /* CARRIED came back whole: its message, then INNER's right used. */
    CHECK_KR(receive(&m, carried, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 3 && MACH_MSGH_BITS_REMOTE(m.h.msgh_bits) == MACH_MSG_TYPE_PORT_SEND_ONCE);
    CHECK_KR(send_once(m.h.msgh_remote_port, 4), MACH_MSG_SUCCESS);
    CHECK_KR(receive(&m, inner, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 4);

    /* The port the sink gave away before its death lives on. */
    CHECK_KR(mach_port_insert_right(SELF, given, given, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(send_right(given, 5, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    CHECK_KR(receive(&m, given, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 5);

    mach_port_deallocate(SELF, inbox);
    destroy_all(given, reply, alone, carried, inner, notify, boot);
}

/* ---- the port-destroyed request of a port whose receiver is killed ---- */

enum pd_end {
    PD_HONOURED,    /* the right goes to the request's holder */
    PD_CANCELLED,   /* the request was withdrawn: the port dies */
    PD_NOTIFY_DEAD, /* the request's port died: so does this one */
};

/* Gives the parent a send right to a port of its own, takes the
 * send-once right to ask port-destroyed notifications with from the
 * first message, gives a send-once right to the port (made after the
 * request), answers the request of a second message (whose reply port
 * becomes a transport of the port), then says it is ready and waits.
 * With ARG, withdraws the request first (keeping the notify right). */
static void pd_keeper_main(mach_port_t parent, void *arg)
{
    mach_port_t port = test_new_port(false);
    CHECK_KR(test_send_port(parent, port, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, port, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 10);
    mach_port_t previous = MACH_PORT_NULL;
    CHECK_KR(mach_port_request_notification(SELF, port, MACH_NOTIFY_PORT_DESTROYED, 0,
                                            m.h.msgh_remote_port, MACH_MSG_TYPE_MOVE_SEND_ONCE,
                                            &previous),
             KERN_SUCCESS);
    CHECK_KR(send_right(parent, 11, port, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    CHECK_KR(receive(&m, port, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 12);
    CHECK_KR(send_once(m.h.msgh_remote_port, 112), MACH_MSG_SUCCESS);
    if (arg != NULL) {
        CHECK_KR(mach_port_request_notification(SELF, port, MACH_NOTIFY_PORT_DESTROYED, 0,
                                                MACH_PORT_NULL, MACH_MSG_TYPE_MOVE_SEND_ONCE,
                                                &previous),
                 KERN_SUCCESS);
        CHECK(MACH_PORT_VALID(previous));
    }
    CHECK_KR(send_right(parent, 13, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

/* GNU Mach destroys a dead task's receive rights, and a port-destroyed
 * request sends the right, with its queue, to the request's holder: as
 * the right would have been had the task destroyed it. */
static void port_destroyed_of_killed_task(enum pd_end end)
{
    mach_port_t boot = test_new_port(true);
    pid_t keeper = start_child(boot, pd_keeper_main, end == PD_CANCELLED ? (void *)1 : NULL);
    mach_port_t port = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &port, &type), MACH_MSG_SUCCESS);
    mach_port_t notify = test_new_port(false), reply = test_new_port(false);
    CHECK_KR(send_right(port, 10, notify, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 11 &&
          MACH_MSGH_BITS_REMOTE(m.h.msgh_bits) == MACH_MSG_TYPE_PORT_SEND_ONCE);
    mach_port_t once = m.h.msgh_remote_port;
    CHECK_KR(send_right(port, 12, reply, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    CHECK_KR(receive(&m, reply, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 112);
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 13);
    /* Never read by the keeper: a request whose reply right travels
     * without its send end (the keeper's port has it already). */
    CHECK_KR(send_right(port, 14, reply, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    if (end == PD_NOTIFY_DEAD) {
        CHECK_KR(mach_port_destroy(SELF, notify), KERN_SUCCESS);
    }
    mach_port_t dead_name = test_new_port(false);
    request(port, MACH_NOTIFY_DEAD_NAME, dead_name);
    kill_and_reap(keeper);

    if (end == PD_HONOURED) {
        CHECK_KR(receive(&m, notify, WAIT_MS), MACH_MSG_SUCCESS);
        const mach_port_destroyed_notification_t *n = (const void *)&m;
        CHECK(m.h.msgh_id == MACH_NOTIFY_PORT_DESTROYED &&
              n->not_type.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE);
        /* The receive right joins the send right we hold. */
        CHECK(n->not_port == port);
        mach_port_type_t ptype = 0;
        CHECK_KR(mach_port_type(SELF, port, &ptype), KERN_SUCCESS);
        CHECK((ptype & MACH_PORT_TYPE_PORT_RIGHTS) ==
              (MACH_PORT_TYPE_RECEIVE | MACH_PORT_TYPE_SEND));
        /* Its queue came along, and the reply right in it works. */
        CHECK_KR(receive(&m, port, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(m.h.msgh_id == 14 &&
              MACH_MSGH_BITS_REMOTE(m.h.msgh_bits) == MACH_MSG_TYPE_PORT_SEND_ONCE);
        CHECK_KR(send_once(m.h.msgh_remote_port, 15), MACH_MSG_SUCCESS);
        CHECK_KR(receive(&m, reply, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(m.h.msgh_id == 15);
        /* The send-once right the keeper made after its request. */
        CHECK_KR(send_once(once, 16), MACH_MSG_SUCCESS);
        CHECK_KR(receive(&m, port, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(m.h.msgh_id == 16);
        /* The request's right went with the notification: nothing else. */
        CHECK_KR(receive(&m, notify, QUIET_MS), MACH_RCV_TIMED_OUT);
        CHECK_KR(receive(&m, reply, QUIET_MS), MACH_RCV_TIMED_OUT);
        CHECK_KR(receive(&m, dead_name, 0), MACH_RCV_TIMED_OUT); /* it lives */
    } else {
        /* The port died with its queue: the reply right in it is
         * notified, and so is a withdrawn request's right. */
        CHECK_KR(receive(&m, reply, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(m.h.msgh_id == MACH_NOTIFY_SEND_ONCE);
        if (end == PD_CANCELLED) {
            CHECK_KR(receive(&m, notify, WAIT_MS), MACH_MSG_SUCCESS);
            CHECK(m.h.msgh_id == MACH_NOTIFY_SEND_ONCE);
        }
        CHECK_KR(receive(&m, dead_name, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(m.h.msgh_id == MACH_NOTIFY_DEAD_NAME);
        CHECK_KR(send_right(port, 17, MACH_PORT_NULL, 0), MACH_SEND_INVALID_DEST);
        CHECK_KR(mach_port_deallocate(SELF, once), KERN_SUCCESS);
    }
    if (end != PD_NOTIFY_DEAD) {
        CHECK_KR(mach_port_destroy(SELF, notify), KERN_SUCCESS);
    }
    destroy_all(port, reply, boot, dead_name);
}

#define CHURN_PORTS 100

/* Makes ports with port-destroyed requests, changes each (which makes
 * machd's escrow again) and destroys it (honouring the request itself),
 * then says so and waits. */
static void churner_main(mach_port_t parent, void *arg)
{
    mach_port_t backup = test_new_port(false);
    msgbuf_t m;
    for (int i = 0; i < CHURN_PORTS; i++) {
        mach_port_t port = test_new_port(true);
        mach_port_t previous = MACH_PORT_NULL;
        CHECK_KR(mach_port_request_notification(SELF, port, MACH_NOTIFY_PORT_DESTROYED, 0,
                                                backup, MACH_MSG_TYPE_MAKE_SEND_ONCE,
                                                &previous),
                 KERN_SUCCESS);
        for (int k = 0; k < 3; k++) {
            mach_port_t so = MACH_PORT_NULL;
            mach_msg_type_name_t got;
            CHECK_KR(mach_port_extract_right(SELF, port, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so,
                                             &got),
                     KERN_SUCCESS);
            CHECK_KR(mach_port_deallocate(SELF, so), KERN_SUCCESS);
        }
        CHECK_KR(mach_port_mod_refs(SELF, port, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
        CHECK_KR(receive(&m, backup, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(m.h.msgh_id == MACH_NOTIFY_PORT_DESTROYED);
        CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);
    }
    CHECK_KR(send_right(parent, 20, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

/* What machd keeps for escrows goes with the ports: a task that made
 * and destroyed many leaves machd with no more descriptors. */
static void escrow_churn(void)
{
    pid_t machd = getppid();
    int before = test_count_fds_of(machd);
    mach_port_t boot = test_new_port(true);
    pid_t churner = start_child(boot, churner_main, NULL);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 20);
    /* (machd reads what the churner sent a moment later.) */
    for (int i = 0; i < 500 && test_count_fds_of(machd) >= before + 20; i++) {
        usleep(10000);
    }
    CHECK(test_count_fds_of(machd) < before + 20);
    kill_and_reap(churner);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* ---- a right taken for a send that never completes ---- */

/* Gets a send right to a full port and a send-once right, tells the
 * parent the latter's name (as the message id), then sends it to the full
 * port, which waits for room that never comes. */
static void blocked_sender_main(mach_port_t parent, void *arg)
{
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    mach_port_t full = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(inbox, WAIT_MS, &full, &type), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, inbox, WAIT_MS), MACH_MSG_SUCCESS);
    mach_port_t right = m.h.msgh_remote_port;
    CHECK_KR(send_right(parent, (mach_msg_id_t)right, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    (void)send_right(full, 6, right, MACH_MSG_TYPE_MOVE_SEND_ONCE);
    for (;;) {
        pause();
    }
}

static void taken_then_killed(void)
{
    mach_port_t boot = test_new_port(true), full = test_new_port(true);
    mach_port_t reply = test_new_port(false);
    CHECK_KR(mach_port_set_qlimit(SELF, full, 1), KERN_SUCCESS);
    CHECK_KR(send_right(full, 1, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS); /* now full */
    mach_port_t child_task = MACH_PORT_NULL;
    pid_t pid = start_child_task(boot, blocked_sender_main, NULL, &child_task);
    mach_port_t inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &inbox, &type), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(inbox, full, MACH_MSG_TYPE_COPY_SEND, 1), MACH_MSG_SUCCESS);
    CHECK_KR(send_right(inbox, 1, reply, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    mach_port_t name = (mach_port_t)m.h.msgh_id;
    /* Taken out of its name: the send has begun. */
    mach_port_type_t ptype = 0;
    for (int ms = 0; ms < WAIT_MS && mach_port_type(child_task, name, &ptype) == KERN_SUCCESS;
         ms++) {
        usleep(1000);
    }
    CHECK_KR(mach_port_type(child_task, name, &ptype), KERN_INVALID_NAME);
    kill_and_reap(pid);
    CHECK_KR(receive(&m, reply, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == MACH_NOTIFY_SEND_ONCE);
    CHECK_KR(receive(&m, reply, QUIET_MS), MACH_RCV_TIMED_OUT);
    /* The full queue holds our message only. */
    CHECK_KR(receive(&m, full, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 1);
    CHECK_KR(receive(&m, full, QUIET_MS), MACH_RCV_TIMED_OUT);

    mach_port_deallocate(SELF, inbox);
    mach_port_deallocate(SELF, child_task);
    destroy_all(boot, full, reply);
}

/* ---- a message kept by MACH_RCV_LARGE in a task that is killed ---- */

/* Receives into a buffer too small for the next message, which
 * MACH_RCV_LARGE keeps for the next receive, says so, waits. */
static void keeper_of_large_main(mach_port_t parent, void *arg)
{
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    mach_msg_header_t h;
    CHECK_KR(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_LARGE | MACH_RCV_TIMEOUT, 0, sizeof h, inbox,
                      WAIT_MS, MACH_PORT_NULL),
             MACH_RCV_TOO_LARGE);
    CHECK_KR(send_right(parent, 2, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

/* Both send-once rights of the kept message (its reply right and one in
 * its body) are notified when the task is killed. */
static void kept_large_then_killed(void)
{
    mach_port_t boot = test_new_port(true), reply = test_new_port(false);
    pid_t pid = start_child(boot, keeper_of_large_main, NULL);
    mach_port_t inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &inbox, &type), MACH_MSG_SUCCESS);
    struct test_port_msg req = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE) |
                           MACH_MSGH_BITS_COMPLEX,
              .msgh_remote_port = inbox, .msgh_local_port = reply, .msgh_id = 1},
        .t = {.msgt_name = MACH_MSG_TYPE_MAKE_SEND_ONCE, .msgt_size = 64, .msgt_number = 1,
              .msgt_inline = TRUE},
        .p = {.name = reply},
    };
    CHECK_KR(mach_msg(&req.h, MACH_SEND_MSG, sizeof req, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 2);
    CHECK_KR(receive(&m, reply, QUIET_MS), MACH_RCV_TIMED_OUT);
    kill_and_reap(pid);
    for (int i = 0; i < 2; i++) {
        m.h.msgh_id = 0;
        CHECK_KR(receive(&m, reply, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(m.h.msgh_id == MACH_NOTIFY_SEND_ONCE);
    }
    CHECK_KR(receive(&m, reply, QUIET_MS), MACH_RCV_TIMED_OUT);

    mach_port_deallocate(SELF, inbox);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, reply), KERN_SUCCESS);
}

/* Receive rights in a kept message are the task's: when it is killed,
 * one's queue is destroyed (the send-once right waiting there notified)
 * and the other's port-destroyed request honoured. */
static void kept_receive_then_killed(void)
{
    mach_port_t boot = test_new_port(true);
    pid_t pid = start_child(boot, keeper_of_large_main, NULL);
    mach_port_t inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &inbox, &type), MACH_MSG_SUCCESS);
    mach_port_t queued = test_new_port(true), backed = test_new_port(false);
    mach_port_t inner = test_new_port(false), notify = test_new_port(false);
    request(backed, MACH_NOTIFY_PORT_DESTROYED, notify);
    CHECK_KR(send_right(queued, 3, inner, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    struct {
        mach_msg_header_t h;
        mach_msg_type_t t;
        mach_port_name_inlined_t p[2];
    } req = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .msgh_size = sizeof req, .msgh_remote_port = inbox, .msgh_id = 1},
        .t = {.msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE, .msgt_size = 64, .msgt_number = 2,
              .msgt_inline = TRUE},
        .p = {{.name = queued}, {.name = backed}},
    };
    CHECK_KR(mach_msg(&req.h, MACH_SEND_MSG, sizeof req, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 2);
    mach_port_t dead_name = test_new_port(false);
    request(queued, MACH_NOTIFY_DEAD_NAME, dead_name);
    kill_and_reap(pid);
    CHECK_KR(receive(&m, inner, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == MACH_NOTIFY_SEND_ONCE);
    CHECK_KR(receive(&m, notify, WAIT_MS), MACH_MSG_SUCCESS);
    const mach_port_destroyed_notification_t *n = (const void *)&m;
    CHECK(m.h.msgh_id == MACH_NOTIFY_PORT_DESTROYED &&
          n->not_type.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE);
    mach_port_t back = n->not_port;
    mach_port_type_t ptype = 0;
    CHECK_KR(mach_port_type(SELF, back, &ptype), KERN_SUCCESS);
    CHECK(ptype == MACH_PORT_TYPE_RECEIVE);
    /* QUEUED died: our send right to it is a dead name. */
    CHECK_KR(receive(&m, dead_name, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == MACH_NOTIFY_DEAD_NAME);
    CHECK_KR(send_right(queued, 4, MACH_PORT_NULL, 0), MACH_SEND_INVALID_DEST);

    mach_port_deallocate(SELF, inbox);
    destroy_all(boot, queued, back, inner, notify, dead_name);
}

/* ---- a receive right given to a task outside the instance ---- */

/* The outsider (this program, run without HELL_INSTANCE): takes a
 * receive right from the parent, says so, waits. */
static __attribute__((noreturn)) int outsider_main(void)
{
    mach_port_t parent = MACH_PORT_NULL;
    CHECK_KR(task_get_bootstrap_port(SELF, &parent), KERN_SUCCESS);
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    mach_port_t given = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(inbox, WAIT_MS, &given, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_RECEIVE);
    CHECK_KR(send_right(parent, 2, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

extern char **environ;

static void given_to_outsider(void)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(len > 0);
    self[len > 0 ? len : 0] = '\0';
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **env = calloc(n + 1, sizeof *env);
    CHECK(env != NULL);
    for (size_t i = 0, k = 0; env != NULL && i < n; i++) {
        if (strncmp(environ[i], "HELL_INSTANCE=", 14) != 0) {
            env[k++] = environ[i];
        }
    }
    mach_port_t boot = test_new_port(true);
    struct hell_spawn_attr attr = {.bootstrap = boot, .envp = env};
    mach_port_t outsider_task = MACH_PORT_NULL;
    pid_t pid = hell_spawn_attr(self, (char *[]){self, "--outsider", NULL}, &attr,
                                &outsider_task);
    free(env);
    CHECK(pid > 0);
    mach_port_t inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &inbox, &type), MACH_MSG_SUCCESS);
    /* X has senders (machd keeps its receive end), then goes. */
    mach_port_t x = test_new_port(true);
    CHECK_KR(test_send_port(inbox, x, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 2);
    kill_and_reap(pid);
    mach_port_type_t ptype = 0;
    for (int ms = 0; ms < WAIT_MS && mach_port_type(SELF, x, &ptype) == KERN_SUCCESS &&
                     ptype != MACH_PORT_TYPE_DEAD_NAME;
         ms++) {
        usleep(1000);
    }
    CHECK(ptype == MACH_PORT_TYPE_DEAD_NAME);
    CHECK_KR(send_right(x, 3, MACH_PORT_NULL, 0), MACH_SEND_INVALID_DEST);

    mach_port_deallocate(SELF, inbox);
    mach_port_deallocate(SELF, outsider_task);
    CHECK_KR(mach_port_destroy(SELF, x), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* ---- machd keeps no descriptor for a port the task forgot ---- */

#define FRESH_RPCS 300

/* A server that makes a port per call (as libports makes one per open
 * object), answers one call on it, destroys it. */
static void fresh_server_main(mach_port_t parent, void *arg)
{
    for (int i = 0; i < FRESH_RPCS; i++) {
        mach_port_t port = test_new_port(false);
        CHECK_KR(test_send_port(parent, port, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
        msgbuf_t req, rep;
        CHECK_KR(receive(&req, port, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(hell_test_server(&req.h, &rep.h));
        CHECK_KR(mach_msg(&rep.h, MACH_SEND_MSG, rep.h.msgh_size, 0, MACH_PORT_NULL, 0,
                          MACH_PORT_NULL),
                 MACH_MSG_SUCCESS);
        CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);
    }
}

static void fresh_ports(void)
{
    pid_t machd = getppid(); /* hell run's tasks are machd's children */
    mach_port_t boot = test_new_port(true);
    pid_t server = start_child(boot, fresh_server_main, NULL);
    int before = 0;
    for (int i = 0; i < FRESH_RPCS; i++) {
        mach_port_t port = MACH_PORT_NULL;
        mach_msg_type_name_t type;
        CHECK_KR(test_receive_port(boot, WAIT_MS, &port, &type), MACH_MSG_SUCCESS);
        CHECK_KR(test_null(port), KERN_SUCCESS);
        CHECK_KR(mach_port_deallocate(SELF, port), KERN_SUCCESS);
        if (i == 10) {
            before = test_count_fds_of(machd);
        }
    }
    test_wait_ok(server);
    /* One reply port all along: machd holds a copy of its send end at
     * most, not one per call. */
    CHECK(test_count_fds_of(machd) < before + 20);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
}

/* ---- many rights of a killed task to a port whose socket is full ---- */

/* Takes TEST_FLOOD_N send-once rights (the reply rights of messages), says
 * so, waits to be killed. */
static void once_keeper_main(mach_port_t parent, void *arg)
{
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    for (int i = 0; i < TEST_FLOOD_N; i++) {
        msgbuf_t m;
        CHECK_KR(receive(&m, inbox, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(MACH_MSGH_BITS_REMOTE(m.h.msgh_bits) == MACH_MSG_TYPE_PORT_SEND_ONCE);
    }
    CHECK_KR(send_right(parent, 2, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

static void flood_to_a_full_port(void)
{
    pid_t machd = getppid();
    mach_port_t boot = test_new_port(true), reply = test_new_port(false);
    mach_port_t watch = test_new_port(false);
    pid_t pid = start_child(boot, once_keeper_main, NULL);
    mach_port_t inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &inbox, &type), MACH_MSG_SUCCESS);
    for (int i = 0; i < TEST_FLOOD_N; i++) {
        CHECK_KR(send_right(inbox, 1, reply, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    }
    msgbuf_t m;
    CHECK_KR(receive(&m, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 2);
    /* The death of the child's port says that machd has dealt with its
     * rights: it destroys a dead task's ports after notifying them. */
    mach_port_t previous = MACH_PORT_NULL;
    CHECK_KR(mach_port_request_notification(SELF, inbox, MACH_NOTIFY_DEAD_NAME, 0, watch,
                                            MACH_MSG_TYPE_MAKE_SEND_ONCE, &previous),
             KERN_SUCCESS);
    int before = test_count_fds_of(machd);
    int filled = test_fill_port(reply);
    kill_and_reap(pid);
    CHECK_KR(receive(&m, watch, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == MACH_NOTIFY_DEAD_NAME);
    /* Only now is the port read: the fill, then a send-once notification
     * for each right (and the one test_fill_port destroyed). */
    int fills = 0, notified = 0, other = 0;
    for (int i = 0; i < filled + TEST_FLOOD_N + 1; i++) {
        union {
            struct test_fill_msg f;
            msgbuf_t m;
        } r;
        if (mach_msg(&r.f.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, reply, WAIT_MS,
                     MACH_PORT_NULL) != MACH_MSG_SUCCESS) {
            break;
        }
        fills += r.f.head.msgh_id == TEST_FILL_ID;
        notified += r.f.head.msgh_id == MACH_NOTIFY_SEND_ONCE;
        other += r.f.head.msgh_id != TEST_FILL_ID && r.f.head.msgh_id != MACH_NOTIFY_SEND_ONCE;
    }
    if (fills != filled || notified != TEST_FLOOD_N + 1 || other != 0) {
        fprintf(stderr, "filled %d: %d came; %d send-once notifications of %d; %d others\n",
                filled, fills, notified, TEST_FLOOD_N + 1, other);
    }
    CHECK(fills == filled && notified == TEST_FLOOD_N + 1 && other == 0);
    CHECK_KR(receive(&m, reply, QUIET_MS), MACH_RCV_TIMED_OUT);
    /* What machd kept while the port was full is gone. */
    CHECK(test_count_fds_of(machd) <= before);
    CHECK_KR(mach_port_mod_refs(SELF, inbox, MACH_PORT_RIGHT_DEAD_NAME, -2), KERN_SUCCESS);
    destroy_all(boot, reply, watch);
}

static int task_main(void)
{
    CHECK(getenv("HELL_INSTANCE") != NULL);
    forwarded_reply();
    port_given_away();
    rights_of_a_task(KILLED);
    rights_of_a_task(EXITS);
    rights_of_a_task(USES_THEN_KILLED);
    queued_at_killed_task();
    port_destroyed_of_killed_task(PD_HONOURED);
    port_destroyed_of_killed_task(PD_CANCELLED);
    port_destroyed_of_killed_task(PD_NOTIFY_DEAD);
    escrow_churn();
    taken_then_killed();
    kept_large_then_killed();
    kept_receive_then_killed();
    given_to_outsider();
    fresh_ports();
    flood_to_a_full_port();
    return test_failures == 0 ? 0 : 1;
}

/* ---- the driver ---- */

static int run(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(126);
    }
    int status;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--task") == 0) {
        return task_main();
    }
    if (argc == 2 && strcmp(argv[1], "--outsider") == 0) {
        return outsider_main();
    }
    char self[PATH_MAX], hell[PATH_MAX + 16], dir[] = "/tmp/hell-test-janitor-XXXXXX";
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(len > 0);
    self[len > 0 ? len : 0] = '\0';
    snprintf(hell, sizeof hell, "%s", self);
    *strrchr(hell, '/') = '\0';
    strcat(hell, "/../bin/hell");
    CHECK(mkdtemp(dir) != NULL);
    setenv("HELL_RUNTIME_DIR", dir, 1);
    CHECK(run((char *[]){hell, "start", "J", NULL}) == 0);
    CHECK(run((char *[]){hell, "run", "J", self, "--task", NULL}) == 0);
    CHECK(run((char *[]){hell, "stop", "J", NULL}) == 0);
    CHECK(rmdir(dir) == 0);
    return test_done("janitor");
}
