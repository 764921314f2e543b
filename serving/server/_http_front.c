/* serving.server._http_front: the REST front end's HTTP/1.1 connections, on a native I/O thread.
 *
 * Front(host, port, max_body_bytes, idle_timeout_s, fast_body_bytes) listens on host:port. After
 * start(), one thread of its own, which never takes the GIL, accepts connections, reads and
 * parses requests and writes answers the caller has not finished writing, with
 * serving.server.aio_http's HTTP/1.1 rules (keep-alive, pipelining answered in order, bodies by
 * Content-Length or chunked, Expect: 100-continue, the size limits, the idle timeout; see
 * native_http.py). Python sees only complete requests and answers them:
 *
 *   fileno()  an eventfd that is readable while requests wait: watch it with loop.add_reader.
 *   take()    every waiting request, as a list of
 *     ("http", conn, method, target, body)            a request (method and target decoded as
 *                                                     latin-1);
 *     ("fail", conn, status, code, detail)            a request the parser refused: answer it
 *                                                     with respond(..., close=True);
 *     ("predict", target, name, kind, inner_shape,    POST bodies of the form {"instances":
 *      conns, rows, values, bodies)                   <dense numeric array>} (an optional
 *                                                     "signature_name" before or after), up to
 *                                                     fast_body_bytes, to one target with one
 *                                                     signature name, one kind ("i": int64 values,
 *                                                     "f": float64) and one shape after the first
 *                                                     dimension: their numbers read here, as
 *                                                     serving.server._dense_json.parse reads them,
 *                                                     concatenated in `values`; `rows[k]` is the
 *                                                     first dimension of request `conns[k]`, whose
 *                                                     body is `bodies[k]`.
 *   respond(conn, head, body, head_only, close)       answer one request: `head` is the status
 *                                                     line and headers up to "Content-Length: ";
 *                                                     the length, "Connection: close" where the
 *                                                     connection closes, and the body follow.
 *   respond_many(conns, head, bodies)                 the same for several, in one call.
 *   close()   stop the thread and close every socket.
 *
 * A connection has at most one request in Python at a time; a connection that closed meanwhile
 * makes respond() a no-op. Requests are handed over once a round of the I/O thread read no new
 * data (all that had arrived is in one take()), or 256 wait, or the oldest waited 2 ms, so a burst
 * of clients' requests reaches the batch scheduler together.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <locale.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include "_dense_core.h"
#include "_front.h"

#define MAX_LINE 65536
#define MAX_HEAD 65536
#define MAX_HEADERS 100
#define READ_CHUNK 65536
#define BASE(f) ((FrontBase *)(f))

static locale_t c_locale;

/* strtod_l in the "C" locale: glibc's strtod is correctly rounded, like PyOS_string_to_double. */
static int c_double(const char *text, const char **end, double *out) {
    char *parsed_end;
    *out = strtod_l(text, &parsed_end, c_locale);
    *end = parsed_end;
    return parsed_end == text ? -1 : 0;
}

enum { REQ_HTTP, REQ_FAIL };

typedef struct Request {
    struct Request *next;
    struct Request *taken;  /* take(): every request it took, in arrival order */
    uint64_t conn;
    int type;
    char *method, *target;  /* REQ_HTTP */
    Buf body;
    int status;             /* REQ_FAIL */
    const char *code;
    char *detail;
    Py_ssize_t detail_len;
    int fast;               /* the body is {"instances": <dense array>} */
    Py_ssize_t name_start, name_len;
    Slot *values;
    DenseArray array;
} Request;

typedef struct {
    CONN_FIELDS
    Buf in, out, chunks;
    int busy;            /* a request is in Python */
    int eof;             /* the peer shut down its side */
    int close_after_flush;
    int paused;          /* reading paused: too much pipelined input behind a request */
    int keep_alive;      /* of the request in Python */
    uint32_t interest;
    double last;
    int need_advance;    /* answered with pipelined input buffered: the I/O thread parses it */
    /* the request being read */
    int have_head, chunked, continue_sent, head_keep_alive;
    char *method, *target;
    Py_ssize_t length;
} Conn;

typedef struct {
    PyObject_HEAD
    FRONT_FIELDS
    Conn **conns;
    int nconns;
    Request *ready, *ready_tail;
    Py_ssize_t max_body, fast_body;
    double idle_timeout;
    double last_idle_check;
} Front;

static Conn *lookup(Front *f, uint64_t id) {
    return table_lookup((void **)f->conns, f->nconns, id);
}

