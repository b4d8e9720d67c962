/*  cvr_index.h: a secondary index, key -> set of borrowed items (internal).

    Each item is identified by its own id string, so one item can sit under
    many keys and leave each in O(1). The index never owns the items; the
    container that does must remove them from every index before freeing.
    Sets are cvr_maps keyed by the id itself (borrowed, like the item): an
    item joining a set allocates nothing but the set's own growth.
*/
#ifndef CVR_INDEX_H_INCLUDED
#define CVR_INDEX_H_INCLUDED

#include <czmq.h>
#include "cvr_map.h"

typedef struct _cvr_index_t cvr_index_t;

cvr_index_t *
    cvr_index_new (void);
void
    cvr_index_destroy (cvr_index_t **self_p);
//  Puts item, identified by id, under key. The key is copied; id and item
//  are borrowed and must stay valid, unchanged, while the item is indexed.
void
    cvr_index_add (cvr_index_t *self, const char *key, const char *id, void *item);
//  Takes the item with id out of key's set; empty sets are dropped.
void
    cvr_index_remove (cvr_index_t *self, const char *key, const char *id);
//  The set under key: a map id -> item (both borrowed), or NULL when empty.
cvr_map_t *
    cvr_index_get (cvr_index_t *self, const char *key);
//  How many items sit under key.
size_t
    cvr_index_count (cvr_index_t *self, const char *key);

#endif
