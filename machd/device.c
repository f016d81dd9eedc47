/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * machd's device server: device.defs on the master port and on the ports
 * of the open devices, all in one port set served by a pool of threads.
 *
 * What callers see (GNU Mach's semantics, and where HELL differs) is in
 * device.h.  This file serves the master port, opens and closes, disks
 * and status; the console's reads and writes, its queue of reads that
 * have to wait and the console thread that answers them are in
 * device_console.c (device_console.h), which shares device_i.h.
 *
 * Locking keys:
 *   (c) constant once device_setup has returned
 *   (L) device_lock: the open state of every device
 * L is held with no other lock but device_tty.c's (S), taken under it
 * (at the console's first open and last close); never with the console's
 * (Q), (R) and (W) of device_console.c.  Disk I/O runs without a lock (each call
 * positions itself with pread/pwrite), so a slow disk or console holds up
 * only the thread serving it, and no server thread waits for console
 * input.
 */
#include "device.h"

#include <assert.h>
#include <device/device_types.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.server.h"
#include "device_console.h"
#include "device_i.h"
#include "device_time.h"
#include "device_tty.h"

/* The demultiplexer MIG generates for device.defs (not in its header). */
boolean_t device_server(mach_msg_header_t *in, mach_msg_header_t *out);

#define DEVICE_RECORD_SIZE 512u
#define DEVICE_READ_MAX (16u << 20)          /* bytes per device_read */
#define DEVICE_PAGE 4096u

enum device_kind { DEVICE_CONSOLE, DEVICE_DISK, DEVICE_TIME };

/* Access modes a disk keeps a port for: index = access - 1. */
#define DEVICE_ACCESS_MODES 3

/* One open of a device in one access mode: what a device port stands for. */
struct device_handle {
    dev_mode_t access;  /* (c) D_READ, D_WRITE or both */
    mach_port_t port;   /* (L) receive right, MACH_PORT_NULL when closed */
    unsigned opens;     /* (L) open count */
};

struct device_unit {
    char *name;              /* (c) */
    enum device_kind kind;   /* (c) */
    int fd;                  /* (c) disks: the file; -1 for the console */
    bool readonly;           /* (c) */
    uint64_t records;        /* (c) disks: size in records */
    struct device_handle handles[DEVICE_ACCESS_MODES];
};

/* What a server routine learns from a port: the device and the access
 * of the open it came through. */
struct device_ref {
    struct device_unit *unit;
    dev_mode_t access;
};

static pthread_mutex_t device_lock = PTHREAD_MUTEX_INITIALIZER;
static struct device_unit *device_units; /* (c) console first, disks, time */
static unsigned device_nunits;           /* (c) */
static mach_port_t device_master;        /* (c) receive right */
static mach_port_t device_set;           /* (c) master + open devices */

/* Set by device_demux; a console read that has to wait copies it. */
_Thread_local mach_msg_header_t *device_request;

/* ---- errors and lookups ---- */

/* The one place where Linux errors become device errors. */
kern_return_t device_errno(int err)
{
    switch (err) {
    case EROFS:
        return D_READ_ONLY;
    case EAGAIN:
        return D_WOULD_BLOCK;
    case ENOMEM:
        return D_NO_MEMORY;
    case EINVAL:
    case EFBIG:
        return D_INVALID_SIZE;
    case ENXIO:
    case ENODEV:
        return D_NO_SUCH_DEVICE;
    case EBUSY:
        return D_ALREADY_OPEN;
    default:
        return D_IO_ERROR;
    }
}

/* The handle an open in MODE uses on UNIT. */
static struct device_handle *device_handle_of(struct device_unit *unit, dev_mode_t mode)
{
    if (unit->kind != DEVICE_DISK) {
        return &unit->handles[DEVICE_ACCESS_MODES - 1]; /* one port */
    }
    dev_mode_t access = mode & (D_READ | D_WRITE);
    return &unit->handles[(access != 0 ? access : D_READ) - 1];
}

/* Finds the open device behind PORT (a name in machd's space).  Returns
 * D_SUCCESS and fills *REF, or D_NO_SUCH_DEVICE (the master port, a
 * closed device, anything else).  Takes and releases (L). */
static kern_return_t device_lookup(mach_port_t port, struct device_ref *ref)
{
    kern_return_t kr = D_NO_SUCH_DEVICE;
    if (!MACH_PORT_VALID(port)) {
        return kr;
    }
    pthread_mutex_lock(&device_lock);
    for (unsigned i = 0; i < device_nunits && kr != D_SUCCESS; i++) {
        for (unsigned m = 0; m < DEVICE_ACCESS_MODES; m++) {
            const struct device_handle *h = &device_units[i].handles[m];
            if (h->port == port) {
                *ref = (struct device_ref){.unit = &device_units[i], .access = h->access};
                kr = D_SUCCESS;
                break;
            }
        }
    }
    pthread_mutex_unlock(&device_lock);
    return kr;
}

bool device_is_open_console(mach_port_t port)
{
    pthread_mutex_lock(&device_lock);
    bool open = device_units[0].handles[DEVICE_ACCESS_MODES - 1].port == port;
    pthread_mutex_unlock(&device_lock);
    return open && MACH_PORT_VALID(port);
}

/* ---- open and close ---- */

kern_return_t ds_device_open(mach_port_t master_port, mach_port_t reply_port,
                             mach_msg_type_name_t reply_portPoly, dev_mode_t mode,
                             const_dev_name_t name, mach_port_t *device,
                             mach_msg_type_name_t *devicePoly)
{
    if (master_port != device_master) {
        return D_INVALID_OPERATION;
    }
    if (!MACH_PORT_VALID(reply_port)) {
        return MIG_NO_REPLY; /* no one to give the port to: open nothing */
    }
    struct device_unit *unit = NULL;
    for (unsigned i = 0; i < device_nunits && unit == NULL; i++) {
        if (strcmp(device_units[i].name, name) == 0) {
            unit = &device_units[i];
        }
    }
    if (unit == NULL) {
        return D_NO_SUCH_DEVICE;
    }
    if (unit->readonly && (mode & D_WRITE)) {
        return D_READ_ONLY;
    }
    struct device_handle *h = device_handle_of(unit, mode);
    kern_return_t kr = D_SUCCESS;
    pthread_mutex_lock(&device_lock);
    if (h->opens == UINT_MAX) {
        kr = D_ALREADY_OPEN;
    } else if (h->port == MACH_PORT_NULL) {
        mach_port_t port = MACH_PORT_NULL;
        kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port);
        if (kr == KERN_SUCCESS) {
            kr = mach_port_move_member(mach_task_self(), port, device_set);
            if (kr != KERN_SUCCESS) {
                (void)mach_port_mod_refs(mach_task_self(), port, MACH_PORT_RIGHT_RECEIVE, -1);
            }
        }
        if (kr == KERN_SUCCESS) {
            h->port = port;
        }
    }
    if (kr == KERN_SUCCESS) {
        /* The send right is made here, under the lock, and moved by the
         * reply: should a close (by another client) destroy the port
         * before the reply goes, the reply carries a dead name, where a
         * MAKE_SEND of the destroyed name would fail the whole reply. */
        kr = mach_port_insert_right(mach_task_self(), h->port, h->port,
                                    MACH_MSG_TYPE_MAKE_SEND);
        if (kr == KERN_SUCCESS) {
            if (h->opens++ == 0 && unit->kind == DEVICE_CONSOLE) {
                device_tty_opened();
            }
            *device = h->port;
            *devicePoly = MACH_MSG_TYPE_MOVE_SEND;
        } else if (h->opens == 0) {
            (void)mach_port_mod_refs(mach_task_self(), h->port, MACH_PORT_RIGHT_RECEIVE, -1);
            h->port = MACH_PORT_NULL;
        }
    }
    pthread_mutex_unlock(&device_lock);
    return kr;
}

/* GNU Mach's ds_device_open_new (device/ds_routines.c) is ds_device_open:
 * only the name's wire type differs (a C string of at most 128 bytes,
 * which the stub has already terminated). */
kern_return_t ds_device_open_new(mach_port_t master_port, mach_port_t reply_port,
                                 mach_msg_type_name_t reply_portPoly, dev_mode_t mode,
                                 const_dev_name_t name, mach_port_t *device,
                                 mach_msg_type_name_t *devicePoly)
{
    return ds_device_open(master_port, reply_port, reply_portPoly, mode, name, device,
                          devicePoly);
}

void device_port_destroy(mach_port_t port)
{
    (void)mach_port_mod_refs(mach_task_self(), port, MACH_PORT_RIGHT_RECEIVE, -1);
}

kern_return_t ds_device_close(mach_port_t device)
{
    struct device_ref ref;
    kern_return_t kr = device_lookup(device, &ref);
    if (kr != D_SUCCESS) {
        return kr;
    }
    bool last = false;
    pthread_mutex_lock(&device_lock);
    struct device_handle *h = device_handle_of(ref.unit, ref.access);
    if (h->port != device) {
        kr = D_NO_SUCH_DEVICE; /* closed by another thread meanwhile */
    } else if (--h->opens == 0) {
        h->port = MACH_PORT_NULL; /* from now on, calls through it fail */
        last = true;
        if (ref.unit->kind == DEVICE_CONSOLE) {
            device_tty_closed();
        }
    }
    pthread_mutex_unlock(&device_lock);
    if (!last) {
        return kr;
    }
    /* The reply goes out after the port is destroyed, as in GNU Mach:
     * the caller still gets it.  Requests still queued on the port die
     * with it, and their clients get MIG_SERVER_DIED. */
    if (ref.unit->kind == DEVICE_CONSOLE && device_console_has_input()) {
        device_console_bury(device); /* by the console thread */
    } else {
        device_port_destroy(device);
    }
    return D_SUCCESS;
}

/* ---- disks ---- */

/* Cuts a transfer of *COUNT bytes at record RECNUM of UNIT to the end of
 * the disk and stores its byte offset in *OFFSET.  Returns D_SUCCESS or
 * D_INVALID_SIZE (RECNUM past the end). */
static kern_return_t device_disk_span(const struct device_unit *unit, recnum_t recnum,
                                      size_t *count, off_t *offset)
{
    if (recnum > unit->records) {
        return D_INVALID_SIZE;
    }
    uint64_t room = (unit->records - recnum) * DEVICE_RECORD_SIZE;
    if (*count > room) {
        *count = (size_t)room;
    }
    *offset = (off_t)(recnum * DEVICE_RECORD_SIZE);
    return D_SUCCESS;
}

/* Reads (WRITE false) or writes COUNT bytes of BUF at OFFSET of FD,
 * going on after short transfers; stores the bytes moved in *DONE (fewer
 * only if the file shrank).  Returns D_SUCCESS or a device error. */
static kern_return_t device_disk_io(int fd, bool write, char *buf, size_t count, off_t offset,
                                    size_t *done)
{
    *done = 0;
    while (*done < count) {
        ssize_t n = write ? pwrite(fd, buf + *done, count - *done, offset + (off_t)*done)
                          : pread(fd, buf + *done, count - *done, offset + (off_t)*done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return device_errno(errno);
        }
        if (n == 0) {
            break;
        }
        *done += (size_t)n;
    }
    return D_SUCCESS;
}

/* ---- reads and writes ---- */

/* Reads at most COUNT bytes at RECNUM of REF's device into BUF (COUNT
 * already bounded by the caller); stores how many in *DONE. */
static kern_return_t device_read_into(const struct device_ref *ref, dev_mode_t mode,
                                      recnum_t recnum, char *buf, size_t count, size_t *done)
{
    *done = 0;
    if (ref->unit->kind == DEVICE_TIME) {
        return D_INVALID_OPERATION; /* only mapped */
    }
    if (ref->unit->kind == DEVICE_CONSOLE) {
        return count == 0 ? D_SUCCESS : device_console_read(mode, buf, count, done);
    }
    off_t offset;
    kern_return_t kr = device_disk_span(ref->unit, recnum, &count, &offset);
    if (kr == D_SUCCESS) {
        kr = device_disk_io(ref->unit->fd, false, buf, count, offset, done);
    }
    return kr;
}

/* Checks a read through DEVICE and finds its device.  Returns D_SUCCESS,
 * MIG_NO_REPLY (no reply port: nothing to do) or a device error. */
static kern_return_t device_read_check(mach_port_t device, mach_port_t reply_port,
                                       int bytes_wanted, struct device_ref *ref)
{
    kern_return_t kr = device_lookup(device, ref);
    if (kr == D_SUCCESS && !(ref->access & D_READ)) {
        kr = D_INVALID_OPERATION;
    } else if (kr == D_SUCCESS && !MACH_PORT_VALID(reply_port)) {
        kr = MIG_NO_REPLY;
    } else if (kr == D_SUCCESS && bytes_wanted < 0) {
        kr = D_INVALID_SIZE;
    }
    return kr;
}

kern_return_t ds_device_read(mach_port_t device, mach_port_t reply_port,
                             mach_msg_type_name_t reply_portPoly, dev_mode_t mode,
                             recnum_t recnum, int bytes_wanted, io_buf_ptr_t *data,
                             mach_msg_type_number_t *dataCnt)
{
    *data = NULL;
    *dataCnt = 0;
    struct device_ref ref;
    kern_return_t kr = device_read_check(device, reply_port, bytes_wanted, &ref);
    if (kr != D_SUCCESS) {
        return kr;
    }
    size_t max = ref.unit->kind == DEVICE_CONSOLE ? DEVICE_CONSOLE_READ_MAX : DEVICE_READ_MAX;
    size_t count = (size_t)bytes_wanted < max ? (size_t)bytes_wanted : max;
    size_t size = (count + DEVICE_PAGE - 1) & ~(size_t)(DEVICE_PAGE - 1);
    vm_address_t buf = 0;
    if (size > 0 && vm_allocate(mach_task_self(), &buf, size, TRUE) != KERN_SUCCESS) {
        return D_NO_MEMORY;
    }
    size_t done = 0;
    kr = device_read_into(&ref, mode, recnum, (char *)buf, count, &done);
    /* The reply deallocates the pages it carries; give back the rest. */
    size_t used = kr == D_SUCCESS ? (done + DEVICE_PAGE - 1) & ~(size_t)(DEVICE_PAGE - 1) : 0;
    if (size > used) {
        (void)vm_deallocate(mach_task_self(), buf + used, size - used);
    }
    if (kr == D_SUCCESS && done > 0) {
        *data = (io_buf_ptr_t)buf;
        *dataCnt = (mach_msg_type_number_t)done;
    }
    return kr;
}

kern_return_t ds_device_read_inband(mach_port_t device, mach_port_t reply_port,
                                    mach_msg_type_name_t reply_portPoly, dev_mode_t mode,
                                    recnum_t recnum, int bytes_wanted, io_buf_ptr_inband_t data,
                                    mach_msg_type_number_t *dataCnt)
{
    *dataCnt = 0;
    struct device_ref ref;
    kern_return_t kr = device_read_check(device, reply_port, bytes_wanted, &ref);
    if (kr != D_SUCCESS) {
        return kr;
    }
    size_t count = bytes_wanted < IO_INBAND_MAX ? (size_t)bytes_wanted : IO_INBAND_MAX;
    size_t done = 0;
    kr = device_read_into(&ref, mode, recnum, data, count, &done);
    if (kr == D_SUCCESS) {
        *dataCnt = (mach_msg_type_number_t)done;
    }
    return kr;
}

/* Writes COUNT bytes of DATA at RECNUM through DEVICE; stores how many
 * were written in *BYTES_WRITTEN. */
static kern_return_t device_write_from(mach_port_t device, recnum_t recnum, const char *data,
                                       size_t count, int *bytes_written)
{
    *bytes_written = 0;
    struct device_ref ref;
    kern_return_t kr = device_lookup(device, &ref);
    if (kr != D_SUCCESS) {
        return kr;
    }
    if (!(ref.access & D_WRITE)) {
        return D_INVALID_OPERATION;
    }
    if (count > INT_MAX) {
        return D_INVALID_SIZE;
    }
    size_t done = 0;
    if (ref.unit->kind == DEVICE_TIME) {
        kr = D_INVALID_OPERATION; /* only mapped */
    } else if (ref.unit->kind == DEVICE_CONSOLE) {
        kr = device_console_write(data, count, &done);
    } else {
        off_t offset;
        kr = device_disk_span(ref.unit, recnum, &count, &offset);
        if (kr == D_SUCCESS) {
            kr = device_disk_io(ref.unit->fd, true, (char *)data, count, offset, &done);
        }
    }
    *bytes_written = (int)done;
    return kr;
}

kern_return_t ds_device_write(mach_port_t device, mach_port_t reply_port,
                              mach_msg_type_name_t reply_portPoly, dev_mode_t mode,
                              recnum_t recnum, io_buf_ptr_t data, mach_msg_type_number_t dataCnt,
                              int *bytes_written)
{
    if (data == NULL) {
        *bytes_written = 0;
        return D_INVALID_SIZE; /* as GNU Mach: no region, nothing to write */
    }
    kern_return_t kr = device_write_from(device, recnum, data, dataCnt, bytes_written);
    if (kr == D_SUCCESS) {
        /* Success makes the region ours; on error the server loop
         * destroys the request, region included. */
        (void)vm_deallocate(mach_task_self(), (vm_address_t)data, dataCnt);
    }
    return kr;
}

kern_return_t ds_device_write_inband(mach_port_t device, mach_port_t reply_port,
                                     mach_msg_type_name_t reply_portPoly, dev_mode_t mode,
                                     recnum_t recnum, const io_buf_ptr_inband_t data,
                                     mach_msg_type_number_t dataCnt, int *bytes_written)
{
    if (dataCnt > IO_INBAND_MAX) {
        *bytes_written = 0;
        return D_INVALID_SIZE;
    }
    return device_write_from(device, recnum, data, dataCnt, bytes_written);
}

/* ---- status ---- */

static int device_int(uint64_t value)
{
    return value > INT_MAX ? INT_MAX : (int)value;
}

kern_return_t ds_device_get_status(mach_port_t device, dev_flavor_t flavor, dev_status_t status,
                                   mach_msg_type_number_t *statusCnt)
{
    struct device_ref ref;
    kern_return_t kr = device_lookup(device, &ref);
    if (kr != D_SUCCESS) {
        return kr;
    }
    if (ref.unit->kind == DEVICE_CONSOLE) {
        return device_tty_get_status(flavor, status, statusCnt);
    }
    if (ref.unit->kind != DEVICE_DISK) {
        return D_INVALID_OPERATION;
    }
    /* STATUS is the reply's DEV_STATUS_MAX integers whatever *STATUSCNT
     * says; answering the full count lets a caller that asked for fewer
     * see it (MIG_ARRAY_TOO_LARGE), as GNU Mach's drivers do. */
    switch (flavor) {
    case DEV_GET_SIZE:
        status[DEV_GET_SIZE_DEVICE_SIZE] = device_int(ref.unit->records * DEVICE_RECORD_SIZE);
        status[DEV_GET_SIZE_RECORD_SIZE] = DEVICE_RECORD_SIZE;
        *statusCnt = DEV_GET_SIZE_COUNT;
        return D_SUCCESS;
    case DEV_GET_RECORDS:
        status[DEV_GET_RECORDS_DEVICE_RECORDS] = device_int(ref.unit->records);
        status[DEV_GET_RECORDS_RECORD_SIZE] = DEVICE_RECORD_SIZE;
        *statusCnt = DEV_GET_RECORDS_COUNT;
        return D_SUCCESS;
    default:
        return D_INVALID_OPERATION;
    }
}

kern_return_t ds_device_set_status(mach_port_t device, dev_flavor_t flavor,
                                   const dev_status_t status, mach_msg_type_number_t statusCnt)
{
    struct device_ref ref;
    kern_return_t kr = device_lookup(device, &ref);
    if (kr != D_SUCCESS) {
        return kr;
    }
    if (ref.unit->kind != DEVICE_CONSOLE) {
        return D_INVALID_OPERATION; /* disks and "time" set nothing */
    }
    return device_tty_set_status(flavor, status, statusCnt);
}

/* ---- what no HELL device does ---- */

/* The answer to a call HELL's devices do not support, through DEVICE. */
static kern_return_t device_unsupported(mach_port_t device)
{
    struct device_ref ref;
    kern_return_t kr = device_lookup(device, &ref);
    return kr != D_SUCCESS ? kr : D_INVALID_OPERATION;
}

kern_return_t ds_device_map(mach_port_t device, vm_prot_t prot, vm_offset_t offset,
                            vm_size_t size, mach_port_t *pager, int unmap)
{
    if (prot & ~VM_PROT_ALL) {
        return KERN_INVALID_ARGUMENT;
    }
    struct device_ref ref;
    kern_return_t kr = device_lookup(device, &ref);
    if (kr != D_SUCCESS) {
        return kr;
    }
    if (ref.unit->kind != DEVICE_TIME) {
        return D_INVALID_OPERATION; /* the others are not mapped */
    }
    /* As GNU Mach's device pager, whatever the range: a page past the
     * memory faults when touched. */
    *pager = device_time_pager();
    return MACH_PORT_VALID(*pager) ? D_SUCCESS : D_NO_MEMORY;
}

kern_return_t ds_device_set_filter(mach_port_t device, mach_port_t receive_port, int priority,
                                   const filter_array_t filter, mach_msg_type_number_t filterCnt)
{
    return device_unsupported(device); /* no network devices */
}

kern_return_t ds_device_intr_register(mach_port_t device, int id, int flags,
                                      mach_port_t receive_port)
{
    return device_unsupported(device); /* no interrupts */
}

kern_return_t ds_device_intr_ack(mach_port_t device, mach_port_t receive_port)
{
    return device_unsupported(device);
}

/* ---- set-up and service ---- */

boolean_t device_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
    device_request = in;
    boolean_t handled = device_server(in, out) || device_console_notify_demux(in, out) ||
                        device_io_perm_demux(in, out);
    device_request = NULL;
    return handled;
}

