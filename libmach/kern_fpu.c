/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The x87 state of i386_FLOAT_STATE (the FNSAVE image GNU Mach reports)
 * from and to the FXSAVE legacy area at the head of a signal frame's
 * XSAVE image, with GNU Mach's conversions: the full tag word rebuilt from
 * the abridged one and the registers' contents; on a set, MXCSR to its
 * default and the SSE and AVX state back to their initial values.
 */
#include "kern_fpu.h"

#include <stdint.h>
#include <string.h>

/* Offsets in the FXSAVE legacy area (Intel SDM, FXSAVE, 64-bit format). */
#define FX_FCW 0
#define FX_FSW 2
#define FX_FTW 4 /* abridged: one bit per physical register, 1 = in use */
#define FX_FOP 6
#define FX_FIP 8
#define FX_FDP 16
#define FX_MXCSR 24
#define FX_ST 32 /* ST0..ST7, 16 bytes each, 10 used */
#define XSAVE_HEADER 512 /* XSTATE_BV, 8 bytes */
#define XFEATURE_X87 1ull

#define MXCSR_DEFAULT 0x1f80
/* fpkind: an FPU with XSAVE (fp_reg.h keeps these values to the kernel) */
#define KERN_FP_387X 5
#define TAG_VALID 0
#define TAG_ZERO 1
#define TAG_SPECIAL 2
#define TAG_EMPTY 3

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof v);
}

/* The full tag of the 80-bit register REG (a register in use). */
static unsigned kern_fpu_tag(const uint8_t *reg)
{
    uint64_t mantissa;
    memcpy(&mantissa, reg, sizeof mantissa);
    unsigned exponent = get16(reg + 8) & 0x7fff;
    if (exponent == 0x7fff) {
        return TAG_SPECIAL; /* infinity or NaN */
    }
    if (exponent == 0) {
        return mantissa == 0 ? TAG_ZERO : TAG_SPECIAL; /* zero or denormal */
    }
    return (mantissa >> 63) ? TAG_VALID : TAG_SPECIAL; /* normal, or unnormal */
}

void kern_fpu_to_float_state(const uint8_t *fx, struct i386_float_state *out)
{
    memset(out, 0, sizeof *out);
    out->fpkind = KERN_FP_387X;
    out->initialized = 1;
    struct i386_fp_save save = {0};
    save.fp_control = get16(fx + FX_FCW);
    save.fp_status = get16(fx + FX_FSW);
    unsigned top = (save.fp_status >> 11) & 7;
    unsigned abridged = fx[FX_FTW];
    uint16_t tag = 0;
    for (unsigned phys = 0; phys < 8; phys++) {
        unsigned st = (phys - top) & 7;
        unsigned t = (abridged >> phys) & 1 ? kern_fpu_tag(fx + FX_ST + 16 * st) : TAG_EMPTY;
        tag |= (uint16_t)(t << (2 * phys));
    }
    save.fp_tag = tag;
    uint64_t fip, fdp;
    memcpy(&fip, fx + FX_FIP, sizeof fip);
    memcpy(&fdp, fx + FX_FDP, sizeof fdp);
    save.fp_eip = (unsigned)fip;
    save.fp_opcode = get16(fx + FX_FOP);
    save.fp_dp = (unsigned)fdp;
    memcpy(out->hw_state, &save, sizeof save);
    for (unsigned st = 0; st < 8; st++) {
        memcpy(out->hw_state + sizeof save + 10 * st, fx + FX_ST + 16 * st, 10);
    }
    out->exc_status = 0;
}

void kern_fpu_from_float_state(const struct i386_float_state *in, uint8_t *frame, size_t size)
{
    uint64_t none = 0;
    uint64_t *xstate_bv = size >= XSAVE_HEADER + 64 ? (uint64_t *)(frame + XSAVE_HEADER) : &none;
    if (!in->initialized) {
        /* Back to the initial state of every component. */
        *xstate_bv = 0;
        if (xstate_bv == &none) {
            static const uint8_t fninit[4] = {0x7f, 0x03, 0, 0}; /* FCW 0x37f, FSW 0 */
            memset(frame, 0, FX_ST);
            memcpy(frame, fninit, sizeof fninit);
            uint32_t mxcsr = MXCSR_DEFAULT;
            memcpy(frame + FX_MXCSR, &mxcsr, sizeof mxcsr);
        }
        return;
    }
    struct i386_fp_save save;
    memcpy(&save, in->hw_state, sizeof save);
    put16(frame + FX_FCW, save.fp_control);
    put16(frame + FX_FSW, save.fp_status);
    uint8_t abridged = 0;
    for (unsigned phys = 0; phys < 8; phys++) {
        if (((save.fp_tag >> (2 * phys)) & 3) != TAG_EMPTY) {
            abridged |= (uint8_t)(1u << phys);
        }
    }
    frame[FX_FTW] = abridged;
    frame[FX_FTW + 1] = 0;
    put16(frame + FX_FOP, save.fp_opcode);
    uint64_t fip = save.fp_eip, fdp = save.fp_dp;
    memcpy(frame + FX_FIP, &fip, sizeof fip);
    memcpy(frame + FX_FDP, &fdp, sizeof fdp);
    uint32_t mxcsr = MXCSR_DEFAULT;
    memcpy(frame + FX_MXCSR, &mxcsr, sizeof mxcsr);
    for (unsigned st = 0; st < 8; st++) {
        memset(frame + FX_ST + 16 * st, 0, 16);
        memcpy(frame + FX_ST + 16 * st, in->hw_state + sizeof save + 10 * st, 10);
    }
    /* Only the x87 state is given: the rest starts afresh. */
    *xstate_bv = XFEATURE_X87;
}
