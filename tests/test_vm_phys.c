/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vm_pages_phys and vm_allocate_contiguous (gnumach.defs), with GNU Mach's
 * error codes (its vm_user.c): the privileged host port or
 * KERN_INVALID_HOST, a task or KERN_INVALID_TASK, page-aligned ranges,
 * pmin 0 and page alignment or KERN_INVALID_ARGUMENT; a page not in memory
 * or not mapped reads 0; contiguous memory is wired, readable and
 * writable, its pages consecutive from the address returned, and goes
 * with vm_deallocate.  The addresses are compared with what Linux's
 * pagemap says (which takes CAP_SYS_ADMIN: without it the calls answer
 * KERN_NO_ACCESS and the comparisons are skipped).
 *
 * Run twice: in a process of its own, which is its own kernel (its
 * privileged host port made with hell_host_priv_create: its own memory
 * served inline, a child's by forwarding), and as a task of an instance
 * given machd's privileged host port (every call forwarded by machd).
 */
#include <fcntl.h>
#include <hell.h>
#include <mach.h>
#include <mach/gnumach.h>
#include <mach/mig_errors.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define SELF mach_task_self()
#define PAGE 4096u
#define HUGE (2u << 20) /* a transparent huge page */
#define ALL_PHYS (~(rpc_phys_addr_t)0)

/* The physical address of page ADDR of process PID as its pagemap says
 * (0 when not in memory, or hidden). */
static rpc_phys_addr_t pagemap_of(pid_t pid, vm_address_t addr)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint64_t e = 0;
    if (fd >= 0) {
        if (pread(fd, &e, sizeof e, (off_t)(addr / PAGE * sizeof e)) != sizeof e) {
            e = 0;
        }
        close(fd);
    }
    return (e >> 63) ? (e & ((1ull << 55) - 1)) * PAGE : 0;
}

/* Whether Linux shows this process its frame numbers (CAP_SYS_ADMIN). */
static bool frames_visible(void)
{
    static volatile char probe[PAGE] __attribute__((aligned(PAGE)));
    probe[0] = 1;
    return pagemap_of(getpid(), (vm_address_t)probe) != 0;
}

/* Whether Linux may give transparent huge pages to a region asking for
 * them (2 MiB physically contiguous). */
static bool huge_pages_possible(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    char line[128] = "";
    if (f != NULL) {
        if (fgets(line, sizeof line, f) == NULL) {
            line[0] = '\0';
        }
        fclose(f);
    }
    return f != NULL && strstr(line, "[never]") == NULL;
}

/* vm_pages_phys of N pages from ADDR of TASK into OUT (at most 1024). */
static kern_return_t pages_of(mach_port_t priv, mach_port_t task, vm_address_t addr, size_t n,
                              rpc_phys_addr_t *out)
{
    rpc_phys_addr_array_t pages = NULL;
    mach_msg_type_number_t count = 0;
    kern_return_t kr = vm_pages_phys(priv, task, addr, n * PAGE, &pages, &count);
    if (kr == KERN_SUCCESS) {
        CHECK(count == n);
        if (count == n && n > 0) {
            memcpy(out, pages, n * sizeof *out);
        }
        if (count > 0) {
            CHECK_KR(vm_deallocate(SELF, (vm_address_t)pages, count * sizeof *pages),
                     KERN_SUCCESS);
        }
    }
    return kr;
}

