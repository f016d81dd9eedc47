/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The physical memory calls of gnumach.defs, vm_pages_phys and
 * vm_allocate_contiguous, through the privileged host port.  Served by the
 * task that owns the memory: the server of the privileged host port
 * (machd, or a process that made its own) answers for its own task at
 * once and forwards a call naming another task to that task's port as a
 * HELL request, as vm_wire does (kern_vm_attr.c); a task takes such a
 * request as privileged (whoever holds its task port controls it anyway).
 *
 * GNU Mach's rules, from its vm_user.c: a host port that is not the
 * privileged one is KERN_INVALID_HOST, a port that is no task
 * KERN_INVALID_TASK, checked in that order before anything else.
 *
 * vm_pages_phys: the address and the size must be page multiples
 * (KERN_INVALID_ARGUMENT); the answer has one entry per page, the physical
 * address of the page if it is in memory, 0 if it is not or nothing is
 * mapped there (no page is faulted in; an empty range succeeds).  Where
 * Linux hides the frames from the task (no CAP_SYS_ADMIN), a page in
 * memory makes the call KERN_NO_ACCESS, a code GNU Mach's never answers.
 *
 * vm_allocate_contiguous: pmin must be 0 and palign 0, a divisor of the
 * page size or the page size (GNU Mach does no better yet), the size is
 * rounded to pages and must not be 0 (each KERN_INVALID_ARGUMENT).  The
 * memory is zeros, wired, readable and writable (maximum the same),
 * inherited as a copy, placed anywhere, at most 4 MiB, and ends at or
 * below pmax (the bound GNU Mach asserts): else KERN_RESOURCE_SHORTAGE,
 * GNU Mach's answer when no free block fits; KERN_NO_ACCESS as above.
 * How Linux is made to give it: vm_phys.h.
 */
#include <mach.h>
#include <mach/mig_errors.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ipc_space.h"
#include "kern.h"
#include "kern_vm.h"
#include "gnumach.server.h"
#include "msg_destroy.h"
#include "vm_attr.h"
#include "vm_phys.h"

#define KERN_VM_PHYS_PAGE 4096ul

/* What vm_pages_phys answers at most: 2^24 entries (128 MiB), for 64 GiB
 * of address space; more is KERN_RESOURCE_SHORTAGE, GNU Mach's answer when
 * it cannot allocate the array (its bound is its kernel map's room). */
#define KERN_VM_PHYS_PAGES_MAX ((vm_size_t)1 << 24)

/* The most vm_allocate_contiguous gives: GNU Mach's largest free block
 * (order 10 of its buddy allocator, 4 MiB); it has nothing larger. */
#define KERN_VM_PHYS_CONTIG_MAX ((vm_size_t)4 << 20)

/* ---- this task's memory ---- */

/* vm_pages_phys on this task.  *PAGES is a buffer of *COUNT entries (MIG's
 * inline one, or NULL and 0); a longer answer gets an out-of-line array
 * (kern_array_alloc) in its place.  On success *PAGES and *COUNT hold
 * the answer. */
static kern_return_t kern_vm_phys_pages_here(vm_address_t address, vm_size_t size,
                                             rpc_phys_addr_t **pages,
                                             mach_msg_type_number_t *count)
{
    if ((address | size) & (KERN_VM_PHYS_PAGE - 1)) {
        return KERN_INVALID_ARGUMENT;
    }
    vm_size_t n = size / KERN_VM_PHYS_PAGE;
    if (n > KERN_VM_PHYS_PAGES_MAX) {
        return KERN_RESOURCE_SHORTAGE;
    }
    rpc_phys_addr_t *array = *pages;
    if (n > *count) {
        kern_return_t kr = kern_array_alloc(n, sizeof *array, (void **)&array);
        if (kr != KERN_SUCCESS) {
            return kr;
        }
    }
    kern_return_t kr = vm_phys_read(address, n, array);
    if (kr != KERN_SUCCESS) {
        if (array != *pages && array != NULL) {
            (void)munmap(array, n * sizeof *array);
        }
        return kr;
    }
    *pages = array;
    *count = (mach_msg_type_number_t)n;
    return KERN_SUCCESS;
}

