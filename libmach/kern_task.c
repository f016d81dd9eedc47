/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The task: its kernel objects (task port, special ports), the traps that
 * name them, the kernel service that answers kernel RPCs, and the reset
 * after fork().
 */
#include "kern.h"
#include "kern_vm.h"

#include <assert.h>
#include <device/device_types.h>
#include <errno.h>
#include <hell.h>
#include <mach/mig_errors.h>
#include <mach/mig_support.h>
#include <mach/task_special_ports.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hell_launch.h"
#include "ipc_janitor.h"
#include "ipc_kmsg.h"
#include "ipc_msg.h"
#include "ipc_notify.h"
#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_pset.h"
#include "ipc_watch.h"
#include "ipc_wire.h"
#include "kern_control.h"
#include "kern_notify.h"
#include "kern_thread.h"
#include "linux.h"
#include "msg_destroy.h"
#include "vm_attr.h"
#include "vm_fault.h"
#include "vm_maps.h"
#include "vm_movable.h"
#include "vm_object.h"
#include "vm_reap.h"
#include "vm_remote.h"
#include "vm_server.h"
#include "mach.server.h"
#include "gnumach.server.h"
#include "mach_port.server.h"

#define KERN_REPLY_MAX 8192

#define EXPORT __attribute__((visibility("default")))

/* This process is hell-task, the body of an empty task. */
static bool kern_task_empty;

/* The MIG demultiplexers of the kernel servers (generated). */
boolean_t mach_port_server(mach_msg_header_t *in, mach_msg_header_t *out);
boolean_t mach_server(mach_msg_header_t *in, mach_msg_header_t *out);
boolean_t mach_host_server(mach_msg_header_t *in, mach_msg_header_t *out);
boolean_t gnumach_server(mach_msg_header_t *in, mach_msg_header_t *out);
boolean_t mach_i386_server(mach_msg_header_t *in, mach_msg_header_t *out);

/* device.defs (subsystem 2800) sent to a kernel port that is no device:
 * GNU Mach answers device_open and device_open_new with
 * D_INVALID_OPERATION (not the master) and the other calls with
 * D_NO_SUCH_DEVICE (not an open device). */
#define KERN_DEVICE_FIRST_ID 2800
#define KERN_DEVICE_OPEN_NEW_ID 2806
#define KERN_DEVICE_LAST_ID 2899
static boolean_t kern_device_refuse(mach_msg_header_t *in, mach_msg_header_t *out)
{
    if (in->msgh_id < KERN_DEVICE_FIRST_ID || in->msgh_id > KERN_DEVICE_LAST_ID) {
        return FALSE;
    }
    mig_reply_setup(in, out);
    ((mig_reply_header_t *)out)->RetCode =
        in->msgh_id == KERN_DEVICE_FIRST_ID || in->msgh_id == KERN_DEVICE_OPEN_NEW_ID
            ? D_INVALID_OPERATION
            : D_NO_SUCH_DEVICE;
    return TRUE;
}

static boolean_t (*const kern_servers[])(mach_msg_header_t *, mach_msg_header_t *) = {
    mach_port_server, mach_server,      mach_host_server,   gnumach_server,
    mach_i386_server, vm_notify_server, kern_wire_forward_server, kern_vm_phys_forward_server,
    kern_pset_notify_server, kern_device_refuse,
};
/* [G] The task port, as named in the kernel space (receive and send). */
static struct ipc_port *kern_task;
static mach_port_name_t kern_task_kname;
/* [G] Special ports, as send rights in the kernel space (or NULL). */
static mach_port_name_t kern_bootstrap_kname;
static mach_port_name_t kern_exception_kname;
/* [G] The host port. */
static struct ipc_port *kern_host;
static mach_port_name_t kern_host_kname;
/* [G] The kernel-space port set of every kernel object port, on which the
 * service thread receives what other tasks send them. */
static mach_port_name_t kern_objects_kname;
/* [G] task_suspend's count, and when the task started. */
static unsigned kern_task_suspends;
static time_value64_t kern_task_created;
/* [G] What task_set_special_port(TASK_KERNEL_PORT) put where the task's
 * own port was (GNU Mach's itk_sself). */
static struct kern_sself kern_task_sself;
/* [G] This task's user name for what mach_task_self() gives, 0 until
 * first asked (and again once the kernel port is set). */
static mach_port_name_t kern_task_self_name;
static bool kern_service_running; /* [G] */
/* The request the calling thread is serving (kern_serve), and whether it
 * is the service thread (serving another task). */
static __thread const mach_msg_header_t *kern_request;
static __thread bool kern_is_service_thread;
/* Bumped by fork() in the child: per-thread caches compare it. */
atomic_uint kern_fork_generation;

struct ipc_port *kern_task_port(void)
{
    return kern_task;
}

mach_port_name_t kern_host_name(void)
{
    return kern_host_kname;
}

bool kern_object_is(mach_port_t kname, int kotype)
{
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_KERNEL], kname);
    return entry != NULL && (entry->type & MACH_PORT_TYPE_RECEIVE) &&
           entry->port->rcv->kobject_type == kotype;
}

