/*
 * TCP_NODELAY on the connections librdkafka's mock cluster accepts.
 *
 * A Kafka broker disables Nagle's algorithm on every connection it accepts;
 * the mock cluster (librdkafka 2.0) does not. Without it, a response written
 * while the previous one is still unacknowledged waits for the client's
 * delayed ACK (about 40 ms on Linux): a producer writing to four partitions at
 * once saw 48 ms per round trip instead of 5 (linger.ms), so every Kafka test
 * and benchmark measured that stall rather than eventpipe.
 *
 * The mock accepts with accept(3). This definition in the test executable
 * takes precedence over libc's for librdkafka (symbol interposition): it
 * accepts with accept4(2), a different symbol, and sets TCP_NODELAY. Linked
 * only into test programs (ep_kafka_mock, test_queue_kafka), never into the
 * product.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    int s = accept4(fd, addr, addrlen, 0);

    if (s >= 0) {
        int one = 1;

        /* Not a TCP socket (a test's own AF_UNIX): the call fails, harmlessly. */
        (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return s;
}
