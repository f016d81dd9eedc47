/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "time" device of machd's device server (device_time.c): a page
 * holding GNU Mach's mapped_time_value_t (<mach/time_value.h>), which
 * device_map hands out as a memory object that tasks map read-only.
 * Private to machd/device*.c; what clients see is in device.h.
 *
 * The page is updated at GNU Mach's clock tick (every 10 ms) by a thread
 * started at the first device_map, in the order GNU Mach writes it, so
 * that a reader following <mach/time_value.h>'s loop never sees a torn
 * value.  None of these functions expects a lock.
 */
#ifndef HELL_MACHD_DEVICE_TIME_H
#define HELL_MACHD_DEVICE_TIME_H

#include <mach.h>

/* Makes the page and its memory object port (a receive right, moved into
 * the port set SET so that stray messages to it are answered) and lends
 * the page to the VM server (hell_vm_direct_object).  Returns 0, or -1
 * with a message on standard error.  Called once, by device_setup. */
int device_time_init(mach_port_t set);

/* The memory object of the page (a name machd keeps a send right under,
 * for the caller to copy), its updates started.  Returns MACH_PORT_NULL
 * when the update thread cannot start. */
mach_port_t device_time_pager(void);

#endif
