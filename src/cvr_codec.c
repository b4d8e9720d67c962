/*  cvr_codec.c: commands and snapshots to msgpack and back. */
#include "cvr_codec.h"

#define S_SNAPSHOT_VERSION 1

struct _cvr_codec_cmd_t {
    cvr_cmd_t cmd;              //  points into what follows
    cvr_service_t service;      //  CVR_CMD_REGISTER; its strings in owned
    cvr_join_t join;            //  CVR_CMD_JOIN
    msgpack_zone owned;         //  the strings and arrays of the command
                                //  last read, cleared by the next read
};

//  --------------------------------------------------------------------------
//  Writing

//  An optional string: left out when NULL.
static void
s_wr_opt (cvr_wr_t *w, const char *key, const char *value)
{
    if (value)
        cvr_wr_kstr (w, key, value);
}

static void
s_write_service (cvr_wr_t *w, const cvr_service_t *service)
{
    cvr_wr_map (w);
    s_wr_opt (w, "id", service->service_id);
    s_wr_opt (w, "nm", service->service_name);
    s_wr_opt (w, "ty", service->service_type);
    s_wr_opt (w, "ep", service->endpoint);
    s_wr_opt (w, "g", service->group_id);
    cvr_wr_kstr (w, "h", cvr_health_name (service->health));
    cvr_wr_str (w, "l");
    cvr_wr_array (w);
    for (size_t i = 0; i < service->labels_count; i++) {
        cvr_wr_array (w);
        cvr_wr_str (w, service->labels [i].key);
        cvr_wr_str (w, service->labels [i].value);
        cvr_wr_close (w);
    }
    cvr_wr_close (w);
    cvr_wr_kint (w, "w", service->weight);
    cvr_wr_kint (w, "ra", service->registered_at);
    cvr_wr_kint (w, "lh", service->last_heartbeat_at);
    cvr_wr_kint (w, "lm", service->lease_ms);
    cvr_wr_kint (w, "r", service->revision);
    cvr_wr_close (w);
}

static void
s_write_join (cvr_wr_t *w, const cvr_join_t *join)
{
    cvr_wr_map (w);
    s_wr_opt (w, "g", join->group_id);
    s_wr_opt (w, "m", join->member_id);
    s_wr_opt (w, "i", join->instance_id);
    s_wr_opt (w, "s", join->service_id);
    s_wr_opt (w, "sn", join->service_name);
    cvr_wr_str (w, "tp");
    cvr_wr_array (w);
    for (size_t i = 0; i < join->topics_count; i++)
        cvr_wr_str (w, join->topics [i]);
    cvr_wr_close (w);
    cvr_wr_kint (w, "st", join->session_timeout_ms);
    s_wr_opt (w, "a", join->assignor);
    cvr_wr_close (w);
}

static void
s_write_offsets (cvr_wr_t *w, const cvr_offset_t *offsets, size_t count)
{
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++) {
        cvr_wr_array (w);
        cvr_wr_str (w, offsets [i].topic);
        cvr_wr_int (w, offsets [i].partition);
        cvr_wr_int (w, offsets [i].offset);
        cvr_wr_close (w);
    }
    cvr_wr_close (w);
}

