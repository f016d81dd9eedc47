/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Memory objects through an external pager in another process (the
 * sample file pager, pager/filepager.c), with GNU Mach's protocol:
 *
 * - vm_map of an object: one memory_object_init, data asked only for
 *   pages touched, and pages cached (a second touch asks nothing);
 * - cleaning returns exactly the pages written, and nothing the second
 *   time; the file gets the data; flushing makes the next touch ask again;
 * - pages supplied write-locked: a write becomes memory_object_data_unlock
 *   and goes on once the pager unlocks; lock_request locks cached pages;
 * - pages locked against reading (supplied so, or locked by lock_request):
 *   every access waits for the unlock, asked once, through every mapping
 *   and for a copy, vm_read and an out-of-line send too; cleaning and flushing still return their dirty
 *   data; a pager refusing the unlock (data_error) or never answering it
 *   gives the memory error;
 * - a copy mapping is private both ways; a mapping past the end of the
 *   file reads zeros (data_unavailable); vm_msync returns what was
 *   written in its range;
 * - the last unmapping of an object that may not be cached returns its
 *   dirty pages, then terminates it;
 * - failures: a pager answering data_error, a pager that never answers
 *   (the pager timeout), and a pager killed in the middle of a request:
 *   the faulting thread gets EXC_BAD_ACCESS / KERN_MEMORY_ERROR at the
 *   faulting address, or, without an exception port, its task dies of
 *   SIGBUS as a Linux program would;
 * - vm_map's own rules: anonymous memory, masks, fixed addresses, bad
 *   arguments;
 * - vm_region names every mapping of an object, in this task or another,
 *   by the name port its pager got with memory_object_init;
 * - task_create with inherited memory and hell_fork give the new task
 *   our mappings of objects as their inheritance says (SHARE, COPY,
 *   NONE), from one cache, and so does a child's own hell_fork to its
 *   child; a pager killed under them fails the pages
 *   that never came, in each;
 * - all of it again in an instance, where machd is the kernel of every
 *   object, with what only an instance has: two tasks mapping one object
 *   from one cache (a write in one seen by the other, one
 *   memory_object_init, cleaning and flushing reaching both), and a task
 *   killed while it maps an object (the object ends with the last
 *   mapping).
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <fcntl.h>
#include <hell.h>
#include <mach.h>
#include <mach/exception.h>
#include <mach/memory_object.h>
#include <mach/thread_status.h>
#include <mach/vm_sync.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "filepager.h"
#include "protocol.h"
#include "hell_exc.h"
#include "test.h"

boolean_t exc_server(mach_msg_header_t *in, mach_msg_header_t *out);

/* Under AddressSanitizer a memory error (SIGBUS) is ours to turn into an
 * exception: its own handler would otherwise be installed first. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "handle_sigbus=0:detect_leaks=0";
}

#define SELF mach_task_self()
#define PAGE 4096u
#define FILE_PAGES 32

/* ---- the pager process, driven over a socket ---- */

/* With the mode of pager_spawn: the object may not be cached. */
#define PAGER_UNCACHED 0x100
/* With the mode of pager_spawn: the pager keeps no right to the control
 * port between requests. */
#define PAGER_NO_CONTROL 0x200
/* With the mode of pager_spawn: the pager checks, at terminate, that the
 * control port's no-senders notification comes exactly when due. */
#define PAGER_CHECK_NO_SENDERS 0x400
/* With the mode of pager_spawn: the test keeps the receive right of the
 * pager's bootstrap port (pager_proc.boot), on which CMD_NAME answers. */
#define PAGER_KEEP_BOOT 0x800

enum { CMD_STATS, CMD_SYNC, CMD_FLUSH, CMD_LOCK_WRITES, CMD_MODE, CMD_SUPPLY_LOCK,
       CMD_OBJECT_SYNC, CMD_NAME, CMD_SET_LOCK, CMD_UNLOCK_MODE };

struct cmd {
    int op;
    int arg;
    uint64_t offset, size;
};

struct answer {
    kern_return_t kr;
    unsigned inits, terminates, requests, pages_requested, unlocks, returns, pages_returned,
        dirty_returned, bad_controls, ns_exact, ns_wrong;
    vm_prot_t unlock_access; /* of the last data_unlock */
};

struct pager_proc {
    pid_t pid;
    int sock;
    mach_port_t object; /* send right to the memory object */
    mach_port_t boot;   /* with PAGER_KEEP_BOOT: receive right of its bootstrap port */
};

static void pager_main(int fd, int sock, int mode)
{
    struct filepager *p = filepager_create(dup(fd), true);
    mach_port_t boot = MACH_PORT_NULL;
    if (p == NULL || task_get_bootstrap_port(SELF, &boot) != KERN_SUCCESS) {
        _exit(2);
    }
    p->mode = mode & 3;
    p->uncached = (mode & PAGER_UNCACHED) != 0;
    p->keeps_no_control = (mode & PAGER_NO_CONTROL) != 0;
    p->checks_no_senders = (mode & PAGER_CHECK_NO_SENDERS) != 0;
    if (test_send_port(boot, p->object, MACH_MSG_TYPE_MAKE_SEND, 1) != MACH_MSG_SUCCESS ||
        !filepager_start(p)) {
        _exit(3);
    }
    struct cmd c;
    while (read(sock, &c, sizeof c) == sizeof c) {
        struct answer a = {.kr = KERN_SUCCESS};
        switch (c.op) {
        case CMD_SYNC:
            a.kr = filepager_sync(p, c.offset, c.size, false, 5000);
            break;
        case CMD_FLUSH:
            a.kr = filepager_sync(p, c.offset, c.size, true, 5000);
            break;
        case CMD_LOCK_WRITES:
            a.kr = filepager_lock_writes(p, c.offset, c.size, 5000);
            break;
        case CMD_OBJECT_SYNC:
            a.kr = filepager_object_sync(p, c.offset, c.size, c.arg != 0);
            break;
        case CMD_MODE:
            p->mode = c.arg;
            break;
        case CMD_SUPPLY_LOCK:
            p->supply_lock = c.arg;
            break;
        case CMD_NAME:
            /* The name port memory_object_init gave, on the bootstrap port. */
            a.kr = p->name == MACH_PORT_NULL
                       ? KERN_INVALID_ARGUMENT
                       : (kern_return_t)test_send_port(boot, p->name, MACH_MSG_TYPE_COPY_SEND, 2);
            break;
        case CMD_SET_LOCK:
            a.kr = filepager_set_lock(p, c.offset, c.size, c.arg, 5000);
            break;
        case CMD_UNLOCK_MODE:
            p->unlock_mode = c.arg;
            break;
        default:
            break;
        }
        a.inits = p->stats.inits;
        a.terminates = p->stats.terminates;
        a.requests = p->stats.requests;
        a.pages_requested = p->stats.pages_requested;
        a.unlocks = p->stats.unlocks;
        a.unlock_access = (vm_prot_t)p->stats.unlock_access;
        a.returns = p->stats.returns;
        a.pages_returned = p->stats.pages_returned;
        a.dirty_returned = p->stats.dirty_returned;
        a.bad_controls = p->stats.bad_controls;
        a.ns_exact = p->stats.ns_exact;
        a.ns_wrong = p->stats.ns_wrong;
        if (write(sock, &a, sizeof a) != sizeof a) {
            break;
        }
    }
    _exit(0);
}

static struct pager_proc pager_spawn(int fd, int mode)
{
    struct pager_proc pp = {.pid = -1, .sock = -1};
    mach_port_t rcv = test_new_port(true);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    pid_t pid = hell_fork(rcv, NULL);
    if (pid == 0) {
        close(sv[0]);
        pager_main(fd, sv[1], mode);
    }
    CHECK(pid > 0);
    close(sv[1]);
    pp.pid = pid;
    pp.sock = sv[0];
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(rcv, 10000, &pp.object, &type), MACH_MSG_SUCCESS);
    if (mode & PAGER_KEEP_BOOT) {
        pp.boot = rcv;
    } else {
        mach_port_mod_refs(SELF, rcv, MACH_PORT_RIGHT_RECEIVE, -1);
        mach_port_deallocate(SELF, rcv);
    }
    return pp;
}

static struct answer pager_cmd(struct pager_proc *pp, int op, uint64_t offset, uint64_t size,
                               int arg)
{
    struct cmd c = {.op = op, .arg = arg, .offset = offset, .size = size};
    struct answer a = {.kr = KERN_FAILURE};
    CHECK(write(pp->sock, &c, sizeof c) == sizeof c);
    CHECK(read(pp->sock, &a, sizeof a) == sizeof a);
    return a;
}

static void pager_end(struct pager_proc *pp)
{
    if (MACH_PORT_VALID(pp->boot)) {
        mach_port_mod_refs(SELF, pp->boot, MACH_PORT_RIGHT_RECEIVE, -1);
        mach_port_deallocate(SELF, pp->boot);
    }
    mach_port_deallocate(SELF, pp->object);
    close(pp->sock); /* the pager exits */
    test_wait_ok(pp->pid);
}

/* A file of FILE_PAGES pages, page I filled with 'A' + I; its descriptor. */
static int make_file(void)
{
    char path[] = "/tmp/hell-pager-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    char page[PAGE];
    for (int i = 0; i < FILE_PAGES; i++) {
        memset(page, 'A' + i, sizeof page);
        CHECK(pwrite(fd, page, sizeof page, (off_t)i * PAGE) == (ssize_t)PAGE);
    }
    return fd;
}

static char file_byte(int fd, uint64_t at)
{
    char c = 0;
    CHECK(pread(fd, &c, 1, (off_t)at) == 1);
    return c;
}

static volatile char *map_object(mach_port_t object, vm_offset_t offset, vm_size_t size,
                                 boolean_t copy)
{
    vm_address_t a = 0;
    CHECK_KR(vm_map(SELF, &a, size, 0, TRUE, object, offset, copy,
                    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_ALL, VM_INHERIT_COPY),
             KERN_SUCCESS);
    return (volatile char *)a;
}

/* ---- sharing, caching, cleaning, flushing ---- */

