/*  conveyorctl: command-line client for conveyord.

    Every subcommand is an entry of s_commands: it parses its own options,
    builds one request, and hands it to s_request, which sends it, reports
    failures with the exit codes below, and prints the reply either as JSON
    (--json: the reply minus ok/rid) or through the command's printer.

    Exit codes: 0 success, 1 the server answered an error, 2 usage error,
    3 the daemon did not answer within the timeout.

    -e (and $CONVEYOR_ENDPOINT) may list the nodes of a cluster,
    comma-separated: the client follows NOT_LEADER to the leader and moves
    past nodes that do not answer, all within the timeout (cvr_client.h).
*/
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <time.h>
#include "conveyor/conveyor.h"
#include "cvr_client_internal.h"
#include "cvr_json.h"
#include "cvr_proto.h"

#define s_PROG          "conveyorctl"
#define s_DEFAULT_EP    "tcp://127.0.0.1:7400"
#define s_DEFAULT_MS    3000

enum {
    s_EXIT_OK = 0,
    s_EXIT_SERVER = 1,          //  the server answered an error
    s_EXIT_USAGE = 2,
    s_EXIT_UNREACHABLE = 3      //  no reply within the timeout
};

typedef struct {
    const char *endpoint;
    int timeout_ms;
    bool json;
    const char *server_key;     //  CurveZMQ: the server's key or certificate
    const char *cert;           //  CurveZMQ: our certificate (NAME.cert_secret)
    cvr_security_t *security;   //  made from the two on first use
    cvr_client_t *client;       //  made on first use, so usage errors
                                //  never touch the network
    const char *subject;        //  the ID operand, for printers whose
                                //  reply does not carry it
    const struct _s_command_t *command;
} s_ctl_t;

//  Prints a successful reply in human form.
typedef void (s_printer_fn) (s_ctl_t *self, const msgpack_object *reply);

typedef struct _s_command_t {
    const char *name;
    int (*handler) (s_ctl_t *self, int argc, char **argv);
    const char *usage;          //  the arguments, after the name
    const char *summary;
} s_command_t;


//  --------------------------------------------------------------------------
//  Usage

//  Reports a usage error in one line plus a hint, returns the exit code.
static int
s_usage_error (s_ctl_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, s_PROG ": ");
    if (self && self->command)
        fprintf (stderr, "%s: ", self->command->name);
    vfprintf (stderr, format, args);
    va_end (args);
    fprintf (stderr, "\nTry '" s_PROG " --help' for usage.\n");
    return s_EXIT_USAGE;
}

