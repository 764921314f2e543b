/* serving.server._grpc_front: gRPC's HTTP/2 connections on a native I/O thread (libnghttp2).
 *
 * Front(host, port, max_message_bytes) listens on host:port. After start(), one thread of its
 * own, which never takes the GIL, accepts connections and runs each one's HTTP/2 session with
 * nghttp2 (settings, HPACK, flow control, pings, GOAWAY), and reads unary gRPC calls: one
 * length-prefixed message per stream (gRPC over HTTP/2: "application/grpc" POSTs, the message's
 * 5-byte prefix of a compressed flag and a big-endian length). Python sees only complete calls
 * and answers them:
 *
 *   fileno()  an eventfd that is readable while calls wait: watch it with loop.add_reader.
 *   take()    every waiting call, as a list of (conn, stream, path, message, encoding, timeout_s):
 *             `message` is the request message's bytes (without the prefix), `encoding` the
 *             grpc-encoding of a compressed message (None when not compressed), `timeout_s` the
 *             grpc-timeout in seconds (None without one).
 *   respond_all(answers)
 *             answer each (conn, stream, code, details, message) of the list: with code 0,
 *             `message` (bytes) length-prefixed in DATA frames and trailers "grpc-status: 0";
 *             otherwise a trailers-only answer with grpc-status `code` and grpc-message
 *             `details` (percent-encoded as gRPC requires). Each connection's answers are
 *             written together.
 *   close()   send GOAWAY, stop the thread and close every socket.
 *
 * Calls the protocol refuses are answered here, as gRPC's C core answers them: a method other
 * than POST (HTTP 405), a content-type other than application/grpc (HTTP 415), no message or more
 * than one (INTERNAL), a message over max_message_bytes (RESOURCE_EXHAUSTED "Received message
 * larger than max (N vs. M)"). A call whose stream the client reset or whose connection closed
 * meanwhile is not answered. As in _http_front, calls are handed over once a round of the
 * I/O thread read no new data, or 256 wait, or the oldest waited 2 ms.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "_buf.h"
#include "_front.h"

#define READ_CHUNK 65536
#define BASE(f) ((FrontBase *)(f))
#define PREFIX 5
/* the receive windows granted: a stream's, and the connection's (HTTP/2's default is 65,535) */
#define STREAM_WINDOW (1 << 20)
#define CONNECTION_WINDOW (1 << 24)
#define MAX_CONCURRENT_STREAMS 4096

enum { GRPC_INTERNAL = 13, GRPC_RESOURCE_EXHAUSTED = 8 };

/* One stream's call: its request headers and message as they arrive, then its answer. */
typedef struct Call {
    struct Call *prev, *next;  /* the connection's calls (nghttp2_session_del frees no Call) */
    int post, grpc_type, refused;
    char *path, *encoding;
    double timeout;   /* seconds; < 0 without grpc-timeout */
    Buf in;           /* the DATA received: prefix and message */
    Buf out;          /* the answer's prefix and message, sent through the data provider */
    Py_ssize_t sent;
    int answered;
} Call;

/* A complete call handed to Python (its stream may close meanwhile, freeing the Call). */
typedef struct Item {
    struct Item *next;
    uint64_t conn;
    int32_t stream;
    char *path, *encoding;
    int compressed;
    double timeout;
    Buf message;      /* prefix and message: the message starts at PREFIX */
} Item;

typedef struct Front Front;

typedef struct {
    CONN_FIELDS
    Front *front;
    nghttp2_session *session;
    Buf out;
    uint32_t interest;
    Call *calls;
} Conn;

struct Front {
    PyObject_HEAD
    FRONT_FIELDS
    Conn **conns;
    int nconns;
    Item *ready, *ready_tail;
    Py_ssize_t max_message;
    nghttp2_session_callbacks *callbacks;
};

static Conn *lookup(Front *f, uint64_t id) {
    return table_lookup((void **)f->conns, f->nconns, id);
}

static void item_free(Item *it) {
    free(it->path);
    free(it->encoding);
    free(it->message.data);
    free(it);
}

