/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The task's kernel service: the objects GNU Mach keeps in the kernel
 * (task port, special ports) and the MIG servers that answer kernel RPCs.
 *
 * Requests from this task are served synchronously in the sending thread;
 * requests from other tasks (holding our task port) by one hidden service
 * thread, started the first time the task port leaves the process.
 */
#ifndef HELL_KERN_H
#define HELL_KERN_H

#include <mach/time_value.h>

#include "ipc_kmsg.h"

/* Delivers KMSG, whose destination is a kernel object of this task, and
 * runs the server.  The regions the sender keeps are copied: up to 64
 * KiB into the thread's lend buffer (wire_lend_buf), lent to the routine
 * for the call only (it lets them go with wire_region_release, never
 * keeps them nor hands them to another thread), larger ones into
 * mappings of their own.  Expects [G]; returns without it.  Returns
 * MACH_MSG_SUCCESS (errors travel in the reply, as in GNU Mach). */
mach_msg_return_t kern_deliver(struct kmsg *kmsg);

/* mach_reply_port: a new receive right in the user space.  Returns its
 * name (MACH_PORT_NULL when none can be made), with the port's serial in
 * *SERIAL (0 then), read under the same hold of [G].  Expects no lock. */
mach_port_name_t kern_reply_port_new(uint64_t *serial);

/* Starts the service thread for requests from other tasks (once). */
void kern_service_start(void);

/* The kernel-space port of this task (not referenced). */
struct ipc_port *kern_task_port(void);

/* Makes the port of a kernel object of type KOTYPE (IKOT_*), named in the
 * kernel space with its receive right and a send right, served by this
 * task (inline for its own calls, by the service thread for others).
 * Returns KERN_SUCCESS with *PORT (not referenced) and *KNAME, or an
 * error with nothing made.  Expects [G]. */
kern_return_t kern_object_create(int kotype, struct ipc_port **port, mach_port_name_t *kname);

/* kern_object_create, the port then served from SET, a kernel-space port
 * set from kern_object_set_create received on by a thread of its own
 * (MACH_PORT_NULL: by the service thread, as kern_object_create).
 * Returns KERN_SUCCESS with *PORT (not referenced) and *KNAME, or an
 * error (KERN_RESOURCE_SHORTAGE, KERN_NO_SPACE) with nothing made and
 * *PORT and *KNAME untouched.  Expects [G]. */
kern_return_t kern_object_create_in(int kotype, mach_port_name_t set, struct ipc_port **port,
                                    mach_port_name_t *kname);

/* Makes a port set in the kernel space for kernel objects served by a
 * thread of their own (kern_object_create_in, kern_receive_serve).
 * Returns KERN_SUCCESS with its name in *SET and in *FD a descriptor that
 * polls readable while a member has a request (the set's own: valid
 * while the set lives, never to be closed by the caller), or
 * KERN_RESOURCE_SHORTAGE.  Expects [G]. */
kern_return_t kern_object_set_create(mach_port_name_t *set, int *fd);

/* The size of a buffer made for kern_receive_serve. */
#define KERN_REQUEST_MAX (64 * 1024)

/* Receives one request on SET (a kernel-space port or port set), waiting
 * at most TIMEOUT_MS (-1: without limit), and serves it (kern_serve); one
 * received with holes (MACH_RCV_BODY_ERROR) is destroyed instead.
 * *BUF, a malloc'd buffer of *SIZE bytes, is grown for a larger request
 * (the caller frees it); a request too large for the memory there is is
 * destroyed unserved.  Returns the receive's result: MACH_MSG_SUCCESS
 * once a request was served.  Expects no lock. */
mach_msg_return_t kern_receive_serve(mach_port_name_t set, int timeout_ms,
                                     mach_msg_header_t **buf, size_t *size);

/* Whether HOST, a kernel-space name, is a host port served here; in
 * *PRIVILEGED whether it is the privileged one.  Expects no lock. */
bool kern_host_port_ok(mach_port_t host, bool *privileged);

