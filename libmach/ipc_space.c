/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_space.h"

#include <assert.h>
#include <stdlib.h>

#include "ipc_janitor.h"
#include "ipc_notify.h"
#include "ipc_port.h"
#include "ipc_qlimit.h"
#include "ipc_pset.h"
#include "kern_notify.h"

struct futex_lock ipc_lock_state = FUTEX_LOCK_INIT;
struct ipc_space ipc_spaces[2] = {{.id = SPACE_USER, .next_index = 1},
                                  {.id = SPACE_KERNEL, .next_index = 1}};

/* Names are (index << 8) | generation: a released name comes back with
 * the next generation, so a stale name is caught instead of silently
 * denoting a new right. */
#define NAME_INDEX(name) ((name) >> 8)
#define NAME_GEN(name) ((name)&0xffu)
#define NAME_MAKE(index, gen) (((index) << 8) | ((gen)&0xffu))
#define NAME_INDEX_MAX 0xffffffu

struct ipc_entry *ipc_entry_lookup(struct ipc_space *space,
                                   mach_port_name_t name)
{
    if (!MACH_PORT_VALID(name)) {
        return NULL;
    }
    return u64map_lookup(&space->names, name);
}

/* Enters ENTRY (recycled, or NULL for a new one) under NAME. */
static kern_return_t ipc_entry_insert(struct ipc_space *space,
                                      mach_port_name_t name,
                                      struct ipc_entry *entry,
                                      struct ipc_entry **out)
{
    if (entry == NULL) {
        entry = malloc(sizeof *entry);
    }
    if (entry == NULL || !u64map_insert(&space->names, name, entry)) {
        free(entry);
        return KERN_RESOURCE_SHORTAGE;
    }
    *entry = (struct ipc_entry){.name = name};
    *out = entry;
    return KERN_SUCCESS;
}

kern_return_t ipc_entry_alloc(struct ipc_space *space, struct ipc_entry **out)
{
    /* Reuse released indexes first (with a new generation), then fresh
     * ones; skip names the task chose itself with allocate_name. */
    while (space->free_list != NULL) {
        struct ipc_entry *entry = space->free_list;
        space->free_list = entry->next_free;
        mach_port_name_t old = entry->name;
        mach_port_name_t name = NAME_MAKE(NAME_INDEX(old), NAME_GEN(old) + 1);
        if (MACH_PORT_VALID(name) && ipc_entry_lookup(space, name) == NULL) {
            return ipc_entry_insert(space, name, entry, out);
        }
        free(entry);
    }
    while (space->next_index <= NAME_INDEX_MAX) {
        mach_port_name_t name = NAME_MAKE(space->next_index++, 0);
        if (MACH_PORT_VALID(name) && ipc_entry_lookup(space, name) == NULL) {
            return ipc_entry_insert(space, name, NULL, out);
        }
    }
    return KERN_NO_SPACE;
}

kern_return_t ipc_entry_alloc_name(struct ipc_space *space,
                                   mach_port_name_t name,
                                   struct ipc_entry **out)
{
    if (ipc_entry_lookup(space, name) != NULL) {
        return KERN_NAME_EXISTS;
    }
    return ipc_entry_insert(space, name, NULL, out);
}

void ipc_entry_free(struct ipc_space *space, struct ipc_entry *entry)
{
    assert(entry->port == NULL);
    u64map_remove(&space->names, entry->name);
    entry->next_free = space->free_list; /* keeps its name for the next one */
    space->free_list = entry;
}

/* Detaches the port of a send/receive ENTRY from its name. */
static void ipc_entry_forget_port(struct ipc_space *space,
                                  struct ipc_entry *entry)
{
    struct ipc_port *port = entry->port;
    if (port->name[space->id] == entry->name) {
        port->name[space->id] = 0;
    }
    entry->port = NULL;
    ipc_port_unref(port);
}

