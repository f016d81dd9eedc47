/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kernel side of mach_port.defs: the routines the MIG server calls
 * for requests on a task port.  TASK and port arguments are names in the
 * kernel space; the routines act on the task's user space.
 */
#include <mach/mig_errors.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ipc_janitor.h"
#include "ipc_port.h"
#include "ipc_space.h"
#include "ipc_pset.h"
#include "ipc_qlimit.h"
#include "kern.h"
#include "mach_port.server.h"


/* Locks [G] and returns the user space TASK denotes, or NULL (unlocked). */
static struct ipc_space *kern_space_lock(mach_port_t task)
{
    ipc_lock();
    if (!kern_is_task(task)) {
        ipc_unlock();
        return NULL;
    }
    return &ipc_spaces[SPACE_USER];
}

#define KERN_SPACE_OR_FAIL(space, task)                                        \
    struct ipc_space *space = kern_space_lock(task);                           \
    if (space == NULL) {                                                       \
        return KERN_INVALID_TASK;                                              \
    }

/* Returns the receive entry NAME, or NULL with *KR set.  Expects [G]. */
static struct ipc_entry *kern_receive_entry(struct ipc_space *space,
                                            mach_port_name_t name,
                                            kern_return_t *kr)
{
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    if (entry == NULL) {
        *kr = KERN_INVALID_NAME;
    } else if (!(entry->type & MACH_PORT_TYPE_RECEIVE)) {
        *kr = KERN_INVALID_RIGHT;
        entry = NULL;
    }
    return entry;
}

kern_return_t kern_array_alloc(size_t count, size_t elem, void **out)
{
    *out = NULL;
    if (count == 0) {
        return KERN_SUCCESS;
    }
    void *p = mmap(NULL, count * elem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        return KERN_RESOURCE_SHORTAGE;
    }
    *out = p;
    return KERN_SUCCESS;
}

void kern_release_right(mach_port_name_t kname)
{
    if (MACH_PORT_VALID(kname)) {
        ipc_lock();
        (void)ipc_right_dealloc(&ipc_spaces[SPACE_KERNEL], kname);
        ipc_unlock();
    }
}

kern_return_t kern_retain_right(mach_port_name_t kname)
{
    ipc_lock();
    kern_return_t kr = ipc_right_delta(&ipc_spaces[SPACE_KERNEL], kname, MACH_PORT_RIGHT_SEND, 1);
    ipc_unlock();
    return kr;
}

const mach_msg_type_t kern_type_int64 = {.msgt_name = MACH_MSG_TYPE_INTEGER_64,
                                         .msgt_size = 64, .msgt_number = 1, .msgt_inline = TRUE};
const mach_msg_type_t kern_type_int32 = {.msgt_name = MACH_MSG_TYPE_INTEGER_32,
                                         .msgt_size = 32, .msgt_number = 1, .msgt_inline = TRUE};

bool kern_type_is(const mach_msg_type_t *t, const mach_msg_type_t *want)
{
    return memcmp(t, want, sizeof *t) == 0;
}

kern_return_t kern_mach_port_names(mach_port_t task, mach_port_name_array_t *names,
                                   mach_msg_type_number_t *namesCnt,
                                   mach_port_type_array_t *types,
                                   mach_msg_type_number_t *typesCnt)
{
    KERN_SPACE_OR_FAIL(space, task);
    size_t n = space->names.count;
    void *pn, *pt;
    if (kern_array_alloc(n, sizeof(mach_port_name_t), &pn) != KERN_SUCCESS ||
        kern_array_alloc(n, sizeof(mach_port_type_t), &pt) != KERN_SUCCESS) {
        if (pn != NULL) {
            munmap(pn, n * sizeof(mach_port_name_t));
        }
        ipc_unlock();
        return KERN_RESOURCE_SHORTAGE;
    }
    uint64_t key;
    void *value;
    size_t i = 0;
    for (size_t cursor = 0; u64map_next(&space->names, &cursor, &key, &value);) {
        struct ipc_entry *entry = value;
        ipc_right_check(space, entry, true);
        ((mach_port_name_t *)pn)[i] = entry->name;
        ((mach_port_type_t *)pt)[i] =
            entry->type | (entry->dnrequest != 0 ? MACH_PORT_TYPE_DNREQUEST : 0);
        i++;
    }
    ipc_unlock();
    *names = pn;
    *types = pt;
    *namesCnt = *typesCnt = (mach_msg_type_number_t)i;
    return KERN_SUCCESS;
}

