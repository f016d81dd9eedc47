/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Movable regions (libmach/vm_movable.h): a large region made by
 * vm_allocate travels out of line as its own memory, with no copy, when
 * moved whole; every other use keeps Mach's semantics
 * (private memory, copied by task_create, shared after vm_inherit SHARE),
 * and a region changed behind libmach's back is copied, not sent stale.
 *
 * "No copy" is checked where Linux shows it: the receiver's mapping is of
 * the very file the sender's region was.
 */
#include <hell.h>
#include <inttypes.h>
#include <mach/vm_inherit.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "test.h"
#include "test_region.h"

#define SELF mach_task_self()

#define SIZE ((vm_size_t)1 << 20)

/* The bytes the memfds of movable regions hold, and how many there are
 * (from this process's descriptors named "memfd:hell-vm"). */
static long long movable_bytes(int *count)
{
    long long bytes = 0;
    *count = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        struct stat st;
        if (n > 0 && (target[n] = '\0', strncmp(target, "/memfd:hell-vm", 14) == 0) &&
            stat(path, &st) == 0) {
            bytes += (long long)st.st_blocks * 512;
            (*count)++;
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return bytes;
}

static uint64_t inode_at(const void *addr)
{
    return test_maps_inode(addr, 0, NULL);
}

/* Whether Linux maps ADDR shared. */
static bool linux_shared(const void *addr)
{
    bool shared = false;
    test_maps_inode(addr, 0, &shared);
    return shared;
}

/* Whether [P, P + SIZE) is mapped and holds only C. */
static bool holds(const char *p, size_t size, char c)
{
    for (size_t off = 0; off < size; off += 4096) {
        if (!test_mapped(p + off)) {
            return false;
        }
    }
    return test_all(p, size, c);
}

/* Sends SIZE bytes at ADDR to DEST (a send right kept) out of line. */
static mach_msg_return_t send_region(mach_port_t dest, void *addr, size_t size, bool dealloc,
                                     mach_msg_option_t option)
{
    return test_send_region(dest, MACH_MSG_TYPE_COPY_SEND, addr, size, dealloc, option);
}

static char *allocate(vm_size_t size, char fill)
{
    vm_address_t a = 0;
    CHECK_KR(vm_allocate(SELF, &a, size, TRUE), KERN_SUCCESS);
    memset((void *)a, fill, size);
    return (char *)a;
}

/* A whole region moved: the receiver maps the sender's own memory, and
 * the sender's range is gone. */
static void move_passes_the_memory(mach_port_t port)
{
    char *a = allocate(SIZE, 'm');
    uint64_t ino = inode_at(a);
    CHECK(ino != 0);
    CHECK_KR(send_region(port, a, SIZE, true, 0), MACH_MSG_SUCCESS);
    CHECK(!test_mapped(a));
    size_t size = 0;
    char *got = test_receive_region(port, &size);
    CHECK(got != NULL && size == SIZE);
    if (got != NULL) {
        CHECK(inode_at(got) == ino);
        CHECK(test_all(got, SIZE, 'm'));
        got[0] = 'w'; /* the receiver's own, copy-on-write */
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, SIZE), KERN_SUCCESS);
    }
    /* A size that is not a page multiple still names the whole region. */
    a = allocate(SIZE - 100, 'o');
    ino = inode_at(a);
    CHECK_KR(send_region(port, a, SIZE - 100, true, 0), MACH_MSG_SUCCESS);
    got = test_receive_region(port, &size);
    CHECK(got != NULL && size == SIZE - 100 && inode_at(got) == ino);
    if (got != NULL) {
        CHECK(test_all(got, SIZE - 100, 'o'));
        vm_deallocate(SELF, (vm_address_t)got, size);
    }
}

/* A region copied out of line is copied (the sender keeps writing it);
 * it stays movable, and its later move passes the memory. */