static void request_free(Request *r) {
    free(r->method);
    free(r->target);
    free(r->body.data);
    free(r->detail);
    free(r->values);
    free(r);
}

static void set_interest(Front *f, Conn *c) {
    uint32_t want = 0;
    if (!c->paused && !c->eof && !c->close_after_flush)
        want |= EPOLLIN;
    if (c->out.len)
        want |= EPOLLOUT;
    if (want == c->interest)
        return;
    struct epoll_event ev = {.events = want, .data.u64 = conn_id(c)};
    epoll_ctl(f->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->interest = want;
}

static void clear_head(Conn *c) {
    free(c->method);
    free(c->target);
    c->method = c->target = NULL;
    c->have_head = c->chunked = c->continue_sent = 0;
    c->chunks.len = 0;
    c->length = 0;
}

static void conn_close(Conn *c) {
    if (!c->open)
        return;
    close(c->fd); /* also leaves the epoll set */
    c->open = 0;
    c->gen++;
    c->in.len = c->out.len = 0;
    c->busy = c->eof = c->close_after_flush = c->paused = c->need_advance = 0;
    c->interest = 0;
    clear_head(c);
}

/* Write what `out` holds; 0 while the connection stays open. */
static int flush(Conn *c) {
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
    if (!c->out.len && c->close_after_flush) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static void enqueue(Front *f, Request *r) {
    r->next = NULL;
    if (f->ready_tail)
        f->ready_tail->next = r;
    else
        f->ready = r;
    f->ready_tail = r;
    queued(BASE(f));
}

/* The parser refused the request: Python answers with the message for `code` and closes. */
static int fail(Front *f, Conn *c, int status, const char *code, const char *detail,
                Py_ssize_t detail_len) {
    Request *r = calloc(1, sizeof *r);
    if (r == NULL || (detail_len && (r->detail = malloc(detail_len)) == NULL)) {
        free(r);
        conn_close(c);
        return -1;
    }
    r->type = REQ_FAIL;
    r->conn = conn_id(c);
    r->status = status;
    r->code = code;
    if (detail_len)
        memcpy(r->detail, detail, detail_len);
    r->detail_len = detail_len;
    c->busy = 1;
    c->keep_alive = 0;
    c->close_after_flush = 1; /* no more reading: the answer closes the connection */
    set_interest(f, c);
    enqueue(f, r);
    return -1;
}

/* str.isspace() of a latin-1 character, as aio_http's str.strip() sees it. */
static int latin1_space(unsigned char ch) {
    return (ch >= 9 && ch <= 13) || (ch >= 0x1c && ch <= 0x20) || ch == 0x85 || ch == 0xa0;
}

static void strip(const char **p, const char **e) {
    while (*p < *e && latin1_space((unsigned char)**p))
        (*p)++;
    while (*e > *p && latin1_space((unsigned char)(*e)[-1]))
        (*e)--;
}

static int ieq(const char *p, const char *e, const char *word) {
    size_t n = strlen(word);
    return (size_t)(e - p) == n && strncasecmp(p, word, n) == 0;
}

static int icontains(const char *p, const char *e, const char *word) {
    size_t n = strlen(word);
    for (; (size_t)(e - p) >= n; p++)
        if (strncasecmp(p, word, n) == 0)
            return 1;
    return 0;
}

static char *dup_text(const char *p, Py_ssize_t n) {
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static void send_now(Front *f, Conn *c, const char *p, Py_ssize_t n) {
    if (buf_add(&c->out, p, n) < 0) {
        conn_close(c);
        return;
    }
    if (flush(c) == 0)
        set_interest(f, c);
}

/* 1: c's head parsed; 0: more bytes needed; -1: refused (fail() called) or closed. */
static int parse_head(Front *f, Conn *c) {
    Buf *b = &c->in;
    Py_ssize_t skip = 0;
    while (b->len - skip >= 2 && b->data[skip] == '\r' && b->data[skip + 1] == '\n')
        skip += 2; /* blank lines between requests (RFC 9112 section 2.2) */
    if (skip)
        buf_drop(b, skip);
    const char *s = b->data;
    const char *end = b->len >= 4 ? memmem(s, b->len, "\r\n\r\n", 4) : NULL;
    if (end == NULL) {
        if (memmem(s, b->len, "\r\n", 2) == NULL && b->len > MAX_LINE)
            return fail(f, c, 414, "line", NULL, 0);
        if (b->len > MAX_HEAD)
            return fail(f, c, 431, "head", NULL, 0);
        return 0;
    }
    if (end - s > MAX_HEAD)
        return fail(f, c, 431, "head", NULL, 0);
    const char *line_end = memmem(s, end - s + 2, "\r\n", 2);
    Py_ssize_t line_len = line_end - s;
    if (line_len > MAX_LINE)
        return fail(f, c, 414, "line", NULL, 0);
    const char *sp1 = memchr(s, ' ', line_len);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line_end - sp1 - 1) : NULL;
    if (sp1 == NULL || sp2 == NULL || memchr(sp2 + 1, ' ', line_end - sp2 - 1) != NULL
        || line_end - sp2 - 1 < 5 || memcmp(sp2 + 1, "HTTP/", 5) != 0)
        return fail(f, c, 400, "request_line", s, line_len < 200 ? line_len : 200);
    const char *version = sp2 + 1;
    Py_ssize_t version_len = line_end - version;
    int http10 = version_len == 8 && memcmp(version, "HTTP/1.0", 8) == 0;
    if (!http10 && !(version_len == 8 && memcmp(version, "HTTP/1.1", 8) == 0))
        return fail(f, c, 505, "version", version, version_len < 20 ? version_len : 20);
    int fields = 0;
    for (const char *p = line_end + 2; p < end + 2;) {
        const char *e = memmem(p, end + 2 - p, "\r\n", 2);
        fields++;
        p = e + 2;
    }
    if (fields > MAX_HEADERS)
        return fail(f, c, 431, "fields", NULL, 0);
    const char *connection = NULL, *connection_end = NULL, *te = NULL, *te_end = NULL;
    const char *length = NULL, *length_end = NULL, *expect = NULL, *expect_end = NULL;
    for (const char *p = line_end + 2; p < end + 2;) {
        const char *e = memmem(p, end + 2 - p, "\r\n", 2);
        const char *colon = memchr(p, ':', e - p);
        const char *n0 = p, *n1 = colon;
        if (colon) {
            strip(&n0, &n1);
        }
        if (colon == NULL || colon == p || n0 != p || n1 != colon)
            return fail(f, c, 400, "header", p, e - p < 200 ? e - p : 200);
        const char *v0 = colon + 1, *v1 = e;
        strip(&v0, &v1);
        if (ieq(p, colon, "connection")) {
            connection = v0;
            connection_end = v1;
        } else if (ieq(p, colon, "transfer-encoding")) {
            te = v0;
            te_end = v1;
        } else if (ieq(p, colon, "content-length")) {
            length = v0;
            length_end = v1;
        } else if (ieq(p, colon, "expect")) {
            expect = v0;
            expect_end = v1;
        }
        p = e + 2;
    }
    int keep_alive = http10 ? (connection && icontains(connection, connection_end, "keep-alive"))
                            : !(connection && icontains(connection, connection_end, "close"));
    c->length = 0;
    c->chunked = 0;
    if (te && te != te_end) {
        if (!ieq(te, te_end, "chunked"))
            return fail(f, c, 501, "transfer_encoding", te, te_end - te);
        c->chunked = 1;
        c->chunks.len = 0;
    } else if (length) {
        Py_ssize_t n = length_end - length;
        int digits = n > 0;
        for (const char *p = length; p < length_end; p++)
            digits &= *p >= '0' && *p <= '9';
        if (!digits)
            return fail(f, c, 400, "content_length", length, n);
        const char *p = length;
        while (p < length_end - 1 && *p == '0')
            p++;
        if (length_end - p > 18 || strtoll(p, NULL, 10) > f->max_body)
            return fail(f, c, 413, "too_large", p, length_end - p);
        c->length = strtoll(p, NULL, 10);
    }
    c->method = dup_text(s, sp1 - s);
    c->target = dup_text(sp1 + 1, sp2 - sp1 - 1);
    c->head_keep_alive = keep_alive;
    c->have_head = 1;
    int expect_continue = expect && ieq(expect, expect_end, "100-continue");
    buf_drop(b, end + 4 - s);
    if (c->method == NULL || c->target == NULL) {
        conn_close(c);
        return -1;
    }
    if (expect_continue && !c->continue_sent) {
        c->continue_sent = 1;
        send_now(f, c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        if (!c->open)
            return -1;
    }
    return 1;
}

static int ascii_space(char ch) { return ch == ' ' || (ch >= 9 && ch <= 13); }

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* 1: the body is complete in *body; 0: more bytes needed; -1: refused or closed. */
static int read_body(Front *f, Conn *c, Buf *body) {
    Buf *b = &c->in;
    if (!c->chunked) {
        if (b->len < c->length)
            return 0;
        if (buf_add(body, b->data, c->length) < 0) {
            conn_close(c);
            return -1;
        }
        buf_drop(b, c->length);
        return 1;
    }
    for (;;) {
        const char *s = b->data;
        const char *line_end = b->len >= 2 ? memmem(s, b->len, "\r\n", 2) : NULL;
        if (line_end == NULL) {
            if (b->len > 1024)
                return fail(f, c, 400, "chunked", NULL, 0);
            return 0;
        }
        const char *p = s, *e = memchr(s, ';', line_end - s);
        if (e == NULL)
            e = line_end;
        while (p < e && ascii_space(*p)) /* bytes.strip() */
            p++;
        while (e > p && ascii_space(e[-1]))
            e--;
        if (p < e && *p == '+')
            p++; /* int(text, 16) takes a sign; "-" makes it negative: refused */
        if (e - p >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
            p += 2; /* int(text, 16) takes a 0x prefix */
        if (p == e)
            return fail(f, c, 400, "chunked", NULL, 0);
        Py_ssize_t size = 0;
        for (; p < e; p++) {
            int v = hex_value(*p);
            if (v < 0)
                return fail(f, c, 400, "chunked", NULL, 0);
            if (size > f->max_body)
                continue; /* already too large: the check below refuses it */
            size = size * 16 + v;
        }
        if (size == 0) {
            const char *trailers = memmem(line_end, b->len - (line_end - s), "\r\n\r\n", 4);
            if (trailers == NULL) {
                if (b->len > MAX_HEAD)
                    return fail(f, c, 431, "head", NULL, 0);
                return 0;
            }
            buf_drop(b, trailers + 4 - s);
            if (buf_add(body, c->chunks.data ? c->chunks.data : "", c->chunks.len) < 0) {
                conn_close(c);
                return -1;
            }
            c->chunks.len = 0;
            return 1;
        }
        if (c->chunks.len + size > f->max_body)
            return fail(f, c, 413, "chunks_too_large", NULL, 0);
        Py_ssize_t start = line_end + 2 - s;
        if (b->len < start + size + 2)
            return 0;
        if (s[start + size] != '\r' || s[start + size + 1] != '\n')
            return fail(f, c, 400, "chunked", NULL, 0);
        if (buf_add(&c->chunks, s + start, size) < 0) {
            conn_close(c);
            return -1;
        }
        buf_drop(b, start + size + 2);
    }
}

static int json_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

static const char *skip_space(const char *p, const char *e) {
    while (p < e && json_space(*p))
        p++;
    return p;
}

static const char *word(const char *p, const char *e, const char *w) {
    size_t n = strlen(w);
    return ((size_t)(e - p) >= n && memcmp(p, w, n) == 0) ? p + n : NULL;
}

/* `"signature_name" ws : ws "<name>"` at p (json_codec's _FAST_PREFIX / _FAST_SUFFIX): the end,
 * with the name's bytes in *name, *name_len; NULL otherwise. */
static const char *signature_name(const char *p, const char *e, const char **name,
                                  Py_ssize_t *name_len) {
    if ((p = word(p, e, "\"signature_name\"")) == NULL)
        return NULL;
    p = skip_space(p, e);
    if (p == e || *p != ':')
        return NULL;
    p = skip_space(p + 1, e);
    if (p == e || *p != '"')
        return NULL;
    const char *q = ++p;
    while (q < e && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
        q++;
    if (q == e || *q != '"')
        return NULL;
    *name = p;
    *name_len = q - p;
    return q + 1;
}

/* json_codec.fast_instances on the I/O thread: the body's numbers into r->values. */
static void read_instances(Request *r) {
    const char *s = r->body.data, *e = s + r->body.len;
    if (s == NULL)
        return;
    const char *first = memchr(s, '[', e - s), *last = NULL;
    for (const char *p = e; p > s; p--)
        if (p[-1] == ']') {
            last = p - 1;
            break;
        }
    if (first == NULL || last == NULL || last < first)
        return;
    const char *name = NULL, *suffix_name = NULL;
    Py_ssize_t name_len = 0, suffix_len = 0;
    const char *p = skip_space(s, first);
    if (p == first || *p != '{')
        return;
    p = skip_space(p + 1, first);
    const char *q = signature_name(p, first, &name, &name_len);
    if (q != NULL) {
        q = skip_space(q, first);
        if (q == first || *q != ',')
            return;
        p = skip_space(q + 1, first);
    }
    if ((p = word(p, first, "\"instances\"")) == NULL)
        return;
    p = skip_space(p, first);
    if (p == first || *p != ':' || skip_space(p + 1, first) != first)
        return;
    p = skip_space(last + 1, e);
    if (p < e && *p == ',') {
        p = skip_space(p + 1, e);
        if ((p = signature_name(p, e, &suffix_name, &suffix_len)) == NULL)
            return;
        p = skip_space(p, e);
        if (name != NULL)
            return; /* a name on both sides */
        name = suffix_name;
        name_len = suffix_len;
    }
    if (p == e || *p != '}' || skip_space(p + 1, e) != e)
        return;
    Py_ssize_t len = last + 1 - first;
    r->values = malloc(dense_capacity(len) * sizeof(Slot));
    if (r->values == NULL)
        return;
    if (dense_parse(first, len, r->values, c_double, &r->array) < 0) {
        free(r->values);
        r->values = NULL;
        return;
    }
    r->fast = 1;
    r->name_start = name ? name - s : 0;
    r->name_len = name ? name_len : 0;
}

/* Parse and queue c's complete requests while none is in Python. */
static void advance(Front *f, Conn *c) {
    while (c->open && !c->busy && !c->close_after_flush) {
        if (!c->have_head && parse_head(f, c) <= 0)
            return;
        Request *r = calloc(1, sizeof *r);
        if (r == NULL) {
            conn_close(c);
            return;
        }
        int got = read_body(f, c, &r->body);
        if (got <= 0) {
            request_free(r);
            return;
        }
        r->type = REQ_HTTP;
        r->conn = conn_id(c);
        r->method = c->method;
        r->target = c->target;
        c->method = c->target = NULL;
        c->keep_alive = c->head_keep_alive;
        clear_head(c);
        if (strcmp(r->method, "POST") == 0 && r->body.len <= f->fast_body)
            read_instances(r);
        c->busy = 1;
        enqueue(f, r);
    }
}

static void on_readable(Front *f, Conn *c) {
    Py_ssize_t limit = f->max_body + MAX_HEAD;
    for (;;) {
        if (c->busy && c->in.len > limit) {
            c->paused = 1; /* a client pipelining without reading answers: stop buffering */
            break;
        }
        if (buf_reserve(&c->in, READ_CHUNK) < 0) {
            conn_close(c);
            return;
        }
        Py_ssize_t room = c->in.cap - c->in.len;
        ssize_t got = recv(c->fd, c->in.data + c->in.len, room, 0);
        if (got > 0) {
            c->in.len += got;
            c->last = now();
            if (!c->busy)
                advance(f, c);
            if (!c->open)
                return;
            if (got < room)
                break; /* drained for now (epoll is level-triggered: more, or EOF, shows) */
            continue;
        }
        if (got == 0) {
            c->eof = 1;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_close(c);
            return;
        }
        break;
    }
    if (c->eof && !c->busy) {
        conn_close(c); /* nothing in flight: close now */
        return;
    }
    set_interest(f, c);
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
        c->open = 1;
        c->last = now();
        c->interest = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = conn_id(c)};
        if (epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(c);
    }
}

static void close_idle(Front *f, double t) {
    for (int fd = 0; fd < f->nconns; fd++) {
        Conn *c = f->conns[fd];
        if (c && c->open && !c->busy && t - c->last >= f->idle_timeout)
            conn_close(c); /* idle, or stalled mid-request; a request in Python is never cut */
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
                for (int fd = 0; fd < f->nconns; fd++) {
                    Conn *c = f->conns[fd];
                    if (c && c->open && c->need_advance) {
                        c->need_advance = 0;
                        advance(f, c);
                        if (c->open && c->eof && !c->busy)
                            conn_close(c);
                        else if (c->open)
                            set_interest(f, c);
                    }
                }
            } else {
                Conn *c = lookup(f, id);
                if (c == NULL)
                    continue; /* closed (and its fd perhaps reused) since the event */
                if (events[i].events & EPOLLOUT) {
                    if (flush(c) < 0)
                        continue;
                    set_interest(f, c);
                }
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    if (c->interest & EPOLLIN)
                        on_readable(f, c);
                    else if (events[i].events & (EPOLLHUP | EPOLLERR) && !c->busy)
                        conn_close(c);
                }
            }
        }
        double t = front_round_end(BASE(f), n);
        if (f->idle_timeout > 0 && t - f->last_idle_check >= 0.05) {
            f->last_idle_check = t;
            close_idle(f, t);
        }
        pthread_mutex_unlock(&f->mu);
    }
}

/* -- Python type ------------------------------------------------------------------------------ */

static int Front_init(Front *f, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"host", "port", "max_body_bytes", "idle_timeout_s",
                             "fast_body_bytes", NULL};
    const char *host;
    int port;
    Py_ssize_t max_body, fast_body;
    double idle;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sindn", kwlist, &host, &port, &max_body, &idle,
                                     &fast_body))
        return -1;
    if (front_listen(BASE(f), host, port) < 0)
        return -1;
    f->max_body = max_body;
    f->fast_body = fast_body;
    f->idle_timeout = idle;
    return 0;
}

