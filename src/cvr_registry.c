/*  cvr_registry.c: service records and their indexes. */
#include "cvr_registry.h"
#include "cvr_links.h"
#include "cvr_map.h"

struct _cvr_registry_t {
    cvr_map_t *services;        //  service_id -> cvr_service_t, owned (the
                                //  map borrows each key from its service)
    cvr_links_t *by_name;       //  service_name -> services, borrowed
    cvr_links_t *by_group;      //  group_id -> services, borrowed
    cvr_links_t *by_label;      //  label pair key -> services, borrowed
    size_t max_services;        //  limit on services at once
    bool indexed;               //  by_name, by_group and by_label kept
    uint64_t expired;           //  services removed by the clock
};

//  A service record is one block: the struct, its strings (the id first),
//  then its labels and its index links (none in an unindexed registry).
//  A lookup compares the id right after the fields a heartbeat then reads
//  and touches, and a registration allocates once.
typedef struct {
    cvr_service_t service;      //  first: the services map holds these
    cvr_link_t *links;          //  S_LINK_NAME, S_LINK_GROUP, then one per label
} s_record_t;

#define S_LINK_NAME     0
#define S_LINK_GROUP    1
#define S_LINK_LABELS   2

//  Room for a label index key of any pair the protocol allows.
#define S_LABEL_KEY_BUFFER 1280

static char *
s_put_str (char **cursor, const char *str)
{
    if (!str)
        return NULL;
    size_t size = strlen (str) + 1;
    char *copy = (char *) memcpy (*cursor, str, size);
    *cursor += size;
    return copy;
}

static cvr_service_t *
s_record_new (const cvr_service_t *spec, bool linked)
{
    const char *strs [] = { spec->service_id, spec->service_name, spec->service_type,
                            spec->endpoint, spec->group_id };
    size_t strings = 0;
    for (size_t i = 0; i < sizeof (strs) / sizeof (strs [0]); i++)
        strings += strs [i] ? strlen (strs [i]) + 1 : 0;
    for (size_t i = 0; i < spec->labels_count; i++)
        strings += strlen (spec->labels [i].key) + strlen (spec->labels [i].value) + 2;
    size_t align = _Alignof (cvr_label_t) > _Alignof (cvr_link_t)
                 ? _Alignof (cvr_label_t) : _Alignof (cvr_link_t);
    size_t labels_at = (sizeof (s_record_t) + strings + align - 1) & ~(align - 1);
    size_t links_at = labels_at + spec->labels_count * sizeof (cvr_label_t);
    size_t links_size = linked ? (S_LINK_LABELS + spec->labels_count) * sizeof (cvr_link_t) : 0;
    s_record_t *block = (s_record_t *) malloc (links_at + links_size);
    assert (block);
    block->links = linked ? (cvr_link_t *) ((char *) block + links_at) : NULL;
    if (linked)
        memset (block->links, 0, links_size);
    cvr_service_t *record = &block->service;
    *record = *spec;
    record->labels = spec->labels_count ? (cvr_label_t *) ((char *) block + labels_at) : NULL;
    char *cursor = (char *) (block + 1);
    record->service_id = s_put_str (&cursor, spec->service_id);
    record->service_name = s_put_str (&cursor, spec->service_name);
    record->service_type = s_put_str (&cursor, spec->service_type);
    record->endpoint = s_put_str (&cursor, spec->endpoint);
    record->group_id = s_put_str (&cursor, spec->group_id);
    for (size_t i = 0; i < spec->labels_count; i++) {
        record->labels [i].key = s_put_str (&cursor, spec->labels [i].key);
        record->labels [i].value = s_put_str (&cursor, spec->labels [i].value);
    }
    assert (cursor == (char *) (block + 1) + strings);
    return record;
}

static void
s_record_destroy (cvr_service_t **record_p)
{
    free (*record_p);
    *record_p = NULL;
}

cvr_registry_t *
cvr_registry_new (size_t max_services, bool indexed)
{
    cvr_registry_t *self = (cvr_registry_t *) zmalloc (sizeof (cvr_registry_t));
    self->services = cvr_map_new ();
    self->by_name = cvr_links_new ();
    self->by_group = cvr_links_new ();
    self->by_label = cvr_links_new ();
    self->max_services = max_services;
    self->indexed = indexed;
    return self;
}

bool
cvr_registry_indexed (cvr_registry_t *self)
{
    return self->indexed;
}

