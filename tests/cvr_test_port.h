/*  cvr_test_port.h: a free port for tests that must name one.

    Ports come from below the kernel's ephemeral range (32768 and up),
    where the suites' servers bind "tcp://127.0.0.1:*": a port taken from
    that range could be handed to another test's server between our check
    and our bind (and then receive this test's clients' requests). Each
    suite uses its own range: the C cluster client tests and the Python
    cluster tests 20000-31999, the raft engine tests 12000-19999, the log
    tests 10000-11999.
    Include after cmocka.h and czmq.h.
*/
#ifndef CVR_TEST_PORT_H_INCLUDED
#define CVR_TEST_PORT_H_INCLUDED

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

//  A port in [low, high) that could be bound on 127.0.0.1 just now: free
//  unless someone takes it in between. The first call starts at a random
//  port, later ones continue after the last port given, so a test that
//  asks for several before binding any never gets the same one twice.
static inline int
cvr_test_free_port (int low, int high)
{
    static int next = -1;
    int span = high - low;
    if (next < 0)
        next = randof (span);
    for (int i = 0; i < span; i++) {
        int port = low + next;
        next = (next + 1) % span;
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        assert_true (fd >= 0);
        struct sockaddr_in addr = { .sin_family = AF_INET,
                                    .sin_port = htons ((uint16_t) port),
                                    .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
        int rc = bind (fd, (struct sockaddr *) &addr, sizeof (addr));
        close (fd);
        if (rc == 0)
            return port;
    }
    fail_msg ("no free port in %d-%d", low, high - 1);
    return -1;
}

#endif
