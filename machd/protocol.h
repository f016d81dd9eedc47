/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control protocol between the `hell` command and an instance's
 * kernel process (machd): SOCK_SEQPACKET on a Unix socket named after the
 * instance (hell_socket_path).  Private to HELL: both ends are built from
 * the same source, so it has no versioning beyond the magic.
 *
 * A request is one datagram: struct hell_request, then the strings it
 * announces, each ending with NUL.  A reply is one struct hell_reply.
 *
 * HELL_OP_RUN   strings: cwd, ARGC arguments (the first is the program),
 *               ENVC environment entries; SCM_RIGHTS: the task's standard
 *               input, output and error.  Replies HELL_REPLY_STARTED (pid)
 *               or HELL_REPLY_ERROR (errno), then HELL_REPLY_EXITED with
 *               the wait status when the task ends.
 * HELL_OP_STOP  ends every task of the instance, then machd: replies
 *               HELL_REPLY_STOPPED just before machd exits.
 * HELL_OP_PING  replies HELL_REPLY_STARTED with machd's pid.
 * HELL_OP_JANITOR  from libmach in a task of the instance: SCM_RIGHTS,
 *               the task's table of send-once rights (a memfd of struct
 *               hell_janitor_slot).  No reply; the connection stays open
 *               for the task's life and carries struct hell_janitor_port
 *               datagrams, each with the send end of port KEY (or
 *               forgetting KEY), or the receive end of a port whose
 *               receive right the task holds, and struct
 *               hell_janitor_escrow datagrams.  When it closes, machd
 *               sends the send-once notification of every right the table
 *               still lists, and destroys the queue of every port whose
 *               receive right it still lists (libmach/ipc_janitor.h),
 *               except those it holds a current escrow for (struct
 *               hell_janitor_escrow), which it sends instead.
 * HELL_OP_VM    from libmach in a task of the instance that maps a memory
 *               object: SCM_RIGHTS, the task's userfaultfd; FLAGS, how
 *               long its faults wait for a pager (milliseconds, 0: 30 s).
 *               No reply; machd serves the task's faults on objects from
 *               then on, and the connection stays open for the task's
 *               life, carrying struct hell_vm_request datagrams, each
 *               answered by a struct hell_vm_reply (libmach/vm_remote.h).
 *               When it closes, machd removes the task's mappings.
 * HELL_OP_TASKS from libmach in a task of the instance that creates
 *               tasks or names the default processor set: no reply; the
 *               connection stays open for the task's life, carrying
 *               struct hell_tasks_request datagrams, each answered by a
 *               struct hell_tasks_reply (libmach/kern_pset.c).
 */
#ifndef HELL_MACHD_PROTOCOL_H
#define HELL_MACHD_PROTOCOL_H

#include <mach/message.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELL_PROTO_MAGIC 0x4c4c4548u /* "HELL" */
#define HELL_PROTO_MAX (128 * 1024)  /* the largest request */

enum hell_op {
    HELL_OP_RUN = 1,
    HELL_OP_STOP = 2,
    HELL_OP_PING = 3,
    HELL_OP_JANITOR = 4,
    HELL_OP_VM = 5,
    HELL_OP_TASKS = 6,
};

/* The environment variable naming the control socket of the instance a
 * task belongs to (machd sets it in the tasks it starts). */
#define HELL_INSTANCE_ENV "HELL_INSTANCE"

/* The largest table machd reads (in slots): 2^24 rights at once.  The
 * table is a memfd sealed with F_SEAL_SHRINK. */
#define HELL_JANITOR_MAX_SLOTS (1u << 24)

/* A slot of a task's table: free when NONCE is 0.  A send-once right
 * (KEY: its port, as shown with struct hell_janitor_port; NONCE: its
 * authenticator), or, with HELL_JANITOR_SLOT_RECEIVE in KEY, the receive
 * right of the port whose receive end was shown under the rest of KEY
 * (NONCE is then 1, or the id of the port's current escrow: struct
 * hell_janitor_escrow). */
struct hell_janitor_slot {
    uint64_t key;
    uint64_t nonce;
};
#define HELL_JANITOR_SLOT_RECEIVE (1ull << 63)

