/*  cvr_effects.c: events produced by one command. */
#include "cvr_effects.h"

//  Topic and root share one buffer, "root/leaf\0root\0", kept (and grown
//  when needed) across clears like the body: no allocation per event.
typedef struct {
    char *names;                //  owned, reused across clears
    size_t names_size;          //  bytes allocated
    const char *root;           //  inside names
    cvr_wr_t *body;             //  owned, reused across clears
    size_t service_at;          //  where its "service" record starts in body
    size_t service_size;        //  and its bytes; 0 when it carries none
} s_event_t;

struct _cvr_effects_t {
    s_event_t *events;          //  the events, first produced first
    size_t size;                //  events in use
    size_t capacity;            //  slots allocated (their writers kept)
};

cvr_effects_t *
cvr_effects_new (void)
{
    return (cvr_effects_t *) zmalloc (sizeof (cvr_effects_t));
}

void
cvr_effects_destroy (cvr_effects_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_effects_t *self = *self_p;
    for (size_t i = 0; i < self->capacity; i++) {
        cvr_wr_destroy (&self->events [i].body);
        free (self->events [i].names);
    }
    free (self->events);
    free (self);
    *self_p = NULL;
}

void
cvr_effects_clear (cvr_effects_t *self)
{
    self->size = 0;
}

cvr_wr_t *
cvr_effects_add (cvr_effects_t *self, const char *root, const char *leaf,
                 const char *type, int64_t at)
{
    if (self->size == self->capacity) {
        size_t capacity = self->capacity ? 2 * self->capacity : 8;
        self->events = (s_event_t *) realloc (self->events, capacity * sizeof (s_event_t));
        assert (self->events);
        for (size_t i = self->capacity; i < capacity; i++)
            self->events [i] = (s_event_t) { .body = cvr_wr_new () };
        self->capacity = capacity;
    }
    s_event_t *event = &self->events [self->size++];
    size_t root_len = strlen (root), leaf_len = strlen (leaf);
    size_t need = 2 * root_len + leaf_len + 3;
    if (need > event->names_size) {
        event->names_size = need < 256 ? 256 : need;
        free (event->names);
        event->names = (char *) malloc (event->names_size);
        assert (event->names);
    }
    char *names = event->names;
    memcpy (names, root, root_len);
    names [root_len] = '/';
    memcpy (names + root_len + 1, leaf, leaf_len + 1);
    names += root_len + leaf_len + 2;
    memcpy (names, root, root_len + 1);
    event->root = names;
    event->service_size = 0;
    cvr_wr_reset (event->body);
    cvr_wr_map (event->body);
    cvr_wr_kstr (event->body, "type", type);
    cvr_wr_kint (event->body, "at", at);
    return event->body;
}

size_t
cvr_effects_size (cvr_effects_t *self)
{
    return self->size;
}

void
cvr_effects_put_service (cvr_effects_t *self, const cvr_service_t *service)
{
    assert (self->size > 0);
    s_event_t *event = &self->events [self->size - 1];
    cvr_wr_str (event->body, "service");
    event->service_at = cvr_wr_size (event->body);
    cvr_proto_write_service (event->body, service);
    event->service_size = cvr_wr_size (event->body) - event->service_at;
}

const uint8_t *
cvr_effects_service (cvr_effects_t *self, size_t *size)
{
    for (size_t i = self->size; i-- > 0; )
        if (self->events [i].service_size) {
            *size = self->events [i].service_size;
            return cvr_wr_data (self->events [i].body) + self->events [i].service_at;
        }
    return NULL;
}

const char *
cvr_effects_topic (cvr_effects_t *self, size_t index)
{
    return index < self->size ? self->events [index].names : NULL;
}

const char *
cvr_effects_root (cvr_effects_t *self, size_t index)
{
    return index < self->size ? self->events [index].root : NULL;
}

cvr_wr_t *
cvr_effects_body (cvr_effects_t *self, size_t index)
{
    return index < self->size ? self->events [index].body : NULL;
}
