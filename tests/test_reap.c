/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Received regions released off the caller's path (libmach/vm_reap.h): a
 * large region that came out of line as a copy is the receiver's own,
 * private and writable, never changed by the sender's later writes; its
 * vm_deallocate vacates the range at once, whatever is left to free runs
 * later, a child never inherits what is left, and a region cut or
 * replaced behind libmach's back is unmapped as it is.  The sender's side:
 * copies sent to another task that frees them at once (the sender's
 * close of each memfd may then be the last, and goes to vm_reap's
 * thread) arrive whole and leave the sender no descriptor.
 */
#include <dirent.h>
#include <hell.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* Whether ADDR is mapped from a memfd (its path in /proc/self/maps),
 * with its device and inode there in *DEV and *INO. */
static bool memfd_at(const void *addr, char dev[16], uint64_t *ino)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        uint64_t start, end;
        char path[256] = "";
        found = sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %*s %15s %" SCNu64 " %255s", &start,
                       &end, dev, ino, path) == 5 &&
                start <= (uintptr_t)addr && (uintptr_t)addr < end &&
                strncmp(path, "/memfd:", 7) == 0;
    }
    fclose(f);
    return found;
}

/* Whether a mapping of device DEV and inode INO is left. */
static bool file_mapped(const char *dev, uint64_t ino)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        char d[16];
        uint64_t i;
        found = sscanf(line, "%*s %*s %*s %15s %" SCNu64, d, &i) == 2 && i == ino &&
                strcmp(d, dev) == 0;
    }
    fclose(f);
    return found;
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
    char dev[16];
    uint64_t ino = 0;
    CHECK(memfd_at(got, dev, &ino));
    memset(got, 'c', SIZE);
    CHECK(test_all(got, SIZE, 'c') && test_all(src, SIZE, 'b'));
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)got, SIZE), KERN_SUCCESS);
    CHECK(!test_mapped(got) && !test_mapped(got + SIZE - 1));
    vm_address_t again = (vm_address_t)got;
    CHECK_KR(vm_allocate(SELF, &again, SIZE, FALSE), KERN_SUCCESS);
    CHECK(again == (vm_address_t)got && test_all(got, SIZE, 0));
    CHECK_KR(vm_deallocate(SELF, again, SIZE), KERN_SUCCESS);
    for (int i = 0; i < 200 && file_mapped(dev, ino); i++) {
        struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(!file_mapped(dev, ino));
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

/* How many descriptors of this process are memfds of sent copies. */
static int sent_copies_open(void)
{
    DIR *dir = opendir("/proc/self/fd");
    CHECK(dir != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char link[64];
        ssize_t len = readlinkat(dirfd(dir), e->d_name, link, sizeof link - 1);
        if (len > 0) {
            link[len] = '\0';
            n += strncmp(link, "/memfd:hell-ool", 15) == 0;
        }
    }
    closedir(dir);
    return n;
}

/* A task that receives regions on a port it sends back through BOOT,
 * checks that each holds the byte its message id says, frees it at once
 * and answers on BOOT; it exits 1 at the first wrong byte. */
static pid_t start_sink(mach_port_t *sink, mach_port_t *boot)
{
    *boot = test_new_port(true);
    mach_port_t child_task;
    pid_t pid = hell_fork(*boot, &child_task);
    if (pid == 0) {
        mach_port_t parent, in = test_new_port(false);
        CHECK_KR(task_get_bootstrap_port(SELF, &parent), KERN_SUCCESS);
        CHECK(test_send_port(parent, in, MACH_MSG_TYPE_MAKE_SEND, 1) == MACH_MSG_SUCCESS);
        for (;;) {
            union {
                struct test_ool_msg m;
                char buf[256];
            } r;
            if (mach_msg(&r.m.head, MACH_RCV_MSG, 0, sizeof r, in, 0, MACH_PORT_NULL) !=
                MACH_MSG_SUCCESS) {
                _exit(2);
            }
            size_t size = r.m.type.msgtl_number;
            if (!test_all(r.m.addr, size, (char)r.m.head.msgh_id)) {
                _exit(1);
            }
            vm_deallocate(SELF, (vm_address_t)r.m.addr, size);
            mach_msg_header_t done = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
                                      .msgh_remote_port = parent};
            mach_msg(&done, MACH_SEND_MSG, sizeof done, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
        }
    }
    CHECK(pid > 0);
    CHECK_KR(mach_port_deallocate(SELF, child_task), KERN_SUCCESS);
    mach_msg_type_name_t type;
    CHECK(test_receive_port(*boot, 10000, sink, &type) == MACH_MSG_SUCCESS);
    return pid;
}

/* Copies sent one after the other to a task that frees each before it
 * answers: each arrives whole, and no memfd of them stays open here. */
static void sent_copies_leave_nothing(void)
{
    mach_port_t sink = MACH_PORT_NULL, boot = MACH_PORT_NULL;
    pid_t pid = start_sink(&sink, &boot);
    char *src = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(src != MAP_FAILED);
    for (int i = 0; i < 24; i++) {
        char c = (char)('a' + i);
        memset(src, c, SIZE);
        struct test_ool_msg m = {
            .head = {.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) |
                                  MACH_MSGH_BITS_COMPLEX,
                     .msgh_remote_port = sink,
                     .msgh_id = c},
            .type = {.msgtl_name = MACH_MSG_TYPE_BYTE, .msgtl_size = 8, .msgtl_number = SIZE,
                     .msgtl_inline = FALSE, .msgtl_longform = TRUE},
            .addr = src,
        };
        CHECK(mach_msg(&m.head, MACH_SEND_MSG, sizeof m, 0, MACH_PORT_NULL, 0,
                       MACH_PORT_NULL) == MACH_MSG_SUCCESS);
        mach_msg_header_t done;
        CHECK(mach_msg(&done, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof done, boot, 10000,
                       MACH_PORT_NULL) == MACH_MSG_SUCCESS);
    }
    for (int i = 0; i < 200 && sent_copies_open() > 0; i++) {
        struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(sent_copies_open() == 0);
    CHECK(waitpid(pid, NULL, WNOHANG) == 0); /* the sink found every byte right */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    munmap(src, SIZE);
    CHECK_KR(mach_port_deallocate(SELF, sink), KERN_SUCCESS);
    CHECK_KR(mach_port_destroy(SELF, boot), KERN_SUCCESS);
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
    sent_copies_leave_nothing();
    CHECK_KR(mach_port_destroy(SELF, port), KERN_SUCCESS);
    CHECK(test_count_fds() <= fds_before + 1); /* + the maps' queries */
    return test_done("reap");
}
