/* The plain-frames test of an upstream read, in C: the optional accelerator of the path through
 * sse.py's SSEDecoder fast path and providers/base.py's `_plain_chunks` (that Python is the reference
 * and the fallback).
 *
 * Why C: a read of OpenAI chunk frames went through about nine scans of its bytes in Python (the
 * decoder's rfind, counts and split, a UTF-8 decode into one str per frame, then the checks that no
 * frame needs `convert`): ~50k of the event loop's ~810k instructions for a 12-chunk stream
 * (issue 14). Here it is one pass of memchr/memmem.
 *
 * plain_frames(piece, limit) -> (payloads, done) | None
 *     When `piece` (one network read, starting at an event) is nothing but complete frames
 *     `data: {...}\n\n`, perhaps closed by `data: [DONE]\n\n`: the JSON payloads as bytes, and
 *     whether the [DONE] frame closed it. None for anything else, and the caller then takes the
 *     general path: a piece longer than `limit`, any CR, a frame with another field or several
 *     lines, a payload that does not open an object, [DONE] before the last frame, a partial frame
 *     at the end, or bytes that may hold an `"error"` key (any `\u` escape included, since one can
 *     spell that key).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static const char PREFIX[] = "data: ";
#define PREFIX_LEN 6
static const char DONE_PAYLOAD[] = "[DONE]";
#define DONE_LEN 6
static const char ERROR_KEY[] = "\"error\"";
#define ERROR_LEN 7

/* Whether the bytes may need the general path: a CR, a `\u` escape or an `"error"` string. */
static int needs_general_path(const char *p, Py_ssize_t n) {
    if (memchr(p, '\r', (size_t)n) != NULL) {
        return 1;
    }
    const char *end = p + n;
    for (const char *s = p; s < end && (s = memchr(s, '\\', (size_t)(end - s))) != NULL; s++) {
        if (s + 1 < end && s[1] == 'u') {
            return 1;
        }
    }
    return memmem(p, (size_t)n, ERROR_KEY, ERROR_LEN) != NULL;
}

static PyObject *plain_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "plain_frames(piece: bytes, limit: int)");
        return NULL;
    }
    int overflow = 0;
    long long given = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (given == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* (a limit beyond what a piece can be is no limit; below zero, every piece is over it) */
    Py_ssize_t limit = overflow > 0 || given > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : overflow < 0 || given < 0 ? -1
                                                                                                : (Py_ssize_t)given;
    const char *p = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    if (n > limit || n < PREFIX_LEN + 3 || memcmp(p, PREFIX, PREFIX_LEN) != 0 || p[n - 1] != '\n' ||
        p[n - 2] != '\n' || needs_general_path(p, n)) {
        Py_RETURN_NONE;
    }
    PyObject *payloads = PyList_New(0);
    if (payloads == NULL) {
        return NULL;
    }
    int done = 0;
    Py_ssize_t pos = PREFIX_LEN; /* where the current frame's payload starts */
    for (;;) {
        const char *nl = memchr(p + pos, '\n', (size_t)(n - pos));
        /* (found: p ends with "\n\n") The payload is one line: its end must be a blank line. */
        Py_ssize_t stop = nl - p;
        if (p[stop + 1] != '\n' || stop == pos) {
            goto general;
        }
        Py_ssize_t next = stop + 2;
        if (p[pos] == '{') {
            PyObject *payload = PyBytes_FromStringAndSize(p + pos, stop - pos);
            if (payload == NULL || PyList_Append(payloads, payload) < 0) {
                Py_XDECREF(payload);
                Py_DECREF(payloads);
                return NULL;
            }
            Py_DECREF(payload);
        } else if (stop - pos == DONE_LEN && memcmp(p + pos, DONE_PAYLOAD, DONE_LEN) == 0 && next == n) {
            done = 1; /* (only as the last frame) */
        } else {
            goto general;
        }
        if (next == n) {
            break;
        }
        if (n - next < PREFIX_LEN + 3 || memcmp(p + next, PREFIX, PREFIX_LEN) != 0) {
            goto general;
        }
        pos = next + PREFIX_LEN;
    }
    return Py_BuildValue("(NO)", payloads, done ? Py_True : Py_False);
general:
    Py_DECREF(payloads);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"plain_frames", (PyCFunction)(void (*)(void))plain_frames, METH_FASTCALL,
     "(JSON payloads, closed by [DONE]) of a read of only plain `data: {...}` frames; else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_sse_frames", "The plain-frames test of an SSE read, in C (see providers/base.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sse_frames(void) { return PyModule_Create(&module_def); }
