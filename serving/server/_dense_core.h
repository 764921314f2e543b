/* The dense numeric JSON array reader shared by serving.server._dense_json (``parse``) and
 * serving.server._http_front (bodies read by its I/O thread, without the GIL).
 *
 * dense_parse() reads the text of one JSON array (nested lists of JSON numbers, every list at one
 * depth of the same non-zero length, numbers only in the innermost lists, JSON whitespace between
 * tokens): the numbers row-major as int64 while every one is an integer literal of at most 18
 * digits, else as float64, each the correctly rounded value of its literal. Decimals take
 * Clinger's fast path where it is exact; the others go to the caller's correctly rounded,
 * locale-independent reader (`SlowDouble`), so every caller gets the same values. See
 * _dense_json.c for what is rejected and why.
 */
#ifndef DENSE_CORE_H
#define DENSE_CORE_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_RANK 32
#define TWO_53 9007199254740992ULL /* 2**53 */

static const double POW10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

typedef union {
    int64_t i;
    double f;
} Slot;

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

typedef struct {
    int is_integer;    /* no fraction, no exponent */
    int negative;
    int long_digits;   /* more than 19 significant digits: `digits` is not their value */
    uint64_t digits;   /* the significant digits as an integer */
    int ndigits;       /* significant digits read (leading zeros not counted) */
    long exponent;     /* value = digits * 10**exponent */
} Number;

/* Reads one JSON number at s[*i] (end: one past the text), moving *i past it; -1: not a JSON
 * number. */
static int read_number(const char *s, Py_ssize_t end, Py_ssize_t *i, Number *n) {
    Py_ssize_t p = *i;
    n->is_integer = 1;
    n->negative = n->long_digits = n->ndigits = 0;
    n->digits = 0;
    n->exponent = 0;
    if (p < end && s[p] == '-') {
        n->negative = 1;
        p++;
    }
    if (p >= end || !is_digit(s[p]))
        return -1;
    if (s[p] == '0') {
        p++;
        if (p < end && is_digit(s[p]))
            return -1; /* JSON has no leading zeros */
    } else {
        for (; p < end && is_digit(s[p]); p++) {
            if (++n->ndigits > 19)
                n->long_digits = 1;
            else
                n->digits = n->digits * 10 + (uint64_t)(s[p] - '0');
        }
    }
    if (p < end && s[p] == '.') {
        int zeros = 0; /* zeros of the fraction after its first significant digit, not yet
                        * counted: trailing ones never are ("121.0" is 121, not 1210e-1) */
        n->is_integer = 0;
        p++;
        if (p >= end || !is_digit(s[p]))
            return -1;
        for (; p < end && is_digit(s[p]); p++) {
            if (s[p] == '0') {
                if (n->ndigits == 0)
                    n->exponent--; /* a leading zero of the fraction */
                else
                    zeros++;
                continue;
            }
            for (; zeros > 0; zeros--) {
                if (++n->ndigits > 19)
                    n->long_digits = 1;
                else
                    n->digits *= 10;
                n->exponent--;
            }
            if (++n->ndigits > 19)
                n->long_digits = 1;
            else
                n->digits = n->digits * 10 + (uint64_t)(s[p] - '0');
            n->exponent--;
        }
    }
    if (p < end && (s[p] == 'e' || s[p] == 'E')) {
        int negative_exp = 0;
        long e = 0;
        n->is_integer = 0;
        p++;
        if (p < end && (s[p] == '+' || s[p] == '-')) {
            negative_exp = s[p] == '-';
            p++;
        }
        if (p >= end || !is_digit(s[p]))
            return -1;
        for (; p < end && is_digit(s[p]); p++) {
            if (e < 100000)
                e = e * 10 + (s[p] - '0');
        }
        n->exponent += negative_exp ? -e : e;
    }
    *i = p;
    return 0;
}

/* A correctly rounded, locale-independent reader of the decimal literal at `text` (which ends
 * before a character that cannot continue a number): 0 and the value in *out, with *end just past
 * the characters read; -1 on failure. */
typedef int (*SlowDouble)(const char *text, const char **end, double *out);

