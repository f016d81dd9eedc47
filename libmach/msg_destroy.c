/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "msg_destroy.h"

#include <string.h>
#include <sys/mman.h>

#include "ipc_kmsg.h"
#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern_notify.h"

/* Destroys one right named NAME carried as TYPE.  Only rights the message
 * owns are destroyed: received ones (PORT_*) and moved ones (MOVE_*,
 * the same values); COPY_SEND and MAKE_* never owned anything.
 * Expects [G]. */
static void msg_destroy_right(struct ipc_space *space, mach_port_name_t name,
                              mach_msg_type_name_t type)
{
    if (!MACH_PORT_VALID(name)) {
        return;
    }
    switch (type) {
    case MACH_MSG_TYPE_PORT_RECEIVE:
        (void)ipc_right_delta(space, name, MACH_PORT_RIGHT_RECEIVE, -1);
        break;
    case MACH_MSG_TYPE_PORT_SEND:
    case MACH_MSG_TYPE_PORT_SEND_ONCE:
        (void)ipc_right_dealloc(space, name);
        break;
    default:
        break;
    }
}

struct msg_destroy_ctx {
    struct ipc_space *space;
};

static mach_msg_return_t msg_destroy_visit(void *ctx, mach_msg_type_t *type,
                                           char *data, size_t length)
{
    struct msg_destroy_ctx *c = ctx;
    bool is_port = MACH_MSG_TYPE_PORT_ANY(type->msgt_name);
    void *addr = NULL;
    if (!type->msgt_inline) {
        memcpy(&addr, data, sizeof addr);
    }
    if (is_port) {
        mach_msg_type_name_t rt = type->msgt_name;
        for (size_t i = 0; i < type->msgt_number; i++) {
            mach_port_name_t name;
            if (type->msgt_inline) {
                memcpy(&name, data + i * 8, sizeof name);
            } else if (addr != NULL) {
                name = ((mach_port_name_t *)addr)[i];
            } else {
                break;
            }
            msg_destroy_right(c->space, name, rt);
        }
    }
    if (!type->msgt_inline && addr != NULL && length > 0) {
        wire_region_release(addr, length);
    }
    return MACH_MSG_SUCCESS;
}

void msg_destroy_in(int space_id, mach_msg_header_t *msg, bool with_remote)
{
    struct ipc_space *space = &ipc_spaces[space_id];
    ipc_lock();
    if (with_remote) {
        msg_destroy_right(space, (mach_port_name_t)msg->msgh_remote_port,
                          MACH_MSGH_BITS_REMOTE(msg->msgh_bits));
    }
    if (msg->msgh_bits & MACH_MSGH_BITS_COMPLEX) {
        struct msg_destroy_ctx c = {.space = space};
        (void)ipc_body_walk((char *)(msg + 1), msg->msgh_size - sizeof *msg,
                            msg_destroy_visit, &c);
    }
    ipc_unlock();
    kern_notify_flush_pending();
}