kern_return_t kern_mach_port_type(mach_port_t task, mach_port_name_t name,
                                  mach_port_type_t *ptype)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = ipc_right_type(space, name, ptype);
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_rename(mach_port_t task, mach_port_name_t old_name,
                                    mach_port_name_t new_name)
{
    if (!MACH_PORT_VALID(new_name)) {
        return KERN_INVALID_VALUE;
    }
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = KERN_SUCCESS;
    struct ipc_entry *entry;
    if (ipc_entry_lookup(space, new_name) != NULL) {
        kr = KERN_NAME_EXISTS;
    } else if ((entry = ipc_entry_lookup(space, old_name)) == NULL) {
        kr = KERN_INVALID_NAME;
    } else if (!u64map_insert(&space->names, new_name, entry)) {
        kr = KERN_RESOURCE_SHORTAGE;
    } else {
        u64map_remove(&space->names, old_name);
        entry->name = new_name;
        if (entry->port != NULL && entry->port->name[SPACE_USER] == old_name) {
            entry->port->name[SPACE_USER] = new_name;
        }
        if (entry->pset != NULL) {
            entry->pset->name = new_name;
        }
    }
    ipc_unlock();
    return kr;
}

/* Creates RIGHT in the fresh ENTRY.  Expects [G]. */
static kern_return_t kern_fill_new(struct ipc_space *space, struct ipc_entry *entry,
                                   mach_port_right_t right)
{
    switch (right) {
    case MACH_PORT_RIGHT_RECEIVE:
        return ipc_right_alloc_receive(space, entry);
    case MACH_PORT_RIGHT_DEAD_NAME:
        entry->type = MACH_PORT_TYPE_DEAD_NAME;
        entry->urefs = 1;
        return KERN_SUCCESS;
    case MACH_PORT_RIGHT_PORT_SET: {
        kern_return_t kr = ipc_pset_create(&entry->pset);
        if (kr == KERN_SUCCESS) {
            entry->type = MACH_PORT_TYPE_PORT_SET;
            entry->pset->name = entry->name;
        }
        return kr;
    }
    default:
        return KERN_INVALID_VALUE;
    }
}

