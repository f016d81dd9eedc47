/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Out-of-line regions for the tests of libmach's region handling
 * (test_movable, test_reap): one region sent in a message and received
 * back, and what Linux shows of a range (mapped or not, the file mapped
 * there, its bytes).
 */
#ifndef HELL_TEST_REGION_H
#define HELL_TEST_REGION_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "test.h"

/* A message carrying one region out of line. */
struct test_ool_msg {
    mach_msg_header_t head;
    mach_msg_type_long_t type;
    void *addr;
};

/* Whether the page holding ADDR is mapped. */
static inline bool test_mapped(const void *addr)
{
    unsigned char vec;
    return mincore((void *)((uintptr_t)addr & ~(uintptr_t)4095), 4096, &vec) == 0;
}

/* Whether every byte of [P, P + SIZE) is C. */
static inline bool test_all(const char *p, size_t size, char c)
{
    for (size_t i = 0; i < size; i++) {
        if (p[i] != c) {
            return false;
        }
    }
    return true;
}

/* From /proc/self/maps: the inode of the file mapped at ADDR (0 when
 * anonymous or unmapped), and in *SHARED (when not NULL and ADDR is
 * mapped) whether Linux maps it shared; or, with ADDR NULL, whether any
 * mapping is of inode INO (1 or 0). */
static inline uint64_t test_maps_inode(const void *addr, uint64_t ino, bool *shared)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    uint64_t found = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        uint64_t start, end, offset, inode;
        unsigned major, minor;
        char perms[5];
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64, &start, &end,
                   perms, &offset, &major, &minor, &inode) != 7) {
            continue;
        }
        if (addr != NULL && start <= (uintptr_t)addr && (uintptr_t)addr < end) {
            found = inode;
            if (shared != NULL) {
                *shared = perms[3] == 's';
            }
        } else if (addr == NULL && ino != 0 && inode == ino) {
            found = 1;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return found;
}

/* Sends SIZE bytes at ADDR out of line (given up with DEALLOC) in a
 * message of id 7 to DEST, named with DISPOSITION; OPTION is added to
 * MACH_SEND_MSG (its timeout is 0). */
static inline mach_msg_return_t test_send_region(mach_port_t dest,
                                                 mach_msg_type_name_t disposition, void *addr,
                                                 size_t size, bool dealloc,
                                                 mach_msg_option_t option)
{
    struct test_ool_msg m = {
        .head = {.msgh_bits = MACH_MSGH_BITS(disposition, 0) | MACH_MSGH_BITS_COMPLEX,
                 .msgh_remote_port = dest,
                 .msgh_id = 7},
        .type = {.msgtl_name = MACH_MSG_TYPE_BYTE, .msgtl_size = 8, .msgtl_number = size,
                 .msgtl_inline = FALSE, .msgtl_longform = TRUE, .msgtl_deallocate = dealloc},
        .addr = addr,
    };
    return mach_msg(&m.head, MACH_SEND_MSG | option, sizeof m, 0, MACH_PORT_NULL, 0,
                    MACH_PORT_NULL);
}

/* Receives on PORT (waiting up to 10 s) a message sent by
 * test_send_region: returns the region and its size in *SIZE, or NULL. */
static inline char *test_receive_region(mach_port_t port, size_t *size)
{
    union {
        struct test_ool_msg m;
        char buf[256];
    } r;
    if (mach_msg(&r.m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, port, 10000,
                 MACH_PORT_NULL) != MACH_MSG_SUCCESS) {
        return NULL;
    }
    *size = r.m.type.msgtl_number;
    return r.m.addr;
}

#endif
