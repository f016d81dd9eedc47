/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mach_msg's entry point (and its other names: mach_msg_trap, the
 * header type aside, is the same call): counts the trap in
 * kern_trap_depth (ipc_mach_msg_user's kern_trap_exit uncounts it),
 * records the caller's registers in kern_trap_frame when no other trap
 * of the thread is under way, then jumps to ipc_mach_msg_user with
 * every argument register untouched.  Only %r11 and the stack slot below
 * the return address are used as scratch, each saved first.  Counting
 * before recording: a signal handler's mach_msg meanwhile leaves the
 * frame alone.
 */
#include <stddef.h>
#include <mach.h>

#include "kern_trap_frame.h"

__thread struct kern_trap_frame kern_trap_frame;

#define KTF(reg) offsetof(struct kern_trap_frame, reg)
_Static_assert(KTF(rax) == 0 && KTF(rbx) == 8 && KTF(rcx) == 16 && KTF(rdx) == 24 &&
                   KTF(rsi) == 32 && KTF(rdi) == 40 && KTF(rbp) == 48 && KTF(rsp) == 56 &&
                   KTF(r8) == 64 && KTF(r9) == 72 && KTF(r10) == 80 && KTF(r11) == 88 &&
                   KTF(r12) == 96 && KTF(r13) == 104 && KTF(r14) == 112 &&
                   KTF(r15) == 120 && KTF(rip) == 128,
               "kern_trap_frame's layout is the one the assembly below writes");

__asm__(".text\n"
        ".globl mach_msg\n"
        ".type mach_msg, @function\n"
        ".p2align 4\n"
        "mach_msg:\n"
        ".cfi_startproc\n"
        "    pushq %rax\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    movq kern_trap_depth@gottpoff(%rip), %rax\n"
        "    addl $1, %fs:(%rax)\n" /* counted first: a handler's trap records nothing */
        "    cmpl $1, %fs:(%rax)\n"
        "    jne 1f\n"
        "    movq kern_trap_frame@gottpoff(%rip), %rax\n"
        "    movq %r11, %fs:88(%rax)\n"
        "    movq 0(%rsp), %r11\n"    /* the caller's %rax */
        "    movq %r11, %fs:0(%rax)\n"
        "    movq 8(%rsp), %r11\n"    /* the return address */
        "    movq %r11, %fs:128(%rax)\n"
        "    leaq 16(%rsp), %r11\n"   /* %rsp once returned */
        "    movq %r11, %fs:56(%rax)\n"
        "    movq %rbx, %fs:8(%rax)\n"
        "    movq %rcx, %fs:16(%rax)\n"
        "    movq %rdx, %fs:24(%rax)\n"
        "    movq %rsi, %fs:32(%rax)\n"
        "    movq %rdi, %fs:40(%rax)\n"
        "    movq %rbp, %fs:48(%rax)\n"
        "    movq %r8, %fs:64(%rax)\n"
        "    movq %r9, %fs:72(%rax)\n"
        "    movq %r10, %fs:80(%rax)\n"
        "    movq %r12, %fs:96(%rax)\n"
        "    movq %r13, %fs:104(%rax)\n"
        "    movq %r14, %fs:112(%rax)\n"
        "    movq %r15, %fs:120(%rax)\n"
        "1:  popq %rax\n"
        ".cfi_adjust_cfa_offset -8\n"
        "    jmp ipc_mach_msg_user\n"
        ".cfi_endproc\n"
        ".size mach_msg, .-mach_msg\n"
        ".globl __mach_msg\n"
        ".type __mach_msg, @function\n"
        ".set __mach_msg, mach_msg\n"
        ".globl mach_msg_trap\n"
        ".type mach_msg_trap, @function\n"
        ".set mach_msg_trap, mach_msg\n"
        ".globl __mach_msg_trap\n"
        ".type __mach_msg_trap, @function\n"
        ".set __mach_msg_trap, mach_msg\n");