static void read_write_clean_flush(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    volatile char *m = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);

    /* Data comes only for pages touched, once. */
    CHECK(m[0] == 'A' && m[PAGE * 3 + 17] == 'D');
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.inits == 1);
    unsigned asked = a.pages_requested;
    CHECK(asked >= 2 && asked < FILE_PAGES);
    CHECK(m[1] == 'A' && m[PAGE * 3] == 'D');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).pages_requested == asked);

    /* Cleaning returns the pages written, and only them. */
    m[2 * PAGE + 5] = 'x';
    m[9 * PAGE] = 'y';
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK_KR(a.kr, KERN_SUCCESS);
    CHECK(a.dirty_returned == 2 && a.pages_returned == 2);
    CHECK(file_byte(fd, 2 * PAGE + 5) == 'x' && file_byte(fd, 9 * PAGE) == 'y');
    CHECK(file_byte(fd, 2 * PAGE + 6) == 'C');
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 2); /* clean now */
    m[2 * PAGE] = 'z'; /* written again after the clean: dirty again */
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 3);
    CHECK(file_byte(fd, 2 * PAGE) == 'z');

    /* vm_msync sends back what was written in its range only. */
    m[6 * PAGE] = 'v';
    m[11 * PAGE] = 'u';
    CHECK_KR(vm_msync(SELF, (vm_address_t)m + 6 * PAGE, PAGE, VM_SYNC_SYNCHRONOUS),
             KERN_SUCCESS);
    for (int i = 0; i < 500 && file_byte(fd, 6 * PAGE) != 'v'; i++) {
        usleep(1000); /* on its way when vm_msync returns */
    }
    CHECK(file_byte(fd, 6 * PAGE) == 'v' && file_byte(fd, 11 * PAGE) == 'L');
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 5); /* 6 by vm_msync, then 11 */

    /* vm_object_sync on the object's name port (the pager's, from init)
     * sends back every cached page of the range widened to whole pages,
     * written or not; on any other kernel port it is refused. */
    m[7 * PAGE + 3] = 's';
    unsigned returned = a.pages_returned;
    a = pager_cmd(&pp, CMD_OBJECT_SYNC, 7 * PAGE + 100, 10, 0);
    CHECK_KR(a.kr, KERN_SUCCESS);
    for (int i = 0; i < 500 && file_byte(fd, 7 * PAGE + 3) != 's'; i++) {
        usleep(1000); /* on its way when the call returns */
    }
    CHECK(file_byte(fd, 7 * PAGE + 3) == 's');
    a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.pages_returned == returned + 1 && a.dirty_returned == 6);
    CHECK_KR(vm_object_sync(SELF, 0, PAGE, FALSE, TRUE, FALSE), KERN_INVALID_ARGUMENT);

    /* Flushing drops the cache: the next touch asks again, and what the
     * file now says comes back. */
    CHECK(m[4 * PAGE] == 'E');
    char changed = 'Q';
    CHECK(pwrite(fd, &changed, 1, 4 * PAGE) == 1);
    CHECK(m[4 * PAGE] == 'E'); /* cached */
    m[5 * PAGE] = 'w';
    a = pager_cmd(&pp, CMD_FLUSH, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 7); /* the dirty page went back first */
    asked = a.pages_requested;
    CHECK(m[4 * PAGE] == 'Q');
    CHECK(m[5 * PAGE] == 'w');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).pages_requested > asked);
    /* A page supplied again after the flush: its first write is seen. */
    m[4 * PAGE + 1] = 'R';
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 8 && file_byte(fd, 4 * PAGE + 1) == 'R');

    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, FILE_PAGES * PAGE), KERN_SUCCESS);
    pager_end(&pp);
    close(fd);
}

/* Runs of pages supplied at once (sequential reads) go into the cache
 * through the mapping that faulted: the other mappings see them too, and
 * the first write to each is still seen, after a flush as well. */
static void sequential_runs(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    volatile char *m = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
    volatile char *other = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
    for (int i = 0; i < 16; i++) {
        CHECK(m[i * PAGE + 9] == 'A' + i);
    }
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.requests < 16); /* runs of several pages */
    for (int i = 0; i < 16; i++) {
        CHECK(other[i * PAGE] == 'A' + i);
    }
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).requests == a.requests);
    m[12 * PAGE] = 'x';
    other[13 * PAGE] = 'y';
    CHECK(other[12 * PAGE] == 'x' && m[13 * PAGE] == 'y');
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 2);
    CHECK(file_byte(fd, 12 * PAGE) == 'x' && file_byte(fd, 13 * PAGE) == 'y');

    /* Supplied again after a flush, write-locked this time. */
    pager_cmd(&pp, CMD_SUPPLY_LOCK, 0, 0, VM_PROT_WRITE);
    CHECK_KR(pager_cmd(&pp, CMD_FLUSH, 0, FILE_PAGES * PAGE, 0).kr, KERN_SUCCESS);
    for (int i = 0; i < 16; i++) {
        CHECK(m[i * PAGE] == (i == 12 ? 'x' : i == 13 ? 'y' : 'A' + i));
    }
    m[14 * PAGE] = 'z';
    other[15 * PAGE] = 'w';
    a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.unlocks == 2);
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 4);
    CHECK(file_byte(fd, 14 * PAGE) == 'z' && file_byte(fd, 15 * PAGE) == 'w');

    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, FILE_PAGES * PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)other, FILE_PAGES * PAGE), KERN_SUCCESS);
    pager_end(&pp);
    close(fd);
}

/* ---- write locks and data_unlock ---- */

static void write_locks(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    pager_cmd(&pp, CMD_SUPPLY_LOCK, 0, 0, VM_PROT_WRITE);
    volatile char *m = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
    CHECK(m[7 * PAGE] == 'H');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 0);
    m[7 * PAGE] = 'h'; /* locked: asks the pager, which unlocks */
    CHECK(m[7 * PAGE] == 'h');
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.unlocks == 1);
    m[7 * PAGE + 1] = 'i'; /* unlocked now */
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 1);
    /* A write that faults the page in asks for it, then to unlock it. */
    m[8 * PAGE] = 'j';
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 2);

    /* lock_request locks cached pages again. */
    pager_cmd(&pp, CMD_SUPPLY_LOCK, 0, 0, VM_PROT_NONE);
    CHECK(m[10 * PAGE] == 'K');
    m[10 * PAGE] = 'k';
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 2);
    CHECK_KR(pager_cmd(&pp, CMD_LOCK_WRITES, 0, FILE_PAGES * PAGE, 0).kr, KERN_SUCCESS);
    CHECK(m[10 * PAGE] == 'k'); /* reads go on */
    m[10 * PAGE] = 'l';
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 3);
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 3); /* pages 7, 8 and 10 */
    CHECK(file_byte(fd, 7 * PAGE + 1) == 'i' && file_byte(fd, 10 * PAGE) == 'l');

    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, FILE_PAGES * PAGE), KERN_SUCCESS);
    pager_end(&pp);
    close(fd);
}

/* ---- read locks ---- */

/* A thread reading a byte. */
struct reader {
    volatile char *at;
    char got;
    atomic_int done; /* 1 once read */
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->got = *r->at;
    atomic_store(&r->done, 1);
    return NULL;
}

/* Reads PP's pager's stats, then again every 10 ms (at most TRIES more
 * times) until DONE(stats, WANT) holds; returns the last stats read. */
static struct answer wait_stats(struct pager_proc *pp, int tries,
                                bool (*done)(const struct answer *a, unsigned want),
                                unsigned want)
{
    struct answer a = pager_cmd(pp, CMD_STATS, 0, 0, 0);
    for (int i = 0; i < tries && !done(&a, want); i++) {
        usleep(10000);
        a = pager_cmd(pp, CMD_STATS, 0, 0, 0);
    }
    return a;
}

static bool unlocks_reached(const struct answer *a, unsigned unlocks)
{
    return a->unlocks >= unlocks;
}

static bool terminates_reached(const struct answer *a, unsigned terminates)
{
    return a->terminates >= terminates;
}

/* Whether a no-senders notification reached the pager, right or wrong. */
static bool notified(const struct answer *a, unsigned unused)
{
    return a->ns_exact + a->ns_wrong != 0;
}

/* Waits at most 5 s for PP's pager to have seen UNLOCKS data_unlocks;
 * returns its stats then. */
static struct answer wait_unlocks(struct pager_proc *pp, unsigned unlocks)
{
    return wait_stats(pp, 500, unlocks_reached, unlocks);
}

/* Whether this user's userfaultfd sees faults from the kernel (system
 * calls touching a page not in the cache), not only from user mode. */
static bool uffd_sees_kernel_faults(void)
{
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
        return false;
    }
    close(uffd);
    return true;
}

/* Sends the page at ADDR out of line to a port of ours, receives it and
 * returns its second byte. */
