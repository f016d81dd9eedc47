/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A task out of descriptors (RLIMIT_NOFILE lowered in a child task): every
 * port costs descriptors in HELL, so this is where its name space runs out.
 *
 * - mach_port_allocate fails with KERN_RESOURCE_SHORTAGE, leaking nothing;
 * - a send that needs a descriptor the sender cannot get (a first send
 *   right made by MAKE_SEND, in the body or as the reply; an out-of-line
 *   region) fails with MACH_SEND_NO_BUFFER, which in GNU Mach means the
 *   call did nothing: the rights it carried are still there;
 * - a message carrying more rights than the receiver has descriptors for
 *   never crashes it nor loses the rights silently: as in GNU Mach it is
 *   delivered with MACH_RCV_BODY_ERROR | MACH_MSG_IPC_SPACE, the rights
 *   it cannot hold destroyed (their ports see no-senders) and read as
 *   MACH_PORT_NULL;
 * - a sender over the in-flight descriptor limit (ETOOMANYREFS) gets
 *   MACH_SEND_NO_BUFFER and keeps its rights;
 * - with the limit raised again a round trip works and no descriptor
 *   leaked.
 */
#include <errno.h>
#include <hell.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "test.h"

#define SELF mach_task_self()
#define WAIT_MS 10000
#define FLOOD 64  /* rights in the message the child cannot hold */
#define BATCH 20  /* rights per message in the ETOOMANYREFS part */
#define HEADROOM 40

enum { ID_INBOX = 1, ID_READY = 100, ID_FLOOD = 101, ID_AFTER = 102, ID_PING = 200 };

static mach_port_urefs_t refs(mach_port_t name, mach_port_right_t right)
{
    mach_port_urefs_t n = 0;
    return mach_port_get_refs(SELF, name, right, &n) == KERN_SUCCESS ? n : ~0u;
}

static mach_msg_return_t send_id(mach_port_t dest, mach_msg_id_t id, mach_port_t reply,
                                 mach_msg_type_name_t reply_disp)
{
    mach_msg_header_t h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, reply_disp),
                           .msgh_remote_port = dest, .msgh_local_port = reply, .msgh_id = id};
    return mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

/* An out-of-line array of N rights NAMES, with DISP, to DEST. */
static mach_msg_return_t send_array(mach_port_t dest, mach_port_t *names, unsigned n,
                                    mach_msg_type_name_t disp, mach_msg_id_t id,
                                    mach_msg_option_t extra)
{
    struct {
        mach_msg_header_t h;
        mach_msg_type_long_t t;
        mach_port_t *ports;
    } m = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .msgh_remote_port = dest, .msgh_id = id},
        .t = {.msgtl_name = disp, .msgtl_size = 32, .msgtl_number = n, .msgtl_inline = FALSE,
              .msgtl_longform = TRUE},
        .ports = names,
    };
    return mach_msg(&m.h, MACH_SEND_MSG | extra, sizeof m, 0, MACH_PORT_NULL, 0,
                    MACH_PORT_NULL);
}

typedef union {
    mach_msg_header_t h;
    struct {
        mach_msg_header_t h;
        mach_msg_type_long_t t;
        mach_port_t *ports;
    } array;
    char buf[1024];
} rcvbuf_t;

static mach_msg_return_t receive(rcvbuf_t *r, mach_port_t port, mach_msg_timeout_t timeout)
{
    memset(r, 0, sizeof *r);
    return mach_msg(&r->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof *r, port, timeout,
                    MACH_PORT_NULL);
}

/* ---- descriptors ---- */

static int fillers[100000];
static int nfillers;

/* Takes every free descriptor. */
static void exhaust(void)
{
    int fd;
    while (nfillers < (int)(sizeof fillers / sizeof fillers[0]) && (fd = dup(0)) >= 0) {
        fillers[nfillers++] = fd;
    }
    CHECK(errno == EMFILE);
}

static void release(void)
{
    while (nfillers > 0) {
        close(fillers[--nfillers]);
    }
}

static void set_nofile(rlim_t soft)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = soft;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

/* Drops CAP_SYS_ADMIN and CAP_SYS_RESOURCE from the effective set: with
 * either, Linux never refuses descriptors in flight (too_many_unix_fds). */
static void drop_fd_caps(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    CHECK(syscall(SYS_capget, &hdr, data) == 0);
    data[0].effective &= ~((1u << CAP_SYS_ADMIN) | (1u << CAP_SYS_RESOURCE));
    CHECK(syscall(SYS_capset, &hdr, data) == 0);
}

/* ---- the child: a task whose descriptors run out ---- */

