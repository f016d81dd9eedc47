/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The traps that name a task's own kernel objects, and its special ports:
 * mach_task_self, mach_thread_self, mach_host_self, mach_reply_port,
 * mig_get_reply_port, task_get/set_special_port, thread_get/set_special_port
 * (the kernel port put in another's place, as rpctrace does).
 */
#include <pthread.h>
#include <sys/wait.h>

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

struct allocate_call {
    mach_port_t task, reply_port;
    kern_return_t kr;
};

static void *allocate_on(void *arg)
{
    struct allocate_call *c = arg;
    mach_port_t port;
    c->kr = mach_port_allocate(c->task, MACH_PORT_RIGHT_RECEIVE, &port);
    c->reply_port = mig_get_reply_port();
    return NULL;
}

/* Receives one request on STAND (5 s at most), checks its id and answers
 * it with KR; returns the request's id. */
static mach_msg_id_t answer_one(mach_port_t stand, kern_return_t kr)
{
    union {
        mach_msg_header_t head;
        char buf[1024];
    } in = {0};
    mig_reply_header_t out = {0};
    CHECK(mach_msg(&in.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof in, stand, 5000,
                   MACH_PORT_NULL) == MACH_MSG_SUCCESS);
    mig_reply_setup(&in.head, &out.Head);
    out.RetCode = kr;
    CHECK(mach_msg(&out.Head, MACH_SEND_MSG, out.Head.msgh_size, 0, MACH_PORT_NULL, 0,
                   MACH_PORT_NULL) == MACH_MSG_SUCCESS);
    return in.head.msgh_id;
}

/* GNU Mach's itk_sself: the task's kernel port set to another port is
 * what mach_task_self() and task_get_special_port(KERNEL) give, so that
 * the task's own calls on "itself" reach that port's receiver (how
 * rpctrace stands between a task and the kernel); the task port itself
 * stays what others hold, and putting it back restores the plain case.
 * (SELF: the real task port's name; nothing here may call
 * mach_task_self() while it names something else.) */
static void check_task_kernel_port(mach_port_t self)
{
    mach_port_t stand = test_new_port(true);
    CHECK_KR(task_set_special_port(self, TASK_KERNEL_PORT, stand), KERN_SUCCESS);
    CHECK(mach_task_self() == stand);
    mach_port_t kernel = MACH_PORT_NULL;
    CHECK_KR(task_get_special_port(self, TASK_KERNEL_PORT, &kernel), KERN_SUCCESS);
    CHECK(kernel == stand);
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(self, stand, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    CHECK(refs == 3); /* ours, mach_task_self()'s and the copy just got */
    CHECK_KR(mach_port_deallocate(self, kernel), KERN_SUCCESS);

    /* A call on mach_task_self() from another thread reaches STAND. */
    struct allocate_call call = {.task = mach_task_self(), .kr = KERN_SUCCESS};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, allocate_on, &call) == 0);
    CHECK(answer_one(stand, KERN_NO_SPACE) == 3204); /* mach_port_allocate */
    pthread_join(t, NULL);
    CHECK_KR(call.kr, KERN_NO_SPACE);
    /* The thread's reply port went with it (as glibc's thread exit
     * releases it on the Hurd), in place: not by a call to STAND. */
    mach_port_type_t gone;
    CHECK_KR(mach_port_type(self, call.reply_port, &gone), KERN_INVALID_NAME);

    /* A null kernel port: mach_task_self() is null. */
    CHECK_KR(task_set_special_port(self, TASK_KERNEL_PORT, MACH_PORT_NULL), KERN_SUCCESS);
    CHECK(mach_task_self() == MACH_PORT_NULL);
    CHECK_KR(task_get_special_port(self, TASK_KERNEL_PORT, &kernel), KERN_SUCCESS);
    CHECK(kernel == MACH_PORT_NULL);

    /* The task port put back. */
    CHECK_KR(task_set_special_port(self, TASK_KERNEL_PORT, self), KERN_SUCCESS);
    CHECK(mach_task_self() == self);
    CHECK_KR(task_get_special_port(self, TASK_KERNEL_PORT, &kernel), KERN_SUCCESS);
    CHECK(kernel == self);
    CHECK_KR(mach_port_deallocate(self, kernel), KERN_SUCCESS);
    /* STAND's send rights: ours and mach_task_self()'s cached one. */
    CHECK_KR(mach_port_get_refs(self, stand, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    CHECK(refs == 2);
    CHECK_KR(mach_port_destroy(self, stand), KERN_SUCCESS);
}

/* The same for a thread: mach_thread_self() and
 * thread_get_special_port(KERNEL) give what was set, one more user
 * reference each time. */
static void check_thread_kernel_port(mach_port_t self, mach_port_t thread)
{
    mach_port_t stand = test_new_port(true);
    CHECK_KR(thread_set_special_port(thread, THREAD_KERNEL_PORT, stand), KERN_SUCCESS);
    CHECK(mach_thread_self() == stand);
    mach_port_t kernel = MACH_PORT_NULL;
    CHECK_KR(thread_get_special_port(thread, THREAD_KERNEL_PORT, &kernel), KERN_SUCCESS);
    CHECK(kernel == stand);
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(self, stand, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    CHECK(refs == 3);
    /* The thread port still works: it is only no longer what the thread
     * calls itself. */
    CHECK_KR(thread_set_special_port(thread, THREAD_KERNEL_PORT, thread), KERN_SUCCESS);
    mach_port_t again = mach_thread_self();
    CHECK(again == thread);
    CHECK_KR(mach_port_deallocate(self, again), KERN_SUCCESS);
    CHECK_KR(thread_set_special_port(thread, 77, stand), KERN_INVALID_ARGUMENT);
    CHECK_KR(mach_port_destroy(self, stand), KERN_SUCCESS);
}

/* Another task's kernel port, set before it asks for it: its own
 * messages to "itself" come here (rpctrace's way into a task). */
static void check_remote_kernel_port(mach_port_t self)
{
    mach_port_t boot = test_new_port(true);
    mach_port_t child;
    pid_t pid = hell_fork(boot, &child);
    if (pid == 0) {
        /* (mach_task_self() would be cached here: it is not asked for
         * before the parent set it.) */
        mach_port_t parent, go_port = MACH_PORT_NULL;
        task_get_bootstrap_port(mach_task_self(), &parent);
        mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &go_port);
        test_send_port(parent, go_port, MACH_MSG_TYPE_MAKE_SEND, 1);
        mach_msg_header_t go;
        if (mach_msg(&go, MACH_RCV_MSG, 0, sizeof go, go_port, 0, MACH_PORT_NULL) !=
            MACH_MSG_SUCCESS) {
            _exit(2);
        }
        mach_msg_header_t hello = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                   .msgh_size = sizeof hello,
                                   .msgh_remote_port = mach_task_self(),
                                   .msgh_id = 4242};
        _exit(mach_msg(&hello, MACH_SEND_MSG, sizeof hello, 0, MACH_PORT_NULL, 0,
                       MACH_PORT_NULL) == MACH_MSG_SUCCESS
                  ? 0
                  : 3);
    }
    CHECK(pid > 0);
    mach_port_t go_port = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK(test_receive_port(boot, 5000, &go_port, &type) == MACH_MSG_SUCCESS);
    mach_port_t stand = test_new_port(true);
    CHECK_KR(task_set_special_port(child, TASK_KERNEL_PORT, stand), KERN_SUCCESS);
    mach_port_t kernel = MACH_PORT_NULL;
    CHECK_KR(task_get_special_port(child, TASK_KERNEL_PORT, &kernel), KERN_SUCCESS);
    CHECK(kernel == stand);
    CHECK_KR(mach_port_deallocate(self, kernel), KERN_SUCCESS);
    mach_msg_header_t go = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                            .msgh_size = sizeof go, .msgh_remote_port = go_port, .msgh_id = 1};
    CHECK(mach_msg(&go, MACH_SEND_MSG, sizeof go, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL) ==
          MACH_MSG_SUCCESS);
    mach_msg_header_t hello;
    CHECK(mach_msg(&hello, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof hello, stand, 5000,
                   MACH_PORT_NULL) == MACH_MSG_SUCCESS);
    CHECK(hello.msgh_id == 4242);
    test_wait_ok(pid);
    CHECK_KR(mach_port_deallocate(self, child), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(self, stand), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(self, boot), KERN_SUCCESS);
    CHECK_KR(mach_port_deallocate(self, go_port), KERN_SUCCESS);
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
     * port dies with it, its reply port goes. */
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
    CHECK_KR(mach_port_type(self, r.reply_port, &type), KERN_INVALID_NAME); /* went too */

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
    CHECK_KR(task_set_special_port(self, 77, a), KERN_INVALID_ARGUMENT);

    check_task_kernel_port(self);
    check_thread_kernel_port(self, thread);

    CHECK_KR(mach_port_destroy(self, a), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(self, b), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(self, host, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(self, thread, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
    /* Nothing leaked but this thread's own thread port, which lives as
     * long as the thread: a socket pair and both ends of its counting
     * pipe (a kernel object has no queue page). */
    CHECK(test_count_fds() == fds_before + 4);

    /* The first hell_fork sets up descriptors of its own, so the second
     * round is the one counted. */
    check_remote_kernel_port(self);
    int fds_forked = test_count_fds();
    check_remote_kernel_port(self);
    CHECK(test_count_fds() == fds_forked);
    return test_done("self_ports");
}