static char ool_second_byte(vm_address_t addr)
{
    struct ool_msg {
        mach_msg_header_t h;
        mach_msg_type_t t;
        vm_offset_t addr;
    };
    union {
        struct ool_msg m;
        char buf[512];
    } out = {0}, in = {0};
    mach_port_t port = test_new_port(true);
    out.m.h = (mach_msg_header_t){
        .msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX,
        .msgh_size = sizeof out.m, .msgh_remote_port = port, .msgh_id = 77};
    out.m.t = (mach_msg_type_t){.msgt_name = MACH_MSG_TYPE_BYTE, .msgt_size = 8,
                                .msgt_number = PAGE, .msgt_inline = FALSE};
    out.m.addr = addr;
    CHECK_KR(mach_msg(&out.m.h, MACH_SEND_MSG, sizeof out.m, 0, MACH_PORT_NULL,
                      MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    CHECK_KR(mach_msg(&in.m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof in, port, 5000,
                      MACH_PORT_NULL),
             MACH_MSG_SUCCESS);
    char got = 0;
    if (in.m.h.msgh_id == 77 && !in.m.t.msgt_inline && in.m.t.msgt_number == PAGE) {
        got = ((char *)in.m.addr)[1];
        CHECK_KR(vm_deallocate(SELF, in.m.addr, PAGE), KERN_SUCCESS);
    }
    mach_port_mod_refs(SELF, port, MACH_PORT_RIGHT_RECEIVE, -1);
    mach_port_deallocate(SELF, port);
    return got;
}

static void read_locks(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    pager_cmd(&pp, CMD_SUPPLY_LOCK, 0, 0, VM_PROT_READ);
    pager_cmd(&pp, CMD_UNLOCK_MODE, 0, 0, FILEPAGER_UNLOCK_HOLD);
    volatile char *m = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
    volatile char *other = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);

    /* Supplied locked against reading: a read waits for the unlock,
     * asked once, and then reads the data. */
    struct reader r = {.at = m + 5 * PAGE + 7};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, reader_main, &r) == 0);
    struct answer a = wait_unlocks(&pp, 1);
    CHECK(a.unlocks == 1 && a.unlock_access == VM_PROT_READ);
    usleep(50000);
    CHECK(atomic_load(&r.done) == 0);
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 1);
    CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 5 * PAGE, PAGE, VM_PROT_NONE).kr, KERN_SUCCESS);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(r.got == 'F' && atomic_load(&r.done) == 1);
    CHECK(m[5 * PAGE] == 'F' && other[5 * PAGE + 1] == 'F');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 1);

    /* Locked after it was read and written: the next read, through any
     * mapping, asks again; cleaning returns what was written, without
     * an unlock. */
    pager_cmd(&pp, CMD_SUPPLY_LOCK, 0, 0, VM_PROT_NONE);
    pager_cmd(&pp, CMD_UNLOCK_MODE, 0, 0, FILEPAGER_UNLOCK_GRANT);
    CHECK(m[9 * PAGE] == 'J');
    m[9 * PAGE + 1] = 'j';
    CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 8 * PAGE, 3 * PAGE, VM_PROT_READ).kr, KERN_SUCCESS);
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 1 && a.unlocks == 1);
    CHECK(file_byte(fd, 9 * PAGE + 1) == 'j');
    CHECK(other[9 * PAGE + 1] == 'j');
    a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.unlocks == 2 && a.unlock_access == VM_PROT_READ);
    CHECK(m[9 * PAGE] == 'J' && pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 2);

    /* A write asks to read and write. */
    CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 9 * PAGE, PAGE, VM_PROT_READ | VM_PROT_WRITE).kr,
             KERN_SUCCESS);
    m[9 * PAGE + 2] = 'w';
    a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.unlocks == 3 && a.unlock_access == (VM_PROT_READ | VM_PROT_WRITE));
    CHECK(other[9 * PAGE + 2] == 'w');

    /* A copy of a page locked against reading asks too. */
    CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 9 * PAGE, PAGE, VM_PROT_READ).kr, KERN_SUCCESS);
    volatile char *copy = map_object(pp.object, 8 * PAGE, 2 * PAGE, TRUE);
    CHECK(copy[0] == 'I' && copy[PAGE + 1] == 'j' && copy[PAGE + 2] == 'w');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 4);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)copy, 2 * PAGE), KERN_SUCCESS);
    /* And vm_read, and an out-of-line send, of one: the kernel's reads
     * wait as for a page not yet supplied (which an unprivileged user's
     * userfaultfd does not let them do). */
    unsigned unlocks = 4;
    if (uffd_sees_kernel_faults()) {
        CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 9 * PAGE, PAGE, VM_PROT_READ).kr, KERN_SUCCESS);
        vm_offset_t data = 0;
        mach_msg_type_number_t n = 0;
        CHECK_KR(vm_read(SELF, (vm_address_t)m + 9 * PAGE, PAGE, &data, &n), KERN_SUCCESS);
        CHECK(n == PAGE && ((char *)data)[1] == 'j' && ((char *)data)[2] == 'w');
        CHECK_KR(vm_deallocate(SELF, data, n), KERN_SUCCESS);
        CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 5);
        CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 9 * PAGE, PAGE, VM_PROT_READ).kr, KERN_SUCCESS);
        CHECK(ool_second_byte((vm_address_t)m + 9 * PAGE) == 'j');
        CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 6);
        unlocks = 6;
    }

    /* Flushed while locked against reading: its dirty data goes back
     * first, and comes again on the next read, unlocked. */
    m[9 * PAGE + 3] = 'f';
    CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 9 * PAGE, PAGE, VM_PROT_READ).kr, KERN_SUCCESS);
    a = pager_cmd(&pp, CMD_FLUSH, 0, FILE_PAGES * PAGE, 0);
    CHECK_KR(a.kr, KERN_SUCCESS);
    CHECK(file_byte(fd, 9 * PAGE + 3) == 'f' && file_byte(fd, 9 * PAGE + 2) == 'w');
    CHECK(other[9 * PAGE + 3] == 'f' && m[9 * PAGE + 2] == 'w');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == unlocks);

    /* A lock on execution alone locks out nothing (on x86 GNU Mach's
     * faults ask for reading, or reading and writing). */
    CHECK(m[10 * PAGE] == 'K');
    CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 10 * PAGE, PAGE, VM_PROT_EXECUTE).kr, KERN_SUCCESS);
    CHECK(m[10 * PAGE] == 'K' && other[10 * PAGE] == 'K');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == unlocks);

    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, FILE_PAGES * PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)other, FILE_PAGES * PAGE), KERN_SUCCESS);
    pager_end(&pp);
    close(fd);
}

/* ---- copy mappings and pages past the end ---- */

static void copies_and_zeros(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    volatile char *shared = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
    shared[PAGE] = 'S'; /* in the cache, not yet in the file */
    volatile char *copy = map_object(pp.object, PAGE, 4 * PAGE, TRUE);
    CHECK(copy[0] == 'S' && copy[PAGE] == 'C' && copy[3 * PAGE + 9] == 'E');
    copy[PAGE] = 'c';
    shared[3 * PAGE] = 's';
    CHECK(shared[2 * PAGE] == 'C' && copy[2 * PAGE] == 's' - 's' + 'D');
    CHECK(copy[2 * PAGE] == 'D');
    struct answer a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 2); /* the shared pages 1 and 3, not the copy's */
    CHECK(file_byte(fd, 2 * PAGE) == 'C');

    /* Past the end of the file: zeros. */
    volatile char *past = map_object(pp.object, FILE_PAGES * PAGE, 2 * PAGE, FALSE);
    CHECK(past[0] == 0 && past[2 * PAGE - 1] == 0);

    CHECK_KR(vm_deallocate(SELF, (vm_address_t)copy, 4 * PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)past, 2 * PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)shared, FILE_PAGES * PAGE), KERN_SUCCESS);
    pager_end(&pp);
    close(fd);
}

/* A pager that keeps no right to the control port between requests:
 * each data_request brings a live send right all the same.  (After the
 * first request the control port travels by reference, its send end
 * kept by the pager's object port, and nothing else comes: the counting
 * descriptor the first right brought stays with the pager as a spare.) */
static void control_without_rights(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL | PAGER_NO_CONTROL);
    volatile char *m = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
    for (int i = FILE_PAGES - 1; i >= 0; i -= 3) {
        CHECK(m[(size_t)i * PAGE + 5] == 'A' + i);
    }
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.inits == 1 && a.requests >= FILE_PAGES / 3 && a.bad_controls == 0);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, FILE_PAGES * PAGE), KERN_SUCCESS);
    pager_end(&pp);
    close(fd);
}

/* ---- the end of an object ---- */

/* Waits up to 5 s for PP's pager to have seen TERMINATES terminations;
 * returns how many it saw. */
static unsigned wait_terminates(struct pager_proc *pp, unsigned terminates)
{
    return wait_stats(pp, 500, terminates_reached, terminates).terminates;
}

/* Maps SIZE bytes of PP's object, touches every page, unmaps it. */
static void touch_all(struct pager_proc *pp, vm_size_t size)
{
    volatile char *m = map_object(pp->object, 0, size, FALSE);
    unsigned sum = 0;
    for (vm_size_t at = 0; at < size; at += PAGE) {
        sum += (unsigned char)m[at];
    }
    (void)sum;
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, size), KERN_SUCCESS);
}

/* Cached objects hold at most HELL_OBJECT_CACHE_MB of memory together
 * (read once per process: checked in a child of its own, with 1 MiB):
 * the oldest go first, and an object alone past the bound goes too. */
static void cache_bounded(void)
{
    pid_t pid = hell_fork(MACH_PORT_NULL, NULL);
    if (pid == 0) {
        setenv("HELL_OBJECT_CACHE_MB", "1", 1);
        int fd = make_file();
        struct pager_proc a = pager_spawn(fd, FILEPAGER_NORMAL);
        touch_all(&a, FILE_PAGES * PAGE); /* 128 KiB cached */
        usleep(100000);
        CHECK(pager_cmd(&a, CMD_STATS, 0, 0, 0).terminates == 0);
        struct pager_proc b = pager_spawn(fd, FILEPAGER_NORMAL);
        touch_all(&b, 2u << 20); /* 2 MiB, zeros past the file */
        CHECK(wait_terminates(&a, 1) == 1);
        CHECK(wait_terminates(&b, 1) == 1);
        struct pager_proc c = pager_spawn(fd, FILEPAGER_NORMAL);
        touch_all(&c, 4 * PAGE);
        usleep(100000);
        CHECK(pager_cmd(&c, CMD_STATS, 0, 0, 0).terminates == 0);
        /* Newest first: each pager holds the sockets of those before. */
        pager_end(&c);
        pager_end(&b);
        pager_end(&a);
        close(fd);
        _exit(test_failures == 0 ? 0 : 1);
    }
    CHECK(pid > 0);
    test_wait_ok(pid);
}

/* An object its pager does not let be cached ends with its last mapping:
 * its dirty pages go back, then memory_object_terminate. */
static void terminate_at_last_unmapping(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL | PAGER_UNCACHED);
    volatile char *m = map_object(pp.object, 0, 4 * PAGE, FALSE);
    volatile char *m2 = map_object(pp.object, 2 * PAGE, 2 * PAGE, FALSE);
    m[PAGE] = 't';
    CHECK(m2[0] == 'C');
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, 4 * PAGE), KERN_SUCCESS);
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.terminates == 0 && a.dirty_returned == 0); /* still mapped once */
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m2 + PAGE, PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m2, PAGE), KERN_SUCCESS);
    for (int i = 0; i < 500 && a.terminates == 0; i++) {
        usleep(1000);
        a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    }
    CHECK(a.terminates == 1 && a.dirty_returned == 1 && a.inits == 1);
    CHECK(file_byte(fd, PAGE) == 't');
    pager_end(&pp);
    close(fd);
}