/* Forgets the host's ports in a child after fork(): the default
 * processor set's is made again on demand, the privileged one does not
 * pass to children.  Expects [G] or a single thread. */
void kern_host_fork_child(void);

/* Memory for an out-of-line array of COUNT elements of ELEM bytes,
 * returned to the caller's task (the reply moves it).  *OUT is NULL for
 * an empty array, and on failure (KERN_RESOURCE_SHORTAGE).  Needs no
 * lock. */
kern_return_t kern_array_alloc(size_t count, size_t elem, void **out);

/* Releases one reference of the right KNAME names in the kernel space
 * (a right a successful routine's request brought, a reply's leftover);
 * nothing for a name that is not valid.  Expects no lock. */
void kern_release_right(mach_port_name_t kname);

/* Adds one reference to the send right KNAME names in the kernel space.
 * Returns KERN_SUCCESS, or ipc_right_delta's code (KNAME is no send
 * right, or its references would overflow).  Expects no lock. */
kern_return_t kern_retain_right(mach_port_name_t kname);

/* The MIG type descriptors of one 64-bit and one 32-bit inline integer,
 * for HELL's own requests between kernels, and whether T is exactly
 * WANT.  Need no lock. */
extern const mach_msg_type_t kern_type_int64, kern_type_int32;
bool kern_type_is(const mach_msg_type_t *t, const mach_msg_type_t *want);

/* Copies a send right named KNAME in the kernel space into the user
 * space.  Returns its user name, MACH_PORT_NULL if KNAME is null or names
 * no send right, MACH_PORT_DEAD if it is or names a dead name.
 * Expects [G]. */
mach_port_name_t kern_give_send(mach_port_name_t kname);

/* Whether KNAME, a kernel-space name, is the port of a kernel object of
 * type KOTYPE served here.  Expects [G]. */
bool kern_object_is(mach_port_t kname, int kotype);

/* task_suspend's count for this task, and its creation time (task_info).
 * Expect [G]. */
unsigned kern_task_suspend_count(void);

/* The task's priority (task_priority; task_info's base priority).
 * Expect [G]. */
int kern_task_get_priority(void);
void kern_task_set_priority(int priority);
void kern_task_set_suspend_count(unsigned count);
time_value64_t kern_task_creation_time(void);

/* The kernel-space names of this task's port and of its exception port
 * (a send right, or 0).  Expect [G]. */
mach_port_name_t kern_task_name(void);
mach_port_name_t kern_exception_port(void);

/* The kernel-space name of what stands for this task's port towards the
 * task itself (GNU Mach's itk_sself: mach_task_self(), the task in its
 * exception messages): the task port, unless task_set_special_port(
 * TASK_KERNEL_PORT) put a send right, MACH_PORT_NULL or MACH_PORT_DEAD
 * there.  The caller gets no reference.  Expects [G]. */
mach_port_name_t kern_task_self_kname(void);

/* The kernel-space name of this task's host port.  Expects [G]. */
mach_port_name_t kern_host_name(void);

/* Whether HOST, a kernel-space name, is the privileged host port served
 * here.  Expects no lock. */
bool kern_is_host_priv(mach_port_t host);

/* Whether this process made a privileged host port (hell_host_priv_create):
 * it is then the kernel of the tasks it serves, machd's part, even inside
 * another instance.  Expects no lock. */
bool kern_host_priv_made(void);

/* The processors Linux has configured (at least 1). */
integer_t kern_cpus_configured(void);

/* ---- the default processor set (kern_pset.c) ---- */

/* The default processor set's name port as this task names it in the
 * kernel space: in a task of an instance, machd's (asked for once), else
 * this process's own.  The library keeps the right: a reply copies it.
 * MACH_PORT_NULL when out of descriptors.  Expects no lock. */
mach_port_name_t kern_pset_default_name(void);

/* Whether KNAME (kernel space) is the set's control port served here, or,
 * unless CONTROL_ONLY, its name port: MIG's processor_set_t and
 * processor_set_name_t.  Expects [G]. */
