/*  service.c: a pipeline service that registers and stays alive.

    The smallest real user of libconveyor: registers one service, lets
    cvr_registration heartbeat it from a background actor, prints every
    health change the coordinator acknowledges, and deregisters on SIGINT
    or SIGTERM. Kill it with SIGKILL and the coordinator marks it
    unhealthy after one lease and removes it after two.

    service --id src-1 --name orders --type source --endpoint tcp://127.0.0.1:9000
*/
#include <conveyor/conveyor.h>
#include <getopt.h>

static void
s_on_change (cvr_registration_event_t event, cvr_health_t health, void *arg)
{
    const char *id = (const char *) arg;
    if (event == CVR_REGISTRATION_HEALTH)
        printf ("%s: health is now %s\n", id, cvr_health_name (health));
    else
    if (event == CVR_REGISTRATION_REREGISTERED)
        printf ("%s: lease was lost; registered again\n", id);
    else
        printf ("%s: coordinator unreachable; retrying\n", id);
    fflush (stdout);
}

int
main (int argc, char *argv [])
{
    const char *endpoint = "tcp://127.0.0.1:7400";
    const char *server_key = NULL, *cert = NULL;
    cvr_service_spec_t spec = { .service_type = "source", .weight = -1 };
    cvr_label_t labels [16];
    static struct option longopts [] = {
        { "endpoint", required_argument, 0, 'e' }, { "id", required_argument, 0, 'i' },
        { "name", required_argument, 0, 'n' }, { "type", required_argument, 0, 't' },
        { "listen", required_argument, 0, 'l' }, { "lease-ms", required_argument, 0, 'L' },
        { "weight", required_argument, 0, 'w' }, { "label", required_argument, 0, 'b' },
        { "server-key", required_argument, 0, 'k' }, { "cert", required_argument, 0, 'c' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
    };
    int c;
    while ((c = getopt_long (argc, argv, "e:i:n:t:l:L:w:b:k:c:h", longopts, NULL)) != -1) {
        switch (c) {
            case 'e': endpoint = optarg; break;
            case 'i': spec.service_id = optarg; break;
            case 'n': spec.service_name = optarg; break;
            case 't': spec.service_type = optarg; break;
            case 'l': spec.endpoint = optarg; break;
            case 'L': spec.lease_ms = atoll (optarg); break;
            case 'w': spec.weight = atoll (optarg); break;
            case 'k': server_key = optarg; break;
            case 'c': cert = optarg; break;
            case 'b': {
                char *eq = strchr (optarg, '=');
                if (!eq || spec.labels_count == 16) {
                    fprintf (stderr, "service: --label takes key=value (16 at most)\n");
                    return 2;
                }
                *eq = 0;
                labels [spec.labels_count++] = (cvr_label_t) { optarg, eq + 1 };
                break;
            }
            case 'h':
                printf ("Usage: service --id ID --name NAME [--type source|transform|sink]\n"
                        "               [--endpoint COORDINATOR] [--listen ENDPOINT]\n"
                        "               [--lease-ms N] [--weight N] [--label k=v]...\n"
                        "               [--server-key KEY|FILE --cert NAME.cert_secret]\n");
                return 0;
            default:
                return 2;
        }
    }
    if (!spec.service_id || !spec.service_name) {
        fprintf (stderr, "service: --id and --name are required (see --help)\n");
        return 2;
    }
    if (!spec.endpoint)
        spec.endpoint = "tcp://127.0.0.1:9000";
    spec.labels = labels;
    zsys_init ();
    cvr_security_t *security = NULL;
    if (server_key || cert) {
        security = cvr_security_new (server_key ? server_key : "", cert ? cert : "");
        if (!security) {
            fprintf (stderr, "service: --server-key and --cert must both be usable\n");
            return 2;
        }
    }
    cvr_err_t err;
    cvr_registration_t *registration = cvr_registration_new_secure (
        endpoint, &spec, 3000, s_on_change, (void *) spec.service_id, &err, security);
    cvr_security_destroy (&security);
    if (!registration) {
        fprintf (stderr, "service: cannot register %s at %s: %s\n",
                 spec.service_id, endpoint, cvr_err_name (err));
        return 1;
    }
    printf ("%s: registered as %s (%s), lease %" PRId64 " ms\n", spec.service_id,
            spec.service_name, spec.service_type, cvr_registration_lease_ms (registration));
    fflush (stdout);
    while (!zsys_interrupted)
        zclock_sleep (100);
    cvr_registration_destroy (&registration);
    printf ("%s: deregistered\n", spec.service_id);
    return 0;
}
