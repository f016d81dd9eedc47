/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The attributes of a task's memory (mach.defs, mach_host.defs,
 * gnumach.defs): vm_protect, vm_inherit, vm_region, vm_wire, vm_wire_all,
 * vm_msync.  Served by the task that owns the memory (its own calls
 * inline, another task's through its service thread).  Linux keeps the
 * mappings and their current protection; vm_attr.c keeps what Mach adds
 * (maximum protection, inheritance).
 *
 * GNU Mach's rules, from its vm_user.c and vm_map.c: ranges are the
 * pages holding [address, address + size), clipped to the user range;
 * holes in a range are skipped (vm_protect and vm_inherit succeed on
 * them); a protection is checked against every mapped page's maximum
 * before anything changes.
 */
#include <errno.h>
#include <mach.h>
#include <mach/vm_sync.h>
#include <mach/vm_wire.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ipc_msg.h"
#include "ipc_space.h"
#include "kern.h"
#include "kern_vm.h"
#include "gnumach.server.h"
#include "linux.h"
#include "msg_destroy.h"
#include "mach.server.h"
#include "mach_host.server.h"
#include "vm_attr.h"
#include "vm_fault.h"
#include "vm_remote.h"
#include "vm_maps.h"
#include "vm_movable.h"
#include "vm_object.h"

#define KERN_VM_PAGE 4096ul
/* What a task may wire through the unprivileged host port (GNU Mach's
 * VM_MAP_MAX_WIRE_UNPRIVILEGED). */
#define KERN_VM_WIRE_UNPRIVILEGED (8ul << 20)

static _Atomic vm_size_t kern_vm_wired; /* bytes wired through vm_wire */

/* ---- vm_protect ---- */

/* Whether every mapped page of [START, END) allows PROT as its maximum.
 * Expects vm_attr_lock. */
static bool kern_vm_max_allows(vm_address_t start, vm_address_t end, vm_prot_t prot)
{
    struct vm_maps maps;
    if (!vm_maps_open(&maps)) {
        return false;
    }
    struct vm_maps_entry m;
    bool ok = true;
    while (ok && vm_maps_next(&maps, &m) && m.start < end) {
        vm_address_t a = m.start > start ? m.start : start;
        vm_address_t b = m.end < end ? m.end : end;
        while (ok && a < b) {
            struct vm_attr attr;
            vm_address_t run_end = vm_attr_get(a, b, &attr);
            ok = (prot & ~attr.max_protection) == 0;
            a = run_end;
        }
    }
    vm_maps_close(&maps);
    return ok;
}

/* Gives every mapped page of [START, END) the protection PROT, or with
 * CLIP its own ANDed with PROT.  Returns KERN_SUCCESS, or
 * KERN_PROTECTION_FAILURE when Linux refuses (a file opened read-only).
 * Expects vm_attr_lock. */
static kern_return_t kern_vm_apply(vm_address_t start, vm_address_t end, vm_prot_t prot,
                                   bool clip)
{
    struct vm_maps maps;
    if (!vm_maps_open(&maps)) {
        return KERN_RESOURCE_SHORTAGE;
    }
    struct vm_maps_entry m;
    kern_return_t kr = KERN_SUCCESS;
    while (kr == KERN_SUCCESS && vm_maps_next(&maps, &m) && m.start < end) {
        vm_address_t a = m.start > start ? m.start : start;
        vm_address_t b = m.end < end ? m.end : end;
        vm_prot_t want = clip ? (m.protection & prot) : prot;
        if (a < b && mprotect((void *)a, b - a, kern_vm_linux_prot(want)) != 0) {
            kr = errno == ENOMEM ? KERN_SUCCESS /* unmapped meanwhile */
                                 : KERN_PROTECTION_FAILURE;
        }
    }
    vm_maps_close(&maps);
    return kr;
}

kern_return_t kern_vm_protect(mach_port_t target_task, vm_address_t address, vm_size_t size,
                              boolean_t set_maximum, vm_prot_t new_protection)
{
    if (!kern_vm_task_ok(target_task) ||
        (new_protection & ~(VM_PROT_ALL | VM_PROT_NOTIFY)) != 0) {
        return KERN_INVALID_ARGUMENT;
    }
    vm_prot_t prot = new_protection & VM_PROT_ALL;
    vm_address_t start, end;
    if (!kern_vm_range(address, size, &start, &end)) {
        return KERN_SUCCESS;
    }
    vm_attr_lock();
    kern_return_t kr = KERN_SUCCESS;
    if (!kern_vm_max_allows(start, end, prot)) {
        kr = KERN_PROTECTION_FAILURE; /* the maximum can only be lowered */
    } else if (set_maximum) {
        kr = vm_attr_set_max(start, end, prot) ? kern_vm_apply(start, end, prot, true)
                                               : KERN_RESOURCE_SHORTAGE;
    } else {
        kr = kern_vm_apply(start, end, prot, false);
    }
    vm_attr_unlock();
    return kr;
}

/* ---- vm_machine_attribute ---- */

kern_return_t kern_vm_machine_attribute(mach_port_t target_task, vm_address_t address,
                                        vm_size_t size, vm_machine_attribute_t attribute,
                                        vm_machine_attribute_val_t *value)
{
    (void)attribute;
    (void)value; /* (not returned: GNU Mach's call changes nothing) */
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    /* GNU Mach checks the range against the map's bounds (the sum as it
     * computes it, wrapping), then asks the pmap, whose x86 answer is
     * always KERN_INVALID_ADDRESS: no cache or page attribute to set. */
    if (address + size > VM_MAPS_USER_MAX) {
        return KERN_INVALID_ARGUMENT;
    }
    return KERN_INVALID_ADDRESS;
}

/* ---- vm_inherit ---- */

/* Makes the private mapping [START, END) (protection PROT) shared, with
 * its contents: a memfd mapped over it.  Returns KERN_SUCCESS or
 * KERN_RESOURCE_SHORTAGE (the mapping unchanged). */
static kern_return_t kern_vm_make_shared(vm_address_t start, vm_address_t end, vm_prot_t prot)
{
    size_t len = end - start;
    int fd = memfd_create("hell-shared", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)len) != 0) {
        if (fd >= 0) {
            linux_close(fd);
        }
        return KERN_RESOURCE_SHORTAGE;
    }
    /* Unreadable pages are read for the copy, then protected again. */
    if (!(prot & VM_PROT_READ)) {
        mprotect((void *)start, len, PROT_READ);
    }
    void *shared = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    kern_return_t kr = KERN_RESOURCE_SHORTAGE;
    if (shared != MAP_FAILED) {
        memcpy(shared, (void *)start, len);
        munmap(shared, len);
        if (mmap((void *)start, len, kern_vm_linux_prot(prot), MAP_SHARED | MAP_FIXED, fd, 0) !=
            MAP_FAILED) {
            kr = KERN_SUCCESS;
        }
    }
    if (kr != KERN_SUCCESS && !(prot & VM_PROT_READ)) {
        mprotect((void *)start, len, kern_vm_linux_prot(prot));
    }
    linux_close(fd); /* the mapping keeps the memory */
    return kr;
}