/* vm_allocate_contiguous on this task (the arguments as the routine's). */
static kern_return_t kern_vm_phys_contig_here(vm_size_t size, rpc_phys_addr_t pmin,
                                              rpc_phys_addr_t pmax, rpc_phys_addr_t palign,
                                              vm_address_t *vaddr, rpc_phys_addr_t *paddr)
{
    if (pmin != 0) {
        return KERN_INVALID_ARGUMENT;
    }
    if (palign == 0 || (palign < KERN_VM_PHYS_PAGE && KERN_VM_PHYS_PAGE % palign == 0)) {
        palign = KERN_VM_PHYS_PAGE;
    }
    if (palign != KERN_VM_PHYS_PAGE) {
        return KERN_INVALID_ARGUMENT;
    }
    vm_size_t len = (size + KERN_VM_PHYS_PAGE - 1) & ~(KERN_VM_PHYS_PAGE - 1);
    if (len == 0) {
        return KERN_INVALID_ARGUMENT; /* 0, or rounds past the top */
    }
    if (len > KERN_VM_PHYS_CONTIG_MAX) {
        return KERN_RESOURCE_SHORTAGE;
    }
    vm_address_t start;
    kern_return_t kr = vm_phys_alloc_contiguous(len, pmax, &start, paddr);
    if (kr != KERN_SUCCESS) {
        return kr;
    }
    vm_attr_lock();
    vm_attr_clear(start, start + len);
    bool recorded = vm_attr_set_max(start, start + len, VM_PROT_READ | VM_PROT_WRITE);
    vm_attr_unlock();
    if (!recorded) {
        (void)munmap((void *)start, len);
        return KERN_RESOURCE_SHORTAGE;
    }
    *vaddr = start;
    return KERN_SUCCESS;
}

/* ---- another task's memory: forwarded to it ---- */

/* The forwarded requests: the routine's integer arguments after the ports
 * (vm_pages_phys: vaddr, size; vm_allocate_contiguous: size, pmin, pmax,
 * palign), each MIG-typed as a 64-bit integer. */
#define KERN_VM_PHYS_PAGES_ID 0x48500001  /* "HP", 1 */
#define KERN_VM_PHYS_CONTIG_ID 0x48500002 /* "HP", 2 */
#define KERN_VM_PHYS_ARGS_MAX 4
struct kern_vm_phys_request {
    mach_msg_header_t head;
    struct {
        mach_msg_type_t type;
        uint64_t value;
    } args[KERN_VM_PHYS_ARGS_MAX];
};
#define KERN_VM_PHYS_REQUEST_SIZE(nargs) \
    (offsetof(struct kern_vm_phys_request, args) + \
     (nargs) * sizeof(((struct kern_vm_phys_request *)0)->args[0]))

/* Their answers on success (else a mig_reply_header_t): vm_pages_phys's
 * array, always out of line; vm_allocate_contiguous's addresses. */
struct kern_vm_phys_pages_reply {
    mach_msg_header_t head;
    mach_msg_type_t ret_code_type;
    kern_return_t ret_code;
    char pad[4];
    mach_msg_type_long_t pages_type;
    rpc_phys_addr_t *pages;
};
struct kern_vm_phys_contig_reply {
    mach_msg_header_t head;
    mach_msg_type_t ret_code_type;
    kern_return_t ret_code;
    char pad[4];
    mach_msg_type_t vaddr_type;
    vm_address_t vaddr;
    mach_msg_type_t paddr_type;
    rpc_phys_addr_t paddr;
};

/* How long a forwarded call may wait for the task's answer: a task's
 * service thread answers as soon as Linux has filled and locked the
 * memory; a port that is no task may never. */
#define KERN_VM_PHYS_FORWARD_TIMEOUT_MS 5000

/* Whether IN is a well-formed forwarded request of NARGS arguments. */
static bool kern_vm_phys_request_ok(const mach_msg_header_t *in, unsigned nargs)
{
    const struct kern_vm_phys_request *r = (const void *)in;
    if ((in->msgh_bits & MACH_MSGH_BITS_COMPLEX) ||
        in->msgh_size != KERN_VM_PHYS_REQUEST_SIZE(nargs)) {
        return false;
    }
    for (unsigned i = 0; i < nargs; i++) {
        if (!kern_type_is(&r->args[i].type, &kern_type_int64)) {
            return false;
        }
    }
    return true;
}

/* Serves a forwarded vm_pages_phys into OUT (set up by mig_reply_setup). */
static kern_return_t kern_vm_phys_pages_serve(const struct kern_vm_phys_request *r,
                                              mach_msg_header_t *out)
{
    rpc_phys_addr_t *array = NULL;
    mach_msg_type_number_t n = 0;
    kern_return_t kr = kern_vm_phys_pages_here(r->args[0].value, r->args[1].value, &array, &n);
    if (kr == KERN_SUCCESS) {
        struct kern_vm_phys_pages_reply *p = (void *)out;
        memset(p->pad, 0, sizeof p->pad);
        /* (On x86_64 the long form's fields overlay its header's.) */
        p->pages_type = (mach_msg_type_long_t){.msgtl_name = MACH_MSG_TYPE_INTEGER_64,
                                               .msgtl_size = 64,
                                               .msgtl_inline = FALSE,
                                               .msgtl_longform = TRUE,
                                               .msgtl_number = n};
        p->pages = array; /* (moved by the reply) */
        out->msgh_size = sizeof *p;
        out->msgh_bits |= MACH_MSGH_BITS_COMPLEX;
    }
    return kr;
}

