/*  test_assignor.c: the partition assignors.

    - range and roundrobin against Kafka's own expected results (cases
      ported from RangeAssignorTest, RoundRobinAssignorTest and
      AbstractPartitionAssignorTest; each names its Kafka method);
    - range and roundrobin over random inputs: the invariants, and equality
      with a literal transcription of Kafka's loops;
    - sticky: unit cases, and a seeded random walk of joins, leaves,
      subscription changes, static replacements and topic growth that feeds
      each generation back as the previous one and checks the invariants
      and that exactly the minimum number of partitions moved;
    - a size test: 1,000 members over 10,000 partitions for each assignor.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cvr_assignor.h"

#define MAX_CASE_TOPICS 12

//  ---------------------------------------------------------------------
//  Table-driven cases: topics by name, members by id, assignments written
//  the way Kafka's tests print them ("topic-partition, ...").

typedef struct {
    const char *member_id;
    const char *instance_id;            //  NULL: dynamic member
    const char *topics [MAX_CASE_TOPICS];   //  subscribed names, NULL-ended;
                                        //  unknown names are dropped, as a
                                        //  nonexistent topic is in Kafka
    const char *previous;               //  "t-0, t-3" or NULL
    const char *expect;                 //  expected assignment, "" if none
} s_case_t;

static int
s_topic_index (const cvr_assign_topic_t *topics, size_t topics_count,
               const char *name, size_t length)
{
    for (size_t t = 0; t < topics_count; t++)
        if (strlen (topics [t].name) == length
        &&  memcmp (topics [t].name, name, length) == 0)
            return (int) t;
    return -1;
}

//  Parses "name-p, name-p" into list (the name is everything before the
//  last '-', as in Kafka's TopicPartition.toString).
static void
s_parse_tps (const cvr_assign_topic_t *topics, size_t topics_count,
             const char *text, cvr_tp_list_t *list)
{
    const char *cursor = text;
    while (cursor && *cursor) {
        while (*cursor == ' ' || *cursor == ',')
            cursor++;
        if (!*cursor)
            break;
        const char *end = cursor;
        while (*end && *end != ',')
            end++;
        const char *dash = end;
        while (dash > cursor && *dash != '-')
            dash--;
        assert_true (*dash == '-');
        int topic = s_topic_index (topics, topics_count, cursor,
                                   (size_t) (dash - cursor));
        assert_true (topic >= 0);
        cvr_tp_list_push (list, (uint32_t) topic,
                          (uint32_t) strtoul (dash + 1, NULL, 10));
        cursor = end;
    }
}

static void
s_format_tps (const cvr_assign_topic_t *topics, const cvr_tp_list_t *list,
              char *buffer, size_t size)
{
    size_t used = 0;
    buffer [0] = 0;
    for (size_t i = 0; i < list->count; i++) {
        int rc = snprintf (buffer + used, size - used, "%s%s-%u",
                           i ? ", " : "", topics [list->items [i].topic].name,
                           list->items [i].partition);
        assert_true (rc > 0 && (size_t) rc < size - used);
        used += (size_t) rc;
    }
}

//  Runs assignor over the case (members in any order: sorted here with
//  cvr_assign_member_compare, as the server does), asserts each member's
//  expected assignment, and returns how many partitions stayed with their
//  previous owner.
static size_t
s_run_case (const cvr_assignor_t *assignor, const cvr_assign_topic_t *topics,
            size_t topics_count, const s_case_t *cases, size_t count)
{
    for (size_t t = 1; t < topics_count; t++)
        assert_true (strcmp (topics [t - 1].name, topics [t].name) < 0);
    cvr_assign_member_t *members = calloc (count, sizeof (cvr_assign_member_t));
    uint32_t (*subs) [MAX_CASE_TOPICS] = calloc (count, sizeof (*subs));
    cvr_tp_list_t *previous = calloc (count, sizeof (cvr_tp_list_t));
    cvr_tp_list_t *out = calloc (count, sizeof (cvr_tp_list_t));
    assert_non_null (members);
    assert_non_null (subs);
    assert_non_null (previous);
    assert_non_null (out);

    for (size_t i = 0; i < count; i++) {
        size_t n = 0;
        for (size_t j = 0; cases [i].topics [j]; j++) {
            int t = s_topic_index (topics, topics_count, cases [i].topics [j],
                                   strlen (cases [i].topics [j]));
            if (t < 0)
                continue;
            //  Insertion keeps the indices ascending as the header wants.
            size_t at = n++;
            while (at > 0 && subs [i][at - 1] > (uint32_t) t) {
                subs [i][at] = subs [i][at - 1];
                at--;
            }
            subs [i][at] = (uint32_t) t;
        }
        s_parse_tps (topics, topics_count, cases [i].previous, &previous [i]);
        members [i].member_id = cases [i].member_id;
        members [i].instance_id = cases [i].instance_id;
        members [i].topics = subs [i];
        members [i].topics_count = n;
        members [i].previous = previous [i].items;
        members [i].previous_count = previous [i].count;
    }
    qsort (members, count, sizeof (cvr_assign_member_t), cvr_assign_member_compare);

    cvr_assign_input_t input = { topics, topics_count, members, count };
    assert_int_equal (assignor->assign (&input, out), 0);

    size_t kept = 0;
    char actual [4096];
    for (size_t i = 0; i < count; i++) {
        const s_case_t *which = NULL;
        for (size_t j = 0; j < count; j++)
            if (strcmp (cases [j].member_id, members [i].member_id) == 0)
                which = &cases [j];
        assert_non_null (which);
        s_format_tps (topics, &out [i], actual, sizeof (actual));
        if (strcmp (actual, which->expect) != 0)
            print_error ("%s %s: got [%s], expected [%s]\n", assignor->name,
                         which->member_id, actual, which->expect);
        assert_string_equal (actual, which->expect);
        for (size_t a = 0; a < out [i].count; a++)
            for (size_t b = 0; b < members [i].previous_count; b++)
                if (out [i].items [a].topic == members [i].previous [b].topic
                &&  out [i].items [a].partition == members [i].previous [b].partition)
                    kept++;
    }
    for (size_t i = 0; i < count; i++) {
        cvr_tp_list_clear (&out [i]);
        cvr_tp_list_clear (&previous [i]);
    }
    free (out);
    free (previous);
    free (subs);
    free (members);
    return kept;
}

#define COUNT(array) (sizeof (array) / sizeof ((array) [0]))
#define RUN(assignor, topics, cases) \
    s_run_case (&(assignor), (topics), COUNT (topics), (cases), COUNT (cases))
#define RUN_NO_TOPICS(assignor, cases) \
    s_run_case (&(assignor), NULL, 0, (cases), COUNT (cases))

//  ---------------------------------------------------------------------
//  The module: lookup, member order, list helpers.

static void
test_find (void **state)
{
    assert_ptr_equal (cvr_assignor_find ("range"), &cvr_assignor_range);
    assert_ptr_equal (cvr_assignor_find ("roundrobin"), &cvr_assignor_roundrobin);
    assert_ptr_equal (cvr_assignor_find ("sticky"), &cvr_assignor_sticky);
    assert_string_equal (cvr_assignor_find ("sticky")->name, "sticky");
    assert_null (cvr_assignor_find ("cooperative-sticky"));
    assert_null (cvr_assignor_find ("Range"));
    assert_null (cvr_assignor_find (""));
    assert_null (cvr_assignor_find (NULL));
}

static void
test_tp_list (void **state)
{
    cvr_tp_list_t list = { 0 };
    for (uint32_t i = 0; i < 1000; i++)
        cvr_tp_list_push (&list, (i * 7919) % 13, (i * 104729) % 1000);
    assert_int_equal (list.count, 1000);
    cvr_tp_list_sort (&list);
    for (size_t i = 1; i < list.count; i++) {
        const cvr_tp_t *a = &list.items [i - 1], *b = &list.items [i];
        assert_true (a->topic < b->topic
                  || (a->topic == b->topic && a->partition <= b->partition));
    }
    cvr_tp_list_clear (&list);
    assert_null (list.items);
    assert_int_equal (list.count, 0);
    assert_int_equal (list.capacity, 0);
    cvr_tp_list_sort (&list);                   //  empty: no-op
    cvr_tp_list_clear (&list);                  //  twice: no-op
}

//  Sorts members (as MemberInfo (id, instance)) and returns the member ids
//  in order, comma-joined.
static void
s_sorted_ids (cvr_assign_member_t *members, size_t count, char *buffer, size_t size)
{
    qsort (members, count, sizeof (cvr_assign_member_t), cvr_assign_member_compare);
    buffer [0] = 0;
    for (size_t i = 0; i < count; i++) {
        strncat (buffer, i ? "," : "", size - strlen (buffer) - 1);
        strncat (buffer, members [i].member_id, size - strlen (buffer) - 1);
    }
}

//  AbstractPartitionAssignorTest.testMemberInfoSortingWithoutGroupInstanceId,
//  testMemberInfoSortingWithAllGroupInstanceId,
//  testMemberInfoSortingSomeGroupInstanceId
static void
test_member_order (void **state)
{
    char ids [64];
    cvr_assign_member_t none [] = {
        { .member_id = "a" }, { .member_id = "b" }, { .member_id = "c" } };
    s_sorted_ids (none, 3, ids, sizeof (ids));
    assert_string_equal (ids, "a,b,c");

    cvr_assign_member_t all [] = {
        { .member_id = "a", .instance_id = "y" },
        { .member_id = "b", .instance_id = "z" },
        { .member_id = "c", .instance_id = "x" } };
    s_sorted_ids (all, 3, ids, sizeof (ids));
    assert_string_equal (ids, "c,a,b");

    cvr_assign_member_t some [] = {
        { .member_id = "a" },
        { .member_id = "b", .instance_id = "y" },
        { .member_id = "c", .instance_id = "x" } };
    s_sorted_ids (some, 3, ids, sizeof (ids));
    assert_string_equal (ids, "c,b,a");
}

//  AbstractPartitionAssignorTest.testMergeSortManyMemberInfo (Kafka uses an
//  unseeded Random; we fix the seed).
static void
test_member_order_many (void **state)
{
    char ids [100][8];
    cvr_assign_member_t members [100];
    bool is_static [100];
    uint32_t rng = 12345;
    for (int i = 0; i < 100; i++) {
        snprintf (ids [i], sizeof (ids [i]), "%d", i + 100);
        rng = rng * 1103515245u + 12345u;
        is_static [i] = (rng >> 16) & 1;
        members [i].member_id = ids [i];
        members [i].instance_id = is_static [i] ? ids [i] : NULL;
    }
    //  Shuffle, sort, and expect the static ones then the dynamic ones,
    //  each in id order.
    for (int i = 99; i > 0; i--) {
        rng = rng * 1103515245u + 12345u;
        int j = (int) ((rng >> 8) % (uint32_t) (i + 1));
        cvr_assign_member_t swap = members [i];
        members [i] = members [j];
        members [j] = swap;
    }
    qsort (members, 100, sizeof (cvr_assign_member_t), cvr_assign_member_compare);
    size_t at = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 100; i++)
            if (is_static [i] == (pass == 0))
                assert_string_equal (members [at++].member_id, ids [i]);
    assert_int_equal (at, 100);
}

//  ---------------------------------------------------------------------
//  RangeAssignor, Kafka's cases (RangeAssignorTest; Kafka's rack-aware
//  variants reduce to these without racks).

static const cvr_assign_topic_t s_topic1_3 [] = { { "topic1", 3 } };

//  RangeAssignorTest.testOneConsumerNoTopic
static void
test_range_one_consumer_no_topic (void **state)
{
    s_case_t cases [] = { { "consumer1", NULL, { NULL }, NULL, "" } };
    RUN_NO_TOPICS (cvr_assignor_range, cases);
}

//  RangeAssignorTest.testOneConsumerNonexistentTopic
static void
test_range_one_consumer_nonexistent_topic (void **state)
{
    s_case_t cases [] = { { "consumer1", NULL, { "topic1" }, NULL, "" } };
    RUN_NO_TOPICS (cvr_assignor_range, cases);
}

//  RangeAssignorTest.testOneConsumerOneTopic
static void
test_range_one_consumer_one_topic (void **state)
{
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1" }, NULL, "topic1-0, topic1-1, topic1-2" } };
    RUN (cvr_assignor_range, s_topic1_3, cases);
}

//  RangeAssignorTest.testOnlyAssignsPartitionsFromSubscribedTopics
static void
test_range_only_subscribed_topics (void **state)
{
    cvr_assign_topic_t topics [] = { { "other", 3 }, { "topic1", 3 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1" }, NULL, "topic1-0, topic1-1, topic1-2" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testOneConsumerMultipleTopics
static void
test_range_one_consumer_multiple_topics (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 1 }, { "topic2", 2 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1", "topic2" }, NULL,
          "topic1-0, topic2-0, topic2-1" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testTwoConsumersOneTopicOnePartition
static void
test_range_two_consumers_one_topic_one_partition (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 1 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1" }, NULL, "topic1-0" },
        { "consumer2", NULL, { "topic1" }, NULL, "" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testTwoConsumersOneTopicTwoPartitions
static void
test_range_two_consumers_one_topic_two_partitions (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 2 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1" }, NULL, "topic1-0" },
        { "consumer2", NULL, { "topic1" }, NULL, "topic1-1" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testMultipleConsumersMixedTopics
static void
test_range_multiple_consumers_mixed_topics (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 2 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1" }, NULL, "topic1-0" },
        { "consumer2", NULL, { "topic1", "topic2" }, NULL,
          "topic1-1, topic2-0, topic2-1" },
        { "consumer3", NULL, { "topic1" }, NULL, "topic1-2" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions
static void
test_range_two_consumers_two_topics_six_partitions (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 3 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1", "topic2" }, NULL,
          "topic1-0, topic1-1, topic2-0, topic2-1" },
        { "consumer2", NULL, { "topic1", "topic2" }, NULL, "topic1-2, topic2-2" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testTwoStaticConsumersTwoTopicsSixPartitions: the
//  comparison is on instance ids, so consumer-b (instance1) goes first.
static void
test_range_two_static_consumers (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 3 } };
    s_case_t cases [] = {
        { "consumer-b", "instance1", { "topic1", "topic2" }, NULL,
          "topic1-0, topic1-1, topic2-0, topic2-1" },
        { "consumer-a", "instance2", { "topic1", "topic2" }, NULL,
          "topic1-2, topic2-2" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions:
//  the static consumer-b goes before the dynamic consumer-a.
static void
test_range_one_static_one_dynamic (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 3 } };
    s_case_t cases [] = {
        { "consumer-b", "instance1", { "topic1", "topic2" }, NULL,
          "topic1-0, topic1-1, topic2-0, topic2-1" },
        { "consumer-a", NULL, { "topic1", "topic2" }, NULL, "topic1-2, topic2-2" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testStaticMemberRangeAssignmentPersistent
static void
test_range_static_member_persistent (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 5 }, { "topic2", 4 } };
    s_case_t cases [] = {
        { "consumer1", "instance1", { "topic1", "topic2" }, NULL,
          "topic1-0, topic1-1, topic2-0" },
        { "consumer2", "instance2", { "topic1", "topic2" }, NULL,
          "topic1-2, topic2-1" },
        { "consumer3", "instance3", { "topic1", "topic2" }, NULL,
          "topic1-3, topic2-2" },
        { "consumer4", NULL, { "topic1", "topic2" }, NULL, "topic1-4, topic2-3" } };
    RUN (cvr_assignor_range, topics, cases);
    //  Replace dynamic member 4 with a new dynamic member 5.
    cases [3].member_id = "consumer5";
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testStaticMemberRangeAssignmentPersistentAfterMemberIdChanges
static void
test_range_static_member_persistent_after_member_id_changes (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 5 }, { "topic2", 5 } };
    s_case_t cases [] = {
        { "consumer1", "instance1", { "topic1", "topic2" }, NULL,
          "topic1-0, topic1-1, topic2-0, topic2-1" },
        { "consumer2", "instance2", { "topic1", "topic2" }, NULL,
          "topic1-2, topic1-3, topic2-2, topic2-3" },
        { "consumer3", "instance3", { "topic1", "topic2" }, NULL,
          "topic1-4, topic2-4" } };
    RUN (cvr_assignor_range, topics, cases);
    //  consumer4 takes over instance3, consumer5 instance2: same by instance.
    cases [2].member_id = "consumer4";
    cases [1].member_id = "consumer5";
    RUN (cvr_assignor_range, topics, cases);
}

//  RangeAssignorTest.testRackAwareAssignmentWithUniformSubscription and
//  testRackAwareAssignmentWithNonEqualSubscription, their
//  verifyNonRackAwareAssignment results (consumers consumer0..2).
static void
test_range_uniform_and_non_equal_subscription (void **state)
{
    cvr_assign_topic_t topics [] = { { "t1", 6 }, { "t2", 7 }, { "t3", 2 } };
    s_case_t uniform [] = {
        { "consumer0", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-0, t1-1, t2-0, t2-1, t2-2, t3-0" },
        { "consumer1", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-2, t1-3, t2-3, t2-4, t3-1" },
        { "consumer2", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-4, t1-5, t2-5, t2-6" } };
    RUN (cvr_assignor_range, topics, uniform);
    s_case_t non_equal [] = {
        { "consumer0", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-0, t1-1, t2-0, t2-1, t2-2, t2-3, t3-0" },
        { "consumer1", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-2, t1-3, t2-4, t2-5, t2-6, t3-1" },
        { "consumer2", NULL, { "t1", "t3" }, NULL, "t1-4, t1-5" } };
    RUN (cvr_assignor_range, topics, non_equal);
}

//  RangeAssignorTest.testRackAwareAssignmentWithUniformPartitions and
//  testRackAwareAssignmentWithUniformPartitionsNonEqualSubscription, their
//  non-rack-aware results.
static void
test_range_uniform_partitions (void **state)
{
    cvr_assign_topic_t topics [] = { { "t1", 5 }, { "t2", 5 }, { "t3", 5 } };
    s_case_t uniform [] = {
        { "consumer0", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-0, t1-1, t2-0, t2-1, t3-0, t3-1" },
        { "consumer1", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-2, t1-3, t2-2, t2-3, t3-2, t3-3" },
        { "consumer2", NULL, { "t1", "t2", "t3" }, NULL, "t1-4, t2-4, t3-4" } };
    RUN (cvr_assignor_range, topics, uniform);
    s_case_t non_equal [] = {
        { "consumer0", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-0, t1-1, t2-0, t2-1, t2-2, t3-0, t3-1" },
        { "consumer1", NULL, { "t1", "t2", "t3" }, NULL,
          "t1-2, t1-3, t2-3, t2-4, t3-2, t3-3" },
        { "consumer2", NULL, { "t1", "t3" }, NULL, "t1-4, t3-4" } };
    RUN (cvr_assignor_range, topics, non_equal);
}

//  RangeAssignorTest.testRackAwareAssignmentWithCoPartitioning, its
//  nonRackAwareAssignment for both subscription shapes.
static void
test_range_co_partitioning (void **state)
{
    cvr_assign_topic_t topics [] = {
        { "t1", 6 }, { "t2", 6 }, { "t3", 2 }, { "t4", 2 } };
    s_case_t split [] = {
        { "consumer0", NULL, { "t1", "t2" }, NULL,
          "t1-0, t1-1, t1-2, t2-0, t2-1, t2-2" },
        { "consumer1", NULL, { "t1", "t2" }, NULL,
          "t1-3, t1-4, t1-5, t2-3, t2-4, t2-5" },
        { "consumer2", NULL, { "t3", "t4" }, NULL, "t3-0, t4-0" },
        { "consumer3", NULL, { "t3", "t4" }, NULL, "t3-1, t4-1" } };
    RUN (cvr_assignor_range, topics, split);
    s_case_t all [] = {
        { "consumer0", NULL, { "t1", "t2", "t3", "t4" }, NULL,
          "t1-0, t1-1, t2-0, t2-1, t3-0, t4-0" },
        { "consumer1", NULL, { "t1", "t2", "t3", "t4" }, NULL,
          "t1-2, t1-3, t2-2, t2-3, t3-1, t4-1" },
        { "consumer2", NULL, { "t1", "t2", "t3", "t4" }, NULL, "t1-4, t2-4" },
        { "consumer3", NULL, { "t1", "t2", "t3", "t4" }, NULL, "t1-5, t2-5" } };
    RUN (cvr_assignor_range, topics, all);
}

//  RangeAssignorTest.testCoPartitionedAssignmentWithSameSubscription,
//  its nonRackAwareAssignment (t7..t9 are subscribed but do not exist).
static void
test_range_co_partitioned_same_subscription (void **state)
{
    cvr_assign_topic_t topics [] = {
        { "t1", 6 }, { "t2", 6 }, { "t3", 2 }, { "t4", 2 }, { "t5", 4 }, { "t6", 4 } };
#define ALL9 { "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9" }
    s_case_t cases [] = {
        { "consumer0", NULL, ALL9, NULL,
          "t1-0, t1-1, t2-0, t2-1, t3-0, t4-0, t5-0, t5-1, t6-0, t6-1" },
        { "consumer1", NULL, ALL9, NULL,
          "t1-2, t1-3, t2-2, t2-3, t3-1, t4-1, t5-2, t6-2" },
        { "consumer2", NULL, ALL9, NULL,
          "t1-4, t1-5, t2-4, t2-5, t5-3, t6-3" } };
#undef ALL9
    RUN (cvr_assignor_range, topics, cases);
}

//  The RangeAssignor class javadoc example: C0, C1 on t0, t1 of 3 each.
static void
test_range_javadoc_example (void **state)
{
    cvr_assign_topic_t topics [] = { { "t0", 3 }, { "t1", 3 } };
    s_case_t cases [] = {
        { "C0", NULL, { "t0", "t1" }, NULL, "t0-0, t0-1, t1-0, t1-1" },
        { "C1", NULL, { "t0", "t1" }, NULL, "t0-2, t1-2" } };
    RUN (cvr_assignor_range, topics, cases);
}

//  ---------------------------------------------------------------------
//  RoundRobinAssignor, Kafka's cases (RoundRobinAssignorTest).

static const cvr_assign_topic_t s_topic_3 [] = { { "topic", 3 } };

//  RoundRobinAssignorTest.testOneConsumerNoTopic
static void
test_roundrobin_one_consumer_no_topic (void **state)
{
    s_case_t cases [] = { { "consumer", NULL, { NULL }, NULL, "" } };
    RUN_NO_TOPICS (cvr_assignor_roundrobin, cases);
}

//  RoundRobinAssignorTest.testOneConsumerNonexistentTopic
static void
test_roundrobin_one_consumer_nonexistent_topic (void **state)
{
    s_case_t cases [] = { { "consumer", NULL, { "topic" }, NULL, "" } };
    RUN_NO_TOPICS (cvr_assignor_roundrobin, cases);
}

//  RoundRobinAssignorTest.testOneConsumerOneTopic
static void
test_roundrobin_one_consumer_one_topic (void **state)
{
    s_case_t cases [] = {
        { "consumer", NULL, { "topic" }, NULL, "topic-0, topic-1, topic-2" } };
    RUN (cvr_assignor_roundrobin, s_topic_3, cases);
}

//  RoundRobinAssignorTest.testOnlyAssignsPartitionsFromSubscribedTopics
static void
test_roundrobin_only_subscribed_topics (void **state)
{
    cvr_assign_topic_t topics [] = { { "other", 3 }, { "topic", 3 } };
    s_case_t cases [] = {
        { "consumer", NULL, { "topic" }, NULL, "topic-0, topic-1, topic-2" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testOneConsumerMultipleTopics
static void
test_roundrobin_one_consumer_multiple_topics (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 1 }, { "topic2", 2 } };
    s_case_t cases [] = {
        { "consumer", NULL, { "topic1", "topic2" }, NULL,
          "topic1-0, topic2-0, topic2-1" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testTwoConsumersOneTopicOnePartition
static void
test_roundrobin_two_consumers_one_topic_one_partition (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic", 1 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic" }, NULL, "topic-0" },
        { "consumer2", NULL, { "topic" }, NULL, "" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testTwoConsumersOneTopicTwoPartitions
static void
test_roundrobin_two_consumers_one_topic_two_partitions (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic", 2 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic" }, NULL, "topic-0" },
        { "consumer2", NULL, { "topic" }, NULL, "topic-1" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testMultipleConsumersMixedTopics
static void
test_roundrobin_multiple_consumers_mixed_topics (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 2 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1" }, NULL, "topic1-0" },
        { "consumer2", NULL, { "topic1", "topic2" }, NULL,
          "topic1-1, topic2-0, topic2-1" },
        { "consumer3", NULL, { "topic1" }, NULL, "topic1-2" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testTwoDynamicConsumersTwoTopicsSixPartitions
static void
test_roundrobin_two_dynamic_consumers (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 3 } };
    s_case_t cases [] = {
        { "consumer1", NULL, { "topic1", "topic2" }, NULL,
          "topic1-0, topic1-2, topic2-1" },
        { "consumer2", NULL, { "topic1", "topic2" }, NULL,
          "topic1-1, topic2-0, topic2-2" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testTwoStaticConsumersTwoTopicsSixPartitions
static void
test_roundrobin_two_static_consumers (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 3 } };
    s_case_t cases [] = {
        { "consumer-b", "instance1", { "topic1", "topic2" }, NULL,
          "topic1-0, topic1-2, topic2-1" },
        { "consumer-a", "instance2", { "topic1", "topic2" }, NULL,
          "topic1-1, topic2-0, topic2-2" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions
static void
test_roundrobin_one_static_one_dynamic (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 3 } };
    s_case_t cases [] = {
        { "consumer-b", "instance1", { "topic1", "topic2" }, NULL,
          "topic1-0, topic1-2, topic2-1" },
        { "consumer-a", NULL, { "topic1", "topic2" }, NULL,
          "topic1-1, topic2-0, topic2-2" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testStaticMemberAssignmentPersistent
static void
test_roundrobin_static_member_persistent (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 3 } };
    s_case_t cases [] = {
        { "consumer1", "instance1", { "topic1", "topic2" }, NULL,
          "topic1-0, topic2-1" },
        { "consumer2", "instance2", { "topic1", "topic2" }, NULL,
          "topic1-1, topic2-2" },
        { "consumer3", "instance3", { "topic1", "topic2" }, NULL, "topic1-2" },
        { "consumer4", NULL, { "topic1", "topic2" }, NULL, "topic2-0" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
    //  Replace dynamic member 4 with a new dynamic member 5.
    cases [3].member_id = "consumer5";
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  RoundRobinAssignorTest.testStaticMemberAssignmentPersistentAfterMemberIdChanges
static void
test_roundrobin_static_member_persistent_after_member_id_changes (void **state)
{
    cvr_assign_topic_t topics [] = { { "topic1", 3 }, { "topic2", 3 } };
    s_case_t cases [] = {
        { "consumer1", "instance1", { "topic1", "topic2" }, NULL, "topic1-0, topic2-0" },
        { "consumer2", "instance2", { "topic1", "topic2" }, NULL, "topic1-1, topic2-1" },
        { "consumer3", "instance3", { "topic1", "topic2" }, NULL, "topic1-2, topic2-2" } };
    RUN (cvr_assignor_roundrobin, topics, cases);
    //  Now consumer4 holds instance1, consumer5 instance2, consumer1
    //  instance3: assignments follow the instances.
    cases [0].member_id = "consumer4";
    cases [1].member_id = "consumer5";
    cases [2].member_id = "consumer1";
    RUN (cvr_assignor_roundrobin, topics, cases);
}

//  The RoundRobinAssignor class javadoc examples: identical subscriptions,
//  then C0 on t0, C1 on t0 and t1, C2 on all three.
static void
test_roundrobin_javadoc_examples (void **state)
{
    cvr_assign_topic_t same_topics [] = { { "t0", 3 }, { "t1", 3 } };
    s_case_t same [] = {
        { "C0", NULL, { "t0", "t1" }, NULL, "t0-0, t0-2, t1-1" },
        { "C1", NULL, { "t0", "t1" }, NULL, "t0-1, t1-0, t1-2" } };
    RUN (cvr_assignor_roundrobin, same_topics, same);
    cvr_assign_topic_t mixed_topics [] = { { "t0", 1 }, { "t1", 2 }, { "t2", 3 } };
    s_case_t mixed [] = {
        { "C0", NULL, { "t0" }, NULL, "t0-0" },
        { "C1", NULL, { "t0", "t1" }, NULL, "t1-0" },
        { "C2", NULL, { "t0", "t1", "t2" }, NULL, "t1-1, t2-0, t2-1, t2-2" } };
    RUN (cvr_assignor_roundrobin, mixed_topics, mixed);
}

//  ---------------------------------------------------------------------
//  Invariants, shared by the random and size tests.

//  Asserts: every list sorted with no duplicates; every assigned partition
//  exists and belongs to a topic its member subscribes to; every partition
//  of every subscribed topic has exactly one owner; within each topic the
//  subscribers' counts differ by at most one.
static void
s_check_invariants (const cvr_assign_input_t *input, const cvr_tp_list_t *out)
{
    size_t topics_count = input->topics_count;
    size_t **owners = calloc (topics_count ? topics_count : 1, sizeof (size_t *));
    size_t *subscribers = calloc (topics_count ? topics_count : 1, sizeof (size_t));
    size_t *low = calloc (topics_count ? topics_count : 1, sizeof (size_t));
    size_t *high = calloc (topics_count ? topics_count : 1, sizeof (size_t));
    size_t *count = calloc (topics_count ? topics_count : 1, sizeof (size_t));
    assert_non_null (owners);
    assert_non_null (subscribers);
    assert_non_null (low);
    assert_non_null (high);
    assert_non_null (count);
    for (size_t t = 0; t < topics_count; t++) {
        owners [t] = calloc (input->topics [t].partitions + 1, sizeof (size_t));
        assert_non_null (owners [t]);
        low [t] = SIZE_MAX;
    }
    for (size_t m = 0; m < input->members_count; m++) {
        const cvr_assign_member_t *member = &input->members [m];
        const cvr_tp_list_t *list = &out [m];
        for (size_t i = 0; i < member->topics_count; i++)
            subscribers [member->topics [i]]++;
        for (size_t i = 0; i < list->count; i++) {
            cvr_tp_t tp = list->items [i];
            if (i > 0) {
                cvr_tp_t before = list->items [i - 1];
                assert_true (before.topic < tp.topic
                          || (before.topic == tp.topic && before.partition < tp.partition));
            }
            assert_true (tp.topic < topics_count);
            assert_true (tp.partition < input->topics [tp.topic].partitions);
            bool subscribed = false;
            for (size_t j = 0; j < member->topics_count; j++)
                if (member->topics [j] == tp.topic)
                    subscribed = true;
            assert_true (subscribed);
            assert_int_equal (owners [tp.topic][tp.partition], 0);
            owners [tp.topic][tp.partition] = m + 1;
        }
        //  Per-topic counts of this member, for the balance check.
        for (size_t i = 0; i < member->topics_count; i++)
            count [member->topics [i]] = 0;
        for (size_t i = 0; i < list->count; i++)
            count [list->items [i].topic]++;
        for (size_t i = 0; i < member->topics_count; i++) {
            uint32_t t = member->topics [i];
            if (count [t] < low [t])
                low [t] = count [t];
            if (count [t] > high [t])
                high [t] = count [t];
        }
    }
    for (size_t t = 0; t < topics_count; t++) {
        for (size_t p = 0; p < input->topics [t].partitions; p++)
            if (subscribers [t])
                assert_int_not_equal (owners [t][p], 0);
            else
                assert_int_equal (owners [t][p], 0);
        if (subscribers [t])
            assert_true (high [t] - low [t] <= 1);
        free (owners [t]);
    }
    free (owners);
    free (subscribers);
    free (low);
    free (high);
    free (count);
}

//  Partitions of topic t that member m keeps: in both its previous and its
//  new list.
static size_t
s_kept (const cvr_assign_member_t *member, const cvr_tp_list_t *now, uint32_t t)
{
    size_t kept = 0;
    for (size_t i = 0; i < now->count; i++) {
        if (now->items [i].topic != t)
            continue;
        for (size_t j = 0; j < member->previous_count; j++)
            if (member->previous [j].topic == t
            &&  member->previous [j].partition == now->items [i].partition) {
                kept++;
                break;
            }
    }
    return kept;
}

//  The most partitions of topic t any balanced assignment can leave with
//  their previous owners, computed from the previous assignment alone:
//  sum min (prev_m, base) + min (extra, #{m: prev_m > base}) over the
//  subscribers m (previous lists are assumed duplicate-free).
static size_t
s_kept_max (const cvr_assign_input_t *input, uint32_t t)
{
    size_t n = input->topics [t].partitions;
    size_t k = 0;
    for (size_t m = 0; m < input->members_count; m++)
        for (size_t i = 0; i < input->members [m].topics_count; i++)
            if (input->members [m].topics [i] == t)
                k++;
    if (k == 0 || n == 0)
        return 0;
    size_t base = n / k, extra = n % k;
    size_t sum = 0, above = 0;
    for (size_t m = 0; m < input->members_count; m++) {
        const cvr_assign_member_t *member = &input->members [m];
        bool subscribed = false;
        for (size_t i = 0; i < member->topics_count; i++)
            if (member->topics [i] == t)
                subscribed = true;
        if (!subscribed)
            continue;
        size_t prev = 0;
        for (size_t j = 0; j < member->previous_count; j++)
            if (member->previous [j].topic == t && member->previous [j].partition < n)
                prev++;
        sum += prev < base ? prev : base;
        if (prev > base)
            above++;
    }
    return sum + (above < extra ? above : extra);
}

//  ---------------------------------------------------------------------
//  A random group that evolves step by step.

#define SIM_TOPICS 6
#define SIM_MAX_MEMBERS 48

typedef struct {
    char member_id [32];
    char instance_id [32];
    bool is_static;
    uint32_t topics [SIM_TOPICS];
    size_t topics_count;
    cvr_tp_list_t previous;             //  owned: the last generation's
} s_sim_member_t;

typedef struct {
    uint64_t rng;
    char names [SIM_TOPICS][32];
    cvr_assign_topic_t topics [SIM_TOPICS];
    s_sim_member_t members [SIM_MAX_MEMBERS];
    size_t members_count;
    size_t next_id;
    cvr_assign_member_t view [SIM_MAX_MEMBERS];     //  the assignor input
} s_sim_t;

static uint32_t
s_random (uint64_t *state, uint32_t bound)
{
    //  splitmix64: good enough and the same on every platform.
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return bound ? (uint32_t) (z % bound) : 0;
}

static void
s_sim_subscribe (s_sim_t *sim, s_sim_member_t *member)
{
    //  A non-empty random subset, ascending; often all, to keep groups of
    //  shared topics common.
    member->topics_count = 0;
    bool all = s_random (&sim->rng, 3) == 0;
    for (uint32_t t = 0; t < SIM_TOPICS; t++)
        if (all || s_random (&sim->rng, 2))
            member->topics [member->topics_count++] = t;
    if (member->topics_count == 0)
        member->topics [member->topics_count++] = s_random (&sim->rng, SIM_TOPICS);
}

static void
s_sim_join (s_sim_t *sim)
{
    s_sim_member_t *member = &sim->members [sim->members_count++];
    memset (member, 0, sizeof (*member));
    snprintf (member->member_id, sizeof (member->member_id), "m-%05zu", sim->next_id);
    member->is_static = s_random (&sim->rng, 3) == 0;
    if (member->is_static)
        snprintf (member->instance_id, sizeof (member->instance_id), "i-%05zu",
                  sim->next_id);
    sim->next_id++;
    s_sim_subscribe (sim, member);
}

static void
s_sim_init (s_sim_t *sim, uint64_t seed)
{
    memset (sim, 0, sizeof (*sim));
    sim->rng = seed;
    for (size_t t = 0; t < SIM_TOPICS; t++) {
        snprintf (sim->names [t], sizeof (sim->names [t]), "t%zu", t);
        sim->topics [t].name = sim->names [t];
        sim->topics [t].partitions = 1 + s_random (&sim->rng, 24);
    }
    size_t start = 1 + s_random (&sim->rng, 8);
    for (size_t i = 0; i < start; i++)
        s_sim_join (sim);
}

static void
s_sim_destroy (s_sim_t *sim)
{
    for (size_t i = 0; i < sim->members_count; i++)
        cvr_tp_list_clear (&sim->members [i].previous);
}

static int
s_sim_compare (const void *a, const void *b)
{
    const s_sim_member_t *left = (const s_sim_member_t *) a;
    const s_sim_member_t *right = (const s_sim_member_t *) b;
    cvr_assign_member_t x = { .member_id = left->member_id,
                              .instance_id = left->is_static ? left->instance_id : NULL };
    cvr_assign_member_t y = { .member_id = right->member_id,
                              .instance_id = right->is_static ? right->instance_id : NULL };
    return cvr_assign_member_compare (&x, &y);
}

//  One membership or topic change; returns a word for the tally.
static const char *
s_sim_change (s_sim_t *sim)
{
    uint32_t roll = s_random (&sim->rng, 100);
    if (sim->members_count == 0 || (roll < 30 && sim->members_count < SIM_MAX_MEMBERS)) {
        s_sim_join (sim);
        return "join";
    }
    size_t victim = s_random (&sim->rng, (uint32_t) sim->members_count);
    s_sim_member_t *member = &sim->members [victim];
    if (roll < 55) {
        cvr_tp_list_clear (&member->previous);
        sim->members [victim] = sim->members [--sim->members_count];
        return "leave";
    }
    if (roll < 75) {
        s_sim_subscribe (sim, member);
        return "subscribe";
    }
    if (roll < 90) {
        cvr_assign_topic_t *topic = &sim->topics [s_random (&sim->rng, SIM_TOPICS)];
        if (topic->partitions < 400)
            topic->partitions += 1 + s_random (&sim->rng, 12);
        return "grow";
    }
    if (roll < 95 && member->is_static) {
        //  Static replacement: new member id, same instance, same
        //  assignment carried as previous.
        snprintf (member->member_id, sizeof (member->member_id), "m-%05zu",
                  sim->next_id++);
        return "replace";
    }
    return "none";
}

//  Runs assignor on the current group, checks the invariants and (for
//  sticky) minimal movement, then makes the result the previous
//  assignment. Adds the partitions kept and moved to the tallies.
static void
s_sim_rebalance (s_sim_t *sim, const cvr_assignor_t *assignor, bool check_sticky,
                 size_t *kept_total, size_t *moved_total)
{
    qsort (sim->members, sim->members_count, sizeof (s_sim_member_t), s_sim_compare);
    for (size_t i = 0; i < sim->members_count; i++) {
        s_sim_member_t *member = &sim->members [i];
        sim->view [i] = (cvr_assign_member_t) {
            .member_id = member->member_id,
            .instance_id = member->is_static ? member->instance_id : NULL,
            .topics = member->topics,
            .topics_count = member->topics_count,
            .previous = member->previous.items,
            .previous_count = member->previous.count };
    }
    cvr_assign_input_t input = { sim->topics, SIM_TOPICS, sim->view, sim->members_count };
    cvr_tp_list_t out [SIM_MAX_MEMBERS];
    memset (out, 0, sizeof (out));
    assert_int_equal (assignor->assign (&input, out), 0);
    s_check_invariants (&input, out);

    if (check_sticky)
        for (uint32_t t = 0; t < SIM_TOPICS; t++) {
            size_t kept = 0;
            for (size_t m = 0; m < sim->members_count; m++)
                kept += s_kept (&sim->view [m], &out [m], t);
            size_t best = s_kept_max (&input, t);
            if (kept != best)
                print_error ("topic %u: kept %zu, the most possible is %zu\n",
                             t, kept, best);
            assert_int_equal (kept, best);
            //  Moved: partitions that had a (still present) owner and now
            //  have another.
            size_t had = 0;
            for (size_t m = 0; m < sim->members_count; m++)
                for (size_t j = 0; j < sim->view [m].previous_count; j++)
                    if (sim->view [m].previous [j].topic == t)
                        had++;
            *kept_total += kept;
            *moved_total += had - kept;
        }
    for (size_t i = 0; i < sim->members_count; i++) {
        cvr_tp_list_clear (&sim->members [i].previous);
        sim->members [i].previous = out [i];
    }
}

static void
s_sticky_walk (uint64_t seed, int steps)
{
    s_sim_t *sim = calloc (1, sizeof (s_sim_t));
    assert_non_null (sim);
    s_sim_init (sim, seed);
    size_t kept = 0, moved = 0;
    size_t tally [6] = { 0 };
    const char *words [6] = { "join", "leave", "subscribe", "grow", "replace", "none" };
    s_sim_rebalance (sim, &cvr_assignor_sticky, true, &kept, &moved);
    for (int step = 0; step < steps; step++) {
        //  Sometimes several changes land in one generation.
        int changes = 1 + (int) (s_random (&sim->rng, 4) == 0) * (int) s_random (&sim->rng, 4);
        for (int c = 0; c < changes; c++) {
            const char *what = s_sim_change (sim);
            for (int w = 0; w < 6; w++)
                if (strcmp (what, words [w]) == 0)
                    tally [w]++;
        }
        s_sim_rebalance (sim, &cvr_assignor_sticky, true, &kept, &moved);
    }
    //  A rebalance with nothing changed moves nothing.
    size_t kept_again = 0, moved_again = 0;
    s_sim_rebalance (sim, &cvr_assignor_sticky, true, &kept_again, &moved_again);
    assert_int_equal (moved_again, 0);
    printf ("  sticky seed %llu: %d steps (join %zu, leave %zu, subscribe %zu, "
            "grow %zu, replace %zu, none %zu), %zu members at the end; "
            "%zu partitions kept, %zu moved, every step at the minimum\n",
            (unsigned long long) seed, steps, tally [0], tally [1], tally [2],
            tally [3], tally [4], tally [5], sim->members_count, kept, moved);
    s_sim_destroy (sim);
    free (sim);
}

static void
test_sticky_property (void **state)
{
    const uint64_t seeds [] = { 1, 2, 3, 20240607, 0xC0FFEE };
    for (size_t i = 0; i < COUNT (seeds); i++)
        s_sticky_walk (seeds [i], 400);
}

//  ---------------------------------------------------------------------
//  Range and roundrobin over random groups: invariants, and equality with
//  Kafka's loops transcribed literally.

static bool
s_subscribes (const cvr_assign_member_t *member, uint32_t t)
{
    for (size_t i = 0; i < member->topics_count; i++)
        if (member->topics [i] == t)
            return true;
    return false;
}

//  RoundRobinAssignor.assign, word for word: a circular iterator that
//  skips members not subscribed to the partition's topic.
static void
s_reference_roundrobin (const cvr_assign_input_t *input, cvr_tp_list_t *out)
{
    size_t iterator = 0;
    for (uint32_t t = 0; t < input->topics_count; t++) {
        bool any = false;
        for (size_t m = 0; m < input->members_count; m++)
            any = any || s_subscribes (&input->members [m], t);
        if (!any)
            continue;
        for (uint32_t p = 0; p < input->topics [t].partitions; p++) {
            while (!s_subscribes (&input->members [iterator], t))
                iterator = (iterator + 1) % input->members_count;
            cvr_tp_list_push (&out [iterator], t, p);
            iterator = (iterator + 1) % input->members_count;
        }
    }
    for (size_t m = 0; m < input->members_count; m++)
        cvr_tp_list_sort (&out [m]);
}

//  RangeAssignor.assign, word for word.
static void
s_reference_range (const cvr_assign_input_t *input, cvr_tp_list_t *out)
{
    for (uint32_t t = 0; t < input->topics_count; t++) {
        size_t consumers [SIM_MAX_MEMBERS], c = 0;
        for (size_t m = 0; m < input->members_count; m++)
            if (s_subscribes (&input->members [m], t))
                consumers [c++] = m;
        if (c == 0)
            continue;
        size_t n = input->topics [t].partitions;
        size_t per = n / c, with_extra = n % c;
        for (size_t i = 0; i < c; i++) {
            size_t start = per * i + (i < with_extra ? i : with_extra);
            size_t length = per + (i + 1 > with_extra ? 0 : 1);
            for (size_t p = start; p < start + length; p++)
                cvr_tp_list_push (&out [consumers [i]], t, (uint32_t) p);
        }
    }
    for (size_t m = 0; m < input->members_count; m++)
        cvr_tp_list_sort (&out [m]);
}

static void
s_compare_with_reference (s_sim_t *sim, const cvr_assignor_t *assignor,
                          void (*reference) (const cvr_assign_input_t *, cvr_tp_list_t *))
{
    size_t kept = 0, moved = 0;
    s_sim_rebalance (sim, assignor, false, &kept, &moved);
    //  The members now hold the assignor's result as "previous"; run the
    //  reference on the same input and compare.
    for (size_t i = 0; i < sim->members_count; i++)
        sim->view [i] = (cvr_assign_member_t) {
            .member_id = sim->members [i].member_id,
            .instance_id = sim->members [i].is_static ? sim->members [i].instance_id : NULL,
            .topics = sim->members [i].topics,
            .topics_count = sim->members [i].topics_count };
    cvr_assign_input_t input = { sim->topics, SIM_TOPICS, sim->view, sim->members_count };
    cvr_tp_list_t expect [SIM_MAX_MEMBERS];
    memset (expect, 0, sizeof (expect));
    reference (&input, expect);
    for (size_t i = 0; i < sim->members_count; i++) {
        const cvr_tp_list_t *got = &sim->members [i].previous;
        assert_int_equal (got->count, expect [i].count);
        for (size_t j = 0; j < got->count; j++) {
            assert_int_equal (got->items [j].topic, expect [i].items [j].topic);
            assert_int_equal (got->items [j].partition, expect [i].items [j].partition);
        }
        cvr_tp_list_clear (&expect [i]);
    }
}

static void
test_range_roundrobin_random (void **state)
{
    const uint64_t seeds [] = { 1, 2, 3 };
    size_t runs = 0;
    for (size_t i = 0; i < COUNT (seeds); i++) {
        s_sim_t *sim = calloc (1, sizeof (s_sim_t));
        assert_non_null (sim);
        s_sim_init (sim, seeds [i]);
        for (int step = 0; step < 300; step++) {
            s_sim_change (sim);
            s_compare_with_reference (sim, &cvr_assignor_range, s_reference_range);
            s_compare_with_reference (sim, &cvr_assignor_roundrobin, s_reference_roundrobin);
            runs += 2;
        }
        s_sim_destroy (sim);
        free (sim);
    }
    printf ("  range/roundrobin: %zu random groups, invariants hold, "
            "identical to Kafka's loops\n", runs);
}

//  ---------------------------------------------------------------------
//  Sticky unit cases.

//  A fresh group splits evenly; with no history every free partition goes
//  to the member with the fewest so far, ties by member order.
static void
test_sticky_fresh (void **state)
{
    cvr_assign_topic_t topics [] = { { "t", 10 } };
    s_case_t cases [] = {
        { "a", NULL, { "t" }, NULL, "t-0, t-3, t-6, t-9" },
        { "b", NULL, { "t" }, NULL, "t-1, t-4, t-7" },
        { "c", NULL, { "t" }, NULL, "t-2, t-5, t-8" } };
    assert_int_equal (RUN (cvr_assignor_sticky, topics, cases), 0);
}

//  b leaves: only its three partitions move; a (4) and c (3) keep all of
//  theirs, and b's go to whoever has fewest (c, then a by order, then c).
static void
test_sticky_member_leaves (void **state)
{
    cvr_assign_topic_t topics [] = { { "t", 10 } };
    s_case_t cases [] = {
        { "a", NULL, { "t" }, "t-0, t-3, t-6, t-9", "t-0, t-3, t-4, t-6, t-9" },
        { "c", NULL, { "t" }, "t-2, t-5, t-8", "t-1, t-2, t-5, t-7, t-8" } };
    assert_int_equal (RUN (cvr_assignor_sticky, topics, cases), 7);
}

//  d joins: 10 over 4 is 2 or 3. a, b, c all held more than 2; the two
//  extra slots go to a and b (equal totals, member order), c gives up its
//  highest one, a too; d takes exactly those two.
static void
test_sticky_member_joins (void **state)
{
    cvr_assign_topic_t topics [] = { { "t", 10 } };
    s_case_t cases [] = {
        { "a", NULL, { "t" }, "t-0, t-3, t-6, t-9", "t-0, t-3, t-6" },
        { "b", NULL, { "t" }, "t-1, t-4, t-7", "t-1, t-4, t-7" },
        { "c", NULL, { "t" }, "t-2, t-5, t-8", "t-2, t-5" },
        { "d", NULL, { "t" }, NULL, "t-8, t-9" } };
    assert_int_equal (RUN (cvr_assignor_sticky, topics, cases), 8);
}

//  The topic grows from 4 to 7: old partitions stay, new ones spread.
static void
test_sticky_topic_grows (void **state)
{
    cvr_assign_topic_t topics [] = { { "t", 7 } };
    s_case_t cases [] = {
        { "a", NULL, { "t" }, "t-0, t-2", "t-0, t-2, t-4, t-6" },
        { "b", NULL, { "t" }, "t-1, t-3", "t-1, t-3, t-5" } };
    assert_int_equal (RUN (cvr_assignor_sticky, topics, cases), 4);
}

//  Different subscriptions: x only to a and b, y only to b and c, each
//  topic balanced among its own subscribers. On y, c has fewer in total
//  so it fills first, up to the quota of 2; b takes the rest.
static void
test_sticky_different_subscriptions (void **state)
{
    cvr_assign_topic_t topics [] = { { "x", 4 }, { "y", 4 } };
    s_case_t cases [] = {
        { "a", NULL, { "x" }, NULL, "x-0, x-2" },
        { "b", NULL, { "x", "y" }, NULL, "x-1, x-3, y-2, y-3" },
        { "c", NULL, { "y" }, NULL, "y-0, y-1" } };
    RUN (cvr_assignor_sticky, topics, cases);
    //  b drops y: c takes all of y, nothing of x moves.
    s_case_t after [] = {
        { "a", NULL, { "x" }, "x-0, x-2", "x-0, x-2" },
        { "b", NULL, { "x" }, "x-1, x-3, y-2, y-3", "x-1, x-3" },
        { "c", NULL, { "y" }, "y-0, y-1", "y-0, y-1, y-2, y-3" } };
    assert_int_equal (RUN (cvr_assignor_sticky, topics, after), 6);
}

//  Ties go to the member with the fewest partitions in total, counted as
//  the assignment is built: fresh, p-0 goes to a (order), then q-0 to b
//  (fewer in total).
static void
test_sticky_tie_fewest_total (void **state)
{
    cvr_assign_topic_t topics [] = { { "p", 1 }, { "q", 1 } };
    s_case_t cases [] = {
        { "a", NULL, { "p", "q" }, NULL, "p-0" },
        { "b", NULL, { "p", "q" }, NULL, "q-0" } };
    RUN (cvr_assignor_sticky, topics, cases);
}

//  The extra slot (7 over 3: 2, 2 and one 3) is equally sticky for a and
//  b, who both held 3; a already kept p-0, so b, with fewer in total,
//  keeps its third and a gives up q-2, which goes to c.
static void
test_sticky_tie_extra_slot (void **state)
{
    cvr_assign_topic_t topics [] = { { "p", 1 }, { "q", 7 } };
    s_case_t cases [] = {
        { "a", NULL, { "p", "q" }, "p-0, q-0, q-1, q-2", "p-0, q-0, q-1" },
        { "b", NULL, { "q" }, "q-3, q-4, q-5", "q-3, q-4, q-5" },
        { "c", NULL, { "q" }, "q-6", "q-2, q-6" } };
    assert_int_equal (RUN (cvr_assignor_sticky, topics, cases), 7);
}

//  Bad history is tolerated: a partition claimed twice goes to the first
//  claimant in member order; one past the topic's end is ignored, and so
//  is a claim on a topic the member no longer subscribes to.
static void
test_sticky_bad_previous (void **state)
{
    cvr_assign_topic_t topics [] = { { "t", 4 }, { "u", 2 } };
    s_case_t cases [] = {
        { "a", NULL, { "t" }, "t-1, t-9, u-0", "t-0, t-1" },
        { "b", NULL, { "t", "u" }, "t-1, t-3", "t-2, t-3, u-0, u-1" } };
    //  a kept t-1, b t-3 (its t-1 lost to a); a's u-0 is free for b.
    assert_int_equal (RUN (cvr_assignor_sticky, topics, cases), 2);
}

//  Degenerate inputs: no members, members without topics, topics nobody
//  wants, more members than partitions.
static void
test_sticky_degenerate (void **state)
{
    cvr_assign_topic_t topics [] = { { "t", 2 }, { "unwanted", 5 } };
    cvr_assign_input_t empty = { topics, 2, NULL, 0 };
    assert_int_equal (cvr_assignor_sticky.assign (&empty, NULL), 0);
    assert_int_equal (cvr_assignor_range.assign (&empty, NULL), 0);
    assert_int_equal (cvr_assignor_roundrobin.assign (&empty, NULL), 0);
    s_case_t cases [] = {
        { "a", NULL, { "t" }, NULL, "t-0" },
        { "b", NULL, { "t" }, "t-1", "t-1" },
        { "c", NULL, { "t" }, NULL, "" },
        { "d", NULL, { NULL }, "t-0", "" } };
    RUN (cvr_assignor_sticky, topics, cases);
}

//  Static members sort first by instance id and keep their partitions
//  across a member id change (the server passes the old assignment as the
//  new member's previous).
static void
test_sticky_static_members (void **state)
{
    cvr_assign_topic_t topics [] = { { "t", 6 } };
    s_case_t cases [] = {
        { "z", "instance1", { "t" }, NULL, "t-0, t-3" },
        { "y", "instance2", { "t" }, NULL, "t-1, t-4" },
        { "a", NULL, { "t" }, NULL, "t-2, t-5" } };
    RUN (cvr_assignor_sticky, topics, cases);
    s_case_t replaced [] = {
        { "new", "instance1", { "t" }, "t-0, t-3", "t-0, t-3" },
        { "y", "instance2", { "t" }, "t-1, t-4", "t-1, t-4" },
        { "a", NULL, { "t" }, "t-2, t-5", "t-2, t-5" } };
    assert_int_equal (RUN (cvr_assignor_sticky, topics, replaced), 6);
}

//  ---------------------------------------------------------------------
//  Size: 1,000 members over 10,000 partitions. Timing belongs to the
//  benchmark; we only print it.

static double
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#define BIG_MEMBERS 1000

static void
s_big (const char *label, size_t topics_count, uint32_t partitions)
{
    char (*names) [32] = calloc (topics_count, sizeof (*names));
    cvr_assign_topic_t *topics = calloc (topics_count, sizeof (cvr_assign_topic_t));
    uint32_t *subs = calloc (topics_count, sizeof (uint32_t));
    char (*ids) [32] = calloc (BIG_MEMBERS + 1, sizeof (*ids));
    cvr_assign_member_t *members = calloc (BIG_MEMBERS, sizeof (cvr_assign_member_t));
    cvr_tp_list_t *out = calloc (BIG_MEMBERS, sizeof (cvr_tp_list_t));
    cvr_tp_list_t *next = calloc (BIG_MEMBERS, sizeof (cvr_tp_list_t));
    assert_true (names && topics && subs && ids && members && out && next);
    for (size_t t = 0; t < topics_count; t++) {
        snprintf (names [t], sizeof (names [t]), "topic%03zu", t);
        topics [t].name = names [t];
        topics [t].partitions = partitions;
        subs [t] = (uint32_t) t;
    }
    for (size_t m = 0; m <= BIG_MEMBERS; m++)
        snprintf (ids [m], sizeof (ids [m]), "member%04zu", m);
    for (size_t m = 0; m < BIG_MEMBERS; m++)
        members [m] = (cvr_assign_member_t) {
            .member_id = ids [m], .topics = subs, .topics_count = topics_count };
    cvr_assign_input_t input = { topics, topics_count, members, BIG_MEMBERS };

    const cvr_assignor_t *assignors [] = {
        &cvr_assignor_range, &cvr_assignor_roundrobin, &cvr_assignor_sticky };
    for (size_t a = 0; a < COUNT (assignors); a++) {
        double start = s_now_ms ();
        assert_int_equal (assignors [a]->assign (&input, out), 0);
        double elapsed = s_now_ms () - start;
        s_check_invariants (&input, out);
        printf ("  %-10s %s: %.2f ms\n", assignors [a]->name, label, elapsed);
        if (assignors [a] == &cvr_assignor_sticky) {
            //  Next generation: the first member leaves, a new one joins,
            //  everyone else brings its partitions.
            for (size_t m = 0; m < BIG_MEMBERS; m++) {
                members [m].previous = out [m].items;
                members [m].previous_count = out [m].count;
            }
            cvr_assign_member_t gone = members [0];
            memmove (members, members + 1, (BIG_MEMBERS - 1) * sizeof (members [0]));
            members [BIG_MEMBERS - 1] = (cvr_assign_member_t) {
                .member_id = ids [BIG_MEMBERS], .topics = subs,
                .topics_count = topics_count };
            start = s_now_ms ();
            assert_int_equal (cvr_assignor_sticky.assign (&input, next), 0);
            elapsed = s_now_ms () - start;
            s_check_invariants (&input, next);
            size_t kept = 0, best = 0;
            for (uint32_t t = 0; t < topics_count; t++) {
                best += s_kept_max (&input, t);
                for (size_t m = 0; m < BIG_MEMBERS; m++)
                    kept += s_kept (&members [m], &next [m], t);
            }
            assert_int_equal (kept, best);
            printf ("  %-10s %s, one leaves and one joins: %.2f ms "
                    "(%zu of %zu partitions kept, the most possible)\n",
                    "sticky", label, elapsed, kept, topics_count * (size_t) partitions);
            memmove (members + 1, members, (BIG_MEMBERS - 1) * sizeof (members [0]));
            members [0] = gone;
            for (size_t m = 0; m < BIG_MEMBERS; m++) {
                members [m].previous = NULL;
                members [m].previous_count = 0;
                cvr_tp_list_clear (&next [m]);
            }
        }
        for (size_t m = 0; m < BIG_MEMBERS; m++)
            cvr_tp_list_clear (&out [m]);
    }
    free (names);
    free (topics);
    free (subs);
    free (ids);
    free (members);
    free (out);
    free (next);
}

static void
test_size (void **state)
{
    s_big ("1000 members x 1 topic of 10000", 1, 10000);
    s_big ("1000 members x 100 topics of 100", 100, 100);
}

int
main (void)
{
    setvbuf (stdout, NULL, _IONBF, 0);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_find),
        cmocka_unit_test (test_tp_list),
        cmocka_unit_test (test_member_order),
        cmocka_unit_test (test_member_order_many),
        cmocka_unit_test (test_range_one_consumer_no_topic),
        cmocka_unit_test (test_range_one_consumer_nonexistent_topic),
        cmocka_unit_test (test_range_one_consumer_one_topic),
        cmocka_unit_test (test_range_only_subscribed_topics),
        cmocka_unit_test (test_range_one_consumer_multiple_topics),
        cmocka_unit_test (test_range_two_consumers_one_topic_one_partition),
        cmocka_unit_test (test_range_two_consumers_one_topic_two_partitions),
        cmocka_unit_test (test_range_multiple_consumers_mixed_topics),
        cmocka_unit_test (test_range_two_consumers_two_topics_six_partitions),
        cmocka_unit_test (test_range_two_static_consumers),
        cmocka_unit_test (test_range_one_static_one_dynamic),
        cmocka_unit_test (test_range_static_member_persistent),
        cmocka_unit_test (test_range_static_member_persistent_after_member_id_changes),
        cmocka_unit_test (test_range_uniform_and_non_equal_subscription),
        cmocka_unit_test (test_range_uniform_partitions),
        cmocka_unit_test (test_range_co_partitioning),
        cmocka_unit_test (test_range_co_partitioned_same_subscription),
        cmocka_unit_test (test_range_javadoc_example),
        cmocka_unit_test (test_roundrobin_one_consumer_no_topic),
        cmocka_unit_test (test_roundrobin_one_consumer_nonexistent_topic),
        cmocka_unit_test (test_roundrobin_one_consumer_one_topic),
        cmocka_unit_test (test_roundrobin_only_subscribed_topics),
        cmocka_unit_test (test_roundrobin_one_consumer_multiple_topics),
        cmocka_unit_test (test_roundrobin_two_consumers_one_topic_one_partition),
        cmocka_unit_test (test_roundrobin_two_consumers_one_topic_two_partitions),
        cmocka_unit_test (test_roundrobin_multiple_consumers_mixed_topics),
        cmocka_unit_test (test_roundrobin_two_dynamic_consumers),
        cmocka_unit_test (test_roundrobin_two_static_consumers),
        cmocka_unit_test (test_roundrobin_one_static_one_dynamic),
        cmocka_unit_test (test_roundrobin_static_member_persistent),
        cmocka_unit_test (test_roundrobin_static_member_persistent_after_member_id_changes),
        cmocka_unit_test (test_roundrobin_javadoc_examples),
        cmocka_unit_test (test_range_roundrobin_random),
        cmocka_unit_test (test_sticky_fresh),
        cmocka_unit_test (test_sticky_member_leaves),
        cmocka_unit_test (test_sticky_member_joins),
        cmocka_unit_test (test_sticky_topic_grows),
        cmocka_unit_test (test_sticky_different_subscriptions),
        cmocka_unit_test (test_sticky_tie_fewest_total),
        cmocka_unit_test (test_sticky_tie_extra_slot),
        cmocka_unit_test (test_sticky_bad_previous),
        cmocka_unit_test (test_sticky_degenerate),
        cmocka_unit_test (test_sticky_static_members),
        cmocka_unit_test (test_sticky_property),
        cmocka_unit_test (test_size),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
