/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: arbitrary bytes and descriptors written into a port's
 * socket, then received with mach_msg.  The receiver must never crash,
 * hang or leak: every input is either delivered (and destroyed here) or
 * dropped.  Input layout:
 *   byte 0: which descriptors to attach (bit per kind, below);
 *   byte 1: bit 0 set = patch in the real magic and the port's send secret,
 *           and make the header's sizes and descriptor count agree with
 *           the datagram, so that inputs reach the deeper parsing: right
 *           descriptors, receive blocks, regions, typed bodies, adoption;
 *           bit 1 set = the datagram is instead the kept message
 *           (WRCV_PENDING) of a receive right that a well-formed message
 *           to the port carries, patched as with bit 0 for that right's
 *           port: inputs reach the parsing of kept messages (and, when
 *           one is accepted, its delivery on the right's port);
 *   the rest: the datagram.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <mach.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_wire_format.h"
#include "linux.h"

static mach_port_t port_name;
static struct ipc_port *port;
static int fds_baseline;
static unsigned long runs;

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++) {
        n += fcntl(fd, F_GETFD) >= 0;
    }
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port_name);
    mach_port_insert_right(mach_task_self(), port_name, port_name, MACH_MSG_TYPE_MAKE_SEND);
    ipc_lock();
    port = ipc_entry_lookup(&ipc_spaces[SPACE_USER], port_name)->port;
    ipc_unlock();
    mach_msg_header_t warm;
    mach_msg(&warm, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof warm, port_name, 0,
             MACH_PORT_NULL);
    fds_baseline = count_fds();
    return 0;
}

/* Makes descriptors of the kinds selected by MASK. */
static int make_fds(uint8_t mask, const uint8_t *data, size_t size, int *fds)
{
    int n = 0, pair[2];
    if ((mask & 1) && pipe2(pair, O_CLOEXEC) == 0) {
        fds[n++] = pair[0];
        close(pair[1]);
    }
    if (mask & 2) {
        fds[n++] = eventfd(0, EFD_CLOEXEC);
    }
    if ((mask & 4) && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0) {
        fds[n++] = pair[0];
        close(pair[1]);
    }
    if (mask & 8) {
        int fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd >= 0) {
            (void)!write(fd, data, size < 8192 ? size : 8192);
            fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
            fds[n++] = fd;
        }
    }
    if (mask & 16) {
        fds[n++] = dup(port->send_fd); /* the port's own send end */
    }
    if (mask & 32) {
        fds[n++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if ((mask & 64) && pipe2(pair, O_CLOEXEC) == 0) {
        fds[n++] = pair[1]; /* a pipe write end, as counting descriptors are */
        close(pair[0]);
    }
    return n;
}

/* Makes the datagram BUF[0..SIZE) look like a message to a port with
 * SECRET with NFDS descriptors: the real magic, the authenticator, and
 * sizes that agree (the descriptor area's is what the input says). */
static void patch(uint8_t *buf, size_t size, uint64_t secret, int nfds)
{
    if (size < 16) {
        return;
    }
    uint32_t magic = WIRE_MAGIC, kind = WIRE_AUTH_SEND;
    memcpy(buf, &magic, 4);
    memcpy(buf + 4, &kind, 4);
    memcpy(buf + 8, &secret, 8);
    if (size >= sizeof(struct wire_hdr)) {
        struct wire_hdr h;
        memcpy(&h, buf, sizeof h);
        h.desc_size %= (uint32_t)(size - sizeof h + 1);
        h.size = (uint32_t)(size - sizeof h - h.desc_size) + sizeof(mach_msg_header_t);
        h.nfds = (uint32_t)nfds;
        memcpy(buf, &h, sizeof h);
    }
}

/* Sends on FD the datagram BUF[0..LEN) with the descriptors FDS[0..N). */
static void send_datagram(int fd, const void *buf, size_t len, const int *fds, int n)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0) {
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
    }
    (void)sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* The id of the message that carries a receive right with the input as
 * its kept message. */
#define CARRIER_ID 0x4b657074

/* Sends the port a message moving the receive right of a new port X,
 * whose kept message is BUF[0..SIZE) with FDS[0..NFDS) (patched for X
 * with PATCH_IT). */