/* Makes the shared mapping [START, END) private again, with its
 * contents (a child will get a copy, not the pages). */
static kern_return_t kern_vm_make_private(vm_address_t start, vm_address_t end, vm_prot_t prot)
{
    size_t len = end - start;
    void *copy = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED) {
        return KERN_RESOURCE_SHORTAGE;
    }
    if (!(prot & VM_PROT_READ)) {
        mprotect((void *)start, len, PROT_READ);
    }
    memcpy(copy, (void *)start, len);
    mprotect(copy, len, kern_vm_linux_prot(prot));
    /* Moves the copy over the shared pages, atomically. */
    void *p = mremap(copy, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)start);
    if (p == MAP_FAILED) {
        munmap(copy, len);
        if (!(prot & VM_PROT_READ)) {
            mprotect((void *)start, len, kern_vm_linux_prot(prot));
        }
        return KERN_RESOURCE_SHORTAGE;
    }
    return KERN_SUCCESS;
}

/* Whether [A, B) meets one of the N RANGES mapping objects. */
static bool kern_vm_inherit_object(const struct vm_object_range *ranges, size_t n,
                                   vm_address_t a, vm_address_t b)
{
    for (size_t i = 0; i < n; i++) {
        if (ranges[i].start < b && a < ranges[i].end) {
            return true;
        }
    }
    return false;
}

