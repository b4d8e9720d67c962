/*  cvr_deadlines.h: deadline-ordered timers keyed by name (internal).

    A binary min-heap with each entry's position kept in it, plus a hash
    from key to entry: set, move and remove cost O(log n); finding what is
    due costs O(1) per due entry. This is what keeps heartbeats cheap and a
    tick proportional to what expires, never a scan of every lease.
*/
#ifndef CVR_DEADLINES_H_INCLUDED
#define CVR_DEADLINES_H_INCLUDED

#include <czmq.h>

typedef struct _cvr_deadlines_t cvr_deadlines_t;

cvr_deadlines_t *
    cvr_deadlines_new (void);
void
    cvr_deadlines_destroy (cvr_deadlines_t **self_p);
//  Sets (or moves) the deadline of key. The key is copied.
void
    cvr_deadlines_set (cvr_deadlines_t *self, const char *key, int64_t deadline);
//  Forgets key; no-op when absent.
void
    cvr_deadlines_remove (cvr_deadlines_t *self, const char *key);
//  The key of an entry due at now (deadline <= now), earliest first, or
//  NULL. The entry stays until the caller sets or removes it. Borrowed.
const char *
    cvr_deadlines_due (cvr_deadlines_t *self, int64_t now);
//  The deadline of key, or -1 when absent.
int64_t
    cvr_deadlines_get (cvr_deadlines_t *self, const char *key);
//  The earliest deadline, or INT64_MAX when empty.
int64_t
    cvr_deadlines_next (cvr_deadlines_t *self);
size_t
    cvr_deadlines_size (cvr_deadlines_t *self);
//  Hints that key (len bytes) is about to be set: fetches its map slot
//  into cache (see cvr_map_prefetch_slot). Changes nothing.
void
    cvr_deadlines_prefetch (cvr_deadlines_t *self, const char *key, size_t len);

#endif
