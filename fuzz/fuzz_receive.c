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
 *   the rest: the datagram.
 */
#include <fcntl.h>
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
    if ((flags & 1) && size >= 16) {
        uint32_t magic = 0x4c4c4548, kind = 1;
        ipc_lock();
        uint64_t secret = port->rcv->secret;
        ipc_unlock();
        memcpy(buf, &magic, 4);
        memcpy(buf + 4, &kind, 4);
        memcpy(buf + 8, &secret, 8);
    }

    int fds[8];
    int nfds = make_fds(mask, data, size, fds);
    if ((flags & 1) && size >= 48) {
        /* The wire header (ipc_wire.c): size at 20, nfds at 36, desc_size at
         * 40; the descriptor area is what the input says, within bounds. */
        uint32_t desc_size, msg_size, n = (uint32_t)nfds;
        memcpy(&desc_size, buf + 40, 4);
        desc_size %= (uint32_t)(size - 48 + 1);
        msg_size = (uint32_t)(size - 48 - desc_size) + 32;
        memcpy(buf + 20, &msg_size, 4);
        memcpy(buf + 36, &n, 4);
        memcpy(buf + 40, &desc_size, 4);
    }
    union {
        char buf[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    (void)sendmsg(port->send_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
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
