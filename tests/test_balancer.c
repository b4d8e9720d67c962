/*  test_balancer.c: cvr_balancer round-robin, smooth weighted picks,
    health tiers, name filter and events. Services and events are built by
    hand, so this needs nothing but cvr_types.c and cvr_balancer.c.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <czmq.h>
#include "conveyor/cvr_balancer.h"

//  A service record as the client would decode it; free with
//  cvr_service_destroy.
static cvr_service_t *
s_service (const char *id, const char *name, cvr_health_t health, int64_t weight)
{
    cvr_service_t *service = (cvr_service_t *) zmalloc (sizeof (cvr_service_t));
    service->service_id = strdup (id);
    service->service_name = strdup (name);
    service->service_type = strdup ("sink");
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "tcp://10.0.0.1:%s", id);
    service->endpoint = strdup (endpoint);
    service->health = health;
    service->weight = weight;
    service->lease_ms = 10000;
    service->revision = 1;
    return service;
}

//  Upserts a service built with s_service and frees the original, which
//  also checks that the balancer keeps its own copy.
static void
s_add (cvr_balancer_t *balancer, const char *id, cvr_health_t health, int64_t weight)
{
    cvr_service_t *service = s_service (id, "orders", health, weight);
    cvr_balancer_upsert (balancer, service);
    cvr_service_destroy (&service);
}

static cvr_service_list_t *
s_list_new (void)
{
    return (cvr_service_list_t *) zmalloc (sizeof (cvr_service_list_t));
}

static void
s_list_append (cvr_service_list_t *list, cvr_service_t *service)
{
    list->items = (cvr_service_t **) realloc (list->items,
        (list->count + 1) * sizeof (cvr_service_t *));
    assert_non_null (list->items);
    list->items [list->count++] = service;
}

//  cvr_event_destroy lives in the client module; events here are freed by
//  s_event_free instead.
static cvr_event_t *
s_event (const char *type, cvr_service_t *service, cvr_service_list_t *services)
{
    cvr_event_t *event = (cvr_event_t *) zmalloc (sizeof (cvr_event_t));
    event->type = strdup (type);
    event->topic = strdup ("service/orders");
    event->service = service;
    event->services = services;
    return event;
}

static void
s_event_free (cvr_event_t **event_p)
{
    cvr_event_t *event = *event_p;
    free (event->type);
    free (event->topic);
    cvr_service_destroy (&event->service);
    cvr_service_list_destroy (&event->services);
    free (event->body);
    free (event);
    *event_p = NULL;
}

//  Applies an event and frees it; returns what apply returned.
static bool
s_apply (cvr_balancer_t *balancer, const char *type,
         cvr_service_t *service, cvr_service_list_t *services)
{
    cvr_event_t *event = s_event (type, service, services);
    bool changed = cvr_balancer_apply (balancer, event);
    s_event_free (&event);
    return changed;
}

static const char *
s_pick_id (cvr_balancer_t *balancer)
{
    const cvr_service_t *service = cvr_balancer_pick (balancer);
    return service? service->service_id: NULL;
}

//  Picks count times and checks the ids against the space-separated
//  expected sequence.
static void
s_assert_sequence (cvr_balancer_t *balancer, const char *expected)
{
    char *copy = strdup (expected);
    char *saveptr = NULL;
    for (char *id = strtok_r (copy, " ", &saveptr); id;
         id = strtok_r (NULL, " ", &saveptr))
        assert_string_equal (s_pick_id (balancer), id);
    free (copy);
}

//  Counts how many of picks went to id.
static int
s_count_picks (cvr_balancer_t *balancer, int picks, const char *id)
{
    int count = 0;
    for (int i = 0; i < picks; i++) {
        const char *picked = s_pick_id (balancer);
        if (picked && streq (picked, id))
            count++;
    }
    return count;
}


static void
test_new_destroy (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    assert_non_null (balancer);
    assert_int_equal (cvr_balancer_size (balancer), 0);
    cvr_balancer_destroy (&balancer);
    assert_null (balancer);
    cvr_balancer_destroy (&balancer);
    cvr_balancer_destroy (NULL);

    //  Every call tolerates a NULL balancer
    cvr_balancer_set (NULL, NULL);
    cvr_balancer_upsert (NULL, NULL);
    cvr_balancer_remove (NULL, "a");
    assert_false (cvr_balancer_apply (NULL, NULL));
    assert_null (cvr_balancer_pick (NULL));
    assert_int_equal (cvr_balancer_size (NULL), 0);

    //  A balancer holding services frees them
    balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, "orders");
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 100);
    assert_int_equal (cvr_balancer_size (balancer), 2);
    cvr_balancer_destroy (&balancer);
    assert_null (balancer);
}

static void
test_empty_picks_null (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    assert_null (cvr_balancer_pick (balancer));
    cvr_balancer_destroy (&balancer);

    balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    assert_null (cvr_balancer_pick (balancer));
    //  Emptied after holding something
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    assert_string_equal (s_pick_id (balancer), "a");
    cvr_balancer_remove (balancer, "a");
    assert_int_equal (cvr_balancer_size (balancer), 0);
    assert_null (cvr_balancer_pick (balancer));
    cvr_balancer_destroy (&balancer);
}

static void
test_round_robin_order (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    //  Inserted out of order: picks follow service_id order regardless
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 100);
    assert_int_equal (cvr_balancer_size (balancer), 3);
    s_assert_sequence (balancer, "a b c a b c a b c");
    cvr_balancer_destroy (&balancer);
}

static void
test_round_robin_ignores_weight (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 1000);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 1);
    s_assert_sequence (balancer, "a b a b");
    cvr_balancer_destroy (&balancer);
}

static void
test_round_robin_resumes_after_change (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "d", CVR_HEALTH_HEALTHY, 100);
    s_assert_sequence (balancer, "a b");
    //  The one due next goes away: the cycle carries on past it
    cvr_balancer_remove (balancer, "c");
    s_assert_sequence (balancer, "d a b d");
    //  A newcomer after the last pick gets its turn in this cycle, even
    //  when the last pick was the last in order
    s_add (balancer, "e", CVR_HEALTH_HEALTHY, 100);
    s_assert_sequence (balancer, "e a b d");
    //  The last in order, due next, goes away: the cycle wraps
    cvr_balancer_remove (balancer, "e");
    s_assert_sequence (balancer, "a b d");
    //  A newcomer before the last pick waits for the next cycle
    s_assert_sequence (balancer, "a b");
    s_add (balancer, "aa", CVR_HEALTH_HEALTHY, 100);
    s_assert_sequence (balancer, "d a aa b d");
    //  The last picked goes away: the cycle goes on after its id
    cvr_balancer_remove (balancer, "d");
    s_assert_sequence (balancer, "a aa b a");
    cvr_balancer_destroy (&balancer);
}

static void
test_weighted_shares (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 300);
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, 600);

    int counts [3] = { 0, 0, 0 };
    for (int i = 0; i < 10000; i++) {
        const char *id = s_pick_id (balancer);
        assert_non_null (id);
        counts [id [0] - 'a']++;
    }
    //  Within 1% of 10,000 picks of each weight's share
    assert_in_range (counts [0], 1000 - 100, 1000 + 100);
    assert_in_range (counts [1], 3000 - 100, 3000 + 100);
    assert_in_range (counts [2], 6000 - 100, 6000 + 100);
    assert_int_equal (counts [0] + counts [1] + counts [2], 10000);
    cvr_balancer_destroy (&balancer);
}

static void
test_weighted_shares_uneven (void **state)
{
    //  Weights that do not divide the number of picks
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 7);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 13);
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, 29);
    s_add (balancer, "d", CVR_HEALTH_HEALTHY, 51);
    int counts [4] = { 0, 0, 0, 0 };
    for (int i = 0; i < 10000; i++)
        counts [s_pick_id (balancer) [0] - 'a']++;
    assert_in_range (counts [0], 700 - 100, 700 + 100);
    assert_in_range (counts [1], 1300 - 100, 1300 + 100);
    assert_in_range (counts [2], 2900 - 100, 2900 + 100);
    assert_in_range (counts [3], 5100 - 100, 5100 + 100);
    cvr_balancer_destroy (&balancer);
}

static void
test_weighted_smooth_sequence (void **state)
{
    //  nginx's documented sequence for weights 5, 1, 1: { a a b a c a a },
    //  repeating; the heavy one is spread out, never picked five in a row.
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 5);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 1);
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, 1);
    s_assert_sequence (balancer, "a a b a c a a");
    s_assert_sequence (balancer, "a a b a c a a");
    s_assert_sequence (balancer, "a a b a c a a");
    cvr_balancer_destroy (&balancer);
}

static void
test_weighted_equal_weights_cycle (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, 100);
    s_assert_sequence (balancer, "a b c a b c");
    cvr_balancer_destroy (&balancer);
}

static void
test_weighted_update_keeps_current (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 5);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 1);
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, 1);
    s_assert_sequence (balancer, "a a");

    //  An update that keeps the weight does not disturb the sequence
    cvr_service_t *service = s_service ("a", "orders", CVR_HEALTH_HEALTHY, 5);
    free (service->endpoint);
    service->endpoint = strdup ("tcp://10.0.0.9:9000");
    service->revision = 2;
    cvr_balancer_upsert (balancer, service);
    cvr_service_destroy (&service);
    assert_int_equal (cvr_balancer_size (balancer), 3);
    const cvr_service_t *picked = cvr_balancer_pick (balancer);
    assert_string_equal (picked->service_id, "b");
    s_assert_sequence (balancer, "a c a a");
    s_assert_sequence (balancer, "a a b a c a a");

    //  Re-weighting restarts that service's credit, and the new weights
    //  hold from there on
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 1);
    int a = 0;
    for (int i = 0; i < 300; i++)
        if (streq (s_pick_id (balancer), "a"))
            a++;
    assert_in_range (a, 99, 101);
    cvr_balancer_destroy (&balancer);
}

static void
test_weighted_newcomer_does_not_burst (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 1000);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 1);
    //  Right after its one pick in a thousand, b is deep in debt, and a
    //  leaves with the matching credit
    int picks = 0;
    while (!streq (s_pick_id (balancer), "b"))
        assert_true (++picks < 2000);
    cvr_balancer_remove (balancer, "a");

    //  Equal weights: the newcomer alternates with b rather than taking
    //  hundreds of picks while b's debt is paid off
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, 1);
    int run = 0, longest = 0;
    for (int i = 0; i < 40; i++) {
        run = streq (s_pick_id (balancer), "c")? run + 1: 0;
        longest = run > longest? run: longest;
    }
    assert_int_equal (longest, 1);
    cvr_balancer_destroy (&balancer);
}

static void
test_unhealthy_never_picked (void **state)
{
    cvr_balance_t policies [] = { CVR_BALANCE_ROUND_ROBIN, CVR_BALANCE_WEIGHTED };
    for (size_t p = 0; p < 2; p++) {
        cvr_balancer_t *balancer = cvr_balancer_new (policies [p], NULL);
        s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
        s_add (balancer, "b", CVR_HEALTH_UNHEALTHY, 1000);
        s_add (balancer, "c", CVR_HEALTH_HEALTHY, 100);
        assert_int_equal (s_count_picks (balancer, 1000, "b"), 0);
        assert_int_equal (s_count_picks (balancer, 1000, "a"), 500);

        //  Unhealthy is never a fallback either
        s_add (balancer, "a", CVR_HEALTH_UNHEALTHY, 100);
        s_add (balancer, "c", CVR_HEALTH_UNHEALTHY, 100);
        assert_int_equal (cvr_balancer_size (balancer), 3);
        assert_null (cvr_balancer_pick (balancer));

        //  And picked again once healthy
        s_add (balancer, "b", CVR_HEALTH_HEALTHY, 1000);
        assert_string_equal (s_pick_id (balancer), "b");
        cvr_balancer_destroy (&balancer);
    }
}

static void
test_degraded_only_as_fallback (void **state)
{
    cvr_balance_t policies [] = { CVR_BALANCE_ROUND_ROBIN, CVR_BALANCE_WEIGHTED };
    for (size_t p = 0; p < 2; p++) {
        cvr_balancer_t *balancer = cvr_balancer_new (policies [p], NULL);
        s_add (balancer, "d", CVR_HEALTH_DEGRADED, 1000);
        s_add (balancer, "h", CVR_HEALTH_HEALTHY, 1);
        s_add (balancer, "u", CVR_HEALTH_UNKNOWN, 1000);
        s_add (balancer, "x", CVR_HEALTH_UNHEALTHY, 1000);
        //  One healthy service takes every pick, whatever the weights
        assert_int_equal (s_count_picks (balancer, 100, "h"), 100);

        //  No healthy one left: degraded and unknown share the picks
        s_add (balancer, "h", CVR_HEALTH_UNHEALTHY, 1);
        assert_int_equal (s_count_picks (balancer, 100, "d"), 50);
        assert_int_equal (s_count_picks (balancer, 100, "u"), 50);
        assert_int_equal (s_count_picks (balancer, 100, "x"), 0);

        //  A healthy one with weight 0 does not count as healthy
        s_add (balancer, "h", CVR_HEALTH_HEALTHY, 0);
        assert_int_equal (s_count_picks (balancer, 100, "h"), 0);

        //  Back to healthy: the fallback tier is left alone again
        s_add (balancer, "h", CVR_HEALTH_HEALTHY, 1);
        assert_int_equal (s_count_picks (balancer, 100, "h"), 100);
        cvr_balancer_destroy (&balancer);
    }
}

static void
test_weight_zero_never_picked (void **state)
{
    cvr_balance_t policies [] = { CVR_BALANCE_ROUND_ROBIN, CVR_BALANCE_WEIGHTED };
    for (size_t p = 0; p < 2; p++) {
        cvr_balancer_t *balancer = cvr_balancer_new (policies [p], NULL);
        s_add (balancer, "a", CVR_HEALTH_HEALTHY, 0);
        s_add (balancer, "b", CVR_HEALTH_HEALTHY, 100);
        s_add (balancer, "c", CVR_HEALTH_HEALTHY, -5);
        s_add (balancer, "d", CVR_HEALTH_DEGRADED, 0);
        assert_int_equal (s_count_picks (balancer, 1000, "b"), 1000);

        //  Only weight 0 left: nothing pickable, not even as a fallback
        cvr_balancer_remove (balancer, "b");
        assert_int_equal (cvr_balancer_size (balancer), 3);
        assert_null (cvr_balancer_pick (balancer));
        cvr_balancer_destroy (&balancer);
    }
}

static void
test_huge_weights (void **state)
{
    //  Weights near INT64_MAX must not overflow the credit arithmetic
    //  (UBSan would report it)
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, INT64_MAX);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, INT64_MAX - 1);
    s_add (balancer, "c", CVR_HEALTH_HEALTHY, INT64_MAX);
    for (int i = 0; i < 1000; i++)
        assert_non_null (cvr_balancer_pick (balancer));
    cvr_balancer_destroy (&balancer);
}

static void
test_service_name_filter (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, "orders");
    cvr_service_t *other = s_service ("x", "billing", CVR_HEALTH_HEALTHY, 100);
    cvr_balancer_upsert (balancer, other);
    cvr_service_destroy (&other);
    assert_int_equal (cvr_balancer_size (balancer), 0);
    assert_null (cvr_balancer_pick (balancer));

    //  set keeps only the services of the name
    cvr_service_list_t *list = s_list_new ();
    s_list_append (list, s_service ("a", "orders", CVR_HEALTH_HEALTHY, 100));
    s_list_append (list, s_service ("b", "billing", CVR_HEALTH_HEALTHY, 100));
    s_list_append (list, s_service ("c", "orders", CVR_HEALTH_HEALTHY, 100));
    cvr_balancer_set (balancer, list);
    cvr_service_list_destroy (&list);
    assert_int_equal (cvr_balancer_size (balancer), 2);
    s_assert_sequence (balancer, "a c a c");

    //  apply ignores other names too
    assert_false (s_apply (balancer, "registered",
                  s_service ("y", "billing", CVR_HEALTH_HEALTHY, 100), NULL));
    assert_int_equal (cvr_balancer_size (balancer), 2);

    //  A held service renamed away leaves the set
    assert_true (s_apply (balancer, "updated",
                 s_service ("a", "billing", CVR_HEALTH_HEALTHY, 100), NULL));
    assert_int_equal (cvr_balancer_size (balancer), 1);
    s_assert_sequence (balancer, "c c");
    cvr_balancer_destroy (&balancer);

    //  Without a name every service is held
    balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    other = s_service ("x", "billing", CVR_HEALTH_HEALTHY, 100);
    cvr_balancer_upsert (balancer, other);
    cvr_service_destroy (&other);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    assert_int_equal (cvr_balancer_size (balancer), 2);
    cvr_balancer_destroy (&balancer);
}

static void
test_set_replaces (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    s_add (balancer, "old", CVR_HEALTH_HEALTHY, 100);

    cvr_service_list_t *list = s_list_new ();
    s_list_append (list, s_service ("b", "orders", CVR_HEALTH_HEALTHY, 100));
    s_list_append (list, s_service ("a", "orders", CVR_HEALTH_HEALTHY, 100));
    //  A repeated id: the later record wins
    s_list_append (list, s_service ("b", "orders", CVR_HEALTH_UNHEALTHY, 100));
    //  Records without an id cannot be held
    cvr_service_t *anonymous = s_service ("z", "orders", CVR_HEALTH_HEALTHY, 100);
    free (anonymous->service_id);
    anonymous->service_id = NULL;
    s_list_append (list, anonymous);
    cvr_balancer_set (balancer, list);
    cvr_service_list_destroy (&list);
    assert_int_equal (cvr_balancer_size (balancer), 2);
    s_assert_sequence (balancer, "a a");

    //  An empty list (or none) empties the set
    list = s_list_new ();
    cvr_balancer_set (balancer, list);
    cvr_service_list_destroy (&list);
    assert_int_equal (cvr_balancer_size (balancer), 0);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    cvr_balancer_set (balancer, NULL);
    assert_int_equal (cvr_balancer_size (balancer), 0);
    assert_null (cvr_balancer_pick (balancer));
    cvr_balancer_destroy (&balancer);
}

static void
test_set_same_list_keeps_picks (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, NULL);
    cvr_service_list_t *list = s_list_new ();
    s_list_append (list, s_service ("a", "orders", CVR_HEALTH_HEALTHY, 5));
    s_list_append (list, s_service ("b", "orders", CVR_HEALTH_HEALTHY, 1));
    s_list_append (list, s_service ("c", "orders", CVR_HEALTH_HEALTHY, 1));
    cvr_balancer_set (balancer, list);
    s_assert_sequence (balancer, "a a b");

    //  The same list again: no change, the borrowed pick stays valid and
    //  the smooth sequence carries on
    const cvr_service_t *picked = cvr_balancer_pick (balancer);
    assert_string_equal (picked->service_id, "a");
    assert_false (s_apply (balancer, "snapshot", NULL, list));
    assert_string_equal (picked->service_id, "a");
    s_assert_sequence (balancer, "c a a");
    cvr_balancer_destroy (&balancer);
}

static void
test_apply_events (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, "orders");

    //  snapshot replaces the set
    s_add (balancer, "stale", CVR_HEALTH_HEALTHY, 100);
    cvr_service_list_t *list = s_list_new ();
    s_list_append (list, s_service ("a", "orders", CVR_HEALTH_HEALTHY, 100));
    s_list_append (list, s_service ("b", "orders", CVR_HEALTH_HEALTHY, 100));
    assert_true (s_apply (balancer, "snapshot", NULL, list));
    assert_int_equal (cvr_balancer_size (balancer), 2);
    s_assert_sequence (balancer, "a b a b");

    //  registered adds
    assert_true (s_apply (balancer, "registered",
                 s_service ("c", "orders", CVR_HEALTH_HEALTHY, 100), NULL));
    assert_int_equal (cvr_balancer_size (balancer), 3);
    //  It sorts after the last pick, b, so its turn comes now
    s_assert_sequence (balancer, "c a b");

    //  updated replaces the record
    cvr_service_t *service = s_service ("c", "orders", CVR_HEALTH_HEALTHY, 100);
    free (service->endpoint);
    service->endpoint = strdup ("tcp://10.0.0.7:7000");
    assert_true (s_apply (balancer, "updated", service, NULL));
    assert_int_equal (cvr_balancer_size (balancer), 3);
    const cvr_service_t *picked = cvr_balancer_pick (balancer);
    assert_string_equal (picked->service_id, "c");
    assert_string_equal (picked->endpoint, "tcp://10.0.0.7:7000");

    //  The same record again is no change
    service = s_service ("c", "orders", CVR_HEALTH_HEALTHY, 100);
    free (service->endpoint);
    service->endpoint = strdup ("tcp://10.0.0.7:7000");
    assert_false (s_apply (balancer, "updated", service, NULL));

    //  health takes a service out of the rotation
    assert_true (s_apply (balancer, "health",
                 s_service ("b", "orders", CVR_HEALTH_UNHEALTHY, 100), NULL));
    assert_int_equal (cvr_balancer_size (balancer), 3);
    s_assert_sequence (balancer, "a c a c");

    //  deregistered and expired remove
    assert_true (s_apply (balancer, "deregistered",
                 s_service ("a", "orders", CVR_HEALTH_HEALTHY, 100), NULL));
    assert_int_equal (cvr_balancer_size (balancer), 2);
    s_assert_sequence (balancer, "c c");
    assert_true (s_apply (balancer, "expired",
                 s_service ("c", "orders", CVR_HEALTH_HEALTHY, 100), NULL));
    assert_int_equal (cvr_balancer_size (balancer), 1);
    assert_null (cvr_balancer_pick (balancer));

    //  Removing what is not held changes nothing
    assert_false (s_apply (balancer, "expired",
                  s_service ("a", "orders", CVR_HEALTH_HEALTHY, 100), NULL));
    assert_false (s_apply (balancer, "deregistered",
                  s_service ("zz", "orders", CVR_HEALTH_HEALTHY, 100), NULL));

    //  Other events, and malformed ones, are ignored
    assert_false (s_apply (balancer, "rebalanced",
                  s_service ("d", "orders", CVR_HEALTH_HEALTHY, 100), NULL));
    assert_false (s_apply (balancer, "registered", NULL, NULL));
    assert_false (s_apply (balancer, "deregistered", NULL, NULL));
    assert_false (s_apply (balancer, "snapshot", NULL, NULL));
    assert_int_equal (cvr_balancer_size (balancer), 1);
    cvr_event_t *event = s_event ("registered",
        s_service ("d", "orders", CVR_HEALTH_HEALTHY, 100), NULL);
    free (event->type);
    event->type = NULL;
    assert_false (cvr_balancer_apply (balancer, event));
    s_event_free (&event);
    assert_false (cvr_balancer_apply (balancer, NULL));
    assert_int_equal (cvr_balancer_size (balancer), 1);

    //  An empty snapshot empties the set
    assert_true (s_apply (balancer, "snapshot", NULL, s_list_new ()));
    assert_int_equal (cvr_balancer_size (balancer), 0);
    assert_false (s_apply (balancer, "snapshot", NULL, s_list_new ()));
    cvr_balancer_destroy (&balancer);
}

static void
test_remove_unknown_is_noop (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    s_add (balancer, "a", CVR_HEALTH_HEALTHY, 100);
    s_add (balancer, "b", CVR_HEALTH_HEALTHY, 100);
    const cvr_service_t *picked = cvr_balancer_pick (balancer);
    assert_string_equal (picked->service_id, "a");
    cvr_balancer_remove (balancer, "nope");
    cvr_balancer_remove (balancer, NULL);
    assert_int_equal (cvr_balancer_size (balancer), 2);
    //  Nothing was rebuilt: the borrowed record is intact, the cycle goes on
    assert_string_equal (picked->service_id, "a");
    s_assert_sequence (balancer, "b a b");
    cvr_balancer_upsert (balancer, NULL);
    assert_int_equal (cvr_balancer_size (balancer), 2);
    cvr_balancer_destroy (&balancer);
}

static void
test_holds_copies (void **state)
{
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_ROUND_ROBIN, NULL);
    cvr_service_t *service = s_service ("a", "orders", CVR_HEALTH_HEALTHY, 100);
    cvr_label_t label = { (char *) "zone", (char *) "eu-1" };
    service->labels = &label;
    service->labels_count = 1;
    cvr_balancer_upsert (balancer, service);
    const cvr_service_t *picked = cvr_balancer_pick (balancer);
    assert_ptr_not_equal (picked, service);
    assert_ptr_not_equal (picked->endpoint, service->endpoint);
    assert_string_equal (cvr_service_label (picked, "zone"), "eu-1");
    service->labels = NULL;
    service->labels_count = 0;
    cvr_service_destroy (&service);
    picked = cvr_balancer_pick (balancer);
    assert_string_equal (picked->endpoint, "tcp://10.0.0.1:a");
    assert_string_equal (cvr_service_label (picked, "zone"), "eu-1");
    cvr_balancer_destroy (&balancer);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_new_destroy),
        cmocka_unit_test (test_empty_picks_null),
        cmocka_unit_test (test_round_robin_order),
        cmocka_unit_test (test_round_robin_ignores_weight),
        cmocka_unit_test (test_round_robin_resumes_after_change),
        cmocka_unit_test (test_weighted_shares),
        cmocka_unit_test (test_weighted_shares_uneven),
        cmocka_unit_test (test_weighted_smooth_sequence),
        cmocka_unit_test (test_weighted_equal_weights_cycle),
        cmocka_unit_test (test_weighted_update_keeps_current),
        cmocka_unit_test (test_weighted_newcomer_does_not_burst),
        cmocka_unit_test (test_unhealthy_never_picked),
        cmocka_unit_test (test_degraded_only_as_fallback),
        cmocka_unit_test (test_weight_zero_never_picked),
        cmocka_unit_test (test_huge_weights),
        cmocka_unit_test (test_service_name_filter),
        cmocka_unit_test (test_set_replaces),
        cmocka_unit_test (test_set_same_list_keeps_picks),
        cmocka_unit_test (test_apply_events),
        cmocka_unit_test (test_remove_unknown_is_noop),
        cmocka_unit_test (test_holds_copies),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
