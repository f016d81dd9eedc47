/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_wire.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipc_janitor.h"
#include "ipc_notify.h"
#include "ipc_port.h"
#include "ipc_qlimit.h"
#include "ipc_space.h"
#include "ipc_wire_format.h"
#include "kern.h"
#include "kern_control.h"
#include "kern_notify.h"
#include "kern_vm.h"
#include "linux.h"
#include "vm_fault.h"
#include "vm_maps.h"
#include "vm_movable.h"
#include "vm_reap.h"

/* A thread's receive buffer: the largest message. */
#define WIRE_BUF_SIZE (sizeof(struct wire_hdr) + WIRE_DESC_MAX + WIRE_BODY_MAX)

static atomic_ulong wire_dropped;

unsigned long wire_dropped_count(void)
{
    return atomic_load(&wire_dropped);
}

static void wire_drop_log(const char *why, ...)
{
    unsigned long n = atomic_fetch_add(&wire_dropped, 1) + 1;
    if (n <= 10 || n % 1000 == 0) {
        char line[256];
        int len = snprintf(line, sizeof line,
                           "hell[%d]: dropped a malformed message (#%lu): ", getpid(), n);
        va_list ap;
        va_start(ap, why);
        len += vsnprintf(line + len, sizeof line - (size_t)len - 1, why, ap);
        va_end(ap);
        len = len < (int)sizeof line - 1 ? len : (int)sizeof line - 2;
        line[len++] = '\n';
        (void)!write(STDERR_FILENO, line, (size_t)len);
    }
}

/* ---- buffers ---- */

/* A message being serialised.  Small descriptor areas (every RPC) stay in
 * the inline buffer; only large ones go to the heap. */
/* The most regions a message carries inline (the others go as memfds). */
#define WIRE_INLINE_REGIONS 16

struct wire_out {
    char *desc;
    size_t len, cap;
    int fds[WIRE_MSG_FDS];
    unsigned nfds;
    bool overflow;
    /* The regions sent inline, each followed by its padding: sendmsg
     * gathers them from the sender's memory after DESC (a bad address
     * fails the send with EFAULT). */
    struct iovec regions[2 * WIRE_INLINE_REGIONS];
    unsigned nregions;
    size_t regions_len;
    bool moves_receive; /* a receive right is serialised */
    /* The sockets carrying the kept messages of the receive rights
     * serialised (wire_put_pending), closed with OUT; what they hold. */
    int *pending_fds;
    unsigned npending_fds, pending_cap;
    size_t pending_bytes;
    unsigned pending_nfds;
    unsigned depth;     /* how deep in kept messages this message is */
    bool leave_pending; /* kept messages stay out (wire_send_copy) */
    char inline_desc[512];
};

static void wire_out_init(struct wire_out *out)
{
    out->desc = out->inline_desc;
    out->len = 0;
    out->cap = sizeof out->inline_desc;
    out->nfds = 0;
    out->overflow = false;
    out->nregions = 0;
    out->regions_len = 0;
    out->moves_receive = false;
    out->pending_fds = NULL;
    out->npending_fds = out->pending_cap = 0;
    out->pending_bytes = 0;
    out->pending_nfds = 0;
    out->depth = 0;
    out->leave_pending = false;
}

static void wire_out_fini(struct wire_out *out)
{
    if (out->desc != out->inline_desc) {
        free(out->desc);
    }
    for (unsigned i = 0; i < out->npending_fds; i++) {
        linux_close(out->pending_fds[i]);
    }
    free(out->pending_fds);
}

/* Makes room for LEN more bytes.  Returns false (and marks the message
 * overflowed) when memory is exhausted. */
static bool wire_out_grow(struct wire_out *out, size_t len)
{
    if (out->len + len <= out->cap) {
        return true;
    }
    size_t cap = out->cap * 2;
    while (cap < out->len + len) {
        cap *= 2;
    }
    char *p = out->desc == out->inline_desc ? malloc(cap) : realloc(out->desc, cap);
    if (p == NULL) {
        out->overflow = true;
        return false;
    }
    if (out->desc == out->inline_desc) {
        memcpy(p, out->inline_desc, out->len);
    }
    out->desc = p;
    out->cap = cap;
    return true;
}

static void *wire_out_put(struct wire_out *out, const void *data, size_t len)
{
    if (!wire_out_grow(out, len)) {
        return NULL;
    }
    void *dst = out->desc + out->len;
    memcpy(dst, data, len);
    out->len += len;
    return dst;
}

static void wire_out_fd(struct wire_out *out, int fd)
{
    if (out->nfds == WIRE_MSG_FDS) {
        out->overflow = true;
        return;
    }
    out->fds[out->nfds++] = fd;
}

/* The calling thread's receive buffer, released when the thread exits. */
static char *wire_thread_buf(void)
{
    return linux_thread_buf(LINUX_BUF_RECEIVE, WIRE_BUF_SIZE);
}

/* The regions of the message this thread last received into the kernel
 * space that came as sealed memfds: each memfd is kept, with its inode,
 * until the region is released or the thread receives the next such
 * message (wire_region_read). */
#define WIRE_KEPT_MAX 4
struct wire_kept {
    void *addr;
    size_t size;
    int fd;
    uint64_t ino;
};
static __thread struct wire_kept wire_kept[WIRE_KEPT_MAX];
static __thread unsigned wire_nkept;
static pthread_key_t wire_kept_key;
static pthread_once_t wire_kept_once = PTHREAD_ONCE_INIT;

/* Closes the memfds the calling thread keeps. */
static void wire_kept_clear(void)
{
    for (unsigned i = 0; i < wire_nkept; i++) {
        linux_close(wire_kept[i].fd);
    }
    wire_nkept = 0;
}

/* At the exit of a thread that kept memfds (ARG is not NULL). */
static void wire_kept_exit(void *arg)
{
    (void)arg;
    wire_kept_clear();
}

static void wire_kept_key_create(void)
{
    (void)pthread_key_create(&wire_kept_key, wire_kept_exit);
}

void wire_fork_child(void)
{
    wire_kept_clear();
}

bool wire_region_read(const void *addr, size_t size, void *dst)
{
    const struct wire_kept *k = NULL;
    for (unsigned i = 0; i < wire_nkept && k == NULL; i++) {
        k = wire_kept[i].addr == addr && wire_kept[i].size == size ? &wire_kept[i] : NULL;
    }
    /* Still its mapping?  (A region let go without wire_region_release
     * leaves its memfd kept, and the address may map something else.) */
    vm_address_t end = ((vm_address_t)addr + size + 4095) & ~(vm_address_t)4095;
    struct vm_maps_entry m;
    if (k == NULL || !vm_maps_find_whole((vm_address_t)addr, end, k->ino, &m) || m.shared) {
        return false;
    }
    return linux_pread_full(k->fd, dst, size, 0) == size;
}

char *wire_lend_buf(void)
{
    return linux_thread_buf(LINUX_BUF_LEND, WIRE_LEND_SIZE);
}

/* Whether ADDR lies in this thread's buffer ID of SIZE bytes, if it has
 * one (without making it). */
static bool wire_in_thread_buf(uintptr_t addr, enum linux_thread_buf_id id, size_t size)
{
    uintptr_t buf = (uintptr_t)linux_thread_buf_if_any(id);
    return buf != 0 && addr >= buf && addr - buf < size;
}

void wire_region_release(void *addr, size_t size)
{
    uintptr_t at = (uintptr_t)addr;
    if (wire_in_thread_buf(at, LINUX_BUF_RECEIVE, WIRE_BUF_SIZE) ||
        wire_in_thread_buf(at, LINUX_BUF_LEND, WIRE_LEND_SIZE)) {
        return; /* lent */
    }
    for (unsigned i = 0; i < wire_nkept; i++) {
        if (wire_kept[i].addr == addr) {
            linux_close(wire_kept[i].fd);
            wire_kept[i] = wire_kept[--wire_nkept];
            break;
        }
    }
    kern_vm_unmap(addr, size);
}

/* ---- serialisation (sender) ---- */

static int wire_put_pending(struct wire_out *out, struct ipc_port *port);

/* Serialises the receive state of PORT after its right descriptor. */
static void wire_put_receive(struct wire_out *out, struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    struct wire_rcv wrcv = {.secret = rcv->secret,
                            .mscount = rcv->mscount,
                            .qlimit = rcv->qlimit,
                            .ntransports = (uint32_t)rcv->transports.count,
                            .nnonces = (uint32_t)rcv->nonces.count};
    struct wire_right requests[2];
    struct ipc_port *request_ports[2];
    unsigned nrequests = 0;
    mach_port_name_t names[2] = {rcv->nsrequest, rcv->pdrequest};
    for (unsigned i = 0; i < 2; i++) {
        struct ipc_port *notify;
        uint64_t nonce;
        if (kern_notify_request_right(names[i], &notify, &nonce)) {
            wrcv.requests |= i == 0 ? WRCV_NS_REQUEST | (rcv->ns_armed ? WRCV_NS_ARMED : 0)
                                    : WRCV_PD_REQUEST;
            requests[nrequests] = (struct wire_right){
                .kind = KRIGHT_SEND_ONCE, .flags = WR_SEND_FD, .ino = notify->ino,
                .auth = nonce};
            request_ports[nrequests++] = notify;
        }
    }
    /* The message kept at the head of the queue goes ahead of it. */
    int pending_fd = rcv->pending != NULL && !out->leave_pending ? wire_put_pending(out, port) : -1;
    wrcv.requests |= pending_fd >= 0 ? WRCV_PENDING : 0;
    wire_out_put(out, &wrcv, sizeof wrcv);
    wire_out_fd(out, rcv->recv_fd);
    wire_out_fd(out, rcv->count_rfd);
    uint64_t key;
    void *value;
    for (size_t i = 0; u64map_next(&rcv->nonces, &i, &key, &value);) {
        wire_out_put(out, &key, sizeof key);
    }
    for (size_t i = 0; u64map_next(&rcv->transports, &i, &key, &value);) {
        wire_out_put(out, &key, sizeof key);
        wire_out_fd(out, ((struct ipc_port *)value)->send_fd);
    }
    for (unsigned i = 0; i < nrequests; i++) {
        wire_out_put(out, &requests[i], sizeof requests[i]);
        wire_out_fd(out, request_ports[i]->send_fd);
    }
    if (pending_fd >= 0) {
        wire_out_fd(out, pending_fd);
    }
}

/* Whether the receiver of DEST (NULL for bootstrap messages) was given
 * PORT's send end in an earlier message: then it keeps it (in its
 * transport table) as long as the port lives, and it is not sent again. */
static bool wire_peer_has(struct ipc_port *dest, struct ipc_port *port)
{
    return dest != NULL && u64map_lookup(&dest->peer_has, port->serial) != NULL;
}

/* Whether a send right of PORT travels by reference once its receiver
 * has the send end.  Only a memory object's control port does: its
 * kernel sends it with every request to the pager, which keeps rights to
 * it until the object ends.  The receiver keeps such a send end until
 * the port dies, so other ports' send ends are not kept for them (a
 * task would hold a descriptor for every port it was ever sent). */
static bool wire_send_by_reference(const struct ipc_port *port)
{
    return port->rcv != NULL && port->rcv->kobject_type == IKOT_PAGER_CONTROL;
}

