/*  cvr_assignor_sticky.c: our sticky assignor (protocol sections 5, 10).

    Goal, in priority order:
    1. per-topic balance: within each topic the partition counts of its
       subscribers differ by at most one (only subscribers get any);
    2. within that, keep as many partitions with their previous owner as
       possible;
    3. among equally sticky placements, give a partition to the member with
       the fewest partitions in total so far in this rebalance (counting
       what is already placed), ties by Kafka's member order.

    Topics are independent under (1) and (2), so we go topic by topic in
    name order (which is also what makes "total so far" well defined). For
    a topic with n partitions and k subscribers, base = n / k and
    extra = n % k: a balanced assignment gives every subscriber base or
    base + 1, exactly `extra` of them base + 1.

    Keep: member m held prev_m of the topic's partitions last generation
    (a partition two members claim goes to the first in member order;
    partitions past the topic's end, and claims of members no longer
    subscribed, are dropped). Every m keeps min (prev_m, base); the extra
    slots go first to members with prev_m > base, each keeping one more
    (fewest total first, then member order). No balanced assignment keeps
    more: a member keeps at most min (prev_m, its count), only `extra`
    members may reach base + 1, and only those with prev_m > base gain by
    it, so
        kept_max = sum min (prev_m, base) + min (extra, #{m: prev_m > base})
    which is what we keep.

    Fill: the free partitions, in partition order, each go to the eligible
    member (count < base, or count == base while extra slots are left)
    with the fewest partitions in total, ties by member order. Why it
    always ends balanced: after the keep step every count is <= base + 1,
    at most `extra` members are at base + 1, and the room left,
        sum (base - count) over counts < base + (extra slots left),
    equals k * base + extra - kept = n - kept, the number of free
    partitions. While room is left some member is eligible (if extra
    slots are left, fewer than `extra` < k members are at base + 1, so one
    is at or below base; otherwise room is sum (base - count) > 0). Each
    placement uses one unit of room, so when the free partitions run out
    the room is zero: everyone has base, and exactly `extra` have
    base + 1.

    Speed: "fewest total" is a binary min-heap of the topic's eligible
    subscribers keyed by (total, member order). A placement only raises
    the top's key (sift down) or makes it ineligible; ineligibility never
    reverts within a topic (counts only grow, extra slots only shrink), so
    members that became ineligible by the extra slots running out are
    dropped lazily when they surface. Per topic O(k + n log k), plus one
    pass over subscriptions and previous assignments.
*/
#include "cvr_assignor.h"

#include <assert.h>
#include <stdlib.h>

#define NONE SIZE_MAX

typedef struct {
    size_t member;              //  index into input->members
    uint32_t partition;
} s_claim_t;

typedef struct {
    const cvr_assign_input_t *input;
    size_t *sub_start;          //  subscribers of topic t are
    size_t *subs;               //  subs [sub_start [t] .. sub_start [t+1]],
                                //  member indices in member order
    size_t *claim_start;        //  previous partitions of topic t are
    s_claim_t *claims;          //  claims [claim_start [t] .. [t+1]],
                                //  in member order
    size_t *total;              //  per member: partitions placed so far
    size_t *pos;                //  per member: position in the current
                                //  topic's subscribers, or NONE
    //  Per position in the current topic's subscriber list:
    const size_t *list;         //  the subscribers (into subs)
    size_t *count;              //  partitions of this topic placed
    size_t *limit;              //  how many previous ones it may keep
    size_t *prev;               //  previous ones it validly claims
    size_t *heap;               //  min-heap of positions by (total, pos)
    size_t heap_size;
    size_t *owner;              //  per partition: holder's position or NONE
} s_sticky_t;

//  Whether position a goes before position b: fewer partitions in total,
//  then earlier in member order (positions follow member order).
static bool
s_before (const s_sticky_t *self, size_t a, size_t b)
{
    size_t total_a = self->total [self->list [a]];
    size_t total_b = self->total [self->list [b]];
    if (total_a != total_b)
        return total_a < total_b;
    return a < b;
}

static void
s_sift_down (s_sticky_t *self, size_t at)
{
    size_t item = self->heap [at];
    while (true) {
        size_t child = 2 * at + 1;
        if (child >= self->heap_size)
            break;
        if (child + 1 < self->heap_size
        &&  s_before (self, self->heap [child + 1], self->heap [child]))
            child++;
        if (!s_before (self, self->heap [child], item))
            break;
        self->heap [at] = self->heap [child];
        at = child;
    }
    self->heap [at] = item;
}