static void copy_then_move(mach_port_t port)
{
    char *a = allocate(SIZE, 'c');
    uint64_t ino = inode_at(a);
    CHECK_KR(send_region(port, a, SIZE, false, 0), MACH_MSG_SUCCESS);
    memset(a, 'd', SIZE / 2); /* after the send */
    size_t size = 0;
    char *got = test_receive_region(port, &size);
    CHECK(got != NULL && size == SIZE);
    if (got != NULL) {
        CHECK(inode_at(got) != ino);
        CHECK(test_all(got, SIZE, 'c'));
        memset(got, 'r', SIZE);
        CHECK(test_all(a, SIZE / 2, 'd') && test_all(a + SIZE / 2, SIZE / 2, 'c'));
        vm_deallocate(SELF, (vm_address_t)got, SIZE);
    }
    CHECK(inode_at(a) == ino);
    CHECK_KR(send_region(port, a, SIZE, true, 0), MACH_MSG_SUCCESS);
    CHECK(!test_mapped(a));
    got = test_receive_region(port, &size);
    CHECK(got != NULL && size == SIZE);
    if (got != NULL) {
        CHECK(inode_at(got) == ino);
        CHECK(test_all(got, SIZE / 2, 'd') && test_all(got + SIZE / 2, SIZE / 2, 'c'));
        vm_deallocate(SELF, (vm_address_t)got, SIZE);
    }
}

/* Part of a region, a region cut by vm_deallocate or vm_protect, and one
 * a plain munmap and mmap replaced: copied, with what the range holds. */
static void changed_regions_are_copied(mach_port_t port)
{
    size_t size = 0;
    char *a = allocate(SIZE, 'p');
    uint64_t ino = inode_at(a);
    CHECK_KR(send_region(port, a, SIZE / 2, true, 0), MACH_MSG_SUCCESS);
    char *got = test_receive_region(port, &size);
    CHECK(got != NULL && inode_at(got) != ino && test_all(got, SIZE / 2, 'p'));
    vm_deallocate(SELF, (vm_address_t)got, SIZE / 2);
    CHECK(test_all(a + SIZE / 2, SIZE / 2, 'p'));
    memset(a + SIZE / 2, 'q', SIZE / 2); /* the rest is still private memory */
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a + SIZE / 2, SIZE / 2), KERN_SUCCESS);

    a = allocate(SIZE, 's');
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a + SIZE - 4096, 4096), KERN_SUCCESS);
    CHECK(test_all(a, SIZE - 4096, 's'));
    CHECK_KR(send_region(port, a, SIZE - 4096, true, 0), MACH_MSG_SUCCESS);
    got = test_receive_region(port, &size);
    CHECK(got != NULL && size == SIZE - 4096 && test_all(got, size, 's'));
    vm_deallocate(SELF, (vm_address_t)got, size);

    a = allocate(SIZE, 't');
    CHECK_KR(vm_protect(SELF, (vm_address_t)a, 4096, FALSE, VM_PROT_READ), KERN_SUCCESS);
    CHECK_KR(vm_protect(SELF, (vm_address_t)a, 4096, FALSE, VM_PROT_DEFAULT), KERN_SUCCESS);
    a[0] = 'u';
    CHECK_KR(send_region(port, a, SIZE, true, 0), MACH_MSG_SUCCESS);
    got = test_receive_region(port, &size);
    CHECK(got != NULL && got[0] == 'u' && test_all(got + 1, SIZE - 1, 't'));
    vm_deallocate(SELF, (vm_address_t)got, SIZE);

    a = allocate(SIZE, 'v');
    ino = inode_at(a);
    CHECK(munmap(a + 4096, 4096) == 0);
    CHECK(mmap(a + 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
               -1, 0) == a + 4096);
    memset(a + 4096, 'x', 4096);
    CHECK_KR(send_region(port, a, SIZE, true, 0), MACH_MSG_SUCCESS);
    got = test_receive_region(port, &size);
    CHECK(got != NULL && inode_at(got) != ino);
    if (got != NULL) {
        CHECK(test_all(got, 4096, 'v') && test_all(got + 4096, 4096, 'x') &&
              test_all(got + 8192, SIZE - 8192, 'v'));
        vm_deallocate(SELF, (vm_address_t)got, SIZE);
    }
}

/* A move that fails after the region was taken (a full queue, no wait)
 * leaves the region where it was, whole and writable. */
static void failed_move_keeps_the_region(void)
{
    mach_port_t full = test_new_port(true);
    CHECK_KR(mach_port_set_qlimit(SELF, full, 1), KERN_SUCCESS);
    mach_msg_header_t filler = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                .msgh_remote_port = full};
    CHECK_KR(mach_msg(&filler, MACH_SEND_MSG, sizeof filler, 0, 0, 0, 0), MACH_MSG_SUCCESS);
    char *a = allocate(SIZE, 'f');
    CHECK_KR(send_region(full, a, SIZE, true, MACH_SEND_TIMEOUT), MACH_SEND_TIMED_OUT);
    CHECK(test_mapped(a) && test_all(a, SIZE, 'f'));
    memset(a, 'g', SIZE);
    CHECK(test_all(a, SIZE, 'g'));
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a, SIZE), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, full), KERN_SUCCESS);
}