/* Serialises RIGHT for a message to DEST (NULL for bootstrap messages).
 * A send-once right, or a send right that goes by reference, omits the
 * send end when DEST's receiver already has it; otherwise the port's
 * serial is stored in *PEER_NEW, to be remembered once the message is
 * sent.  A send right carries its counting descriptor with its send end:
 * it is what keeps a right in flight counted.  One by reference carries
 * neither: the receiver's spare counting descriptor for the port, kept
 * since the first right came (ipc_port_count_spare_keep), counts it. */
static void wire_put_right(struct wire_out *out, struct kright *right,
                           struct ipc_port *dest, uint64_t *peer_new)
{
    struct wire_right wr = {.kind = right->kind};
    struct ipc_port *port = right->port;
    switch (right->kind) {
    case KRIGHT_SEND:
        if (port->rcv != NULL && port->rcv->kobject_type != IKOT_NONE) {
            kern_service_start(); /* another task will call our kernel */
        }
        wr.auth = port->secret;
        wr.flags = WR_SEND_FD | WR_COUNT_FD;
        if (dest != NULL && wire_send_by_reference(port)) {
            if (wire_peer_has(dest, port)) {
                wr.flags = 0;
            } else {
                wr.flags |= WR_KEEP;
                *peer_new = port->serial;
            }
        }
        break;
    case KRIGHT_SEND_ONCE:
        wr.auth = right->nonce;
        if (!wire_peer_has(dest, port)) {
            wr.flags = WR_SEND_FD;
            *peer_new = port->serial;
        }
        break;
    case KRIGHT_RECEIVE:
        wr.flags = WR_SEND_FD | WR_RECEIVE;
        break;
    default:
        break;
    }
    if (port != NULL) {
        wr.ino = port->ino;
        if ((wr.flags & (WR_COUNT_FD | WR_RECEIVE)) && port->q_fd >= 0) {
            wr.flags |= WR_QUEUE_FD;
        }
    }
    wire_out_put(out, &wr, sizeof wr);
    if (wr.flags & WR_SEND_FD) {
        wire_out_fd(out, port->send_fd);
    }
    if (wr.flags & WR_COUNT_FD) {
        wire_out_fd(out, port->count_wfd);
    }
    if (wr.flags & WR_RECEIVE) {
        wire_put_receive(out, port);
        out->moves_receive = true;
    }
    if (wr.flags & WR_QUEUE_FD) {
        wire_out_fd(out, port->q_fd);
    }
}

/* Whether region OOL is one wire_ool_prepare faults in. */
static bool wire_ool_copied(const struct kool *ool, bool kept_only)
{
    return !ool->ports && ool->size > 0 && !(kept_only && ool->dealloc);
}

void wire_ool_prepare(struct kmsg *kmsg, bool kept_only)
{
    if (kmsg->nool == 0 || !vm_fault_active()) {
        return;
    }
    bool any = false;
    for (unsigned i = 0; i < kmsg->nool && !any; i++) {
        any = wire_ool_copied(&kmsg->ool[i], kept_only);
    }
    if (!any) {
        return;
    }
    ipc_unlock();
    for (unsigned i = 0; i < kmsg->nool; i++) {
        if (wire_ool_copied(&kmsg->ool[i], kept_only)) {
            vm_fault_prepare(kmsg->ool[i].addr, kmsg->ool[i].size);
        }
    }
    ipc_lock();
}

/* Whether region OOL is one wire_ool_take may take whole. */
static bool wire_ool_movable(const struct kool *ool)
{
    return ool->dealloc && !ool->ports && ool->size >= VM_MOVABLE_MIN && ool->memfd < 0;
}

/* Takes the whole movable regions (vm_movable.h) that KMSG moves: their
 * own memfds travel, sealed.  Without [G] while it seals (Linux may wait
 * for pages pinned elsewhere).  Expects [G]. */
static void wire_ool_take(struct kmsg *kmsg)
{
    bool any = false;
    for (unsigned i = 0; i < kmsg->nool && !any; i++) {
        any = wire_ool_movable(&kmsg->ool[i]);
    }
    if (!any) {
        return;
    }
    ipc_unlock();
    for (unsigned i = 0; i < kmsg->nool; i++) {
        if (wire_ool_movable(&kmsg->ool[i])) {
            kmsg->ool[i].memfd = vm_movable_take(kmsg->ool[i].addr, kmsg->ool[i].size);
        }
    }
    ipc_lock();
}

/* Makes a sealed memfd holding a copy of the region, unless it travels
 * as its own (wire_ool_take): the receiver maps it privately and no one
 * can change it after the send. */
static mach_msg_return_t wire_ool_seal(struct kool *ool)
{
    if (ool->memfd >= 0) {
        return MACH_MSG_SUCCESS;
    }
    int fd = memfd_create("hell-ool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return MACH_SEND_NO_BUFFER;
    }
    size_t done = 0;
    while (done < ool->size) {
        ssize_t n = write(fd, (char *)ool->addr + done, ool->size - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int err = errno;
            linux_close(fd);
            return err == EFAULT ? MACH_SEND_INVALID_MEMORY : MACH_SEND_NO_BUFFER;
        }
        done += (size_t)n;
    }
    if (fcntl(fd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        linux_close(fd);
        return MACH_SEND_NO_BUFFER;
    }
    ool->memfd = fd;
    return MACH_MSG_SUCCESS;
}

/* Closes the sealed copies made for KMSG's regions (a send that failed). */
static void wire_ool_unseal(struct kmsg *kmsg)
{
    for (unsigned i = 0; i < kmsg->nool; i++) {
        linux_close(kmsg->ool[i].memfd);
        kmsg->ool[i].memfd = -1;
    }
}

static void wire_release_pending(struct ipc_port_rcv *rcv);

/* Lets go of what a sent message carried, sent through the socket
 * SEND_FD. */
static void wire_release_sent(struct kmsg *kmsg, int send_fd)
{
    struct kright *all[2] = {&kmsg->dest, &kmsg->reply};
    for (unsigned i = 0; i < 2 + kmsg->nrights; i++) {
        struct kright *right = i < 2 ? all[i] : &kmsg->rights[i - 2];
        struct ipc_port *port = right->port;
        switch (right->kind) {
        case KRIGHT_SEND:
            ipc_port_srights_drop(port);
            break;
        case KRIGHT_SEND_ONCE:
            ipc_janitor_release(right->nonce);
            break;
        case KRIGHT_RECEIVE:
            wire_release_pending(port->rcv);
            kern_notify_requests_moved(port->rcv);
            /* (Unlisted already, unless it was in a kept message.) */
            ipc_janitor_forget_receive(port, port->rcv, true);
            ipc_port_release_receive(port);
            break;
        default:
            break;
        }
        if (port != NULL) {
            ipc_port_unref(port);
        }
        *right = (struct kright){.kind = KRIGHT_NONE};
    }
    kmsg->nrights = 0;
    /* A memfd's last reference frees its pages.  While the message is
     * queued, unread, it holds the memfds it carries, and our closes are
     * cheap.  Once it was read, the receiver may be done with them
     * already (woken on this processor, it ran before we got it back),
     * and then our close frees the pages: that is left to vm_reap.
     * Linux only says whether the port's socket holds any unread message
     * (SIOCOUTQ counts those of every sender of the port, which share
     * it), not whether ours is one: a hint, which can close in place a
     * memfd already read when other messages wait behind it. */
    int unread = -1; /* -1: not asked yet, else a bool */
    for (unsigned i = 0; i < kmsg->nool; i++) {
        struct kool *ool = &kmsg->ool[i];
        /* The sender's view first: unmapped here, its pages are still the
         * memfd's while the close below may be the thread's. */
        if (ool->dealloc && ool->addr != NULL && ool->size > 0) {
            kern_vm_unmap(ool->addr, ool->size);
        }
        if (ool->memfd >= 0 && unread < 0) {
            unread = linux_socket_sent_unread(send_fd);
        }
        if (unread > 0) {
            linux_close(ool->memfd);
        } else {
            vm_reap_close(ool->memfd, ool->size);
        }
        ool->memfd = -1;
    }
    kmsg->nool = 0;
}

/* The message kept on RCV went with its receive right (wire_put_pending):
 * lets go of it as of any message sent.  Expects [G]. */
static void wire_release_pending(struct ipc_port_rcv *rcv)
{
    struct kmsg *kept = rcv->pending;
    if (kept == NULL) {
        return;
    }
    rcv->pending = NULL;
    /* (Its socket is not at hand: its memfds' closes go to vm_reap.) */
    wire_release_sent(kept, -1);
    ipc_kmsg_destroy(kept); /* (it holds nothing more: its arrays, its body) */
    free(kept);
}

int wire_sendmsg(int fd, struct iovec *iov, int iovcnt, const int *fds, unsigned nfds,
                 int flags)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
    if (nfds > 0) {
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    /* The system call itself: mach_msg is not a POSIX cancellation point
     * (the Hurd cancels RPCs its own way), so glibc's cancellable wrapper
     * has nothing to do here. */
    return (int)syscall(SYS_sendmsg, fd, &mh, flags | MSG_NOSIGNAL);
}

/* Descriptors past what one sendmsg carries: queues FDS[WIRE_MAX_FDS-1..N)
 * in an auxiliary socket pair and replaces them by its receiving end.
 * Returns that end (the caller closes it after sending), or -1 with
 * errno. */
static int wire_send_aux(int *fds, unsigned *nfds)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        return -1;
    }
    char byte = 0;
    for (unsigned off = WIRE_MAX_FDS - 1; off < *nfds; off += WIRE_MAX_FDS) {
        unsigned n = *nfds - off < WIRE_MAX_FDS ? *nfds - off : WIRE_MAX_FDS;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        if (wire_sendmsg(sv[0], &iov, 1, fds + off, n, 0) < 0) {
            int err = errno;
            linux_close(sv[0]);
            linux_close(sv[1]);
            errno = err;
            return -1;
        }
    }
    linux_close(sv[0]);
    fds[WIRE_MAX_FDS - 1] = sv[1];
    *nfds = WIRE_MAX_FDS;
    return sv[1];
}

/* Waits until FD is writable or DEADLINE (ms, 0 = none) passes. */
static int wire_wait_fd(int fd, short events, uint64_t deadline)
{
    int timeout = -1;
    if (deadline != 0) {
        uint64_t now = linux_now_ms();
        timeout = now >= deadline ? 0 : (int)(deadline - now);
    }
    struct pollfd pfd = {.fd = fd, .events = events};
    struct futex_wait_mark outer = futex_wait_begin();
    int n = (int)syscall(SYS_poll, &pfd, 1, timeout);
    futex_wait_end(outer);
    if (n < 0) {
        return -errno;
    }
    return n == 0 ? -ETIMEDOUT : pfd.revents;
}

