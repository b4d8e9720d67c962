/*  cvr_history.c: event numbering and the bounded history ring. */
#include "cvr_history.h"

//  An entry's topic and body share one block, kept when the slot is
//  reused for a later event that fits: a full ring allocates nothing.
typedef struct {
    char *topic;                //  owned block: the topic, then the body
    uint8_t *body;              //  in the block: the final msgpack body
    size_t size;                //  of the body
    size_t capacity;            //  of the block
} s_entry_t;

struct _cvr_history_t {
    s_entry_t *ring;            //  capacity entries; seq s lives at s % capacity
    size_t capacity;            //  events kept at most
    size_t count;               //  events kept now
    uint64_t seq;               //  latest seq given out
    zhashx_t *roots;            //  root -> latest seq of that root (uint64_t *)
};

static void
s_seq_free (void **item)
{
    free (*item);
    *item = NULL;
}

//  Sets root's latest seq and returns the one before (0 for a new root):
//  one lookup, the value being the root's own counter.
static uint64_t
s_root_swap (cvr_history_t *self, const char *root, uint64_t seq)
{
    uint64_t *latest = (uint64_t *) zhashx_lookup (self->roots, root);
    if (!latest) {
        latest = (uint64_t *) zmalloc (sizeof (uint64_t));
        zhashx_insert (self->roots, root, latest);
    }
    uint64_t prev = *latest;
    *latest = seq;
    return prev;
}

cvr_history_t *
cvr_history_new (size_t capacity)
{
    cvr_history_t *self = (cvr_history_t *) zmalloc (sizeof (cvr_history_t));
    self->capacity = capacity ? capacity : 1;
    self->ring = (s_entry_t *) zmalloc (self->capacity * sizeof (s_entry_t));
    self->roots = zhashx_new ();
    zhashx_set_destructor (self->roots, s_seq_free);
    return self;
}

static void
s_entry_clear (s_entry_t *entry)
{
    free (entry->topic);
    memset (entry, 0, sizeof (*entry));
}

void
cvr_history_destroy (cvr_history_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_history_t *self = *self_p;
    for (size_t i = 0; i < self->capacity; i++)
        s_entry_clear (&self->ring [i]);
    free (self->ring);
    zhashx_destroy (&self->roots);
    free (self);
    *self_p = NULL;
}

//  Keeps the final bytes of event seq in the ring.
static void
s_keep (cvr_history_t *self, uint64_t seq, const char *topic, const void *body,
        size_t size)
{
    s_entry_t *entry = &self->ring [seq % self->capacity];
    size_t topic_size = strlen (topic) + 1;
    if (entry->capacity < topic_size + size) {
        free (entry->topic);
        entry->capacity = topic_size + size;
        entry->topic = (char *) malloc (entry->capacity);
        assert (entry->topic);
    }
    memcpy (entry->topic, topic, topic_size);
    entry->body = (uint8_t *) entry->topic + topic_size;
    entry->size = size;
    memcpy (entry->body, body, size);
    if (self->count < self->capacity)
        self->count++;
}

uint64_t
cvr_history_append (cvr_history_t *self, const char *topic, const char *root,
                    cvr_wr_t *body)
{
    uint64_t seq = ++self->seq;
    uint64_t prev = s_root_swap (self, root, seq);
    cvr_wr_kuint (body, "seq", seq);
    cvr_wr_kuint (body, "prev", prev);
    cvr_wr_close (body);

    s_keep (self, seq, topic, cvr_wr_data (body), cvr_wr_size (body));
    return seq;
}

int
cvr_history_put (cvr_history_t *self, const char *topic, const char *root,
                 uint64_t seq, const void *body, size_t size)
{
    if (seq <= self->seq)
        return 0;
    //  An empty history (a node starting from a snapshot) begins where the
    //  events it is given begin.
    if (self->seq == 0 && self->count == 0)
        self->seq = seq - 1;
    if (seq != self->seq + 1)
        return -1;
    self->seq = seq;
    s_root_swap (self, root, seq);
    s_keep (self, seq, topic, body, size);
    return 0;
}

