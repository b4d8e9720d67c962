/*  test_raft_io.c: the guard between libraft and its raft_io (cvr_raft_io.h).

    The guard runs here between a fake "libraft" (the callbacks below,
    which own what they are given, as libraft does) and a fake inner I/O
    that records calls and completes snapshot writes when the test says.
    What matters: an InstallSnapshot never reaches libraft while the node's
    own snapshot write is in flight, it does reach it right after that
    write's callback, and every other call and message passes untouched.
    The buffers of a message dropped or left held are freed: only the
    sanitizer build (CONVEYOR_SANITIZE, scripts/sanitize.sh) sees a leak.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "cvr_raft_io.h"

#ifdef RAFT_VERSION_NUMBER
#   define S_APPEND_ENTRIES RAFT_APPEND_ENTRIES
#else
#   define S_APPEND_ENTRIES RAFT_IO_APPEND_ENTRIES
#endif

//  What happened, in order: "R<type>" a message reached libraft, "T" the
//  take-snapshot callback ran, "P" an install's put callback ran, "K" a
//  tick reached libraft.
typedef struct {
    char trace [64];
    int calls [16];                 //  inner calls by kind, see S_*
    struct raft_io_snapshot_put *put [4];   //  the inner's pending puts
    raft_io_snapshot_put_cb put_cb [4];
    unsigned put_trailing [4];
    int puts;
    raft_io_recv_cb recv;           //  the guard's, as the inner got it
    raft_io_tick_cb tick;
    int fail_next;                  //  the next inner call fails with this
    struct raft_io *outer;
    struct raft_io *inner;
    bool retake;                    //  the take callback starts another take
    struct raft_io_snapshot_put libraft_take;
    struct raft_io_snapshot_put libraft_install;
    struct raft_snapshot snapshot;
    raft_time now;
    char sent_address [32];         //  the last send's, as the inner saw it
    raft_id sent_id;
} fixture_t;

enum { S_INIT, S_CLOSE, S_LOAD, S_START, S_BOOTSTRAP, S_RECOVER, S_TERM, S_VOTE,
       S_SEND, S_APPEND, S_TRUNCATE, S_PUT, S_GET, S_TIME, S_RANDOM };

static fixture_t *
s_fx (struct raft_io *inner)
{
    return (fixture_t *) inner->impl;
}

static void
s_note (fixture_t *fx, const char *what)
{
    strncat (fx->trace, what, sizeof (fx->trace) - strlen (fx->trace) - 1);
}

static int
s_count (struct raft_io *inner, int kind)
{
    fixture_t *fx = s_fx (inner);
    fx->calls [kind]++;
    int rc = fx->fail_next;
    fx->fail_next = 0;
    if (rc)
        snprintf (inner->errmsg, sizeof (inner->errmsg), "inner call %d failed", kind);
    return rc;
}

//  The fake inner I/O
static int f_init (struct raft_io *io, raft_id id, const char *address)
{
    (void) id; (void) address;
#if CVR_RAFT_IO_CAPACITY
    io->capacity = 4096;
#endif
    return s_count (io, S_INIT);
}
static void f_close (struct raft_io *io, raft_io_close_cb cb)
{ s_count (io, S_CLOSE); (void) cb; }
static int f_load (struct raft_io *io, raft_term *term, raft_id *voted_for,
                   struct raft_snapshot **snapshot, raft_index *start_index,
                   struct raft_entry *entries [], size_t *n_entries)
{
    (void) term; (void) voted_for; (void) snapshot; (void) start_index;
    (void) entries; (void) n_entries;
    return s_count (io, S_LOAD);
}
static int f_start (struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                    raft_io_recv_cb recv)
{ (void) msecs; s_fx (io)->tick = tick; s_fx (io)->recv = recv; return s_count (io, S_START); }
static int f_bootstrap (struct raft_io *io, const struct raft_configuration *conf)
{ (void) conf; return s_count (io, S_BOOTSTRAP); }
static int f_recover (struct raft_io *io, const struct raft_configuration *conf)
{ (void) conf; return s_count (io, S_RECOVER); }
static int f_set_term (struct raft_io *io, raft_term term)
{ (void) term; return s_count (io, S_TERM); }
static int f_set_vote (struct raft_io *io, raft_id id)
{ (void) id; return s_count (io, S_VOTE); }
static int f_send (struct raft_io *io, struct raft_io_send *req,
                   const struct raft_message *message, raft_io_send_cb cb)
{
    (void) req; (void) cb;
    fixture_t *fx = s_fx (io);
    snprintf (fx->sent_address, sizeof (fx->sent_address), "%s", message->server_address);
    fx->sent_id = message->server_id;
    return s_count (io, S_SEND);
}
static int f_append (struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries [], unsigned n, raft_io_append_cb cb)
{ (void) req; (void) entries; (void) n; (void) cb; return s_count (io, S_APPEND); }
static int f_truncate (struct raft_io *io, raft_index index)
{ (void) index; return s_count (io, S_TRUNCATE); }
static int f_snapshot_put (struct raft_io *io, unsigned trailing,
                           struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    (void) snapshot;
    fixture_t *fx = s_fx (io);
    int rc = s_count (io, S_PUT);
    if (rc == 0) {
        assert_true (fx->puts < 4);
        fx->put [fx->puts] = req;
        fx->put_cb [fx->puts] = cb;
        fx->put_trailing [fx->puts] = trailing;
        fx->puts++;
    }
    return rc;
}
static int f_snapshot_get (struct raft_io *io, struct raft_io_snapshot_get *req,
                           raft_io_snapshot_get_cb cb)
{ (void) req; (void) cb; return s_count (io, S_GET); }
static raft_time f_time (struct raft_io *io)
{ s_count (io, S_TIME); return s_fx (io)->now; }
static int f_random (struct raft_io *io, int min, int max)
{ (void) max; s_count (io, S_RANDOM); return min; }

//  Completes the oldest pending put of the inner I/O.
static void
s_complete_put (fixture_t *fx, int status)
{
    assert_true (fx->puts > 0);
    struct raft_io_snapshot_put *req = fx->put [0];
    raft_io_snapshot_put_cb cb = fx->put_cb [0];
    memmove (fx->put, fx->put + 1, sizeof (fx->put [0]) * 3);
    memmove (fx->put_cb, fx->put_cb + 1, sizeof (fx->put_cb [0]) * 3);
    memmove (fx->put_trailing, fx->put_trailing + 1, sizeof (fx->put_trailing [0]) * 3);
    fx->puts--;
    cb (req, status);
}

//  The fake libraft
static void
l_recv (struct raft_io *io, struct raft_message *message)
{
    //  libraft finds itself in io->data, whichever io it is given.
    fixture_t *fx = (fixture_t *) io->data;
    char what [8];
    snprintf (what, sizeof (what), "R%d", (int) message->type);
    s_note (fx, what);
    //  And owns what it receives.
    if (message->type == CVR_RAFT_INSTALL_SNAPSHOT) {
        assert_string_equal (message->server_address, "127.0.0.1:9001");
        raft_free (message->install_snapshot.data.base);
        raft_configuration_close (&message->install_snapshot.conf);
    }
}

static void
l_tick (struct raft_io *io)
{
    fixture_t *fx = (fixture_t *) io->data;
    s_note (fx, "K");
    //  As libraft's tickCb: r->io->time (io), io being the one that ticked.
    fx->now = fx->outer->time (io);
}

static void l_took (struct raft_io_snapshot_put *put, int status);

//  libraft starts writing a snapshot of its own.
static void
s_take (fixture_t *fx)
{
    assert_int_equal (fx->outer->snapshot_put (fx->outer, 8, &fx->libraft_take,
                                               &fx->snapshot, l_took), 0);
}

static void
l_took (struct raft_io_snapshot_put *put, int status)
{
    fixture_t *fx = (fixture_t *) put->data;
    (void) status;
    assert_ptr_equal (put, &fx->libraft_take);
    s_note (fx, "T");
    if (fx->retake) {
        fx->retake = false;
        s_take (fx);
    }
}

static void
l_installed (struct raft_io_snapshot_put *put, int status)
{
    (void) status;
    fixture_t *fx = (fixture_t *) put->data;
    assert_ptr_equal (put, &fx->libraft_install);
    s_note (fx, "P");
}

//  An InstallSnapshot as raft_uv hands it over: owned buffers.
static struct raft_message
s_install (raft_index last_index)
{
    struct raft_message message;
    memset (&message, 0, sizeof (message));
    message.type = CVR_RAFT_INSTALL_SNAPSHOT;
    message.server_id = 1;
    //  raft_uv's copy of the sender's address lives with the connection
    //  (s_deliver frees it): the guard must not keep a pointer to it.
    message.server_address = strdup ("127.0.0.1:9001");
    message.install_snapshot.term = 2;
    message.install_snapshot.last_index = last_index;
    message.install_snapshot.last_term = 2;
    raft_configuration_init (&message.install_snapshot.conf);
    assert_int_equal (raft_configuration_add (&message.install_snapshot.conf, 1,
                                              "127.0.0.1:9001", RAFT_VOTER), 0);
    message.install_snapshot.data.len = 64;
    message.install_snapshot.data.base = raft_malloc (64);
    memset (message.install_snapshot.data.base, 7, 64);
    return message;
}

static void
s_deliver (fixture_t *fx, struct raft_message message)
{
    char *address = (char *) message.server_address;
    fx->recv (fx->inner, &message);
    //  The connection goes, and its address with it.
    memset (address, 'x', strlen (address));
    free (address);
}

static struct raft_message
s_heartbeat (void)
{
    struct raft_message message;
    memset (&message, 0, sizeof (message));
    message.type = S_APPEND_ENTRIES;
    message.server_id = 1;
    message.server_address = strdup ("127.0.0.1:9001");
    return message;
}

typedef struct {
    fixture_t fx;
    cvr_raft_io_t *io;
} state_t;

static int
s_setup (void **state)
{
    state_t *self = (state_t *) calloc (1, sizeof (state_t));
    self->io = cvr_raft_io_new ();
    struct raft_io *inner = cvr_raft_io_inner (self->io);
    inner->version = 2;
    inner->impl = &self->fx;
    inner->init = f_init;
    inner->close = f_close;
    inner->load = f_load;
    inner->start = f_start;
    inner->bootstrap = f_bootstrap;
    inner->recover = f_recover;
    inner->set_term = f_set_term;
    inner->set_vote = f_set_vote;
    inner->send = f_send;
    inner->append = f_append;
    inner->truncate = f_truncate;
    inner->snapshot_put = f_snapshot_put;
    inner->snapshot_get = f_snapshot_get;
    inner->time = f_time;
    inner->random = f_random;
    fixture_t *fx = &self->fx;
    fx->inner = inner;
    fx->outer = cvr_raft_io_outer (self->io);
    assert_int_equal (fx->outer->version, 2);
    //  As raft_init and raft_start do.
    fx->outer->data = fx;
    assert_int_equal (fx->outer->init (fx->outer, 2, "127.0.0.1:9002"), 0);
    assert_int_equal (fx->outer->start (fx->outer, 50, l_tick, l_recv), 0);
    fx->libraft_take.data = fx;
    fx->libraft_install.data = fx;
    *state = self;
    return 0;
}

static int
s_teardown (void **state)
{
    state_t *self = (state_t *) *state;
    cvr_raft_io_destroy (&self->io);
    assert_null (self->io);
    free (self);
    return 0;
}

//  Every call reaches the inner I/O; its refusals come back with its
//  reason; what libraft reads of the struct follows the inner one.
static void
test_forwards_every_call (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    struct raft_io *outer = fx->outer;
    assert_int_equal (fx->calls [S_INIT], 1);
    assert_int_equal (fx->calls [S_START], 1);
#if CVR_RAFT_IO_CAPACITY
    //  The inner I/O learned its disk's free space after raft_init had the
    //  outer struct (raft_uv: in start, and again on every loop turn): a
    //  capacity left at 0 would stop every append.
    assert_int_equal (outer->capacity, 4096);
#endif
    assert_ptr_equal (fx->inner->data, fx);

    raft_term term;
    raft_id vote;
    struct raft_snapshot *snapshot;
    raft_index start;
    struct raft_entry *entries;
    size_t n;
    struct raft_configuration conf;
    raft_configuration_init (&conf);
    assert_int_equal (outer->load (outer, &term, &vote, &snapshot, &start, &entries, &n), 0);
    assert_int_equal (outer->bootstrap (outer, &conf), 0);
    assert_int_equal (outer->recover (outer, &conf), 0);
    assert_int_equal (outer->set_term (outer, 3), 0);
    assert_int_equal (outer->set_vote (outer, 1), 0);
    struct raft_io_send send;
    struct raft_message message = s_heartbeat ();
    assert_int_equal (outer->send (outer, &send, &message, NULL), 0);
    free ((char *) message.server_address);
    struct raft_io_append append;
    assert_int_equal (outer->append (outer, &append, NULL, 0, NULL), 0);
    assert_int_equal (outer->truncate (outer, 5), 0);
    struct raft_io_snapshot_get get;
    assert_int_equal (outer->snapshot_get (outer, &get, NULL), 0);
    fx->now = 1234;
#if CVR_RAFT_IO_CAPACITY
    //  raft_uv moves it between calls; libraft reads it right after time.
    fx->inner->capacity = 123;
#endif
    assert_int_equal (outer->time (outer), 1234);
#if CVR_RAFT_IO_CAPACITY
    assert_int_equal (outer->capacity, 123);
#endif
    //  raft_uv's own callbacks hand libraft the inner io, which libraft may
    //  then call the outer's methods with.
    assert_int_equal (outer->time (fx->inner), 1234);
    assert_int_equal (outer->random (outer, 17, 99), 17);
    for (int kind = S_LOAD; kind <= S_RANDOM; kind++)
        if (kind != S_START && kind != S_PUT && kind != S_CLOSE)
            assert_int_equal (fx->calls [kind], kind == S_TIME ? 2 : 1);

#if CVR_RAFT_IO_CAPACITY
    fx->inner->capacity = 100;
#endif
    fx->fail_next = RAFT_IOERR;
    assert_int_equal (outer->truncate (outer, 6), RAFT_IOERR);
    assert_string_equal (outer->errmsg, "inner call 10 failed");
#if CVR_RAFT_IO_CAPACITY
    assert_int_equal (outer->capacity, 100);
#endif

    //  A tick reaches libraft, which asks the time of the io it is given.
    fx->now = 77;
    fx->tick (fx->inner);
    assert_string_equal (fx->trace, "K");
    assert_int_equal (fx->calls [S_TIME], 3);

    outer->close (outer, NULL);
    assert_int_equal (fx->calls [S_CLOSE], 1);
}

//  The crash's sequence: the node writes its own snapshot, an
//  InstallSnapshot arrives, then the write completes.
static void
test_install_waits_for_own_snapshot (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    //  No snapshot being written: straight through.
    s_deliver (fx, s_install (10));
    assert_string_equal (fx->trace, "R5");

    fx->trace [0] = 0;
    s_take (fx);
    s_deliver (fx, s_install (20));
    //  Other messages are not held.
    s_deliver (fx, s_heartbeat ());
    assert_string_equal (fx->trace, "R1");
    assert_int_equal (cvr_raft_io_held (self->io), 1);
    s_complete_put (fx, 0);
    //  libraft's own callback first, then the install.
    assert_string_equal (fx->trace, "R1TR5");
    assert_int_equal (cvr_raft_io_dropped (self->io), 0);

    //  Nothing left over: the next write passes nothing on.
    fx->trace [0] = 0;
    s_take (fx);
    s_complete_put (fx, 0);
    assert_string_equal (fx->trace, "T");
}

//  While an installed snapshot is written (trailing 0), another
//  InstallSnapshot is a duplicate: libraft would answer "already
//  installing" and leak it, so it is freed here and never handed over.
//  libraft's own callback comes through with its own request.
static void
test_duplicate_install_is_dropped (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    assert_int_equal (fx->outer->snapshot_put (fx->outer, 0, &fx->libraft_install,
                                               &fx->snapshot, l_installed), 0);
    assert_int_equal (fx->put_trailing [0], 0);
    s_deliver (fx, s_install (30));
    assert_string_equal (fx->trace, "");
    assert_int_equal (cvr_raft_io_held (self->io), 0);
    assert_int_equal (cvr_raft_io_dropped (self->io), 1);
    //  Other messages go through meanwhile.
    s_deliver (fx, s_heartbeat ());
    assert_string_equal (fx->trace, "R1");
    s_complete_put (fx, 0);
    assert_string_equal (fx->trace, "R1P");
    //  Once written, the next one is handed over.
    s_deliver (fx, s_install (31));
    assert_string_equal (fx->trace, "R1PR5");
}

//  Two installs during one write: the newer one is delivered, the older
//  one freed (the sanitizers' leak check sees to that).
static void
test_newest_install_wins (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    s_take (fx);
    s_deliver (fx, s_install (40));
    s_deliver (fx, s_install (41));
    assert_string_equal (fx->trace, "");
    assert_int_equal (cvr_raft_io_held (self->io), 2);
    assert_int_equal (cvr_raft_io_dropped (self->io), 1);
    s_complete_put (fx, 0);
    assert_string_equal (fx->trace, "TR5");
}

//  libraft may start its next snapshot from the callback of the last: the
//  install then waits for that one too.
static void
test_install_waits_for_a_second_snapshot (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    s_take (fx);
    s_deliver (fx, s_install (50));
    fx->retake = true;
    s_complete_put (fx, 0);
    assert_string_equal (fx->trace, "T");
    assert_int_equal (fx->puts, 1);
    s_complete_put (fx, 0);
    assert_string_equal (fx->trace, "TTR5");
}

//  A write the inner I/O refuses holds nothing back.
static void
test_refused_write_holds_nothing (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    fx->fail_next = RAFT_NOMEM;
    assert_int_equal (fx->outer->snapshot_put (fx->outer, 8, &fx->libraft_take,
                                               &fx->snapshot, l_took), RAFT_NOMEM);
    assert_string_equal (fx->outer->errmsg, "inner call 11 failed");
    s_deliver (fx, s_install (60));
    assert_string_equal (fx->trace, "R5");
}

//  Closing frees a held install; the write's late callback (cancelled)
//  still reaches libraft, and nothing else does.
static void
test_close_drops_held_install (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    s_take (fx);
    s_deliver (fx, s_install (70));
    fx->outer->close (fx->outer, NULL);
    assert_int_equal (cvr_raft_io_dropped (self->io), 1);
    s_complete_put (fx, RAFT_CANCELED);
    assert_string_equal (fx->trace, "T");
}

//  An install that arrives while closing (the write still in flight) is
//  never handed over, even when the write's cancelled callback comes.
static void
test_install_while_closing_is_never_delivered (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    s_take (fx);
    fx->outer->close (fx->outer, NULL);
    s_deliver (fx, s_install (75));
    assert_int_equal (cvr_raft_io_held (self->io), 1);
    s_complete_put (fx, RAFT_CANCELED);
    assert_string_equal (fx->trace, "T");
    //  s_teardown frees it; LeakSanitizer checks the buffers went.
}

//  Destroyed with an install held (a raft thread stopped mid-write): freed.
static void
test_destroy_frees_held_install (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    s_take (fx);
    s_deliver (fx, s_install (80));
    assert_int_equal (cvr_raft_io_held (self->io), 1);
    //  s_teardown destroys it; LeakSanitizer checks the buffers went.
}

//  libraft 0.22.1 sends an InstallSnapshot after reading the snapshot,
//  with an address into a configuration a membership change may have freed
//  meanwhile: the guard gives it the address the server's last message
//  went to, never reading the message's; with none known it refuses.
static void
test_late_install_goes_to_the_noted_address (void **state)
{
    state_t *self = (state_t *) *state;
    fixture_t *fx = &self->fx;
    struct raft_io *outer = fx->outer;
    struct raft_io_send send;

    //  No message has gone to server 1 yet.
    struct raft_message install = s_install (90);
    char stale [32];
    snprintf (stale, sizeof (stale), "%s", install.server_address);
    free ((char *) install.server_address);
    install.server_address = stale;
    assert_int_equal (outer->send (outer, &send, &install, NULL), RAFT_NOCONNECTION);
    assert_string_equal (outer->errmsg, "no address known for server 1");
    assert_int_equal (fx->calls [S_SEND], 0);
    assert_int_equal (cvr_raft_io_refused (self->io), 1);

    //  AppendEntries goes at once, to a valid address; it is noted.
    struct raft_message heartbeat = s_heartbeat ();
    assert_int_equal (outer->send (outer, &send, &heartbeat, NULL), 0);
    assert_string_equal (fx->sent_address, "127.0.0.1:9001");
    free ((char *) heartbeat.server_address);

    //  The configuration the install pointed into is gone.
    memset (stale, 'x', sizeof (stale) - 1);
    assert_int_equal (outer->send (outer, &send, &install, NULL), 0);
    assert_int_equal (fx->sent_id, 1);
    assert_string_equal (fx->sent_address, "127.0.0.1:9001");

    //  Server 1 moved (removed, added back elsewhere): AppendEntries to the
    //  new address comes first, and the next install follows it.
    heartbeat = s_heartbeat ();
    free ((char *) heartbeat.server_address);
    heartbeat.server_address = "127.0.0.1:9011";
    assert_int_equal (outer->send (outer, &send, &heartbeat, NULL), 0);
    assert_int_equal (outer->send (outer, &send, &install, NULL), 0);
    assert_string_equal (fx->sent_address, "127.0.0.1:9011");
    assert_int_equal (fx->calls [S_SEND], 4);
    assert_int_equal (cvr_raft_io_refused (self->io), 1);
    //  libraft's send callback would free the install's buffers.
    raft_free (install.install_snapshot.data.base);
    raft_configuration_close (&install.install_snapshot.conf);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_forwards_every_call, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_install_waits_for_own_snapshot, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_duplicate_install_is_dropped, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_newest_install_wins, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_install_waits_for_a_second_snapshot, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_refused_write_holds_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_close_drops_held_install, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_install_while_closing_is_never_delivered, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_destroy_frees_held_install, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_late_install_goes_to_the_noted_address, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