static struct option s_global_options [] = {
    { "endpoint", required_argument, NULL, 'e' },
    { "timeout", required_argument, NULL, 't' },
    { "json", no_argument, NULL, 'j' },
    { "server-key", required_argument, NULL, 'k' },
    { "cert", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { 0 }
};

//  Turns getopt's '?' and ':' into our one-line error. opterr is off
//  because getopt's own messages do not name the subcommand.
static int
s_bad_option (s_ctl_t *self, int code, char **argv, const struct option *longopts)
{
    //  optopt is 0 for an unknown long option, else the option's value;
    //  the text as typed is then the element getopt just stepped over.
    //  Inside a cluster of short options (-xy) optind has not moved yet,
    //  so that element is only trusted when it names a long option with
    //  the same value.
    const char *typed = argv [optind - 1];
    bool is_long = optopt == 0;
    if (!is_long && strncmp (typed, "--", 2) == 0) {
        size_t len = strcspn (typed + 2, "=");
        for (const struct option *o = longopts; o->name && !is_long; o++)
            is_long = o->val == optopt && strncmp (o->name, typed + 2, len) == 0;
    }
    char short_text [3] = { '-', (char) optopt, 0 };
    const char *name = is_long ? typed : short_text;
    //  The usual slip: a global option after the command.
    if (self && code == '?' && optopt == 0 && strncmp (typed, "--", 2) == 0) {
        size_t len = strcspn (typed + 2, "=");
        for (const struct option *o = s_global_options; o->name; o++)
            if (strlen (o->name) == len && strncmp (o->name, typed + 2, len) == 0)
                return s_usage_error (self, "'%s' is a global option: put it"
                                      " before the command", name);
    }
    if (code == ':')
        return s_usage_error (self, "option '%s' needs a value", name);
    if (is_long && optopt)
        return s_usage_error (self, "option '%s' takes no value", name);
    return s_usage_error (self, "unknown option '%s'", name);
}

//  Parses a decimal integer in [min, max]; returns 0 or -1.
static int
s_parse_int (const char *text, int64_t min, int64_t max, int64_t *value)
{
    char *end;
    errno = 0;
    long long v = strtoll (text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return -1;
    *value = (int64_t) v;
    return 0;
}


//  --------------------------------------------------------------------------
//  Text helpers

//  Display width of UTF-8 text: code points, not bytes, so labels with
//  accents still line up.
static size_t
s_width (const char *s)
{
    size_t width = 0;
    for (; *s; s++)
        if (((uint8_t) *s & 0xc0) != 0x80)
            width++;
    return width;
}

//  A table of strings printed with aligned columns. The last column is
//  not padded, so lines carry no trailing blanks.
typedef struct {
    size_t columns;
    size_t rows;
    char **cells;               //  rows * columns, owned
    size_t *widths;
} s_table_t;

static s_table_t *
s_table_new (size_t columns)
{
    s_table_t *self = (s_table_t *) zmalloc (sizeof (s_table_t));
    self->columns = columns;
    self->widths = (size_t *) zmalloc (columns * sizeof (size_t));
    return self;
}

static void
s_table_destroy (s_table_t **self_p)
{
    s_table_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->rows * self->columns; i++)
        free (self->cells [i]);
    free (self->cells);
    free (self->widths);
    free (self);
    *self_p = NULL;
}

//  Adds a row of exactly `columns` strings (copied; NULL shows as "-").
static void
s_table_add (s_table_t *self, ...)
{
    self->cells = (char **) realloc (self->cells,
        (self->rows + 1) * self->columns * sizeof (char *));
    assert (self->cells);
    va_list args;
    va_start (args, self);
    for (size_t col = 0; col < self->columns; col++) {
        const char *text = va_arg (args, const char *);
        char *cell = strdup (text ? text : "-");
        assert (cell);
        self->cells [self->rows * self->columns + col] = cell;
        size_t width = s_width (cell);
        if (width > self->widths [col])
            self->widths [col] = width;
    }
    va_end (args);
    self->rows++;
}

static void
s_table_print (s_table_t *self, FILE *file, const char *indent)
{
    for (size_t row = 0; row < self->rows; row++) {
        fputs (indent, file);
        for (size_t col = 0; col < self->columns; col++) {
            const char *cell = self->cells [row * self->columns + col];
            fputs (cell, file);
            if (col + 1 < self->columns)
                fprintf (file, "%*s", (int) (self->widths [col] - s_width (cell) + 2), "");
        }
        fputc ('\n', file);
    }
}

//  A "key: value" block: a two-column table whose keys end in a colon.
static void
s_kv_add (s_table_t *table, const char *key, const char *value)
{
    char *label = zsys_sprintf ("%s:", key);
    s_table_add (table, label, value);
    zstr_free (&label);
}

static void
s_kv_addf (s_table_t *table, const char *key, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *value = zsys_vprintf (format, args);
    va_end (args);
    s_kv_add (table, key, value);
    zstr_free (&value);
}

//  Unix milliseconds as ISO 8601 UTC; caller frees.
static char *
s_time_text (int64_t at_ms)
{
    if (at_ms <= 0)
        return strdup ("-");
    time_t secs = (time_t) (at_ms / 1000);
    struct tm tm;
    char buffer [32];
    if (!gmtime_r (&secs, &tm)
    ||  !strftime (buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &tm))
        return zsys_sprintf ("%" PRId64, at_ms);
    return zsys_sprintf ("%s.%03dZ", buffer, (int) (at_ms % 1000));
}

//  A duration as "2d 3h 4m 5s" (largest units first, zeros dropped);
//  caller frees.
static char *
s_duration_text (int64_t ms)
{
    if (ms < 60000)
        return zsys_sprintf ("%.1fs", (double) ms / 1000.0);
    int64_t secs = ms / 1000;
    int64_t parts [4] = { secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60 };
    const char *units = "dhms";
    char buffer [64] = "";
    size_t used = 0;
    for (int i = 0; i < 4; i++)
        if (parts [i] || (i == 3 && used == 0))
            used += (size_t) snprintf (buffer + used, sizeof buffer - used,
                                       "%s%" PRId64 "%c", used ? " " : "",
                                       parts [i], units [i]);
    return strdup (buffer);
}

//  Labels as "k=v,k2=v2", or NULL when there are none; caller frees.
static char *
s_labels_text (const cvr_service_t *service)
{
    if (service->labels_count == 0)
        return NULL;
    size_t size = 1;
    for (size_t i = 0; i < service->labels_count; i++)
        size += strlen (service->labels [i].key)
              + strlen (service->labels [i].value) + 2;
    char *text = (char *) zmalloc (size);
    for (size_t i = 0; i < service->labels_count; i++) {
        if (i)
            strcat (text, ",");
        strcat (text, service->labels [i].key);
        strcat (text, "=");
        strcat (text, service->labels [i].value);
    }
    return text;
}

//  Any scalar msgpack value as text (containers as compact JSON); caller
//  frees.
static char *
s_obj_text (const msgpack_object *o)
{
    if (!o)
        return strdup ("-");
    if (o->type == MSGPACK_OBJECT_STR)
        return strndup (o->via.str.ptr, o->via.str.size);
    json_t *value = cvr_json_from_msgpack (o);
    char *text = value
        ? json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref (value);
    return text ? text : strdup ("?");
}

static char *
s_field_text (const msgpack_object *map, const char *key)
{
    return s_obj_text (cvr_obj_get (map, key));
}


//  --------------------------------------------------------------------------
//  Talking to the server: the one shared path

//  The CurveZMQ credentials, when --server-key and --cert were given:
//  returns 0, or -1 after saying what is wrong.
static int
s_security (s_ctl_t *self)
{
    if (self->security || (!self->server_key && !self->cert))
        return 0;
    if (!self->server_key || !self->cert) {
        fprintf (stderr, s_PROG ": --server-key and --cert go together\n");
        return -1;
    }
    self->security = cvr_security_new (self->server_key, self->cert);
    if (!self->security) {
        fprintf (stderr, s_PROG ": cannot use --server-key '%s' with --cert '%s' "
                 "(see the line above)\n", self->server_key, self->cert);
        return -1;
    }
    return 0;
}

static cvr_client_t *
s_client (s_ctl_t *self)
{
    if (!self->client && s_security (self) == 0)
        self->client = cvr_client_new_secure (self->endpoint, self->timeout_ms,
                                              self->security);
    return self->client;
}

//  Reports why a call failed, returns the exit code.
static int
s_call_failed (s_ctl_t *self)
{
    if (!self->client && (self->server_key || self->cert) && !self->security)
        return s_EXIT_USAGE;        //  s_security said why
    if (!self->client) {
        //  The library makes a client for any well-formed endpoint.
        fprintf (stderr, s_PROG ": bad endpoint '%s'\n"
                 "Try '" s_PROG " --help' for usage.\n", self->endpoint);
        return s_EXIT_USAGE;
    }
    cvr_err_t code = cvr_client_error (self->client);
    if (code == CVR_TIMEOUT && !cvr_client_clustered (self->client)) {
        fprintf (stderr, s_PROG ": no reply from %s within %d ms"
                 " (is conveyord running?)\n", self->endpoint, self->timeout_ms);
        return s_EXIT_UNREACHABLE;
    }
    if (code == CVR_TIMEOUT) {
        //  Which node was tried last, and whether a leader was known.
        fprintf (stderr, s_PROG ": %s (is a majority of the cluster running?)\n",
                 cvr_client_message (self->client));
        return s_EXIT_UNREACHABLE;
    }
    fprintf (stderr, s_PROG ": %s: %s\n", cvr_err_name (code),
             cvr_client_message (self->client));
    return s_EXIT_SERVER;
}

//  Starts a request: a writer holding an open map with `op`.
static cvr_wr_t *
s_request_new (const char *op)
{
    cvr_wr_t *w = cvr_wr_new ();
    assert (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", op);
    return w;
}

//  Sends the request (consuming w); on success returns the reply (caller
//  destroys), else reports the failure, sets *rc and returns NULL.
static cvr_msg_t *
s_call (s_ctl_t *self, cvr_wr_t **w_p, int *rc)
{
    cvr_msg_t *reply = NULL;
    if (s_client (self))
        reply = cvr_client_call (self->client, *w_p);
    cvr_wr_destroy (w_p);
    if (!reply)
        *rc = s_call_failed (self);
    return reply;
}

//  Prints a JSON value (indented) and consumes it.
static int
s_print_json (json_t *value)
{
    int rc = cvr_json_print (value, stdout, false);
    json_decref (value);
    if (rc) {
        fprintf (stderr, s_PROG ": cannot write the reply as JSON\n");
        return s_EXIT_SERVER;
    }
    return s_EXIT_OK;
}

//  Sends the request (consuming w) and prints the reply: as JSON with
//  --json, else with print. Returns the exit code.
static int
s_request (s_ctl_t *self, cvr_wr_t *w, s_printer_fn *print)
{
    int rc = s_EXIT_OK;
    cvr_msg_t *reply = s_call (self, &w, &rc);
    if (!reply)
        return rc;
    const msgpack_object *root = cvr_msg_root (reply);
    if (self->json)
        rc = s_print_json (cvr_json_from_reply (root));
    else
        print (self, root);
    cvr_msg_destroy (&reply);
    return rc;
}


//  --------------------------------------------------------------------------
//  Option parsing shared by subcommands

//  Repeated --label k=v options.
typedef struct {
    cvr_label_t *items;         //  keys owned, values borrowed from argv
    size_t count;
} s_labels_t;

static int
s_labels_add (s_labels_t *self, const char *arg)
{
    const char *eq = strchr (arg, '=');
    if (!eq || eq == arg)
        return -1;
    self->items = (cvr_label_t *) realloc (self->items,
        (self->count + 1) * sizeof (cvr_label_t));
    assert (self->items);
    self->items [self->count].key = strndup (arg, (size_t) (eq - arg));
    self->items [self->count].value = (char *) eq + 1;
    self->count++;
    return 0;
}

static void
s_labels_clear (s_labels_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        free (self->items [i].key);
    free (self->items);
    self->items = NULL;
    self->count = 0;
}

//  Writes "labels": {k: v, ...}; a repeated key keeps its last value on
//  the server, as in any msgpack map.
static void
s_labels_write (s_labels_t *self, cvr_wr_t *w)
{
    cvr_wr_str (w, "labels");
    cvr_wr_map (w);
    for (size_t i = 0; i < self->count; i++) {
        cvr_wr_str (w, self->items [i].key);
        cvr_wr_str (w, self->items [i].value);
    }
    cvr_wr_close (w);
}

//  Starts getopt over a subcommand's arguments (argv [0] is its name).
//  optind = 0, not 1: glibc then re-initialises fully, dropping the "+"
//  (stop at the first operand) mode of the global pass, so a subcommand's
//  options may follow its operands ("heartbeat ID --health degraded").
static void
s_getopt_reset (void)
{
    optind = 0;
    opterr = 0;
}

#define s_HELP_OPTION   { "help", no_argument, NULL, 'h' }

static int
s_command_help (s_ctl_t *self)
{
    printf ("usage: " s_PROG " [global options] %s%s%s\n  %s\n",
            self->command->name, *self->command->usage ? " " : "",
            self->command->usage, self->command->summary);
    return s_EXIT_OK;
}

//  For commands with no options but --help and min to max operands.
//  Returns -1 to go on (operands start at argv [optind]), else the exit
//  code.
static int
s_parse_plain (s_ctl_t *self, int argc, char **argv, int min, int max)
{
    static struct option options [] = { s_HELP_OPTION, { 0 } };
    s_getopt_reset ();
    int c;
    while ((c = getopt_long (argc, argv, ":h", options, NULL)) != -1) {
        if (c == 'h')
            return s_command_help (self);
        return s_bad_option (self, c, argv, options);
    }
    int operands = argc - optind;
    if (operands < min)
        return s_usage_error (self, "missing argument (usage: %s %s)",
                              self->command->name, self->command->usage);
    if (operands > max)
        return s_usage_error (self, "unexpected argument '%s'", argv [optind + max]);
    return -1;
}


//  --------------------------------------------------------------------------
//  status

static int
s_cmd_status (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 0, 0);
    if (rc >= 0)
        return rc;
    rc = s_EXIT_OK;
    cvr_wr_t *w = s_request_new ("hello");
    cvr_msg_t *hello = s_call (self, &w, &rc);
    if (!hello)
        return rc;
    w = s_request_new ("stats");
    cvr_msg_t *stats = s_call (self, &w, &rc);
    if (!stats) {
        cvr_msg_destroy (&hello);
        return rc;
    }
    const msgpack_object *h = cvr_msg_root (hello);
    const msgpack_object *s = cvr_msg_root (stats);
    if (self->json) {
        //  Two replies, one object: hello's fields plus the two stats
        //  the human form shows (hello has no keys of those names).
        json_t *value = cvr_json_from_reply (h);
        if (value) {
            json_object_set_new (value, "services",
                cvr_json_from_msgpack (cvr_obj_get (s, "services")));
            json_object_set_new (value, "uptime_ms",
                cvr_json_from_msgpack (cvr_obj_get (s, "uptime_ms")));
        }
        rc = s_print_json (value);
    }
    else {
        s_table_t *table = s_table_new (2);
        const char *keys [][2] = {
            { "server", "server" }, { "version", "version" },
            { "node", "node_id" }, { "events", "events_endpoint" },
            { "seq", "seq" }
        };
        for (size_t i = 0; i < sizeof keys / sizeof keys [0]; i++) {
            char *text = s_field_text (h, keys [i][1]);
            s_kv_add (table, keys [i][0], text);
            free (text);
        }
        if (cvr_obj_get (h, "leader")) {
            char *text = s_field_text (h, "leader");
            s_kv_add (table, "leader", text);
            free (text);
        }
        char *text = s_field_text (s, "services");
        s_kv_add (table, "services", text);
        free (text);
        text = s_duration_text (cvr_obj_get_int (s, "uptime_ms", 0));
        s_kv_add (table, "uptime", text);
        free (text);
        s_table_print (table, stdout, "");
        s_table_destroy (&table);
    }
    cvr_msg_destroy (&hello);
    cvr_msg_destroy (&stats);
    return rc;
}


//  --------------------------------------------------------------------------
//  services, service

static void
s_print_services (s_ctl_t *self, const msgpack_object *reply)
{
    const msgpack_object *list = cvr_obj_get (reply, "services");
    s_table_t *table = s_table_new (8);
    s_table_add (table, "ID", "NAME", "TYPE", "HEALTH", "ENDPOINT",
                 "WEIGHT", "LEASE", "LABELS");
    size_t count = list && list->type == MSGPACK_OBJECT_ARRAY
                 ? list->via.array.size : 0;
    for (size_t i = 0; i < count; i++) {
        cvr_service_t *service = cvr_proto_read_service (&list->via.array.ptr [i]);
        if (!service)
            continue;           //  not a record we understand: skip it
        char weight [24], lease [32];
        snprintf (weight, sizeof weight, "%" PRId64, service->weight);
        snprintf (lease, sizeof lease, "%" PRId64 "ms", service->lease_ms);
        char *labels = s_labels_text (service);
        s_table_add (table, service->service_id, service->service_name,
                     service->service_type, cvr_health_name (service->health),
                     service->endpoint, weight, lease, labels);
        free (labels);
        cvr_service_destroy (&service);
    }
    s_table_print (table, stdout, "");
    s_table_destroy (&table);
}

static int
s_cmd_services (s_ctl_t *self, int argc, char **argv)
{
    static struct option options [] = {
        { "name", required_argument, NULL, 'n' },
        { "type", required_argument, NULL, 'T' },
        { "group", required_argument, NULL, 'g' },
        { "label", required_argument, NULL, 'l' },
        { "healthy", no_argument, NULL, 'H' },
        s_HELP_OPTION, { 0 }
    };
    const char *name = NULL, *type = NULL, *group = NULL;
    bool healthy = false;
    s_labels_t labels = { 0 };
    int rc = -1;
    s_getopt_reset ();
    int c;
    while (rc < 0 && (c = getopt_long (argc, argv, ":h", options, NULL)) != -1)
        switch (c) {
            case 'n': name = optarg; break;
            case 'T': type = optarg; break;
            case 'g': group = optarg; break;
            case 'H': healthy = true; break;
            case 'l':
                if (s_labels_add (&labels, optarg))
                    rc = s_usage_error (self, "--label wants KEY=VALUE, not '%s'", optarg);
                break;
            case 'h': rc = s_command_help (self); break;
            default: rc = s_bad_option (self, c, argv, options);
        }
    if (rc < 0 && optind < argc)
        rc = s_usage_error (self, "unexpected argument '%s'", argv [optind]);
    if (rc < 0) {
        cvr_wr_t *w = s_request_new ("list_services");
        if (name)
            cvr_wr_kstr (w, "service_name", name);
        if (type)
            cvr_wr_kstr (w, "service_type", type);
        if (group)
            cvr_wr_kstr (w, "group_id", group);
        if (labels.count)
            s_labels_write (&labels, w);
        if (healthy)
            cvr_wr_kbool (w, "healthy_only", true);
        rc = s_request (self, w, s_print_services);
    }
    s_labels_clear (&labels);
    return rc;
}

static void
s_print_service_record (const msgpack_object *o)
{
    cvr_service_t *service = cvr_proto_read_service (o);
    if (!service) {
        fprintf (stderr, s_PROG ": the reply holds no valid service record\n");
        return;
    }
    s_table_t *table = s_table_new (2);
    s_kv_add (table, "id", service->service_id);
    s_kv_add (table, "name", service->service_name);
    s_kv_add (table, "type", service->service_type);
    s_kv_add (table, "endpoint", service->endpoint);
    s_kv_add (table, "health", cvr_health_name (service->health));
    s_kv_addf (table, "weight", "%" PRId64, service->weight);
    s_kv_add (table, "group", service->group_id);
    char *text = s_labels_text (service);
    s_kv_add (table, "labels", text);
    free (text);
    s_kv_addf (table, "lease", "%" PRId64 " ms", service->lease_ms);
    text = s_time_text (service->registered_at);
    s_kv_add (table, "registered", text);
    free (text);
    text = s_time_text (service->last_heartbeat_at);
    s_kv_add (table, "last heartbeat", text);
    free (text);
    s_kv_addf (table, "revision", "%" PRId64, service->revision);
    s_table_print (table, stdout, "");
    s_table_destroy (&table);
    cvr_service_destroy (&service);
}

static void
s_print_service (s_ctl_t *self, const msgpack_object *reply)
{
    s_print_service_record (cvr_obj_get (reply, "service"));
}

static int
s_cmd_service (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 1, 1);
    if (rc >= 0)
        return rc;
    cvr_wr_t *w = s_request_new ("get_service");
    cvr_wr_kstr (w, "service_id", argv [optind]);
    return s_request (self, w, s_print_service);
}


