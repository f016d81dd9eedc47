/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rules of mach_msg itself, as GNU Mach applies them: send sizes, the
 * header checks and their order, the received header, body parsing, every
 * inline disposition, receive errors and timeouts, too-large messages,
 * out-of-line data, a receive right (with its queue) moving to another
 * task, and the fresh name space after a plain fork().
 */
#include <hell.h>
#include <stdint.h>
#include <time.h>

#include "test.h"

#define BOGUS ((mach_port_t)0x7ffe0001) /* a name nobody allocated */
#define SELF mach_task_self()
#define PAGES 3

/* pm: a port descriptor with up to two slots; wm: one 32-bit item (8
 * bytes with padding); om: one out-of-line item. */
typedef union {
    mach_msg_header_t h;
    struct {
        mach_msg_header_t h;
        mach_msg_type_t t;
        mach_port_name_inlined_t p[2];
    } pm;
    struct {
        mach_msg_header_t h;
        mach_msg_type_t t;
        uint32_t v, pad;
    } wm;
    struct {
        mach_msg_header_t h;
        mach_msg_type_t t;
        vm_offset_t addr;
    } om;
    unsigned char buf[512];
} msgbuf_t;

static mach_port_t new_port(int with_send)
{
    mach_port_t p = MACH_PORT_NULL;
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
    if (with_send) {
        CHECK_KR(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    }
    return p;
}

static mach_port_t dead_name(void)
{
    mach_port_t d = MACH_PORT_NULL;
    CHECK_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
    return d;
}

/* User references NAME holds for RIGHT, or ~0 if the call fails. */
static mach_port_urefs_t refs(mach_port_t name, mach_port_right_t right)
{
    mach_port_urefs_t n = 0;
    return mach_port_get_refs(SELF, name, right, &n) == KERN_SUCCESS ? n : ~0u;
}

/* NAME's type, or 0 if it names nothing. */
static mach_port_type_t ptype(mach_port_t name)
{
    mach_port_type_t t = 0;
    return mach_port_type(SELF, name, &t) == KERN_SUCCESS ? t : 0;
}

/* Destroys the non-null names among A, B and C. */
static void destroy(mach_port_t a, mach_port_t b, mach_port_t c)
{
    const mach_port_t names[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        if (names[i] != MACH_PORT_NULL) {
            CHECK_KR(mach_port_destroy(SELF, names[i]), KERN_SUCCESS);
        }
    }
}

static mach_msg_return_t send_hdr(mach_msg_bits_t bits, mach_port_t remote, mach_port_t local,
                                  mach_msg_id_t id)
{
    mach_msg_header_t h = {.msgh_bits = bits, .msgh_remote_port = remote,
                           .msgh_local_port = local, .msgh_id = id};
    return mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

/* Receives on PORT into M (SIZE bytes) waiting at most TIMEOUT ms. */
static mach_msg_return_t rcv(msgbuf_t *m, mach_port_t port, mach_msg_size_t size,
                             mach_msg_option_t extra, mach_msg_timeout_t timeout)
{
    return mach_msg(&m->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT | extra, 0, size, port, timeout,
                    MACH_PORT_NULL);
}

/* A complex message to DEST (COPY_SEND) with one port descriptor. */
static void port_msg(msgbuf_t *m, mach_port_t dest, mach_msg_type_name_t disp,
                     mach_port_t name, mach_msg_id_t id)
{
    memset(m, 0, sizeof *m);
    m->h = (mach_msg_header_t){
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
        .msgh_remote_port = dest, .msgh_id = id};
    m->pm.t = (mach_msg_type_t){.msgt_name = (unsigned char)disp, .msgt_size = 64,
                                .msgt_number = 1, .msgt_inline = TRUE};
    m->pm.p[0].name = name;
}

static mach_msg_return_t send_buf(msgbuf_t *m, mach_msg_size_t size)
{
    return mach_msg(&m->h, MACH_SEND_MSG, size, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

#define CHECK_EMPTY(port)                                                                  \
    do {                                                                                   \
        msgbuf_t e_;                                                                       \
        CHECK_KR(rcv(&e_, (port), sizeof e_, 0, 0), MACH_RCV_TIMED_OUT);                   \
    } while (0)

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_send_size(void)
{
    mach_port_t p = new_port(1);
    msgbuf_t m, r;
    static const mach_msg_size_t bad[] = {0, 8, 24, 31, 33, 36, 44};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&m, 0, sizeof m);
        m.h = (mach_msg_header_t){.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                  .msgh_size = 48, .msgh_remote_port = p};
        CHECK_KR(send_buf(&m, bad[i]), MACH_SEND_MSG_TOO_SMALL);
    }
    CHECK_EMPTY(p);
    /* The receiver sees send_size, whatever msgh_size said. */
    static const mach_msg_size_t sizes[][2] = {{32, 0}, {48, 1000}, {56, 16}};
    for (size_t i = 0; i < 3; i++) {
        memset(&m, 0x5a, sizeof m);
        m.h = (mach_msg_header_t){.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                  .msgh_size = sizes[i][1], .msgh_remote_port = p,
                                  .msgh_id = (mach_msg_id_t)i};
        CHECK_KR(send_buf(&m, sizes[i][0]), MACH_MSG_SUCCESS);
        memset(&r, 0xee, sizeof r);
        CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_size == sizes[i][0] && r.h.msgh_id == (mach_msg_id_t)i);
        CHECK(memcmp(r.buf + 32, m.buf + 32, sizes[i][0] - 32) == 0);
        CHECK(r.buf[sizes[i][0]] == 0xee); /* nothing written past msgh_size */
    }
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

static void test_header(void)
{
    mach_port_t p = new_port(1), q = new_port(0), d = dead_name();
    mach_port_urefs_t self_refs = refs(SELF, MACH_PORT_RIGHT_SEND);
    const mach_msg_bits_t cs = MACH_MSG_TYPE_COPY_SEND, ms = MACH_MSG_TYPE_MAKE_SEND,
                          mso = MACH_MSG_TYPE_MAKE_SEND_ONCE, mv = MACH_MSG_TYPE_MOVE_SEND,
                          mvo = MACH_MSG_TYPE_MOVE_SEND_ONCE, mr = MACH_MSG_TYPE_MOVE_RECEIVE;

    /* The remote disposition must be a send disposition. */
    CHECK_KR(send_hdr(MACH_MSGH_BITS(0, 0), p, 0, 1), MACH_SEND_INVALID_HEADER);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(mr, 0), q, 0, 1), MACH_SEND_INVALID_HEADER);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(22, 0), p, 0, 1), MACH_SEND_INVALID_HEADER);
    /* Local disposition 0 needs a null local port; others must be sends. */
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, 0), p, q, 1), MACH_SEND_INVALID_HEADER);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, mr), p, q, 1), MACH_SEND_INVALID_HEADER);
    /* Destination names. */
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, 0), BOGUS, 0, 1), MACH_SEND_INVALID_DEST);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, 0), MACH_PORT_NULL, 0, 1), MACH_SEND_INVALID_DEST);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, 0), d, 0, 1), MACH_SEND_INVALID_DEST);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(mv, 0), d, 0, 1), MACH_SEND_INVALID_DEST);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, 0), q, 0, 1), MACH_SEND_INVALID_DEST);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(mvo, 0), p, 0, 1), MACH_SEND_INVALID_DEST);
    /* Reply names, and the reply check before the dest right check. */
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, mso), p, BOGUS, 1), MACH_SEND_INVALID_REPLY);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, mso), p, SELF, 1), MACH_SEND_INVALID_REPLY);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, cs), p, q, 1), MACH_SEND_INVALID_REPLY);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, mso), q, BOGUS, 1), MACH_SEND_INVALID_REPLY);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(mv, mso), p, BOGUS, 1), MACH_SEND_INVALID_REPLY);
    /* Nothing was consumed or queued. */
    CHECK(ptype(p) == (MACH_PORT_TYPE_RECEIVE | MACH_PORT_TYPE_SEND));
    CHECK(refs(p, MACH_PORT_RIGHT_SEND) == 1 && refs(q, MACH_PORT_RIGHT_SEND) == 0);
    CHECK(refs(d, MACH_PORT_RIGHT_DEAD_NAME) == 1);
    CHECK(refs(SELF, MACH_PORT_RIGHT_SEND) == self_refs);
    CHECK_EMPTY(p);
    CHECK_EMPTY(q);

    /* A dead reply is legal and arrives dead; a null one keeps its type. */
    msgbuf_t r;
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, cs), p, d, 2), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND, MACH_MSG_TYPE_PORT_SEND));
    CHECK(r.h.msgh_remote_port == MACH_PORT_DEAD && refs(d, MACH_PORT_RIGHT_DEAD_NAME) == 1);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, mso), p, MACH_PORT_NULL, 3), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == 0x1112 && r.h.msgh_remote_port == MACH_PORT_NULL);

    /* MAKE_SEND and MAKE_SEND_ONCE of one's own receive right as dest. */
    CHECK_KR(send_hdr(MACH_MSGH_BITS(ms, 0), q, 0, 4), MACH_MSG_SUCCESS);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(mso, 0), q, 0, 5), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, q, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));
    CHECK(r.h.msgh_local_port == q && r.h.msgh_id == 4);
    CHECK_KR(rcv(&r, q, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
    CHECK(r.h.msgh_local_port == q && r.h.msgh_id == 5);
    CHECK(ptype(q) == MACH_PORT_TYPE_RECEIVE);

    destroy(p, q, d);
}

static void test_received_header(void)
{
    mach_port_t p = new_port(1), q = new_port(0);
    msgbuf_t r;
    const mach_msg_bits_t cs = MACH_MSG_TYPE_COPY_SEND, mso = MACH_MSG_TYPE_MAKE_SEND_ONCE;
    CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, mso), p, q, 1234), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    /* (PORT_SEND_ONCE, PORT_SEND): swapped and converted. */
    CHECK(r.h.msgh_bits == 0x1112 && r.h.msgh_size == 32);
    CHECK(r.h.msgh_local_port == p && r.h.msgh_id == 1234 && r.h.msgh_seqno == 0);
    mach_port_t so = r.h.msgh_remote_port;
    CHECK(MACH_PORT_VALID(so) && so != q && so != p);
    CHECK(ptype(so) == MACH_PORT_TYPE_SEND_ONCE && refs(so, MACH_PORT_RIGHT_SEND_ONCE) == 1);
    /* Reply through the send-once right. */
    CHECK_KR(send_hdr(MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0), so, 0, 1334),
             MACH_MSG_SUCCESS);
    CHECK_KR(mach_port_type(SELF, so, &(mach_port_type_t){0}), KERN_INVALID_NAME);
    CHECK_KR(rcv(&r, q, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
    CHECK(r.h.msgh_remote_port == MACH_PORT_NULL && r.h.msgh_local_port == q);
    CHECK(r.h.msgh_id == 1334 && r.h.msgh_seqno == 0);
    /* Sequence numbers count per port: 0 was the first message. */
    for (int i = 1; i < 3; i++) {
        CHECK_KR(send_hdr(MACH_MSGH_BITS(cs, 0), p, 0, 10 + i), MACH_MSG_SUCCESS);
    }
    for (int i = 1; i < 3; i++) {
        CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_id == 10 + i && r.h.msgh_seqno == (mach_port_seqno_t)i);
    }
    destroy(p, q, MACH_PORT_NULL);
}

