/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * i386_io_perm_modify (mach_i386.defs 3806): the task's side.  The I/O
 * permission port comes from machd (i386_io_perm_create on the device
 * master port, machd/device_io_perm.c), which tells its range when asked
 * (HELL_IO_PERM_RANGE_ID).  GNU Mach sets the range in the task's I/O
 * bitmap; Linux keeps one per thread (ioperm), which threads made later
 * inherit from their maker: HELL sets the range in the bitmap of the
 * thread that makes the call, when that thread is one of the task's (the
 * way glibc's ioperm calls it, on mach_task_self()).  A call on behalf
 * of another task, or one Linux refuses (a kernel without I/O bitmaps, a
 * process without CAP_SYS_RAWIO), answers KERN_PROTECTION_FAILURE.
 */
#include <mach.h>
#include <sys/io.h>

#include "ipc_space.h"
#include "kern.h"
#include "msg_destroy.h"
#include "mach_i386.server.h"
#include "protocol.h"

/* How long the permission port's server has to tell its range. */
#define KERN_IO_PERM_ASK_MS 5000

/* Asks IO_PERM (a kernel-space send right, kept) for its range.
 * Returns whether a valid range came. */
static bool kern_io_perm_range(mach_port_t io_perm, unsigned *from, unsigned *to)
{
    union {
        mach_msg_header_t in;
        struct hell_io_perm_range_reply out;
        char room[sizeof(struct hell_io_perm_range_reply) + 64];
    } m = {.in = {.msgh_remote_port = io_perm, .msgh_id = HELL_IO_PERM_RANGE_ID}};
    if (kern_call_timed(&m.in, sizeof m.in, sizeof m, KERN_IO_PERM_ASK_MS) !=
        MACH_MSG_SUCCESS) {
        return false;
    }
    bool ok = m.out.head.msgh_id == HELL_IO_PERM_RANGE_ID + 100 &&
              m.out.head.msgh_size == sizeof m.out &&
              !(m.out.head.msgh_bits & MACH_MSGH_BITS_COMPLEX) && m.out.ret == KERN_SUCCESS &&
              m.out.from <= m.out.to && m.out.to <= 0xffff;
    *from = m.out.from;
    *to = m.out.to;
    msg_destroy_in(SPACE_KERNEL, &m.in, true); /* whatever else it carried */
    return ok;
}

kern_return_t kern_i386_io_perm_modify(mach_port_t task, mach_port_t io_perm, boolean_t enable)
{
    ipc_lock();
    bool task_ok = kern_is_task(task);
    ipc_unlock();
    if (!task_ok || !MACH_PORT_VALID(io_perm)) {
        return KERN_INVALID_ARGUMENT;
    }
    /* The port's server may take its time: not in the service thread. */
    if (kern_serving_other_task() && kern_serve_elsewhere()) {
        return MIG_NO_REPLY;
    }
    unsigned from, to;
    if (!kern_io_perm_range(io_perm, &from, &to)) {
        return KERN_INVALID_ARGUMENT;
    }
    if (kern_serving_other_task() || ioperm(from, to - from + 1, enable != FALSE) != 0) {
        return KERN_PROTECTION_FAILURE;
    }
    kern_release_right(io_perm); /* the request's */
    return KERN_SUCCESS;
}

/* Only machd has the device master port: asked of any port of a task,
 * the answer is GNU Mach's for a port that is not the master. */
kern_return_t kern_i386_io_perm_create(mach_port_t master_port, io_port_t from, io_port_t to,
                                       mach_port_t *io_perm)
{
    return KERN_INVALID_ARGUMENT;
}
