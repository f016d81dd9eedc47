/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The console's terminal status (device_tty.c): device_get_status and
 * device_set_status on the console, with the flavors of
 * <device/tty_status.h>.  Private to machd/device*.c; what clients see is
 * in device.h.
 *
 * GNU Mach's "console" is its kd (screen and keyboard) or com (serial
 * line) driver, both over chario's tty_get_status/tty_set_status; HELL's
 * console is a Linux terminal or a pipe, so it answers as com does, the
 * driver of a line: TTY_STATUS, TTY_MODEM, TTY_FLUSH, TTY_STOP,
 * TTY_START, TTY_SET_BREAK and TTY_CLEAR_BREAK.  Where the console is a
 * terminal they act on it (termios, tcflush, tcflow, break and modem
 * ioctls); a record keeps what the terminal cannot hold, and everything
 * where the console is no terminal, so that a get returns what a set
 * stored.
 *
 * The lock named (S) is device_tty.c's; it is taken with device.c's (L)
 * held (L before S, never the reverse) and never with the console's
 * (Q), (R) or (W).
 */
#ifndef HELL_MACHD_DEVICE_TTY_H
#define HELL_MACHD_DEVICE_TTY_H

#include <device/device_types.h>
#include <mach.h>

/* Takes the console's descriptors IN and OUT (kept, not closed; -1:
 * none), and which of them are terminals.  Called once, by
 * device_console_init, before any other device_tty_ function. */
void device_tty_init(int in, int out);

/* device_get_status on the console: TTY_STATUS (D_INVALID_OPERATION if
 * *COUNT is below TTY_STATUS_COUNT) or TTY_MODEM (one integer, whatever
 * *COUNT, as GNU Mach's com).  Fills STATUS and *COUNT; returns
 * D_SUCCESS, D_INVALID_OPERATION (another flavor) or the device error of
 * a terminal that cannot be read.  Takes and releases (S). */
kern_return_t device_tty_get_status(dev_flavor_t flavor, dev_status_t status,
                                    mach_msg_type_number_t *count);

/* device_set_status on the console, COUNT integers of STATUS.  Returns
 * D_SUCCESS, D_INVALID_OPERATION (another flavor, a count below the
 * flavor's, a speed out of range, a terminal that refuses the setting) or
 * the device error of a terminal call that failed.  TTY_FLUSH of input
 * takes and releases the console's (R) (device_console_discard), outside
 * (S).  Takes and releases (S). */
kern_return_t device_tty_set_status(dev_flavor_t flavor, const dev_status_t status,
                                    mach_msg_type_number_t count);

/* Restarts output stopped by TTY_STOP: a console write does, as GNU
 * Mach's char_write.  Takes and releases (S); called without (W). */
void device_tty_output_restart(void);

/* The console's first open (its open count leaves 0): the break
 * character goes back to 0 and the modem bits get DTR and RTS, as GNU
 * Mach's comopen (ttychars, comparam).  Expects (L); takes and releases
 * (S). */
void device_tty_opened(void);

/* The console's last close: output restarts, the break clears, the
 * modem bits and the hang-up-on-close flag clear, as GNU Mach's ttyclose
 * and comclose (the terminal's modem lines are left alone).  Expects
 * (L); takes and releases (S). */
void device_tty_closed(void);

#endif
