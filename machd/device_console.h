/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The console device of machd's device server (device_console.c): what
 * device.c calls.  Private to machd/device*.c; what clients see of the
 * console is in device.h.
 *
 * The locks named here are the console's (Q), (R) and (W), described
 * with the locking keys of device_console.c; none of these functions
 * expects any lock held, device.c's (L) included.
 */
#ifndef HELL_MACHD_DEVICE_CONSOLE_H
#define HELL_MACHD_DEVICE_CONSOLE_H

#include <device/device_types.h>
#include <mach.h>
#include <stdbool.h>
#include <stddef.h>

#define DEVICE_CONSOLE_READ_MAX 4096u /* bytes per console read */

/* Takes the console's descriptors IN and OUT (kept, not closed; -1: the
 * console has no input or no output) and makes the console thread's
 * wake-up counter.  Returns 0, or -1 with a message on standard error.
 * Called once, by device_setup, before any other device_console_
 * function. */
int device_console_init(int in, int out);

/* Undoes device_console_init after it succeeded: closes the wake-up
 * counter (the descriptors stay the caller's).  Only by device_setup,
 * when it fails. */
void device_console_destroy(void);

/* Whether the console has input, hence a console thread (device_serve
 * starts it): constant once device_setup has returned. */
bool device_console_has_input(void);

/* Makes the port on which the console learns of the death of a waiting
 * read's reply port, and puts it in the device server threads' set
 * (device_set_add), which must exist.  Returns what mach_port_allocate
 * or mach_port_move_member returned.  Called once, by device_setup. */
kern_return_t device_console_notify_make(void);

/* Serves IN when it is a notification on that port: a dead-name
 * notification (its reference to the dead name released) has the console
 * thread drop the reads whose reply port died; a port-deleted
 * notification (a read answered) needs nothing.  Same contract as
 * device_demux; returns FALSE for anything else.  Needs no lock. */
boolean_t device_console_notify_demux(mach_msg_header_t *in, mach_msg_header_t *out);

/* The console thread, to start (detached) once, and only when
 * device_console_has_input(): answers the queued reads, oldest first, as
 * input comes (serving each request again through device_demux and
 * sending its reply), drops those whose reply port died (their input
 * stays for later reads), and destroys the ports buried behind them.  Runs
 * for ever; returns NULL at once, with a message, if it cannot allocate
 * its reply buffer (queued reads are then never answered). */
void *device_console_main(void *arg);

/* Reads at most COUNT (> 0) bytes of console input into BUF and stores
 * how many in *DONE (0: end of input).  In a server thread, when none is
 * available or older reads wait: D_WOULD_BLOCK with D_NOWAIT in MODE,
 * else the request being served (device_request) is queued for the
 * console thread: MIG_NO_REPLY (the queue keeps the request and its reply
 * right), or D_NO_MEMORY when the queue is full.  Returns D_SUCCESS,
 * those, D_INVALID_OPERATION (the console has no input) or the device
 * error of a failed read.  Takes and releases (Q) and (R). */
kern_return_t device_console_read(dev_mode_t mode, char *buf, size_t count, size_t *done);

/* Writes COUNT bytes of BUF to the console, all of them unless an error
 * stops it, and stores how many were written in *DONE.  Returns
 * D_SUCCESS, D_INVALID_OPERATION (the console has no output), D_IO_ERROR
 * (the output took nothing) or the device error of a failed write.
 * Takes and releases (W). */
kern_return_t device_console_write(const char *buf, size_t count, size_t *done);

/* Discards the input waiting in the console's input when that is a pipe
 * or a socket (a terminal's is tcflush's; a file's is left): what
 * TTY_FLUSH does to input (device_tty.c).  Does nothing while a read
 * holds (R): that read takes the input.  Takes and releases (R), with a
 * try-lock. */
void device_console_discard(void);

/* Destroys PORT, a console port just closed (no longer the console's
 * open port), after the reads queued on it are answered: by the console
 * thread, so only when device_console_has_input().  Consumes the receive
 * right PORT; short of memory, destroys it at once (its waiting reads
 * die with it).  Takes and releases (Q). */
void device_console_bury(mach_port_t port);

#endif
