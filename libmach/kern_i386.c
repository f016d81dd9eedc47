/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A thread's segment descriptors (mach_i386.defs: i386_set_ldt 3803,
 * i386_get_ldt 3804, i386_set_gdt 3807, i386_get_gdt 3808), with GNU
 * Mach's checks and answers.
 *
 * GNU Mach gives each thread its own LDT (made on first use from the
 * kernel's four-entry one) and two GDT slots of its own.  HELL keeps both
 * per thread as GNU Mach does and gives them back as set; the processor
 * sees what Linux lets it: Linux has one LDT per process, so each LDT
 * descriptor set is written there too (modify_ldt), where every thread
 * of the task sees it and the last one set wins; a descriptor Linux does
 * not take (a call gate, a present conforming code segment, a 64-bit
 * code segment) leaves that entry of Linux's LDT empty.  The GDT is Linux's own: selectors 0x4b and 0x53 name nothing
 * there, so the slots are records only.
 */
#include <asm/ldt.h>
#include <errno.h>
#include <mach.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipc_space.h"
#include "ipc_wire.h"
#include "kern.h"
#include "kern_thread.h"
#include "mach_i386.server.h"

/* Descriptor access byte (bits 8-15 of the high word), as GNU Mach's
 * seg.h names them. */
enum {
    ACC_A = 0x01,
    ACC_CALL_GATE_16 = 0x04,
    ACC_CALL_GATE = 0x0c,
    ACC_TYPE_USER = 0x10,
    ACC_DATA = 0x10,
    ACC_DATA_W = 0x12,
    ACC_DATA_E = 0x14,
    ACC_DATA_EW = 0x16,
    ACC_CODE = 0x18,
    ACC_CODE_R = 0x1a,
    ACC_CODE_C = 0x1c,
    ACC_CODE_CR = 0x1e,
    ACC_PL = 0x60,
    ACC_PL_U = 0x60,
    ACC_P = 0x80,
};

/* The granularity nibble (bits 20-23 of the high word). */
enum { SZ_64 = 0x2, SZ_32 = 0x4, SZ_G = 0x8 };

/* Selector bits, and the LDT's bounds. */
enum { SEL_LDT = 0x4, SEL_PL = 0x3, SEL_PL_U = 0x3 };
#define LDT_ENTRIES_MAX 8192

/* GNU Mach's kernel LDT, which seeds a thread's (i386/i386/ldt.h): four
 * entries, the 32-bit user code (0x17) and data (0x1f) segments filled,
 * flat over user memory, as on x86_64. */
#define LDTSZ 4
static const struct descriptor kern_i386_default_ldt[LDTSZ] = {
    [2] = {.low_word = 0x0000ffff, .high_word = 0x00affa00},
    [3] = {.low_word = 0x0000ffff, .high_word = 0x00aff200},
};

/* The thread's user GDT slots: selectors USER_GDT (0x48) | 3 and the
 * next one. */
#define USER_GDT 0x48
#define USER_GDT_SLOTS 2

struct kern_i386_segments {
    struct descriptor gdt[USER_GDT_SLOTS];
    unsigned ldt_count; /* 0: no LDT of its own yet */
    struct descriptor ldt[];
};

static unsigned kern_desc_access(struct descriptor d)
{
    return (d.high_word >> 8) & 0xff;
}

static unsigned kern_desc_granularity(struct descriptor d)
{
    return (d.high_word >> 20) & 0xf;
}

/* Whether GNU Mach's i386_set_ldt takes D; a kernel call gate becomes
 * the kernel's syscall gate, which on x86_64 is the empty entry 0. */
static bool kern_ldt_desc_ok(struct descriptor *d)
{
    switch (kern_desc_access(*d) & ~ACC_A) {
    case 0:
    case ACC_P:
        return true;
    case ACC_P | ACC_CALL_GATE:
        *d = kern_i386_default_ldt[0];
        return true;
    case ACC_P | ACC_PL_U | ACC_DATA:
    case ACC_P | ACC_PL_U | ACC_DATA_W:
    case ACC_P | ACC_PL_U | ACC_DATA_E:
    case ACC_P | ACC_PL_U | ACC_DATA_EW:
    case ACC_P | ACC_PL_U | ACC_CODE:
    case ACC_P | ACC_PL_U | ACC_CODE_R:
    case ACC_P | ACC_PL_U | ACC_CODE_C:
    case ACC_P | ACC_PL_U | ACC_CODE_CR:
    case ACC_P | ACC_PL_U | ACC_CALL_GATE_16:
    case ACC_P | ACC_PL_U | ACC_CALL_GATE:
        return true;
    default:
        return false;
    }
}

/* Writes D as entry INDEX of Linux's LDT, or empties the entry when D is
 * no present user code or data segment Linux takes. */
static void kern_ldt_install(unsigned index, struct descriptor d)
{
    unsigned access = kern_desc_access(d), gran = kern_desc_granularity(d);
    struct user_desc u = {
        .entry_number = index,
        .base_addr = (d.low_word >> 16) | ((d.high_word & 0xff) << 16) |
                     (d.high_word & 0xff000000),
        .limit = (d.low_word & 0xffff) | (d.high_word & 0x000f0000),
        .seg_32bit = (gran & SZ_32) != 0,
        .contents = (access >> 2) & 3,
        .read_exec_only = !(access & 2),
        .limit_in_pages = (gran & SZ_G) != 0,
        .seg_not_present = 0,
        .useable = gran & 1,
        .lm = (gran & SZ_64) != 0,
    };
    bool user_segment = (access & (ACC_P | ACC_TYPE_USER | ACC_PL)) ==
                            (ACC_P | ACC_TYPE_USER | ACC_PL_U) &&
                        !((access & ACC_CODE) == ACC_CODE && (gran & SZ_64));
    if (!user_segment || syscall(SYS_modify_ldt, 0x11, &u, sizeof u) != 0) {
        u = (struct user_desc){.entry_number = index, .read_exec_only = 1,
                               .seg_not_present = 1};
        (void)syscall(SYS_modify_ldt, 0x11, &u, sizeof u);
    }
}

/* T's segment record, made (no LDT yet) when it has none; NULL when out
 * of memory.  Expects [G]. */
static struct kern_i386_segments *kern_segments(struct kern_thread *t)
{
    if (t->segments == NULL) {
        t->segments = calloc(1, sizeof *t->segments);
    }
    return t->segments;
}

void kern_i386_thread_free(struct kern_thread *t)
{
    free(t->segments);
    t->segments = NULL;
}

/* Whether T is the thread that made this call (not a thread of another
 * task calling in).  Expects [G]. */
static bool kern_is_current(struct kern_thread *t)
{
    return !kern_serving_other_task() && kern_thread_self() == t;
}

/* The size of the list i386_set_ldt was sent: MIG's count is its 32-bit
 * words halved, an odd one left out. */
static size_t kern_ldt_list_bytes(mach_msg_type_number_t count)
{
    const struct {
        mach_msg_header_t head;
        mach_msg_type_t selector_type;
        int selector;
        char pad[4];
        mach_msg_type_long_t list_type;
    } *req = (const void *)kern_current_request();
    return req != NULL ? (size_t)req->list_type.msgtl_number * sizeof(int)
                       : count * sizeof(struct descriptor);
}

kern_return_t kern_i386_set_ldt(mach_port_t thread, int first_selector,
                                const_descriptor_list_t desc_list, mach_msg_type_number_t count,
                                boolean_t inline_list)
{
    unsigned first = (unsigned)first_selector >> 3;
    if (first > LDT_ENTRIES_MAX - 1 || count >= LDT_ENTRIES_MAX - first) {
        return KERN_INVALID_ARGUMENT;
    }
    struct descriptor *descs = malloc((count ? count : 1) * sizeof *descs);
    if (descs == NULL) {
        return KERN_RESOURCE_SHORTAGE;
    }
    memcpy(descs, desc_list, count * sizeof *descs);
    kern_return_t kr = KERN_SUCCESS;
    for (unsigned i = 0; i < count && kr == KERN_SUCCESS; i++) {
        if (!kern_ldt_desc_ok(&descs[i])) {
            kr = KERN_INVALID_ARGUMENT;
        }
    }
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    struct kern_i386_segments *seg = NULL;
    if (t == NULL || (kern_is_current(t) && first < LDTSZ)) {
        kr = KERN_INVALID_ARGUMENT;
    } else if (kr == KERN_SUCCESS && (seg = kern_segments(t)) == NULL) {
        kr = KERN_RESOURCE_SHORTAGE;
    }
    unsigned need = first + count > LDTSZ ? first + count : LDTSZ;
    if (kr == KERN_SUCCESS && seg->ldt_count < need) {
        struct kern_i386_segments *grown =
            realloc(seg, sizeof *seg + need * sizeof seg->ldt[0]);
        if (grown == NULL) {
            kr = KERN_RESOURCE_SHORTAGE;
        } else {
            /* New entries: the kernel's first, then present-only ones. */
            for (unsigned i = grown->ldt_count; i < need; i++) {
                grown->ldt[i] = i < LDTSZ ? kern_i386_default_ldt[i]
                                          : (struct descriptor){.high_word = ACC_P << 8};
            }
            grown->ldt_count = need;
            t->segments = seg = grown;
        }
    }
    if (kr == KERN_SUCCESS) {
        for (unsigned i = 0; i < count; i++) {
            seg->ldt[first + i] = descs[i];
            kern_ldt_install(first + i, descs[i]);
        }
    }
    ipc_unlock();
    free(descs);
    size_t sent = inline_list ? 0 : kern_ldt_list_bytes(count);
    if (kr == KERN_SUCCESS && sent > 0) {
        wire_region_release((void *)desc_list, sent);
    }
    return kr;
}

kern_return_t kern_i386_get_ldt(mach_port_t thread, int first_selector, int selector_count,
                                descriptor_list_t *desc_list, mach_msg_type_number_t *count)
{
    unsigned first = (unsigned)first_selector >> 3;
    if (first > LDT_ENTRIES_MAX - 1 || selector_count < 0 ||
        (unsigned)selector_count >= LDT_ENTRIES_MAX - first) {
        return KERN_INVALID_ARGUMENT;
    }
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    unsigned n = 0;
    if (t != NULL && t->segments != NULL && first < t->segments->ldt_count) {
        n = t->segments->ldt_count - first;
        n = n < (unsigned)selector_count ? n : (unsigned)selector_count;
    }
    kern_return_t kr = t == NULL ? KERN_INVALID_ARGUMENT
                                 : kern_array_alloc(n, sizeof **desc_list, (void **)desc_list);
    if (kr == KERN_SUCCESS && n > 0) {
        memcpy(*desc_list, &t->segments->ldt[first], n * sizeof **desc_list);
    }
    if (kr == KERN_SUCCESS) {
        *count = n;
    }
    ipc_unlock();
    return kr;
}

/* The user GDT slot SELECTOR names, or -1 when it names none. */
static int kern_gdt_slot(int selector)
{
    int index = (selector >> 3) - (USER_GDT >> 3);
    if ((selector & (SEL_LDT | SEL_PL)) != SEL_PL_U || index < 0 || index >= USER_GDT_SLOTS) {
        return -1;
    }
    return index;
}

kern_return_t kern_i386_set_gdt(mach_port_t thread, int *selector, descriptor_t desc)
{
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    struct kern_i386_segments *seg = t != NULL ? kern_segments(t) : NULL;
    kern_return_t kr = t == NULL ? KERN_INVALID_ARGUMENT
                       : seg == NULL ? KERN_RESOURCE_SHORTAGE
                                     : KERN_SUCCESS;
    int slot = -1;
    if (kr == KERN_SUCCESS && *selector == -1) {
        for (int i = 0; i < USER_GDT_SLOTS && slot < 0; i++) {
            if (!(kern_desc_access(seg->gdt[i]) & ACC_P)) {
                slot = i;
            }
        }
        if (slot < 0) {
            kr = KERN_NO_SPACE;
        } else {
            *selector = ((slot + (USER_GDT >> 3)) << 3) | SEL_PL_U;
        }
    } else if (kr == KERN_SUCCESS && (slot = kern_gdt_slot(*selector)) < 0) {
        kr = KERN_INVALID_ARGUMENT;
    }
    unsigned access = kern_desc_access(desc);
    if (kr == KERN_SUCCESS && !(access & ACC_P)) {
        seg->gdt[slot] = (struct descriptor){0};
    } else if (kr == KERN_SUCCESS) {
        if ((access & (ACC_TYPE_USER | ACC_PL)) != (ACC_TYPE_USER | ACC_PL_U) ||
            (kern_desc_granularity(desc) & SZ_64)) {
            kr = KERN_INVALID_ARGUMENT;
        } else {
            seg->gdt[slot] = desc;
        }
    }
    ipc_unlock();
    return kr;
}

kern_return_t kern_i386_get_gdt(mach_port_t thread, int selector, descriptor_t *desc)
{
    int slot = kern_gdt_slot(selector);
    ipc_lock();
    struct kern_thread *t = kern_thread_lookup(thread);
    kern_return_t kr = t == NULL || slot < 0 ? KERN_INVALID_ARGUMENT : KERN_SUCCESS;
    if (kr == KERN_SUCCESS) {
        *desc = t->segments != NULL ? t->segments->gdt[slot] : (struct descriptor){0};
    }
    ipc_unlock();
    return kr;
}
