/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Flags of gsync_wait, gsync_wake and gsync_requeue (gnumach.defs), with
 * GNU Mach's values (its kern/gsync.h; glibc's Hurd port uses the same).
 */
#ifndef _MACH_GSYNC_H
#define _MACH_GSYNC_H

/* The address may be shared among tasks: waiters and wakers meet by the
 * memory object and offset, not by task and address. */
#define GSYNC_SHARED 0x01
/* gsync_wait also compares the next 32-bit word with VAL2. */
#define GSYNC_QUAD 0x02
/* gsync_wait blocks at most MSEC milliseconds (then KERN_TIMEDOUT). */
#define GSYNC_TIMED 0x04
/* gsync_wake wakes every waiter, gsync_requeue moves every waiter. */
#define GSYNC_BROADCAST 0x08
/* gsync_wake stores VAL at the address before waking. */
#define GSYNC_MUTATE 0x10

#endif /* _MACH_GSYNC_H */
