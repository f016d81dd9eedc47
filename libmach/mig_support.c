/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The MIG runtime and the remaining traps: per-thread reply ports,
 * mig_allocate/deallocate, mach_msg_server, mach_msg_destroy.
 */
#include <mach.h>
#include <mach/mig_errors.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ipc_space.h"
#include "ipc_types.h"
#include "kern.h"
#include "kern_notify.h"
#include "msg_destroy.h"

#define EXPORT __attribute__((visibility("default")))

extern atomic_uint kern_fork_generation;

EXPORT vm_size_t vm_page_size = 4096;

static __thread mach_port_t mig_reply_port;
static __thread unsigned mig_reply_generation;
/* Its port's serial: another may have released the name since (the
 * thread_terminate_release of the thread) and a new port taken it. */
static __thread uint64_t mig_reply_serial;
/* Its destructor releases an exiting thread's reply port, as glibc's
 * thread exit does on the Hurd: a program whose threads come and go (a
 * libports pool that shrinks) would otherwise keep a port, and its
 * descriptors here and in machd, per thread it ever had. */
static pthread_key_t mig_reply_key;
static bool mig_reply_key_made; /* (no key left: ports outlive threads) */
static pthread_once_t mig_reply_once = PTHREAD_ONCE_INIT;

static void mig_reply_exit(void *arg)
{
    (void)arg;
    mig_dealloc_reply_port(MACH_PORT_NULL);
}

static void mig_reply_key_create(void)
{
    mig_reply_key_made = pthread_key_create(&mig_reply_key, mig_reply_exit) == 0;
}

EXPORT void mig_init(void *arg)
{
    (void)arg;
    mig_reply_port = MACH_PORT_NULL;
}

EXPORT mach_port_t mig_get_reply_port(void)
{
    unsigned generation = atomic_load(&kern_fork_generation);
    if (mig_reply_port == MACH_PORT_NULL || mig_reply_generation != generation) {
        mig_reply_port = kern_reply_port_new(&mig_reply_serial);
        mig_reply_generation = generation;
        (void)pthread_once(&mig_reply_once, mig_reply_key_create);
        if (mig_reply_key_made) {
            (void)pthread_setspecific(mig_reply_key, (void *)1);
        }
    }
    return mig_reply_port;
}

EXPORT void mig_dealloc_reply_port(mach_port_t port)
{
    (void)port;
    mach_port_t old = mig_reply_port;
    mig_reply_port = MACH_PORT_NULL;
    if (MACH_PORT_VALID(old) && mig_reply_generation == atomic_load(&kern_fork_generation)) {
        /* Destroyed in place: mach_port_mod_refs would be an RPC, which
         * takes a reply port (a new one, made for it).  Only if the name
         * still holds that port. */
        ipc_lock();
        struct ipc_entry *entry = ipc_entry_lookup(&ipc_spaces[SPACE_USER], old);
        if (entry != NULL && (entry->type & MACH_PORT_TYPE_RECEIVE) &&
            entry->port->serial == mig_reply_serial) {
            (void)ipc_right_delta(&ipc_spaces[SPACE_USER], old, MACH_PORT_RIGHT_RECEIVE, -1);
        }
        ipc_unlock();
        kern_notify_flush_pending();
    }
}

EXPORT void mig_put_reply_port(mach_port_t port)
{
    (void)port;
}

EXPORT void mig_allocate(vm_address_t *addr, vm_size_t size)
{
    if (vm_allocate(mach_task_self(), addr, size, TRUE) != KERN_SUCCESS) {
        *addr = 0;
    }
}

EXPORT void mig_deallocate(vm_address_t addr, vm_size_t size)
{
    (void)vm_deallocate(mach_task_self(), addr, size);
}

