/*  cvr_history.h: numbers events and keeps the last N for events_since.

    Every event gets the next global `seq` and, as `prev`, the seq of the
    previous event of its root (service/<name>, group/<id>, topic/<name>).
    The last `capacity` events stay in a ring; older ones are compacted.
    No sockets and no clock: the caller stamps `at` and sends the bytes.
*/
#ifndef CVR_HISTORY_H_INCLUDED
#define CVR_HISTORY_H_INCLUDED

#include "cvr_proto.h"

typedef struct _cvr_history_t cvr_history_t;

//  capacity: events kept (>= 1).
cvr_history_t *
    cvr_history_new (size_t capacity);
void
    cvr_history_destroy (cvr_history_t **self_p);

//  Numbers one event. body holds exactly one open map (the event's fields);
//  this appends `seq` and `prev`, closes the map, and keeps a copy of the
//  bytes with the topic. Returns the event's seq. After the call the
//  writer holds the final body, ready to send.
uint64_t
    cvr_history_append (cvr_history_t *self, const char *topic,
                        const char *root, cvr_wr_t *body);

//  The latest seq (0 before the first event).
uint64_t
    cvr_history_seq (cvr_history_t *self);

//  The oldest seq still kept; latest + 1 when nothing is kept.
uint64_t
    cvr_history_oldest (cvr_history_t *self);

//  Writes the results of events_since into reply, which holds an open map:
//  "events": [[topic, body], ...] (seq > since, topic starting with prefix,
//  oldest first, at most limit), "more", "seq". Returns CVR_COMPACTED
//  (writing nothing) when an event after `since` is no longer kept.
cvr_err_t
    cvr_history_since (cvr_history_t *self, uint64_t since, const char *prefix,
                       size_t limit, cvr_wr_t *reply);

//  Keeps an event numbered elsewhere (by the committed state of the log):
//  body is its final bytes with seq and prev. Events at or below the
//  latest seq are already counted and ignored; an empty history starts at
//  the first one it is given. Returns 0, or -1 when seq is not the next
//  one (nothing kept then).
int
    cvr_history_put (cvr_history_t *self, const char *topic, const char *root,
                     uint64_t seq, const void *body, size_t size);

//  The numbering, for a snapshot: {"seq": latest, "roots": {root: its
//  latest seq}} with roots in order (canonical).
void
    cvr_history_write_numbering (cvr_history_t *self, cvr_wr_t *w);

//  Continues the numbering written by cvr_history_write_numbering: the next
//  event gets seq + 1 and its root's prev. Every kept event is forgotten
//  (events_since before the restored seq answers COMPACTED). Returns 0, or
//  -1 on a malformed value (nothing changed then).
int
    cvr_history_read_numbering (cvr_history_t *self, const msgpack_object *o);

#endif
