/* What the native front ends (_http_front: REST, _grpc_front: gRPC) share: a listening socket,
 * an I/O thread that never takes the GIL and runs an epoll loop, an eventfd that wakes it, and an
 * eventfd that tells Python requests wait, handed over in bursts.
 *
 * Each front end's Python object starts with PyObject_HEAD and FRONT_FIELDS, so a pointer to it
 * is a FrontBase pointer for the functions below. The I/O thread holds `mu` while it works;
 * Python's calls take it without the GIL. */
#ifndef DEEPLINE_FRONT_H
#define DEEPLINE_FRONT_H

#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "_listen.h"

#define HAND_OVER_COUNT 256       /* requests queued that make a hand-over at once */
#define HAND_OVER_SECONDS 0.002   /* the longest a queued request waits for one */
#define LISTEN_ID UINT64_MAX      /* epoll data of the listening socket */
#define WAKE_ID (UINT64_MAX - 1)  /* epoll data of wake_fd */

#define FRONT_FIELDS                                                                              \
    int listen_fd, ep, ready_fd, wake_fd;                                                         \
    int port;                                                                                     \
    pthread_t thread;                                                                             \
    int started, stopping, closing, closed;                                                       \
    pthread_mutex_t mu;                                                                           \
    int unsignaled;          /* requests queued since the last hand-over */                       \
    double oldest_unsignaled;

typedef struct {
    PyObject_HEAD
    FRONT_FIELDS
} FrontBase;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* tp_new's part: no sockets yet (so a front whose __init__ failed, or never ran, closes none). */
static void front_new(FrontBase *f) {
    f->listen_fd = f->ep = f->ready_fd = f->wake_fd = -1;
    pthread_mutex_init(&f->mu, NULL);
}

/* __init__'s part: listen on host:port, make the epoll set and the two eventfds; -1 with a Python
 * error set. */
static int front_listen(FrontBase *f, const char *host, int port) {
    if (f->listen_fd >= 0 || f->closing) {
        PyErr_SetString(PyExc_RuntimeError, "Front.__init__(): already initialized");
        return -1;
    }
    int fd = listen_on(host, port, &f->port);
    if (fd < 0)
        return -1;
    f->listen_fd = fd;
    f->ep = epoll_create1(EPOLL_CLOEXEC);
    f->ready_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    f->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f->ep < 0 || f->ready_fd < 0 || f->wake_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event listen_ev = {.events = EPOLLIN, .data.u64 = LISTEN_ID};
    struct epoll_event wake_ev = {.events = EPOLLIN, .data.u64 = WAKE_ID};
    epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &listen_ev);
    epoll_ctl(f->ep, EPOLL_CTL_ADD, f->wake_fd, &wake_ev);
    return 0;
}

static void wake(FrontBase *f) {
    uint64_t one = 1;
    if (write(f->wake_fd, &one, sizeof one) < 0) { /* the counter is far from overflowing */
    }
}

/* Tell Python requests wait (under mu). */
static void hand_over(FrontBase *f) {
    uint64_t one = 1;
    if (write(f->ready_fd, &one, sizeof one) < 0) { /* the counter is far from overflowing */
    }
    f->unsignaled = 0;
}

/* A request was queued for Python (under mu). */
static void queued(FrontBase *f) {
    if (f->unsignaled++ == 0)
        f->oldest_unsignaled = now();
    if (f->unsignaled >= HAND_OVER_COUNT)
        hand_over(f);
}

/* take()'s part, with the GIL: clear the ready eventfd. */
static void front_clear_ready(FrontBase *f) {
    uint64_t count;
    if (f->ready_fd >= 0 && read(f->ready_fd, &count, sizeof count) < 0) { /* EAGAIN: none */
    }
}

/* The I/O thread's wait for events: -1 once it must stop. With requests queued and not handed
 * over it does not block, so a round that reads nothing new (0 events) hands them over. */
static int front_wait(FrontBase *f, struct epoll_event *events, int max) {
    pthread_mutex_lock(&f->mu);
    int waiting = f->unsignaled > 0, stopping = f->stopping;
    pthread_mutex_unlock(&f->mu);
    if (stopping)
        return -1;
    int n = epoll_wait(f->ep, events, max, waiting ? 0 : 50);
    return n < 0 ? 0 : n;
}

