/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A hostile task must never crash or hang a receiver: it writes garbage
 * straight into every port socket it holds, bypassing libmach, then sends
 * one valid message.  The receiver must get exactly that message, drop the
 * rest, and leak no descriptor or mapping.  Also: a sender killed while
 * its receiver waits must not hang nor kill the receive right.
 */
#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "test.h"

#define VALID_ID 4242
#define MAX_SOCKS 64
#ifdef __SANITIZE_ADDRESS__
#define MAPS_SLACK 16 /* ASan's allocator splits its space for each new size class */
#else
#define MAPS_SLACK 2
#endif

/* The attacker's copy of libmach/ipc_wire.c's private wire format. */
struct w_hdr {
    uint32_t magic, auth_kind;
    uint64_t auth;
    uint32_t bits, size;
    int32_t id;
    uint32_t nrights, nool, nfds, desc_size, reserved;
};
struct w_right {
    uint32_t kind, flags;
    uint64_t ino, auth;
};
enum { W_MAGIC = 0x4c4c4548, K_NONE = 0, K_SEND = 2, K_RECEIVE = 4 };
enum { F_SEND = 1, F_COUNT = 2, F_RECV = 4, O_FD = 1 };
#define HDR_SIZE ((uint32_t)sizeof(mach_msg_header_t))

/* The valid message: how many garbage datagrams reached the parent. */
struct count_msg {
    mach_msg_header_t h;
    mach_msg_type_t t;
    uint64_t count;
};

/* ---- the attacker ---- */

static int socks[MAX_SOCKS];
static uint64_t sock_inos[MAX_SOCKS];
static bool sock_known[MAX_SOCKS], sock_stuck[MAX_SOCKS];
static unsigned nsocks;
static uint64_t env_inos[MAX_SOCKS]; /* the test harness's: left alone */
static uint64_t parent_inos[MAX_SOCKS]; /* the parent's, before the fork */
static unsigned nenv_inos, nparent_inos;
static uint64_t sent_known; /* datagrams queued into sockets the parent has */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static bool listed(uint64_t ino, const uint64_t *list, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (list[i] == ino) {
            return true;
        }
    }
    return false;
}