/* Gives the mapped pages of [START, END) the inheritance INHERIT as Linux
 * understands it: fork copies a private mapping (COPY), shares a shared
 * one (SHARE), leaves out one marked MADV_DONTFORK (NONE).  Mappings of
 * objects (the N RANGES) stay as they are, holes for fork: task_create
 * maps them into the new task as their recorded inheritance says
 * (kern_vm_inherit_prepare).  Expects vm_attr_lock. */
static kern_return_t kern_vm_inherit_apply(vm_address_t start, vm_address_t end,
                                           vm_inherit_t inherit,
                                           const struct vm_object_range *ranges, size_t n)
{
    struct vm_maps_entry m;
    kern_return_t kr = KERN_SUCCESS;
    /* Looked up afresh each time: remapping changes the maps. */
    for (vm_address_t at = start; kr == KERN_SUCCESS && at < end &&
                                  vm_maps_find(at, &m) && m.start < end;
         at = m.end) {
        vm_address_t a = m.start > start ? m.start : start;
        vm_address_t b = m.end < end ? m.end : end;
        if (kern_vm_inherit_object(ranges, n, a, b)) {
            m.end = b;
            continue;
        }
        if (inherit == VM_INHERIT_SHARE && !m.shared) {
            kr = kern_vm_make_shared(a, b, m.protection);
        } else if (inherit == VM_INHERIT_COPY && m.shared &&
                   !vm_movable_holds(m.start, m.end, m.inode)) {
            kr = kern_vm_make_private(a, b, m.protection);
        }
        if (kr == KERN_SUCCESS &&
            madvise((void *)a, b - a, inherit == VM_INHERIT_NONE ? MADV_DONTFORK
                                                                   : MADV_DOFORK) != 0) {
            kr = KERN_RESOURCE_SHORTAGE;
        }
        m.end = b;
    }
    return kr;
}

kern_return_t kern_vm_inherit(mach_port_t target_task, vm_address_t address, vm_size_t size,
                              vm_inherit_t new_inheritance)
{
    if (!kern_vm_task_ok(target_task) ||
        (new_inheritance != VM_INHERIT_SHARE && new_inheritance != VM_INHERIT_COPY &&
         new_inheritance != VM_INHERIT_NONE)) {
        return KERN_INVALID_ARGUMENT;
    }
    vm_address_t start, end;
    if (!kern_vm_range(address, size, &start, &end)) {
        return KERN_SUCCESS;
    }
    /* A movable region is shared for Linux, private for Mach until
     * shared (fork makes it private, COPY, unless set NONE or SHARE). */
    if (new_inheritance == VM_INHERIT_SHARE) {
        vm_movable_share(start, end);
    }
    struct vm_object_range *ranges;
    size_t n, nlocal;
    if (!kern_vm_object_ranges(&ranges, &n, &nlocal)) {
        return KERN_RESOURCE_SHORTAGE;
    }
    vm_attr_lock();
    kern_return_t kr = kern_vm_inherit_apply(start, end, new_inheritance, ranges, n);
    if (kr == KERN_SUCCESS && !vm_attr_set_inheritance(start, end, new_inheritance)) {
        kr = KERN_RESOURCE_SHORTAGE;
    }
    vm_attr_unlock();
    kern_vm_object_ranges_free(ranges, n);
    return kr;
}