/* The entry lost its last right: free it. */
static void ipc_entry_release(struct ipc_space *space, struct ipc_entry *entry)
{
    kern_notify_entry_deleted(entry); /* (requests: user space, and the VM's) */
    if (entry->port != NULL) {
        ipc_entry_forget_port(space, entry);
    }
    ipc_entry_free(space, entry);
}

bool ipc_right_check(struct ipc_space *space, struct ipc_entry *entry, bool probe)
{
    if (!(entry->type & MACH_PORT_TYPE_SEND_RIGHTS) ||
        (entry->type & MACH_PORT_TYPE_RECEIVE) ||
        !ipc_port_is_dead(entry->port, probe)) {
        return false;
    }
    if (entry->type & MACH_PORT_TYPE_SEND) {
        ipc_port_srights_drop(entry->port);
    } else {
        ipc_janitor_release(entry->nonce); /* a send-once right */
        entry->urefs = 1;
    }
    kern_notify_entry_dead(entry);
    ipc_entry_forget_port(space, entry);
    entry->type = MACH_PORT_TYPE_DEAD_NAME;
    return true;
}

/* Removes one dead-name user reference. */
static void ipc_right_dead_unref(struct ipc_space *space,
                                 struct ipc_entry *entry)
{
    if (--entry->urefs == 0) {
        ipc_entry_release(space, entry);
    }
}

/* Removes the send right (all its user references) from ENTRY. */
static void ipc_right_send_remove(struct ipc_space *space,
                                  struct ipc_entry *entry)
{
    ipc_port_srights_drop(entry->port);
    entry->type &= ~MACH_PORT_TYPE_SEND;
    entry->urefs = 0;
    if (entry->type == 0) {
        ipc_entry_release(space, entry);
    }
}

bool ipc_right_copyin_check(const struct ipc_entry *entry,
                            mach_msg_type_name_t disposition)
{
    switch (disposition) {
    case MACH_MSG_TYPE_MAKE_SEND:
    case MACH_MSG_TYPE_MAKE_SEND_ONCE:
    case MACH_MSG_TYPE_MOVE_RECEIVE:
        return (entry->type & MACH_PORT_TYPE_RECEIVE) != 0;
    case MACH_MSG_TYPE_COPY_SEND:
    case MACH_MSG_TYPE_MOVE_SEND:
        return (entry->type & (MACH_PORT_TYPE_SEND | MACH_PORT_TYPE_DEAD_NAME)) != 0;
    case MACH_MSG_TYPE_MOVE_SEND_ONCE:
        return (entry->type &
                (MACH_PORT_TYPE_SEND_ONCE | MACH_PORT_TYPE_DEAD_NAME)) != 0;
    default:
        return false;
    }
}

kern_return_t ipc_right_copyin(struct ipc_space *space, mach_port_name_t name,
                               mach_msg_type_name_t disposition, bool deadok,
                               struct kright *out)
{
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    if (entry == NULL) {
        return KERN_INVALID_NAME;
    }
    return ipc_right_copyin_entry(space, entry, disposition, deadok, out);
}