bool device_is_master(mach_port_t port)
{
    return MACH_PORT_VALID(port) && port == device_master;
}

kern_return_t device_set_add(mach_port_t port)
{
    return mach_port_move_member(mach_task_self(), port, device_set);
}

/* Opens the disk D into UNIT.  Returns 0, or -1 with a message. */
static int device_disk_open(const struct device_disk *d, struct device_unit *unit)
{
    int fd = open(d->path, (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    struct stat st;
    uint64_t size = 0;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "machd: disk %s: %s: %s\n", d->name, d->path, strerror(errno));
        goto error;
    }
    if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
    } else if (!S_ISBLK(st.st_mode) || ioctl(fd, BLKGETSIZE64, &size) != 0) {
        fprintf(stderr, "machd: disk %s: %s: not a file or block device\n", d->name, d->path);
        goto error;
    }
    unit->name = strdup(d->name);
    if (unit->name == NULL) {
        fprintf(stderr, "machd: out of memory\n");
        goto error;
    }
    unit->kind = DEVICE_DISK;
    unit->fd = fd;
    unit->readonly = d->readonly;
    unit->records = size / DEVICE_RECORD_SIZE;
    return 0;

error:
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

/* Checks that NAME can name a disk among the first N of DISKS. */
static bool device_name_ok(const char *name, const struct device_disk *disks, unsigned n)
{
    if (name == NULL || name[0] == '\0' || strlen(name) >= sizeof(dev_name_t) ||
        strcmp(name, "console") == 0 || strcmp(name, "time") == 0) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(disks[i].name, name) == 0) {
            return false;
        }
    }
    return true;
}