static void allocate_until_failure(int base)
{
    mach_msg_type_number_t names_before = test_count_names();
    static mach_port_t ports[1000];
    int n = 0;
    kern_return_t kr = KERN_SUCCESS;
    while (n < 1000 && (kr = mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &ports[n])) ==
                           KERN_SUCCESS) {
        n++;
    }
    CHECK_KR(kr, KERN_RESOURCE_SHORTAGE);
    CHECK(n >= 5 && n < 1000);
    /* A kernel call whose reply needs descriptors (vm_read of 64 KiB
     * returns a region too large to travel inline) says so and loses
     * nothing; small out-of-line arrays (mach_port_names) need none. */
    static char big[64 * 1024] __attribute__((aligned(4096)));
    exhaust();
    vm_offset_t data = 0;
    mach_msg_type_number_t count = 0;
    CHECK_KR(vm_read(SELF, (vm_address_t)big, sizeof big, &data, &count),
             KERN_RESOURCE_SHORTAGE);
    mach_port_array_t names = NULL;
    mach_port_type_array_t types = NULL;
    mach_msg_type_number_t nnames = 0, ntypes = 0;
    CHECK_KR(mach_port_names(SELF, &names, &nnames, &types, &ntypes), KERN_SUCCESS);
    release();
    CHECK(nnames == names_before + (mach_msg_type_number_t)n && ntypes == nnames);
    vm_deallocate(SELF, (vm_address_t)names, nnames * sizeof *names);
    vm_deallocate(SELF, (vm_address_t)types, ntypes * sizeof *types);
    /* Counting the names takes descriptors: a few more than are left. */
    set_nofile((rlim_t)base + HEADROOM + 4);
    CHECK(test_count_names() == names_before + (mach_msg_type_number_t)n);
    set_nofile((rlim_t)base + HEADROOM);
    /* The ports made are whole (a message goes through each), and the
     * failed call left nothing behind. */
    for (int i = 0; i < n; i++) {
        mach_msg_header_t h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, 0),
                               .msgh_remote_port = ports[i], .msgh_id = 7};
        CHECK_KR(mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
                 MACH_MSG_SUCCESS);
    }
    rcvbuf_t r;
    for (int i = 0; i < n; i++) {
        CHECK_KR(receive(&r, ports[i], 0), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_id == 7 && r.h.msgh_local_port == ports[i]);
    }
    for (int i = 0; i < n; i++) {
        CHECK_KR(mach_port_destroy(SELF, ports[i]), KERN_SUCCESS);
    }
    CHECK(test_count_fds() == base);
}

/* Sends that need a descriptor the sender cannot get. */
static void send_without_descriptors(mach_port_t parent)
{
    mach_port_t sp = test_new_port(true), r = test_new_port(false);
    mach_port_t s = sp;
    static char region[64 * 1024]; /* past the size that travels inline */
    struct {
        mach_msg_header_t h;
        mach_msg_type_t t1;
        mach_port_name_inlined_t p1;
        mach_msg_type_t t2;
        mach_port_name_inlined_t p2;
    } two = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .msgh_remote_port = parent, .msgh_id = 2},
        .t1 = {.msgt_name = MACH_MSG_TYPE_MOVE_SEND, .msgt_size = 64, .msgt_number = 1,
               .msgt_inline = TRUE},
        .p1 = {.name = s},
        .t2 = {.msgt_name = MACH_MSG_TYPE_MAKE_SEND, .msgt_size = 64, .msgt_number = 1,
               .msgt_inline = TRUE},
        .p2 = {.name = r},
    };
    struct {
        mach_msg_header_t h;
        mach_msg_type_t t1;
        mach_port_name_inlined_t p1;
        mach_msg_type_long_t t2;
        void *addr;
    } ool = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .msgh_remote_port = parent, .msgh_id = 3},
        .t1 = {.msgt_name = MACH_MSG_TYPE_MOVE_SEND, .msgt_size = 64, .msgt_number = 1,
               .msgt_inline = TRUE},
        .p1 = {.name = s},
        .t2 = {.msgtl_name = MACH_MSG_TYPE_BYTE, .msgtl_size = 8,
               .msgtl_number = sizeof region, .msgtl_inline = FALSE, .msgtl_longform = TRUE},
        .addr = region,
    };

    exhaust();
    /* MAKE_SEND of a port with no send right yet needs a counting
     * descriptor; the MOVE_SEND before it in the body must come back. */
    CHECK_KR(mach_msg(&two.h, MACH_SEND_MSG, sizeof two, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_SEND_NO_BUFFER);
    /* The same as the reply right. */
    CHECK_KR(send_id(parent, 4, r, MACH_MSG_TYPE_MAKE_SEND), MACH_SEND_NO_BUFFER);
    /* A region past the inline size travels in a memfd. */
    CHECK_KR(mach_msg(&ool.h, MACH_SEND_MSG, sizeof ool, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_SEND_NO_BUFFER);
    release();

    CHECK(refs(s, MACH_PORT_RIGHT_SEND) == 1);
    CHECK(refs(sp, MACH_PORT_RIGHT_RECEIVE) == 1);
    mach_port_status_t st;
    CHECK_KR(mach_port_get_receive_status(SELF, r, &st), KERN_SUCCESS);
    CHECK(st.mps_mscount == 0 && !st.mps_srights);
    CHECK(region[0] == 0); /* the region is still ours and mapped */
    CHECK_KR(mach_port_destroy(SELF, sp), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, r), KERN_SUCCESS);
}

