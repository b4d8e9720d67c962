/*  test_map.c: cvr_map against zhashx as the reference, through random
    puts, replacements and removals (removal's backward shift is where an
    open-addressing map goes wrong), across growth; half the puts and gets
    through the calls that take the key's hash. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "cvr_map.h"

#define S_KEYS 5000

typedef struct {
    char key [32];
    int id;
} item_t;

static void
s_check (cvr_map_t *map, zhashx_t *reference, item_t *items, int keys)
{
    assert_int_equal (cvr_map_size (map), zhashx_size (reference));
    for (int i = 0; i < keys; i++)
        assert_ptr_equal (cvr_map_get (map, items [i].key),
                          zhashx_lookup (reference, items [i].key));
    //  Iteration visits every value once.
    size_t cursor = 0, seen = 0;
    item_t *item;
    while ((item = (item_t *) cvr_map_next (map, &cursor))) {
        assert_ptr_equal (zhashx_lookup (reference, item->key), item);
        seen++;
    }
    assert_int_equal (seen, zhashx_size (reference));
}

static void
s_check_same (cvr_map_t *map, zhashx_t *reference, item_t *items)
{
    s_check (map, reference, items, S_KEYS);
}

static void
test_random_against_zhashx (void **state)
{
    item_t *items = (item_t *) calloc (S_KEYS, sizeof (item_t));
    item_t *again = (item_t *) calloc (S_KEYS, sizeof (item_t));
    for (int i = 0; i < S_KEYS; i++) {
        snprintf (items [i].key, sizeof (items [i].key), "svc-%d", i);
        snprintf (again [i].key, sizeof (again [i].key), "svc-%d", i);
        items [i].id = again [i].id = i;
    }
    cvr_map_t *map = cvr_map_new ();
    zhashx_t *reference = zhashx_new ();
    uint32_t rng = 12345;
    for (int round = 0; round < 200000; round++) {
        rng = rng * 1664525u + 1013904223u;
        int i = (int) ((rng >> 8) % S_KEYS);
        int action = (int) ((rng >> 4) % 3);
        if (action == 0) {
            //  Put: either copy of the item, so replacements happen too.
            item_t *item = (rng & 1) ? &items [i] : &again [i];
            void *old = (rng >> 20) & 1
                      ? cvr_map_put_hashed (map, item->key, cvr_map_hash (item->key), item)
                      : cvr_map_put (map, item->key, item);
            assert_ptr_equal (old, zhashx_lookup (reference, item->key));
            zhashx_update (reference, item->key, item);
        }
        else
        if (action == 1) {
            void *removed = cvr_map_remove (map, items [i].key);
            assert_ptr_equal (removed, zhashx_lookup (reference, items [i].key));
            zhashx_delete (reference, items [i].key);
        }
        else
            assert_ptr_equal ((rng >> 20) & 1
                              ? cvr_map_get_hashed (map, items [i].key,
                                                    cvr_map_hash (items [i].key))
                              : cvr_map_get (map, items [i].key),
                              zhashx_lookup (reference, items [i].key));
        if (round % 20000 == 0)
            s_check_same (map, reference, items);
    }
    s_check_same (map, reference, items);
    //  Empty it completely, then fill it again.
    for (int i = 0; i < S_KEYS; i++) {
        cvr_map_remove (map, items [i].key);
        zhashx_delete (reference, items [i].key);
    }
    s_check_same (map, reference, items);
    assert_int_equal (cvr_map_size (map), 0);
    for (int i = 0; i < S_KEYS; i++) {
        assert_null (cvr_map_put (map, items [i].key, &items [i]));
        zhashx_insert (reference, items [i].key, &items [i]);
    }
    s_check_same (map, reference, items);
    assert_null (cvr_map_get (map, "absent"));
    assert_null (cvr_map_remove (map, "absent"));
    zhashx_destroy (&reference);
    cvr_map_destroy (&map);
    cvr_map_destroy (&map);         //  a second destroy is a no-op
    free (items);
    free (again);
}

//  A map big enough for huge-page slot arrays (2 MB and up: 131,072
//  slots), the cursor's keys, and prefetch hints that change nothing
//  (and tell a key surely absent).
static void
test_large_cursor_prefetch (void **state)
{
    const int count = 200000;
    item_t *items = (item_t *) calloc ((size_t) count, sizeof (item_t));
    cvr_map_t *map = cvr_map_new ();
    for (int i = 0; i < count; i++) {
        snprintf (items [i].key, sizeof (items [i].key), "svc-%d", i);
        items [i].id = i;
        assert_null (cvr_map_put (map, items [i].key, &items [i]));
    }
    assert_int_equal (cvr_map_size (map), count);
    for (int i = 0; i < count; i++) {
        cvr_map_prefetch_slot (map, items [i].key, strlen (items [i].key));
        assert_true (cvr_map_prefetch_value (map, items [i].key, strlen (items [i].key)));
    }
    //  An absent key is reported so (its 64-bit hash is in no slot).
    cvr_map_prefetch_slot (map, "absent", 6);
    assert_false (cvr_map_prefetch_value (map, "absent", 6));
    assert_false (cvr_map_prefetch_value (map, "svc-1", 3));    //  a prefix: "svc"
    //  Iteration visits each value once.
    size_t cursor = 0, seen = 0;
    item_t *item;
    while ((item = (item_t *) cvr_map_next (map, &cursor))) {
        assert_ptr_equal (cvr_map_get (map, item->key), item);
        seen++;
    }
    assert_int_equal (seen, count);
    for (int i = 0; i < count; i += 2)
        assert_ptr_equal (cvr_map_remove (map, items [i].key), &items [i]);
    for (int i = 0; i < count; i++)
        assert_ptr_equal (cvr_map_get (map, items [i].key), i % 2 ? &items [i] : NULL);
    cvr_map_destroy (&map);
    free (items);
}

//  The cursor's end: how many slots the map iterates over.
static size_t
s_slots (cvr_map_t *map)
{
    size_t cursor = 0;
    while (cvr_map_next (map, &cursor))
        ;
    return cursor;
}

//  Growth in steps: a map that passed 70% of 262,144 slots has a new table
//  of 524,288 taking insertions while the old one drains a few slots per
//  insertion; until then both tables answer every call. Checked against
//  zhashx while the old table still holds entries, with removals and
//  replacements landing in both tables, and after it is gone.
static void
test_growth_in_steps (void **state)
{
    const int count = 260000;
    item_t *items = (item_t *) calloc ((size_t) count, sizeof (item_t));
    item_t *again = (item_t *) calloc ((size_t) count, sizeof (item_t));
    cvr_map_t *map = cvr_map_new ();
    zhashx_t *reference = zhashx_new ();
    for (int i = 0; i < count; i++) {
        snprintf (items [i].key, sizeof (items [i].key), "svc-%d", i);
        snprintf (again [i].key, sizeof (again [i].key), "svc-%d", i);
        items [i].id = again [i].id = i;
    }
    //  183,501 entries: the 262,144-slot table is past 70% and grows; each
    //  insertion after that moves some of the old table's slots. After
    //  each of the first 20, every entry is still found.
    int size = 0;
    for (; size < 183521; size++) {
        if (size == 183500)
            assert_int_equal (s_slots (map), 262144);
        assert_null (cvr_map_put (map, items [size].key, &items [size]));
        zhashx_insert (reference, items [size].key, &items [size]);
        if (size > 183500)
            for (int i = 0; i <= size; i++)
                assert_ptr_equal (cvr_map_get (map, items [i].key), &items [i]);
    }
    assert_int_equal (s_slots (map), 262144 + 524288);
    s_check (map, reference, items, size);
    //  While both tables hold entries: remove every third old key (in
    //  either table), replace every fifth left, add 1,000 more: too few
    //  insertions to finish draining.
    for (int i = 0; i < size; i += 3) {
        assert_ptr_equal (cvr_map_remove (map, items [i].key), &items [i]);
        zhashx_delete (reference, items [i].key);
    }
    for (int i = 1; i < size; i += 5) {
        if (i % 3 == 0)
            continue;               //  removed: putting it would insert
        assert_ptr_equal (cvr_map_put (map, again [i].key, &again [i]), &items [i]);
        zhashx_update (reference, again [i].key, &again [i]);
    }
    for (int i = size; i < size + 1000; i++) {
        assert_null (cvr_map_put (map, items [i].key, &items [i]));
        zhashx_insert (reference, items [i].key, &items [i]);
    }
    size += 1000;
    assert_int_equal (s_slots (map), 262144 + 524288);     //  still growing
    s_check (map, reference, items, size);
    for (int i = 0; i < size; i++)
        assert_true (cvr_map_prefetch_value (map, items [i].key, strlen (items [i].key))
                     == (zhashx_lookup (reference, items [i].key) != NULL));
    //  Enough insertions to finish: the old table is gone.
    for (int i = size; i < count; i++) {
        assert_null (cvr_map_put (map, items [i].key, &items [i]));
        zhashx_insert (reference, items [i].key, &items [i]);
    }
    assert_int_equal (s_slots (map), 524288);
    s_check (map, reference, items, count);
    zhashx_destroy (&reference);
    cvr_map_destroy (&map);
    free (items);
    free (again);
}

//  Runs that wrap around: keys whose home is one of the last 4 slots of
//  an 8,192-slot table, so that their probe run continues at slot 0,
//  where the drain starts. Every entry is found after each insertion of
//  the drain (128 of them), with wrapped keys removed and replaced
//  meanwhile. Then maps destroyed in the middle of a drain and with a
//  next table being prepared (the sanitizer build reports a leak).
static void
test_growth_wraps_and_destroys (void **state)
{
    const int count = 6000, wrapped = 40;
    item_t *items = (item_t *) calloc ((size_t) count, sizeof (item_t));
    //  The wrapped keys first, then ordinary ones up to 5,734 (just under
    //  70% of 8,192), then those whose insertions grow and drain the map.
    int n = 0;
    for (int candidate = 0; n < wrapped; candidate++) {
        snprintf (items [n].key, sizeof (items [n].key), "w-%d", candidate);
        if ((cvr_map_hash (items [n].key) & 8191) >= 8188)
            items [n].id = n, n++;
    }
    for (int i = n; i < count; i++) {
        snprintf (items [i].key, sizeof (items [i].key), "svc-%d", i);
        items [i].id = i;
    }
    cvr_map_t *map = cvr_map_new ();
    zhashx_t *reference = zhashx_new ();
    for (int i = 0; i < 5734; i++) {
        assert_null (cvr_map_put (map, items [i].key, &items [i]));
        zhashx_insert (reference, items [i].key, &items [i]);
    }
    assert_int_equal (s_slots (map), 8192);
    for (int i = 5734; i < count; i++) {
        assert_null (cvr_map_put (map, items [i].key, &items [i]));
        zhashx_insert (reference, items [i].key, &items [i]);
        if (i == 5740)          //  mid-drain: wrapped keys out, some back
            for (int w = 0; w < wrapped; w += 2) {
                assert_ptr_equal (cvr_map_remove (map, items [w].key), &items [w]);
                zhashx_delete (reference, items [w].key);
                if (w % 4 == 0) {
                    assert_null (cvr_map_put (map, items [w].key, &items [w]));
                    zhashx_insert (reference, items [w].key, &items [w]);
                }
            }
        for (int k = 0; k <= i; k++)
            assert_ptr_equal (cvr_map_get_hashed (map, items [k].key,
                                                  cvr_map_hash (items [k].key)),
                              zhashx_lookup (reference, items [k].key));
    }
    assert_int_equal (s_slots (map), 16384);                //  drained
    s_check (map, reference, items, count);
    zhashx_destroy (&reference);
    cvr_map_destroy (&map);
    free (items);

    //  Destroyed mid-drain, and with a next table being prepared (from
    //  60% of 262,144 slots, a next table of 12 MB).
    char (*keys) [16] = calloc (170000, 16);
    for (int i = 0; i < 170000; i++)
        snprintf (keys [i], 16, "k-%d", i);
    map = cvr_map_new ();
    for (int i = 0; i < 5736; i++)
        cvr_map_put (map, keys [i], keys [i]);
    assert_int_equal (s_slots (map), 8192 + 16384);
    cvr_map_destroy (&map);
    map = cvr_map_new ();
    for (int i = 0; i < 170000; i++)
        cvr_map_put (map, keys [i], keys [i]);
    assert_int_equal (s_slots (map), 262144);
    cvr_map_destroy (&map);
    free (keys);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_random_against_zhashx),
        cmocka_unit_test (test_large_cursor_prefetch),
        cmocka_unit_test (test_growth_in_steps),
        cmocka_unit_test (test_growth_wraps_and_destroys),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
