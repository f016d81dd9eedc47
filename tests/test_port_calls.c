/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Every mach_port_* call libmach serves, with GNU Mach's results (order of
 * checks, error codes, user references): on our own task, then the same
 * calls on another task (a child started with hell_fork), whose name space
 * must change accordingly.
 */
#include <hell.h>
#include <mach/notify.h>

#include "test.h"

#define SELF mach_task_self()
/* Names of our own choosing (index << 8 | generation, far from the names
 * libmach hands out). */
#define NAME_A 0x00abcd00u
#define NAME_B 0x00abce00u
#define NAME_C 0x00abcf00u
#define NAME_UNKNOWN 0x00fedc00u
/* Names the parent makes in the child's space. */
#define CHILD_SEND 0x00c0de00u
#define CHILD_RECV 0x00c0df00u
#define CHILD_DEAD 0x00c0e000u

#ifdef __SANITIZE_ADDRESS__
#define ASAN 1
#else
#define ASAN 0
#endif
#define NO_NAME 0xdeadu /* what type_of and refs_of give on failure */
#define T_SR (MACH_PORT_TYPE_SEND | MACH_PORT_TYPE_RECEIVE)
#define TYPE(n) type_of(SELF, n)
#define REFS(n, right) refs_of(SELF, n, MACH_PORT_RIGHT_##right)
#define MOD(n, right, delta) mach_port_mod_refs(SELF, n, MACH_PORT_RIGHT_##right, delta)
#define ALLOC(t, right, n) mach_port_allocate(t, MACH_PORT_RIGHT_##right, n)
#define ALLOC_NAME(t, right, n) mach_port_allocate_name(t, MACH_PORT_RIGHT_##right, n)
#define INSERT(t, n, p, disp) mach_port_insert_right(t, n, p, MACH_MSG_TYPE_##disp)
#define EXTRACT(t, n, disp) mach_port_extract_right(t, n, MACH_MSG_TYPE_##disp, &poly, &pt)

static mach_port_type_t type_of(mach_port_t task, mach_port_t name)
{
    mach_port_type_t type = 0;
    return mach_port_type(task, name, &type) == KERN_SUCCESS ? type : NO_NAME;
}

static mach_port_urefs_t refs_of(mach_port_t task, mach_port_t name, mach_port_right_t right)
{
    mach_port_urefs_t refs = 0;
    return mach_port_get_refs(task, name, right, &refs) == KERN_SUCCESS ? refs : NO_NAME;
}

static mach_port_status_t status_of(mach_port_t name)
{
    mach_port_status_t st;
    memset(&st, 0xff, sizeof st);
    CHECK_KR(mach_port_get_receive_status(SELF, name, &st), KERN_SUCCESS);
    return st;
}

static mach_port_t new_receive(void)
{
    mach_port_t name = MACH_PORT_NULL;
    CHECK_KR(ALLOC(SELF, RECEIVE, &name), KERN_SUCCESS);
    return name;
}

/* Sends a header-only message of id ID to DEST (COPY_SEND). */
static mach_msg_return_t send_empty(mach_port_t dest, mach_msg_id_t id)
{
    mach_msg_header_t m = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_remote_port = dest, .msgh_id = id};
    return mach_msg(&m, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

/* Receives a message on RCV (waiting at most 10 s); keeps its header. */
static mach_msg_return_t receive_one(mach_port_t rcv, mach_msg_header_t *h)
{
    union {
        mach_msg_header_t h;
        char buf[256];
    } m = {0};
    mach_msg_return_t mr = mach_msg(&m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof m, rcv,
                                    10000, MACH_PORT_NULL);
    *h = m.h;
    return mr;
}

/* mach_port_names on TASK: checks the arrays and releases them; returns
 * how many of the N (name, type) pairs WANT it lists. */
static int names_match(mach_port_t task, int n, const mach_port_t want[][2])
{
    mach_port_name_array_t names = NULL;
    mach_port_type_array_t types = NULL;
    mach_msg_type_number_t ncount = 0, tcount = 0;
    int found = 0;
    CHECK_KR(mach_port_names(task, &names, &ncount, &types, &tcount), KERN_SUCCESS);
    CHECK(ncount == tcount);
    for (mach_msg_type_number_t i = 0; names != NULL && types != NULL && i < ncount; i++) {
        CHECK(MACH_PORT_VALID(names[i]));
        for (int j = 0; j < n; j++) {
            found += names[i] == want[j][0] && types[i] == want[j][1];
        }
    }
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)names, ncount * sizeof *names), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)types, tcount * sizeof *types), KERN_SUCCESS);
    return found;
}

