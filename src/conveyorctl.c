/*  conveyorctl: command-line client for conveyord.

    Every subcommand is an entry of s_commands: it parses its own options,
    builds one request, and hands it to s_request, which sends it, reports
    failures with the exit codes below, and prints the reply either as JSON
    (--json: the reply minus ok/rid) or through the command's printer.

    Exit codes: 0 success, 1 the server answered an error, 2 usage error,
    3 the daemon did not answer within the timeout.
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

static cvr_client_t *
s_client (s_ctl_t *self)
{
    if (!self->client)
        self->client = cvr_client_new (self->endpoint, self->timeout_ms);
    return self->client;
}

//  Reports why a call failed, returns the exit code.
static int
s_call_failed (s_ctl_t *self)
{
    if (!self->client) {
        //  The library makes a client for any well-formed endpoint.
        fprintf (stderr, s_PROG ": bad endpoint '%s'\n"
                 "Try '" s_PROG " --help' for usage.\n", self->endpoint);
        return s_EXIT_USAGE;
    }
    cvr_err_t code = cvr_client_error (self->client);
    if (code == CVR_TIMEOUT) {
        fprintf (stderr, s_PROG ": no reply from %s within %d ms"
                 " (is conveyord running?)\n", self->endpoint, self->timeout_ms);
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
//  watch

//  One event as one line of text.
static void
s_print_event_human (const cvr_event_t *event)
{
    const char *type = event->type ? event->type : "?";
    printf ("seq=%" PRIu64 " ", event->seq);
    if (streq (type, "snapshot")) {
        printf ("snapshot %zu services\n",
                event->services ? event->services->count : 0);
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
        printf (" generation=%" PRId64 " members=%u",
                cvr_obj_get_int (map, "generation", 0),
                assignments && assignments->type == MSGPACK_OBJECT_MAP
                    ? assignments->via.map.size : 0);
        char *reason = cvr_obj_get_strdup (map, "reason");
        if (reason)
            printf (" reason=%s", reason);
        free (reason);
    }
    else
    if (cvr_obj_get (map, "member_id")) {
        char *member = s_field_text (map, "member_id");
        printf (" %s %s generation=%" PRId64, type, member,
                cvr_obj_get_int (map, "generation", 0));
        free (member);
    }
    else
    if (cvr_obj_get (map, "partitions"))
        printf (" partitions=%" PRId64, cvr_obj_get_int (map, "partitions", 0));
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
    cvr_watch_t *watch = cvr_watch_new (self->endpoint, prefix, self->timeout_ms);
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
//  The command table and main

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
    { "watch", s_cmd_watch, "[PREFIX]",
      "print events under PREFIX (e.g. service/orders/) until interrupted" },
    { "stats", s_cmd_stats, "", "server counters; requests and errors by name" },
};
#define s_COMMANDS (sizeof s_commands / sizeof s_commands [0])

static void
s_print_usage (FILE *file)
{
    fprintf (file,
        "usage: " s_PROG " [-e|--endpoint EP] [-t|--timeout MS] [--json] COMMAND [ARGS]\n"
        "\n"
        "Talks to conveyord's request endpoint.\n"
        "\n"
        "Global options (before COMMAND):\n"
        "  -e, --endpoint EP   request endpoint (default $CONVEYOR_ENDPOINT, else "
        s_DEFAULT_EP ")\n"
        "  -t, --timeout MS    wait at most MS per request (default %d)\n"
        "      --json          print the server's reply as JSON (watch: one object per line)\n"
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
    s_ctl_t ctl = {
        .endpoint = env && *env ? env : s_DEFAULT_EP,
        .timeout_ms = s_DEFAULT_MS
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
    return rc;
}
