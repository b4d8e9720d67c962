/*  cvr_index.c: key -> set of borrowed items. */
#include "cvr_index.h"

//  One key's set, with the key in the same block (the outer map borrows it).
typedef struct {
    cvr_map_t *items;           //  id -> item, both borrowed
    char key [];
} s_set_t;

struct _cvr_index_t {
    cvr_map_t *sets;            //  key -> s_set_t, owned
};

cvr_index_t *
cvr_index_new (void)
{
    cvr_index_t *self = (cvr_index_t *) zmalloc (sizeof (cvr_index_t));
    self->sets = cvr_map_new ();
    return self;
}

static void
s_set_destroy (s_set_t **set_p)
{
    cvr_map_destroy (&(*set_p)->items);
    free (*set_p);
    *set_p = NULL;
}

void
cvr_index_destroy (cvr_index_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    size_t cursor = 0;
    s_set_t *set;
    while ((set = (s_set_t *) cvr_map_next ((*self_p)->sets, &cursor)))
        s_set_destroy (&set);
    cvr_map_destroy (&(*self_p)->sets);
    free (*self_p);
    *self_p = NULL;
}

void
cvr_index_add (cvr_index_t *self, const char *key, const char *id, void *item)
{
    s_set_t *set = (s_set_t *) cvr_map_get (self->sets, key);
    if (!set) {
        size_t size = strlen (key) + 1;
        set = (s_set_t *) malloc (sizeof (s_set_t) + size);
        assert (set);
        memcpy (set->key, key, size);
        set->items = cvr_map_new ();
        cvr_map_put (self->sets, set->key, set);
    }
    cvr_map_put (set->items, id, item);
}

void
cvr_index_remove (cvr_index_t *self, const char *key, const char *id)
{
    s_set_t *set = (s_set_t *) cvr_map_get (self->sets, key);
    if (!set)
        return;
    cvr_map_remove (set->items, id);
    if (cvr_map_size (set->items) == 0) {
        cvr_map_remove (self->sets, key);
        s_set_destroy (&set);
    }
}

cvr_map_t *
cvr_index_get (cvr_index_t *self, const char *key)
{
    s_set_t *set = (s_set_t *) cvr_map_get (self->sets, key);
    return set ? set->items : NULL;
}

size_t
cvr_index_count (cvr_index_t *self, const char *key)
{
    cvr_map_t *set = cvr_index_get (self, key);
    return set ? cvr_map_size (set) : 0;
}
