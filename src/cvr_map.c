/*  cvr_map.c: open-addressing string map; see cvr_map.h. */
#include "cvr_map.h"
#include <sys/mman.h>

#define S_INITIAL   8           //  slots at first (a power of two)
#define S_HUGE      (2u << 20)  //  a huge page: slot arrays this big use them
#define S_STEP      64          //  old slots visited per insertion while
                                //  growing (see s_drain)
#define S_TOUCH     640         //  bytes of the next table written per
                                //  insertion (see s_prepare)

typedef struct {
    uint64_t hash;              //  0: the slot is empty
    const char *key;            //  borrowed from the value
    void *value;
} s_slot_t;

//  One slot array: a valid linear-probing table on its own.
typedef struct {
    s_slot_t *slots;            //  capacity slots, owned
    size_t capacity;            //  a power of two
    size_t size;                //  entries in use
} s_table_t;

//  While the map grows, its entries are in two tables: the new one, which
//  takes every insertion, and the old one, which only loses entries, to
//  the new one a few at a time (s_drain) or to removal. A key is in one
//  of the two. Every slot of the old one below moved is empty.
struct _cvr_map_t {
    s_table_t table;            //  the current table
    s_table_t old;              //  the one being drained; no slots if none
    size_t moved;               //  old slots drained so far
    s_slot_t *next;             //  the next table, being faulted in
    size_t touched;             //  bytes of it written so far
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

//  A slot array, not zeroed. One of 2 MB or more is 2 MB-aligned and asks
//  for transparent huge pages, so that a lookup in a map of a million
//  services does not also miss the TLB.
static s_slot_t *
s_slots_alloc (size_t capacity)
{
    size_t bytes = capacity * sizeof (s_slot_t);
    void *slots = NULL;
    if (bytes < S_HUGE)
        slots = malloc (bytes);
    else
    if (posix_memalign (&slots, S_HUGE, bytes))
        slots = NULL;
    if (!slots) {
        zsys_error ("conveyord: out of memory for a map of %zu slots", capacity);
        abort ();
    }
#ifdef MADV_HUGEPAGE
    if (bytes >= S_HUGE)
        madvise (slots, bytes, MADV_HUGEPAGE);      //  advice: failing is harmless
#endif
    return (s_slot_t *) slots;
}

//  A zeroed slot array.
static s_slot_t *
s_slots_new (size_t capacity)
{
    s_slot_t *slots = s_slots_alloc (capacity);
    memset (slots, 0, capacity * sizeof (s_slot_t));
    return slots;
}

static void
s_slots_destroy (s_table_t *table)
{
    free (table->slots);
    *table = (s_table_t) { 0 };
}

cvr_map_t *
cvr_map_new (void)
{
    cvr_map_t *self = (cvr_map_t *) zmalloc (sizeof (cvr_map_t));
    self->table.capacity = S_INITIAL;
    self->table.slots = s_slots_new (S_INITIAL);
    return self;
}

void
cvr_map_destroy (cvr_map_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_map_t *self = *self_p;
    free (self->next);
    s_slots_destroy (&self->table);
    s_slots_destroy (&self->old);
    free (*self_p);
    *self_p = NULL;
}

//  The slot where a key with hash would be if nothing were in its way.
static inline s_slot_t *
s_home (s_table_t *table, uint64_t hash)
{
    return &table->slots [(size_t) hash & (table->capacity - 1)];
}

//  The slot of table holding key, or the empty slot where it would go.
static s_slot_t *
s_find (s_table_t *table, const char *key, uint64_t hash)
{
    size_t mask = table->capacity - 1;
    for (size_t i = (size_t) hash & mask; ; i = (i + 1) & mask) {
        s_slot_t *slot = &table->slots [i];
        if (!slot->hash || (slot->hash == hash && streq (slot->key, key)))
            return slot;
    }
}

//  The slot holding key, in either table, or NULL; *table_p, if given,
//  is set to the table that holds it.
static s_slot_t *
s_lookup (cvr_map_t *self, const char *key, uint64_t hash, s_table_t **table_p)
{
    s_table_t *table = &self->table;
    s_slot_t *slot = s_find (table, key, hash);
    if (!slot->hash && self->old.slots)
        slot = s_find (table = &self->old, key, hash);
    if (table_p)
        *table_p = table;
    return slot->hash ? slot : NULL;
}

//  Empties a full slot. Backward shift: pulls later entries of the probe
//  run into the hole unless that would move one before its home slot, so
//  that every entry stays reachable from its home.
static void
s_erase (s_table_t *table, s_slot_t *slot)
{
    size_t mask = table->capacity - 1;
    size_t hole = (size_t) (slot - table->slots);
    for (size_t i = (hole + 1) & mask; table->slots [i].hash; i = (i + 1) & mask) {
        size_t home = (size_t) table->slots [i].hash & mask;
        //  Does home lie cyclically in (hole, i]? Then it stays.
        bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (!stays) {
            table->slots [hole] = table->slots [i];
            hole = i;
        }
    }
    table->slots [hole] = (s_slot_t) { 0 };
    table->size--;
}

//  Moves entries from the old table to the current one, visiting about
//  steps old slots in order, and frees the old table once it is empty.
//  Every old slot below moved is empty, so a full slot at moved starts a
//  probe run (or, at slot 0, ends one that wraps around), and the run is
//  moved whole: emptying a run from its start, or the end of one, leaves
//  every other entry reachable from its home, with no entry to shift.
//  Removals from the old table shift entries only within runs, never
//  below moved. With S_STEP visits per insertion (one per old slot), a
//  table that grew at 70% load is drained by the time the current one is
//  35% + 1/128 full (tiny tables: 7 of 16 slots): growth never starts
//  while one is under way.
static void
s_drain (cvr_map_t *self, size_t steps)
{
    s_table_t *old = &self->old;
    while (old->size && steps) {
        assert (self->moved < old->capacity);
        if (!old->slots [self->moved].hash) {
            self->moved++;
            steps--;
            continue;
        }
        while (self->moved < old->capacity && old->slots [self->moved].hash) {
            s_slot_t *slot = &old->slots [self->moved++];
            *s_find (&self->table, slot->key, slot->hash) = *slot;
            self->table.size++;
            old->size--;
            *slot = (s_slot_t) { 0 };
            if (steps)
                steps--;
        }
    }
    if (!old->size) {
        s_slots_destroy (old);
        self->moved = 0;
    }
}

//  Zeroes up to n more bytes of the next table, of bytes in all.
static void
s_zero_next (cvr_map_t *self, size_t bytes, size_t n)
{
    size_t left = bytes - self->touched;
    if (n > left)
        n = left;
    memset ((uint8_t *) self->next + self->touched, 0, n);
    self->touched += n;
}

//  Readies the table to grow into, for a big map. Zeroing fresh memory
//  costs most of growing: the kernel zeroes a page when it is first
//  written, a 2 MB page at a time, at 400-560 MB/s on this VM, and the
//  map zeroes it again (the memory may be recycled). Done when growing,
//  that held one batch of requests for 50-100 ms with a million services
//  (48 MB). Instead, from 60% load, each insertion zeroes the next
//  S_TOUCH bytes of the next table, at most a page fault per insertion,
//  done by 68%. Not earlier: the next table is memory held, and zeroed,
//  ahead of need, for nothing if the map stops growing.
static void
s_prepare (cvr_map_t *self)
{
    size_t bytes = 2 * self->table.capacity * sizeof (s_slot_t);
    if (bytes < S_HUGE || self->table.size * 10 < self->table.capacity * 6)
        return;
    if (!self->next) {
        self->next = s_slots_alloc (2 * self->table.capacity);
        self->touched = 0;
    }
    s_zero_next (self, bytes, S_TOUCH);
}

//  Starts growing: the current table becomes the old one, to be drained,
//  and the next one the current one, zeroed in full (preparing has done
//  that by 67.5% load, before growth at 70%; what is left is zeroed here
//  all the same).
static void
s_grow (cvr_map_t *self)
{
    self->old = self->table;
    self->moved = 0;
    self->table.capacity = 2 * self->old.capacity;
    self->table.size = 0;
    if (self->next) {
        s_zero_next (self, self->table.capacity * sizeof (s_slot_t), SIZE_MAX);
        self->table.slots = self->next;
        self->next = NULL;
    }
    else
        self->table.slots = s_slots_new (self->table.capacity);
}

uint64_t
cvr_map_hash (const char *key)
{
    return s_hash (key);
}

void *
cvr_map_get_hashed (cvr_map_t *self, const char *key, uint64_t hash)
{
    s_slot_t *slot = s_lookup (self, key, hash, NULL);
    return slot ? slot->value : NULL;
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
    s_slot_t *slot = s_lookup (self, key, hash, NULL);
    if (slot) {
        void *old = slot->value;
        slot->key = key;
        slot->value = value;
        return old;
    }
    if (self->old.slots)
        s_drain (self, S_STEP);
    else
        s_prepare (self);
    s_table_t *table = &self->table;
    if ((table->size + 1) * 10 > table->capacity * 7) {
        s_drain (self, SIZE_MAX);           //  a guard: over by now (s_drain)
        s_grow (self);
    }
    *s_find (table, key, hash) = (s_slot_t) { hash, key, value };
    table->size++;
    return NULL;
}

void *
cvr_map_remove (cvr_map_t *self, const char *key)
{
    s_table_t *table;
    s_slot_t *slot = s_lookup (self, key, s_hash (key), &table);
    if (!slot)
        return NULL;
    void *value = slot->value;
    s_erase (table, slot);
    return value;
}

size_t
cvr_map_size (cvr_map_t *self)
{
    return self->table.size + self->old.size;
}

void *
cvr_map_next (cvr_map_t *self, size_t *cursor)
{
    //  The old table's slots first, then the current one's.
    while (*cursor < self->old.capacity + self->table.capacity) {
        size_t i = (*cursor)++;
        s_slot_t *slot = i < self->old.capacity
                       ? &self->old.slots [i]
                       : &self->table.slots [i - self->old.capacity];
        if (slot->hash)
            return slot->value;
    }
    return NULL;
}

void
cvr_map_prefetch_slot (cvr_map_t *self, const char *key, size_t len)
{
    uint64_t hash = s_hash_n (key, len);
    __builtin_prefetch (s_home (&self->table, hash));
    if (self->old.slots)
        __builtin_prefetch (s_home (&self->old, hash));
}

//  Prefetches the value and key of table's first slot with hash.
static bool
s_prefetch_value (s_table_t *table, uint64_t hash)
{
    size_t mask = table->capacity - 1;
    for (size_t i = (size_t) hash & mask; table->slots [i].hash; i = (i + 1) & mask)
        if (table->slots [i].hash == hash) {
            //  The value's first two lines (a service record's fields)
            //  and the key, which is compared first.
            __builtin_prefetch (table->slots [i].value);
            __builtin_prefetch ((const char *) table->slots [i].value + 64);
            __builtin_prefetch (table->slots [i].key);
            return true;
        }
    return false;
}

bool
cvr_map_prefetch_value (cvr_map_t *self, const char *key, size_t len)
{
    uint64_t hash = s_hash_n (key, len);
    return s_prefetch_value (&self->table, hash)
        || (self->old.slots && s_prefetch_value (&self->old, hash));
}