uint64_t
cvr_history_seq (cvr_history_t *self)
{
    return self->seq;
}

uint64_t
cvr_history_oldest (cvr_history_t *self)
{
    return self->seq - self->count + 1;
}

cvr_err_t
cvr_history_since (cvr_history_t *self, uint64_t since, const char *prefix,
                   size_t limit, cvr_wr_t *reply)
{
    uint64_t oldest = cvr_history_oldest (self);
    //  Every event after `since` must still be here for the answer to be
    //  complete; with nothing after it, there is nothing to miss.
    if (since < self->seq && since + 1 < oldest)
        return CVR_COMPACTED;
    //  A since at or past the latest has nothing to return (and must not
    //  wrap around when it is the largest integer).
    uint64_t first = since < self->seq ? since + 1 : self->seq + 1;
    size_t prefix_len = prefix ? strlen (prefix) : 0;
    size_t found = 0;
    bool more = false;
    cvr_wr_str (reply, "events");
    cvr_wr_array (reply);
    for (uint64_t seq = first; seq <= self->seq; seq++) {
        s_entry_t *entry = &self->ring [seq % self->capacity];
        if (prefix_len && strncmp (entry->topic, prefix, prefix_len) != 0)
            continue;
        if (found == limit) {
            more = true;
            break;
        }
        cvr_wr_array (reply);
        cvr_wr_str (reply, entry->topic);
        cvr_wr_raw (reply, entry->body, entry->size);
        cvr_wr_close (reply);
        found++;
    }
    cvr_wr_close (reply);
    cvr_wr_kbool (reply, "more", more);
    cvr_wr_kuint (reply, "seq", self->seq);
    return CVR_OK;
}

static int
s_cmp_str (const void *a, const void *b)
{
    return strcmp (*(const char * const *) a, *(const char * const *) b);
}

void
cvr_history_write_numbering (cvr_history_t *self, cvr_wr_t *w)
{
    cvr_wr_map (w);
    cvr_wr_kuint (w, "seq", self->seq);
    cvr_wr_str (w, "roots");
    cvr_wr_map (w);
    zlistx_t *keys = zhashx_keys (self->roots);
    size_t count = zlistx_size (keys), i = 0;
    const char **sorted = (const char **) malloc ((count ? count : 1) * sizeof (char *));
    assert (sorted);
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys))
        sorted [i++] = key;
    qsort (sorted, count, sizeof (char *), s_cmp_str);
    for (i = 0; i < count; i++)
        cvr_wr_kuint (w, sorted [i], *(uint64_t *) zhashx_lookup (self->roots, sorted [i]));
    free (sorted);
    zlistx_destroy (&keys);
    cvr_wr_close (w);
    cvr_wr_close (w);
}

int
cvr_history_read_numbering (cvr_history_t *self, const msgpack_object *o)
{
    const msgpack_object *roots = cvr_obj_get (o, "roots");
    uint64_t seq;
    if (!cvr_obj_is_str_map (o) || !cvr_obj_get (o, "seq")
    ||  cvr_obj_uint (cvr_obj_get (o, "seq"), &seq)
    ||  !roots || !cvr_obj_is_str_map (roots))
        return -1;
    for (uint32_t i = 0; i < roots->via.map.size; i++) {
        uint64_t root_seq;
        if (cvr_obj_uint (&roots->via.map.ptr [i].val, &root_seq) || root_seq == 0
        ||  root_seq > seq
        ||  memchr (roots->via.map.ptr [i].key.via.str.ptr, 0,
                    roots->via.map.ptr [i].key.via.str.size))
            return -1;
    }
    for (size_t i = 0; i < self->capacity; i++)
        s_entry_clear (&self->ring [i]);
    self->count = 0;
    self->seq = seq;
    zhashx_purge (self->roots);
    for (uint32_t i = 0; i < roots->via.map.size; i++) {
        char *root = cvr_obj_strdup (&roots->via.map.ptr [i].key);
        uint64_t root_seq;
        cvr_obj_uint (&roots->via.map.ptr [i].val, &root_seq);
        s_root_swap (self, root, root_seq);
        free (root);
    }
    return 0;
}
