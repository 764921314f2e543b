/* serving.server._predict_wire: dense Predict calls' protobuf wire format, read and written in C.
 *
 * read_request(raw: bytes) -> (spec, output_filter, inputs) | None
 *
 * `raw` is a serialized tensorflow.serving.PredictRequest. When it has the form clients write for
 * dense numeric inputs (tf.make_tensor_proto's tensor_content), the answer is
 *   spec           the model_spec field's bytes (a serialized ModelSpec, left to protobuf);
 *   output_filter  a tuple of str;
 *   inputs         a tuple of (alias: str, dtype: int, shape: tuple of int, offset: int), one per
 *                  entry of the inputs map in wire order: `dtype` is the DataType enum and the
 *                  input's values are its tensor_content, raw[offset : offset + prod(shape) *
 *                  itemsize], native little-endian as TensorFlow writes them.
 * The form:
 *   PredictRequest: model_spec once, inputs entries, output_filter strings; no other field;
 *   an inputs entry: its key and its value, each once;
 *   TensorProto: dtype, tensor_shape, tensor_content, each once (version_number may be there
 *     too); dtype float, double, half, bool, int8/16/32/64 or uint8/16/32/64; tensor_content of
 *     exactly prod(shape) * itemsize bytes, not empty;
 *   TensorShapeProto: dims, each with at most a size (not negative, no name), at most 32 of
 *     them; unknown_rank absent or false;
 *   every field with the wire type of its type; every string valid UTF-8.
 * Anything else (typed *_val fields, strings, fields repeated or unknown, a malformed message)
 * returns None, and protobuf's own parser reads the request. So whenever read_request answers,
 * its answer is what that parser gives for these fields, and the values are those
 * tensors.to_ndarray decodes.
 *
 * write_responses(spec: bytes, outputs, rows) -> list[bytes]
 *
 * Serialized tensorflow.serving.PredictResponses for consecutive requests of rows[0], rows[1], ...
 * rows of `outputs`: a list of (name: bytes, dtype: int, values), sorted by name, each `values`
 * a C-contiguous buffer (a NumPy array) of the DataType's itemsize, of rank >= 1, with sum(rows)
 * rows. Response k holds model_spec `spec` (a serialized ModelSpec) and, for each output, the
 * TensorProto tensors.from_ndarray makes of rows[k] rows of it: dtype, tensor_shape and the
 * typed *_val field (float_val, double_val, half_val, bool_val, int_val for 8- and 16-bit
 * integers and int32, int64_val, uint32_val, uint64_val). The bytes are those protobuf writes for
 * that message with SerializeToString(deterministic=True): fields in field-number order, packed
 * repeated fields, map entries sorted by key. ValueError for another dtype, an empty name, or
 * values of the wrong itemsize, rank or number of rows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DIMS 32

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

/* How a dtype's values are written: the TensorProto field, and how each value is encoded. */
typedef enum { AS_FIXED, AS_SIGNED, AS_UNSIGNED, AS_BOOL } Encoding;

typedef struct {
    int dtype;
    int itemsize;
    int field;  /* TensorProto's typed field */
    Encoding encoding;
} DType;

static const DType DTYPES[] = {
    {1, 4, 5, AS_FIXED},      /* DT_FLOAT: float_val */
    {2, 8, 6, AS_FIXED},      /* DT_DOUBLE: double_val */
    {3, 4, 7, AS_SIGNED},     /* DT_INT32: int_val */
    {4, 1, 7, AS_UNSIGNED},   /* DT_UINT8: int_val */
    {5, 2, 7, AS_SIGNED},     /* DT_INT16: int_val */
    {6, 1, 7, AS_SIGNED},     /* DT_INT8: int_val */
    {9, 8, 10, AS_SIGNED},    /* DT_INT64: int64_val */
    {10, 1, 11, AS_BOOL},     /* DT_BOOL: bool_val */
    {17, 2, 7, AS_UNSIGNED},  /* DT_UINT16: int_val */
    {19, 2, 13, AS_UNSIGNED}, /* DT_HALF: half_val, the bits as integers */
    {22, 4, 16, AS_UNSIGNED}, /* DT_UINT32: uint32_val */
    {23, 8, 17, AS_UNSIGNED}, /* DT_UINT64: uint64_val */
};

