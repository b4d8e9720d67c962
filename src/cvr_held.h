/*  cvr_held.h: replies held for the ROUTER, sent without copies (internal).

    The server holds each batch's replies until the batch ends (or, with
    --data-dir, until its log entry is committed), appended one after
    another to one buffer. Sending hands each body to ZeroMQ in place: the
    buffer is reference-counted, one reference per body in flight, and
    released by whichever thread drops the last (the I/O thread, once the
    last reply is written). So a reply is copied once, into the buffer,
    and a batch costs one allocation instead of one per reply, which the
    I/O thread would free into the server thread's heap under its lock.

    Once sent, the buffer is never written again: the next reply starts a
    new one, sized like the last batch. A buffer whose replies are all
    written goes back to its budget's spares (at most 4, of at most 2 MB
    each, not counted as pinned), and a later batch reuses one whose size
    is within four times what it needs (others are freed): holding
    replies then touches no fresh memory, which faults in page by page.

    A reply not yet written to its client keeps its whole buffer alive,
    the other clients' replies included: a client that stops reading
    could pin one buffer per batch it had a reply in. So the holders of a
    server share a budget of pinned bytes: a buffer is sent in place only
    while the buffers still referenced, it included, fit in it; past that
    its replies are copied one by one (as before cvr_held), and a client
    that stops reading holds only its own replies.
*/
#ifndef CVR_HELD_H_INCLUDED
#define CVR_HELD_H_INCLUDED

#include <czmq.h>

typedef struct _cvr_held_t cvr_held_t;
typedef struct _cvr_held_budget_t cvr_held_budget_t;

//  A budget of max_pinned bytes. Destroying it drops its owner's hold:
//  it lasts until the last buffer it counts is freed (by any thread).
cvr_held_budget_t *
    cvr_held_budget_new (size_t max_pinned);
void
    cvr_held_budget_destroy (cvr_held_budget_t **self_p);

//  Bytes of sent buffers that ZeroMQ still references.
size_t
    cvr_held_budget_pinned (cvr_held_budget_t *self);

//  How many buffers were reused from the spares so far.
size_t
    cvr_held_budget_reused (cvr_held_budget_t *self);

//  A holder counting against budget (borrowed: destroy the holders first).
//  first: bytes its first buffer is sized for, e.g. what the holder before
//  it held (0: a small default); later buffers are sized like the last.
cvr_held_t *
    cvr_held_new (cvr_held_budget_t *budget, size_t first);
//  Drops what is held unsent; replies in flight keep their buffer.
void
    cvr_held_destroy (cvr_held_t **self_p);

//  Holds a copy of a reply [identity, ("" when delimiter,) body].
void
    cvr_held_add (cvr_held_t *self, const void *identity, size_t identity_size,
                  bool delimiter, const void *body, size_t body_size);

//  Bytes held (the replies' framing included); 0 when nothing is.
size_t
    cvr_held_size (cvr_held_t *self);

//  Sends every held reply on router (a ROUTER, which never blocks: it
//  drops a reply to a peer that is gone or over its high-water mark), in
//  the order held, and holds nothing after.
void
    cvr_held_send (cvr_held_t *self, void *router);

//  Forgets what is held, unsent.
void
    cvr_held_drop (cvr_held_t *self);

#endif