kern_return_t kern_object_create(int kotype, struct ipc_port **port, mach_port_name_t *kname)
{
    return kern_object_create_in(kotype, MACH_PORT_NULL, port, kname);
}

kern_return_t kern_object_create_in(int kotype, mach_port_name_t set, struct ipc_port **port,
                                    mach_port_name_t *kname)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    struct ipc_entry *entry;
    kern_return_t kr = ipc_right_new_receive(kspace, &entry);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    entry->port->rcv->kobject_type = kotype;
    struct kright send;
    kr = ipc_right_copyin(kspace, entry->name, MACH_MSG_TYPE_MAKE_SEND, false, &send);
    if (kr == KERN_SUCCESS) {
        mach_port_name_t same;
        kr = ipc_right_copyout(kspace, &send, &same);
    }
    struct ipc_entry *members =
        ipc_entry_lookup(kspace, set != MACH_PORT_NULL ? set : kern_objects_kname);
    if (kr == KERN_SUCCESS && members != NULL && (members->type & MACH_PORT_TYPE_PORT_SET)) {
        kr = ipc_pset_add(members->pset, entry->port);
    }
    if (kr != KERN_SUCCESS) {
        (void)ipc_right_destroy(kspace, entry->name); /* nothing stays */
        return kr;
    }
    *port = entry->port;
    *kname = entry->name;
    return KERN_SUCCESS;
}

mach_port_name_t kern_give_send(mach_port_name_t kname)
{
    if (!MACH_PORT_VALID(kname)) {
        return kname;
    }
    struct kright right;
    if (ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], kname, MACH_MSG_TYPE_COPY_SEND,
                         true, &right) != KERN_SUCCESS) {
        mach_port_type_t type = 0;
        (void)ipc_right_type(&ipc_spaces[SPACE_KERNEL], kname, &type);
        return type & MACH_PORT_TYPE_DEAD_NAME ? MACH_PORT_DEAD : MACH_PORT_NULL;
    }
    mach_port_name_t name;
    (void)ipc_right_copyout(&ipc_spaces[SPACE_USER], &right, &name);
    return name;
}

__attribute__((visibility("default"))) mach_port_t mach_task_self(void)
{
    ipc_lock();
    if (kern_task_self_name == MACH_PORT_NULL) {
        kern_task_self_name = kern_give_send(kern_task_self_kname());
    }
    mach_port_name_t name = kern_task_self_name;
    ipc_unlock();
    return name;
}

mach_port_name_t kern_reply_port_new(uint64_t *serial)
{
    struct ipc_entry *entry;
    ipc_lock();
    bool made = ipc_right_new_receive(&ipc_spaces[SPACE_USER], &entry) == KERN_SUCCESS;
    mach_port_name_t name = made ? entry->name : MACH_PORT_NULL;
    *serial = made ? entry->port->serial : 0;
    ipc_unlock();
    return name;
}

__attribute__((visibility("default"))) mach_port_t mach_reply_port(void)
{
    uint64_t serial;
    return kern_reply_port_new(&serial);
}

/* ---- the kernel service ---- */

/* Requests from other tasks: one hidden thread receives on the task
 * port in the kernel space. */
void kern_service_once(int timeout_ms)
{
    size_t size = KERN_REQUEST_MAX;
    mach_msg_header_t *buf = malloc(size);
    if (buf == NULL) {
        return;
    }
    ipc_lock();
    mach_port_name_t kname = kern_objects_kname;
    ipc_unlock();
    (void)kern_receive_serve(kname, timeout_ms, &buf, &size);
    free(buf);
}

/* Blocks every signal but the one that interrupts IPC waits: a thread
 * serving other tasks runs none of the program's handlers. */
static void kern_service_sigmask(void)
{
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, ipc_wake_signal());
    pthread_sigmask(SIG_SETMASK, &all, NULL);
}

/* At most this many requests are served by threads of their own at once
 * (kern_serve_elsewhere); past that they run in the service thread. */
#define KERN_ELSEWHERE_MAX 16
static atomic_int kern_elsewhere_count;
static __thread bool kern_is_elsewhere;

/* ARG: a malloc'd copy of the request, now the thread's. */
static void *kern_elsewhere_main(void *arg)
{
    mach_msg_header_t *request = arg;
    kern_is_service_thread = true;
    kern_is_elsewhere = true;
    kern_service_sigmask();
    kern_serve(request);
    free(request);
    atomic_fetch_sub(&kern_elsewhere_count, 1);
    return NULL;
}

bool kern_serve_elsewhere(void)
{
    const mach_msg_header_t *request = kern_request;
    if (kern_is_elsewhere || !kern_is_service_thread || request == NULL) {
        return false;
    }
    mach_msg_header_t *copy = NULL;
    if (atomic_fetch_add(&kern_elsewhere_count, 1) < KERN_ELSEWHERE_MAX) {
        copy = malloc(request->msgh_size);
    }
    if (copy != NULL) {
        /* The rights it names are the copy's from now on. */
        memcpy(copy, request, request->msgh_size);
        if (linux_thread_start(kern_elsewhere_main, copy)) {
            return true;
        }
        free(copy);
    }
    atomic_fetch_sub(&kern_elsewhere_count, 1);
    return false;
}

