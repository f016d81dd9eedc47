/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Port sets, as GNU Mach has them: the set right and its references,
 * mach_port_move_member and mach_port_get_set_status, receiving on a set
 * (per-member names and sequence numbers, MACH_RCV_IN_SET, MACH_RCV_LARGE),
 * members leaving by death or by moving to another task, the death of the
 * set, and a pool of threads sharing one set the way libports serves.
 */
#include <hell.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "test.h"

#define SELF mach_task_self()
#define NAME_SET 0x00abd000u     /* a name of our own choosing */
#define NAME_UNKNOWN 0x00fedc00u /* a name nobody allocated */
#define NO_SET 0xdeadu           /* what pset_of gives on failure */

/* A new RIGHT (receive right or port set), with a send right if WITH_SEND. */
static mach_port_t alloc(mach_port_right_t right, int with_send)
{
    mach_port_t p = MACH_PORT_NULL;
    CHECK_KR(mach_port_allocate(SELF, right, &p), KERN_SUCCESS);
    if (with_send) {
        CHECK_KR(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    }
    return p;
}
#define new_port(with_send) alloc(MACH_PORT_RIGHT_RECEIVE, with_send)
#define new_set() alloc(MACH_PORT_RIGHT_PORT_SET, 0)

/* Destroys every name given. */
#define DESTROY(...)                                                           \
    do {                                                                       \
        const mach_port_t d_[] = {__VA_ARGS__};                                \
        for (size_t i_ = 0; i_ < sizeof d_ / sizeof d_[0]; i_++) {             \
            CHECK_KR(mach_port_destroy(SELF, d_[i_]), KERN_SUCCESS);           \
        }                                                                      \
    } while (0)

static mach_port_type_t type_of(mach_port_t name)
{
    mach_port_type_t t = 0;
    return mach_port_type(SELF, name, &t) == KERN_SUCCESS ? t : 0;
}

static mach_port_urefs_t refs_of(mach_port_t name, mach_port_right_t right)
{
    mach_port_urefs_t n = 0;
    return mach_port_get_refs(SELF, name, right, &n) == KERN_SUCCESS ? n : ~0u;
}

/* The set a receive right is in (mps_pset), or NO_SET if the call fails. */
static mach_port_t pset_of(mach_port_t name)
{
    mach_port_status_t st = {0};
    return mach_port_get_receive_status(SELF, name, &st) == KERN_SUCCESS ? st.mps_pset : NO_SET;
}

/* Whether mach_port_get_set_status lists exactly the N names of WANT. */
static int set_is(mach_port_t set, int n, const mach_port_t *want)
{
    mach_port_name_array_t names = NULL;
    mach_msg_type_number_t count = 0;
    kern_return_t kr = mach_port_get_set_status(SELF, set, &names, &count);
    CHECK_KR(kr, KERN_SUCCESS);
    int found = 0; /* the names in WANT are distinct */
    for (mach_msg_type_number_t j = 0; kr == KERN_SUCCESS && j < count; j++) {
        for (int i = 0; i < n; i++) {
            found += names[j] == want[i];
        }
    }
    if (names != NULL) {
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)names, count * sizeof *names), KERN_SUCCESS);
    }
    return kr == KERN_SUCCESS && count == (mach_msg_type_number_t)n && found == n;
}

#define SET_IS(set, ...)                                                       \
    set_is(set, sizeof((mach_port_t[]){__VA_ARGS__}) / sizeof(mach_port_t),    \
           (mach_port_t[]){__VA_ARGS__})
#define SET_EMPTY(set) set_is(set, 0, NULL)

typedef union {
    mach_msg_header_t h;
    struct {
        mach_msg_header_t h;
        mach_msg_type_t t;
        uint32_t v, pad;
    } w;
    unsigned char buf[1024];
} msgbuf_t;

/* Sends a message of id ID carrying the word V (and SIZE bytes in all,
 * at least 48) to DEST (COPY_SEND), waiting at most 10 s on a full queue. */