/* The end of an I/O round (under mu): hand the queued requests over once a round read nothing
 * new, or the oldest has waited HAND_OVER_SECONDS. Returns the time. */
static double front_round_end(FrontBase *f, int n) {
    double t = now();
    if (f->unsignaled && (n == 0 || t - f->oldest_unsignaled >= HAND_OVER_SECONDS))
        hand_over(f); /* a round read nothing new: all that arrived is queued */
    return t;
}

/* Drain wake_fd (the I/O thread, on WAKE_ID). */
static void front_woken(FrontBase *f) {
    uint64_t count;
    if (read(f->wake_fd, &count, sizeof count) < 0) { /* EAGAIN: already read */
    }
}

static PyObject *front_start(FrontBase *f, void *(*io_main)(void *), const char *name) {
    if (f->started || f->closing || f->listen_fd < 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Front.start(): already started or closed, or never listened");
        return NULL;
    }
    int rc = pthread_create(&f->thread, NULL, io_main, f);
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pthread_setname_np(f->thread, name); /* as top -H and perf name it; set here, so it is set
                                          * once start() returns */
    f->started = 1;
    Py_RETURN_NONE;
}

/* close()'s first part, with the GIL: stop and join the I/O thread; 0 when close() already ran
 * (a second close() returns instead of joining again). The caller then frees its connections
 * under mu, sets `closed` (respond() and the like run without the GIL and find it set), and calls
 * front_close_fds. */
static int front_stop(FrontBase *f) {
    if (f->closing)
        return 0;
    f->closing = 1;
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        f->stopping = 1;
        pthread_mutex_unlock(&f->mu);
        wake(f);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(f->thread, NULL);
        Py_END_ALLOW_THREADS
    }
    return 1;
}

static void front_close_fds(FrontBase *f) {
    int fds[] = {f->listen_fd, f->ep, f->ready_fd, f->wake_fd};
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    f->listen_fd = f->ep = f->ready_fd = f->wake_fd = -1;
}

/* Every connection struct starts with CONN_FIELDS; its id for Python is its generation (bumped
 * when it closes, so a reused descriptor is another connection) and descriptor. */
#define CONN_FIELDS                                                                               \
    int fd;                                                                                       \
    uint32_t gen;                                                                                 \
    int open;

typedef struct {
    CONN_FIELDS
} ConnHead;

static uint64_t conn_id(const void *conn) {
    const ConnHead *c = conn;
    return ((uint64_t)c->gen << 32) | (uint32_t)c->fd;
}

/* The open connection `id` in a table indexed by descriptor, else NULL. */
static void *table_lookup(void **table, int size, uint64_t id) {
    int fd = (int)(id & 0xffffffffu);
    if (fd < 0 || fd >= size || table[fd] == NULL)
        return NULL;
    ConnHead *c = table[fd];
    return (c->open && c->gen == (uint32_t)(id >> 32)) ? c : NULL;
}

/* Accept one waiting connection (TCP_NODELAY) into `table`, indexed by descriptor and grown as
 * needed, in the struct of `conn_size` bytes kept for that descriptor (zeroed when new; `fd` set,
 * `open` not yet). Returns -1 when none waits, 0 when one came but memory ran out (it is closed
 * again), 1 with *conn set. */
static int front_accept(FrontBase *f, void ***table, int *size, size_t conn_size, void **conn) {
    int fd = accept4(f->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on AF_UNIX: fine */
    if (fd >= *size) {
        int n = *size ? *size : 64;
        while (n <= fd)
            n *= 2;
        void **grown = realloc(*table, n * sizeof *grown);
        if (grown == NULL) {
            close(fd);
            return 0;
        }
        memset(grown + *size, 0, (n - *size) * sizeof *grown);
        *table = grown;
        *size = n;
    }
    if ((*table)[fd] == NULL && ((*table)[fd] = calloc(1, conn_size)) == NULL) {
        close(fd);
        return 0;
    }
    ((ConnHead *)(*table)[fd])->fd = fd;
    *conn = (*table)[fd];
    return 1;
}

static PyObject *Front_fileno(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(((FrontBase *)self)->ready_fd);
}

static PyObject *Front_get_port(PyObject *self, void *closure) {
    return PyLong_FromLong(((FrontBase *)self)->port);
}

#endif