mach_msg_return_t kern_receive_serve(mach_port_name_t set, int timeout_ms,
                                     mach_msg_header_t **buf, size_t *size)
{
    mach_msg_option_t option = MACH_RCV_MSG | MACH_RCV_LARGE;
    mach_msg_timeout_t timeout = 0;
    if (timeout_ms >= 0) {
        option |= MACH_RCV_TIMEOUT;
        timeout = (mach_msg_timeout_t)timeout_ms;
    }
    for (;;) {
        mach_msg_return_t mr =
            ipc_mach_msg(SPACE_KERNEL, *buf, option, 0, (mach_msg_size_t)*size, set, timeout);
        if (mr == MACH_MSG_SUCCESS) {
            kern_serve(*buf);
        } else if ((mr & ~MACH_MSG_MASK) == MACH_RCV_BODY_ERROR) {
            /* Received with holes where this process lacked names or
             * memory: not served (its reply right destroyed, the caller
             * hears of it), and what did come goes. */
            msg_destroy_in(SPACE_KERNEL, *buf, true);
        }
        if (mr != MACH_RCV_TOO_LARGE) {
            return mr;
        }
        /* Left queued: taken again into a buffer of its size. */
        size_t need = (*buf)->msgh_size;
        void *p = realloc(*buf, need);
        if (p == NULL) {
            /* Taken anyway, too large: destroyed with a header. */
            (void)ipc_mach_msg(SPACE_KERNEL, *buf, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0,
                               sizeof(mach_msg_header_t), set, 0);
            return MACH_RCV_TOO_LARGE;
        }
        *buf = p;
        *size = need;
    }
}

/* ARG: a malloc'd buffer of KERN_REQUEST_MAX bytes, now the thread's. */
static void *kern_service_main(void *arg)
{
    kern_is_service_thread = true;
    kern_service_sigmask();
    size_t size = KERN_REQUEST_MAX;
    mach_msg_header_t *buf = arg;
    for (;;) {
        ipc_lock();
        mach_port_name_t kname = kern_objects_kname; /* every kernel object's port */
        ipc_unlock();
        mach_msg_return_t mr = kern_receive_serve(kname, -1, &buf, &size);
        if (mr == MACH_RCV_PORT_DIED || mr == MACH_RCV_INVALID_NAME) {
            break;
        }
    }
    free(buf);
    return NULL;
}

const mach_msg_header_t *kern_current_request(void)
{
    return kern_request;
}

mach_msg_return_t kern_call_timed(mach_msg_header_t *msg, mach_msg_size_t send_size,
                                  mach_msg_size_t rcv_size, int timeout_ms)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    struct ipc_entry *entry;
    ipc_lock();
    kern_return_t made = ipc_right_new_receive(kspace, &entry);
    mach_port_name_t reply = made == KERN_SUCCESS ? entry->name : MACH_PORT_NULL;
    ipc_unlock();
    if (made != KERN_SUCCESS) {
        return MACH_SEND_INVALID_REPLY;
    }
    msg->msgh_bits = (msg->msgh_bits & MACH_MSGH_BITS_COMPLEX) |
                     MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
    msg->msgh_size = send_size;
    msg->msgh_local_port = reply;
    mach_msg_return_t mr = ipc_mach_msg(SPACE_KERNEL, msg,
                                        MACH_SEND_MSG | MACH_SEND_TIMEOUT | MACH_RCV_MSG |
                                            MACH_RCV_TIMEOUT,
                                        send_size, rcv_size, reply,
                                        (mach_msg_timeout_t)timeout_ms);
    ipc_lock();
    (void)ipc_right_destroy(kspace, reply);
    ipc_unlock();
    return mr;
}

bool kern_reply_code(const mach_msg_header_t *reply, mach_msg_id_t request_id, kern_return_t *kr)
{
    const mig_reply_header_t *r = (const void *)reply;
    if (r->Head.msgh_id != request_id + 100 || r->Head.msgh_size != sizeof *r ||
        (r->Head.msgh_bits & MACH_MSGH_BITS_COMPLEX) ||
        !kern_type_is(&r->RetCodeType, &kern_type_int32) || r->RetCode == MIG_BAD_ID ||
        r->RetCode == MIG_BAD_ARGUMENTS) {
        return false;
    }
    *kr = r->RetCode;
    return true;
}

mach_msg_return_t kern_call_code(mach_msg_header_t *msg, mach_msg_size_t send_size,
                                 mach_msg_size_t rcv_size, int timeout_ms, kern_return_t *kr)
{
    mach_msg_id_t id = msg->msgh_id;
    mach_msg_return_t mr = kern_call_timed(msg, send_size, rcv_size, timeout_ms);
    if (mr != MACH_MSG_SUCCESS) {
        return mr;
    }
    bool ok = kern_reply_code(msg, id, kr);
    msg_destroy_in(SPACE_KERNEL, msg, true); /* whatever else it brought */
    return ok ? MACH_MSG_SUCCESS : MIG_REPLY_MISMATCH;
}