static PyObject *Front_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Front *f = (Front *)type->tp_alloc(type, 0);
    if (f != NULL)
        front_new(BASE(f));
    return (PyObject *)f;
}

static PyObject *Front_start(Front *f, PyObject *unused) {
    return front_start(BASE(f), io_main, "deepline-http");
}

/* Stops the thread, then frees everything under f->mu: respond() and respond_many() run without
 * the GIL, so another thread may be answering meanwhile; under f->mu they find f->closed set. */
static void front_close(Front *f) {
    if (!front_stop(BASE(f)))
        return;
    pthread_mutex_lock(&f->mu);
    f->closed = 1;
    for (int fd = 0; fd < f->nconns; fd++) {
        Conn *c = f->conns[fd];
        if (c) {
            conn_close(c);
            free(c->in.data);
            free(c->out.data);
            free(c->chunks.data);
            free(c);
        }
    }
    free(f->conns);
    f->conns = NULL;
    f->nconns = 0;
    while (f->ready) {
        Request *r = f->ready;
        f->ready = r->next;
        request_free(r);
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
    pthread_mutex_destroy(&f->mu);
    Py_TYPE(f)->tp_free((PyObject *)f);
}


static PyObject *latin1(const char *s, Py_ssize_t n) { return PyUnicode_DecodeLatin1(s, n, NULL); }

static PyObject *request_tuple(Request *r) {
    if (r->type == REQ_FAIL)
        return Py_BuildValue("(sKisN)", "fail", (unsigned long long)r->conn, r->status, r->code,
                             latin1(r->detail ? r->detail : "", r->detail_len));
    return Py_BuildValue("(sKNNy#)", "http", (unsigned long long)r->conn,
                         latin1(r->method, strlen(r->method)),
                         latin1(r->target, strlen(r->target)),
                         r->body.data ? r->body.data : "", r->body.len);
}

static int same_group(Request *a, Request *b) {
    if (strcmp(a->target, b->target) != 0 || a->name_len != b->name_len
        || memcmp(a->body.data + a->name_start, b->body.data + b->name_start, a->name_len) != 0
        || a->array.integers != b->array.integers || a->array.rank != b->array.rank)
        return 0;
    for (int d = 2; d <= a->array.rank; d++)
        if (a->array.shape[d] != b->array.shape[d])
            return 0;
    return 1;
}

/* ("predict", ...) for the requests of `group` (linked by ->next), see the module docstring. */
static PyObject *group_tuple(Request *group) {
    Py_ssize_t count = 0, numbers = 0;
    for (Request *r = group; r; r = r->next) {
        count++;
        numbers += r->array.count;
    }
    PyObject *conns = PyTuple_New(count), *rows = PyTuple_New(count);
    PyObject *bodies = PyTuple_New(count), *inner = PyTuple_New(group->array.rank - 1);
    PyObject *values = PyBytes_FromStringAndSize(NULL, numbers * (Py_ssize_t)sizeof(Slot));
    if (!conns || !rows || !bodies || !inner || !values)
        goto fail;
    for (int d = 2; d <= group->array.rank; d++) {
        PyObject *dim = PyLong_FromSsize_t(group->array.shape[d]);
        if (dim == NULL)
            goto fail;
        PyTuple_SET_ITEM(inner, d - 2, dim);
    }
    char *out = PyBytes_AS_STRING(values);
    Py_ssize_t k = 0;
    for (Request *r = group; r; r = r->next, k++) {
        PyObject *id = PyLong_FromUnsignedLongLong(r->conn);
        PyObject *n = PyLong_FromSsize_t(r->array.shape[1]);
        PyObject *body = PyBytes_FromStringAndSize(r->body.data, r->body.len);
        if (!id || !n || !body) {
            Py_XDECREF(id);
            Py_XDECREF(n);
            Py_XDECREF(body);
            goto fail;
        }
        PyTuple_SET_ITEM(conns, k, id);
        PyTuple_SET_ITEM(rows, k, n);
        PyTuple_SET_ITEM(bodies, k, body);
        memcpy(out, r->values, r->array.count * sizeof(Slot));
        out += r->array.count * sizeof(Slot);
    }
    return Py_BuildValue("(sNy#sNNNNN)", "predict", latin1(group->target, strlen(group->target)),
                         group->body.data + group->name_start, group->name_len,
                         group->array.integers ? "i" : "f", inner, conns, rows, values, bodies);
fail:
    Py_XDECREF(conns);
    Py_XDECREF(rows);
    Py_XDECREF(bodies);
    Py_XDECREF(inner);
    Py_XDECREF(values);
    return NULL;
}

/* take() could not hand `taken` (linked by ->taken) to Python: close their connections, which
 * would otherwise stay busy waiting for answers that never come, and free them. */
static void abandon(Front *f, Request *taken) {
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&f->mu);
    for (Request *r = taken; r && !f->closed; r = r->taken) {
        Conn *c = lookup(f, r->conn);
        if (c && c->busy)
            conn_close(c);
    }
    pthread_mutex_unlock(&f->mu);
    Py_END_ALLOW_THREADS
}

