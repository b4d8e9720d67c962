/*  cvr_security.c: CurveZMQ client credentials. */
#include "conveyor/cvr_security.h"

struct _cvr_security_t {
    char server_key [41];       //  the server's public key, Z85
    zcert_t *cert;              //  this client's certificate, owned
};

cvr_security_t *
cvr_security_new (const char *server_key, const char *client_cert)
{
    if (!server_key || !client_cert)
        return NULL;
    cvr_security_t *self = (cvr_security_t *) zmalloc (sizeof (cvr_security_t));
    uint8_t decoded [32];
    if (strlen (server_key) == 40 && !zsys_file_exists (server_key)) {
        //  czmq asserts on a key that is not Z85: check it here.
        if (zmq_z85_decode (decoded, server_key))
            snprintf (self->server_key, sizeof (self->server_key), "%s", server_key);
        else
            zsys_error ("conveyor: the server key '%s' is not a Z85 public key", server_key);
    }
    else {
        zcert_t *server = cvr_security_load_cert (server_key);
        if (server)
            snprintf (self->server_key, sizeof (self->server_key), "%s",
                      zcert_public_txt (server));
        else
            zsys_error ("conveyor: cannot read the server's certificate '%s'", server_key);
        zcert_destroy (&server);
    }
    self->cert = cvr_security_load_cert (client_cert);
    if (!self->cert)
        zsys_error ("conveyor: cannot read the client certificate '%s'", client_cert);
    //  A certificate without its secret half cannot authenticate.
    else
    if (streq (zcert_secret_txt (self->cert), "0000000000000000000000000000000000000000")) {
        zsys_error ("conveyor: '%s' has no secret key (use the NAME.cert_secret file)",
                    client_cert);
        zcert_destroy (&self->cert);
    }
    if (!self->cert || !self->server_key [0])
        cvr_security_destroy (&self);
    return self;
}

cvr_security_t *
cvr_security_dup (const cvr_security_t *self)
{
    if (!self)
        return NULL;
    cvr_security_t *copy = (cvr_security_t *) zmalloc (sizeof (cvr_security_t));
    memcpy (copy->server_key, self->server_key, sizeof (copy->server_key));
    copy->cert = zcert_dup (self->cert);
    return copy;
}

void
cvr_security_destroy (cvr_security_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcert_destroy (&(*self_p)->cert);
    free (*self_p);
    *self_p = NULL;
}

void
cvr_security_apply (const cvr_security_t *self, zsock_t *sock)
{
    if (!self || !sock)
        return;
    zcert_apply (self->cert, sock);
    zsock_set_curve_serverkey (sock, self->server_key);
}

const char *
cvr_security_server_key (const cvr_security_t *self)
{
    return self ? self->server_key : NULL;
}

zcert_t *
cvr_security_load_cert (const char *path)
{
    FILE *file = path ? fopen (path, "r") : NULL;
    if (!file)
        return NULL;
    char text [4096];
    size_t size = fread (text, 1, sizeof (text) - 1, file);
    fclose (file);
    text [size] = 0;
    if (size == 0 || memchr (text, 0, size) || !strstr (text, "public-key"))
        return NULL;
    return zcert_load (path);
}
