/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Notification requests with GNU Mach's formats (notify.defs): no-senders
 * (immediate, on the last local send right, on the death of the task
 * holding the last one), dead-name (on a SIGKILLed receiver, on a name
 * already dead), port-deleted, port-destroyed (the receive right comes
 * back with its queue), the previous notify right, and errors.
 *
 * Floods: a notify port whose socket a sender filled, not read while
 * TEST_FLOOD_N notifications come (dead-name requests on the ports of a task killed
 * with SIGKILL, no-senders requests on ports whose last send rights it
 * held, port-destroyed requests on ports destroyed at once): every
 * notification arrives, once, in order for the port, once it is read.
 *
 * Fairness, in an instance whose machd has low bounds (HELL_MACHD_NOTIFY_MAX):
 * a port never read is sent more notifications (send-once, and escrows
 * holding descriptors) from a killed task than machd's whole bounds,
 * then a victim's full port some from another killed task: the victim
 * gets every one, the hostile port only its share, and machd holds no
 * more descriptors than before once both ports are gone.  Then the
 * bounds themselves: 17 ports never read, each sent more than its share,
 * keep exactly machd's bound between them, the rest lost and reported
 * (again once the backlogs have emptied).
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

/* What fills the notify port's socket first (test_fill_port): GNU
 * Mach's notifications ignore queue limits, and a port's socket holds a
 * couple of megabytes (thousands of small messages), so a hostile sender
 * is what fills it. */

/* Takes the N messages test_fill_port sent, and the notification of the
 * right it destroyed. */
static void drain_fill(int n)
{
    int got = 0;
    for (int i = 0; i < n; i++) {
        struct test_fill_msg m;
        got += mach_msg(&m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, notify_port,
                        10000, MACH_PORT_NULL) == MACH_MSG_SUCCESS &&
               m.head.msgh_id == TEST_FILL_ID;
    }
    CHECK(got == n);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
}

/* Receives the next notification on NOTIFY_PORT into *M (cleared
 * first), waiting up to 10 s: the notify port was not read while a flood
 * came.  Returns whether one came. */
static bool next_notification(struct notification *m)
{
    memset(m, 0, sizeof *m);
    return mach_msg(&m->head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof *m, notify_port, 10000,
                    MACH_PORT_NULL) == MACH_MSG_SUCCESS;
}

/* Checks a flood of N notifications (WHAT names its kind, "" or ending
 * in a space) of which GOT came, WRONG were not the ones expected and
 * TWICE came again (negative: not counted), and prints the counts when
 * it went wrong.  Failures name the caller's LINE. */
static void flood_report_at(int line, const char *what, int n, int got, int wrong, int twice)
{
    if (got != n || wrong != 0 || twice > 0) {
        fprintf(stderr, "%sflood of %d: %d came, %d wrong", what, n, got, wrong);
        if (twice >= 0) {
            fprintf(stderr, ", %d twice", twice);
        }
        fputc('\n', stderr);
    }
    CHECK_AT(__FILE__, line, got == n && wrong == 0 && twice <= 0);
}
#define flood_report(...) flood_report_at(__LINE__, __VA_ARGS__)

/* Receives N notifications of id ID on NOTIFY_PORT (waiting up to 10 s
 * for each: the notify port was not read while they came) and checks
 * that their values are exactly NAMES[0..N), each once. */
static void expect_all(mach_msg_id_t id, const mach_port_t *names, int n)
{
    bool *seen = calloc((size_t)n, sizeof *seen);
    int got = 0, wrong = 0, twice = 0;
    for (int i = 0; i < n; i++) {
        struct notification m;
        if (!next_notification(&m)) {
            break;
        }
        got++;
        int at = -1;
        for (int k = 0; k < n && at < 0; k++) {
            at = names[k] == m.value ? k : -1;
        }
        if (m.head.msgh_id != id || at < 0) {
            wrong++;
        } else if (seen[at]) {
            twice++;
        } else {
            seen[at] = true;
        }
    }
    flood_report("", n, got, wrong, twice);
    free(seen);
}

/* A child task that makes N ports and sends us a send right to each (one
 * a message on BOOT, which is read as they come), then waits to be
 * killed.  Returns its pid; NAMES gets our names for the ports. */