static void test_allocate_names_type(void)
{
    mach_port_t r = new_receive(), d = MACH_PORT_NULL, x = MACH_PORT_NULL;
    CHECK(MACH_PORT_VALID(r) && TYPE(r) == MACH_PORT_TYPE_RECEIVE);
    CHECK_KR(ALLOC(SELF, DEAD_NAME, &d), KERN_SUCCESS);
    CHECK(MACH_PORT_VALID(d) && d != r && TYPE(d) == MACH_PORT_TYPE_DEAD_NAME);
    CHECK(REFS(d, DEAD_NAME) == 1);
    CHECK_KR(ALLOC(SELF, SEND, &x), KERN_INVALID_VALUE);
    CHECK_KR(ALLOC(SELF, SEND_ONCE, &x), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_allocate(SELF, 5, &x), KERN_INVALID_VALUE);

    /* allocate_name: the name is checked before the right. */
    CHECK_KR(ALLOC_NAME(SELF, RECEIVE, MACH_PORT_NULL), KERN_INVALID_VALUE);
    CHECK_KR(ALLOC_NAME(SELF, RECEIVE, MACH_PORT_DEAD), KERN_INVALID_VALUE);
    CHECK_KR(ALLOC_NAME(SELF, SEND, MACH_PORT_DEAD), KERN_INVALID_VALUE);
    CHECK_KR(ALLOC_NAME(SELF, SEND, NAME_A), KERN_INVALID_VALUE);
    CHECK_KR(ALLOC_NAME(SELF, RECEIVE, NAME_A), KERN_SUCCESS);
    CHECK(TYPE(NAME_A) == MACH_PORT_TYPE_RECEIVE);
    CHECK_KR(ALLOC_NAME(SELF, DEAD_NAME, NAME_B), KERN_SUCCESS);
    CHECK(TYPE(NAME_B) == MACH_PORT_TYPE_DEAD_NAME && REFS(NAME_B, DEAD_NAME) == 1);
    CHECK_KR(ALLOC_NAME(SELF, RECEIVE, NAME_A), KERN_NAME_EXISTS);
    CHECK_KR(ALLOC_NAME(SELF, DEAD_NAME, r), KERN_NAME_EXISTS);

    const mach_port_t want[4][2] = {{r, MACH_PORT_TYPE_RECEIVE},
                                    {d, MACH_PORT_TYPE_DEAD_NAME},
                                    {NAME_A, MACH_PORT_TYPE_RECEIVE},
                                    {NAME_B, MACH_PORT_TYPE_DEAD_NAME}};
    CHECK(names_match(SELF, 4, want) == 4);

    mach_port_type_t type;
    CHECK_KR(mach_port_type(SELF, NAME_UNKNOWN, &type), KERN_INVALID_NAME);
    CHECK_KR(mach_port_type(SELF, MACH_PORT_NULL, &type), KERN_INVALID_NAME);
    CHECK_KR(mach_port_type(SELF, MACH_PORT_DEAD, &type), KERN_INVALID_NAME);

    CHECK_KR(mach_port_destroy(SELF, r), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, d), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, NAME_A), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, NAME_B), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, NAME_A), KERN_INVALID_NAME);
    CHECK(TYPE(r) == NO_NAME && TYPE(NAME_B) == NO_NAME && names_match(SELF, 4, want) == 0);
}