static mach_msg_return_t wire_build(struct kmsg *kmsg, struct wire_out *out,
                                    struct wire_hdr *hdr, uint64_t *peer_new,
                                    unsigned *npeer_new)
{
    struct ipc_port *dest = kmsg->dest.port;
    *hdr = (struct wire_hdr){
        .magic = WIRE_MAGIC,
        .bits = kmsg->hdr.msgh_bits,
        .size = kmsg->hdr.msgh_size,
        .id = kmsg->hdr.msgh_id,
        .nrights = kmsg->nrights + 1,
        .nool = kmsg->nool,
    };
    if (kmsg->dest.kind == KRIGHT_SEND_ONCE) {
        hdr->auth_kind = WIRE_AUTH_SEND_ONCE;
        hdr->auth = kmsg->dest.nonce;
    } else {
        hdr->auth_kind = WIRE_AUTH_SEND;
        hdr->auth = dest->secret;
    }
    *npeer_new = 0;
    uint64_t serial = 0;
    wire_put_right(out, &kmsg->reply, dest, &serial);
    if (serial != 0) {
        peer_new[(*npeer_new)++] = serial;
    }
    for (unsigned i = 0; i < kmsg->nrights; i++) {
        serial = 0;
        wire_put_right(out, &kmsg->rights[i], dest, &serial);
        if (serial != 0 && *npeer_new < WIRE_MAX_FDS) {
            peer_new[(*npeer_new)++] = serial;
        }
    }
    /* The inline regions follow the descriptors, each padded to 8 bytes,
     * read by sendmsg as a system call reads: a bad address is an error,
     * not a fault in libmach. */
    static const char zeros[8];
    size_t inline_total = 0;
    unsigned ninline = 0;
    for (unsigned i = 0; i < kmsg->nool; i++) {
        struct kool *ool = &kmsg->ool[i];
        struct wire_ool wo = {.size = ool->size};
        /* A port array travels as rights; only its length is sent. */
        if (ool->ports) {
            wo.flags = WO_PORTS;
        } else if (ool->size > 0 && ool->size <= WIRE_OOL_INLINE_MAX &&
                   inline_total + WIRE_PAD8(ool->size) <= WIRE_OOL_INLINE_TOTAL &&
                   ninline < WIRE_INLINE_REGIONS) {
            wo.flags = WO_INLINE;
            inline_total += WIRE_PAD8(ool->size);
            ninline++;
            out->regions[out->nregions++] = (struct iovec){.iov_base = ool->addr,
                                                           .iov_len = ool->size};
            if (WIRE_PAD8(ool->size) > ool->size) {
                out->regions[out->nregions++] = (struct iovec){
                    .iov_base = (void *)zeros, .iov_len = WIRE_PAD8(ool->size) - ool->size};
            }
        } else if (ool->size > 0) {
            mach_msg_return_t mr = wire_ool_seal(ool);
            if (mr != MACH_MSG_SUCCESS) {
                return mr;
            }
            wo.flags = WO_FD;
            wire_out_fd(out, ool->memfd);
        }
        wire_out_put(out, &wo, sizeof wo);
    }
    out->regions_len = inline_total;
    if (out->overflow || out->len + out->regions_len > WIRE_DESC_MAX) {
        return MACH_SEND_NO_BUFFER;
    }
    hdr->nfds = out->nfds;
    if (out->nfds > WIRE_MAX_FDS) {
        hdr->flags |= WIRE_HDR_AUX;
    }
    hdr->desc_size = (uint32_t)(out->len + out->regions_len);
    return MACH_MSG_SUCCESS;
}

