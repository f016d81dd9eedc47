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
#include "test_region.h"

#define SELF mach_task_self()

#define SIZE ((size_t)1 << 20)

/* Whether no mapping of inode INO is left within about two seconds. */
static bool gone_soon(uint64_t ino)
{
    for (int i = 0; i < 200; i++) {
        if (test_maps_inode(NULL, ino, NULL) == 0) {
            return true;
        }
        struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Sends SIZE bytes at ADDR to DEST (a receive right) out of line, copied. */
static void send_copy(mach_port_t dest, void *addr, size_t size)
{
    CHECK(test_send_region(dest, MACH_MSG_TYPE_MAKE_SEND, addr, size, false, 0) ==
          MACH_MSG_SUCCESS);
}

/* A region of SIZE bytes of C sent to PORT and received back. */
static char *round_trip(mach_port_t port, size_t size, char c)
{
    char *src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(src != MAP_FAILED);
    memset(src, c, size);
    send_copy(port, src, size);
    munmap(src, size);
    size_t got_size = 0;
    char *got = test_receive_region(port, &got_size);
    CHECK(got != NULL && got_size == size && test_all(got, size, c));
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
    size_t got_size = 0;
    char *got = test_receive_region(port, &got_size);
    CHECK(got != NULL && got_size == SIZE && test_all(got, SIZE, 'a'));
    uint64_t ino = test_maps_inode(got, 0, NULL);
    CHECK(ino != 0); /* a memfd */
    memset(got, 'c', SIZE);
    CHECK(test_all(got, SIZE, 'c') && test_all(src, SIZE, 'b'));
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, SIZE), KERN_SUCCESS);
    CHECK(!test_mapped(got) && !test_mapped(got + SIZE - 1));
    vm_address_t again = (vm_address_t)got;
    CHECK_KR(vm_allocate(SELF, &again, SIZE, FALSE), KERN_SUCCESS);
    CHECK(again == (vm_address_t)got && test_all(got, SIZE, 0));
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
        uint64_t ino = test_maps_inode(got, 0, NULL);
        CHECK(ino != 0);
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, SIZE), KERN_SUCCESS);
        pid_t pid = fork();
        if (pid == 0) {
            _exit(test_maps_inode(NULL, ino, NULL) != 0 || test_mapped(got));
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
    uint64_t ino = test_maps_inode(got, 0, NULL);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, SIZE / 2), KERN_SUCCESS);
    CHECK(!test_mapped(got) && test_all(got + SIZE / 2, SIZE / 2, 'p'));
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got + SIZE / 2, SIZE / 2), KERN_SUCCESS);
    CHECK(!test_mapped(got + SIZE / 2) && test_maps_inode(NULL, ino, NULL) == 0);

    got = round_trip(port, SIZE, 'q');
    CHECK(munmap(got, SIZE) == 0);
    char *anon = mmap(got, SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(anon == got);
    memset(anon, 'r', SIZE);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)anon, SIZE), KERN_SUCCESS);
    CHECK(!test_mapped(anon) && !test_mapped(anon + SIZE - 1));
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
        ino[i] = test_maps_inode(got[i], 0, NULL);
    }
    for (int i = 0; i < N; i++) {
        CHECK(test_all(got[i], size, (char)('A' + i)));
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)got[i], size), KERN_SUCCESS);
        CHECK(!test_mapped(got[i]));
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