/* Serves a forwarded vm_allocate_contiguous into OUT (as above). */
static kern_return_t kern_vm_phys_contig_serve(const struct kern_vm_phys_request *r,
                                               mach_msg_header_t *out)
{
    struct kern_vm_phys_contig_reply *c = (void *)out;
    vm_address_t vaddr;
    rpc_phys_addr_t paddr;
    kern_return_t kr = kern_vm_phys_contig_here(r->args[0].value, r->args[1].value,
                                                r->args[2].value, r->args[3].value, &vaddr,
                                                &paddr);
    if (kr == KERN_SUCCESS) {
        memset(c->pad, 0, sizeof c->pad);
        c->vaddr_type = kern_type_int64;
        c->vaddr = vaddr;
        c->paddr_type = kern_type_int64;
        c->paddr = paddr;
        out->msgh_size = sizeof *c;
    }
    return kr;
}

boolean_t kern_vm_phys_forward_server(mach_msg_header_t *in, mach_msg_header_t *out)
{
    bool pages = in->msgh_id == KERN_VM_PHYS_PAGES_ID;
    if (!pages && in->msgh_id != KERN_VM_PHYS_CONTIG_ID) {
        return FALSE;
    }
    mig_reply_setup(in, out);
    kern_return_t kr = MIG_BAD_ARGUMENTS; /* (kern_serve destroys what it carried) */
    if (!kern_vm_phys_request_ok(in, pages ? 2 : 4)) {
    } else if (!kern_vm_task_ok(in->msgh_local_port)) {
        kr = KERN_INVALID_TASK; /* sent to another kernel object */
    } else if (pages) {
        kr = kern_vm_phys_pages_serve((const void *)in, out);
    } else {
        kr = kern_vm_phys_contig_serve((const void *)in, out);
    }
    ((mig_reply_header_t *)out)->RetCode = kr;
    return TRUE;
}

/* A forwarded call and its answer. */
union kern_vm_phys_msg {
    struct kern_vm_phys_request request;
    mig_reply_header_t error;
    struct kern_vm_phys_pages_reply pages;
    struct kern_vm_phys_contig_reply contig;
};

/* Whether M holds a well-formed successful answer to a forwarded
 * vm_pages_phys of COUNT pages. */
static bool kern_vm_phys_pages_reply_ok(const union kern_vm_phys_msg *m, vm_size_t count)
{
    const mach_msg_type_long_t *t = &m->pages.pages_type;
    return m->pages.head.msgh_size == sizeof m->pages &&
           (m->pages.head.msgh_bits & MACH_MSGH_BITS_COMPLEX) && t->msgtl_longform &&
           !t->msgtl_inline && t->msgtl_name == MACH_MSG_TYPE_INTEGER_64 &&
           t->msgtl_size == 64 && t->msgtl_number == count;
}

/* Whether M holds a well-formed successful answer to a forwarded
 * vm_allocate_contiguous. */
static bool kern_vm_phys_contig_reply_ok(const union kern_vm_phys_msg *m)
{
    return m->contig.head.msgh_size == sizeof m->contig &&
           !(m->contig.head.msgh_bits & MACH_MSGH_BITS_COMPLEX) &&
           kern_type_is(&m->contig.vaddr_type, &kern_type_int64) &&
           kern_type_is(&m->contig.paddr_type, &kern_type_int64);
}

/* Sends M's request (ID, NARGS arguments set) to TASK, a kernel-space send
 * right (copied), and receives the answer into M.  COUNT is the array
 * length a vm_pages_phys answer must have.  Returns the task's code; a
 * port that does not answer as a task does (in time, or at all) is no
 * task.  On KERN_SUCCESS the answer is the caller's to read, then to
 * destroy (msg_destroy_in); on failure it is gone.  Expects no lock. */