void kern_reply(mach_port_name_t reply_port, mach_msg_id_t request_id, kern_return_t kr)
{
    struct {
        mach_msg_header_t Head;
        mach_msg_type_t RetCodeType;
        kern_return_t RetCode;
        char RetCodePad[4];
    } reply = {
        .Head = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0),
                 .msgh_size = sizeof reply,
                 .msgh_remote_port = reply_port,
                 .msgh_id = request_id + 100},
        .RetCodeType = {.msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
                        .msgt_number = 1, .msgt_inline = TRUE},
        .RetCode = kr,
    };
    if (ipc_mach_msg(SPACE_KERNEL, &reply.Head, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof reply,
                     0, MACH_PORT_NULL, 0) != MACH_MSG_SUCCESS) {
        kern_release_right(reply_port);
    }
}

bool kern_serving_other_task(void)
{
    return kern_is_service_thread;
}

void kern_service_start(void)
{
    if (kern_service_running) {
        return;
    }
    /* Allocated here, not by the new thread: a program may fork as soon as
     * this returns, and a child of a thread that was inside AddressSanitizer's
     * allocator (GCC 12's does not lock it around fork) would deadlock. */
    void *buf = malloc(KERN_REQUEST_MAX);
    if (buf == NULL) {
        return;
    }
    kern_service_running = linux_thread_start(kern_service_main, buf);
    if (!kern_service_running) {
        free(buf);
    }
}

/* The calling thread serves a request whose regions lie in its lend
 * buffer: a kernel call made meanwhile maps its own. */
static __thread bool kern_lending;

mach_msg_return_t kern_deliver(struct kmsg *kmsg)
{
    struct ipc_port *dest = kmsg->dest.port;
    mach_msg_header_t *request = malloc(kmsg->hdr.msgh_size);
    /* Regions the sender keeps are copied: the kernel owns what it gets
     * (faulted in first without [G] when they may come from a pager).
     * Small ones are lent from a buffer of the thread (a page a pager of
     * this task supplies, say), as received ones are. */
    wire_ool_prepare(kmsg, true);
    char *lend = NULL; /* made when a region is first lent */
    size_t lent = 0;
    for (unsigned i = 0; i < kmsg->nool; i++) {
        struct kool *ool = &kmsg->ool[i];
        if (ool->dealloc || ool->ports || ool->size == 0) {
            continue; /* given up by the sender, or rights */
        }
        size_t room = (ool->size + 7) & ~(size_t)7;
        if (lend == NULL && !kern_lending && room <= WIRE_LEND_SIZE) {
            lend = wire_lend_buf();
        }
        if (lend != NULL && room <= WIRE_LEND_SIZE - lent) {
            memcpy(lend + lent, ool->addr, ool->size);
            ool->addr = lend + lent;
            ool->lent = true;
            lent += room;
        } else {
            void *p = mmap(NULL, ool->size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED) {
                memcpy(p, ool->addr, ool->size);
                ool->addr = p;
                ool->dealloc = true;
            }
        }
    }
    if (request == NULL) {
        ipc_kmsg_destroy(kmsg);
        ipc_unlock();
        return MACH_SEND_NO_BUFFER;
    }
    kmsg->hdr.msgh_seqno = dest->rcv->seqno++;
    mach_port_name_t local = dest->name[SPACE_KERNEL];
    (void)ipc_kmsg_copyout(&ipc_spaces[SPACE_KERNEL], kmsg, local, NULL, request);
    ipc_kmsg_destroy(kmsg);
    ipc_unlock();
    bool outer = kern_lending;
    kern_lending = outer || lent > 0;
    kern_serve(request);
    kern_lending = outer;
    free(request);
    return MACH_MSG_SUCCESS;
}

/* Kernel-space send rights the routine being served put in its reply
 * and that are not the kernel's to keep (MIG's user-level servers copy
 * an out port; GNU Mach's kernel moves it). */
static __thread mach_port_name_t *kern_drops; /* freed when the outermost call ends */
static __thread unsigned kern_ndrops, kern_drops_cap;

void kern_drop_after_reply(mach_port_name_t kname)
{
    if (kern_ndrops == kern_drops_cap) {
        unsigned cap = kern_drops_cap > 0 ? 2 * kern_drops_cap : 16;
        mach_port_name_t *grown = realloc(kern_drops, cap * sizeof *grown);
        if (grown == NULL) {
            return; /* the reference stays: a right kept, never one lost */
        }
        kern_drops = grown;
        kern_drops_cap = cap;
    }
    kern_drops[kern_ndrops++] = kname;
}

/* Sends REPLY (the head of a KERN_REPLY_MAX buffer) to REQUEST, the
 * routine having run. */
static void kern_serve_reply(mach_msg_header_t *request, mig_reply_header_t *reply);

