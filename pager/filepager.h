/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A sample external pager: serves a Linux file as a memory object, read
 * and write, through the GNU Mach memory object protocol
 * (memory_object.defs), the way a Hurd file system's pager does.
 *
 * Pages are read from the file on memory_object_data_request and given
 * with memory_object_data_supply; pages past the end of the file are
 * zero-filled (memory_object_data_unavailable).  Pages coming back with
 * memory_object_data_return are written to the file when it is writable.
 * An access to a page the pager supplied locked (or locked since)
 * becomes memory_object_data_unlock, which the pager grants (or, for
 * tests, refuses or leaves unanswered).  The pager asks the
 * kernel for dirty pages with filepager_sync (lock_request), and can
 * misbehave on purpose for tests (answer errors, or never answer).
 *
 * One pager serves one object to one kernel; a second memory_object_init
 * is refused with memory_object_destroy.
 */
#ifndef HELL_FILEPAGER_H
#define HELL_FILEPAGER_H

#include <mach.h>
#include <stdatomic.h>
#include <stdbool.h>

/* What the pager saw, for tests and the demo. */
struct filepager_stats {
    atomic_uint inits;          /* memory_object_init */
    atomic_uint terminates;     /* memory_object_terminate */
    atomic_uint requests;       /* memory_object_data_request */
    atomic_uint pages_requested;
    atomic_uint unlocks;        /* memory_object_data_unlock */
    atomic_uint unlock_access;  /* the desired access of the last one */
    atomic_uint returns;        /* memory_object_data_return */
    atomic_uint pages_returned;
    atomic_uint dirty_returned; /* pages returned marked dirty */
    atomic_uint lock_completed; /* memory_object_lock_completed */
    atomic_uint bad_controls;   /* requests whose control port was no send right
                                   (checked when keeps_no_control) */
    atomic_uint ns_exact;       /* terminations whose control port's no-senders
                                   notification came exactly when due
                                   (checked when checks_no_senders) */
    atomic_uint ns_wrong;       /* ... came too early, or not at all */
};

/* How the pager answers data requests. */
enum filepager_mode {
    FILEPAGER_NORMAL = 0,
    FILEPAGER_ERROR = 1,  /* memory_object_data_error(KERN_MEMORY_ERROR) */
    FILEPAGER_SILENT = 2, /* never answers */
};

/* How the pager answers data_unlock (a writable pager's; one that is not
 * refuses every unlock). */
enum filepager_unlock {
    FILEPAGER_UNLOCK_GRANT = 0, /* lock_request lowering the lock to none */
    FILEPAGER_UNLOCK_ERROR = 1, /* memory_object_data_error(KERN_PROTECTION_FAILURE) */
    FILEPAGER_UNLOCK_HOLD = 2,  /* never answers (filepager_set_lock may, later) */
};

struct filepager {
    int fd;                  /* the file (owned) */
    bool writable;
    mach_port_t object;      /* the memory object: receive right */
    mach_port_t control;     /* the kernel's control port, after init */
    mach_port_t name;        /* the object's name port, after init (a send right) */
    vm_prot_t supply_lock;   /* lock value of supplied pages */
    bool precious;           /* supply pages precious */
    bool uncached;           /* may_cache FALSE: terminated at the last unmapping */
    bool keeps_no_control;   /* keeps no right to the control port between calls
                                (each request brings one), for tests:
                                filepager_sync and filepager_lock_writes then
                                have none to use, and a terminate is taken
                                from anyone (nothing to compare it with) */
    bool checks_no_senders;  /* at terminate, asks for no-senders on the control
                                port it then receives, for tests: the
                                notification must come at once when the pager
                                holds no send right to it, and only once it lets
                                go of its own otherwise (stats.ns_exact) */
    bool initialized;        /* a kernel is served (memory_object_init) */
    _Atomic int mode;        /* enum filepager_mode */
    _Atomic int unlock_mode; /* enum filepager_unlock */
    struct filepager_stats stats;
};

/* Makes a pager for FD (its descriptor is taken over) and its memory
 * object port.  WRITABLE: data returned is written to the file.  Returns
 * NULL when out of memory or ports. */
struct filepager *filepager_create(int fd, bool writable);

/* Serves the pager's port forever (or until it is destroyed).  Expects to
 * be the only receiver. */
void filepager_serve(struct filepager *pager);

/* Serves the pager from a thread of its own.  Returns whether it
 * started. */
bool filepager_start(struct filepager *pager);

/* Asks the kernel for the dirty pages of [OFFSET, OFFSET + SIZE) (and
 * drops them from its cache when FLUSH), and waits up to TIMEOUT_MS for
 * memory_object_lock_completed.  Returns KERN_SUCCESS, KERN_INVALID_ARGUMENT
 * (no kernel yet) or the error of the request. */
kern_return_t filepager_sync(struct filepager *pager, vm_offset_t offset, vm_size_t size,
                             bool flush, int timeout_ms);

/* Sends back everything cached of [OFFSET, OFFSET + SIZE) (widened to
 * whole pages), dropping it too with FLUSH, through vm_object_sync on the
 * object's name port: the pages come as memory_object_data_return.
 * Returns the call's code, or KERN_INVALID_ARGUMENT with no kernel yet. */
kern_return_t filepager_object_sync(struct filepager *pager, vm_offset_t offset, vm_size_t size,
                                    bool flush);

/* Locks writes out of the cached pages of [OFFSET, OFFSET + SIZE): the
 * next write to each becomes memory_object_data_unlock.  Waits as
 * filepager_sync. */
kern_return_t filepager_lock_writes(struct filepager *pager, vm_offset_t offset,
                                    vm_size_t size, int timeout_ms);

/* Sets the lock of the cached pages of [OFFSET, OFFSET + SIZE) to LOCK
 * (the access locked out: VM_PROT_READ locks out every access, as in GNU
 * Mach; VM_PROT_NONE unlocks), and waits as filepager_sync. */
kern_return_t filepager_set_lock(struct filepager *pager, vm_offset_t offset, vm_size_t size,
                                 vm_prot_t lock, int timeout_ms);

#endif