static mach_msg_return_t send_msg(mach_port_t dest, mach_msg_id_t id, uint32_t v, size_t size)
{
    msgbuf_t m;
    memset(&m, 0, sizeof m);
    m.w.h = (mach_msg_header_t){.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                .msgh_remote_port = dest, .msgh_id = id};
    m.w.t = (mach_msg_type_t){.msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
                              .msgt_number = (unsigned)(size - 40) / 4, .msgt_inline = TRUE};
    m.w.v = v;
    return mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, (mach_msg_size_t)size, 0,
                    MACH_PORT_NULL, 10000, MACH_PORT_NULL);
}

static mach_msg_return_t rcv(msgbuf_t *m, mach_port_t name, mach_msg_size_t size,
                             mach_msg_option_t option, mach_msg_timeout_t timeout)
{
    memset(m, 0, sizeof *m);
    return mach_msg(&m->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT | option, 0, size, name, timeout,
                    MACH_PORT_NULL);
}

/* Receives on NAME the message ID sent to MEMBER, with sequence number SEQ. */
#define CHECK_RCV(name, member, id, seq)                                       \
    do {                                                                       \
        msgbuf_t r_;                                                           \
        CHECK_KR(rcv(&r_, name, sizeof r_, 0, 5000), MACH_MSG_SUCCESS);        \
        CHECK(r_.h.msgh_id == (id) && r_.w.v == (uint32_t)(id) * 3u);          \
        CHECK(r_.h.msgh_local_port == (member) && r_.h.msgh_seqno == (seq));   \
        CHECK(r_.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));   \
    } while (0)
#define SEND(dest, id) CHECK_KR(send_msg(dest, id, (uint32_t)(id) * 3u, 48), MACH_MSG_SUCCESS)
#define CHECK_EMPTY(name)                                                      \
    CHECK_KR(rcv(&(msgbuf_t){0}, name, sizeof(msgbuf_t), 0, 0), MACH_RCV_TIMED_OUT)

static void test_set_right(void)
{
    mach_port_t s = new_set(), r = new_port(0);
    CHECK(MACH_PORT_VALID(s) && type_of(s) == MACH_PORT_TYPE_PORT_SET);
    CHECK(refs_of(s, MACH_PORT_RIGHT_PORT_SET) == 1 && refs_of(s, MACH_PORT_RIGHT_RECEIVE) == 0);
    CHECK(refs_of(s, MACH_PORT_RIGHT_SEND) == 0 && refs_of(r, MACH_PORT_RIGHT_PORT_SET) == 0);
    CHECK(SET_EMPTY(s));
    CHECK_KR(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, 1), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, -2), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, 0), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_RECEIVE, -1), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_SEND, 1), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_mod_refs(SELF, r, MACH_PORT_RIGHT_PORT_SET, -1), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_deallocate(SELF, s), KERN_INVALID_RIGHT);
    CHECK(type_of(s) == MACH_PORT_TYPE_PORT_SET);
    CHECK_KR(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, -1), KERN_SUCCESS);
    CHECK(type_of(s) == 0);

    CHECK_KR(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_PORT_SET, NAME_SET), KERN_SUCCESS);
    CHECK(type_of(NAME_SET) == MACH_PORT_TYPE_PORT_SET && SET_EMPTY(NAME_SET));
    CHECK_KR(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_PORT_SET, NAME_SET), KERN_NAME_EXISTS);
    CHECK_KR(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_PORT_SET, r), KERN_NAME_EXISTS);

    mach_port_name_array_t names = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(mach_port_get_set_status(SELF, r, &names, &n), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_get_set_status(SELF, NAME_UNKNOWN, &names, &n), KERN_INVALID_NAME);
    DESTROY(NAME_SET, r);
    CHECK(type_of(NAME_SET) == 0);
}