void
cvr_registry_destroy (cvr_registry_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_registry_t *self = *self_p;
    cvr_links_destroy (&self->by_name);
    cvr_links_destroy (&self->by_group);
    cvr_links_destroy (&self->by_label);
    size_t cursor = 0;
    cvr_service_t *service;
    while ((service = (cvr_service_t *) cvr_map_next (self->services, &cursor)))
        s_record_destroy (&service);
    cvr_map_destroy (&self->services);
    free (self);
    *self_p = NULL;
}

//  A label pair as one index key. The key's length goes first so that no
//  choice of bytes in key or value can make two pairs collide. Written
//  into buffer when it fits (every pair the protocol allows does), else
//  into a heap copy: free the result when it is not buffer.
static char *
s_label_key (char *buffer, size_t size, const char *key, const char *value)
{
    size_t key_len = strlen (key), value_len = strlen (value);
    char digits [24];               //  key_len in decimal, backwards
    size_t ndigits = 0;
    for (size_t n = key_len; ndigits == 0 || n; n /= 10)
        digits [ndigits++] = (char) ('0' + n % 10);
    size_t needed = ndigits + 1 + key_len + value_len + 1;
    char *out = needed <= size ? buffer : (char *) malloc (needed);
    assert (out);
    char *at = out;
    while (ndigits)
        *at++ = digits [--ndigits];
    *at++ = ':';
    memcpy (at, key, key_len);
    memcpy (at + key_len, value, value_len + 1);
    return out;
}

static void
s_label_key_free (char *key, char *buffer)
{
    if (key != buffer)
        free (key);
}

static void
s_index (cvr_registry_t *self, cvr_service_t *service, bool add)
{
    if (!self->indexed)
        return;
    cvr_link_t *links = ((s_record_t *) service)->links;
    if (!add) {
        cvr_links_remove (self->by_name, &links [S_LINK_NAME]);
        cvr_links_remove (self->by_group, &links [S_LINK_GROUP]);
        for (size_t i = 0; i < service->labels_count; i++)
            cvr_links_remove (self->by_label, &links [S_LINK_LABELS + i]);
        return;
    }
    cvr_links_add (self->by_name, service->service_name, &links [S_LINK_NAME], service);
    if (service->group_id)
        cvr_links_add (self->by_group, service->group_id, &links [S_LINK_GROUP], service);
    for (size_t i = 0; i < service->labels_count; i++) {
        char buffer [S_LABEL_KEY_BUFFER];
        char *key = s_label_key (buffer, sizeof (buffer), service->labels [i].key,
                                 service->labels [i].value);
        cvr_links_add (self->by_label, key, &links [S_LINK_LABELS + i], service);
        s_label_key_free (key, buffer);
    }
}

static void
s_publish (cvr_effects_t *effects, const cvr_service_t *service,
           const char *type, int64_t now)
{
    if (!effects)
        return;
    //  "service/" + the name (cut short as snprintf would), without the
    //  cost of a format on every registration.
    static const char prefix [] = "service/";
    char root [256];
    size_t len = strnlen (service->service_name, sizeof (root) - sizeof (prefix));
    memcpy (root, prefix, sizeof (prefix) - 1);
    memcpy (root + sizeof (prefix) - 1, service->service_name, len);
    root [sizeof (prefix) - 1 + len] = 0;
    cvr_effects_add (effects, root, type, type, now);
    cvr_effects_put_service (effects, service);
}

static bool
s_str_equal (const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && streq (a, b));
}

//  True when any field but last_heartbeat_at, registered_at and revision
//  differs: that is what makes a new revision.
static bool
s_changed (const cvr_service_t *a, const cvr_service_t *b)
{
    if (!s_str_equal (a->service_name, b->service_name)
    ||  !s_str_equal (a->service_type, b->service_type)
    ||  !s_str_equal (a->endpoint, b->endpoint)
    ||  !s_str_equal (a->group_id, b->group_id)
    ||  a->health != b->health || a->weight != b->weight
    ||  a->lease_ms != b->lease_ms || a->labels_count != b->labels_count)
        return true;
    for (size_t i = 0; i < a->labels_count; i++)
        if (!streq (a->labels [i].key, b->labels [i].key)
        ||  !streq (a->labels [i].value, b->labels [i].value))
            return true;
    return false;
}