void
cvr_codec_write_cmd (cvr_wr_t *w, const cvr_cmd_t *cmd)
{
    cvr_wr_map (w);
    cvr_wr_kuint (w, "t", (uint64_t) cmd->type);
    cvr_wr_kint (w, "n", cmd->now);
    switch (cmd->type) {
        case CVR_CMD_REGISTER:
            cvr_wr_str (w, "sv");
            s_write_service (w, cmd->service);
            break;
        case CVR_CMD_HEARTBEAT:
            s_wr_opt (w, "s", cmd->service_id);
            cvr_wr_kstr (w, "h", cvr_health_name (cmd->health));
            break;
        case CVR_CMD_LAPSE:
        case CVR_CMD_DEREGISTER:
        case CVR_CMD_EXPIRE:
            s_wr_opt (w, "s", cmd->service_id);
            break;
        case CVR_CMD_CREATE_TOPIC:
            s_wr_opt (w, "tp", cmd->topic);
            cvr_wr_kint (w, "p", cmd->partitions);
            break;
        case CVR_CMD_JOIN:
            cvr_wr_str (w, "j");
            s_write_join (w, cmd->join);
            break;
        case CVR_CMD_LEAVE:
        case CVR_CMD_SESSION_EXPIRE:
            s_wr_opt (w, "g", cmd->group_id);
            s_wr_opt (w, "m", cmd->member_id);
            break;
        case CVR_CMD_REBALANCE:
        case CVR_CMD_DELETE_GROUP:
            s_wr_opt (w, "g", cmd->group_id);
            break;
        case CVR_CMD_COMMIT:
            s_wr_opt (w, "g", cmd->group_id);
            s_wr_opt (w, "m", cmd->member_id);
            cvr_wr_kint (w, "ge", cmd->generation);
            cvr_wr_str (w, "o");
            s_write_offsets (w, cmd->offsets, cmd->offsets_count);
            break;
        case CVR_CMD_RESTORE:
            break;
    }
    cvr_wr_close (w);
}

static void
s_write_group (cvr_wr_t *w, cvr_groups_t *groups, const char *group_id)
{
    int64_t generation;
    const char *assignor, *reason;
    cvr_groups_info (groups, group_id, &generation, &assignor, &reason);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "id", group_id);
    cvr_wr_kint (w, "ge", generation);
    cvr_wr_kstr (w, "a", assignor);

    size_t count;
    cvr_member_record_t *members = cvr_groups_member_records (groups, group_id, &count);
    cvr_wr_str (w, "mb");
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++) {
        const cvr_member_record_t *m = &members [i];
        cvr_wr_map (w);
        cvr_wr_kstr (w, "id", m->member_id);
        s_wr_opt (w, "i", m->instance_id);
        s_wr_opt (w, "s", m->service_id);
        s_wr_opt (w, "sn", m->service_name);
        cvr_wr_str (w, "tp");
        cvr_wr_array (w);
        for (size_t t = 0; t < m->topics_count; t++)
            cvr_wr_str (w, m->topics [t]);
        cvr_wr_close (w);
        cvr_wr_kint (w, "st", m->session_timeout_ms);
        cvr_wr_kint (w, "ja", m->joined_at);
        cvr_wr_kint (w, "lh", m->last_heartbeat_at);
        cvr_wr_str (w, "as");
        cvr_wr_array (w);
        for (size_t p = 0; p < m->assignment_count; p++) {
            cvr_wr_array (w);
            cvr_wr_str (w, m->assignment [p].topic);
            cvr_wr_uint (w, m->assignment [p].partition);
            cvr_wr_close (w);
        }
        cvr_wr_close (w);
        cvr_wr_close (w);
    }
    cvr_wr_close (w);
    free (members);

    const char **fenced = cvr_groups_fenced (groups, group_id, &count);
    cvr_wr_str (w, "fe");
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++)
        cvr_wr_str (w, fenced [i]);
    cvr_wr_close (w);
    free (fenced);

    cvr_offset_t *offsets = cvr_groups_committed (groups, group_id, &count);
    cvr_wr_str (w, "of");
    s_write_offsets (w, offsets, count);
    free (offsets);
    cvr_wr_close (w);
}