/* ---- vm_region ---- */

/* GNU Mach's vm_object_name for the region at ADDR: a kernel-space send
 * right (a new reference, moved to the caller by the reply) to the name
 * port of the object mapped there, from machd (or the creator serving
 * this task) when it keeps the object, else from this task's own cache;
 * MACH_PORT_NULL for memory that maps no object.  Expects no lock. */
static mach_port_name_t kern_vm_region_name(vm_address_t addr)
{
    /* The round trip to machd holds no [V]: vm_remote_name takes its own lock. */
    mach_port_name_t name = vm_remote_name(addr);
    if (name == MACH_PORT_NULL) {
        vm_lock();
        name = vm_space_object_name(vm_space_self_if_any(), addr);
        vm_unlock();
    }
    return name;
}

kern_return_t kern_vm_region(mach_port_t target_task, vm_address_t *address, vm_size_t *size,
                             vm_prot_t *protection, vm_prot_t *max_protection,
                             vm_inherit_t *inheritance, boolean_t *is_shared,
                             mach_port_t *object_name, vm_offset_t *offset)
{
    if (!kern_vm_task_ok(target_task)) {
        return KERN_INVALID_ARGUMENT;
    }
    struct vm_maps_entry m;
    if (!vm_maps_find(*address, &m)) {
        return KERN_NO_SPACE;
    }
    /* The region is the Linux mapping, cut where Mach's attributes
     * change, holding the address or following it. */
    vm_address_t at = *address > m.start ? *address & ~(KERN_VM_PAGE - 1) : m.start;
    vm_attr_lock();
    vm_address_t start = m.start;
    struct vm_attr attr;
    for (;;) {
        vm_address_t run_end = vm_attr_get(start, m.end, &attr);
        if (run_end > at) {
            break;
        }
        start = run_end;
    }
    vm_address_t end = vm_attr_get(start, m.end, &attr);
    vm_attr_unlock();
    *address = start;
    *size = end - start;
    *protection = m.protection;
    *max_protection = attr.max_protection;
    bool shared = m.shared && !vm_movable_holds(m.start, m.end, m.inode);
    *inheritance = attr.inheritance != VM_ATTR_INHERIT_UNSET ? attr.inheritance
                   : shared                                  ? VM_INHERIT_SHARE
                                                             : VM_INHERIT_COPY;
    *is_shared = shared;
    *object_name = kern_vm_region_name(start);
    *offset = m.offset + (start - m.start);
    return KERN_SUCCESS;
}

/* ---- wiring ---- */

/* A task's memory is wired by the process that owns it (mlock acts on
 * the caller's own memory).  So the server of the privileged host port
 * (machd) forwards a call naming another task (the caller's own, say)
 * to that task's port as a HELL request of its own, from a thread that
 * answers the caller once the task has.  A task takes that request as
 * privileged: whoever holds its task port controls it anyway, and
 * Linux's RLIMIT_MEMLOCK binds either way.  The unprivileged host port
 * is each task's own and wires only its memory. */

/* Forwards under way, and their bound (each is a thread). */
#define KERN_WIRE_FORWARDS_MAX 16
static atomic_uint kern_wire_forwards;
/* How long a forwarded call may wait for the task's answer: a task's
 * service thread answers at once; a port that is no task may never. */
#define KERN_WIRE_FORWARD_TIMEOUT_MS 5000

/* The forwarded request: vm_wire's arguments, or vm_wire_all's flags,
 * MIG-typed; answered with a mig_reply_header_t (id + 100). */