kern_return_t ipc_right_copyin_entry(struct ipc_space *space, struct ipc_entry *entry,
                                     mach_msg_type_name_t disposition, bool deadok,
                                     struct kright *out)
{
    struct ipc_port *port = entry->port;
    kern_return_t kr;
    switch (disposition) {
    case MACH_MSG_TYPE_MAKE_SEND:
        if (!(entry->type & MACH_PORT_TYPE_RECEIVE)) {
            return KERN_INVALID_RIGHT;
        }
        if ((kr = ipc_port_srights_add(port)) != KERN_SUCCESS) {
            return kr;
        }
        port->rcv->mscount++;
        kern_notify_send_made(port);
        ipc_janitor_receive_changed(port);
        ipc_port_ref(port);
        *out = (struct kright){.kind = KRIGHT_SEND, .port = port};
        return KERN_SUCCESS;

    case MACH_MSG_TYPE_MAKE_SEND_ONCE:
        if (!(entry->type & MACH_PORT_TYPE_RECEIVE)) {
            return KERN_INVALID_RIGHT;
        }
        ipc_port_ref(port);
        *out = (struct kright){.kind = KRIGHT_SEND_ONCE,
                               .port = port,
                               .nonce = ipc_port_make_send_once(port)};
        return KERN_SUCCESS;

    case MACH_MSG_TYPE_MOVE_RECEIVE:
        if (!(entry->type & MACH_PORT_TYPE_RECEIVE)) {
            return KERN_INVALID_RIGHT;
        }
        ipc_port_ref(port);
        *out = (struct kright){.kind = KRIGHT_RECEIVE, .port = port};
        ipc_pset_remove(port);
        kern_notify_receive_leaving(port);
        ipc_janitor_forget_receive(port, port->rcv, true);
        port->rcv->leaving = true;
        entry->type &= ~MACH_PORT_TYPE_RECEIVE;
        if (entry->type == 0) {
            ipc_entry_release(space, entry);
        }
        return KERN_SUCCESS;

    case MACH_MSG_TYPE_COPY_SEND:
    case MACH_MSG_TYPE_MOVE_SEND:
        ipc_right_check(space, entry, false);
        if (entry->type & MACH_PORT_TYPE_DEAD_NAME) {
            if (!deadok) {
                return KERN_INVALID_RIGHT;
            }
            if (disposition == MACH_MSG_TYPE_MOVE_SEND) {
                ipc_right_dead_unref(space, entry);
            }
            *out = (struct kright){.kind = KRIGHT_DEAD};
            return KERN_SUCCESS;
        }
        if (!(entry->type & MACH_PORT_TYPE_SEND)) {
            return KERN_INVALID_RIGHT;
        }
        if ((kr = ipc_port_srights_add(port)) != KERN_SUCCESS) {
            return kr;
        }
        ipc_port_ref(port);
        *out = (struct kright){.kind = KRIGHT_SEND, .port = port};
        if (disposition == MACH_MSG_TYPE_MOVE_SEND && --entry->urefs == 0) {
            ipc_right_send_remove(space, entry);
        }
        return KERN_SUCCESS;

    case MACH_MSG_TYPE_MOVE_SEND_ONCE:
        ipc_right_check(space, entry, false);
        if (entry->type & MACH_PORT_TYPE_DEAD_NAME) {
            if (!deadok) {
                return KERN_INVALID_RIGHT;
            }
            ipc_right_dead_unref(space, entry);
            *out = (struct kright){.kind = KRIGHT_DEAD};
            return KERN_SUCCESS;
        }
        if (!(entry->type & MACH_PORT_TYPE_SEND_ONCE)) {
            return KERN_INVALID_RIGHT;
        }
        *out = (struct kright){
            .kind = KRIGHT_SEND_ONCE, .port = port, .nonce = entry->nonce};
        /* Still listed with the janitor until it is sent or destroyed:
         * a task killed before its send completes still has it
         * notified (ipc_janitor_release where it goes). */
        if (space->id == SPACE_USER) {
            kern_notify_entry_deleted(entry);
        }
        entry->port = NULL; /* the reference moves into *out */
        ipc_entry_free(space, entry);
        return KERN_SUCCESS;

    default:
        return KERN_INVALID_VALUE;
    }
}

void kright_destroy(struct kright *right)
{
    if (right->kind == KRIGHT_NONE) {
        return;
    }
    struct ipc_port *port = right->port;
    switch (right->kind) {
    case KRIGHT_SEND:
        ipc_port_srights_drop(port);
        break;
    case KRIGHT_SEND_ONCE:
        /* (Released first: a notification that has to wait lists the
         * right again until it goes.) */
        ipc_janitor_release(right->nonce);
        ipc_notify_send_once(port, right->nonce);
        break;
    case KRIGHT_RECEIVE:
        if (kern_notify_port_destroyed_right(right)) {
            /* Consumed: the right lives on in the notification. */
            *right = (struct kright){.kind = KRIGHT_NONE};
            return;
        }
        if (port->rcv != NULL) {
            ipc_port_destroy_receive(port);
        }
        break;
    default:
        break;
    }
    if (port != NULL) {
        ipc_port_unref(port);
    }
    *right = (struct kright){.kind = KRIGHT_NONE};
}

