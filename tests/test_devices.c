/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * machd's devices (device.defs), end to end: a private instance started
 * with `hell start` serves a read-write and a read-only disk (files) and
 * its console; this program, run in it as a privileged task, checks
 * GNU Mach's semantics through the device master port.
 *
 * Three roles in one program:
 * - the driver (no arguments) makes the disks, the console's input (a
 *   FIFO) and output (a file) in a scratch directory, starts the
 *   instance, runs itself as a task with `hell run --priv`, stops the
 *   instance and checks what the task wrote on the disks and console;
 *   then does the same with a second instance whose console is a
 *   pseudo-terminal, for the terminal status;
 * - the task (--host-priv-port=N --device-master-port=N, and
 *   --console-fifo=P or --console-pty=P) makes the calls and exits 0 if
 *   every check passed;
 * - the victims (--victim=KIND --device-master-port=N), which the task
 *   on the FIFO console starts and kills in the middle of device calls.
 */

/* <termios.h> and <device/tty_status.h> both name speeds B50...: the
 * Linux speeds the terminal checks need are read here, then undefined
 * for GNU Mach's. */
#include <termios.h>

static const speed_t linux_speeds[] = {
    B0,    B50,   B75,   B110,  B134,  B150,  B200,   B300,  B600,
    B1200, B1800, B2400, B4800, B9600, B19200, B38400, B57600, B115200,
};

#undef B0
#undef B50
#undef B75
#undef B110
#undef B134
#undef B150
#undef B200
#undef B300
#undef B600
#undef B1200
#undef B1800
#undef B2400
#undef B4800
#undef B9600
#undef B19200
#undef B38400
#undef B57600
#undef B115200
#undef EXTA
#undef EXTB

#include <device/device.h>
#include <device/device_types.h>
#include <device/tty_status.h>
#include <errno.h>
#include <fcntl.h>
#include <hell.h>
#include <libgen.h>
#include <limits.h>
#include <mach/time_value.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "device_request.h"
#include "test.h"

#define INSTANCE "devices"
#define INSTANCE_PTY "devices-pty"
#define REC 512
#define HD_SIZE (1 << 20)
#define HD_RECORDS (HD_SIZE / REC)
#define CD_SIZE (64 << 10)
#define CONSOLE_LINE "hello from a task\n"
#define CONSOLE_OOL_LINE "and out of line\n"
#define CONSOLE_STOPPED_LINE "written while stopped\n"
#define READERS 6 /* more than machd's server threads */

/* ---- the disks' contents, known to both roles ---- */

static unsigned char hd_byte(size_t offset)
{
    return (unsigned char)(offset * 7 + offset / REC);
}

static unsigned char cd_byte(size_t offset)
{
    return (unsigned char)(0xc3 ^ (offset * 13));
}

/* What the task writes: through device_write at record 4, through
 * device_write_inband at record 100, and across the end of the disk. */
#define OOL_WRITE_REC 4
#define OOL_WRITE_LEN 1024
#define INBAND_WRITE_REC 100
#define INBAND_WRITE_LEN 100
#define END_WRITE_REC (HD_RECORDS - 1)

static unsigned char written_byte(size_t i)
{
    return (unsigned char)(0x5a + i * 3);
}

static bool matches(const char *data, size_t len, size_t offset,
                    unsigned char (*byte)(size_t))
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)data[i] != byte(offset + i)) {
            return false;
        }
    }
    return true;
}

/* ---- the task ---- */

static mach_port_t master;