static void device_units_destroy(void)
{
    for (unsigned i = 0; i < device_nunits; i++) {
        if (device_units[i].fd >= 0) {
            close(device_units[i].fd);
        }
        free(device_units[i].name);
    }
    free(device_units);
    device_units = NULL;
    device_nunits = 0;
}

/* Makes the port set and the master port (receive right, plus the send
 * right handed to the caller). */
static kern_return_t device_ports_make(void)
{
    mach_port_t self = mach_task_self();
    kern_return_t kr = mach_port_allocate(self, MACH_PORT_RIGHT_PORT_SET, &device_set);
    if (kr != KERN_SUCCESS) {
        goto error_set;
    }
    kr = mach_port_allocate(self, MACH_PORT_RIGHT_RECEIVE, &device_master);
    if (kr != KERN_SUCCESS) {
        goto error_master;
    }
    kr = mach_port_move_member(self, device_master, device_set);
    if (kr == KERN_SUCCESS) {
        kr = mach_port_insert_right(self, device_master, device_master, MACH_MSG_TYPE_MAKE_SEND);
    }
    if (kr != KERN_SUCCESS) {
        goto error_member;
    }
    return KERN_SUCCESS;

error_member:
    (void)mach_port_mod_refs(self, device_master, MACH_PORT_RIGHT_RECEIVE, -1);
    device_master = MACH_PORT_NULL;
error_master:
    (void)mach_port_mod_refs(self, device_set, MACH_PORT_RIGHT_PORT_SET, -1);
    device_set = MACH_PORT_NULL;
error_set:
    return kr;
}

