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
#include <string.h>

#include "kern.h"

#define KERN_TASK_CALL_VM_DEALLOCATE_ID 2023     /* mach.defs */
#define KERN_TASK_CALL_PORT_DESTROY_ID 3205      /* mach_port.defs */
#define KERN_TASK_CALL_PORT_DEALLOCATE_ID 3206

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
        char room[256]; /* for the reply */
    } m;
    memset(&m, 0, sizeof m);
    m.in.head.msgh_remote_port = task;
    m.in.head.msgh_id =
        destroy ? KERN_TASK_CALL_PORT_DESTROY_ID : KERN_TASK_CALL_PORT_DEALLOCATE_ID;
    m.in.name_type = (mach_msg_type_t){.msgt_name = MACH_MSG_TYPE_PORT_NAME, .msgt_size = 32,
                                       .msgt_number = 1, .msgt_inline = TRUE};
    m.in.name = name;
    return kern_call_code(&m.in.head, sizeof m.in, sizeof m, timeout_ms, kr) == MACH_MSG_SUCCESS;
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
        char room[256]; /* for the reply */
    } m;
    memset(&m, 0, sizeof m);
    m.in.head.msgh_remote_port = task;
    m.in.head.msgh_id = KERN_TASK_CALL_VM_DEALLOCATE_ID;
    m.in.address_type = kern_type_int64;
    m.in.address = address;
    m.in.size_type = kern_type_int64;
    m.in.size = size;
    return kern_call_code(&m.in.head, sizeof m.in, sizeof m, timeout_ms, kr) == MACH_MSG_SUCCESS;
}
