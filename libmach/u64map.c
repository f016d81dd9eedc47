/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "u64map.h"

#include <assert.h>
#include <stdlib.h>

static size_t u64map_hash(uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

void *u64map_lookup(const struct u64map *map, uint64_t key)
{
    if (map->cap == 0) {
        return NULL;
    }
    for (size_t i = u64map_hash(key, map->cap);; i = (i + 1) & (map->cap - 1)) {
        if (map->slots[i].key == key) {
            return map->slots[i].value;
        }
        if (map->slots[i].key == 0) {
            return NULL;
        }
    }
}

static bool u64map_grow(struct u64map *map)
{
    size_t cap = map->cap ? map->cap * 2 : 16;
    struct u64map_slot *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) {
        return false;
    }
    for (size_t i = 0; i < map->cap; i++) {
        if (map->slots[i].key != 0) {
            size_t j = u64map_hash(map->slots[i].key, cap);
            while (slots[j].key != 0) {
                j = (j + 1) & (cap - 1);
            }
            slots[j] = map->slots[i];
        }
    }
    free(map->slots);
    map->slots = slots;
    map->cap = cap;
    return true;
}

bool u64map_insert(struct u64map *map, uint64_t key, void *value)
{
    assert(key != 0 && value != NULL);
    if ((map->count + 1) * 4 > map->cap * 3 && !u64map_grow(map)) {
        return false;
    }
    size_t i = u64map_hash(key, map->cap);
    while (map->slots[i].key != 0 && map->slots[i].key != key) {
        i = (i + 1) & (map->cap - 1);
    }
    if (map->slots[i].key == 0) {
        map->count++;
    }
    map->slots[i].key = key;
    map->slots[i].value = value;
    return true;
}

void *u64map_remove(struct u64map *map, uint64_t key)
{
    if (map->cap == 0) {
        return NULL;
    }
    size_t mask = map->cap - 1;
    size_t i = u64map_hash(key, map->cap);
    while (map->slots[i].key != key) {
        if (map->slots[i].key == 0) {
            return NULL;
        }
        i = (i + 1) & mask;
    }
    void *value = map->slots[i].value;
    /* Shift later members of the cluster back so lookups stay correct. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; map->slots[j].key != 0; j = (j + 1) & mask) {
        size_t home = u64map_hash(map->slots[j].key, map->cap);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            map->slots[hole] = map->slots[j];
            hole = j;
        }
    }
    map->slots[hole].key = 0;
    map->slots[hole].value = NULL;
    map->count--;
    return value;
}

void u64map_destroy(struct u64map *map)
{
    free(map->slots);
    map->slots = NULL;
    map->cap = 0;
    map->count = 0;
}

bool u64map_next(const struct u64map *map, size_t *cursor, uint64_t *key,
                 void **value)
{
    for (; *cursor < map->cap; (*cursor)++) {
        if (map->slots[*cursor].key != 0) {
            *key = map->slots[*cursor].key;
            *value = map->slots[*cursor].value;
            (*cursor)++;
            return true;
        }
    }
    return false;
}
