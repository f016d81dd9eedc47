/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A task's registered ports (mach_ports_register / mach_ports_lookup)
 * and its system call emulation vector, with GNU Mach's semantics: every
 * registered slot is replaced at once, a lookup always gives all four
 * (null when empty, dead when the port died), tasks created by the task
 * inherit both; the vector grows to cover each range set; a port that
 * is no task gets KERN_INVALID_ARGUMENT, or EML_BAD_TASK for the vector.
 */
#include <hell.h>
#include <mach.h>
#include <mach/mach_param.h>
#include <mach/vm_attributes.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()
#define EML_BAD_TASK ((kern_return_t)0x04008001)

/* The registered ports of TASK, in OUT (released: the names stay ours
 * only where we already hold the rights). */
static void lookup(mach_port_t task, mach_port_t out[TASK_PORT_REGISTER_MAX])
{
    mach_port_array_t ports = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(mach_ports_lookup(task, &ports, &n), KERN_SUCCESS);
    CHECK(n == TASK_PORT_REGISTER_MAX);
    for (unsigned i = 0; i < TASK_PORT_REGISTER_MAX; i++) {
        out[i] = i < n ? ports[i] : MACH_PORT_NULL;
        if (i < n && MACH_PORT_VALID(ports[i])) {
            CHECK_KR(mach_port_deallocate(SELF, ports[i]), KERN_SUCCESS);
        }
    }
    if (ports != NULL) {
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)ports, n * sizeof *ports), KERN_SUCCESS);
    }
}

static mach_port_urefs_t send_refs(mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(SELF, name, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    return refs;
}

static void test_register(void)
{
    mach_port_t got[TASK_PORT_REGISTER_MAX];
    lookup(SELF, got);
    CHECK(got[0] == MACH_PORT_NULL && got[1] == MACH_PORT_NULL && got[2] == MACH_PORT_NULL &&
          got[3] == MACH_PORT_NULL);

    mach_port_t p1 = test_new_port(true), p2 = test_new_port(true), p3 = test_new_port(true);
    mach_port_t two[] = {p1, p2};
    CHECK_KR(mach_ports_register(SELF, two, 2), KERN_SUCCESS);
    CHECK(send_refs(p1) == 1); /* the kernel holds its own copy */
    lookup(SELF, got);
    CHECK(got[0] == p1 && got[1] == p2 && got[2] == MACH_PORT_NULL &&
          got[3] == MACH_PORT_NULL);

    /* Every slot is replaced. */
    CHECK_KR(mach_ports_register(SELF, &p3, 1), KERN_SUCCESS);
    lookup(SELF, got);
    CHECK(got[0] == p3 && got[1] == MACH_PORT_NULL);

    /* Too many, or not a task: refused, nothing changed. */
    mach_port_t five[] = {p1, p2, p3, p1, p2};
    CHECK_KR(mach_ports_register(SELF, five, 5), KERN_INVALID_ARGUMENT);
    mach_port_t thread = mach_thread_self();
    CHECK_KR(mach_ports_register(thread, two, 2), KERN_INVALID_ARGUMENT);
    mach_port_array_t none = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(mach_ports_lookup(thread, &none, &n), KERN_INVALID_ARGUMENT);
    CHECK_KR(mach_port_deallocate(SELF, thread), KERN_SUCCESS);
    lookup(SELF, got);
    CHECK(got[0] == p3 && got[1] == MACH_PORT_NULL);
    CHECK(send_refs(p1) == 1 && send_refs(p2) == 1); /* the refused rights came back */

    /* A registered port that dies is looked up dead. */
    mach_port_t p4 = test_new_port(true);
    mach_port_t both[] = {p3, p4};
    CHECK_KR(mach_ports_register(SELF, both, 2), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, p4), KERN_SUCCESS);
    lookup(SELF, got);
    CHECK(got[0] == p3 && got[1] == MACH_PORT_DEAD);

    CHECK_KR(mach_ports_register(SELF, NULL, 0), KERN_SUCCESS);
    lookup(SELF, got);
    CHECK(got[0] == MACH_PORT_NULL && got[1] == MACH_PORT_NULL);
    CHECK(send_refs(p3) == 1);
    CHECK_KR(mach_port_destroy(SELF, p1), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, p2), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, p3), KERN_SUCCESS);
}

