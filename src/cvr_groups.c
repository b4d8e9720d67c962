/*  cvr_groups.c: topics, groups, members, rebalances and offsets. */
#include "cvr_groups.h"
#include "cvr_assignor.h"
#include "cvr_deadlines.h"
#include "cvr_links.h"

#define CVR_FENCED_MAX 1000     //  fenced ids remembered per group (section 10)

typedef struct {
    char *name;                 //  owned
    uint32_t partitions;
} s_topic_t;

typedef struct {
    const s_topic_t *topic;     //  borrowed from the topic table, which
    uint32_t partition;         //  never drops a topic
} s_owned_t;

typedef struct _s_group_t s_group_t;

typedef struct {
    char *member_id;            //  owned strings from here
    char *instance_id;          //  NULL: dynamic member
    char *service_id;           //  NULL: not linked to a service
    char *service_name;         //  NULL
    char *key;                  //  "group_id/member_id": sessions, service index
    char **topics;              //  subscriptions, sorted and unique
    size_t topics_count;
    int64_t session_timeout_ms;
    int64_t joined_at;
    int64_t last_heartbeat_at;  //  soft state: last join or group heartbeat
    s_owned_t *assignment;      //  sorted by topic name, then partition
    size_t assignment_count;
    cvr_link_t service_link;    //  in by_service, when linked to a service
} s_member_t;

//  One topic a group's members subscribe to: how many of them, and the
//  group's place under the topic in by_topic.
typedef struct {
    size_t members;
    cvr_link_t link;
} s_subscription_t;

struct _s_group_t {
    char *group_id;             //  owned
    int64_t generation;         //  0 until the first rebalance
    char *assignor;             //  owned name
    zhashx_t *members;          //  member_id -> s_member_t, owned
    zhashx_t *instances;        //  instance_id -> s_member_t, borrowed
    zhashx_t *subscriptions;    //  topic -> s_subscription_t, owned
    zhashx_t *fenced;           //  fenced member ids (set)
    zlistx_t *fenced_order;     //  the same ids, oldest first, owned strings
    zhashx_t *offsets;          //  "topic/partition" -> int64_t *, owned
    bool dirty;                 //  waiting for its rebalance
    char reason [128];          //  why, as comma-separated kinds
};

struct _cvr_groups_t {
    zhashx_t *topics;           //  name -> s_topic_t, owned
    zhashx_t *groups;           //  group_id -> s_group_t, owned
    cvr_links_t *by_topic;      //  topic -> groups subscribed to it, borrowed
    cvr_links_t *by_service;    //  service_id -> linked members, borrowed
    cvr_deadlines_t *sessions;  //  member key -> session deadline
    zlistx_t *dirty;            //  groups waiting for a rebalance, borrowed
    cvr_groups_limits_t limits;
    size_t members;             //  members in all groups
    uint64_t rebalances;        //  generations made
    uint64_t members_expired;   //  members removed by a session or a lease
    char expired [2][256];      //  group and member id of next_expired
};

//  --------------------------------------------------------------------------
//  Construction

static void
s_topic_destroy (void **item)
{
    s_topic_t *topic = (s_topic_t *) *item;
    free (topic->name);
    free (topic);
    *item = NULL;
}

static void
s_member_destroy (void **item)
{
    s_member_t *member = (s_member_t *) *item;
    free (member->member_id);
    free (member->instance_id);
    free (member->service_id);
    free (member->service_name);
    free (member->key);
    for (size_t i = 0; i < member->topics_count; i++)
        free (member->topics [i]);
    free (member->topics);
    free (member->assignment);
    free (member);
    *item = NULL;
}

static void
s_group_destroy (void **item)
{
    s_group_t *group = (s_group_t *) *item;
    zhashx_destroy (&group->instances);
    zhashx_destroy (&group->members);
    zhashx_destroy (&group->subscriptions);
    zhashx_destroy (&group->fenced);
    zlistx_destroy (&group->fenced_order);
    zhashx_destroy (&group->offsets);
    free (group->group_id);
    free (group->assignor);
    free (group);
    *item = NULL;
}

static s_group_t *
s_group_new (const char *group_id, const char *assignor)
{
    s_group_t *group = (s_group_t *) zmalloc (sizeof (s_group_t));
    group->group_id = strdup (group_id);
    group->assignor = strdup (assignor);
    group->members = zhashx_new ();
    zhashx_set_destructor (group->members, s_member_destroy);
    group->instances = zhashx_new ();
    group->subscriptions = zhashx_new ();
    zhashx_set_destructor (group->subscriptions, (zhashx_destructor_fn *) zstr_free);
    group->fenced = zhashx_new ();
    group->fenced_order = zlistx_new ();
    zlistx_set_destructor (group->fenced_order, (zlistx_destructor_fn *) zstr_free);
    group->offsets = zhashx_new ();
    zhashx_set_destructor (group->offsets, (zhashx_destructor_fn *) zstr_free);
    return group;
}

cvr_groups_t *
cvr_groups_new (const cvr_groups_limits_t *limits)
{
    cvr_groups_t *self = (cvr_groups_t *) zmalloc (sizeof (cvr_groups_t));
    self->topics = zhashx_new ();
    zhashx_set_destructor (self->topics, s_topic_destroy);
    self->groups = zhashx_new ();
    zhashx_set_destructor (self->groups, s_group_destroy);
    self->by_topic = cvr_links_new ();
    self->by_service = cvr_links_new ();
    self->sessions = cvr_deadlines_new ();
    self->dirty = zlistx_new ();
    self->limits = *limits;
    return self;
}