/* Lists this process's SOCK_SEQPACKET sockets but those in SKIP. */
static unsigned scan_seqpacket(int *fds, uint64_t *inos, const uint64_t *skip,
                               unsigned nskip)
{
    DIR *d = opendir("/proc/self/fd");
    unsigned n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && n < MAX_SOCKS) {
        char path[300], link[64] = "";
        int fd = atoi(e->d_name), type = 0;
        socklen_t tlen = sizeof type;
        struct stat st;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        if (readlink(path, link, sizeof link - 1) > 0 && strncmp(link, "socket:[", 8) == 0 &&
            fd != dirfd(d) && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
            !listed((uint64_t)st.st_ino, skip, nskip) &&
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 &&
            type == SOCK_SEQPACKET) {
            fds[n] = fd;
            inos[n++] = (uint64_t)st.st_ino;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* Writes one datagram (with FDS attached) into every socket.  A full
 * queue is waited on (the parent is draining P), at most once per socket
 * that nobody reads. */
static void blast(const void *buf, size_t len, const int *fds, unsigned nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
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
    for (unsigned i = 0; i < nsocks; i++) {
        for (int tries = 0; tries < 50; tries++) {
            if (sendmsg(socks[i], &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
                sent_known += sock_known[i];
                break;
            }
            struct pollfd p = {.fd = socks[i], .events = POLLOUT};
            if (errno != EAGAIN || sock_stuck[i] || poll(&p, 1, 1000) <= 0) {
                sock_stuck[i] = errno == EAGAIN || sock_stuck[i];
                break;
            }
        }
    }
}

/* Sends header H (none if NULL), then DESC and BODY, as one datagram. */
static void emit(const struct w_hdr *h, const void *desc, size_t dlen, const void *body,
                 size_t blen, const int *fds, unsigned nfds)
{
    static char buf[sizeof *h + 8192];
    size_t hlen = h != NULL ? sizeof *h : 0;
    memcpy(buf, h != NULL ? (const void *)h : "", hlen);
    memcpy(buf + hlen, desc != NULL ? desc : "", dlen);
    memcpy(buf + hlen + dlen, body != NULL ? body : "", blen);
    blast(buf, hlen + dlen + blen, fds, nfds);
}

/* A header a real sender would write, with a guessed authenticator. */
static struct w_hdr forged(uint32_t nrights, uint32_t nool, uint32_t nfds, uint32_t desc,
                           uint32_t body)
{
    return (struct w_hdr){.magic = W_MAGIC, .auth_kind = 1, .auth = rnd(),
                          .bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) |
                                  (body ? MACH_MSGH_BITS_COMPLEX : 0),
                          .size = HDR_SIZE + body, .id = 666, .nrights = nrights,
                          .nool = nool, .nfds = nfds, .desc_size = desc};
}

static uint64_t ino_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static void attack(void)
{
    char junk[4096];
    struct w_right none = {.kind = K_NONE};
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (char)rnd();
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    emit(NULL, NULL, 0, NULL, 0, NULL, 0);     /* an empty datagram */
    emit(NULL, NULL, 0, NULL, 0, &devnull, 1); /* empty, with a descriptor */
    emit(NULL, junk, 1, NULL, 0, NULL, 0);     /* 1 byte */
    emit(NULL, junk, 48, NULL, 0, NULL, 0);    /* 48 random bytes */

    /* The right magic, absurd sizes. */
    struct w_hdr h = {.magic = W_MAGIC, .auth_kind = 1, .size = UINT32_MAX,
                      .nrights = UINT32_MAX, .nool = UINT32_MAX,
                      .nfds = UINT32_MAX, .desc_size = UINT32_MAX};
    emit(&h, junk, 64, NULL, 0, NULL, 0);
    h = forged(1, 0, 0, sizeof none, 0);
    h.size = HDR_SIZE - 1; /* the body size underflows */
    emit(&h, &none, sizeof none, NULL, 0, NULL, 0);
    h.size = HDR_SIZE + 100000; /* more body than sent */
    emit(&h, &none, sizeof none, NULL, 0, NULL, 0);
    h = forged(0x10000000, 0x10000000, 0, sizeof none, 0);
    emit(&h, &none, sizeof none, NULL, 0, NULL, 0);

    /* Descriptor counts that do not match what is attached. */
    int pipefd[2], sp[2];
    CHECK(pipe2(pipefd, O_CLOEXEC) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0);
    h = forged(1, 0, 2, sizeof none, 0);
    emit(&h, &none, sizeof none, NULL, 0, NULL, 0);
    h = forged(1, 0, 0, sizeof none, 0);
    emit(&h, &none, sizeof none, NULL, 0, pipefd, 2);

    /* Garbage carrying descriptors of every kind, then the same in a
     * valid frame (parsed up to the descriptors). */
    int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int efd = eventfd(0, EFD_CLOEXEC);
    int mfd = memfd_create("hostile", MFD_CLOEXEC);
    int sealed = memfd_create("hostile-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    CHECK(file >= 0 && efd >= 0 && mfd >= 0 && sealed >= 0 && devnull >= 0);
    CHECK(ftruncate(mfd, 8192) == 0 && write(sealed, junk, 16) == 16);
    CHECK(fcntl(sealed, F_ADD_SEALS,
                F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0);
    int kinds[] = {file, devnull, pipefd[0], efd, sp[0], mfd, sealed};
    emit(NULL, junk, 64, NULL, 0, kinds, 7);
    h = forged(1, 0, 7, sizeof none, 0);
    emit(&h, &none, sizeof none, NULL, 0, kinds, 7);

    /* Regions: a memfd without seals, a sealed one smaller than claimed. */
    struct {
        struct w_right r;
        uint64_t size;
        uint32_t flags, reserved;
    } region = {.r = {.kind = K_NONE}, .size = 8192, .flags = O_FD};
    h = forged(1, 1, 1, sizeof region, 0);
    emit(&h, &region, sizeof region, NULL, 0, &mfd, 1);
    emit(&h, &region, sizeof region, NULL, 0, &sealed, 1);

    /* Well-formed rights (a send right, a receive right with a transport)
     * in a typed body that matches them, so that only the authenticator
     * is wrong; then five rights where a send end lies about its port. */
    struct forged_rights {
        struct w_right none, send, recv;
        uint64_t secret;
        uint32_t mscount, qlimit, ntransports, nnonces, requests, reserved;
        uint64_t transport_ino;
        struct w_right liar, tail;
    } rights = {.send = {.kind = K_SEND, .flags = F_SEND | F_COUNT, .ino = ino_of(sp[0])},
                .recv = {.kind = K_RECEIVE, .flags = F_SEND | F_RECV, .ino = ino_of(sp[0])},
                .secret = rnd(), .ntransports = 1, .transport_ino = ino_of(sp[1]),
                .liar = {.kind = K_SEND, .flags = F_SEND | F_COUNT, .ino = 1}};
    struct {
        mach_msg_type_t t;
        uint64_t name;
    } body[2] = {{.t = {MACH_MSG_TYPE_PORT_SEND, 64, 0, TRUE, 0, 0, 1}},
                 {.t = {MACH_MSG_TYPE_PORT_RECEIVE, 64, 0, TRUE, 0, 0, 1}}};
    int rfds[] = {sp[0], pipefd[1], sp[0], sp[1], pipefd[0], sp[1], sp[1], pipefd[1]};
    h = forged(3, 0, 6, offsetof(struct forged_rights, liar), sizeof body);
    emit(&h, &rights, h.desc_size, &body, sizeof body, rfds, 6);
    h = forged(5, 0, 8, sizeof rights, 0);
    emit(&h, &rights, sizeof rights, NULL, 0, rfds, 8);

    /* 200 random datagrams; every other one in a valid frame with a
     * random typed body, which reaches the body walk. */
    for (int i = 0; i < 200; i++) {
        size_t len = (size_t)(rnd() % 4097);
        for (size_t k = 0; k < len; k++) {
            junk[k] = (char)rnd();
        }
        if (i % 2 == 0) {
            emit(NULL, junk, len, NULL, 0, NULL, 0);
            continue;
        }
        len &= ~(size_t)7;
        for (size_t off = 0; off + 8 <= len; off += 8 + 8 * (rnd() % 3)) {
            mach_msg_type_t t = {.msgt_name = (unsigned)(rnd() % 24),
                                 .msgt_size = (unsigned)(rnd() % 3 ? 64 : rnd() % 80),
                                 .msgt_inline = (unsigned)(rnd() % 4 != 0),
                                 .msgt_number = (unsigned)(rnd() % 5)};
            memcpy(junk + off, &t, sizeof t);
        }
        h = forged(1, 0, 0, sizeof none, (uint32_t)len);
        h.bits |= MACH_MSGH_BITS_COMPLEX;
        emit(&h, &none, sizeof none, junk, len, NULL, 0);
    }

    /* Forged sends: a guessed send secret, a guessed send-once nonce. */
    h = forged(1, 0, 0, sizeof none, 0);
    emit(&h, &none, sizeof none, NULL, 0, NULL, 0);
    h.auth_kind = 2;
    h.bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0);
    emit(&h, &none, sizeof none, NULL, 0, NULL, 0);

    int all[] = {devnull, pipefd[0], pipefd[1], sp[0], sp[1], file, efd, mfd, sealed};
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++) {
        close(all[i]);
    }
}

static void attacker(void)
{
    nsocks = scan_seqpacket(socks, sock_inos, env_inos, nenv_inos);
    unsigned nknown = 0;
    for (unsigned i = 0; i < nsocks; i++) {
        sock_known[i] = listed(sock_inos[i], parent_inos, nparent_inos);
        nknown += sock_known[i];
    }
    attack();
    mach_port_t boot = MACH_PORT_NULL;
    if (task_get_bootstrap_port(mach_task_self(), &boot) != KERN_SUCCESS) {
        _exit(2);
    }
    /* Only P's send end is shared with the parent: then the count is exact. */
    struct count_msg m = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
              .msgh_size = sizeof m, .msgh_remote_port = boot, .msgh_id = VALID_ID},
        .t = {.msgt_name = MACH_MSG_TYPE_INTEGER_64, .msgt_size = 64,
              .msgt_number = 1, .msgt_inline = TRUE},
        .count = nknown == 1 ? sent_known : 0,
    };
    mach_msg_return_t mr = mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof m, 0,
                                    MACH_PORT_NULL, 10000, MACH_PORT_NULL);
    _exit(mr == MACH_MSG_SUCCESS && test_failures == 0 ? 0 : 3);
}