static void nap(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Waits (up to about MS ms) until NAME is (also) a dead name; checks
 * every mach_port_type and that it became one.  Failures name the
 * caller's LINE. */
static void await_dead_name_at(int line, mach_port_t name, int ms)
{
    mach_port_type_t type = 0;
    for (int i = 0; i < ms && !(type & MACH_PORT_TYPE_DEAD_NAME); i++) {
        CHECK_KR_AT(__FILE__, line, mach_port_type(mach_task_self(), name, &type),
                    KERN_SUCCESS);
        if (!(type & MACH_PORT_TYPE_DEAD_NAME)) {
            nap(1);
        }
    }
    CHECK_AT(__FILE__, line, type & MACH_PORT_TYPE_DEAD_NAME);
}
#define await_dead_name(...) await_dead_name_at(__LINE__, __VA_ARGS__)

/* device_read of COUNT bytes at RECNUM: checks the result, the length
 * and (when BYTE) the data at byte RECNUM * REC of the disk.  Failures
 * name the caller's LINE. */
static void check_read_at(int line, mach_port_t dev, recnum_t recnum, int count,
                          kern_return_t want, mach_msg_type_number_t want_len,
                          unsigned char (*byte)(size_t))
{
    io_buf_ptr_t data = NULL;
    mach_msg_type_number_t len = 0;
    kern_return_t kr = device_read(dev, 0, recnum, count, &data, &len);
    bool ok = kr == want;
    if (kr == D_SUCCESS) {
        ok = ok && len == want_len &&
             (byte == NULL || matches(data, len, (size_t)recnum * REC, byte));
        if (len > 0) {
            vm_deallocate(mach_task_self(), (vm_address_t)data, len);
        }
    }
    if (!ok) {
        fprintf(stderr, "%s:%d: device_read(%lu, %d) = %#x with %u bytes, want %#x with %u\n",
                __FILE__, line, (unsigned long)recnum, count, (unsigned)kr, len,
                (unsigned)want, want_len);
        test_failures++;
    }
}
#define check_read(...) check_read_at(__LINE__, __VA_ARGS__)

static void task_disk_reads(mach_port_t hd)
{
    check_read(hd, 0, 4096, D_SUCCESS, 4096, hd_byte);
    check_read(hd, 7, 1000, D_SUCCESS, 1000, hd_byte); /* not whole records */
    check_read(hd, HD_RECORDS - 2, 4096, D_SUCCESS, 2 * REC, hd_byte); /* cut at the end */
    check_read(hd, HD_RECORDS, 512, D_SUCCESS, 0, NULL);                /* at the end */
    check_read(hd, HD_RECORDS + 1, 512, D_INVALID_SIZE, 0, NULL);       /* past it */
    check_read(hd, (recnum_t)-1, 512, D_INVALID_SIZE, 0, NULL);
    check_read(hd, 0, -1, D_INVALID_SIZE, 0, NULL);
    check_read(hd, 0, 0, D_SUCCESS, 0, NULL);
    check_read(hd, 0, INT_MAX, D_SUCCESS, HD_SIZE, hd_byte); /* the whole disk */

    char buf[IO_INBAND_MAX];
    mach_msg_type_number_t len = sizeof buf;
    CHECK_KR(device_read_inband(hd, 0, 3, IO_INBAND_MAX, buf, &len), D_SUCCESS);
    CHECK(len == IO_INBAND_MAX && matches(buf, len, 3 * REC, hd_byte));
    len = sizeof buf;
    CHECK_KR(device_read_inband(hd, 0, 9, 1000, buf, &len), D_SUCCESS); /* cut to 128 */
    CHECK(len == IO_INBAND_MAX && matches(buf, len, 9 * REC, hd_byte));
    len = sizeof buf;
    CHECK_KR(device_read_inband(hd, 0, HD_RECORDS + 5, 16, buf, &len), D_INVALID_SIZE);
    CHECK_KR(device_read_inband(hd, 0, 0, -5, buf, &len), D_INVALID_SIZE);
}

static void task_disk_writes(mach_port_t hd)
{
    vm_address_t buf = 0;
    int written = -1;
    CHECK_KR(vm_allocate(mach_task_self(), &buf, OOL_WRITE_LEN, TRUE), KERN_SUCCESS);
    for (size_t i = 0; i < OOL_WRITE_LEN; i++) {
        ((unsigned char *)buf)[i] = written_byte(i);
    }
    CHECK_KR(device_write(hd, 0, OOL_WRITE_REC, (io_buf_ptr_t)buf, OOL_WRITE_LEN, &written),
             D_SUCCESS);
    CHECK(written == OOL_WRITE_LEN);
    /* Across the end: only the last record is written. */
    written = -1;
    CHECK_KR(device_write(hd, 0, END_WRITE_REC, (io_buf_ptr_t)buf, OOL_WRITE_LEN, &written),
             D_SUCCESS);
    CHECK(written == REC);
    CHECK_KR(device_write(hd, 0, HD_RECORDS + 1, (io_buf_ptr_t)buf, REC, &written),
             D_INVALID_SIZE);

    io_buf_ptr_t data = NULL;
    mach_msg_type_number_t len = 0;
    CHECK_KR(device_read(hd, 0, OOL_WRITE_REC, OOL_WRITE_LEN, &data, &len), D_SUCCESS);
    CHECK(len == OOL_WRITE_LEN && memcmp(data, (void *)buf, OOL_WRITE_LEN) == 0);
    if (len > 0) {
        vm_deallocate(mach_task_self(), (vm_address_t)data, len);
    }
    vm_deallocate(mach_task_self(), buf, OOL_WRITE_LEN);

    io_buf_ptr_inband_t in = "", out;
    for (size_t i = 0; i < INBAND_WRITE_LEN; i++) {
        in[i] = (char)written_byte(i);
    }
    written = -1;
    CHECK_KR(device_write_inband(hd, 0, INBAND_WRITE_REC, in, INBAND_WRITE_LEN, &written),
             D_SUCCESS);
    CHECK(written == INBAND_WRITE_LEN);
    len = sizeof out;
    CHECK_KR(device_read_inband(hd, 0, INBAND_WRITE_REC, INBAND_WRITE_LEN, out, &len), D_SUCCESS);
    CHECK(len == INBAND_WRITE_LEN && memcmp(in, out, INBAND_WRITE_LEN) == 0);
    /* More than fits in a message: refused. */
    CHECK_KR(device_write_inband(hd, 0, 0, in, IO_INBAND_MAX + 1, &written), MIG_ARRAY_TOO_LARGE);
}

static void task_disk_status(mach_port_t hd, int size)
{
    int status[DEV_STATUS_MAX];
    mach_msg_type_number_t count = DEV_STATUS_MAX;
    CHECK_KR(device_get_status(hd, DEV_GET_SIZE, status, &count), D_SUCCESS);
    CHECK(count == DEV_GET_SIZE_COUNT && status[DEV_GET_SIZE_DEVICE_SIZE] == size &&
          status[DEV_GET_SIZE_RECORD_SIZE] == REC);
    count = DEV_GET_RECORDS_COUNT;
    CHECK_KR(device_get_status(hd, DEV_GET_RECORDS, status, &count), D_SUCCESS);
    CHECK(count == DEV_GET_RECORDS_COUNT &&
          status[DEV_GET_RECORDS_DEVICE_RECORDS] == size / REC &&
          status[DEV_GET_RECORDS_RECORD_SIZE] == REC);
    /* Asking for fewer integers than the flavor has: the stub says so. */
    count = 1;
    status[0] = -1;
    CHECK_KR(device_get_status(hd, DEV_GET_SIZE, status, &count), MIG_ARRAY_TOO_LARGE);
    CHECK(status[0] == size);
    count = DEV_STATUS_MAX;
    CHECK_KR(device_get_status(hd, 0x12345, status, &count), D_INVALID_OPERATION);
    status[0] = 0;
    CHECK_KR(device_set_status(hd, DEV_GET_SIZE, status, 1), D_INVALID_OPERATION);
}

static void task_disk_misc(mach_port_t hd)
{
    mach_port_t pager = MACH_PORT_NULL;
    CHECK_KR(device_map(hd, VM_PROT_READ, 0, 4096, &pager, 0), D_INVALID_OPERATION);
    CHECK(pager == MACH_PORT_NULL);
    CHECK_KR(device_intr_register(hd, 1, 0, mach_task_self(), MACH_MSG_TYPE_COPY_SEND),
             D_INVALID_OPERATION);
    /* Only the master port opens. */
    mach_port_t dev = MACH_PORT_NULL;
    CHECK_KR(device_open(hd, D_READ, "hd0", &dev), D_INVALID_OPERATION);
    /* As GNU Mach, through any kernel port that is not the master;
     * other device calls there find no device. */
    CHECK_KR(device_open(mach_task_self(), D_READ, "hd0", &dev), D_INVALID_OPERATION);
    CHECK_KR(device_open_new(mach_task_self(), D_READ, "hd0", &dev), D_INVALID_OPERATION);
    CHECK_KR(device_close(mach_task_self()), D_NO_SUCH_DEVICE);
    CHECK_KR(device_close(mach_host_self()), D_NO_SUCH_DEVICE);
    /* The master port is no device. */
    io_buf_ptr_t data = NULL;
    mach_msg_type_number_t len = 0;
    CHECK_KR(device_read(master, 0, 0, 512, &data, &len), D_NO_SUCH_DEVICE);
    CHECK_KR(device_close(master), D_NO_SUCH_DEVICE);
}

/* What a call through the port of a device just closed answers. */
static bool closed_error(kern_return_t kr)
{
    return kr == MACH_SEND_INVALID_DEST || kr == D_NO_SUCH_DEVICE || kr == MIG_SERVER_DIED;
}

static void task_disks(void)
{
    mach_port_t hd = MACH_PORT_NULL, again = MACH_PORT_NULL, ro = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ | D_WRITE, "hd0", &hd), D_SUCCESS);
    /* Opening again gives the same port, one more open. */
    CHECK_KR(device_open(master, D_READ | D_WRITE, "hd0", &again), D_SUCCESS);
    CHECK(again == hd);
    task_disk_reads(hd);
    task_disk_writes(hd);
    task_disk_status(hd, HD_SIZE);
    task_disk_misc(hd);

    /* A read-only open has its own port, which does not write. */
    CHECK_KR(device_open(master, D_READ, "hd0", &ro), D_SUCCESS);
    CHECK(ro != hd);
    int written = -1;
    io_buf_ptr_inband_t x = "x";
    CHECK_KR(device_write_inband(ro, 0, 0, x, 1, &written), D_INVALID_OPERATION);
    check_read(ro, 1, REC, D_SUCCESS, REC, hd_byte);
    CHECK_KR(device_close(ro), D_SUCCESS);

    /* Closing: the port lives until the last close, then dies. */
    CHECK_KR(device_close(hd), D_SUCCESS);
    check_read(hd, 0, REC, D_SUCCESS, REC, hd_byte);
    CHECK_KR(device_close(hd), D_SUCCESS);
    /* The last close destroys the port.  A call that overtakes the
     * death gets D_NO_SUCH_DEVICE, as through the port of a closed GNU
     * Mach device, or MIG_SERVER_DIED when it was still queued there. */
    io_buf_ptr_t data = NULL;
    mach_msg_type_number_t len = 0;
    kern_return_t kr = device_read(hd, 0, 0, REC, &data, &len);
    CHECK(closed_error(kr));
    CHECK(closed_error(device_close(hd)));
    /* Once dead, as in GNU Mach: the name is a dead name. */
    await_dead_name(hd, 2000);
    check_read(hd, 0, REC, MACH_SEND_INVALID_DEST, 0, NULL);
    mach_port_deallocate(mach_task_self(), hd);
    mach_port_deallocate(mach_task_self(), hd); /* the second open's reference */
    CHECK_KR(device_open(master, D_READ | D_WRITE, "hd0", &hd), D_SUCCESS);
    check_read(hd, 2, REC, D_SUCCESS, REC, hd_byte);
    CHECK_KR(device_close(hd), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), hd);
}

static void task_cdrom(void)
{
    mach_port_t cd = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ | D_WRITE, "cd0", &cd), D_READ_ONLY);
    CHECK_KR(device_open(master, D_WRITE, "cd0", &cd), D_READ_ONLY);
    CHECK_KR(device_open(master, D_READ, "cd0", &cd), D_SUCCESS);
    check_read(cd, 3, 3 * REC, D_SUCCESS, 3 * REC, cd_byte);
    vm_address_t buf = 0;
    int written = -1;
    CHECK_KR(vm_allocate(mach_task_self(), &buf, REC, TRUE), KERN_SUCCESS);
    CHECK_KR(device_write(cd, 0, 0, (io_buf_ptr_t)buf, REC, &written), D_INVALID_OPERATION);
    vm_deallocate(mach_task_self(), buf, REC);
    task_disk_status(cd, CD_SIZE);
    CHECK_KR(device_close(cd), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), cd);

    mach_port_t none = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ, "hd9", &none), D_NO_SUCH_DEVICE);
    CHECK_KR(device_open(master, D_READ, "", &none), D_NO_SUCH_DEVICE);
}

/* device_open_new (msgh_id 2806) is device_open with the name as a C
 * string, as GNU Mach's ds_device_open_new: same ports, same errors. */
static void task_open_new(void)
{
    mach_port_t old = MACH_PORT_NULL, dev = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ, "hd0", &old), D_SUCCESS);
    CHECK_KR(device_open_new(master, D_READ, "hd0", &dev), D_SUCCESS);
    CHECK(dev == old); /* one port per disk and mode, one more open */
    check_read(dev, 50, REC, D_SUCCESS, REC, hd_byte);
    CHECK_KR(device_close(dev), D_SUCCESS);
    CHECK_KR(device_close(old), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), old);
    mach_port_deallocate(mach_task_self(), old); /* (a send right, or a dead name by now) */

    mach_port_t time_dev = MACH_PORT_NULL, pager = MACH_PORT_NULL;
    CHECK_KR(device_open_new(master, 0, "time", &time_dev), D_SUCCESS);
    CHECK_KR(device_map(time_dev, VM_PROT_READ, 0, 4096, &pager, 0), D_SUCCESS);
    CHECK(MACH_PORT_VALID(pager));
    mach_port_deallocate(mach_task_self(), pager);
    CHECK_KR(device_close(time_dev), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), time_dev);

    mach_port_t none = MACH_PORT_NULL;
    CHECK_KR(device_open_new(master, D_READ, "hd9", &none), D_NO_SUCH_DEVICE);
    CHECK_KR(device_open_new(master, D_READ, "", &none), D_NO_SUCH_DEVICE);
    char name[sizeof(dev_name_t)];
    memset(name, 'h', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK_KR(device_open_new(master, D_READ, name, &none), D_NO_SUCH_DEVICE);
    CHECK_KR(device_open_new(master, D_WRITE, "cd0", &none), D_READ_ONLY);
    CHECK(none == MACH_PORT_NULL);
    /* Only the master port opens. */
    CHECK_KR(device_open(master, D_READ, "cd0", &dev), D_SUCCESS);
    CHECK_KR(device_open_new(dev, D_READ, "cd0", &none), D_INVALID_OPERATION);
    CHECK_KR(device_close(dev), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), dev);
}