void
cvr_groups_destroy (cvr_groups_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_groups_t *self = *self_p;
    zlistx_destroy (&self->dirty);
    cvr_deadlines_destroy (&self->sessions);
    cvr_links_destroy (&self->by_service);
    cvr_links_destroy (&self->by_topic);
    zhashx_destroy (&self->groups);
    zhashx_destroy (&self->topics);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Events

static void
s_root (const s_group_t *group, char *root, size_t size)
{
    snprintf (root, size, "group/%s", group->group_id);
}

static void
s_write_assignment (cvr_wr_t *w, const s_member_t *member)
{
    cvr_wr_array (w);
    for (size_t i = 0; i < member->assignment_count; i++) {
        cvr_wr_array (w);
        cvr_wr_str (w, member->assignment [i].topic->name);
        cvr_wr_uint (w, member->assignment [i].partition);
        cvr_wr_close (w);
    }
    cvr_wr_close (w);
}

//  The generation a change produces: the next one when the group will
//  rebalance, else the current one.
static int64_t
s_pending_generation (const s_group_t *group)
{
    return group->dirty ? group->generation + 1 : group->generation;
}

static void
s_publish_membership (cvr_effects_t *effects, const s_group_t *group, const char *type,
                      const char *member_id, int64_t generation, int64_t now)
{
    if (!effects)
        return;
    char root [256];
    s_root (group, root, sizeof (root));
    cvr_wr_t *body = cvr_effects_add (effects, root, "membership", type, now);
    cvr_wr_kstr (body, "member_id", member_id);
    cvr_wr_kint (body, "generation", generation);
}

static int
s_cmp_str (const void *a, const void *b)
{
    return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static int
s_cmp_member_id (const void *a, const void *b)
{
    return strcmp ((*(const s_member_t * const *) a)->member_id,
                   (*(const s_member_t * const *) b)->member_id);
}

static int
s_cmp_group_id (const void *a, const void *b)
{
    return strcmp ((*(const s_group_t * const *) a)->group_id,
                   (*(const s_group_t * const *) b)->group_id);
}

//  The members sorted by id, for deterministic output. Caller frees.
static s_member_t **
s_members_sorted (s_group_t *group, size_t *count)
{
    *count = zhashx_size (group->members);
    s_member_t **members = (s_member_t **) malloc ((*count + 1) * sizeof (s_member_t *));
    assert (members);
    size_t i = 0;
    for (s_member_t *m = (s_member_t *) zhashx_first (group->members); m;
         m = (s_member_t *) zhashx_next (group->members))
        members [i++] = m;
    qsort (members, *count, sizeof (s_member_t *), s_cmp_member_id);
    return members;
}

static void
s_publish_assignment (cvr_effects_t *effects, s_group_t *group, const char *reason,
                      int64_t now)
{
    if (!effects)
        return;
    char root [256];
    s_root (group, root, sizeof (root));
    cvr_wr_t *body = cvr_effects_add (effects, root, "assignment", "assignment", now);
    cvr_wr_kint (body, "generation", group->generation);
    cvr_wr_kstr (body, "assignor", group->assignor);
    cvr_wr_str (body, "assignments");
    cvr_wr_map (body);
    size_t count;
    s_member_t **members = s_members_sorted (group, &count);
    for (size_t i = 0; i < count; i++) {
        cvr_wr_str (body, members [i]->member_id);
        s_write_assignment (body, members [i]);
    }
    free (members);
    cvr_wr_close (body);
    cvr_wr_kstr (body, "reason", reason);
}

static void
s_publish_topic (cvr_effects_t *effects, const s_topic_t *topic, int64_t now)
{
    if (!effects)
        return;
    char root [256];
    snprintf (root, sizeof (root), "topic/%s", topic->name);
    cvr_wr_t *body = cvr_effects_add (effects, root, "changed", "changed", now);
    cvr_wr_kuint (body, "partitions", topic->partitions);
}

//  --------------------------------------------------------------------------
//  Membership bookkeeping

static void
s_mark_dirty (cvr_groups_t *self, s_group_t *group, const char *reason)
{
    if (!group->dirty) {
        group->dirty = true;
        group->reason [0] = 0;
        zlistx_add_end (self->dirty, group);
    }
    if (!strstr (group->reason, reason)) {
        size_t len = strlen (group->reason);
        snprintf (group->reason + len, sizeof (group->reason) - len, "%s%s",
                  len ? "," : "", reason);
    }
}

static void
s_clean (cvr_groups_t *self, s_group_t *group)
{
    if (!group->dirty)
        return;
    group->dirty = false;
    void *handle = zlistx_find (self->dirty, group);
    if (handle)
        zlistx_delete (self->dirty, handle);
}

//  Adds (or takes away) the member's subscriptions from the group's topic
//  counts and the topic -> groups index.
static void
s_subscribe (cvr_groups_t *self, s_group_t *group, s_member_t *member, bool add)
{
    for (size_t i = 0; i < member->topics_count; i++) {
        const char *topic = member->topics [i];
        s_subscription_t *sub = (s_subscription_t *) zhashx_lookup (group->subscriptions, topic);
        if (add) {
            if (!sub) {
                sub = (s_subscription_t *) zmalloc (sizeof (s_subscription_t));
                zhashx_insert (group->subscriptions, topic, sub);
                cvr_links_add (self->by_topic, topic, &sub->link, group);
            }
            sub->members++;
        }
        else
        if (sub && --sub->members == 0) {
            cvr_links_remove (self->by_topic, &sub->link);
            zhashx_delete (group->subscriptions, topic);
        }
    }
}

static void
s_renew_session (cvr_groups_t *self, s_member_t *member, int64_t now)
{
    member->last_heartbeat_at = now;
    cvr_deadlines_set (self->sessions, member->key, now + member->session_timeout_ms);
}

static void
s_add_member (cvr_groups_t *self, s_group_t *group, s_member_t *member)
{
    zhashx_insert (group->members, member->member_id, member);
    if (member->instance_id)
        zhashx_update (group->instances, member->instance_id, member);
    if (member->service_id)
        cvr_links_add (self->by_service, member->service_id, &member->service_link, member);
    s_subscribe (self, group, member, true);
    self->members++;
}

//  Takes a member out of every index and frees it.
static void
s_drop_member (cvr_groups_t *self, s_group_t *group, s_member_t *member)
{
    s_subscribe (self, group, member, false);
    if (member->instance_id
    &&  zhashx_lookup (group->instances, member->instance_id) == member)
        zhashx_delete (group->instances, member->instance_id);
    cvr_links_remove (self->by_service, &member->service_link);
    cvr_deadlines_remove (self->sessions, member->key);
    self->members--;
    char *member_id = strdup (member->member_id);
    zhashx_delete (group->members, member_id);
    free (member_id);
}

static void
s_fence (s_group_t *group, const char *member_id)
{
    zhashx_update (group->fenced, member_id, (void *) 1);
    zlistx_add_end (group->fenced_order, strdup (member_id));
    //  Forget the oldest beyond the bound (section 10).
    while (zlistx_size (group->fenced_order) > CVR_FENCED_MAX) {
        char *oldest = (char *) zlistx_first (group->fenced_order);
        zhashx_delete (group->fenced, oldest);
        zlistx_delete (group->fenced_order, zlistx_cursor (group->fenced_order));
    }
}

//  The join's topics, sorted and unique; caller frees the array (the
//  strings are borrowed from the join).
static const char **
s_join_topics (const cvr_join_t *join, size_t *count)
{
    const char **topics = (const char **) malloc (join->topics_count * sizeof (char *));
    assert (topics);
    memcpy (topics, join->topics, join->topics_count * sizeof (char *));
    qsort (topics, join->topics_count, sizeof (char *), s_cmp_str);
    *count = 0;
    for (size_t i = 0; i < join->topics_count; i++)
        if (*count == 0 || strcmp (topics [*count - 1], topics [i]))
            topics [(*count)++] = topics [i];
    return topics;
}

static bool
s_same_topics (const s_member_t *member, const char **topics, size_t count)
{
    if (member->topics_count != count)
        return false;
    for (size_t i = 0; i < count; i++)
        if (strcmp (member->topics [i], topics [i]))
            return false;
    return true;
}

static void
s_set_topics (s_member_t *member, const char **topics, size_t count)
{
    for (size_t i = 0; i < member->topics_count; i++)
        free (member->topics [i]);
    free (member->topics);
    member->topics = (char **) zmalloc ((count ? count : 1) * sizeof (char *));
    for (size_t i = 0; i < count; i++)
        member->topics [i] = strdup (topics [i]);
    member->topics_count = count;
}

static char *
s_strdup (const char *s)
{
    return s ? strdup (s) : NULL;
}

static s_member_t *
s_member_new (const s_group_t *group, const cvr_join_t *join, const char **topics,
              size_t count, int64_t now)
{
    s_member_t *member = (s_member_t *) zmalloc (sizeof (s_member_t));
    member->member_id = strdup (join->member_id);
    member->instance_id = s_strdup (join->instance_id);
    member->service_id = s_strdup (join->service_id);
    member->service_name = s_strdup (join->service_name);
    member->key = zsys_sprintf ("%s/%s", group->group_id, join->member_id);
    member->session_timeout_ms = join->session_timeout_ms;
    member->joined_at = now;
    s_set_topics (member, topics, count);
    return member;
}

//  --------------------------------------------------------------------------
//  Commands

static s_topic_t *
s_topic (cvr_groups_t *self, const char *name)
{
    return (s_topic_t *) zhashx_lookup (self->topics, name);
}

static s_topic_t *
s_topic_create (cvr_groups_t *self, const char *name, uint32_t partitions,
                int64_t now, cvr_effects_t *effects)
{
    s_topic_t *topic = (s_topic_t *) zmalloc (sizeof (s_topic_t));
    topic->name = strdup (name);
    topic->partitions = partitions;
    zhashx_insert (self->topics, name, topic);
    s_publish_topic (effects, topic, now);
    return topic;
}

cvr_err_t
cvr_groups_create_topic (cvr_groups_t *self, const char *name, int64_t partitions,
                         int64_t now, cvr_effects_t *effects)
{
    s_topic_t *topic = s_topic (self, name);
    if (!topic) {
        s_topic_create (self, name, (uint32_t) partitions, now, effects);
        return CVR_OK;
    }
    if (partitions < topic->partitions)
        return CVR_CONFLICT;
    if (partitions == topic->partitions)
        return CVR_OK;
    topic->partitions = (uint32_t) partitions;
    s_publish_topic (effects, topic, now);
    //  Only the groups subscribed to it: no scan of the others.
    size_t count;
    void *const *groups = cvr_links_items (self->by_topic, name, &count);
    if (groups) {
        //  Sorted, so the rebalances happen in the same order everywhere.
        s_group_t **sorted = (s_group_t **) malloc (count * sizeof (s_group_t *));
        assert (sorted);
        memcpy (sorted, groups, count * sizeof (s_group_t *));
        qsort (sorted, count, sizeof (s_group_t *), s_cmp_group_id);
        for (size_t i = 0; i < count; i++)
            s_mark_dirty (self, sorted [i], "topic grown");
        free (sorted);
    }
    return CVR_OK;
}

cvr_err_t
cvr_groups_join (cvr_groups_t *self, const cvr_join_t *join, int64_t now,
                 cvr_effects_t *effects)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, join->group_id);
    if (group && zhashx_lookup (group->fenced, join->member_id))
        return CVR_UNKNOWN_MEMBER;
    //  State errors in the order of section 10, all before any change.
    for (size_t i = 0; i < join->topics_count; i++)
        if (!s_topic (self, join->topics [i]) && self->limits.default_partitions == 0)
            return CVR_NOT_FOUND;
    size_t members = group ? zhashx_size (group->members) : 0;
    if (group && join->assignor && members > 0 && strcmp (group->assignor, join->assignor))
        return CVR_CONFLICT;
    s_member_t *existing = group
        ? (s_member_t *) zhashx_lookup (group->members, join->member_id) : NULL;
    s_member_t *holder = group && join->instance_id && !existing
        ? (s_member_t *) zhashx_lookup (group->instances, join->instance_id) : NULL;
    if (!group && zhashx_size (self->groups) >= self->limits.max_groups)
        return CVR_LIMIT_EXCEEDED;
    if (!existing && !holder && members >= self->limits.max_members)
        return CVR_LIMIT_EXCEEDED;

    if (!group) {
        group = s_group_new (join->group_id, join->assignor ? join->assignor : "sticky");
        zhashx_insert (self->groups, join->group_id, group);
    }
    else
    if (join->assignor && members == 0 && strcmp (group->assignor, join->assignor)) {
        free (group->assignor);
        group->assignor = strdup (join->assignor);
    }
    for (size_t i = 0; i < join->topics_count; i++)
        if (!s_topic (self, join->topics [i]))
            s_topic_create (self, join->topics [i], self->limits.default_partitions,
                            now, effects);
    size_t count;
    const char **topics = s_join_topics (join, &count);

    if (existing) {
        existing->session_timeout_ms = join->session_timeout_ms;
        s_renew_session (self, existing, now);
        if (!s_same_topics (existing, topics, count)) {
            s_subscribe (self, group, existing, false);
            s_set_topics (existing, topics, count);
            s_subscribe (self, group, existing, true);
            s_mark_dirty (self, group, "subscription changed");
            s_publish_membership (effects, group, "joined", existing->member_id,
                                  s_pending_generation (group), now);
        }
        free (topics);
        return CVR_OK;
    }
    s_member_t *member = s_member_new (group, join, topics, count, now);
    if (holder) {
        //  Static replacement: the new member takes the old one's place and
        //  partitions; the old id is fenced for good.
        bool same = s_same_topics (holder, topics, count);
        member->assignment = holder->assignment;
        member->assignment_count = holder->assignment_count;
        holder->assignment = NULL;
        holder->assignment_count = 0;
        if (!same)
            s_mark_dirty (self, group, "subscription changed");
        int64_t generation = s_pending_generation (group);
        s_publish_membership (effects, group, "fenced", holder->member_id, generation, now);
        s_fence (group, holder->member_id);
        s_drop_member (self, group, holder);
        s_add_member (self, group, member);
        s_publish_membership (effects, group, "joined", member->member_id, generation, now);
        if (!group->dirty)
            s_publish_assignment (effects, group, "static member replaced", now);
    }
    else {
        s_add_member (self, group, member);
        s_mark_dirty (self, group, "member joined");
        s_publish_membership (effects, group, "joined", member->member_id,
                              s_pending_generation (group), now);
    }
    s_renew_session (self, member, now);
    free (topics);
    return CVR_OK;
}