static void test_rename(void)
{
    mach_port_t r = new_receive(), other = new_receive(), poly = MACH_PORT_NULL;
    mach_msg_type_name_t pt = 0;
    CHECK_KR(INSERT(SELF, r, r, MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(mach_port_rename(SELF, r, MACH_PORT_NULL), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_rename(SELF, r, MACH_PORT_DEAD), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_rename(SELF, r, other), KERN_NAME_EXISTS);
    CHECK_KR(mach_port_rename(SELF, r, r), KERN_NAME_EXISTS);
    CHECK_KR(mach_port_rename(SELF, NAME_UNKNOWN, NAME_C), KERN_INVALID_NAME);
    CHECK_KR(mach_port_rename(SELF, r, NAME_C), KERN_SUCCESS);
    CHECK(TYPE(r) == NO_NAME && TYPE(NAME_C) == T_SR && REFS(NAME_C, SEND) == 1);
    /* The port follows the new name: new rights merge into it. */
    CHECK_KR(INSERT(SELF, NAME_C, NAME_C, MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(EXTRACT(SELF, NAME_C, COPY_SEND), KERN_SUCCESS);
    CHECK(poly == NAME_C && pt == MACH_MSG_TYPE_PORT_SEND && REFS(NAME_C, SEND) == 3);
    mach_msg_header_t h = {0};
    CHECK_KR(send_empty(NAME_C, 7), MACH_MSG_SUCCESS);
    CHECK_KR(receive_one(NAME_C, &h), MACH_MSG_SUCCESS);
    CHECK(h.msgh_id == 7 && h.msgh_local_port == NAME_C);
    CHECK_KR(mach_port_destroy(SELF, NAME_C), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, other), KERN_SUCCESS);
}

static void test_refs(void)
{
    mach_port_t r = new_receive(), d = MACH_PORT_NULL;
    mach_port_urefs_t refs;
    CHECK(REFS(r, RECEIVE) == 1 && REFS(r, SEND) == 0 && REFS(r, SEND_ONCE) == 0);
    CHECK(REFS(r, DEAD_NAME) == 0 && REFS(r, PORT_SET) == 0);
    /* get_refs and mod_refs check the right before the name. */
    CHECK_KR(mach_port_get_refs(SELF, r, 5, &refs), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_get_refs(SELF, NAME_UNKNOWN, 5, &refs), KERN_INVALID_VALUE);
    CHECK(REFS(NAME_UNKNOWN, SEND) == NO_NAME); /* KERN_INVALID_NAME */
    CHECK_KR(mach_port_mod_refs(SELF, r, 5, 0), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_mod_refs(SELF, NAME_UNKNOWN, 5, 0), KERN_INVALID_VALUE);
    CHECK_KR(MOD(NAME_UNKNOWN, SEND, 1), KERN_INVALID_NAME);
    /* The receive right: deltas 0 and -1 only. */
    CHECK_KR(MOD(r, RECEIVE, 1), KERN_INVALID_VALUE);
    CHECK_KR(MOD(r, RECEIVE, -2), KERN_INVALID_VALUE);
    CHECK_KR(MOD(r, RECEIVE, 0), KERN_SUCCESS);
    CHECK_KR(MOD(r, SEND, 1), KERN_INVALID_RIGHT);
    CHECK_KR(MOD(r, DEAD_NAME, 1), KERN_INVALID_RIGHT);
    CHECK_KR(MOD(r, SEND_ONCE, -1), KERN_INVALID_RIGHT);

    /* Send urefs: no negative result, at most 65534. */
    CHECK_KR(INSERT(SELF, r, r, MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(MOD(r, SEND, -2), KERN_INVALID_VALUE);
    CHECK_KR(MOD(r, SEND, 65533), KERN_SUCCESS);
    CHECK(REFS(r, SEND) == 65534);
    CHECK_KR(MOD(r, SEND, 1), KERN_UREFS_OVERFLOW);
    CHECK_KR(INSERT(SELF, r, r, MAKE_SEND), KERN_UREFS_OVERFLOW);
    CHECK(REFS(r, SEND) == 65534);
    CHECK_KR(MOD(r, SEND, -65531), KERN_SUCCESS);

    /* deallocate: one send uref at a time, never the receive right. */
    CHECK_KR(mach_port_deallocate(SELF, r), KERN_SUCCESS);
    CHECK(REFS(r, SEND) == 2);
    CHECK_KR(MOD(r, SEND, -2), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, r), KERN_INVALID_RIGHT);
    CHECK(TYPE(r) == MACH_PORT_TYPE_RECEIVE);
    CHECK_KR(mach_port_deallocate(SELF, NAME_UNKNOWN), KERN_INVALID_NAME);

    /* Receive -1 with send urefs under the name leaves a dead name. */
    CHECK_KR(INSERT(SELF, r, r, MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(MOD(r, SEND, 2), KERN_SUCCESS);
    CHECK_KR(MOD(r, RECEIVE, -1), KERN_SUCCESS);
    CHECK(TYPE(r) == MACH_PORT_TYPE_DEAD_NAME && REFS(r, DEAD_NAME) == 3 && REFS(r, SEND) == 0);
    CHECK_KR(MOD(r, DEAD_NAME, -4), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_deallocate(SELF, r), KERN_SUCCESS);
    CHECK(REFS(r, DEAD_NAME) == 2);
    CHECK_KR(MOD(r, DEAD_NAME, -2), KERN_SUCCESS);
    CHECK(TYPE(r) == NO_NAME);
    /* Receive -1 alone frees the name. */
    mach_port_t r2 = new_receive();
    CHECK_KR(MOD(r2, RECEIVE, -1), KERN_SUCCESS);
    CHECK(TYPE(r2) == NO_NAME);

    /* Dead names: up to 65535 urefs, deallocate drops one. */
    CHECK_KR(ALLOC(SELF, DEAD_NAME, &d), KERN_SUCCESS);
    CHECK_KR(MOD(d, SEND, 1), KERN_INVALID_RIGHT);
    CHECK_KR(MOD(d, DEAD_NAME, 65534), KERN_SUCCESS);
    CHECK_KR(MOD(d, DEAD_NAME, 1), KERN_UREFS_OVERFLOW);
    CHECK_KR(MOD(d, DEAD_NAME, -65533), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, d), KERN_SUCCESS);
    CHECK(REFS(d, DEAD_NAME) == 1);
    CHECK_KR(mach_port_deallocate(SELF, d), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, d), KERN_INVALID_NAME);
}

static void test_insert_extract_status(void)
{
    mach_port_t r = new_receive(), r2 = new_receive(), r3 = new_receive();
    mach_port_t so = MACH_PORT_NULL, poly = MACH_PORT_NULL, d = MACH_PORT_NULL;
    mach_msg_type_name_t pt = 0;
    mach_msg_header_t h = {0};
    mach_port_status_t st = status_of(r);
    CHECK(st.mps_pset == MACH_PORT_NULL && st.mps_seqno == 0 && st.mps_mscount == 0);
    CHECK(st.mps_qlimit == 5 && st.mps_msgcount == 0 && st.mps_sorights == 0);
    CHECK(!st.mps_srights && !st.mps_pdrequest && !st.mps_nsrequest);

    CHECK_KR(INSERT(SELF, r, r, MAKE_SEND), KERN_SUCCESS);
    CHECK(TYPE(r) == T_SR && REFS(r, SEND) == 1);
    st = status_of(r);
    CHECK(st.mps_mscount == 1 && st.mps_srights);
    CHECK_KR(INSERT(SELF, r, r, COPY_SEND), KERN_SUCCESS);
    CHECK(REFS(r, SEND) == 2 && status_of(r).mps_mscount == 1);
    /* Named r already: not under another name, fresh or taken. */
    CHECK_KR(INSERT(SELF, NAME_A, r, MAKE_SEND), KERN_RIGHT_EXISTS);
    CHECK_KR(INSERT(SELF, r2, r, COPY_SEND), KERN_RIGHT_EXISTS);
    CHECK(TYPE(NAME_A) == NO_NAME && TYPE(r2) == MACH_PORT_TYPE_RECEIVE && REFS(r, SEND) == 2);
    /* r3's receive right names its port: RIGHT_EXISTS before NAME_EXISTS.
     * A failing call destroys the right it made (mscount still counts). */
    CHECK_KR(INSERT(SELF, r, r3, MAKE_SEND), KERN_RIGHT_EXISTS);
    CHECK_KR(INSERT(SELF, MACH_PORT_NULL, r3, MAKE_SEND), KERN_INVALID_VALUE);
    CHECK_KR(INSERT(SELF, MACH_PORT_DEAD, r3, MAKE_SEND), KERN_INVALID_VALUE);
    st = status_of(r3);
    CHECK(TYPE(r) == T_SR && TYPE(r3) == MACH_PORT_TYPE_RECEIVE);
    CHECK(st.mps_mscount == 3 && !st.mps_srights);
    CHECK_KR(mach_port_destroy(SELF, r3), KERN_SUCCESS);

    /* Send-once rights never merge: a name of their own.  A failing call
     * destroys its right, which sends a send-once notification. */
    CHECK_KR(INSERT(SELF, r, r, MAKE_SEND_ONCE), KERN_NAME_EXISTS);
    CHECK_KR(INSERT(SELF, NAME_A, r, MAKE_SEND_ONCE), KERN_SUCCESS);
    CHECK(TYPE(NAME_A) == MACH_PORT_TYPE_SEND_ONCE && TYPE(r) == T_SR);
    CHECK(REFS(NAME_A, SEND_ONCE) == 1 && REFS(NAME_A, SEND) == 0);
    CHECK_KR(MOD(NAME_A, SEND_ONCE, 1), KERN_INVALID_VALUE);
    CHECK_KR(receive_one(r, &h), MACH_MSG_SUCCESS);
    CHECK(h.msgh_id == MACH_NOTIFY_SEND_ONCE && h.msgh_local_port == r && h.msgh_seqno == 0);
    CHECK(status_of(r).mps_sorights == 1);
    CHECK_KR(mach_port_deallocate(SELF, NAME_A), KERN_SUCCESS); /* another notification */
    CHECK(TYPE(NAME_A) == NO_NAME);
    CHECK_KR(receive_one(r, &h), MACH_MSG_SUCCESS);
    CHECK(h.msgh_id == MACH_NOTIFY_SEND_ONCE && h.msgh_seqno == 1);
    CHECK(status_of(r).mps_sorights == 0);

    /* extract_right: every disposition; rights come back to this space. */
    CHECK_KR(mach_port_extract_right(SELF, r2, 5, &poly, &pt), KERN_INVALID_VALUE);
    CHECK_KR(EXTRACT(SELF, r2, PORT_NAME), KERN_INVALID_VALUE);
    CHECK_KR(EXTRACT(SELF, NAME_UNKNOWN, COPY_SEND), KERN_INVALID_NAME);
    CHECK_KR(EXTRACT(SELF, r2, COPY_SEND), KERN_INVALID_RIGHT);
    CHECK_KR(EXTRACT(SELF, r2, MAKE_SEND), KERN_SUCCESS);
    CHECK(poly == r2 && pt == MACH_MSG_TYPE_PORT_SEND && TYPE(r2) == T_SR);
    CHECK(REFS(r2, SEND) == 1 && status_of(r2).mps_mscount == 1);
    CHECK_KR(EXTRACT(SELF, r2, COPY_SEND), KERN_SUCCESS);
    CHECK(poly == r2 && pt == MACH_MSG_TYPE_PORT_SEND && REFS(r2, SEND) == 2);
    CHECK_KR(EXTRACT(SELF, r2, MOVE_SEND), KERN_SUCCESS);
    CHECK(poly == r2 && pt == MACH_MSG_TYPE_PORT_SEND && REFS(r2, SEND) == 2);
    CHECK_KR(mach_port_extract_right(SELF, r2, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &pt),
             KERN_SUCCESS);
    CHECK(MACH_PORT_VALID(so) && so != r2 && pt == MACH_MSG_TYPE_PORT_SEND_ONCE);
    CHECK(TYPE(so) == MACH_PORT_TYPE_SEND_ONCE && status_of(r2).mps_sorights == 1);
    CHECK_KR(EXTRACT(SELF, so, COPY_SEND), KERN_INVALID_RIGHT);
    CHECK_KR(EXTRACT(SELF, so, MOVE_SEND_ONCE), KERN_SUCCESS);
    CHECK(pt == MACH_MSG_TYPE_PORT_SEND_ONCE && TYPE(poly) == MACH_PORT_TYPE_SEND_ONCE);
    CHECK_KR(MOD(poly, SEND_ONCE, -1), KERN_SUCCESS);
    /* The receive right moves out and back into its send right's entry. */
    CHECK_KR(EXTRACT(SELF, r2, MOVE_RECEIVE), KERN_SUCCESS);
    CHECK(poly == r2 && pt == MACH_MSG_TYPE_PORT_RECEIVE && TYPE(r2) == T_SR);
    /* A dead name extracted with COPY_SEND gives MACH_PORT_DEAD. */
    CHECK_KR(ALLOC(SELF, DEAD_NAME, &d), KERN_SUCCESS);
    CHECK_KR(EXTRACT(SELF, d, COPY_SEND), KERN_SUCCESS);
    CHECK(poly == MACH_PORT_DEAD && pt == MACH_MSG_TYPE_PORT_SEND);

    /* The receive status setters. */
    CHECK_KR(mach_port_set_qlimit(SELF, r, MACH_PORT_QLIMIT_MAX + 1), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_set_qlimit(SELF, NAME_UNKNOWN, 17), KERN_INVALID_VALUE);
    CHECK_KR(mach_port_set_qlimit(SELF, NAME_UNKNOWN, 3), KERN_INVALID_NAME);
    for (mach_port_msgcount_t q = 0; q <= MACH_PORT_QLIMIT_MAX; q += 8) {
        CHECK_KR(mach_port_set_qlimit(SELF, r, q), KERN_SUCCESS);
        CHECK(status_of(r).mps_qlimit == q);
    }
    CHECK_KR(mach_port_set_mscount(SELF, r, 77), KERN_SUCCESS);
    CHECK_KR(mach_port_set_mscount(SELF, NAME_UNKNOWN, 1), KERN_INVALID_NAME);
    CHECK_KR(mach_port_set_seqno(SELF, r, 42), KERN_SUCCESS);
    CHECK_KR(mach_port_set_seqno(SELF, NAME_UNKNOWN, 1), KERN_INVALID_NAME);
    st = status_of(r);
    CHECK(st.mps_mscount == 77 && st.mps_seqno == 42 && st.mps_qlimit == 16);
    CHECK_KR(send_empty(r, 1234), MACH_MSG_SUCCESS);
    CHECK_KR(receive_one(r, &h), MACH_MSG_SUCCESS);
    CHECK(h.msgh_id == 1234 && h.msgh_seqno == 42 && h.msgh_local_port == r);
    CHECK(status_of(r).mps_seqno == 43);
    /* ... only on receive rights. */
    mach_port_status_t dummy;
    CHECK_KR(mach_port_get_receive_status(SELF, NAME_UNKNOWN, &dummy), KERN_INVALID_NAME);
    CHECK_KR(mach_port_get_receive_status(SELF, d, &dummy), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_set_qlimit(SELF, d, 1), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_set_mscount(SELF, d, 1), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_set_seqno(SELF, d, 1), KERN_INVALID_RIGHT);
    CHECK_KR(mach_port_destroy(SELF, d), KERN_SUCCESS);

    /* No send right left anywhere: srights goes false. */
    CHECK_KR(MOD(r2, SEND, -2), KERN_SUCCESS);
    CHECK(TYPE(r2) == MACH_PORT_TYPE_RECEIVE && !status_of(r2).mps_srights);
    CHECK_KR(mach_port_destroy(SELF, r), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, r2), KERN_SUCCESS);
}

/* Names have a generation part: a released name comes back different. */
static void test_generation(void)
{
    mach_port_t a = new_receive(), c = MACH_PORT_NULL;
    CHECK_KR(MOD(a, RECEIVE, -1), KERN_SUCCESS);
    mach_port_t b = new_receive();
    CHECK(MACH_PORT_VALID(b) && b != a && TYPE(a) == NO_NAME);
    CHECK_KR(mach_port_deallocate(SELF, a), KERN_INVALID_NAME);
    CHECK_KR(mach_port_destroy(SELF, b), KERN_SUCCESS);
    CHECK_KR(ALLOC(SELF, DEAD_NAME, &c), KERN_SUCCESS);
    CHECK(c != a && c != b && REFS(b, RECEIVE) == NO_NAME && REFS(a, DEAD_NAME) == NO_NAME);
    CHECK_KR(mach_port_deallocate(SELF, c), KERN_SUCCESS);
}

/* The child: sends the parent a send right to its port (its name in the
 * id), waits for the parent's message (sent once the parent has changed
 * our space; its id is the name of the receive right the parent took),
 * then checks its space. */
static void child_main(void)
{
    test_failures = 0; /* a copy of the parent's count */
    mach_port_t boot = MACH_PORT_NULL, port = new_receive();
    mach_msg_header_t h = {0};
    CHECK_KR(task_get_bootstrap_port(SELF, &boot), KERN_SUCCESS);
    CHECK_KR(test_send_port(boot, port, MACH_MSG_TYPE_MAKE_SEND, (mach_msg_id_t)port),
             MACH_MSG_SUCCESS);
    CHECK_KR(receive_one(port, &h), MACH_MSG_SUCCESS);
    CHECK(TYPE(CHILD_SEND) == MACH_PORT_TYPE_SEND && REFS(CHILD_SEND, SEND) == 2);
    CHECK(TYPE(CHILD_RECV) == MACH_PORT_TYPE_RECEIVE && status_of(CHILD_RECV).mps_qlimit == 5);
    CHECK(TYPE(CHILD_DEAD) == NO_NAME && TYPE((mach_port_t)h.msgh_id) == NO_NAME);
    mach_port_status_t st = status_of(port);
    CHECK(TYPE(port) == MACH_PORT_TYPE_RECEIVE && st.mps_mscount == 2 && st.mps_srights);
    /* The send right the parent inserted works: tell it we are done. */
    CHECK_KR(send_empty(CHILD_SEND, 99), MACH_MSG_SUCCESS);
    _exit(test_failures ? 1 : 0);
}

static void test_other_task(void)
{
    mach_port_t reply = new_receive(), task = MACH_PORT_NULL, poly = MACH_PORT_NULL;
    mach_msg_type_name_t pt = 0;
    CHECK_KR(INSERT(SELF, reply, reply, MAKE_SEND), KERN_SUCCESS);
    pid_t pid = hell_fork(reply, &task);
    if (pid == 0) {
        child_main();
    }
    CHECK(pid > 0 && MACH_PORT_VALID(task));
    struct test_port_msg first = {0};
    CHECK_KR(mach_msg(&first.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof first, reply,
                      10000, 0),
             MACH_MSG_SUCCESS);
    mach_port_t cport = first.p.name;                      /* our send right */
    mach_port_t child_name = (mach_port_t)first.h.msgh_id; /* its receive right */
    CHECK(first.t.msgt_name == MACH_MSG_TYPE_PORT_SEND && MACH_PORT_VALID(cport));
    int fds_setup = test_count_fds();

    /* allocate, allocate_name, type, get_refs, destroy on its space. */
    mach_port_t cr = MACH_PORT_NULL;
    CHECK_KR(ALLOC(task, SEND, &cr), KERN_INVALID_VALUE);
    CHECK_KR(ALLOC(task, RECEIVE, &cr), KERN_SUCCESS);
    CHECK(type_of(task, cr) == MACH_PORT_TYPE_RECEIVE);
    CHECK(refs_of(task, cr, MACH_PORT_RIGHT_RECEIVE) == 1);
    CHECK_KR(ALLOC_NAME(task, RECEIVE, CHILD_RECV), KERN_SUCCESS);
    CHECK_KR(ALLOC_NAME(task, DEAD_NAME, CHILD_DEAD), KERN_SUCCESS);
    CHECK_KR(ALLOC_NAME(task, DEAD_NAME, CHILD_DEAD), KERN_NAME_EXISTS);
    CHECK(type_of(task, CHILD_DEAD) == MACH_PORT_TYPE_DEAD_NAME);
    CHECK_KR(mach_port_destroy(task, CHILD_DEAD), KERN_SUCCESS);
    CHECK_KR(mach_port_type(task, CHILD_DEAD, &(mach_port_type_t){0}), KERN_INVALID_NAME);
    CHECK(type_of(task, child_name) == MACH_PORT_TYPE_RECEIVE);
    CHECK(refs_of(task, child_name, 5) == NO_NAME);

    /* insert_right: a send right to a port of ours it does not know, under
     * a name we choose.  It holds reply (its bootstrap port) already. */
    mach_port_t pp = new_receive();
    CHECK_KR(INSERT(task, MACH_PORT_NULL, pp, MAKE_SEND), KERN_INVALID_VALUE);
    CHECK_KR(INSERT(task, CHILD_RECV, pp, MAKE_SEND), KERN_NAME_EXISTS);
    CHECK_KR(INSERT(task, CHILD_SEND, reply, MAKE_SEND), KERN_RIGHT_EXISTS);
    CHECK_KR(INSERT(task, CHILD_SEND, pp, MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(INSERT(task, CHILD_SEND, pp, MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(INSERT(task, CHILD_DEAD, pp, MAKE_SEND), KERN_RIGHT_EXISTS);
    CHECK(type_of(task, CHILD_SEND) == MACH_PORT_TYPE_SEND);
    CHECK(refs_of(task, CHILD_SEND, MACH_PORT_RIGHT_SEND) == 2);

    /* extract_right: a send right to its port merges with the one it sent
     * us; its receive right cr moves here. */
    CHECK_KR(mach_port_extract_right(task, child_name, 0, &poly, &pt), KERN_INVALID_VALUE);
    CHECK_KR(EXTRACT(task, NAME_UNKNOWN, MAKE_SEND), KERN_INVALID_NAME);
    CHECK_KR(EXTRACT(task, child_name, MAKE_SEND), KERN_SUCCESS);
    CHECK(poly == cport && pt == MACH_MSG_TYPE_PORT_SEND && REFS(cport, SEND) == 2);
    CHECK_KR(EXTRACT(task, cr, MOVE_RECEIVE), KERN_SUCCESS);
    CHECK(pt == MACH_MSG_TYPE_PORT_RECEIVE && TYPE(poly) == MACH_PORT_TYPE_RECEIVE);
    CHECK(type_of(task, cr) == NO_NAME);
    CHECK_KR(mach_port_destroy(SELF, poly), KERN_SUCCESS);

    const mach_port_t want[3][2] = {{CHILD_SEND, MACH_PORT_TYPE_SEND},
                                    {CHILD_RECV, MACH_PORT_TYPE_RECEIVE},
                                    {child_name, MACH_PORT_TYPE_RECEIVE}};
    CHECK(names_match(task, 3, want) == 3);

    /* Wake the child (moving one of our send urefs), wait for its word. */
    mach_msg_header_t go = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND, 0),
                            .msgh_remote_port = cport, .msgh_id = (mach_msg_id_t)cr};
    CHECK_KR(mach_msg(&go, MACH_SEND_MSG, sizeof go, 0, 0, 0, 0), MACH_MSG_SUCCESS);
    mach_msg_header_t done = {0};
    CHECK_KR(receive_one(pp, &done), MACH_MSG_SUCCESS);
    CHECK(done.msgh_id == 99);
    test_wait_ok(pid);

    /* The child is gone: our send right is a dead name with 1 uref. */
    CHECK(REFS(cport, DEAD_NAME) == 1 && TYPE(cport) == MACH_PORT_TYPE_DEAD_NAME);
    CHECK_KR(mach_port_deallocate(SELF, cport), KERN_SUCCESS);
    CHECK(TYPE(cport) == NO_NAME);
    CHECK_KR(mach_port_destroy(SELF, pp), KERN_SUCCESS);
    CHECK(test_count_fds() <= fds_setup); /* hell_fork's descriptors allowed */
    CHECK_KR(mach_port_deallocate(SELF, task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, reply), KERN_SUCCESS);
}

int main(void)
{
    /* Warm up: the first calls make the task port, the MIG reply port and
     * what out-of-line replies need. */
    CHECK(names_match(SELF, 0, NULL) == 0);
    int fds_start = test_count_fds();
    long maps_start = test_count_maps();

    test_allocate_names_type();
    test_rename();
    test_refs();
    test_insert_extract_status();
    test_generation();
    CHECK(test_count_fds() == fds_start);
    CHECK(test_count_maps() == maps_start || ASAN); /* ASan maps memory as it goes */

    test_other_task();
    return test_done("port_calls");
}