/* The control port's send rights are counted exactly once the pager
 * holds its receive right (memory_object_terminate hands it over), though
 * after the first request they came by reference, without a counting
 * descriptor: a pager holding no send right sees no-senders at once, one
 * holding the right it kept since init only once it drops it.  Pages are
 * asked one by one, so that many rights come by reference first. */
static void control_counted_after_terminate(void)
{
    for (int keeps_none = 0; keeps_none < 2; keeps_none++) {
        int fd = make_file();
        struct pager_proc pp =
            pager_spawn(fd, FILEPAGER_NORMAL | PAGER_UNCACHED | PAGER_CHECK_NO_SENDERS |
                                (keeps_none ? PAGER_NO_CONTROL : 0));
        volatile char *m = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
        for (int i = FILE_PAGES - 1; i >= 0; i -= 2) {
            CHECK(m[(size_t)i * PAGE] == 'A' + i);
        }
        CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, FILE_PAGES * PAGE), KERN_SUCCESS);
        CHECK(wait_terminates(&pp, 1) == 1);
        struct answer a = wait_stats(&pp, 600, notified, 0);
        CHECK(a.requests >= FILE_PAGES / 2 && a.bad_controls == 0);
        CHECK(a.ns_exact == 1 && a.ns_wrong == 0);
        pager_end(&pp);
        close(fd);
    }
}

/* ---- another task mapping the same object ---- */

/* In a task made by hell_fork(RCV): the object, sent back by the parent
 * (give_object) on a port we send it on our bootstrap port.  Exits when
 * it does not come. */
static mach_port_t child_receive_object(void)
{
    mach_port_t boot = MACH_PORT_NULL, object = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    if (task_get_bootstrap_port(SELF, &boot) != KERN_SUCCESS) {
        _exit(2);
    }
    mach_port_t mine = test_new_port(true);
    if (test_send_port(boot, mine, MACH_MSG_TYPE_MAKE_SEND, 2) != MACH_MSG_SUCCESS ||
        test_receive_port(mine, 10000, &object, &type) != MACH_MSG_SUCCESS) {
        _exit(3);
    }
    return object;
}

/* The parent's half: sends PP's object to the child that calls
 * child_receive_object, then lets RCV go. */
static void give_object(mach_port_t rcv, struct pager_proc *pp)
{
    mach_port_t child_port = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(rcv, 10000, &child_port, &type), MACH_MSG_SUCCESS);
    CHECK_KR(test_send_port(child_port, pp->object, MACH_MSG_TYPE_COPY_SEND, 3),
             MACH_MSG_SUCCESS);
    mach_port_deallocate(SELF, child_port);
    mach_port_mod_refs(SELF, rcv, MACH_PORT_RIGHT_RECEIVE, -1);
    mach_port_deallocate(SELF, rcv);
}

/* A peer: a task mapping the whole file's object, reading and writing
 * it as told over a socket. */
struct peer {
    pid_t pid;
    int sock;
};

struct peer_cmd {
    char op; /* 'r' read, 'w' write */
    char byte;
    uint32_t offset;
};

/* The peer's loop: reads and writes the SIZE bytes at M as told on
 * SOCK, until it hangs up; then exits. */
static __attribute__((noreturn)) void peer_serve(int sock, volatile char *m, uint32_t size)
{
    struct peer_cmd c;
    while (read(sock, &c, sizeof c) == sizeof c && c.offset < size) {
        if (c.op == 'w') {
            m[c.offset] = c.byte;
        }
        char got = m[c.offset];
        if (write(sock, &got, 1) != 1) {
            break;
        }
    }
    _exit(0);
}

static struct peer peer_spawn(struct pager_proc *pp)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    mach_port_t rcv = test_new_port(true);
    pid_t pid = hell_fork(rcv, NULL);
    if (pid == 0) {
        close(sv[0]);
        mach_port_t object = child_receive_object();
        vm_address_t a = 0;
        if (vm_map(SELF, &a, FILE_PAGES * PAGE, 0, TRUE, object, 0, FALSE,
                   VM_PROT_READ | VM_PROT_WRITE, VM_PROT_ALL, VM_INHERIT_NONE) != KERN_SUCCESS) {
            _exit(5);
        }
        peer_serve(sv[1], (volatile char *)a, FILE_PAGES * PAGE);
    }
    CHECK(pid > 0);
    close(sv[1]);
    give_object(rcv, pp);
    return (struct peer){.pid = pid, .sock = sv[0]};
}

/* A peer maps the object itself: the mapping at M (SIZE bytes) is made
 * one that hell_fork does not give it (its default, a COPY, would be
 * copied whole at once, asking the pager for every page). */
static void peer_inherits_nothing(volatile char *m, vm_size_t size)
{
    CHECK_KR(vm_inherit(SELF, (vm_address_t)m, size, VM_INHERIT_NONE), KERN_SUCCESS);
}

/* Has PEER read (or write, when OP is 'w') the byte at OFFSET of its
 * mapping; returns what it reads there. */
static char peer_do(struct peer *peer, char op, uint32_t offset, char byte)
{
    struct peer_cmd c = {.op = op, .byte = byte, .offset = offset};
    char got = 0;
    CHECK(write(peer->sock, &c, sizeof c) == sizeof c);
    CHECK(read(peer->sock, &got, 1) == 1);
    return got;
}

/* Two tasks map one object from one cache (the instance's): one
 * memory_object_init, a write in one is seen by the other at once,
 * cleaning returns what both wrote and only that, flushing reaches both. */
static void shared_between_tasks(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    volatile char *m = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
    peer_inherits_nothing(m, FILE_PAGES * PAGE);
    struct peer peer = peer_spawn(&pp);
    CHECK(peer_do(&peer, 'r', 3 * PAGE, 0) == 'D');
    CHECK(m[3 * PAGE] == 'D');
    m[5 * PAGE + 1] = 's';
    CHECK(peer_do(&peer, 'r', 5 * PAGE + 1, 0) == 's');
    CHECK(peer_do(&peer, 'w', 6 * PAGE, 'p') == 'p');
    CHECK(m[6 * PAGE] == 'p');
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.inits == 1);
    unsigned asked = a.pages_requested;
    CHECK(asked >= 3 && asked < FILE_PAGES);
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK_KR(a.kr, KERN_SUCCESS);
    CHECK(a.dirty_returned == 2 && a.pages_returned == 2); /* pages 5 and 6 */
    CHECK(file_byte(fd, 5 * PAGE + 1) == 's' && file_byte(fd, 6 * PAGE) == 'p');
    /* Written again by the peer after the clean: dirty again, once. */
    CHECK(peer_do(&peer, 'w', 5 * PAGE, 'q') == 'q');
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.dirty_returned == 3);
    /* A flush reaches both mappings: the file's new data comes back. */
    char changed = 'N';
    CHECK(pwrite(fd, &changed, 1, 3 * PAGE) == 1);
    CHECK(m[3 * PAGE] == 'D');
    a = pager_cmd(&pp, CMD_FLUSH, 0, FILE_PAGES * PAGE, 0);
    CHECK(peer_do(&peer, 'r', 3 * PAGE, 0) == 'N');
    CHECK(m[3 * PAGE] == 'N' && m[5 * PAGE] == 'q');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).inits == 1);
    close(peer.sock);
    test_wait_ok(peer.pid);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, FILE_PAGES * PAGE), KERN_SUCCESS);
    pager_end(&pp);
    close(fd);
}

/* A page locked against reading is locked for every task mapping it: a
 * read in either asks the pager to unlock, and reads what the other
 * wrote. */
static void read_locks_between_tasks(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    volatile char *m = map_object(pp.object, 0, FILE_PAGES * PAGE, FALSE);
    peer_inherits_nothing(m, FILE_PAGES * PAGE);
    struct peer peer = peer_spawn(&pp);
    CHECK(m[2 * PAGE] == 'C');
    CHECK(peer_do(&peer, 'w', 2 * PAGE + 1, 'c') == 'c');
    CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 2 * PAGE, PAGE, VM_PROT_READ).kr, KERN_SUCCESS);
    CHECK(peer_do(&peer, 'r', 2 * PAGE + 1, 0) == 'c');
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.unlocks == 1 && a.unlock_access == VM_PROT_READ);
    m[2 * PAGE + 2] = 'm';
    CHECK_KR(pager_cmd(&pp, CMD_SET_LOCK, 2 * PAGE, PAGE, VM_PROT_READ).kr, KERN_SUCCESS);
    CHECK(peer_do(&peer, 'r', 2 * PAGE + 2, 0) == 'm');
    CHECK(m[2 * PAGE + 1] == 'c');
    a = pager_cmd(&pp, CMD_SYNC, 0, FILE_PAGES * PAGE, 0);
    CHECK(a.unlocks == 2 && a.dirty_returned == 1 && file_byte(fd, 2 * PAGE + 2) == 'm');
    close(peer.sock);
    test_wait_ok(peer.pid);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, FILE_PAGES * PAGE), KERN_SUCCESS);
    pager_end(&pp);
    close(fd);
}

/* A task killed while it maps an object: the object ends with the last
 * mapping, its own, and the page it wrote goes back first. */
static void mapping_task_dies(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL | PAGER_UNCACHED);
    volatile char *m = map_object(pp.object, 0, 4 * PAGE, FALSE);
    peer_inherits_nothing(m, 4 * PAGE);
    struct peer peer = peer_spawn(&pp);
    CHECK(peer_do(&peer, 'w', 2 * PAGE, 'k') == 'k');
    CHECK(m[2 * PAGE] == 'k');
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, 4 * PAGE), KERN_SUCCESS);
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.terminates == 0); /* the peer still maps it */
    kill(peer.pid, SIGKILL);
    int status;
    CHECK(waitpid(peer.pid, &status, 0) == peer.pid && WIFSIGNALED(status));
    close(peer.sock);
    for (int i = 0; i < 500 && a.terminates == 0; i++) {
        usleep(1000);
        a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    }
    CHECK(a.terminates == 1 && a.dirty_returned == 1 && a.inits == 1);
    CHECK(file_byte(fd, 2 * PAGE) == 'k');
    pager_end(&pp);
    close(fd);
}