/* The float64 of the decimal literal s[start:stop], correctly rounded as Python's float() reads
 * it (an out-of-range one gives +-inf or 0.0, as json.loads does); -1 on failure. */
static int decimal_double(const char *s, Py_ssize_t start, Py_ssize_t stop, const Number *n,
                          SlowDouble slow, double *out) {
    if (!n->long_digits && n->digits < TWO_53 && n->exponent >= -22 && n->exponent <= 22) {
        /* Clinger's fast path: digits and 10**|exponent| are exact doubles, so the one IEEE
         * operation rounds the exact value once. */
        double v = (double)n->digits;
        if (n->exponent >= 0)
            v *= POW10[n->exponent];
        else
            v /= POW10[-n->exponent];
        *out = n->negative ? -v : v;
        return 0;
    }
    const char *parsed_end;
    if (slow(s + start, &parsed_end, out) < 0 || parsed_end != s + stop)
        return -1;
    return 0;
}

typedef struct {
    int integers;                   /* every number an integer literal: the slots hold int64 */
    int rank;                       /* 1..MAX_RANK */
    Py_ssize_t count;               /* numbers read */
    Py_ssize_t shape[MAX_RANK + 1]; /* shape[1..rank]: the dense shape */
} DenseArray;

/* Every number takes at least one character and one separator: slots enough for s[0:end]. */
static Py_ssize_t dense_capacity(Py_ssize_t end) { return end / 2 + 1; }

/* 0: s[0:end] is such an array, its numbers in slots[0:out->count] (dense_capacity(end) slots);
 * -1: anything else. */
static int dense_parse(const char *s, Py_ssize_t end, Slot *slots, SlowDouble slow,
                       DenseArray *out) {
    Py_ssize_t *size = out->shape;  /* length of every list at each depth, from the first */
    Py_ssize_t count[MAX_RANK + 1]; /* elements so far in the open list at each depth */
    int depth = 0, rank = 0, integers = 1, expect_value = 1, closed = 0;
    Py_ssize_t n = 0, i = 0;
    for (int d = 0; d <= MAX_RANK; d++)
        size[d] = -1;
    while (i < end) {
        char c = s[i];
        if (is_space(c)) {
            i++;
            continue;
        }
        if (closed)
            return -1; /* text after the outer "]" */
        if (c == '[') {
            if (!expect_value || depth == MAX_RANK || (rank && depth >= rank))
                return -1;
            count[++depth] = 0;
            i++;
        } else if (c == ']') {
            if (expect_value || depth == 0) /* "[]", "[1,]" */
                return -1;
            if (size[depth] < 0)
                size[depth] = count[depth];
            else if (size[depth] != count[depth])
                return -1; /* ragged */
            if (--depth == 0)
                closed = 1;
            else
                count[depth]++;
            expect_value = 0;
            i++;
        } else if (c == ',') {
            if (expect_value || depth == 0)
                return -1;
            expect_value = 1;
            i++;
        } else {
            Number num;
            Py_ssize_t start = i;
            if (!expect_value || depth == 0 || (rank && depth != rank))
                return -1;
            if (read_number(s, end, &i, &num) < 0)
                return -1;
            rank = depth;
            if (size[depth] >= 0 && count[depth] >= size[depth])
                return -1; /* longer than the first list at this depth */
            count[depth]++;
            if (num.is_integer) {
                if (num.ndigits > 18)
                    return -1; /* int64 or beyond: Python decides */
                int64_t v = num.negative ? -(int64_t)num.digits : (int64_t)num.digits;
                if (integers)
                    slots[n++].i = v;
                else
                    slots[n++].f = (double)v; /* == float(int): rounded to nearest */
            } else {
                if (integers) { /* the first decimal: earlier integers become float64 */
                    for (Py_ssize_t k = 0; k < n; k++)
                        slots[k].f = (double)slots[k].i;
                    integers = 0;
                }
                if (decimal_double(s, start, i, &num, slow, &slots[n++].f) < 0)
                    return -1;
            }
            expect_value = 0;
        }
    }
    if (!closed || rank == 0)
        return -1;
    out->integers = integers;
    out->rank = rank;
    out->count = n;
    return 0;
}

#endif /* DENSE_CORE_H */
