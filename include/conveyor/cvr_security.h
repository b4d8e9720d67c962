/*  cvr_security.h: CurveZMQ credentials of a client.

    A client talks to a server started with --curve-secret and
    --curve-clients only when it knows the server's public key and holds a
    certificate whose public key is in the server's client directory.
    Certificates are czmq's (zcert) files: `conveyorctl keygen NAME` writes
    NAME.cert (public, to give out) and NAME.cert_secret (keep private).

    cvr_security_t *security = cvr_security_new ("server.cert", "me.cert_secret");
    cvr_client_t *client = cvr_client_new_secure ("tcp://10.0.0.1:7400", 5000, security);
*/
#ifndef CVR_SECURITY_H_INCLUDED
#define CVR_SECURITY_H_INCLUDED

#include <czmq.h>
#include "cvr_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _cvr_security_t cvr_security_t;

//  server_key: the server's public key as 40 Z85 characters, or the path of
//  its public certificate file. client_cert: the path of this client's
//  certificate with its secret key (NAME.cert_secret). Returns NULL when
//  either cannot be read; the reason is logged. Caller owns the result.
CVR_EXPORT cvr_security_t *
    cvr_security_new (const char *server_key, const char *client_cert);

//  A copy; caller owns it. NULL-safe.
CVR_EXPORT cvr_security_t *
    cvr_security_dup (const cvr_security_t *self);

CVR_EXPORT void
    cvr_security_destroy (cvr_security_t **self_p);

//  Makes sock a CURVE client of the server: call before connecting.
CVR_EXPORT void
    cvr_security_apply (const cvr_security_t *self, zsock_t *sock);

//  The server's public key (Z85, borrowed).
CVR_EXPORT const char *
    cvr_security_server_key (const cvr_security_t *self);

//  Loads a czmq certificate file (NAME.cert reads NAME.cert_secret too when
//  it exists), or NULL when it cannot be read or is not one. A file that is
//  not ZPL with a `public-key` is refused before czmq parses it (its parser
//  leaks on a syntax error). Caller owns the result.
CVR_EXPORT zcert_t *
    cvr_security_load_cert (const char *path);

#ifdef __cplusplus
}
#endif
#endif