/* Passes off a socket pair of our own as P's receive right: P's real send
 * end, with its true inode, but a receive end that is not its peer.  Then
 * sends one valid message. */
static void forger(void)
{
    int fds[MAX_SOCKS], send_fd = -1, sp[2], pipefd[2];
    uint64_t inos[MAX_SOCKS];
    unsigned n = scan_seqpacket(fds, inos, env_inos, nenv_inos), nknown = 0;
    for (unsigned i = 0; i < n; i++) {
        if (listed(inos[i], parent_inos, nparent_inos)) {
            send_fd = fds[i];
            nknown++;
        }
    }
    CHECK(nknown == 1); /* P's send end, and nothing else of the parent's */
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0);
    CHECK(pipe2(pipefd, O_CLOEXEC) == 0);
    struct {
        struct w_right none, recv;
        uint64_t secret;
        uint32_t mscount, qlimit, ntransports, nnonces, requests, reserved;
    } desc = {.recv = {.kind = K_RECEIVE, .flags = F_SEND | F_RECV, .ino = ino_of(send_fd)},
              .secret = rnd(), .qlimit = 5};
    struct {
        mach_msg_type_t t;
        uint64_t name;
    } body = {.t = {.msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE, .msgt_size = 64,
                    .msgt_number = 1, .msgt_inline = TRUE},
              .name = 1};
    struct w_hdr h = forged(2, 0, 3, sizeof desc, sizeof body);
    int rfds[] = {send_fd, sp[0], pipefd[0]};
    socks[0] = send_fd; /* emit() writes into P's send end only */
    sock_known[0] = true;
    nsocks = 1;
    sent_known = 0;
    emit(&h, &desc, sizeof desc, &body, sizeof body, rfds, 3);
    CHECK(sent_known == 1);
    int all[] = {sp[0], sp[1], pipefd[0], pipefd[1]};
    for (unsigned i = 0; i < 4; i++) {
        close(all[i]);
    }
    mach_port_t boot = MACH_PORT_NULL;
    CHECK_KR(task_get_bootstrap_port(mach_task_self(), &boot), KERN_SUCCESS);
    struct count_msg m = {
        .h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
              .msgh_size = sizeof m, .msgh_remote_port = boot, .msgh_id = VALID_ID},
        .t = {.msgt_name = MACH_MSG_TYPE_INTEGER_64, .msgt_size = 64,
              .msgt_number = 1, .msgt_inline = TRUE},
    };
    CHECK_KR(mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof m, 0, MACH_PORT_NULL,
                      10000, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    _exit(test_failures == 0 ? 0 : 3);
}