static void test_body(void)
{
    mach_port_t p = new_port(1), x = new_port(1), d = dead_name();
    msgbuf_t m, r;

    port_msg(&m, p, MACH_MSG_TYPE_COPY_SEND, x, 1);
    m.pm.t.msgt_size = 32;
    CHECK_KR(send_buf(&m, 48), MACH_SEND_INVALID_TYPE);
    port_msg(&m, p, MACH_MSG_TYPE_COPY_SEND, x, 1);
    m.pm.t.msgt_number = 2; /* 16 bytes of names, 8 in the message */
    CHECK_KR(send_buf(&m, 48), MACH_SEND_MSG_TOO_SMALL);
    port_msg(&m, p, MACH_MSG_TYPE_COPY_SEND, x, 1);
    CHECK_KR(send_buf(&m, 40), MACH_SEND_MSG_TOO_SMALL);
    port_msg(&m, p, MACH_MSG_TYPE_COPY_SEND, BOGUS, 1);
    CHECK_KR(send_buf(&m, 48), MACH_SEND_INVALID_RIGHT);
    port_msg(&m, p, MACH_MSG_TYPE_MOVE_RECEIVE, SELF, 1);
    CHECK_KR(send_buf(&m, 48), MACH_SEND_INVALID_RIGHT);
    CHECK(refs(p, MACH_PORT_RIGHT_SEND) == 1 && refs(x, MACH_PORT_RIGHT_SEND) == 1);
    /* After a body error the message is destroyed: a moved dest is gone. */
    CHECK_KR(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
    port_msg(&m, p, MACH_MSG_TYPE_COPY_SEND, BOGUS, 1);
    m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
    CHECK_KR(send_buf(&m, 48), MACH_SEND_INVALID_RIGHT);
    CHECK(refs(p, MACH_PORT_RIGHT_SEND) == 1);
    CHECK_EMPTY(p);

    /* NULL and DEAD pass unchanged; a dead name arrives dead. */
    port_msg(&m, p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 2);
    m.pm.t.msgt_number = 2;
    m.pm.p[1].name = MACH_PORT_DEAD;
    CHECK_KR(send_buf(&m, 56), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_size == 56 && r.pm.t.msgt_name == MACH_MSG_TYPE_PORT_SEND);
    CHECK(r.pm.t.msgt_size == 64 && r.pm.t.msgt_number == 2);
    CHECK(r.pm.p[0].name == MACH_PORT_NULL && r.pm.p[1].name == MACH_PORT_DEAD);
    port_msg(&m, p, MACH_MSG_TYPE_COPY_SEND, d, 3);
    CHECK_KR(send_buf(&m, 48), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.pm.p[0].name == MACH_PORT_DEAD && refs(d, MACH_PORT_RIGHT_DEAD_NAME) == 1);

    /* MACH_MSG_TYPE_PORT_NAME is a plain 32-bit integer. */
    memset(&m, 0, sizeof m);
    m.wm.h = (mach_msg_header_t){
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
        .msgh_remote_port = p, .msgh_id = 4};
    m.wm.t = (mach_msg_type_t){.msgt_name = MACH_MSG_TYPE_PORT_NAME, .msgt_size = 32,
                               .msgt_number = 1, .msgt_inline = TRUE};
    m.wm.v = BOGUS;
    CHECK_KR(send_buf(&m, sizeof m.wm), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.wm.t.msgt_name == MACH_MSG_TYPE_PORT_NAME && r.wm.v == BOGUS);
    /* COMPLEX with nothing complex in the body: the kernel clears it. */
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));

    /* Without COMPLEX, a port descriptor is plain data. */
    port_msg(&m, p, MACH_MSG_TYPE_MOVE_SEND, BOGUS, 5);
    m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
    CHECK_KR(send_buf(&m, 48), MACH_MSG_SUCCESS);
    port_msg(&m, p, MACH_MSG_TYPE_MOVE_SEND, x, 6);
    m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
    CHECK_KR(send_buf(&m, 48), MACH_MSG_SUCCESS);
    CHECK(refs(x, MACH_PORT_RIGHT_SEND) == 1);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));
    CHECK(r.pm.t.msgt_name == MACH_MSG_TYPE_MOVE_SEND && r.pm.p[0].name == BOGUS);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.pm.t.msgt_name == MACH_MSG_TYPE_MOVE_SEND && r.pm.p[0].name == x);
    CHECK(refs(x, MACH_PORT_RIGHT_SEND) == 1);

    destroy(p, x, d);
}