static pid_t flood_receiver(mach_port_t boot, mach_port_t *names, int n)
{
    mach_port_t child_task;
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        mach_port_t parent, p;
        task_get_bootstrap_port(mach_task_self(), &parent);
        for (int i = 0; i < n; i++) {
            if (mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p) !=
                    KERN_SUCCESS ||
                test_send_port(parent, p, MACH_MSG_TYPE_MAKE_SEND, 1) != MACH_MSG_SUCCESS) {
                _exit(2);
            }
        }
        for (;;) {
            pause();
        }
    }
    CHECK(pid > 0);
    mach_msg_type_name_t type_name = 0;
    for (int i = 0; i < n; i++) {
        names[i] = MACH_PORT_NULL;
        CHECK_KR(test_receive_port(boot, 10000, &names[i], &type_name), MACH_MSG_SUCCESS);
    }
    CHECK_KR(mach_port_deallocate(self, child_task), KERN_SUCCESS);
    return pid;
}

/* Waits (up to 10 s) until every name of NAMES[0..N) is a dead name. */
static bool wait_all_dead(const mach_port_t *names, int n)
{
    for (int tries = 0; tries < 10000; tries++) {
        int dead = 0;
        for (int i = 0; i < n; i++) {
            mach_port_type_t type = 0;
            dead += mach_port_type(self, names[i], &type) == KERN_SUCCESS &&
                    (type & MACH_PORT_TYPE_DEAD_NAME);
        }
        if (dead == n) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

/* Dead-name requests on TEST_FLOOD_N ports whose receiver is killed at once,
 * the notify port not read meanwhile: every notification is kept until
 * there is room, none is lost.  A send-once notification made after
 * them comes after them. */
static void flood_dead_name(void)
{
    int fds_before = test_count_fds();
    mach_port_t boot = test_new_port(true);
    mach_port_t *names = calloc(TEST_FLOOD_N, sizeof *names);
    pid_t pid = flood_receiver(boot, names, TEST_FLOOD_N);
    for (int i = 0; i < TEST_FLOOD_N; i++) {
        CHECK_KR(request(names[i], MACH_NOTIFY_DEAD_NAME, 0, NULL), KERN_SUCCESS);
    }
    int filled = test_fill_port(notify_port);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(wait_all_dead(names, TEST_FLOOD_N));
    /* Every dead-name notification is made by now: this one is later. */
    mach_port_t once;
    mach_msg_type_name_t type_name;
    CHECK_KR(mach_port_extract_right(self, notify_port, MACH_MSG_TYPE_MAKE_SEND_ONCE, &once,
                                     &type_name),
             KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(self, once), KERN_SUCCESS);
    drain_fill(filled);
    expect_all(MACH_NOTIFY_DEAD_NAME, names, TEST_FLOOD_N);
    expect(MACH_NOTIFY_SEND_ONCE, 0);
    expect_nothing();
    for (int i = 0; i < TEST_FLOOD_N; i++) {
        CHECK(dead_refs(names[i]) == 2);
        CHECK_KR(mach_port_mod_refs(self, names[i], MACH_PORT_RIGHT_DEAD_NAME, -2),
                 KERN_SUCCESS);
    }
    CHECK_KR(mach_port_destroy(self, boot), KERN_SUCCESS);
    free(names);
    CHECK(test_count_fds() == fds_before);
}

/* No-senders requests on TEST_FLOOD_N ports whose last send rights a task
 * held that is killed: each notification comes. */
static void flood_no_senders(void)
{
    int fds_before = test_count_fds();
    mach_port_t boot = test_new_port(true);
    mach_port_t child_task;
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        mach_port_t parent, inbox, got;
        mach_msg_type_name_t t;
        task_get_bootstrap_port(mach_task_self(), &parent);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &inbox);
        test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1);
        for (int i = 0; i < TEST_FLOOD_N; i++) {
            if (test_receive_port(inbox, 10000, &got, &t) != MACH_MSG_SUCCESS) {
                _exit(2);
            }
        }
        test_send_port(parent, MACH_PORT_NULL, MACH_MSG_TYPE_COPY_SEND, 2);
        for (;;) {
            pause();
        }
    }
    mach_port_t inbox = MACH_PORT_NULL, none;
    mach_msg_type_name_t type_name;
    CHECK_KR(test_receive_port(boot, 10000, &inbox, &type_name), MACH_MSG_SUCCESS);
    mach_port_t *ports = calloc(TEST_FLOOD_N, sizeof *ports);
    for (int i = 0; i < TEST_FLOOD_N; i++) {
        ports[i] = test_new_port(false);
        CHECK_KR(test_send_port(inbox, ports[i], MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    }
    CHECK_KR(test_receive_port(boot, 10000, &none, &type_name), MACH_MSG_SUCCESS);
    for (int i = 0; i < TEST_FLOOD_N; i++) {
        CHECK_KR(request(ports[i], MACH_NOTIFY_NO_SENDERS, 0, NULL), KERN_SUCCESS);
    }
    expect_nothing();
    int filled = test_fill_port(notify_port);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    drain_fill(filled);
    /* Each says mscount 1 (the names are the receive rights'). */
    int got = 0, wrong = 0;
    for (int i = 0; i < TEST_FLOOD_N; i++) {
        struct notification m;
        if (!next_notification(&m)) {
            break;
        }
        got++;
        wrong += m.head.msgh_id != MACH_NOTIFY_NO_SENDERS || m.value != 1;
    }
    flood_report("no-senders ", TEST_FLOOD_N, got, wrong, -1);
    expect_nothing();
    /* Each request was used: none is left on any port. */
    int left = 0;
    for (int i = 0; i < TEST_FLOOD_N; i++) {
        mach_port_status_t st;
        CHECK_KR(mach_port_get_receive_status(self, ports[i], &st), KERN_SUCCESS);
        left += st.mps_nsrequest;
        CHECK_KR(mach_port_destroy(self, ports[i]), KERN_SUCCESS);
    }
    CHECK(left == 0);
    free(ports);
    CHECK_KR(mach_port_deallocate(self, inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(self, child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(self, boot), KERN_SUCCESS);
    CHECK(test_count_fds() == fds_before);
}

/* Port-destroyed requests on TEST_FLOOD_N ports destroyed one after another,
 * the notify port not read: each receive right comes back in its
 * notification with its queue, in the order the ports were destroyed. */
static void flood_port_destroyed(void)
{
    int fds_before = test_count_fds();
    enum { N = TEST_FLOOD_N / 2 }; /* each right in flight holds descriptors */
    mach_port_t *ports = calloc(N, sizeof *ports);
    for (int i = 0; i < N; i++) {
        ports[i] = test_new_port(false);
        mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0),
                               .msgh_remote_port = ports[i], .msgh_id = 1000 + i};
        CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
                 MACH_MSG_SUCCESS);
        CHECK_KR(request(ports[i], MACH_NOTIFY_PORT_DESTROYED, 0, NULL), KERN_SUCCESS);
    }
    int filled = test_fill_port(notify_port);
    for (int i = 0; i < N; i++) {
        CHECK_KR(mach_port_mod_refs(self, ports[i], MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
    }
    drain_fill(filled);
    int got = 0, wrong = 0;
    for (int i = 0; i < N; i++) {
        struct notification n;
        if (!next_notification(&n)) {
            break;
        }
        got++;
        mach_msg_header_t r;
        bool ok = n.head.msgh_id == MACH_NOTIFY_PORT_DESTROYED &&
                  mach_msg(&r, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, n.value, 0,
                           MACH_PORT_NULL) == MACH_MSG_SUCCESS &&
                  r.msgh_id == 1000 + i;
        wrong += !ok;
        if (n.head.msgh_id == MACH_NOTIFY_PORT_DESTROYED) {
            CHECK_KR(mach_port_mod_refs(self, n.value, MACH_PORT_RIGHT_RECEIVE, -1),
                     KERN_SUCCESS);
        }
    }
    flood_report("port-destroyed ", N, got, wrong, -1);
    expect_nothing();
    free(ports);
    CHECK(test_count_fds() == fds_before);
}

/* ---- machd's bounds, shared fairly between ports (run in an instance) ---- */

/* The bounds the instance's machd is given (HELL_MACHD_NOTIFY_MAX), and
 * each port's share of them: a sixteenth (hell_notify_lower_bounds). */
#define BUDGET_WAITING 1024
#define BUDGET_FDS 512
#define BUDGET_SHARE_WAITING (BUDGET_WAITING / 16)
#define BUDGET_SHARE_FDS (BUDGET_FDS / 16)
/* The hostile port is sent more than machd's whole bounds; the victim's
 * stays within its share. */
#define BUDGET_HOSTILE_ONCES (BUDGET_WAITING + 100)
#define BUDGET_VICTIM_ONCES (BUDGET_SHARE_WAITING - 4)
#define BUDGET_HOSTILE_ESCROWS (BUDGET_FDS / 2 + 50)
#define BUDGET_VICTIM_ESCROWS 6
#define BUDGET_WAIT_MS 10000
#define BUDGET_QUIET_MS 300

/* A task that takes N messages on an inbox it sends to PARENT and keeps
 * their reply rights (send-once rights), or with PD makes a port (with
 * a send right, so that machd escrows it) per message whose
 * port-destroyed request takes the reply right; then says so and waits
 * to be killed. */
static void budget_doomed_main(mach_port_t parent, int n, bool pd)
{
    mach_port_t inbox = test_new_port(true);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_MSG_SUCCESS);
    for (int i = 0; i < n; i++) {
        struct notification m;
        CHECK_KR(mach_msg(&m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, inbox,
                          BUDGET_WAIT_MS, MACH_PORT_NULL),
                 MACH_MSG_SUCCESS);
        CHECK(MACH_MSGH_BITS_REMOTE(m.head.msgh_bits) == MACH_MSG_TYPE_PORT_SEND_ONCE);
        mach_port_t previous = MACH_PORT_NULL;
        if (pd) {
            CHECK_KR(mach_port_request_notification(self, test_new_port(true),
                                                    MACH_NOTIFY_PORT_DESTROYED, 0,
                                                    m.head.msgh_remote_port,
                                                    MACH_MSG_TYPE_MOVE_SEND_ONCE, &previous),
                     KERN_SUCCESS);
        }
    }
    mach_msg_header_t done = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                              .msgh_remote_port = parent, .msgh_id = 2};
    CHECK_KR(mach_msg(&done, MACH_SEND_MSG, sizeof done, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    for (;;) {
        pause();
    }
}

/* Starts a task of the instance that holds N rights made from each of
 * NOTIFY[0..NPORTS) (receive rights of ours), as budget_doomed_main
 * says.  Returns its pid; *INBOX gets a send right to its inbox. */
static pid_t budget_doomed_start_many(const mach_port_t *notify, int nports, int n, bool pd,
                                      mach_port_t *inbox)
{
    mach_port_t boot = test_new_port(true), task = MACH_PORT_NULL;
    pid_t pid = hell_fork(boot, &task);
    if (pid == 0) {
        self = mach_task_self(); /* a task of its own */
        mach_port_t parent = MACH_PORT_NULL;
        task_get_bootstrap_port(self, &parent);
        budget_doomed_main(parent, nports * n, pd);
        _exit(1);
    }
    CHECK(pid > 0);
    CHECK_KR(mach_port_deallocate(self, task), KERN_SUCCESS);
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(boot, BUDGET_WAIT_MS, inbox, &type), MACH_MSG_SUCCESS);
    for (int i = 0; i < nports * n; i++) {
        mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND,
                                                           MACH_MSG_TYPE_MAKE_SEND_ONCE),
                               .msgh_remote_port = *inbox, .msgh_local_port = notify[i % nports],
                               .msgh_id = 1};
        CHECK_KR(mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
                 MACH_MSG_SUCCESS);
    }
    struct notification done;
    CHECK_KR(mach_msg(&done.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof done, boot,
                      BUDGET_WAIT_MS, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(done.head.msgh_id == 2);
    CHECK_KR(mach_port_destroy(self, boot), KERN_SUCCESS);
    return pid;
}

/* budget_doomed_start_many with the one port NOTIFY. */
static pid_t budget_doomed_start(mach_port_t notify, int n, bool pd, mach_port_t *inbox)
{
    return budget_doomed_start_many(&notify, 1, n, pd, inbox);
}

/* Kills the task PID, whose inbox is INBOX, and waits until machd has
 * dealt with its rights: machd destroys a dead task's ports (the inbox
 * dies) after it has sent, or kept, their notifications. */
static void budget_doomed_kill(pid_t pid, mach_port_t inbox)
{
    mach_port_t watch = test_new_port(false);
    mach_port_t previous = MACH_PORT_NULL;
    CHECK_KR(mach_port_request_notification(self, inbox, MACH_NOTIFY_DEAD_NAME, 0, watch,
                                            MACH_MSG_TYPE_MAKE_SEND_ONCE, &previous),
             KERN_SUCCESS);
    kill(pid, SIGKILL);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    struct notification n;
    CHECK_KR(mach_msg(&n.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof n, watch,
                      BUDGET_WAIT_MS, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(n.head.msgh_id == MACH_NOTIFY_DEAD_NAME);
    test_drop_dead_name(inbox);
    CHECK_KR(mach_port_destroy(self, watch), KERN_SUCCESS);
}

/* What came to a port once read. */
struct budget_got {
    int fills, once, destroyed, other;
};

/* Reads PORT until WANT messages have come, each waited for up to
 * BUDGET_WAIT_MS (machd sends what it kept as room appears), then for
 * BUDGET_QUIET_MS more (nothing more should come), and counts them by
 * kind.  A receive right that comes in a port-destroyed notification is
 * destroyed. */
static struct budget_got budget_read(mach_port_t port, int want)
{
    struct budget_got got = {0};
    for (int n = 0;; n++) {
        union {
            struct test_fill_msg f;
            mach_port_destroyed_notification_t pd;
            struct notification n;
        } r;
        if (mach_msg(&r.f.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, port,
                     n < want ? BUDGET_WAIT_MS : BUDGET_QUIET_MS,
                     MACH_PORT_NULL) != MACH_MSG_SUCCESS) {
            break;
        }
        switch (r.f.head.msgh_id) {
        case TEST_FILL_ID:
            got.fills++;
            break;
        case MACH_NOTIFY_SEND_ONCE:
            got.once++;
            break;
        case MACH_NOTIFY_PORT_DESTROYED:
            got.destroyed++;
            CHECK(r.pd.not_type.msgt_name == MACH_MSG_TYPE_PORT_RECEIVE);
            CHECK_KR(mach_port_destroy(self, r.pd.not_port), KERN_SUCCESS);
            break;
        default:
            got.other++;
        }
    }
    return got;
}

/* The descriptors machd, MACHD, holds once their number has stayed the
 * same for 100 ms (it closes what a dead task left, and its copies of
 * the ends of our ports as they die, a moment after). */
static int budget_machd_fds(pid_t machd)
{
    int n = test_count_fds_of(machd), same = 0;
    for (int ms = 0; same < 5 && ms < BUDGET_WAIT_MS; ms += 20) {
        usleep(20000);
        int now = test_count_fds_of(machd);
        same = now == n ? same + 1 : 0;
        n = now;
    }
    return n;
}

/* The first task of ours that dies holding a right leaves machd with
 * what it keeps for us from then on: done once before counting. */
static void budget_warm_up(void)
{
    mach_port_t port = test_new_port(false), inbox = MACH_PORT_NULL;
    pid_t pid = budget_doomed_start(port, 1, false, &inbox);
    budget_doomed_kill(pid, inbox);
    struct budget_got got = budget_read(port, 1);
    CHECK(got.once == 1 && got.fills + got.destroyed + got.other == 0);
    CHECK_KR(mach_port_destroy(self, port), KERN_SUCCESS);
}

/* Waits (up to BUDGET_WAIT_MS) until machd, MACHD, holds no more than
 * BEFORE descriptors (it closes its copies of our ports' ends as they
 * die, a moment after us); returns whether it came to that. */
static bool budget_machd_back_to(pid_t machd, int before)
{
    for (int ms = 0; ms < BUDGET_WAIT_MS; ms += 10) {
        if (test_count_fds_of(machd) <= before) {
            return true;
        }
        usleep(10000);
    }
    fprintf(stderr, "machd holds %d descriptors, %d before\n", test_count_fds_of(machd),
            before);
    return false;
}

/* Notifications made for a hostile port and for a victim's: a task that
 * holds HOSTILE_N rights made from the first (send-once rights, or with
 * PD port-destroyed requests), and one that holds VICTIM_N made from the
 * second, are killed while both ports are full (the hostile one is never
 * read; the victim's sees a burst).  Both ports are ours: machd charges a
 * port, not its holder.  Then each is read: *H and *V get what came
 * beside the fills, expecting HOSTILE_NOTES and VICTIM_NOTES
 * notifications.  Checks that machd holds no more descriptors once both
 * ports are gone than before. */
static void budget_flood(bool pd, int hostile_n, int victim_n, int hostile_notes,
                         int victim_notes, struct budget_got *h, struct budget_got *v)
{
    pid_t machd = getppid();
    int machd_before = budget_machd_fds(machd);
    mach_port_t hostile = test_new_port(false), victim = test_new_port(false);
    mach_port_t hostile_inbox = MACH_PORT_NULL, victim_inbox = MACH_PORT_NULL;
    pid_t doomed = budget_doomed_start(hostile, hostile_n, pd, &hostile_inbox);
    pid_t well = budget_doomed_start(victim, victim_n, pd, &victim_inbox);
    int hostile_filled = test_fill_port(hostile);
    int victim_filled = test_fill_port(victim);
    budget_doomed_kill(doomed, hostile_inbox);
    budget_doomed_kill(well, victim_inbox);
    /* (Each fill destroyed one right of ours: one more send-once
     * notification, from this task.) */
    *v = budget_read(victim, victim_filled + victim_notes);
    *h = budget_read(hostile, hostile_filled + hostile_notes);
    CHECK(v->fills == victim_filled && h->fills == hostile_filled);
    CHECK_KR(mach_port_destroy(self, hostile), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(self, victim), KERN_SUCCESS);
    CHECK(budget_machd_back_to(machd, machd_before));
}

/* Send-once rights: the hostile port is sent more notifications than
 * machd's whole bound, the victim's fewer than its share.  The victim
 * gets every one; the hostile port its share, the rest is lost (as past
 * the bound). */
static void budget_send_once(void)
{
    struct budget_got h, v;
    budget_flood(false, BUDGET_HOSTILE_ONCES, BUDGET_VICTIM_ONCES, BUDGET_SHARE_WAITING + 1,
                 BUDGET_VICTIM_ONCES + 1, &h, &v);
    if (v.once != BUDGET_VICTIM_ONCES + 1 || v.destroyed + v.other != 0) {
        fprintf(stderr, "victim: %d send-once notifications of %d, %d others\n", v.once,
                BUDGET_VICTIM_ONCES + 1, v.destroyed + v.other);
    }
    CHECK(v.once == BUDGET_VICTIM_ONCES + 1 && v.destroyed + v.other == 0);
    if (h.once != BUDGET_SHARE_WAITING + 1 || h.destroyed + h.other != 0) {
        fprintf(stderr, "hostile: %d send-once notifications, its share %d, %d others\n",
                h.once, BUDGET_SHARE_WAITING + 1, h.destroyed + h.other);
    }
    CHECK(h.once == BUDGET_SHARE_WAITING + 1 && h.destroyed + h.other == 0);
}

/* Port-destroyed requests, whose escrows machd keeps with their
 * descriptors: the hostile port is sent escrows holding more than
 * machd's bound on descriptors, the victim's a few.  The victim gets
 * every port; the hostile port what its share of descriptors holds
 * (each escrow holds some, beside the copy of the port's send end), then
 * send-once notifications up to its share of the count: each escrow not
 * kept leaves its port to be destroyed, which notifies the request's
 * right. */
static void budget_escrows(void)
{
    struct budget_got h, v;
    budget_flood(true, BUDGET_HOSTILE_ESCROWS, BUDGET_VICTIM_ESCROWS, BUDGET_SHARE_WAITING + 1,
                 BUDGET_VICTIM_ESCROWS + 1, &h, &v);
    if (v.destroyed != BUDGET_VICTIM_ESCROWS || v.once != 1 || v.other != 0) {
        fprintf(stderr, "victim: %d ports of %d, %d send-once, %d others\n", v.destroyed,
                BUDGET_VICTIM_ESCROWS, v.once, v.other);
    }
    CHECK(v.destroyed == BUDGET_VICTIM_ESCROWS && v.once == 1 && v.other == 0);
    if (h.destroyed == 0 || h.destroyed >= BUDGET_SHARE_FDS ||
        h.destroyed + h.once != BUDGET_SHARE_WAITING + 1 || h.other != 0) {
        fprintf(stderr, "hostile: %d ports, %d send-once, %d others\n", h.destroyed, h.once,
                h.other);
    }
    CHECK(h.destroyed > 0 && h.destroyed < BUDGET_SHARE_FDS &&
          h.destroyed + h.once == BUDGET_SHARE_WAITING + 1 && h.other == 0);
}

/* The bounds themselves, not a share: BUDGET_BOUND_PORTS ports, never
 * read while a killed task's send-once rights are notified, each sent
 * more than its share.  The first ports to come take their shares, up
 * to machd's bound; past it every notification is lost, whichever its
 * port (however little of its share it holds), and machd says so (main
 * checks its stderr).  Run twice: once the ports are read and the
 * backlogs empty, the bound is reported again. */
#define BUDGET_BOUND_PORTS (BUDGET_WAITING / BUDGET_SHARE_WAITING + 1)
static void budget_bounds(void)
{
    pid_t machd = getppid();
    int machd_before = budget_machd_fds(machd);
    mach_port_t ports[BUDGET_BOUND_PORTS], inbox = MACH_PORT_NULL;
    int filled[BUDGET_BOUND_PORTS];
    for (int i = 0; i < BUDGET_BOUND_PORTS; i++) {
        ports[i] = test_new_port(false);
    }
    pid_t doomed = budget_doomed_start_many(ports, BUDGET_BOUND_PORTS, BUDGET_SHARE_WAITING + 1,
                                            false, &inbox);
    for (int i = 0; i < BUDGET_BOUND_PORTS; i++) {
        filled[i] = test_fill_port(ports[i]);
    }
    budget_doomed_kill(doomed, inbox);
    int kept = 0, starved = 0;
    for (int i = 0; i < BUDGET_BOUND_PORTS; i++) {
        /* (Besides machd's, the one send-once notification of the fill.) */
        struct budget_got got = budget_read(ports[i], filled[i] + 1);
        CHECK(got.fills == filled[i] && got.destroyed + got.other == 0);
        CHECK(got.once >= 1 && got.once <= BUDGET_SHARE_WAITING + 1);
        kept += got.once - 1;
        starved += got.once - 1 < BUDGET_SHARE_WAITING;
        CHECK_KR(mach_port_destroy(self, ports[i]), KERN_SUCCESS);
    }
    if (kept != BUDGET_WAITING || starved == 0) {
        fprintf(stderr, "bounds: machd kept %d notifications (bound %d), %d ports short\n",
                kept, BUDGET_WAITING, starved);
    }
    CHECK(kept == BUDGET_WAITING && starved > 0);
    CHECK(budget_machd_back_to(machd, machd_before));
}

static int budget_main(void)
{
    self = mach_task_self();
    CHECK(getenv("HELL_INSTANCE") != NULL);
    budget_warm_up();
    budget_send_once();
    budget_escrows();
    budget_bounds();
    budget_bounds();
    return test_failures == 0 ? 0 : 1;
}

/* Runs the --budget part in an instance, whose machd's stderr (and the
 * task's) goes to a file meanwhile: returns how many times machd said
 * the bounds were reached, or -1 when the part failed.  The file is
 * copied to stderr after. */
static int budget_run_counting_reports(void)
{
    FILE *log = tmpfile();
    CHECK(log != NULL);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(fileno(log), 2) == 2);
    int status = test_rerun_in_instance("--budget");
    CHECK(dup2(saved, 2) == 2 && close(saved) == 0);
    rewind(log);
    char line[512];
    int reports = 0;
    while (fgets(line, sizeof line, log) != NULL) {
        fputs(line, stderr);
        reports += strstr(line, "notifications wait for ports that do not read them") != NULL;
    }
    fclose(log);
    return status == 0 ? reports : -1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--budget") == 0) {
        return budget_main();
    }
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
    flood_dead_name();
    flood_no_senders();
    flood_port_destroyed();
    /* The watchdog's epoll instance is the one descriptor kept. */
    CHECK(test_count_fds() == fds_before + 1);
    char bounds[32];
    snprintf(bounds, sizeof bounds, "%d,%d", BUDGET_WAITING, BUDGET_FDS);
    setenv("HELL_MACHD_NOTIFY_MAX", bounds, 1);
    /* budget_bounds reaches the bound twice, the backlogs emptied in
     * between: reported each time. */
    CHECK(budget_run_counting_reports() == 2);
    return test_done("notifications");
}