bool kern_pset_is(mach_port_t kname, bool control_only);

/* Whether PSET (kernel space), a port sent to this task, is the control
 * port of the set (here or, in an instance, machd's); if so *POLICIES
 * gets the set's policies.  Expects no lock (asks machd). */
bool kern_pset_control_check(mach_port_t pset, int *policies);

/* The set's policies now (in an instance, as machd has them).  Expects
 * no lock. */
int kern_pset_current_policies(void);

/* The number of tasks in the set, this one included, and its policies and
 * maximum priority (processor_set_info).  Expect [G]. */
size_t kern_pset_task_count(void);
void kern_pset_sched(int *policies, int *max_priority);

/* The Mach threads of the set's tasks, this one's included: what
 * task_threads of each would count now, read from Linux (/proc) without
 * a call to any task (this one's by kern_thread_count, the others' by
 * linux_mach_threads_of), so a stopped or hostile task holds nobody.
 * Expects no lock. */
size_t kern_pset_thread_count(void);

/* Lists a task just created, its port being CHILD (a send right,
 * consumed), in the default processor set: with machd in an instance,
 * else here, where the new-task notification goes out.  Its parent is
 * this task.  Expects no lock. */
struct kright;
void kern_pset_task_created(struct kright *child);

/* The child side of fork(): a new task, in no set it knows of. */
void kern_pset_fork_child(void);

/* Serves the set's notifications (its tasks' deaths) among the kernel
 * objects. */
boolean_t kern_pset_notify_server(mach_msg_header_t *in, mach_msg_header_t *out);

/* Serves the request being served (by the service thread, for another
 * task) in a thread of its own, which runs the routine again, so that it
 * may block (calls to other tasks).  Returns true when handed over: the
 * routine answers MIG_NO_REPLY at once; false when it runs here.  Expects
 * no lock. */
bool kern_serve_elsewhere(void);

/* Forgets the processor ports in a child after fork() (made again on
 * demand).  Expects [G] or a single thread. */
void kern_processor_fork_child(void);

/* The layout of the rights a new task's bootstrap message carries: its
 * bootstrap and exception ports, its TASK_PORT_REGISTER_MAX registered
 * ports (each possibly none), then the rights granted to it
 * (hell_spawn). */
#define KERN_BOOT_BOOTSTRAP 0
#define KERN_BOOT_EXCEPTION 1
#define KERN_BOOT_REGISTERED 2
#define KERN_BOOT_FIXED 6

/* Copies the send right KNAME (kernel space; 0 for none) into RIGHT for a
 * message: none when KNAME names nothing, dead when its port died.
 * Expects [G]. */
void kern_special_right(mach_port_name_t kname, struct kright *right);

/* Copies this task's registered ports into RIGHTS[0 .. 3] (none for an
 * empty slot), for a task it creates.  Expects [G]. */
void kern_registered_copy(struct kright *rights);

/* The slot of registered port I (a kernel-space name, 0 for none), or
 * NULL past the last.  Expects [G]. */
mach_port_name_t *kern_registered_slot(unsigned i);

/* Forgets the registered ports in a child after fork() (its name space
 * starts over).  Expects a single thread. */
void kern_registered_fork_child(void);

/* Whether TASK (a kernel-space name) is this task's port.  Expects [G]. */
bool kern_is_task(mach_port_t task);

/* KNAME, a kernel-space send right the routine being served returns as
 * an out port, is the caller's alone: released once the reply is sent
 * (MIG's user-level server copies it).  Expects no lock. */
void kern_drop_after_reply(mach_port_name_t kname);

/* The request the calling thread is serving (its header names rights in
 * the kernel space), or NULL outside kern_serve: a routine that answers
 * later keeps its reply right (msgh_remote_port) and returns
 * MIG_NO_REPLY.  Needs no lock. */
const mach_msg_header_t *kern_current_request(void);

/* Sends the reply of a routine that answers later (or before it ends the
 * task): a mig_reply_header_t with code KR, for request REQUEST_ID,
 * through the kernel-space send-once right REPLY_PORT (consumed; destroyed
 * if the reply cannot be sent).  Expects no lock. */