mach_msg_return_t wire_send(struct kmsg *kmsg, mach_msg_option_t option,
                            mach_msg_timeout_t timeout)
{
    struct ipc_port *dest = kmsg->dest.port;
    if (kmsg->body_size > WIRE_BODY_MAX) {
        return MACH_SEND_NO_BUFFER;
    }
    wire_ool_prepare(kmsg, false);
    wire_ool_take(kmsg);
    struct wire_out out;
    wire_out_init(&out);
    struct wire_hdr hdr;
    uint64_t peer_new[WIRE_MAX_FDS];
    unsigned npeer_new;
    mach_msg_return_t mr = wire_build(kmsg, &out, &hdr, peer_new, &npeer_new);
    if (mr != MACH_MSG_SUCCESS) {
        wire_ool_unseal(kmsg);
        wire_out_fini(&out);
        return mr;
    }
    int aux = -1;
    unsigned nfds = out.nfds;
    if ((hdr.flags & WIRE_HDR_AUX) && (aux = wire_send_aux(out.fds, &nfds)) < 0) {
        wire_ool_unseal(kmsg);
        wire_out_fini(&out);
        return MACH_SEND_NO_BUFFER; /* out of descriptors */
    }
    int send_fd = dest->send_fd;
    uint64_t deadline = 0;
    if (option & MACH_SEND_TIMEOUT) {
        deadline = linux_now_ms() + timeout;
    }
    ipc_unlock();

    /* A message through a send right waits for a place in the queue; one
     * through a send-once right never does, as in GNU Mach. */
    bool counted = false;
    if (kmsg->dest.kind == KRIGHT_SEND) {
        mr = ipc_qlimit_reserve(dest, option, timeout, deadline, &counted);
        if (mr != MACH_MSG_SUCCESS) {
            ipc_lock();
            linux_close(aux);
            wire_out_fini(&out);
            wire_ool_unseal(kmsg);
            if (mr == MACH_SEND_INVALID_DEST) {
                dest->dead = true;
            }
            return mr;
        }
        hdr.flags |= counted ? WIRE_HDR_COUNTED : 0;
    }
    /* (Filled, not initialised: this is every message's path.) */
    struct iovec iov[3 + 2 * WIRE_INLINE_REGIONS];
    iov[0] = (struct iovec){.iov_base = &hdr, .iov_len = sizeof hdr};
    iov[1] = (struct iovec){.iov_base = out.desc, .iov_len = out.len};
    int iovcnt = 2;
    for (unsigned i = 0; i < out.nregions; i++) {
        iov[iovcnt++] = out.regions[i];
    }
    iov[iovcnt++] = (struct iovec){.iov_base = (void *)kmsg->body, .iov_len = kmsg->body_size};
    /* Small messages (every RPC) go as one buffer: cheaper for the kernel
     * than three pieces. */
    char flat[sizeof hdr + 512];
    if (out.nregions == 0 && out.len + kmsg->body_size <= sizeof flat - sizeof hdr) {
        memcpy(flat, &hdr, sizeof hdr);
        memcpy(flat + sizeof hdr, out.desc, out.len);
        memcpy(flat + sizeof hdr + out.len, kmsg->body, kmsg->body_size);
        iov[0] = (struct iovec){.iov_base = flat,
                                .iov_len = sizeof hdr + out.len + kmsg->body_size};
        iovcnt = 1;
    }

    /* The socket itself may be full too (its buffer is bounded): then
     * wait for room.  A message moving a receive right is sent holding
     * [G], which then releases the right before anyone takes it: a thread
     * of this process receiving it must not find the port's receive
     * state still here.  What sendmsg reads is then copied first, without
     * [G]: a fault on an object's page under [G] could wait for a pager
     * request that needs it. */
    bool moves_receive = out.moves_receive;
    char *gathered = NULL;
    if (moves_receive && iovcnt > 1) {
        size_t total = 0;
        for (int i = 0; i < iovcnt; i++) {
            total += iov[i].iov_len;
        }
        gathered = malloc(total);
        if (gathered == NULL) {
            if (counted) {
                ipc_qlimit_put_back(dest);
            }
            ipc_lock();
            linux_close(aux);
            wire_out_fini(&out);
            wire_ool_unseal(kmsg);
            return MACH_SEND_NO_BUFFER;
        }
        size_t at = 0;
        for (int i = 0; i < iovcnt; i++) {
            memcpy(gathered + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        iov[0] = (struct iovec){.iov_base = gathered, .iov_len = total};
        iovcnt = 1;
    }
    bool locked = false;
    int flags = MSG_DONTWAIT;
    int err = 0;
    for (;;) {
        if (moves_receive) {
            ipc_lock();
            locked = true;
        }
        if (wire_sendmsg(send_fd, iov, iovcnt, out.fds, nfds, flags) >= 0) {
            err = 0;
            break;
        }
        err = errno;
        if (locked) {
            ipc_unlock();
            locked = false;
        }
        if (err == EINTR) {
            if ((option & MACH_SEND_INTERRUPT) || kern_abort_take()) {
                break;
            }
            continue;
        }
        if (err != EAGAIN) {
            break;
        }
        if ((option & MACH_SEND_TIMEOUT) && timeout == 0) {
            err = ETIMEDOUT;
            break;
        }
        int w = wire_wait_fd(send_fd, POLLOUT, deadline);
        if (w == -ETIMEDOUT) {
            err = ETIMEDOUT;
            break;
        }
        if (w == -EINTR && ((option & MACH_SEND_INTERRUPT) || kern_abort_take())) {
            err = EINTR;
            break;
        }
    }
    if (err != 0 && counted) {
        ipc_qlimit_put_back(dest);
    }
    free(gathered);
    if (!locked) {
        ipc_lock();
    }
    linux_close(aux);
    wire_out_fini(&out);
    switch (err) {
    case 0:
        for (unsigned i = 0; i < npeer_new; i++) {
            (void)u64map_insert(&dest->peer_has, peer_new[i], (void *)1);
        }
        wire_release_sent(kmsg, send_fd);
        return MACH_MSG_SUCCESS;
    case EPIPE:
    case ECONNRESET:
    case ECONNREFUSED:
    case ENOTCONN:
        dest->dead = true;
        mr = MACH_SEND_INVALID_DEST;
        break;
    case ETIMEDOUT:
        mr = MACH_SEND_TIMED_OUT;
        break;
    case EINTR:
        mr = MACH_SEND_INTERRUPTED;
        break;
    case EFAULT:
        mr = MACH_SEND_INVALID_MEMORY; /* an inline region's address */
        break;
    default:
        mr = MACH_SEND_NO_BUFFER;
        break;
    }
    wire_ool_unseal(kmsg);
    return mr;
}

mach_msg_return_t wire_send_copy(int fd, const void *prefix, size_t prefix_len,
                                 struct kmsg *kmsg, size_t max, bool with_pending)
{
    if (kmsg->nool != 0 || kmsg->body_size > WIRE_BODY_MAX) {
        return MACH_SEND_NO_BUFFER;
    }
    struct wire_out out;
    wire_out_init(&out);
    out.leave_pending = !with_pending;
    struct wire_hdr hdr;
    uint64_t peer_new[WIRE_MAX_FDS];
    unsigned npeer_new;
    mach_msg_return_t mr = wire_build(kmsg, &out, &hdr, peer_new, &npeer_new);
    int aux = -1;
    unsigned nfds = out.nfds;
    /* What kept messages hold counts as if the datagram carried it. */
    if (mr == MACH_MSG_SUCCESS &&
        (prefix_len + sizeof hdr + out.len + kmsg->body_size + out.pending_bytes > max ||
         (out.pending_nfds > 0 && out.nfds + out.pending_nfds > WIRE_MAX_FDS))) {
        mr = MACH_SEND_NO_BUFFER;
    }
    if (mr == MACH_MSG_SUCCESS && (hdr.flags & WIRE_HDR_AUX) &&
        (aux = wire_send_aux(out.fds, &nfds)) < 0) {
        mr = MACH_SEND_NO_BUFFER;
    }
    if (mr == MACH_MSG_SUCCESS) {
        struct iovec iov[] = {
            {.iov_base = (void *)prefix, .iov_len = prefix_len},
            {.iov_base = &hdr, .iov_len = sizeof hdr},
            {.iov_base = out.desc, .iov_len = out.len},
            {.iov_base = (void *)kmsg->body, .iov_len = kmsg->body_size},
        };
        if (wire_sendmsg(fd, iov, 4, out.fds, nfds, MSG_DONTWAIT) < 0) {
            mr = MACH_SEND_NO_BUFFER;
        }
    }
    linux_close(aux);
    wire_out_fini(&out);
    return mr;
}

/* ---- a message kept by MACH_RCV_LARGE, with its receive right ---- */

/* A socket carrying a kept message buffers as much as a port's. */
#define WIRE_PENDING_SOCKBUF (1024 * 1024)

/* Sends KEPT, the message kept at the head of PORT's queue (receive
 * right held here), into the socket FD as a message to PORT would go
 * (authenticated by the port's secret, not counted in its queue),
 * without waiting.  KEPT keeps everything: the datagram carries copies
 * (sealed copies of its large regions).  DEPTH is how deep in kept
 * messages it goes.  *BYTES and *NFDS get what the datagram holds with
 * what is nested in it (regions' memfds counted by their size).
 * Returns MACH_MSG_SUCCESS, MACH_SEND_NO_BUFFER (out of memory or
 * descriptors, FD cannot take it now), or MACH_SEND_INVALID_MEMORY (a
 * region of it could not be read into its memfd).  Expects [G]. */
static mach_msg_return_t wire_send_pending(int fd, struct ipc_port *port, struct kmsg *kept,
                                        unsigned depth, size_t *bytes, unsigned *nfds)
{
    /* Its destination is the port itself: its senders' transports omit
     * the send ends the port's receive state keeps, as in any message to
     * it; the datagram's reader holds that state, as it is now. */
    struct kmsg msg = *kept;
    msg.dest = (struct kright){.kind = KRIGHT_SEND, .port = port};
    struct wire_out *out = malloc(sizeof *out);
    uint64_t *peer_new = malloc(WIRE_MAX_FDS * sizeof *peer_new);
    if (out == NULL || peer_new == NULL || msg.body_size > WIRE_BODY_MAX) {
        free(out);
        free(peer_new);
        return MACH_SEND_NO_BUFFER;
    }
    wire_out_init(out);
    out->depth = depth;
    struct wire_hdr hdr;
    unsigned npeer_new; /* (not remembered: the send ends all went) */
    mach_msg_return_t mr = wire_build(&msg, out, &hdr, peer_new, &npeer_new);
    int aux = -1;
    unsigned nsent = out->nfds;
    if (mr == MACH_MSG_SUCCESS && (hdr.flags & WIRE_HDR_AUX) &&
        (aux = wire_send_aux(out->fds, &nsent)) < 0) {
        mr = MACH_SEND_NO_BUFFER;
    }
    if (mr == MACH_MSG_SUCCESS) {
        struct iovec iov[3 + 2 * WIRE_INLINE_REGIONS];
        int iovcnt = 0;
        iov[iovcnt++] = (struct iovec){.iov_base = &hdr, .iov_len = sizeof hdr};
        iov[iovcnt++] = (struct iovec){.iov_base = out->desc, .iov_len = out->len};
        for (unsigned i = 0; i < out->nregions; i++) {
            iov[iovcnt++] = out->regions[i];
        }
        iov[iovcnt++] = (struct iovec){.iov_base = (void *)msg.body, .iov_len = msg.body_size};
        if (wire_sendmsg(fd, iov, iovcnt, out->fds, nsent, MSG_DONTWAIT) < 0) {
            mr = MACH_SEND_NO_BUFFER;
        }
    }
    *bytes = sizeof hdr + hdr.desc_size + msg.body_size + out->pending_bytes;
    *nfds = out->nfds + out->pending_nfds;
    for (unsigned i = 0; i < msg.nool; i++) {
        *bytes += msg.ool[i].memfd >= 0 ? msg.ool[i].size : 0;
    }
    linux_close(aux);
    wire_ool_unseal(&msg); /* (the datagram holds what it needs) */
    wire_out_fini(out);
    free(out);
    free(peer_new);
    return mr;
}

/* Serialises the message kept on PORT (receive right held here) for
 * OUT, a message moving the right: as the one message of a socket of
 * its own, whose reading end is returned (owned by OUT), or -1 with OUT
 * overflowing (the send fails, nothing moved).  Expects [G]. */
static int wire_put_pending(struct wire_out *out, struct ipc_port *port)
{
    int sv[2];
    if (out->npending_fds == out->pending_cap) {
        unsigned cap = out->pending_cap ? 2 * out->pending_cap : 4;
        int *p = realloc(out->pending_fds, cap * sizeof *p);
        if (p == NULL) {
            out->overflow = true;
            return -1;
        }
        out->pending_fds = p;
        out->pending_cap = cap;
    }
    /* (Deeper never happens: a message kept so deep sent the ones below
     * it back to their queues when it was kept, ipc_msg.c.) */
    if (out->depth >= WIRE_PENDING_DEPTH ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        out->overflow = true;
        return -1;
    }
    int size = WIRE_PENDING_SOCKBUF;
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    size_t bytes;
    unsigned nfds;
    mach_msg_return_t mr =
        wire_send_pending(sv[0], port, port->rcv->pending, out->depth + 1, &bytes, &nfds);
    linux_close(sv[0]); /* its reader finds the message, then the end */
    if (mr != MACH_MSG_SUCCESS) {
        linux_close(sv[1]);
        out->overflow = true;
        return -1;
    }
    out->pending_fds[out->npending_fds++] = sv[1];
    out->pending_bytes += bytes;
    out->pending_nfds += nfds;
    return sv[1];
}

void wire_pending_requeue(struct ipc_port *port, struct kmsg *kept)
{
    size_t bytes;
    unsigned nfds;
    if (wire_send_pending(port->send_fd, port, kept, 0, &bytes, &nfds) == MACH_MSG_SUCCESS) {
        wire_release_sent(kept, port->send_fd);
    }
    ipc_kmsg_destroy(kept); /* what did not go */
    free(kept);
}

/* ---- parsing (receiver) ---- */

struct wire_in {
    const char *p, *end;
    int *fds;
    unsigned nfds, next_fd;
    bool short_fds; /* the receiver ran out of descriptors: the last ones
                       are missing, and the rights that needed them lost */
};

static const void *wire_in_take(struct wire_in *in, size_t len)
{
    if ((size_t)(in->end - in->p) < len) {
        return NULL;
    }
    const void *p = in->p;
    in->p += len;
    return p;
}

static int wire_in_fd(struct wire_in *in)
{
    if (in->next_fd >= in->nfds) {
        return -1;
    }
    int fd = in->fds[in->next_fd];
    in->fds[in->next_fd++] = -1; /* ownership moves to the caller */
    return fd;
}

/* Whether FD, taken by wire_in_fd for right R, is missing because the
 * receiver ran out of descriptors: R is then lost (destroyed on arrival,
 * as GNU Mach destroys a right that does not fit the receiver's space). */
static bool wire_fd_missing(const struct wire_in *in, int fd, bool *lost)
{
    if (fd < 0 && in->short_fds) {
        *lost = true;
        return true;
    }
    return false;
}

/* Receives one datagram with its descriptors.  *TRUNC_FLAGS gets
 * MSG_TRUNC (the data did not fit: malformed) and MSG_CTRUNC (this
 * process could not take every descriptor: out of descriptors; the
 * kernel closed the rest). */
static ssize_t wire_recvmsg(int fd, char *buf, size_t size, int *fds,
                            unsigned *nfds, int *trunc_flags, int flags)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    ssize_t n;
    if (flags & MSG_DONTWAIT) {
        n = syscall(SYS_recvmsg, fd, &mh, flags | MSG_CMSG_CLOEXEC);
    } else {
        struct futex_wait_mark outer = futex_wait_begin();
        n = syscall(SYS_recvmsg, fd, &mh, flags | MSG_CMSG_CLOEXEC);
        futex_wait_end(outer);
    }
    *nfds = 0;
    if (n < 0) {
        return n;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (unsigned i = 0; i < k && *nfds < WIRE_MAX_FDS; i++) {
                memcpy(&fds[(*nfds)++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            }
        }
    }
    *trunc_flags = mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC);
    return n;
}

struct wire_parsed_right {
    struct wire_right wr;
    int send_fd, count_fd, queue_fd;
    const struct wire_rcv *rcv;
    const uint64_t *nonces, *transport_inos;
    int recv_fd, count_rfd;
    int *transport_fds;
    const struct wire_right *requests[2]; /* no-senders, port-destroyed */
    int request_fds[2];
    int pending_fd; /* the socket holding the kept message (WRCV_PENDING) */
    bool lost; /* some descriptor is missing (wire_fd_missing) */
};

/* A parsed message.  The common shapes (a reply right and a few body
 * rights or regions) fit the inline arrays; larger ones use the heap. */
#define WIRE_PARSED_INLINE 4
struct wire_parsed {
    const struct wire_hdr *hdr;
    struct wire_parsed_right *rights;
    const struct wire_ool *ool;
    int *ool_fds;
    uint32_t ool_sealed;     /* ool_fds[0..ool_sealed) are checked: sealed
                                memfds (or -1), closed without more checks */
    const char *inline_data; /* the bytes of the WO_INLINE regions */
    const char *body;
    size_t body_size;
    struct wire_parsed_right inline_rights[WIRE_PARSED_INLINE];
    int inline_ool_fds[WIRE_PARSED_INLINE];
    uint64_t ool_inos[WIRE_KEPT_MAX]; /* the inodes of the first regions' memfds
                                         (wire_kept_take, vm_reap_note) */
};

static bool wire_check_fd_ino(int fd, uint64_t ino)
{
    uint64_t got;
    return fd >= 0 && linux_socket_ino(fd, &got) && got == ino;
}

/* Parses the requests that come with a receive right into R, and the
 * socket of its kept message. */
static const char *wire_parse_requests(struct wire_in *in, struct wire_parsed_right *r)
{
    uint32_t flags = r->rcv->requests;
    if ((flags &
         ~(uint32_t)(WRCV_NS_REQUEST | WRCV_NS_ARMED | WRCV_PD_REQUEST | WRCV_PENDING)) ||
        ((flags & WRCV_NS_ARMED) && !(flags & WRCV_NS_REQUEST))) {
        return "bad request flags";
    }
    uint32_t which[2] = {WRCV_NS_REQUEST, WRCV_PD_REQUEST};
    for (unsigned i = 0; i < 2; i++) {
        if (!(flags & which[i])) {
            continue;
        }
        const struct wire_right *wr = r->requests[i] = wire_in_take(in, sizeof *wr);
        if (wr == NULL || wr->kind != KRIGHT_SEND_ONCE || wr->flags != WR_SEND_FD ||
            wr->auth == 0) {
            return "bad request right";
        }
        r->request_fds[i] = wire_in_fd(in);
        if (!wire_fd_missing(in, r->request_fds[i], &r->lost) &&
            !wire_check_fd_ino(r->request_fds[i], wr->ino)) {
            return "request descriptor does not match its port";
        }
    }
    if (flags & WRCV_PENDING) {
        r->pending_fd = wire_in_fd(in);
        if (!wire_fd_missing(in, r->pending_fd, &r->lost) &&
            (r->pending_fd < 0 || !linux_is_unix_seqpacket(r->pending_fd))) {
            return "kept message not in a socket";
        }
    }
    return NULL;
}

/* Parses and checks a received message without touching any IPC state.
 * Returns NULL (with the reason) when it must be dropped. */
static const char *wire_parse(const char *buf, size_t len, int *fds,
                              unsigned nfds, bool short_fds, struct wire_parsed *out)
{
    struct wire_in in = {
        .p = buf, .end = buf + len, .fds = fds, .nfds = nfds, .short_fds = short_fds};
    const struct wire_hdr *hdr = wire_in_take(&in, sizeof *hdr);
    if (hdr == NULL || hdr->magic != WIRE_MAGIC) {
        return "bad header";
    }
    if (nfds > hdr->nfds || (nfds < hdr->nfds && !short_fds) ||
        hdr->size < sizeof(mach_msg_header_t) ||
        hdr->size - sizeof(mach_msg_header_t) > WIRE_BODY_MAX ||
        hdr->nrights == 0 || hdr->desc_size > WIRE_DESC_MAX ||
        (size_t)(in.end - in.p) !=
            hdr->desc_size + (hdr->size - sizeof(mach_msg_header_t)) ||
        hdr->nrights > hdr->desc_size / sizeof(struct wire_right) ||
        hdr->nool > hdr->desc_size / sizeof(struct wire_ool)) {
        return "inconsistent sizes";
    }
    out->hdr = hdr;
    out->body_size = hdr->size - sizeof(mach_msg_header_t);
    in.end = in.p + hdr->desc_size;
    out->body = in.end;
    out->rights = hdr->nrights <= WIRE_PARSED_INLINE
                      ? out->inline_rights
                      : malloc(hdr->nrights * sizeof *out->rights);
    out->ool_fds = hdr->nool <= WIRE_PARSED_INLINE
                       ? out->inline_ool_fds
                       : malloc(hdr->nool * sizeof *out->ool_fds);
    if (out->rights == NULL || out->ool_fds == NULL) {
        /* (Neither array, unfilled, may reach the cleanup: the
         * descriptors received are closed from the list that came.) */
        if (out->rights != out->inline_rights) {
            free(out->rights);
        }
        if (out->ool_fds != out->inline_ool_fds) {
            free(out->ool_fds);
        }
        out->rights = NULL;
        out->ool_fds = NULL;
        return "out of memory";
    }
    memset(out->rights, 0, hdr->nrights * sizeof *out->rights);
    for (uint32_t i = 0; i < hdr->nool; i++) {
        out->ool_fds[i] = -1;
    }
    out->ool_sealed = 0;
    for (uint32_t i = 0; i < hdr->nrights; i++) {
        out->rights[i].send_fd = out->rights[i].count_fd = out->rights[i].queue_fd = -1;
        out->rights[i].recv_fd = out->rights[i].count_rfd = -1;
        out->rights[i].request_fds[0] = out->rights[i].request_fds[1] = -1;
        out->rights[i].pending_fd = -1;
    }
    for (uint32_t i = 0; i < hdr->nrights; i++) {
        struct wire_parsed_right *r = &out->rights[i];
        const struct wire_right *wr = wire_in_take(&in, sizeof *wr);
        if (wr == NULL || wr->kind > KRIGHT_RECEIVE ||
            (wr->flags &
             ~(uint32_t)(WR_SEND_FD | WR_COUNT_FD | WR_RECEIVE | WR_QUEUE_FD | WR_KEEP))) {
            return "bad right descriptor";
        }
        r->wr = *wr;
        if ((wr->kind == KRIGHT_RECEIVE && !(wr->flags & WR_SEND_FD)) ||
            ((wr->flags & WR_KEEP) &&
             (wr->kind != KRIGHT_SEND || !(wr->flags & WR_SEND_FD))) ||
            ((wr->kind == KRIGHT_SEND && (wr->flags & WR_SEND_FD)) !=
             ((wr->flags & WR_COUNT_FD) != 0)) ||
            ((wr->kind == KRIGHT_RECEIVE) != ((wr->flags & WR_RECEIVE) != 0)) ||
            ((wr->flags & WR_QUEUE_FD) && wr->kind != KRIGHT_SEND &&
             wr->kind != KRIGHT_RECEIVE) ||
            ((wr->kind == KRIGHT_NONE || wr->kind == KRIGHT_DEAD) && wr->flags)) {
            return "right without its descriptors";
        }
        if (wr->flags & WR_SEND_FD) {
            r->send_fd = wire_in_fd(&in);
            if (!wire_fd_missing(&in, r->send_fd, &r->lost) &&
                !wire_check_fd_ino(r->send_fd, wr->ino)) {
                return "send descriptor does not match its port";
            }
        }
        if (wr->flags & WR_COUNT_FD) {
            r->count_fd = wire_in_fd(&in);
            if (!wire_fd_missing(&in, r->count_fd, &r->lost) &&
                (r->count_fd < 0 || !linux_is_pipe(r->count_fd))) {
                return "bad counting descriptor";
            }
        }
        if (wr->flags & WR_RECEIVE) {
            r->rcv = wire_in_take(&in, sizeof *r->rcv);
            if (r->rcv == NULL) {
                return "truncated receive block";
            }
            r->recv_fd = wire_in_fd(&in);
            r->count_rfd = wire_in_fd(&in);
            /* Both are checked: each one missing counts as lost. */
            bool recv_missing = wire_fd_missing(&in, r->recv_fd, &r->lost);
            bool count_missing = wire_fd_missing(&in, r->count_rfd, &r->lost);
            bool missing = recv_missing || count_missing;
            if (!missing &&
                (r->recv_fd < 0 || r->count_rfd < 0 || !linux_is_pipe(r->count_rfd))) {
                return "bad receive descriptors";
            }
            /* The receive end must be the very peer of the port's send end:
             * otherwise a task holding only a send end could pass off a
             * socket of its own as that port's receive right. */
            uint64_t peer = 0;
            int err = missing ? 0 : linux_unix_peer_ino(r->recv_fd, &peer);
            if (err == -EOPNOTSUPP) {
                return "cannot verify a receive right (no sock_diag in this kernel)";
            }
            if (!missing && (err != 0 || peer != wr->ino)) {
                return "receive descriptor is not the peer of the port's send end";
            }
            r->nonces = wire_in_take(&in, (size_t)r->rcv->nnonces * 8);
            r->transport_inos = wire_in_take(&in, (size_t)r->rcv->ntransports * 8);
            if (r->nonces == NULL || r->transport_inos == NULL ||
                r->rcv->ntransports > WIRE_MSG_FDS) {
                return "truncated receive block";
            }
            r->transport_fds = calloc(r->rcv->ntransports + 1, sizeof(int));
            if (r->transport_fds == NULL) {
                return "out of memory";
            }
            for (uint32_t t = 0; t <= r->rcv->ntransports; t++) {
                r->transport_fds[t] = -1;
            }
            for (uint32_t t = 0; t < r->rcv->ntransports; t++) {
                r->transport_fds[t] = wire_in_fd(&in);
                if (!wire_fd_missing(&in, r->transport_fds[t], &r->lost) &&
                    !wire_check_fd_ino(r->transport_fds[t], r->transport_inos[t])) {
                    return "bad transport descriptor";
                }
            }
            const char *why = wire_parse_requests(&in, r);
            if (why != NULL) {
                return why;
            }
        }
        if (wr->flags & WR_QUEUE_FD) {
            r->queue_fd = wire_in_fd(&in);
            if (!wire_fd_missing(&in, r->queue_fd, &r->lost) &&
                !ipc_qlimit_fd_ok(r->queue_fd)) {
                return "bad queue page";
            }
        }
    }
    out->ool = wire_in_take(&in, (size_t)hdr->nool * sizeof(struct wire_ool));
    if (out->ool == NULL) {
        return "truncated region table";
    }
    for (uint32_t i = 0; i < hdr->nool; i++) {
        out->ool_sealed = i;
        out->ool_fds[i] = -1;
        const struct wire_ool *wo = &out->ool[i];
        bool valid = wo->flags == WO_PORTS || (wo->flags == WO_FD && wo->size > 0) ||
                     (wo->flags == WO_INLINE && wo->size > 0 &&
                      wo->size <= WIRE_OOL_INLINE_MAX) ||
                     (wo->flags == 0 && wo->size == 0);
        if (!valid) {
            return "bad region descriptor";
        }
        if (wo->flags & WO_FD) {
            int fd = out->ool_fds[i] = wire_in_fd(&in);
            bool lost = false;
            if (wire_fd_missing(&in, fd, &lost)) {
                continue; /* the region is lost (wire_adopt) */
            }
            struct stat st;
            int seals = fd < 0 ? -1 : fcntl(fd, F_GET_SEALS);
            int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
            if (seals < 0 || (seals & need) != need || fstat(fd, &st) != 0 ||
                (uint64_t)st.st_size < wo->size) {
                return "region not sealed";
            }
            if (i < WIRE_KEPT_MAX) {
                out->ool_inos[i] = st.st_ino; /* (wire_kept_take) */
            }
        }
    }
    out->ool_sealed = hdr->nool;
    /* The bytes of the regions carried inline, in order. */
    out->inline_data = in.p;
    for (uint32_t i = 0; i < hdr->nool; i++) {
        if (out->ool[i].flags == WO_INLINE &&
            wire_in_take(&in, WIRE_PAD8(out->ool[i].size)) == NULL) {
            return "truncated inline region";
        }
    }
    if (in.p != in.end || in.next_fd != nfds) {
        return "trailing data or descriptors";
    }
    return NULL;
}

/* Checks that the typed body agrees with the rights and regions. */
struct wire_body_check {
    const struct wire_parsed *parsed;
    uint32_t next_right, next_ool;
    const char *error;
};

static mach_msg_return_t wire_body_visit(void *ctx, mach_msg_type_t *type,
                                         char *data, size_t length)
{
    struct wire_body_check *c = ctx;
    const struct wire_hdr *hdr = c->parsed->hdr;
    (void)data;
    if (!type->msgt_inline) {
        if (c->next_ool >= hdr->nool) {
            c->error = "more regions than announced";
            return MACH_SEND_INVALID_DATA;
        }
        const struct wire_ool *wo = &c->parsed->ool[c->next_ool++];
        bool ports = MACH_MSG_TYPE_PORT_ANY(type->msgt_name);
        if (ports != ((wo->flags & WO_PORTS) != 0) ||
            (!ports && wo->size != length)) {
            c->error = "region does not match its descriptor";
            return MACH_SEND_INVALID_DATA;
        }
    }
    if (!MACH_MSG_TYPE_PORT_ANY(type->msgt_name)) {
        return MACH_MSG_SUCCESS;
    }
    enum kright_kind want;
    switch (ipc_received_type(type->msgt_name)) {
    case MACH_MSG_TYPE_PORT_RECEIVE:
        want = KRIGHT_RECEIVE;
        break;
    case MACH_MSG_TYPE_PORT_SEND:
        want = KRIGHT_SEND;
        break;
    default:
        want = KRIGHT_SEND_ONCE;
        break;
    }
    for (uint32_t i = 0; i < type->msgt_number; i++) {
        if (c->next_right >= hdr->nrights) {
            c->error = "more port slots than rights";
            return MACH_SEND_INVALID_DATA;
        }
        uint32_t kind = c->parsed->rights[c->next_right++].wr.kind;
        if (kind != want && kind != KRIGHT_NONE && kind != KRIGHT_DEAD) {
            c->error = "right does not match its descriptor";
            return MACH_SEND_INVALID_DATA;
        }
    }
    return MACH_MSG_SUCCESS;
}

static const char *wire_check_body(const struct wire_parsed *parsed)
{
    const struct wire_hdr *hdr = parsed->hdr;
    mach_msg_type_name_t dest_type = MACH_MSGH_BITS_REMOTE(hdr->bits);
    mach_msg_type_name_t reply_type = MACH_MSGH_BITS_LOCAL(hdr->bits);
    uint32_t reply_kind = parsed->rights[0].wr.kind;
    if (!MACH_MSG_TYPE_PORT_ANY_SEND(dest_type) ||
        (reply_type != 0 && !MACH_MSG_TYPE_PORT_ANY_SEND(reply_type)) ||
        (reply_type == 0 && reply_kind != KRIGHT_NONE) ||
        (reply_kind == KRIGHT_RECEIVE) ||
        (reply_type != 0 && reply_kind != KRIGHT_NONE && reply_kind != KRIGHT_DEAD &&
         (ipc_received_type(reply_type) == MACH_MSG_TYPE_PORT_SEND) !=
             (reply_kind == KRIGHT_SEND))) {
        return "bad header rights";
    }
    if (!(hdr->bits & MACH_MSGH_BITS_COMPLEX)) {
        return hdr->nrights == 1 && hdr->nool == 0 ? NULL : "rights in a simple message";
    }
    struct wire_body_check c = {.parsed = parsed, .next_right = 1};
    /* The walk only reads; it needs a writable pointer for its callers. */
    mach_msg_return_t mr =
        ipc_body_walk((char *)parsed->body, parsed->body_size, wire_body_visit, &c);
    if (mr != MACH_MSG_SUCCESS) {
        return c.error ? c.error : "malformed body";
    }
    if (c.next_right != hdr->nrights || c.next_ool != hdr->nool) {
        return "fewer port slots or regions than announced";
    }
    return NULL;
}

static void wire_parsed_free(struct wire_parsed *parsed)
{
    if (parsed->rights != NULL) {
        for (uint32_t i = 0; i < parsed->hdr->nrights; i++) {
            free(parsed->rights[i].transport_fds);
        }
    }
    if (parsed->rights != parsed->inline_rights) {
        free(parsed->rights);
    }
    if (parsed->ool_fds != parsed->inline_ool_fds) {
        free(parsed->ool_fds);
    }
    parsed->rights = NULL;
    parsed->ool_fds = NULL;
}

/* Takes the requests that came with a receive right into RCV. */
static void wire_adopt_requests(struct wire_parsed_right *r, struct ipc_port_rcv *rcv)
{
    mach_port_name_t *names[2] = {&rcv->nsrequest, &rcv->pdrequest};
    for (unsigned i = 0; i < 2; i++) {
        if (r->request_fds[i] < 0) {
            continue;
        }
        struct ipc_port *notify = ipc_port_adopt(r->request_fds[i], r->requests[i]->ino);
        r->request_fds[i] = -1;
        if (notify != NULL) {
            struct kright right = {
                .kind = KRIGHT_SEND_ONCE, .port = notify, .nonce = r->requests[i]->auth};
            *names[i] = kern_notify_request_adopt(&right);
        }
    }
    rcv->ns_armed = rcv->nsrequest != 0 && (r->rcv->requests & WRCV_NS_ARMED);
}

static void wire_adopt_pending(struct ipc_port *port, struct ipc_port_rcv *rcv, int fd);

/* Turns a parsed receive block into receive state held here. */
static struct ipc_port *wire_adopt_receive(struct wire_parsed_right *r)
{
    struct ipc_port *port = ipc_port_adopt(r->send_fd, r->wr.ino);
    r->send_fd = -1;
    struct ipc_port_rcv *rcv = calloc(1, sizeof *rcv);
    if (port == NULL || rcv == NULL || port->rcv != NULL) {
        free(rcv);
        if (port != NULL) {
            ipc_port_unref(port);
        }
        return NULL;
    }
    rcv->recv_fd = r->recv_fd;
    rcv->count_rfd = r->count_rfd;
    r->recv_fd = r->count_rfd = -1;
    rcv->secret = r->rcv->secret;
    rcv->mscount = r->rcv->mscount;
    rcv->send_made = true; /* as far as this process can tell */
    rcv->qlimit = r->rcv->qlimit;
    rcv->leaving = true; /* in a message until copied out */
    for (uint32_t i = 0; i < r->rcv->nnonces; i++) {
        if (r->nonces[i] != 0 && u64map_insert(&rcv->nonces, r->nonces[i], port)) {
            rcv->sorights++;
        }
    }
    for (uint32_t i = 0; i < r->rcv->ntransports; i++) {
        struct ipc_port *t = ipc_port_adopt(r->transport_fds[i], r->transport_inos[i]);
        r->transport_fds[i] = -1;
        if (t != NULL) {
            ipc_port_transport_add(rcv, t);
            ipc_port_unref(t);
        }
    }
    ipc_port_count_spare_end(port);
    port->rcv = rcv;
    port->secret = rcv->secret;
    port->has_secret = true;
    port->dead = false;
    wire_adopt_requests(r, rcv);
    if (r->queue_fd >= 0) {
        ipc_qlimit_adopt(port, r->queue_fd);
        r->queue_fd = -1;
    }
    if (r->pending_fd >= 0) {
        wire_adopt_pending(port, rcv, r->pending_fd);
        r->pending_fd = -1;
    }
    return port;
}

/* What wire_adopt_transport returns when memory runs out. */
#define WIRE_NO_MEMORY ((struct ipc_port *)-1)

/* Returns a new reference to the port of the send or send-once right R
 * received on RCV (NULL for bootstrap messages): from its send end, which
 * RCV's transport table then keeps for a send-once right or a send right
 * marked WR_KEEP (its senders omit it from then on), or from that table
 * when the sender omitted it.  Returns NULL when the table does not have
 * it, WIRE_NO_MEMORY when memory runs out.  Expects [G]. */
static struct ipc_port *wire_adopt_transport(struct wire_parsed_right *r,
                                             struct ipc_port_rcv *rcv)
{
    struct ipc_port *port;
    if (r->send_fd < 0) {
        port = rcv != NULL ? u64map_lookup(&rcv->transports, r->wr.ino) : NULL;
        if (port != NULL) {
            ipc_port_ref(port);
        }
        return port;
    }
    port = ipc_port_adopt(r->send_fd, r->wr.ino);
    r->send_fd = -1;
    if (port == NULL) {
        return WIRE_NO_MEMORY;
    }
    if (rcv != NULL && (r->wr.kind == KRIGHT_SEND_ONCE || (r->wr.flags & WR_KEEP))) {
        ipc_port_transport_add(rcv, port);
    }
    return port;
}

/* Turns the parsed right R into the kright *OUT.  RCV is the receiving
 * port's state (NULL for bootstrap messages).  Returns NULL, or why the
 * message must be dropped, *OUT then being KRIGHT_NONE (its destruction
 * must find nothing half made).  Expects [G]. */
static const char *wire_adopt_right(struct wire_parsed_right *r,
                                    struct ipc_port_rcv *rcv, struct kright *out)
{
    const struct wire_right *wr = &r->wr;
    *out = (struct kright){.kind = KRIGHT_NONE};
    struct ipc_port *port = NULL;
    if (r->lost) {
        /* Some of its descriptors could not be taken: the right is
         * destroyed (its descriptors are closed); a send-once right whose
         * port is known here still sends its notification. */
        if (wr->kind == KRIGHT_SEND_ONCE && (port = ipc_port_lookup(wr->ino)) != NULL) {
            ipc_notify_send_once(port, wr->auth);
        }
        *out = (struct kright){.kind = KRIGHT_LOST};
        return NULL;
    }
    bool by_reference = r->send_fd < 0;
    switch (wr->kind) {
    case KRIGHT_SEND:
        port = wire_adopt_transport(r, rcv);
        if (port == NULL) {
            /* The port died (its send end pruned), or a peer lies, which
             * only hurts itself: the right arrives dead. */
            *out = (struct kright){.kind = KRIGHT_DEAD};
            return NULL;
        }
        if (port == WIRE_NO_MEMORY) {
            return "out of memory";
        }
        if (by_reference && (!port->has_secret || port->secret != wr->auth)) {
            /* Without its send end, only the secret a send right brought
             * here before vouches for it: anything else is forged (a
             * sender naming a transport it never held a send right to)
             * and arrives dead. */
            ipc_port_unref(port);
            *out = (struct kright){.kind = KRIGHT_DEAD};
            return NULL;
        }
        if (by_reference) {
            if (!ipc_port_srights_adopt_by_reference(port)) {
                /* Nothing here counts it (the spare went when the receive
                 * right came, and the right went away again). */
                ipc_port_unref(port);
                *out = (struct kright){.kind = KRIGHT_DEAD};
                return NULL;
            }
            break;
        }
        if (port->rcv == NULL && (port->srights == 0 || !port->has_secret)) {
            port->secret = wr->auth;
            port->has_secret = true;
        }
        ipc_port_srights_adopt(port, r->count_fd);
        r->count_fd = -1;
        if (wr->flags & WR_KEEP) {
            ipc_port_count_spare_keep(port);
        }
        if (r->queue_fd >= 0) {
            ipc_qlimit_adopt(port, r->queue_fd);
            r->queue_fd = -1;
        }
        break;
    case KRIGHT_SEND_ONCE:
        port = wire_adopt_transport(r, rcv);
        if (port == NULL) {
            out->kind = KRIGHT_DEAD; /* as a send right, above */
            return NULL;
        }
        if (port == WIRE_NO_MEMORY) {
            return "out of memory";
        }
        out->nonce = wr->auth;
        break;
    case KRIGHT_RECEIVE:
        port = wire_adopt_receive(r);
        if (port == NULL) {
            return "receive right for a port already here";
        }
        break;
    default:
        break;
    }
    out->kind = wr->kind;
    out->port = port;
    return NULL;
}

static void wire_close_parsed_fds(struct wire_parsed *parsed, int *fds, unsigned nfds)
{
    if (parsed->rights != NULL) {
        for (uint32_t i = 0; i < parsed->hdr->nrights; i++) {
            struct wire_parsed_right *r = &parsed->rights[i];
            linux_close_untrusted(r->send_fd);
            linux_close_untrusted(r->count_fd);
            linux_close_untrusted(r->queue_fd);
            linux_close_untrusted(r->recv_fd);
            linux_close_untrusted(r->count_rfd);
            linux_close_untrusted(r->request_fds[0]);
            linux_close_untrusted(r->request_fds[1]);
            linux_close_untrusted(r->pending_fd);
            if (r->transport_fds != NULL) {
                for (uint32_t t = 0; t < r->rcv->ntransports; t++) {
                    linux_close_untrusted(r->transport_fds[t]);
                }
            }
        }
        for (uint32_t i = 0; parsed->ool_fds != NULL && i < parsed->hdr->nool; i++) {
            if (i < parsed->ool_sealed) {
                linux_close(parsed->ool_fds[i]); /* a memfd: never blocks */
            } else {
                linux_close_untrusted(parsed->ool_fds[i]);
            }
        }
    }
    for (unsigned i = 0; i < nfds; i++) {
        linux_close_untrusted(fds[i]);
    }
}

/* Maps SIZE bytes of the sealed region FD as the receiver's own memory
 * (private: its writes are copied on write and never reach the file).
 * With INO, the memfd's inode (0: unknown), a large region is noted for
 * vm_reap.h.  Returns the address, or NULL when it cannot be mapped.
 *
 * The mapping is marked sequential: when it is unmapped, the kernel then
 * does not mark each page it drops as recently used (an LRU operation per
 * page, just before the region's release frees the page anyway), which
 * makes the munmap of vm_deallocate about twice cheaper.  Shared memory
 * is never read ahead; the other effect is that, under memory pressure,
 * reclaim gives less weight to this mapping's recent accesses. */
static void *wire_ool_map(int fd, size_t size, uint64_t ino)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    (void)madvise(p, size, MADV_SEQUENTIAL); /* only a hint */
    if (ino != 0) {
        vm_reap_note(p, size, ino); /* freed off the releaser's path */
    }
    return p;
}

