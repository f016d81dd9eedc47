/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Notifications libmach generates itself (GNU Mach notify.defs formats).
 */
#ifndef HELL_IPC_NOTIFY_H
#define HELL_IPC_NOTIFY_H

#include "ipc_types.h"

/* Uses the send-once right NONCE to PORT to deliver a
 * MACH_NOTIFY_SEND_ONCE message: what a destroyed send-once right
 * produces.  Never blocks.  Expects [G]; does not consume the port
 * reference. */
void ipc_notify_send_once(struct ipc_port *port, uint64_t nonce);

#endif
