/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * machd's devices: the device master port and the devices behind it
 * (device.defs), backed by Linux.
 *
 * - "console": the terminal the instance was started from (machd's
 *   standard input and output);
 * - disks: files or block devices named at start-up, by record of 512
 *   bytes;
 * - "time": GNU Mach's mapped time (mapped_time_value_t), a page that
 *   device_map hands out and tasks vm_map, updated every 10 ms.
 *
 * What device.defs answers, after GNU Mach (the reference manual's
 * "Device Interface" chapter, device/ds_routines.c, and the block-device
 * glue behind the Hurd's "hd" disks):
 *
 * - device_open_new (msgh_id 2806, the name a C string) is device_open,
 *   as GNU Mach's ds_device_open_new.
 * - device_open on any port but the master: D_INVALID_OPERATION; an
 *   unknown name: D_NO_SUCH_DEVICE; without a reply port: no reply and
 *   nothing opened.  Opening an open device again gives the same port
 *   and counts one more open; a disk keeps one port per access mode
 *   (read, write, read/write; mode 0 is read), as GNU Mach's block glue
 *   does; the console and "time" have one port whatever the mode.
 *   D_WRITE on a read-only disk: D_READ_ONLY.
 * - device_close counts an open down; the last close destroys the port
 *   (calls through it then fail with MACH_SEND_INVALID_DEST, as with
 *   GNU Mach) and a later open makes a new one.  Console reads waiting on
 *   it are answered D_NO_SUCH_DEVICE, then the port dies; a call that
 *   overtakes the death gets D_NO_SUCH_DEVICE.  No-senders is not requested (GNU Mach's native
 *   devices ignore it too): a task that dies with a device open leaves
 *   the open counted, and one port per device and mode cannot pile up.
 * - Every call but device_open on the master port, or on a port that is
 *   not an open device: D_NO_SUCH_DEVICE.
 * - Disks: the size is the file's (or block device's) rounded down to a
 *   record.  A transfer at RECNUM starts at byte RECNUM * 512, of any
 *   byte count; one that crosses the end is cut there, one that starts
 *   at the end moves nothing, one that starts past it is D_INVALID_SIZE
 *   (GNU Mach's check_limit: the disk glue never answers
 *   D_INVALID_RECNUM); a negative count is D_INVALID_SIZE.  device_read
 *   returns at most 16 MiB a call (GNU Mach's drivers cut reads too, so
 *   callers loop), device_read_inband at most IO_INBAND_MAX.  Writing
 *   through a port opened without D_WRITE, or reading through one opened
 *   without D_READ: D_INVALID_OPERATION.
 * - device_get_status on disks: DEV_GET_SIZE and DEV_GET_RECORDS, always
 *   with their DEV_GET_*_COUNT integers (a caller that asked for fewer
 *   gets MIG_ARRAY_TOO_LARGE from its stub, as with GNU Mach); a value
 *   that does not fit an int reads INT_MAX.  Every other flavor, and
 *   every device_set_status on disks and "time": D_INVALID_OPERATION.
 * - The console's status is <device/tty_status.h>'s, as GNU Mach's com
 *   (serial line) driver answers it (device_tty.h): get TTY_STATUS and
 *   TTY_MODEM; set TTY_STATUS, TTY_MODEM, TTY_FLUSH, TTY_STOP, TTY_START,
 *   TTY_SET_BREAK, TTY_CLEAR_BREAK; any other flavor (GNU Mach has no
 *   TTY_DRAIN; kd, com and chario ignore TTY_SET_TRANSLATION), a count below
 *   the flavor's (TTY_MODEM's get excepted: one integer whatever the
 *   count) or a speed outside 0..NSPEEDS-1: D_INVALID_OPERATION.  On a
 *   terminal they act on it: speeds and flags are termios (TF_TANDEM
 *   IXOFF, TF_ECHO ECHO, TF_CRMOD ICRNL and ONLCR, TF_XTABS TAB3,
 *   TF_NOHANG CLOCAL, TF_HUPCLS HUPCL, TF_LITOUT 8 bits without parity,
 *   else 7 with TF_EVENP's or odd parity), TTY_FLUSH tcflush, TTY_STOP and
 *   TTY_START tcflow, the breaks TIOCSBRK/TIOCCBRK, TTY_MODEM the modem
 *   lines where the terminal has them; a record keeps the rest (the
 *   break character, TF_MDMBUF) and everything where the console is no
 *   terminal.  A get returns what a set stored, but for what has changed
 *   on the terminal since.  TF_HUPCLS, once set, stays until the last
 *   close, as in chario; a console write restarts output stopped, as
 *   GNU Mach's char_write; TTY_FLUSH of input discards what waits in a
 *   pipe (a FIFO) too.  The first open clears the break character and
 *   raises DTR and RTS in the record; the last close restarts output,
 *   clears the break and the modem bits (the terminal's DTR is not
 *   dropped).
 * - device_map: a protection beyond VM_PROT_ALL is KERN_INVALID_ARGUMENT;
 *   on "time", whatever the range, the memory object of the time page
 *   (the same port every time, a send right copied to the caller), which
 *   vm_map maps read-only: a mapping that may write gets
 *   KERN_PROTECTION_FAILURE (GNU Mach's would fault on the first write), a
 *   copy (copy TRUE) is a snapshot the task may write, and a page past
 *   the first faults (EXC_BAD_ACCESS) when touched.  "time" is only
 *   mapped: its reads and writes are D_INVALID_OPERATION, as is
 *   device_map on every other device.  device_set_filter,
 *   device_intr_register, device_intr_ack: D_INVALID_OPERATION (no
 *   network or interrupt devices).
 * - The console writes all it is given to its output.  A read answers
 *   as soon as at least one byte is there (at most 4096 bytes; end of
 *   input answers 0 bytes), in the order the reads came; with D_NOWAIT
 *   and nothing there, D_WOULD_BLOCK.  At most 64 reads wait at once,
 *   more get D_NO_MEMORY.  Waiting reads never hold up other devices.  A
 *   waiting read whose reply port dies (its task killed) is dropped and
 *   takes no input, as GNU Mach's tty_portdeath drops it.
 */
#ifndef HELL_MACHD_DEVICE_H
#define HELL_MACHD_DEVICE_H

#include <mach.h>
#include <stdbool.h>

/* A disk named at start-up: NAME (e.g. "hd0") is what device_open takes,
 * PATH the file or block device behind it. */
struct device_disk {
    const char *name;
    const char *path;
    bool readonly;
};

/* Opens every disk and makes the device master port.  CONSOLE_IN and
 * CONSOLE_OUT are the console's descriptors (kept, not closed; -1: the
 * console has no input or output, D_INVALID_OPERATION).  The strings of
 * DISKS are copied; disk names must be distinct, shorter than 128 bytes
 * and not "console" or "time".  Returns 0 and stores in *MASTER a send
 * right to the master port (the caller owns it), or -1 with a message on
 * standard error when a disk cannot be opened or its name is bad.  Call once,
 * before device_serve. */
int device_setup(const struct device_disk *disks, unsigned ndisks, int console_in,
                 int console_out, mach_port_t *master);

/* Starts NTHREADS (> 0) threads serving the master port and every device
 * port, and the console thread (which answers reads that had to wait).
 * The threads run until machd exits; they block SIGPIPE, so a console
 * output whose reader is gone gives D_IO_ERROR.  Returns 0, or -1 with
 * errno set (threads already started keep running). */
int device_serve(unsigned nthreads);

#endif