/* The receive right of PORT came into a space: the message kept at the
 * head of its queue, which came with it, is this task's now.  Expects
 * [G]. */
static void ipc_right_pending_arrived(struct ipc_port *port)
{
    if (port->rcv->pending != NULL) {
        ipc_janitor_keep_kept(port->rcv->pending);
    }
}

/* Fills a new ENTRY with RIGHT (consumed). */
static void ipc_entry_fill(struct ipc_space *space, struct ipc_entry *entry,
                           struct kright *right)
{
    entry->port = right->port;
    switch (right->kind) {
    case KRIGHT_SEND:
        entry->type = MACH_PORT_TYPE_SEND;
        entry->urefs = 1;
        right->port->name[space->id] = entry->name;
        break;
    case KRIGHT_SEND_ONCE:
        entry->type = MACH_PORT_TYPE_SEND_ONCE;
        entry->urefs = 1;
        entry->nonce = right->nonce;
        ipc_janitor_hold(right->port, right->nonce);
        break;
    case KRIGHT_RECEIVE:
        entry->type = MACH_PORT_TYPE_RECEIVE;
        right->port->name[space->id] = entry->name;
        right->port->rcv->space = space->id;
        right->port->rcv->leaving = false;
        ipc_qlimit_claim(right->port);
        ipc_janitor_keep_receive(right->port);
        ipc_right_pending_arrived(right->port);
        kern_notify_receive_arrived(right->port);
        break;
    default:
        assert(!"no right to fill");
    }
    *right = (struct kright){.kind = KRIGHT_NONE};
}

/* Merges a send or receive RIGHT (consumed) into ENTRY, which names the
 * same port.  With STRICT, refuses to pass the user-reference limit. */
static kern_return_t ipc_entry_merge(struct ipc_space *space,
                                     struct ipc_entry *entry,
                                     struct kright *right, bool strict)
{
    struct ipc_port *port = right->port;
    if (right->kind == KRIGHT_SEND) {
        if (entry->type & MACH_PORT_TYPE_SEND) {
            if (entry->urefs >= IPC_UREFS_SEND_MAX) {
                if (strict) {
                    kright_destroy(right);
                    return KERN_UREFS_OVERFLOW;
                }
            } else {
                entry->urefs++;
            }
            ipc_port_srights_drop(port); /* the entry already counts */
        } else {
            entry->type |= MACH_PORT_TYPE_SEND;
            entry->urefs = 1;
        }
    } else {
        assert(right->kind == KRIGHT_RECEIVE);
        entry->type |= MACH_PORT_TYPE_RECEIVE;
        port->rcv->space = space->id;
        port->rcv->leaving = false;
        ipc_qlimit_claim(port);
        ipc_janitor_keep_receive(port);
        ipc_right_pending_arrived(port);
        kern_notify_receive_arrived(port);
    }
    ipc_port_unref(port);
    *right = (struct kright){.kind = KRIGHT_NONE};
    return KERN_SUCCESS;
}