void
cvr_codec_write_state (cvr_wr_t *w, cvr_state_t *state)
{
    cvr_registry_t *registry = cvr_state_registry (state);
    cvr_groups_t *groups = cvr_state_groups (state);
    cvr_wr_map (w);
    cvr_wr_kuint (w, "v", S_SNAPSHOT_VERSION);

    size_t count;
    const cvr_service_t **services = cvr_registry_query (registry, NULL, &count);
    cvr_wr_str (w, "sv");
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++)
        s_write_service (w, services [i]);
    cvr_wr_close (w);
    free (services);
    cvr_wr_kuint (w, "ex", cvr_registry_expired (registry));

    const char **names = cvr_groups_topic_names (groups, &count);
    cvr_wr_str (w, "tp");
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++) {
        cvr_wr_array (w);
        cvr_wr_str (w, names [i]);
        cvr_wr_uint (w, cvr_groups_topic_partitions (groups, names [i]));
        cvr_wr_close (w);
    }
    cvr_wr_close (w);
    free (names);

    names = cvr_groups_ids (groups, &count);
    cvr_wr_str (w, "gr");
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++)
        s_write_group (w, groups, names [i]);
    cvr_wr_close (w);
    free (names);

    names = cvr_groups_dirty_ids (groups, &count);
    cvr_wr_str (w, "dt");
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++) {
        int64_t generation;
        const char *assignor, *reason;
        cvr_groups_info (groups, names [i], &generation, &assignor, &reason);
        cvr_wr_array (w);
        cvr_wr_str (w, names [i]);
        cvr_wr_str (w, reason);
        cvr_wr_close (w);
    }
    cvr_wr_close (w);
    free (names);

    cvr_wr_kuint (w, "rb", cvr_groups_rebalances (groups));
    cvr_wr_kuint (w, "mx", cvr_groups_members_expired (groups));
    cvr_wr_close (w);
}

//  --------------------------------------------------------------------------
//  Reading. Each reader returns 0, or -1 when the input is malformed; the
//  strings and arrays it decodes go into `owned`, a zone the caller clears
//  or destroys on both paths (one allocation per chunk, none per string:
//  the raft thread reads every command of the log this way).

//  The zone aligns what it gives to MSGPACK_ZONE_ALIGN, which must do for
//  every array read into it.
_Static_assert (MSGPACK_ZONE_ALIGN >= _Alignof (cvr_offset_t)
             && MSGPACK_ZONE_ALIGN >= _Alignof (cvr_owned_t)
             && MSGPACK_ZONE_ALIGN >= _Alignof (cvr_label_t)
             && MSGPACK_ZONE_ALIGN >= _Alignof (const char *),
                "the zone's alignment is too small for the arrays read into it");

static void *
s_keep (msgpack_zone *owned, size_t size)
{
    void *block = msgpack_zone_malloc (owned, size);
    assert (block);
    return block;
}

//  A string value (no NUL inside), copied with its terminator.
static int
s_str (msgpack_zone *owned, const msgpack_object *o, const char **out)
{
    if (!o || o->type != MSGPACK_OBJECT_STR
    ||  memchr (o->via.str.ptr, 0, o->via.str.size))
        return -1;
    char *s = (char *) msgpack_zone_malloc_no_align (owned, o->via.str.size + 1);
    assert (s);
    memcpy (s, o->via.str.ptr, o->via.str.size);
    s [o->via.str.size] = 0;
    *out = s;
    return 0;
}

//  A field that must be a string.
static int
s_get_str (msgpack_zone *owned, const msgpack_object *map, const char *key, const char **out)
{
    return s_str (owned, cvr_obj_get (map, key), out);
}

//  A field that may be absent or nil (NULL), else a string.
static int
s_get_opt (msgpack_zone *owned, const msgpack_object *map, const char *key, const char **out)
{
    const msgpack_object *o = cvr_obj_get (map, key);
    *out = NULL;
    return o ? s_str (owned, o, out) : 0;
}

static int
s_get_int (const msgpack_object *map, const char *key, int64_t *out)
{
    return cvr_obj_int (cvr_obj_get (map, key), out);
}

static int
s_get_uint (const msgpack_object *map, const char *key, uint64_t *out)
{
    return cvr_obj_uint (cvr_obj_get (map, key), out);
}