int device_setup(const struct device_disk *disks, unsigned ndisks, int console_in,
                 int console_out, mach_port_t *master)
{
    assert(device_units == NULL);
    device_units = calloc(ndisks + 2u, sizeof *device_units);
    if (device_units == NULL) {
        fprintf(stderr, "machd: out of memory\n");
        return -1;
    }
    device_units[0] = (struct device_unit){.name = strdup("console"), .kind = DEVICE_CONSOLE,
                                           .fd = -1};
    device_nunits = 1;
    if (device_units[0].name == NULL) {
        fprintf(stderr, "machd: out of memory\n");
        goto error;
    }
    for (unsigned i = 0; i < ndisks; i++) {
        if (!device_name_ok(disks[i].name, disks, i)) {
            fprintf(stderr, "machd: bad or repeated disk name \"%s\"\n",
                    disks[i].name != NULL ? disks[i].name : "");
            goto error;
        }
        if (device_disk_open(&disks[i], &device_units[i + 1]) != 0) {
            goto error;
        }
        device_nunits++;
    }
    device_units[device_nunits] = (struct device_unit){.name = strdup("time"),
                                                       .kind = DEVICE_TIME, .fd = -1};
    if (device_units[device_nunits++].name == NULL) {
        fprintf(stderr, "machd: out of memory\n");
        goto error;
    }
    for (unsigned i = 0; i < device_nunits; i++) {
        for (unsigned m = 0; m < DEVICE_ACCESS_MODES; m++) {
            device_units[i].handles[m].access = (dev_mode_t)(m + 1);
        }
    }
    if (device_console_init(console_in, console_out) != 0) {
        goto error;
    }
    kern_return_t kr = device_ports_make();
    if (kr != KERN_SUCCESS) {
        fprintf(stderr, "machd: device master port: error %#x\n", (unsigned)kr);
        goto error_ports;
    }
    kr = device_console_notify_make();
    if (kr != KERN_SUCCESS) {
        fprintf(stderr, "machd: console notify port: error %#x\n", (unsigned)kr);
        goto error_ports; /* (machd exits: the ports go with it) */
    }
    if (device_time_init(device_set) != 0) {
        goto error_ports; /* (machd exits: the ports go with it) */
    }
    *master = device_master;
    return 0;

error_ports:
    device_console_destroy();
error:
    device_units_destroy();
    return -1;
}