kern_return_t ipc_right_copyout(struct ipc_space *space, struct kright *right,
                                mach_port_name_t *name)
{
    switch (right->kind) {
    case KRIGHT_NONE:
        *name = MACH_PORT_NULL;
        return KERN_SUCCESS;
    case KRIGHT_LOST:
        *right = (struct kright){.kind = KRIGHT_NONE};
        *name = MACH_PORT_NULL;
        return KERN_RESOURCE_SHORTAGE;
    case KRIGHT_DEAD:
        *name = MACH_PORT_DEAD;
        return KERN_SUCCESS;
    case KRIGHT_SEND:
    case KRIGHT_SEND_ONCE:
        if (ipc_port_is_dead(right->port, false)) {
            kright_destroy(right);
            *name = MACH_PORT_DEAD;
            return KERN_SUCCESS;
        }
        break;
    default:
        break;
    }
    struct ipc_port *port = right->port;
    if (right->kind != KRIGHT_SEND_ONCE && port->name[space->id] != 0) {
        struct ipc_entry *entry = ipc_entry_lookup(space, port->name[space->id]);
        assert(entry != NULL && entry->port == port);
        *name = entry->name;
        return ipc_entry_merge(space, entry, right, false);
    }
    struct ipc_entry *entry;
    kern_return_t kr = ipc_entry_alloc(space, &entry);
    if (kr != KERN_SUCCESS) {
        kright_destroy(right);
        *name = MACH_PORT_NULL;
        return kr;
    }
    ipc_entry_fill(space, entry, right);
    *name = entry->name;
    return KERN_SUCCESS;
}

kern_return_t ipc_right_copyout_name(struct ipc_space *space,
                                     struct kright *right,
                                     mach_port_name_t name)
{
    if (right->kind == KRIGHT_NONE || right->kind == KRIGHT_DEAD) {
        kright_destroy(right);
        return KERN_INVALID_CAPABILITY;
    }
    struct ipc_port *port = right->port;
    if (right->kind != KRIGHT_SEND_ONCE && port->name[space->id] != 0) {
        if (port->name[space->id] != name) {
            kright_destroy(right);
            return KERN_RIGHT_EXISTS;
        }
        struct ipc_entry *entry = ipc_entry_lookup(space, name);
        return ipc_entry_merge(space, entry, right, true);
    }
    if (ipc_entry_lookup(space, name) != NULL) {
        kright_destroy(right);
        return KERN_NAME_EXISTS;
    }
    if (right->kind != KRIGHT_RECEIVE && ipc_port_is_dead(port, true)) {
        kright_destroy(right);
        return KERN_INVALID_CAPABILITY;
    }
    struct ipc_entry *entry;
    kern_return_t kr = ipc_entry_alloc_name(space, name, &entry);
    if (kr != KERN_SUCCESS) {
        kright_destroy(right);
        return kr;
    }
    ipc_entry_fill(space, entry, right);
    return KERN_SUCCESS;
}

/* Destroys the send-once right held by ENTRY and frees it. */
static void ipc_right_send_once_destroy(struct ipc_space *space,
                                        struct ipc_entry *entry)
{
    struct kright right = {
        .kind = KRIGHT_SEND_ONCE, .port = entry->port, .nonce = entry->nonce};
    if (space->id == SPACE_USER) {
        kern_notify_entry_deleted(entry);
    }
    entry->port = NULL;
    ipc_entry_free(space, entry);
    kright_destroy(&right); /* (which releases it from the janitor's list) */
}

/* Destroys the receive right held by ENTRY; remaining send urefs become
 * a dead name, as in GNU Mach. */
static void ipc_right_receive_destroy(struct ipc_space *space,
                                      struct ipc_entry *entry)
{
    if (kern_notify_port_destroyed(space, entry->name)) {
        return; /* sent to its backup instead */
    }
    struct ipc_port *port = entry->port;
    ipc_port_destroy_receive(port);
    entry->type &= ~MACH_PORT_TYPE_RECEIVE;
    if (entry->type & MACH_PORT_TYPE_SEND) {
        ipc_port_srights_drop(port);
        ipc_entry_forget_port(space, entry);
        entry->type = MACH_PORT_TYPE_DEAD_NAME;
    } else {
        ipc_entry_release(space, entry);
    }
}