static void
s_heapify (s_sticky_t *self)
{
    for (size_t at = self->heap_size / 2; at-- > 0;)
        s_sift_down (self, at);
}

static size_t
s_pop (s_sticky_t *self)
{
    assert (self->heap_size > 0);
    size_t top = self->heap [0];
    self->heap [0] = self->heap [--self->heap_size];
    if (self->heap_size > 0)
        s_sift_down (self, 0);
    return top;
}

static bool
s_eligible (const s_sticky_t *self, size_t at, size_t base, size_t extra_left)
{
    return self->count [at] < base
        || (self->count [at] == base && extra_left > 0);
}

static void
s_assign_topic (s_sticky_t *self, uint32_t topic, cvr_tp_list_t *out)
{
    const cvr_assign_input_t *input = self->input;
    size_t n = input->topics [topic].partitions;
    size_t k = self->sub_start [topic + 1] - self->sub_start [topic];
    if (n == 0 || k == 0)
        return;                 //  nothing to place, or nobody to get it
    const size_t *list = self->subs + self->sub_start [topic];
    self->list = list;
    for (size_t i = 0; i < k; i++) {
        self->pos [list [i]] = i;
        self->count [i] = 0;
        self->prev [i] = 0;
    }
    for (size_t p = 0; p < n; p++)
        self->owner [p] = NONE;

    //  Previous owners; claims come in member order, so the first claimant
    //  of a partition wins.
    for (size_t c = self->claim_start [topic]; c < self->claim_start [topic + 1]; c++) {
        const s_claim_t *claim = &self->claims [c];
        size_t at = self->pos [claim->member];
        if (claim->partition < n && at != NONE
        &&  self->owner [claim->partition] == NONE) {
            self->owner [claim->partition] = at;
            self->prev [at]++;
        }
    }

    //  Quotas to keep: min (prev, base) each, and the extra slots to those
    //  that held more, fewest total first.
    size_t base = n / k;
    size_t extra = n % k;
    self->heap_size = 0;
    for (size_t i = 0; i < k; i++) {
        self->limit [i] = self->prev [i] < base ? self->prev [i] : base;
        if (self->prev [i] > base)
            self->heap [self->heap_size++] = i;
    }
    s_heapify (self);
    size_t extra_left = extra;
    while (extra_left > 0 && self->heap_size > 0) {
        self->limit [s_pop (self)] = base + 1;
        extra_left--;
    }

    //  Keep the lowest-numbered previous partitions up to the quota; the
    //  rest are freed.
    for (size_t p = 0; p < n; p++) {
        size_t at = self->owner [p];
        if (at == NONE)
            continue;
        if (self->count [at] < self->limit [at]) {
            self->count [at]++;
            self->total [list [at]]++;
        }
        else
            self->owner [p] = NONE;
    }

    //  Fill the free partitions from the heap of eligible members.
    self->heap_size = 0;
    for (size_t i = 0; i < k; i++)
        if (s_eligible (self, i, base, extra_left))
            self->heap [self->heap_size++] = i;
    s_heapify (self);
    for (size_t p = 0; p < n; p++) {
        if (self->owner [p] != NONE)
            continue;
        //  Drop members the exhausted extra slots made ineligible; the
        //  room argument above says someone eligible remains.
        while (self->heap_size > 0
        &&     !s_eligible (self, self->heap [0], base, extra_left))
            s_pop (self);
        assert (self->heap_size > 0);
        size_t at = self->heap [0];
        self->owner [p] = at;
        self->count [at]++;
        self->total [list [at]]++;
        if (self->count [at] > base)
            extra_left--;
        if (s_eligible (self, at, base, extra_left))
            s_sift_down (self, 0);
        else
            s_pop (self);
    }

    //  Emitting in partition order keeps every member's list sorted (the
    //  topics come in ascending order too).
    for (size_t p = 0; p < n; p++)
        cvr_tp_list_push (&out [list [self->owner [p]]], topic, (uint32_t) p);
    for (size_t i = 0; i < k; i++)
        self->pos [list [i]] = NONE;
}

static void
s_sticky_free (s_sticky_t *self)
{
    free (self->sub_start);
    free (self->subs);
    free (self->claim_start);
    free (self->claims);
    free (self->total);
    free (self->pos);
    free (self->count);
    free (self->limit);
    free (self->prev);
    free (self->heap);
    free (self->owner);
}

