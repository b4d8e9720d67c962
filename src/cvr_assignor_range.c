/*  cvr_assignor_range.c: Kafka's RangeAssignor.

    Per topic, the members subscribed to it in Kafka's member order split
    its partitions into contiguous ranges: with n partitions and c
    subscribers each gets n/c and the first n%c get one more. Topics are
    independent, so the first members of every topic get the extras (the
    known imbalance of range across topics, kept because clients expect
    Kafka's exact result).
*/
#include "cvr_assignor.h"

#include <stdlib.h>

static int
s_assign (const cvr_assign_input_t *input, cvr_tp_list_t *out)
{
    size_t topics_count = input->topics_count;
    //  subscribers [t]: how many members subscribe to t; rank [t]: how
    //  many of them we have met so far walking the members in order,
    //  which is the next subscriber's position in t's ordered list.
    size_t *subscribers = (size_t *) calloc (topics_count ? topics_count : 1,
                                             sizeof (size_t));
    size_t *rank = (size_t *) calloc (topics_count ? topics_count : 1,
                                      sizeof (size_t));
    if (!subscribers || !rank) {
        free (subscribers);
        free (rank);
        return -1;
    }
    for (size_t m = 0; m < input->members_count; m++) {
        const cvr_assign_member_t *member = &input->members [m];
        for (size_t i = 0; i < member->topics_count; i++)
            if (cvr_assign_topic_ok (input, member, i))
                subscribers [member->topics [i]]++;
    }
    //  Members in order, each member's topics ascending: every list comes
    //  out sorted by topic then partition without a sort.
    for (size_t m = 0; m < input->members_count; m++) {
        const cvr_assign_member_t *member = &input->members [m];
        for (size_t i = 0; i < member->topics_count; i++) {
            if (!cvr_assign_topic_ok (input, member, i))
                continue;
            uint32_t topic = member->topics [i];
            size_t partitions = input->topics [topic].partitions;
            size_t consumers = subscribers [topic];
            size_t base = partitions / consumers;
            size_t extra = partitions % consumers;
            size_t r = rank [topic]++;
            size_t start = base * r + (r < extra ? r : extra);
            size_t length = base + (r < extra ? 1 : 0);
            for (size_t p = start; p < start + length; p++)
                cvr_tp_list_push (&out [m], topic, (uint32_t) p);
        }
    }
    free (subscribers);
    free (rank);
    return 0;
}

const cvr_assignor_t cvr_assignor_range = { "range", s_assign };