static void send_carrier(uint8_t *buf, size_t size, const int *fds, int nfds, bool patch_it)
{
    int sv[2], cp[2], kv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        return;
    }
    if (pipe2(cp, O_CLOEXEC) != 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, kv) != 0) {
        close(sv[0]);
        close(sv[1]);
        return;
    }
    close(cp[1]);
    uint64_t ino = 0, secret = 0x5ec2e75ec2e7ull;
    (void)linux_socket_ino(sv[1], &ino);
    if (patch_it) {
        patch(buf, size, secret, nfds);
    }
    send_datagram(kv[0], buf, size, fds, nfds);
    close(kv[0]);
    struct {
        struct wire_hdr h;
        struct wire_right reply, right;
        struct wire_rcv rcv;
        mach_msg_type_t type;
        mach_port_name_inlined_t name;
    } w = {
        .h = {.magic = WIRE_MAGIC, .auth_kind = WIRE_AUTH_SEND,
              .bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
              .size = sizeof(mach_msg_header_t) + sizeof w.type + sizeof w.name,
              .id = CARRIER_ID, .nrights = 2, .nfds = 4,
              .desc_size = 2 * sizeof(struct wire_right) + sizeof w.rcv},
        .reply = {.kind = KRIGHT_NONE},
        .right = {.kind = KRIGHT_RECEIVE, .flags = WR_SEND_FD | WR_RECEIVE, .ino = ino},
        .rcv = {.secret = secret, .qlimit = MACH_PORT_QLIMIT_DEFAULT, .requests = WRCV_PENDING},
        .type = {.msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE, .msgt_size = 64, .msgt_number = 1,
                 .msgt_inline = TRUE},
    };
    ipc_lock();
    w.h.auth = port->rcv->secret;
    ipc_unlock();
    int carried[4] = {sv[1], sv[0], cp[0], kv[1]};
    send_datagram(port->send_fd, &w, sizeof w, carried, 4);
    for (int i = 0; i < 4; i++) {
        close(carried[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    uint8_t mask = data[0], flags = data[1];
    data += 2;
    size -= 2;
    uint8_t buf[65536];
    if (size > sizeof buf) {
        size = sizeof buf;
    }
    memcpy(buf, data, size);
    int fds[8];
    int nfds = make_fds(mask, data, size, fds);
    if (flags & 2) {
        send_carrier(buf, size, fds, nfds, (flags & 1) != 0);
    } else {
        if (flags & 1) {
            ipc_lock();
            uint64_t secret = port->rcv->secret;
            ipc_unlock();
            patch(buf, size, secret, nfds);
        }
        send_datagram(port->send_fd, buf, size, fds, nfds);
    }
    for (int i = 0; i < nfds; i++) {
        close(fds[i]);
    }

    /* Whatever was accepted is delivered; destroy it as a receiver would. */
    static union {
        mach_msg_header_t head;
        char buf[1 << 20];
    } r;
    while (mach_msg(&r.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, port_name, 0,
                    MACH_PORT_NULL) == MACH_MSG_SUCCESS) {
        if (r.head.msgh_id == CARRIER_ID && r.head.msgh_size >= 48) {
            /* The receive right's kept message, if it was accepted. */
            mach_port_name_t carried;
            memcpy(&carried, r.buf + sizeof r.head + sizeof(mach_msg_type_t), sizeof carried);
            static union {
                mach_msg_header_t head;
                char buf[1 << 20];
            } k;
            if (mach_msg(&k.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof k, carried, 0,
                         MACH_PORT_NULL) == MACH_MSG_SUCCESS) {
                mach_msg_destroy(&k.head);
            }
        }
        mach_msg_destroy(&r.head);
    }

    /* No descriptor may leak.  Some are legitimately in flight: those the
     * reaper thread has not closed yet, and the send ends a port's
     * transport table keeps (swept as it grows); a leak grows without
     * bound instead. */
    if (++runs % 4096 == 0) {
        /* Descriptors of unknown kinds close in the reaper thread, which a
         * loaded machine may leave behind the fuzzer for a while. */
        linux_reaper_wait_idle(2000);
        int now = count_fds();
        if (now > fds_baseline + 512) {
            fprintf(stderr, "fuzz_receive: %d descriptors open, %d at start: a leak\n", now,
                    fds_baseline);
            abort();
        }
    }
    return 0;
}
