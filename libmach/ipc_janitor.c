/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_janitor.h"

#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <mach/notify.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc_notify.h"
#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_wire.h"
#include "ipc_wire_format.h"
#include "kern_notify.h"
#include "linux.h"
#include "protocol.h"
#include "u64map.h"

#define EXPORT __attribute__((visibility("default")))

#define JANITOR_FIRST_SLOTS 256

/* The table machd reads: slot I is free when its nonce is 0. */
struct janitor_slot {
    _Atomic uint64_t key;   /* the port's serial (| HELL_JANITOR_SLOT_RECEIVE) */
    _Atomic uint64_t nonce; /* the right's nonce (1 for a receive right) */
};

_Static_assert(HELL_JANITOR_ESCROW_FDS == WIRE_MAX_FDS,
               "an escrow carries what one message's sendmsg carries");
_Static_assert(sizeof(struct janitor_slot) == sizeof(struct hell_janitor_slot),
               "the table is machd's struct hell_janitor_slot");

static char *janitor_path;           /* [c] HELL_INSTANCE, or NULL */
static bool janitor_failed;          /* [G] gave up: listing nothing */
static int janitor_sock = -1;        /* [G] connection to machd */
static int janitor_table_fd = -1;    /* [G] the table's memfd */
static struct janitor_slot *janitor_slots; /* [G] the table, mapped */
static size_t janitor_nslots;        /* [G] its size in slots */
static size_t janitor_top;           /* [G] slots ever used */
static uint32_t *janitor_free;       /* [G] freed slots, a stack */
static size_t janitor_nfree, janitor_free_cap; /* [G] */
static struct u64map janitor_by_nonce; /* [G] nonce -> slot + 1 */
static uint64_t janitor_escrow_id = 1; /* [G] the last escrow's id */

void ipc_janitor_init(void)
{
    const char *path = getenv(HELL_INSTANCE_ENV);
    if (path != NULL && path[0] != '\0') {
        janitor_path = strdup(path);
    }
}

const char *ipc_instance_path(void)
{
    return janitor_path;
}

static void janitor_give_up(const char *why)
{
    fprintf(stderr, "hell[%d]: send-once rights not listed with the instance: %s\n",
            (int)getpid(), why);
    janitor_failed = true;
}

/* Connects to machd and hands it the table.  Returns whether the task
 * lists its rights (false outside an instance or once it gave up). */
static bool janitor_connect(void)
{
    if (janitor_sock >= 0) {
        return true;
    }
    if (janitor_path == NULL || janitor_failed) {
        return false;
    }
    size_t size = JANITOR_FIRST_SLOTS * sizeof(struct janitor_slot);
    /* Sealed against shrinking: machd maps it after our death, and a
     * table made shorter under it would fault machd. */
    int table = memfd_create("hell-janitor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *slots = MAP_FAILED;
    if (table >= 0 && ftruncate(table, (off_t)size) == 0 &&
        fcntl(table, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) == 0) {
        slots = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, table, 0);
    }
    /* Non-blocking: [G] is held, and a full backlog must not stop us. */
    int sock = slots == MAP_FAILED ? -1 : linux_connect_own(janitor_path, SOCK_NONBLOCK);
    struct hell_request req = {.magic = HELL_PROTO_MAGIC, .op = HELL_OP_JANITOR};
    struct iovec iov = {.iov_base = &req, .iov_len = sizeof req};
    if (sock < 0 || wire_sendmsg(sock, &iov, 1, &table, 1, MSG_DONTWAIT) != (int)sizeof req) {
        if (errno != EAGAIN && errno != EINTR) {
            janitor_give_up(strerror(errno));
        } /* else machd's backlog is full: the next right tries again */
        if (slots != MAP_FAILED) {
            munmap(slots, size);
        }
        if (table >= 0) {
            linux_close(table);
        }
        if (sock >= 0) {
            linux_close(sock);
        }
        return false;
    }
    janitor_sock = sock;
    janitor_table_fd = table;
    janitor_slots = slots;
    janitor_nslots = JANITOR_FIRST_SLOTS;
    return true;
}

/* Sends machd MSG, LEN bytes without descriptors, without waiting:
 * lost when machd is behind (each caller says what then). */