/* ---- the console ---- */

struct reader {
    pthread_t thread;
    mach_port_t console;
    kern_return_t kr;
    mach_msg_type_number_t len;
    char data[IO_INBAND_MAX];
};

static atomic_uint readers_done;

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->len = sizeof r->data;
    r->kr = device_read_inband(r->console, 0, 0, sizeof r->data, r->data, &r->len);
    atomic_fetch_add(&readers_done, 1);
    return NULL;
}

/* Waits (at most 10 s) until N readers are done. */
static bool readers_wait(unsigned n)
{
    for (int i = 0; i < 10000 && atomic_load(&readers_done) < n; i++) {
        nap(1);
    }
    return atomic_load(&readers_done) >= n;
}

/* Reads waiting for console input must not hold up the disks: READERS
 * of them (more than machd's server threads) wait while the disk is
 * read, then each gets the byte written for it. */
static void task_console_reads(mach_port_t console, int fifo)
{
    char buf[IO_INBAND_MAX];
    mach_msg_type_number_t len = sizeof buf;
    CHECK_KR(device_read_inband(console, D_NOWAIT, 0, sizeof buf, buf, &len), D_WOULD_BLOCK);

    struct reader readers[READERS];
    for (int i = 0; i < READERS; i++) {
        readers[i] = (struct reader){.console = console};
        CHECK(pthread_create(&readers[i].thread, NULL, reader_main, &readers[i]) == 0);
    }
    nap(200);
    CHECK(atomic_load(&readers_done) == 0);
    mach_port_t hd = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ, "hd0", &hd), D_SUCCESS);
    check_read(hd, 11, REC, D_SUCCESS, REC, hd_byte);
    CHECK_KR(device_close(hd), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), hd);
    for (unsigned i = 0; i < READERS; i++) {
        CHECK(write(fifo, "k", 1) == 1);
        CHECK(readers_wait(i + 1));
    }
    for (int i = 0; i < READERS; i++) {
        pthread_join(readers[i].thread, NULL);
        CHECK_KR(readers[i].kr, D_SUCCESS);
        CHECK(readers[i].len == 1 && readers[i].data[0] == 'k');
    }

    /* Input already there is read at once, up to what was asked. */
    CHECK(write(fifo, "typed\n", 6) == 6);
    len = sizeof buf;
    CHECK_KR(device_read_inband(console, D_NOWAIT, 0, 3, buf, &len), D_SUCCESS);
    CHECK(len == 3 && memcmp(buf, "typ", 3) == 0);
    io_buf_ptr_t data = NULL;
    mach_msg_type_number_t n = 0;
    CHECK_KR(device_read(console, 0, 0, 100, &data, &n), D_SUCCESS);
    CHECK(n == 3 && data != NULL && memcmp(data, "ed\n", 3) == 0);
    if (n > 0) {
        vm_deallocate(mach_task_self(), (vm_address_t)data, n);
    }
}

/* ---- the console's terminal status ---- */

/* What GNU Mach's com gives a line never opened (IFLAGS). */
#define CONSOLE_FLAGS (TF_EVENP | TF_ODDP | TF_ECHO | TF_CRMOD | TF_XTABS | TF_LITOUT)

/* device_get_status TTY_STATUS into *TS; failures name the caller's LINE. */
static void get_tty_at(int line, mach_port_t console, struct tty_status *ts)
{
    int status[DEV_STATUS_MAX];
    mach_msg_type_number_t count = DEV_STATUS_MAX;
    kern_return_t kr = device_get_status(console, TTY_STATUS, status, &count);
    if (kr != D_SUCCESS || count != TTY_STATUS_COUNT) {
        fprintf(stderr, "%s:%d: TTY_STATUS = %#x with %u integers\n", __FILE__, line,
                (unsigned)kr, count);
        test_failures++;
        memset(ts, 0xff, sizeof *ts);
        return;
    }
    memcpy(ts, status, sizeof *ts);
}
#define get_tty(...) get_tty_at(__LINE__, __VA_ARGS__)

static kern_return_t set_tty(mach_port_t console, int ispeed, int ospeed, int breakc, int flags)
{
    struct tty_status ts = {ispeed, ospeed, breakc, flags};
    return device_set_status(console, TTY_STATUS, (int *)&ts, TTY_STATUS_COUNT);
}

static bool tty_is(const struct tty_status *ts, int ispeed, int ospeed, int breakc, int flags)
{
    return ts->tt_ispeed == ispeed && ts->tt_ospeed == ospeed && ts->tt_breakc == breakc &&
           ts->tt_flags == flags;
}

static int get_modem(mach_port_t console)
{
    int bits = -1;
    mach_msg_type_number_t count = TTY_MODEM_COUNT;
    CHECK_KR(device_get_status(console, TTY_MODEM, &bits, &count), D_SUCCESS);
    CHECK(count == TTY_MODEM_COUNT);
    return bits;
}

/* What every console answers, a terminal or not: the flavors GNU Mach's
 * com takes, its errors for short counts, bad speeds and other flavors. */
static void task_tty_common(mach_port_t console)
{
    int status[DEV_STATUS_MAX] = {0};
    mach_msg_type_number_t count = TTY_STATUS_COUNT - 1;
    CHECK_KR(device_get_status(console, TTY_STATUS, status, &count), D_INVALID_OPERATION);
    CHECK_KR(device_set_status(console, TTY_STATUS, status, TTY_STATUS_COUNT - 1),
             D_INVALID_OPERATION);
    CHECK_KR(set_tty(console, NSPEEDS, B9600, 0, TF_LITOUT), D_INVALID_OPERATION);
    CHECK_KR(set_tty(console, B9600, -1, 0, TF_LITOUT), D_INVALID_OPERATION);
    count = DEV_STATUS_MAX;
    CHECK_KR(device_get_status(console, TTY_FLUSH, status, &count), D_INVALID_OPERATION);
    CHECK_KR(device_get_status(console, 0x12345, status, &count), D_INVALID_OPERATION);
    CHECK_KR(device_set_status(console, TTY_SET_TRANSLATION, status, 1), D_INVALID_OPERATION);
    CHECK_KR(device_set_status(console, 0x12345, status, 1), D_INVALID_OPERATION);
    CHECK_KR(device_set_status(console, TTY_FLUSH, status, 0), D_INVALID_OPERATION);
    CHECK_KR(device_set_status(console, TTY_MODEM, status, 0), D_INVALID_OPERATION);
    /* TTY_MODEM is one integer: a caller asking for none is told so. */
    count = 0;
    CHECK_KR(device_get_status(console, TTY_MODEM, status, &count), MIG_ARRAY_TOO_LARGE);

    /* The modem bits: set as given; TM_HUP drops DTR and RTS. */
    CHECK(get_modem(console) == (TM_DTR | TM_RTS)); /* as after comopen */
    int bits = TM_DTR | TM_LE;
    CHECK_KR(device_set_status(console, TTY_MODEM, &bits, TTY_MODEM_COUNT), D_SUCCESS);
    CHECK(get_modem(console) == (TM_DTR | TM_LE));
    CHECK_KR(device_set_status(console, TTY_SET_BREAK, NULL, 0), D_SUCCESS);
    CHECK(get_modem(console) == (TM_DTR | TM_LE | TM_BRK));
    CHECK_KR(device_set_status(console, TTY_CLEAR_BREAK, NULL, 0), D_SUCCESS);
    CHECK(get_modem(console) == (TM_DTR | TM_LE));
    bits = TM_HUP;
    CHECK_KR(device_set_status(console, TTY_MODEM, &bits, TTY_MODEM_COUNT), D_SUCCESS);
    CHECK(get_modem(console) == TM_LE);
    bits = TM_DTR | TM_RTS;
    CHECK_KR(device_set_status(console, TTY_MODEM, &bits, TTY_MODEM_COUNT), D_SUCCESS);

    /* Output stops and starts; a write restarts it, as GNU Mach's. */
    CHECK_KR(device_set_status(console, TTY_STOP, NULL, 0), D_SUCCESS);
    CHECK_KR(device_set_status(console, TTY_STOP, NULL, 0), D_SUCCESS);
    CHECK_KR(device_set_status(console, TTY_START, NULL, 0), D_SUCCESS);
    CHECK_KR(device_set_status(console, TTY_START, NULL, 0), D_SUCCESS);
    status[0] = 0; /* 0: both ways */
    CHECK_KR(device_set_status(console, TTY_FLUSH, status, TTY_FLUSH_COUNT), D_SUCCESS);
}

/* The console on a FIFO and a file: no terminal, so the status is what
 * was set, as GNU Mach keeps it. */