EXPORT void mig_reply_setup(const mach_msg_header_t *request, mach_msg_header_t *reply)
{
    mig_reply_header_t *r = (mig_reply_header_t *)reply;
    static const mach_msg_type_t ret_code_type = {
        .msgt_name = MACH_MSG_TYPE_INTEGER_32,
        .msgt_size = 32,
        .msgt_number = 1,
        .msgt_inline = TRUE,
    };
    r->Head.msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(request->msgh_bits), 0);
    r->Head.msgh_size = sizeof *r;
    r->Head.msgh_remote_port = request->msgh_remote_port;
    r->Head.msgh_local_port = MACH_PORT_NULL;
    r->Head.msgh_seqno = 0;
    r->Head.msgh_id = request->msgh_id + 100;
    r->RetCodeType = ret_code_type;
    r->RetCode = MIG_BAD_ID;
}

EXPORT void mach_msg_destroy(mach_msg_header_t *msg)
{
    msg_destroy_in(0 /* SPACE_USER */, msg, true);
}

EXPORT mach_msg_return_t
mach_msg_server_timeout(boolean_t (*demux)(mach_msg_header_t *, mach_msg_header_t *),
                        mach_msg_size_t max_size, mach_port_t rcv_name,
                        mach_msg_option_t option, mach_msg_timeout_t timeout)
{
    if (max_size == 0) {
        max_size = 2 * 4096;
        option |= MACH_RCV_LARGE;
    }
    mach_msg_header_t *request = malloc(max_size);
    mach_msg_header_t *reply = malloc(max_size);
    mach_msg_return_t mr;
    if (request == NULL || reply == NULL) {
        free(request);
        free(reply);
        return MACH_RCV_TOO_LARGE | MACH_MSG_VM_KERNEL;
    }
    mr = mach_msg(request, MACH_RCV_MSG | option, 0, max_size, rcv_name, timeout,
                  MACH_PORT_NULL);
    while (mr == MACH_MSG_SUCCESS) {
        (void)(*demux)(request, reply);
        mig_reply_header_t *r = (mig_reply_header_t *)reply;
        if (r->RetCode == MIG_NO_REPLY) {
            reply->msgh_remote_port = MACH_PORT_NULL;
        } else if (r->RetCode != KERN_SUCCESS) {
            request->msgh_remote_port = MACH_PORT_NULL;
            mach_msg_destroy(request);
        }
        if (reply->msgh_remote_port == MACH_PORT_NULL) {
            if (r->RetCode != MIG_NO_REPLY && (reply->msgh_bits & MACH_MSGH_BITS_COMPLEX)) {
                mach_msg_destroy(reply);
            }
            mr = mach_msg(request, MACH_RCV_MSG | option, 0, max_size, rcv_name,
                          timeout, MACH_PORT_NULL);
            continue;
        }
        mach_msg_header_t *tmp = request;
        request = reply;
        reply = tmp;
        mr = mach_msg(request, MACH_SEND_MSG | MACH_RCV_MSG | option,
                      request->msgh_size, max_size, rcv_name, timeout, MACH_PORT_NULL);
        if (mr == MACH_SEND_INVALID_DEST) {
            mach_msg_destroy(request);
            mr = mach_msg(request, MACH_RCV_MSG | option, 0, max_size, rcv_name,
                          timeout, MACH_PORT_NULL);
        }
    }
    if (mr == MACH_RCV_TOO_LARGE && (option & MACH_RCV_LARGE)) {
        mach_msg_size_t need = request->msgh_size;
        free(request);
        free(reply);
        return mach_msg_server_timeout(demux, need, rcv_name, option, timeout);
    }
    free(request);
    free(reply);
    return mr;
}

EXPORT mach_msg_return_t
mach_msg_server(boolean_t (*demux)(mach_msg_header_t *, mach_msg_header_t *),
                mach_msg_size_t max_size, mach_port_t rcv_name)
{
    return mach_msg_server_timeout(demux, max_size, rcv_name, MACH_MSG_OPTION_NONE, 0);
}
