/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The console's terminal status: device_get_status and device_set_status
 * on the console, as GNU Mach's com driver answers them
 * (i386/i386at/com.c comgetstat/comsetstat over device/chario.c's
 * tty_get_status/tty_set_status).  What device.c calls is in
 * device_tty.h; what clients see is in device.h.
 *
 * The record holds GNU Mach's struct tty fields (speeds, break
 * character, flags, the sticky hang-up-on-close state, modem bits, output
 * stopped).  Where the console is a terminal, a set applies the record to
 * its termios and keeps the termios the terminal shows afterwards; a get
 * reads termios again: each part of the status that termios holds (a
 * speed, a group of flags) reads as the record while the terminal still
 * shows what it showed after the set, else (no set yet, or someone ran
 * stty meanwhile) as the terminal shows it.  So a get returns what a set
 * stored, on a terminal or not, even where the terminal ignores part of
 * it (a Linux pseudo-terminal keeps 8 bits without parity), and never
 * hides a change made to the terminal.
 *
 * Locking keys:
 *   (c) constant once device_tty_init has returned
 *   (S) device_tty.lock: the record and the terminal calls made for it
 * Terminal calls under S never wait (TCSANOW, tcflow, tcflush, ioctls);
 * S is taken under device.c's (L), never with the console's (Q), (R) or
 * (W).
 */

/* <termios.h> and <device/tty_status.h> both name speeds B50... with
 * different values: Linux's are read here, into the table of Linux
 * speeds by GNU Mach speed number, then undefined for GNU Mach's. */
#include <termios.h>

static const speed_t device_tty_speeds[] = {
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

#include "device_tty.h"

#include <device/tty_status.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "device_console.h"
#include "device_i.h"

_Static_assert(sizeof device_tty_speeds / sizeof device_tty_speeds[0] == NSPEEDS,
               "one Linux speed per GNU Mach speed");

/* What GNU Mach's comopen gives a line never opened (ISPEED, IFLAGS). */
#define DEVICE_TTY_SPEED B115200
#define DEVICE_TTY_FLAGS (TF_EVENP | TF_ODDP | TF_ECHO | TF_CRMOD | TF_XTABS | TF_LITOUT)

static struct {
    pthread_mutex_t lock;
    int term_in;      /* (c) the input when a terminal, else -1 */
    int term_out;     /* (c) the output when a terminal, else -1 */
    int term;         /* (c) the terminal whose termios is the status */
    int ispeed;       /* (S) GNU Mach speed numbers, below NSPEEDS */
    int ospeed;       /* (S) */
    int breakc;       /* (S) */
    int flags;        /* (S) TF_* but TF_HUPCLS */
    bool hupcls;      /* (S) TS_HUPCLS: set by a set, cleared by the last close */
    int modem;        /* (S) TM_* */
    bool stopped;     /* (S) TS_TTSTOP */
    bool applied;     /* (S) a TTY_STATUS was set on the terminal */
    struct termios shown; /* (S) if applied: its termios after the set */
} device_tty = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .term_in = -1,
    .term_out = -1,
    .term = -1,
    .ispeed = DEVICE_TTY_SPEED,
    .ospeed = DEVICE_TTY_SPEED,
    .flags = DEVICE_TTY_FLAGS,
};

void device_tty_init(int in, int out)
{
    device_tty.term_in = in >= 0 && isatty(in) ? in : -1;
    device_tty.term_out = out >= 0 && isatty(out) ? out : -1;
    device_tty.term = device_tty.term_in >= 0 ? device_tty.term_in : device_tty.term_out;
}

/* ---- termios ---- */

/* Whether ERR, from a modem or break ioctl, says the terminal has no such
 * line (a pseudo-terminal): the record alone holds the state then. */
static bool device_tty_no_line(int err)
{
    return err == ENOTTY || err == EINVAL;
}

/* The GNU Mach speed number of the Linux speed S.  Linux's speeds that
 * GNU Mach has no number for are all above B115200: they read as it. */
static int device_tty_speed_number(speed_t s)
{
    for (int i = 0; i < NSPEEDS; i++) {
        if (device_tty_speeds[i] == s) {
            return i;
        }
    }
    return NSPEEDS - 1;
}