/* Builds the kmsg of a parsed message.  Expects [G]. */
static const char *wire_adopt(struct wire_parsed *parsed, struct ipc_port_rcv *rcv,
                              struct kmsg *kmsg)
{
    const struct wire_hdr *hdr = parsed->hdr;
    *kmsg = (struct kmsg){0};
    kmsg->hdr.msgh_bits = hdr->bits;
    kmsg->hdr.msgh_size = hdr->size;
    kmsg->hdr.msgh_id = hdr->id;
    kmsg->body = parsed->body;
    kmsg->body_size = parsed->body_size;
    if ((hdr->nrights > 1 &&
         (kmsg->rights = calloc(hdr->nrights - 1, sizeof *kmsg->rights)) == NULL) ||
        (hdr->nool > 0 && (kmsg->ool = calloc(hdr->nool, sizeof *kmsg->ool)) == NULL)) {
        return "out of memory";
    }
    const char *why = wire_adopt_right(&parsed->rights[0], rcv, &kmsg->reply);
    for (uint32_t i = 1; why == NULL && i < hdr->nrights; i++) {
        why = wire_adopt_right(&parsed->rights[i], rcv, &kmsg->rights[i - 1]);
        kmsg->nrights = i;
    }
    const char *inline_data = parsed->inline_data;
    for (uint32_t i = 0; why == NULL && i < hdr->nool; i++) {
        const struct wire_ool *wo = &parsed->ool[i];
        struct kool *ool = &kmsg->ool[kmsg->nool++];
        *ool = (struct kool){.size = (size_t)wo->size, .memfd = -1, .dealloc = true};
        if (wo->flags == WO_INLINE && rcv != NULL && rcv->space == SPACE_KERNEL) {
            /* Kernel servers take what they need and let the rest go. */
            ool->addr = (void *)inline_data;
            ool->lent = true;
            ool->dealloc = false;
            inline_data += WIRE_PAD8(ool->size);
        } else if (wo->flags == WO_INLINE) {
            void *p = mmap(NULL, ool->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
            if (p == MAP_FAILED) {
                why = "cannot map a region";
                break;
            }
            memcpy(p, inline_data, ool->size);
            inline_data += WIRE_PAD8(ool->size);
            ool->addr = p;
        } else if ((wo->flags & WO_FD) && parsed->ool_fds[i] < 0) {
            ool->dealloc = false; /* lost: the receiver gets address 0 and
                                     MACH_MSG_VM_SPACE (ipc_kmsg_copyout) */
        } else if (wo->flags & WO_FD) {
            /* The user's regions are released off its path (vm_reap.h);
             * the kernel space's are read from the memfd and released
             * at once by a thread that has more to serve. */
            bool user = rcv != NULL && rcv->space != SPACE_KERNEL;
            void *p = wire_ool_map(parsed->ool_fds[i], ool->size,
                                   user && i < WIRE_KEPT_MAX ? parsed->ool_inos[i] : 0);
            if (p == NULL) {
                why = "cannot map a region";
                break;
            }
            ool->addr = p;
        }
    }
    return why;
}

/* When a received message says its descriptors continue in an auxiliary
 * socket (its last attached one), reads them from it without blocking.
 * Returns the whole array (FDS itself, or a new one the caller frees) and
 * its length in *NFDS; *EXCESS is set when more came than announced (they
 * are closed, the message must be dropped).  A message with too few is
 * left for the parser to reject. */
static int *wire_gather_aux(const char *buf, ssize_t len, int *fds, unsigned *nfds,
                            bool *excess, bool *short_fds)
{
    *excess = false;
    const struct wire_hdr *hdr = (const struct wire_hdr *)buf;
    uint64_t ino;
    if (len < (ssize_t)sizeof *hdr || hdr->magic != WIRE_MAGIC ||
        !(hdr->flags & WIRE_HDR_AUX) || *nfds != WIRE_MAX_FDS ||
        hdr->nfds <= WIRE_MAX_FDS || hdr->nfds > WIRE_MSG_FDS ||
        !linux_socket_ino(fds[WIRE_MAX_FDS - 1], &ino)) {
        return fds;
    }
    int *all = malloc(hdr->nfds * sizeof *all);
    if (all == NULL) {
        return fds;
    }
    int aux = fds[WIRE_MAX_FDS - 1];
    unsigned n = WIRE_MAX_FDS - 1;
    memcpy(all, fds, n * sizeof *all);
    for (;;) {
        int chunk[WIRE_MAX_FDS];
        unsigned k = 0;
        int truncated = 0;
        char byte;
        ssize_t got = wire_recvmsg(aux, &byte, 1, chunk, &k, &truncated, MSG_DONTWAIT);
        *short_fds |= (truncated & MSG_CTRUNC) != 0;
        if (got <= 0 && k == 0) {
            break; /* end of the stream, or nothing more (a lying sender) */
        }
        for (unsigned i = 0; i < k; i++) {
            if (n < hdr->nfds) {
                all[n++] = chunk[i];
            } else {
                linux_close_untrusted(chunk[i]);
                *excess = true;
            }
        }
        if (truncated || *excess) {
            break;
        }
    }
    linux_close(aux);
    *nfds = n;
    return all;
}

static mach_msg_return_t wire_recv_one(int fd, int flags, char *buf, int *fds,
                                       unsigned *nfds, ssize_t *len, bool *short_fds)
{
    int truncated = 0;
    *len = wire_recvmsg(fd, buf, WIRE_BUF_SIZE, fds, nfds, &truncated, flags);
    *short_fds = (truncated & MSG_CTRUNC) != 0;
    if (*len < 0) {
        return errno == EAGAIN ? MACH_RCV_TIMED_OUT
               : errno == EINTR ? MACH_RCV_INTERRUPTED
                                : MACH_RCV_PORT_DIED;
    }
    if (*len == 0 && *nfds == 0) {
        /* Zero bytes are either the end of the stream (we shut the receive
         * end down: the right was destroyed) or an empty datagram, which
         * any holder of the send end can send and which is just malformed
         * (libmach never sends fewer than a header). */
        struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP))) {
            return MACH_RCV_PORT_DIED;
        }
    }
    if (truncated & MSG_TRUNC) {
        *len = -1; /* parsed as malformed */
    }
    return MACH_MSG_SUCCESS;
}

