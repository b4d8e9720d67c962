/*  cvr_assignor.h: partition assignors as an ops table (internal).

    An assignor maps the partitions of a group's subscribed topics to its
    members. Input: the topics (sorted by name, with partition counts), the
    members in Kafka's order (those with an instance id first, by instance
    id, then the others by member id), each with its subscriptions and what
    it owned in the previous generation. Output: one partition list per
    member. Pure functions: no clock, no sockets, deterministic.

    Partitions are (topic index, partition) pairs; the topic index points
    into the input's topics, which are sorted by name, so sorting the pairs
    sorts by topic name then partition.
*/
#ifndef CVR_ASSIGNOR_H_INCLUDED
#define CVR_ASSIGNOR_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t topic;             //  index into cvr_assign_input_t.topics
    uint32_t partition;
} cvr_tp_t;

//  A growable list of partitions; zero-initialise, free with
//  cvr_tp_list_clear.
typedef struct {
    cvr_tp_t *items;
    size_t count;
    size_t capacity;
} cvr_tp_list_t;

typedef struct {
    const char *name;
    uint32_t partitions;
} cvr_assign_topic_t;

typedef struct {
    const char *member_id;
    const char *instance_id;    //  NULL for a dynamic member
    const uint32_t *topics;     //  subscribed topic indices, ascending, unique
    size_t topics_count;
    const cvr_tp_t *previous;   //  owned in the previous generation (valid
    size_t previous_count;      //  partitions only; may be empty)
} cvr_assign_member_t;

typedef struct {
    const cvr_assign_topic_t *topics;   //  sorted by name, unique
    size_t topics_count;
    const cvr_assign_member_t *members; //  in Kafka's order (see above)
    size_t members_count;
} cvr_assign_input_t;

typedef struct {
    const char *name;
    //  Fills out [i] for member i (out has members_count lists, empty on
    //  entry); each list sorted on return. Returns 0, or -1 when out of
    //  memory (out then holds nothing the caller must keep).
    int (*assign) (const cvr_assign_input_t *input, cvr_tp_list_t *out);
} cvr_assignor_t;

extern const cvr_assignor_t cvr_assignor_range;
extern const cvr_assignor_t cvr_assignor_roundrobin;
extern const cvr_assignor_t cvr_assignor_sticky;

//  The assignor of a name ("range", "roundrobin", "sticky"), or NULL.
const cvr_assignor_t *
    cvr_assignor_find (const char *name);

//  Kafka's member order: instance ids first (by instance id), then member
//  ids. For qsort over cvr_assign_member_t.
int
    cvr_assign_member_compare (const void *a, const void *b);

//  True if member->topics [i] is a topic index in range and above the one
//  before it (the header's promise; a broken caller must not make an
//  assignor give a partition twice or read past the topics).
bool
    cvr_assign_topic_ok (const cvr_assign_input_t *input,
                         const cvr_assign_member_t *member, size_t i);

//  List helpers.
void
    cvr_tp_list_push (cvr_tp_list_t *self, uint32_t topic, uint32_t partition);
void
    cvr_tp_list_sort (cvr_tp_list_t *self);
void
    cvr_tp_list_clear (cvr_tp_list_t *self);

#endif
