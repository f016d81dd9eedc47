/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * task_create with inherited memory, and hell_fork: the creator's
 * mappings of memory objects, given to the new task as their
 * inheritance says (kern_vm.h, GNU Mach's vm_map_fork: SHARE maps the
 * object itself, COPY a copy of it as the creator sees it, NONE
 * nothing).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc_space.h"
#include "ipc_wire.h"
#include "ipc_wire_format.h"
#include "kern.h"
#include "kern_vm.h"
#include "linux.h"
#include "vm_attr.h"
#include "vm_maps.h"
#include "vm_object.h"
#include "vm_remote.h"
#include "vm_server.h"

/* Pagers' rights one bootstrap message carries: a send right brings at
 * most three descriptors (its send end, counting and queue descriptors:
 * ipc_wire.c), and one sendmsg at most WIRE_MAX_FDS. */
#define KERN_VM_INHERIT_CHUNK (WIRE_MAX_FDS / 3)

/* How many of the REMAINING rights the next message carries. */
static unsigned kern_vm_inherit_chunk(size_t remaining)
{
    return remaining < KERN_VM_INHERIT_CHUNK ? (unsigned)remaining : KERN_VM_INHERIT_CHUNK;
}

/* A piece of a mapping of an object whose attributes are one. */
struct kern_vm_inherit_piece {
    uint64_t start, end, offset;
    vm_prot_t cur, max;
    vm_inherit_t inherit;
    mach_port_name_t pager; /* a reference of the creator's */
};

/* Appends to *INH the pieces of RANGE that a new task inherits, each
 * with a reference to its pager.  Returns false when memory ran short.
 * Expects vm_attr_lock. */
static bool kern_vm_inherit_cut(struct kern_vm_inherit *inh, size_t *cap,
                                const struct vm_object_range *range)
{
    struct vm_maps_entry m;
    for (uint64_t at = range->start;
         at < range->end && vm_maps_find(at, &m) && m.start < range->end;) {
        at = m.start > at ? m.start : at;
        uint64_t b = m.end < range->end ? m.end : range->end;
        struct vm_attr attr;
        uint64_t e = vm_attr_get(at, b, &attr);
        vm_inherit_t inherit =
            attr.inheritance == VM_ATTR_INHERIT_UNSET ? VM_INHERIT_COPY : attr.inheritance;
        if (inherit != VM_INHERIT_NONE) {
            if (inh->npieces == *cap) {
                size_t room = *cap == 0 ? 8 : *cap * 2;
                struct kern_vm_inherit_piece *grown =
                    realloc(inh->pieces, room * sizeof *grown);
                if (grown == NULL) {
                    return false;
                }
                inh->pieces = grown;
                *cap = room;
            }
            if (kern_retain_right(range->pager) != KERN_SUCCESS) {
                return false;
            }
            inh->pieces[inh->npieces++] = (struct kern_vm_inherit_piece){
                .start = at, .end = e, .offset = range->offset + (at - range->start),
                .cur = m.protection, .max = attr.max_protection, .inherit = inherit,
                .pager = range->pager};
        }
        at = e;
    }
    return true;
}

bool kern_vm_object_ranges(struct vm_object_range **ranges, size_t *n, size_t *nlocal)
{
    size_t cap = 0;
    *ranges = NULL;
    *n = 0;
    vm_lock();
    bool ok = vm_object_self_ranges(ranges, n, &cap);
    *nlocal = *n;
    ok = ok && vm_remote_ranges_list(ranges, n, &cap);
    vm_unlock();
    if (!ok) {
        kern_vm_object_ranges_free(*ranges, *n);
        *ranges = NULL;
        *n = 0;
    }
    return ok;
}

void kern_vm_object_ranges_free(struct vm_object_range *ranges, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kern_release_right(ranges[i].pager);
    }
    free(ranges);
}

bool kern_vm_inherit_prepare(struct kern_vm_inherit *inh)
{
    *inh = (struct kern_vm_inherit){.vm_sock = {-1, -1}};
    struct vm_object_range *ranges;
    size_t n, nlocal, cap = 0;
    if (!kern_vm_object_ranges(&ranges, &n, &nlocal)) {
        return false;
    }
    bool ok = true, remote = false;
    vm_attr_lock();
    for (size_t i = 0; ok && i < n; i++) {
        size_t before = inh->npieces;
        ok = kern_vm_inherit_cut(inh, &cap, &ranges[i]);
        /* Objects this task serves itself are the new task's through it. */
        inh->serve = inh->serve || (i < nlocal && inh->npieces > before);
        remote = remote || (i >= nlocal && inh->npieces > before);
    }
    vm_attr_unlock();
    kern_vm_object_ranges_free(ranges, n);
    /* Objects our creator serves us are the new task's through it too (a
     * cache of the new task's own would be a second kernel to their
     * pagers); machd's, in an instance, the new task asks machd for.  A
     * task served by its creator maps every object through it, so it
     * never also serves some itself. */
    bool by_creator = remote && vm_remote_by_creator_now();
    if (ok && by_creator && inh->serve) {
        ok = false;
    } else if (ok && by_creator) {
        inh->vm_sock[1] = vm_remote_fork_conn();
        ok = inh->vm_sock[1] >= 0;
    } else if (ok && inh->serve &&
               socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, inh->vm_sock) != 0) {
        inh->vm_sock[0] = inh->vm_sock[1] = -1;
        ok = false;
    }
    if (!ok) {
        kern_vm_inherit_free(inh);
    }
    return ok;
}