static void call_free(Call *call) {
    free(call->path);
    free(call->encoding);
    free(call->in.data);
    free(call->out.data);
    free(call);
}

static void conn_close(Conn *c) {
    if (!c->open)
        return;
    nghttp2_session_del(c->session);
    c->session = NULL;
    while (c->calls) {
        Call *call = c->calls;
        c->calls = call->next;
        call_free(call);
    }
    close(c->fd); /* also leaves the epoll set */
    c->open = 0;
    c->gen++;
    c->out.len = 0;
    c->interest = 0;
}

static void set_interest(Conn *c) {
    uint32_t want = EPOLLIN | (c->out.len ? EPOLLOUT : 0);
    if (want == c->interest)
        return;
    struct epoll_event ev = {.events = want, .data.u64 = conn_id(c)};
    epoll_ctl(c->front->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->interest = want;
}

/* Serialize what the session has to send into c->out and write it; 0 while the connection stays
 * open (under f->mu). */
static int pump(Conn *c) {
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->session, &data);
        if (n < 0) {
            conn_close(c);
            return -1;
        }
        if (n == 0)
            break;
        if (buf_add(&c->out, (const char *)data, n) < 0) {
            conn_close(c);
            return -1;
        }
    }
    Py_ssize_t sent = 0;
    while (sent < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + sent, c->out.len - sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close(c); /* the peer is gone */
            return -1;
        }
        sent += w;
    }
    buf_drop(&c->out, sent);
    if (!c->out.len && !nghttp2_session_want_read(c->session)
        && !nghttp2_session_want_write(c->session)) {
        conn_close(c); /* GOAWAY exchanged, nothing in flight */
        return -1;
    }
    set_interest(c);
    return 0;
}