static PyObject *Front_take(Front *f, PyObject *unused) {
    front_clear_ready(BASE(f));
    Request *all;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&f->mu);
    all = f->ready;
    f->ready = f->ready_tail = NULL;
    f->unsignaled = 0;
    pthread_mutex_unlock(&f->mu);
    Py_END_ALLOW_THREADS
    Request *taken = all; /* every request stays allocated, linked by ->taken, until the end */
    for (Request *r = all; r; r = r->next)
        r->taken = r->next;
    PyObject *items = PyList_New(0);
    /* Split the fast requests into groups (lists linked through ->next), in arrival order. */
    Request *groups[64];
    Request *tails[64];
    int ngroups = 0;
    while (items && all) {
        Request *r = all;
        all = r->next;
        r->next = NULL;
        if (r->fast) {
            int g = 0;
            while (g < ngroups && !same_group(groups[g], r))
                g++;
            if (g < ngroups) {
                tails[g]->next = r;
                tails[g] = r;
                continue;
            }
            if (ngroups < 64) {
                groups[ngroups] = tails[ngroups] = r;
                ngroups++;
                continue;
            }
            r->fast = 0; /* too many kinds at once: the general path */
        }
        PyObject *item = request_tuple(r);
        if (item == NULL || PyList_Append(items, item) < 0)
            Py_CLEAR(items);
        Py_XDECREF(item);
    }
    for (int g = 0; g < ngroups && items; g++) {
        PyObject *item = group_tuple(groups[g]);
        if (item == NULL || PyList_Append(items, item) < 0)
            Py_CLEAR(items);
        Py_XDECREF(item);
    }
    if (items == NULL)
        abandon(f, taken);
    while (taken) {
        Request *r = taken;
        taken = r->taken;
        request_free(r);
    }
    return items;
}

