/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * I/O permission ports (mach_i386.defs: i386_io_perm_create 3805, asked
 * of the device master port), as GNU Mach makes them: a port per range
 * of I/O ports [from, to], freed when its last send right goes; a range
 * meeting the PCI configuration ports (0xcf8-0xcff) while another live
 * port holds them is refused with KERN_PROTECTION_FAILURE.  A task
 * serving i386_io_perm_modify learns a port's range by asking it
 * (HELL_IO_PERM_RANGE_ID, protocol.h), answered here.
 *
 * Locking: (P) io_perm_lock, the table.
 */
#include <mach.h>
#include <mach/notify.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "device_i.h"
#include "mach_i386.server.h"
#include "protocol.h"

boolean_t mach_i386_server(mach_msg_header_t *in, mach_msg_header_t *out);

struct io_perm {
    mach_port_t port; /* receive right, in the device set */
    io_port_t from, to;
};

static pthread_mutex_t io_perm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct io_perm *io_perms; /* (P) */
static size_t io_perm_count;     /* (P) */
static size_t io_perm_cap;       /* (P) */

#define PCI_CFG_FIRST 0xcf8
#define PCI_CFG_LAST 0xcff

static bool io_perm_meets_pci(io_port_t from, io_port_t to)
{
    return from <= PCI_CFG_LAST && to >= PCI_CFG_FIRST;
}

/* The entry of PORT, or NULL.  Expects (P). */
static struct io_perm *io_perm_find(mach_port_t port)
{
    for (size_t i = 0; i < io_perm_count; i++) {
        if (io_perms[i].port == port) {
            return &io_perms[i];
        }
    }
    return NULL;
}

kern_return_t ds_i386_io_perm_create(mach_port_t master_port, io_port_t from, io_port_t to,
                                     mach_port_t *io_perm)
{
    if (!device_is_master(master_port) || from > to) {
        return KERN_INVALID_ARGUMENT;
    }
    mach_port_t self = mach_task_self();
    pthread_mutex_lock(&io_perm_lock);
    kern_return_t kr = KERN_SUCCESS;
    for (size_t i = 0; i < io_perm_count && kr == KERN_SUCCESS; i++) {
        if (io_perm_meets_pci(from, to) &&
            io_perm_meets_pci(io_perms[i].from, io_perms[i].to)) {
            kr = KERN_PROTECTION_FAILURE;
        }
    }
    if (kr == KERN_SUCCESS && io_perm_count == io_perm_cap) {
        size_t cap = io_perm_cap ? 2 * io_perm_cap : 8;
        struct io_perm *grown = realloc(io_perms, cap * sizeof *grown);
        if (grown == NULL) {
            kr = KERN_RESOURCE_SHORTAGE;
        } else {
            io_perms = grown;
            io_perm_cap = cap;
        }
    }
    mach_port_t port = MACH_PORT_NULL;
    if (kr == KERN_SUCCESS) {
        kr = mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &port);
    }
    if (kr == KERN_SUCCESS) {
        /* Told of no senders on itself; the reply moves the one send
         * right made here (the stub is patched from COPY_SEND). */
        mach_port_t previous = MACH_PORT_NULL;
        kr = mach_port_insert_right(self, port, port, MACH_MSG_TYPE_MAKE_SEND);
        if (kr == KERN_SUCCESS) {
            kr = mach_port_request_notification(self, port, MACH_NOTIFY_NO_SENDERS, 1, port,
                                                MACH_MSG_TYPE_MAKE_SEND_ONCE, &previous);
        }
        if (kr == KERN_SUCCESS) {
            kr = device_set_add(port);
        }
        if (kr != KERN_SUCCESS) {
            (void)mach_port_destroy(self, port);
        }
    }
    if (kr == KERN_SUCCESS) {
        io_perms[io_perm_count++] = (struct io_perm){.port = port, .from = from, .to = to};
        *io_perm = port;
    }
    pthread_mutex_unlock(&io_perm_lock);
    return kr;
}