void kern_serve(mach_msg_header_t *request)
{
    union {
        mig_reply_header_t header;
        char buf[KERN_REPLY_MAX];
    } reply;
    const mach_msg_header_t *outer = kern_request;
    unsigned drops = kern_ndrops; /* (a kernel call served inside another) */
    kern_request = request;
    for (size_t i = 0; i < sizeof kern_servers / sizeof kern_servers[0]; i++) {
        if (kern_servers[i](request, &reply.header.Head)) {
            break;
        }
    }
    kern_request = outer;
    kern_notify_flush_pending();
    kern_serve_reply(request, &reply.header);
    if (kern_ndrops > drops) {
        ipc_lock();
        for (unsigned i = drops; i < kern_ndrops; i++) {
            (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], kern_drops[i]);
        }
        ipc_unlock();
        kern_ndrops = drops;
    }
    if (kern_ndrops == 0 && kern_drops != NULL) {
        free(kern_drops);
        kern_drops = NULL;
        kern_drops_cap = 0;
    }
}

static mach_msg_return_t kern_reply_gives_away(void *ctx, mach_msg_type_t *type, char *data,
                                               size_t length)
{
    (void)ctx;
    (void)data;
    (void)length;
    if (!type->msgt_inline) {
        type->msgt_deallocate = TRUE;
    }
    return MACH_MSG_SUCCESS;
}

static void kern_serve_reply(mach_msg_header_t *request, mig_reply_header_t *reply)
{
    kern_return_t rc = reply->RetCode;
    if (rc == MIG_NO_REPLY) {
        return;
    }
    if (reply->Head.msgh_bits & MACH_MSGH_BITS_COMPLEX) {
        /* What a routine returns out of line was made for the reply (an
         * array of names, vm_read's copy): it goes with it, as GNU Mach's
         * copy objects do, whatever the type's own deallocate bit says. */
        (void)ipc_body_walk((char *)(&reply->Head + 1),
                            reply->Head.msgh_size - sizeof reply->Head, kern_reply_gives_away,
                            NULL);
    }
    if (rc != KERN_SUCCESS) {
        /* As ipc_kobject_server: a failed call destroys what the request
         * carried, except the reply port. */
        msg_destroy_in(SPACE_KERNEL, request, false);
    }
    if (!MACH_PORT_VALID((mach_port_name_t)reply->Head.msgh_remote_port)) {
        msg_destroy_in(SPACE_KERNEL, &reply->Head, false);
        return;
    }
    mach_msg_return_t mr = ipc_mach_msg(SPACE_KERNEL, &reply->Head,
                                        MACH_SEND_MSG | MACH_SEND_TIMEOUT,
                                        reply->Head.msgh_size, 0,
                                        MACH_PORT_NULL, 0);
    if (mr == MACH_SEND_NO_BUFFER) {
        /* The reply needs descriptors this process lacks (an out-of-line
         * region, a first send right).  The send did nothing, so the
         * reply right is still ours: answer that the kernel ran short,
         * as GNU Mach does when it cannot allocate a reply. */
        mach_port_name_t reply_port = (mach_port_name_t)reply->Head.msgh_remote_port;
        msg_destroy_in(SPACE_KERNEL, &reply->Head, false);
        kern_reply(reply_port, request->msgh_id, KERN_RESOURCE_SHORTAGE);
    } else if (mr != MACH_MSG_SUCCESS) {
        /* The client's reply port died: what the reply moved is lost. */
        msg_destroy_in(SPACE_KERNEL, &reply->Head, true);
    }
}

/* ---- task control (mach.defs) ---- */

/* The new task's side of task_create: its only Linux thread becomes a
 * hidden one (a task starts with no Mach thread), takes the inherited
 * special ports and hands over its task port on FD, then waits for
 * thread_create while the service thread serves the task. */
static __attribute__((noreturn)) void kern_task_become_new(int fd, struct kern_vm_inherit *inh)
{
    linux_helper_adopt_self();
    /* Its mappings of objects first: a task that cannot have them all
     * ends before its creator has its port. */
    int rc = kern_vm_inherit_child(inh, fd) ? kern_bootstrap_child(fd) : -1;
    linux_close(fd);
    if (rc != 0) {
        _exit(127);
    }
    for (;;) {
        pause();
    }
}

void kern_special_right(mach_port_name_t kname, struct kright *right)
{
    *right = (struct kright){.kind = KRIGHT_NONE};
    if (MACH_PORT_VALID(kname) &&
        ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], kname, MACH_MSG_TYPE_COPY_SEND, true,
                         right) != KERN_SUCCESS) {
        *right = (struct kright){.kind = KRIGHT_NONE};
    }
}