/* The parent sends FLOOD send rights, more than we have descriptors for,
 * then an empty message. */
static void receive_too_many(mach_port_t parent, mach_port_t inbox, int base)
{
    unsigned long dropped = hell_dropped_messages();
    CHECK_KR(send_id(parent, ID_READY, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    rcvbuf_t r;
    /* As GNU Mach: delivered; the rights that did not fit are destroyed
     * and read as MACH_PORT_NULL, the first ones came through. */
    mach_msg_return_t mr = receive(&r, inbox, WAIT_MS);
    CHECK_KR(mr, MACH_RCV_BODY_ERROR | MACH_MSG_IPC_SPACE);
    CHECK(r.h.msgh_id == ID_FLOOD && r.array.t.msgtl_number == FLOOD);
    unsigned valid = 0, null = 0;
    for (unsigned i = 0; mr == (MACH_RCV_BODY_ERROR | MACH_MSG_IPC_SPACE) && i < FLOOD; i++) {
        if (MACH_PORT_VALID(r.array.ports[i])) {
            CHECK(null == 0); /* those that fit come first */
            valid++;
            CHECK_KR(mach_port_deallocate(SELF, r.array.ports[i]), KERN_SUCCESS);
        } else {
            CHECK(r.array.ports[i] == MACH_PORT_NULL);
            null++;
        }
    }
    CHECK(valid > 0 && null > 0);
    CHECK(hell_dropped_messages() == dropped);
    vm_deallocate(SELF, (vm_address_t)r.array.ports, FLOOD * sizeof(mach_port_t));
    CHECK_KR(receive(&r, inbox, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == ID_AFTER);
    CHECK(test_count_fds() == base);
}

/* Linux refuses descriptors in flight past RLIMIT_NOFILE per user
 * (ETOOMANYREFS): the send fails and the rights stay. */
static void too_many_in_flight(void)
{
    mach_port_t q = test_new_port(true), t = test_new_port(true);
    CHECK_KR(mach_port_mod_refs(SELF, t, MACH_PORT_RIGHT_SEND, 999), KERN_SUCCESS);
    mach_port_t names[BATCH];
    for (int i = 0; i < BATCH; i++) {
        names[i] = t;
    }
    /* A few messages wait in Q first, sent within the limit. */
    unsigned sent = 0;
    for (; sent < 3; sent++) {
        CHECK_KR(send_array(q, names, BATCH, MACH_MSG_TYPE_MOVE_SEND, 5, MACH_SEND_TIMEOUT),
                 MACH_MSG_SUCCESS);
    }
    struct rlimit saved;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    drop_fd_caps();
    /* Below what we already have in flight. */
    set_nofile(8);
    mach_msg_return_t mr = MACH_MSG_SUCCESS;
    while (sent < 50 && (mr = send_array(q, names, BATCH, MACH_MSG_TYPE_MOVE_SEND, 5,
                                         MACH_SEND_TIMEOUT)) == MACH_MSG_SUCCESS) {
        sent++;
    }
    set_nofile(saved.rlim_cur);
    CHECK_KR(mr, MACH_SEND_NO_BUFFER);
    CHECK(sent == 3);
    CHECK(refs(t, MACH_PORT_RIGHT_SEND) == 1000 - sent * BATCH);
    /* What went is queued, whole. */
    rcvbuf_t r;
    for (unsigned i = 0; i < sent; i++) {
        CHECK_KR(receive(&r, q, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_id == 5 && r.array.t.msgtl_number == BATCH);
        for (unsigned k = 0; k < BATCH; k++) {
            CHECK(r.array.ports[k] == t);
        }
        vm_deallocate(SELF, (vm_address_t)r.array.ports, BATCH * sizeof(mach_port_t));
    }
    CHECK_KR(receive(&r, q, 0), MACH_RCV_TIMED_OUT);
    CHECK(refs(t, MACH_PORT_RIGHT_SEND) == 1000);
    CHECK_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, t), KERN_SUCCESS);
}

static void __attribute__((noreturn)) child_main(void)
{
    mach_port_t parent = MACH_PORT_NULL;
    CHECK_KR(task_get_bootstrap_port(SELF, &parent), KERN_SUCCESS);
    mach_port_t inbox = test_new_port(false);
    CHECK_KR(test_send_port(parent, inbox, MACH_MSG_TYPE_MAKE_SEND, ID_INBOX), MACH_MSG_SUCCESS);
    (void)mig_get_reply_port();
    struct rlimit saved;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    int base = test_count_fds();
    set_nofile((rlim_t)base + HEADROOM);

    allocate_until_failure(base);
    send_without_descriptors(parent);
    CHECK(test_count_fds() == base);
    receive_too_many(parent, inbox, base);

    /* Everything works again. */
    set_nofile(saved.rlim_cur);
    too_many_in_flight();
    mach_port_t reply = test_new_port(false);
    CHECK_KR(send_id(parent, ID_PING, reply, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
    rcvbuf_t r;
    CHECK_KR(receive(&r, reply, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == ID_PING + 100);
    CHECK_KR(mach_port_destroy(SELF, reply), KERN_SUCCESS);
    CHECK(test_count_fds() == base);
    fflush(stderr);
    _exit(test_failures == 0 ? 0 : 1);
}

/* ---- the parent ---- */

int main(void)
{
    (void)mig_get_reply_port();
    int fds_before = test_count_fds();
    mach_port_t boot = test_new_port(true), notify = test_new_port(false);
    mach_port_t child_task;
    pid_t pid = hell_fork(boot, &child_task);
    if (pid == 0) {
        child_main();
    }
    CHECK(pid > 0);
    mach_port_t inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type = 0;
    CHECK_KR(test_receive_port(boot, WAIT_MS, &inbox, &type), MACH_MSG_SUCCESS);

    /* Nothing the child failed to send arrived before it said ready. */
    rcvbuf_t r;
    CHECK_KR(receive(&r, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == ID_READY);

    /* FLOOD send rights whose only senders travel to the child. */
    mach_port_t ports[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        ports[i] = test_new_port(false);
        mach_port_t prev = MACH_PORT_NULL;
        CHECK_KR(mach_port_request_notification(SELF, ports[i], MACH_NOTIFY_NO_SENDERS, 1,
                                                notify, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev),
                 KERN_SUCCESS);
    }
    CHECK_KR(send_array(inbox, ports, FLOOD, MACH_MSG_TYPE_MAKE_SEND, ID_FLOOD, 0),
             MACH_MSG_SUCCESS);
    CHECK_KR(send_id(inbox, ID_AFTER, MACH_PORT_NULL, 0), MACH_MSG_SUCCESS);
    /* Not lost: every right was released, whatever the child could hold. */
    for (int i = 0; i < FLOOD; i++) {
        CHECK_KR(receive(&r, notify, WAIT_MS), MACH_MSG_SUCCESS);
        CHECK(r.h.msgh_id == MACH_NOTIFY_NO_SENDERS);
    }
    for (int i = 0; i < FLOOD; i++) {
        mach_port_status_t st;
        CHECK_KR(mach_port_get_receive_status(SELF, ports[i], &st), KERN_SUCCESS);
        CHECK(!st.mps_srights && !st.mps_nsrequest && st.mps_mscount == 1);
        CHECK_KR(mach_port_destroy(SELF, ports[i]), KERN_SUCCESS);
    }

    /* The round trip once the child's limit is back. */
    CHECK_KR(receive(&r, boot, WAIT_MS), MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == ID_PING);
    CHECK(r.h.msgh_bits == MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND_ONCE, MACH_MSG_TYPE_PORT_SEND));
    mach_msg_header_t reply = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
                               .msgh_remote_port = r.h.msgh_remote_port,
                               .msgh_id = ID_PING + 100};
    CHECK_KR(mach_msg(&reply, MACH_SEND_MSG, sizeof reply, 0, MACH_PORT_NULL, 0,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    test_wait_ok(pid);

    CHECK_KR(mach_port_deallocate(SELF, inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(SELF, child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, notify), KERN_SUCCESS);
    /* The watchdog's epoll instance is the one descriptor kept. */
    CHECK(test_count_fds() == fds_before + 1);
    return test_done("fd_budget");
}