/* No senders left on PORT: the permission is gone (a notification
 * forged while senders remain changes nothing). */
static void io_perm_no_senders(mach_port_t port)
{
    mach_port_status_t status;
    pthread_mutex_lock(&io_perm_lock);
    struct io_perm *p = io_perm_find(port);
    if (p != NULL && mach_port_get_receive_status(mach_task_self(), port, &status) ==
                         KERN_SUCCESS && status.mps_srights == 0) {
        *p = io_perms[--io_perm_count];
        device_port_destroy(port);
    }
    pthread_mutex_unlock(&io_perm_lock);
}

/* Answers a range request on an I/O permission port. */
static void io_perm_range(mach_msg_header_t *in, mach_msg_header_t *out)
{
    struct hell_io_perm_range_reply *reply = (struct hell_io_perm_range_reply *)out;
    *reply = (struct hell_io_perm_range_reply){
        .head = {.msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(in->msgh_bits), 0),
                 .msgh_size = sizeof *reply,
                 .msgh_remote_port = in->msgh_remote_port,
                 .msgh_id = in->msgh_id + 100},
        .ret_type = {.msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
                     .msgt_number = 1, .msgt_inline = TRUE},
        .ret = KERN_SUCCESS,
        .range_type = {.msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
                       .msgt_number = 2, .msgt_inline = TRUE},
    };
    pthread_mutex_lock(&io_perm_lock);
    struct io_perm *p = io_perm_find(in->msgh_local_port);
    if (p != NULL) {
        reply->from = p->from;
        reply->to = p->to;
    } else {
        reply->to = 0;
        reply->from = 1; /* no range: from past to */
    }
    pthread_mutex_unlock(&io_perm_lock);
}

boolean_t device_io_perm_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
    if (in->msgh_id == MACH_NOTIFY_NO_SENDERS &&
        in->msgh_size == sizeof(mach_no_senders_notification_t) &&
        !(in->msgh_bits & MACH_MSGH_BITS_COMPLEX) && !MACH_PORT_VALID(in->msgh_remote_port)) {
        io_perm_no_senders(in->msgh_local_port);
        ((mig_reply_header_t *)out)->RetCode = MIG_NO_REPLY;
        ((mig_reply_header_t *)out)->Head.msgh_remote_port = MACH_PORT_NULL;
        return TRUE;
    }
    if (in->msgh_id == HELL_IO_PERM_RANGE_ID && in->msgh_size == sizeof(mach_msg_header_t) &&
        MACH_PORT_VALID(in->msgh_remote_port)) {
        io_perm_range(in, out);
        return TRUE;
    }
    return mach_i386_server(in, out);
}

/* The other calls of mach_i386.defs, asked of a device port: it is no
 * thread, task or host. */
kern_return_t ds_i386_io_perm_modify(mach_port_t task, mach_port_t io_perm, boolean_t enable)
{
    return KERN_INVALID_ARGUMENT;
}

kern_return_t ds_i386_set_ldt(mach_port_t thread, int first_selector,
                              const_descriptor_list_t desc_list, mach_msg_type_number_t count,
                              boolean_t inline_list)
{
    return KERN_INVALID_ARGUMENT;
}

kern_return_t ds_i386_get_ldt(mach_port_t thread, int first_selector, int selector_count,
                              descriptor_list_t *desc_list, mach_msg_type_number_t *count)
{
    return KERN_INVALID_ARGUMENT;
}

kern_return_t ds_i386_set_gdt(mach_port_t thread, int *selector, descriptor_t desc)
{
    return KERN_INVALID_ARGUMENT;
}

kern_return_t ds_i386_get_gdt(mach_port_t thread, int selector, descriptor_t *desc)
{
    return KERN_INVALID_ARGUMENT;
}

kern_return_t ds_i386_get_xstate_size(mach_port_t host, vm_size_t *size)
{
    return KERN_INVALID_HOST;
}