#define KERN_WIRE_FORWARD_ID 0x48570001     /* "HW", 1 */
#define KERN_WIRE_ALL_FORWARD_ID 0x48570002 /* "HW", 2 */
struct kern_wire_request {
    mach_msg_header_t head;
    union {
        struct {
            mach_msg_type_t address_type;
            vm_address_t address;
            mach_msg_type_t size_type;
            vm_size_t size;
            mach_msg_type_t access_type;
            vm_prot_t access;
            char pad[4];
        } wire;
        struct {
            mach_msg_type_t flags_type;
            vm_wire_t flags;
            char pad[4];
        } all;
    };
};
#define KERN_WIRE_REQUEST_SIZE (offsetof(struct kern_wire_request, wire) + \
                                sizeof(((struct kern_wire_request *)0)->wire))
#define KERN_WIRE_ALL_REQUEST_SIZE (offsetof(struct kern_wire_request, all) + \
                                    sizeof(((struct kern_wire_request *)0)->all))

/* Wires (or with VM_PROT_NONE unwires) the pages of [ADDRESS, ADDRESS +
 * SIZE) of this task. */
static kern_return_t kern_wire_here(vm_address_t address, vm_size_t size, vm_prot_t access,
                                    bool privileged)
{
    if ((access & ~VM_PROT_ALL) != 0) {
        return KERN_INVALID_ARGUMENT;
    }
    vm_address_t start, end;
    if (!kern_vm_range(address, size, &start, &end)) {
        return KERN_SUCCESS;
    }
    if (access == VM_PROT_NONE) {
        (void)munlock((void *)start, end - start);
        vm_size_t wired = atomic_load(&kern_vm_wired);
        while (!atomic_compare_exchange_weak(&kern_vm_wired, &wired,
                                             wired > end - start ? wired - (end - start) : 0)) {
        }
        return KERN_SUCCESS;
    }
    if (!privileged &&
        atomic_load(&kern_vm_wired) + (end - start) > KERN_VM_WIRE_UNPRIVILEGED) {
        return KERN_NO_ACCESS;
    }
    if (kern_vm_check_range(start, end - start, access) != KERN_SUCCESS) {
        return KERN_NO_SPACE; /* a hole, or too little access */
    }
    /* Locked where it will stay: a movable region would be remapped. */
    vm_movable_unshare(start, end);
    if (mlock((void *)start, end - start) != 0) {
        return KERN_NO_ACCESS; /* Linux's RLIMIT_MEMLOCK, without CAP_IPC_LOCK */
    }
    atomic_fetch_add(&kern_vm_wired, end - start);
    return KERN_SUCCESS;
}

/* vm_wire_all of this task. */
static kern_return_t kern_wire_all_here(vm_wire_t flags)
{
    if ((flags & ~VM_WIRE_ALL) != 0) {
        return KERN_INVALID_ARGUMENT;
    }
    if (flags == VM_WIRE_NONE) {
        (void)munlockall();
        atomic_store(&kern_vm_wired, 0);
        return KERN_SUCCESS;
    }
    if (flags & VM_WIRE_CURRENT) {
        vm_movable_unshare(0, VM_MAPS_USER_MAX);
    }
    int how = (flags & VM_WIRE_CURRENT ? MCL_CURRENT : 0) |
              (flags & VM_WIRE_FUTURE ? MCL_FUTURE : 0);
    return mlockall(how) == 0 ? KERN_SUCCESS : KERN_NO_ACCESS;
}

boolean_t kern_wire_forward_server(mach_msg_header_t *in, mach_msg_header_t *out)
{
    if (in->msgh_id != KERN_WIRE_FORWARD_ID && in->msgh_id != KERN_WIRE_ALL_FORWARD_ID) {
        return FALSE;
    }
    const struct kern_wire_request *r = (const void *)in;
    mig_reply_setup(in, out);
    kern_return_t kr = MIG_BAD_ARGUMENTS;
    if (in->msgh_bits & MACH_MSGH_BITS_COMPLEX) {
        /* (kern_serve destroys what it carried) */
    } else if (!kern_vm_task_ok(in->msgh_local_port)) {
        kr = KERN_INVALID_TASK; /* sent to another kernel object */
    } else if (in->msgh_id == KERN_WIRE_FORWARD_ID) {
        if (in->msgh_size == KERN_WIRE_REQUEST_SIZE &&
            kern_type_is(&r->wire.address_type, &kern_type_int64) &&
            kern_type_is(&r->wire.size_type, &kern_type_int64) &&
            kern_type_is(&r->wire.access_type, &kern_type_int32)) {
            kr = kern_wire_here(r->wire.address, r->wire.size, r->wire.access, true);
        }
    } else if (in->msgh_size == KERN_WIRE_ALL_REQUEST_SIZE &&
               kern_type_is(&r->all.flags_type, &kern_type_int32)) {
        kr = kern_wire_all_here(r->all.flags);
    }
    ((mig_reply_header_t *)out)->RetCode = kr;
    return TRUE;
}