static void task_tty_record(mach_port_t console, int fifo)
{
    struct tty_status ts;
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B115200, B115200, 0, CONSOLE_FLAGS));
    task_tty_common(console);
    CHECK_KR(set_tty(console, B9600, B4800, 3, TF_EVENP | TF_TANDEM | TF_MDMBUF), D_SUCCESS);
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B9600, B4800, 3, TF_EVENP | TF_TANDEM | TF_MDMBUF));
    /* Refused settings change nothing. */
    CHECK_KR(set_tty(console, NSPEEDS, B9600, 0, 0), D_INVALID_OPERATION);
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B9600, B4800, 3, TF_EVENP | TF_TANDEM | TF_MDMBUF));
    /* TF_HUPCLS sticks until the last close (chario keeps it in t_state). */
    CHECK_KR(set_tty(console, B9600, B9600, 4, TF_LITOUT | TF_HUPCLS), D_SUCCESS);
    CHECK_KR(set_tty(console, B9600, B9600, 4, TF_LITOUT), D_SUCCESS);
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B9600, B9600, 4, TF_LITOUT | TF_HUPCLS));

    /* Flushing input discards what waits in the FIFO. */
    CHECK(write(fifo, "junk", 4) == 4);
    int rw = D_READ;
    CHECK_KR(device_set_status(console, TTY_FLUSH, &rw, TTY_FLUSH_COUNT), D_SUCCESS);
    char buf[IO_INBAND_MAX];
    mach_msg_type_number_t len = sizeof buf;
    CHECK_KR(device_read_inband(console, D_NOWAIT, 0, sizeof buf, buf, &len), D_WOULD_BLOCK);
    /* A write after TTY_STOP goes out. */
    CHECK_KR(device_set_status(console, TTY_STOP, NULL, 0), D_SUCCESS);
    int written = -1;
    io_buf_ptr_inband_t line = CONSOLE_STOPPED_LINE;
    CHECK_KR(device_write_inband(console, 0, 0, line, strlen(CONSOLE_STOPPED_LINE), &written),
             D_SUCCESS);
    CHECK(written == (int)strlen(CONSOLE_STOPPED_LINE));
    CHECK_KR(device_set_status(console, TTY_SET_BREAK, NULL, 0), D_SUCCESS);
}

/* After the last close and a new open: the speeds and flags stay, the
 * break character, the sticky TF_HUPCLS and the break go, DTR and RTS
 * are up again (comclose, comopen). */
static void task_tty_reopened(void)
{
    mach_port_t console = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ | D_WRITE, "console", &console), D_SUCCESS);
    struct tty_status ts;
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B9600, B9600, 0, TF_LITOUT));
    CHECK(get_modem(console) == (TM_DTR | TM_RTS));
    CHECK_KR(device_close(console), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), console);
}

/* The GNU Mach speed number of the Linux speed S (-1: none). */
static int speed_number(speed_t s)
{
    for (int i = 0; i < NSPEEDS; i++) {
        if (linux_speeds[i] == s) {
            return i;
        }
    }
    return -1;
}

/* The console on a pseudo-terminal, PATH (which this task opens too):
 * the status is the terminal's termios. */
static void task_tty_pty(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    CHECK(fd >= 0);
    mach_port_t console = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ | D_WRITE, "console", &console), D_SUCCESS);
    if (fd < 0 || console == MACH_PORT_NULL) {
        return;
    }
    /* The driver typed a line before: flushing input discards it. */
    int waiting = 0;
    CHECK(ioctl(fd, FIONREAD, &waiting) == 0 && waiting > 0);
    int rw = D_READ;
    CHECK_KR(device_set_status(console, TTY_FLUSH, &rw, TTY_FLUSH_COUNT), D_SUCCESS);
    CHECK(ioctl(fd, FIONREAD, &waiting) == 0 && waiting == 0);
    char buf[IO_INBAND_MAX];
    mach_msg_type_number_t len = sizeof buf;
    CHECK_KR(device_read_inband(console, D_NOWAIT, 0, sizeof buf, buf, &len), D_WOULD_BLOCK);

    /* What the terminal shows at first. */
    struct termios t;
    struct tty_status ts;
    CHECK(tcgetattr(fd, &t) == 0);
    get_tty(console, &ts);
    CHECK(ts.tt_ospeed == speed_number(cfgetospeed(&t)));
    CHECK(!(ts.tt_flags & TF_ECHO) == !(t.c_lflag & ECHO));
    CHECK(!(ts.tt_flags & TF_CRMOD) == !(t.c_oflag & ONLCR));

    /* Set, the terminal follows, and a get returns what was set. */
    CHECK_KR(set_tty(console, B9600, B9600, 0, TF_ECHO | TF_LITOUT | TF_TANDEM), D_SUCCESS);
    CHECK(tcgetattr(fd, &t) == 0);
    CHECK(cfgetospeed(&t) == linux_speeds[B9600] && cfgetispeed(&t) == linux_speeds[B9600]);
    CHECK((t.c_lflag & ECHO) && (t.c_iflag & IXOFF) && !(t.c_oflag & ONLCR) &&
          !(t.c_iflag & ICRNL) && (t.c_oflag & TABDLY) == TAB0);
    CHECK((t.c_cflag & CSIZE) == CS8 && !(t.c_cflag & PARENB));
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B9600, B9600, 0, TF_ECHO | TF_LITOUT | TF_TANDEM));

    int flags = TF_EVENP | TF_CRMOD | TF_XTABS | TF_NOHANG;
    CHECK_KR(set_tty(console, B2400, B2400, 7, flags), D_SUCCESS);
    CHECK(tcgetattr(fd, &t) == 0);
    CHECK(cfgetospeed(&t) == linux_speeds[B2400]);
    CHECK(!(t.c_lflag & ECHO) && !(t.c_iflag & IXOFF) && (t.c_oflag & ONLCR) &&
          (t.c_iflag & ICRNL) && (t.c_oflag & TABDLY) == TAB3 && (t.c_cflag & CLOCAL));
    /* (Linux's pseudo-terminals keep 8 bits without parity: the parity
     * asked for is only recorded.) */
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B2400, B2400, 7, flags));
    CHECK_KR(set_tty(console, B2400, B2400, 7, TF_ODDP), D_SUCCESS);
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B2400, B2400, 7, TF_ODDP));

    /* Changed behind machd's back (stty): a get shows the terminal where
     * it changed (glibc sets one speed for both ways). */
    CHECK(tcgetattr(fd, &t) == 0);
    t.c_lflag |= ECHO;
    cfsetospeed(&t, linux_speeds[B38400]);
    cfsetispeed(&t, linux_speeds[B38400]);
    CHECK(tcsetattr(fd, TCSANOW, &t) == 0);
    get_tty(console, &ts);
    CHECK(tty_is(&ts, B38400, B38400, 7, TF_ODDP | TF_ECHO));

    task_tty_common(console);

    /* TTY_STOP stops the terminal's output (a write that cannot wait
     * fails), TTY_START, a console write or a flush of output restart
     * it. */
    CHECK_KR(device_set_status(console, TTY_STOP, NULL, 0), D_SUCCESS);
    CHECK(write(fd, "s", 1) < 0 && errno == EAGAIN);
    CHECK_KR(device_set_status(console, TTY_START, NULL, 0), D_SUCCESS);
    CHECK(write(fd, "s", 1) == 1);
    CHECK_KR(device_set_status(console, TTY_STOP, NULL, 0), D_SUCCESS);
    int written = -1;
    io_buf_ptr_inband_t line = CONSOLE_STOPPED_LINE;
    CHECK_KR(device_write_inband(console, 0, 0, line, strlen(CONSOLE_STOPPED_LINE), &written),
             D_SUCCESS);
    CHECK(written == (int)strlen(CONSOLE_STOPPED_LINE));
    CHECK(write(fd, "s", 1) == 1);
    CHECK_KR(device_set_status(console, TTY_STOP, NULL, 0), D_SUCCESS);
    rw = D_WRITE;
    CHECK_KR(device_set_status(console, TTY_FLUSH, &rw, TTY_FLUSH_COUNT), D_SUCCESS);
    CHECK(write(fd, "s", 1) == 1);
    /* The last close restarts output stopped. */
    CHECK_KR(device_set_status(console, TTY_STOP, NULL, 0), D_SUCCESS);
    CHECK_KR(device_close(console), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), console);
    CHECK(write(fd, "s", 1) == 1);
    close(fd);
}