/* Keeps the memfds of the first regions of KMSG, just received into the
 * kernel space from PARSED, in place of the previous message's: taken
 * out of PARSED (which closes the rest). */
static void wire_kept_take(struct wire_parsed *parsed, const struct kmsg *kmsg)
{
    wire_kept_clear();
    for (uint32_t i = 0; i < kmsg->nool && i < WIRE_KEPT_MAX; i++) {
        const struct kool *ool = &kmsg->ool[i];
        int fd = parsed->ool_fds[i];
        if (!(parsed->ool[i].flags & WO_FD) || fd < 0 || ool->addr == NULL || ool->lent) {
            continue;
        }
        if (wire_nkept == 0) {
            pthread_once(&wire_kept_once, wire_kept_key_create);
            pthread_setspecific(wire_kept_key, wire_kept);
        }
        wire_kept[wire_nkept++] = (struct wire_kept){
            .addr = ool->addr, .size = ool->size, .fd = fd, .ino = parsed->ool_inos[i]};
        parsed->ool_fds[i] = -1;
    }
}

/* Checks the datagram BUF[0..LEN) with its descriptors FDS[0..NFDS) as a
 * message to the port whose receive state is RCV, and makes *KMSG of it
 * (authenticated, unless PORT is NULL: a dead receiver's queue).
 * With LOCKED, expects [G] held; otherwise takes it after parsing (which
 * makes system calls).  Returns with [G] held either way: NULL, or why
 * the message was dropped (logged, its descriptors closed). */