//  --------------------------------------------------------------------------
//  register, heartbeat, deregister

static void
s_print_registered (s_ctl_t *self, const msgpack_object *reply)
{
    char *id = s_field_text (cvr_obj_get (reply, "service"), "service_id");
    printf ("registered %s, lease %" PRId64 " ms\n", id,
            cvr_obj_get_int (reply, "lease_ms", 0));
    free (id);
}

static int
s_cmd_register (s_ctl_t *self, int argc, char **argv)
{
    static struct option options [] = {
        { "id", required_argument, NULL, 'i' },
        { "name", required_argument, NULL, 'n' },
        { "type", required_argument, NULL, 'T' },
        { "endpoint", required_argument, NULL, 'E' },
        { "label", required_argument, NULL, 'l' },
        { "group", required_argument, NULL, 'g' },
        { "lease-ms", required_argument, NULL, 'L' },
        { "weight", required_argument, NULL, 'w' },
        s_HELP_OPTION, { 0 }
    };
    const char *id = NULL, *name = NULL, *type = NULL, *endpoint = NULL;
    const char *group = NULL;
    int64_t lease_ms = 0, weight = -1;
    s_labels_t labels = { 0 };
    int rc = -1;
    s_getopt_reset ();
    int c;
    while (rc < 0 && (c = getopt_long (argc, argv, ":h", options, NULL)) != -1)
        switch (c) {
            case 'i': id = optarg; break;
            case 'n': name = optarg; break;
            case 'T': type = optarg; break;
            case 'E': endpoint = optarg; break;
            case 'g': group = optarg; break;
            case 'l':
                if (s_labels_add (&labels, optarg))
                    rc = s_usage_error (self, "--label wants KEY=VALUE, not '%s'", optarg);
                break;
            case 'L':
                if (s_parse_int (optarg, 1, INT64_MAX, &lease_ms))
                    rc = s_usage_error (self, "--lease-ms wants a positive integer, not '%s'", optarg);
                break;
            case 'w':
                if (s_parse_int (optarg, 0, INT64_MAX, &weight))
                    rc = s_usage_error (self, "--weight wants an integer >= 0, not '%s'", optarg);
                break;
            case 'h': rc = s_command_help (self); break;
            default: rc = s_bad_option (self, c, argv, options);
        }
    if (rc < 0 && optind < argc)
        rc = s_usage_error (self, "unexpected argument '%s'", argv [optind]);
    if (rc < 0 && !(id && name && type && endpoint))
        rc = s_usage_error (self, "needs --id, --name, --type and --endpoint");
    if (rc < 0) {
        //  Values are the server's to judge (names, types, ranges): one
        //  set of rules, reported as BAD_REQUEST with its message.
        cvr_wr_t *w = s_request_new ("register");
        cvr_wr_kstr (w, "service_id", id);
        cvr_wr_kstr (w, "service_name", name);
        cvr_wr_kstr (w, "service_type", type);
        cvr_wr_kstr (w, "endpoint", endpoint);
        if (labels.count)
            s_labels_write (&labels, w);
        if (group)
            cvr_wr_kstr (w, "group_id", group);
        if (lease_ms > 0)
            cvr_wr_kint (w, "lease_ms", lease_ms);
        if (weight >= 0)
            cvr_wr_kint (w, "weight", weight);
        rc = s_request (self, w, s_print_registered);
    }
    s_labels_clear (&labels);
    return rc;
}