kern_return_t kern_mach_port_allocate_name(mach_port_t task, mach_port_right_t right,
                                           mach_port_name_t name)
{
    if (!MACH_PORT_VALID(name)) {
        return KERN_INVALID_VALUE;
    }
    if (right != MACH_PORT_RIGHT_RECEIVE && right != MACH_PORT_RIGHT_DEAD_NAME &&
        right != MACH_PORT_RIGHT_PORT_SET) {
        return KERN_INVALID_VALUE;
    }
    KERN_SPACE_OR_FAIL(space, task);
    struct ipc_entry *entry;
    kern_return_t kr = ipc_entry_alloc_name(space, name, &entry);
    if (kr == KERN_SUCCESS && (kr = kern_fill_new(space, entry, right)) != KERN_SUCCESS) {
        ipc_entry_free(space, entry);
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_allocate(mach_port_t task, mach_port_right_t right,
                                      mach_port_name_t *name)
{
    if (right != MACH_PORT_RIGHT_RECEIVE && right != MACH_PORT_RIGHT_DEAD_NAME &&
        right != MACH_PORT_RIGHT_PORT_SET) {
        return KERN_INVALID_VALUE;
    }
    KERN_SPACE_OR_FAIL(space, task);
    struct ipc_entry *entry;
    kern_return_t kr = ipc_entry_alloc(space, &entry);
    if (kr == KERN_SUCCESS) {
        kr = kern_fill_new(space, entry, right);
        if (kr == KERN_SUCCESS) {
            *name = entry->name;
        } else {
            ipc_entry_free(space, entry);
        }
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_destroy(mach_port_t task, mach_port_name_t name)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = ipc_right_destroy(space, name);
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_deallocate(mach_port_t task, mach_port_name_t name)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = ipc_right_dealloc(space, name);
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_get_refs(mach_port_t task, mach_port_name_t name,
                                      mach_port_right_t right,
                                      mach_port_urefs_t *refs)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = ipc_right_refs(space, name, right, refs);
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_mod_refs(mach_port_t task, mach_port_name_t name,
                                      mach_port_right_t right,
                                      mach_port_delta_t delta)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = ipc_right_delta(space, name, right, delta);
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_set_qlimit(mach_port_t task, mach_port_name_t name,
                                        mach_port_msgcount_t qlimit)
{
    if (qlimit > MACH_PORT_QLIMIT_MAX) {
        return KERN_INVALID_VALUE;
    }
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = KERN_SUCCESS;
    struct ipc_entry *entry = kern_receive_entry(space, name, &kr);
    if (entry != NULL) {
        entry->port->rcv->qlimit = qlimit;
        ipc_qlimit_set(entry->port, qlimit);
        ipc_janitor_receive_changed(entry->port);
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_set_mscount(mach_port_t task, mach_port_name_t name,
                                         mach_port_mscount_t mscount)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = KERN_SUCCESS;
    struct ipc_entry *entry = kern_receive_entry(space, name, &kr);
    if (entry != NULL) {
        entry->port->rcv->mscount = mscount;
        ipc_janitor_receive_changed(entry->port);
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_set_seqno(mach_port_t task, mach_port_name_t name,
                                       mach_port_seqno_t seqno)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = KERN_SUCCESS;
    struct ipc_entry *entry = kern_receive_entry(space, name, &kr);
    if (entry != NULL) {
        /* [R] would be right; a racing receive sees either value. */
        entry->port->rcv->seqno = seqno;
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_get_receive_status(mach_port_t task,
                                                mach_port_name_t name,
                                                mach_port_status_t *status)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = KERN_SUCCESS;
    struct ipc_entry *entry = kern_receive_entry(space, name, &kr);
    if (entry != NULL) {
        struct ipc_port *port = entry->port;
        struct ipc_port_rcv *rcv = port->rcv;
        struct pollfd pfd[2] = {{.fd = rcv->recv_fd, .events = POLLIN},
                                {.fd = rcv->count_rfd, .events = POLLIN}};
        (void)poll(pfd, 2, 0);
        /* Messages through send rights are counted exactly; those through
         * send-once rights are not (see ipc_qlimit.h), but a readable
         * queue holds at least one. */
        mach_port_msgcount_t msgcount = ipc_qlimit_count(port) + (rcv->pending != NULL);
        if (msgcount == 0 && (pfd[0].revents & POLLIN)) {
            msgcount = 1;
        }
        *status = (mach_port_status_t){
            .mps_pset = rcv->pset != NULL ? rcv->pset->name : MACH_PORT_NULL,
            .mps_seqno = rcv->seqno,
            .mps_mscount = rcv->mscount,
            .mps_qlimit = rcv->qlimit,
            .mps_msgcount = msgcount,
            .mps_sorights = rcv->sorights,
            .mps_srights = !(pfd[1].revents & POLLHUP),
            .mps_pdrequest = rcv->pdrequest != 0,
            .mps_nsrequest = rcv->nsrequest != 0,
        };
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_insert_right(mach_port_t task, mach_port_name_t name,
                                          mach_port_t poly,
                                          mach_msg_type_name_t polyPoly)
{
    if (!MACH_PORT_VALID(name) || polyPoly < MACH_MSG_TYPE_PORT_RECEIVE ||
        polyPoly > MACH_MSG_TYPE_PORT_SEND_ONCE) {
        return KERN_INVALID_VALUE;
    }
    if (!MACH_PORT_VALID(poly)) {
        return KERN_INVALID_CAPABILITY;
    }
    KERN_SPACE_OR_FAIL(space, task);
    struct kright right;
    kern_return_t kr = ipc_right_copyin(&ipc_spaces[SPACE_KERNEL], poly, polyPoly,
                                        true, &right);
    if (kr == KERN_SUCCESS) {
        kr = ipc_right_copyout_name(space, &right, name);
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_extract_right(mach_port_t task, mach_port_name_t name,
                                           mach_msg_type_name_t msgt_name,
                                           mach_port_t *poly,
                                           mach_msg_type_name_t *polyPoly)
{
    if (!MACH_MSG_TYPE_PORT_ANY(msgt_name)) {
        return KERN_INVALID_VALUE;
    }
    KERN_SPACE_OR_FAIL(space, task);
    struct kright right;
    kern_return_t kr = ipc_right_copyin(space, name, msgt_name, true, &right);
    if (kr == KERN_SUCCESS) {
        mach_port_name_t kname;
        kr = ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], &right, &kname);
        *poly = kname;
        *polyPoly = ipc_received_type(msgt_name);
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_move_member(mach_port_t task, mach_port_name_t member,
                                         mach_port_name_t after)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = KERN_SUCCESS;
    struct ipc_entry *entry = kern_receive_entry(space, member, &kr);
    struct ipc_entry *set = NULL;
    if (entry != NULL && after != MACH_PORT_NULL) {
        set = ipc_entry_lookup(space, after);
        if (set == NULL) {
            kr = KERN_INVALID_NAME;
        } else if (!(set->type & MACH_PORT_TYPE_PORT_SET)) {
            kr = KERN_INVALID_RIGHT;
        }
    }
    if (kr == KERN_SUCCESS) {
        struct ipc_port *port = entry->port;
        if (set == NULL && port->rcv->pset == NULL) {
            kr = KERN_NOT_IN_SET;
        } else if (set == NULL || port->rcv->pset != set->pset) {
            ipc_pset_remove(port);
            if (set != NULL) {
                kr = ipc_pset_add(set->pset, port);
            }
        }
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_get_set_status(mach_port_t task, mach_port_name_t name,
                                            mach_port_name_array_t *members,
                                            mach_msg_type_number_t *membersCnt)
{
    KERN_SPACE_OR_FAIL(space, task);
    struct ipc_entry *entry = ipc_entry_lookup(space, name);
    kern_return_t kr = KERN_SUCCESS;
    if (entry == NULL) {
        kr = KERN_INVALID_NAME;
    } else if (!(entry->type & MACH_PORT_TYPE_PORT_SET)) {
        kr = KERN_INVALID_RIGHT;
    } else {
        struct ipc_pset *pset = entry->pset;
        size_t n = pset->members.count;
        mach_port_name_t *names;
        if (kern_array_alloc(n, sizeof *names, (void **)&names) != KERN_SUCCESS) {
            ipc_unlock();
            return KERN_RESOURCE_SHORTAGE;
        }
        uint64_t key;
        void *value;
        size_t i = 0;
        for (size_t c = 0; u64map_next(&pset->members, &c, &key, &value);) {
            names[i++] = ((struct ipc_port *)value)->name[SPACE_USER];
        }
        *members = names;
        *membersCnt = (mach_msg_type_number_t)i;
    }
    ipc_unlock();
    return kr;
}

/* Sets or clears the protected payload of receive right NAME. */
static kern_return_t kern_payload(mach_port_t task, mach_port_name_t name, bool set,
                                  uint64_t payload)
{
    KERN_SPACE_OR_FAIL(space, task);
    kern_return_t kr = KERN_SUCCESS;
    struct ipc_entry *entry = kern_receive_entry(space, name, &kr);
    if (entry != NULL) {
        entry->port->rcv->has_payload = set;
        entry->port->rcv->payload = payload;
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_mach_port_set_protected_payload(mach_port_t task, mach_port_name_t name,
                                                   rpc_uintptr_t payload)
{
    return kern_payload(task, name, true, payload);
}

kern_return_t kern_mach_port_clear_protected_payload(mach_port_t task, mach_port_name_t name)
{
    return kern_payload(task, name, false, 0);
}
