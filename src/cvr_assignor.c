/*  cvr_assignor.c: the assignor table, Kafka's member order and the
    partition list helpers shared by the assignors.
*/
#include "cvr_assignor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Looked up by name when a group picks its assignor; the order is only
//  for the search.
static const cvr_assignor_t *const s_assignors [] = {
    &cvr_assignor_range,
    &cvr_assignor_roundrobin,
    &cvr_assignor_sticky,
};

const cvr_assignor_t *
cvr_assignor_find (const char *name)
{
    if (!name)
        return NULL;
    size_t count = sizeof (s_assignors) / sizeof (s_assignors [0]);
    for (size_t i = 0; i < count; i++)
        if (strcmp (s_assignors [i]->name, name) == 0)
            return s_assignors [i];
    return NULL;
}

//  Kafka's AbstractPartitionAssignor.MemberInfo.compareTo: static members
//  (with an instance id) sort first, by instance id, so a static member
//  that rejoins under a new member id lands in the same place and keeps
//  its range/roundrobin assignment. strcmp orders UTF-8 by code point,
//  which is Java's String order for everything outside the surrogates.
int
cvr_assign_member_compare (const void *a, const void *b)
{
    const cvr_assign_member_t *left = (const cvr_assign_member_t *) a;
    const cvr_assign_member_t *right = (const cvr_assign_member_t *) b;
    if (left->instance_id && right->instance_id) {
        int rc = strcmp (left->instance_id, right->instance_id);
        if (rc)
            return rc;
        //  Kafka calls two holders of one instance id equal; the group
        //  never has two, but qsort is not stable, so break the tie
        //  deterministically.
        return strcmp (left->member_id, right->member_id);
    }
    if (left->instance_id)
        return -1;
    if (right->instance_id)
        return 1;
    return strcmp (left->member_id, right->member_id);
}

void
cvr_tp_list_push (cvr_tp_list_t *self, uint32_t topic, uint32_t partition)
{
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 8;
        cvr_tp_t *items = (cvr_tp_t *) realloc (self->items,
                                                capacity * sizeof (cvr_tp_t));
        if (!items) {
            //  The interface returns void, so there is no one to tell;
            //  fail hard the way czmq's zmalloc does (an assert would
            //  vanish under NDEBUG and leave a NULL write).
            fprintf (stderr, "cvr_tp_list_push: out of memory\n");
            abort ();
        }
        self->items = items;
        self->capacity = capacity;
    }
    self->items [self->count].topic = topic;
    self->items [self->count].partition = partition;
    self->count++;
}

static int
s_tp_compare (const void *a, const void *b)
{
    const cvr_tp_t *left = (const cvr_tp_t *) a;
    const cvr_tp_t *right = (const cvr_tp_t *) b;
    if (left->topic != right->topic)
        return left->topic < right->topic ? -1 : 1;
    if (left->partition != right->partition)
        return left->partition < right->partition ? -1 : 1;
    return 0;
}

void
cvr_tp_list_sort (cvr_tp_list_t *self)
{
    if (self->count > 1)
        qsort (self->items, self->count, sizeof (cvr_tp_t), s_tp_compare);
}

void
cvr_tp_list_clear (cvr_tp_list_t *self)
{
    free (self->items);
    self->items = NULL;
    self->count = 0;
    self->capacity = 0;
}

bool
cvr_assign_topic_ok (const cvr_assign_input_t *input, const cvr_assign_member_t *member,
                     size_t i)
{
    uint32_t topic = member->topics [i];
    return topic < input->topics_count
        && (i == 0 || topic > member->topics [i - 1]);
}
