/* One finished span in its OTLP protobuf encoding, in C: the optional accelerator of
 * otlp_encoding.encode_span (same bytes; that module's Python is the reference and the fallback).
 *
 * Why C: a traced request encodes two spans or more, and in Python that was a third of what tracing
 * adds to a request (issue 17's budget: 25 us per request). Here a span's fields are read off the
 * object and written into one buffer.
 *
 * encode_span(span) -> bytes: the `spans` field (tag 2) of a ScopeSpans message. What this does not
 * handle (an attribute value of another type than str, bool, int, float, bytes, None, or an exact
 * list, tuple or dict of those; a key that is not a str; a string that is not valid UTF-8) goes to
 * the fallback, `set_fallback(func)`: the Python encoder, which encodes it or raises its own error.
 *
 * Field numbers are opentelemetry-proto's (trace/v1/trace.proto, common/v1/common.proto).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#ifndef Py_T_OBJECT_EX  /* before 3.12: structmember.h's names */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif
#include <stdint.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    char stack[512];
} Buf;

static void buf_init(Buf *b) {
    b->data = b->stack;
    b->len = 0;
    b->cap = (Py_ssize_t)sizeof(b->stack);
}

static void buf_free(Buf *b) {
    if (b->data != b->stack) {
        PyMem_Free(b->data);
    }
}

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    char *data = PyMem_Malloc((size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(data, b->data, (size_t)b->len);
    buf_free(b);
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const void *src, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static int varint_len(uint64_t n) {
    int len = 1;
    while (n >= 0x80) {
        n >>= 7;
        len++;
    }
    return len;
}

static char *write_varint(char *out, uint64_t n) {
    while (n >= 0x80) {
        *out++ = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *out++ = (char)n;
    return out;
}

static int put_tag_varint(Buf *b, unsigned char tag, uint64_t n) {
    if (buf_reserve(b, 11) < 0) {
        return -1;
    }
    b->data[b->len++] = (char)tag;
    b->len = write_varint(b->data + b->len, n) - b->data;
    return 0;
}

/* A length-delimited field: its tag, the length, the bytes. */
static int put_field(Buf *b, unsigned char tag, const char *src, Py_ssize_t n) {
    if (buf_reserve(b, 11 + n) < 0) {
        return -1;
    }
    b->data[b->len++] = (char)tag;
    b->len = write_varint(b->data + b->len, (uint64_t)n) - b->data;
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static int put_fixed64(Buf *b, unsigned char tag, uint64_t n) {
    if (buf_reserve(b, 9) < 0) {
        return -1;
    }
    char *out = b->data + b->len;
    *out++ = (char)tag;
    for (int i = 0; i < 8; i++) {
        *out++ = (char)((n >> (8 * i)) & 0xFF);
    }
    b->len += 9;
    return 0;
}

static int put_be64(Buf *b, const char *head, uint64_t n) {
    if (buf_reserve(b, 10) < 0) {
        return -1;
    }
    char *out = b->data + b->len;
    *out++ = head[0];
    *out++ = head[1];
    for (int i = 7; i >= 0; i--) {
        *out++ = (char)((n >> (8 * i)) & 0xFF);
    }
    b->len += 10;
    return 0;
}

/* Result codes of the encoders below: done, a Python error is set, or the fallback must do it. */
enum { DONE = 0, FAILED = -1, FALLBACK = 1 };

/* The end of a nested message written into `inner` (with result `rc`): appended to `b` as the
 * length-delimited field `tag` when it is DONE, freed either way. */
static int end_nested(Buf *b, unsigned char tag, Buf *inner, int rc) {
    if (rc == DONE && put_field(b, tag, inner->data, inner->len) < 0) {
        rc = FAILED;
    }
    buf_free(inner);
    return rc;
}

static int utf8(PyObject *s, const char **data, Py_ssize_t *n) {
    *data = PyUnicode_AsUTF8AndSize(s, n);
    if (*data == NULL) {
        PyErr_Clear();  /* lone surrogates: the Python encoder raises its own UnicodeEncodeError */
        return FALLBACK;
    }
    return DONE;
}

static int any_value(Buf *b, PyObject *value, int depth);

/* A KeyValue message's fields (key, then value). */
static int key_value(Buf *b, PyObject *key, PyObject *value, int depth) {
    const char *k;
    Py_ssize_t kn;
    if (!PyUnicode_CheckExact(key)) {
        return FALLBACK;
    }
    int rc = utf8(key, &k, &kn);
    if (rc != DONE) {
        return rc;
    }
    if (put_field(b, 0x0a, k, kn) < 0) {
        return FAILED;
    }
    Buf inner;
    buf_init(&inner);
    return end_nested(b, 0x12, &inner, any_value(&inner, value, depth));
}

/* An AnyValue message's fields; lists, tuples and dicts nest (ArrayValue, KeyValueList). */
static int any_value(Buf *b, PyObject *value, int depth) {
    if (depth > 32) {
        return FALLBACK;
    }
    if (PyBool_Check(value)) {
        return put_tag_varint(b, 0x10, value == Py_True) < 0 ? FAILED : DONE;
    }
    if (PyUnicode_CheckExact(value)) {
        const char *s;
        Py_ssize_t n;
        int rc = utf8(value, &s, &n);
        if (rc != DONE) {
            return rc;
        }
        return put_field(b, 0x0a, s, n) < 0 ? FAILED : DONE;
    }
    if (PyLong_CheckExact(value)) {
        uint64_t n = (uint64_t)PyLong_AsUnsignedLongLongMask(value);  /* two's complement, as int64 is sent */
        if (n == (uint64_t)-1 && PyErr_Occurred()) {
            return FAILED;
        }
        return put_tag_varint(b, 0x18, n) < 0 ? FAILED : DONE;
    }
    if (PyFloat_CheckExact(value)) {
        double d = PyFloat_AS_DOUBLE(value);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return put_fixed64(b, 0x21, bits) < 0 ? FAILED : DONE;
    }
    if (PyBytes_CheckExact(value)) {
        return put_field(b, 0x3a, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)) < 0 ? FAILED : DONE;
    }
    if (value == Py_None) {
        return DONE;
    }
    int rc = DONE;
    Buf inner;
    if (PyList_CheckExact(value) || PyTuple_CheckExact(value)) {
        buf_init(&inner);
        Py_ssize_t n = PySequence_Fast_GET_SIZE(value);
        PyObject **items = PySequence_Fast_ITEMS(value);
        for (Py_ssize_t i = 0; i < n && rc == DONE; i++) {
            Buf item;
            buf_init(&item);
            rc = end_nested(&inner, 0x0a, &item, any_value(&item, items[i], depth + 1));
        }
        return end_nested(b, 0x2a, &inner, rc);
    }
    if (PyDict_CheckExact(value)) {
        buf_init(&inner);
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (rc == DONE && PyDict_Next(value, &pos, &k, &v)) {
            Buf kv;
            buf_init(&kv);
            rc = end_nested(&inner, 0x0a, &kv, key_value(&kv, k, v, depth + 1));
        }
        return end_nested(b, 0x32, &inner, rc);
    }
    /* another type, subclasses of these included (they may override what the Python encoder calls):
     * the Python encoder's rules (other sequences and mappings, or its TypeError) */
    return FALLBACK;
}

static PyObject *fallback = NULL;
/* The fields read off spans, their traces and presets, and their names (interned at import). */
enum { F_TRACE, F_ENCODED_IDS, F_TRACE_ID, F_TRACESTATE, F_SPAN_ID, F_PARENT_ID, F_NAME, F_KIND, F_START_NS, F_END_NS, F_PRESET, F_ENCODED, F_ATTRIBUTES, F_ERROR, F_REMOTE_PARENT, N_FIELDS };
static const char *const field_text[N_FIELDS] = {"trace", "encoded_ids", "trace_id", "tracestate", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns", "preset", "encoded", "attributes", "error", "remote_parent"};
static PyObject *field_names[N_FIELDS];

/* Where a class keeps each field: the offset of its __slots__ member, or -1 (a property, a class
 * attribute, no such field: read by PyObject_GetAttr). Made once per class and kept while the class is
 * unchanged (its version tag, which Python renews whenever the class or a base is modified). */
typedef struct {
    PyTypeObject *type;  /* a strong reference, so the address cannot be reused by another class */
    unsigned int version;
    Py_ssize_t offset[N_FIELDS];
} Layout;

#define N_LAYOUTS 8
static Layout layouts[N_LAYOUTS];
static int next_layout = 0;

static const Layout *layout_of(PyTypeObject *type) {
    Layout *entry = NULL;
    for (int i = 0; i < N_LAYOUTS; i++) {
        if (layouts[i].type == type) {
            entry = &layouts[i];
            if ((type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) && entry->version == type->tp_version_tag) {
                return entry;
            }
            break;  /* the class changed: looked at again, in the same entry */
        }
    }
    /* Only the generic attribute lookup reads a slot member straight off the object (no __getattribute__
     * or __getattr__ of the class's own); data descriptors (slot members) come before an instance dict. */
    if (type->tp_getattro != PyObject_GenericGetAttr) {
        return NULL;
    }
    Py_ssize_t offset[N_FIELDS];
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *found = _PyType_Lookup(type, field_names[f]);  /* borrowed, along the MRO */
        offset[f] = -1;
        if (found != NULL && Py_IS_TYPE(found, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)found)->d_member;
            if (member->type == Py_T_OBJECT_EX && member->flags == 0) {
                offset[f] = member->offset;
            }
        }
    }
    if (!(type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {  /* no tag to tell a change by: never kept */
        return NULL;
    }
    if (entry == NULL) {
        entry = &layouts[next_layout];
        next_layout = (next_layout + 1) % N_LAYOUTS;
        Py_XSETREF(entry->type, (PyTypeObject *)Py_NewRef(type));
    }
    entry->version = type->tp_version_tag;
    memcpy(entry->offset, offset, sizeof offset);
    return entry;
}

/* The field `f` of `obj` (a new reference), as PyObject_GetAttr would give it; NULL with its error. */
static PyObject *get(PyObject *obj, int f) {
    const Layout *layout = layout_of(Py_TYPE(obj));
    if (layout != NULL && layout->offset[f] >= 0) {
        PyObject *value = *(PyObject **)((char *)obj + layout->offset[f]);
        if (value != NULL) {
            return Py_NewRef(value);
        }  /* an unset slot: PyObject_GetAttr raises its AttributeError */
    }
    return PyObject_GetAttr(obj, field_names[f]);
}

/* A trace id's high and low 64 bits: DONE, FAILED (a Python error), or FALLBACK (not an exact int of
 * 0..2^128-1). */
static int u128_halves(PyObject *value, uint64_t *hi, uint64_t *lo) {
    if (!PyLong_CheckExact(value) || _PyLong_Sign(value) < 0 || _PyLong_NumBits(value) > 128) {
        return FALLBACK;
    }
    PyObject *shift = PyLong_FromLong(64);
    PyObject *high = shift != NULL ? PyNumber_Rshift(value, shift) : NULL;
    Py_XDECREF(shift);
    if (high == NULL) {
        return FAILED;
    }
    *hi = (uint64_t)PyLong_AsUnsignedLongLongMask(high);
    *lo = (uint64_t)PyLong_AsUnsignedLongLongMask(value);
    Py_DECREF(high);
    return DONE;
}

/* The trace id (and trace state) fields every span of a trace starts with, made once per trace (and
 * kept on it, `encoded_ids`): DONE with *out set, FAILED, or FALLBACK for fields of other types. */
static int trace_ids(PyObject *trace, PyObject **out) {
    PyObject *ids = get(trace, F_ENCODED_IDS);
    if (ids == NULL) {
        return FAILED;
    }
    if (ids != Py_None) {
        if (!PyBytes_CheckExact(ids)) {
            Py_DECREF(ids);
            return FALLBACK;
        }
        *out = ids;
        return DONE;
    }
    Py_DECREF(ids);
    PyObject *trace_id = get(trace, F_TRACE_ID);
    if (trace_id == NULL) {
        return FAILED;
    }
    unsigned char raw[16];
    uint64_t hi, lo;
    int rc = u128_halves(trace_id, &hi, &lo);  /* FALLBACK: the Python encoder's error */
    if (rc == DONE) {  /* 128 bits, big-endian: the high and the low half */
        for (int i = 0; i < 8; i++) {
            raw[i] = (unsigned char)(hi >> (56 - 8 * i));
            raw[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
        }
    }
    Py_DECREF(trace_id);
    if (rc != DONE) {
        return rc;
    }
    PyObject *state = get(trace, F_TRACESTATE);
    if (state == NULL) {
        return FAILED;
    }
    const char *text = NULL;
    Py_ssize_t n = 0;
    if (state != Py_None) {
        if (!PyUnicode_CheckExact(state)) {
            rc = FALLBACK;
        } else {
            rc = utf8(state, &text, &n);
        }
    }
    if (rc != DONE) {
        Py_DECREF(state);
        return rc;
    }
    Buf b;
    buf_init(&b);
    int failed = put_field(&b, 0x0a, (const char *)raw, 16) < 0 || (n > 0 && put_field(&b, 0x1a, text, n) < 0);
    Py_DECREF(state);  /* after its UTF-8 (which it owns) was copied */
    if (failed) {
        buf_free(&b);
        return FAILED;
    }
    ids = PyBytes_FromStringAndSize(b.data, b.len);
    buf_free(&b);
    if (ids == NULL) {
        return FAILED;
    }
    if (PyObject_SetAttr(trace, field_names[F_ENCODED_IDS], ids) < 0) {
        Py_DECREF(ids);
        return FAILED;
    }
    *out = ids;
    return DONE;
}

/* `value` as an exact int of 0..2^64-1: DONE, or FALLBACK (another type, out of range). */
static int as_u64(PyObject *value, uint64_t *out) {
    if (!PyLong_CheckExact(value)) {
        return FALLBACK;
    }
    /* The sign and the bit count first, then the digits read without the general converter's checks
     * (PyLong_AsUnsignedLongLong goes through _PyLong_AsByteArray: most of this encoder's cost for the
     * ids and times of a span, which are all of 33 to 64 bits). */
    if (_PyLong_Sign(value) < 0) {
        return FALLBACK;
    }
    size_t bits = _PyLong_NumBits(value);
    if (bits == (size_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return FALLBACK;
    }
    if (bits > 64) {
        return FALLBACK;
    }
    *out = (uint64_t)PyLong_AsUnsignedLongLongMask(value);
    return DONE;
}

/* The field `f` of `obj`, as_u64: DONE, FAILED (no such attribute), or FALLBACK. */
static int get_u64(PyObject *obj, int f, uint64_t *out) {
    PyObject *value = get(obj, f);
    if (value == NULL) {
        return FAILED;
    }
    int rc = as_u64(value, out);
    Py_DECREF(value);
    return rc;
}

static const char FLAGS_LOCAL[] = {(char)0x85, 0x01, 0x00, 0x01, 0x00, 0x00};   /* HAS_IS_REMOTE */
static const char FLAGS_REMOTE[] = {(char)0x85, 0x01, 0x00, 0x03, 0x00, 0x00};  /* ... | IS_REMOTE */

/* The span's message fields into `b` (DONE, FAILED or FALLBACK). */
static int span_body(Buf *b, PyObject *span) {
    int rc = FAILED;
    PyObject *trace = NULL, *ids = NULL, *parent = NULL, *name = NULL, *kind = NULL, *preset = NULL,
             *encoded = NULL, *attributes = NULL, *error = NULL, *remote = NULL;
    uint64_t span_id, parent_id, start_ns, end_ns;
    const char *s;
    Py_ssize_t n;

    if ((trace = get(span, F_TRACE)) == NULL) goto done;
    int has_trace = trace == Py_None ? 0 : PyObject_IsTrue(trace);  /* `span.trace or span`, as the Python one */
    if (has_trace < 0) goto done;
    if ((rc = trace_ids(has_trace ? trace : span, &ids)) != DONE) goto done;  /* a request's own span has none */
    rc = FAILED;
    if (put(b, PyBytes_AS_STRING(ids), PyBytes_GET_SIZE(ids)) < 0) goto done;
    if ((rc = get_u64(span, F_SPAN_ID, &span_id)) != DONE) goto done;
    rc = FAILED;
    if (put_be64(b, "\x12\x08", span_id) < 0) goto done;
    if ((parent = get(span, F_PARENT_ID)) == NULL) goto done;
    if (parent != Py_None) {
        if ((rc = as_u64(parent, &parent_id)) != DONE) goto done;
        rc = FAILED;
        if (put_be64(b, "\x22\x08", parent_id) < 0) goto done;
    }
    if ((name = get(span, F_NAME)) == NULL) goto done;
    if (!PyUnicode_CheckExact(name)) { rc = FALLBACK; goto done; }
    if ((rc = utf8(name, &s, &n)) != DONE) goto done;
    rc = FAILED;
    if (put_field(b, 0x2a, s, n) < 0) goto done;
    if ((kind = get(span, F_KIND)) == NULL) goto done;
    long kind_value = PyLong_CheckExact(kind) ? PyLong_AsLong(kind) : -1;
    if (kind_value < 0 || kind_value > 127) {  /* the Python encoder writes kinds of one byte only */
        PyErr_Clear();
        rc = FALLBACK;
        goto done;
    }
    if (put_tag_varint(b, 0x30, (uint64_t)kind_value) < 0) goto done;
    if ((rc = get_u64(span, F_START_NS, &start_ns)) != DONE || (rc = get_u64(span, F_END_NS, &end_ns)) != DONE) {
        goto done;
    }
    rc = FAILED;
    if (put_fixed64(b, 0x39, start_ns) < 0 || put_fixed64(b, 0x41, end_ns) < 0) goto done;
    if ((preset = get(span, F_PRESET)) == NULL) goto done;
    if (preset != Py_None) {
        if ((encoded = get(preset, F_ENCODED)) == NULL) goto done;
        if (!PyBytes_CheckExact(encoded)) { rc = FALLBACK; goto done; }
        if (put(b, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)) < 0) goto done;
    }
    if ((attributes = get(span, F_ATTRIBUTES)) == NULL) goto done;
    if (!PyDict_CheckExact(attributes)) { rc = FALLBACK; goto done; }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attributes, &pos, &key, &value)) {
        Buf kv;
        buf_init(&kv);
        int kv_rc = end_nested(b, 0x4a, &kv, key_value(&kv, key, value, 0));
        if (kv_rc != DONE) { rc = kv_rc; goto done; }
    }
    if ((error = get(span, F_ERROR)) == NULL) goto done;
    if (error == Py_None) {
        if (put(b, "\x7a\x00", 2) < 0) goto done;
    } else {
        if (!PyUnicode_CheckExact(error)) { rc = FALLBACK; goto done; }
        if ((rc = utf8(error, &s, &n)) != DONE) goto done;
        rc = FAILED;
        Buf status;
        buf_init(&status);
        int written = put_field(&status, 0x12, s, n) < 0 || put(&status, "\x18\x02", 2) < 0  /* message, ERROR */
                      ? FAILED : DONE;
        if (end_nested(b, 0x7a, &status, written) != DONE) goto done;
    }
    if ((remote = get(span, F_REMOTE_PARENT)) == NULL) goto done;
    int is_remote = PyObject_IsTrue(remote);
    if (is_remote < 0) goto done;
    if (put(b, is_remote ? FLAGS_REMOTE : FLAGS_LOCAL, 6) < 0) goto done;
    rc = DONE;
done:
    Py_XDECREF(trace);
    Py_XDECREF(ids);
    Py_XDECREF(parent);
    Py_XDECREF(name);
    Py_XDECREF(kind);
    Py_XDECREF(preset);
    Py_XDECREF(encoded);
    Py_XDECREF(attributes);
    Py_XDECREF(error);
    Py_XDECREF(remote);
    return rc;
}

static PyObject *encode_span(PyObject *Py_UNUSED(module), PyObject *span) {
    Buf b;
    buf_init(&b);
    int rc = span_body(&b, span);
    PyObject *out = NULL;
    if (rc == DONE) {
        int head = 1 + varint_len((uint64_t)b.len);
        out = PyBytes_FromStringAndSize(NULL, head + b.len);
        if (out != NULL) {
            char *dst = PyBytes_AS_STRING(out);
            *dst = 0x12;
            write_varint(dst + 1, (uint64_t)b.len);
            memcpy(dst + head, b.data, (size_t)b.len);
        }
    }
    buf_free(&b);
    if (rc == FALLBACK) {
        if (fallback == NULL) {
            PyErr_SetString(PyExc_TypeError, "encode_span: a span this encoder cannot write, and no fallback set");
            return NULL;
        }
        PyObject *func = Py_NewRef(fallback);  /* held across the call: the fallback may replace itself */
        out = PyObject_CallOneArg(func, span);
        Py_DECREF(func);
        return out;
    }
    return out;
}

/* The `traceparent` header line continuing a trace at a span (trace_context.traceparent_line, whose
 * Python is the reference): formatting a 128-bit int in hex is most of what Python pays for it. */
static void hex16(char *out, uint64_t n) {  /* 16 lowercase hex digits */
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[n & 0xF];
        n >>= 4;
    }
}

static PyObject *traceparent(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "traceparent(trace_id, span_id, sampled)");
        return NULL;
    }
    char line[] = "traceparent: 00-00000000000000000000000000000000-0000000000000000-00\r\n";
    int sampled = PyObject_IsTrue(args[2]);
    if (sampled < 0) {
        return NULL;
    }
    uint64_t hi, lo, span_id;
    int rc = u128_halves(args[0], &hi, &lo);
    if (rc == FAILED) {
        return NULL;
    }
    if (rc == FALLBACK || as_u64(args[1], &span_id) != DONE) {
        PyErr_SetString(PyExc_ValueError, "traceparent: ids must be ints of 128 and 64 bits");
        return NULL;
    }
    hex16(line + 16, hi);
    hex16(line + 32, lo);
    hex16(line + 49, span_id);
    if (sampled) {
        line[67] = '1';
    }
    return PyBytes_FromStringAndSize(line, (Py_ssize_t)sizeof line - 1);
}

static PyObject *set_fallback(PyObject *Py_UNUSED(module), PyObject *func) {
    if (!PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "set_fallback: the fallback must be callable");
        return NULL;
    }
    Py_XSETREF(fallback, Py_NewRef(func));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode_span", encode_span, METH_O, "One span as the `spans` field of a ScopeSpans message (OTLP protobuf)."},
    {"set_fallback", set_fallback, METH_O, "The encoder of the spans this one cannot write."},
    {"traceparent", (PyCFunction)(void (*)(void))traceparent, METH_FASTCALL,
     "The `traceparent` header line continuing trace `trace_id` at span `span_id`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_otlp_span", "OTLP span encoding in C (see otlp_encoding.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp_span(void) {
    for (int f = 0; f < N_FIELDS; f++) {
        if ((field_names[f] = PyUnicode_InternFromString(field_text[f])) == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module_def);
}
