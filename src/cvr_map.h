/*  cvr_map.h: a string-keyed hash map for the hot lookups (service ids).

    Open addressing with linear probing and backward-shift deletion: one
    array of {hash, key, value} slots, so a lookup touches one cache line
    of the array and then the key it compares (which lives in the value,
    e.g. a service's own service_id), not a chain of separately allocated
    items. Grows at 70% load, never shrinks below its initial size.

    Growing does not stop the caller: the map starts a table twice the
    size, which takes every new entry, and each insertion after that moves
    a few entries of the old one across, until it is empty and freed.
    Meanwhile a lookup that misses in the new table looks in the old one.
    A big map also zeroes its next table ahead, a slice per insertion from
    60% load. (Zeroing a fresh table of 48 MB and moving a million entries
    at once held one batch of registrations for 50-100 ms.)

    The map owns neither keys nor values: a key is borrowed from its value
    and must stay valid, unchanged, while the entry is in the map.
*/
#ifndef CVR_MAP_H_INCLUDED
#define CVR_MAP_H_INCLUDED

#include <czmq.h>

typedef struct _cvr_map_t cvr_map_t;

cvr_map_t *
    cvr_map_new (void);

//  Frees the map, not its keys or values.
void
    cvr_map_destroy (cvr_map_t **self_p);

//  The value under key, or NULL.
void *
    cvr_map_get (cvr_map_t *self, const char *key);

//  Sets key to value (neither NULL); returns the value it replaced, or
//  NULL. The key is borrowed (see above): on a replacement the entry keeps
//  the new key pointer.
void *
    cvr_map_put (cvr_map_t *self, const char *key, void *value);

//  A key's hash, for the calls below that take it: a get then a put of
//  the same key hash it once.
uint64_t
    cvr_map_hash (const char *key);
//  cvr_map_get and cvr_map_put with the key's hash given.
void *
    cvr_map_get_hashed (cvr_map_t *self, const char *key, uint64_t hash);
void *
    cvr_map_put_hashed (cvr_map_t *self, const char *key, uint64_t hash, void *value);
//  Removes key; returns its value, or NULL when absent.
void *
    cvr_map_remove (cvr_map_t *self, const char *key);

size_t
    cvr_map_size (cvr_map_t *self);

//  Iteration in slot order (arbitrary, stable while the map is unchanged):
//  start with *cursor = 0; returns the next value, or NULL at the end.
//  While the map grows, the cursor runs over the old table, then the new.
void *
    cvr_map_next (cvr_map_t *self, size_t *cursor);

//  Hints for a batch of lookups to come, so that their cache misses
//  overlap instead of following one another: first the slot of each key
//  (len bytes, no NUL needed), then, once those are likely in cache, the
//  value (its first 128 bytes) and key of each (those of the first slot
//  with the key's hash: keys are not compared). Neither changes anything
//  nor fails. The second returns false when no slot has the key's hash:
//  the key is surely absent.
void
    cvr_map_prefetch_slot (cvr_map_t *self, const char *key, size_t len);
bool
    cvr_map_prefetch_value (cvr_map_t *self, const char *key, size_t len);

#endif