static void test_move_member(void)
{
    mach_port_t s1 = new_set(), s2 = new_set(), a = new_port(0), b = new_port(0);
    CHECK(pset_of(a) == MACH_PORT_NULL);
    /* The member is checked first: a receive right; then after: a set. */
    CHECK_KR(mach_port_move_member(SELF, NAME_UNKNOWN, s1), KERN_INVALID_NAME);
    CHECK_KR(mach_port_move_member(SELF, SELF, s1), KERN_INVALID_RIGHT); /* a send right */
    CHECK_KR(mach_port_move_member(SELF, SELF, NAME_UNKNOWN), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_move_member(SELF, s2, s1), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_move_member(SELF, a, NAME_UNKNOWN), KERN_INVALID_NAME);
    CHECK_KR(mach_port_move_member(SELF, a, b), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_move_member(SELF, a, MACH_PORT_NULL), KERN_NOT_IN_SET);
    CHECK(pset_of(a) == MACH_PORT_NULL && SET_EMPTY(s1));

    CHECK_KR(mach_port_move_member(SELF, a, s1), KERN_SUCCESS);
    CHECK(pset_of(a) == s1 && SET_IS(s1, a));
    CHECK_KR(mach_port_move_member(SELF, a, s1), KERN_SUCCESS); /* already there */
    CHECK_KR(mach_port_move_member(SELF, b, s1), KERN_SUCCESS);
    CHECK(pset_of(b) == s1 && SET_IS(s1, a, b) && SET_EMPTY(s2));
    /* Moving between sets. */
    CHECK_KR(mach_port_move_member(SELF, a, s2), KERN_SUCCESS);
    CHECK(pset_of(a) == s2 && SET_IS(s1, b) && SET_IS(s2, a));
    /* Removing. */
    CHECK_KR(mach_port_move_member(SELF, a, MACH_PORT_NULL), KERN_SUCCESS);
    CHECK(pset_of(a) == MACH_PORT_NULL && SET_EMPTY(s2) && SET_IS(s1, b));
    CHECK_KR(mach_port_move_member(SELF, a, MACH_PORT_NULL), KERN_NOT_IN_SET);
    DESTROY(s1, s2, a, b);
}

static void test_receive_on_set(void)
{
    mach_port_t s = new_set(), a = new_port(1), b = new_port(1), e = new_set();
    msgbuf_t r;
    SEND(a, 1); /* queued before a joins: it moves to the set */
    CHECK_KR(mach_port_move_member(SELF, a, s), KERN_SUCCESS);
    CHECK_KR(mach_port_move_member(SELF, b, s), KERN_SUCCESS);
    SEND(b, 2);
    SEND(a, 3);
    SEND(b, 4);
    CHECK_KR(rcv(&r, a, sizeof r, 0, 0), MACH_RCV_IN_SET);
    CHECK_KR(rcv(&r, b, sizeof r, 0, 1000), MACH_RCV_IN_SET);
    /* One queue for the set, in arrival order; seqno counted per member. */
    CHECK_RCV(s, a, 1, 0);
    CHECK_RCV(s, b, 2, 0);
    CHECK_RCV(s, a, 3, 1);
    CHECK_RCV(s, b, 4, 1);
    CHECK_EMPTY(s);
    /* An empty set is a valid receive name. */
    CHECK_EMPTY(e);
    CHECK_KR(rcv(&r, e, sizeof r, 0, 50), MACH_RCV_TIMED_OUT);
    /* A member leaving the set takes its queued messages along. */
    SEND(a, 5);
    CHECK_KR(mach_port_move_member(SELF, a, MACH_PORT_NULL), KERN_SUCCESS);
    CHECK_EMPTY(s);
    CHECK_RCV(a, a, 5, 2);
    mach_port_status_t st = {0};
    CHECK_KR(mach_port_get_receive_status(SELF, b, &st), KERN_SUCCESS);
    CHECK(st.mps_pset == s && st.mps_seqno == 2 && st.mps_msgcount == 0);
    /* A set destroyed by mach_port_destroy leaves b and its queue usable. */
    SEND(b, 6);
    DESTROY(s);
    CHECK(pset_of(b) == MACH_PORT_NULL);
    CHECK_RCV(b, b, 6, 2);
    DESTROY(a, b, e);
}