struct kern_wire_forward {
    mach_port_name_t task;     /* kernel-space send right, ours */
    struct kern_wire_request request;
    mach_msg_size_t size;
    mach_port_name_t reply;    /* kernel-space send-once right to answer */
    mach_msg_id_t request_id;
};

/* Sends F's request to its task from the kernel space and returns the
 * answer.  A port that does not answer it as a task does (in time, or at
 * all) is no task.  Expects no lock. */
static kern_return_t kern_wire_forward_call(struct kern_wire_forward *f)
{
    union {
        struct kern_wire_request in;
        mig_reply_header_t out;
    } m;
    m.in = f->request;
    m.in.head.msgh_bits = 0;
    m.in.head.msgh_remote_port = f->task;
    kern_return_t kr;
    mach_msg_return_t mr = kern_call_code(&m.in.head, f->size, sizeof m,
                                          KERN_WIRE_FORWARD_TIMEOUT_MS, &kr);
    if (mr == MACH_SEND_INVALID_REPLY) {
        return KERN_RESOURCE_SHORTAGE; /* no reply port */
    }
    return mr == MACH_MSG_SUCCESS ? kr : KERN_INVALID_TASK;
}

/* Releases F's own reference to its task. */
static void kern_wire_forward_end(struct kern_wire_forward *f)
{
    kern_release_right(f->task);
}

static void *kern_wire_forward_main(void *arg)
{
    struct kern_wire_forward *f = arg;
    kern_return_t kr = kern_wire_forward_call(f);
    kern_wire_forward_end(f);
    kern_reply(f->reply, f->request_id, kr);
    free(f);
    atomic_fetch_sub(&kern_wire_forwards, 1);
    return NULL;
}

/* Forwards REQUEST (SIZE bytes, its header's id set) to TASK, a
 * kernel-space send right to another task's port that the request being
 * served brought, and releases that right unless the call fails (a
 * failed call's request is destroyed by kern_serve).  Answered by a
 * thread of ours when serving another task (MIG_NO_REPLY), else at
 * once. */
static kern_return_t kern_wire_forward(mach_port_t task, const struct kern_wire_request *request,
                                       mach_msg_size_t size)
{
    struct kern_wire_forward f = {.task = task, .request = *request, .size = size};
    ipc_lock();
    bool referenced = ipc_right_delta(&ipc_spaces[SPACE_KERNEL], task, MACH_PORT_RIGHT_SEND,
                                      1) == KERN_SUCCESS;
    ipc_unlock();
    if (!referenced) {
        return KERN_INVALID_TASK; /* a dead name, or no send right */
    }
    kern_return_t kr = KERN_RESOURCE_SHORTAGE;
    const mach_msg_header_t *current = kern_current_request();
    if (current == NULL || !kern_serving_other_task()) {
        kr = kern_wire_forward_call(&f);
        kern_wire_forward_end(&f);
    } else {
        struct kern_wire_forward *d = NULL;
        if (atomic_fetch_add(&kern_wire_forwards, 1) < KERN_WIRE_FORWARDS_MAX) {
            d = malloc(sizeof *d);
        }
        if (d != NULL) {
            f.reply = (mach_port_name_t)current->msgh_remote_port;
            f.request_id = current->msgh_id;
            *d = f;
            if (linux_thread_start(kern_wire_forward_main, d)) {
                kr = MIG_NO_REPLY; /* the thread answers, and ends F */
            } else {
                free(d);
            }
        }
        if (kr != MIG_NO_REPLY) {
            atomic_fetch_sub(&kern_wire_forwards, 1);
            kern_wire_forward_end(&f);
        }
    }
    if (kr == KERN_SUCCESS || kr == MIG_NO_REPLY) {
        kern_release_right(task); /* the request's */
    }
    return kr;
}