cvr_err_t
cvr_groups_leave (cvr_groups_t *self, const char *group_id, const char *member_id,
                  bool expired, int64_t now, cvr_effects_t *effects)
{
    cvr_err_t rc = cvr_groups_check (self, group_id, member_id);
    if (rc)
        return rc;
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    s_member_t *member = (s_member_t *) zhashx_lookup (group->members, member_id);
    s_mark_dirty (self, group, expired ? "member expired" : "member left");
    s_publish_membership (effects, group, expired ? "expired" : "left", member_id,
                          s_pending_generation (group), now);
    s_drop_member (self, group, member);
    if (expired)
        self->members_expired++;
    return CVR_OK;
}

//  Partitions compare by topic name, then number.
static int
s_cmp_owned (const void *a, const void *b)
{
    const s_owned_t *x = (const s_owned_t *) a, *y = (const s_owned_t *) b;
    int rc = x->topic == y->topic ? 0 : strcmp (x->topic->name, y->topic->name);
    return rc ? rc : (x->partition > y->partition) - (x->partition < y->partition);
}

static int
s_cmp_topic_name (const void *a, const void *b)
{
    return strcmp ((*(const s_topic_t * const *) a)->name,
                   (*(const s_topic_t * const *) b)->name);
}

static int
s_find_topic (const s_topic_t **topics, size_t count, const char *name)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int rc = strcmp (topics [mid]->name, name);
        if (rc == 0)
            return (int) mid;
        if (rc < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

//  Members in Kafka's order: instance ids first, then member ids.
static int
s_cmp_kafka (const void *a, const void *b)
{
    const s_member_t *x = *(const s_member_t * const *) a;
    const s_member_t *y = *(const s_member_t * const *) b;
    if (x->instance_id && y->instance_id)
        return strcmp (x->instance_id, y->instance_id);
    if (x->instance_id || y->instance_id)
        return x->instance_id ? -1 : 1;
    return strcmp (x->member_id, y->member_id);
}

//  Runs the group's assignor over its members and gives each its new
//  partitions. Returns -1 (nothing changed) if the assignor failed.
static int
s_assign (cvr_groups_t *self, s_group_t *group)
{
    const cvr_assignor_t *assignor = cvr_assignor_find (group->assignor);
    if (!assignor)
        return -1;
    size_t ntopics = zhashx_size (group->subscriptions), i = 0;
    const s_topic_t **topics = (const s_topic_t **) malloc ((ntopics + 1) * sizeof (s_topic_t *));
    cvr_assign_topic_t *in_topics = (cvr_assign_topic_t *) malloc ((ntopics + 1) * sizeof (cvr_assign_topic_t));
    assert (topics && in_topics);
    for (void *count = zhashx_first (group->subscriptions); count;
         count = zhashx_next (group->subscriptions))
        topics [i++] = s_topic (self, (const char *) zhashx_cursor (group->subscriptions));
    qsort (topics, ntopics, sizeof (s_topic_t *), s_cmp_topic_name);
    for (i = 0; i < ntopics; i++)
        in_topics [i] = (cvr_assign_topic_t) { topics [i]->name, topics [i]->partitions };

    size_t nmembers = zhashx_size (group->members);
    s_member_t **members = (s_member_t **) malloc ((nmembers + 1) * sizeof (s_member_t *));
    cvr_assign_member_t *in_members = (cvr_assign_member_t *) zmalloc ((nmembers + 1) * sizeof (cvr_assign_member_t));
    cvr_tp_list_t *out = (cvr_tp_list_t *) zmalloc ((nmembers + 1) * sizeof (cvr_tp_list_t));
    assert (members && in_members && out);
    i = 0;
    for (s_member_t *m = (s_member_t *) zhashx_first (group->members); m;
         m = (s_member_t *) zhashx_next (group->members))
        members [i++] = m;
    qsort (members, nmembers, sizeof (s_member_t *), s_cmp_kafka);
    for (i = 0; i < nmembers; i++) {
        s_member_t *m = members [i];
        uint32_t *subscribed = (uint32_t *) malloc ((m->topics_count + 1) * sizeof (uint32_t));
        cvr_tp_t *previous = (cvr_tp_t *) malloc ((m->assignment_count + 1) * sizeof (cvr_tp_t));
        assert (subscribed && previous);
        for (size_t t = 0; t < m->topics_count; t++)
            subscribed [t] = (uint32_t) s_find_topic (topics, ntopics, m->topics [t]);
        size_t kept = 0;
        for (size_t p = 0; p < m->assignment_count; p++) {
            const s_owned_t *owned = &m->assignment [p];
            //  Only what it may still own: a subscribed topic, a partition
            //  that exists.
            int t = s_find_topic (topics, ntopics, owned->topic->name);
            bool subscribed_to = false;
            for (size_t s = 0; t >= 0 && s < m->topics_count; s++)
                subscribed_to |= subscribed [s] == (uint32_t) t;
            if (subscribed_to && owned->partition < topics [t]->partitions)
                previous [kept++] = (cvr_tp_t) { (uint32_t) t, owned->partition };
        }
        in_members [i] = (cvr_assign_member_t) {
            m->member_id, m->instance_id, subscribed, m->topics_count, previous, kept
        };
    }
    cvr_assign_input_t input = { in_topics, ntopics, in_members, nmembers };
    int rc = assignor->assign (&input, out);
    for (i = 0; i < nmembers && rc == 0; i++) {
        s_member_t *m = members [i];
        free (m->assignment);
        m->assignment_count = out [i].count;
        m->assignment = (s_owned_t *) malloc ((out [i].count + 1) * sizeof (s_owned_t));
        assert (m->assignment);
        for (size_t p = 0; p < out [i].count; p++)
            m->assignment [p] = (s_owned_t) { topics [out [i].items [p].topic],
                                              out [i].items [p].partition };
        qsort (m->assignment, m->assignment_count, sizeof (s_owned_t), s_cmp_owned);
    }
    for (i = 0; i < nmembers; i++) {
        free ((void *) in_members [i].topics);
        free ((void *) in_members [i].previous);
        cvr_tp_list_clear (&out [i]);
    }
    free (out);
    free (in_members);
    free (members);
    free (in_topics);
    free (topics);
    return rc;
}

cvr_err_t
cvr_groups_rebalance (cvr_groups_t *self, const char *group_id, int64_t now,
                      cvr_effects_t *effects)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    if (!group->dirty)
        return CVR_OK;
    if (s_assign (self, group))
        return CVR_INTERNAL;
    s_clean (self, group);
    group->generation++;
    self->rebalances++;
    s_publish_assignment (effects, group, group->reason, now);
    return CVR_OK;
}