static void
s_print_heartbeat (s_ctl_t *self, const msgpack_object *reply)
{
    char *health = s_field_text (reply, "health");
    printf ("%s: %s, lease %" PRId64 " ms\n", self->subject, health,
            cvr_obj_get_int (reply, "lease_ms", 0));
    free (health);
}

static int
s_cmd_heartbeat (s_ctl_t *self, int argc, char **argv)
{
    static struct option options [] = {
        { "health", required_argument, NULL, 'H' },
        s_HELP_OPTION, { 0 }
    };
    const char *health = NULL;
    s_getopt_reset ();
    int c;
    while ((c = getopt_long (argc, argv, ":h", options, NULL)) != -1)
        switch (c) {
            case 'H':
                //  "unknown" is a health the server reports, never one a
                //  service may claim.
                if (strneq (optarg, "healthy") && strneq (optarg, "degraded")
                &&  strneq (optarg, "unhealthy"))
                    return s_usage_error (self,
                        "--health wants healthy, degraded or unhealthy, not '%s'", optarg);
                health = optarg;
                break;
            case 'h': return s_command_help (self);
            default: return s_bad_option (self, c, argv, options);
        }
    if (argc - optind != 1)
        return s_usage_error (self, argc == optind
                              ? "missing service id" : "too many arguments");
    self->subject = argv [optind];
    cvr_wr_t *w = s_request_new ("heartbeat");
    cvr_wr_kstr (w, "service_id", self->subject);
    if (health)
        cvr_wr_kstr (w, "health", health);
    return s_request (self, w, s_print_heartbeat);
}

static void
s_print_deregistered (s_ctl_t *self, const msgpack_object *reply)
{
    printf ("deregistered %s\n", self->subject);
}

static int
s_cmd_deregister (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 1, 1);
    if (rc >= 0)
        return rc;
    self->subject = argv [optind];
    cvr_wr_t *w = s_request_new ("deregister");
    cvr_wr_kstr (w, "service_id", self->subject);
    return s_request (self, w, s_print_deregistered);
}


//  --------------------------------------------------------------------------
//  stats

//  Prints a {name: count} map as an indented, name-sorted block.
static void
s_print_counts (const char *title, const msgpack_object *map)
{
    printf ("%s:\n", title);
    if (!map || map->type != MSGPACK_OBJECT_MAP || map->via.map.size == 0) {
        printf ("  -\n");
        return;
    }
    zlistx_t *names = zlistx_new ();
    zlistx_set_destructor (names, (zlistx_destructor_fn *) zstr_free);
    zlistx_set_comparator (names, (zlistx_comparator_fn *) strcmp);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        char *name = s_obj_text (&map->via.map.ptr [i].key);
        zlistx_add_end (names, name);
    }
    zlistx_sort (names);
    s_table_t *table = s_table_new (2);
    for (char *name = (char *) zlistx_first (names); name;
         name = (char *) zlistx_next (names)) {
        char *count = s_field_text (map, name);
        s_table_add (table, name, count);
        free (count);
    }
    s_table_print (table, stdout, "  ");
    s_table_destroy (&table);
    zlistx_destroy (&names);
}

static void
s_print_stats (s_ctl_t *self, const msgpack_object *reply)
{
    //  Every scalar counter in the server's order, so counters added to
    //  the daemon later show up without a change here.
    s_table_t *table = s_table_new (2);
    for (uint32_t i = 0; i < reply->via.map.size; i++) {
        const msgpack_object *key = &reply->via.map.ptr [i].key;
        const msgpack_object *value = &reply->via.map.ptr [i].val;
        if (cvr_obj_streq (key, "ok") || cvr_obj_streq (key, "rid")
        ||  key->type != MSGPACK_OBJECT_STR
        ||  value->type == MSGPACK_OBJECT_MAP || value->type == MSGPACK_OBJECT_ARRAY)
            continue;
        char *name = s_obj_text (key);
        char *text = s_obj_text (value);
        s_kv_add (table, name, text);
        free (name);
        free (text);
    }
    s_table_print (table, stdout, "");
    s_table_destroy (&table);
    s_print_counts ("requests", cvr_obj_get (reply, "requests"));
    s_print_counts ("errors", cvr_obj_get (reply, "errors"));
}

static int
s_cmd_stats (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 0, 0);
    if (rc >= 0)
        return rc;
    return s_request (self, s_request_new ("stats"), s_print_stats);
}


//  --------------------------------------------------------------------------
//  Topics, groups and offsets (protocol sections 4 and 5)

//  A (topic, partition) pair, with a committed offset for offset lists.
typedef struct {
    char *topic;
    int64_t partition;
    int64_t offset;
} s_tp_t;

typedef struct {
    s_tp_t *items;
    size_t count;
} s_tp_list_t;

static int
s_tp_compare (const void *a, const void *b)
{
    const s_tp_t *x = (const s_tp_t *) a, *y = (const s_tp_t *) b;
    int rc = strcmp (x->topic, y->topic);
    if (rc == 0)
        rc = (x->partition > y->partition) - (x->partition < y->partition);
    return rc;
}

//  Reads an array of [topic, partition] (with_offset: [topic, partition,
//  offset]) entries, sorted by topic then partition. Entries of another
//  shape are skipped: a printer shows what it understands.
static s_tp_list_t
s_tp_list_read (const msgpack_object *array, bool with_offset)
{
    s_tp_list_t list = { 0 };
    if (!array || array->type != MSGPACK_OBJECT_ARRAY || array->via.array.size == 0)
        return list;
    list.items = (s_tp_t *) zmalloc (array->via.array.size * sizeof (s_tp_t));
    for (uint32_t i = 0; i < array->via.array.size; i++) {
        const msgpack_object *entry = &array->via.array.ptr [i];
        if (entry->type != MSGPACK_OBJECT_ARRAY
        ||  entry->via.array.size < (with_offset ? 3u : 2u))
            continue;
        s_tp_t *tp = &list.items [list.count];
        tp->topic = cvr_obj_strdup (&entry->via.array.ptr [0]);
        if (!tp->topic
        ||  cvr_obj_int (&entry->via.array.ptr [1], &tp->partition)
        ||  (with_offset && cvr_obj_int (&entry->via.array.ptr [2], &tp->offset))) {
            zstr_free (&tp->topic);
            continue;
        }
        list.count++;
    }
    qsort (list.items, list.count, sizeof (s_tp_t), s_tp_compare);
    return list;
}

static void
s_tp_list_clear (s_tp_list_t *list)
{
    for (size_t i = 0; i < list->count; i++)
        free (list->items [i].topic);
    free (list->items);
    list->items = NULL;
    list->count = 0;
}

//  An assignment as compact text: "orders:0-3,7 payments:1" (topics in
//  order, runs of partitions as ranges); NULL when it is empty. Caller
//  frees.
static char *
s_assignment_text (const msgpack_object *assignment)
{
    s_tp_list_t list = s_tp_list_read (assignment, false);
    if (list.count == 0)
        return NULL;
    size_t size = 1;
    for (size_t i = 0; i < list.count; i++)
        size += strlen (list.items [i].topic) + 2 * 22 + 3;
    char *text = (char *) zmalloc (size);
    size_t used = 0;
    for (size_t i = 0; i < list.count; ) {
        const s_tp_t *first = &list.items [i];
        bool new_topic = i == 0 || strneq (list.items [i - 1].topic, first->topic);
        //  The run of consecutive partitions starting here.
        size_t j = i + 1;
        while (j < list.count && streq (list.items [j].topic, first->topic)
           &&  list.items [j].partition == list.items [j - 1].partition + 1)
            j++;
        const s_tp_t *last = &list.items [j - 1];
        if (new_topic)
            used += (size_t) snprintf (text + used, size - used, "%s%s:",
                                       i ? " " : "", first->topic);
        else
            text [used++] = ',';
        if (last->partition > first->partition)
            used += (size_t) snprintf (text + used, size - used,
                                       "%" PRId64 "-%" PRId64,
                                       first->partition, last->partition);
        else
            used += (size_t) snprintf (text + used, size - used,
                                       "%" PRId64, first->partition);
        i = j;
    }
    s_tp_list_clear (&list);
    return text;
}