kern_return_t ipc_right_dealloc(struct ipc_space *space, mach_port_name_t name)
{
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    if (entry == NULL) {
        return KERN_INVALID_NAME;
    }
    /* A send right that keeps references is the same whether its port
     * died or not (its death is seen the next time the name is looked
     * at): no need to ask Linux. */
    bool keeps = (entry->type & MACH_PORT_TYPE_SEND) && !(entry->type & MACH_PORT_TYPE_RECEIVE) &&
                 entry->urefs > 1;
    ipc_right_check(space, entry, !keeps);
    if (entry->type & MACH_PORT_TYPE_SEND_ONCE) {
        ipc_right_send_once_destroy(space, entry);
    } else if (entry->type & MACH_PORT_TYPE_DEAD_NAME) {
        ipc_right_dead_unref(space, entry);
    } else if (entry->type & MACH_PORT_TYPE_SEND) {
        if (--entry->urefs == 0) {
            ipc_right_send_remove(space, entry);
        }
    } else {
        return KERN_INVALID_RIGHT;
    }
    return KERN_SUCCESS;
}

void ipc_right_pset_destroy(struct ipc_space *space, struct ipc_entry *entry)
{
    ipc_pset_destroy(entry->pset);
    entry->pset = NULL;
    entry->type = 0;
    ipc_entry_free(space, entry);
}

kern_return_t ipc_right_destroy(struct ipc_space *space, mach_port_name_t name)
{
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    if (entry == NULL) {
        return KERN_INVALID_NAME;
    }
    if (entry->type & MACH_PORT_TYPE_PORT_SET) {
        ipc_right_pset_destroy(space, entry);
        return KERN_SUCCESS;
    }
    ipc_right_check(space, entry, true);
    if (entry->type & MACH_PORT_TYPE_SEND_ONCE) {
        ipc_right_send_once_destroy(space, entry);
        return KERN_SUCCESS;
    }
    if ((entry->type & MACH_PORT_TYPE_RECEIVE) && kern_notify_port_destroyed(space, name)) {
        /* The receive right went to its backup; the rest of the name goes. */
        entry = ipc_entry_lookup(space, name);
        if (entry == NULL) {
            return KERN_SUCCESS;
        }
    }
    if (entry->type & MACH_PORT_TYPE_RECEIVE) {
        struct ipc_port *port = entry->port;
        ipc_port_destroy_receive(port);
        if (entry->type & MACH_PORT_TYPE_SEND) {
            ipc_port_srights_drop(port);
        }
    } else if (entry->type & MACH_PORT_TYPE_SEND) {
        ipc_port_srights_drop(entry->port);
    }
    entry->type = 0;
    ipc_entry_release(space, entry);
    return KERN_SUCCESS;
}