static bool
s_owns (const s_member_t *member, const char *topic, int64_t partition)
{
    size_t lo = 0, hi = member->assignment_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const s_owned_t *owned = &member->assignment [mid];
        int rc = strcmp (owned->topic->name, topic);
        if (rc == 0)
            rc = (owned->partition > partition) - ((int64_t) owned->partition < partition);
        if (rc == 0)
            return true;
        if (rc < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

cvr_err_t
cvr_groups_commit (cvr_groups_t *self, const char *group_id, const char *member_id,
                   int64_t generation, const cvr_offset_t *offsets, size_t count)
{
    cvr_err_t rc = cvr_groups_check (self, group_id, member_id);
    if (rc)
        return rc;
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    s_member_t *member = (s_member_t *) zhashx_lookup (group->members, member_id);
    if (generation != group->generation)
        return CVR_ILLEGAL_GENERATION;
    for (size_t i = 0; i < count; i++)
        if (!s_owns (member, offsets [i].topic, offsets [i].partition))
            return CVR_NOT_OWNER;
    for (size_t i = 0; i < count; i++) {
        char key [256];
        snprintf (key, sizeof (key), "%s/%" PRId64, offsets [i].topic, offsets [i].partition);
        int64_t *value = (int64_t *) zhashx_lookup (group->offsets, key);
        if (!value) {
            value = (int64_t *) malloc (sizeof (int64_t));
            assert (value);
            zhashx_insert (group->offsets, key, value);
        }
        *value = offsets [i].offset;
    }
    return CVR_OK;
}

cvr_err_t
cvr_groups_delete (cvr_groups_t *self, const char *group_id)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    if (zhashx_size (group->members))
        return CVR_CONFLICT;
    s_clean (self, group);
    zhashx_delete (self->groups, group_id);
    return CVR_OK;
}

void
cvr_groups_remove_service (cvr_groups_t *self, const char *service_id, bool expired,
                           int64_t now, cvr_effects_t *effects)
{
    size_t count, i;
    void *const *linked = cvr_links_items (self->by_service, service_id, &count);
    if (!linked)
        return;
    //  Copy the keys: leaving changes the index being walked. Sorted, so
    //  every node removes them in the same order.
    char **keys = (char **) malloc (count * sizeof (char *));
    assert (keys);
    for (i = 0; i < count; i++)
        keys [i] = strdup (((s_member_t *) linked [i])->key);
    qsort (keys, count, sizeof (char *), s_cmp_str);
    for (i = 0; i < count; i++) {
        char *slash = strchr (keys [i], '/');
        *slash = 0;
        cvr_groups_leave (self, keys [i], slash + 1, expired, now, effects);
        free (keys [i]);
    }
    free (keys);
}

//  --------------------------------------------------------------------------
//  Soft state and queries

cvr_err_t
cvr_groups_check (cvr_groups_t *self, const char *group_id, const char *member_id)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    if (!zhashx_lookup (group->members, member_id))
        return CVR_UNKNOWN_MEMBER;
    return CVR_OK;
}

