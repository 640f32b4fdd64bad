/* What the stream relay reads of every batch of OpenAI chunks, in C: the optional accelerator of
 * relay.py's `_content_chars`, `_has_first_token`, the usage check and the OpenAI encoder's id check
 * (that module's Python is the reference and the fallback).
 *
 * Why C: walking each chunk's dicts in Python (choices, delta, content, tool calls) was the largest
 * part of what a streamed request costs beyond a plain one (issue 14: ~47k of the event loop's
 * ~900k instructions for a 12-chunk stream). Here it is a few dict lookups per chunk.
 *
 * content_facts(batch, reasons=None) -> (chars, first_token, has_usage) | None
 *     chars: characters of generated content (text, content, reasoning_content, refusal, tool call
 *     names and arguments), as _content_chars counts them; first_token: a chunk carries content,
 *     text, a refusal or a tool call (_has_first_token); has_usage: a chunk's `usage` is not null.
 *     With a list `reasons` (a traced attempt's), each choice's non-empty finish_reason is appended
 *     to it, as _content_chars does. None when a value is of a shape this does not take as it is
 *     (anything but exact dicts, lists and strs where the chunk format has them): the caller then
 *     runs the Python, which counts it or raises its own error. `reasons` is left as it was then,
 *     and when a lookup raises.
 * shared_id(batch, allow_usage) -> str | None
 *     The id every chunk of the batch has, when all are the same exact str and, unless allow_usage,
 *     no chunk's usage is set; else None (the caller then looks at each chunk itself).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *k_usage, *k_choices, *k_text, *k_delta, *k_content, *k_reasoning_content, *k_refusal,
    *k_tool_calls, *k_function, *k_name, *k_arguments, *k_id, *k_finish_reason;

#define BAIL 2  /* a value this does not take: the Python decides */
#define FAIL 3  /* a Python error is set */

/* `d[key]` (borrowed), or NULL when missing; *status FAIL when the lookup raised. */
static PyObject *lookup(PyObject *d, PyObject *key, int *status) {
    PyObject *value = PyDict_GetItemWithError(d, key);
    if (value == NULL && PyErr_Occurred()) {
        *status = FAIL;
    }
    return value;
}

/* A str field: its length added to *chars. 1: non-empty; 0: missing, null or empty; BAIL or FAIL. */
static int add_str(PyObject *d, PyObject *key, Py_ssize_t *chars) {
    int status = 0;
    PyObject *value = lookup(d, key, &status);
    if (status) {
        return status;
    }
    if (value == NULL || value == Py_None) {
        return 0;
    }
    if (!PyUnicode_CheckExact(value)) {
        return BAIL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    *chars += n;
    return n > 0;
}

static int delta_facts(PyObject *delta, Py_ssize_t *chars, int *first) {
    int r;
    if ((r = add_str(delta, k_content, chars)) > 1) {
        return r;
    }
    *first |= r;
    if ((r = add_str(delta, k_reasoning_content, chars)) > 1) {  /* counted; not a first token */
        return r;
    }
    if ((r = add_str(delta, k_refusal, chars)) > 1) {
        return r;
    }
    *first |= r;
    int status = 0;
    PyObject *calls = lookup(delta, k_tool_calls, &status);
    if (status) {
        return status;
    }
    if (calls == NULL || calls == Py_None) {
        return 0;
    }
    if (!PyList_CheckExact(calls)) {
        return BAIL;
    }
    Py_ssize_t n = PyList_GET_SIZE(calls);
    if (n > 0) {
        *first = 1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *call = PyList_GET_ITEM(calls, i);
        if (!PyDict_CheckExact(call)) {
            return BAIL;
        }
        PyObject *function = lookup(call, k_function, &status);
        if (status) {
            return status;
        }
        if (function == NULL || function == Py_None) {
            continue;
        }
        if (!PyDict_CheckExact(function)) {
            return BAIL;
        }
        if ((r = add_str(function, k_name, chars)) > 1 || (r = add_str(function, k_arguments, chars)) > 1) {
            return r;
        }
    }
    return 0;
}

static int choice_facts(PyObject *choice, Py_ssize_t *chars, int *first, PyObject *reasons) {
    if (!PyDict_CheckExact(choice)) {
        return BAIL;
    }
    int status = 0;
    if (reasons != NULL) {
        PyObject *reason = lookup(choice, k_finish_reason, &status);
        if (status) {
            return status;
        }
        if (reason != NULL && reason != Py_None) {
            if (!PyUnicode_CheckExact(reason)) {
                return BAIL;  /* (its truth is the Python's to judge) */
            }
            if (PyUnicode_GET_LENGTH(reason) > 0 && PyList_Append(reasons, reason) < 0) {
                return FAIL;
            }
        }
    }
    int r = add_str(choice, k_text, chars);
    if (r > 1) {
        return r;
    }
    *first |= r;
    PyObject *delta = lookup(choice, k_delta, &status);
    if (status) {
        return status;
    }
    if (delta == NULL || delta == Py_None) {
        return 0;
    }
    if (!PyDict_CheckExact(delta)) {
        return BAIL;
    }
    return PyDict_GET_SIZE(delta) ? delta_facts(delta, chars, first) : 0;
}

static PyObject *batch_facts(PyObject *batch, PyObject *reasons);

static PyObject *content_facts(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "content_facts(batch, reasons=None)");
        return NULL;
    }
    PyObject *batch = args[0];
    PyObject *reasons = nargs == 2 && args[1] != Py_None ? args[1] : NULL;
    if (!PyList_Check(batch) || (reasons != NULL && !PyList_CheckExact(reasons))) {
        Py_RETURN_NONE;
    }
    /* Where `reasons` stood: what a batch handed back to the Python appended is taken off again. */
    Py_ssize_t kept = reasons != NULL ? PyList_GET_SIZE(reasons) : 0;
    PyObject *answer = batch_facts(batch, reasons);
    if (reasons == NULL || (answer != NULL && answer != Py_None)) {
        return answer;
    }
    PyObject *type, *value, *traceback;  /* (an error of the batch's is kept while the list is put back) */
    PyErr_Fetch(&type, &value, &traceback);
    int restored = PyList_SetSlice(reasons, kept, PY_SSIZE_T_MAX, NULL);
    if (type != NULL) {
        if (restored < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, traceback);
        return NULL;
    }
    if (restored < 0) {
        Py_DECREF(answer);
        return NULL;
    }
    return answer;
}