/* vm_region reports a movable region as the private memory it is. */
static void region_is_private(void)
{
    char *a = allocate(SIZE, 'z');
    vm_address_t at = (vm_address_t)a;
    vm_size_t size;
    vm_prot_t prot, max;
    vm_inherit_t inherit;
    boolean_t shared = TRUE;
    mach_port_t name;
    vm_offset_t offset;
    CHECK_KR(vm_region(SELF, &at, &size, &prot, &max, &inherit, &shared, &name, &offset),
             KERN_SUCCESS);
    CHECK(at == (vm_address_t)a && size == SIZE && inherit == VM_INHERIT_COPY && !shared);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a, SIZE), KERN_SUCCESS);
}

/* task_create copies a movable region (both sides copy-on-write), and
 * shares one set VM_INHERIT_SHARE. */
static void inheritance(void)
{
    char *copied = allocate(SIZE, 'a');
    char *shared = allocate(SIZE, 'b');
    CHECK_KR(vm_inherit(SELF, (vm_address_t)shared, SIZE, VM_INHERIT_SHARE), KERN_SUCCESS);
    int to_child[2], to_parent[2];
    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    mach_port_t child_task;
    pid_t pid = hell_fork(MACH_PORT_NULL, &child_task);
    char token = 0;
    if (pid == 0) {
        CHECK(read(to_child[0], &token, 1) == 1);
        CHECK(test_all(copied, SIZE, 'a'));
        CHECK(test_all(shared, SIZE / 2, 'Q') && test_all(shared + SIZE / 2, SIZE / 2, 'b'));
        memset(copied, 'C', SIZE);
        memset(shared + SIZE / 2, 'R', SIZE / 2);
        CHECK(write(to_parent[1], &token, 1) == 1);
        _exit(test_failures == 0 ? 0 : 1);
    }
    CHECK(pid > 0);
    memset(copied, 'P', SIZE);
    memset(shared, 'Q', SIZE / 2);
    CHECK(write(to_child[1], &token, 1) == 1);
    CHECK(read(to_parent[0], &token, 1) == 1);
    CHECK(test_all(copied, SIZE, 'P'));
    CHECK(test_all(shared, SIZE / 2, 'Q') && test_all(shared + SIZE / 2, SIZE / 2, 'R'));
    test_wait_ok(pid);
    mach_port_deallocate(SELF, child_task);
    for (int i = 0; i < 2; i++) {
        close(to_child[i]);
        close(to_parent[i]);
    }
    /* The parent's copy is no longer movable: sent, it is copied. */
    uint64_t ino = inode_at(copied);
    mach_port_t port = test_new_port(true);
    CHECK_KR(send_region(port, copied, SIZE, true, 0), MACH_MSG_SUCCESS);
    size_t size = 0;
    char *got = test_receive_region(port, &size);
    CHECK(got != NULL && inode_at(got) != ino && test_all(got, SIZE, 'P'));
    vm_deallocate(SELF, (vm_address_t)got, SIZE);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)shared, SIZE), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);
}

/* More regions than are made movable at once: all usable, descriptors
 * bounded, all given back. */
static void many_regions(void)
{
    enum { N = 300 };
    static char *regions[N];
    int fds = test_count_fds();
    for (int i = 0; i < N; i++) {
        regions[i] = allocate(64 * 1024, (char)i);
    }
    CHECK(test_count_fds() <= fds + 256);
    for (int i = 0; i < N; i++) {
        CHECK(test_all(regions[i], 64 * 1024, (char)i));
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)regions[i], 64 * 1024), KERN_SUCCESS);
    }
    CHECK(test_count_fds() == fds);
}

/* Regions unmapped otherwise than by vm_deallocate (destroyed in an
 * unsent message, moved as part of a larger range, a plain munmap) are
 * gone for good: never mapped back by a later fork, their memory given
 * back. */
