/*  conveyord: the Conveyor coordinator daemon. Wires options and config
    into the cvr_server actor, then waits for SIGINT or SIGTERM. */
#include "conveyor/conveyor.h"
#include <getopt.h>
#include "cvr_heap.h"

#define S_USAGE_EXIT 2

static const char *s_help =
"Usage: conveyord [OPTION]...\n"
"Conveyor coordinator: service registry and consumer-group coordinator on ZeroMQ.\n"
"Runs in the foreground and logs to stderr; SIGINT or SIGTERM stop it (exit 0).\n"
"\n"
"  --listen EP               request (ROUTER) endpoint [tcp://127.0.0.1:7400]\n"
"  --publish EP              event (PUB) endpoint [tcp://127.0.0.1:7401]\n"
"  --config FILE             read options from a ZPL file (zconfig); keys are the\n"
"                            option names without dashes, e.g. 'lease-ms = 30000';\n"
"                            the command line wins over the file\n"
"  --data-dir DIR            durable state: every change is in a raft log (libraft)\n"
"                            in DIR before it is acknowledged or published; a\n"
"                            restart restores it (services come back 'unknown'\n"
"                            with a fresh lease). Without it: memory only\n"
"  --raft-bind HOST:PORT     the raft engine's address [127.0.0.1:7402]; in a\n"
"                            cluster, this node's address in --peers is used\n"
"  --peers ID=HOST:PORT,...  a replicated cluster (with --data-dir): the raft\n"
"                            address of every initial node, identical on each;\n"
"                            --node-id is then this node's ID. The leader serves;\n"
"                            followers answer NOT_LEADER with its endpoint and\n"
"                            publish the same events. A node whose ID is not in\n"
"                            --peers joins a running cluster: add it with\n"
"                            'conveyorctl cluster add ID HOST:PORT' on the leader\n"
"  --snapshot-threshold N    log entries between two snapshots [8192]\n"
"  --snapshot-trailing N     entries kept in the log after a snapshot [1024]\n"
"  --election-timeout-ms N   raft election timeout [1000]\n"
"  --lease-ms N              default service lease [30000]\n"
"  --min-lease-ms N          smallest lease granted [1000]\n"
"  --max-lease-ms N          largest lease granted [600000]\n"
"  --session-timeout-ms N    default group session timeout [30000]\n"
"  --default-partitions N    partitions of auto-created topics, 0: none [12]\n"
"  --history N               events kept for events_since [65536]\n"
"  --max-message-bytes N     largest request body [1048576]\n"
"  --max-services N          services held at most [1000000]\n"
"  --max-groups N            groups held at most [100000]\n"
"  --max-members N           members per group at most [100000]\n"
"  --node-id NAME            this node's name in hello and sys/heartbeat [conveyord];\n"
"                            with --peers, its number in the cluster\n"
"  --log-level L             error, warn, info or debug [info]\n"
"  --curve-secret FILE       CurveZMQ: this server's certificate with its secret\n"
"                            key (conveyorctl keygen writes NAME.cert_secret)\n"
"  --curve-clients DIR       CurveZMQ: directory of the public certificates of\n"
"                            the clients allowed in; with --curve-secret, both\n"
"                            sockets encrypt and anyone else gets nothing\n"
"  -h, --help                show this help and exit\n"
"  -V, --version             show the version and exit\n"
"\n"
"Exit status: 0 after SIGINT/SIGTERM, 2 on a bad option or an endpoint that\n"
"cannot be bound, 1 when the data directory stops taking writes. Protocol:\n"
"docs/protocol.md; operations (data dir, snapshots): docs/operations.md.\n";

//  Options passed through to the server as SET <name> <value>.
static const char *s_server_options [] = {
    "listen", "publish", "data-dir", "lease-ms", "min-lease-ms", "max-lease-ms",
    "session-timeout-ms", "default-partitions", "history", "max-message-bytes",
    "max-services", "max-groups", "max-members", "log-level", "curve-secret",
    "curve-clients", "raft-bind", "peers", "snapshot-threshold", "snapshot-trailing",
    "election-timeout-ms", NULL
};

static int
s_fail (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "conveyord: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
    return S_USAGE_EXIT;
}

static bool
s_known (const char *name)
{
    for (int i = 0; s_server_options [i]; i++)
        if (streq (name, s_server_options [i]))
            return true;
    return false;
}

//  Sends one option to the server; prints its complaint and returns -1.
static int
s_set (zactor_t *server, const char *name, const char *value, const char *origin)
{
    zstr_sendx (server, "SET", name, value, NULL);
    char *status = zstr_recv (server);
    int rc = status && streq (status, "0") ? 0 : -1;
    if (rc)
        s_fail ("%s%s", origin, status ? status + 3 : "no answer from the server");
    zstr_free (&status);
    return rc;
}

