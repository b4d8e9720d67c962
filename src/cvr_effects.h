/*  cvr_effects.h: the events a command produced, in order (internal).

    cvr_state_apply writes events here; the server then numbers them with
    cvr_history and publishes them. Each event body is a map left open so
    the history can add `seq` and `prev`. The container is reused between
    commands: clear keeps the memory.
*/
#ifndef CVR_EFFECTS_H_INCLUDED
#define CVR_EFFECTS_H_INCLUDED

#include "cvr_proto.h"

typedef struct _cvr_effects_t cvr_effects_t;

cvr_effects_t *
    cvr_effects_new (void);
void
    cvr_effects_destroy (cvr_effects_t **self_p);
//  Forgets every event.
void
    cvr_effects_clear (cvr_effects_t *self);
//  Adds an event under root (e.g. "service/orders") with topic
//  root + "/" + leaf. Returns its body, a map already holding "type" and
//  "at", for the caller to add fields to and leave open. Borrowed.
cvr_wr_t *
    cvr_effects_add (cvr_effects_t *self, const char *root, const char *leaf,
                     const char *type, int64_t at);
//  Adds "service": the record to the body of the event last added, and
//  remembers where its bytes are.
void
    cvr_effects_put_service (cvr_effects_t *self, const cvr_service_t *service);
//  The encoded record of the last event that carries one, and its size:
//  the bytes cvr_proto_write_service gave for the record as it was then
//  (borrowed, until the next add or clear); NULL when none does. A reply
//  with the record just changed copies it from here instead of encoding
//  it again.
const uint8_t *
    cvr_effects_service (cvr_effects_t *self, size_t *size);
size_t
    cvr_effects_size (cvr_effects_t *self);
//  Topic, root and body of the index'th event. Borrowed.
const char *
    cvr_effects_topic (cvr_effects_t *self, size_t index);
const char *
    cvr_effects_root (cvr_effects_t *self, size_t index);
cvr_wr_t *
    cvr_effects_body (cvr_effects_t *self, size_t index);

#endif
