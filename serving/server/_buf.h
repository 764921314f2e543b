/* A growing byte buffer, for serving.server's C extensions. It uses malloc/realloc, so the
 * I/O thread of _http_front, which never holds the GIL, can use it too; the functions return -1
 * when memory runs out and set no Python exception. */
#ifndef DEEPLINE_BUF_H
#define DEEPLINE_BUF_H

#include <Python.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static inline int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->cap - b->len >= extra)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int buf_add(Buf *b, const char *p, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline void buf_drop(Buf *b, Py_ssize_t n) { /* remove the first n bytes */
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

#endif