/* ---- machd's VM service and a task talking nonsense ---- */

/* Sends REQ on SOCK and returns the code of machd's reply, or 1 when the
 * connection closed instead. */
static int vm_service_call(int sock, struct hell_vm_request req)
{
    req.magic = HELL_PROTO_MAGIC;
    struct hell_vm_reply reply;
    CHECK(send(sock, &req, sizeof req, 0) == sizeof req);
    ssize_t n = recv(sock, &reply, sizeof reply, 0);
    if (n == 0) {
        return 1;
    }
    CHECK(n == sizeof reply && reply.magic == HELL_PROTO_MAGIC);
    return reply.kr;
}

/* Requests that name nothing of the task's get KERN_INVALID_ARGUMENT; a
 * message that is no request ends the connection; machd goes on. */
static void vm_service_rejects_nonsense(void)
{
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0 && errno == EPERM) {
        uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    }
    struct uffdio_api api = {.api = UFFD_API};
    CHECK(uffd >= 0 && ioctl(uffd, UFFDIO_API, &api) == 0);
    int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", getenv(HELL_INSTANCE_ENV));
    CHECK(connect(sock, (struct sockaddr *)&addr, sizeof addr) == 0);
    struct hell_request hello = {.magic = HELL_PROTO_MAGIC, .op = HELL_OP_VM};
    char control[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = &hello, .iov_len = sizeof hello};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    *c = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof(int)), .cmsg_level = SOL_SOCKET,
                          .cmsg_type = SCM_RIGHTS};
    memcpy(CMSG_DATA(c), &uffd, sizeof uffd);
    CHECK(sendmsg(sock, &msg, 0) == sizeof hello);
    close(uffd);

    CHECK_KR(vm_service_call(sock, (struct hell_vm_request){.op = HELL_VM_ADD, .handle = 7,
                                                             .start = 1 << 20, .end = 2 << 20}),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_service_call(sock, (struct hell_vm_request){.op = HELL_VM_COPY, .handle = 7,
                                                             .end = PAGE}),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_service_call(sock, (struct hell_vm_request){.op = HELL_VM_SYNC, .start = 0,
                                                             .end = 1 << 20}),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_service_call(sock, (struct hell_vm_request){.op = HELL_VM_RELEASE, .handle = 3}),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_service_call(sock, (struct hell_vm_request){.op = HELL_VM_NAME,
                                                             .start = 1 << 20}),
             KERN_INVALID_ADDRESS); /* no object there: no name, and no right follows */
    CHECK_KR(vm_service_call(sock, (struct hell_vm_request){.op = 99}), KERN_INVALID_ARGUMENT);
    /* ENTER wants a pager right next: the datagram that comes instead
     * (an UNMAP) is taken for it and found wanting, and ENTER fails. */
    struct hell_vm_request enter = {.magic = HELL_PROTO_MAGIC, .op = HELL_VM_ENTER, .end = PAGE};
    CHECK(send(sock, &enter, sizeof enter, 0) == sizeof enter);
    CHECK_KR(vm_service_call(sock, (struct hell_vm_request){.op = HELL_VM_UNMAP}),
             KERN_INVALID_ARGUMENT);
    /* Not a request: machd hangs up. */
    char junk[5] = "junk";
    CHECK(send(sock, junk, sizeof junk, 0) == sizeof junk);
    char byte;
    CHECK(recv(sock, &byte, 1, 0) == 0);
    close(sock);
}

/* ---- failures ---- */

/* The victim's exception handler: its exit status says what came. */
kern_return_t catch_exception_raise(mach_port_t port, mach_port_t thread, mach_port_t task,
                                    integer_t exception, integer_t code,
                                    rpc_long_integer_t subcode)
{
    (void)port;
    (void)subcode;
    mach_port_deallocate(SELF, thread);
    mach_port_deallocate(SELF, task);
    _exit(exception == EXC_BAD_ACCESS && code == KERN_MEMORY_ERROR ? 42 : 43);
}

static mach_port_t exc_port;

static void *exc_main(void *arg)
{
    (void)arg;
    mach_msg_server(exc_server, 0, exc_port);
    return NULL;
}

/* A task that gets PP's object from us, maps it and touches a page:
 * with an exception port when HANDLER (it exits 42 on EXC_BAD_ACCESS /
 * KERN_MEMORY_ERROR), else it dies of the touch.  TIMEOUT_MS > 0 sets
 * its pager timeout.  Returns its pid. */
static pid_t victim_with(struct pager_proc *pp, bool handler, int timeout_ms)
{
    mach_port_t rcv = test_new_port(true);
    pid_t pid = hell_fork(rcv, NULL);
    if (pid == 0) {
        if (timeout_ms > 0) {
            char buf[16];
            snprintf(buf, sizeof buf, "%d", timeout_ms);
            setenv("HELL_PAGER_TIMEOUT_MS", buf, 1);
        }
        mach_port_t object = child_receive_object();
        if (handler) {
            exc_port = test_new_port(true);
            pthread_t t;
            if (task_set_special_port(SELF, TASK_EXCEPTION_PORT, exc_port) != KERN_SUCCESS ||
                pthread_create(&t, NULL, exc_main, NULL) != 0) {
                _exit(4);
            }
        }
        vm_address_t a = 0;
        if (vm_map(SELF, &a, 4 * PAGE, 0, TRUE, object, 0, FALSE, VM_PROT_READ,
                   VM_PROT_READ, VM_INHERIT_NONE) != KERN_SUCCESS) {
            _exit(5);
        }
        volatile char c = ((volatile char *)a)[PAGE + 3];
        (void)c;
        _exit(6); /* the touch must not succeed */
    }
    CHECK(pid > 0);
    give_object(rcv, pp);
    return pid;
}

/* Waits at most 20 s for PID; returns its wait status, or -1. */
static int wait_bounded(pid_t pid)
{
    int status;
    for (int i = 0; i < 2000; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return status;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void failures(void)
{
    int fd = make_file();

    /* data_error: the exception, then, without a handler, SIGBUS. */
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_ERROR);
    int status = wait_bounded(victim_with(&pp, true, 0));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
    pager_end(&pp);
    pp = pager_spawn(fd, FILEPAGER_ERROR);
    status = wait_bounded(victim_with(&pp, false, 0));
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS);
    pager_end(&pp);

    /* A pager refusing to unlock a page it supplied locked against
     * reading (data_error): the same. */
    for (int handler = 1; handler >= 0; handler--) {
        pp = pager_spawn(fd, FILEPAGER_NORMAL);
        pager_cmd(&pp, CMD_SUPPLY_LOCK, 0, 0, VM_PROT_READ);
        pager_cmd(&pp, CMD_UNLOCK_MODE, 0, 0, FILEPAGER_UNLOCK_ERROR);
        status = wait_bounded(victim_with(&pp, handler, 0));
        CHECK(handler ? WIFEXITED(status) && WEXITSTATUS(status) == 42
                      : WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS);
        CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 1);
        pager_end(&pp);
    }
    /* ... or never answering: the wait ends at the timeout. */
    pp = pager_spawn(fd, FILEPAGER_NORMAL);
    pager_cmd(&pp, CMD_SUPPLY_LOCK, 0, 0, VM_PROT_READ);
    pager_cmd(&pp, CMD_UNLOCK_MODE, 0, 0, FILEPAGER_UNLOCK_HOLD);
    status = wait_bounded(victim_with(&pp, true, 300));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).unlocks == 1);
    pager_end(&pp);

    /* A pager that never answers: the wait ends at the timeout. */
    pp = pager_spawn(fd, FILEPAGER_SILENT);
    status = wait_bounded(victim_with(&pp, true, 300));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
    pager_end(&pp);

    /* A pager killed while a thread waits for it: the wait ends at once
     * (the timeout is far). */
    pp = pager_spawn(fd, FILEPAGER_SILENT);
    pid_t v = victim_with(&pp, false, 600000);
    /* Let the victim fault and wait, then kill the pager. */
    for (int i = 0; i < 100 && pager_cmd(&pp, CMD_STATS, 0, 0, 0).requests == 0; i++) {
        usleep(10000);
    }
    kill(pp.pid, SIGKILL);
    waitpid(pp.pid, NULL, 0);
    status = wait_bounded(v);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS);
    mach_port_deallocate(SELF, pp.object);
    close(pp.sock);
    close(fd);
}

/* ---- vm_map's rules ---- */