kern_return_t kern_task_create(mach_port_t parent, boolean_t inherit_memory,
                               mach_port_t *child)
{
    ipc_lock();
    bool ok = kern_is_task(parent);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    /* Without inherited memory: a new program, hell-task, whose address
     * space holds only what runs it (at the addresses Linux chose for
     * them, which an exec server's fixed allocations avoid). */
    struct hell_empty_task empty = {0};
    if (!inherit_memory && !hell_empty_task_prepare(&empty)) {
        return KERN_RESOURCE_SHORTAGE;
    }
    /* With it: the mappings of memory objects, which fork() leaves out. */
    struct kern_vm_inherit inh = {.vm_sock = {-1, -1}};
    if (inherit_memory && !kern_vm_inherit_prepare(&inh)) {
        return KERN_RESOURCE_SHORTAGE;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        hell_empty_task_free(&empty);
        kern_vm_inherit_free(&inh);
        return KERN_RESOURCE_SHORTAGE;
    }
    /* Twice, so that the new task is no child of ours that a wait() of the
     * program could see (init reaps it). */
    vm_movable_exec_follows(!inherit_memory);
    pid_t middle = fork();
    vm_movable_exec_follows(false);
    if (middle == 0) {
        vm_movable_exec_follows(!inherit_memory);
        pid_t pid = fork();
        if (pid != 0) {
            _exit(pid < 0 ? 1 : 0);
        }
        linux_close(sv[0]);
        if (!inherit_memory) {
            hell_empty_task_exec(&empty, sv[1]);
        }
        kern_task_become_new(sv[1], &inh);
    }
    hell_empty_task_free(&empty);
    linux_close(sv[1]);
    int status = 0;
    if (middle < 0 || waitpid(middle, &status, __WALL) != middle || status != 0 ||
        !kern_vm_inherit_parent(&inh, sv[0])) {
        /* (A new task whose pagers did not all come ends.) */
        kern_vm_inherit_free(&inh);
        linux_close(sv[0]);
        return KERN_RESOURCE_SHORTAGE;
    }
    kern_vm_inherit_free(&inh);
    struct kright rights[KERN_BOOT_FIXED];
    ipc_lock();
    kern_special_right(kern_bootstrap_kname, &rights[KERN_BOOT_BOOTSTRAP]);
    kern_special_right(kern_exception_kname, &rights[KERN_BOOT_EXCEPTION]);
    kern_registered_copy(&rights[KERN_BOOT_REGISTERED]);
    mach_msg_return_t mr = wire_send_bootstrap(sv[0], rights, KERN_BOOT_FIXED);
    if (mr != MACH_MSG_SUCCESS) {
        for (int i = 0; i < KERN_BOOT_FIXED; i++) {
            kright_destroy(&rights[i]);
        }
    }
    ipc_unlock();
    struct kright task;
    int n = mr == MACH_MSG_SUCCESS ? wire_recv_bootstrap(sv[0], &task, 1) : -1;
    linux_close(sv[0]);
    if (n != 1) {
        return KERN_RESOURCE_SHORTAGE;
    }
    ipc_lock();
    mach_port_name_t kname = MACH_PORT_NULL;
    kern_return_t kr = ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], &task, &kname);
    struct kright listed = {.kind = KRIGHT_NONE};
    if (kr == KERN_SUCCESS && ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], kname,
                                               MACH_MSG_TYPE_COPY_SEND, false,
                                               &listed) != KERN_SUCCESS) {
        listed = (struct kright){.kind = KRIGHT_NONE};
    }
    ipc_unlock();
    kern_pset_task_created(&listed);
    *child = kname;
    if (kr == KERN_SUCCESS) {
        kern_drop_after_reply(kname); /* the right is the caller's */
    }
    return kr;
}

kern_return_t kern_task_terminate(mach_port_t task)
{
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    if (!ok) {
        return KERN_INVALID_ARGUMENT;
    }
    const mach_msg_header_t *request = kern_current_request();
    if (kern_serving_other_task() && request != NULL) {
        /* Another task asked: it hears of its success before we go. */
        kern_reply((mach_port_name_t)request->msgh_remote_port, request->msgh_id, KERN_SUCCESS);
    }
    /* As GNU Mach: at once, with no clean-up in the task.  Its death gives
     * every notification (dead names, no-senders, port-destroyed...). */
    kill(getpid(), SIGKILL);
    for (;;) {
        pause();
    }
}

/* ---- special ports (mach.defs) ---- */

/* Returns true when TASK (a kernel-space name) is this task's port. */
bool kern_is_task(mach_port_t task)
{
    struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_KERNEL], task);
    return entry != NULL && entry->port == kern_task;
}

static mach_port_name_t *kern_special_slot(int which)
{
    switch (which) {
    case TASK_BOOTSTRAP_PORT:
        return &kern_bootstrap_kname;
    case TASK_EXCEPTION_PORT:
        return &kern_exception_kname;
    case TASK_KERNEL_PORT:
        return &kern_task_sself.kname;
    default:
        return NULL;
    }
}

mach_port_name_t kern_task_self_kname(void)
{
    return kern_sself_get(&kern_task_sself, kern_task_kname);
}

kern_return_t kern_task_get_special_port(mach_port_t task, int which,
                                         mach_port_t *port)
{
    ipc_lock();
    mach_port_name_t *slot = kern_special_slot(which);
    if (!kern_is_task(task) || slot == NULL) {
        ipc_unlock();
        return KERN_INVALID_ARGUMENT;
    }
    *port = which == TASK_KERNEL_PORT ? kern_task_self_kname() : *slot;
    ipc_unlock();
    return KERN_SUCCESS;
}

