/*  cvr_deadlines.c: a keyed binary min-heap of deadlines. */
#include "cvr_deadlines.h"

#include "cvr_map.h"

//  One block per key: the map borrows the key from its timer.
typedef struct {
    size_t pos;                 //  index in the heap array
    char key [];                //  a copy of the key
} s_timer_t;

//  A heap entry holds the deadline itself, so that ordering the heap
//  compares entries of one array instead of following a pointer each.
typedef struct {
    int64_t deadline;           //  when it is due
    s_timer_t *timer;
} s_entry_t;

struct _cvr_deadlines_t {
    s_entry_t *heap;            //  min-heap by deadline, owns the timers
    size_t size;                //  entries in the heap
    size_t capacity;            //  slots allocated
    cvr_map_t *by_key;          //  key -> s_timer_t, borrowed from heap
};

cvr_deadlines_t *
cvr_deadlines_new (void)
{
    cvr_deadlines_t *self = (cvr_deadlines_t *) zmalloc (sizeof (cvr_deadlines_t));
    self->by_key = cvr_map_new ();
    return self;
}

void
cvr_deadlines_destroy (cvr_deadlines_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_deadlines_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        free (self->heap [i].timer);
    cvr_map_destroy (&self->by_key);
    free (self->heap);
    free (self);
    *self_p = NULL;
}

static void
s_place (cvr_deadlines_t *self, s_entry_t entry, size_t pos)
{
    self->heap [pos] = entry;
    entry.timer->pos = pos;
}

static void
s_sift_up (cvr_deadlines_t *self, size_t pos)
{
    s_entry_t entry = self->heap [pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (self->heap [parent].deadline <= entry.deadline)
            break;
        s_place (self, self->heap [parent], pos);
        pos = parent;
    }
    s_place (self, entry, pos);
}

static void
s_sift_down (cvr_deadlines_t *self, size_t pos)
{
    s_entry_t entry = self->heap [pos];
    while (true) {
        size_t child = 2 * pos + 1;
        if (child >= self->size)
            break;
        if (child + 1 < self->size
        &&  self->heap [child + 1].deadline < self->heap [child].deadline)
            child++;
        if (entry.deadline <= self->heap [child].deadline)
            break;
        s_place (self, self->heap [child], pos);
        pos = child;
    }
    s_place (self, entry, pos);
}

void
cvr_deadlines_set (cvr_deadlines_t *self, const char *key, int64_t deadline)
{
    uint64_t hash = cvr_map_hash (key);
    s_timer_t *timer = (s_timer_t *) cvr_map_get_hashed (self->by_key, key, hash);
    if (timer) {
        s_entry_t *entry = &self->heap [timer->pos];
        int64_t old = entry->deadline;
        entry->deadline = deadline;
        if (deadline < old)
            s_sift_up (self, timer->pos);
        else
            s_sift_down (self, timer->pos);
        return;
    }
    if (self->size == self->capacity) {
        self->capacity = self->capacity ? 2 * self->capacity : 64;
        self->heap = (s_entry_t *) realloc (self->heap, self->capacity * sizeof (s_entry_t));
        assert (self->heap);
    }
    size_t key_size = strlen (key) + 1;
    timer = (s_timer_t *) malloc (sizeof (s_timer_t) + key_size);
    assert (timer);
    memcpy (timer->key, key, key_size);
    cvr_map_put_hashed (self->by_key, timer->key, hash, timer);
    s_place (self, (s_entry_t) { deadline, timer }, self->size++);
    s_sift_up (self, timer->pos);
}

void
cvr_deadlines_remove (cvr_deadlines_t *self, const char *key)
{
    s_timer_t *timer = (s_timer_t *) cvr_map_get (self->by_key, key);
    if (!timer)
        return;
    size_t pos = timer->pos;
    s_entry_t last = self->heap [--self->size];
    if (last.timer != timer) {
        s_place (self, last, pos);
        if (pos > 0 && self->heap [(pos - 1) / 2].deadline > last.deadline)
            s_sift_up (self, pos);
        else
            s_sift_down (self, pos);
    }
    cvr_map_remove (self->by_key, key);
    free (timer);
}

const char *
cvr_deadlines_due (cvr_deadlines_t *self, int64_t now)
{
    if (self->size == 0 || self->heap [0].deadline > now)
        return NULL;
    return self->heap [0].timer->key;
}

int64_t
cvr_deadlines_get (cvr_deadlines_t *self, const char *key)
{
    s_timer_t *timer = (s_timer_t *) cvr_map_get (self->by_key, key);
    return timer ? self->heap [timer->pos].deadline : -1;
}

int64_t
cvr_deadlines_next (cvr_deadlines_t *self)
{
    return self->size ? self->heap [0].deadline : INT64_MAX;
}

void
cvr_deadlines_prefetch (cvr_deadlines_t *self, const char *key, size_t len)
{
    cvr_map_prefetch_slot (self->by_key, key, len);
}

size_t
cvr_deadlines_size (cvr_deadlines_t *self)
{
    return self->size;
}