void kern_reply(mach_port_name_t reply_port, mach_msg_id_t request_id, kern_return_t kr);

/* Whether the calling thread serves another task's request (the service
 * thread, which must never block).  Needs no lock. */
bool kern_serving_other_task(void);

/* Calls another task from the kernel space: sends MSG (SEND_SIZE bytes,
 * its remote port a kernel-space send right, copied; its bits and local
 * port set here) with a send-once right to a fresh reply port, and
 * receives the reply into MSG (at most RCV_SIZE bytes), waiting at most
 * TIMEOUT_MS for each.  Returns what mach_msg returns
 * (MACH_SEND_INVALID_REPLY when no reply port could be made); the reply's
 * rights are the caller's, in the kernel space.  Expects no lock. */
mach_msg_return_t kern_call_timed(mach_msg_header_t *msg, mach_msg_size_t send_size,
                                  mach_msg_size_t rcv_size, int timeout_ms);

/* Whether REPLY, received for a request of id REQUEST_ID, is that
 * routine's bare return code (a mig_reply_header_t) from a server that
 * knows the routine: neither MIG_BAD_ID nor MIG_BAD_ARGUMENTS.  If so,
 * the code is in *KR.  Needs no lock. */
bool kern_reply_code(const mach_msg_header_t *reply, mach_msg_id_t request_id, kern_return_t *kr);

/* kern_call_timed for a routine whose reply is a bare return code:
 * returns MACH_MSG_SUCCESS with the routine's code in *KR when the reply
 * passes kern_reply_code, MIG_REPLY_MISMATCH when another reply came, or
 * what kern_call_timed returned when none did.  Whatever the reply
 * carried is destroyed.  Expects no lock. */
mach_msg_return_t kern_call_code(mach_msg_header_t *msg, mach_msg_size_t send_size,
                                 mach_msg_size_t rcv_size, int timeout_ms, kern_return_t *kr);

/* ---- calls to another task (kern_task_call.c) ---- */

/* mach_port_destroy (DESTROY) or mach_port_deallocate of NAME in TASK, a
 * kernel-space send right to another task's port (kept), waiting at most
 * TIMEOUT_MS for each of the send and the reply.  Returns whether TASK
 * answered as a task does, the routine's code in *KR; false when it did
 * not answer in time, could not be sent to, or answered MIG_BAD_ID or
 * MIG_BAD_ARGUMENTS (no task's port, as far as one can tell).  Expects no
 * lock; blocks: never in the service thread. */
bool kern_task_call_port(mach_port_t task, bool destroy, mach_port_name_t name, int timeout_ms,
                         kern_return_t *kr);

/* vm_deallocate of [ADDRESS, ADDRESS + SIZE) in TASK, as
 * kern_task_call_port. */
bool kern_task_call_vm_deallocate(mach_port_t task, vm_address_t address, vm_size_t size,
                                  int timeout_ms, kern_return_t *kr);

/* The service thread, waiting inside a routine for what another kernel
 * object must receive (a pager's answer): serves at most one request,
 * waiting at most TIMEOUT_MS for it (kern_receive_serve).  Expects no
 * lock. */
void kern_service_once(int timeout_ms);

/* Runs one request through the kernel servers and sends the reply.
 * REQUEST names rights in the kernel space.  Expects no lock. */
void kern_serve(mach_msg_header_t *request);

/* The child's half of the bootstrap handshake on FD: takes the special
 * ports the parent sends (bootstrap, and exception for task_create) and
 * answers with the task port.  Returns 0, or -1 when the handshake
 * failed.  Expects no lock. */
int kern_bootstrap_child(int fd);

/* Sets up the task: kernel objects, signal handling, the bootstrap
 * handshake with a parent (HELL_BOOTSTRAP_FD).  Runs before main. */
void kern_task_init(void);

/* Resets the task in a child after fork(): a fresh name space. */
void kern_task_fork_child(void);

#endif