/* A port shown to machd (with its send end as SCM_RIGHTS), or with
 * HELL_JANITOR_FORGET and no descriptor, forgotten: the task no longer
 * knows it by KEY (a later right to the same port comes with a new key).
 * With HELL_JANITOR_RECEIVE, the descriptor is the port's receive end:
 * machd keeps it while the port lives, and destroys the port's queue
 * when the task dies with the receive right still listed in its table. */
struct hell_janitor_port {
    uint32_t magic;
    uint32_t flags;
    uint64_t key;
};
#define HELL_JANITOR_FORGET 0x1u
#define HELL_JANITOR_RECEIVE 0x2u
#define HELL_JANITOR_ESCROW 0x4u

/* The port-destroyed notification the task would send if it destroyed
 * the receive right of port KEY (shown with HELL_JANITOR_RECEIVE), which
 * has a port-destroyed request, kept by machd for the task's death (GNU
 * Mach honours the request when it destroys a dead task's rights).
 * Followed by the notification as it goes on the wire (libmach's
 * ipc_wire_format.h), to be sent as it is, with the datagram's
 * descriptors, through the send end of port NOTIFY_KEY (shown).  It
 * counts only while the task's table lists KEY's receive right with ID
 * (ids grow; machd keeps a port's last two).  NONCES are the send-once
 * rights it carries (the request's own, and a no-senders request's or
 * 0), and so are the NPENDING nonces that come first after the head
 * (the send-once rights of the message MACH_RCV_LARGE keeps on the port,
 * which the notification carries too): once it is sent, machd notifies
 * none of them.  RESERVED is 0 (machd drops an escrow with anything
 * else).  With HELL_JANITOR_FORGET and nothing after it: machd may
 * forget the escrows of KEY. */
struct hell_janitor_escrow {
    uint32_t magic;
    uint32_t flags; /* HELL_JANITOR_ESCROW (| HELL_JANITOR_FORGET) */
    uint64_t key;
    uint64_t notify_key;
    uint64_t id;
    uint64_t nonces[2];
    uint32_t npending;
    uint32_t reserved; /* 0 */
};

/* The largest escrow datagram (a port with more senders' transports
 * than fit is not escrowed). */
#define HELL_JANITOR_ESCROW_MAX (96u * 1024u)
/* The most descriptors it carries (Linux's SCM_MAX_FD; more travel
 * through a socket among them, as in any message). */
#define HELL_JANITOR_ESCROW_FDS 253

/* The requests of a HELL_OP_VM connection (the task's side of each is
 * documented in libmach/vm_remote.h).  HANDLE names an object reference
 * machd holds for the task, from HELL_VM_ENTER until it moves into a
 * mapping (HELL_VM_ADD) or goes (HELL_VM_RELEASE). */
enum hell_vm_op {
    HELL_VM_ENTER = 1,   /* then a bootstrap message with the pager's send
                            right; END: the cache's reach.  Replies HANDLE
                            with the cache's memfd, or HELL_VM_DIRECT
                            with a read-only descriptor of the memory
                            itself (hell_vm_direct_object) */
    HELL_VM_ADD = 2,     /* HANDLE maps [START, END) at OFFSET */
    HELL_VM_RELEASE = 3, /* HANDLE */
    HELL_VM_UNMAP = 4,   /* [START, END) unmapped */
    HELL_VM_SYNC = 5,    /* [START, END); FLAGS: HELL_VM_INVALIDATE */
    HELL_VM_COPY = 6,    /* [OFFSET, OFFSET + END) of HANDLE: replies a
                            memfd holding a copy */
    HELL_VM_ATTACH = 7,  /* first on a connection between a task and the
                            task it created with inherited memory while
                            its own kernel (no machd): HANDLE the new
                            task's pid, FLAGS its pager timeout in ms,
                            its userfaultfd as SCM_RIGHTS; no reply */
    HELL_VM_NAME = 8,    /* the name port of the object mapped at START
                            (vm_region): replies KERN_SUCCESS then a
                            bootstrap message with a send right to it, or
                            KERN_INVALID_ADDRESS (no object there) */
    HELL_VM_FORK = 9,    /* on a HELL_VM_ATTACH connection: a connection
                            for a task this one creates with inherited
                            memory (so that it maps from the one cache
                            that serves these objects): replies with one
                            end of a socket pair as SCM_RIGHTS, whose
                            other end the server then serves as it does
                            a HELL_VM_ATTACH connection */
};
#define HELL_VM_INVALIDATE 0x1u
/* HELL_VM_ENTER's handle for memory mapped as it is: nothing to add or
 * release. */
