/*  cvr_held.c: held replies in a reference-counted buffer; see cvr_held.h. */
#include "cvr_held.h"
#include <stdatomic.h>

#define S_FIRST     4096            //  bytes: the first buffer
#define S_HINT_MAX  (1 << 20)       //  bytes: a buffer's size carried on
#define S_SPARES    4               //  freed buffers kept for reuse, at most
#define S_SPARE_MAX (2 * S_HINT_MAX)    //  bytes: a bigger one is freed

//  One buffer: the owner's reference until sent, plus one per body that
//  ZeroMQ holds. Each reply: identity size (size_t), identity, delimiter
//  flag (1 byte), body size (size_t), body.
typedef struct {
    atomic_size_t refs;
    cvr_held_budget_t *budget;      //  its holder's
    bool counted;                   //  sent in place: counted in the budget
    size_t size;
    size_t capacity;
    uint8_t data [];
} s_buffer_t;

//  Its owner's reference, plus one per buffer it counts. The spares are
//  buffers whose replies are all written: the next batch reuses one
//  instead of allocating (a fresh buffer is fresh memory, whose first
//  writes fault page by page).
struct _cvr_held_budget_t {
    atomic_size_t refs;
    atomic_size_t pinned;           //  bytes of the buffers it counts
    size_t max_pinned;
    _Atomic (s_buffer_t *) spares [S_SPARES];
    atomic_size_t reused;           //  buffers taken from the spares
};

struct _cvr_held_t {
    cvr_held_budget_t *budget;
    s_buffer_t *buffer;             //  NULL while nothing is held
    size_t hint;                    //  capacity of the next buffer
};

cvr_held_budget_t *
cvr_held_budget_new (size_t max_pinned)
{
    cvr_held_budget_t *self = (cvr_held_budget_t *) zmalloc (sizeof (cvr_held_budget_t));
    atomic_init (&self->refs, 1);
    atomic_init (&self->pinned, 0);
    atomic_init (&self->reused, 0);
    for (size_t i = 0; i < S_SPARES; i++)
        atomic_init (&self->spares [i], NULL);
    self->max_pinned = max_pinned;
    return self;
}

static void
s_budget_release (cvr_held_budget_t *self)
{
    if (atomic_fetch_sub_explicit (&self->refs, 1, memory_order_acq_rel) == 1) {
        for (size_t i = 0; i < S_SPARES; i++)
            free (atomic_exchange_explicit (&self->spares [i], NULL, memory_order_acquire));
        free (self);
    }
}

void
cvr_held_budget_destroy (cvr_held_budget_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_budget_release (*self_p);
    *self_p = NULL;
}

size_t
cvr_held_budget_pinned (cvr_held_budget_t *self)
{
    return atomic_load_explicit (&self->pinned, memory_order_acquire);
}

size_t
cvr_held_budget_reused (cvr_held_budget_t *self)
{
    return atomic_load_explicit (&self->reused, memory_order_relaxed);
}

//  Keeps a buffer nobody references as a spare, or frees it when the
//  spares are full or it is too big to keep. Any thread.
static void
s_spare_put (cvr_held_budget_t *budget, s_buffer_t *buffer)
{
    if (buffer->capacity <= S_SPARE_MAX)
        for (size_t i = 0; i < S_SPARES; i++) {
            s_buffer_t *empty = NULL;
            if (atomic_compare_exchange_strong_explicit (&budget->spares [i], &empty, buffer,
                                                         memory_order_release,
                                                         memory_order_relaxed))
                return;
        }
    free (buffer);
}

//  A spare of at least capacity bytes and at most four times that, or
//  NULL. Spares outside that are freed: one grown by a burst would else
//  serve every later small batch, and a buffer sent in place pins its
//  whole capacity. Only the holders' thread takes them.
static s_buffer_t *
s_spare_take (cvr_held_budget_t *budget, size_t capacity)
{
    for (size_t i = 0; i < S_SPARES; i++) {
        s_buffer_t *buffer = atomic_exchange_explicit (&budget->spares [i], NULL,
                                                       memory_order_acquire);
        if (buffer && buffer->capacity >= capacity && buffer->capacity / 4 <= capacity) {
            atomic_fetch_add_explicit (&budget->reused, 1, memory_order_relaxed);
            return buffer;
        }
        free (buffer);
    }
    return NULL;
}

//  Drops a reference; the last one returns the buffer to its budget's
//  spares (before the buffer's hold on the budget goes, so that a budget
//  freed by it frees the spare too).
static void
s_release (void *data, void *hint)
{
    (void) data;
    s_buffer_t *buffer = (s_buffer_t *) hint;
    if (atomic_fetch_sub_explicit (&buffer->refs, 1, memory_order_acq_rel) == 1) {
        cvr_held_budget_t *budget = buffer->budget;
        bool counted = buffer->counted;
        if (counted)
            atomic_fetch_sub_explicit (&budget->pinned, buffer->capacity,
                                       memory_order_acq_rel);
        s_spare_put (budget, buffer);
        if (counted)
            s_budget_release (budget);
    }
}

