/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory objects: the kernel's cache of what external pagers supply, and
 * the kernel's side of the memory object protocol (memory_object.defs
 * towards pagers, the memory_object_* calls of mach.defs from them).
 *
 * The cache of an object is a memfd: the object's offset is the file's.
 * Every mapping of the object is a MAP_SHARED mapping of it, registered
 * with the userfaultfd of its address space for missing pages and for
 * write protection:
 *
 *  - a page not in the memfd faults (missing): the VM asks the pager
 *    (memory_object_data_request) and the thread waits in Linux until the
 *    data is written into the memfd and its fault is woken;
 *  - a page in the memfd is mapped by Linux with no message at all (the
 *    common path: every later touch, from every task);
 *  - a page supplied is write-protected in every mapping until its first
 *    write, which marks it dirty (so only pages written are returned) or,
 *    when the pager locked writes, becomes memory_object_data_unlock;
 *  - a page the pager locked against reading leaves the memfd (kept
 *    aside) until it unlocks it: every access to it faults (missing)
 *    and becomes memory_object_data_unlock;
 *  - cleaning write-protects a page again before reading it, flushing
 *    punches it out of the memfd (and so out of every mapping).
 *
 * The process holding an object's cache is its kernel: the task itself
 * outside an instance, machd for the tasks of an instance.  A space is
 * an address space whose faults this process serves (its own, or a
 * task's through that task's userfaultfd).
 *
 * [V] guards everything here; it is taken before [G] (messages to pagers
 * are sent under [V], never blocking), and never held while touching a
 * mapping of an object.
 */
#ifndef HELL_VM_OBJECT_H
#define HELL_VM_OBJECT_H

#include <mach/kern_return.h>
#include <mach/message.h>
#include <mach/vm_prot.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define VM_PAGE 4096u

struct vm_object;

/* An address space whose faults this process serves. */
struct vm_space {
    uint64_t id;               /* its key in the fault thread's set */
    int uffd;                  /* its userfaultfd (owned) */
    pid_t pid;                 /* its process: memory errors are sent there */
    int timeout_ms;            /* how long its faults wait for a pager */
    struct vm_mapping *maps;   /* [V] its mappings of objects, by address */
};

/* A range of a space that maps an object. */
struct vm_mapping {
    struct vm_space *space;
    struct vm_object *object;
    uint64_t start, end;       /* addresses in the space */
    uint64_t offset;           /* the object's offset at START */
    struct vm_mapping *space_next;
    struct vm_mapping *object_next;
};

/* A range of this task that maps an object: PAGER is a kernel-space send
 * right to the object's pager, a reference of the holder's. */
struct vm_object_range {
    uint64_t start, end;
    uint64_t offset;           /* the object's offset at START */
    mach_port_name_t pager;
};

/* Appends to *RANGES (*N of them, room for *CAP; a malloc'd array,
 * grown as needed) the ranges of this process's own space that map
 * objects, each with a new reference to its pager.  Returns false when
 * memory ran short (what was appended stays the caller's).  Expects [V];
 * takes [G]. */
bool vm_object_self_ranges(struct vm_object_range **ranges, size_t *n, size_t *cap);

/* Appends RANGE to *RANGES as vm_object_self_ranges does, with a new
 * reference to its pager (RANGE is left out when that reference cannot
 * be added: the caller holds one, so it always can).  Returns false when
 * memory ran short.  Expects no ipc_lock. */
bool vm_object_range_append(struct vm_object_range **ranges, size_t *n, size_t *cap,
                            const struct vm_object_range *range);

/* [V], the VM's lock.  vm_unlock makes the wake-ups of faulting threads
 * deferred while it was held. */
void vm_lock(void);
void vm_unlock(void);

/* Returns once no thread holds or makes deferred wake-ups: a userfaultfd
 * may then be closed.  Makes the caller's own at once.  Expects [V]. */
void vm_wakes_wait_idle(void);

/* How long a fault of this process waits for its pager before it fails,
 * in milliseconds: HELL_PAGER_TIMEOUT_MS (default 30000), read once (and
 * again in a child of fork, which may set its own).  Expects [V]. */
int vm_pager_timeout_ms(void);