kern_return_t kern_task_set_special_port(mach_port_t task, int which,
                                         mach_port_t port)
{
    ipc_lock();
    mach_port_name_t *slot = kern_special_slot(which);
    if (!kern_is_task(task) || slot == NULL) {
        ipc_unlock();
        return KERN_INVALID_ARGUMENT;
    }
    /* The request's send right becomes the slot's (MIG leaves it to us
     * on success). */
    if (which == TASK_KERNEL_PORT) {
        /* As GNU Mach's itk_sself: what mach_task_self() and the
         * exception messages give from now on, while the task port
         * itself stays what others hold.  The task port put back is
         * the plain case again. */
        kern_sself_put(&kern_task_sself, kern_task_kname, port);
        kern_task_self_name = MACH_PORT_NULL;
    } else {
        mach_port_name_t old = *slot;
        *slot = port;
        if (MACH_PORT_VALID(old)) {
            (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], old);
        }
    }
    ipc_unlock();
    return KERN_SUCCESS;
}

/* ---- set-up, bootstrap, fork ---- */

static void kern_wake_handler(int sig)
{
    (void)sig; /* only interrupts a blocking system call */
}

/* The names of the granted rights that follow the N rights of a
 * bootstrap message on FD, as a second datagram: N - KERN_BOOT_FIXED of
 * them.  Returns 0, or -1 when it is missing or malformed. */
static int kern_bootstrap_grant_names(int fd, int n, mach_port_name_t *names)
{
    size_t want = (size_t)(n - KERN_BOOT_FIXED) * sizeof *names;
    ssize_t len;
    do {
        len = recv(fd, names, HELL_GRANTS_MAX * sizeof *names + 1, MSG_TRUNC);
    } while (len < 0 && errno == EINTR);
    return len == (ssize_t)want ? 0 : -1;
}

/* The child's half of the bootstrap handshake on FD: receive the
 * bootstrap, exception and registered ports (kern.h's KERN_BOOT_*; for a
 * spawn with grants, the granted rights and their names), send back the
 * task port.  Expects no lock. */
int kern_bootstrap_child(int fd)
{
    struct kright rights[KERN_BOOT_FIXED + HELL_GRANTS_MAX];
    mach_port_name_t names[HELL_GRANTS_MAX];
    int n = wire_recv_bootstrap(fd, rights, KERN_BOOT_FIXED + HELL_GRANTS_MAX);
    if (n < 0) {
        return -1;
    }
    int rc = n > KERN_BOOT_FIXED ? kern_bootstrap_grant_names(fd, n, names) : 0;
    ipc_lock();
    mach_port_name_t *slots[KERN_BOOT_FIXED] = {&kern_bootstrap_kname, &kern_exception_kname};
    for (unsigned i = KERN_BOOT_REGISTERED; i < KERN_BOOT_FIXED; i++) {
        slots[i] = kern_registered_slot(i - KERN_BOOT_REGISTERED);
    }
    for (int i = 0; i < n; i++) {
        if (rc != 0) {
            kright_destroy(&rights[i]);
        } else if (i < KERN_BOOT_FIXED) {
            mach_port_name_t kname = MACH_PORT_NULL;
            (void)ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], &rights[i], &kname);
            *slots[i] = kname;
        } else if (ipc_right_copyout_name(&ipc_spaces[SPACE_USER], &rights[i],
                                          names[i - KERN_BOOT_FIXED]) != KERN_SUCCESS) {
            /* (The right is consumed either way.) */
            rc = -1;
        }
    }
    struct kright task;
    if (rc == 0 && ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], kern_task_kname,
                                    MACH_MSG_TYPE_COPY_SEND, false, &task) == KERN_SUCCESS) {
        kern_service_start();
        if (wire_send_bootstrap(fd, &task, 1) != MACH_MSG_SUCCESS) {
            kright_destroy(&task);
            rc = -1;
        }
    } else {
        rc = -1;
    }
    ipc_unlock();
    return rc;
}

/* Makes the kernel-space port set of the kernel objects.  Expects [G]. */
static kern_return_t kern_objects_create(void)
{
    int fd;
    return kern_object_set_create(&kern_objects_kname, &fd);
}

kern_return_t kern_object_set_create(mach_port_name_t *set, int *fd)
{
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    struct ipc_entry *entry;
    kern_return_t kr = ipc_entry_alloc(kspace, &entry);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    kr = ipc_pset_create(&entry->pset);
    if (kr != KERN_SUCCESS) {
        ipc_entry_free(kspace, entry);
        return kr;
    }
    entry->type = MACH_PORT_TYPE_PORT_SET;
    entry->pset->name = entry->name;
    *set = entry->name;
    *fd = entry->pset->epfd;
    return KERN_SUCCESS;
}

static void kern_task_create_objects(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    kern_task_created = (time_value64_t){.seconds = now.tv_sec, .nanoseconds = now.tv_nsec};
    ipc_lock();
    if (kern_objects_create() != KERN_SUCCESS ||
        kern_object_create(IKOT_TASK, &kern_task, &kern_task_kname) != KERN_SUCCESS ||
        kern_object_create(IKOT_HOST, &kern_host, &kern_host_kname) != KERN_SUCCESS) {
        fprintf(stderr, "hell: cannot create the task's kernel ports: out of descriptors\n");
        abort();
    }
    ipc_unlock();
}

