/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Received regions released off the caller's path (libmach/vm_reap.h): a
 * large region that came out of line as a copy is the receiver's own,
 * private and writable, never changed by the sender's later writes; its
 * vm_deallocate vacates the range at once, whatever is left to free runs
 * later, a child never inherits what is left, and a region cut or
 * replaced behind libmach's back is unmapped as it is.
 */
#include <hell.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <time.h>

#include "test.h"

#define SELF mach_task_self()

#define SIZE ((size_t)1 << 20)

struct ool_msg {
    mach_msg_header_t head;
    mach_msg_type_long_t type;
    void *addr;
};

static bool mapped(const void *addr)
{
    unsigned char vec;
    return mincore((void *)((uintptr_t)addr & ~(uintptr_t)4095), 4096, &vec) == 0;
}

/* Whether every byte of [P, P + SIZE) is C. */
static bool all(const char *p, size_t size, char c)
{
    for (size_t i = 0; i < size; i++) {
        if (p[i] != c) {
            return false;
        }
    }
    return true;
}

/* The inode of the file mapped at ADDR (0 when anonymous or unmapped),
 * or, with ADDR NULL, whether any mapping is of inode INO (1 or 0). */
static uint64_t maps_inode(const void *addr, uint64_t ino)
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
        } else if (addr == NULL && ino != 0 && inode == ino) {
            found = 1;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return found;
}

/* Whether no mapping of inode INO is left within about two seconds. */
static bool gone_soon(uint64_t ino)
{
    for (int i = 0; i < 200; i++) {
        if (maps_inode(NULL, ino) == 0) {
            return true;
        }
        struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Sends SIZE bytes at ADDR to DEST out of line, copied. */
static void send_copy(mach_port_t dest, void *addr, size_t size)
{
    struct ool_msg m = {
        .head = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
                 .msgh_remote_port = dest,
                 .msgh_id = 7},
        .type = {.msgtl_name = MACH_MSG_TYPE_BYTE, .msgtl_size = 8, .msgtl_number = size,
                 .msgtl_inline = FALSE, .msgtl_longform = TRUE, .msgtl_deallocate = FALSE},
        .addr = addr,
    };
    CHECK(mach_msg(&m.head, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL) ==
          MACH_MSG_SUCCESS);
}

static char *receive_region(mach_port_t port, size_t size)
{
    union {
        struct ool_msg m;
        char buf[256];
    } r;
    if (mach_msg(&r.m.head, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r, port, 10000,
                 MACH_PORT_NULL) != MACH_MSG_SUCCESS ||
        r.m.type.msgtl_number != size) {
        return NULL;
    }
    return r.m.addr;
}

/* A region of SIZE bytes of C sent to PORT and received back. */
static char *round_trip(mach_port_t port, size_t size, char c)
{
    char *src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(src != MAP_FAILED);
    memset(src, c, size);
    send_copy(port, src, size);
    munmap(src, size);
    char *got = receive_region(port, size);
    CHECK(got != NULL && all(got, size, c));
    return got;
}

/* The copy is taken at the send, private and writable; its deallocation
 * frees the range at once (it can be allocated again there) and its
 * memory soon after. */
static void copy_is_private_and_goes(mach_port_t port)
{
    char *src = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(src != MAP_FAILED);
    memset(src, 'a', SIZE);
    send_copy(port, src, SIZE);
    memset(src, 'b', SIZE); /* after the send: not seen */
    char *got = receive_region(port, SIZE);
    CHECK(got != NULL && all(got, SIZE, 'a'));
    uint64_t ino = maps_inode(got, 0);
    CHECK(ino != 0); /* a memfd */
    memset(got, 'c', SIZE);
    CHECK(all(got, SIZE, 'c') && all(src, SIZE, 'b'));
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, SIZE), KERN_SUCCESS);
    CHECK(!mapped(got) && !mapped(got + SIZE - 1));
    vm_address_t again = (vm_address_t)got;
    CHECK_KR(vm_allocate(SELF, &again, SIZE, FALSE), KERN_SUCCESS);
    CHECK(again == (vm_address_t)got && all(got, SIZE, 0));
    CHECK_KR(vm_deallocate(SELF, again, SIZE), KERN_SUCCESS);
    CHECK(gone_soon(ino));
    munmap(src, SIZE);
}

/* A fork right after the deallocation: the child has nothing of the
 * region, whether or not the parent has finished with it. */
static void never_inherited(mach_port_t port)
{
    for (int round = 0; round < 8; round++) {
        char *got = round_trip(port, SIZE, (char)('d' + round));
        uint64_t ino = maps_inode(got, 0);
        CHECK(ino != 0);
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, SIZE), KERN_SUCCESS);
        pid_t pid = fork();
        if (pid == 0) {
            _exit(maps_inode(NULL, ino) != 0 || mapped(got));
        }
        test_wait_ok(pid);
        CHECK(gone_soon(ino));
    }
}

/* Cut by a partial deallocation, or replaced behind libmach's back, a
 * region is unmapped as it is, piece by piece. */
static void cut_or_replaced(mach_port_t port)
{
    char *got = round_trip(port, SIZE, 'p');
    uint64_t ino = maps_inode(got, 0);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, SIZE / 2), KERN_SUCCESS);
    CHECK(!mapped(got) && all(got + SIZE / 2, SIZE / 2, 'p'));
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got + SIZE / 2, SIZE / 2), KERN_SUCCESS);
    CHECK(!mapped(got + SIZE / 2) && maps_inode(NULL, ino) == 0);

    got = round_trip(port, SIZE, 'q');
    CHECK(munmap(got, SIZE) == 0);
    char *anon = mmap(got, SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(anon == got);
    memset(anon, 'r', SIZE);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)anon, SIZE), KERN_SUCCESS);
    CHECK(!mapped(anon) && !mapped(anon + SIZE - 1));
}

/* More regions deallocated at once than the thread takes: each range is
 * vacated, each region's memory goes. */
static void many_at_once(mach_port_t port)
{
    enum { N = 40 };
    const size_t size = 256 * 1024;
    char *got[N];
    uint64_t ino[N];
    for (int i = 0; i < N; i++) {
        got[i] = round_trip(port, size, (char)('A' + i));
        ino[i] = maps_inode(got[i], 0);
    }
    for (int i = 0; i < N; i++) {
        CHECK(all(got[i], size, (char)('A' + i)));
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)got[i], size), KERN_SUCCESS);
        CHECK(!mapped(got[i]));
    }
    for (int i = 0; i < N; i++) {
        CHECK(gone_soon(ino[i]));
    }
}

int main(void)
{
    (void)mig_get_reply_port();
    int fds_before = test_count_fds();
    mach_port_t port = test_new_port(false);
    copy_is_private_and_goes(port);
    never_inherited(port);
    cut_or_replaced(port);
    many_at_once(port);
    CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);
    CHECK(test_count_fds() <= fds_before + 1); /* + the maps' queries */
    return test_done("reap");
}