static void task_console(const char *fifo_path)
{
    int fifo = open(fifo_path, O_WRONLY | O_CLOEXEC);
    CHECK(fifo >= 0);
    mach_port_t console = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ | D_WRITE, "console", &console), D_SUCCESS);
    int written = -1;
    io_buf_ptr_inband_t line = CONSOLE_LINE;
    CHECK_KR(device_write_inband(console, 0, 0, line, strlen(CONSOLE_LINE), &written),
             D_SUCCESS);
    CHECK(written == (int)strlen(CONSOLE_LINE));
    vm_address_t buf = 0;
    size_t len = strlen(CONSOLE_OOL_LINE);
    CHECK_KR(vm_allocate(mach_task_self(), &buf, len, TRUE), KERN_SUCCESS);
    memcpy((void *)buf, CONSOLE_OOL_LINE, len);
    written = -1;
    CHECK_KR(device_write(console, 0, 0, (io_buf_ptr_t)buf, len, &written), D_SUCCESS);
    CHECK(written == (int)len);
    vm_deallocate(mach_task_self(), buf, len);
    int status[DEV_STATUS_MAX];
    mach_msg_type_number_t count = DEV_STATUS_MAX;
    CHECK_KR(device_get_status(console, DEV_GET_SIZE, status, &count), D_INVALID_OPERATION);

    if (fifo >= 0) {
        task_console_reads(console, fifo);
        task_tty_record(console, fifo);
        close(fifo);
    }

    /* A read still waiting when the console closes is answered. */
    struct reader last = {.console = console};
    atomic_store(&readers_done, 0);
    CHECK(pthread_create(&last.thread, NULL, reader_main, &last) == 0);
    nap(200);
    CHECK_KR(device_close(console), D_SUCCESS);
    pthread_join(last.thread, NULL);
    /* (MACH_SEND_INVALID_DEST only if the thread had not yet sent.) */
    CHECK(last.kr == D_NO_SUCH_DEVICE || last.kr == MACH_SEND_INVALID_DEST);
    mach_port_deallocate(mach_task_self(), console);
    task_tty_reopened();
}

/* ---- the time device ---- */

/* Reads the mapped time as <mach/time_value.h> says to. */
static struct timespec mapped_now(const volatile mapped_time_value_t *t)
{
    int64_t secs;
    long nsecs;
    do {
        secs = t->time_value.seconds;
        atomic_thread_fence(memory_order_seq_cst);
        nsecs = t->time_value.nanoseconds;
        atomic_thread_fence(memory_order_seq_cst);
    } while (secs != t->check_seconds64);
    return (struct timespec){.tv_sec = secs, .tv_nsec = nsecs};
}

static double seconds_between(struct timespec a, struct timespec b)
{
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* glibc's maptime, step by step: open "time", map it, read the clock. */
static void task_time(void)
{
    mach_port_t time_dev = MACH_PORT_NULL, pager = MACH_PORT_NULL;
    CHECK_KR(device_open(master, 0, "time", &time_dev), D_SUCCESS);
    CHECK_KR(device_map(time_dev, VM_PROT_READ | 0x100, 0, 4096, &pager, 0),
             KERN_INVALID_ARGUMENT);
    CHECK_KR(device_map(time_dev, VM_PROT_READ, 0, sizeof(mapped_time_value_t), &pager, 0),
             D_SUCCESS);
    CHECK(MACH_PORT_VALID(pager));
    /* It is only mapped. */
    io_buf_ptr_inband_t buf;
    mach_msg_type_number_t len = sizeof buf;
    int written = -1;
    CHECK_KR(device_read_inband(time_dev, 0, 0, 8, buf, &len), D_INVALID_OPERATION);
    CHECK_KR(device_write_inband(time_dev, 0, 0, buf, 1, &written), D_INVALID_OPERATION);

    vm_address_t at = 0;
    CHECK_KR(vm_map(mach_task_self(), &at, 4096, 0, TRUE, pager, 0, FALSE, VM_PROT_READ,
                    VM_PROT_READ, VM_INHERIT_NONE),
             KERN_SUCCESS);
    const volatile mapped_time_value_t *t = (const void *)at;
    struct timespec linux_now;
    clock_gettime(CLOCK_REALTIME, &linux_now);
    struct timespec first = mapped_now(t);
    CHECK(seconds_between(first, linux_now) > -0.5 && seconds_between(first, linux_now) < 0.5);
    CHECK(t->seconds == (integer_t)t->time_value.seconds || t->seconds != t->check_seconds);
    time_value64_t up;
    CHECK_KR(host_get_uptime64(mach_host_self(), &up), KERN_SUCCESS);
    CHECK(t->uptime_value.seconds <= up.seconds && t->uptime_value.seconds + 1 >= up.seconds);
    /* It ticks (every 10 ms): wait for it, a second at most. */
    struct timespec later = first;
    for (int i = 0; i < 100 && seconds_between(first, later) <= 0; i++) {
        nap(10);
        later = mapped_now(t);
    }
    CHECK(seconds_between(first, later) > 0);
    /* Nor through the file behind the mapping, reopened read-write (as
     * root can, through /proc): machd's page is sealed. */
    char files[64];
    snprintf(files, sizeof files, "/proc/self/map_files/%lx-%lx", (unsigned long)at,
             (unsigned long)at + 4096);
    int page_fd = open(files, O_RDWR | O_CLOEXEC);
    if (page_fd >= 0) {
        CHECK(write(page_fd, "x", 1) < 0 && ftruncate(page_fd, 0) < 0);
        CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, page_fd, 0) == MAP_FAILED);
        close(page_fd);
    }
    /* Read-only: no writable mapping, no raising the protection. */
    CHECK_KR(vm_protect(mach_task_self(), at, 4096, FALSE, VM_PROT_READ | VM_PROT_WRITE),
             KERN_PROTECTION_FAILURE);
    vm_address_t writable = 0;
    CHECK_KR(vm_map(mach_task_self(), &writable, 4096, 0, TRUE, pager, 0, FALSE,
                    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_ALL, VM_INHERIT_NONE),
             KERN_PROTECTION_FAILURE);
    /* A copy is a snapshot, the task's own. */
    vm_address_t copy = 0;
    CHECK_KR(vm_map(mach_task_self(), &copy, 4096, 0, TRUE, pager, 0, TRUE,
                    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_ALL, VM_INHERIT_COPY),
             KERN_SUCCESS);
    mapped_time_value_t *snap = (mapped_time_value_t *)copy;
    struct timespec taken = mapped_now(snap);
    for (int i = 0; i < 100 && seconds_between(taken, mapped_now(t)) <= 0; i++) {
        nap(10);
    }
    CHECK(seconds_between(taken, mapped_now(t)) > 0);
    CHECK(seconds_between(taken, mapped_now(snap)) == 0);
    snap->seconds = 0;
    CHECK_KR(vm_deallocate(mach_task_self(), copy, 4096), KERN_SUCCESS);
    CHECK_KR(vm_deallocate(mach_task_self(), at, 4096), KERN_SUCCESS);
    /* Mapped again, through the same memory object. */
    mach_port_t again = MACH_PORT_NULL;
    CHECK_KR(device_map(time_dev, VM_PROT_READ, 0, 4096, &again, 0), D_SUCCESS);
    CHECK(again == pager);
    at = 0;
    CHECK_KR(vm_map(mach_task_self(), &at, 4096, 0, TRUE, again, 0, FALSE, VM_PROT_READ,
                    VM_PROT_READ, VM_INHERIT_NONE),
             KERN_SUCCESS);
    CHECK(seconds_between(first, mapped_now((const void *)at)) > 0);
    CHECK_KR(vm_deallocate(mach_task_self(), at, 4096), KERN_SUCCESS);
    CHECK_KR(mach_port_mod_refs(mach_task_self(), pager, MACH_PORT_RIGHT_SEND, -2),
             KERN_SUCCESS);
    CHECK_KR(device_close(time_dev), D_SUCCESS);
}

/* ---- tasks killed in the middle of device calls ---- */

/* A task that dies in the middle of device calls leaves nothing behind
 * in machd: DEATHS times for each kind of victim, a task of the instance
 * starts the calls and is killed (SIGKILL).  Then machd must have no
 * more threads than before, no more descriptors than the send ends of
 * the victim's reply ports (below), the input typed next must go to the
 * next reader, not to a read of the dead task, and machd must serve on.
 * As in GNU Mach (whose devices ignore no-senders), the devices a victim
 * left open stay open: one port per device and mode, which does not
 * pile up.
 *
 * The send end of the reply port of a request to machd stays in the
 * transport table of the port the request went to until the table is
 * swept (as it doubles, at 64 entries first: ARCHITECTURE.md, "Tasks and
 * ports"): a dead victim may leave machd one descriptor per reply port
 * it used, VICTIM_*_PORTS of them, and nothing more.  (A sweep during
 * the deaths lowers the count, so this bound is loose then; the threads
 * and the console's queue are counted exactly.) */
#define DEATHS 20
#define VICTIM_READERS 3     /* "read": console reads besides the main thread's */
#define VICTIM_DISK_THREADS 2
#define VICTIM_READ_PORTS (1 + VICTIM_READERS)
#define VICTIM_HOLD_PORTS (1 + VICTIM_DISK_THREADS)
#define VICTIM_REQUEST_PORTS 2 /* the main thread's and the one replies are asked on */
#define BEACON_OK 1
#define BEACON_FAILED 2

/* The victims, run as tasks of the instance with --victim=KIND and the
 * device master port: once their calls are on their way, each sends its
 * bootstrap port (the survivor's) a send right to a port of its own, the
 * beacon, which dies with the victim's other ports. */

static mach_port_t victim_beacon;

