/*  cvr_links.h: a secondary index of arrays with back-links (internal).

    key -> the items under it, kept in an array per key. Each item carries
    one link per key it sits under, which remembers the set and the item's
    place in the array. Adding appends (nothing hashed, no table to grow);
    removing moves the array's last item into the hole and updates that
    item's link; a query walks a plain array of item pointers, so the
    records' cache misses overlap. (Hash sets keyed by item id, used before,
    cost a cache miss per insert into a big set, plus their doublings.) The
    registry indexes services by name, group and label this way, the
    groups their members by linked service and themselves by topic.

    The index owns its sets, never the items or their links; an item must
    be removed from every set before its links are freed.
*/
#ifndef CVR_LINKS_H_INCLUDED
#define CVR_LINKS_H_INCLUDED

#include <czmq.h>

typedef struct _cvr_links_t cvr_links_t;

//  Held by the item, zeroed before its first add. Read-only outside.
typedef struct {
    void *set;                  //  the set it is in, NULL when in none
    size_t pos;                 //  its place in the set's array
} cvr_link_t;

cvr_links_t *
    cvr_links_new (void);
void
    cvr_links_destroy (cvr_links_t **self_p);
//  Puts item under key through link (which must be in no set). The key is
//  copied; link and item are borrowed.
void
    cvr_links_add (cvr_links_t *self, const char *key, cvr_link_t *link, void *item);
//  Takes link's item out of its set (no-op when in none); an emptied set
//  is dropped.
void
    cvr_links_remove (cvr_links_t *self, cvr_link_t *link);
//  The items under key, in no particular order, and *count of them; NULL
//  (and 0) when none. Valid until the next add or remove.
void *const *
    cvr_links_items (cvr_links_t *self, const char *key, size_t *count);

#endif