static int
s_get_health (const msgpack_object *map, const char *key, cvr_health_t *out)
{
    const msgpack_object *o = cvr_obj_get (map, key);
    char name [16];
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= sizeof (name))
        return -1;
    memcpy (name, o->via.str.ptr, o->via.str.size);
    name [o->via.str.size] = 0;
    return cvr_health_parse (name, out);
}

//  A field that must be an array; *out is NULL for an empty one.
static int
s_get_array (const msgpack_object *map, const char *key, const msgpack_object **items,
             size_t *count)
{
    const msgpack_object *o = cvr_obj_get (map, key);
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return -1;
    *items = o->via.array.ptr;
    *count = o->via.array.size;
    return 0;
}

//  An array of exactly `size` items.
static bool
s_is_tuple (const msgpack_object *o, uint32_t size)
{
    return o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == size;
}

//  An array of strings.
static int
s_get_strs (msgpack_zone *owned, const msgpack_object *map, const char *key,
            const char ***out, size_t *count)
{
    const msgpack_object *items;
    if (s_get_array (map, key, &items, count))
        return -1;
    const char **strs = (const char **) s_keep (owned, (*count + 1) * sizeof (char *));
    for (size_t i = 0; i < *count; i++)
        if (s_str (owned, &items [i], &strs [i]))
            return -1;
    *out = strs;
    return 0;
}

//  A service record into *self, its strings and labels in owned. Each
//  string is copied once, into the zone (this runs for every registration
//  in the log); the registry then copies the record into one block.
static int
s_read_service (msgpack_zone *owned, const msgpack_object *o, cvr_service_t *self)
{
    *self = (cvr_service_t) { 0 };
    const msgpack_object *labels;
    size_t count = 0;
    if (!cvr_obj_is_str_map (o)
    ||  s_get_str (owned, o, "id", (const char **) &self->service_id)
    ||  s_get_str (owned, o, "nm", (const char **) &self->service_name)
    ||  s_get_opt (owned, o, "ty", (const char **) &self->service_type)
    ||  s_get_opt (owned, o, "ep", (const char **) &self->endpoint)
    ||  s_get_opt (owned, o, "g", (const char **) &self->group_id)
    ||  s_get_health (o, "h", &self->health)
    ||  s_get_int (o, "w", &self->weight)
    ||  s_get_int (o, "ra", &self->registered_at)
    ||  s_get_int (o, "lh", &self->last_heartbeat_at)
    ||  s_get_int (o, "lm", &self->lease_ms)
    ||  s_get_int (o, "r", &self->revision)
    ||  s_get_array (o, "l", &labels, &count))
        return -1;
    if (count)
        self->labels = (cvr_label_t *) s_keep (owned, count * sizeof (cvr_label_t));
    for (size_t i = 0; i < count; i++) {
        cvr_label_t *label = &self->labels [i];
        if (!s_is_tuple (&labels [i], 2)
        ||  s_str (owned, &labels [i].via.array.ptr [0], (const char **) &label->key)
        ||  s_str (owned, &labels [i].via.array.ptr [1], (const char **) &label->value))
            return -1;
        self->labels_count++;
    }
    return 0;
}

//  [[topic, partition, offset], ...]
static int
s_get_offsets (msgpack_zone *owned, const msgpack_object *map, const char *key,
               cvr_offset_t **out, size_t *count)
{
    const msgpack_object *items;
    if (s_get_array (map, key, &items, count))
        return -1;
    cvr_offset_t *offsets = (cvr_offset_t *) s_keep (
        owned, (*count + 1) * sizeof (cvr_offset_t));
    for (size_t i = 0; i < *count; i++) {
        const msgpack_object *item = &items [i];
        if (!s_is_tuple (item, 3)
        ||  s_str (owned, &item->via.array.ptr [0], &offsets [i].topic)
        ||  cvr_obj_int (&item->via.array.ptr [1], &offsets [i].partition)
        ||  cvr_obj_int (&item->via.array.ptr [2], &offsets [i].offset))
            return -1;
    }
    *out = offsets;
    return 0;
}

