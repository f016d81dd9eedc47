/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The traps that name a task's own kernel objects, and its special ports:
 * mach_task_self, mach_thread_self, mach_host_self, mach_reply_port,
 * mig_get_reply_port, task_get/set_special_port.
 */
#include <pthread.h>

#include "test.h"

static mach_port_urefs_t send_refs(mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(mach_task_self(), name, MACH_PORT_RIGHT_SEND, &refs),
             KERN_SUCCESS);
    return refs;
}

struct thread_result {
    mach_port_t thread_port, reply_port;
};

static void *other_thread(void *arg)
{
    struct thread_result *r = arg;
    r->thread_port = mach_thread_self();
    r->reply_port = mig_get_reply_port();
    return NULL;
}

int main(void)
{
    mach_port_t self = mach_task_self();
    (void)mig_get_reply_port(); /* this thread's reply port is set-up, not a leak */
    int fds_before = test_count_fds();

    /* The task port: one cached name, a send right. */
    CHECK(MACH_PORT_VALID(self));
    CHECK(mach_task_self() == self);
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(self, self, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_SEND);

    /* task_get_special_port(KERNEL) names the same port (+1 uref). */
    mach_port_urefs_t refs = send_refs(self);
    mach_port_t kernel = MACH_PORT_NULL;
    CHECK_KR(task_get_special_port(self, TASK_KERNEL_PORT, &kernel), KERN_SUCCESS);
    CHECK(kernel == self);
    CHECK(send_refs(self) == refs + 1);
    CHECK_KR(mach_port_deallocate(self, kernel), KERN_SUCCESS);

    /* The host and thread ports: a send right, one more uref per call. */
    mach_port_t host = mach_host_self();
    CHECK(MACH_PORT_VALID(host) && host != self);
    CHECK(mach_host_self() == host);
    CHECK(send_refs(host) == 2);
    mach_port_t thread = mach_thread_self();
    CHECK(MACH_PORT_VALID(thread) && thread != self && thread != host);
    CHECK(mach_thread_self() == thread);
    CHECK(send_refs(thread) == 2);
    /* Neither is a task: task calls on them fail as in GNU Mach. */
    mach_port_t port;
    CHECK_KR(task_get_special_port(host, TASK_BOOTSTRAP_PORT, &port),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(mach_port_allocate(thread, MACH_PORT_RIGHT_RECEIVE, &port), KERN_INVALID_TASK);

    /* Another thread has its own thread port and reply port; its thread
     * port dies with it. */
    struct thread_result r = {0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, other_thread, &r) == 0);
    pthread_join(t, NULL);
    CHECK(MACH_PORT_VALID(r.thread_port) && r.thread_port != thread);
    CHECK(MACH_PORT_VALID(r.reply_port) && r.reply_port != mig_get_reply_port());
    CHECK(mig_get_reply_port() == mig_get_reply_port());
    CHECK_KR(mach_port_type(self, r.thread_port, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_DEAD_NAME);
    CHECK_KR(mach_port_deallocate(self, r.thread_port), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(self, r.reply_port, MACH_PORT_RIGHT_RECEIVE, -1),
             KERN_SUCCESS);

    /* mach_reply_port: a fresh receive right each time. */
    mach_port_t a = mach_reply_port(), b = mach_reply_port();
    CHECK(MACH_PORT_VALID(a) && MACH_PORT_VALID(b) && a != b);
    CHECK_KR(mach_port_type(self, a, &type), KERN_SUCCESS);
    CHECK(type == MACH_PORT_TYPE_RECEIVE);

    /* The bootstrap port: set, get (a copy), replace, bad values. */
    CHECK_KR(mach_port_insert_right(self, a, a, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
    CHECK_KR(task_set_bootstrap_port(self, a), KERN_SUCCESS);
    mach_port_t boot = MACH_PORT_NULL;
    CHECK_KR(task_get_bootstrap_port(self, &boot), KERN_SUCCESS);
    CHECK(boot == a);
    CHECK(send_refs(a) == 2); /* ours, and the copy just received */
    CHECK_KR(task_set_bootstrap_port(self, MACH_PORT_NULL), KERN_SUCCESS);
    CHECK_KR(task_get_bootstrap_port(self, &boot), KERN_SUCCESS);
    CHECK(boot == MACH_PORT_NULL);
    CHECK_KR(task_get_special_port(self, 77, &boot), KERN_INVALID_ARGUMENT);
    CHECK_KR(task_set_special_port(self, TASK_KERNEL_PORT, a), KERN_INVALID_ARGUMENT);

    CHECK_KR(mach_port_destroy(self, a), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(self, b), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(self, host, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(self, thread, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
    /* Nothing leaked but this thread's own thread port, which lives as
     * long as the thread: a socket pair and both ends of its counting
     * pipe (a kernel object has no queue page). */
    CHECK(test_count_fds() == fds_before + 4);
    return test_done("self_ports");
}