static const char *wire_accept(struct ipc_port *port, struct ipc_port_rcv *rcv,
                               const char *buf, ssize_t len, int *fds, unsigned nfds,
                               bool short_fds, bool locked, struct kmsg *kmsg)
{
    bool excess;
    int *all = wire_gather_aux(buf, len, fds, &nfds, &excess, &short_fds);
    struct wire_parsed parsed;
    parsed.hdr = NULL;
    parsed.rights = NULL;
    parsed.ool_fds = NULL;
    const char *why = len < 0  ? "message truncated"
                      : excess ? "more descriptors than announced"
                               : wire_parse(buf, (size_t)len, all, nfds, short_fds, &parsed);
    if (why == NULL) {
        why = wire_check_body(&parsed);
    }
    if (!locked) {
        ipc_lock();
    }
    if (why == NULL) {
        const struct wire_hdr *hdr = parsed.hdr;
        bool ok = port == NULL ||
                  (hdr->auth_kind == WIRE_AUTH_SEND
                       ? hdr->auth == rcv->secret
                       : hdr->auth_kind == WIRE_AUTH_SEND_ONCE &&
                             ipc_port_rcv_consume_nonce(rcv, hdr->auth));
        if (!ok) {
            why = "wrong authenticator (forged or revoked right)";
        } else {
            if ((hdr->flags & WIRE_HDR_COUNTED) && port != NULL) {
                ipc_qlimit_put_back(port);
            }
            why = wire_adopt(&parsed, rcv, kmsg);
            if (why != NULL) {
                ipc_kmsg_destroy(kmsg);
            }
        }
    }
    if (why == NULL) {
        if (rcv != NULL && rcv->space == SPACE_KERNEL) {
            wire_kept_take(&parsed, kmsg);
        }
        if (nfds > 0) {
            wire_close_parsed_fds(&parsed, NULL, 0); /* what was not adopted */
        }
    } else {
        wire_drop_log("%s", why);
        wire_close_parsed_fds(&parsed, all, nfds);
    }
    wire_parsed_free(&parsed);
    if (all != fds) {
        free(all);
    }
    return why;
}