static void victim_ready(bool ok)
{
    mach_port_t boot = MACH_PORT_NULL;
    (void)task_get_bootstrap_port(mach_task_self(), &boot);
    if (ok) {
        victim_beacon = test_new_port(false);
    }
    (void)test_send_port(boot, ok ? victim_beacon : MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND,
                         ok ? BEACON_OK : BEACON_FAILED);
}

/* A console read that waits (nothing is typed): in line in odd threads,
 * out of line in the others. */
static void *victim_console_reader(void *arg)
{
    mach_port_t console = *(mach_port_t *)arg;
    static atomic_uint n;
    if (atomic_fetch_add(&n, 1) % 2 == 1) {
        char buf[IO_INBAND_MAX];
        mach_msg_type_number_t len = sizeof buf;
        (void)device_read_inband(console, 0, 0, sizeof buf, buf, &len);
    } else {
        io_buf_ptr_t data = NULL;
        mach_msg_type_number_t len = 0;
        (void)device_read(console, 0, 0, 100, &data, &len);
    }
    return NULL;
}

/* Reads all of hd0 and writes it back, for ever: a disk read or write is
 * in flight whenever the victim dies (what is written is what is there). */
static void *victim_disk_main(void *arg)
{
    mach_port_t hd = *(mach_port_t *)arg;
    for (;;) {
        io_buf_ptr_t data = NULL;
        mach_msg_type_number_t len = 0;
        int written;
        if (device_read(hd, 0, 0, INT_MAX, &data, &len) == D_SUCCESS && len > 0) {
            (void)device_write(hd, 0, 0, data, len, &written);
            vm_deallocate(mach_task_self(), (vm_address_t)data, len);
        }
    }
    return NULL;
}

/* "read": console reads wait in every thread. */
static bool victim_read(void)
{
    static mach_port_t console;
    if (device_open(master, D_READ, "console", &console) != D_SUCCESS) {
        return false;
    }
    for (int i = 0; i < VICTIM_READERS; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, victim_console_reader, &console) != 0) {
            return false;
        }
    }
    victim_ready(true);
    victim_console_reader(&console);
    return true;
}

/* "hold": hd0 open read-write with its reads and writes in flight, hd0
 * open read-only, the console open with a read waiting, "time" open and
 * mapped. */
static bool victim_hold(void)
{
    static mach_port_t hd, ro, console;
    mach_port_t time_dev = MACH_PORT_NULL, pager = MACH_PORT_NULL;
    vm_address_t at = 0;
    bool ok = device_open(master, D_READ | D_WRITE, "hd0", &hd) == D_SUCCESS &&
              device_open(master, D_READ, "hd0", &ro) == D_SUCCESS &&
              device_open(master, D_READ | D_WRITE, "console", &console) == D_SUCCESS &&
              device_open(master, 0, "time", &time_dev) == D_SUCCESS &&
              device_map(time_dev, VM_PROT_READ, 0, 4096, &pager, 0) == D_SUCCESS &&
              vm_map(mach_task_self(), &at, 4096, 0, TRUE, pager, 0, FALSE, VM_PROT_READ,
                     VM_PROT_READ, VM_INHERIT_NONE) == KERN_SUCCESS;
    ok = ok && mapped_now((const void *)at).tv_sec > 0;
    for (int i = 0; ok && i < VICTIM_DISK_THREADS; i++) {
        pthread_t thread;
        ok = pthread_create(&thread, NULL, victim_disk_main, &hd) == 0;
    }
    if (!ok) {
        return false;
    }
    check_read(ro, 1, REC, D_SUCCESS, REC, hd_byte);
    victim_ready(test_failures == 0);
    victim_console_reader(&console);
    return true;
}

/* "request": device_request.defs's one-way calls, their replies asked
 * on a port of the victim's: console reads that wait, disk reads and a
 * write whose replies (one with a megabyte out of line) wait in the
 * port's queue, an open whose reply carries the device's port. */
static bool victim_request(void)
{
    mach_port_t reply = MACH_PORT_NULL, hd = MACH_PORT_NULL, console = MACH_PORT_NULL;
    io_buf_ptr_t data = NULL;
    mach_msg_type_number_t len = 0;
    io_buf_ptr_inband_t none = "";
    bool ok = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply) ==
                  KERN_SUCCESS &&
              device_open(master, D_READ | D_WRITE, "hd0", &hd) == D_SUCCESS &&
              device_open(master, D_READ | D_WRITE, "console", &console) == D_SUCCESS &&
              device_read(hd, 0, 256, 16 * REC, &data, &len) == D_SUCCESS;
    ok = ok && device_read_request(console, reply, 0, 0, 100) == KERN_SUCCESS &&
         device_read_request_inband(console, reply, 0, 0, 100) == KERN_SUCCESS &&
         device_read_request(hd, reply, 0, 0, INT_MAX) == KERN_SUCCESS &&
         device_read_request_inband(hd, reply, 0, 0, 100) == KERN_SUCCESS &&
         device_write_request(hd, reply, 0, 256, data, len) == KERN_SUCCESS &&
         device_write_request_inband(console, reply, 0, 0, none, 0) == KERN_SUCCESS &&
         device_open_request(master, reply, D_READ, "cd0") == KERN_SUCCESS;
    if (!ok) {
        return false;
    }
    victim_ready(true);
    for (;;) {
        pause();
    }
}

static int victim_main(const char *kind)
{
    bool ok = false;
    if (strcmp(kind, "read") == 0) {
        ok = victim_read();
    } else if (strcmp(kind, "hold") == 0) {
        ok = victim_hold();
    } else if (strcmp(kind, "request") == 0) {
        ok = victim_request();
    }
    if (!ok) {
        victim_ready(false);
    }
    return 1; /* (a victim's calls only return when something is wrong) */
}

/* The survivor's side. */

static mach_port_t deaths_boot; /* the victims' bootstrap port, receive right */

static const struct victim_kind {
    const char *name;
    int ports; /* reply ports it sends machd requests from */
} victim_kinds[] = {
    {"read", VICTIM_READ_PORTS},
    {"hold", VICTIM_HOLD_PORTS},
    {"request", VICTIM_REQUEST_PORTS},
};

/* What machd uses that a death could leak. */
struct machd_usage {
    int fds;
    long threads;
};

static struct machd_usage machd_usage_of(pid_t machd)
{
    return (struct machd_usage){.fds = test_count_fds_of(machd),
                                .threads = test_status_kb(machd, "Threads")};
}

static bool usage_within(struct machd_usage now, struct machd_usage bound)
{
    return now.fds <= bound.fds && now.threads <= bound.threads;
}

/* Waits (at most 3 s) until machd uses no more than BOUND; returns what
 * it uses then.  (A dead task's connections and threads in machd go a
 * moment after its ports.) */
static struct machd_usage machd_settle(pid_t machd, struct machd_usage bound)
{
    struct machd_usage now = machd_usage_of(machd);
    for (int i = 0; i < 3000 && !usage_within(now, bound); i++) {
        nap(1);
        now = machd_usage_of(machd);
    }
    return now;
}

/* Starts SELF as a victim of KIND and waits for its calls to be on their
 * way.  Returns its pid and its beacon in *BEACON (-1: it failed, and is
 * reaped). */
static pid_t victim_start(const char *self, const char *kind, mach_port_t *beacon)
{
    char kind_arg[32], master_arg[48];
    snprintf(kind_arg, sizeof kind_arg, "--victim=%s", kind);
    snprintf(master_arg, sizeof master_arg, "--device-master-port=%u", (unsigned)master);
    struct hell_port_grant grant = {.right = master, .name = master};
    struct hell_spawn_attr attr = {.bootstrap = deaths_boot, .grants = &grant, .ngrants = 1};
    mach_port_t task = MACH_PORT_NULL;
    pid_t pid = hell_spawn_attr(self, (char *[]){(char *)self, kind_arg, master_arg, NULL},
                                &attr, &task);
    CHECK(pid > 0);
    if (pid <= 0) {
        return -1;
    }
    mach_port_deallocate(mach_task_self(), task);
    struct {
        struct test_port_msg m;
        char slack[64];
    } r;
    mach_msg_return_t mr = mach_msg(&r.m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof r,
                                    deaths_boot, 10000, MACH_PORT_NULL);
    CHECK_KR(mr, MACH_MSG_SUCCESS);
    bool ok = mr == MACH_MSG_SUCCESS && r.m.h.msgh_id == BEACON_OK &&
              MACH_PORT_VALID(r.m.p.name);
    if (mr == MACH_MSG_SUCCESS && !ok) {
        fprintf(stderr, "%s: a \"%s\" victim could not start its calls\n", __FILE__, kind);
        test_failures++;
    }
    if (!ok) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    *beacon = r.m.p.name;
    /* Its requests are sent: give machd a moment to take them. */
    nap(100);
    return pid;
}

/* Kills victim PID and waits until its ports are dead (its BEACON dies
 * with them, when machd's janitor destroys them). */
static void victim_kill(pid_t pid, mach_port_t beacon)
{
    int status = 0;
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        fprintf(stderr, "%s: a victim ended before it was killed (status %#x): its calls "
                "returned\n", __FILE__, (unsigned)status);
        test_failures++;
    }
    await_dead_name(beacon, 5000);
    mach_port_deallocate(mach_task_self(), beacon);
}