static void map_rules(void)
{
    vm_address_t a = 0;
    CHECK_KR(vm_map(SELF, &a, 0, 0, TRUE, MACH_PORT_NULL, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL,
                    VM_INHERIT_COPY),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_map(SELF, &a, PAGE, 0, TRUE, MACH_PORT_NULL, 0, FALSE, 8, VM_PROT_ALL,
                    VM_INHERIT_COPY),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_map(SELF, &a, PAGE, 0, TRUE, MACH_PORT_NULL, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL,
                    7),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_map(SELF, &a, PAGE, 0, TRUE, SELF, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL,
                    VM_INHERIT_COPY),
             KERN_INVALID_ARGUMENT); /* a kernel port is no pager */
    mach_port_t port = test_new_port(false);
    CHECK_KR(vm_map(port, &a, PAGE, 0, TRUE, MACH_PORT_NULL, 0, FALSE, VM_PROT_ALL,
                    VM_PROT_ALL, VM_INHERIT_COPY),
             MACH_SEND_INVALID_DEST); /* no send right to it */
    /* Anonymous, aligned by the mask, zero-filled, protections kept. */
    a = 0;
    vm_address_t mask = (1u << 20) - 1;
    CHECK_KR(vm_map(SELF, &a, 3 * PAGE + 1, mask, TRUE, MACH_PORT_NULL, 0, FALSE, VM_PROT_READ,
                    VM_PROT_READ | VM_PROT_WRITE, VM_INHERIT_SHARE),
             KERN_SUCCESS);
    CHECK(a != 0 && (a & mask) == 0 && ((volatile char *)a)[4 * PAGE - 1] == 0);
    vm_address_t r = a;
    vm_size_t size;
    vm_prot_t prot, max;
    vm_inherit_t inherit;
    boolean_t shared;
    mach_port_t name;
    vm_offset_t offset;
    CHECK_KR(vm_region(SELF, &r, &size, &prot, &max, &inherit, &shared, &name, &offset),
             KERN_SUCCESS);
    CHECK(r == a && size == 4 * PAGE && prot == VM_PROT_READ &&
          max == (VM_PROT_READ | VM_PROT_WRITE) && inherit == VM_INHERIT_SHARE &&
          name == MACH_PORT_NULL);
    CHECK_KR(vm_protect(SELF, a, PAGE, FALSE, VM_PROT_ALL), KERN_PROTECTION_FAILURE);
    /* Fixed: taken, misaligned for the mask, outside the user range. */
    vm_address_t b = a;
    CHECK_KR(vm_map(SELF, &b, PAGE, 0, FALSE, MACH_PORT_NULL, 0, FALSE, VM_PROT_ALL,
                    VM_PROT_ALL, VM_INHERIT_COPY),
             KERN_NO_SPACE);
    CHECK_KR(vm_deallocate(SELF, a, 4 * PAGE), KERN_SUCCESS);
    b = a + PAGE;
    CHECK_KR(vm_map(SELF, &b, PAGE, mask, FALSE, MACH_PORT_NULL, 0, FALSE, VM_PROT_ALL,
                    VM_PROT_ALL, VM_INHERIT_COPY),
             KERN_NO_SPACE);
    b = a + PAGE + 123;
    CHECK_KR(vm_map(SELF, &b, PAGE, 0, FALSE, MACH_PORT_NULL, 0, FALSE, VM_PROT_ALL,
                    VM_PROT_ALL, VM_INHERIT_COPY),
             KERN_SUCCESS);
    CHECK(b == a + PAGE);
    CHECK_KR(vm_deallocate(SELF, b, PAGE), KERN_SUCCESS);
    b = 0x800000000000ull - PAGE;
    CHECK_KR(vm_map(SELF, &b, 2 * PAGE, 0, FALSE, MACH_PORT_NULL, 0, FALSE, VM_PROT_ALL,
                    VM_PROT_ALL, VM_INHERIT_COPY),
             KERN_INVALID_ADDRESS);
    mach_port_mod_refs(SELF, port, MACH_PORT_RIGHT_RECEIVE, -1);
}

/* ---- task_create with inherited memory ---- */

/* mov (%rdi),%rax; mov %rax,(%rsi); 1: pause; jmp 1b */
static const uint8_t inherit_code[] = {0x48, 0x8b, 0x07, 0x48, 0x89, 0x06,
                                       0xf3, 0x90, 0xeb, 0xfc};

/* Memory the creator and the new task share (MAP_SHARED, which fork
 * shares): the code the new task runs and the words it moves. */
struct inherit_shared {
    uint8_t code[64];
    volatile uint64_t seen[2]; /* what the new task read */
    volatile uint64_t give[2]; /* what it writes */
    uint8_t stack[4][4096] __attribute__((aligned(16)));
};

/* Runs a thread in TASK that copies the word at FROM to TO, on stack
 * STACK of SH.  Returns what thread_resume did. */
static kern_return_t inherit_start(mach_port_t task, struct inherit_shared *sh, int stack,
                                   uint64_t from, uint64_t to)
{
    mach_port_t th;
    CHECK_KR(thread_create(task, &th), KERN_SUCCESS);
    struct i386_thread_state regs;
    mach_msg_type_number_t count = i386_THREAD_STATE_COUNT;
    CHECK_KR(thread_get_state(th, i386_THREAD_STATE, (thread_state_t)&regs, &count),
             KERN_SUCCESS);
    regs.rip = (uint64_t)(uintptr_t)sh->code;
    regs.ursp = (uint64_t)(uintptr_t)(sh->stack[stack] + sizeof sh->stack[stack] - 64);
    regs.rdi = from;
    regs.rsi = to;
    CHECK_KR(thread_set_state(th, i386_THREAD_STATE, (thread_state_t)&regs, count),
             KERN_SUCCESS);
    kern_return_t kr = thread_resume(th);
    CHECK_KR(mach_port_deallocate(SELF, th), KERN_SUCCESS);
    return kr;
}

/* inherit_start, the thread resumed. */
static void inherit_move(mach_port_t task, struct inherit_shared *sh, int stack,
                         uint64_t from, uint64_t to)
{
    CHECK_KR(inherit_start(task, sh, stack, from, to), KERN_SUCCESS);
}

/* Waits (at most 5 s) for *WORD to be WANT; returns it. */
static uint64_t inherit_wait(volatile uint64_t *word, uint64_t want)
{
    for (int i = 0; i < 5000 && *word != want; i++) {
        usleep(1000);
    }
    return *word;
}

/* task_create with inherited memory gives the new task our mappings of
 * an object as their inheritance says (GNU Mach's vm_map_fork): SHARE
 * the object itself, pages shared both ways; COPY our view as it was at
 * task_create, writes private on each side; NONE nothing.  One cache
 * (one memory_object_init), and the object ends once both are gone. */
static void inherited_by_task_create(void)
{
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL | PAGER_UNCACHED);
    volatile char *m = map_object(pp.object, 0, 12 * PAGE, FALSE);
    vm_address_t share = (vm_address_t)m, copy = share + 4 * PAGE, none = share + 8 * PAGE;
    CHECK_KR(vm_inherit(SELF, share, 4 * PAGE, VM_INHERIT_SHARE), KERN_SUCCESS);
    CHECK_KR(vm_inherit(SELF, copy, 4 * PAGE, VM_INHERIT_COPY), KERN_SUCCESS);
    CHECK_KR(vm_inherit(SELF, none, 4 * PAGE, VM_INHERIT_NONE), KERN_SUCCESS);
    /* Setting the inheritance leaves our own mapping the object's. */
    CHECK(m[4 * PAGE] == 'E');
    *(volatile uint64_t *)share = 0x5151;
    *(volatile uint64_t *)copy = 0xc0c0;
    CHECK(m[8 * PAGE] == 'I');

    struct inherit_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE | PROT_EXEC,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    memcpy(sh->code, inherit_code, sizeof inherit_code);
    sh->give[0] = 0xaaaa;
    sh->give[1] = 0xbbbb;

    mach_port_t child = MACH_PORT_NULL;
    CHECK_KR(task_create(SELF, TRUE, &child), KERN_SUCCESS);
    /* Our writes after task_create: seen through SHARE, not COPY. */
    *(volatile uint64_t *)share = 0x5252;
    *(volatile uint64_t *)copy = 0xc1c1;
    inherit_move(child, sh, 0, share, (uint64_t)(uintptr_t)&sh->seen[0]);
    inherit_move(child, sh, 1, copy, (uint64_t)(uintptr_t)&sh->seen[1]);
    CHECK(inherit_wait(&sh->seen[0], 0x5252) == 0x5252);
    CHECK(inherit_wait(&sh->seen[1], 0xc0c0) == 0xc0c0);
    /* Its writes: seen here through SHARE, its own through COPY. */
    inherit_move(child, sh, 2, (uint64_t)(uintptr_t)&sh->give[0], share + 8);
    inherit_move(child, sh, 3, (uint64_t)(uintptr_t)&sh->give[1], copy + 8);
    CHECK(inherit_wait((volatile uint64_t *)(share + 8), 0xaaaa) == 0xaaaa);
    usleep(20000);
    CHECK(*(volatile uint64_t *)(copy + 8) == 0x4545454545454545ull); /* 'E' */
    vm_offset_t data = 0;
    mach_msg_type_number_t n = 0;
    bool read = false;
    for (int i = 0; i < 5000 && !read; i++) {
        CHECK_KR(vm_read(child, copy, PAGE, &data, &n), KERN_SUCCESS);
        read = ((uint64_t *)data)[1] == 0xbbbb;
        CHECK(((uint64_t *)data)[0] == 0xc0c0);
        CHECK_KR(vm_deallocate(SELF, data, n), KERN_SUCCESS);
        if (!read) {
            usleep(1000);
        }
    }
    CHECK(read);
    /* NONE: nothing there in the new task. */
    CHECK_KR(vm_read(child, none, PAGE, &data, &n), KERN_INVALID_ADDRESS);
    /* What it maps keeps the attributes. */
    vm_address_t addr = share;
    vm_size_t size = 0;
    vm_prot_t cur = 0, max = 0;
    vm_inherit_t inherit = 0;
    boolean_t shared = FALSE;
    mach_port_t name = MACH_PORT_NULL;
    vm_offset_t offset = 0;
    CHECK_KR(vm_region(child, &addr, &size, &cur, &max, &inherit, &shared, &name, &offset),
             KERN_SUCCESS);
    CHECK(addr == share && size == 4 * PAGE && inherit == VM_INHERIT_SHARE &&
          cur == (VM_PROT_READ | VM_PROT_WRITE) && max == VM_PROT_ALL);
    CHECK(MACH_PORT_VALID(name)); /* the object's name port (region_names) */
    CHECK_KR(mach_port_deallocate(SELF, name), KERN_SUCCESS);
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).inits == 1);

    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    test_await_dead_name(child, 5000);
    CHECK_KR(vm_deallocate(SELF, share, 12 * PAGE), KERN_SUCCESS);
    CHECK(wait_terminates(&pp, 1) == 1);
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.inits == 1 && a.terminates == 1);
    /* The writes through SHARE went back; the new task's COPY did not. */
    char word[8];
    CHECK(pread(fd, word, sizeof word, 8) == 8 && memcmp(word, "\xaa\xaa", 2) == 0);
    CHECK(file_byte(fd, 4 * PAGE + 8) == 'E');
    munmap(sh, sizeof *sh);
    pager_end(&pp);
    close(fd);
}

/* ---- vm_region's object names ---- */

/* The name vm_region gives for the region of TASK at ADDR (a send right
 * of ours, or MACH_PORT_NULL). */