//  The string keys of a map, sorted; caller destroys.
static zlistx_t *
s_sorted_keys (const msgpack_object *map)
{
    zlistx_t *names = zlistx_new ();
    zlistx_set_destructor (names, (zlistx_destructor_fn *) zstr_free);
    zlistx_set_comparator (names, (zlistx_comparator_fn *) strcmp);
    for (uint32_t i = 0; map && map->type == MSGPACK_OBJECT_MAP
                         && i < map->via.map.size; i++) {
        char *name = cvr_obj_strdup (&map->via.map.ptr [i].key);
        if (name)
            zlistx_add_end (names, name);
    }
    zlistx_sort (names);
    return names;
}

//  Orders two string objects by their bytes; anything else sorts last.
static int
s_obj_str_compare (const msgpack_object *a, const msgpack_object *b)
{
    bool a_str = a && a->type == MSGPACK_OBJECT_STR;
    bool b_str = b && b->type == MSGPACK_OBJECT_STR;
    if (!a_str || !b_str)
        return (int) b_str - (int) a_str;
    uint32_t min = a->via.str.size < b->via.str.size ? a->via.str.size : b->via.str.size;
    int rc = memcmp (a->via.str.ptr, b->via.str.ptr, min);
    if (rc == 0)
        rc = (a->via.str.size > b->via.str.size) - (a->via.str.size < b->via.str.size);
    return rc;
}

static const char *s_sort_key;      //  for s_by_key (qsort has no context)

static int
s_by_key (const void *a, const void *b)
{
    return s_obj_str_compare (cvr_obj_get (*(const msgpack_object * const *) a, s_sort_key),
                              cvr_obj_get (*(const msgpack_object * const *) b, s_sort_key));
}

//  The maps of array, sorted by their string field key; *count gets how
//  many. Caller frees the array (the elements are borrowed).
static const msgpack_object **
s_sorted_by (const msgpack_object *array, const char *key, size_t *count)
{
    *count = 0;
    if (!array || array->type != MSGPACK_OBJECT_ARRAY || array->via.array.size == 0)
        return NULL;
    const msgpack_object **items = (const msgpack_object **)
        zmalloc (array->via.array.size * sizeof (msgpack_object *));
    for (uint32_t i = 0; i < array->via.array.size; i++)
        if (array->via.array.ptr [i].type == MSGPACK_OBJECT_MAP)
            items [(*count)++] = &array->via.array.ptr [i];
    s_sort_key = key;
    qsort (items, *count, sizeof (msgpack_object *), s_by_key);
    return items;
}

static void
s_print_topics (s_ctl_t *self, const msgpack_object *reply)
{
    const msgpack_object *topics = cvr_obj_get (reply, "topics");
    zlistx_t *names = s_sorted_keys (topics);
    s_table_t *table = s_table_new (2);
    s_table_add (table, "NAME", "PARTITIONS");
    for (char *name = (char *) zlistx_first (names); name;
         name = (char *) zlistx_next (names)) {
        char *count = s_field_text (topics, name);
        s_table_add (table, name, count);
        free (count);
    }
    s_table_print (table, stdout, "");
    s_table_destroy (&table);
    zlistx_destroy (&names);
}

static int
s_cmd_topics (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 0, 0);
    if (rc >= 0)
        return rc;
    return s_request (self, s_request_new ("list_topics"), s_print_topics);
}

static void
s_print_topic_created (s_ctl_t *self, const msgpack_object *reply)
{
    char *topic = s_field_text (reply, "topic");
    printf ("topic %s: %" PRId64 " partitions\n", topic,
            cvr_obj_get_int (reply, "partitions", 0));
    free (topic);
}

static int
s_cmd_topic (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 1, 3);
    if (rc >= 0)
        return rc;
    const char *action = argv [optind];
    if (strneq (action, "create"))
        return s_usage_error (self, "unknown action '%s' (usage: %s %s)",
                              action, self->command->name, self->command->usage);
    if (argc - optind != 3)
        return s_usage_error (self, "missing argument (usage: %s %s)",
                              self->command->name, self->command->usage);
    //  Only the type is checked here: the range is the server's to judge.
    int64_t partitions;
    if (s_parse_int (argv [optind + 2], INT64_MIN, INT64_MAX, &partitions))
        return s_usage_error (self, "N wants a number of partitions, not '%s'",
                              argv [optind + 2]);
    cvr_wr_t *w = s_request_new ("create_topic");
    cvr_wr_kstr (w, "topic", argv [optind + 1]);
    cvr_wr_kint (w, "partitions", partitions);
    return s_request (self, w, s_print_topic_created);
}

static void
s_print_groups (s_ctl_t *self, const msgpack_object *reply)
{
    size_t count;
    const msgpack_object **groups =
        s_sorted_by (cvr_obj_get (reply, "groups"), "group_id", &count);
    s_table_t *table = s_table_new (3);
    s_table_add (table, "GROUP", "GENERATION", "MEMBERS");
    for (size_t i = 0; i < count; i++) {
        char *id = s_field_text (groups [i], "group_id");
        char *generation = s_field_text (groups [i], "generation");
        char *members = s_field_text (groups [i], "members");
        s_table_add (table, id, generation, members);
        free (id);
        free (generation);
        free (members);
    }
    s_table_print (table, stdout, "");
    s_table_destroy (&table);
    free (groups);
}

static int
s_cmd_groups (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 0, 0);
    if (rc >= 0)
        return rc;
    return s_request (self, s_request_new ("list_groups"), s_print_groups);
}

//  A string array as "a,b,c"; NULL when empty. Caller frees.
static char *
s_str_array_text (const msgpack_object *array)
{
    if (!array || array->type != MSGPACK_OBJECT_ARRAY || array->via.array.size == 0)
        return NULL;
    char *text = strdup ("");
    for (uint32_t i = 0; i < array->via.array.size; i++) {
        char *item = s_obj_text (&array->via.array.ptr [i]);
        char *joined = zsys_sprintf ("%s%s%s", text, i ? "," : "", item);
        free (item);
        free (text);
        text = joined;
    }
    return text;
}

//  Key of a partition in the maps below; caller frees. Topic names hold
//  no '/', so the key is unambiguous.
static char *
s_tp_key (const char *topic, int64_t partition)
{
    return zsys_sprintf ("%s/%" PRId64, topic, partition);
}

