/*  test_log.c: cvr_log, the durable command log, on one real node (libraft
    on 127.0.0.1, a data directory under a mkdtemp in /tmp): commands
    applied by the caller and committed as one entry come back APPLIED,
    their events numbered from the committed state; the committed state
    keeps services by id only while the copy a leader takes is indexed,
    and both hold the same services, also after a restart from the log. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "cvr_log.h"
#include "cvr_test_port.h"

#define WAIT_MS 10000

typedef struct {
    char root [64];             //  mkdtemp, removed by the teardown
    char address [32];
    cvr_log_t *log;
} fixture_t;

static void
s_open (fixture_t *self)
{
    cvr_log_config_t config = {
        .data_dir = self->root, .node_id = 1, .raft_address = self->address,
        .limits = { .max_services = 100 }
    };
    self->log = cvr_log_new (&config);
    assert_non_null (self->log);
    assert_int_equal (cvr_log_wait_leader (self->log, WAIT_MS), 0);
}

static int
s_setup (void **state)
{
    fixture_t *self = (fixture_t *) zmalloc (sizeof (fixture_t));
    strcpy (self->root, "/tmp/cvr-log-XXXXXX");
    assert_non_null (mkdtemp (self->root));
    snprintf (self->address, sizeof (self->address), "127.0.0.1:%d",
              cvr_test_free_port (10000, 12000));
    *state = self;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *self = (fixture_t *) *state;
    cvr_log_destroy (&self->log);
    zdir_t *dir = zdir_new (self->root, NULL);
    if (dir)
        zdir_remove (dir, true);
    zdir_destroy (&dir);
    free (self);
    return 0;
}

//  Registers id under name with label zone=zone in state, as the server
//  does, and appends the command to the open batch.
static void
s_register (cvr_log_t *log, cvr_state_t *state, const char *id, const char *name,
            const char *zone)
{
    cvr_label_t label = { "zone", (char *) zone };
    cvr_service_t spec = { .service_id = (char *) id, .service_name = (char *) name,
                           .service_type = "sink", .endpoint = "tcp://h:1",
                           .labels = &label, .labels_count = 1, .lease_ms = 60000 };
    cvr_cmd_t cmd = { .type = CVR_CMD_REGISTER, .now = 1000, .service = &spec };
    assert_int_equal (cvr_state_apply (state, &cmd, NULL), CVR_OK);
    cvr_log_append (log, &cmd);
}

//  Waits for the APPLIED event of tag; returns it.
static cvr_raft_event_t
s_wait_applied (cvr_log_t *log, int64_t tag)
{
    zpoller_t *poller = zpoller_new (cvr_log_socket (log), NULL);
    int64_t deadline = zclock_mono () + WAIT_MS;
    cvr_raft_event_t event = { 0 };
    while (zclock_mono () < deadline) {
        if (!zpoller_wait (poller, 100))
            continue;
        if (cvr_log_recv (log, &event) == 0 && event.type == CVR_RAFT_APPLIED
        &&  event.tag == (uint64_t) tag)
            break;
        event.type = 0;
    }
    zpoller_destroy (&poller);
    assert_int_equal (event.type, CVR_RAFT_APPLIED);
    assert_int_equal (event.status, CVR_RAFT_OK);
    return event;
}

//  Reads the committed events waiting, up to count; returns how many,
//  checking that their seq runs on from first.
static size_t
s_read_events (cvr_log_t *log, size_t count, uint64_t first)
{
    zpoller_t *poller = zpoller_new (cvr_log_events (log), NULL);
    int64_t deadline = zclock_mono () + WAIT_MS;
    size_t read = 0;
    while (read < count && zclock_mono () < deadline) {
        cvr_log_event_t event;
        if (cvr_log_recv_event (log, &event) == 0) {
            assert_int_equal (event.seq, first + read);
            assert_non_null (strstr (event.topic, "/registered"));
            read++;
        }
        else
            zpoller_wait (poller, 100);
    }
    zpoller_destroy (&poller);
    return read;
}

//  The ids a query gives, comma-separated, into buffer.
static const char *
s_ids (cvr_state_t *state, const cvr_service_filter_t *filter, char *buffer, size_t size)
{
    size_t count;
    const cvr_service_t **found = cvr_registry_query (cvr_state_registry (state), filter,
                                                      &count);
    buffer [0] = 0;
    for (size_t i = 0; i < count; i++) {
        size_t at = strlen (buffer);
        snprintf (buffer + at, size - at, "%s%s", i ? "," : "", found [i]->service_id);
    }
    free (found);
    return buffer;
}

//  The committed state (unindexed) and a copy of it (indexed) both answer
//  the same queries with the same services.
static void
s_check_states (cvr_log_t *log)
{
    char ids [256];
    cvr_label_t eu = { "zone", "eu" };
    cvr_service_filter_t by_name = { .service_name = "orders" };
    cvr_service_filter_t by_label = { .labels = &eu, .labels_count = 1 };

    cvr_state_t *committed = cvr_log_lock (log);
    assert_false (cvr_registry_indexed (cvr_state_registry (committed)));
    assert_int_equal (cvr_registry_size (cvr_state_registry (committed)), 3);
    assert_string_equal (s_ids (committed, &by_name, ids, sizeof (ids)), "a1,a2");
    assert_string_equal (s_ids (committed, &by_label, ids, sizeof (ids)), "a1,b1");
    cvr_log_unlock (log);

    cvr_history_t *history = cvr_history_new (16);
    cvr_state_t *copy = cvr_log_copy (log, history);
    assert_non_null (copy);
    assert_true (cvr_registry_indexed (cvr_state_registry (copy)));
    assert_int_equal (cvr_registry_size (cvr_state_registry (copy)), 3);
    assert_string_equal (s_ids (copy, &by_name, ids, sizeof (ids)), "a1,a2");
    assert_string_equal (s_ids (copy, &by_label, ids, sizeof (ids)), "a1,b1");
    //  The copy's numbering continues the committed events'.
    assert_int_equal (cvr_history_seq (history), 3);
    cvr_state_destroy (&copy);
    cvr_history_destroy (&history);
}

static void
test_commit_copy_and_restart (void **state)
{
    fixture_t *self = (fixture_t *) *state;
    s_open (self);
    cvr_history_t *history = cvr_history_new (16);
    cvr_state_t *mine = cvr_log_copy (self->log, history);
    assert_non_null (mine);
    assert_true (cvr_registry_indexed (cvr_state_registry (mine)));
    s_register (self->log, mine, "a1", "orders", "eu");
    s_register (self->log, mine, "a2", "orders", "us");
    s_register (self->log, mine, "b1", "billing", "eu");
    assert_int_equal (cvr_log_pending (self->log), 3);
    int64_t tag = cvr_log_commit (self->log);
    assert_true (tag > 0);
    assert_int_equal (cvr_log_pending (self->log), 0);
    cvr_raft_event_t applied = s_wait_applied (self->log, tag);
    assert_true (applied.index > 0);
    assert_int_equal (applied.result, 0);      //  applied as proposed
    assert_int_equal (s_read_events (self->log, 3, 1), 3);
    s_check_states (self->log);
    cvr_state_destroy (&mine);
    cvr_history_destroy (&history);

    //  A restart rebuilds the committed state from the log.
    cvr_log_destroy (&self->log);
    s_open (self);
    s_check_states (self->log);
}

int
main (void)
{
    zsys_init ();
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_commit_copy_and_restart, s_setup, s_teardown),
    };
    int rc = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return rc;
}
