/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Notification requests with GNU Mach's formats (notify.defs): no-senders
 * (immediate, on the last local send right, on the death of the task
 * holding the last one), dead-name (on a SIGKILLed receiver, on a name
 * already dead), port-deleted, port-destroyed (the receive right comes
 * back with its queue), the previous notify right, and errors.
 */
#include <hell.h>
#include <signal.h>

#include "test.h"

struct notification {
    mach_msg_header_t head;
    mach_msg_type_t type;
    uint32_t value;
    uint32_t pad;
    char spare[64];
};

static mach_port_t self, notify_port;

/* Receives one notification on NOTIFY_PORT and checks its format. */
static void expect(mach_msg_id_t id, uint32_t value)
{
    struct notification n;
    memset(&n, 0, sizeof n);
    CHECK_KR(mach_msg(&n.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof n, notify_port,
                      10000, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(n.head.msgh_id == id);
    CHECK(n.head.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
    CHECK(n.head.msgh_local_port == notify_port);
    CHECK(n.head.msgh_remote_port == MACH_PORT_NULL);
    if (id == MACH_NOTIFY_SEND_ONCE) {
        CHECK(n.head.msgh_size == sizeof(mach_msg_header_t));
        return;
    }
    CHECK(n.head.msgh_size == 48);
    CHECK(n.type.msgt_name == (id == MACH_NOTIFY_NO_SENDERS ? MACH_MSG_TYPE_INTEGER_32
                                                             : MACH_MSG_TYPE_PORT_NAME));
    CHECK(n.type.msgt_size == 32 && n.type.msgt_number == 1 && n.type.msgt_inline);
    CHECK(n.value == value);
}

static void expect_nothing(void)
{
    struct notification n;
    CHECK_KR(mach_msg(&n.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof n, notify_port, 0,
                      MACH_PORT_NULL),
             MACH_RCV_TIMED_OUT);
}

static kern_return_t request(mach_port_t name, mach_msg_id_t id, mach_port_mscount_t sync,
                             mach_port_t *previous)
{
    mach_port_t prev = MACH_PORT_NULL;
    kern_return_t kr = mach_port_request_notification(self, name, id, sync, notify_port,
                                                      MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev);
    if (previous != NULL) {
        *previous = prev;
    } else if (MACH_PORT_VALID(prev)) {
        mach_port_deallocate(self, prev);
    }
    return kr;
}

static mach_port_urefs_t dead_refs(mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(self, name, MACH_PORT_RIGHT_DEAD_NAME, &refs), KERN_SUCCESS);
    return refs;
}

static void no_senders(void)
{
    mach_port_t p;
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);

    /* No send right ever made, sync 0 <= mscount 0: at once. */
    CHECK_KR(request(p, MACH_NOTIFY_NO_SENDERS, 0, NULL), KERN_SUCCESS);
    expect(MACH_NOTIFY_NO_SENDERS, 0);

    /* A send right exists: registered, fires when the last one goes. */
    CHECK_KR(mach_port_insert_right(self, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(request(p, MACH_NOTIFY_NO_SENDERS, 0, NULL), KERN_SUCCESS);
    mach_port_status_t status;
    CHECK_KR(mach_port_get_receive_status(self, p, &status), KERN_SUCCESS);
    CHECK(status.mps_nsrequest && status.mps_mscount == 1);
    expect_nothing();
    CHECK_KR(mach_port_mod_refs(self, p, MACH_PORT_RIGHT_SEND, -1), KERN_SUCCESS);
    expect(MACH_NOTIFY_NO_SENDERS, 1);

    /* A sync above the make-send count, with no send right: registered; it
     * fires when a later send right goes, whatever the count then. */
    CHECK_KR(request(p, MACH_NOTIFY_NO_SENDERS, 5, NULL), KERN_SUCCESS);
    expect_nothing();
    CHECK_KR(mach_port_insert_right(self, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(self, p, MACH_PORT_RIGHT_SEND, -1), KERN_SUCCESS);
    expect(MACH_NOTIFY_NO_SENDERS, 2);

    /* The last send right is held by a task killed with SIGKILL. */
    CHECK_KR(mach_port_insert_right(self, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    mach_port_t child_task;
    pid_t pid = hell_fork(p, &child_task);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    CHECK_KR(mach_port_mod_refs(self, p, MACH_PORT_RIGHT_SEND, -1), KERN_SUCCESS);
    CHECK_KR(request(p, MACH_NOTIFY_NO_SENDERS, 0, NULL), KERN_SUCCESS);
    expect_nothing();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    expect(MACH_NOTIFY_NO_SENDERS, 3);
    CHECK_KR(mach_port_deallocate(self, child_task), KERN_SUCCESS);

    /* A second request returns the first notify right; destroying it
     * sends a send-once notification. */
    CHECK_KR(mach_port_insert_right(self, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    mach_port_t previous = MACH_PORT_NULL;
    CHECK_KR(request(p, MACH_NOTIFY_NO_SENDERS, 0, &previous), KERN_SUCCESS);
    CHECK(previous == MACH_PORT_NULL);
    CHECK_KR(request(p, MACH_NOTIFY_NO_SENDERS, 0, &previous), KERN_SUCCESS);
    mach_port_type_t type = 0;
    CHECK(MACH_PORT_VALID(previous));
    CHECK_KR(mach_port_type(self, previous, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_SEND_ONCE);
    CHECK_KR(mach_port_deallocate(self, previous), KERN_SUCCESS);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
    /* Destroying the port destroys the request's right too. */
    CHECK_KR(mach_port_destroy(self, p), KERN_SUCCESS);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
    expect_nothing();
}

static void dead_name(void)
{
    mach_port_t boot;
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &boot), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(self, boot, boot, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    mach_port_t child_task;
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        mach_port_t parent, mine;
        task_get_bootstrap_port(mach_task_self(), &parent);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &mine);
        test_send_port(parent, mine, MACH_MSG_TYPE_MAKE_SEND, 1);
        test_send_port(parent, mine, MACH_MSG_TYPE_MAKE_SEND_ONCE, 2);
        pause();
        _exit(0);
    }
    mach_port_t peer = MACH_PORT_NULL;
    mach_msg_type_name_t type_name = 0;
    CHECK_KR(test_receive_port(boot, 10000, &peer, &type_name), MACH_MSG_SUCCESS);
    mach_port_t peer_once = MACH_PORT_NULL;
    CHECK_KR(test_receive_port(boot, 10000, &peer_once, &type_name), MACH_MSG_SUCCESS);
    CHECK(type_name == MACH_MSG_TYPE_PORT_SEND_ONCE && peer_once != peer);

    /* Port-deleted: a send-only name goes while its request is pending. */
    CHECK_KR(request(child_task, MACH_NOTIFY_DEAD_NAME, 0, NULL), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(self, child_task), KERN_SUCCESS);
    expect(MACH_NOTIFY_PORT_DELETED, child_task);

    CHECK_KR(request(peer, MACH_NOTIFY_DEAD_NAME, 0, NULL), KERN_SUCCESS);
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(self, peer, &type), KERN_SUCCESS);
    CHECK(type == (MACH_PORT_TYPE_SEND | MACH_PORT_TYPE_DNREQUEST));
    /* A send-once right takes a request too, under its own name. */
    CHECK_KR(request(peer_once, MACH_NOTIFY_DEAD_NAME, 0, NULL), KERN_SUCCESS);
    CHECK_KR(mach_port_type(self, peer_once, &type), KERN_SUCCESS);
    CHECK(type == (MACH_PORT_TYPE_SEND_ONCE | MACH_PORT_TYPE_DNREQUEST));
    expect_nothing();

    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* Both, in either order. */
    struct notification n[2];
    memset(n, 0, sizeof n);
    for (int i = 0; i < 2; i++) {
        CHECK_KR(mach_msg(&n[i].head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof n[i],
                          notify_port, 10000, MACH_PORT_NULL),
                 MACH_MSG_SUCCESS);
        CHECK(n[i].head.msgh_id == MACH_NOTIFY_DEAD_NAME);
    }
    CHECK((n[0].value == peer && n[1].value == peer_once) ||
          (n[0].value == peer_once && n[1].value == peer));
    CHECK_KR(mach_port_type(self, peer, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_DEAD_NAME);
    CHECK(dead_refs(peer) == 2); /* the right's, and the notification's */
    CHECK_KR(mach_port_type(self, peer_once, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_DEAD_NAME);
    CHECK(dead_refs(peer_once) == 2);
    CHECK_KR(mach_port_mod_refs(self, peer_once, MACH_PORT_RIGHT_DEAD_NAME, -2), KERN_SUCCESS);

    /* On a name already dead: sync 0 is refused (and, as any failed kernel
     * call, destroys the right it carried), sync 1 fires at once. */
    CHECK_KR(request(peer, MACH_NOTIFY_DEAD_NAME, 0, NULL), KERN_INVALID_ARGUMENT);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
    CHECK_KR(request(peer, MACH_NOTIFY_DEAD_NAME, 1, NULL), KERN_SUCCESS);
    expect(MACH_NOTIFY_DEAD_NAME, peer);
    CHECK(dead_refs(peer) == 3);
    CHECK_KR(mach_port_mod_refs(self, peer, MACH_PORT_RIGHT_DEAD_NAME, -3), KERN_SUCCESS);

    CHECK_KR(mach_port_destroy(self, boot), KERN_SUCCESS);
}

/* A dead-name request on a send-once right ends with port-deleted when
 * the right goes: deallocated (its port then gets a send-once
 * notification) or moved in a message. */
static void send_once_deleted(void)
{
    mach_port_t q;
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &q), KERN_SUCCESS);
    mach_port_t once[2];
    mach_msg_type_name_t type_name = 0;
    for (int i = 0; i < 2; i++) {
        CHECK_KR(mach_port_extract_right(self, q, MACH_MSG_TYPE_MAKE_SEND_ONCE, &once[i],
                                         &type_name),
                 KERN_SUCCESS);
        CHECK(type_name == MACH_MSG_TYPE_PORT_SEND_ONCE);
        CHECK_KR(request(once[i], MACH_NOTIFY_DEAD_NAME, 0, NULL), KERN_SUCCESS);
    }
    CHECK_KR(mach_port_deallocate(self, once[0]), KERN_SUCCESS);
    expect(MACH_NOTIFY_PORT_DELETED, once[0]);
    mach_msg_header_t r;
    CHECK_KR(mach_msg(&r, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, q, 10000, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(r.msgh_id == MACH_NOTIFY_SEND_ONCE);

    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
                           .msgh_remote_port = once[1], .msgh_id = 5};
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    expect(MACH_NOTIFY_PORT_DELETED, once[1]);
    CHECK_KR(mach_msg(&r, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, q, 10000, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(r.msgh_id == 5);
    CHECK_KR(mach_port_destroy(self, q), KERN_SUCCESS);
}

static void port_destroyed(void)
{
    mach_port_t p;
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0),
                           .msgh_remote_port = p, .msgh_id = 77};
    CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);

    /* A sync other than 0 is refused (the carried right is destroyed). */
    CHECK_KR(request(p, MACH_NOTIFY_PORT_DESTROYED, 1, NULL), KERN_INVALID_VALUE);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
    CHECK_KR(request(p, MACH_NOTIFY_PORT_DESTROYED, 0, NULL), KERN_SUCCESS);
    mach_port_status_t status;
    CHECK_KR(mach_port_get_receive_status(self, p, &status), KERN_SUCCESS);
    CHECK(status.mps_pdrequest);

    /* Destroying the receive right sends it, queue and all, instead. */
    CHECK_KR(mach_port_mod_refs(self, p, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
    struct notification n;
    memset(&n, 0, sizeof n);
    CHECK_KR(mach_msg(&n.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof n, notify_port, 10000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(n.head.msgh_id == MACH_NOTIFY_PORT_DESTROYED);
    CHECK(n.head.msgh_bits ==
          (MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE) | MACH_MSGH_BITS_COMPLEX));
    CHECK(n.head.msgh_size == 48);
    CHECK(n.type.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE && n.type.msgt_size == 64 &&
          n.type.msgt_number == 1 && n.type.msgt_inline);
    mach_port_t back = n.value;
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(self, back, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_RECEIVE);
    mach_msg_header_t r;
    CHECK_KR(mach_msg(&r, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, back, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(r.msgh_id == 77);
    /* Without a request now, destroying it destroys it. */
    CHECK_KR(mach_port_mod_refs(self, back, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
    CHECK_KR(mach_port_type(self, back, &type), KERN_INVALID_NAME);
    expect_nothing();
}

/* The no-senders and port-destroyed requests of a port stay with it when
 * its receive right moves, within a task and to another task. */
static void requests_move(void)
{
    mach_port_t p, holder;
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(self, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(request(p, MACH_NOTIFY_NO_SENDERS, 0, NULL), KERN_SUCCESS);
    CHECK_KR(request(p, MACH_NOTIFY_PORT_DESTROYED, 0, NULL), KERN_SUCCESS);

    /* Out and back in within this task. */
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &holder), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(self, holder, holder, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    CHECK_KR(test_send_port(holder, p, MACH_MSG_TYPE_MOVE_RECEIVE, 1), MACH_MSG_SUCCESS);
    mach_port_t back = MACH_PORT_NULL;
    mach_msg_type_name_t type_name = 0;
    CHECK_KR(test_receive_port(holder, 0, &back, &type_name), MACH_MSG_SUCCESS);
    CHECK(back == p && type_name == MACH_MSG_TYPE_PORT_RECEIVE);
    mach_port_status_t st;
    CHECK_KR(mach_port_get_receive_status(self, p, &st), KERN_SUCCESS);
    CHECK(st.mps_nsrequest && st.mps_pdrequest);
    expect_nothing();

    /* To a child task: it reports the requests it found, our last send
     * right going fires no-senders there, and its destroying the right
     * sends the right back to us. */
    mach_port_t child_task;
    pid_t pid = hell_fork(holder, &child_task);
    if (pid == 0) {
        mach_port_t parent, inbox, got;
        mach_msg_type_name_t t;
        task_get_bootstrap_port(mach_task_self(), &parent);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &inbox);
        test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1);
        if (test_receive_port(inbox, 10000, &got, &t) != MACH_MSG_SUCCESS) {
            _exit(2);
        }
        mach_port_status_t cst;
        mach_port_get_receive_status(mach_task_self(), got, &cst);
        test_send_port(parent, MACH_PORT_NULL, MACH_MSG_TYPE_COPY_SEND,
                       100 + cst.mps_nsrequest + 2 * cst.mps_pdrequest);
        /* Destroy it once told to. */
        mach_port_t none;
        if (test_receive_port(inbox, 10000, &none, &t) == MACH_MSG_SUCCESS) {
            mach_port_mod_refs(mach_task_self(), got, MACH_PORT_RIGHT_RECEIVE, -1);
        }
        test_send_port(parent, MACH_PORT_NULL, MACH_MSG_TYPE_COPY_SEND, 200);
        _exit(0);
    }
    mach_port_t inbox = MACH_PORT_NULL;
    CHECK_KR(test_receive_port(holder, 10000, &inbox, &type_name), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(inbox, p, MACH_MSG_TYPE_MOVE_RECEIVE, 2), MACH_MSG_SUCCESS);
    struct notification n;
    memset(&n, 0, sizeof n);
    CHECK_KR(mach_msg(&n.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof n, holder, 10000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(n.head.msgh_id == 103); /* both requests arrived */
    expect_nothing();
    CHECK_KR(mach_port_deallocate(self, p), KERN_SUCCESS); /* our send right */
    expect(MACH_NOTIFY_NO_SENDERS, 1);

    CHECK_KR(test_send_port(inbox, MACH_PORT_NULL, MACH_MSG_TYPE_COPY_SEND, 3),
             MACH_MSG_SUCCESS);
    memset(&n, 0, sizeof n);
    CHECK_KR(mach_msg(&n.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof n, notify_port, 10000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(n.head.msgh_id == MACH_NOTIFY_PORT_DESTROYED);
    back = n.value;
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(self, back, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_RECEIVE);
    CHECK_KR(mach_port_get_receive_status(self, back, &st), KERN_SUCCESS);
    CHECK(!st.mps_nsrequest && !st.mps_pdrequest); /* both were used */
    test_wait_ok(pid);
    CHECK_KR(mach_port_destroy(self, back), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(self, inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(self, child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(self, holder), KERN_SUCCESS);
    expect_nothing();
}

static void errors(void)
{
    mach_port_t p;
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
    /* Each failed request destroys the notify right it carried. */
    CHECK_KR(request(p, 0x4242, 0, NULL), KERN_INVALID_VALUE);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
    CHECK_KR(request(0x7fff00, MACH_NOTIFY_NO_SENDERS, 0, NULL), KERN_INVALID_NAME);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
    CHECK_KR(request(self, MACH_NOTIFY_NO_SENDERS, 0, NULL), KERN_INVALID_RIGHT);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
    CHECK_KR(mach_port_destroy(self, p), KERN_SUCCESS);
}

int main(void)
{
    self = mach_task_self();
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &notify_port), KERN_SUCCESS);
    int fds_before = test_count_fds();
    no_senders();
    dead_name();
    send_once_deleted();
    port_destroyed();
    requests_move();
    errors();
    expect_nothing();
    /* The watchdog's epoll instance is the one descriptor kept. */
    CHECK(test_count_fds() == fds_before + 1);
    return test_done("notifications");
}