__attribute__((visibility("default"))) mach_port_t mach_thread_self(void)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_self();
    /* As GNU Mach's trap: one more user reference on every call. */
    mach_port_name_t name =
        t != NULL ? kern_give_send(kern_thread_self_kname(t)) : MACH_PORT_NULL;
    ipc_unlock();
    return name;
}

mach_port_name_t kern_exception_port(void)
{
    return kern_exception_kname;
}

mach_port_name_t kern_task_name(void)
{
    return kern_task_kname;
}

static int kern_task_priority_value = 25; /* [G] GNU Mach's BASEPRI_USER */

int kern_task_get_priority(void)
{
    return kern_task_priority_value;
}

void kern_task_set_priority(int priority)
{
    kern_task_priority_value = priority;
}

kern_return_t kern_task_set_name(mach_port_t task, const_kernel_debug_name_t name)
{
    /* GNU Mach keeps the name for its kernel debugger; here it becomes
     * the Linux name of the process (its first thread's), which ps shows.
     * (A thread name set on that thread gives way, in Linux only.) */
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    if (ok) {
        linux_thread_name_set(getpid(), name);
    }
    return ok ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
}

kern_return_t kern_task_set_essential(mach_port_t task, boolean_t essential)
{
    /* Accepted, not acted on yet: GNU Mach panics when an essential task
     * dies; machd would end the instance. */
    (void)essential;
    ipc_lock();
    bool ok = kern_is_task(task);
    ipc_unlock();
    return ok ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
}

unsigned kern_task_suspend_count(void)
{
    return kern_task_suspends;
}

void kern_task_set_suspend_count(unsigned count)
{
    kern_task_suspends = count;
}

time_value64_t kern_task_creation_time(void)
{
    return kern_task_created;
}

__attribute__((visibility("default"))) mach_port_t mach_host_self(void)
{
    ipc_lock();
    mach_port_name_t name = kern_give_send(kern_host_kname);
    ipc_unlock();
    return name;
}

void kern_task_fork_child(void)
{
    /* Only the forking thread survives; locks may be held by threads that
     * no longer exist.  Start over with a fresh name space. */
    atomic_store(&ipc_lock_state.state, 0);
    futex_locks_held = 0;
    futex_wait_mark = (struct futex_wait_mark){0};
    /* First: the parent's table of send-once rights is still mapped,
     * shared with it. */
    ipc_janitor_fork_child();
    linux_fork_child();
    ipc_watch_fork_child();
    ipc_notify_fork_child();
    ipc_pset_forget_all();
    ipc_port_forget_all();
    for (int i = 0; i < 2; i++) {
        ipc_spaces[i].names = (struct u64map){0};
        ipc_spaces[i].free_list = NULL;
        ipc_spaces[i].next_index = 1;
    }
    kern_task = kern_host = NULL;
    kern_task_kname = kern_host_kname = kern_bootstrap_kname = kern_exception_kname = 0;
    kern_registered_fork_child();
    kern_objects_kname = 0;
    kern_task_self_name = 0;
    kern_task_sself = (struct kern_sself){0};
    kern_service_running = false;
    atomic_store(&kern_elsewhere_count, 0);
    kern_task_suspends = 0;
    kern_thread_fork_child();
    kern_host_fork_child();
    kern_pset_fork_child();
    vm_attr_fork_child();
    vm_maps_fork_child();
    wire_fork_child();
    vm_movable_fork_child();
    vm_fault_fork_child();
    vm_object_fork_child();
    vm_remote_fork_child();
    vm_server_fork_child();
    vm_reap_fork_child();
    atomic_fetch_add(&kern_fork_generation, 1);
    kern_task_create_objects();
}

void kern_task_init(void)
{
    linux_raise_nofile();
    ipc_janitor_init();
    struct sigaction sa = {.sa_handler = kern_wake_handler};
    sigemptyset(&sa.sa_mask);
    sigaction(ipc_wake_signal(), &sa, NULL);
    /* Movable regions become copy-on-write before the child shares them. */
    pthread_atfork(vm_movable_fork_prepare, vm_movable_fork_parent, kern_task_fork_child);
    kern_task_create_objects();
    kern_control_init();
    kern_exc_init();

    if (getenv("HELL_EMPTY_TASK") != NULL) {
        /* hell-task, the body of an empty task: its only thread is
         * hidden before its creator can count them. */
        unsetenv("HELL_EMPTY_TASK");
        linux_helper_adopt_self();
        kern_task_empty = true;
    }
    const char *env = getenv("HELL_BOOTSTRAP_FD");
    if (env != NULL) {
        int fd = atoi(env);
        unsetenv("HELL_BOOTSTRAP_FD");
        if (kern_bootstrap_child(fd) != 0) {
            fprintf(stderr, "hell: bootstrap handshake with the parent failed\n");
        }
        linux_close(fd);
    }
}

EXPORT void hell_task_idle(void)
{
    while (kern_task_empty) {
        pause();
    }
}

__attribute__((constructor)) static void kern_constructor(void)
{
    kern_task_init();
}