kern_return_t ipc_right_delta(struct ipc_space *space, mach_port_name_t name,
                              mach_port_right_t right, mach_port_delta_t delta)
{
    if (right >= MACH_PORT_RIGHT_NUMBER) {
        return KERN_INVALID_VALUE;
    }
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    if (entry == NULL) {
        return KERN_INVALID_NAME;
    }
    switch (right) {
    case MACH_PORT_RIGHT_PORT_SET:
        if (!(entry->type & MACH_PORT_TYPE_PORT_SET)) {
            return KERN_INVALID_RIGHT;
        }
        if (delta != 0 && delta != -1) {
            return KERN_INVALID_VALUE;
        }
        if (delta == -1) {
            ipc_right_pset_destroy(space, entry);
        }
        return KERN_SUCCESS;

    case MACH_PORT_RIGHT_RECEIVE:
        if (!(entry->type & MACH_PORT_TYPE_RECEIVE)) {
            return KERN_INVALID_RIGHT;
        }
        if (delta != 0 && delta != -1) {
            return KERN_INVALID_VALUE;
        }
        if (delta == -1) {
            ipc_right_receive_destroy(space, entry);
        }
        return KERN_SUCCESS;

    case MACH_PORT_RIGHT_SEND_ONCE:
        if (!(entry->type & MACH_PORT_TYPE_SEND_ONCE)) {
            return KERN_INVALID_RIGHT;
        }
        if (delta != 0 && delta != -1) {
            return KERN_INVALID_VALUE;
        }
        if (ipc_right_check(space, entry, true)) {
            return KERN_INVALID_RIGHT;
        }
        if (delta == -1) {
            ipc_right_send_once_destroy(space, entry);
        }
        return KERN_SUCCESS;

    case MACH_PORT_RIGHT_SEND: {
        if (!(entry->type & MACH_PORT_TYPE_SEND)) {
            return KERN_INVALID_RIGHT;
        }
        int64_t urefs = (int64_t)entry->urefs + delta;
        if (urefs < 0) {
            return KERN_INVALID_VALUE;
        }
        if (urefs > IPC_UREFS_SEND_MAX) {
            return KERN_UREFS_OVERFLOW;
        }
        if (ipc_right_check(space, entry, true)) {
            return KERN_INVALID_RIGHT;
        }
        entry->urefs = (mach_port_urefs_t)urefs;
        if (urefs == 0) {
            ipc_right_send_remove(space, entry);
        }
        return KERN_SUCCESS;
    }

    case MACH_PORT_RIGHT_DEAD_NAME: {
        ipc_right_check(space, entry, true);
        if (!(entry->type & MACH_PORT_TYPE_DEAD_NAME)) {
            return KERN_INVALID_RIGHT;
        }
        int64_t urefs = (int64_t)entry->urefs + delta;
        if (urefs < 0) {
            return KERN_INVALID_VALUE;
        }
        if (urefs > IPC_UREFS_DEAD_MAX) {
            return KERN_UREFS_OVERFLOW;
        }
        entry->urefs = (mach_port_urefs_t)urefs;
        if (urefs == 0) {
            ipc_entry_release(space, entry);
        }
        return KERN_SUCCESS;
    }
    default:
        return KERN_INVALID_VALUE;
    }
}

kern_return_t ipc_right_refs(struct ipc_space *space, mach_port_name_t name,
                             mach_port_right_t right, mach_port_urefs_t *refs)
{
    if (right >= MACH_PORT_RIGHT_NUMBER) {
        return KERN_INVALID_VALUE;
    }
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    if (entry == NULL) {
        return KERN_INVALID_NAME;
    }
    ipc_right_check(space, entry, true);
    mach_port_type_t bit = MACH_PORT_TYPE(right);
    if (!(entry->type & bit)) {
        *refs = 0;
    } else if (right == MACH_PORT_RIGHT_SEND ||
               right == MACH_PORT_RIGHT_DEAD_NAME) {
        *refs = entry->urefs;
    } else {
        *refs = 1;
    }
    return KERN_SUCCESS;
}

kern_return_t ipc_right_type(struct ipc_space *space, mach_port_name_t name,
                             mach_port_type_t *type)
{
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    if (entry == NULL) {
        return KERN_INVALID_NAME;
    }
    ipc_right_check(space, entry, true);
    *type = entry->type | (entry->dnrequest != 0 ? MACH_PORT_TYPE_DNREQUEST : 0);
    return KERN_SUCCESS;
}

kern_return_t ipc_right_new_receive(struct ipc_space *space, struct ipc_entry **entry)
{
    kern_return_t kr = ipc_entry_alloc(space, entry);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    kr = ipc_right_alloc_receive(space, *entry);
    if (kr != KERN_SUCCESS) {
        ipc_entry_free(space, *entry);
    }
    return kr;
}

kern_return_t ipc_right_alloc_receive(struct ipc_space *space,
                                      struct ipc_entry *entry)
{
    struct ipc_port *port;
    kern_return_t kr = ipc_port_create(space->id, &port);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    entry->type = MACH_PORT_TYPE_RECEIVE;
    entry->port = port;
    port->name[space->id] = entry->name;
    return KERN_SUCCESS;
}
