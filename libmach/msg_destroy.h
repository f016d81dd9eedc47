/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef HELL_MSG_DESTROY_H
#define HELL_MSG_DESTROY_H

#include <mach/message.h>
#include <stdbool.h>

/* Destroys the rights and regions a received MSG carries in space
 * SPACE_ID: the remote (reply) port when WITH_REMOTE, and the body.
 * Expects no lock held. */
void msg_destroy_in(int space_id, mach_msg_header_t *msg, bool with_remote);

#endif