//  A buffer's capacity for size bytes: at least S_FIRST, at most what a
//  hint carries on.
static size_t
s_hint (size_t size)
{
    return size < S_FIRST ? S_FIRST : size < S_HINT_MAX ? size : S_HINT_MAX;
}

cvr_held_t *
cvr_held_new (cvr_held_budget_t *budget, size_t first)
{
    cvr_held_t *self = (cvr_held_t *) zmalloc (sizeof (cvr_held_t));
    self->budget = budget;
    self->hint = s_hint (first);
    return self;
}

void
cvr_held_destroy (cvr_held_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_held_drop (*self_p);
    free (*self_p);
    *self_p = NULL;
}

//  An unshared buffer (or NULL for a new one) resized to capacity bytes.
static s_buffer_t *
s_resize (s_buffer_t *buffer, size_t capacity)
{
    buffer = (s_buffer_t *) realloc (buffer, sizeof (s_buffer_t) + capacity);
    if (!buffer) {
        zsys_error ("conveyord: out of memory holding replies");
        abort ();
    }
    buffer->capacity = capacity;
    return buffer;
}

//  Room for need more bytes in the owner's (unshared) buffer.
static uint8_t *
s_reserve (cvr_held_t *self, size_t need)
{
    s_buffer_t *buffer = self->buffer;
    if (!buffer) {
        buffer = s_spare_take (self->budget, self->hint);
        if (!buffer)
            buffer = s_resize (NULL, self->hint);
        atomic_init (&buffer->refs, 1);
        buffer->budget = self->budget;
        buffer->counted = false;
        buffer->size = 0;
        self->buffer = buffer;
    }
    size_t size = buffer->size;
    if (size + need > buffer->capacity) {
        size_t capacity = 2 * buffer->capacity;
        while (capacity < size + need)
            capacity *= 2;
        buffer = self->buffer = s_resize (buffer, capacity);
    }
    uint8_t *at = buffer->data + buffer->size;
    buffer->size += need;
    return at;
}

void
cvr_held_add (cvr_held_t *self, const void *identity, size_t identity_size,
              bool delimiter, const void *body, size_t body_size)
{
    uint8_t *at = s_reserve (self, 2 * sizeof (size_t) + identity_size + 1 + body_size);
    memcpy (at, &identity_size, sizeof (size_t));
    at += sizeof (size_t);
    memcpy (at, identity, identity_size);
    at += identity_size;
    *at++ = delimiter;
    memcpy (at, &body_size, sizeof (size_t));
    at += sizeof (size_t);
    memcpy (at, body, body_size);
}

size_t
cvr_held_size (cvr_held_t *self)
{
    return self->buffer ? self->buffer->size : 0;
}

void
cvr_held_send (cvr_held_t *self, void *router)
{
    s_buffer_t *buffer = self->buffer;
    if (!buffer)
        return;
    //  In place while the budget has room for the whole buffer; copied
    //  otherwise. Only the server's thread adds to the budget, so what it
    //  reads here can only have shrunk since.
    cvr_held_budget_t *budget = self->budget;
    bool in_place = cvr_held_budget_pinned (budget) + buffer->capacity <= budget->max_pinned;
    if (in_place) {
        atomic_fetch_add_explicit (&budget->refs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit (&budget->pinned, buffer->capacity, memory_order_acq_rel);
        buffer->counted = true;
    }
    const uint8_t *at = buffer->data;
    const uint8_t *end = at + buffer->size;
    while (at < end) {
        size_t identity_size, body_size;
        memcpy (&identity_size, at, sizeof (size_t));
        const uint8_t *identity = at + sizeof (size_t);
        bool delimiter = identity [identity_size];
        memcpy (&body_size, identity + identity_size + 1, sizeof (size_t));
        uint8_t *body = (uint8_t *) identity + identity_size + 1 + sizeof (size_t);
        at = body + body_size;
        //  Identities are a few bytes: ZeroMQ keeps them in the message.
        zmq_send (router, identity, identity_size, ZMQ_SNDMORE);
        if (delimiter)
            zmq_send (router, "", 0, ZMQ_SNDMORE);
        if (!in_place) {
            zmq_send (router, body, body_size, 0);
            continue;
        }
        zmq_msg_t msg;
        atomic_fetch_add_explicit (&buffer->refs, 1, memory_order_relaxed);
        if (zmq_msg_init_data (&msg, body, body_size, s_release, buffer)) {
            s_release (NULL, buffer);   //  no memory for the message: dropped
            continue;
        }
        if (zmq_msg_send (&msg, router, 0) < 0)
            zmq_msg_close (&msg);       //  releases its reference
    }
    //  The next batch starts a buffer of its own, sized like this one.
    self->hint = s_hint (buffer->size);
    self->buffer = NULL;
    s_release (NULL, buffer);
}

void
cvr_held_drop (cvr_held_t *self)
{
    if (self->buffer) {
        s_release (NULL, self->buffer);
        self->buffer = NULL;
    }
}