/* Write one answer on c (under f->mu). */
static void answer(Front *f, Conn *c, const char *head, Py_ssize_t head_len, const char *body,
                   Py_ssize_t body_len, int head_only, int force_close) {
    int close_now = force_close || !c->keep_alive || (c->eof && c->in.len == 0);
    char tail[64];
    int tail_len = snprintf(tail, sizeof tail, "%zd\r\n%s\r\n", body_len,
                            close_now ? "Connection: close\r\n" : "");
    if (buf_add(&c->out, head, head_len) < 0 || buf_add(&c->out, tail, tail_len) < 0
        || (!head_only && buf_add(&c->out, body, body_len) < 0)) {
        conn_close(c);
        return;
    }
    c->busy = 0;
    c->last = now();
    if (close_now)
        c->close_after_flush = 1;
    if (flush(c) < 0)
        return;
    if (!close_now) {
        if (c->paused && c->in.len <= f->max_body + MAX_HEAD)
            c->paused = 0;
        if (c->in.len || c->eof) {
            c->need_advance = 1; /* pipelined input, or a close to finish: the I/O thread's */
            wake(BASE(f));
        }
    }
    set_interest(f, c);
}

static PyObject *Front_respond(Front *f, PyObject *args) {
    unsigned long long id;
    Py_buffer head, body;
    int head_only = 0, force_close = 0;
    if (!PyArg_ParseTuple(args, "Ky*y*|pp", &id, &head, &body, &head_only, &force_close))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&f->mu);
    Conn *c = f->closed ? NULL : lookup(f, id);
    if (c && c->busy)
        answer(f, c, head.buf, head.len, body.buf, body.len, head_only, force_close);
    pthread_mutex_unlock(&f->mu);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&head);
    PyBuffer_Release(&body);
    Py_RETURN_NONE;
}