/* The survivor's console reads, all from one thread: a thread that ends
 * leaves its reply port behind, which machd would count. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t go;
    bool asked;
    struct reader r;
} survivor = {.lock = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER};

static void *survivor_main(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&survivor.lock);
        while (!survivor.asked) {
            pthread_cond_wait(&survivor.go, &survivor.lock);
        }
        survivor.asked = false;
        pthread_mutex_unlock(&survivor.lock);
        reader_main(&survivor.r); /* (readers_done counts it) */
    }
    return arg;
}

/* Waits at most MS for the survivor's read to be answered. */
static bool survivor_answered_within(int ms)
{
    for (int i = 0; i < ms && atomic_load(&readers_done) == 0; i++) {
        nap(1);
    }
    return atomic_load(&readers_done) > 0;
}

/* LINE, typed on the console, goes whole to the survivor's next read of
 * CONSOLE; with WAITS_FIRST, that read is made first and must wait for
 * it.  Failures name the death: ROUND of KIND. */
static bool console_gets(mach_port_t console, int fifo, const char *line, bool waits_first,
                         const char *kind, int round)
{
    atomic_store(&readers_done, 0);
    pthread_mutex_lock(&survivor.lock);
    survivor.r.console = console;
    survivor.asked = true;
    pthread_cond_signal(&survivor.go);
    pthread_mutex_unlock(&survivor.lock);
    if (waits_first && survivor_answered_within(200)) {
        fprintf(stderr, "%s: after death %d of a \"%s\" victim, a console read did not wait "
                "for input: %#x\n", __FILE__, round, kind, (unsigned)survivor.r.kr);
        test_failures++;
        return false;
    }
    CHECK(write(fifo, line, strlen(line)) == (ssize_t)strlen(line));
    bool answered = survivor_answered_within(2000);
    /* Swallowed: type on until the read is answered (each dead read
     * still waiting would take what is typed). */
    for (int i = 0; !answered && i < 4 * VICTIM_READ_PORTS; i++) {
        CHECK(write(fifo, "x", 1) == 1);
        answered = survivor_answered_within(200);
    }
    const struct reader *r = &survivor.r;
    bool ok = answered && r->kr == D_SUCCESS && r->len == strlen(line) &&
              memcmp(r->data, line, r->len) == 0;
    if (!answered) {
        fprintf(stderr, "%s: the console never answered after death %d of a \"%s\" victim\n",
                __FILE__, round, kind);
        test_failures++;
    } else if (!ok) {
        fprintf(stderr, "%s: after death %d of a \"%s\" victim, the console read %#x, "
                "%u bytes \"%.*s\", not \"%s\"\n",
                __FILE__, round, kind, (unsigned)r->kr, r->len, (int)r->len, r->data, line);
        test_failures++;
    }
    return ok;
}

/* machd serves on: a disk read, "time" mapped, nothing waiting on the
 * console. */
static void machd_serves(mach_port_t console)
{
    mach_port_t hd = MACH_PORT_NULL, time_dev = MACH_PORT_NULL, pager = MACH_PORT_NULL;
    CHECK_KR(device_open(master, D_READ, "hd0", &hd), D_SUCCESS);
    check_read(hd, 21, REC, D_SUCCESS, REC, hd_byte);
    CHECK_KR(device_close(hd), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), hd);
    CHECK_KR(device_open(master, 0, "time", &time_dev), D_SUCCESS);
    CHECK_KR(device_map(time_dev, VM_PROT_READ, 0, 4096, &pager, 0), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), pager);
    CHECK_KR(device_close(time_dev), D_SUCCESS);
    mach_port_deallocate(mach_task_self(), time_dev);
    char buf[IO_INBAND_MAX];
    mach_msg_type_number_t len = sizeof buf;
    CHECK_KR(device_read_inband(console, D_NOWAIT, 0, sizeof buf, buf, &len), D_WOULD_BLOCK);
}

/* DEATHS victims of KIND, one after the other, each checked after its
 * death against what machd used before the first, BASE; returns what
 * machd uses after the last. */
static struct machd_usage task_deaths_of(const char *self, const struct victim_kind *kind,
                                         pid_t machd, mach_port_t console, int fifo,
                                         struct machd_usage base)
{
    struct machd_usage now = base;
    for (int round = 1; round <= DEATHS; round++) {
        mach_port_t beacon = MACH_PORT_NULL;
        pid_t pid = victim_start(self, kind->name, &beacon);
        if (pid < 0) {
            break;
        }
        victim_kill(pid, beacon);
        struct machd_usage bound = {base.fds + round * kind->ports, base.threads};
        now = machd_settle(machd, bound);
        if (!usage_within(now, bound)) {
            fprintf(stderr, "%s: after death %d of a \"%s\" victim, machd has %d descriptors "
                    "and %ld threads, %d and %ld before the first\n",
                    __FILE__, round, kind->name, now.fds, now.threads, base.fds, base.threads);
            test_failures++;
        }
        char line[32];
        snprintf(line, sizeof line, "after %s %d\n", kind->name, round);
        bool ok = console_gets(console, fifo, line, false, kind->name, round);
        machd_serves(console);
        if (!ok || !usage_within(now, bound)) {
            break; /* once is enough to tell */
        }
    }
    fprintf(stderr, "test_devices: \"%s\" deaths: machd has %d descriptors and %ld threads, "
            "%d and %ld before\n",
            kind->name, now.fds, now.threads, base.fds, base.threads);
    return now;
}

/* The reads of dead tasks are gone, input or not: DEATHS "read" victims
 * die in a row, leaving more reads than the console queues (64) if they
 * stayed (the last victims' reads would then fail and end them); then a
 * read still waits for input (it is not refused), and gets it. */
static void task_deaths_unread(const char *self, mach_port_t console, int fifo)
{
    for (int round = 1; round <= DEATHS; round++) {
        mach_port_t beacon = MACH_PORT_NULL;
        pid_t pid = victim_start(self, "read", &beacon);
        if (pid < 0) {
            return;
        }
        victim_kill(pid, beacon);
    }
    CHECK(DEATHS * VICTIM_READ_PORTS > 64);
    (void)console_gets(console, fifo, "after all\n", true, "read", DEATHS);
    machd_serves(console);
}

/* Run last (the victims leave the console open).  The first victim of
 * each kind makes what stays (the ports of the devices it opens, the
 * time thread); what machd uses after them is the base.  The first
 * failure ends the deaths: it is enough to tell, and saves time. */
static void task_deaths(const char *fifo_path)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    int fifo = open(fifo_path, O_WRONLY | O_CLOEXEC);
    mach_port_t console = MACH_PORT_NULL;
    pthread_t thread;
    CHECK(n > 0 && fifo >= 0);
    CHECK_KR(device_open(master, D_READ, "console", &console), D_SUCCESS);
    CHECK(pthread_create(&thread, NULL, survivor_main, NULL) == 0);
    deaths_boot = test_new_port(true);
    int failures = test_failures;
    self[n > 0 ? n : 0] = '\0';
    pid_t machd = getppid(); /* hell run's tasks are machd's children */
    size_t nkinds = sizeof victim_kinds / sizeof victim_kinds[0];
    for (size_t k = 0; k < nkinds && test_failures == failures; k++) {
        mach_port_t beacon = MACH_PORT_NULL;
        pid_t pid = victim_start(self, victim_kinds[k].name, &beacon);
        if (pid > 0) {
            victim_kill(pid, beacon);
        }
        (void)console_gets(console, fifo, "first\n", false, victim_kinds[k].name, 0);
    }
    /* The base: what machd uses once steady. */
    struct machd_usage base = machd_usage_of(machd), was;
    for (int i = 0; i < 50; i++) {
        nap(20);
        was = base;
        base = machd_usage_of(machd);
        if (base.fds == was.fds && base.threads == was.threads) {
            break;
        }
    }
    CHECK(base.fds > 0 && base.threads > 0);
    for (size_t k = 0; k < nkinds && test_failures == failures; k++) {
        base = task_deaths_of(self, &victim_kinds[k], machd, console, fifo, base);
    }
    if (test_failures == failures) {
        task_deaths_unread(self, console, fifo);
    }
    mach_port_destroy(mach_task_self(), deaths_boot);
    mach_port_deallocate(mach_task_self(), console); /* (open still: victims left it so) */
    if (fifo >= 0) {
        close(fifo);
    }
}