static int
s_cmp_label (const void *a, const void *b)
{
    return strcmp (((const cvr_label_t *) a)->key, ((const cvr_label_t *) b)->key);
}

cvr_err_t
cvr_registry_register (cvr_registry_t *self, const cvr_service_t *spec,
                       int64_t now, cvr_effects_t *effects)
{
    uint64_t hash = cvr_map_hash (spec->service_id);
    cvr_service_t *old = (cvr_service_t *) cvr_map_get_hashed (self->services,
                                                               spec->service_id, hash);
    if (!old && cvr_map_size (self->services) >= self->max_services)
        return CVR_LIMIT_EXCEEDED;

    cvr_service_t *service = s_record_new (spec, self->indexed);
    if (service->labels_count)
        qsort (service->labels, service->labels_count, sizeof (cvr_label_t), s_cmp_label);
    service->health = CVR_HEALTH_HEALTHY;
    service->last_heartbeat_at = now;
    service->registered_at = old ? old->registered_at : now;
    service->revision = 1;
    if (old) {
        bool changed = s_changed (old, service);
        service->revision = old->revision + (changed ? 1 : 0);
        if (!streq (old->service_name, service->service_name)) {
            s_publish (effects, old, "deregistered", now);
            s_publish (effects, service, "registered", now);
        }
        else
        if (changed)
            s_publish (effects, service, "updated", now);
        s_index (self, old, false);
    }
    else
        s_publish (effects, service, "registered", now);
    //  Replaces (and frees) the old record, after its events were written.
    cvr_map_put_hashed (self->services, service->service_id, hash, service);
    s_record_destroy (&old);
    s_index (self, service, true);
    return CVR_OK;
}

cvr_err_t
cvr_registry_set_health (cvr_registry_t *self, const char *service_id,
                         cvr_health_t health, bool touch, int64_t now,
                         cvr_effects_t *effects)
{
    cvr_service_t *service = (cvr_service_t *) cvr_map_get (self->services, service_id);
    if (!service)
        return CVR_NOT_FOUND;
    if (touch)
        service->last_heartbeat_at = now;
    if (service->health != health) {
        service->health = health;
        service->revision++;
        s_publish (effects, service, "health", now);
    }
    return CVR_OK;
}

cvr_err_t
cvr_registry_remove (cvr_registry_t *self, const char *service_id, bool expired,
                     int64_t now, cvr_effects_t *effects)
{
    cvr_service_t *service = (cvr_service_t *) cvr_map_get (self->services, service_id);
    if (!service)
        return CVR_NOT_FOUND;
    s_publish (effects, service, expired ? "expired" : "deregistered", now);
    if (expired)
        self->expired++;
    s_index (self, service, false);
    cvr_map_remove (self->services, service_id);
    s_record_destroy (&service);
    return CVR_OK;
}

const cvr_service_t *
cvr_registry_touch (cvr_registry_t *self, const char *service_id, int64_t now)
{
    cvr_service_t *service = (cvr_service_t *) cvr_map_get (self->services, service_id);
    if (service)
        service->last_heartbeat_at = now;
    return service;
}

const cvr_service_t *
cvr_registry_lookup (cvr_registry_t *self, const char *service_id)
{
    return (const cvr_service_t *) cvr_map_get (self->services, service_id);
}

bool
cvr_registry_prefetch (cvr_registry_t *self, const char *service_id, size_t len, int step)
{
    if (step == 1)
        return cvr_map_prefetch_value (self->services, service_id, len);
    cvr_map_prefetch_slot (self->services, service_id, len);
    return true;
}

size_t
cvr_registry_size (cvr_registry_t *self)
{
    return cvr_map_size (self->services);
}

uint64_t
cvr_registry_expired (cvr_registry_t *self)
{
    return self->expired;
}

static bool
s_matches (const cvr_service_t *service, const cvr_service_filter_t *filter)
{
    if ((filter->service_name && !streq (filter->service_name, service->service_name))
    ||  (filter->service_type && !streq (filter->service_type, service->service_type))
    ||  (filter->group_id && !s_str_equal (filter->group_id, service->group_id))
    ||  (filter->healthy_only && service->health != CVR_HEALTH_HEALTHY))
        return false;
    for (size_t i = 0; i < filter->labels_count; i++) {
        const char *value = cvr_service_label (service, filter->labels [i].key);
        if (!value || !streq (value, filter->labels [i].value))
            return false;
    }
    return true;
}

