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