static void device_tty_flag(tcflag_t *field, tcflag_t bits, bool on)
{
    *field = on ? *field | bits : *field & ~bits;
}

/* Writes the record's speeds and flags (FLAGS, HUPCLS) into T, leaving
 * the rest of T as it is.  The mapping: TF_TANDEM is IXOFF, TF_ECHO is
 * ECHO, TF_CRMOD is ICRNL and ONLCR, TF_XTABS is TAB3, TF_NOHANG is
 * CLOCAL, TF_HUPCLS is HUPCL; the character format is comparam's:
 * TF_LITOUT gives 8 bits without parity, else 7 bits with parity, even
 * with TF_EVENP, odd without.  TF_MDMBUF has no termios counterpart. */
static void device_tty_to_termios(int ispeed, int ospeed, int flags, bool hupcls,
                                  struct termios *t)
{
    cfsetispeed(t, device_tty_speeds[ispeed]);
    cfsetospeed(t, device_tty_speeds[ospeed]);
    device_tty_flag(&t->c_iflag, IXOFF, flags & TF_TANDEM);
    device_tty_flag(&t->c_lflag, ECHO, flags & TF_ECHO);
    device_tty_flag(&t->c_iflag, ICRNL, flags & TF_CRMOD);
    device_tty_flag(&t->c_oflag, ONLCR, flags & TF_CRMOD);
    t->c_oflag = (t->c_oflag & ~TABDLY) | ((flags & TF_XTABS) ? TAB3 : TAB0);
    t->c_cflag &= ~(CSIZE | PARENB | PARODD);
    if (flags & TF_LITOUT) {
        t->c_cflag |= CS8;
    } else {
        t->c_cflag |= CS7 | PARENB | ((flags & TF_EVENP) ? 0 : PARODD);
    }
    device_tty_flag(&t->c_cflag, CLOCAL, flags & TF_NOHANG);
    device_tty_flag(&t->c_cflag, HUPCL, hupcls);
}

/* A group of tt_flags bits and the termios bits that hold it. */
struct device_tty_group {
    int flags;
    tcflag_t iflag, oflag, cflag, lflag;
};

static const struct device_tty_group device_tty_groups[] = {
    {.flags = TF_TANDEM, .iflag = IXOFF},
    {.flags = TF_ECHO, .lflag = ECHO},
    {.flags = TF_CRMOD, .iflag = ICRNL, .oflag = ONLCR},
    {.flags = TF_XTABS, .oflag = TABDLY},
    {.flags = TF_LITOUT | TF_ODDP | TF_EVENP, .cflag = CSIZE | PARENB | PARODD},
    {.flags = TF_NOHANG, .cflag = CLOCAL},
    {.flags = TF_HUPCLS, .cflag = HUPCL},
};

static bool device_tty_group_same(const struct device_tty_group *g, const struct termios *a,
                                  const struct termios *b)
{
    return (a->c_iflag & g->iflag) == (b->c_iflag & g->iflag) &&
           (a->c_oflag & g->oflag) == (b->c_oflag & g->oflag) &&
           (a->c_cflag & g->cflag) == (b->c_cflag & g->cflag) &&
           (a->c_lflag & g->lflag) == (b->c_lflag & g->lflag);
}

/* The tt_flags that termios T shows (TF_MDMBUF aside). */
static int device_tty_flags_of(const struct termios *t)
{
    int flags = 0;
    flags |= (t->c_iflag & IXOFF) ? TF_TANDEM : 0;
    flags |= (t->c_lflag & ECHO) ? TF_ECHO : 0;
    flags |= (t->c_oflag & ONLCR) ? TF_CRMOD : 0;
    flags |= (t->c_oflag & TABDLY) == TAB3 ? TF_XTABS : 0;
    if (!(t->c_cflag & PARENB)) {
        flags |= TF_LITOUT;
    } else {
        flags |= (t->c_cflag & PARODD) ? TF_ODDP : TF_EVENP;
    }
    flags |= (t->c_cflag & CLOCAL) ? TF_NOHANG : 0;
    flags |= (t->c_cflag & HUPCL) ? TF_HUPCLS : 0;
    return flags;
}