static void unmapped_regions_stay_gone(void)
{
    int before;
    movable_bytes(&before);
    char *a = allocate(SIZE, 'k');
    struct test_ool_msg m = {
        .head = {.msgh_bits = MACH_MSGH_BITS_COMPLEX, .msgh_size = sizeof m},
        .type = {.msgtl_name = MACH_MSG_TYPE_BYTE, .msgtl_size = 8, .msgtl_number = SIZE,
                 .msgtl_inline = FALSE, .msgtl_longform = TRUE, .msgtl_deallocate = TRUE},
        .addr = a,
    };
    mach_msg_destroy(&m.head);
    CHECK(!test_mapped(a));
    int now;
    movable_bytes(&now);
    CHECK(now == before);

    vm_address_t pair = 0;
    CHECK_KR(vm_allocate(SELF, &pair, 2 * SIZE, TRUE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, pair, 2 * SIZE), KERN_SUCCESS);
    vm_address_t lo = pair, hi = pair + SIZE;
    CHECK_KR(vm_allocate(SELF, &lo, SIZE, FALSE), KERN_SUCCESS);
    CHECK_KR(vm_allocate(SELF, &hi, SIZE, FALSE), KERN_SUCCESS);
    memset((void *)pair, 'l', 2 * SIZE);
    mach_port_t port = test_new_port(true);
    CHECK_KR(send_region(port, (void *)pair, 2 * SIZE, true, 0), MACH_MSG_SUCCESS);
    CHECK(!test_mapped((void *)pair) && !test_mapped((void *)hi));
    movable_bytes(&now);
    CHECK(now == before);
    size_t size = 0;
    char *got = test_receive_region(port, &size);
    CHECK(got != NULL && size == 2 * SIZE && test_all(got, size, 'l'));
    vm_deallocate(SELF, (vm_address_t)got, size);
    CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);

    /* (Behind libmach's back: its memfd stays until the fork.) */
    char *raw = allocate(SIZE, 'n');
    CHECK(munmap(raw, SIZE) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        _exit(test_mapped(a) || test_mapped((void *)pair) || test_mapped((void *)hi) ||
              test_mapped(raw));
    }
    test_wait_ok(pid);
    CHECK(!test_mapped(a) && !test_mapped((void *)pair) && !test_mapped((void *)hi) &&
          !test_mapped(raw));
    int after;
    movable_bytes(&after);
    CHECK(after == before);
}

/* Cut, protected or wired, a region holds its memory once: the pages
 * deallocated leave its memfd, vm_protect leaves it shared, vm_wire
 * copies it into memory that stays wired. */
static void memory_held_once(void)
{
    int count;
    long long base = movable_bytes(&count);
    char *a = allocate(SIZE, 'h');
    CHECK(movable_bytes(&count) - base == (long long)SIZE);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a, SIZE - 4096), KERN_SUCCESS);
    CHECK(movable_bytes(&count) - base == 4096);
    CHECK(test_all(a + SIZE - 4096, 4096, 'h'));
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a + SIZE - 4096, 4096), KERN_SUCCESS);
    CHECK(movable_bytes(&count) == base);

    a = allocate(SIZE, 'i');
    uint64_t ino = inode_at(a);
    CHECK_KR(vm_protect(SELF, (vm_address_t)a, 4096, FALSE, VM_PROT_NONE), KERN_SUCCESS);
    memset(a + 4096, 'j', SIZE - 4096);
    CHECK(inode_at(a + 4096) == ino && movable_bytes(&count) - base == (long long)SIZE);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a, SIZE), KERN_SUCCESS);

    a = allocate(64 * 1024, 'w');
    long locked = test_status_kb(getpid(), "VmLck");
    kern_return_t kr = vm_wire(mach_host_self(), SELF, (vm_address_t)a, 64 * 1024,
                               VM_PROT_READ | VM_PROT_WRITE);
    if (kr == KERN_SUCCESS) {
        CHECK(!linux_shared(a) && test_all(a, 64 * 1024, 'w'));
        CHECK(!TEST_LOCKS_SEEN || test_status_kb(getpid(), "VmLck") >= locked + 64);
        pid_t pid = fork();
        if (pid == 0) {
            _exit(0);
        }
        test_wait_ok(pid);
        CHECK(!TEST_LOCKS_SEEN || test_status_kb(getpid(), "VmLck") >= locked + 64);
        CHECK_KR(vm_wire(mach_host_self(), SELF, (vm_address_t)a, 64 * 1024, VM_PROT_NONE),
                 KERN_SUCCESS);
    } else {
        CHECK_KR(kr, KERN_NO_ACCESS); /* RLIMIT_MEMLOCK: nothing to see */
    }
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a, 64 * 1024), KERN_SUCCESS);
}

/* Pages set VM_INHERIT_NONE stay out of children whatever a movable
 * region went through: a fork, vm_wire, a SHARE of its other half. */
