/* serving.server._dense_json: dense numeric JSON arrays, read and written in C.
 *
 * parse(array: bytes) -> (kind, values, shape) | None
 *
 * `array` is the text of one JSON array (from its "[" to its "]"): nested lists of JSON numbers,
 * every list at one depth of the same non-zero length, numbers only in the innermost lists, JSON
 * whitespace anywhere between tokens. Then `values` holds the numbers row-major as native 8-byte
 * values, `shape` is the dense shape (a tuple of ints, rank 1 to 32), and `kind` is
 *   "i": every number is an integer literal (no fraction, no exponent) of at most 18 digits:
 *        `values` are int64, as Python reads the literals;
 *   "f": otherwise: `values` are float64, each the correctly rounded value of its literal, as
 *        `json.loads` reads it and NumPy converts it (integer literals as `float(int(text))`:
 *        "-0" is +0.0, "-0.0" is -0.0; beyond the double range +-inf, below it 0.0).
 * Decimals take Clinger's fast path where it is exact (the significant digits form an integer
 * M < 2**53 and the decimal exponent e has |e| <= 22, so M * 10**e or M / 10**-e is exact before
 * its single rounding), else CPython's own correctly rounded, locale-independent
 * PyOS_string_to_double.
 *
 * Anything else returns None and is left to the Python reader: text that is not such an array
 * (strings, literals, objects, empty or ragged lists, bad number syntax, deeper than 32) and
 * integer literals of 19 digits or more (whether NumPy makes them int64, uint64, float64 or
 * objects depends on their neighbours). So whenever parse() answers, its answer equals the
 * Python reader's.
 */

/* decimal_strings(values) -> list[str]
 *
 * `values`: a C-contiguous buffer of float32 ("f") or float64 ("d"), e.g. a NumPy array. Each
 * value written as TF Serving's WriteDecimal writes it: "%g" if that reads back (as float32 for
 * float32) to the same value, else "%.9g" (float32) or "%.17g" (float64); ".0" appended when
 * the text has neither "." nor "e"; "NaN", "Infinity", "-Infinity". Formatting and reading use
 * CPython's locale-independent PyOS_double_to_string / PyOS_string_to_double, so the strings are
 * those of json_codec's Python writer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
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
    memset(n, 0, sizeof *n);
    n->is_integer = 1;
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
        n->is_integer = 0;
        p++;
        if (p >= end || !is_digit(s[p]))
            return -1;
        for (; p < end && is_digit(s[p]); p++) {
            if (n->ndigits == 0 && s[p] == '0') {
                n->exponent--; /* a leading zero of the fraction */
            } else if (++n->ndigits > 19) {
                n->long_digits = 1;
            } else {
                n->digits = n->digits * 10 + (uint64_t)(s[p] - '0');
                n->exponent--;
            }
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

/* The float64 of the decimal literal s[start:stop], correctly rounded as Python's float() reads
 * it (an out-of-range one gives +-inf or 0.0, as json.loads does); -1 on failure. */
static int decimal_double(const char *s, Py_ssize_t start, Py_ssize_t stop, const Number *n,
                          double *out) {
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
    char *parsed_end;
    double v = PyOS_string_to_double(s + start, &parsed_end, NULL); /* locale-independent */
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (parsed_end != s + stop)
        return -1;
    *out = v;
    return 0;
}