//  Applies a config file's top-level keys; -1 on a missing file, an
//  unknown key or a bad value.
static int
s_load_config (zactor_t *server, const char *path)
{
    zconfig_t *root = zconfig_load (path);
    if (!root) {
        s_fail ("cannot read config file '%s'", path);
        return -1;
    }
    int rc = 0;
    char origin [1024];
    for (zconfig_t *item = zconfig_child (root); item && rc == 0; item = zconfig_next (item)) {
        const char *name = zconfig_name (item);
        const char *value = zconfig_value (item);
        snprintf (origin, sizeof (origin), "%s: ", path);
        if (!s_known (name)) {
            s_fail ("%s: unknown key '%s'", path, name);
            rc = -1;
        }
        else
        if (!value || !*value) {
            s_fail ("%s: key '%s' has no value", path, name);
            rc = -1;
        }
        else
            rc = s_set (server, name, value, origin);
    }
    zconfig_destroy (&root);
    return rc;
}

int
main (int argc, char *argv [])
{
    cvr_heap_setup ();
    static struct option longopts [] = {
        { "listen", required_argument, 0, 0 },
        { "publish", required_argument, 0, 0 },
        { "config", required_argument, 0, 0 },
        { "data-dir", required_argument, 0, 0 },
        { "lease-ms", required_argument, 0, 0 },
        { "min-lease-ms", required_argument, 0, 0 },
        { "max-lease-ms", required_argument, 0, 0 },
        { "session-timeout-ms", required_argument, 0, 0 },
        { "default-partitions", required_argument, 0, 0 },
        { "history", required_argument, 0, 0 },
        { "max-message-bytes", required_argument, 0, 0 },
        { "max-services", required_argument, 0, 0 },
        { "max-groups", required_argument, 0, 0 },
        { "max-members", required_argument, 0, 0 },
        { "node-id", required_argument, 0, 0 },
        { "log-level", required_argument, 0, 0 },
        { "curve-secret", required_argument, 0, 0 },
        { "curve-clients", required_argument, 0, 0 },
        { "raft-bind", required_argument, 0, 0 },
        { "peers", required_argument, 0, 0 },
        { "snapshot-threshold", required_argument, 0, 0 },
        { "snapshot-trailing", required_argument, 0, 0 },
        { "election-timeout-ms", required_argument, 0, 0 },
        { "help", no_argument, 0, 'h' },
        { "version", no_argument, 0, 'V' },
        { 0, 0, 0, 0 }
    };
    //  First pass: collect, so the config file can be applied first and
    //  the command line win over it.
    const char *names [64], *values [64];
    int count = 0, index;
    const char *config = NULL, *node_id = "conveyord";
    opterr = 0;
    int c;
    while ((c = getopt_long (argc, argv, ":hV", longopts, &index)) != -1) {
        if (c == 'h') {
            fputs (s_help, stdout);
            return 0;
        }
        if (c == 'V') {
            printf ("conveyord %s\n", CVR_VERSION_STRING);
            return 0;
        }
        if (c == ':')
            return s_fail ("option '%s' needs a value (see --help)", argv [optind - 1]);
        if (c == '?')
            return s_fail ("unknown option '%s' (see --help)", argv [optind - 1]);
        const char *name = longopts [index].name;
        if (streq (name, "config"))
            config = optarg;
        else
        if (streq (name, "node-id"))
            node_id = optarg;
        else
        if (count < 64) {
            names [count] = name;
            values [count++] = optarg;
        }
    }
    if (optind < argc)
        return s_fail ("unexpected argument '%s' (see --help)", argv [optind]);

    zsys_init ();
    zsys_set_logstream (stderr);
    zsys_set_logident ("conveyord");
    zactor_t *server = zactor_new (cvr_server, (void *) node_id);
    int rc = config ? s_load_config (server, config) : 0;
    for (int i = 0; i < count && rc == 0; i++)
        rc = s_set (server, names [i], values [i], "");
    if (rc == 0) {
        zstr_send (server, "START");
        char *status = zstr_recv (server);
        //  SIGINT/SIGTERM while starting (the receive is interrupted): a
        //  normal stop, not a failure.
        if (!status && zsys_interrupted) {
            zsys_info ("interrupted while starting: closing sockets and exiting");
            zactor_destroy (&server);
            return 0;
        }
        if (!status || !streq (status, "0"))
            rc = s_fail ("%s", status ? status + 3 : "the server did not start");
        zstr_free (&status);
    }
    if (rc) {
        zactor_destroy (&server);
        return S_USAGE_EXIT;
    }
    //  Wait for SIGINT/SIGTERM; czmq's handler sets zsys_interrupted.
    zpoller_t *poller = zpoller_new (server, NULL);
    int exit_code = 0;
    while (!zsys_interrupted && !exit_code) {
        if (zpoller_wait (poller, 500) == server) {
            //  The server's only message: FATAL <reason> (it has logged why).
            zmsg_t *msg = zmsg_recv (server);
            char *what = msg ? zmsg_popstr (msg) : NULL;
            if (what && streq (what, "FATAL"))
                exit_code = 1;
            zstr_free (&what);
            zmsg_destroy (&msg);
        }
    }
    zsys_info (exit_code ? "stopping after a fatal error" : "interrupted: closing sockets "
               "and exiting");
    zpoller_destroy (&poller);
    zactor_destroy (&server);
    return exit_code;
}