//  The group as get_group returns it, with the committed offsets of
//  fetch_offsets: header, members, then every partition of every topic.
static void
s_print_group (const msgpack_object *group, const msgpack_object *offsets_array)
{
    const msgpack_object *topics = cvr_obj_get (group, "topics");
    zlistx_t *topic_names = s_sorted_keys (topics);
    size_t member_count;
    const msgpack_object **members =
        s_sorted_by (cvr_obj_get (group, "members"), "member_id", &member_count);

    //  Header.
    s_table_t *table = s_table_new (2);
    char *text = s_field_text (group, "group_id");
    s_kv_add (table, "group", text);
    free (text);
    text = s_field_text (group, "generation");
    s_kv_add (table, "generation", text);
    free (text);
    text = s_field_text (group, "assignor");
    s_kv_add (table, "assignor", text);
    free (text);
    text = strdup ("");
    for (char *name = (char *) zlistx_first (topic_names); name;
         name = (char *) zlistx_next (topic_names)) {
        char *joined = zsys_sprintf ("%s%s%s (%" PRId64 ")", text, *text ? ", " : "",
                                     name, cvr_obj_get_int (topics, name, 0));
        free (text);
        text = joined;
    }
    s_kv_add (table, "topics", *text ? text : NULL);
    free (text);
    s_kv_addf (table, "members", "%zu", member_count);
    s_table_print (table, stdout, "");
    s_table_destroy (&table);

    //  Members, and who owns what.
    zhashx_t *owners = zhashx_new ();
    zhashx_set_destructor (owners, (zhashx_destructor_fn *) zstr_free);
    table = s_table_new (6);
    s_table_add (table, "MEMBER", "INSTANCE", "SERVICE", "TOPICS",
                 "PARTITIONS", "ASSIGNMENT");
    for (size_t i = 0; i < member_count; i++) {
        const msgpack_object *member = members [i];
        char *id = s_field_text (member, "member_id");
        char *instance = cvr_obj_get_strdup (member, "instance_id");
        //  The registered service that keeps the member alive, else the
        //  service name it gave as a label.
        char *service = cvr_obj_get_strdup (member, "service_id");
        if (!service)
            service = cvr_obj_get_strdup (member, "service_name");
        char *member_topics = s_str_array_text (cvr_obj_get (member, "topics"));
        const msgpack_object *assignment = cvr_obj_get (member, "assignment");
        s_tp_list_t owned = s_tp_list_read (assignment, false);
        char count [24];
        snprintf (count, sizeof count, "%zu", owned.count);
        char *assigned = s_assignment_text (assignment);
        s_table_add (table, id, instance, service, member_topics, count, assigned);
        for (size_t j = 0; j < owned.count; j++) {
            //  Two owners would break the protocol's invariant: show both.
            char *key = s_tp_key (owned.items [j].topic, owned.items [j].partition);
            const char *other = (const char *) zhashx_lookup (owners, key);
            zhashx_update (owners, key, other
                           ? zsys_sprintf ("%s,%s", other, id) : strdup (id));
            free (key);
        }
        s_tp_list_clear (&owned);
        free (id);
        free (instance);
        free (service);
        free (member_topics);
        free (assigned);
    }
    printf ("\n");
    s_table_print (table, stdout, "");
    s_table_destroy (&table);

    //  Every partition of every topic, then committed offsets outside
    //  them (a topic no member subscribes to any more).
    s_tp_list_t offsets = s_tp_list_read (offsets_array, true);
    zhashx_t *committed = zhashx_new ();
    zhashx_set_destructor (committed, (zhashx_destructor_fn *) zstr_free);
    for (size_t i = 0; i < offsets.count; i++) {
        char *key = s_tp_key (offsets.items [i].topic, offsets.items [i].partition);
        zhashx_update (committed, key,
                       zsys_sprintf ("%" PRId64, offsets.items [i].offset));
        free (key);
    }
    table = s_table_new (4);
    s_table_add (table, "TOPIC", "PARTITION", "OWNER", "COMMITTED");
    for (char *name = (char *) zlistx_first (topic_names); name;
         name = (char *) zlistx_next (topic_names)) {
        int64_t partitions = cvr_obj_get_int (topics, name, 0);
        for (int64_t p = 0; p < partitions; p++) {
            char *key = s_tp_key (name, p);
            char number [24];
            snprintf (number, sizeof number, "%" PRId64, p);
            s_table_add (table, name, number,
                         (const char *) zhashx_lookup (owners, key),
                         (const char *) zhashx_lookup (committed, key));
            zhashx_delete (committed, key);
            free (key);
        }
    }
    for (size_t i = 0; i < offsets.count; i++) {
        char *key = s_tp_key (offsets.items [i].topic, offsets.items [i].partition);
        const char *offset = (const char *) zhashx_lookup (committed, key);
        if (offset) {
            char number [24];
            snprintf (number, sizeof number, "%" PRId64, offsets.items [i].partition);
            s_table_add (table, offsets.items [i].topic, number,
                         (const char *) zhashx_lookup (owners, key), offset);
            zhashx_delete (committed, key);
        }
        free (key);
    }
    printf ("\n");
    s_table_print (table, stdout, "");
    s_table_destroy (&table);

    s_tp_list_clear (&offsets);
    zhashx_destroy (&committed);
    zhashx_destroy (&owners);
    free (members);
    zlistx_destroy (&topic_names);
}

static void
s_print_group_deleted (s_ctl_t *self, const msgpack_object *reply)
{
    printf ("deleted group %s\n", self->subject);
}

static int
s_cmd_group (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 1, 2);
    if (rc >= 0)
        return rc;
    //  One operand is always a group id, so a group may be named "delete".
    if (argc - optind == 2) {
        if (strneq (argv [optind], "delete"))
            return s_usage_error (self, "unexpected argument '%s'", argv [optind + 1]);
        self->subject = argv [optind + 1];
        cvr_wr_t *w = s_request_new ("delete_group");
        cvr_wr_kstr (w, "group_id", self->subject);
        return s_request (self, w, s_print_group_deleted);
    }
    self->subject = argv [optind];
    rc = s_EXIT_OK;
    cvr_wr_t *w = s_request_new ("get_group");
    cvr_wr_kstr (w, "group_id", self->subject);
    cvr_msg_t *group = s_call (self, &w, &rc);
    if (!group)
        return rc;
    w = s_request_new ("fetch_offsets");
    cvr_wr_kstr (w, "group_id", self->subject);
    cvr_msg_t *offsets = s_call (self, &w, &rc);
    if (!offsets) {
        cvr_msg_destroy (&group);
        return rc;
    }
    const msgpack_object *g = cvr_obj_get (cvr_msg_root (group), "group");
    const msgpack_object *o = cvr_obj_get (cvr_msg_root (offsets), "offsets");
    if (self->json) {
        json_t *value = json_object ();
        if (value) {
            json_object_set_new (value, "group", cvr_json_from_msgpack (g));
            json_object_set_new (value, "offsets", cvr_json_from_msgpack (o));
        }
        rc = s_print_json (value);
    }
    else
    if (!g || g->type != MSGPACK_OBJECT_MAP) {
        fprintf (stderr, s_PROG ": the reply holds no valid group\n");
        rc = s_EXIT_SERVER;
    }
    else
        s_print_group (g, o);
    cvr_msg_destroy (&group);
    cvr_msg_destroy (&offsets);
    return rc;
}

static int
s_cmd_offsets (s_ctl_t *self, int argc, char **argv)
{
    static struct option options [] = {
        { "topic", required_argument, NULL, 'T' },
        s_HELP_OPTION, { 0 }
    };
    const char *topic = NULL;
    s_getopt_reset ();
    int c;
    while ((c = getopt_long (argc, argv, ":h", options, NULL)) != -1)
        switch (c) {
            case 'T': topic = optarg; break;
            case 'h': return s_command_help (self);
            default: return s_bad_option (self, c, argv, options);
        }
    if (argc - optind != 1)
        return s_usage_error (self, argc == optind
                              ? "missing group id" : "too many arguments");
    int rc = s_EXIT_OK;
    cvr_wr_t *w = s_request_new ("fetch_offsets");
    cvr_wr_kstr (w, "group_id", argv [optind]);
    cvr_msg_t *reply = s_call (self, &w, &rc);
    if (!reply)
        return rc;
    const msgpack_object *root = cvr_msg_root (reply);
    if (self->json) {
        json_t *value = cvr_json_from_reply (root);
        json_t *all = value ? json_object_get (value, "offsets") : NULL;
        if (topic && json_is_array (all)) {
            //  The reply as it came, only the offsets filtered.
            json_t *kept = json_array ();
            size_t i;
            json_t *entry;
            json_array_foreach (all, i, entry) {
                const char *name = json_string_value (json_array_get (entry, 0));
                if (name && streq (name, topic))
                    json_array_append (kept, entry);
            }
            json_object_set_new (value, "offsets", kept);
        }
        rc = s_print_json (value);
    }
    else {
        s_tp_list_t offsets = s_tp_list_read (cvr_obj_get (root, "offsets"), true);
        s_table_t *table = s_table_new (3);
        s_table_add (table, "TOPIC", "PARTITION", "OFFSET");
        for (size_t i = 0; i < offsets.count; i++) {
            if (topic && strneq (offsets.items [i].topic, topic))
                continue;
            char partition [24], offset [24];
            snprintf (partition, sizeof partition, "%" PRId64, offsets.items [i].partition);
            snprintf (offset, sizeof offset, "%" PRId64, offsets.items [i].offset);
            s_table_add (table, offsets.items [i].topic, partition, offset);
        }
        s_table_print (table, stdout, "");
        s_table_destroy (&table);
        s_tp_list_clear (&offsets);
    }
    cvr_msg_destroy (&reply);
    return rc;
}


//  --------------------------------------------------------------------------
//  watch

//  An assignment event's members as "(m1=4 m2=3)": partitions per
//  member, in member order, the first few only.
#define s_WATCH_MEMBERS 8

static void
s_print_assignment_counts (const msgpack_object *assignments)
{
    zlistx_t *members = s_sorted_keys (assignments);
    size_t count = zlistx_size (members), shown = 0;
    if (count)
        printf (" (");
    for (char *member = (char *) zlistx_first (members);
         member && shown < s_WATCH_MEMBERS;
         member = (char *) zlistx_next (members), shown++) {
        const msgpack_object *assignment = cvr_obj_get (assignments, member);
        printf ("%s%s=%u", shown ? " " : "", member,
                assignment && assignment->type == MSGPACK_OBJECT_ARRAY
                    ? assignment->via.array.size : 0);
    }
    if (count > shown)
        printf (" +%zu more", count - shown);
    if (count)
        printf (")");
    zlistx_destroy (&members);
}