static int task_main(int argc, char **argv)
{
    const char *fifo = NULL, *pty = NULL, *victim = NULL;
    mach_port_t host_priv = MACH_PORT_NULL;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--victim=", 9) == 0) {
            victim = argv[i] + 9;
        } else if (strncmp(argv[i], "--host-priv-port=", 17) == 0) {
            host_priv = (mach_port_t)strtoul(argv[i] + 17, NULL, 10);
        } else if (strncmp(argv[i], "--device-master-port=", 21) == 0) {
            master = (mach_port_t)strtoul(argv[i] + 21, NULL, 10);
        } else if (strncmp(argv[i], "--console-fifo=", 15) == 0) {
            fifo = argv[i] + 15;
        } else if (strncmp(argv[i], "--console-pty=", 14) == 0) {
            pty = argv[i] + 14;
        }
    }
    if (victim != NULL) {
        return victim_main(victim);
    }
    /* Both privileged ports are send rights under the names given. */
    mach_port_type_t type = 0;
    CHECK_KR(mach_port_type(mach_task_self(), host_priv, &type), KERN_SUCCESS);
    CHECK(type & MACH_PORT_TYPE_SEND);
    type = 0;
    CHECK_KR(mach_port_type(mach_task_self(), master, &type), KERN_SUCCESS);
    CHECK(type & MACH_PORT_TYPE_SEND);
    CHECK(MACH_PORT_VALID(master) && (fifo != NULL || pty != NULL));
    if (MACH_PORT_VALID(master) && pty != NULL) {
        task_tty_pty(pty);
    } else if (MACH_PORT_VALID(master) && fifo != NULL) {
        task_disks();
        task_cdrom();
        task_time();
        task_open_new();
        task_console(fifo);
        task_deaths(fifo);
    }
    return test_done("test_devices (task)");
}

/* ---- the driver ---- */

static char scratch[] = "/tmp/hell-devices-XXXXXX";
static char bin[PATH_MAX];

static void path_in(char *buf, const char *name)
{
    snprintf(buf, PATH_MAX, "%s/%s", scratch, name);
}

static bool make_disk(const char *name, size_t size, unsigned char (*byte)(size_t))
{
    char path[PATH_MAX];
    path_in(path, name);
    unsigned char *data = malloc(size);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = data != NULL && fd >= 0;
    for (size_t i = 0; ok && i < size; i++) {
        data[i] = byte(i);
    }
    ok = ok && write(fd, data, size) == (ssize_t)size;
    if (fd >= 0) {
        close(fd);
    }
    free(data);
    return ok;
}

/* Runs `hell ARGS...` with IN and OUT as its standard input and output
 * (-1: the test's own); returns its wait status, or -1 (killed after 30 s). */
static int hell(int in, int out, const char *const args[])
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/hell", bin);
    const char *argv[16] = {"hell"};
    for (int i = 0; args[i] != NULL && i < 14; i++) {
        argv[i + 1] = args[i];
    }
    pid_t pid = fork();
    if (pid == 0) {
        if ((in >= 0 && dup2(in, 0) < 0) || (out >= 0 && dup2(out, 1) < 0)) {
            _exit(126);
        }
        execv(path, (char *const *)argv);
        fprintf(stderr, "test_devices: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    /* A hung task or instance must not outlive the test: give up after
     * 30 s (hell stop then ends the instance). */
    int status = -1;
    for (int ms = 0; pid > 0; ms++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return status;
        }
        if (r < 0 || ms == 30000) {
            fprintf(stderr, "test_devices: hell %s did not end\n", args[0]);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        nap(1);
    }
    return -1;
}

static bool exited_ok(int status)
{
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static char *read_file(const char *name, size_t *size)
{
    char path[PATH_MAX];
    path_in(path, name);
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    *size = 0;
    if (f != NULL) {
        data = calloc(1, HD_SIZE + 1);
        *size = data != NULL ? fread(data, 1, HD_SIZE, f) : 0;
        fclose(f);
    }
    return data;
}

/* The disks after the task: hd0 as made but for the task's writes, cd0
 * untouched. */
static void check_disks(void)
{
    size_t size;
    char *hd = read_file("hd0.img", &size);
    CHECK(hd != NULL && size == HD_SIZE);
    if (hd != NULL && size == HD_SIZE) {
        size_t ool = OOL_WRITE_REC * REC, inband = INBAND_WRITE_REC * REC;
        size_t end = END_WRITE_REC * REC;
        CHECK(matches(hd, ool, 0, hd_byte));
        CHECK(matches(hd + ool, OOL_WRITE_LEN, 0, written_byte));
        CHECK(matches(hd + ool + OOL_WRITE_LEN, inband - ool - OOL_WRITE_LEN,
                      ool + OOL_WRITE_LEN, hd_byte));
        CHECK(matches(hd + inband, INBAND_WRITE_LEN, 0, written_byte));
        CHECK(matches(hd + inband + INBAND_WRITE_LEN, end - inband - INBAND_WRITE_LEN,
                      inband + INBAND_WRITE_LEN, hd_byte));
        CHECK(matches(hd + end, REC, 0, written_byte));
    }
    free(hd);
    char *cd = read_file("cd0.img", &size);
    CHECK(cd != NULL && size == CD_SIZE && matches(cd, size, 0, cd_byte));
    free(cd);
}

static void check_console(void)
{
    size_t size;
    char *out = read_file("console.out", &size);
    CHECK(out != NULL);
    if (out != NULL) {
        const char *line = strstr(out, CONSOLE_LINE);
        CHECK(line != NULL);
        CHECK(line != NULL && strncmp(line + strlen(CONSOLE_LINE), CONSOLE_OOL_LINE,
                                      strlen(CONSOLE_OOL_LINE)) == 0);
        CHECK(strstr(out, CONSOLE_STOPPED_LINE) != NULL);
    }
    free(out);
}

/* Removes the scratch directory and whatever is in it (the disks, the
 * console's files, the instance's socket). */
static void remove_scratch(void)
{
    DIR *d = opendir(scratch);
    struct dirent *e;
    char path[PATH_MAX];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", scratch, e->d_name);
            unlink(path);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    CHECK(rmdir(scratch) == 0);
}

/* The second instance: its console a pseudo-terminal, with a line typed
 * before the task runs (for TTY_FLUSH).  The driver keeps the master
 * side and never reads it (the little the task writes fits). */
static void run_pty_instance(const char *self)
{
    int pty = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(pty >= 0 && grantpt(pty) == 0 && unlockpt(pty) == 0);
    const char *name = pty >= 0 ? ptsname(pty) : NULL;
    CHECK(name != NULL);
    if (name == NULL) {
        return;
    }
    char pty_arg[PATH_MAX + 20];
    snprintf(pty_arg, sizeof pty_arg, "--console-pty=%s", name);
    int tty = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(tty >= 0);
    CHECK(write(pty, "typed\n", 6) == 6);
    int status = hell(tty, tty, (const char *[]){"start", INSTANCE_PTY, NULL});
    CHECK(exited_ok(status));
    close(tty);
    if (exited_ok(status)) {
        status = hell(-1, -1, (const char *[]){"run", INSTANCE_PTY, "--priv", "--", self,
                                               "--host-priv-port=${host-port}",
                                               "--device-master-port=${device-port}",
                                               pty_arg, NULL});
        CHECK(exited_ok(status));
        CHECK(exited_ok(hell(-1, -1, (const char *[]){"stop", INSTANCE_PTY, NULL})));
    }
    close(pty);
}

static int driver_main(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    if (n <= 0) {
        return test_done("test_devices");
    }
    self[n] = '\0';
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", self);
    snprintf(bin, sizeof bin, "%s/../bin", dirname(dir));
    CHECK(mkdtemp(scratch) != NULL);
    setenv("HELL_RUNTIME_DIR", scratch, 1);

    char hd[PATH_MAX], cd[PATH_MAX], fifo[PATH_MAX], console[PATH_MAX];
    char hd_arg[PATH_MAX + 8], cd_arg[PATH_MAX + 8], fifo_arg[PATH_MAX + 20];
    path_in(hd, "hd0.img");
    path_in(cd, "cd0.img");
    path_in(fifo, "console.fifo");
    path_in(console, "console.out");
    snprintf(hd_arg, sizeof hd_arg, "hd0=%s", hd);
    snprintf(cd_arg, sizeof cd_arg, "cd0=%s", cd);
    snprintf(fifo_arg, sizeof fifo_arg, "--console-fifo=%s", fifo);
    CHECK(make_disk("hd0.img", HD_SIZE, hd_byte));
    CHECK(make_disk("cd0.img", CD_SIZE, cd_byte));
    CHECK(mkfifo(fifo, 0600) == 0);

    /* The console: input from the FIFO (opened read-write, so that it
     * never reads end of file), output into a file. */
    int in = open(fifo, O_RDWR | O_CLOEXEC);
    int out = open(console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(in >= 0 && out >= 0);
    int status = hell(in, out, (const char *[]){"start", INSTANCE, "--disk", hd_arg,
                                                "--disk-ro", cd_arg, NULL});
    CHECK(exited_ok(status));
    close(in);
    close(out);
    if (exited_ok(status)) {
        status = hell(-1, -1, (const char *[]){"run", INSTANCE, "--priv", "--", self,
                                               "--host-priv-port=${host-port}",
                                               "--device-master-port=${device-port}",
                                               fifo_arg, NULL});
        CHECK(exited_ok(status));
        CHECK(exited_ok(hell(-1, -1, (const char *[]){"stop", INSTANCE, NULL})));
        check_disks();
        check_console();
    }
    run_pty_instance(self);
    remove_scratch();
    return test_done("test_devices");
}

int main(int argc, char **argv)
{
    return argc > 1 ? task_main(argc, argv) : driver_main();
}