cvr_err_t
cvr_groups_heartbeat (cvr_groups_t *self, const char *group_id, const char *member_id,
                      int64_t now)
{
    cvr_err_t rc = cvr_groups_check (self, group_id, member_id);
    if (rc)
        return rc;
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    s_renew_session (self, (s_member_t *) zhashx_lookup (group->members, member_id), now);
    return CVR_OK;
}

void
cvr_groups_touch_service (cvr_groups_t *self, const char *service_id, int64_t now)
{
    size_t count;
    void *const *linked = cvr_links_items (self->by_service, service_id, &count);
    for (size_t i = 0; i < count; i++)
        s_renew_session (self, (s_member_t *) linked [i], now);
}

bool
cvr_groups_next_expired (cvr_groups_t *self, int64_t now, const char **group_id,
                         const char **member_id)
{
    const char *key;
    while ((key = cvr_deadlines_due (self->sessions, now))) {
        const char *slash = strchr (key, '/');
        snprintf (self->expired [0], sizeof (self->expired [0]), "%.*s",
                  (int) (slash - key), key);
        snprintf (self->expired [1], sizeof (self->expired [1]), "%s", slash + 1);
        if (cvr_groups_check (self, self->expired [0], self->expired [1]) == CVR_OK) {
            *group_id = self->expired [0];
            *member_id = self->expired [1];
            return true;
        }
        cvr_deadlines_remove (self->sessions, key);
    }
    return false;
}

const char *
cvr_groups_next_dirty (cvr_groups_t *self)
{
    s_group_t *group = (s_group_t *) zlistx_first (self->dirty);
    return group ? group->group_id : NULL;
}