//  One event as one line of text: seq, topic, then what the event says.
//    seq=3 service/orders/registered svc-1 healthy
//    seq=5 group/g1/membership joined m2 gen=2
//    seq=6 group/g1/assignment gen=2 assignor=sticky 2 members (m1=6 m2=6) reason=member joined
//    seq=7 topic/orders/changed partitions=16
static void
s_print_event_human (const cvr_event_t *event)
{
    const char *type = event->type ? event->type : "?";
    printf ("seq=%" PRIu64 " ", event->seq);
    if (streq (type, "snapshot")) {
        //  Services are all a snapshot holds; for other prefixes it only
        //  marks where the live events start.
        if (event->services)
            printf ("snapshot %zu services\n", event->services->count);
        else
            printf ("snapshot\n");
        return;
    }
    printf ("%s", event->topic ? event->topic : "?");
    if (event->service) {
        printf (" %s %s\n", event->service->service_id,
                cvr_health_name (event->service->health));
        return;
    }
    cvr_msg_t *body = event->body
                    ? cvr_msg_decode (event->body, event->body_size) : NULL;
    const msgpack_object *map = body ? cvr_msg_root (body) : NULL;
    if (streq (type, "assignment")) {
        const msgpack_object *assignments = cvr_obj_get (map, "assignments");
        if (assignments && assignments->type != MSGPACK_OBJECT_MAP)
            assignments = NULL;
        uint32_t members = assignments ? assignments->via.map.size : 0;
        printf (" gen=%" PRId64, cvr_obj_get_int (map, "generation", 0));
        char *assignor = cvr_obj_get_strdup (map, "assignor");
        if (assignor)
            printf (" assignor=%s", assignor);
        free (assignor);
        printf (" %u member%s", members, members == 1 ? "" : "s");
        s_print_assignment_counts (assignments);
        char *reason = cvr_obj_get_strdup (map, "reason");
        if (reason)
            printf (" reason=%s", reason);
        free (reason);
    }
    else
    if (cvr_obj_get (map, "member_id")) {
        //  membership: joined, left, expired or fenced
        char *member = s_field_text (map, "member_id");
        printf (" %s %s gen=%" PRId64, type, member,
                cvr_obj_get_int (map, "generation", 0));
        free (member);
    }
    else
    if (cvr_obj_get (map, "partitions"))
        printf (" partitions=%" PRId64, cvr_obj_get_int (map, "partitions", 0));
    else
        //  A kind of event this version does not know: its type at least.
        printf (" %s", type);
    printf ("\n");
    cvr_msg_destroy (&body);
}

//  One event as one compact JSON object: {"topic": ..., "body": ...}.
static void
s_print_event_json (const cvr_event_t *event)
{
    json_t *body = NULL;
    if (event->body)
        body = cvr_json_from_bytes (event->body, event->body_size);
    else {
        //  A snapshot is made by the client, not received: show what it
        //  holds in the shape of an event body.
        body = json_pack ("{s:s?, s:I}", "type", event->type,
                          "seq", (json_int_t) event->seq);
        if (body && event->services) {
            json_t *services = json_array ();
            for (size_t i = 0; i < event->services->count; i++)
                json_array_append_new (services,
                    cvr_json_from_service (event->services->items [i]));
            json_object_set_new (body, "services", services);
        }
    }
    json_t *line = json_object ();
    //  A snapshot came on no topic: null says so more plainly than "".
    json_object_set_new (line, "topic", event->topic && *event->topic
                         ? json_string (event->topic) : json_null ());
    json_object_set_new (line, "body", body ? body : json_null ());
    cvr_json_print (line, stdout, true);
    json_decref (line);
}

static void
s_on_signal (int signum)
{
    zsys_interrupted = 1;
}

static int
s_cmd_watch (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 0, 1);
    if (rc >= 0)
        return rc;
    const char *prefix = optind < argc ? argv [optind] : "";
    //  Our own handler rather than czmq's default, so SIGTERM and SIGINT
    //  both end the loop below cleanly whatever the library set up.
    zsys_init ();
    zsys_handler_set (s_on_signal);
    if (s_security (self))
        return s_EXIT_USAGE;
    cvr_watch_t *watch = cvr_watch_new_secure (self->endpoint, prefix, self->timeout_ms,
                                               self->security);
    if (!watch) {
        if (zsys_interrupted)
            return s_EXIT_OK;
        fprintf (stderr, s_PROG ": no reply from %s within %d ms"
                 " (is conveyord running?)\n", self->endpoint, self->timeout_ms);
        return s_EXIT_UNREACHABLE;
    }
    while (!zsys_interrupted) {
        //  Bounded waits: the flag is checked even if a library call
        //  retries after EINTR instead of returning.
        cvr_event_t *event = cvr_watch_next (watch, 500);
        if (!event)
            continue;
        //  Liveness beats, not events: they carry no news for a reader.
        if (!event->topic || !streq (event->topic, "sys/heartbeat")) {
            if (self->json)
                s_print_event_json (event);
            else
                s_print_event_human (event);
            //  One line at a time even into a pipe, so a reader sees
            //  each event as it happens.
            fflush (stdout);
        }
        cvr_event_destroy (&event);
    }
    cvr_watch_destroy (&watch);
    return s_EXIT_OK;
}


//  --------------------------------------------------------------------------
//  cluster

//  A cluster_status reply: the node that answered, the leader, and every
//  server of the configuration.
static void
s_print_cluster (s_ctl_t *self, const msgpack_object *reply)
{
    uint64_t node = 0, leader = 0;
    cvr_obj_uint (cvr_obj_get (reply, "node_id"), &node);
    cvr_obj_uint (cvr_obj_get (reply, "leader_id"), &leader);
    s_table_t *table = s_table_new (2);
    char *state = s_field_text (reply, "state");
    s_kv_addf (table, "node", "%" PRIu64 " (%s)", node, state);
    free (state);
    char *endpoint = s_field_text (reply, "leader");
    if (leader)
        s_kv_addf (table, "leader", "%" PRIu64 " at %s", leader, endpoint);
    else
        s_kv_add (table, "leader", "none (electing)");
    free (endpoint);
    char *term = s_field_text (reply, "term");
    s_kv_add (table, "term", term);
    free (term);
    char *commit = s_field_text (reply, "commit_index");
    char *applied = s_field_text (reply, "last_applied");
    s_kv_addf (table, "commit", "%s (applied %s)", commit, applied);
    free (commit);
    free (applied);
    s_table_print (table, stdout, "");
    s_table_destroy (&table);

    const msgpack_object *servers = cvr_obj_get (reply, "servers");
    table = s_table_new (6);
    s_table_add (table, "ID", "ADDRESS", "ROLE", "STATE", "REQUESTS", "EVENTS");
    size_t count = servers && servers->type == MSGPACK_OBJECT_ARRAY
                 ? servers->via.array.size : 0;
    for (size_t i = 0; i < count; i++) {
        const msgpack_object *server = &servers->via.array.ptr [i];
        uint64_t id = 0;
        cvr_obj_uint (cvr_obj_get (server, "id"), &id);
        char *text_id = s_field_text (server, "id");
        char *address = s_field_text (server, "address");
        char *role = s_field_text (server, "role");
        char *requests = s_field_text (server, "request_endpoint");
        char *events = s_field_text (server, "events_endpoint");
        const char *what = id == leader && id == node ? "leader, this node"
                         : id == leader ? "leader"
                         : id == node ? "this node" : "-";
        //  A server that never led has announced no endpoints yet.
        s_table_add (table, text_id, address, role, what,
                     streq (requests, "null") ? "-" : requests,
                     streq (events, "null") ? "-" : events);
        free (text_id);
        free (address);
        free (role);
        free (requests);
        free (events);
    }
    printf ("\n");
    s_table_print (table, stdout, "");
    s_table_destroy (&table);
}

static void
s_print_cluster_changed (s_ctl_t *self, const msgpack_object *reply)
{
    printf ("%s\n", self->subject);
}

static int
s_cmd_cluster (s_ctl_t *self, int argc, char **argv)
{
    int rc = s_parse_plain (self, argc, argv, 1, 3);
    if (rc >= 0)
        return rc;
    const char *action = argv [optind];
    int operands = argc - optind - 1;
    int wanted = streq (action, "status") ? 0 : streq (action, "add") ? 2
               : streq (action, "remove") ? 1 : -1;
    if (wanted < 0)
        return s_usage_error (self, "unknown action '%s' (usage: %s %s)",
                              action, self->command->name, self->command->usage);
    if (operands < wanted)
        return s_usage_error (self, "missing argument (usage: %s %s)",
                              self->command->name, self->command->usage);
    if (operands > wanted)
        return s_usage_error (self, "unexpected argument '%s'",
                              argv [optind + 1 + wanted]);
    if (wanted == 0)
        return s_request (self, s_request_new ("cluster_status"), s_print_cluster);

    int64_t id;
    if (s_parse_int (argv [optind + 1], 1, INT64_MAX, &id))
        return s_usage_error (self, "ID wants a node number (1 or more), not '%s'",
                              argv [optind + 1]);
    const char *address = wanted == 2 ? argv [optind + 2] : NULL;
    if (address) {
        const char *colon = strrchr (address, ':');
        int64_t port;
        if (!colon || colon == address || s_parse_int (colon + 1, 1, 65535, &port))
            return s_usage_error (self, "HOST:PORT wants the node's raft address "
                                  "(as in --peers), not '%s'", address);
    }
    cvr_wr_t *w = s_request_new (address ? "cluster_add" : "cluster_remove");
    cvr_wr_kint (w, "node_id", id);
    if (address)
        cvr_wr_kstr (w, "address", address);
    char *done = address
        ? zsys_sprintf ("node %" PRId64 " at %s is a voter", id, address)
        : zsys_sprintf ("node %" PRId64 " is out of the cluster", id);
    self->subject = done;
    //  The reply waits for the membership change (a new node catches up
    //  first): the leader is given the whole timeout, not sent the change
    //  again.
    if (s_client (self))
        cvr_client_set_patient (self->client, true);
    rc = s_request (self, w, s_print_cluster_changed);
    self->subject = NULL;
    zstr_free (&done);
    return rc;
}


