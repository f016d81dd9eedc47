/* SPDX-License-Identifier: GPL-2.0-or-later */
/* C types for tests/hell_test.defs. */
#ifndef HELL_TEST_TYPES_H
#define HELL_TEST_TYPES_H
typedef char string_t[256];
typedef const char *const_string_t;
#endif