bool
cvr_groups_is_dirty (cvr_groups_t *self, const char *group_id)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    return group && group->dirty;
}

static void
s_write_member_ids (cvr_wr_t *w, s_group_t *group)
{
    size_t count;
    s_member_t **members = s_members_sorted (group, &count);
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++)
        cvr_wr_str (w, members [i]->member_id);
    cvr_wr_close (w);
    free (members);
}

void
cvr_groups_write_join (cvr_groups_t *self, const char *group_id, const char *member_id,
                       cvr_wr_t *w)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    s_member_t *member = (s_member_t *) zhashx_lookup (group->members, member_id);
    cvr_wr_kstr (w, "group_id", group_id);
    cvr_wr_kstr (w, "member_id", member_id);
    cvr_wr_kint (w, "generation", group->generation);
    cvr_wr_str (w, "assignment");
    s_write_assignment (w, member);
    cvr_wr_str (w, "members");
    s_write_member_ids (w, group);
}

void
cvr_groups_write_heartbeat (cvr_groups_t *self, const char *group_id,
                            const char *member_id, int64_t generation, cvr_wr_t *w)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    cvr_wr_kint (w, "generation", group->generation);
    if (generation != group->generation) {
        cvr_wr_str (w, "assignment");
        s_write_assignment (w, (s_member_t *) zhashx_lookup (group->members, member_id));
    }
}

static void
s_write_group_topics (cvr_groups_t *self, s_group_t *group, cvr_wr_t *w)
{
    size_t count = zhashx_size (group->subscriptions), i = 0;
    const s_topic_t **topics = (const s_topic_t **) malloc ((count + 1) * sizeof (s_topic_t *));
    assert (topics);
    for (void *n = zhashx_first (group->subscriptions); n; n = zhashx_next (group->subscriptions))
        topics [i++] = s_topic (self, (const char *) zhashx_cursor (group->subscriptions));
    qsort (topics, count, sizeof (s_topic_t *), s_cmp_topic_name);
    cvr_wr_map (w);
    for (i = 0; i < count; i++)
        cvr_wr_kuint (w, topics [i]->name, topics [i]->partitions);
    cvr_wr_close (w);
    free (topics);
}

cvr_err_t
cvr_groups_write_group (cvr_groups_t *self, const char *group_id, cvr_wr_t *w)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    cvr_wr_str (w, "group");
    cvr_wr_map (w);
    cvr_wr_kstr (w, "group_id", group->group_id);
    cvr_wr_kint (w, "generation", group->generation);
    cvr_wr_kstr (w, "assignor", group->assignor);
    cvr_wr_str (w, "topics");
    s_write_group_topics (self, group, w);
    cvr_wr_str (w, "members");
    cvr_wr_array (w);
    size_t count;
    s_member_t **members = s_members_sorted (group, &count);
    for (size_t i = 0; i < count; i++) {
        s_member_t *m = members [i];
        cvr_wr_map (w);
        cvr_wr_kstr (w, "member_id", m->member_id);
        cvr_wr_kstr (w, "service_name", m->service_name);
        cvr_wr_kstr (w, "service_id", m->service_id);
        cvr_wr_kstr (w, "instance_id", m->instance_id);
        cvr_wr_str (w, "topics");
        cvr_wr_array (w);
        for (size_t t = 0; t < m->topics_count; t++)
            cvr_wr_str (w, m->topics [t]);
        cvr_wr_close (w);
        cvr_wr_str (w, "assignment");
        s_write_assignment (w, m);
        cvr_wr_kint (w, "joined_at", m->joined_at);
        cvr_wr_kint (w, "last_heartbeat_at", m->last_heartbeat_at);
        cvr_wr_kint (w, "session_timeout_ms", m->session_timeout_ms);
        cvr_wr_close (w);
    }
    free (members);
    cvr_wr_close (w);
    cvr_wr_close (w);
    return CVR_OK;
}

void
cvr_groups_write_list (cvr_groups_t *self, cvr_wr_t *w)
{
    size_t count = zhashx_size (self->groups), i = 0;
    s_group_t **groups = (s_group_t **) malloc ((count + 1) * sizeof (s_group_t *));
    assert (groups);
    for (s_group_t *g = (s_group_t *) zhashx_first (self->groups); g;
         g = (s_group_t *) zhashx_next (self->groups))
        groups [i++] = g;
    qsort (groups, count, sizeof (s_group_t *), s_cmp_group_id);
    cvr_wr_str (w, "groups");
    cvr_wr_array (w);
    for (i = 0; i < count; i++) {
        cvr_wr_map (w);
        cvr_wr_kstr (w, "group_id", groups [i]->group_id);
        cvr_wr_kint (w, "generation", groups [i]->generation);
        cvr_wr_kuint (w, "members", zhashx_size (groups [i]->members));
        cvr_wr_close (w);
    }
    cvr_wr_close (w);
    free (groups);
}

void
cvr_groups_write_topics (cvr_groups_t *self, cvr_wr_t *w)
{
    size_t count = zhashx_size (self->topics), i = 0;
    const s_topic_t **topics = (const s_topic_t **) malloc ((count + 1) * sizeof (s_topic_t *));
    assert (topics);
    for (s_topic_t *t = (s_topic_t *) zhashx_first (self->topics); t;
         t = (s_topic_t *) zhashx_next (self->topics))
        topics [i++] = t;
    qsort (topics, count, sizeof (s_topic_t *), s_cmp_topic_name);
    cvr_wr_str (w, "topics");
    cvr_wr_map (w);
    for (i = 0; i < count; i++)
        cvr_wr_kuint (w, topics [i]->name, topics [i]->partitions);
    cvr_wr_close (w);
    free (topics);
}

typedef struct {
    const char *key;            //  "topic/partition", borrowed
    size_t topic_len;
    int64_t partition;
    int64_t offset;
} s_committed_t;

static int
s_cmp_committed (const void *a, const void *b)
{
    const s_committed_t *x = (const s_committed_t *) a, *y = (const s_committed_t *) b;
    size_t len = x->topic_len < y->topic_len ? x->topic_len : y->topic_len;
    int rc = memcmp (x->key, y->key, len);
    if (rc == 0)
        rc = (x->topic_len > y->topic_len) - (x->topic_len < y->topic_len);
    return rc ? rc : (x->partition > y->partition) - (x->partition < y->partition);
}