static int
s_read_join (cvr_codec_cmd_t *self, const msgpack_object *o)
{
    cvr_join_t *join = &self->join;
    msgpack_zone *owned = &self->owned;
    const char **topics;
    *join = (cvr_join_t) { 0 };
    if (!cvr_obj_is_str_map (o)
    ||  s_get_str (owned, o, "g", &join->group_id)
    ||  s_get_str (owned, o, "m", &join->member_id)
    ||  s_get_opt (owned, o, "i", &join->instance_id)
    ||  s_get_opt (owned, o, "s", &join->service_id)
    ||  s_get_opt (owned, o, "sn", &join->service_name)
    ||  s_get_opt (owned, o, "a", &join->assignor)
    ||  s_get_int (o, "st", &join->session_timeout_ms)
    ||  s_get_strs (owned, o, "tp", &topics, &join->topics_count)
    ||  join->topics_count == 0)
        return -1;
    join->topics = topics;
    self->cmd.join = join;
    return 0;
}

static int
s_read_cmd (cvr_codec_cmd_t *self, const msgpack_object *o)
{
    cvr_cmd_t *cmd = &self->cmd;
    msgpack_zone *owned = &self->owned;
    *cmd = (cvr_cmd_t) { 0 };
    uint64_t type;
    if (!cvr_obj_is_str_map (o)
    ||  s_get_uint (o, "t", &type)
    ||  type < CVR_CMD_REGISTER || type > CVR_CMD_RESTORE
    ||  s_get_int (o, "n", &cmd->now))
        return -1;
    cmd->type = (cvr_cmd_type_t) type;
    switch (cmd->type) {
        case CVR_CMD_REGISTER:
            cmd->service = &self->service;
            return s_read_service (owned, cvr_obj_get (o, "sv"), &self->service);
        case CVR_CMD_HEARTBEAT:
            return s_get_str (owned, o, "s", &cmd->service_id)
                || s_get_health (o, "h", &cmd->health) ? -1 : 0;
        case CVR_CMD_LAPSE:
        case CVR_CMD_DEREGISTER:
        case CVR_CMD_EXPIRE:
            return s_get_str (owned, o, "s", &cmd->service_id);
        case CVR_CMD_CREATE_TOPIC:
            return s_get_str (owned, o, "tp", &cmd->topic)
                || s_get_int (o, "p", &cmd->partitions) ? -1 : 0;
        case CVR_CMD_JOIN:
            return s_read_join (self, cvr_obj_get (o, "j"));
        case CVR_CMD_LEAVE:
        case CVR_CMD_SESSION_EXPIRE:
            return s_get_str (owned, o, "g", &cmd->group_id)
                || s_get_str (owned, o, "m", &cmd->member_id) ? -1 : 0;
        case CVR_CMD_REBALANCE:
        case CVR_CMD_DELETE_GROUP:
            return s_get_str (owned, o, "g", &cmd->group_id);
        case CVR_CMD_COMMIT: {
            cvr_offset_t *offsets;
            if (s_get_str (owned, o, "g", &cmd->group_id)
            ||  s_get_str (owned, o, "m", &cmd->member_id)
            ||  s_get_int (o, "ge", &cmd->generation)
            ||  s_get_offsets (owned, o, "o", &offsets, &cmd->offsets_count))
                return -1;
            cmd->offsets = offsets;
            return 0;
        }
        case CVR_CMD_RESTORE:
            return 0;
    }
    return -1;
}

//  The zone's first chunk, the one msgpack_zone_clear keeps: a command's
//  strings and arrays are short, and this holds all but the biggest.
#define S_CMD_ZONE_CHUNK 8192

cvr_codec_cmd_t *
cvr_codec_cmd_new (void)
{
    cvr_codec_cmd_t *self = (cvr_codec_cmd_t *) zmalloc (sizeof (cvr_codec_cmd_t));
    bool ok = msgpack_zone_init (&self->owned, S_CMD_ZONE_CHUNK);
    assert (ok);
    (void) ok;
    return self;
}

