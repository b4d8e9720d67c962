/*  cvr_map.c: open-addressing string map; see cvr_map.h. */
#include "cvr_map.h"
#include <sys/mman.h>

#define S_INITIAL   8           //  slots at first (a power of two)
#define S_HUGE      (2u << 20)  //  a huge page: slot arrays this big use them

typedef struct {
    uint64_t hash;              //  0: the slot is empty
    const char *key;            //  borrowed from the value
    void *value;
} s_slot_t;

struct _cvr_map_t {
    s_slot_t *slots;            //  capacity slots, owned
    size_t capacity;            //  a power of two
    size_t size;                //  entries in use
};

//  FNV-1a, with 0 reserved for "empty".
static uint64_t
s_hash_n (const char *key, size_t len)
{
    uint64_t hash = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *) key; len--; p++)
        hash = (hash ^ *p) * 1099511628211ULL;
    hash ^= hash >> 32;
    return hash ? hash : 1;
}

static uint64_t
s_hash (const char *key)
{
    return s_hash_n (key, strlen (key));
}

//  A zeroed slot array. One of 2 MB or more is aligned to 2 MB and asks
//  for transparent huge pages: growing a big map then faults once per
//  2 MB instead of once per 4 KB, and a lookup in a map of a million
//  services does not also miss the TLB.
static s_slot_t *
s_slots_new (size_t capacity)
{
    size_t bytes = capacity * sizeof (s_slot_t);
    if (bytes < S_HUGE)
        return (s_slot_t *) zmalloc (bytes);
    void *slots = NULL;
    if (posix_memalign (&slots, S_HUGE, bytes))
        return (s_slot_t *) zmalloc (bytes);
#ifdef MADV_HUGEPAGE
    madvise (slots, bytes, MADV_HUGEPAGE);      //  advice: failing is harmless
#endif
    memset (slots, 0, bytes);
    return (s_slot_t *) slots;
}

cvr_map_t *
cvr_map_new (void)
{
    cvr_map_t *self = (cvr_map_t *) zmalloc (sizeof (cvr_map_t));
    self->capacity = S_INITIAL;
    self->slots = s_slots_new (self->capacity);
    return self;
}

void
cvr_map_destroy (cvr_map_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->slots);
    free (*self_p);
    *self_p = NULL;
}

//  The slot holding key, or the empty slot where it would go.
static s_slot_t *
s_find (cvr_map_t *self, const char *key, uint64_t hash)
{
    size_t mask = self->capacity - 1;
    for (size_t i = (size_t) hash & mask; ; i = (i + 1) & mask) {
        s_slot_t *slot = &self->slots [i];
        if (!slot->hash || (slot->hash == hash && streq (slot->key, key)))
            return slot;
    }
}

static void
s_grow (cvr_map_t *self)
{
    s_slot_t *old = self->slots;
    size_t old_capacity = self->capacity;
    self->capacity *= 2;
    self->slots = s_slots_new (self->capacity);
    for (size_t i = 0; i < old_capacity; i++)
        if (old [i].hash)
            *s_find (self, old [i].key, old [i].hash) = old [i];
    free (old);
}

uint64_t
cvr_map_hash (const char *key)
{
    return s_hash (key);
}

void *
cvr_map_get_hashed (cvr_map_t *self, const char *key, uint64_t hash)
{
    return s_find (self, key, hash)->value;
}

void *
cvr_map_get (cvr_map_t *self, const char *key)
{
    return cvr_map_get_hashed (self, key, s_hash (key));
}

void *
cvr_map_put (cvr_map_t *self, const char *key, void *value)
{
    return cvr_map_put_hashed (self, key, s_hash (key), value);
}

void *
cvr_map_put_hashed (cvr_map_t *self, const char *key, uint64_t hash, void *value)
{
    assert (key && value && hash);
    s_slot_t *slot = s_find (self, key, hash);
    if (slot->hash) {
        void *old = slot->value;
        slot->key = key;
        slot->value = value;
        return old;
    }
    if ((self->size + 1) * 10 > self->capacity * 7) {
        s_grow (self);
        slot = s_find (self, key, hash);
    }
    *slot = (s_slot_t) { hash, key, value };
    self->size++;
    return NULL;
}

void *
cvr_map_remove (cvr_map_t *self, const char *key)
{
    s_slot_t *slot = s_find (self, key, s_hash (key));
    if (!slot->hash)
        return NULL;
    void *value = slot->value;
    //  Backward shift: pull later entries of the probe run into the hole
    //  unless that would move one before its home slot.
    size_t mask = self->capacity - 1;
    size_t hole = (size_t) (slot - self->slots);
    for (size_t i = (hole + 1) & mask; self->slots [i].hash; i = (i + 1) & mask) {
        size_t home = (size_t) self->slots [i].hash & mask;
        //  Does home lie cyclically in (hole, i]? Then it stays.
        bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (!stays) {
            self->slots [hole] = self->slots [i];
            hole = i;
        }
    }
    self->slots [hole] = (s_slot_t) { 0 };
    self->size--;
    return value;
}

size_t
cvr_map_size (cvr_map_t *self)
{
    return self->size;
}

void *
cvr_map_next (cvr_map_t *self, size_t *cursor)
{
    while (*cursor < self->capacity) {
        s_slot_t *slot = &self->slots [(*cursor)++];
        if (slot->hash)
            return slot->value;
    }
    return NULL;
}

void
cvr_map_prefetch_slot (cvr_map_t *self, const char *key, size_t len)
{
    __builtin_prefetch (&self->slots [(size_t) s_hash_n (key, len) & (self->capacity - 1)]);
}

bool
cvr_map_prefetch_value (cvr_map_t *self, const char *key, size_t len)
{
    uint64_t hash = s_hash_n (key, len);
    size_t mask = self->capacity - 1;
    for (size_t i = (size_t) hash & mask; self->slots [i].hash; i = (i + 1) & mask)
        if (self->slots [i].hash == hash) {
            //  The value's first two lines (a service record's fields)
            //  and the key, which is compared first.
            __builtin_prefetch (self->slots [i].value);
            __builtin_prefetch ((const char *) self->slots [i].value + 64);
            __builtin_prefetch (self->slots [i].key);
            return true;
        }
    return false;
}
