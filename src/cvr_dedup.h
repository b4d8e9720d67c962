/*  cvr_dedup.h: the replies of recent writes, by client and request id.

    With a raft log, a client that timed out may retry a write that was in
    fact committed (its reply lost in a failover). A write that carries a
    `client_id` and a `rid` is remembered here with its reply; a retry of
    the same (client_id, rid) gets that reply again instead of applying
    twice. Bounded: the oldest entries go first. The committed state of the
    log keeps one (replicated, in snapshots), and the leader one of its own
    that runs ahead with the writes still in flight.
*/
#ifndef CVR_DEDUP_H_INCLUDED
#define CVR_DEDUP_H_INCLUDED

#include "cvr_proto.h"

#define CVR_DEDUP_CAPACITY 65536     //  replies remembered (the daemon's)

typedef struct _cvr_dedup_t cvr_dedup_t;

//  capacity: entries kept (>= 1).
cvr_dedup_t *
    cvr_dedup_new (size_t capacity);
void
    cvr_dedup_destroy (cvr_dedup_t **self_p);

//  The key of a request: its client_id and its rid (the rid's msgpack
//  bytes, in hex). Caller owns it.
char *
    cvr_dedup_key (const char *client_id, const msgpack_object *rid);

//  Remembers reply (copied) under key, replacing what was there; evicts the
//  oldest entry when full.
void
    cvr_dedup_put (cvr_dedup_t *self, const char *key, const void *reply, size_t size);

//  The reply remembered under key (borrowed until the next put), or NULL.
const uint8_t *
    cvr_dedup_get (cvr_dedup_t *self, const char *key, size_t *size);

size_t
    cvr_dedup_size (cvr_dedup_t *self);

//  All entries, oldest first, as [[key, reply (bin)], ...].
void
    cvr_dedup_write (cvr_dedup_t *self, cvr_wr_t *w);

//  One entry as cvr_dedup_write writes it: [key, reply (bin)].
void
    cvr_dedup_write_entry (cvr_wr_t *w, const char *key, const void *reply, size_t size);

//  Adds the entries of a value written by cvr_dedup_write (in order, the
//  oldest evicted as usual). Returns 0, or -1 on a malformed value (nothing
//  added then).
int
    cvr_dedup_merge (cvr_dedup_t *self, const msgpack_object *o);

//  Replaces every entry with those written by cvr_dedup_write. Returns 0,
//  or -1 on a malformed value (nothing changed then).
int
    cvr_dedup_read (cvr_dedup_t *self, const msgpack_object *o);

#endif
