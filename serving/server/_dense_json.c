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

/* rows_json(keys, arrays) -> list[str]
 *
 * The row format's `predictions`: one JSON text per row of the arrays' 0th dimension, the texts
 * json_codec's Python writer makes. `arrays`: a list of C-contiguous NumPy-style buffers of one
 * length in their 0th dimension, of float32/float64 (written as decimal_strings writes them),
 * signed or unsigned integers of 1 to 8 bytes ("%lld" / "%llu") or bools ("true" / "false").
 * `keys`: None for one array (a row is that array's row: a value, or nested lists "[a, b]");
 * else one JSON text per array, and a row is the object "{key: row, ...}". TypeError for
 * another element type (the Python writer serves those).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_buf.h"
#include "_dense_core.h"

/* PyOS_string_to_double: CPython's own correctly rounded, locale-independent reader. */
static int python_double(const char *text, const char **end, double *out) {
    char *parsed_end;
    double v = PyOS_string_to_double(text, &parsed_end, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    *end = parsed_end;
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
    values = PyBytes_FromStringAndSize(NULL, dense_capacity(end) * 8);
    if (values == NULL)
        goto done;
    DenseArray array;
    if (dense_parse(s, end, (Slot *)PyBytes_AS_STRING(values), python_double, &array) < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (_PyBytes_Resize(&values, array.count * 8) < 0)
        goto done; /* values was freed */
    PyObject *shape = PyTuple_New(array.rank);
    if (shape == NULL)
        goto done;
    for (int d = 1; d <= array.rank; d++) {
        PyObject *dim = PyLong_FromSsize_t(array.shape[d]);
        if (dim == NULL) {
            Py_DECREF(shape);
            goto done;
        }
        PyTuple_SET_ITEM(shape, d - 1, dim);
    }
    result = Py_BuildValue("(sON)", array.integers ? "i" : "f", values, shape);
done:
    Py_XDECREF(values);
    return result;
}

/* buf_add, with a Python MemoryError when memory runs out. */
static int text_add(Buf *t, const char *s, size_t n) {
    if (buf_add(t, s, (Py_ssize_t)n) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Appends one value as TF Serving's WriteDecimal writes it (see decimal_strings). */
static int text_decimal(Buf *t, double v, int single) {
    if (isnan(v))
        return text_add(t, "NaN", 3);
    if (isinf(v))
        return v > 0 ? text_add(t, "Infinity", 8) : text_add(t, "-Infinity", 9);
    char *text = PyOS_double_to_string(v, 'g', 6, 0, NULL);
    if (text == NULL)
        return -1;
    double back = PyOS_string_to_double(text, NULL, NULL);
    if (back == -1.0 && PyErr_Occurred()) {
        PyMem_Free(text);
        return -1;
    }
    if (single)
        back = (double)(float)back;
    if (back != v) {
        PyMem_Free(text);
        text = PyOS_double_to_string(v, 'g', single ? 9 : 17, 0, NULL);
        if (text == NULL)
            return -1;
    }
    size_t n = strlen(text);
    int whole = memchr(text, '.', n) == NULL && memchr(text, 'e', n) == NULL;
    int rc = text_add(t, text, n);
    PyMem_Free(text);
    return rc < 0 ? -1 : whole ? text_add(t, ".0", 2) : 0;
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
    Buf t = {NULL, 0, 0};
    for (Py_ssize_t k = 0; k < n; k++) {
        double v = single ? (double)((const float *)view.buf)[k] : ((const double *)view.buf)[k];
        t.len = 0;
        PyObject *text = text_decimal(&t, v, single) < 0
                             ? NULL
                             : PyUnicode_FromStringAndSize(t.data, (Py_ssize_t)t.len);
        if (text == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, k, text);
    }
    free(t.data);
done:
    PyBuffer_Release(&view);
    return result;
}

/* One array's element type, from its buffer format. */
enum Kind { KIND_FLOAT, KIND_SIGNED, KIND_UNSIGNED, KIND_BOOL };

static int element_kind(const Py_buffer *view, enum Kind *kind) {
    const char *f = view->format ? view->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@')
        f++;
    if (f[0] == '\0' || f[1] != '\0')
        return -1;
    Py_ssize_t size = view->itemsize;
    if ((f[0] == 'f' && size == 4) || (f[0] == 'd' && size == 8))
        *kind = KIND_FLOAT;
    else if (strchr("bhilq", f[0]) && (size == 1 || size == 2 || size == 4 || size == 8))
        *kind = KIND_SIGNED;
    else if (strchr("BHILQ", f[0]) && (size == 1 || size == 2 || size == 4 || size == 8))
        *kind = KIND_UNSIGNED;
    else if (f[0] == '?' && size == 1)
        *kind = KIND_BOOL;
    else
        return -1;
    return 0;
}

static int text_element(Buf *t, const char *at, enum Kind kind, Py_ssize_t size) {
    char digits[32];
    int n;
    switch (kind) {
    case KIND_FLOAT:
        return text_decimal(t, size == 4 ? (double)*(const float *)at : *(const double *)at,
                            size == 4);
    case KIND_BOOL:
        return *at ? text_add(t, "true", 4) : text_add(t, "false", 5);
    case KIND_SIGNED: {
        long long v = size == 1   ? *(const int8_t *)at
                      : size == 2 ? *(const int16_t *)at
                      : size == 4 ? *(const int32_t *)at
                                  : *(const int64_t *)at;
        n = snprintf(digits, sizeof digits, "%lld", v);
        break;
    }
    default: {
        unsigned long long v = size == 1   ? *(const uint8_t *)at
                               : size == 2 ? *(const uint16_t *)at
                               : size == 4 ? *(const uint32_t *)at
                                           : *(const uint64_t *)at;
        n = snprintf(digits, sizeof digits, "%llu", v);
    }
    }
    return text_add(t, digits, (size_t)n);
}

/* Appends the values at `at` of dimensions shape[0..ndim): one value, or nested lists. */
static int text_nested(Buf *t, const char *at, const Py_ssize_t *shape, int ndim,
                       const Py_ssize_t *strides, enum Kind kind, Py_ssize_t size) {
    if (ndim == 0)
        return text_element(t, at, kind, size);
    if (text_add(t, "[", 1) < 0)
        return -1;
    for (Py_ssize_t k = 0; k < shape[0]; k++) {
        if ((k && text_add(t, ", ", 2) < 0) ||
            text_nested(t, at + k * strides[0], shape + 1, ndim - 1, strides + 1, kind, size) < 0)
            return -1;
    }
    return text_add(t, "]", 1);
}

static PyObject *rows_json(PyObject *module, PyObject *args) {
    PyObject *keys, *arrays, *result = NULL;
    if (!PyArg_ParseTuple(args, "OO!:rows_json", &keys, &PyList_Type, &arrays))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(arrays);
    if (count < 1 || (keys == Py_None ? count != 1
                                       : !PyList_Check(keys) || PyList_GET_SIZE(keys) != count)) {
        PyErr_SetString(PyExc_ValueError,
                        "rows_json() takes one array and keys None, or one key per array");
        return NULL;
    }
    Py_buffer *views = PyMem_Calloc((size_t)count, sizeof(Py_buffer));
    enum Kind *kinds = PyMem_Calloc((size_t)count, sizeof(enum Kind));
    const char **key_texts = PyMem_Calloc((size_t)count, sizeof(char *));
    Py_ssize_t *key_lens = PyMem_Calloc((size_t)count, sizeof(Py_ssize_t));
    Py_ssize_t got = 0, rows = -1;
    Buf t = {NULL, 0, 0};
    if (views == NULL || kinds == NULL || key_texts == NULL || key_lens == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < count; got++) {
        Py_buffer *v = &views[got];
        if (PyObject_GetBuffer(PyList_GET_ITEM(arrays, got), v,
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_STRIDES) < 0)
            goto done;
        if (element_kind(v, &kinds[got]) < 0) {
            PyErr_Format(PyExc_TypeError, "rows_json() takes numeric or bool arrays, not format "
                         "'%s'", v->format ? v->format : "B");
            got++;
            goto done;
        }
        if (v->ndim < 1 || (rows >= 0 && v->shape[0] != rows)) {
            PyErr_SetString(PyExc_ValueError,
                            "rows_json() takes arrays of one length in their 0th dimension");
            got++;
            goto done;
        }
        rows = v->shape[0];
        if (keys != Py_None) {
            key_texts[got] = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(keys, got), &key_lens[got]);
            if (key_texts[got] == NULL) {
                got++;
                goto done;
            }
        }
    }
    result = PyList_New(rows);
    if (result == NULL)
        goto done;
    for (Py_ssize_t r = 0; r < rows; r++) {
        t.len = 0;
        if (keys != Py_None && text_add(&t, "{", 1) < 0)
            goto fail;
        for (Py_ssize_t a = 0; a < count; a++) {
            Py_buffer *v = &views[a];
            if (keys != Py_None &&
                ((a && text_add(&t, ", ", 2) < 0) ||
                 text_add(&t, key_texts[a], (size_t)key_lens[a]) < 0 ||
                 text_add(&t, ": ", 2) < 0))
                goto fail;
            if (text_nested(&t, (const char *)v->buf + r * v->strides[0], v->shape + 1,
                            v->ndim - 1, v->strides + 1, kinds[a], v->itemsize) < 0)
                goto fail;
        }
        if (keys != Py_None && text_add(&t, "}", 1) < 0)
            goto fail;
        PyObject *row = PyUnicode_DecodeUTF8(t.data, (Py_ssize_t)t.len, "strict");
        if (row == NULL)
            goto fail;
        PyList_SET_ITEM(result, r, row);
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    for (Py_ssize_t k = 0; k < got; k++)
        PyBuffer_Release(&views[k]);
    PyMem_Free(views);
    PyMem_Free(kinds);
    PyMem_Free(key_texts);
    PyMem_Free(key_lens);
    free(t.data);
    return result;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_O,
     "parse(array: bytes) -> (kind, values, shape) | None: the numbers of a dense JSON array "
     "(kind \"i\": int64 values, \"f\": float64), or None to leave it to the Python reader."},
    {"decimal_strings", decimal_strings, METH_O,
     "decimal_strings(values) -> list[str]: float32/float64 values as TF Serving writes them."},
    {"rows_json", rows_json, METH_VARARGS,
     "rows_json(keys, arrays) -> list[str]: the row format's predictions, one JSON text per "
     "row (keys: None for one array, else one JSON text per array)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dense_json",
                                    "Dense numeric JSON arrays, read and written in C.", -1, methods};

PyMODINIT_FUNC PyInit__dense_json(void) { return PyModule_Create(&module); }