static const DType *dtype_of(uint64_t dtype) {
    for (size_t k = 0; k < sizeof DTYPES / sizeof DTYPES[0]; k++)
        if ((uint64_t)DTYPES[k].dtype == dtype)
            return &DTYPES[k];
    return NULL;
}

/* -- reading --------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} Reader;

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* The next field's number and wire type; -1 at a malformed tag. */
static int read_tag(Reader *r, uint64_t *field, int *wire) {
    uint64_t tag;
    if (read_varint(r, &tag) < 0 || (tag >> 3) == 0)
        return -1;
    *field = tag >> 3;
    *wire = (int)(tag & 7);
    return 0;
}

/* A length-delimited field's contents, as a reader of its own. */
static int read_len(Reader *r, Reader *inner) {
    uint64_t n;
    if (read_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p))
        return -1;
    inner->p = r->p;
    inner->end = r->p + n;
    r->p += n;
    return 0;
}

/* A valid UTF-8 string's str, else NULL with no exception set. */
static PyObject *utf8(Reader s) {
    PyObject *str = PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, NULL);
    if (str == NULL)
        PyErr_Clear();
    return str;
}

typedef struct {
    uint64_t dtype;
    int rank;
    int64_t dims[MAX_DIMS];
    Reader content;
    int has_dtype, has_shape, has_content, has_version;
} Tensor;

static int read_dim(Reader d, int64_t *size) {
    int has_size = 0;
    *size = 0;
    while (d.p < d.end) {
        uint64_t field, v;
        int wire;
        if (read_tag(&d, &field, &wire) < 0 || field != 1 || wire != WIRE_VARINT || has_size ||
            read_varint(&d, &v) < 0 || (int64_t)v < 0)
            return -1;  /* (a name, field 2, is left to protobuf) */
        *size = (int64_t)v;
        has_size = 1;
    }
    return 0;
}