//  Narrows the candidates to the smallest set an index gives for the
//  filter: true with *items that set (NULL when some indexed filter matches
//  nothing) and *size its size; false when no filter is indexed (every
//  service is a candidate).
static bool
s_candidates (cvr_registry_t *self, const cvr_service_filter_t *filter,
              void *const **items, size_t *size)
{
    void *const *sets [2 + 64];
    size_t counts [2 + 64], nsets = 0;
    if (!self->indexed)
        return false;
    if (filter->service_name) {
        sets [nsets] = cvr_links_items (self->by_name, filter->service_name, &counts [nsets]);
        nsets++;
    }
    if (filter->group_id) {
        sets [nsets] = cvr_links_items (self->by_group, filter->group_id, &counts [nsets]);
        nsets++;
    }
    for (size_t i = 0; i < filter->labels_count && nsets < 2 + 64; i++) {
        char buffer [S_LABEL_KEY_BUFFER];
        char *key = s_label_key (buffer, sizeof (buffer), filter->labels [i].key,
                                 filter->labels [i].value);
        sets [nsets] = cvr_links_items (self->by_label, key, &counts [nsets]);
        nsets++;
        s_label_key_free (key, buffer);
    }
    *items = NULL;
    *size = 0;
    for (size_t i = 0; i < nsets; i++) {
        if (!sets [i]) {                //  matches nothing
            *items = NULL;
            *size = 0;
            break;
        }
        if (i == 0 || counts [i] < *size) {
            *items = sets [i];
            *size = counts [i];
        }
    }
    return nsets > 0;
}

static int
s_cmp_service (const void *a, const void *b)
{
    return strcmp ((*(const cvr_service_t * const *) a)->service_id,
                   (*(const cvr_service_t * const *) b)->service_id);
}

const cvr_service_t **
cvr_registry_query (cvr_registry_t *self, const cvr_service_filter_t *filter,
                    size_t *count)
{
    cvr_service_filter_t all = { 0 };
    if (!filter)
        filter = &all;
    void *const *items;
    size_t size;
    bool narrowed = s_candidates (self, filter, &items, &size);
    if (!narrowed)
        size = cvr_map_size (self->services);
    const cvr_service_t **found = (const cvr_service_t **)
        malloc ((size ? size : 1) * sizeof (cvr_service_t *));
    assert (found);
    *count = 0;
    size_t cursor = 0;
    for (size_t i = 0; i < size; i++) {
        const cvr_service_t *service = narrowed
            ? (const cvr_service_t *) items [i]
            : (const cvr_service_t *) cvr_map_next (self->services, &cursor);
        if (s_matches (service, filter))
            found [(*count)++] = service;
    }
    qsort (found, *count, sizeof (cvr_service_t *), s_cmp_service);
    return found;
}

void
cvr_registry_restart (cvr_registry_t *self, int64_t now, cvr_effects_t *effects)
{
    size_t count;
    const cvr_service_t **all = cvr_registry_query (self, NULL, &count);
    for (size_t i = 0; i < count; i++)
        cvr_registry_set_health (self, all [i]->service_id, CVR_HEALTH_UNKNOWN, true, now,
                                 effects);
    free (all);
}

//  --------------------------------------------------------------------------
//  Snapshots

cvr_err_t
cvr_registry_restore (cvr_registry_t *self, const cvr_service_t *service)
{
    if (!service->service_id || !service->service_name)
        return CVR_BAD_REQUEST;
    for (size_t i = 0; i < service->labels_count; i++) {
        if (!service->labels [i].key || !service->labels [i].value)
            return CVR_BAD_REQUEST;
        //  A key twice would index the record twice under one label.
        for (size_t j = 0; j < i; j++)
            if (streq (service->labels [j].key, service->labels [i].key))
                return CVR_BAD_REQUEST;
    }
    uint64_t hash = cvr_map_hash (service->service_id);
    if (cvr_map_get_hashed (self->services, service->service_id, hash))
        return CVR_CONFLICT;
    cvr_service_t *copy = s_record_new (service, self->indexed);
    cvr_map_put_hashed (self->services, copy->service_id, hash, copy);
    s_index (self, copy, true);
    return CVR_OK;
}

void
cvr_registry_restore_expired (cvr_registry_t *self, uint64_t expired)
{
    self->expired = expired;
}
