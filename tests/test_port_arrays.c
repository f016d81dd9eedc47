/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Port arrays of any length: Linux passes at most 253 descriptors per
 * sendmsg and a send right takes two, so large arrays travel partly
 * through an auxiliary socket.  Out-of-line and inline arrays, within a
 * task and to another task, with no descriptor leaked.
 */
#include <hell.h>
#include <sys/mman.h>

#include "test.h"

#define DISTINCT 300
#define SAME 1000

struct ool_ports_msg {
    mach_msg_header_t head;
    mach_msg_type_long_t type;
    mach_port_t *ports;
};

static mach_port_t self;

static mach_msg_return_t send_ool_ports(mach_port_t dest, mach_port_t *names, unsigned n,
                                        mach_msg_type_name_t disposition)
{
    struct ool_ports_msg m = {
        .head = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
                 .msgh_remote_port = dest,
                 .msgh_id = 1},
        .type = {.msgtl_name = disposition, .msgtl_size = 32, .msgtl_number = n,
                 .msgtl_inline = FALSE, .msgtl_longform = TRUE},
        .ports = names,
    };
    return mach_msg(&m.head, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

static mach_msg_return_t receive_ool_ports(mach_port_t port, mach_port_t **names, unsigned *n)
{
    union {
        struct ool_ports_msg m;
        char buf[256];
    } r;
    mach_msg_return_t mr = mach_msg(&r.m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r,
                                    port, 10000, MACH_PORT_NULL);
    if (mr == MACH_MSG_SUCCESS) {
        CHECK(r.m.type.msgtl_name == MACH_MSG_TYPE_PORT_SEND);
        *names = r.m.ports;
        *n = r.m.type.msgtl_number;
    }
    return mr;
}

static mach_port_urefs_t send_refs(mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(self, name, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    return refs;
}

int main(void)
{
    self = mach_task_self();
    mach_port_t inbox;
    CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_insert_right(self, inbox, inbox, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    int fds_before = test_count_fds();

    /* 300 distinct ports (600 descriptors), out of line, to ourselves:
     * each arrives under its own name with one more user reference. */
    mach_port_t ports[DISTINCT];
    for (int i = 0; i < DISTINCT; i++) {
        CHECK_KR(mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &ports[i]), KERN_SUCCESS);
    }
    CHECK_KR(send_ool_ports(inbox, ports, DISTINCT, MACH_MSG_TYPE_MAKE_SEND), MACH_MSG_SUCCESS);
    mach_port_t *got = NULL;
    unsigned n = 0;
    CHECK_KR(receive_ool_ports(inbox, &got, &n), MACH_MSG_SUCCESS);
    CHECK(n == DISTINCT);
    for (unsigned i = 0; got != NULL && i < n; i++) {
        CHECK(got[i] == ports[i]);
        CHECK(send_refs(ports[i]) == 1);
    }
    CHECK_KR(vm_deallocate(self, (vm_address_t)got, n * sizeof *got), KERN_SUCCESS);

    /* 1000 copies of one send right (2000 descriptors), inline. */
    size_t size = sizeof(mach_msg_header_t) + sizeof(mach_msg_type_long_t) +
                  SAME * sizeof(mach_port_name_inlined_t);
    char *buf = calloc(1, size + 64);
    mach_msg_header_t *h = (mach_msg_header_t *)buf;
    mach_msg_type_long_t *t = (mach_msg_type_long_t *)(h + 1);
    mach_port_name_inlined_t *slots = (mach_port_name_inlined_t *)(t + 1);
    *h = (mach_msg_header_t){
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
        .msgh_remote_port = inbox,
        .msgh_id = 2};
    *t = (mach_msg_type_long_t){.msgtl_name = MACH_MSG_TYPE_COPY_SEND, .msgtl_size = 64,
                                .msgtl_number = SAME, .msgtl_inline = TRUE,
                                .msgtl_longform = TRUE};
    for (int i = 0; i < SAME; i++) {
        slots[i].name = inbox;
    }
    CHECK_KR(mach_msg(h, MACH_SEND_MSG, (mach_msg_size_t)size, 0, MACH_PORT_NULL, 0,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    memset(buf, 0, size);
    CHECK_KR(mach_msg(h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, (mach_msg_size_t)size + 64, inbox,
                      10000, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK(t->msgtl_number == SAME && t->msgtl_name == MACH_MSG_TYPE_PORT_SEND);
    for (int i = 0; i < SAME; i++) {
        CHECK(slots[i].name == inbox);
    }
    CHECK(send_refs(inbox) == 1 + SAME);
    CHECK_KR(mach_port_mod_refs(self, inbox, MACH_PORT_RIGHT_SEND, -SAME), KERN_SUCCESS);
    free(buf);

    /* 300 send rights to another task, which checks and counts them. */
    mach_port_t child_task;
    pid_t pid = hell_fork(inbox, &child_task);
    if (pid == 0) {
        mach_port_t boot, mine;
        task_get_bootstrap_port(mach_task_self(), &boot);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &mine);
        test_send_port(boot, mine, MACH_MSG_TYPE_MAKE_SEND, 3);
        mach_port_t *names = NULL;
        unsigned count = 0;
        if (receive_ool_ports(mine, &names, &count) != MACH_MSG_SUCCESS || count != DISTINCT) {
            _exit(1);
        }
        for (unsigned i = 0; i < count; i++) {
            mach_port_type_t type = 0;
            if (mach_port_type(mach_task_self(), names[i], &type) != KERN_SUCCESS ||
                type != MACH_PORT_TYPE_SEND || (i > 0 && names[i] == names[i - 1])) {
                _exit(2);
            }
        }
        _exit(test_failures ? 3 : 0);
    }
    mach_port_t child_inbox = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(inbox, 10000, &child_inbox, &type), MACH_MSG_SUCCESS);
    CHECK_KR(send_ool_ports(child_inbox, ports, DISTINCT, MACH_MSG_TYPE_MAKE_SEND),
             MACH_MSG_SUCCESS);
    test_wait_ok(pid);
    CHECK_KR(mach_port_deallocate(self, child_inbox), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(self, child_task), KERN_SUCCESS);

    for (int i = 0; i < DISTINCT; i++) {
        CHECK_KR(mach_port_destroy(self, ports[i]), KERN_SUCCESS);
    }
    /* The watchdog's epoll instance is the one descriptor kept. */
    int fds_after = test_count_fds();
    CHECK(fds_after == fds_before || fds_after == fds_before + 1);
    return test_done("port_arrays");
}
