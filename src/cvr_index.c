/*  cvr_index.c: key -> set of borrowed items. */
#include "cvr_index.h"

struct _cvr_index_t {
    zhashx_t *sets;     //  key -> zhashx (id -> borrowed item), owned sets
};

static void
s_set_destroy (void **item)
{
    zhashx_destroy ((zhashx_t **) item);
}

cvr_index_t *
cvr_index_new (void)
{
    cvr_index_t *self = (cvr_index_t *) zmalloc (sizeof (cvr_index_t));
    self->sets = zhashx_new ();
    zhashx_set_destructor (self->sets, s_set_destroy);
    return self;
}

void
cvr_index_destroy (cvr_index_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy (&(*self_p)->sets);
    free (*self_p);
    *self_p = NULL;
}

void
cvr_index_add (cvr_index_t *self, const char *key, const char *id, void *item)
{
    zhashx_t *set = (zhashx_t *) zhashx_lookup (self->sets, key);
    if (!set) {
        set = zhashx_new ();
        zhashx_insert (self->sets, key, set);
    }
    zhashx_update (set, id, item);
}

void
cvr_index_remove (cvr_index_t *self, const char *key, const char *id)
{
    zhashx_t *set = (zhashx_t *) zhashx_lookup (self->sets, key);
    if (!set)
        return;
    zhashx_delete (set, id);
    if (zhashx_size (set) == 0)
        zhashx_delete (self->sets, key);
}

zhashx_t *
cvr_index_get (cvr_index_t *self, const char *key)
{
    return (zhashx_t *) zhashx_lookup (self->sets, key);
}

size_t
cvr_index_count (cvr_index_t *self, const char *key)
{
    zhashx_t *set = cvr_index_get (self, key);
    return set ? zhashx_size (set) : 0;
}