static void
s_write_offset (cvr_wr_t *w, const char *topic, size_t topic_len, int64_t partition,
                int64_t offset)
{
    cvr_wr_array (w);
    cvr_wr_strn (w, topic, topic_len);
    cvr_wr_int (w, partition);
    cvr_wr_int (w, offset);
    cvr_wr_close (w);
}

cvr_err_t
cvr_groups_write_offsets (cvr_groups_t *self, const char *group_id,
                          const cvr_offset_t *partitions, size_t count, bool all,
                          cvr_wr_t *w)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    cvr_wr_str (w, "offsets");
    cvr_wr_array (w);
    if (all) {
        size_t n = zhashx_size (group->offsets), i = 0;
        s_committed_t *committed = (s_committed_t *) malloc ((n + 1) * sizeof (s_committed_t));
        assert (committed);
        for (int64_t *value = (int64_t *) zhashx_first (group->offsets); value;
             value = (int64_t *) zhashx_next (group->offsets)) {
            const char *key = (const char *) zhashx_cursor (group->offsets);
            const char *slash = strrchr (key, '/');
            committed [i++] = (s_committed_t) { key, (size_t) (slash - key),
                                                atoll (slash + 1), *value };
        }
        qsort (committed, n, sizeof (s_committed_t), s_cmp_committed);
        for (i = 0; i < n; i++)
            s_write_offset (w, committed [i].key, committed [i].topic_len,
                            committed [i].partition, committed [i].offset);
        free (committed);
    }
    else
        for (size_t i = 0; i < count; i++) {
            char key [256];
            snprintf (key, sizeof (key), "%s/%" PRId64, partitions [i].topic,
                      partitions [i].partition);
            int64_t *value = (int64_t *) zhashx_lookup (group->offsets, key);
            s_write_offset (w, partitions [i].topic, strlen (partitions [i].topic),
                            partitions [i].partition, value ? *value : -1);
        }
    cvr_wr_close (w);
    return CVR_OK;
}

uint32_t
cvr_groups_topic_partitions (cvr_groups_t *self, const char *topic)
{
    s_topic_t *t = s_topic (self, topic);
    return t ? t->partitions : 0;
}

size_t
cvr_groups_count (cvr_groups_t *self)
{
    return zhashx_size (self->groups);
}

size_t
cvr_groups_members (cvr_groups_t *self)
{
    return self->members;
}

size_t
cvr_groups_topics (cvr_groups_t *self)
{
    return zhashx_size (self->topics);
}

uint64_t
cvr_groups_rebalances (cvr_groups_t *self)
{
    return self->rebalances;
}

uint64_t
cvr_groups_members_expired (cvr_groups_t *self)
{
    return self->members_expired;
}

//  --------------------------------------------------------------------------
//  Snapshots

//  The keys of a hash table, sorted. Caller frees the array.
static const char **
s_keys_sorted (zhashx_t *table, size_t *count)
{
    *count = zhashx_size (table);
    const char **keys = (const char **) malloc ((*count + 1) * sizeof (char *));
    assert (keys);
    size_t i = 0;
    for (void *item = zhashx_first (table); item; item = zhashx_next (table))
        keys [i++] = (const char *) zhashx_cursor (table);
    qsort (keys, *count, sizeof (char *), s_cmp_str);
    return keys;
}

const char **
cvr_groups_topic_names (cvr_groups_t *self, size_t *count)
{
    return s_keys_sorted (self->topics, count);
}

const char **
cvr_groups_ids (cvr_groups_t *self, size_t *count)
{
    return s_keys_sorted (self->groups, count);
}

const char **
cvr_groups_dirty_ids (cvr_groups_t *self, size_t *count)
{
    *count = zlistx_size (self->dirty);
    const char **ids = (const char **) malloc ((*count + 1) * sizeof (char *));
    assert (ids);
    size_t i = 0;
    for (s_group_t *g = (s_group_t *) zlistx_first (self->dirty); g;
         g = (s_group_t *) zlistx_next (self->dirty))
        ids [i++] = g->group_id;
    return ids;
}

cvr_err_t
cvr_groups_info (cvr_groups_t *self, const char *group_id, int64_t *generation,
                 const char **assignor, const char **reason)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    *generation = group->generation;
    *assignor = group->assignor;
    *reason = group->dirty ? group->reason : NULL;
    return CVR_OK;
}

cvr_member_record_t *
cvr_groups_member_records (cvr_groups_t *self, const char *group_id, size_t *count)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return NULL;
    s_member_t **members = s_members_sorted (group, count);
    size_t owned = 0;
    for (size_t i = 0; i < *count; i++)
        owned += members [i]->assignment_count;
    //  One block: the records, then every assignment after them.
    cvr_member_record_t *records = (cvr_member_record_t *) malloc (
        (*count + 1) * sizeof (cvr_member_record_t) + owned * sizeof (cvr_owned_t));
    assert (records);
    cvr_owned_t *partitions = (cvr_owned_t *) (records + *count + 1);
    for (size_t i = 0; i < *count; i++) {
        const s_member_t *m = members [i];
        records [i] = (cvr_member_record_t) {
            m->member_id, m->instance_id, m->service_id, m->service_name,
            (const char *const *) m->topics, m->topics_count, m->session_timeout_ms,
            m->joined_at, m->last_heartbeat_at, partitions, m->assignment_count
        };
        for (size_t p = 0; p < m->assignment_count; p++)
            *partitions++ = (cvr_owned_t) { m->assignment [p].topic->name,
                                                m->assignment [p].partition };
    }
    free (members);
    return records;
}

const char **
cvr_groups_fenced (cvr_groups_t *self, const char *group_id, size_t *count)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return NULL;
    *count = zlistx_size (group->fenced_order);
    const char **ids = (const char **) malloc ((*count + 1) * sizeof (char *));
    assert (ids);
    size_t i = 0;
    for (const char *id = (const char *) zlistx_first (group->fenced_order); id;
         id = (const char *) zlistx_next (group->fenced_order))
        ids [i++] = id;
    return ids;
}

