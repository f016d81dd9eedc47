/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A send right may travel without its send end once the receiving port
 * keeps that send end in its transport table (a memory object's control
 * port does, docs/ARCHITECTURE.md).  A sender that knows only the port's
 * inode must not get a send right accepted that way: without the send
 * end, only the port's secret vouches for the right.
 *
 * The message is written into the port's socket by hand
 * (ipc_wire_format.h), so this test is linked with libmach's objects and
 * reads the ports' secrets and inodes from their private state.
 */
#include <mach.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_wire_format.h"
#include "test.h"

#define SELF mach_task_self()

static struct ipc_port *port_of(mach_port_t name)
{
    ipc_lock();
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_USER], name);
    struct ipc_port *port = entry != NULL ? entry->port : NULL;
    ipc_unlock();
    return port;
}

/* Writes into P's socket a message whose reply right is a send right to
 * C without its send end, vouched for by AUTH; with WITH_COUNT_FD, a
 * counting pipe comes too (which no right by reference carries). */
static void send_by_reference(mach_port_t p, mach_port_t c, uint64_t auth, bool with_count_fd)
{
    struct ipc_port *pp = port_of(p), *cp = port_of(c);
    CHECK(pp != NULL && cp != NULL);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    struct {
        struct wire_hdr h;
        struct wire_right reply;
    } w = {
        .h = {.magic = WIRE_MAGIC, .auth_kind = WIRE_AUTH_SEND, .auth = pp->secret,
              .bits = MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND, MACH_MSG_TYPE_PORT_SEND),
              .size = sizeof(mach_msg_header_t), .id = 77, .nrights = 1,
              .nfds = with_count_fd ? 1 : 0, .desc_size = sizeof w.reply},
        .reply = {.kind = KRIGHT_SEND, .flags = with_count_fd ? WR_COUNT_FD : 0,
                  .ino = cp->ino, .auth = auth},
    };
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = &w, .iov_len = sizeof w};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (with_count_fd) {
        mh.msg_control = control;
        mh.msg_controllen = sizeof control;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pipefd[1], sizeof(int));
    }
    CHECK(sendmsg(pp->send_fd, &mh, 0) == (ssize_t)sizeof w);
    close(pipefd[0]);
    close(pipefd[1]);
}

static mach_port_urefs_t send_refs(mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(SELF, name, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    return refs;
}

int main(void)
{
    mach_port_t p = test_new_port(true), c = test_new_port(false);
    /* P's receiver (us) keeps C's send end: it came with a send-once
     * right to C. */
    mach_msg_header_t h = {
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE),
        .msgh_size = sizeof h, .msgh_remote_port = p, .msgh_local_port = c, .msgh_id = 1};
    CHECK_KR(mach_msg(&h, MACH_SEND_MSG, sizeof h, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    struct {
        mach_msg_header_t h;
        char spare[256];
    } r;
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(MACH_PORT_VALID(r.h.msgh_remote_port)); /* the send-once right: the reply */
    CHECK_KR(mach_port_deallocate(SELF, r.h.msgh_remote_port), KERN_SUCCESS);
    CHECK(send_refs(c) == 0);

    /* A right by reference with a counting descriptor is malformed: the
     * message is dropped. */
    send_by_reference(p, c, port_of(c)->secret, true);
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 200,
                      MACH_PORT_NULL),
             MACH_RCV_TIMED_OUT);
    CHECK(send_refs(c) == 0);

    /* Forged: the inode is known, the secret is not.  It arrives dead. */
    send_by_reference(p, c, port_of(c)->secret ^ 1, false);
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 77 && r.h.msgh_remote_port == MACH_PORT_DEAD);
    CHECK(send_refs(c) == 0);

    /* With the secret (what a holder of a send right knows): accepted. */
    send_by_reference(p, c, port_of(c)->secret, false);
    CHECK_KR(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, p, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(r.h.msgh_id == 77 && r.h.msgh_remote_port == c);
    CHECK(send_refs(c) == 1);

    CHECK_KR(mach_port_destroy(SELF, c), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
    return test_done("wire_forgery");
}