/* GNU Mach's error codes, for TASK (VISIBLE: whether Linux shows frames). */
static void check_errors(mach_port_t priv, mach_port_t task, bool visible)
{
    vm_address_t a = 0;
    CHECK_KR(vm_allocate(task, &a, 2 * PAGE, TRUE), KERN_SUCCESS);
    rpc_phys_addr_t pa[2];
    vm_address_t v = 0;
    rpc_phys_addr_t p = 0;
    /* The host first: the unprivileged one, a port that is no host. */
    CHECK_KR(pages_of(mach_host_self(), task, a, 1, pa), KERN_INVALID_HOST);
    CHECK_KR(pages_of(SELF, task, a, 1, pa), KERN_INVALID_HOST);
    CHECK_KR(pages_of(mach_host_self(), MACH_PORT_NULL, a, 1, pa), KERN_INVALID_HOST);
    CHECK_KR(vm_allocate_contiguous(mach_host_self(), task, &v, &p, PAGE, 0, ALL_PHYS, 0),
             KERN_INVALID_HOST);
    CHECK_KR(vm_allocate_contiguous(SELF, task, &v, &p, PAGE, 0, ALL_PHYS, 0),
             KERN_INVALID_HOST);
    /* Then the task. */
    CHECK_KR(pages_of(priv, MACH_PORT_NULL, a, 1, pa), KERN_INVALID_TASK);
    CHECK_KR(vm_allocate_contiguous(priv, MACH_PORT_NULL, &v, &p, 0, 1, ALL_PHYS, 3),
             KERN_INVALID_TASK);
    /* Then the arguments. */
    rpc_phys_addr_array_t pages = NULL;
    mach_msg_type_number_t count = 0;
    CHECK_KR(vm_pages_phys(priv, task, a + 1, PAGE, &pages, &count), KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_pages_phys(priv, task, a, PAGE + 1, &pages, &count), KERN_INVALID_ARGUMENT);
    count = 7;
    CHECK_KR(vm_pages_phys(priv, task, a, 0, &pages, &count), KERN_SUCCESS);
    CHECK(count == 0);
    CHECK_KR(vm_allocate_contiguous(priv, task, &v, &p, 0, 0, ALL_PHYS, 0),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_allocate_contiguous(priv, task, &v, &p, PAGE, PAGE, ALL_PHYS, 0),
             KERN_INVALID_ARGUMENT); /* pmin: GNU Mach's FIXME */
    CHECK_KR(vm_allocate_contiguous(priv, task, &v, &p, PAGE, 0, ALL_PHYS, 2 * PAGE),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_allocate_contiguous(priv, task, &v, &p, PAGE, 0, ALL_PHYS, 3),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(vm_allocate_contiguous(priv, task, &v, &p, ~(vm_size_t)0, 0, ALL_PHYS, 0),
             KERN_INVALID_ARGUMENT); /* rounds to 0 */
    /* No memory ends at or below pmax (frame 0 is never a process's), as
     * far as this task may know; less than the size, none at all. */
    CHECK_KR(vm_allocate_contiguous(priv, task, &v, &p, PAGE, 0, PAGE, 512),
             visible ? KERN_RESOURCE_SHORTAGE : KERN_NO_ACCESS);
    CHECK_KR(vm_allocate_contiguous(priv, task, &v, &p, 2 * PAGE, 0, PAGE, 0),
             KERN_RESOURCE_SHORTAGE);
    /* GNU Mach has no free block above 4 MiB (its allocator's order 10). */
    CHECK_KR(vm_allocate_contiguous(priv, task, &v, &p, 2 * HUGE + 1, 0, ALL_PHYS, 0),
             KERN_RESOURCE_SHORTAGE);
    CHECK_KR(vm_deallocate(task, a, 2 * PAGE), KERN_SUCCESS);
}

/* A port that is no task (answered MIG_BAD_ID by its server). */
static void check_not_a_task(mach_port_t priv)
{
    mach_port_t other = test_new_port(true);
    pthread_t server;
    CHECK(pthread_create(&server, NULL, test_bad_id_server, &other) == 0);
    rpc_phys_addr_t pa[1];
    vm_address_t v = 0;
    rpc_phys_addr_t p = 0;
    CHECK_KR(pages_of(priv, other, 0x10000, 1, pa), KERN_INVALID_TASK);
    CHECK_KR(vm_allocate_contiguous(priv, other, &v, &p, PAGE, 0, ALL_PHYS, 0),
             KERN_INVALID_TASK);
    CHECK_KR(mach_port_destroy(SELF, other), KERN_SUCCESS); /* ends the server */
    CHECK(pthread_join(server, NULL) == 0);
}

/* vm_pages_phys of TASK (process PID), whose memory is written through
 * vm_write: touched pages as pagemap has them, the others 0, an array
 * longer than the reply's inline room (256) out of line. */
static void check_pages(mach_port_t priv, mach_port_t task, pid_t pid, bool visible)
{
    const size_t n = 300;
    vm_address_t a = 0;
    CHECK_KR(vm_allocate(task, &a, n * PAGE, TRUE), KERN_SUCCESS);
    vm_address_t data = 0;
    CHECK_KR(vm_allocate(SELF, &data, PAGE, TRUE), KERN_SUCCESS);
    memset((void *)data, 0x5a, PAGE);
    for (size_t i = 0; i < n; i += 3) {
        CHECK_KR(vm_write(task, a + i * PAGE, data, PAGE), KERN_SUCCESS);
    }
    static rpc_phys_addr_t pa[300];
    kern_return_t kr = pages_of(priv, task, a, n, pa);
    if (!visible) {
        CHECK_KR(kr, KERN_NO_ACCESS);
    } else {
        CHECK_KR(kr, KERN_SUCCESS);
        for (size_t i = 0; kr == KERN_SUCCESS && i < n; i++) {
            if (i % 3 == 0) {
                CHECK(pa[i] != 0 && pa[i] % PAGE == 0);
                CHECK(pa[i] == pagemap_of(pid, a + i * PAGE));
            } else {
                CHECK(pa[i] == 0); /* never touched: not faulted in */
            }
        }
        /* One page, inline in the reply. */
        CHECK_KR(pages_of(priv, task, a + 3 * PAGE, 1, pa), KERN_SUCCESS);
        CHECK(pa[0] == pagemap_of(pid, a + 3 * PAGE));
    }
    /* Not mapped: 0, with or without the privilege to see frames. */
    CHECK_KR(vm_deallocate(task, a, n * PAGE), KERN_SUCCESS);
    pa[0] = 1;
    CHECK_KR(pages_of(priv, task, a, 1, pa), KERN_SUCCESS);
    CHECK(pa[0] == 0);
    CHECK_KR(vm_deallocate(SELF, data, PAGE), KERN_SUCCESS);
}

/* vm_allocate_contiguous of SIZE bytes in TASK (process PID): the pages
 * consecutive from the address returned, as pagemap has them, wired,
 * readable and writable; gone with vm_deallocate.  More than a huge page
 * takes luck (Linux's huge pages in a row): without, KERN_RESOURCE_SHORTAGE
 * is the right answer (GNU Mach's when no free block fits). */
static void check_contiguous(mach_port_t priv, mach_port_t task, pid_t pid, vm_size_t size,
                             bool visible)
{
    vm_address_t v = 0;
    rpc_phys_addr_t p = 0;
    kern_return_t kr = vm_allocate_contiguous(priv, task, &v, &p, size, 0, ALL_PHYS, 0);
    if (!visible) {
        CHECK_KR(kr, KERN_NO_ACCESS);
        return;
    }
    if (kr == KERN_RESOURCE_SHORTAGE && size > PAGE && !huge_pages_possible()) {
        printf("note: vm_allocate_contiguous of %lu bytes: KERN_RESOURCE_SHORTAGE, right "
               "with transparent huge pages off\n",
               (unsigned long)size);
        return;
    }
    if (kr == KERN_RESOURCE_SHORTAGE && size > HUGE) {
        printf("note: vm_allocate_contiguous of %lu bytes: KERN_RESOURCE_SHORTAGE, right "
               "while Linux has no %lu huge pages in a row\n",
               (unsigned long)size, (unsigned long)((size + HUGE - 1) / HUGE));
        return;
    }
    CHECK_KR(kr, KERN_SUCCESS);
    if (kr != KERN_SUCCESS) {
        return;
    }
    CHECK(v != 0 && v % PAGE == 0);
    CHECK(p != 0 && p % PAGE == 0);
    size_t n = (size + PAGE - 1) / PAGE;
    static rpc_phys_addr_t pa[1024];
    CHECK(n <= 1024);
    CHECK_KR(pages_of(priv, task, v, n, pa), KERN_SUCCESS);
    for (size_t i = 0; i < n; i++) {
        CHECK(pa[i] == p + i * PAGE);
        CHECK(pagemap_of(pid, v + i * PAGE) == p + i * PAGE);
    }
    CHECK(pagemap_of(pid, v + n * PAGE) != p + n * PAGE); /* trimmed to the size */
    /* Readable and writable (maximum the same), inherited as a copy. */
    vm_address_t at = v;
    vm_size_t rsize = 0;
    vm_prot_t prot = 0, max = 0;
    vm_inherit_t inherit = 0;
    boolean_t shared = TRUE;
    mach_port_t name = MACH_PORT_NULL;
    vm_offset_t offset = 0;
    CHECK_KR(vm_region(task, &at, &rsize, &prot, &max, &inherit, &shared, &name, &offset),
             KERN_SUCCESS);
    /* (Huge pages joined may be Linux mappings of their own: regions.) */
    CHECK(at <= v && (at + rsize >= v + n * PAGE || size > HUGE));
    CHECK(prot == (VM_PROT_READ | VM_PROT_WRITE));
    CHECK(max == (VM_PROT_READ | VM_PROT_WRITE));
    CHECK(inherit == VM_INHERIT_COPY && !shared);
    /* Zeros, then what is written, where it was. */
    vm_offset_t got = 0;
    mach_msg_type_number_t got_size = 0;
    CHECK_KR(vm_read(task, v, n * PAGE, &got, &got_size), KERN_SUCCESS);
    bool zeros = got_size == n * PAGE;
    for (size_t i = 0; zeros && i < got_size; i++) {
        zeros = ((const char *)got)[i] == 0;
    }
    CHECK(zeros);
    if (got_size > 0) {
        memset((void *)got, 0xa5, got_size);
        CHECK_KR(vm_write(task, v, got, got_size), KERN_SUCCESS);
        CHECK_KR(vm_deallocate(SELF, got, got_size), KERN_SUCCESS);
    }
    if (task == SELF) {
        CHECK(((volatile unsigned char *)v)[n * PAGE - 1] == 0xa5);
        ((volatile char *)v)[0] = 1;
    }
    if (TEST_LOCKS_SEEN) {
        CHECK(test_status_kb(pid, "VmLck") >= (long)(n * PAGE / 1024));
    }
    CHECK_KR(pages_of(priv, task, v, n, pa), KERN_SUCCESS);
    CHECK(pa[0] == p && pa[n - 1] == p + (n - 1) * PAGE); /* written in place */
    CHECK_KR(vm_deallocate(task, v, size), KERN_SUCCESS);
    CHECK_KR(pages_of(priv, task, v, 1, pa), KERN_SUCCESS);
    CHECK(pa[0] == 0);
}

/* The calls on a child task's memory, forwarded to it; then on the dead
 * task's port. */
static void check_child(mach_port_t priv, bool visible)
{
    mach_port_t child = MACH_PORT_NULL;
    pid_t pid = test_fork_idle(&child);
    check_errors(priv, child, visible);
    check_pages(priv, child, pid, visible);
    check_contiguous(priv, child, pid, PAGE, visible);
    check_contiguous(priv, child, pid, 64 * 1024, visible);
    rpc_phys_addr_t pa[1];
    vm_address_t v = 0;
    rpc_phys_addr_t p = 0;
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, NULL, 0) == pid);
    CHECK_KR(pages_of(priv, child, 0x10000, 1, pa), KERN_INVALID_TASK); /* dead */
    CHECK_KR(vm_allocate_contiguous(priv, child, &v, &p, PAGE, 0, ALL_PHYS, 0),
             KERN_INVALID_TASK);
    CHECK_KR(mach_port_deallocate(SELF, child), KERN_SUCCESS);
}

