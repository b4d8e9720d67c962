/*  A program outside the tree, built against the installed libconveyor. */
#include <conveyor/conveyor.h>

int
main (void)
{
    //  Nothing listens here: the call must fail with TIMEOUT, proving the
    //  library links, runs and reports errors.
    cvr_client_t *client = cvr_client_new ("tcp://127.0.0.1:9", 200);
    cvr_hello_t hello = { 0 };
    cvr_err_t rc = cvr_client_hello (client, &hello);
    printf ("%s\n", cvr_err_name (rc));
    cvr_hello_clear (&hello);
    cvr_client_destroy (&client);
    return rc == CVR_TIMEOUT ? 0 : 1;
}
