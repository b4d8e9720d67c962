/*  cvr_assignor_roundrobin.c: Kafka's RoundRobinAssignor.

    Kafka lays out every partition of every subscribed topic sorted by
    topic then partition, and a circular iterator over all members in
    Kafka's order; for each partition it advances the iterator to the next
    member subscribed to the partition's topic, assigns the partition there
    and steps past that member.

    We give the same result without the per-partition skipping (which is
    O(members) per partition when few members subscribe to a topic): within
    one topic the iterator only ever stops at that topic's subscribers, one
    after the other in circular member order. So per topic we find the
    first subscriber at or after the iterator once (binary search), deal
    the partitions to the subscribers cyclically from there, and leave the
    iterator just past the last one served.
*/
#include "cvr_assignor.h"

#include <stdlib.h>

//  Index of the first entry of list (ascending, count > 0) that is >= key,
//  or 0 when there is none: the circular "next at or after".
static size_t
s_first_at_or_after (const size_t *list, size_t count, size_t key)
{
    size_t low = 0, high = count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (list [mid] < key)
            low = mid + 1;
        else
            high = mid;
    }
    return low == count ? 0 : low;
}

static int
s_assign (const cvr_assign_input_t *input, cvr_tp_list_t *out)
{
    size_t topics_count = input->topics_count;
    size_t members_count = input->members_count;
    if (members_count == 0 || topics_count == 0)
        return 0;

    //  Subscribers of each topic in member order, as one array sliced by
    //  start [t] .. start [t + 1] (counting sort by topic).
    size_t *start = (size_t *) calloc (topics_count + 1, sizeof (size_t));
    size_t *fill = (size_t *) calloc (topics_count, sizeof (size_t));
    size_t total = 0;
    for (size_t m = 0; m < members_count; m++)
        total += input->members [m].topics_count;
    size_t *subscribers = (size_t *) malloc ((total ? total : 1) * sizeof (size_t));
    if (!start || !fill || !subscribers) {
        free (start);
        free (fill);
        free (subscribers);
        return -1;
    }
    for (size_t m = 0; m < members_count; m++) {
        const cvr_assign_member_t *member = &input->members [m];
        for (size_t i = 0; i < member->topics_count; i++)
            if (cvr_assign_topic_ok (input, member, i))
                start [member->topics [i] + 1]++;
    }
    for (size_t t = 0; t < topics_count; t++)
        start [t + 1] += start [t];
    for (size_t m = 0; m < members_count; m++) {
        const cvr_assign_member_t *member = &input->members [m];
        for (size_t i = 0; i < member->topics_count; i++)
            if (cvr_assign_topic_ok (input, member, i)) {
                uint32_t topic = member->topics [i];
                subscribers [start [topic] + fill [topic]++] = m;
            }
    }

    //  Topics by index are topics by name, Kafka's partition order; a
    //  topic nobody subscribes to is not in Kafka's list at all, and one
    //  with no partitions leaves the iterator where it was.
    size_t iterator = 0;            //  the member Kafka's peek() would show
    for (size_t t = 0; t < topics_count; t++) {
        const size_t *list = subscribers + start [t];
        size_t count = start [t + 1] - start [t];
        uint32_t partitions = input->topics [t].partitions;
        if (count == 0 || partitions == 0)
            continue;
        size_t next = s_first_at_or_after (list, count, iterator);
        for (uint32_t p = 0; p < partitions; p++) {
            cvr_tp_list_push (&out [list [next]], (uint32_t) t, p);
            iterator = list [next] + 1;
            if (++next == count)
                next = 0;
        }
        if (iterator == members_count)
            iterator = 0;
    }
    free (start);
    free (fill);
    free (subscribers);
    return 0;
}

const cvr_assignor_t cvr_assignor_roundrobin = { "roundrobin", s_assign };
