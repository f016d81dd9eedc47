/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Calls from the kernel space to another task's port: the few routines of
 * mach.defs and mach_port.defs that a kernel routine applies to a task
 * other than this one (thread_terminate_release).  GNU Mach reaches into
 * the other task's space and map; here that task serves them, as it
 * serves the same calls from its clients, and whatever answers on the
 * port is the task as far as the caller can tell: a port whose receiver
 * answers no such call (MIG_BAD_ID), or does not answer in time, is taken
 * for no task's.
 */
#include <mach/mig_errors.h>
#include <string.h>

#include "kern.h"
#include "msg_destroy.h"

#define KERN_TASK_CALL_VM_DEALLOCATE_ID 2023     /* mach.defs */
#define KERN_TASK_CALL_PORT_DESTROY_ID 3205      /* mach_port.defs */
#define KERN_TASK_CALL_PORT_DEALLOCATE_ID 3206

/* Every one of these replies is a bare return code. */
struct kern_task_call_reply {
    mach_msg_header_t head;
    mach_msg_type_t ret_code_type;
    kern_return_t ret_code;
    char pad[4];
};

/* Sends REQUEST (SIZE bytes, its remote port and id set) and checks that
 * the reply is the routine's.  Returns whether it is, with its code in
 * *KR. */
static bool kern_task_call(mach_msg_header_t *request, mach_msg_size_t size, size_t room,
                           int timeout_ms, kern_return_t *kr)
{
    mach_msg_id_t id = request->msgh_id;
    if (kern_call_timed(request, size, (mach_msg_size_t)room, timeout_ms) != MACH_MSG_SUCCESS) {
        return false;
    }
    const struct kern_task_call_reply *reply = (const void *)request;
    bool ok = reply->head.msgh_id == id + 100 && reply->head.msgh_size == sizeof *reply &&
              !(reply->head.msgh_bits & MACH_MSGH_BITS_COMPLEX) &&
              kern_type_is(&reply->ret_code_type, &kern_type_int32) &&
              reply->ret_code != MIG_BAD_ID && reply->ret_code != MIG_BAD_ARGUMENTS;
    if (!ok) {
        msg_destroy_in(SPACE_KERNEL, request, true); /* whatever it was */
        return false;
    }
    *kr = reply->ret_code;
    return true;
}

bool kern_task_call_port(mach_port_t task, bool destroy, mach_port_name_t name, int timeout_ms,
                         kern_return_t *kr)
{
    union {
        struct {
            mach_msg_header_t head;
            mach_msg_type_t name_type;
            mach_port_name_t name;
            char pad[4];
        } in;
        struct kern_task_call_reply out;
        char room[256];
    } m;
    memset(&m, 0, sizeof m);
    m.in.head.msgh_remote_port = task;
    m.in.head.msgh_id =
        destroy ? KERN_TASK_CALL_PORT_DESTROY_ID : KERN_TASK_CALL_PORT_DEALLOCATE_ID;
    m.in.name_type = (mach_msg_type_t){.msgt_name = MACH_MSG_TYPE_PORT_NAME, .msgt_size = 32,
                                       .msgt_number = 1, .msgt_inline = TRUE};
    m.in.name = name;
    return kern_task_call(&m.in.head, sizeof m.in, sizeof m, timeout_ms, kr);
}

bool kern_task_call_vm_deallocate(mach_port_t task, vm_address_t address, vm_size_t size,
                                  int timeout_ms, kern_return_t *kr)
{
    union {
        struct {
            mach_msg_header_t head;
            mach_msg_type_t address_type;
            vm_address_t address;
            mach_msg_type_t size_type;
            vm_size_t size;
        } in;
        struct kern_task_call_reply out;
        char room[256];
    } m;
    memset(&m, 0, sizeof m);
    m.in.head.msgh_remote_port = task;
    m.in.head.msgh_id = KERN_TASK_CALL_VM_DEALLOCATE_ID;
    m.in.address_type = kern_type_int64;
    m.in.address = address;
    m.in.size_type = kern_type_int64;
    m.in.size = size;
    return kern_task_call(&m.in.head, sizeof m.in, sizeof m, timeout_ms, kr);
}
