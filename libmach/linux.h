/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The Linux side of libmach: descriptors, randomness and the one place
 * where errno values become Mach return codes.
 */
#ifndef HELL_LINUX_H
#define HELL_LINUX_H

#include <mach/kern_return.h>
#include <mach/message.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Starts a detached thread running FN(ARG): one of libmach's hidden
 * threads, which are no Mach threads (linux_is_helper).  Returns whether
 * it started. */
bool linux_thread_start(void *(*fn)(void *), void *arg);

/* Makes the calling thread a background one, for work no thread waits
 * for: SCHED_BATCH (woken, it never takes a processor from another
 * thread) with the longest time slice Linux allows (Linux 6.12 and later:
 * a thread woken with an ordinary slice takes the processor from it at
 * once).  Its nice is kept, so its share of a busy processor stays that
 * of the thread that started it (neither raised above a niced program's
 * nor lowered below it), and a lock it holds (the address space's, in
 * munmap) is never held for long: at nice 19 under a program at nice 0,
 * vm_reap's thread made a task wait 220-330 ms for it under two
 * CPU-bound loops, and SCHED_IDLE gets less time still.  A hint: where
 * Linux has no sched_setattr (before 3.14) it is SCHED_BATCH with the
 * ordinary slice, and what Linux refuses is left as it was. */
void linux_thread_background(void);

/* Whether Linux thread TID of this process is one of libmach's hidden
 * threads (at most 256 at once; more are started but not hidden). */
bool linux_is_helper(pid_t tid);

/* Makes the calling thread one of libmach's hidden threads. */
void linux_helper_adopt_self(void);

/* The Linux name (comm) of each of libmach's hidden threads starts with
 * this: how other processes tell them from Mach threads
 * (linux_mach_threads_of).  Only the process itself can name its threads,
 * so a task can miscount only its own. */
#define LINUX_HELPER_NAME_PREFIX "hell/"

/* Sets the Linux name of thread TID of this process to NAME (15 bytes
 * kept): after LINUX_HELPER_NAME_PREFIX for a hidden thread; a Mach
 * thread's name never starts with it (its '/' becomes '-').  Needs no
 * lock. */
void linux_thread_name_set(pid_t tid, const char *name);

/* Gives the calling thread, a Mach thread that a hidden one started (and
 * whose name Linux copied), the task's name: the process's, without the
 * prefix.  Needs no lock. */
void linux_thread_name_unmark_self(void);

/* The Mach threads of process PID, another process: its Linux threads
 * but libmach's hidden ones, told by their names (this process counts its
 * own with linux_is_helper, kern_thread_count).  Returns -1 when PID is
 * gone (or its /proc unreadable).  Reads /proc only, never waiting for
 * the process.  Needs no lock. */
long linux_mach_threads_of(pid_t pid);

/* libmach's per-thread buffers, by use. */
enum linux_thread_buf_id {
    LINUX_BUF_RECEIVE, /* ipc_wire.c: the largest message */
    LINUX_BUF_SUPPLY,  /* vm_object.c: a data_supply read from its memfd */
    LINUX_BUF_LEND,    /* ipc_wire.c: regions sent to this process's kernel */
    LINUX_NBUFS
};

/* The calling thread's buffer ID, of SIZE bytes (the same SIZE at every
 * call for one ID): mapped on first use, unmapped when the thread exits.
 * Returns NULL when it cannot be mapped.  Needs no lock. */
void *linux_thread_buf(enum linux_thread_buf_id id, size_t size);

/* The calling thread's buffer ID if it has one yet, else NULL.  Needs no
 * lock. */
void *linux_thread_buf_if_any(enum linux_thread_buf_id id);

/* A system call of up to two arguments that leaves errno alone: for
 * signal handlers that may run on a thread pointer (FS) not glibc's and
 * so touch no thread-local until they have switched.  Returns the raw
 * result (-errno on failure). */
static inline long linux_raw_syscall2(long nr, long a, long b)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(nr), "D"(a), "S"(b)
                     : "rcx", "r11", "memory");
    return ret;
}

/* The same with three arguments. */
static inline long linux_raw_syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

/* Sleeps while the 32-bit WORD holds SEEN, at most MS milliseconds (MS < 0:
 * no limit); SHARED for a word in memory other processes map too.  With a
 * limit the wait is never restarted after a signal handler.  Returns 0 or
 * an errno (EAGAIN, EINTR, ETIMEDOUT). */