/* Sends NAME with DISP to BOX and receives it; returns the received name. */
static mach_port_t carry(mach_port_t box, mach_port_t name, mach_msg_type_name_t disp,
                         mach_msg_type_name_t want)
{
    msgbuf_t m, r;
    port_msg(&m, box, disp, name, disp);
    CHECK_KR(send_buf(&m, 48), MACH_MSG_SUCCESS);
    memset(&r, 0, sizeof r);
    CHECK_KR(rcv(&r, box, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_bits == (MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND) | MACH_MSGH_BITS_COMPLEX));
    CHECK(r.h.msgh_local_port == box && r.h.msgh_id == (mach_msg_id_t)disp);
    CHECK(r.pm.t.msgt_name == want && r.pm.t.msgt_size == 64 && r.pm.t.msgt_number == 1);
    return r.pm.p[0].name;
}

static void test_dispositions(void)
{
    mach_port_t box = new_port(1), a = new_port(0), b = new_port(1), c = new_port(0), n;
    msgbuf_t r;

    n = carry(box, a, MACH_MSG_TYPE_MOVE_RECEIVE, MACH_MSG_TYPE_PORT_RECEIVE);
    CHECK(MACH_PORT_VALID(n) && ptype(n) == MACH_PORT_TYPE_RECEIVE);
    CHECK(refs(n, MACH_PORT_RIGHT_RECEIVE) == 1 && (n == a || ptype(a) == 0));
    CHECK_KR(send_hdr(MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0), n, 0, 9), MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, n, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 9 && r.h.msgh_local_port == n);
    CHECK_KR(mach_port_destroy(SELF, n), KERN_SUCCESS);

    CHECK_KR(mach_port_mod_refs(SELF, b, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
    n = carry(box, b, MACH_MSG_TYPE_MOVE_SEND, MACH_MSG_TYPE_PORT_SEND);
    CHECK(n == b && refs(b, MACH_PORT_RIGHT_SEND) == 2);
    n = carry(box, b, MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_PORT_SEND);
    CHECK(n == b && refs(b, MACH_PORT_RIGHT_SEND) == 3);
    n = carry(box, c, MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_PORT_SEND);
    CHECK(n == c && refs(c, MACH_PORT_RIGHT_SEND) == 1);
    CHECK(ptype(c) == (MACH_PORT_TYPE_RECEIVE | MACH_PORT_TYPE_SEND));
    mach_port_t so1 = carry(box, c, MACH_MSG_TYPE_MAKE_SEND_ONCE, MACH_MSG_TYPE_PORT_SEND_ONCE);
    CHECK(MACH_PORT_VALID(so1) && so1 != c && ptype(so1) == MACH_PORT_TYPE_SEND_ONCE);
    CHECK(refs(so1, MACH_PORT_RIGHT_SEND_ONCE) == 1 && refs(c, MACH_PORT_RIGHT_SEND) == 1);
    mach_port_t so2 = carry(box, so1, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_MSG_TYPE_PORT_SEND_ONCE);
    CHECK(MACH_PORT_VALID(so2) && so2 != c && ptype(so2) == MACH_PORT_TYPE_SEND_ONCE);
    CHECK(so2 == so1 || ptype(so1) == 0);
    CHECK_KR(send_hdr(MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0), so2, 0, 77),
             MACH_MSG_SUCCESS);
    CHECK_KR(rcv(&r, c, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 77 && r.h.msgh_local_port == c && ptype(so2) == 0);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
    /* A send right to a port held only as a send right joins its name. */
    mach_port_urefs_t self_refs = refs(SELF, MACH_PORT_RIGHT_SEND);
    n = carry(box, SELF, MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_PORT_SEND);
    CHECK(n == SELF && refs(SELF, MACH_PORT_RIGHT_SEND) == self_refs + 1);
    CHECK_KR(mach_port_deallocate(SELF, SELF), KERN_SUCCESS);

    destroy(box, b, c);
}

static void test_receive(void)
{
    mach_port_t p = new_port(1), x = new_port(1), d = dead_name();
    msgbuf_t m, r;
    const mach_port_t bad[] = {SELF, MACH_PORT_NULL, MACH_PORT_DEAD, BOGUS, d};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_KR(rcv(&r, bad[i], sizeof r, 0, 0), MACH_RCV_INVALID_NAME);
    }
    /* Timeout 0 polls; a timeout of 50 ms does not return early (no upper
     * bound: the machines are shared). */
    struct timespec t0;
    CHECK_KR(rcv(&r, p, sizeof r, 0, 0), MACH_RCV_TIMED_OUT);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_KR(rcv(&r, p, sizeof r, 0, 50), MACH_RCV_TIMED_OUT);
    CHECK(elapsed_ms(&t0) >= 25);

    /* Too large, without MACH_RCV_LARGE: the message is destroyed. */
    port_msg(&m, p, MACH_MSG_TYPE_MOVE_SEND, x, 41);
    CHECK_KR(send_buf(&m, 48), MACH_MSG_SUCCESS);
    CHECK(refs(x, MACH_PORT_RIGHT_SEND) == 0);
    memset(&r, 0xee, sizeof r);
    CHECK_KR(rcv(&r, p, 40, 0, 5000), MACH_RCV_TOO_LARGE);
    CHECK(r.h.msgh_size == 48 && r.h.msgh_id == 41 && r.h.msgh_local_port == p);
    CHECK(r.h.msgh_remote_port == MACH_PORT_NULL && r.h.msgh_seqno == 0);
    CHECK(r.h.msgh_bits == (MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND) | MACH_MSGH_BITS_COMPLEX));
    CHECK(r.buf[32] == 0xee && refs(x, MACH_PORT_RIGHT_SEND) == 0); /* header only */
    CHECK_EMPTY(p);

    /* Too large with MACH_RCV_LARGE: it stays queued, intact. */
    port_msg(&m, p, MACH_MSG_TYPE_MAKE_SEND, x, 42);
    CHECK_KR(send_buf(&m, 48), MACH_MSG_SUCCESS);
    memset(&r, 0, sizeof r);
    CHECK_KR(rcv(&r, p, 41, MACH_RCV_LARGE, 5000), MACH_RCV_TOO_LARGE);
    CHECK(r.h.msgh_size == 48 && refs(x, MACH_PORT_RIGHT_SEND) == 0);
    memset(&r, 0, sizeof r);
    CHECK_KR(rcv(&r, p, 48, MACH_RCV_LARGE, 5000), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_size == 48 && r.h.msgh_id == 42 && r.h.msgh_local_port == p);
    CHECK(r.pm.t.msgt_name == MACH_MSG_TYPE_PORT_SEND && r.pm.p[0].name == x);
    CHECK(refs(x, MACH_PORT_RIGHT_SEND) == 1);

    destroy(p, x, d);
}