static int read_shape(Reader s, Tensor *t) {
    while (s.p < s.end) {
        uint64_t field, v;
        int wire;
        Reader dim;
        if (read_tag(&s, &field, &wire) < 0)
            return -1;
        if (field == 2 && wire == WIRE_LEN) {
            if (t->rank == MAX_DIMS || read_len(&s, &dim) < 0 ||
                read_dim(dim, &t->dims[t->rank]) < 0)
                return -1;
            t->rank++;
        } else if (field == 3 && wire == WIRE_VARINT) { /* unknown_rank: false only */
            if (read_varint(&s, &v) < 0 || v != 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static int read_tensor(Reader r, Tensor *t) {
    memset(t, 0, sizeof *t);
    while (r.p < r.end) {
        uint64_t field, v;
        int wire;
        Reader inner;
        if (read_tag(&r, &field, &wire) < 0)
            return -1;
        if (field == 1 && wire == WIRE_VARINT && !t->has_dtype) {
            if (read_varint(&r, &t->dtype) < 0)
                return -1;
            t->has_dtype = 1;
        } else if (field == 2 && wire == WIRE_LEN && !t->has_shape) {
            if (read_len(&r, &inner) < 0 || read_shape(inner, t) < 0)
                return -1;
            t->has_shape = 1;
        } else if (field == 3 && wire == WIRE_VARINT && !t->has_version) {
            if (read_varint(&r, &v) < 0)
                return -1;
            t->has_version = 1;
        } else if (field == 4 && wire == WIRE_LEN && !t->has_content) {
            if (read_len(&r, &t->content) < 0)
                return -1;
            t->has_content = 1;
        } else {
            return -1;
        }
    }
    const DType *dt = dtype_of(t->dtype);
    Py_ssize_t bytes = t->content.end - t->content.p;
    if (dt == NULL || !t->has_content || bytes == 0 || bytes % dt->itemsize)
        return -1;
    uint64_t count = 1, limit = (uint64_t)(bytes / dt->itemsize);
    for (int k = 0; k < t->rank; k++) {
        uint64_t d = (uint64_t)t->dims[k];
        if (d == 0 || count > limit / d)
            return -1;
        count *= d;
    }
    return count == limit ? 0 : -1;
}

/* One inputs entry as (alias, dtype, shape, offset), or NULL (no exception) outside the form. */
static PyObject *read_input(Reader entry, const uint8_t *base) {
    Reader key = {NULL, NULL}, value = {NULL, NULL};
    while (entry.p < entry.end) {
        uint64_t field;
        int wire;
        if (read_tag(&entry, &field, &wire) < 0 || wire != WIRE_LEN)
            return NULL;
        if (field == 1 && key.p == NULL) {
            if (read_len(&entry, &key) < 0)
                return NULL;
        } else if (field == 2 && value.p == NULL) {
            if (read_len(&entry, &value) < 0)
                return NULL;
        } else {
            return NULL;
        }
    }
    Tensor t;
    if (key.p == NULL || value.p == NULL || read_tensor(value, &t) < 0)
        return NULL;
    PyObject *alias = utf8(key);
    if (alias == NULL)
        return NULL;
    PyObject *shape = PyTuple_New(t.rank);
    if (shape == NULL) {
        Py_DECREF(alias);
        return NULL;
    }
    for (int k = 0; k < t.rank; k++) {
        PyObject *d = PyLong_FromLongLong(t.dims[k]);
        if (d == NULL) {
            Py_DECREF(alias);
            Py_DECREF(shape);
            return NULL;
        }
        PyTuple_SET_ITEM(shape, k, d);
    }
    return Py_BuildValue("(NKNn)", alias, (unsigned long long)t.dtype, shape,
                         (Py_ssize_t)(t.content.p - base));
}

static PyObject *read_request(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *base = view.buf;
    Reader r = {base, base + view.len}, spec = {NULL, NULL};
    PyObject *filters = PyList_New(0), *inputs = PyList_New(0), *answer = NULL;
    if (filters == NULL || inputs == NULL)
        goto done;
    while (r.p < r.end) {
        uint64_t field;
        int wire;
        Reader inner;
        PyObject *item;
        if (read_tag(&r, &field, &wire) < 0 || wire != WIRE_LEN || read_len(&r, &inner) < 0)
            goto outside;
        if (field == 1 && spec.p == NULL) {
            spec = inner;
            continue;
        }
        if (field == 2)
            item = read_input(inner, base);
        else if (field == 3)
            item = utf8(inner);
        else
            goto outside;
        if (item == NULL)
            goto outside;  /* (or out of memory: the general path meets it too) */
        int failed = PyList_Append(field == 2 ? inputs : filters, item);
        Py_DECREF(item);
        if (failed < 0)
            goto done;
    }
    if (spec.p == NULL)
        goto outside;
    answer = Py_BuildValue("(y#NN)", (const char *)spec.p, (Py_ssize_t)(spec.end - spec.p),
                           PyList_AsTuple(filters), PyList_AsTuple(inputs));
    goto done;
outside:
    PyErr_Clear();
    answer = Py_NewRef(Py_None);
done:
    Py_XDECREF(filters);
    Py_XDECREF(inputs);
    PyBuffer_Release(&view);
    return answer;
}

/* -- writing --------------------------------------------------------------------------------- */

static Py_ssize_t varint_size(uint64_t v) {
    Py_ssize_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_tag(uint8_t *p, int field, int wire) {
    return put_varint(p, ((uint64_t)field << 3) | (uint64_t)wire);
}

/* A value's integer for the varint encodings (signed ones sign-extended to 64 bits). */
static uint64_t int_value(const DType *dt, const uint8_t *p) {
    switch (dt->encoding) {
    case AS_BOOL:
        return *p != 0;
    case AS_SIGNED:
        switch (dt->itemsize) {
        case 1: { int8_t v; memcpy(&v, p, 1); return (uint64_t)(int64_t)v; }
        case 2: { int16_t v; memcpy(&v, p, 2); return (uint64_t)(int64_t)v; }
        case 4: { int32_t v; memcpy(&v, p, 4); return (uint64_t)(int64_t)v; }
        default: { int64_t v; memcpy(&v, p, 8); return (uint64_t)v; }
        }
    default:
        switch (dt->itemsize) {
        case 1: return *p;
        case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
        case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
        default: { uint64_t v; memcpy(&v, p, 8); return v; }
        }
    }
}

typedef struct {
    const uint8_t *name;
    Py_ssize_t name_len;
    const DType *dt;
    Py_buffer view;
    Py_ssize_t row_items;  /* values per row: the product of the dimensions after the 0th */
} Output;

/* The sizes of one output's map entry for a request's `rows` rows from row `first`. */
typedef struct {
    Py_ssize_t values, shape, tensor, entry;
} Sizes;

static Sizes entry_sizes(const Output *o, Py_ssize_t first, Py_ssize_t rows) {
    Sizes s;
    Py_ssize_t count = rows * o->row_items;
    if (o->dt->encoding == AS_FIXED) {
        s.values = count * o->dt->itemsize;
    } else {
        const uint8_t *p = (const uint8_t *)o->view.buf + first * o->row_items * o->dt->itemsize;
        s.values = 0;
        for (Py_ssize_t k = 0; k < count; k++, p += o->dt->itemsize)
            s.values += varint_size(int_value(o->dt, p));
    }
    s.shape = 0;
    for (int d = 0; d < o->view.ndim; d++) {
        Py_ssize_t size = d == 0 ? rows : o->view.shape[d];
        Py_ssize_t dim = size ? 1 + varint_size((uint64_t)size) : 0;
        s.shape += 1 + varint_size((uint64_t)dim) + dim;
    }
    Py_ssize_t field_tag = varint_size((uint64_t)o->dt->field << 3);
    s.tensor = 1 + varint_size((uint64_t)o->dt->dtype) + 1 + varint_size((uint64_t)s.shape) +
               s.shape + (count ? field_tag + varint_size((uint64_t)s.values) + s.values : 0);
    s.entry = 1 + varint_size((uint64_t)o->name_len) + o->name_len + 1 +
              varint_size((uint64_t)s.tensor) + s.tensor;
    return s;
}

static uint8_t *put_entry(uint8_t *p, const Output *o, Py_ssize_t first, Py_ssize_t rows,
                          const Sizes *s) {
    Py_ssize_t count = rows * o->row_items;
    const uint8_t *values = (const uint8_t *)o->view.buf + first * o->row_items * o->dt->itemsize;
    p = put_tag(p, 1, WIRE_LEN); /* PredictResponse.outputs: a map entry */
    p = put_varint(p, (uint64_t)s->entry);
    p = put_tag(p, 1, WIRE_LEN); /* its key */
    p = put_varint(p, (uint64_t)o->name_len);
    memcpy(p, o->name, o->name_len);
    p += o->name_len;
    p = put_tag(p, 2, WIRE_LEN); /* its value: the TensorProto */
    p = put_varint(p, (uint64_t)s->tensor);
    p = put_tag(p, 1, WIRE_VARINT); /* dtype */
    p = put_varint(p, (uint64_t)o->dt->dtype);
    p = put_tag(p, 2, WIRE_LEN); /* tensor_shape */
    p = put_varint(p, (uint64_t)s->shape);
    for (int d = 0; d < o->view.ndim; d++) {
        Py_ssize_t size = d == 0 ? rows : o->view.shape[d];
        p = put_tag(p, 2, WIRE_LEN); /* a dim */
        if (size) {
            p = put_varint(p, (uint64_t)(1 + varint_size((uint64_t)size)));
            p = put_tag(p, 1, WIRE_VARINT);
            p = put_varint(p, (uint64_t)size);
        } else {
            *p++ = 0;
        }
    }
    if (count == 0)
        return p;
    p = put_tag(p, o->dt->field, WIRE_LEN); /* the packed values */
    p = put_varint(p, (uint64_t)s->values);
    if (o->dt->encoding == AS_FIXED) {
        memcpy(p, values, s->values);
        return p + s->values;
    }
    for (Py_ssize_t k = 0; k < count; k++, values += o->dt->itemsize)
        p = put_varint(p, int_value(o->dt, values));
    return p;
}

static void release(Output *outputs, Py_ssize_t n) {
    for (Py_ssize_t k = 0; k < n; k++)
        PyBuffer_Release(&outputs[k].view);
    PyMem_Free(outputs);
}

/* Check and take the buffers of `items` ((name, dtype, values) each); -1 with an exception. */
static int take_outputs(PyObject *items, Py_ssize_t total_rows, Output *outputs,
                        Py_ssize_t *taken) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    for (Py_ssize_t k = 0; k < n; k++) {
        Output *o = &outputs[k];
        PyObject *values;
        unsigned long long dtype;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, k), "y#KO", &o->name, &o->name_len,
                              &dtype, &values))
            return -1;
        o->dt = dtype_of(dtype);
        if (o->dt == NULL || o->name_len == 0) {
            PyErr_Format(PyExc_ValueError, "output %zd: %s", k,
                         o->name_len ? "a dtype write_responses does not write" : "no name");
            return -1;
        }
        if (PyObject_GetBuffer(values, &o->view, PyBUF_C_CONTIGUOUS) < 0)
            return -1;
        (*taken)++;
        if (o->view.itemsize != o->dt->itemsize || o->view.ndim < 1 ||
            o->view.shape[0] != total_rows) {
            PyErr_Format(PyExc_ValueError,
                         "output %zd: values of itemsize %zd and rank %d with %zd rows, not "
                         "itemsize %d and %zd rows", k, o->view.itemsize, o->view.ndim,
                         o->view.ndim ? o->view.shape[0] : (Py_ssize_t)0, o->dt->itemsize,
                         total_rows);
            return -1;
        }
        o->row_items = 1;
        for (int d = 1; d < o->view.ndim; d++)
            o->row_items *= o->view.shape[d];
    }
    return 0;
}

static PyObject *write_responses(PyObject *self, PyObject *args) {
    const char *spec;
    Py_ssize_t spec_len;
    PyObject *items_arg, *rows_arg;
    if (!PyArg_ParseTuple(args, "y#OO", &spec, &spec_len, &items_arg, &rows_arg))
        return NULL;
    PyObject *items = PySequence_Fast(items_arg, "outputs must be a sequence");
    PyObject *rows = items ? PySequence_Fast(rows_arg, "rows must be a sequence") : NULL;
    Output *outputs = NULL;
    Py_ssize_t taken = 0, requests = 0, *counts = NULL; /* counts: rows[k] as C integers */
    PyObject *answers = NULL;
    if (rows == NULL)
        goto done;
    requests = PySequence_Fast_GET_SIZE(rows);
    Py_ssize_t total_rows = 0, n_outputs = PySequence_Fast_GET_SIZE(items);
    counts = PyMem_Malloc((requests ? requests : 1) * sizeof *counts);
    if (counts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < requests; k++) {
        Py_ssize_t n = counts[k] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(rows, k));
        if (n < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "rows must not be negative");
            goto done;
        }
        total_rows += n;
    }
    outputs = PyMem_Calloc(n_outputs ? n_outputs : 1, sizeof(Output));
    if (outputs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (take_outputs(items, total_rows, outputs, &taken) < 0)
        goto done;
    answers = PyList_New(requests);
    if (answers == NULL)
        goto done;
    Sizes sizes[64], *many = n_outputs > 64 ? PyMem_Malloc(n_outputs * sizeof(Sizes)) : sizes;
    if (many == NULL) {
        PyErr_NoMemory();
        Py_CLEAR(answers);
        goto done;
    }
    Py_ssize_t first = 0;
    for (Py_ssize_t k = 0; k < requests; k++) {
        Py_ssize_t n = counts[k], total = 0;
        for (Py_ssize_t j = 0; j < n_outputs; j++) {
            many[j] = entry_sizes(&outputs[j], first, n);
            total += 1 + varint_size((uint64_t)many[j].entry) + many[j].entry;
        }
        total += 1 + varint_size((uint64_t)spec_len) + spec_len;
        PyObject *answer = PyBytes_FromStringAndSize(NULL, total);
        if (answer == NULL) {
            Py_CLEAR(answers);
            break;
        }
        uint8_t *p = (uint8_t *)PyBytes_AS_STRING(answer);
        for (Py_ssize_t j = 0; j < n_outputs; j++)
            p = put_entry(p, &outputs[j], first, n, &many[j]);
        p = put_tag(p, 2, WIRE_LEN); /* PredictResponse.model_spec */
        p = put_varint(p, (uint64_t)spec_len);
        memcpy(p, spec, spec_len);
        PyList_SET_ITEM(answers, k, answer);
        first += n;
    }
    if (many != sizes)
        PyMem_Free(many);
done:
    if (outputs != NULL)
        release(outputs, taken);
    PyMem_Free(counts);
    Py_XDECREF(items);
    Py_XDECREF(rows);
    return answers;
}

static PyMethodDef methods[] = {
    {"read_request", read_request, METH_O,
     "read_request(raw) -> (spec, output_filter, inputs) | None: a dense PredictRequest's "
     "fields, or None to leave the request to protobuf's parser."},
    {"write_responses", write_responses, METH_VARARGS,
     "write_responses(spec, outputs, rows) -> list[bytes]: serialized PredictResponses for "
     "consecutive requests of rows[k] rows of outputs [(name, dtype, values)], sorted by name."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_predict_wire",
                                    "Dense Predict calls' protobuf wire format, in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__predict_wire(void) { return PyModule_Create(&module); }
