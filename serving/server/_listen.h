/* A listening TCP socket, for serving.server's native front ends (_http_front, _grpc_front). */
#ifndef DEEPLINE_LISTEN_H
#define DEEPLINE_LISTEN_H

#include <Python.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A non-blocking socket listening on host:port (an IPv6 host where it holds ':'; SO_REUSEADDR,
 * never SO_REUSEPORT, so a port in use is an error), with the bound port in *bound_port; -1 with
 * a Python OSError set, in asyncio's words, when it cannot bind. */
static int listen_on(const char *host, int port, int *bound_port) {
    struct addrinfo hints = {.ai_family = strchr(host, ':') ? AF_INET6 : AF_INET,
                             .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *found = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &found);
    if (rc != 0) {
        PyErr_Format(PyExc_OSError, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (found->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, found->ai_addr, found->ai_addrlen) < 0 || listen(fd, 256) < 0) {
        int err = errno;
        freeaddrinfo(found);
        if (fd >= 0)
            close(fd);
        errno = err;
        PyErr_Format(PyExc_OSError, "[Errno %d] error while attempting to bind on address "
                     "('%s', %d): %s", err, host, port, strerror(err));
        return -1;
    }
    freeaddrinfo(found);
    struct sockaddr_storage addr;
    socklen_t addr_len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &addr_len);
    *bound_port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                   : ((struct sockaddr_in *)&addr)->sin_port);
    return fd;
}

#endif