static kern_return_t kern_vm_phys_call(mach_port_t task, union kern_vm_phys_msg *m,
                                       mach_msg_id_t id, unsigned nargs, vm_size_t count)
{
    m->request.head = (mach_msg_header_t){.msgh_remote_port = task, .msgh_id = id};
    for (unsigned i = 0; i < nargs; i++) {
        m->request.args[i].type = kern_type_int64;
    }
    mach_msg_return_t mr = kern_call_timed(&m->request.head, KERN_VM_PHYS_REQUEST_SIZE(nargs),
                                           sizeof *m, KERN_VM_PHYS_FORWARD_TIMEOUT_MS);
    if (mr == MACH_SEND_INVALID_REPLY) {
        return KERN_RESOURCE_SHORTAGE; /* no reply port */
    }
    if (mr != MACH_MSG_SUCCESS) {
        return KERN_INVALID_TASK;
    }
    const mig_reply_header_t *e = &m->error;
    if (e->Head.msgh_id == id + 100 && kern_type_is(&e->RetCodeType, &kern_type_int32) &&
        e->RetCode == KERN_SUCCESS &&
        (id == KERN_VM_PHYS_PAGES_ID ? kern_vm_phys_pages_reply_ok(m, count)
                                     : kern_vm_phys_contig_reply_ok(m))) {
        return KERN_SUCCESS;
    }
    kern_return_t kr;
    if (!kern_reply_code(&m->request.head, id, &kr) || kr == KERN_SUCCESS) {
        kr = KERN_INVALID_TASK; /* (a success carries its answer) */
    }
    msg_destroy_in(SPACE_KERNEL, &m->request.head, true); /* whatever it brought */
    return kr;
}

/* GNU Mach's first checks: HOST the privileged host port, TASK a task
 * (this one, *HERE; or another's port, to forward to).  Expects no
 * lock. */
static kern_return_t kern_vm_phys_check(mach_port_t host, mach_port_t task, bool *here)
{
    bool privileged;
    if (!kern_host_port_ok(host, &privileged) || !privileged) {
        return KERN_INVALID_HOST;
    }
    *here = kern_vm_task_ok(task);
    if (!*here && !MACH_PORT_VALID(task)) {
        return KERN_INVALID_TASK;
    }
    return KERN_SUCCESS;
}

kern_return_t kern_vm_pages_phys(mach_port_t host_priv, mach_port_t target_task,
                                 vm_address_t vaddr, vm_size_t size, rpc_phys_addr_array_t *pages,
                                 mach_msg_type_number_t *pagesCnt)
{
    bool here;
    kern_return_t kr = kern_vm_phys_check(host_priv, target_task, &here);
    if (kr == KERN_SUCCESS && here) {
        kr = kern_vm_phys_pages_here(vaddr, size, pages, pagesCnt);
    } else if (kr == KERN_SUCCESS) {
        /* Another task answers: not in the service thread (the request,
         * rights and all, is then the other thread's). */
        if (kern_serve_elsewhere()) {
            return MIG_NO_REPLY;
        }
        union kern_vm_phys_msg m;
        m.request.args[0].value = vaddr;
        m.request.args[1].value = size;
        vm_size_t count = size / KERN_VM_PHYS_PAGE;
        kr = kern_vm_phys_call(target_task, &m, KERN_VM_PHYS_PAGES_ID, 2, count);
        if (kr == KERN_SUCCESS) {
            rpc_phys_addr_t *array = *pages;
            if (count > *pagesCnt) {
                kr = kern_array_alloc(count, sizeof *array, (void **)&array);
            }
            if (kr == KERN_SUCCESS) {
                if (count > 0) {
                    memcpy(array, m.pages.pages, count * sizeof *array);
                }
                *pages = array;
                *pagesCnt = (mach_msg_type_number_t)count;
            }
            msg_destroy_in(SPACE_KERNEL, &m.request.head, true); /* the task's array */
        }
    }
    if (kr == KERN_SUCCESS) {
        kern_release_right(target_task); /* the request's, whichever task it names */
    }
    return kr;
}

kern_return_t kern_vm_allocate_contiguous(mach_port_t host_priv, mach_port_t target_task,
                                          vm_address_t *vaddr, rpc_phys_addr_t *paddr,
                                          vm_size_t size, rpc_phys_addr_t pmin,
                                          rpc_phys_addr_t pmax, rpc_phys_addr_t palign)
{
    bool here;
    kern_return_t kr = kern_vm_phys_check(host_priv, target_task, &here);
    if (kr == KERN_SUCCESS && here) {
        kr = kern_vm_phys_contig_here(size, pmin, pmax, palign, vaddr, paddr);
    } else if (kr == KERN_SUCCESS) {
        if (kern_serve_elsewhere()) {
            return MIG_NO_REPLY;
        }
        union kern_vm_phys_msg m;
        m.request.args[0].value = size;
        m.request.args[1].value = pmin;
        m.request.args[2].value = pmax;
        m.request.args[3].value = palign;
        kr = kern_vm_phys_call(target_task, &m, KERN_VM_PHYS_CONTIG_ID, 4, 0);
        if (kr == KERN_SUCCESS) {
            *vaddr = m.contig.vaddr;
            *paddr = m.contig.paddr;
            msg_destroy_in(SPACE_KERNEL, &m.request.head, true);
        }
    }
    if (kr == KERN_SUCCESS) {
        kern_release_right(target_task); /* the request's, whichever task it names */
    }
    return kr;
}