static void check_all(mach_port_t priv, const char *where)
{
    bool visible = frames_visible();
    if (!visible) {
        printf("skipped: physical addresses %s (no CAP_SYS_ADMIN: Linux hides frame numbers; "
               "the calls are checked to answer KERN_NO_ACCESS)\n",
               where);
    }
    check_errors(priv, SELF, visible);
    check_not_a_task(priv);
    check_pages(priv, SELF, getpid(), visible);
    check_contiguous(priv, SELF, getpid(), PAGE, visible);
    check_contiguous(priv, SELF, getpid(), 64 * 1024, visible);
    check_contiguous(priv, SELF, getpid(), 64 * 1024 + 100, visible);
    check_contiguous(priv, SELF, getpid(), 2 * HUGE, visible); /* (may be skipped) */
    check_child(priv, visible);
    /* Once the service thread and the rest run, a round with another
     * child leaves no descriptor behind (what referred to the dead child
     * may close a moment after). */
    int fds = test_count_fds();
    check_child(priv, visible);
    for (int i = 0; i < 200 && test_count_fds() > fds; i++) {
        usleep(10000);
    }
    CHECK(test_count_fds() == fds);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--in-instance") == 0) {
        check_all((mach_port_t)atoi(argv[2]), "in an instance");
        return test_done("vm_phys (in an instance)");
    }
    mach_port_t priv = hell_host_priv_create(NULL);
    CHECK(MACH_PORT_VALID(priv));
    check_all(priv, "in its own kernel");
    CHECK(test_rerun_in_instance_as("--in-instance", true) == 0);
    return test_done("vm_phys");
}
