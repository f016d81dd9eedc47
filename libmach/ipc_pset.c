/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_pset.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "linux.h"

static struct u64map ipc_pset_all; /* [G] set address -> set */

kern_return_t ipc_pset_create(struct ipc_pset **out)
{
    struct ipc_pset *pset = calloc(1, sizeof *pset);
    if (pset == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    pset->epfd = epoll_create1(EPOLL_CLOEXEC);
    pset->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (pset->epfd < 0 || pset->wake_fd < 0 ||
        epoll_ctl(pset->epfd, EPOLL_CTL_ADD, pset->wake_fd, &ev) != 0) {
        kern_return_t kr = linux_errno_to_kern(errno);
        linux_close(pset->epfd);
        linux_close(pset->wake_fd);
        free(pset);
        return kr;
    }
    if (!u64map_insert(&ipc_pset_all, (uintptr_t)pset, pset)) {
        linux_close(pset->epfd);
        linux_close(pset->wake_fd);
        free(pset);
        return KERN_RESOURCE_SHORTAGE;
    }
    pset->refs = 1;
    *out = pset;
    return KERN_SUCCESS;
}

void ipc_pset_ref(struct ipc_pset *pset)
{
    pset->refs++;
}

void ipc_pset_unref(struct ipc_pset *pset)
{
    if (--pset->refs > 0) {
        return;
    }
    u64map_remove(&ipc_pset_all, (uintptr_t)pset);
    u64map_destroy(&pset->members);
    linux_close(pset->epfd);
    linux_close(pset->wake_fd);
    free(pset);
}

kern_return_t ipc_pset_add(struct ipc_pset *pset, struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = port->serial};
    if (!u64map_insert(&pset->members, port->serial, port)) {
        return KERN_RESOURCE_SHORTAGE;
    }
    if (epoll_ctl(pset->epfd, EPOLL_CTL_ADD, rcv->recv_fd, &ev) != 0) {
        u64map_remove(&pset->members, port->serial);
        return linux_errno_to_kern(errno);
    }
    rcv->pset = pset;
    if (rcv->pending != NULL) {
        pset->npending++;
    }
    ipc_pset_ref(pset);
    return KERN_SUCCESS;
}

void ipc_pset_remove(struct ipc_port *port)
{
    struct ipc_port_rcv *rcv = port->rcv;
    struct ipc_pset *pset = rcv != NULL ? rcv->pset : NULL;
    if (pset == NULL) {
        return;
    }
    epoll_ctl(pset->epfd, EPOLL_CTL_DEL, rcv->recv_fd, NULL);
    u64map_remove(&pset->members, port->serial);
    if (rcv->pending != NULL) {
        pset->npending--;
    }
    rcv->pset = NULL;
    ipc_pset_unref(pset);
}

void ipc_pset_destroy(struct ipc_pset *pset)
{
    uint64_t key;
    void *value;
    ipc_pset_ref(pset);
    for (size_t i = 0; u64map_next(&pset->members, &i, &key, &value); i = 0) {
        ipc_pset_remove(value);
    }
    pset->dead = true;
    uint64_t one = 1;
    (void)!write(pset->wake_fd, &one, sizeof one);
    pset->refs--;         /* the entry's: ours keeps the set alive */
    ipc_pset_unref(pset); /* ours */
}

void ipc_pset_forget_all(void)
{
    uint64_t key;
    void *value;
    for (size_t i = 0; u64map_next(&ipc_pset_all, &i, &key, &value);) {
        struct ipc_pset *pset = value;
        linux_close(pset->epfd);
        linux_close(pset->wake_fd);
    }
    ipc_pset_all = (struct u64map){0};
}