/* Finds the object whose pager is PAGER (a kernel-space send right), or
 * makes it: a cache, a control and a name port, and memory_object_init
 * to the pager.  On success *OBJECT is referenced (one mapping's
 * reference, released by vm_space_unmap or vm_object_release) and the
 * caller's reference to PAGER is taken over.  Returns KERN_SUCCESS,
 * KERN_INVALID_ARGUMENT (PAGER is dead or no send right) or
 * KERN_RESOURCE_SHORTAGE.  Expects [V]. */
kern_return_t vm_object_enter(mach_port_name_t pager, struct vm_object **object);

/* Releases a reference taken by vm_object_enter.  The last one of an
 * object its pager does not let the kernel cache (or that is dead)
 * returns its dirty and precious pages and terminates it.  Expects [V]. */
void vm_object_release(struct vm_object *object);

/* The memfd holding OBJECT's cache, grown to at least END bytes.
 * Returns the descriptor (owned by the object) or -1.  Expects [V]. */
int vm_object_memfd(struct vm_object *object, uint64_t end);

/* Adds the mapping of OBJECT (its reference moves into the mapping) at
 * [START, END) of SPACE, at object offset OFFSET, whose memfd mapping the
 * caller already made there: registers it with the space's userfaultfd
 * and write-protects it.  Returns KERN_SUCCESS or
 * KERN_RESOURCE_SHORTAGE (nothing added; the reference stays the
 * caller's).  Expects [V]. */
kern_return_t vm_mapping_add(struct vm_space *space, struct vm_object *object,
                             uint64_t start, uint64_t end, uint64_t offset);

/* [START, END) of SPACE no longer maps what it mapped (the caller unmaps
 * it): its mappings are cut and those emptied release their object.
 * Expects [V]. */
void vm_space_unmap(struct vm_space *space, uint64_t start, uint64_t end);

/* vm_msync of [START, END) of SPACE: the dirty pages of the objects
 * mapped there go back to their pagers (memory_object_data_return), and
 * with INVALIDATE leave the cache.  Returns whether the range maps any
 * object.  Expects [V]. */
bool vm_space_sync(struct vm_space *space, uint64_t start, uint64_t end, bool invalidate);

/* The mapping of SPACE holding ADDR, or NULL.  Expects [V]. */
struct vm_mapping *vm_space_lookup(struct vm_space *space, uint64_t addr);

/* GNU Mach's vm_object_name for vm_region: the name port of the object
 * SPACE (NULL: none) maps at ADDR, the port the pager was given with
 * memory_object_init.  Returns its kernel-space name with a new send
 * reference (the caller's), or MACH_PORT_NULL when no object is mapped
 * there or its ports went back to the pager (terminated).  Expects [V];
 * takes [G]. */
mach_port_name_t vm_space_object_name(struct vm_space *space, uint64_t addr);

/* A fault of thread TID of SPACE at ADDR (userfaultfd flags FLAGS: write,
 * write-protect) in MAPPING: asks the pager, waits for it, or lets the
 * thread go on.  Expects [V]. */
void vm_object_fault(struct vm_mapping *mapping, uint64_t addr, unsigned flags, pid_t tid);

/* Ends the waits that have lasted past the pager timeout, or whose pager
 * died: their threads get a memory error.  Returns the milliseconds until
 * the next deadline, or -1 when nobody waits.  Expects [V]. */
int vm_object_expire(void);

/* Copies [OFFSET, OFFSET + SIZE) of OBJECT into DST (memory of this
 * process, not a mapping of any object), asking the pager for what is
 * not cached, or to unlock what is locked against reading, and waiting
 * for it at most TIMEOUT_MS a page: a copy mapping (vm_map with copy).
 * Returns KERN_SUCCESS, or KERN_MEMORY_ERROR (the pager failed, refused
 * the unlock, died or did not answer in time).
 * Expects no lock. */
kern_return_t vm_object_read(struct vm_object *object, uint64_t offset, uint64_t size,
                             void *dst, int timeout_ms);

/* The child side of fork(): forgets the parent's objects.  Expects a
 * single thread. */
void vm_object_fork_child(void);

/* The kernel server of the VM's notifications (a pager's death): in the
 * chain of kern_serve.  Returns FALSE for a message to another port.
 * Expects no lock. */
boolean_t vm_notify_server(mach_msg_header_t *in, mach_msg_header_t *out);

#endif