//  --------------------------------------------------------------------------
//  The command table and main

//  Writes a CurveZMQ certificate pair: NAME.cert (public, for the
//  server's --curve-clients directory or for clients' --server-key) and
//  NAME.cert_secret (private). No network.
static int
s_cmd_keygen (s_ctl_t *self, int argc, char **argv)
{
    static struct option options [] = {
        { "dir", required_argument, NULL, 'd' },
        s_HELP_OPTION, { 0 }
    };
    const char *dir = ".";
    s_getopt_reset ();
    int c;
    while ((c = getopt_long (argc, argv, ":h", options, NULL)) != -1)
        switch (c) {
            case 'd': dir = optarg; break;
            case 'h': return s_command_help (self);
            default: return s_bad_option (self, c, argv, options);
        }
    if (argc - optind != 1)
        return s_usage_error (self, argc == optind ? "missing NAME" : "too many arguments");
    const char *name = argv [optind];
    if (!*name || strchr (name, '/'))
        return s_usage_error (self, "NAME must be a plain file name, not '%s'", name);
    char path [4096];
    snprintf (path, sizeof path, "%s/%s.cert", dir, name);
    if (zsys_file_exists (path)) {
        fprintf (stderr, s_PROG ": %s exists; not overwriting a key\n", path);
        return s_EXIT_SERVER;
    }
    zcert_t *cert = zcert_new ();
    zcert_set_meta (cert, "name", "%s", name);
    int rc = zcert_save (cert, path);
    if (rc == 0) {
        if (self->json)
            printf ("{\"public\": \"%s\", \"secret\": \"%s_secret\", \"public_key\": \"%s\"}\n",
                    path, path, zcert_public_txt (cert));
        else
            printf ("public certificate: %s\nsecret certificate: %s_secret (keep it private)\n"
                    "public key:         %s\n", path, path, zcert_public_txt (cert));
    }
    else
        fprintf (stderr, s_PROG ": cannot write %s: %s\n", path, strerror (errno));
    zcert_destroy (&cert);
    return rc == 0 ? s_EXIT_OK : s_EXIT_SERVER;
}

static const s_command_t s_commands [] = {
    { "status", s_cmd_status, "",
      "hello and a few stats: server, version, node, events endpoint, seq, services, uptime" },
    { "services", s_cmd_services,
      "[--name N] [--type T] [--group G] [--label k=v]... [--healthy]",
      "list services (all filters must hold)" },
    { "service", s_cmd_service, "ID", "show one service record" },
    { "register", s_cmd_register,
      "--id ID --name N --type T --endpoint EP [--label k=v]... [--group G] [--lease-ms N] [--weight N]",
      "register (or replace) a service" },
    { "heartbeat", s_cmd_heartbeat, "ID [--health healthy|degraded|unhealthy]",
      "renew a service's lease, reporting its health" },
    { "deregister", s_cmd_deregister, "ID", "remove a service" },
    { "topics", s_cmd_topics, "", "list topics and their partition counts" },
    { "topic", s_cmd_topic, "create NAME N",
      "create a topic with N partitions, or grow it to N (it never shrinks)" },
    { "groups", s_cmd_groups, "", "list consumer groups" },
    { "group", s_cmd_group, "ID | delete ID",
      "show a group (members, assignments, each partition's owner and"
      " committed offset), or delete an empty one" },
    { "offsets", s_cmd_offsets, "GROUP [--topic T]",
      "committed offsets of a group (of one topic with --topic)" },
    { "watch", s_cmd_watch, "[PREFIX]",
      "print events under PREFIX (e.g. service/orders/, group/g1/, topic/) until interrupted" },
    { "stats", s_cmd_stats, "", "server counters; requests and errors by name" },
    { "cluster", s_cmd_cluster, "status | add ID HOST:PORT | remove ID",
      "the nodes, leader, term and commit index (any node answers); add a node"
      " by its raft address (as in --peers) or remove one, once the change is done" },
    { "keygen", s_cmd_keygen, "NAME [--dir DIR]",
      "write a CurveZMQ certificate pair: NAME.cert (public) and NAME.cert_secret" },
};
#define s_COMMANDS (sizeof s_commands / sizeof s_commands [0])

static void
s_print_usage (FILE *file)
{
    fprintf (file,
        "usage: " s_PROG " [-e|--endpoint EP[,EP...]] [-t|--timeout MS] [--json] COMMAND [ARGS]\n"
        "\n"
        "Talks to conveyord's request endpoint.\n"
        "\n"
        "Global options (before COMMAND):\n"
        "  -e, --endpoint EP   request endpoint (default $CONVEYOR_ENDPOINT, else "
        s_DEFAULT_EP ");\n"
        "                      a cluster's nodes comma-separated: requests follow\n"
        "                      the leader and move past nodes that do not answer\n"
        "  -t, --timeout MS    wait at most MS per request, failover included\n"
        "                      (default %d)\n"
        "      --json          print the server's reply as JSON (watch: one object per line)\n"
        "      --server-key K  CurveZMQ: the server's public key, or its NAME.cert file\n"
        "                      (default $CONVEYOR_SERVER_KEY)\n"
        "      --cert FILE     CurveZMQ: this client's NAME.cert_secret (default\n"
        "                      $CONVEYOR_CERT); both are needed for a secured server\n"
        "  -h, --help          show this help\n"
        "\n"
        "Commands:\n", s_DEFAULT_MS);
    for (size_t i = 0; i < s_COMMANDS; i++)
        fprintf (file, "  %s%s%s\n      %s\n", s_commands [i].name,
                 *s_commands [i].usage ? " " : "", s_commands [i].usage,
                 s_commands [i].summary);
    fprintf (file,
        "\n"
        "Exit status: 0 success, 1 the server answered an error, 2 usage error,\n"
        "3 no reply within the timeout.\n");
}

int
main (int argc, char **argv)
{
    const char *env = getenv ("CONVEYOR_ENDPOINT");
    const char *server_key = getenv ("CONVEYOR_SERVER_KEY");
    const char *cert = getenv ("CONVEYOR_CERT");
    s_ctl_t ctl = {
        .endpoint = env && *env ? env : s_DEFAULT_EP,
        .timeout_ms = s_DEFAULT_MS,
        .server_key = server_key && *server_key ? server_key : NULL,
        .cert = cert && *cert ? cert : NULL
    };
    //  "+": stop at the command name, so its options are left for it.
    opterr = 0;
    int c;
    int64_t value;
    while ((c = getopt_long (argc, argv, "+:e:t:h", s_global_options, NULL)) != -1)
        switch (c) {
            case 'e': ctl.endpoint = optarg; break;
            case 't':
                if (s_parse_int (optarg, 1, INT_MAX, &value))
                    return s_usage_error (NULL,
                        "--timeout wants a positive number of ms, not '%s'", optarg);
                ctl.timeout_ms = (int) value;
                break;
            case 'j': ctl.json = true; break;
            case 'k': ctl.server_key = optarg; break;
            case 'c': ctl.cert = optarg; break;
            case 'h': s_print_usage (stdout); return s_EXIT_OK;
            default: return s_bad_option (NULL, c, argv, s_global_options);
        }
    if (optind >= argc)
        return s_usage_error (NULL, "missing command");
    const char *name = argv [optind];
    for (size_t i = 0; i < s_COMMANDS && !ctl.command; i++)
        if (streq (s_commands [i].name, name))
            ctl.command = &s_commands [i];
    if (!ctl.command)
        return s_usage_error (NULL, "unknown command '%s'", name);

    int rc = ctl.command->handler (&ctl, argc - optind, argv + optind);
    cvr_client_destroy (&ctl.client);
    cvr_security_destroy (&ctl.security);
    return rc;
}