static PyObject *batch_facts(PyObject *batch, PyObject *reasons) {
    Py_ssize_t chars = 0;
    int first = 0, usage = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(batch); i++) {
        PyObject *chunk = PyList_GET_ITEM(batch, i);
        if (!PyDict_CheckExact(chunk)) {
            Py_RETURN_NONE;
        }
        int status = 0;
        PyObject *value = lookup(chunk, k_usage, &status);
        if (status) {
            return NULL;
        }
        if (value != NULL && value != Py_None) {
            usage = 1;
        }
        PyObject *choices = lookup(chunk, k_choices, &status);
        if (status) {
            return NULL;
        }
        if (choices == NULL || choices == Py_None) {
            continue;
        }
        if (!PyList_CheckExact(choices)) {
            Py_RETURN_NONE;
        }
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(choices); j++) {
            int r = choice_facts(PyList_GET_ITEM(choices, j), &chars, &first, reasons);
            if (r == FAIL) {
                return NULL;
            }
            if (r == BAIL) {
                Py_RETURN_NONE;
            }
        }
    }
    return Py_BuildValue("(nOO)", chars, first ? Py_True : Py_False, usage ? Py_True : Py_False);
}

static PyObject *shared_id(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "shared_id(batch, allow_usage)");
        return NULL;
    }
    PyObject *batch = args[0];
    int allow_usage = PyObject_IsTrue(args[1]);
    if (allow_usage < 0) {
        return NULL;
    }
    if (!PyList_Check(batch) || PyList_GET_SIZE(batch) == 0) {
        Py_RETURN_NONE;
    }
    PyObject *shared = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(batch); i++) {
        PyObject *chunk = PyList_GET_ITEM(batch, i);
        if (!PyDict_CheckExact(chunk)) {
            Py_RETURN_NONE;
        }
        int status = 0;
        PyObject *id = lookup(chunk, k_id, &status);
        if (status) {
            return NULL;
        }
        if (id == NULL || !PyUnicode_CheckExact(id)) {
            Py_RETURN_NONE;
        }
        if (shared == NULL) {
            shared = id;
        } else if (id != shared && PyUnicode_Compare(id, shared) != 0) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        if (!allow_usage) {
            PyObject *usage = lookup(chunk, k_usage, &status);
            if (status) {
                return NULL;
            }
            if (usage != NULL && usage != Py_None) {
                Py_RETURN_NONE;
            }
        }
    }
    Py_INCREF(shared);
    return shared;
}

static PyMethodDef methods[] = {
    {"content_facts", (PyCFunction)(void (*)(void))content_facts, METH_FASTCALL,
     "(content chars, first token, usage set) of a batch of chunks, finish reasons appended to a given list; "
     "None: ask the Python."},
    {"shared_id", (PyCFunction)(void (*)(void))shared_id, METH_FASTCALL,
     "The id all chunks of a batch share (and, unless allowed, none carries usage); else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_chunk_facts", "What the stream relay reads of chunks, in C (see relay.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__chunk_facts(void) {
    static const char *const text[] = {"usage", "choices", "text", "delta", "content", "reasoning_content",
                                       "refusal", "tool_calls", "function", "name", "arguments", "id",
                                       "finish_reason"};
    PyObject **keys[] = {&k_usage, &k_choices, &k_text, &k_delta, &k_content, &k_reasoning_content, &k_refusal,
                         &k_tool_calls, &k_function, &k_name, &k_arguments, &k_id, &k_finish_reason};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if ((*keys[i] = PyUnicode_InternFromString(text[i])) == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module_def);
}
