/*  cvr_registry.c: service records and their indexes. */
#include "cvr_registry.h"
#include "cvr_index.h"
#include "cvr_map.h"

struct _cvr_registry_t {
    cvr_map_t *services;        //  service_id -> cvr_service_t, owned (the
                                //  map borrows each key from its service)
    cvr_index_t *by_name;       //  service_name -> services, borrowed
    cvr_index_t *by_group;      //  group_id -> services, borrowed
    cvr_index_t *by_label;      //  label pair key -> services, borrowed
    size_t max_services;        //  limit on services at once
    uint64_t expired;           //  services removed by the clock
};

//  A service record is one block: the struct, its labels, then its strings,
//  the id first. A lookup compares the id next to the fields a heartbeat
//  then reads and touches (one cache miss, not two), and a registration
//  allocates once.
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
s_record_new (const cvr_service_t *spec)
{
    const char *strs [] = { spec->service_id, spec->service_name, spec->service_type,
                            spec->endpoint, spec->group_id };
    size_t size = sizeof (cvr_service_t) + spec->labels_count * sizeof (cvr_label_t);
    for (size_t i = 0; i < sizeof (strs) / sizeof (strs [0]); i++)
        size += strs [i] ? strlen (strs [i]) + 1 : 0;
    for (size_t i = 0; i < spec->labels_count; i++)
        size += strlen (spec->labels [i].key) + strlen (spec->labels [i].value) + 2;
    cvr_service_t *record = (cvr_service_t *) malloc (size);
    assert (record);
    *record = *spec;
    record->labels = spec->labels_count ? (cvr_label_t *) (record + 1) : NULL;
    char *cursor = (char *) (record + 1) + spec->labels_count * sizeof (cvr_label_t);
    record->service_id = s_put_str (&cursor, spec->service_id);
    record->service_name = s_put_str (&cursor, spec->service_name);
    record->service_type = s_put_str (&cursor, spec->service_type);
    record->endpoint = s_put_str (&cursor, spec->endpoint);
    record->group_id = s_put_str (&cursor, spec->group_id);
    for (size_t i = 0; i < spec->labels_count; i++) {
        record->labels [i].key = s_put_str (&cursor, spec->labels [i].key);
        record->labels [i].value = s_put_str (&cursor, spec->labels [i].value);
    }
    assert (cursor == (char *) record + size);
    return record;
}

static void
s_record_destroy (cvr_service_t **record_p)
{
    free (*record_p);
    *record_p = NULL;
}

cvr_registry_t *
cvr_registry_new (size_t max_services)
{
    cvr_registry_t *self = (cvr_registry_t *) zmalloc (sizeof (cvr_registry_t));
    self->services = cvr_map_new ();
    self->by_name = cvr_index_new ();
    self->by_group = cvr_index_new ();
    self->by_label = cvr_index_new ();
    self->max_services = max_services;
    return self;
}

void
cvr_registry_destroy (cvr_registry_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_registry_t *self = *self_p;
    cvr_index_destroy (&self->by_name);
    cvr_index_destroy (&self->by_group);
    cvr_index_destroy (&self->by_label);
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
    size_t key_len = strlen (key);
    int needed = snprintf (buffer, size, "%zu:%s%s", key_len, key, value);
    if (needed >= 0 && (size_t) needed < size)
        return buffer;
    return zsys_sprintf ("%zu:%s%s", key_len, key, value);
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
    const char *id = service->service_id;
    if (add)
        cvr_index_add (self->by_name, service->service_name, id, service);
    else
        cvr_index_remove (self->by_name, service->service_name, id);
    if (service->group_id) {
        if (add)
            cvr_index_add (self->by_group, service->group_id, id, service);
        else
            cvr_index_remove (self->by_group, service->group_id, id);
    }
    for (size_t i = 0; i < service->labels_count; i++) {
        char buffer [1280];
        char *key = s_label_key (buffer, sizeof (buffer), service->labels [i].key,
                                 service->labels [i].value);
        if (add)
            cvr_index_add (self->by_label, key, id, service);
        else
            cvr_index_remove (self->by_label, key, id);
        s_label_key_free (key, buffer);
    }
}