/* Sends RIGHTS[0..N) (consumed on success) on FD, the handshake socket,
 * never waiting for room under [G]: a new task that does not read yet
 * (stopped, or slow to start) must not hold up every IPC of this one.
 * (A chunk always fits one message: no room means a full queue.)
 * Returns whether they went.  Expects no lock. */
static bool kern_vm_inherit_send(int fd, struct kright *rights, unsigned n)
{
    for (;;) {
        ipc_lock();
        mach_msg_return_t mr = wire_send_bootstrap_nowait(fd, rights, n);
        ipc_unlock();
        if (mr != MACH_SEND_NO_BUFFER) {
            return mr == MACH_MSG_SUCCESS;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int rc = poll(&p, 1, -1);
        if ((rc < 0 && errno != EINTR) || (rc > 0 && (p.revents & (POLLERR | POLLHUP)))) {
            return false;
        }
    }
}

bool kern_vm_inherit_parent(struct kern_vm_inherit *inh, int fd)
{
    linux_close(inh->vm_sock[1]);
    inh->vm_sock[1] = -1;
    bool ok = true;
    for (size_t i = 0; ok && i < inh->npieces; i += KERN_VM_INHERIT_CHUNK) {
        unsigned n = kern_vm_inherit_chunk(inh->npieces - i);
        struct kright rights[KERN_VM_INHERIT_CHUNK];
        ipc_lock();
        for (unsigned j = 0; j < n; j++) {
            kern_special_right(inh->pieces[i + j].pager, &rights[j]);
            ok = ok && rights[j].kind != KRIGHT_NONE;
        }
        ipc_unlock();
        ok = ok && kern_vm_inherit_send(fd, rights, n);
        if (!ok) {
            ipc_lock();
            for (unsigned j = 0; j < n; j++) {
                kright_destroy(&rights[j]);
            }
            ipc_unlock();
        }
    }
    if (ok && inh->serve) {
        ok = vm_server_child_start(inh->vm_sock[0]); /* (taken either way) */
        inh->vm_sock[0] = -1;
    }
    return ok;
}

bool kern_vm_inherit_child(struct kern_vm_inherit *inh, int fd)
{
    bool ok = true;
    linux_close(inh->vm_sock[0]);
    if (inh->vm_sock[1] >= 0) {
        ok = vm_remote_attach(inh->vm_sock[1]);
    }
    /* Every right is taken before any mapping is made: a mapping asks the
     * creator (when it serves the objects), which sends all the rights
     * first, and would wait on a socket full of them. */
    mach_port_name_t *pagers = calloc(inh->npieces + 1, sizeof *pagers);
    ok = ok && pagers != NULL;
    for (size_t i = 0; ok && i < inh->npieces; i += KERN_VM_INHERIT_CHUNK) {
        unsigned n = kern_vm_inherit_chunk(inh->npieces - i);
        struct kright rights[KERN_VM_INHERIT_CHUNK];
        ok = wire_recv_bootstrap(fd, rights, n) == (int)n;
        if (ok) {
            ipc_lock();
            for (unsigned j = 0; ok && j < n; j++) {
                ok = ipc_right_copyout(&ipc_spaces[SPACE_KERNEL], &rights[j], &pagers[i + j]) ==
                         KERN_SUCCESS &&
                     MACH_PORT_VALID(pagers[i + j]);
            }
            ipc_unlock();
        }
    }
    for (size_t i = 0; ok && i < inh->npieces; i++) {
        const struct kern_vm_inherit_piece *p = &inh->pieces[i];
        ok = kern_vm_map_fixed_object(p->start, p->end - p->start, pagers[i], p->offset,
                                      p->inherit == VM_INHERIT_COPY, p->cur, p->max,
                                      p->inherit) == KERN_SUCCESS;
    }
    /* (On failure the new task exits: its rights go with it.) */
    free(pagers);
    /* The pagers' names were the creator's. */
    free(inh->pieces);
    *inh = (struct kern_vm_inherit){.vm_sock = {-1, -1}};
    return ok;
}

void kern_vm_inherit_free(struct kern_vm_inherit *inh)
{
    for (size_t i = 0; i < inh->npieces; i++) {
        kern_release_right(inh->pieces[i].pager);
    }
    free(inh->pieces);
    linux_close(inh->vm_sock[0]);
    linux_close(inh->vm_sock[1]);
    *inh = (struct kern_vm_inherit){.vm_sock = {-1, -1}};
}