static void test_ool(void)
{
    mach_port_t p = new_port(1);
    vm_size_t size = PAGES * vm_page_size;
    vm_address_t addr = 0;
    CHECK_KR(vm_allocate(SELF, &addr, size, TRUE), KERN_SUCCESS);
    unsigned char *src = (unsigned char *)addr;
    for (vm_size_t i = 0; i < size; i++) {
        src[i] = (unsigned char)(i * 7 + i / 4096);
    }
    msgbuf_t m, r;
    for (int empty = 0; empty < 2; empty++) {
        vm_size_t n = empty ? 0 : size;
        memset(&m, 0, sizeof m);
        m.om.h = (mach_msg_header_t){
            .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
            .msgh_remote_port = p, .msgh_id = 50 + empty};
        m.om.t = (mach_msg_type_t){.msgt_name = MACH_MSG_TYPE_BYTE, .msgt_size = 8,
                                   .msgt_number = (unsigned)n, .msgt_inline = FALSE};
        m.om.addr = empty ? 0 : addr;
        CHECK_KR(send_buf(&m, sizeof m.om), MACH_MSG_SUCCESS);
        memset(&r, 0, sizeof r);
        CHECK_KR(rcv(&r, p, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_size == sizeof m.om && r.h.msgh_id == 50 + empty);
        CHECK(r.om.t.msgt_inline == FALSE && r.om.t.msgt_name == MACH_MSG_TYPE_BYTE);
        CHECK(r.om.t.msgt_number == n && r.om.t.msgt_deallocate == TRUE);
        CHECK(empty ? r.om.addr == 0 : r.om.addr != 0 && r.om.addr != addr);
        if (!empty && r.om.addr != 0 && r.om.addr != addr) {
            unsigned char *dst = (unsigned char *)r.om.addr;
            CHECK(memcmp(dst, src, size) == 0);
            dst[0] ^= 0xff; /* a copy: the sender does not see this */
            CHECK(src[0] == 0);
            CHECK_KR(vm_deallocate(SELF, r.om.addr, size), KERN_SUCCESS);
        }
    }
    CHECK(src[size - 1] == (unsigned char)((size - 1) * 7 + PAGES - 1));
    CHECK_KR(vm_deallocate(SELF, addr, size), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
}

/* The child's side of test_move_receive: gets the receive right of a port
 * with three queued messages, then a fourth sent after the move. */
static void move_receive_child(void)
{
    test_failures = 0;
    mach_port_t boot = MACH_PORT_NULL, mine = new_port(0), moved = MACH_PORT_NULL;
    mach_msg_type_name_t type = 0;
    CHECK_KR(task_get_bootstrap_port(SELF, &boot), KERN_SUCCESS);
    CHECK_KR(test_send_port(boot, mine, MACH_MSG_TYPE_MAKE_SEND, 60), MACH_MSG_SUCCESS);
    CHECK_KR(test_receive_port(mine, 10000, &moved, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_RECEIVE && ptype(moved) == MACH_PORT_TYPE_RECEIVE);
    msgbuf_t r;
    for (int i = 0; i < 4; i++) {
        memset(&r, 0, sizeof r);
        CHECK_KR(rcv(&r, moved, sizeof r, 0, 10000), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_id == 100 + i && r.h.msgh_local_port == moved);
        CHECK(r.h.msgh_size == sizeof r.wm && r.wm.v == 0xc0de0000u + (unsigned)i);
        CHECK(r.h.msgh_seqno == (mach_port_seqno_t)i);
    }
    CHECK_EMPTY(moved);
    exit(test_failures ? 1 : 0);
}

static mach_msg_return_t send_word(mach_port_t dest, mach_msg_id_t id, uint32_t v)
{
    msgbuf_t m;
    memset(&m, 0, sizeof m);
    m.wm.h = (mach_msg_header_t){.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                 .msgh_remote_port = dest, .msgh_id = id};
    m.wm.t = (mach_msg_type_t){.msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
                               .msgt_number = 1, .msgt_inline = TRUE};
    m.wm.v = v;
    return send_buf(&m, sizeof m.wm);
}

static void test_move_receive(void)
{
    mach_port_t boot = new_port(1), x = new_port(1), child_task = MACH_PORT_NULL;
    for (int i = 0; i < 3; i++) {
        CHECK_KR(send_word(x, 100 + i, 0xc0de0000u + (unsigned)i), MACH_MSG_SUCCESS);
    }
    fflush(NULL);
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        move_receive_child();
    }
    CHECK(pid > 0);
    mach_port_t child_port = MACH_PORT_NULL;
    mach_msg_type_name_t type = 0;
    CHECK_KR(test_receive_port(boot, 10000, &child_port, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_SEND);
    CHECK_KR(test_send_port(child_port, x, MACH_MSG_TYPE_MOVE_RECEIVE, 61), MACH_MSG_SUCCESS);
    /* The parent keeps its send right, which now reaches the child. */
    CHECK(ptype(x) == MACH_PORT_TYPE_SEND && refs(x, MACH_PORT_RIGHT_SEND) == 1);
    CHECK_KR(send_word(x, 103, 0xc0de0003u), MACH_MSG_SUCCESS);
    test_wait_ok(pid);
    destroy(x, child_port, child_task);
    destroy(boot, MACH_PORT_NULL, MACH_PORT_NULL);
}

static void test_fork(void)
{
    mach_port_t p = new_port(1), q = new_port(0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        test_failures = 0;
        mach_port_t self = SELF, mine;
        CHECK(p == self || mach_port_type(self, p, &(mach_port_type_t){0}) == KERN_INVALID_NAME);
        CHECK(q == self || mach_port_type(self, q, &(mach_port_type_t){0}) == KERN_INVALID_NAME);
        CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &mine), KERN_SUCCESS);
        CHECK_KR(send_hdr(MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0), mine, 0, 70),
                 MACH_MSG_SUCCESS);
        msgbuf_t r;
        CHECK_KR(rcv(&r, mine, sizeof r, 0, 5000), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_id == 70 && r.h.msgh_local_port == mine);
        exit(test_failures ? 1 : 0);
    }
    CHECK(pid > 0);
    if (pid > 0) {
        test_wait_ok(pid);
    }
    /* The parent's rights are untouched by the child. */
    CHECK(ptype(p) == (MACH_PORT_TYPE_RECEIVE | MACH_PORT_TYPE_SEND));
    CHECK(ptype(q) == MACH_PORT_TYPE_RECEIVE);
    destroy(p, q, MACH_PORT_NULL);
}

int main(void)
{
    /* Set-up: the task port and this thread's MIG reply port exist. */
    mach_port_destroy(SELF, new_port(0));
    int fds = test_count_fds();
    test_send_size();
    test_header();
    test_received_header();
    test_body();
    test_dispositions();
    test_receive();
    test_ool();
    test_move_receive();
    test_fork();
    CHECK(test_count_fds() == fds);
    return test_done("msg_rules");
}
