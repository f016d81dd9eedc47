/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The janitor: destroys the send-once rights a task of the instance held
 * when it died, as GNU Mach does when it destroys a task's space (each
 * right's holder is told with a send-once notification), and the queues
 * of the ports whose receive rights it held (with the rights their
 * messages carry).  Tasks list their rights in a table machd can read
 * (libmach/ipc_janitor.h).
 */
#ifndef HELL_MACHD_JANITOR_H
#define HELL_MACHD_JANITOR_H

/* Starts the janitor's thread.  Returns 0, or -1 with errno set. */
int janitor_start(void);

/* Takes CONN_FD, a task's HELL_OP_JANITOR connection, and TABLE_FD, its
 * table (both owned by the janitor from now on).  When the connection
 * closes, the send-once rights the table still lists are notified and
 * the ports whose receive rights it lists destroyed. */
void janitor_adopt(int conn_fd, int table_fd);

#endif