static void test_deaths(void)
{
    mach_port_t s = new_set(), a = new_port(1), b = new_port(1);
    CHECK_KR(mach_port_move_member(SELF, a, s), KERN_SUCCESS);
    CHECK_KR(mach_port_move_member(SELF, b, s), KERN_SUCCESS);
    SEND(a, 10);
    /* A destroyed member leaves the set, its messages with it. */
    CHECK_KR(mach_port_mod_refs(SELF, a, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
    CHECK(type_of(a) == MACH_PORT_TYPE_DEAD_NAME && SET_IS(s, b));
    CHECK_EMPTY(s);
    /* A destroyed set leaves its members usable, with their messages. */
    SEND(b, 11);
    CHECK_KR(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, -1), KERN_SUCCESS);
    CHECK(type_of(s) == 0 && pset_of(b) == MACH_PORT_NULL);
    CHECK_RCV(b, b, 11, 0);
    CHECK_KR(mach_port_move_member(SELF, b, MACH_PORT_NULL), KERN_NOT_IN_SET);
    DESTROY(a, b);
}

/* The child's side of test_move_to_child: gets the receive right of a
 * member with two queued messages, then a third sent after the move. */
static void move_child(void)
{
    test_failures = 0;
    mach_port_t boot = MACH_PORT_NULL, mine = new_port(0), moved = MACH_PORT_NULL;
    mach_msg_type_name_t type = 0;
    CHECK_KR(task_get_bootstrap_port(SELF, &boot), KERN_SUCCESS);
    CHECK_KR(test_send_port(boot, mine, MACH_MSG_TYPE_MAKE_SEND, 60), MACH_MSG_SUCCESS);
    CHECK_KR(test_receive_port(mine, 10000, &moved, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_RECEIVE && type_of(moved) == MACH_PORT_TYPE_RECEIVE);
    CHECK(pset_of(moved) == MACH_PORT_NULL);
    /* The sequence numbers start again at 0 with the new receiver. */
    for (unsigned i = 0; i < 3; i++) {
        CHECK_RCV(moved, moved, 21 + (int)i, i);
    }
    CHECK_EMPTY(moved);
    exit(test_failures ? 1 : 0);
}

static void test_move_to_child(void)
{
    mach_port_t boot = new_port(1), s = new_set(), m = new_port(1), other = new_port(1);
    mach_port_t child_task = MACH_PORT_NULL, child_port = MACH_PORT_NULL;
    CHECK_KR(mach_port_move_member(SELF, m, s), KERN_SUCCESS);
    CHECK_KR(mach_port_move_member(SELF, other, s), KERN_SUCCESS);
    for (int i = 0; i < 3; i++) {
        SEND(m, 20 + i);
    }
    CHECK_RCV(s, m, 20, 0);
    fflush(NULL);
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        move_child();
    }
    CHECK(pid > 0);
    mach_msg_type_name_t type = 0;
    CHECK_KR(test_receive_port(boot, 10000, &child_port, &type), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(child_port, m, MACH_MSG_TYPE_MOVE_RECEIVE, 61), MACH_MSG_SUCCESS);
    /* m left the set with its queue; our send right reaches the child. */
    CHECK(type_of(m) == MACH_PORT_TYPE_SEND && SET_IS(s, other));
    CHECK_EMPTY(s);
    SEND(m, 23);
    if (pid > 0) {
        test_wait_ok(pid);
    }
    DESTROY(boot, s, m, other, child_port, child_task);
}

static void test_rcv_large(void)
{
    mach_port_t s = new_set(), m = new_port(1);
    msgbuf_t r;
    CHECK_KR(mach_port_move_member(SELF, m, s), KERN_SUCCESS);
    CHECK_KR(send_msg(m, 30, 90, 512), MACH_MSG_SUCCESS);
    /* Too large with MACH_RCV_LARGE: the size is reported, the message stays. */
    CHECK_KR(rcv(&r, s, 64, MACH_RCV_LARGE, 0), MACH_RCV_TOO_LARGE);
    CHECK(r.h.msgh_size == 512);
    CHECK_KR(rcv(&r, s, 511, MACH_RCV_LARGE, 0), MACH_RCV_TOO_LARGE);
    CHECK_KR(rcv(&r, s, 512, MACH_RCV_LARGE, 0), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 30 && r.h.msgh_size == 512 && r.h.msgh_local_port == m);
    CHECK(r.w.v == 90 && r.h.msgh_seqno == 0);
    CHECK_EMPTY(s);
    DESTROY(s, m);
}

/* A libports-style pool: receivers loop on one set until 2 s pass idle. */
#define NMSG 3000
#define NMEMBERS 3
#define NRECV 4
#define NSEND 3
static mach_port_t pool_set, pool_ports[NMEMBERS];
static atomic_uchar pool_seen[NMSG], pool_seqno[NMEMBERS][NMSG / NMEMBERS];
static atomic_int pool_got, pool_unique, pool_bad, pool_send_err;

static void *pool_receiver(void *arg)
{
    msgbuf_t *m = malloc(sizeof *m);
    mach_msg_return_t mr;
    while ((mr = rcv(m, pool_set, sizeof *m, 0, 2000)) == MACH_MSG_SUCCESS) {
        int id = m->h.msgh_id, member = id % NMEMBERS;
        mach_port_seqno_t seq = m->h.msgh_seqno;
        if (id < 0 || id >= NMSG || m->w.v != (uint32_t)id * 3u ||
            m->h.msgh_local_port != pool_ports[member] || seq >= NMSG / NMEMBERS ||
            atomic_exchange(&pool_seqno[member][seq], 1)) {
            atomic_fetch_add(&pool_bad, 1);
            continue;
        }
        atomic_fetch_add(&pool_unique, !atomic_exchange(&pool_seen[id], 1));
        atomic_fetch_add(&pool_got, 1);
    }
    atomic_fetch_add(&pool_bad, mr != MACH_RCV_TIMED_OUT);
    free(m);
    return arg;
}

static void *pool_sender(void *arg)
{
    int first = (int)(intptr_t)arg * (NMSG / NSEND);
    for (int id = first; id < first + NMSG / NSEND; id++) {
        mach_msg_return_t mr = send_msg(pool_ports[id % NMEMBERS], id, (uint32_t)id * 3u, 48);
        atomic_fetch_add(&pool_send_err, mr != MACH_MSG_SUCCESS);
    }
    return arg;
}

static void test_thread_pool(void)
{
    pool_set = new_set();
    int ready = MACH_PORT_VALID(pool_set);
    for (int i = 0; i < NMEMBERS; i++) {
        pool_ports[i] = new_port(1);
        kern_return_t kr = mach_port_move_member(SELF, pool_ports[i], pool_set);
        CHECK_KR(kr, KERN_SUCCESS);
        ready &= kr == KERN_SUCCESS;
    }
    /* Without the set, senders would block on full queues: skip. */
    if (ready) {
        pthread_t th[NRECV + NSEND];
        for (int i = 0; i < NRECV + NSEND; i++) {
            CHECK(pthread_create(&th[i], NULL, i < NRECV ? pool_receiver : pool_sender,
                                 (void *)(intptr_t)(i - NRECV)) == 0);
        }
        for (int i = 0; i < NRECV + NSEND; i++) {
            CHECK(pthread_join(th[i], NULL) == 0);
        }
        /* Each id once: none lost, none twice, nothing unexpected. */
        CHECK(pool_unique == NMSG && pool_got == NMSG);
        CHECK(pool_send_err == 0 && pool_bad == 0);
        CHECK_EMPTY(pool_set);
    }
    CHECK(SET_IS(pool_set, pool_ports[0], pool_ports[1], pool_ports[2]));
    DESTROY(pool_ports[0], pool_ports[1], pool_ports[2]);
    CHECK(SET_EMPTY(pool_set));
    DESTROY(pool_set);
}

int main(void)
{
    /* Set-up: the task port and this thread's MIG reply port exist, and
     * the watchdog runs (started by a sender waiting on a full queue, as
     * the pool's senders may). */
    mach_port_t full = new_port(1);
    for (unsigned i = 0; i <= MACH_PORT_QLIMIT_DEFAULT; i++) {
        (void)mach_msg(&(mach_msg_header_t){.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                            .msgh_remote_port = full,
                                            .msgh_size = sizeof(mach_msg_header_t)},
                       MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(mach_msg_header_t), 0,
                       MACH_PORT_NULL, 1, MACH_PORT_NULL);
    }
    mach_port_destroy(SELF, full);
    int fds = test_count_fds();
    test_set_right();
    test_move_member();
    test_receive_on_set();
    test_deaths();
    test_move_to_child();
    test_rcv_large();
    test_thread_pool();
    CHECK(test_count_fds() == fds);
    return test_done("port_sets");
}