static void janitor_tell(const void *msg, size_t len)
{
    (void)send(janitor_sock, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Shows machd PORT's send end, once per port.  Returns whether it knows
 * it. */
static bool janitor_show_port(struct ipc_port *port)
{
    if (port->janitor_known) {
        return true;
    }
    struct hell_janitor_port reg = {.magic = HELL_PROTO_MAGIC, .key = port->serial};
    struct iovec iov = {.iov_base = &reg, .iov_len = sizeof reg};
    /* A full connection (machd behind) leaves this right unlisted; the
     * next right to the port tries again. */
    port->janitor_known =
        wire_sendmsg(janitor_sock, &iov, 1, &port->send_fd, 1, MSG_DONTWAIT) == (int)sizeof reg;
    return port->janitor_known;
}

void ipc_janitor_port_freed(struct ipc_port *port)
{
    if (!port->janitor_known || janitor_sock < 0) {
        return;
    }
    struct hell_janitor_port forget = {
        .magic = HELL_PROTO_MAGIC, .flags = HELL_JANITOR_FORGET, .key = port->serial};
    /* Lost when machd is behind: it then keeps the send end until this
     * task ends, or until the port dies. */
    janitor_tell(&forget, sizeof forget);
    port->janitor_known = false;
}

/* Gives SLOT back for reuse. */
static void janitor_slot_put(size_t slot)
{
    if (janitor_nfree == janitor_free_cap) {
        size_t cap = janitor_free_cap ? janitor_free_cap * 2 : 64;
        uint32_t *p = realloc(janitor_free, cap * sizeof *p);
        if (p == NULL) {
            return; /* the slot is lost to reuse, not to correctness */
        }
        janitor_free = p;
        janitor_free_cap = cap;
    }
    janitor_free[janitor_nfree++] = (uint32_t)slot;
}

/* A free slot, the table grown if needed.  Returns its index, or -1. */
static long janitor_slot_take(void)
{
    if (janitor_nfree > 0) {
        return janitor_free[--janitor_nfree];
    }
    if (janitor_top == janitor_nslots) {
        size_t old = janitor_nslots * sizeof(struct janitor_slot);
        void *p = MAP_FAILED;
        if (janitor_nslots < HELL_JANITOR_MAX_SLOTS &&
            ftruncate(janitor_table_fd, (off_t)(old * 2)) == 0) {
            p = mremap(janitor_slots, old, old * 2, MREMAP_MAYMOVE);
        }
        if (p == MAP_FAILED) {
            return -1;
        }
        janitor_slots = p;
        janitor_nslots *= 2;
    }
    return (long)janitor_top++;
}

/* Lists KEY with NONCE in a free slot.  Returns 1 + the slot, or 0 when
 * the table cannot grow. */
static uint32_t janitor_list(uint64_t key, uint64_t nonce)
{
    long slot = janitor_slot_take();
    if (slot < 0) {
        return 0;
    }
    /* The key before the nonce that makes the slot live. */
    atomic_store_explicit(&janitor_slots[slot].key, key, memory_order_relaxed);
    atomic_store_explicit(&janitor_slots[slot].nonce, nonce, memory_order_release);
    return (uint32_t)slot + 1;
}

/* Frees SLOT: machd no longer sees what it listed. */
static void janitor_unlist(size_t slot)
{
    atomic_store_explicit(&janitor_slots[slot].nonce, 0, memory_order_release);
    janitor_slot_put(slot);
}

void ipc_janitor_hold(struct ipc_port *port, uint64_t nonce)
{
    if (!janitor_connect() || !janitor_show_port(port) ||
        u64map_lookup(&janitor_by_nonce, nonce) != NULL) {
        return;
    }
    uint32_t slot = janitor_list(port->serial, nonce);
    if (slot != 0 && !u64map_insert(&janitor_by_nonce, nonce, (void *)(uintptr_t)slot)) {
        janitor_unlist(slot - 1);
    }
}

/* Lists PORT's receive right RCV (not listed yet) and shows machd its
 * receive end; escrows its port-destroyed request, if any. */
static void janitor_list_receive(struct ipc_port *port, struct ipc_port_rcv *rcv)
{
    if (rcv->kobject_type != IKOT_NONE || !janitor_connect()) {
        return;
    }
    /* Listed before machd gets the end: machd closes the ends whose
     * right its table does not list. */
    uint32_t slot = janitor_list(port->serial | HELL_JANITOR_SLOT_RECEIVE, 1);
    struct hell_janitor_port reg = {
        .magic = HELL_PROTO_MAGIC, .flags = HELL_JANITOR_RECEIVE, .key = port->serial};
    struct iovec iov = {.iov_base = &reg, .iov_len = sizeof reg};
    if (slot != 0 && wire_sendmsg(janitor_sock, &iov, 1, &rcv->recv_fd, 1, MSG_DONTWAIT) !=
                         (int)sizeof reg) {
        /* machd behind: the port goes unlisted until its next right. */
        janitor_unlist(slot - 1);
        slot = 0;
    }
    rcv->janitor_slot = slot;
    if (slot != 0 && rcv->pdrequest != 0) {
        ipc_janitor_escrow(port, ipc_janitor_own_request(rcv));
    }
}

void ipc_janitor_keep_receive(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    /* Not while the right is on its way out (a send right to the port
     * made for the same message, say): listed again, it could make
     * machd destroy the port at its next holder. */
    if (rcv != NULL && rcv->janitor_slot == 0 && !atomic_load(&rcv->leaving)) {
        janitor_list_receive(port, rcv);
    }
}

void ipc_janitor_keep_kept(struct kmsg *kmsg)
{
    for (unsigned i = 0; i <= kmsg->nrights; i++) {
        const struct kright *right = i == 0 ? &kmsg->reply : &kmsg->rights[i - 1];
        if (right->kind == KRIGHT_SEND_ONCE) {
            ipc_janitor_hold(right->port, right->nonce);
        } else if (right->kind == KRIGHT_RECEIVE) {
            struct ipc_port_rcv *rcv = right->port->rcv;
            if (rcv->janitor_slot == 0) {
                janitor_list_receive(right->port, rcv);
            }
            if (rcv->pending != NULL) {
                ipc_janitor_keep_kept(rcv->pending); /* (nested: bounded) */
            }
        }
    }
}

void ipc_janitor_unkeep_kept(struct kmsg *kmsg)
{
    for (unsigned i = 0; i < kmsg->nrights; i++) {
        struct kright *right = &kmsg->rights[i];
        if (right->kind == KRIGHT_RECEIVE) {
            ipc_janitor_forget_receive(right->port, right->port->rcv, true);
            if (right->port->rcv->pending != NULL) {
                ipc_janitor_unkeep_kept(right->port->rcv->pending);
            }
        }
    }
}

/* Voids PORT's escrow: its slot lists the right alone again, and machd
 * may close what it kept (a message lost when machd is behind: the slot
 * is what counts). */
static void janitor_escrow_void(struct ipc_port *port, struct ipc_port_rcv *rcv)
{
    if (rcv->escrowed) {
        atomic_store_explicit(&janitor_slots[rcv->janitor_slot - 1].nonce, 1,
                              memory_order_release);
        struct hell_janitor_escrow forget = {.magic = HELL_PROTO_MAGIC,
                                             .flags = HELL_JANITOR_ESCROW | HELL_JANITOR_FORGET,
                                             .key = port->serial};
        janitor_tell(&forget, sizeof forget);
    }
    rcv->escrowed = rcv->escrow_stale = false;
    rcv->escrow_pending = NULL;
}

/* Whether KEPT, the message MACH_RCV_LARGE keeps on a port, can go in
 * the port's escrow: not with a send right (machd would hold a counting
 * descriptor, which hides no-senders as long as the escrow lasts), nor
 * with a receive right (the table lists it as this task's: machd would
 * destroy its queue at the death, and hand it out), nor when its body
 * and regions alone exceed HELL_JANITOR_ESCROW_MAX (checked first: the
 * escrow would copy its regions into memfds under [G] only to find the
 * datagram too large).  Stores the nonces of its send-once rights,
 * which machd must not notify once the escrow is sent, in NONCES unless
 * NULL (room for 1 + KEPT's rights), their number in *N. */
static bool janitor_pending_escrowable(const struct kmsg *kept, uint64_t *nonces, uint32_t *n)
{
    *n = 0;
    /* A lower bound of what the escrow's datagram counts for it
     * (wire_send_copy): port arrays travel as rights, not bytes. */
    size_t bytes = kept->body_size;
    for (unsigned i = 0; i < kept->nool; i++) {
        bytes += kept->ool[i].ports ? 0 : kept->ool[i].size;
    }
    if (bytes > HELL_JANITOR_ESCROW_MAX) {
        return false;
    }
    for (unsigned i = 0; i <= kept->nrights; i++) {
        const struct kright *right = i == 0 ? &kept->reply : &kept->rights[i - 1];
        if (right->kind == KRIGHT_SEND || right->kind == KRIGHT_RECEIVE) {
            return false;
        }
        if (right->kind == KRIGHT_SEND_ONCE && nonces != NULL) {
            nonces[*n] = right->nonce;
        }
        *n += right->kind == KRIGHT_SEND_ONCE;
    }
    return true;
}

/* Sends machd a copy of the port-destroyed notification of PORT
 * (receive right listed here) to NOTIFY (NONCE; NS_NONCE, the
 * no-senders request's, or 0) as its escrow ID, with the message kept
 * on the port if it may go (janitor_pending_escrowable) and fits, else
 * without.  Returns whether it went; *WITH_PENDING says whether the kept
 * message went too. */
static bool janitor_escrow_send(struct ipc_port *port, struct ipc_port *notify, uint64_t nonce,
                                uint64_t ns_nonce, uint64_t id, bool *with_pending)
{
    /* The head, then the nonces of the kept message's send-once rights. */
    const struct kmsg *kept = port->rcv->pending;
    size_t most = kept != NULL ? kept->nrights + 1 : 0;
    struct hell_janitor_escrow *escrow = malloc(sizeof *escrow + most * sizeof(uint64_t));
    if (escrow == NULL) {
        return false;
    }
    *escrow = (struct hell_janitor_escrow){.magic = HELL_PROTO_MAGIC,
                                           .flags = HELL_JANITOR_ESCROW,
                                           .key = port->serial,
                                           .notify_key = notify->serial,
                                           .id = id,
                                           .nonces = {nonce, ns_nonce}};
    uint32_t npending = 0;
    *with_pending =
        kept != NULL && janitor_pending_escrowable(kept, (uint64_t *)(escrow + 1), &npending);
    bool sent = false;
    if (*with_pending) {
        escrow->npending = npending;
        sent = kern_notify_port_destroyed_copy(port, notify, nonce, janitor_sock, escrow,
                                               sizeof *escrow + npending * sizeof(uint64_t),
                                               HELL_JANITOR_ESCROW_MAX, true) == MACH_MSG_SUCCESS;
        *with_pending = sent;
    }
    if (!sent) {
        escrow->npending = 0;
        sent = kern_notify_port_destroyed_copy(port, notify, nonce, janitor_sock, escrow,
                                               sizeof *escrow, HELL_JANITOR_ESCROW_MAX,
                                               false) == MACH_MSG_SUCCESS;
    }
    free(escrow);
    return sent;
}

/* Makes PORT's escrow again, the port-destroyed request being the
 * kernel-space send-once right REQUEST. */
static void janitor_escrow_make(struct ipc_port *port, struct ipc_port_rcv *rcv,
                                mach_port_name_t request)
{
    struct ipc_port *notify, *ns_notify;
    uint64_t nonce, ns_nonce = 0;
    rcv->escrow_after_receive = false; /* made now, from the state as it is */
    if (request == 0 || !kern_notify_request_right(request, &notify, &nonce) || notify == port) {
        janitor_escrow_void(port, rcv);
        return;
    }
    if (rcv->nsrequest == 0 || !kern_notify_request_right(rcv->nsrequest, &ns_notify, &ns_nonce)) {
        ns_nonce = 0;
    }
    bool with_pending = false;
    if (!janitor_show_port(notify) ||
        !janitor_escrow_send(port, notify, nonce, ns_nonce, janitor_escrow_id + 1, &with_pending)) {
        /* The last one stays current while it honours the same request
         * (one naming a request since replaced would hand the port to
         * the holder of a right the task was given back), and carries no
         * message received since (which would come twice). */
        bool pending_gone = rcv->escrow_pending != NULL && rcv->escrow_pending != rcv->pending;
        if (rcv->escrowed && (rcv->escrow_nonce != nonce || pending_gone)) {
            janitor_escrow_void(port, rcv);
        }
        rcv->escrow_stale = true;
        return;
    }
    /* Current once sent: machd keeps the last two of a port, so a death
     * before this store finds the previous one still current. */
    janitor_escrow_id++;
    atomic_store_explicit(&janitor_slots[rcv->janitor_slot - 1].nonce, janitor_escrow_id,
                          memory_order_release);
    rcv->escrowed = true;
    rcv->escrow_stale = false;
    rcv->escrow_nonce = nonce;
    rcv->escrow_pending = with_pending ? rcv->pending : NULL;
}

void ipc_janitor_pending_changed(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    if (rcv == NULL || !(rcv->escrowed || rcv->escrow_stale)) {
        return;
    }
    uint32_t n;
    bool changes = rcv->escrow_stale ||
                   (rcv->pending != NULL ? janitor_pending_escrowable(rcv->pending, NULL, &n)
                                         : rcv->escrow_pending != NULL);
    if (changes) {
        ipc_janitor_escrow(port, ipc_janitor_own_request(rcv));
    }
}

void ipc_janitor_escrow(struct ipc_port *port, mach_port_name_t request)
{
    struct ipc_port_rcv *rcv = port->rcv;
    if (rcv != NULL && rcv->janitor_slot != 0) {
        janitor_escrow_make(port, rcv, request);
    }
}

void ipc_janitor_forget_receive(struct ipc_port *port, struct ipc_port_rcv *rcv, bool moving)
{
    if (rcv->janitor_slot == 0) {
        return;
    }
    janitor_unlist(rcv->janitor_slot - 1);
    rcv->janitor_slot = 0;
    /* Unlisted: void. */
    rcv->escrowed = rcv->escrow_stale = rcv->escrow_after_receive = false;
    rcv->escrow_pending = NULL;
    if (moving) {
        /* machd closes its copy now, so that the port dies with its next
         * holder whatever that holder does.  Lost when machd is behind:
         * then at its next sweep (the slot is clear). */
        struct hell_janitor_port forget = {
            .magic = HELL_PROTO_MAGIC,
            .flags = HELL_JANITOR_FORGET | HELL_JANITOR_RECEIVE,
            .key = port->serial};
        janitor_tell(&forget, sizeof forget);
    }
}

void ipc_janitor_release(uint64_t nonce)
{
    void *v = janitor_slots != NULL ? u64map_remove(&janitor_by_nonce, nonce) : NULL;
    if (v == NULL) {
        return;
    }
    janitor_unlist((uintptr_t)v - 1);
}

void ipc_janitor_fork_child(void)
{
    if (janitor_slots != NULL) {
        munmap(janitor_slots, janitor_nslots * sizeof(struct janitor_slot));
    }
    if (janitor_sock >= 0) {
        linux_close(janitor_sock);
    }
    if (janitor_table_fd >= 0) {
        linux_close(janitor_table_fd);
    }
    janitor_sock = janitor_table_fd = -1;
    janitor_slots = NULL;
    janitor_nslots = janitor_top = 0;
    janitor_nfree = 0; /* (the stack's memory is reused) */
    janitor_by_nonce = (struct u64map){0};
    janitor_failed = false;
}

EXPORT int hell_janitor_send_once(int send_fd, uint64_t nonce)
{
    return ipc_notify_send_once_fd(send_fd, nonce);
}

EXPORT int hell_janitor_send_escrow(int send_fd, const void *msg, size_t len, const int *fds,
                                    unsigned nfds)
{
    return ipc_notify_send_raw_fd(send_fd, msg, len, fds, nfds);
}

EXPORT void hell_janitor_destroy_receives(const int *recv_fds, size_t nrecv, const int *send_fds,
                                          size_t nsend)
{
    ipc_lock();
    ipc_port_destroy_orphans(recv_fds, nrecv, send_fds, nsend);
    ipc_unlock();
    kern_notify_flush_pending();
}
