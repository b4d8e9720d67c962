/*  cvr_links.c: key -> array of items, each with a link back. */
#include "cvr_links.h"
#include "cvr_map.h"

//  One key's set, with the key in the same block (the map borrows it).
typedef struct {
    void **items;               //  count of them, borrowed
    cvr_link_t **links;         //  the link of each, borrowed
    size_t count;
    size_t capacity;
    char key [];
} s_set_t;

struct _cvr_links_t {
    cvr_map_t *sets;            //  key -> s_set_t, owned
};

cvr_links_t *
cvr_links_new (void)
{
    cvr_links_t *self = (cvr_links_t *) zmalloc (sizeof (cvr_links_t));
    self->sets = cvr_map_new ();
    return self;
}

static void
s_set_destroy (s_set_t **set_p)
{
    free ((*set_p)->items);
    free ((*set_p)->links);
    free (*set_p);
    *set_p = NULL;
}

void
cvr_links_destroy (cvr_links_t **self_p)
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

//  Grows or shrinks a set's two arrays. Growing out of memory fails hard,
//  as czmq's zmalloc does (an assert would vanish under NDEBUG and leave a
//  NULL write); a shrink that gets no memory keeps the bigger arrays.
static void
s_resize (s_set_t *set, size_t capacity)
{
    void **items = (void **) realloc (set->items, capacity * sizeof (void *));
    if (items)
        set->items = items;
    cvr_link_t **links = items
        ? (cvr_link_t **) realloc (set->links, capacity * sizeof (cvr_link_t *)) : NULL;
    if (links)
        set->links = links;
    if (capacity > set->capacity && !links) {
        fprintf (stderr, "cvr_links: out of memory\n");
        abort ();
    }
    if (items)                      //  a failed shrink of links leaves it bigger
        set->capacity = capacity;
}

void
cvr_links_add (cvr_links_t *self, const char *key, cvr_link_t *link, void *item)
{
    assert (!link->set);
    s_set_t *set = (s_set_t *) cvr_map_get (self->sets, key);
    if (!set) {
        size_t size = strlen (key) + 1;
        set = (s_set_t *) zmalloc (sizeof (s_set_t) + size);
        memcpy (set->key, key, size);
        cvr_map_put (self->sets, set->key, set);
    }
    if (set->count == set->capacity)
        s_resize (set, set->capacity ? 2 * set->capacity : 4);
    set->items [set->count] = item;
    set->links [set->count] = link;
    *link = (cvr_link_t) { .set = set, .pos = set->count++ };
}

void
cvr_links_remove (cvr_links_t *self, cvr_link_t *link)
{
    s_set_t *set = (s_set_t *) link->set;
    if (!set)
        return;
    size_t pos = link->pos, last = --set->count;
    if (pos != last) {
        set->items [pos] = set->items [last];
        set->links [pos] = set->links [last];
        set->links [pos]->pos = pos;
    }
    *link = (cvr_link_t) { 0 };
    if (set->count == 0) {
        cvr_map_remove (self->sets, set->key);
        s_set_destroy (&set);
    }
    else
    if (set->capacity >= 64 && set->count < set->capacity / 4)
        s_resize (set, set->capacity / 2);      //  gives back what a mass removal freed
}

void *const *
cvr_links_items (cvr_links_t *self, const char *key, size_t *count)
{
    s_set_t *set = (s_set_t *) cvr_map_get (self->sets, key);
    *count = set ? set->count : 0;
    return set ? set->items : NULL;
}
