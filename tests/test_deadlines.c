/*  test_deadlines.c: cvr_deadlines, the keyed min-heap of lease and
    session deadlines: ordering, moves, removal anywhere, and a random
    walk checked against a plain array model.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "cvr_deadlines.h"

//  Pops everything due at now (removing each), checking it comes out in
//  deadline order; returns how many, writing their keys into out.
static size_t
s_drain (cvr_deadlines_t *d, int64_t now, char out [][16], size_t max)
{
    size_t n = 0;
    int64_t last = INT64_MIN;
    const char *key;
    while ((key = cvr_deadlines_due (d, now))) {
        int64_t deadline = cvr_deadlines_get (d, key);
        assert_true (deadline <= now);
        assert_true (deadline >= last);
        assert_true (deadline == cvr_deadlines_next (d));
        last = deadline;
        assert_true (n < max);
        snprintf (out [n++], 16, "%s", key);
        cvr_deadlines_remove (d, out [n - 1]);
    }
    return n;
}

static void
test_empty (void **state)
{
    cvr_deadlines_t *d = cvr_deadlines_new ();
    assert_int_equal (cvr_deadlines_size (d), 0);
    assert_true (cvr_deadlines_next (d) == INT64_MAX);
    assert_null (cvr_deadlines_due (d, INT64_MAX));
    assert_true (cvr_deadlines_get (d, "nope") == -1);
    cvr_deadlines_remove (d, "nope");           //  no-op
    assert_int_equal (cvr_deadlines_size (d), 0);
    cvr_deadlines_destroy (&d);
    assert_null (d);
    cvr_deadlines_destroy (&d);                 //  NULL-safe
}

static void
test_order (void **state)
{
    cvr_deadlines_t *d = cvr_deadlines_new ();
    //  Inserted out of order.
    cvr_deadlines_set (d, "e", 500);
    cvr_deadlines_set (d, "b", 200);
    cvr_deadlines_set (d, "d", 400);
    cvr_deadlines_set (d, "a", 100);
    cvr_deadlines_set (d, "c", 300);
    assert_int_equal (cvr_deadlines_size (d), 5);
    assert_true (cvr_deadlines_next (d) == 100);
    assert_true (cvr_deadlines_get (d, "d") == 400);

    //  Nothing due before the earliest.
    assert_null (cvr_deadlines_due (d, 99));
    assert_null (cvr_deadlines_due (d, INT64_MIN));
    //  Due is inclusive, and leaves the entry in place.
    assert_string_equal (cvr_deadlines_due (d, 100), "a");
    assert_string_equal (cvr_deadlines_due (d, 100), "a");
    assert_int_equal (cvr_deadlines_size (d), 5);

    char out [8][16];
    assert_int_equal (s_drain (d, 350, out, 8), 3);
    assert_string_equal (out [0], "a");
    assert_string_equal (out [1], "b");
    assert_string_equal (out [2], "c");
    assert_int_equal (cvr_deadlines_size (d), 2);
    assert_true (cvr_deadlines_next (d) == 400);
    assert_null (cvr_deadlines_due (d, 399));
    assert_int_equal (s_drain (d, INT64_MAX, out, 8), 2);
    assert_string_equal (out [0], "d");
    assert_string_equal (out [1], "e");
    assert_int_equal (cvr_deadlines_size (d), 0);
    assert_true (cvr_deadlines_next (d) == INT64_MAX);
    cvr_deadlines_destroy (&d);
}

//  Negative and extreme deadlines order like any others.
static void
test_extremes (void **state)
{
    cvr_deadlines_t *d = cvr_deadlines_new ();
    cvr_deadlines_set (d, "max", INT64_MAX);
    cvr_deadlines_set (d, "zero", 0);
    cvr_deadlines_set (d, "min", INT64_MIN);
    cvr_deadlines_set (d, "neg", -5);
    char out [8][16];
    assert_int_equal (s_drain (d, 0, out, 8), 3);
    assert_string_equal (out [0], "min");
    assert_string_equal (out [1], "neg");
    assert_string_equal (out [2], "zero");
    assert_string_equal (cvr_deadlines_due (d, INT64_MAX), "max");
    cvr_deadlines_destroy (&d);
}

//  The key is copied: the caller's buffer may change afterwards.
static void
test_key_copied (void **state)
{
    cvr_deadlines_t *d = cvr_deadlines_new ();
    char key [16] = "svc-1";
    cvr_deadlines_set (d, key, 10);
    strcpy (key, "svc-2");
    cvr_deadlines_set (d, key, 20);
    strcpy (key, "xxxxx");
    assert_int_equal (cvr_deadlines_size (d), 2);
    assert_string_equal (cvr_deadlines_due (d, 100), "svc-1");
    assert_true (cvr_deadlines_get (d, "svc-2") == 20);
    cvr_deadlines_destroy (&d);
}

static void
test_move (void **state)
{
    cvr_deadlines_t *d = cvr_deadlines_new ();
    char key [16];
    for (int i = 0; i < 10; i++) {
        snprintf (key, sizeof key, "k%d", i);
        cvr_deadlines_set (d, key, 1000 + 100 * i);
    }
    //  Move the last one to the front, and the first one to the back.
    cvr_deadlines_set (d, "k9", 50);
    assert_int_equal (cvr_deadlines_size (d), 10);  //  moved, not added
    assert_string_equal (cvr_deadlines_due (d, 50), "k9");
    cvr_deadlines_set (d, "k9", 5000);
    assert_string_equal (cvr_deadlines_due (d, 5000), "k0");
    cvr_deadlines_set (d, "k0", 4000);
    assert_string_equal (cvr_deadlines_due (d, 5000), "k1");
    assert_true (cvr_deadlines_next (d) == 1100);
    //  A middle one earlier, then later (renewing a lease).
    cvr_deadlines_set (d, "k5", 1050);
    assert_string_equal (cvr_deadlines_due (d, 1060), "k5");
    cvr_deadlines_set (d, "k5", 1500);              //  back where it was
    //  Setting the same deadline again changes nothing.
    cvr_deadlines_set (d, "k3", 1300);
    assert_int_equal (cvr_deadlines_size (d), 10);

    char out [16][16];
    assert_int_equal (s_drain (d, INT64_MAX, out, 16), 10);
    const char *expect [] = { "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k0", "k9" };
    for (int i = 0; i < 10; i++)
        assert_string_equal (out [i], expect [i]);
    cvr_deadlines_destroy (&d);
}

//  Removing from the top, the bottom and the middle keeps heap order.
static void
test_remove (void **state)
{
    cvr_deadlines_t *d = cvr_deadlines_new ();
    char key [16];
    //  Deadlines 10, 20, ..., 310 set in a scrambled order.
    for (int i = 0; i < 31; i++) {
        int j = (i * 17) % 31;
        snprintf (key, sizeof key, "k%02d", j);
        cvr_deadlines_set (d, key, 10 * (j + 1));
    }
    assert_int_equal (cvr_deadlines_size (d), 31);
    cvr_deadlines_remove (d, "k00");                //  top
    assert_true (cvr_deadlines_next (d) == 20);
    cvr_deadlines_remove (d, "k30");                //  largest (a leaf)
    cvr_deadlines_remove (d, "k15");                //  middle
    cvr_deadlines_remove (d, "k07");
    cvr_deadlines_remove (d, "k22");
    cvr_deadlines_remove (d, "k15");                //  already gone: no-op
    assert_int_equal (cvr_deadlines_size (d), 26);
    assert_true (cvr_deadlines_get (d, "k15") == -1);
    assert_true (cvr_deadlines_get (d, "k16") == 170);

    char out [32][16];
    assert_int_equal (s_drain (d, INT64_MAX, out, 32), 26);
    size_t n = 0;
    for (int j = 0; j < 31; j++) {
        if (j == 0 || j == 30 || j == 15 || j == 7 || j == 22)
            continue;
        snprintf (key, sizeof key, "k%02d", j);
        assert_string_equal (out [n++], key);
    }
    //  A removed key can come back.
    cvr_deadlines_set (d, "k15", 5);
    assert_int_equal (cvr_deadlines_size (d), 1);
    assert_string_equal (cvr_deadlines_due (d, 5), "k15");
    cvr_deadlines_destroy (&d);
}

//  Removing a middle entry whose replacement (the last leaf) is smaller
//  than the removed entry's parent must sift that leaf up.
static void
test_remove_sifts_up (void **state)
{
    cvr_deadlines_t *d = cvr_deadlines_new ();
    //  Heap by insertion (each sifts up no further than shown):
    //  [0]a=1  [1]b=100  [2]c=2  [3]d=101 [4]e=102 [5]f=3  [6]g=4
    cvr_deadlines_set (d, "a", 1);
    cvr_deadlines_set (d, "b", 100);
    cvr_deadlines_set (d, "c", 2);
    cvr_deadlines_set (d, "d", 101);
    cvr_deadlines_set (d, "e", 102);
    cvr_deadlines_set (d, "f", 3);
    cvr_deadlines_set (d, "g", 4);
    //  Removing d (under b=100) moves g=4 into its place: it must rise
    //  above b. Were it left under b, moving f later would lift b over it.
    cvr_deadlines_remove (d, "d");
    assert_true (cvr_deadlines_next (d) == 1);
    cvr_deadlines_remove (d, "a");
    assert_true (cvr_deadlines_next (d) == 2);
    cvr_deadlines_remove (d, "c");
    assert_true (cvr_deadlines_next (d) == 3);
    cvr_deadlines_set (d, "f", 1000);
    assert_true (cvr_deadlines_next (d) == 4);
    assert_string_equal (cvr_deadlines_due (d, 1000), "g");
    char out [8][16];
    assert_int_equal (s_drain (d, INT64_MAX, out, 8), 4);
    assert_string_equal (out [0], "g");
    assert_string_equal (out [1], "b");
    assert_string_equal (out [2], "e");
    assert_string_equal (out [3], "f");
    cvr_deadlines_destroy (&d);
}

//  --------------------------------------------------------------------------
//  Random walk against a model: an array of deadlines, -1 when absent.

#define S_KEYS 300

static uint64_t s_rng_state;

static uint64_t
s_rand (void)
{
    s_rng_state ^= s_rng_state >> 12;
    s_rng_state ^= s_rng_state << 25;
    s_rng_state ^= s_rng_state >> 27;
    return s_rng_state * 0x2545F4914F6CDD1Dull;
}

static void
s_check_model (cvr_deadlines_t *d, const int64_t *model, int64_t now)
{
    size_t size = 0;
    int64_t min = INT64_MAX;
    for (int i = 0; i < S_KEYS; i++)
        if (model [i] >= 0) {
            size++;
            if (model [i] < min)
                min = model [i];
        }
    assert_int_equal (cvr_deadlines_size (d), size);
    assert_true (cvr_deadlines_next (d) == min);
    const char *key = cvr_deadlines_due (d, now);
    if (min <= now) {
        assert_non_null (key);
        int index = atoi (key + 1);
        assert_true (index >= 0 && index < S_KEYS);
        assert_true (model [index] == min);
        assert_true (cvr_deadlines_get (d, key) == min);
    }
    else
        assert_null (key);
}

static void
test_random_model (void **state)
{
    s_rng_state = 0xC0FFEE1234567ull;
    cvr_deadlines_t *d = cvr_deadlines_new ();
    int64_t model [S_KEYS];
    for (int i = 0; i < S_KEYS; i++)
        model [i] = -1;
    int64_t now = 0;
    char key [16];
    size_t pops = 0, sets = 0, removes = 0;
    for (int step = 0; step < 5000; step++) {
        now += (int64_t) (s_rand () % 20);
        int op = (int) (s_rand () % 10);
        int index = (int) (s_rand () % S_KEYS);
        snprintf (key, sizeof key, "k%d", index);
        if (op < 5) {
            //  Set: around now, often in the past or with ties.
            int64_t deadline = now - 50 + (int64_t) (s_rand () % 400);
            if (deadline < 0)
                deadline = 0;
            if (s_rand () % 8 == 0)
                deadline = now;                 //  ties are common
            cvr_deadlines_set (d, key, deadline);
            model [index] = deadline;
            sets++;
        }
        else
        if (op < 7) {
            cvr_deadlines_remove (d, key);
            model [index] = -1;
            removes++;
        }
        else {
            //  Pop what is due, as the server's tick does.
            const char *due = cvr_deadlines_due (d, now);
            if (due) {
                int due_index = atoi (due + 1);
                int64_t min = INT64_MAX;
                for (int i = 0; i < S_KEYS; i++)
                    if (model [i] >= 0 && model [i] < min)
                        min = model [i];
                assert_true (model [due_index] == min);
                assert_true (min <= now);
                snprintf (key, sizeof key, "%s", due);
                cvr_deadlines_remove (d, key);
                model [due_index] = -1;
                pops++;
            }
        }
        s_check_model (d, model, now);
        //  Every key's deadline matches the model.
        if (step % 500 == 0)
            for (int i = 0; i < S_KEYS; i++) {
                snprintf (key, sizeof key, "k%d", i);
                assert_true (cvr_deadlines_get (d, key) == model [i]);
            }
    }
    //  The walk really exercised every operation.
    assert_true (pops > 200 && sets > 2000 && removes > 500);
    //  Finally drain: strictly non-decreasing, and exactly the model's keys.
    char out [S_KEYS][16];
    size_t left = cvr_deadlines_size (d);
    assert_int_equal (s_drain (d, INT64_MAX, out, S_KEYS), left);
    assert_int_equal (cvr_deadlines_size (d), 0);
    cvr_deadlines_destroy (&d);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_empty),
        cmocka_unit_test (test_order),
        cmocka_unit_test (test_extremes),
        cmocka_unit_test (test_key_copied),
        cmocka_unit_test (test_move),
        cmocka_unit_test (test_remove),
        cmocka_unit_test (test_remove_sifts_up),
        cmocka_unit_test (test_random_model),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
