/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Name spaces and the rights in them, with GNU Mach's semantics: user
 * references, coalesced send rights, dead names, and the exact error
 * codes of ipc/ipc_right.c.
 *
 * Every function here expects ipc_lock held ([G]).
 */
#ifndef HELL_IPC_SPACE_H
#define HELL_IPC_SPACE_H

#include "futex_lock.h"
#include "ipc_types.h"

extern struct futex_lock ipc_lock_state;
extern struct ipc_space ipc_spaces[2];

/* [G]: the process-wide IPC lock. */
static inline void ipc_lock(void)
{
    futex_lock_acquire(&ipc_lock_state);
}

static inline void ipc_unlock(void)
{
    futex_lock_release(&ipc_lock_state);
}

#define IPC_UREFS_SEND_MAX 65534u
#define IPC_UREFS_DEAD_MAX 65535u

/* Returns the entry named NAME, or NULL (NULL and DEAD never exist). */
struct ipc_entry *ipc_entry_lookup(struct ipc_space *space,
                                   mach_port_name_t name);

/* Allocates an entry under a fresh name.  Returns KERN_NO_SPACE or
 * KERN_RESOURCE_SHORTAGE on failure. */
kern_return_t ipc_entry_alloc(struct ipc_space *space,
                              struct ipc_entry **entry);

/* Allocates an entry under NAME.  Returns KERN_NAME_EXISTS when taken. */
kern_return_t ipc_entry_alloc_name(struct ipc_space *space,
                                   mach_port_name_t name,
                                   struct ipc_entry **entry);

/* Frees an entry whose rights are gone (type 0, no port). */
void ipc_entry_free(struct ipc_space *space, struct ipc_entry *entry);

/* Turns a send or send-once entry whose port died into a dead name, as
 * GNU Mach does lazily.  PROBE as for ipc_port_is_dead.  Returns true
 * when it did. */
bool ipc_right_check(struct ipc_space *space, struct ipc_entry *entry, bool probe);

/* Takes a right out of SPACE for a message or a kernel call, according to
 * DISPOSITION (a MACH_MSG_TYPE_MOVE_* / COPY_SEND / MAKE_* value).  A dead
 * name or dead port yields KRIGHT_DEAD when DEADOK, else
 * KERN_INVALID_RIGHT.  Returns KERN_INVALID_NAME or KERN_INVALID_RIGHT,
 * or a resource shortage, leaving the space unchanged on failure. */
kern_return_t ipc_right_copyin(struct ipc_space *space, mach_port_name_t name,
                               mach_msg_type_name_t disposition, bool deadok,
                               struct kright *out);

/* As ipc_right_copyin, on an ENTRY the caller looked up. */
kern_return_t ipc_right_copyin_entry(struct ipc_space *space, struct ipc_entry *entry,
                                     mach_msg_type_name_t disposition, bool deadok,
                                     struct kright *out);

/* Checks, without changing anything, that ipc_right_copyin(deadok) would
 * succeed on ENTRY (not NULL). */
bool ipc_right_copyin_check(const struct ipc_entry *entry,
                            mach_msg_type_name_t disposition);

/* Puts RIGHT (consumed) into SPACE and stores its name in *NAME: send and
 * receive rights coalesce with the entry that already names the port.
 * NULL and DEAD give MACH_PORT_NULL and MACH_PORT_DEAD.  Returns
 * KERN_RESOURCE_SHORTAGE or KERN_NO_SPACE (the right is then destroyed). */
kern_return_t ipc_right_copyout(struct ipc_space *space, struct kright *right,
                                mach_port_name_t *name);

/* As ipc_right_copyout, under the caller's NAME (mach_port_insert_right):
 * KERN_RIGHT_EXISTS, KERN_NAME_EXISTS, KERN_UREFS_OVERFLOW or
 * KERN_INVALID_CAPABILITY; the right is destroyed on failure. */
kern_return_t ipc_right_copyout_name(struct ipc_space *space,
                                     struct kright *right,
                                     mach_port_name_t name);

/* Destroys a right that is not in any space (a message being destroyed). */
void kright_destroy(struct kright *right);

/* mach_port_deallocate, mach_port_destroy, mach_port_mod_refs,
 * mach_port_get_refs, mach_port_type: GNU Mach's semantics and codes. */
kern_return_t ipc_right_dealloc(struct ipc_space *space, mach_port_name_t name);
kern_return_t ipc_right_destroy(struct ipc_space *space, mach_port_name_t name);
kern_return_t ipc_right_delta(struct ipc_space *space, mach_port_name_t name,
                              mach_port_right_t right, mach_port_delta_t delta);
kern_return_t ipc_right_refs(struct ipc_space *space, mach_port_name_t name,
                             mach_port_right_t right, mach_port_urefs_t *refs);
kern_return_t ipc_right_type(struct ipc_space *space, mach_port_name_t name,
                             mach_port_type_t *type);

/* Destroys the port set named by ENTRY, and frees the entry. */
void ipc_right_pset_destroy(struct ipc_space *space, struct ipc_entry *entry);

/* Creates a port and its receive right in SPACE (mach_port_allocate). */
kern_return_t ipc_right_alloc_receive(struct ipc_space *space,
                                      struct ipc_entry *entry);

/* Creates a port whose receive right a new entry of SPACE names: returns
 * KERN_SUCCESS with *ENTRY, or KERN_NO_SPACE / KERN_RESOURCE_SHORTAGE
 * (nothing made).  Expects [G]. */
kern_return_t ipc_right_new_receive(struct ipc_space *space, struct ipc_entry **entry);

#endif