/* The length in a message's 5-byte prefix, once `in` holds the prefix; else -1. */
static Py_ssize_t message_size(const Buf *in) {
    if (in->len < PREFIX)
        return -1;
    const unsigned char *p = (const unsigned char *)in->data;
    return (Py_ssize_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
}

/* -- answers ---------------------------------------------------------------------------------- */

#define NV(n, v, vlen) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen), NGHTTP2_NV_FLAG_NONE}

static ssize_t read_answer(nghttp2_session *session, int32_t stream, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *source, void *user_data) {
    Call *call = source->ptr;
    size_t left = (size_t)(call->out.len - call->sent);
    size_t n = left < length ? left : length;
    memcpy(buf, call->out.data + call->sent, n);
    call->sent += n;
    if (call->sent == call->out.len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv trailers[] = {NV("grpc-status", "0", 1)};
        if (nghttp2_submit_trailer(session, stream, trailers, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* gRPC's percent-encoding of grpc-message: bytes outside ' '..'~', and '%', become %XX. */
static char *percent_encode(const char *p, Py_ssize_t n, size_t *out_len) {
    char *out = malloc(3 * (size_t)n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch > 0x7e || ch == '%')
            o += sprintf(o, "%%%02X", ch);
        else
            *o++ = (char)ch;
    }
    *out_len = (size_t)(o - out);
    return out;
}

/* A trailers-only answer with `http_status` (200 for a gRPC status) under f->mu. */
static void answer_status(Conn *c, int32_t stream, Call *call, const char *http_status,
                          int code, const char *details, Py_ssize_t details_len) {
    char code_text[16];
    int code_len = snprintf(code_text, sizeof code_text, "%d", code);
    size_t message_len = 0;
    char *message = percent_encode(details, details_len, &message_len);
    if (message == NULL)
        return;
    nghttp2_nv headers[] = {NV(":status", http_status, strlen(http_status)),
                            NV("content-type", "application/grpc", 16),
                            NV("grpc-status", code_text, (size_t)code_len),
                            NV("grpc-message", message, message_len)};
    call->answered = 1;
    nghttp2_submit_response(c->session, stream, headers, message_len ? 4 : 3, NULL);
    free(message);
}

/* An OK answer carrying `message` (under f->mu; the caller pumps). */
static void answer_ok(Conn *c, int32_t stream, Call *call, const char *message, Py_ssize_t n) {
    unsigned char prefix[PREFIX] = {0, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
                                    (unsigned char)(n >> 8), (unsigned char)n};
    call->out.len = 0;
    if (buf_add(&call->out, (const char *)prefix, PREFIX) < 0
        || buf_add(&call->out, message, n) < 0) {
        answer_status(c, stream, call, "200", GRPC_RESOURCE_EXHAUSTED, "out of memory", 13);
        return;
    }
    call->sent = 0;
    call->answered = 1;
    nghttp2_nv headers[] = {NV(":status", "200", 3), NV("content-type", "application/grpc", 16),
                            NV("grpc-accept-encoding", "identity,deflate,gzip", 21)};
    nghttp2_data_provider body = {.source.ptr = call, .read_callback = read_answer};
    nghttp2_submit_response(c->session, stream, headers, 3, &body);
}

/* -- the session's callbacks (the I/O thread, or respond_all(), under f->mu) ------------------------ */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    Call *call = calloc(1, sizeof *call);
    if (call == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    Conn *c = user;
    call->timeout = -1;
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
    return 0;
}

static int name_is(const uint8_t *name, size_t len, const char *word) {
    return len == strlen(word) && memcmp(name, word, len) == 0;
}

/* grpc-timeout: 1 to 8 digits and a unit (H, M, S, m, u, n); < 0 when malformed. */
static double parse_timeout(const uint8_t *v, size_t n) {
    if (n < 2 || n > 9)
        return -1;
    double value = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        value = value * 10 + (v[i] - '0');
    }
    switch (v[n - 1]) {
    case 'H': return value * 3600;
    case 'M': return value * 60;
    case 'S': return value;
    case 'm': return value * 1e-3;
    case 'u': return value * 1e-6;
    case 'n': return value * 1e-9;
    default: return -1;
    }
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    Call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (call == NULL)
        return 0;
    if (name_is(name, namelen, ":method")) {
        call->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (name_is(name, namelen, ":path")) {
        free(call->path);
        call->path = strndup((const char *)value, valuelen);
    } else if (name_is(name, namelen, "content-type")) {
        /* application/grpc, optionally +proto or ;params */
        call->grpc_type = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0
                          && (valuelen == 16 || value[16] == '+' || value[16] == ';');
    } else if (name_is(name, namelen, "grpc-encoding")) {
        free(call->encoding);
        call->encoding = strndup((const char *)value, valuelen);
    } else if (name_is(name, namelen, "grpc-timeout")) {
        call->timeout = parse_timeout(value, valuelen);
    }
    return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t stream, const uint8_t *data,
                   size_t len, void *user) {
    Conn *c = user;
    Call *call = nghttp2_session_get_stream_user_data(session, stream);
    if (call == NULL || call->refused)
        return 0;
    if (buf_add(&call->in, (const char *)data, (Py_ssize_t)len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    Py_ssize_t size = message_size(&call->in);
    if (size > c->front->max_message) {
        char text[96];
        int n = snprintf(text, sizeof text, "Received message larger than max (%zd vs. %zd)",
                         size, c->front->max_message);
        call->refused = 1;
        free(call->in.data);
        call->in = (Buf){0};
        answer_status(c, stream, call, "200", GRPC_RESOURCE_EXHAUSTED, text, n);
    }
    return 0;
}

/* The client's half of the call is complete: refuse it or queue it for Python. */
static void complete(Conn *c, int32_t stream, Call *call) {
    Front *f = c->front;
    if (call->refused || call->answered)
        return;
    if (!call->post) {
        call->answered = 1;
        nghttp2_nv headers[] = {NV(":status", "405", 3)};
        nghttp2_submit_response(c->session, stream, headers, 1, NULL);
        return;
    }
    if (!call->grpc_type) {
        answer_status(c, stream, call, "415", GRPC_INTERNAL, "invalid content-type", 20);
        return;
    }
    Py_ssize_t size = message_size(&call->in);
    if (size < 0 || call->in.len != PREFIX + size) {
        const char *text = size < 0 || call->in.len < PREFIX + size
            ? "Half-closed without a request" : "Received more than one request message";
        answer_status(c, stream, call, "200", GRPC_INTERNAL, text, (Py_ssize_t)strlen(text));
        return;
    }
    Item *it = calloc(1, sizeof *it);
    if (it == NULL) {
        answer_status(c, stream, call, "200", GRPC_RESOURCE_EXHAUSTED, "out of memory", 13);
        return;
    }
    it->conn = conn_id(c);
    it->stream = stream;
    it->path = call->path ? call->path : strdup("");
    it->encoding = call->encoding;
    it->compressed = call->in.data[0] != 0;
    it->timeout = call->timeout;
    it->message = call->in;
    call->path = call->encoding = NULL;
    call->in = (Buf){0};
    if (f->ready_tail)
        f->ready_tail->next = it;
    else
        f->ready = it;
    f->ready_tail = it;
    queued(BASE(f));
}

static int on_frame(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)
        && frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        Call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (call != NULL)
            complete(user, frame->hd.stream_id, call);
    }
    return 0;
}

/* An answer that ended the stream went out while the client still sends (a refused message):
 * reset the stream, so the client stops sending (as gRPC's C core does, after the trailers). */
static int on_frame_sent(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->hd.flags & NGHTTP2_FLAG_END_STREAM
        && nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream, uint32_t error, void *user) {
    Call *call = nghttp2_session_get_stream_user_data(session, stream);
    if (call != NULL) {
        Conn *c = user;
        nghttp2_session_set_stream_user_data(session, stream, NULL);
        if (call->prev)
            call->prev->next = call->next;
        else
            c->calls = call->next;
        if (call->next)
            call->next->prev = call->prev;
        call_free(call);
    }
    return 0;
}

/* -- the I/O thread ---------------------------------------------------------------------------- */

static void on_readable(Conn *c) {
    char chunk[READ_CHUNK];
    for (;;) {
        ssize_t got = recv(c->fd, chunk, sizeof chunk, 0);
        if (got > 0) {
            if (nghttp2_session_mem_recv(c->session, (const uint8_t *)chunk, got) < 0) {
                pump(c); /* nghttp2 queued a GOAWAY for the protocol error: try to send it */
                conn_close(c);
                return;
            }
            if (got < (ssize_t)sizeof chunk)
                break; /* drained for now (epoll is level-triggered: more, or EOF, shows) */
            continue;
        }
        if (got == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
            conn_close(c); /* the peer closed: its calls are over */
            return;
        }
        if (errno != EINTR)
            break;
    }
    pump(c);
}

static void accept_all(Front *f) {
    for (;;) {
        Conn *c;
        int got = front_accept(BASE(f), (void ***)&f->conns, &f->nconns, sizeof *c, (void **)&c);
        if (got < 0)
            return;
        if (got == 0)
            continue;
        int fd = c->fd;
        c->front = f;
        nghttp2_settings_entry settings[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW}};
        if (nghttp2_session_server_new(&c->session, f->callbacks, c) != 0) {
            close(fd);
            continue;
        }
        c->open = 1;
        c->interest = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = conn_id(c)};
        if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2) != 0
            || nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                                     CONNECTION_WINDOW) != 0
            || epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            conn_close(c);
            continue;
        }
        pump(c);
    }
}