#define HELL_VM_DIRECT UINT64_MAX

struct hell_vm_request {
    uint32_t magic;
    uint32_t op;
    uint32_t flags;
    uint32_t pad;
    uint64_t handle, start, end, offset;
};

/* KR is a kern_return_t; a memfd comes as SCM_RIGHTS where said. */
struct hell_vm_reply {
    uint32_t magic;
    int32_t kr;
    uint64_t handle;
};

/* HELL_OP_RUN flags. */
#define HELL_RUN_PRIV 0x1u /* give the privileged host and device master ports */

/* The names under which a privileged task finds its ports, as GNU Mach's
 * boot script inserts them (first free names): `${host-port}` and
 * `${device-port}` in the arguments are replaced by them. */
#define HELL_HOST_PRIV_NAME 1u
#define HELL_DEVICE_MASTER_NAME 2u

/* The requests of a HELL_OP_TASKS connection: machd keeps the default
 * processor set of the instance and the list of its tasks. */
enum hell_tasks_op {
    HELL_TASKS_REGISTER = 1,  /* then a bootstrap message with two send
                                 rights: a task just created, and its
                                 parent's task port; replies once listed */
    HELL_TASKS_PSET_NAME = 2, /* replies, then a bootstrap message with a
                                 send right to the set's name port */
    HELL_TASKS_PSET_CHECK = 3 /* then a bootstrap message with a send
                                 right: replies KERN_SUCCESS and the set's
                                 policies if it is the set's control port,
                                 else KERN_INVALID_ARGUMENT */
};

struct hell_tasks_request {
    uint32_t magic;
    uint32_t op;
};

struct hell_tasks_reply {
    uint32_t magic;
    int32_t kr;
    int32_t policies;
    int32_t unused;
};

struct hell_request {
    uint32_t magic;
    uint32_t op;
    uint32_t flags;
    uint32_t argc;
    uint32_t envc;
    uint32_t strings_len; /* bytes of strings following */
};

enum hell_reply_kind {
    HELL_REPLY_STARTED = 1, /* value: pid */
    HELL_REPLY_EXITED = 2,  /* value: wait status */
    HELL_REPLY_ERROR = 3,   /* value: errno */
    HELL_REPLY_STOPPED = 4,
};

struct hell_reply {
    uint32_t magic;
    uint32_t kind;
    int32_t value;
};

/* Writes into BUF (SIZE bytes) the socket path of instance NAME:
 * $HELL_RUNTIME_DIR, else $XDG_RUNTIME_DIR/hell, else /tmp/hell-UID,
 * followed by NAME.sock.  Returns 0, or -1 when NAME is not a plain name
 * (empty, '/', leading '.') or the path does not fit. */
int hell_socket_path(const char *name, char *buf, size_t size);

/* Takes the descriptors MSG received (SCM_RIGHTS) into FDS, up to MAX;
 * closes the others.  Returns how many FDS holds. */
unsigned hell_received_fds(struct msghdr *msg, int *fds, unsigned max);

/* Makes the directory of the instance sockets (mode 0700) if needed,
 * then checks it as hell_socket_dir_check.  Returns 0 or -1 with errno
 * set. */
int hell_socket_dir_make(void);

/* Whether the directory of the instance sockets is ours alone: a real
 * directory (not a link), owned by our uid, mode 0700 or stricter.
 * Returns 0, or -1 with errno set (EACCES: it is not). */
int hell_socket_dir_check(void);

/* Whether the peer of the connected Unix socket FD runs as our uid
 * (inline: libmach uses it too). */
static inline bool hell_peer_is_us(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == getuid();
}

/* The range of an I/O permission port (i386_io_perm_create): a task
 * serving i386_io_perm_modify sends a bare header with this id and a
 * reply port to the permission port; machd answers with
 * hell_io_perm_range_reply (id + 100), a range with FROM past TO when
 * the port is none of its permissions. */
#define HELL_IO_PERM_RANGE_ID 0x48490001 /* "HI", 1 */
struct hell_io_perm_range_reply {
    mach_msg_header_t head;
    mach_msg_type_t ret_type;
    kern_return_t ret;
    char ret_pad[4]; /* (each item of a message starts on 8 bytes) */
    mach_msg_type_t range_type;
    uint32_t from, to;
};

#endif
