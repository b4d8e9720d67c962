/*  cvr_balancer.c: round-robin and smooth weighted picks over a service set.

    The set is held twice: a zhashx keyed by service_id owns the entries so
    that events find their service in constant time, and an array sorted by
    service_id borrows them so that the order of picks never depends on the
    hash's layout. The array is rebuilt on every change of the set, which
    is rare next to picks.
*/
#include "conveyor/cvr_balancer.h"
#include <czmq.h>

//  Weights are clamped to this so that the sum of the candidates' weights,
//  and the currents built from it, stay far from int64 overflow.
#define S_WEIGHT_MAX ((int64_t) INT32_MAX)

typedef struct {
    cvr_service_t *service;     //  Owned copy of the record
    int64_t current;            //  Smooth weighted round-robin credit
    bool fresh;                 //  New or reweighted: current not yet aligned
} s_entry_t;

struct _cvr_balancer_t {
    cvr_balance_t policy;       //  How cvr_balancer_pick chooses
    char *service_name;         //  Only services of this name held; NULL: all
    zhashx_t *entries;          //  service_id -> s_entry_t, owns them
    s_entry_t **order;          //  The entries sorted by service_id, borrowed
    size_t count;               //  Number of items in order
    size_t cursor;              //  Round-robin: index after the last pick
};


static void
s_entry_destroy (void **item_p)
{
    if (!item_p || !*item_p)
        return;
    s_entry_t *entry = (s_entry_t *) *item_p;
    cvr_service_destroy (&entry->service);
    free (entry);
    *item_p = NULL;
}

static s_entry_t *
s_entry_new (const cvr_service_t *service)
{
    s_entry_t *entry = (s_entry_t *) zmalloc (sizeof (s_entry_t));
    entry->service = cvr_service_dup (service);
    entry->fresh = true;
    return entry;
}

//  zhashx copies and frees keys itself (strdup by default), so only the
//  values need a destructor.
static zhashx_t *
s_entries_new (void)
{
    zhashx_t *entries = zhashx_new ();
    assert (entries);
    zhashx_set_destructor (entries, s_entry_destroy);
    return entries;
}

static bool
s_str_equal (const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return streq (a, b);
}

//  Every field counts, so that an event repeating what is held is not a
//  change and leaves borrowed picks valid.
static bool
s_service_equal (const cvr_service_t *a, const cvr_service_t *b)
{
    if (!s_str_equal (a->service_id, b->service_id)
    ||  !s_str_equal (a->service_name, b->service_name)
    ||  !s_str_equal (a->service_type, b->service_type)
    ||  !s_str_equal (a->endpoint, b->endpoint)
    ||  !s_str_equal (a->group_id, b->group_id)
    ||  a->health != b->health
    ||  a->weight != b->weight
    ||  a->registered_at != b->registered_at
    ||  a->last_heartbeat_at != b->last_heartbeat_at
    ||  a->lease_ms != b->lease_ms
    ||  a->revision != b->revision
    ||  a->labels_count != b->labels_count)
        return false;
    for (size_t i = 0; i < a->labels_count; i++)
        if (!s_str_equal (a->labels [i].key, b->labels [i].key)
        ||  !s_str_equal (a->labels [i].value, b->labels [i].value))
            return false;
    return true;
}

//  A service without an id cannot be keyed, and one of another name does
//  not belong to this balancer.
static bool
s_accepts (cvr_balancer_t *self, const cvr_service_t *service)
{
    if (!service || !service->service_id)
        return false;
    return !self->service_name
        || s_str_equal (self->service_name, service->service_name);
}

static int64_t
s_weight (const s_entry_t *entry)
{
    int64_t weight = entry->service->weight;
    return weight > S_WEIGHT_MAX? S_WEIGHT_MAX: weight;
}

//  healthy_tier false is the fallback tier, used only when the healthy
//  tier is empty.
static bool
s_is_candidate (const s_entry_t *entry, bool healthy_tier)
{
    if (entry->service->weight <= 0)
        return false;
    cvr_health_t health = entry->service->health;
    if (healthy_tier)
        return health == CVR_HEALTH_HEALTHY;
    return health == CVR_HEALTH_DEGRADED || health == CVR_HEALTH_UNKNOWN;
}