static PyObject *parse(PyObject *module, PyObject *arg) {
    PyObject *values = NULL, *result = NULL;
    if (!PyBytes_Check(arg)) { /* bytes end in a NUL: PyOS_string_to_double stops there */
        PyErr_SetString(PyExc_TypeError, "parse() takes bytes");
        return NULL;
    }
    const char *s = PyBytes_AS_STRING(arg);
    const Py_ssize_t end = PyBytes_GET_SIZE(arg);
    /* Every number takes at least one character and one separator: a bound on their count. */
    const Py_ssize_t capacity = end / 2 + 1;
    values = PyBytes_FromStringAndSize(NULL, capacity * 8);
    if (values == NULL)
        goto done;
    Slot *slots = (Slot *)PyBytes_AS_STRING(values); /* int64 until the first decimal */

    Py_ssize_t size[MAX_RANK + 1];  /* length of every list at each depth, from the first */
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
            goto reject; /* text after the outer "]" */
        if (c == '[') {
            if (!expect_value || depth == MAX_RANK || (rank && depth >= rank))
                goto reject;
            count[++depth] = 0;
            i++;
        } else if (c == ']') {
            if (expect_value || depth == 0) /* "[]", "[1,]" */
                goto reject;
            if (size[depth] < 0)
                size[depth] = count[depth];
            else if (size[depth] != count[depth])
                goto reject; /* ragged */
            if (--depth == 0)
                closed = 1;
            else
                count[depth]++;
            expect_value = 0;
            i++;
        } else if (c == ',') {
            if (expect_value || depth == 0)
                goto reject;
            expect_value = 1;
            i++;
        } else {
            Number num;
            Py_ssize_t start = i;
            if (!expect_value || depth == 0 || (rank && depth != rank))
                goto reject;
            if (read_number(s, end, &i, &num) < 0)
                goto reject;
            rank = depth;
            if (size[depth] >= 0 && count[depth] >= size[depth])
                goto reject; /* longer than the first list at this depth */
            count[depth]++;
            if (num.is_integer) {
                if (num.ndigits > 18)
                    goto reject; /* int64 or beyond: Python decides */
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
                if (decimal_double(s, start, i, &num, &slots[n++].f) < 0)
                    goto reject;
            }
            expect_value = 0;
        }
    }
    if (!closed || rank == 0)
        goto reject;
    if (_PyBytes_Resize(&values, n * 8) < 0)
        goto done; /* values was freed */
    PyObject *shape = PyTuple_New(rank);
    if (shape == NULL)
        goto done;
    for (int d = 1; d <= rank; d++) {
        PyObject *dim = PyLong_FromSsize_t(size[d]);
        if (dim == NULL) {
            Py_DECREF(shape);
            goto done;
        }
        PyTuple_SET_ITEM(shape, d - 1, dim);
    }
    result = Py_BuildValue("(sON)", integers ? "i" : "f", values, shape);
    goto done;
reject:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(values);
    return result;
}

/* One value as TF Serving's WriteDecimal writes it (see decimal_strings). */
static PyObject *decimal_text(double v, int single) {
    if (isnan(v))
        return PyUnicode_FromString("NaN");
    if (isinf(v))
        return PyUnicode_FromString(v > 0 ? "Infinity" : "-Infinity");
    char *text = PyOS_double_to_string(v, 'g', 6, 0, NULL);
    if (text == NULL)
        return NULL;
    double back = PyOS_string_to_double(text, NULL, NULL);
    if (back == -1.0 && PyErr_Occurred()) {
        PyMem_Free(text);
        return NULL;
    }
    if (single)
        back = (double)(float)back;
    if (back != v) {
        PyMem_Free(text);
        text = PyOS_double_to_string(v, 'g', single ? 9 : 17, 0, NULL);
        if (text == NULL)
            return NULL;
    }
    PyObject *result = (strchr(text, '.') || strchr(text, 'e'))
                           ? PyUnicode_FromString(text)
                           : PyUnicode_FromFormat("%s.0", text);
    PyMem_Free(text);
    return result;
}

static PyObject *decimal_strings(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    PyObject *result = NULL;
    const char *format = view.format ? view.format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@')
        format++;
    int single = strcmp(format, "f") == 0;
    if (!single && strcmp(format, "d") != 0) {
        PyErr_Format(PyExc_TypeError, "decimal_strings() takes float32 or float64 values, not "
                     "format '%s'", view.format ? view.format : "B");
        goto done;
    }
    Py_ssize_t n = view.len / view.itemsize;
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < n; k++) {
        double v = single ? (double)((const float *)view.buf)[k] : ((const double *)view.buf)[k];
        PyObject *text = decimal_text(v, single);
        if (text == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, k, text);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_O,
     "parse(array: bytes) -> (kind, values, shape) | None: the numbers of a dense JSON array "
     "(kind \"i\": int64 values, \"f\": float64), or None to leave it to the Python reader."},
    {"decimal_strings", decimal_strings, METH_O,
     "decimal_strings(values) -> list[str]: float32/float64 values as TF Serving writes them."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dense_json",
                                    "Dense numeric JSON arrays, read and written in C.", -1, methods};

PyMODINIT_FUNC PyInit__dense_json(void) { return PyModule_Create(&module); }