int linux_futex_wait(void *word, unsigned seen, int ms, bool shared);

/* Wakes up to N sleepers on WORD (SHARED as for linux_futex_wait). */
void linux_futex_wake(void *word, int n, bool shared);

/* Whether the calling thread is one of libmach's hidden threads. */
bool linux_self_is_helper(void);

/* Connects a new SOCK_SEQPACKET socket (close-on-exec, with SOCK_FLAGS
 * such as SOCK_NONBLOCK) to the Unix socket PATH, an instance's control
 * socket, and checks that its peer runs as our uid.  Returns it, or -1
 * with errno set (EACCES: another user's; ENAMETOOLONG).  Needs no
 * lock. */
int linux_connect_own(const char *path, int sock_flags);

/* Closes FD (ignored when negative), preserving errno. */
void linux_close(int fd);

/* Closes FD, a descriptor a peer sent, without ever blocking the caller:
 * sockets, pipes and memfds close at once; anything else (a file on a
 * hung FUSE or NFS mount could make close() wait) goes to one reaper
 * thread.  The descriptor table bounds how many can wait there. */
void linux_close_untrusted(int fd);

/* Resets the reaper in a child after fork() (its thread did not survive;
 * the descriptors it had queued are closed now). */
void linux_fork_child(void);

/* Stores in *INO the inode of FD if it is a socket and returns true;
 * returns false for anything else (not open, not a socket). */
bool linux_socket_ino(int fd, uint64_t *ino);

/* Whether some of what was sent through the socket FD is still queued,
 * unread by its peer (Linux's SIOCOUTQ: the bytes the socket's sent
 * messages still hold), by whichever holder of the socket sent it (all
 * the senders of a port share its send end): not whether one message
 * is.  False as well when FD cannot say.  Needs no lock. */
bool linux_socket_sent_unread(int fd);

/* Stores in *PEER the inode of the socket connected to FD (an AF_UNIX
 * socket), asking the kernel through sock_diag.  Returns 0, or a negative
 * errno (-EOPNOTSUPP when the kernel cannot say). */
int linux_unix_peer_ino(int fd, uint64_t *peer);

/* Returns true if FD is a pipe (FIFO). */
bool linux_is_pipe(int fd);

/* Returns true if FD is an AF_UNIX SOCK_SEQPACKET socket, as ports are
 * (which never waits to close, unlike a lingering TCP socket). */
bool linux_is_unix_seqpacket(int fd);

/* Returns 64 unpredictable bits (never 0), from the kernel's CSPRNG
 * through a per-thread buffer. */
uint64_t linux_random_u64(void);

/* Converts an errno from a failed allocation of descriptors or memory to
 * GNU Mach's resource code. */
kern_return_t linux_errno_to_kern(int err);

/* Waits up to MS milliseconds until the reaper thread has closed every
 * descriptor handed to it; returns whether it has (tests and the fuzz
 * target count descriptors).  Needs no lock. */
bool linux_reaper_wait_idle(int ms);

/* Raises RLIMIT_NOFILE to its hard limit (once per process). */
void linux_raise_nofile(void);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t linux_now_ms(void);

/* Reads up to SIZE bytes of FD at OFFSET into BUF, as many preads as it
 * takes (one moves at most 2 GiB; EINTR is retried).  Returns how many
 * bytes were read: fewer than SIZE at the end of the file or on an
 * error. */
uint64_t linux_pread_full(int fd, void *buf, uint64_t size, uint64_t offset);

/* When process PID started (/proc/PID/stat, clock ticks since boot), or
 * 0 when it is gone or unreadable.  With a pid, it names one process for
 * good: a pid can be reused, the pair cannot. */
uint64_t linux_start_time(pid_t pid);

/* This process's start time (linux_start_time), read once per process. */
uint64_t linux_self_start_time(void);

/* A pidfd of the process PID that started at START (linux_start_time),
 * or -1 when that process is gone. */
int linux_pidfd_of(pid_t pid, uint64_t start);

/* Waits until the thread TID of this process, which has left all user
 * code and is exiting, is gone from Linux too (tgkill no longer finds
 * it), for a bounded time (seconds).  The process's first thread is not
 * waited for: Linux keeps it until the whole process ends. */
void linux_thread_wait_gone(pid_t tid);

#endif