/* Fills TS from the record and, where the console is a terminal, from
 * its termios, part by part (see the top of this file).  Expects (S).
 * Returns D_SUCCESS or the device error of tcgetattr. */
static kern_return_t device_tty_status_read(struct tty_status *ts)
{
    int flags = device_tty.flags | (device_tty.hupcls ? TF_HUPCLS : 0);
    *ts = (struct tty_status){.tt_ispeed = device_tty.ispeed, .tt_ospeed = device_tty.ospeed,
                              .tt_breakc = device_tty.breakc, .tt_flags = flags};
    if (device_tty.term < 0) {
        return D_SUCCESS;
    }
    struct termios now;
    if (tcgetattr(device_tty.term, &now) != 0) {
        return device_errno(errno);
    }
    const struct termios *then = &device_tty.shown;
    bool applied = device_tty.applied;
    if (!applied || cfgetospeed(&now) != cfgetospeed(then)) {
        ts->tt_ospeed = device_tty_speed_number(cfgetospeed(&now));
    }
    if (!applied || cfgetispeed(&now) != cfgetispeed(then)) {
        /* Linux: an input speed of 0 is the output speed. */
        speed_t ispeed = cfgetispeed(&now);
        ts->tt_ispeed = device_tty_speed_number(ispeed != 0 ? ispeed : cfgetospeed(&now));
    }
    int shown = device_tty_flags_of(&now);
    for (size_t i = 0; i < sizeof device_tty_groups / sizeof device_tty_groups[0]; i++) {
        const struct device_tty_group *g = &device_tty_groups[i];
        if (!applied || !device_tty_group_same(g, &now, then)) {
            ts->tt_flags = (ts->tt_flags & ~g->flags) | (shown & g->flags);
        }
    }
    return D_SUCCESS;
}

/* ---- the flavors ---- */

/* TTY_STATUS: checks TS as tty_set_status does, applies it to the
 * terminal (comparam's part), then records it.  Expects (S). */
static kern_return_t device_tty_status_write(const struct tty_status *ts)
{
    if (ts->tt_ispeed < 0 || ts->tt_ispeed >= NSPEEDS || ts->tt_ospeed < 0 ||
        ts->tt_ospeed >= NSPEEDS) {
        return D_INVALID_OPERATION;
    }
    int flags = ts->tt_flags & ~TF_HUPCLS;
    /* TS_HUPCLS only ever gets set here (chario), and speed 0 sets it
     * too (comparam). */
    bool hupcls = device_tty.hupcls || (ts->tt_flags & TF_HUPCLS) || ts->tt_ispeed == 0;
    if (device_tty.term >= 0) {
        struct termios t;
        if (tcgetattr(device_tty.term, &t) != 0) {
            return device_errno(errno);
        }
        device_tty_to_termios(ts->tt_ispeed, ts->tt_ospeed, flags, hupcls, &t);
        if (tcsetattr(device_tty.term, TCSANOW, &t) != 0) {
            /* EINVAL: a speed or format the line cannot do. */
            return errno == EINVAL ? D_INVALID_OPERATION : device_errno(errno);
        }
        device_tty.applied = tcgetattr(device_tty.term, &device_tty.shown) == 0;
    }
    device_tty.ispeed = ts->tt_ispeed;
    device_tty.ospeed = ts->tt_ospeed;
    device_tty.breakc = ts->tt_breakc;
    device_tty.flags = flags;
    device_tty.hupcls = hupcls;
    if (ts->tt_ispeed == 0) {
        device_tty.modem = 0; /* comparam: speed 0 hangs up */
    }
    return D_SUCCESS;
}

/* Linux's modem bits and GNU Mach's, pair by pair. */
static const struct {
    int linux_bit;
    int mach_bit;
} device_tty_modem_bits[] = {
    {TIOCM_LE, TM_LE},   {TIOCM_DTR, TM_DTR}, {TIOCM_RTS, TM_RTS},
    {TIOCM_ST, TM_ST},   {TIOCM_SR, TM_SR},   {TIOCM_CTS, TM_CTS},
    {TIOCM_CAR, TM_CAR}, {TIOCM_RNG, TM_RNG}, {TIOCM_DSR, TM_DSR},
};

