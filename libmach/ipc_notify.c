/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ipc_notify.h"

#include <mach/notify.h>

#include "ipc_port.h"
#include "ipc_wire.h"

void ipc_notify_send_once(struct ipc_port *port, uint64_t nonce)
{
    if (port->rcv != NULL && port->rcv->orphan) {
        return;
    }
    /* A full or dead queue loses the notification, as a dead port does in
     * GNU Mach; a full one is the one difference (see ARCHITECTURE.md). */
    (void)wire_send_notify_locked(port, nonce, MACH_NOTIFY_SEND_ONCE);
}