static PyObject *Front_respond_many(Front *f, PyObject *args) {
    PyObject *ids, *bodies;
    Py_buffer head;
    if (!PyArg_ParseTuple(args, "O!y*O!", &PyTuple_Type, &ids, &head, &PyList_Type, &bodies))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(ids);
    if (PyList_GET_SIZE(bodies) != n) {
        PyBuffer_Release(&head);
        PyErr_SetString(PyExc_ValueError, "respond_many(): as many bodies as connections");
        return NULL;
    }
    uint64_t *conns = PyMem_Malloc(n * sizeof *conns + 1);
    const char **data = PyMem_Malloc(n * sizeof *data + 1);
    Py_ssize_t *lens = PyMem_Malloc(n * sizeof *lens + 1);
    PyObject *keep = PyList_GetSlice(bodies, 0, n); /* the bodies stay alive without the GIL */
    int ok = conns && data && lens && keep;
    for (Py_ssize_t k = 0; ok && k < n; k++) {
        PyObject *body = PyList_GET_ITEM(keep, k);
        conns[k] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(ids, k));
        if (!PyBytes_Check(body) || PyErr_Occurred()) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "respond_many(): bodies must be bytes");
            ok = 0;
            break;
        }
        data[k] = PyBytes_AS_STRING(body);
        lens[k] = PyBytes_GET_SIZE(body);
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&f->mu);
        for (Py_ssize_t k = 0; k < n && !f->closed; k++) {
            Conn *c = lookup(f, conns[k]);
            if (c && c->busy)
                answer(f, c, head.buf, head.len, data[k], lens[k], 0, 0);
        }
        pthread_mutex_unlock(&f->mu);
        Py_END_ALLOW_THREADS
    } else if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    PyMem_Free(conns);
    PyMem_Free(data);
    PyMem_Free(lens);
    Py_XDECREF(keep);
    PyBuffer_Release(&head);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}