cvr_offset_t *
cvr_groups_committed (cvr_groups_t *self, const char *group_id, size_t *count)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return NULL;
    size_t n = zhashx_size (group->offsets), i = 0, names = 0;
    s_committed_t *committed = (s_committed_t *) malloc ((n + 1) * sizeof (s_committed_t));
    assert (committed);
    for (int64_t *value = (int64_t *) zhashx_first (group->offsets); value;
         value = (int64_t *) zhashx_next (group->offsets)) {
        const char *key = (const char *) zhashx_cursor (group->offsets);
        const char *slash = strrchr (key, '/');
        committed [i++] = (s_committed_t) { key, (size_t) (slash - key),
                                            atoll (slash + 1), *value };
        names += (size_t) (slash - key) + 1;
    }
    qsort (committed, n, sizeof (s_committed_t), s_cmp_committed);
    //  One block: the offsets, then their topic names.
    cvr_offset_t *offsets = (cvr_offset_t *) malloc ((n + 1) * sizeof (cvr_offset_t) + names);
    assert (offsets);
    char *name = (char *) (offsets + n + 1);
    for (i = 0; i < n; i++) {
        memcpy (name, committed [i].key, committed [i].topic_len);
        name [committed [i].topic_len] = 0;
        offsets [i] = (cvr_offset_t) { name, committed [i].partition, committed [i].offset };
        name += committed [i].topic_len + 1;
    }
    free (committed);
    *count = n;
    return offsets;
}

cvr_err_t
cvr_groups_restore_topic (cvr_groups_t *self, const char *name, uint32_t partitions)
{
    if (s_topic (self, name))
        return CVR_CONFLICT;
    s_topic_t *topic = (s_topic_t *) zmalloc (sizeof (s_topic_t));
    topic->name = strdup (name);
    topic->partitions = partitions;
    zhashx_insert (self->topics, name, topic);
    return CVR_OK;
}

cvr_err_t
cvr_groups_restore_group (cvr_groups_t *self, const char *group_id, int64_t generation,
                          const char *assignor)
{
    if (zhashx_lookup (self->groups, group_id))
        return CVR_CONFLICT;
    s_group_t *group = s_group_new (group_id, assignor);
    group->generation = generation;
    zhashx_insert (self->groups, group_id, group);
    return CVR_OK;
}

cvr_err_t
cvr_groups_restore_member (cvr_groups_t *self, const char *group_id,
                           const cvr_member_record_t *record)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    if (zhashx_lookup (group->members, record->member_id)
    ||  (record->instance_id && zhashx_lookup (group->instances, record->instance_id)))
        return CVR_CONFLICT;
    //  What the rest relies on: topics that exist (the assignor looks
    //  them up), sorted and unique lists (compared and searched as such),
    //  a session deadline that fits.
    for (size_t i = 0; i < record->topics_count; i++)
        if (!s_topic (self, record->topics [i])
        ||  (i > 0 && strcmp (record->topics [i - 1], record->topics [i]) >= 0))
            return CVR_BAD_REQUEST;
    s_owned_t *assignment = (s_owned_t *) malloc (
        (record->assignment_count + 1) * sizeof (s_owned_t));
    assert (assignment);
    for (size_t i = 0; i < record->assignment_count; i++) {
        assignment [i].topic = s_topic (self, record->assignment [i].topic);
        assignment [i].partition = record->assignment [i].partition;
        if (!assignment [i].topic
        ||  (i > 0 && s_cmp_owned (&assignment [i - 1], &assignment [i]) >= 0)) {
            free (assignment);
            return CVR_BAD_REQUEST;
        }
    }
    int64_t deadline;
    if (__builtin_add_overflow (record->last_heartbeat_at, record->session_timeout_ms,
                                &deadline)) {
        free (assignment);
        return CVR_BAD_REQUEST;
    }
    cvr_join_t join = { .member_id = record->member_id,
                        .instance_id = record->instance_id,
                        .service_id = record->service_id,
                        .service_name = record->service_name,
                        .session_timeout_ms = record->session_timeout_ms };
    s_member_t *member = s_member_new (group, &join, (const char **) record->topics,
                                       record->topics_count, record->joined_at);
    member->assignment = assignment;
    member->assignment_count = record->assignment_count;
    s_add_member (self, group, member);
    s_renew_session (self, member, record->last_heartbeat_at);
    return CVR_OK;
}

cvr_err_t
cvr_groups_restore_fenced (cvr_groups_t *self, const char *group_id,
                           const char *member_id)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    if (zhashx_lookup (group->fenced, member_id))
        return CVR_CONFLICT;
    if (zlistx_size (group->fenced_order) >= CVR_FENCED_MAX)
        return CVR_BAD_REQUEST;     //  more than a group remembers
    s_fence (group, member_id);
    return CVR_OK;
}

cvr_err_t
cvr_groups_restore_offset (cvr_groups_t *self, const char *group_id,
                           const cvr_offset_t *offset)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    //  The key as cvr_groups_commit makes it.
    char key [256];
    if (snprintf (key, sizeof (key), "%s/%" PRId64, offset->topic, offset->partition)
            >= (int) sizeof (key))
        return CVR_BAD_REQUEST;
    if (zhashx_lookup (group->offsets, key))
        return CVR_CONFLICT;
    int64_t *value = (int64_t *) malloc (sizeof (int64_t));
    assert (value);
    *value = offset->offset;
    zhashx_insert (group->offsets, key, value);
    return CVR_OK;
}

cvr_err_t
cvr_groups_restore_dirty (cvr_groups_t *self, const char *group_id, const char *reason)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (self->groups, group_id);
    if (!group)
        return CVR_NOT_FOUND;
    if (group->dirty)
        return CVR_CONFLICT;
    if (strlen (reason) >= sizeof (group->reason))
        return CVR_BAD_REQUEST;
    group->dirty = true;
    snprintf (group->reason, sizeof (group->reason), "%s", reason);
    zlistx_add_end (self->dirty, group);
    return CVR_OK;
}

void
cvr_groups_restore_counters (cvr_groups_t *self, uint64_t rebalances,
                             uint64_t members_expired)
{
    self->rebalances = rebalances;
    self->members_expired = members_expired;
}

void
cvr_groups_renew_all (cvr_groups_t *self, int64_t now)
{
    for (s_group_t *group = (s_group_t *) zhashx_first (self->groups); group;
         group = (s_group_t *) zhashx_next (self->groups))
        for (s_member_t *member = (s_member_t *) zhashx_first (group->members); member;
             member = (s_member_t *) zhashx_next (group->members))
            s_renew_session (self, member, now);
}