/* ---- the receiver ---- */

static mach_port_t new_port(void)
{
    mach_port_t port = MACH_PORT_NULL;
    CHECK_KR(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port),
             KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(mach_task_self(), port, port, MACH_MSG_TYPE_MAKE_SEND),
             KERN_SUCCESS);
    return port;
}

static mach_msg_return_t receive(mach_port_t port, mach_msg_timeout_t timeout,
                                 struct count_msg *out)
{
    union {
        struct count_msg m;
        char buf[1024];
    } r;
    memset(&r, 0, sizeof r);
    mach_msg_return_t mr = mach_msg(&r.m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r,
                                    port, timeout, MACH_PORT_NULL);
    *out = r.m;
    return mr;
}

static void hostile_sender(void)
{
    mach_port_t port = new_port(), child_task;
    struct count_msg m;
    CHECK_KR(receive(port, 0, &m), MACH_RCV_TIMED_OUT); /* maps the receive buffer */
    nparent_inos = scan_seqpacket(socks, parent_inos, env_inos, nenv_inos);
    unsigned long dropped_before = hell_dropped_messages();

    pid_t pid = hell_fork(port, &child_task);
    if (pid == 0) {
        attacker();
    }
    CHECK(pid > 0);
    int fds_before = test_count_fds();
    long maps_before = test_count_maps();

    /* Exactly the valid message; every garbage datagram before it dropped. */
    int unexpected = 0;
    mach_msg_return_t mr;
    while ((mr = receive(port, 10000, &m)) != MACH_RCV_TIMED_OUT &&
           (mr != MACH_MSG_SUCCESS || m.h.msgh_id != VALID_ID) && unexpected < 300) {
        fprintf(stderr, "test_hostile: unexpected receive: 0x%x id %d\n", mr, m.h.msgh_id);
        unexpected++;
    }
    CHECK_KR(mr, MACH_MSG_SUCCESS);
    CHECK(unexpected == 0);
    CHECK(m.h.msgh_id == VALID_ID);
    uint64_t reached = m.count;
    CHECK_KR(receive(port, 0, &m), MACH_RCV_TIMED_OUT);
    unsigned long dropped = hell_dropped_messages() - dropped_before;
    fprintf(stderr, "test_hostile: %lu dropped, %llu garbage datagrams reached the port\n",
            dropped, (unsigned long long)reached);
    CHECK(dropped >= 1);
    CHECK(dropped >= reached);
    test_wait_ok(pid);

    for (int i = 0; i < 200 && test_count_fds() != fds_before; i++) {
        usleep(10000); /* descriptors of unknown kinds close in a thread */
    }
    CHECK(test_count_fds() == fds_before);
    CHECK(test_count_maps() <= maps_before + MAPS_SLACK);
    CHECK_KR(mach_port_deallocate(mach_task_self(), child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), port), KERN_SUCCESS);
}

/* A forged receive right (see forger) is dropped for the right reason;
 * the valid message behind it arrives.  Runs first: libmach logs only its
 * first ten drops. */