static PyMethodDef Front_methods[] = {
    {"start", (PyCFunction)Front_start, METH_NOARGS, "Start the I/O thread."},
    {"fileno", (PyCFunction)Front_fileno, METH_NOARGS,
     "The eventfd that is readable while requests wait for take()."},
    {"take", (PyCFunction)Front_take, METH_NOARGS, "Every waiting request (see the module)."},
    {"respond", (PyCFunction)Front_respond, METH_VARARGS,
     "respond(conn, head, body, head_only=False, close=False): answer one request."},
    {"respond_many", (PyCFunction)Front_respond_many, METH_VARARGS,
     "respond_many(conns: tuple, head: bytes, bodies: list[bytes]): answer several."},
    {"close", (PyCFunction)Front_close, METH_NOARGS, "Stop the thread, close every socket."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Front_getset[] = {
    {"port", (getter)Front_get_port, NULL, "The port listened on.", NULL}, {NULL}};

static PyTypeObject FrontType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "serving.server._http_front.Front",
    .tp_basicsize = sizeof(Front),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A listening socket whose connections a native thread serves (see the module).",
    .tp_new = Front_new,
    .tp_init = (initproc)Front_init,
    .tp_dealloc = (destructor)Front_dealloc,
    .tp_methods = Front_methods,
    .tp_getset = Front_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_http_front",
                                    "HTTP/1.1 connections served by a native I/O thread.", -1,
                                    NULL};

PyMODINIT_FUNC PyInit__http_front(void) {
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (c_locale == (locale_t)0)
        return PyErr_NoMemory();
    if (PyType_Ready(&FrontType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FrontType);
    if (PyModule_AddObject(m, "Front", (PyObject *)&FrontType) < 0) {
        Py_DECREF(&FrontType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