static void none_stays_none(void)
{
    char *whole = allocate(SIZE, '1');
    char *wired = allocate(64 * 1024, '2');
    char *halves = allocate(SIZE, '3');
    CHECK_KR(vm_inherit(SELF, (vm_address_t)whole, SIZE, VM_INHERIT_NONE), KERN_SUCCESS);
    CHECK_KR(vm_inherit(SELF, (vm_address_t)wired, 64 * 1024, VM_INHERIT_NONE), KERN_SUCCESS);
    kern_return_t kr = vm_wire(mach_host_self(), SELF, (vm_address_t)wired, 64 * 1024,
                               VM_PROT_READ);
    CHECK(kr == KERN_SUCCESS || kr == KERN_NO_ACCESS);
    CHECK_KR(vm_inherit(SELF, (vm_address_t)halves, SIZE / 2, VM_INHERIT_NONE), KERN_SUCCESS);
    CHECK_KR(vm_inherit(SELF, (vm_address_t)halves + SIZE / 2, SIZE / 2, VM_INHERIT_SHARE),
             KERN_SUCCESS);
    mach_port_t child_task;
    int to_parent[2];
    CHECK(pipe(to_parent) == 0);
    pid_t pid = hell_fork(MACH_PORT_NULL, &child_task);
    if (pid == 0) {
        /* (The child may have mapped something of its own there since.) */
        bool ok = !holds(whole, SIZE, '1') && !holds(wired, 64 * 1024, '2') &&
                  !holds(halves, SIZE / 2, '3') && test_all(halves + SIZE / 2, SIZE / 2, '3');
        memset(halves + SIZE / 2, '4', SIZE / 2); /* shared with the parent */
        char token = 0;
        if (write(to_parent[1], &token, 1) != 1) {
            ok = false;
        }
        _exit(ok ? 0 : 1);
    }
    CHECK(pid > 0);
    char token;
    CHECK(read(to_parent[0], &token, 1) == 1);
    test_wait_ok(pid);
    CHECK(test_all(halves + SIZE / 2, SIZE / 2, '4') && test_all(halves, SIZE / 2, '3'));
    mach_port_deallocate(SELF, child_task);
    close(to_parent[0]);
    close(to_parent[1]);
    if (kr == KERN_SUCCESS) {
        vm_wire(mach_host_self(), SELF, (vm_address_t)wired, 64 * 1024, VM_PROT_NONE);
    }
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)whole, SIZE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)wired, 64 * 1024), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)halves, SIZE), KERN_SUCCESS);
}

/* A task started with an exec leaves the creator's regions movable. */
static void spawn_leaves_regions_movable(void)
{
    char *a = allocate(SIZE, 'e');
    uint64_t ino = inode_at(a);
    mach_port_t child_task;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n > 0 ? n : 0] = '\0';
    pid_t pid = hell_spawn(self, (char *[]){self, "--exit", NULL}, MACH_PORT_NULL, &child_task);
    CHECK(pid > 0);
    if (pid > 0) {
        test_wait_ok(pid);
        mach_port_deallocate(SELF, child_task);
    }
    CHECK(inode_at(a) == ino);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a, SIZE), KERN_SUCCESS);
}

/* Movable regions take at most a quarter of the descriptors. */
static void descriptors_left_to_ports(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit low = {.rlim_cur = 200, .rlim_max = 200};
        if (setrlimit(RLIMIT_NOFILE, &low) != 0) {
            _exit(2);
        }
        for (int i = 0; i < 100; i++) {
            vm_address_t a = 0;
            if (vm_allocate(SELF, &a, 64 * 1024, TRUE) != KERN_SUCCESS) {
                _exit(3);
            }
        }
        int count;
        movable_bytes(&count);
        _exit(count > 0 && count <= 50 ? 0 : 4);
    }
    test_wait_ok(pid);
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        return 0; /* spawn_leaves_regions_movable's child */
    }
    (void)mig_get_reply_port();
    int fds_before = test_count_fds();
    mach_port_t port = test_new_port(true);
    move_passes_the_memory(port);
    copy_then_move(port);
    changed_regions_are_copied(port);
    failed_move_keeps_the_region();
    region_is_private();
    inheritance();
    many_regions();
    unmapped_regions_stay_gone();
    memory_held_once();
    spawn_leaves_regions_movable();
    none_stays_none();
    descriptors_left_to_ports();
    CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);
    CHECK(test_count_fds() <= fds_before + 1); /* + the maps' queries */
    return test_done("movable");
}