void
cvr_codec_cmd_destroy (cvr_codec_cmd_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_codec_cmd_t *self = *self_p;
    msgpack_zone_destroy (&self->owned);
    free (self);
    *self_p = NULL;
}

const cvr_cmd_t *
cvr_codec_cmd_read (cvr_codec_cmd_t *self, const msgpack_object *o)
{
    msgpack_zone_clear (&self->owned);
    return o && s_read_cmd (self, o) == 0 ? &self->cmd : NULL;
}

cvr_codec_cmd_t *
cvr_codec_read_cmd (const msgpack_object *o)
{
    cvr_codec_cmd_t *self = cvr_codec_cmd_new ();
    if (!cvr_codec_cmd_read (self, o))
        cvr_codec_cmd_destroy (&self);
    return self;
}

const cvr_cmd_t *
cvr_codec_cmd (cvr_codec_cmd_t *self)
{
    return &self->cmd;
}

//  --------------------------------------------------------------------------
//  Snapshots

static int
s_read_services (cvr_registry_t *registry, msgpack_zone *owned, const msgpack_object *root)
{
    const msgpack_object *items;
    size_t count;
    uint64_t expired;
    if (s_get_array (root, "sv", &items, &count)
    ||  s_get_uint (root, "ex", &expired))
        return -1;
    for (size_t i = 0; i < count; i++) {
        cvr_service_t service;
        int rc = s_read_service (owned, &items [i], &service) ? -1
               : cvr_registry_restore (registry, &service) ? -1 : 0;
        //  One service's strings at a time, not the whole snapshot's.
        msgpack_zone_clear (owned);
        if (rc)
            return -1;
    }
    cvr_registry_restore_expired (registry, expired);
    return 0;
}

static int
s_read_topics (cvr_groups_t *groups, msgpack_zone *owned, const msgpack_object *root)
{
    const msgpack_object *items;
    size_t count;
    if (s_get_array (root, "tp", &items, &count))
        return -1;
    for (size_t i = 0; i < count; i++) {
        const char *name;
        uint64_t partitions;
        if (!s_is_tuple (&items [i], 2)
        ||  s_str (owned, &items [i].via.array.ptr [0], &name)
        ||  cvr_obj_uint (&items [i].via.array.ptr [1], &partitions)
        ||  partitions > UINT32_MAX
        ||  cvr_groups_restore_topic (groups, name, (uint32_t) partitions))
            return -1;
    }
    return 0;
}

static int
s_read_member (cvr_groups_t *groups, msgpack_zone *owned, const char *group_id,
               const msgpack_object *o)
{
    cvr_member_record_t member = { 0 };
    const char **topics;
    const msgpack_object *items;
    if (!cvr_obj_is_str_map (o)
    ||  s_get_str (owned, o, "id", &member.member_id)
    ||  s_get_opt (owned, o, "i", &member.instance_id)
    ||  s_get_opt (owned, o, "s", &member.service_id)
    ||  s_get_opt (owned, o, "sn", &member.service_name)
    ||  s_get_strs (owned, o, "tp", &topics, &member.topics_count)
    ||  s_get_int (o, "st", &member.session_timeout_ms)
    ||  s_get_int (o, "ja", &member.joined_at)
    ||  s_get_int (o, "lh", &member.last_heartbeat_at)
    ||  s_get_array (o, "as", &items, &member.assignment_count))
        return -1;
    member.topics = topics;
    cvr_owned_t *assignment = (cvr_owned_t *) s_keep (
        owned, (member.assignment_count + 1) * sizeof (cvr_owned_t));
    for (size_t i = 0; i < member.assignment_count; i++) {
        uint64_t partition;
        if (!s_is_tuple (&items [i], 2)
        ||  s_str (owned, &items [i].via.array.ptr [0], &assignment [i].topic)
        ||  cvr_obj_uint (&items [i].via.array.ptr [1], &partition)
        ||  partition > UINT32_MAX)
            return -1;
        assignment [i].partition = (uint32_t) partition;
    }
    member.assignment = assignment;
    return cvr_groups_restore_member (groups, group_id, &member) ? -1 : 0;
}