//  Takes a copy of the id round-robin picked last: a change of the set may
//  free that entry, and the cycle resumes after the id, not the index, so
//  that newcomers after it still get their turn in this cycle.
static char *
s_resume_take (cvr_balancer_t *self)
{
    if (self->cursor > 0 && self->cursor <= self->count)
        return strdup (self->order [self->cursor - 1]->service->service_id);
    return NULL;
}

static int
s_compare_entries (const void *a, const void *b)
{
    const s_entry_t *ea = *(const s_entry_t * const *) a;
    const s_entry_t *eb = *(const s_entry_t * const *) b;
    return strcmp (ea->service->service_id, eb->service->service_id);
}

//  Rebuilds the sorted array after a change of the set; takes resume.
//  The cursor may end up equal to count; picks wrap it.
//  Fresh entries start level with the mean of the others, so a newcomer
//  neither bursts ahead nor starves. Picks depend only on the differences
//  of currents, so shifting the others to a zero mean changes no pick but
//  keeps the currents from drifting as services come and go.
static void
s_reindex (cvr_balancer_t *self, char *resume)
{
    free (self->order);
    self->order = NULL;
    self->count = zhashx_size (self->entries);
    if (self->count)
        self->order = (s_entry_t **) zmalloc (self->count * sizeof (s_entry_t *));

    size_t index = 0;
    double sum = 0;
    size_t settled = 0;
    for (s_entry_t *entry = (s_entry_t *) zhashx_first (self->entries);
         entry; entry = (s_entry_t *) zhashx_next (self->entries)) {
        self->order [index++] = entry;
        if (!entry->fresh) {
            sum += (double) entry->current;
            settled++;
        }
    }
    if (self->count > 1)
        qsort (self->order, self->count, sizeof (s_entry_t *), s_compare_entries);

    int64_t mean = settled? (int64_t) (sum / (double) settled): 0;
    for (index = 0; index < self->count; index++) {
        s_entry_t *entry = self->order [index];
        entry->current = entry->fresh? 0: entry->current - mean;
        entry->fresh = false;
    }

    self->cursor = 0;
    if (resume) {
        while (self->cursor < self->count
            && strcmp (self->order [self->cursor]->service->service_id, resume) <= 0)
            self->cursor++;
        free (resume);
    }
}

static bool
s_remove (cvr_balancer_t *self, const char *service_id)
{
    if (!service_id || !zhashx_lookup (self->entries, service_id))
        return false;
    char *resume = s_resume_take (self);
    zhashx_delete (self->entries, service_id);
    s_reindex (self, resume);
    return true;
}

static bool
s_upsert (cvr_balancer_t *self, const cvr_service_t *service)
{
    if (!service || !service->service_id)
        return false;
    //  A held service renamed away no longer belongs to this balancer
    if (!s_accepts (self, service))
        return s_remove (self, service->service_id);

    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, service->service_id);
    if (entry && s_service_equal (entry->service, service))
        return false;

    char *resume = s_resume_take (self);
    if (entry) {
        //  The credit earned at a weight is only meaningful at that weight
        entry->fresh = entry->service->weight != service->weight;
        cvr_service_destroy (&entry->service);
        entry->service = cvr_service_dup (service);
    }
    else {
        entry = s_entry_new (service);
        //  Absent above, so the insert cannot collide.
        zhashx_insert (self->entries, service->service_id, entry);
    }
    s_reindex (self, resume);
    return true;
}

//  Builds the new set apart so that an identical list changes nothing,
//  and so that kept services carry their credit over.
static bool
s_replace (cvr_balancer_t *self, const cvr_service_list_t *list)
{
    zhashx_t *entries = s_entries_new ();
    for (size_t i = 0; list && i < list->count; i++) {
        const cvr_service_t *service = list->items [i];
        if (!s_accepts (self, service))
            continue;
        s_entry_t *entry = s_entry_new (service);
        s_entry_t *old = (s_entry_t *) zhashx_lookup (self->entries, service->service_id);
        if (old && old->service->weight == service->weight) {
            entry->current = old->current;
            entry->fresh = false;
        }
        //  A repeated id: the later record wins, as successive upserts would
        zhashx_update (entries, service->service_id, entry);
    }

    bool changed = zhashx_size (entries) != zhashx_size (self->entries);
    for (s_entry_t *entry = (s_entry_t *) zhashx_first (entries);
         entry && !changed; entry = (s_entry_t *) zhashx_next (entries)) {
        s_entry_t *old = (s_entry_t *) zhashx_lookup (self->entries,
                                                      entry->service->service_id);
        changed = !old || !s_service_equal (old->service, entry->service);
    }
    if (!changed) {
        zhashx_destroy (&entries);
        return false;
    }
    char *resume = s_resume_take (self);
    zhashx_destroy (&self->entries);
    self->entries = entries;
    s_reindex (self, resume);
    return true;
}