kern_return_t kern_vm_wire(mach_port_t host, mach_port_t task, vm_address_t address,
                           vm_size_t size, vm_prot_t access)
{
    bool privileged;
    if (!kern_host_port_ok(host, &privileged)) {
        return KERN_INVALID_HOST;
    }
    if (kern_vm_task_ok(task)) {
        kern_return_t kr = kern_wire_here(address, size, access, privileged);
        if (kr == KERN_SUCCESS) {
            kern_release_right(task); /* the request's */
        }
        return kr;
    }
    if (!privileged || !MACH_PORT_VALID(task)) {
        return KERN_INVALID_TASK;
    }
    /* (The task checks the rest, after its own identity, as GNU Mach.) */
    struct kern_wire_request r = {
        .head = {.msgh_id = KERN_WIRE_FORWARD_ID},
        .wire = {.address_type = kern_type_int64, .address = address,
                 .size_type = kern_type_int64, .size = size,
                 .access_type = kern_type_int32, .access = access}};
    return kern_wire_forward(task, &r, KERN_WIRE_REQUEST_SIZE);
}

kern_return_t kern_vm_wire_all(mach_port_t host, mach_port_t task, vm_wire_t flags)
{
    bool privileged;
    if (!kern_host_port_ok(host, &privileged) || !privileged) {
        return KERN_INVALID_HOST;
    }
    if (kern_vm_task_ok(task)) {
        kern_return_t kr = kern_wire_all_here(flags);
        if (kr == KERN_SUCCESS) {
            kern_release_right(task); /* the request's */
        }
        return kr;
    }
    if (!MACH_PORT_VALID(task)) {
        return KERN_INVALID_TASK;
    }
    struct kern_wire_request r = {
        .head = {.msgh_id = KERN_WIRE_ALL_FORWARD_ID},
        .all = {.flags_type = kern_type_int32, .flags = flags}};
    return kern_wire_forward(task, &r, KERN_WIRE_ALL_REQUEST_SIZE);
}

/* ---- vm_msync ---- */

/* The flags are checked and an empty range succeeds, as in GNU Mach.  The
 * dirty pages of memory objects mapped in the range go back to their
 * pagers (dropped from the cache with VM_SYNC_INVALIDATE); the data is on
 * its way when the call returns (the protocol has no acknowledgement of
 * data_return).  A range mapping no object is refused as GNU Mach, whose
 * vm_map_msync is still to be written, refuses every range. */
kern_return_t kern_vm_msync(mach_port_t target_task, vm_address_t address, vm_size_t size,
                            vm_sync_t sync_flags)
{
    if (!kern_vm_task_ok(target_task) ||
        ((sync_flags & VM_SYNC_ASYNCHRONOUS) && (sync_flags & VM_SYNC_SYNCHRONOUS))) {
        return KERN_INVALID_ARGUMENT;
    }
    vm_address_t start, end;
    if (!kern_vm_range(address, size, &start, &end)) {
        return KERN_SUCCESS;
    }
    vm_lock();
    struct vm_space *space = vm_space_self_if_any();
    bool invalidate = (sync_flags & VM_SYNC_INVALIDATE) != 0;
    bool any = (space != NULL && vm_space_sync(space, start, end, invalidate)) ||
               vm_remote_sync(start, end, invalidate);
    vm_unlock();
    return any ? KERN_SUCCESS : KERN_INVALID_ARGUMENT;
}