/* How deep in kept messages this thread is parsing (wire_adopt_pending). */
static __thread unsigned wire_pending_depth;

/* Takes the message kept at the head of PORT's queue from the socket FD
 * (closed) that came with its receive state RCV, just adopted: checked
 * as any message to PORT (its secret vouches for it), it becomes RCV's
 * pending message, the first a receive takes.  One that fails is
 * dropped, as it would be from the queue.  Expects [G]. */
static void wire_adopt_pending(struct ipc_port *port, struct ipc_port_rcv *rcv, int fd)
{
    int queued = 0;
    char *buf = NULL;
    int fds[WIRE_MAX_FDS];
    unsigned nfds = 0;
    int truncated = 0;
    ssize_t len = -1;
    /* Exactly one message, the socket's whole content, read at once. */
    if (wire_pending_depth < WIRE_PENDING_DEPTH && ioctl(fd, SIOCINQ, &queued) == 0 &&
        queued >= (int)sizeof(struct wire_hdr) && (size_t)queued <= WIRE_BUF_SIZE &&
        (buf = malloc((size_t)queued)) != NULL) {
        len = wire_recvmsg(fd, buf, (size_t)queued, fds, &nfds, &truncated, MSG_DONTWAIT);
    }
    linux_close(fd); /* (a local socket: checked when parsed) */
    const struct wire_hdr *hdr = (const struct wire_hdr *)buf;
    if (buf == NULL || len != queued || (truncated & MSG_TRUNC) ||
        hdr->auth_kind != WIRE_AUTH_SEND || (hdr->flags & ~WIRE_HDR_AUX)) {
        wire_drop_log(wire_pending_depth >= WIRE_PENDING_DEPTH ? "kept messages nested too deep"
                                                               : "bad kept message");
        for (unsigned i = 0; i < nfds; i++) {
            linux_close_untrusted(fds[i]);
        }
        free(buf);
        return;
    }
    struct kmsg kmsg;
    wire_pending_depth++;
    const char *why = wire_accept(port, rcv, buf, len, fds, nfds, (truncated & MSG_CTRUNC) != 0,
                                  true, &kmsg);
    wire_pending_depth--;
    struct kmsg *kept = why == NULL ? malloc(sizeof *kept) : NULL;
    if (kept == NULL) {
        if (why == NULL) {
            ipc_kmsg_destroy(&kmsg); /* out of memory: as a receive would */
        }
        free(buf);
        return;
    }
    kmsg.body_owned = buf; /* (numbered when taken, from 0 as GNU Mach
                              numbers a moved port's messages) */
    *kept = kmsg;
    rcv->pending = kept;
}

mach_msg_return_t wire_recv(struct ipc_port *port, int timeout_ms,
                            bool interruptible, struct kmsg *kmsg)
{
    char *buf = wire_thread_buf();
    if (buf == NULL) {
        return MACH_RCV_TIMED_OUT;
    }
    /* Pinned by the caller: still valid if the right is destroyed
     * meanwhile (then it is an orphan). */
    struct ipc_port_rcv *rcv = port->rcv;
    int fd = rcv->recv_fd;
    uint64_t deadline = timeout_ms > 0 ? linux_now_ms() + (uint64_t)timeout_ms : 0;
    for (;;) {
        int fds[WIRE_MAX_FDS];
        unsigned nfds = 0;
        ssize_t len;
        int flags = timeout_ms >= 0 ? MSG_DONTWAIT : 0;
        bool short_fds;
        mach_msg_return_t mr = wire_recv_one(fd, flags, buf, fds, &nfds, &len, &short_fds);
        if (mr == MACH_RCV_TIMED_OUT) {
            if (timeout_ms == 0) {
                return mr;
            }
            int w = wire_wait_fd(fd, POLLIN, deadline);
            if (w == -ETIMEDOUT) {
                return MACH_RCV_TIMED_OUT;
            }
            if (w == -EINTR && interruptible) {
                return MACH_RCV_INTERRUPTED;
            }
            continue;
        }
        if (mr == MACH_RCV_INTERRUPTED) {
            if (interruptible) {
                return mr;
            }
            continue;
        }
        if (mr != MACH_MSG_SUCCESS) {
            return mr;
        }
        if (wire_accept(port, rcv, buf, len, fds, nfds, short_fds, false, kmsg) != NULL) {
            ipc_unlock();
            continue;
        }
        if (atomic_load(&rcv->orphan)) {
            /* The right was destroyed while this thread read its last
             * message: that message dies with it, as the drain would have
             * destroyed it. */
            ipc_kmsg_destroy(kmsg);
            ipc_unlock();
            return MACH_RCV_PORT_DIED;
        }
        if (rcv->escrow_after_receive) {
            rcv->escrow_after_receive = false;
            ipc_janitor_escrow(port, ipc_janitor_own_request(rcv)); /* it kept a transport */
        }
        /* Delivered: the caller goes on under [G]. */
        kmsg->hdr.msgh_seqno = rcv->seqno++;
        return MACH_MSG_SUCCESS;
    }
}

void wire_drain_locked(struct ipc_port *port, struct ipc_port_rcv *rcv)
{
    /* A drain may run inside the parse of a kept message (one that fails
     * destroys the receive rights it carries): the messages of this queue
     * are not nested in it, so their own kept messages count from 0, and
     * are destroyed, their send-once rights notified, not closed as
     * nested too deep. */
    unsigned outer_depth = wire_pending_depth;
    wire_pending_depth = 0;
    char *buf = NULL;
    for (;;) {
        struct pollfd pfd = {.fd = rcv->recv_fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLIN)) {
            break;
        }
        if (buf == NULL && (buf = malloc(WIRE_BUF_SIZE)) == NULL) {
            break; /* the kernel will close what the queue holds */
        }
        int fds[WIRE_MAX_FDS];
        unsigned nfds = 0;
        ssize_t len;
        bool short_fds;
        if (wire_recv_one(rcv->recv_fd, MSG_DONTWAIT, buf, fds, &nfds, &len, &short_fds) !=
            MACH_MSG_SUCCESS) {
            break;
        }
        struct kmsg kmsg;
        if (wire_accept(port, rcv, buf, len, fds, nfds, short_fds, true,
                        &kmsg) == NULL) {
            ipc_kmsg_destroy(&kmsg);
        }
    }
    free(buf);
    wire_pending_depth = outer_depth;
}

/* wire_send_bootstrap, with sendmsg's FLAGS. */
static mach_msg_return_t wire_send_bootstrap_flags(int fd, struct kright *rights, unsigned n,
                                                   int flags)
{
    struct wire_out out;
    wire_out_init(&out);
    struct wire_hdr hdr = {.magic = WIRE_MAGIC,
                           .auth_kind = WIRE_AUTH_BOOTSTRAP,
                           .bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                           .size = sizeof(mach_msg_header_t),
                           .nrights = n + 1};
    uint64_t ino;
    struct kright none = {.kind = KRIGHT_NONE};
    wire_put_right(&out, &none, NULL, &ino);
    for (unsigned i = 0; i < n; i++) {
        wire_put_right(&out, &rights[i], NULL, &ino);
    }
    if (out.overflow) {
        wire_out_fini(&out);
        return MACH_SEND_NO_BUFFER;
    }
    hdr.nfds = out.nfds;
    hdr.desc_size = (uint32_t)out.len;
    struct iovec iov[2] = {{.iov_base = &hdr, .iov_len = sizeof hdr},
                           {.iov_base = out.desc, .iov_len = out.len}};
    int rc = wire_sendmsg(fd, iov, 2, out.fds, out.nfds, flags);
    int err = errno;
    wire_out_fini(&out);
    if (rc < 0) {
        return err == EAGAIN ? MACH_SEND_NO_BUFFER : MACH_SEND_INVALID_DEST;
    }
    struct kmsg k = {.rights = rights, .nrights = n};
    wire_release_sent(&k, fd);
    return MACH_MSG_SUCCESS;
}

mach_msg_return_t wire_send_bootstrap(int fd, struct kright *rights, unsigned n)
{
    return wire_send_bootstrap_flags(fd, rights, n, 0);
}

mach_msg_return_t wire_send_bootstrap_nowait(int fd, struct kright *rights, unsigned n)
{
    return wire_send_bootstrap_flags(fd, rights, n, MSG_DONTWAIT);
}

int wire_recv_bootstrap(int fd, struct kright *rights, unsigned max)
{
    char *buf = wire_thread_buf();
    int fds[WIRE_MAX_FDS];
    unsigned nfds = 0;
    ssize_t len;
    bool short_fds = false;
    if (buf == NULL) {
        return -1;
    }
    mach_msg_return_t mr;
    do {
        mr = wire_recv_one(fd, 0, buf, fds, &nfds, &len, &short_fds);
    } while (mr == MACH_RCV_INTERRUPTED);
    if (mr != MACH_MSG_SUCCESS) {
        return -1;
    }
    struct wire_parsed parsed;
    parsed.hdr = NULL;
    parsed.rights = NULL;
    parsed.ool_fds = NULL;
    const char *why = len < 0 || short_fds ? "truncated"
                                           : wire_parse(buf, (size_t)len, fds, nfds, false, &parsed);
    if (why == NULL && (parsed.hdr->auth_kind != WIRE_AUTH_BOOTSTRAP ||
                        parsed.hdr->nrights - 1 > max || parsed.hdr->nool != 0)) {
        why = "not a bootstrap message";
    }
    int n = -1;
    if (why == NULL) {
        ipc_lock();
        n = (int)parsed.hdr->nrights - 1;
        for (int i = 0; i < n && why == NULL; i++) {
            why = wire_adopt_right(&parsed.rights[i + 1], NULL, &rights[i]);
        }
        ipc_unlock();
    }
    if (why != NULL) {
        wire_drop_log("bootstrap: %s", why);
        n = -1;
    }
    wire_close_parsed_fds(&parsed, why ? fds : NULL, why ? nfds : 0);
    wire_parsed_free(&parsed);
    return n;
}

mach_msg_return_t wire_send_notify_locked(struct ipc_port *port, uint64_t nonce,
                                          mach_msg_id_t id)
{
    return wire_send_notify_fd(port->send_fd, nonce, id);
}

mach_msg_return_t wire_send_notify_fd(int send_fd, uint64_t nonce, mach_msg_id_t id)
{
    struct wire_hdr hdr = {
        .magic = WIRE_MAGIC,
        .auth_kind = WIRE_AUTH_SEND_ONCE,
        .auth = nonce,
        .bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
        .size = sizeof(mach_msg_header_t),
        .id = id,
        .nrights = 1,
        .desc_size = sizeof(struct wire_right),
    };
    struct wire_right none = {.kind = KRIGHT_NONE};
    struct iovec iov[2] = {{.iov_base = &hdr, .iov_len = sizeof hdr},
                           {.iov_base = &none, .iov_len = sizeof none}};
    if (wire_sendmsg(send_fd, iov, 2, NULL, 0, MSG_DONTWAIT) < 0) {
        return errno == EAGAIN ? MACH_SEND_TIMED_OUT : MACH_SEND_INVALID_DEST;
    }
    return MACH_MSG_SUCCESS;
}
