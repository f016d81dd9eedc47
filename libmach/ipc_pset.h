/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Port sets: an epoll instance over the receive ends of their members.
 * Any number of threads may receive on a set at once (the way libports'
 * thread pool works); each message goes to exactly one of them, because
 * a receiver takes the member's dequeue lock and reads without blocking.
 *
 * Every function here expects ipc_lock held ([G]).
 */
#ifndef HELL_IPC_PSET_H
#define HELL_IPC_PSET_H

#include "ipc_types.h"

struct ipc_pset {
    unsigned refs;          /* [G] its entry, threads receiving on it */
    int epfd;               /* [C] members' receive ends, and WAKE_FD */
    int wake_fd;            /* [C] eventfd: wakes receivers when destroyed */
    struct u64map members;  /* [G] port serial -> struct ipc_port * */
    unsigned npending;      /* [G] members holding a MACH_RCV_LARGE message */
    bool dead;              /* [G] destroyed: receivers get PORT_DIED */
    mach_port_name_t name;  /* [G] its name in the user space */
};

/* Creates an empty set with one reference.  Returns
 * KERN_RESOURCE_SHORTAGE when out of descriptors or memory. */
kern_return_t ipc_pset_create(struct ipc_pset **pset);

void ipc_pset_ref(struct ipc_pset *pset);

/* Drops a reference; the last one closes the set's descriptors. */
void ipc_pset_unref(struct ipc_pset *pset);

/* Destroys the set (mach_port_destroy, mod_refs -1): members leave it,
 * receivers blocked on it wake with MACH_RCV_PORT_DIED.  Consumes the
 * entry's reference. */
void ipc_pset_destroy(struct ipc_pset *pset);

/* Puts PORT (receive right held here, in no set) into PSET. */
kern_return_t ipc_pset_add(struct ipc_pset *pset, struct ipc_port *port);

/* Takes PORT out of its set, if it is in one. */
void ipc_pset_remove(struct ipc_port *port);

/* Closes every set's descriptors: the child side of fork(). */
void ipc_pset_forget_all(void);

#endif
