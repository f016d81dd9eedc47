/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A map from 64-bit keys to pointers: open addressing, linear probing,
 * backward-shift deletion.  Key 0 is reserved (never stored).
 *
 * Not thread-safe: callers hold the lock that guards the owning object.
 */
#ifndef HELL_U64MAP_H
#define HELL_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct u64map_slot {
    uint64_t key;
    void *value;
};

struct u64map {
    struct u64map_slot *slots;
    size_t cap;   /* a power of two, or 0 */
    size_t count;
};

/* Returns the value stored under KEY, or NULL. */
void *u64map_lookup(const struct u64map *map, uint64_t key);

/* Stores VALUE (not NULL) under KEY (not 0), replacing any previous
 * value.  Returns false only when memory is exhausted. */
bool u64map_insert(struct u64map *map, uint64_t key, void *value);

/* Removes KEY and returns its value, or NULL when absent. */
void *u64map_remove(struct u64map *map, uint64_t key);

/* Releases the table (not the values). */
void u64map_destroy(struct u64map *map);

/* Iteration: for (size_t i = 0; u64map_next(map, &i, &k, &v);) ...
 * The map must not change during the walk. */
bool u64map_next(const struct u64map *map, size_t *cursor, uint64_t *key,
                 void **value);

#endif
