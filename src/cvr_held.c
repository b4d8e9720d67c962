/*  cvr_held.c: held replies in a reference-counted buffer; see cvr_held.h. */
#include "cvr_held.h"
#include <stdatomic.h>

#define S_FIRST     4096            //  bytes: the first buffer
#define S_HINT_MAX  (1 << 20)       //  bytes: a buffer's size carried on

//  One buffer: the owner's reference until sent, plus one per body that
//  ZeroMQ holds. Each reply: identity size (size_t), identity, delimiter
//  flag (1 byte), body size (size_t), body.
typedef struct {
    atomic_size_t refs;
    size_t size;
    size_t capacity;
    uint8_t data [];
} s_buffer_t;

struct _cvr_held_t {
    s_buffer_t *buffer;             //  NULL while nothing is held
    size_t hint;                    //  capacity of the next buffer
};

static void
s_release (void *data, void *hint)
{
    (void) data;
    s_buffer_t *buffer = (s_buffer_t *) hint;
    if (atomic_fetch_sub_explicit (&buffer->refs, 1, memory_order_acq_rel) == 1)
        free (buffer);
}

cvr_held_t *
cvr_held_new (void)
{
    cvr_held_t *self = (cvr_held_t *) zmalloc (sizeof (cvr_held_t));
    self->hint = S_FIRST;
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

//  Room for need more bytes in the owner's (unshared) buffer.
static uint8_t *
s_reserve (cvr_held_t *self, size_t need)
{
    s_buffer_t *buffer = self->buffer;
    size_t size = buffer ? buffer->size : 0;
    if (!buffer || size + need > buffer->capacity) {
        size_t capacity = buffer ? 2 * buffer->capacity : self->hint;
        while (capacity < size + need)
            capacity *= 2;
        buffer = (s_buffer_t *) realloc (buffer, sizeof (s_buffer_t) + capacity);
        if (!buffer) {
            zsys_error ("conveyord: out of memory holding replies");
            abort ();
        }
        if (!self->buffer) {
            atomic_init (&buffer->refs, 1);
            buffer->size = 0;
        }
        buffer->capacity = capacity;
        self->buffer = buffer;
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
    self->hint = buffer->size < S_FIRST ? S_FIRST
               : buffer->size < S_HINT_MAX ? buffer->size : S_HINT_MAX;
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