static void forged_receive_right(void)
{
    mach_port_t port = new_port(), child_task;
    struct count_msg m;
    nparent_inos = scan_seqpacket(socks, parent_inos, env_inos, nenv_inos);
    unsigned long dropped_before = hell_dropped_messages();
    pid_t pid = hell_fork(port, &child_task);
    if (pid == 0) {
        forger();
    }
    CHECK(pid > 0);
    int fds_before = test_count_fds();

    /* What libmach writes to stderr while receiving goes into a pipe. */
    int cap[2], real_stderr = dup(STDERR_FILENO);
    CHECK(real_stderr >= 0 && pipe2(cap, O_CLOEXEC | O_NONBLOCK) == 0);
    CHECK(dup2(cap[1], STDERR_FILENO) == STDERR_FILENO);
    mach_msg_return_t mr = receive(port, 10000, &m);
    CHECK(dup2(real_stderr, STDERR_FILENO) == STDERR_FILENO);
    close(real_stderr);
    close(cap[1]);
    char log[8192];
    ssize_t len = read(cap[0], log, sizeof log - 1);
    close(cap[0]);
    log[len > 0 ? len : 0] = '\0';
    fprintf(stderr, "%s", log);

    CHECK_KR(mr, MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == VALID_ID);
    CHECK_KR(receive(port, 0, &m), MACH_RCV_TIMED_OUT);
    CHECK(hell_dropped_messages() - dropped_before == 1);
    CHECK(strstr(log, "is not the peer of the port's send end") != NULL);
    test_wait_ok(pid);
    for (int i = 0; i < 200 && test_count_fds() != fds_before; i++) {
        usleep(10000); /* descriptors of unknown kinds close in a thread */
    }
    CHECK(test_count_fds() == fds_before);
    CHECK_KR(mach_port_deallocate(mach_task_self(), child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), port), KERN_SUCCESS);
}

static void *killer(void *arg)
{
    usleep(300000);
    kill((pid_t)(intptr_t)arg, SIGKILL);
    return NULL;
}

/* A sender dies (SIGKILL) while we wait on the port; KEEP_SEND says
 * whether we hold a send right ourselves or the dead child held the only
 * one.  The receive times out, then the port still works. */
static void dying_sender(bool keep_send)
{
    mach_port_t port = new_port(), child_task;
    struct count_msg m;
    pid_t pid = hell_fork(port, &child_task);
    if (pid == 0) {
        pause();
        _exit(1);
    }
    CHECK(pid > 0);
    if (!keep_send) {
        CHECK_KR(mach_port_deallocate(mach_task_self(), port), KERN_SUCCESS);
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, killer, (void *)(intptr_t)pid) == 0);
    time_t start = time(NULL);
    CHECK_KR(receive(port, 2000, &m), MACH_RCV_TIMED_OUT);
    CHECK(time(NULL) - start >= 1); /* did not return at the death */
    pthread_join(t, NULL);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));

    /* The receive right still works. */
    CHECK_KR(receive(port, 0, &m), MACH_RCV_TIMED_OUT);
    if (!keep_send) {
        CHECK_KR(mach_port_insert_right(mach_task_self(), port, port,
                                        MACH_MSG_TYPE_MAKE_SEND),
                 KERN_SUCCESS);
    }
    mach_msg_header_t h = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .msgh_size = sizeof h, .msgh_remote_port = port,
                           .msgh_id = 77};
    CHECK_KR(mach_msg(&h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof h, 0, MACH_PORT_NULL,
                      1000, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK_KR(receive(port, 1000, &m), MACH_MSG_SUCCESS);
    CHECK(m.h.msgh_id == 77);
    CHECK_KR(mach_port_deallocate(mach_task_self(), child_task), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(mach_task_self(), port), KERN_SUCCESS);
}

static void *parked(void *arg)
{
    usleep(100000);
    return arg;
}

/* Fills glibc's cache of thread stacks, so that stacks the receiver's
 * reaper threads leave behind in it do not count as leaked mappings. */
static void warm_stack_cache(void)
{
    pthread_t t[24];
    for (int i = 0; i < 24; i++) {
        CHECK(pthread_create(&t[i], NULL, parked, NULL) == 0);
    }
    for (int i = 0; i < 24; i++) {
        pthread_join(t[i], NULL);
    }
}

int main(void)
{
    nenv_inos = scan_seqpacket(socks, env_inos, NULL, 0);
    warm_stack_cache();
    forged_receive_right();
    hostile_sender();
    dying_sender(true);
    dying_sender(false);
    return test_done("hostile");
}