static int
s_read_group (cvr_groups_t *groups, msgpack_zone *owned, const msgpack_object *o)
{
    const char *group_id, *assignor;
    int64_t generation;
    const msgpack_object *members, *fenced;
    size_t members_count, fenced_count, offsets_count;
    cvr_offset_t *offsets;
    if (!cvr_obj_is_str_map (o)
    ||  s_get_str (owned, o, "id", &group_id)
    ||  s_get_int (o, "ge", &generation)
    ||  s_get_str (owned, o, "a", &assignor)
    ||  s_get_array (o, "mb", &members, &members_count)
    ||  s_get_array (o, "fe", &fenced, &fenced_count)
    ||  s_get_offsets (owned, o, "of", &offsets, &offsets_count)
    ||  cvr_groups_restore_group (groups, group_id, generation, assignor))
        return -1;
    for (size_t i = 0; i < members_count; i++)
        if (s_read_member (groups, owned, group_id, &members [i]))
            return -1;
    for (size_t i = 0; i < fenced_count; i++) {
        const char *member_id;
        if (s_str (owned, &fenced [i], &member_id)
        ||  cvr_groups_restore_fenced (groups, group_id, member_id))
            return -1;
    }
    for (size_t i = 0; i < offsets_count; i++)
        if (cvr_groups_restore_offset (groups, group_id, &offsets [i]))
            return -1;
    return 0;
}

static int
s_read_groups (cvr_groups_t *groups, msgpack_zone *owned, const msgpack_object *root)
{
    const msgpack_object *items;
    size_t count;
    uint64_t rebalances, members_expired;
    if (s_get_array (root, "gr", &items, &count)
    ||  s_get_uint (root, "rb", &rebalances)
    ||  s_get_uint (root, "mx", &members_expired))
        return -1;
    for (size_t i = 0; i < count; i++) {
        int rc = s_read_group (groups, owned, &items [i]);
        //  One group's strings at a time, not the whole snapshot's.
        msgpack_zone_clear (owned);
        if (rc)
            return -1;
    }
    if (s_get_array (root, "dt", &items, &count))
        return -1;
    for (size_t i = 0; i < count; i++) {
        const char *group_id, *reason;
        if (!s_is_tuple (&items [i], 2)
        ||  s_str (owned, &items [i].via.array.ptr [0], &group_id)
        ||  s_str (owned, &items [i].via.array.ptr [1], &reason)
        ||  cvr_groups_restore_dirty (groups, group_id, reason))
            return -1;
    }
    cvr_groups_restore_counters (groups, rebalances, members_expired);
    return 0;
}

cvr_state_t *
cvr_codec_read_state (const void *data, size_t size, const cvr_state_limits_t *limits)
{
    cvr_msg_t *msg = cvr_msg_decode (data, size);
    if (!msg)
        return NULL;
    const msgpack_object *root = cvr_msg_root (msg);
    uint64_t version;
    cvr_state_t *state = cvr_state_new (limits);
    msgpack_zone owned;
    bool ok = msgpack_zone_init (&owned, MSGPACK_ZONE_CHUNK_SIZE);
    assert (ok);
    (void) ok;
    if (!cvr_obj_is_str_map (root)
    ||  s_get_uint (root, "v", &version) || version != S_SNAPSHOT_VERSION
    ||  s_read_services (cvr_state_registry (state), &owned, root)
    ||  s_read_topics (cvr_state_groups (state), &owned, root)
    ||  s_read_groups (cvr_state_groups (state), &owned, root))
        cvr_state_destroy (&state);
    msgpack_zone_destroy (&owned);
    cvr_msg_destroy (&msg);
    return state;
}