/* The emulation vector of TASK: checks it starts at START with COUNT
 * entries equal to WANT. */
static void check_vector(mach_port_t task, int start, const vm_offset_t *want,
                         mach_msg_type_number_t count)
{
    int got_start = -1;
    emulation_vector_t v = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(task_get_emulation_vector(task, &got_start, &v, &n), KERN_SUCCESS);
    CHECK(got_start == start && n == count);
    CHECK(n != count || count == 0 || memcmp(v, want, count * sizeof *want) == 0);
    if (v != NULL) {
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)v, n * sizeof *v), KERN_SUCCESS);
    }
}

static const vm_offset_t three[] = {0x1000, 0x2000, 0x3000};
static const vm_offset_t grown[] = {0x500, 0, 0, 0, 0, 0x1000, 0x2000, 0x3000};

static void test_emulation(void)
{
    check_vector(SELF, 0, NULL, 0); /* none yet */
    CHECK_KR(task_set_emulation_vector(SELF, 10, (emulation_vector_t)three, 3), KERN_SUCCESS);
    check_vector(SELF, 10, three, 3);
    /* One entry below: the vector grows to cover both, zero between. */
    CHECK_KR(task_set_emulation(SELF, 0x500, 5), KERN_SUCCESS);
    check_vector(SELF, 5, grown, 8);
    mach_port_t thread = mach_thread_self();
    CHECK_KR(task_set_emulation(thread, 0x500, 5), EML_BAD_TASK);
    CHECK_KR(task_set_emulation_vector(thread, 10, (emulation_vector_t)three, 3), EML_BAD_TASK);
    int start;
    emulation_vector_t v;
    mach_msg_type_number_t n;
    CHECK_KR(task_get_emulation_vector(thread, &start, &v, &n), EML_BAD_TASK);
    CHECK_KR(mach_port_deallocate(SELF, thread), KERN_SUCCESS);
    /* Past HELL's bound: refused, the vector unchanged. */
    CHECK_KR(task_set_emulation(SELF, 0x600, 5 + (1 << 20)), KERN_RESOURCE_SHORTAGE);
    check_vector(SELF, 5, grown, 8);
}

/* Tasks this one creates inherit its registered ports and vector. */
static void test_inherited(void)
{
    mach_port_t reg = test_new_port(true);
    CHECK_KR(mach_ports_register(SELF, &reg, 1), KERN_SUCCESS);
    for (int how = 0; how < 2; how++) {
        mach_port_t child = MACH_PORT_NULL;
        pid_t pid = -1;
        if (how == 0) {
            pid = test_fork_idle(&child);
        } else {
            CHECK_KR(task_create(SELF, FALSE, &child), KERN_SUCCESS);
        }
        mach_port_t got[TASK_PORT_REGISTER_MAX];
        lookup(child, got);
        CHECK(got[0] == reg && got[1] == MACH_PORT_NULL);
        if (how == 0) {
            check_vector(child, 5, grown, 8); /* a fork has the creator's */
        }
        /* (vm_machine_attribute, served by the other task as by GNU Mach's
         * x86 pmap: nothing to set.) */
        vm_machine_attribute_val_t value = MATTR_VAL_CACHE_FLUSH;
        CHECK_KR(vm_machine_attribute(child, 0x10000, 4096, MATTR_CACHE, &value),
                 KERN_INVALID_ADDRESS);
        CHECK_KR(task_terminate(child), KERN_SUCCESS);
        CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
        if (pid > 0) {
            waitpid(pid, NULL, 0);
        }
    }
    CHECK_KR(mach_ports_register(SELF, NULL, 0), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, reg), KERN_SUCCESS);
}

int main(void)
{
    test_register();
    test_emulation();
    test_inherited();
    return test_done("task_ports");
}
