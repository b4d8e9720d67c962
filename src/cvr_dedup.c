/*  cvr_dedup.c: bounded table of recent write replies; see cvr_dedup.h. */
#include "cvr_dedup.h"

typedef struct {
    char *key;                  //  owned
    uint8_t *reply;             //  owned
    size_t size;
} s_entry_t;

struct _cvr_dedup_t {
    zhashx_t *entries;          //  key -> s_entry_t, owned
    zlistx_t *order;            //  keys, oldest first (borrowed from entries)
    size_t capacity;
};

static void
s_entry_destroy (s_entry_t **self_p)
{
    free ((*self_p)->key);
    free ((*self_p)->reply);
    free (*self_p);
    *self_p = NULL;
}

cvr_dedup_t *
cvr_dedup_new (size_t capacity)
{
    cvr_dedup_t *self = (cvr_dedup_t *) zmalloc (sizeof (cvr_dedup_t));
    self->entries = zhashx_new ();
    zhashx_set_destructor (self->entries, (zhashx_destructor_fn *) s_entry_destroy);
    self->order = zlistx_new ();
    self->capacity = capacity ? capacity : 1;
    return self;
}

void
cvr_dedup_destroy (cvr_dedup_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zlistx_destroy (&(*self_p)->order);
    zhashx_destroy (&(*self_p)->entries);
    free (*self_p);
    *self_p = NULL;
}

char *
cvr_dedup_key (const char *client_id, const msgpack_object *rid)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_obj (w, rid);
    size_t size = cvr_wr_size (w);
    const uint8_t *bytes = cvr_wr_data (w);
    size_t prefix = strlen (client_id);
    char *key = (char *) malloc (prefix + 1 + 2 * size + 1);
    assert (key);
    memcpy (key, client_id, prefix);
    key [prefix] = '/';
    for (size_t i = 0; i < size; i++)
        snprintf (key + prefix + 1 + 2 * i, 3, "%02x", bytes [i]);
    key [prefix + 1 + 2 * size] = 0;
    cvr_wr_destroy (&w);
    return key;
}

void
cvr_dedup_put (cvr_dedup_t *self, const char *key, const void *reply, size_t size)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
    if (!entry) {
        if (zhashx_size (self->entries) >= self->capacity) {
            const char *oldest = (const char *) zlistx_detach (self->order, NULL);
            zhashx_delete (self->entries, oldest);
        }
        entry = (s_entry_t *) zmalloc (sizeof (s_entry_t));
        entry->key = strdup (key);
        zhashx_insert (self->entries, key, entry);
        zlistx_add_end (self->order, entry->key);
    }
    free (entry->reply);
    entry->reply = (uint8_t *) malloc (size ? size : 1);
    assert (entry->reply);
    memcpy (entry->reply, reply, size);
    entry->size = size;
}

const uint8_t *
cvr_dedup_get (cvr_dedup_t *self, const char *key, size_t *size)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
    if (!entry)
        return NULL;
    *size = entry->size;
    return entry->reply;
}

size_t
cvr_dedup_size (cvr_dedup_t *self)
{
    return zhashx_size (self->entries);
}

void
cvr_dedup_write (cvr_dedup_t *self, cvr_wr_t *w)
{
    cvr_wr_array (w);
    for (const char *key = (const char *) zlistx_first (self->order); key;
         key = (const char *) zlistx_next (self->order)) {
        s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
        cvr_dedup_write_entry (w, key, entry->reply, entry->size);
    }
    cvr_wr_close (w);
}

void
cvr_dedup_write_entry (cvr_wr_t *w, const char *key, const void *reply, size_t size)
{
    cvr_wr_array (w);
    cvr_wr_str (w, key);
    //  The reply as one bin32 value.
    uint8_t *bin = (uint8_t *) malloc (5 + size);
    assert (bin);
    bin [0] = 0xc6;
    for (int i = 0; i < 4; i++)
        bin [1 + i] = (uint8_t) (size >> (24 - 8 * i));
    memcpy (bin + 5, reply, size);
    cvr_wr_raw (w, bin, 5 + size);
    free (bin);
    cvr_wr_close (w);
}

static bool
s_well_formed (const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return false;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *pair = &o->via.array.ptr [i];
        if (pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size != 2
        ||  pair->via.array.ptr [0].type != MSGPACK_OBJECT_STR
        ||  pair->via.array.ptr [1].type != MSGPACK_OBJECT_BIN)
            return false;
    }
    return true;
}

int
cvr_dedup_merge (cvr_dedup_t *self, const msgpack_object *o)
{
    if (!s_well_formed (o))
        return -1;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *pair = &o->via.array.ptr [i];
        char *key = cvr_obj_strdup (&pair->via.array.ptr [0]);
        if (key)
            cvr_dedup_put (self, key, pair->via.array.ptr [1].via.bin.ptr,
                           pair->via.array.ptr [1].via.bin.size);
        free (key);
    }
    return 0;
}

int
cvr_dedup_read (cvr_dedup_t *self, const msgpack_object *o)
{
    if (!s_well_formed (o))
        return -1;
    zlistx_purge (self->order);
    zhashx_purge (self->entries);
    return cvr_dedup_merge (self, o);
}
