/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What device.c, machd's device server, shares with the file serving the
 * console (device_console.c).  Private to machd/device*.c.
 */
#ifndef HELL_MACHD_DEVICE_I_H
#define HELL_MACHD_DEVICE_I_H

#include <mach.h>
#include <stdbool.h>

#define DEVICE_MSG_MAX 8192u /* largest request or reply */

/* The request the calling thread is serving while device_demux serves
 * it, NULL otherwise: a console read that has to wait keeps a copy. */
extern _Thread_local mach_msg_header_t *device_request;

/* The one place where Linux errors become device errors: returns the
 * device error (D_*) for the errno value ERR, D_IO_ERROR for one with no
 * closer match. */
kern_return_t device_errno(int err);

/* Serves IN, a device.defs request, into OUT (DEVICE_MSG_MAX bytes), with
 * device_request set to IN meanwhile: the MIG demultiplexer's contract
 * (returns whether IN was a device.defs request; the reply's RetCode says
 * what became of IN's rights and memory). */
boolean_t device_demux(mach_msg_header_t *in, mach_msg_header_t *out);

/* Serves IN when it is a request of mach_i386.defs (i386_io_perm_create
 * on the master port), or a no-senders notification or range request on
 * an I/O permission port (device_io_perm.c); same contract as
 * device_demux.  Takes and releases its own lock. */
boolean_t device_io_perm_demux(mach_msg_header_t *in, mach_msg_header_t *out);

/* Sends OUT, the reply device_demux made to IN, as mach_msg_server
 * would, but destroys a reply that could not be sent, whatever the
 * error: mach_msg_server keeps it only for MACH_SEND_INVALID_DEST, and
 * otherwise (MACH_SEND_NO_BUFFER when the client dies in the middle of a
 * reply, say) loses it with what it holds (a disk read's pages, the
 * reply right).  Consumes the rights and memory of IN and OUT. */
void device_reply_send(mach_msg_header_t *in, mach_msg_header_t *out);

/* Whether PORT names the device master port.  Needs no lock. */
bool device_is_master(mach_port_t port);

/* Puts PORT, a receive right, in the set the device server threads
 * receive on.  Returns what mach_port_move_member returns.  Needs no
 * lock. */
kern_return_t device_set_add(mach_port_t port);

/* Whether PORT is the console's open port.  Takes and releases (L). */
bool device_is_open_console(mach_port_t port);

/* Destroys PORT, a device port's receive right (consumed): requests still
 * queued on it die with it, their clients get MIG_SERVER_DIED. */
void device_port_destroy(mach_port_t port);

#endif