//  Builds the per-topic subscriber and previous-owner slices and sizes the
//  per-topic scratch. Returns 0, or -1 when out of memory.
static int
s_sticky_init (s_sticky_t *self, const cvr_assign_input_t *input)
{
    size_t topics_count = input->topics_count;
    size_t members_count = input->members_count;
    size_t subs_total = 0, claims_total = 0;
    for (size_t m = 0; m < members_count; m++) {
        subs_total += input->members [m].topics_count;
        claims_total += input->members [m].previous_count;
    }
    self->input = input;
    self->sub_start = (size_t *) calloc (topics_count + 1, sizeof (size_t));
    self->subs = (size_t *) malloc ((subs_total ? subs_total : 1) * sizeof (size_t));
    self->claim_start = (size_t *) calloc (topics_count + 1, sizeof (size_t));
    self->claims = (s_claim_t *) malloc ((claims_total ? claims_total : 1)
                                         * sizeof (s_claim_t));
    self->total = (size_t *) calloc (members_count, sizeof (size_t));
    self->pos = (size_t *) malloc (members_count * sizeof (size_t));
    if (!self->sub_start || !self->subs || !self->claim_start || !self->claims
    ||  !self->total || !self->pos)
        return -1;

    //  Counting sort of subscriptions and previous partitions by topic,
    //  walking the members in order so each slice is in member order.
    for (size_t m = 0; m < members_count; m++) {
        const cvr_assign_member_t *member = &input->members [m];
        for (size_t i = 0; i < member->topics_count; i++)
            if (cvr_assign_topic_ok (input, member, i))
                self->sub_start [member->topics [i] + 1]++;
        for (size_t i = 0; i < member->previous_count; i++)
            if (member->previous [i].topic < topics_count)
                self->claim_start [member->previous [i].topic + 1]++;
    }
    size_t max_k = 1, max_n = 1;
    for (size_t t = 0; t < topics_count; t++) {
        size_t k = self->sub_start [t + 1];
        if (k > max_k)
            max_k = k;
        if (k > 0 && input->topics [t].partitions > max_n)
            max_n = input->topics [t].partitions;
        self->sub_start [t + 1] += self->sub_start [t];
        self->claim_start [t + 1] += self->claim_start [t];
    }
    //  Second pass: place each entry at its slice's fill cursor.
    size_t *sub_fill = (size_t *) calloc (topics_count, sizeof (size_t));
    size_t *claim_fill = (size_t *) calloc (topics_count, sizeof (size_t));
    if (!sub_fill || !claim_fill) {
        free (sub_fill);
        free (claim_fill);
        return -1;
    }
    for (size_t m = 0; m < members_count; m++) {
        const cvr_assign_member_t *member = &input->members [m];
        for (size_t i = 0; i < member->topics_count; i++)
            if (cvr_assign_topic_ok (input, member, i)) {
                uint32_t t = member->topics [i];
                self->subs [self->sub_start [t] + sub_fill [t]++] = m;
            }
        for (size_t i = 0; i < member->previous_count; i++) {
            uint32_t t = member->previous [i].topic;
            if (t < topics_count) {
                s_claim_t *claim = &self->claims [self->claim_start [t] + claim_fill [t]++];
                claim->member = m;
                claim->partition = member->previous [i].partition;
            }
        }
    }
    free (sub_fill);
    free (claim_fill);
    for (size_t m = 0; m < members_count; m++)
        self->pos [m] = NONE;

    self->count = (size_t *) malloc (max_k * sizeof (size_t));
    self->limit = (size_t *) malloc (max_k * sizeof (size_t));
    self->prev = (size_t *) malloc (max_k * sizeof (size_t));
    self->heap = (size_t *) malloc (max_k * sizeof (size_t));
    self->owner = (size_t *) malloc (max_n * sizeof (size_t));
    if (!self->count || !self->limit || !self->prev || !self->heap || !self->owner)
        return -1;
    return 0;
}

static int
s_assign (const cvr_assign_input_t *input, cvr_tp_list_t *out)
{
    if (input->members_count == 0 || input->topics_count == 0)
        return 0;
    s_sticky_t self = { 0 };
    if (s_sticky_init (&self, input)) {
        s_sticky_free (&self);
        return -1;
    }
    for (size_t t = 0; t < input->topics_count; t++)
        s_assign_topic (&self, (uint32_t) t, out);
    s_sticky_free (&self);
    return 0;
}

const cvr_assignor_t cvr_assignor_sticky = { "sticky", s_assign };