static void
s_publish (cvr_effects_t *effects, const cvr_service_t *service,
           const char *type, int64_t now)
{
    if (!effects)
        return;
    char root [256];
    snprintf (root, sizeof (root), "service/%s", service->service_name);
    cvr_wr_t *body = cvr_effects_add (effects, root, type, type, now);
    cvr_wr_str (body, "service");
    cvr_proto_write_service (body, service);
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
    cvr_service_t *old = (cvr_service_t *) cvr_map_get (self->services, spec->service_id);
    if (!old && cvr_map_size (self->services) >= self->max_services)
        return CVR_LIMIT_EXCEEDED;

    cvr_service_t *service = s_record_new (spec);
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
    cvr_map_put (self->services, service->service_id, service);
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

void
cvr_registry_touch (cvr_registry_t *self, const char *service_id, int64_t now)
{
    cvr_service_t *service = (cvr_service_t *) cvr_map_get (self->services, service_id);
    if (service)
        service->last_heartbeat_at = now;
}

const cvr_service_t *
cvr_registry_lookup (cvr_registry_t *self, const char *service_id)
{
    return (const cvr_service_t *) cvr_map_get (self->services, service_id);
}

void
cvr_registry_prefetch (cvr_registry_t *self, const char *service_id, size_t len, int step)
{
    if (step == 0)
        cvr_map_prefetch_slot (self->services, service_id, len);
    else
        cvr_map_prefetch_value (self->services, service_id, len);
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
//  filter; NULL for every service (no indexed filter), or NULL with *empty
//  set when some indexed filter matches nothing.
static cvr_map_t *
s_candidates (cvr_registry_t *self, const cvr_service_filter_t *filter, bool *empty)
{
    cvr_map_t *best = NULL;
    *empty = false;
    cvr_map_t *sets [2 + 64];
    size_t nsets = 0;
    if (filter->service_name)
        sets [nsets++] = cvr_index_get (self->by_name, filter->service_name);
    if (filter->group_id)
        sets [nsets++] = cvr_index_get (self->by_group, filter->group_id);
    for (size_t i = 0; i < filter->labels_count && nsets < 66; i++) {
        char buffer [1280];
        char *key = s_label_key (buffer, sizeof (buffer), filter->labels [i].key,
                                 filter->labels [i].value);
        sets [nsets++] = cvr_index_get (self->by_label, key);
        s_label_key_free (key, buffer);
    }
    for (size_t i = 0; i < nsets; i++) {
        if (!sets [i]) {
            *empty = true;
            return NULL;
        }
        if (!best || cvr_map_size (sets [i]) < cvr_map_size (best))
            best = sets [i];
    }
    return best;
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
    bool empty;
    cvr_map_t *candidates = s_candidates (self, filter, &empty);
    size_t size = empty ? 0 : cvr_map_size (candidates ? candidates : self->services);
    const cvr_service_t **found = (const cvr_service_t **)
        malloc ((size ? size : 1) * sizeof (cvr_service_t *));
    assert (found);
    *count = 0;
    if (!empty) {
        cvr_map_t *set = candidates ? candidates : self->services;
        size_t cursor = 0;
        const cvr_service_t *service;
        while ((service = (const cvr_service_t *) cvr_map_next (set, &cursor)))
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
    for (size_t i = 0; i < service->labels_count; i++)
        if (!service->labels [i].key || !service->labels [i].value)
            return CVR_BAD_REQUEST;
    if (cvr_map_get (self->services, service->service_id))
        return CVR_CONFLICT;
    cvr_service_t *copy = s_record_new (service);
    cvr_map_put (self->services, copy->service_id, copy);
    s_index (self, copy, true);
    return CVR_OK;
}

void
cvr_registry_restore_expired (cvr_registry_t *self, uint64_t expired)
{
    self->expired = expired;
}