/* TTY_MODEM's value: the terminal's modem lines where it has them (the
 * break, an output, from the record), else the record.  Expects (S). */
static int device_tty_modem_read(void)
{
    int lines;
    if (device_tty.term_out < 0 || ioctl(device_tty.term_out, TIOCMGET, &lines) != 0) {
        return device_tty.modem;
    }
    int bits = device_tty.modem & TM_BRK;
    for (size_t i = 0; i < sizeof device_tty_modem_bits / sizeof device_tty_modem_bits[0]; i++) {
        if (lines & device_tty_modem_bits[i].linux_bit) {
            bits |= device_tty_modem_bits[i].mach_bit;
        }
    }
    return bits;
}

/* Makes the terminal's break (TM_BRK in BITS) and its DTR and RTS lines
 * (only when TOUCH has DTR or RTS, as commctl) follow BITS.  A terminal
 * without those lines keeps the record only.  Expects (S).  Returns
 * D_SUCCESS or a device error. */
static kern_return_t device_tty_lines_write(int touch, int bits)
{
    int fd = device_tty.term_out;
    if (fd < 0) {
        return D_SUCCESS;
    }
    if ((touch & TM_BRK) && ioctl(fd, (bits & TM_BRK) ? TIOCSBRK : TIOCCBRK) != 0 &&
        !device_tty_no_line(errno)) {
        return device_errno(errno);
    }
    if (touch & (TM_DTR | TM_RTS)) {
        int on = ((bits & TM_DTR) ? TIOCM_DTR : 0) | ((bits & TM_RTS) ? TIOCM_RTS : 0);
        int off = (TIOCM_DTR | TIOCM_RTS) & ~on;
        if (((on != 0 && ioctl(fd, TIOCMBIS, &on) != 0) ||
             (off != 0 && ioctl(fd, TIOCMBIC, &off) != 0)) &&
            !device_tty_no_line(errno)) {
            return device_errno(errno);
        }
    }
    return D_SUCCESS;
}

/* How commctl changes the modem bits: to BITS, or BITS on, or off. */
enum device_tty_how { DEVICE_TTY_DMSET, DEVICE_TTY_DMBIS, DEVICE_TTY_DMBIC };

/* commctl: changes the modem bits (TTY_MODEM sets them, the breaks turn
 * TM_BRK on or off).  Expects (S). */
static kern_return_t device_tty_modem_write(int bits, enum device_tty_how how)
{
    int touch = bits, now;
    if (bits == TM_HUP) {
        touch = TM_DTR | TM_RTS; /* close the line: DTR and RTS down */
        how = DEVICE_TTY_DMBIC;
    }
    if (how == DEVICE_TTY_DMSET) {
        now = bits;
    } else if (how == DEVICE_TTY_DMBIS) {
        now = device_tty.modem | touch;
    } else {
        now = device_tty.modem & ~touch;
    }
    kern_return_t kr = device_tty_lines_write(touch, now);
    if (kr == D_SUCCESS) {
        device_tty.modem = now;
    }
    return kr;
}

/* Stops (STOP) or restarts output; the terminal's is, too.  Expects (S). */
static kern_return_t device_tty_flow(bool stop)
{
    if (device_tty.stopped == stop) {
        return D_SUCCESS;
    }
    if (device_tty.term_out >= 0 && tcflow(device_tty.term_out, stop ? TCOOFF : TCOON) != 0) {
        return device_errno(errno);
    }
    device_tty.stopped = stop;
    return D_SUCCESS;
}

/* tty_flush: RW's D_READ discards the input waiting, D_WRITE the output
 * (and restarts it).  Takes and releases (S). */
static kern_return_t device_tty_flush(int rw)
{
    kern_return_t kr = D_SUCCESS;
    if (rw & D_READ) {
        if (device_tty.term_in >= 0) {
            kr = tcflush(device_tty.term_in, TCIFLUSH) == 0 ? D_SUCCESS : device_errno(errno);
        } else {
            device_console_discard(); /* a pipe's or socket's input */
        }
    }
    if (kr == D_SUCCESS && (rw & D_WRITE)) {
        pthread_mutex_lock(&device_tty.lock);
        kr = device_tty_flow(false);
        if (kr == D_SUCCESS && device_tty.term_out >= 0 &&
            tcflush(device_tty.term_out, TCOFLUSH) != 0) {
            kr = device_errno(errno);
        }
        pthread_mutex_unlock(&device_tty.lock);
    }
    return kr;
}

