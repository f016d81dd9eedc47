/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * i386_FLOAT_STATE, GNU Mach's FNSAVE view of the x87 state, from and to
 * a signal frame's FXSAVE/XSAVE image (kern_fpu.c).  Need no lock.
 */
#ifndef HELL_KERN_FPU_H
#define HELL_KERN_FPU_H

#include <mach/thread_status.h>
#include <mach/x86_64/fp_reg.h>
#include <stddef.h>
#include <stdint.h>

/* Fills OUT from the image FX (FXSAVE layout first). */
void kern_fpu_to_float_state(const uint8_t *fx, struct i386_float_state *out);

/* Writes IN into the image FRAME of SIZE bytes: the x87 part, MXCSR to its
 * default and, in an XSAVE image, every other component back to its
 * initial state; IN not initialized resets everything. */
void kern_fpu_from_float_state(const struct i386_float_state *in, uint8_t *frame, size_t size);

#endif