void device_reply_send(mach_msg_header_t *in, mach_msg_header_t *out)
{
    kern_return_t kr = ((mig_reply_header_t *)out)->RetCode;
    if (kr == MIG_NO_REPLY) {
        return; /* IN is kept (a console read queued) or was consumed */
    }
    if (kr != KERN_SUCCESS) {
        in->msgh_remote_port = MACH_PORT_NULL; /* the reply right goes with the reply */
        mach_msg_destroy(in);
    }
    if (!MACH_PORT_VALID(out->msgh_remote_port)) {
        mach_msg_destroy(out); /* no one to answer */
        return;
    }
    if (mach_msg(out, MACH_SEND_MSG, out->msgh_size, 0, MACH_PORT_NULL, MACH_MSG_TIMEOUT_NONE,
                 MACH_PORT_NULL) != MACH_MSG_SUCCESS) {
        mach_msg_destroy(out);
    }
}

/* A server thread: serves the set for ever.  A request too large for
 * DEVICE_MSG_MAX is dropped; only a set that is gone ends the thread. */
static void *device_server_main(void *arg)
{
    (void)arg;
    mach_msg_header_t *in = malloc(DEVICE_MSG_MAX), *out = malloc(DEVICE_MSG_MAX);
    if (in == NULL || out == NULL) {
        fprintf(stderr, "machd: device server: out of memory\n");
        free(in);
        free(out);
        return NULL;
    }
    for (;;) {
        mach_msg_return_t mr = mach_msg(in, MACH_RCV_MSG, 0, DEVICE_MSG_MAX, device_set,
                                        MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL);
        if (mr == MACH_RCV_INVALID_NAME || mr == MACH_RCV_PORT_DIED) {
            fprintf(stderr, "machd: device server: receive error %#x\n", (unsigned)mr);
            free(in);
            free(out);
            return NULL;
        }
        if (mr == MACH_MSG_SUCCESS) {
            (void)device_demux(in, out);
            device_reply_send(in, out);
        }
    }
}

/* Starts a detached thread running MAIN, with SIGPIPE blocked so that a
 * console whose reader went away gives EPIPE instead of killing machd.
 * Returns 0 or an errno value. */
static int device_thread_start(void *(*main)(void *))
{
    sigset_t pipe, old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int err = pthread_create(&thread, &attr, main, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

int device_serve(unsigned nthreads)
{
    if (device_units == NULL || nthreads == 0) {
        errno = EINVAL;
        return -1;
    }
    int err = device_console_has_input() ? device_thread_start(device_console_main) : 0;
    for (unsigned i = 0; err == 0 && i < nthreads; i++) {
        err = device_thread_start(device_server_main);
    }
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}