static void *io_main(void *arg) {
    Front *f = arg;
    struct epoll_event events[256];
    for (;;) {
        int n = front_wait(BASE(f), events, 256);
        if (n < 0)
            return NULL;
        pthread_mutex_lock(&f->mu);
        for (int i = 0; i < n; i++) {
            uint64_t id = events[i].data.u64;
            if (id == LISTEN_ID) {
                accept_all(f);
            } else if (id == WAKE_ID) {
                front_woken(BASE(f));
            } else {
                Conn *c = lookup(f, id);
                if (c == NULL)
                    continue; /* closed (and its fd perhaps reused) since the event */
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    on_readable(c);
                else if (events[i].events & EPOLLOUT)
                    pump(c);
            }
        }
        front_round_end(BASE(f), n);
        pthread_mutex_unlock(&f->mu);
    }
}

/* -- Python type ------------------------------------------------------------------------------- */

static int Front_init(Front *f, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"host", "port", "max_message_bytes", NULL};
    const char *host;
    int port;
    Py_ssize_t max_message;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sin", kwlist, &host, &port, &max_message))
        return -1;
    if (front_listen(BASE(f), host, port) < 0)
        return -1;
    f->max_message = max_message;
    return 0;
}

static PyObject *Front_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Front *f = (Front *)type->tp_alloc(type, 0);
    if (f == NULL)
        return NULL;
    front_new(BASE(f));
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        Py_DECREF(f);
        return PyErr_NoMemory();
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_sent);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    f->callbacks = cb;
    return (PyObject *)f;
}