static const cvr_service_t *
s_pick_round_robin (cvr_balancer_t *self, bool healthy_tier)
{
    for (size_t step = 0; step < self->count; step++) {
        size_t index = (self->cursor + step) % self->count;
        if (s_is_candidate (self->order [index], healthy_tier)) {
            //  Not wrapped, so that a pick of the last entry still names it
            self->cursor = index + 1;
            return self->order [index]->service;
        }
    }
    return NULL;
}

//  nginx's smooth weighted round-robin: every candidate earns its weight,
//  the richest is picked and pays the total back. Ties go to the lowest
//  service_id, which makes the sequence deterministic.
static const cvr_service_t *
s_pick_weighted (cvr_balancer_t *self, bool healthy_tier)
{
    s_entry_t *best = NULL;
    int64_t total = 0;
    for (size_t index = 0; index < self->count; index++) {
        s_entry_t *entry = self->order [index];
        if (!s_is_candidate (entry, healthy_tier))
            continue;
        int64_t weight = s_weight (entry);
        entry->current += weight;
        total += weight;
        if (!best || entry->current > best->current)
            best = entry;
    }
    if (!best)
        return NULL;
    best->current -= total;
    return best->service;
}


cvr_balancer_t *
cvr_balancer_new (cvr_balance_t policy, const char *service_name)
{
    cvr_balancer_t *self = (cvr_balancer_t *) zmalloc (sizeof (cvr_balancer_t));
    self->policy = policy;
    self->service_name = service_name? strdup (service_name): NULL;
    self->entries = s_entries_new ();
    return self;
}

void
cvr_balancer_destroy (cvr_balancer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_balancer_t *self = *self_p;
    zhashx_destroy (&self->entries);
    free (self->order);
    free (self->service_name);
    free (self);
    *self_p = NULL;
}

void
cvr_balancer_set (cvr_balancer_t *self, const cvr_service_list_t *list)
{
    if (self)
        s_replace (self, list);
}

void
cvr_balancer_upsert (cvr_balancer_t *self, const cvr_service_t *service)
{
    if (self)
        s_upsert (self, service);
}

void
cvr_balancer_remove (cvr_balancer_t *self, const char *service_id)
{
    if (self)
        s_remove (self, service_id);
}

bool
cvr_balancer_apply (cvr_balancer_t *self, const cvr_event_t *event)
{
    if (!self || !event || !event->type)
        return false;
    //  A snapshot always carries its list; one without is malformed, and
    //  emptying the set on its account would stop every pick.
    if (streq (event->type, "snapshot"))
        return event->services? s_replace (self, event->services): false;
    if (!event->service)
        return false;
    if (streq (event->type, "registered")
    ||  streq (event->type, "updated")
    ||  streq (event->type, "health"))
        return s_upsert (self, event->service);
    if (streq (event->type, "deregistered")
    ||  streq (event->type, "expired"))
        return s_remove (self, event->service->service_id);
    return false;
}

const cvr_service_t *
cvr_balancer_pick (cvr_balancer_t *self)
{
    if (!self || !self->count)
        return NULL;
    bool healthy_tier = false;
    for (size_t index = 0; index < self->count && !healthy_tier; index++)
        healthy_tier = s_is_candidate (self->order [index], true);
    if (self->policy == CVR_BALANCE_WEIGHTED)
        return s_pick_weighted (self, healthy_tier);
    return s_pick_round_robin (self, healthy_tier);
}

size_t
cvr_balancer_size (cvr_balancer_t *self)
{
    return self? self->count: 0;
}
