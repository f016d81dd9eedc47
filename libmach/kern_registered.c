/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A task's registered ports (mach.defs: mach_ports_register 2033,
 * mach_ports_lookup 2034), GNU Mach's way of handing a new task a few
 * well-known ports without a name server: TASK_PORT_REGISTER_MAX send
 * rights, held in the kernel space, replaced all at once, looked up as
 * copies, and inherited by the tasks this one creates (they travel in
 * the new task's bootstrap message, kern_task.c and hell_launch.c).
 */
#include <mach.h>
#include <mach/mach_param.h>
#include <sys/mman.h>

#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "mach.server.h"

/* [G] The registered ports, as kernel-space send rights (0: none). */
static mach_port_name_t kern_registered[TASK_PORT_REGISTER_MAX];

kern_return_t kern_mach_ports_register(mach_port_t task, mach_port_array_t ports,
                                       mach_msg_type_number_t count)
{
    ipc_lock();
    if (!kern_is_task(task) || count > TASK_PORT_REGISTER_MAX) {
        ipc_unlock();
        return KERN_INVALID_ARGUMENT; /* (the request's rights are destroyed) */
    }
    /* Every slot is replaced: those past COUNT become empty. */
    for (mach_msg_type_number_t i = 0; i < TASK_PORT_REGISTER_MAX; i++) {
        mach_port_name_t old = kern_registered[i];
        kern_registered[i] = i < count ? ports[i] : MACH_PORT_NULL;
        if (MACH_PORT_VALID(old)) {
            (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], old);
        }
    }
    ipc_unlock();
    if (count > 0) {
        wire_region_release(ports, count * sizeof *ports);
    }
    return KERN_SUCCESS;
}

kern_return_t kern_mach_ports_lookup(mach_port_t task, mach_port_array_t *ports,
                                     mach_msg_type_number_t *count)
{
    mach_port_t *list;
    if (kern_array_alloc(TASK_PORT_REGISTER_MAX, sizeof *list, (void **)&list) != KERN_SUCCESS) {
        return KERN_RESOURCE_SHORTAGE;
    }
    ipc_lock();
    if (!kern_is_task(task)) {
        ipc_unlock();
        munmap(list, TASK_PORT_REGISTER_MAX * sizeof *list);
        return KERN_INVALID_ARGUMENT;
    }
    /* Always all of them, empty slots null, a dead port's dead; the
     * reply copies the rights. */
    struct ipc_space *kspace = &ipc_spaces[SPACE_KERNEL];
    for (unsigned i = 0; i < TASK_PORT_REGISTER_MAX; i++) {
        mach_port_name_t name = kern_registered[i];
        struct ipc_entry *entry = MACH_PORT_VALID(name) ? ipc_entry_lookup(kspace, name) : NULL;
        if (entry != NULL) {
            (void)ipc_right_check(kspace, entry, true);
        }
        list[i] = entry == NULL                                ? MACH_PORT_NULL
                  : (entry->type & MACH_PORT_TYPE_DEAD_NAME) ? MACH_PORT_DEAD
                                                               : name;
        /* A reference of the reply's own: a register meanwhile may drop
         * the slot's before the reply copies it. */
        if (MACH_PORT_VALID(list[i]) &&
            ipc_right_delta(kspace, name, MACH_PORT_RIGHT_SEND, 1) != KERN_SUCCESS) {
            list[i] = MACH_PORT_NULL;
        }
    }
    ipc_unlock();
    for (unsigned i = 0; i < TASK_PORT_REGISTER_MAX; i++) {
        if (MACH_PORT_VALID(list[i])) {
            kern_drop_after_reply(list[i]);
        }
    }
    *ports = list;
    *count = TASK_PORT_REGISTER_MAX;
    return KERN_SUCCESS;
}

void kern_registered_copy(struct kright *rights)
{
    for (unsigned i = 0; i < TASK_PORT_REGISTER_MAX; i++) {
        kern_special_right(kern_registered[i], &rights[i]);
    }
}

mach_port_name_t *kern_registered_slot(unsigned i)
{
    return i < TASK_PORT_REGISTER_MAX ? &kern_registered[i] : NULL;
}

void kern_registered_fork_child(void)
{
    for (unsigned i = 0; i < TASK_PORT_REGISTER_MAX; i++) {
        kern_registered[i] = MACH_PORT_NULL;
    }
}