static PyObject *Front_start(Front *f, PyObject *unused) {
    return front_start(BASE(f), io_main, "deepline-grpc");
}

/* Stops the thread, then frees everything under f->mu (respond_all() runs without the GIL; under
 * f->mu it finds f->closed set). */
static void front_close(Front *f) {
    if (!front_stop(BASE(f)))
        return;
    pthread_mutex_lock(&f->mu);
    f->closed = 1;
    for (int fd = 0; fd < f->nconns; fd++) {
        Conn *c = f->conns[fd];
        if (c) {
            if (c->open && nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR) == 0)
                pump(c); /* GOAWAY: the client retries elsewhere instead of seeing a reset */
            conn_close(c);
            free(c->out.data);
            free(c);
        }
    }
    free(f->conns);
    f->conns = NULL;
    f->nconns = 0;
    while (f->ready) {
        Item *it = f->ready;
        f->ready = it->next;
        item_free(it);
    }
    f->ready_tail = NULL;
    front_close_fds(BASE(f));
    pthread_mutex_unlock(&f->mu);
}

static PyObject *Front_close(Front *f, PyObject *unused) {
    front_close(f);
    Py_RETURN_NONE;
}

static void Front_dealloc(Front *f) {
    front_close(f);
    if (f->callbacks)
        nghttp2_session_callbacks_del(f->callbacks);
    pthread_mutex_destroy(&f->mu);
    Py_TYPE(f)->tp_free((PyObject *)f);
}


static PyObject *item_tuple(Item *it) {
    PyObject *encoding = it->compressed
        ? PyUnicode_DecodeLatin1(it->encoding ? it->encoding : "", it->encoding
                                 ? (Py_ssize_t)strlen(it->encoding) : 0, NULL)
        : Py_NewRef(Py_None);
    PyObject *timeout = it->timeout >= 0 ? PyFloat_FromDouble(it->timeout) : Py_NewRef(Py_None);
    if (encoding == NULL || timeout == NULL) {
        Py_XDECREF(encoding);
        Py_XDECREF(timeout);
        return NULL;
    }
    return Py_BuildValue("(KiNy#NN)", (unsigned long long)it->conn, (int)it->stream,
                         PyUnicode_DecodeLatin1(it->path, (Py_ssize_t)strlen(it->path), NULL),
                         it->message.data + PREFIX, it->message.len - PREFIX, encoding, timeout);
}

static PyObject *Front_take(Front *f, PyObject *unused) {
    front_clear_ready(BASE(f));
    Item *taken;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&f->mu);
    taken = f->ready;
    f->ready = f->ready_tail = NULL;
    f->unsignaled = 0;
    pthread_mutex_unlock(&f->mu);
    Py_END_ALLOW_THREADS
    PyObject *items = PyList_New(0);
    while (taken) {
        Item *it = taken;
        taken = it->next;
        PyObject *tuple = items ? item_tuple(it) : NULL;
        if (tuple == NULL || PyList_Append(items, tuple) < 0)
            Py_CLEAR(items); /* (the remaining items are freed all the same) */
        Py_XDECREF(tuple);
        item_free(it);
    }
    return items;
}