static mach_port_t region_name(mach_port_t task, vm_address_t addr)
{
    vm_size_t size;
    vm_prot_t prot, max;
    vm_inherit_t inherit;
    boolean_t shared;
    mach_port_t name = MACH_PORT_DEAD;
    vm_offset_t offset;
    CHECK_KR(vm_region(task, &addr, &size, &prot, &max, &inherit, &shared, &name, &offset),
             KERN_SUCCESS);
    return name;
}

/* The name port PP's pager was given by memory_object_init, as we name
 * it (a send right of ours). */
static mach_port_t pager_name(struct pager_proc *pp)
{
    CHECK_KR(pager_cmd(pp, CMD_NAME, 0, 0, 0).kr, KERN_SUCCESS);
    mach_port_t name = MACH_PORT_NULL;
    mach_msg_type_name_t type;
    CHECK_KR(test_receive_port(pp->boot, 10000, &name, &type), MACH_MSG_SUCCESS);
    CHECK(type == MACH_MSG_TYPE_PORT_SEND);
    return name;
}

static mach_port_urefs_t send_refs(mach_port_t name)
{
    mach_port_urefs_t refs = 0;
    CHECK_KR(mach_port_get_refs(SELF, name, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
    return refs;
}

/* vm_region gives, as GNU Mach's vm_object_name, a new send right to the
 * name port of the object mapped: the port the pager got with
 * memory_object_init, one port for every mapping of the object (so one
 * name here), another for another object; no name for anonymous memory.
 * A copy (made at once here, as GNU Mach's vm_object_copy_slowly) has
 * none either: GNU Mach names one only for a copy strategy other than
 * MEMORY_OBJECT_COPY_NONE, whose copy object shadows the source (a known
 * difference, docs/ARCHITECTURE.md). */
static void region_names(void)
{
    int fd = make_file();
    struct pager_proc pa = pager_spawn(fd, FILEPAGER_NORMAL | PAGER_UNCACHED | PAGER_KEEP_BOOT);
    struct pager_proc pb = pager_spawn(fd, FILEPAGER_NORMAL | PAGER_UNCACHED | PAGER_KEEP_BOOT);
    volatile char *a1 = map_object(pa.object, 0, 4 * PAGE, FALSE);
    volatile char *a2 = map_object(pa.object, 8 * PAGE, 4 * PAGE, FALSE);
    volatile char *b = map_object(pb.object, 0, 2 * PAGE, FALSE);
    volatile char *copy = map_object(pa.object, 0, 2 * PAGE, TRUE);
    CHECK(a1[PAGE] == 'B' && a2[0] == 'I' && b[0] == 'A' && copy[0] == 'A');
    vm_address_t anon = 0;
    CHECK_KR(vm_allocate(SELF, &anon, PAGE, TRUE), KERN_SUCCESS);

    mach_port_t n1 = region_name(SELF, (vm_address_t)a1 + PAGE + 5);
    CHECK(MACH_PORT_VALID(n1) && send_refs(n1) == 1);
    mach_port_t n2 = region_name(SELF, (vm_address_t)a2);
    CHECK(n2 == n1 && send_refs(n1) == 2); /* the same port, a reference each */
    mach_port_t nb = region_name(SELF, (vm_address_t)b);
    CHECK(MACH_PORT_VALID(nb) && nb != n1);
    CHECK(region_name(SELF, anon) == MACH_PORT_NULL);
    CHECK(region_name(SELF, (vm_address_t)copy) == MACH_PORT_NULL);
    /* The very ports the pagers were given. */
    mach_port_t pna = pager_name(&pa), pnb = pager_name(&pb);
    CHECK(pna == n1 && pnb == nb && send_refs(n1) == 3);
    CHECK_KR(mach_port_mod_refs(SELF, n1, MACH_PORT_RIGHT_SEND, -3), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(SELF, nb, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);

    /* The same through another task's port: a task created with our
     * memory maps the object itself where it inherits a share of it. */
    CHECK_KR(vm_inherit(SELF, (vm_address_t)a1, 4 * PAGE, VM_INHERIT_SHARE), KERN_SUCCESS);
    mach_port_t child = MACH_PORT_NULL;
    CHECK_KR(task_create(SELF, TRUE, &child), KERN_SUCCESS);
    mach_port_t nc = region_name(child, (vm_address_t)a1);
    CHECK(nc == pager_name(&pa) && send_refs(nc) == 2);
    CHECK(region_name(child, anon) == MACH_PORT_NULL);
    CHECK_KR(mach_port_mod_refs(SELF, nc, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    test_await_dead_name(child, 5000);

    CHECK_KR(vm_deallocate(SELF, anon, PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)copy, 2 * PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a1, 4 * PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)a2, 4 * PAGE), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)b, 2 * PAGE), KERN_SUCCESS);
    /* The names given did not keep the objects: each ends with its last
     * mapping. */
    CHECK(wait_terminates(&pa, 1) == 1 && wait_terminates(&pb, 1) == 1);
    pager_end(&pb); /* (which holds a copy of PA's socket, made before it) */
    pager_end(&pa);
    close(fd);
}

/* The descriptor count once the objects of dead pagers are gone (their
 * deaths come asynchronously): the same count three times 30 ms apart. */
static int settled_fds(void)
{
    int count = test_count_fds(), same = 0;
    for (int i = 0; i < 200 && same < 3; i++) {
        usleep(30000);
        int now = test_count_fds();
        same = now == count ? same + 1 : 0;
        count = now;
    }
    return count;
}

/* A creator with many mappings of objects (1000, more than its handshake
 * socket holds rights at once) creates a task inheriting them all: the
 * new task takes every right before it maps any, so nobody waits on the
 * other (outside an instance the creator serves the new task's
 * mappings).  Each shares the object's page with the creator. */
static void many_inherited_mappings(void)
{
    enum { N = 1000 };
    int fd = make_file();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    static vm_address_t at[N];
    for (int i = 0; i < N; i++) {
        volatile char *m = map_object(pp.object, 0, PAGE, FALSE);
        at[i] = (vm_address_t)m;
        CHECK_KR(vm_inherit(SELF, at[i], PAGE, VM_INHERIT_SHARE), KERN_SUCCESS);
    }
    ((volatile char *)at[N - 1])[1] = 'm';
    mach_port_t child = MACH_PORT_NULL;
    CHECK_KR(task_create(SELF, TRUE, &child), KERN_SUCCESS);
    for (int i = 0; i < N; i += N / 4) {
        vm_offset_t data = 0;
        mach_msg_type_number_t count = 0;
        CHECK_KR(vm_read(child, at[i], PAGE, &data, &count), KERN_SUCCESS);
        CHECK(count == PAGE && ((char *)data)[0] == 'A' && ((char *)data)[1] == 'm');
        vm_deallocate(SELF, data, count);
    }
    CHECK_KR(task_terminate(child), KERN_SUCCESS);
    test_await_dead_name(child, 5000);
    for (int i = 0; i < N; i++) {
        CHECK_KR(vm_deallocate(SELF, at[i], PAGE), KERN_SUCCESS);
    }
    pager_end(&pp);
    close(fd);
}

/* ---- hell_fork's child inherits as task_create's new task does ---- */

/* A child of hell_fork that reads and writes, as peer_do tells it, the
 * SIZE bytes at M, which it inherits from us; *TASK names its task port. */
static struct peer peer_fork(volatile char *m, uint32_t size, mach_port_t *task)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    pid_t pid = hell_fork(MACH_PORT_NULL, task);
    if (pid == 0) {
        close(sv[0]);
        peer_serve(sv[1], m, size);
    }
    CHECK(pid > 0);
    close(sv[1]);
    return (struct peer){.pid = pid, .sock = sv[0]};
}

/* hell_fork's child has our mappings of an object as task_create's new
 * task has them (inherited_by_task_create): SHARE pages shared both
 * ways, COPY our view at hell_fork with its writes its own, NONE
 * nothing.  One cache (one memory_object_init), and nothing left once
 * the child and our mapping are gone. */
static void inherited_by_hell_fork(void)
{
    int fd = make_file();
    int fds = settled_fds();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL | PAGER_UNCACHED);
    volatile char *m = map_object(pp.object, 0, 12 * PAGE, FALSE);
    vm_address_t share = (vm_address_t)m, copy = share + 4 * PAGE, none = share + 8 * PAGE;
    CHECK_KR(vm_inherit(SELF, share, 4 * PAGE, VM_INHERIT_SHARE), KERN_SUCCESS);
    CHECK_KR(vm_inherit(SELF, copy, 4 * PAGE, VM_INHERIT_COPY), KERN_SUCCESS);
    CHECK_KR(vm_inherit(SELF, none, 4 * PAGE, VM_INHERIT_NONE), KERN_SUCCESS);
    m[1] = 's';
    m[4 * PAGE + 1] = 'c';
    CHECK(m[8 * PAGE] == 'I');

    mach_port_t child = MACH_PORT_NULL;
    struct peer peer = peer_fork(m, 12 * PAGE, &child);
    CHECK(MACH_PORT_VALID(child));
    /* Our writes after hell_fork: seen through SHARE, not COPY. */
    m[1] = 'S';
    m[4 * PAGE + 1] = 'C';
    CHECK(peer_do(&peer, 'r', 1, 0) == 'S');
    CHECK(peer_do(&peer, 'r', 4 * PAGE + 1, 0) == 'c');
    /* Pages we never touched: the object's data, in both. */
    CHECK(peer_do(&peer, 'r', 3 * PAGE, 0) == 'D');
    CHECK(peer_do(&peer, 'r', 7 * PAGE, 0) == 'H');
    /* Its writes: seen here through SHARE, its own through COPY. */
    CHECK(peer_do(&peer, 'w', 2, 'x') == 'x');
    CHECK(m[2] == 'x');
    CHECK(peer_do(&peer, 'w', 4 * PAGE + 2, 'y') == 'y');
    CHECK(m[4 * PAGE + 2] == 'E');
    CHECK(peer_do(&peer, 'r', 4 * PAGE + 2, 0) == 'y');
    /* NONE: nothing there in the child. */
    vm_offset_t data = 0;
    mach_msg_type_number_t n = 0;
    CHECK_KR(vm_read(child, none, PAGE, &data, &n), KERN_INVALID_ADDRESS);
    /* What it maps keeps the attributes. */
    vm_address_t addr = share;
    vm_size_t size = 0;
    vm_prot_t cur = 0, max = 0;
    vm_inherit_t inherit = 0;
    boolean_t shared = FALSE;
    mach_port_t name = MACH_PORT_NULL;
    vm_offset_t offset = 0;
    CHECK_KR(vm_region(child, &addr, &size, &cur, &max, &inherit, &shared, &name, &offset),
             KERN_SUCCESS);
    CHECK(addr == share && size == 4 * PAGE && inherit == VM_INHERIT_SHARE &&
          cur == (VM_PROT_READ | VM_PROT_WRITE) && max == VM_PROT_ALL);
    CHECK(MACH_PORT_VALID(name));
    CHECK_KR(mach_port_deallocate(SELF, name), KERN_SUCCESS);
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).inits == 1);

    close(peer.sock); /* the child exits */
    test_wait_ok(peer.pid);
    test_await_dead_name(child, 5000);
    CHECK_KR(vm_deallocate(SELF, share, 12 * PAGE), KERN_SUCCESS);
    CHECK(wait_terminates(&pp, 1) == 1);
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.inits == 1 && a.terminates == 1);
    /* The writes through SHARE went back, and ours through our mapping
     * of the COPY part; the child's COPY did not. */
    CHECK(file_byte(fd, 1) == 'S' && file_byte(fd, 2) == 'x');
    CHECK(file_byte(fd, 4 * PAGE + 1) == 'C' && file_byte(fd, 4 * PAGE + 2) == 'E');
    pager_end(&pp);
    CHECK(settled_fds() == fds);
    close(fd);
}

