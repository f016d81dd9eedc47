/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The registers a thread had when it entered mach_msg, its one blocking
 * trap.  GNU Mach shows a thread stopped inside a trap with its user
 * state at the trap instruction; HELL's trap is a library call, so a
 * thread stopped inside it shows its registers at the call instead
 * (RIP the return address, RSP as after the return), not the state of
 * the libmach code it stopped in.  A state set meanwhile takes effect
 * when the call returns, with the call's return code in RAX, as GNU
 * Mach's does when the trap returns to user mode (kern_control.c).
 *
 * mach_msg's entry (kern_trap_entry.c) records the frame when it is the
 * outermost trap of its thread: all sixteen general registers, the
 * return address and the caller's stack pointer, in about twenty stores.
 */
#ifndef HELL_KERN_TRAP_FRAME_H
#define HELL_KERN_TRAP_FRAME_H

#include <mach/message.h>
#include <stdint.h>

/* The layout kern_trap_entry.c's assembly writes (checked there). */
struct kern_trap_frame {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip;
};

/* The calling thread's frame of its current outermost trap (valid while
 * kern_trap_depth > 0).  Thread-local; needs no lock. */
extern __thread struct kern_trap_frame kern_trap_frame;

/* mach_msg itself, entered from the recording entry point. */
mach_msg_return_t ipc_mach_msg_user(mach_msg_header_t *msg, mach_msg_option_t option,
                                    mach_msg_size_t send_size, mach_msg_size_t rcv_size,
                                    mach_port_name_t rcv_name, mach_msg_timeout_t timeout,
                                    mach_port_name_t notify);

#endif