/* The call `stream` of connection `id` if it still waits for its answer (under f->mu). */
static Call *waiting_call(Front *f, uint64_t id, int32_t stream, Conn **conn) {
    Conn *c = f->closed ? NULL : lookup(f, id);
    Call *call = c ? nghttp2_session_get_stream_user_data(c->session, stream) : NULL;
    *conn = c;
    return call && !call->answered ? call : NULL;
}

/* respond_all([(conn, stream, code, details, message), ...]): see the module; one send per
 * connection for a burst of calls on it. */
static PyObject *Front_respond_all(Front *f, PyObject *args) {
    PyObject *answers;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &answers))
        return NULL;
    PyObject *keep = PyList_GetSlice(answers, 0, PyList_GET_SIZE(answers)); /* alive without
                                                                             * the GIL */
    if (keep == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keep);
    typedef struct {
        uint64_t conn;
        int stream, code;
        const char *details, *message;
        Py_ssize_t details_len, message_len;
    } Answer;
    Answer *all = PyMem_Malloc(n * sizeof *all + 1);
    if (all == NULL) {
        Py_DECREF(keep);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *a = PyList_GET_ITEM(keep, k), *message;
        unsigned long long conn;
        Answer *x = &all[k];
        if (!PyTuple_Check(a) || !PyArg_ParseTuple(a, "Kiis#O", &conn, &x->stream, &x->code,
                                                   &x->details, &x->details_len, &message)
            || (message != Py_None && !PyBytes_Check(message))) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "respond_all(): (conn, stream, code, details, "
                                "message: bytes or None) tuples");
            PyMem_Free(all);
            Py_DECREF(keep);
            return NULL;
        }
        x->conn = conn;
        x->message = message == Py_None ? NULL : PyBytes_AS_STRING(message);
        x->message_len = message == Py_None ? 0 : PyBytes_GET_SIZE(message);
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&f->mu);
    Conn *last = NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        Answer *x = &all[k];
        Conn *c;
        Call *call = waiting_call(f, x->conn, x->stream, &c);
        if (call == NULL)
            continue;
        if (last != NULL && last != c && last->open)
            pump(last);
        last = c;
        if (x->code == 0)
            answer_ok(c, x->stream, call, x->message ? x->message : "", x->message_len);
        else
            answer_status(c, x->stream, call, "200", x->code, x->details, x->details_len);
    }
    if (last != NULL && last->open)
        pump(last);
    pthread_mutex_unlock(&f->mu);
    Py_END_ALLOW_THREADS
    PyMem_Free(all);
    Py_DECREF(keep);
    Py_RETURN_NONE;
}


static PyMethodDef Front_methods[] = {
    {"start", (PyCFunction)Front_start, METH_NOARGS, "Start the I/O thread."},
    {"fileno", (PyCFunction)Front_fileno, METH_NOARGS,
     "An eventfd, readable while calls wait."},
    {"take", (PyCFunction)Front_take, METH_NOARGS, "Every waiting call (see the module)."},
    {"respond_all", (PyCFunction)Front_respond_all, METH_VARARGS,
     "respond_all([(conn, stream, code, details, message), ...]): several answers."},
    {"close", (PyCFunction)Front_close, METH_NOARGS, "GOAWAY, stop the thread, close sockets."},
    {NULL}};

static PyGetSetDef Front_getset[] = {
    {"port", (getter)Front_get_port, NULL, "The port listened on.", NULL}, {NULL}};

static PyTypeObject FrontType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "serving.server._grpc_front.Front",
    .tp_basicsize = sizeof(Front),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "gRPC's HTTP/2 connections on a native I/O thread (see the module).",
    .tp_new = Front_new,
    .tp_init = (initproc)Front_init,
    .tp_dealloc = (destructor)Front_dealloc,
    .tp_methods = Front_methods,
    .tp_getset = Front_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_grpc_front",
                                    "gRPC's HTTP/2 connections on a native I/O thread.", -1,
                                    NULL};

PyMODINIT_FUNC PyInit__grpc_front(void) {
    if (PyType_Ready(&FrontType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObject(m, "Front", Py_NewRef((PyObject *)&FrontType)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