/* A child of hell_fork that inherits a share of our mapping hell_forks a
 * grandchild that inherits it from the child: all three map the object
 * from one cache (outside an instance ours, which serves the child and,
 * through it, the grandchild; in one machd's), so each sees the others'
 * writes, and the pager has one memory_object_init. */
static void inherited_by_grandchild(void)
{
    int fd = make_file();
    int fds = settled_fds();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL | PAGER_UNCACHED);
    volatile char *m = map_object(pp.object, 0, 4 * PAGE, FALSE);
    CHECK_KR(vm_inherit(SELF, (vm_address_t)m, 4 * PAGE, VM_INHERIT_SHARE), KERN_SUCCESS);
    m[1] = 'p';
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    pid_t pid = hell_fork(MACH_PORT_NULL, NULL);
    if (pid == 0) {
        m[2] = 'c';
        pid_t grandchild = hell_fork(MACH_PORT_NULL, NULL);
        if (grandchild == 0) {
            close(sv[0]);
            peer_serve(sv[1], m, 4 * PAGE);
        }
        close(sv[0]);
        close(sv[1]);
        int status = grandchild > 0 ? wait_bounded(grandchild) : -1;
        /* The grandchild's write (told by the parent), seen here. */
        _exit(status == 0 && m[3 * PAGE] == 'g' ? 0 : 40);
    }
    CHECK(pid > 0);
    close(sv[1]);
    struct peer peer = {.pid = pid, .sock = sv[0]};
    /* The grandchild sees our write and the child's, before and after it
     * was made, and we see its. */
    CHECK(peer_do(&peer, 'r', 1, 0) == 'p');
    CHECK(peer_do(&peer, 'r', 2, 0) == 'c');
    m[PAGE] = 'q';
    CHECK(peer_do(&peer, 'r', PAGE, 0) == 'q');
    CHECK(peer_do(&peer, 'w', 3 * PAGE, 'g') == 'g');
    CHECK(m[3 * PAGE] == 'g');
    CHECK(m[2] == 'c');
    CHECK(pager_cmd(&pp, CMD_STATS, 0, 0, 0).inits == 1);
    close(peer.sock); /* the grandchild exits, then the child */
    test_wait_ok(pid);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, 4 * PAGE), KERN_SUCCESS);
    CHECK(wait_terminates(&pp, 1) == 1);
    struct answer a = pager_cmd(&pp, CMD_STATS, 0, 0, 0);
    CHECK(a.inits == 1 && a.terminates == 1);
    CHECK(file_byte(fd, 2) == 'c' && file_byte(fd, 3 * PAGE) == 'g');
    pager_end(&pp);
    CHECK(settled_fds() == fds);
    close(fd);
}

/* The pager of an object that a child of hell_fork and a task made by
 * task_create inherit a share of is killed: each still reads the pages
 * that were supplied, and touching one that never came is a memory
 * error, of which each dies without an exception port (as a task that
 * maps the object itself, failures).  The object ends with our mapping. */
static void pager_killed_under_inheritors(void)
{
    int fd = make_file();
    int fds = settled_fds();
    struct pager_proc pp = pager_spawn(fd, FILEPAGER_NORMAL);
    volatile char *m = map_object(pp.object, 0, 8 * PAGE, FALSE);
    CHECK_KR(vm_inherit(SELF, (vm_address_t)m, 8 * PAGE, VM_INHERIT_SHARE), KERN_SUCCESS);
    CHECK(m[0] == 'A');
    struct inherit_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE | PROT_EXEC,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    memcpy(sh->code, inherit_code, sizeof inherit_code);
    mach_port_t task = MACH_PORT_NULL, child = MACH_PORT_NULL;
    CHECK_KR(task_create(SELF, TRUE, &task), KERN_SUCCESS);
    struct peer peer = peer_fork(m, 8 * PAGE, &child);

    kill(pp.pid, SIGKILL);
    CHECK(waitpid(pp.pid, NULL, 0) == pp.pid);
    CHECK(peer_do(&peer, 'r', 1, 0) == 'A');
    inherit_move(task, sh, 0, (uint64_t)(uintptr_t)m, (uint64_t)(uintptr_t)&sh->seen[0]);
    CHECK(inherit_wait(&sh->seen[0], 0x4141414141414141ull) == 0x4141414141414141ull);
    /* Page 6 never came. */
    struct peer_cmd c = {.op = 'r', .offset = 6 * PAGE};
    char got;
    CHECK(write(peer.sock, &c, sizeof c) == sizeof c);
    CHECK(read(peer.sock, &got, 1) == 0);
    int status = wait_bounded(peer.pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS);
    /* (The task may die of it before it answers thread_resume.) */
    kern_return_t kr = inherit_start(task, sh, 1, (uint64_t)(uintptr_t)m + 6 * PAGE,
                                     (uint64_t)(uintptr_t)&sh->seen[1]);
    CHECK(kr == KERN_SUCCESS || kr == MIG_SERVER_DIED);
    test_await_dead_name(task, 5000);
    CHECK(sh->seen[1] == 0);
    test_await_dead_name(child, 5000);

    close(peer.sock);
    CHECK_KR(vm_deallocate(SELF, (vm_address_t)m, 8 * PAGE), KERN_SUCCESS);
    munmap(sh, sizeof *sh);
    mach_port_deallocate(SELF, pp.object);
    close(pp.sock);
    CHECK(settled_fds() == fds);
    close(fd);
}

/* The whole suite, with this task and its pagers in an instance (machd
 * is then the kernel of every object) or not (each task is its own). */
static void suite(bool instance)
{
    map_rules();
    read_write_clean_flush();
    /* Once before the count too: the first task_create of a task of an
     * instance keeps what it makes for every later one. */
    inherited_by_task_create();
    inherited_by_hell_fork();
    inherited_by_grandchild();
    /* What stays from here: the fault thread's userfaultfd (or the
     * connection to machd), the port on which the VM hears of pagers'
     * deaths, the kernel service's ports. */
    int fds = settled_fds();
    write_locks();
    read_locks();
    sequential_runs();
    copies_and_zeros();
    control_without_rights();
    terminate_at_last_unmapping();
    control_counted_after_terminate();
    region_names();
    if (!instance) {
        cache_bounded(); /* (machd's own environment bounds its cache) */
    }
    if (instance) {
        vm_service_rejects_nonsense();
        shared_between_tasks();
        read_locks_between_tasks();
        mapping_task_dies();
    }
    inherited_by_task_create();
    many_inherited_mappings();
    inherited_by_hell_fork();
    inherited_by_grandchild();
    pager_killed_under_inheritors();
    failures();
    read_write_clean_flush();
    /* Every object went with its pager (told by a dead-name notification,
     * which comes when the watchdog sees the pager's port die). */
    CHECK(settled_fds() == fds);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        _exit(90);
    }
    close(fd);
}

/* Runs this program again (with ARG) in a user namespace of its own: as
 * an unprivileged user, whose userfaultfd, where the system keeps
 * vm.unprivileged_userfaultfd at 0 (Debian's default), sees faults from
 * user mode only.  Returns its exit status, or -1. */
static int rerun_unprivileged(const char *arg)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        return -1;
    }
    self[len] = '\0';
    uid_t uid = getuid();
    gid_t gid = getgid();
    pid_t pid = fork();
    if (pid == 0) {
        if (unshare(CLONE_NEWUSER) != 0) {
            perror("test_pager: unshare(CLONE_NEWUSER)");
            _exit(90);
        }
        char map[64];
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        write_file("/proc/self/uid_map", map);
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        write_file("/proc/self/gid_map", map);
        execl(self, self, arg, (char *)NULL);
        _exit(91);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
        return -1;
    }
    return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--in-instance") == 0) {
        CHECK(getenv("HELL_INSTANCE") != NULL);
        suite(true);
        return test_done("pager in an instance");
    }
    bool unprivileged = argc == 2 && strcmp(argv[1], "--unprivileged") == 0;
    suite(false);
    if (test_done("pager, each task its own kernel") != 0) {
        return 1;
    }
    /* Again in an instance of our own: machd is the kernel. */
    CHECK(test_rerun_in_instance("--in-instance") == 0);
    if (unprivileged) {
        return test_done("pager, unprivileged");
    }
    /* And all of it again as an unprivileged user. */
    CHECK(rerun_unprivileged("--unprivileged") == 0);
    return test_done("pager");
}