kern_return_t device_tty_get_status(dev_flavor_t flavor, dev_status_t status,
                                    mach_msg_type_number_t *count)
{
    kern_return_t kr = D_SUCCESS;
    switch (flavor) {
    case TTY_STATUS: {
        if (*count < TTY_STATUS_COUNT) {
            return D_INVALID_OPERATION;
        }
        struct tty_status ts;
        pthread_mutex_lock(&device_tty.lock);
        kr = device_tty_status_read(&ts);
        pthread_mutex_unlock(&device_tty.lock);
        if (kr == D_SUCCESS) {
            status[0] = ts.tt_ispeed;
            status[1] = ts.tt_ospeed;
            status[2] = ts.tt_breakc;
            status[3] = ts.tt_flags;
            *count = TTY_STATUS_COUNT;
        }
        return kr;
    }
    case TTY_MODEM:
        /* As comgetstat: one integer whatever the count (the stub of a
         * caller that asked for none answers MIG_ARRAY_TOO_LARGE). */
        pthread_mutex_lock(&device_tty.lock);
        status[0] = device_tty_modem_read();
        pthread_mutex_unlock(&device_tty.lock);
        *count = TTY_MODEM_COUNT;
        return D_SUCCESS;
    default:
        return D_INVALID_OPERATION;
    }
}

kern_return_t device_tty_set_status(dev_flavor_t flavor, const dev_status_t status,
                                    mach_msg_type_number_t count)
{
    if (flavor == TTY_FLUSH) {
        if (count < TTY_FLUSH_COUNT) {
            return D_INVALID_OPERATION;
        }
        return device_tty_flush(status[0] != 0 ? status[0] : D_READ | D_WRITE);
    }
    kern_return_t kr = D_INVALID_OPERATION;
    pthread_mutex_lock(&device_tty.lock);
    switch (flavor) {
    case TTY_STATUS:
        if (count >= TTY_STATUS_COUNT) {
            struct tty_status ts = {.tt_ispeed = status[0], .tt_ospeed = status[1],
                                    .tt_breakc = status[2], .tt_flags = status[3]};
            kr = device_tty_status_write(&ts);
        }
        break;
    case TTY_MODEM:
        /* (GNU Mach's com reads the integer whatever the count.) */
        if (count >= TTY_MODEM_COUNT) {
            kr = device_tty_modem_write(status[0], DEVICE_TTY_DMSET);
        }
        break;
    case TTY_SET_BREAK:
    case TTY_CLEAR_BREAK:
        kr = device_tty_modem_write(TM_BRK, flavor == TTY_SET_BREAK ? DEVICE_TTY_DMBIS
                                                                    : DEVICE_TTY_DMBIC);
        break;
    case TTY_STOP:
    case TTY_START:
        kr = device_tty_flow(flavor == TTY_STOP);
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&device_tty.lock);
    return kr;
}

void device_tty_output_restart(void)
{
    pthread_mutex_lock(&device_tty.lock);
    (void)device_tty_flow(false); /* (a failure leaves the write to tell) */
    pthread_mutex_unlock(&device_tty.lock);
}

void device_tty_opened(void)
{
    pthread_mutex_lock(&device_tty.lock);
    device_tty.breakc = 0;
    if (device_tty.ispeed == 0) {
        device_tty.hupcls = true;
        device_tty.modem = 0;
    } else {
        device_tty.modem |= TM_DTR | TM_RTS;
    }
    pthread_mutex_unlock(&device_tty.lock);
}

void device_tty_closed(void)
{
    pthread_mutex_lock(&device_tty.lock);
    (void)device_tty_flow(false);
    if (device_tty.modem & TM_BRK) {
        (void)device_tty_lines_write(TM_BRK, 0);
    }
    device_tty.modem = 0;
    device_tty.hupcls = false;
    pthread_mutex_unlock(&device_tty.lock);
}
