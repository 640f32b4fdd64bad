/* Plain chunk frames of an upstream read, in C: split into their JSON payloads (`plain_frames`), or read
 * where they lie without being parsed (`raw_frames`). The optional accelerator of the path through
 * sse.py's SSEDecoder fast path and providers/base.py's `_plain_chunks` (that Python is the reference
 * and the fallback), and of what the relay reads of each batch (headends/relay.py).
 *
 * Why C: a read of OpenAI chunk frames went through about nine scans of its bytes in Python (the
 * decoder's rfind, counts and split, a UTF-8 decode into one str per frame, then the checks that no
 * frame needs `convert`): ~50k of the event loop's ~810k instructions for a 12-chunk stream
 * (issue 14). Here it is one pass of memchr/memmem. And a batch relayed to an OpenAI-format client as
 * it came needs no dicts at all, only what the relay reads of it: parsing its 12 chunks with orjson
 * and freeing them was ~88k of the ~260k a stream costs beyond a plain request.
 *
 * plain_frames(piece, limit) -> (payloads, done) | None
 *     When `piece` (one network read, starting at an event) is nothing but complete frames
 *     `data: {...}\n\n`, perhaps closed by `data: [DONE]\n\n`: the JSON payloads as bytes, and
 *     whether the [DONE] frame closed it. None for anything else, and the caller then takes the
 *     general path: a piece longer than `limit`, any CR, a frame with another field or several
 *     lines, a payload that does not open an object, [DONE] before the last frame, a partial frame
 *     at the end, or bytes that may hold an `"error"` key (any `\u` escape included, since one can
 *     spell that key).
 *
 * raw_frames(piece, limit) -> RawFrames | (payloads, done) | None
 *     The same frames, when plain_frames would split the piece (or would but for its `\u` escapes)
 *     and every payload is a chat or completions chunk this reader takes as it is: JSON that orjson
 *     would parse (the grammar, UTF-8 well-formed, no control character in a string, a `\u` escape
 *     of four hex digits and no lone surrogate; conservatively: no escaped key, at most 64
 *     containers nested beyond the chunk format's own levels, numbers under 10^300), where the fields
 *     the relay reads have the types of the chunk format (`id`, `text`, `content`,
 *     `reasoning_content`, `refusal`, `finish_reason`, a function's `name` and `arguments`: a string
 *     or null; `choices`, `tool_calls`: an array or null; `delta`, `function`: an object or null; a
 *     choice, a tool call: an object) and appear once in their object. Where the piece is plain
 *     frames but a chunk is not taken: what plain_frames returns, and the caller parses the payloads
 *     and decides as before; None where plain_frames gives None (a piece with a `\u` escape included:
 *     an escape may spell an `error` key, which only the general path looks for), but for a piece it
 *     would give None only for an `"error"` string that is no key (a content token `error`, say): the
 *     walk refuses an `error` key at any depth itself, so it takes that piece, and looks through the
 *     bytes for plain_frames' reasons (memmem and memchr over the whole piece) only for a piece it
 *     does not take.
 *     What it reads is relay.py's reading of the parsed chunks (_content_chars, _has_first_token,
 *     the usage check, the OpenAI encoder's id check): see RawFrames' members.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

static const char PREFIX[] = "data: ";
#define PREFIX_LEN 6
static const char DONE_PAYLOAD[] = "[DONE]";
#define DONE_LEN 6
static const char ERROR_KEY[] = "\"error\"";
#define ERROR_LEN 7

/* Whether the bytes may need the general path (plain_frames' test): a CR, an `"error"` string, or a
 * `\u` escape, which may spell that key. */
static int needs_general_path(const char *p, Py_ssize_t n) {
    if (memchr(p, '\r', (size_t)n) != NULL || memmem(p, (size_t)n, ERROR_KEY, ERROR_LEN) != NULL) {
        return 1;
    }
    const char *end = p + n;
    for (const char *s = p; s < end && (s = memchr(s, '\\', (size_t)(end - s))) != NULL; s++) {
        if (s + 1 < end && s[1] == 'u') {
            return 1;
        }
    }
    return 0;
}

/* The payloads' bounds (start, stop pairs) of a piece of plain frames, in a PyMem array the caller
 * frees. 1: plain (*bounds set, NULL for no frame); 0: the general path; -1: a Python error. With
 * `scan` 0 the bytes are not looked through by needs_general_path (raw_frames: its walk refuses
 * whatever that scan finds but an `"error"` that is no key, and scans only what it does not take). */
static int split_frames(PyObject *const *args, Py_ssize_t nargs, int scan, Py_ssize_t **bounds,
                        Py_ssize_t *frames, int *done) {
    *bounds = NULL;
    *frames = 0;
    *done = 0;
    if (nargs != 2 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "(piece: bytes, limit: int)");
        return -1;
    }
    int overflow = 0;
    long long given = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (given == -1 && PyErr_Occurred()) {
        return -1;
    }
    /* (a limit beyond what a piece can be is no limit; below zero, every piece is over it) */
    Py_ssize_t limit = overflow > 0 || given > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : overflow < 0 || given < 0 ? -1
                                                                                                : (Py_ssize_t)given;
    const char *p = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    if (n > limit || n < PREFIX_LEN + 3 || memcmp(p, PREFIX, PREFIX_LEN) != 0 || p[n - 1] != '\n' ||
        p[n - 2] != '\n') {
        return 0;
    }
    if (scan && needs_general_path(p, n)) {
        return 0;
    }
    Py_ssize_t count = 0, room = 0;
    Py_ssize_t *at = NULL;
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
            if (count == room) {
                room = room ? 2 * room : 16;
                Py_ssize_t *grown = PyMem_Realloc(at, (size_t)room * 2 * sizeof(Py_ssize_t));
                if (grown == NULL) {
                    PyMem_Free(at);
                    PyErr_NoMemory();
                    return -1;
                }
                at = grown;
            }
            at[2 * count] = pos;
            at[2 * count + 1] = stop;
            count++;
        } else if (stop - pos == DONE_LEN && memcmp(p + pos, DONE_PAYLOAD, DONE_LEN) == 0 && next == n) {
            *done = 1; /* (only as the last frame) */
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
    *bounds = at;
    *frames = count;
    return 1;
general:
    PyMem_Free(at);
    *done = 0;
    return 0;
}

/* The payloads at `bounds` (start, stop pairs) in `p`, as a list of bytes. */
static PyObject *payload_list(const char *p, const Py_ssize_t *bounds, Py_ssize_t count) {
    PyObject *payloads = PyList_New(count);
    if (payloads == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *payload = PyBytes_FromStringAndSize(p + bounds[2 * i], bounds[2 * i + 1] - bounds[2 * i]);
        if (payload == NULL) {
            Py_DECREF(payloads);
            return NULL;
        }
        PyList_SET_ITEM(payloads, i, payload);
    }
    return payloads;
}

/* plain_frames' answer for a split piece, (payloads, done); frees `at`. */
static PyObject *split_answer(const char *p, Py_ssize_t *at, Py_ssize_t count, int done) {
    PyObject *payloads = payload_list(p, at, count);
    PyMem_Free(at);
    return payloads == NULL ? NULL : Py_BuildValue("(NO)", payloads, done ? Py_True : Py_False);
}

static PyObject *plain_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_ssize_t *at, count;
    int done;
    int plain = split_frames(args, nargs, 1, &at, &count, &done);
    if (plain <= 0) {
        if (plain < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return split_answer(PyBytes_AS_STRING(args[0]), at, count, done);
}

/* ---- Reading a chunk where it lies: a JSON walk that validates as it goes ---------------------------------
 * Every payload lies in the piece before a "\n" (its frame's end), which no JSON token takes: the walk
 * stops there without a bound check at each byte. */

#define TAKEN 0  /* the value was read */
#define NOT_TAKEN 1  /* not a value this reader takes: the caller parses the piece */
#define FAILED 2  /* a Python error is set */
#define MAX_DEPTH 64

typedef struct {
    const char *p;
    const char *end;  /* the piece's end: what a read of 8 bytes at a time must stay before */
    Py_ssize_t chars;  /* generated content characters so far */
    int depth;  /* containers open around w->p, beyond the chunk format's own */
    int first_token;
    PyObject *reasons;  /* a list, made at the first finish reason */
} Walk;

static inline void skip_space(Walk *w) {
    while (*w->p == ' ' || *w->p == '\t') {
        w->p++;
    }
}

static inline int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

/* The value of 4 hex digits at s (read one at a time: a payload's "\n" stops it), or -1. */
static int hex4(const unsigned char *s) {
    int value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (digit < 0) {
            return -1;
        }
        value = value * 16 + digit;
    }
    return value;
}

/* 1 for the bytes a string holds as they are: printable ASCII but '"' and '\\'. */
static unsigned char PLAIN_ASCII[256];

static void init_plain_ascii(void) {
    for (int c = 0x20; c < 0x80; c++) {
        PLAIN_ASCII[c] = c != '"' && c != '\\';
    }
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether any of the 8 bytes at s is not plain ASCII (a control character, '"', '\\', or 0x80 and up),
 * with no false "no" (a false "yes" only sends them to the byte loop). (v - ONES*n) & ~v & HIGHS is
 * nonzero when a byte of v is below n (n <= 128); v ^ ONES*c has a zero byte where v has c. */
static inline int needs_a_look(const unsigned char *s) {
    uint64_t v;
    memcpy(&v, s, 8);
    uint64_t quote = v ^ (ONES * '"'), backslash = v ^ (ONES * '\\');
    return ((v | ((v - ONES * 0x20) & ~v) | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash)) & HIGHS)
           != 0;
}

/* A string (w->p at its opening quote): its raw bytes between the quotes (*start, *len), its length as
 * a Python str (*chars) and whether it holds an escape. Well-formed UTF-8 only (as Python's strict
 * decoder and orjson take it: no overlong form, no surrogate, nothing past U+10FFFF). */
static int read_string(Walk *w, const char **start, Py_ssize_t *len, Py_ssize_t *chars, int *escaped) {
    const unsigned char *s = (const unsigned char *)w->p + 1;
    const unsigned char *begin = s;
    Py_ssize_t count = 0;
    int escapes = 0;
    for (;;) {
        const unsigned char *run = s;  /* a run of plain ASCII: 8 bytes at a time, then a table lookup a byte */
        while (s + 8 <= (const unsigned char *)w->end && !needs_a_look(s)) {
            s += 8;
        }
        while (PLAIN_ASCII[*s]) {
            s++;
        }
        count += s - run;
        unsigned char c = *s;
        if (c >= 0x20 && c < 0x80) {
            if (c == '"') {
                break;
            }
            if (c == '\\') {
                c = s[1];
                escapes = 1;
                if (c == 'u') {  /* one character: a code point, or a surrogate pair (a lone one is invalid) */
                    int unit = hex4(s + 2);
                    if (unit < 0 || (unit >= 0xDC00 && unit <= 0xDFFF)) {
                        return NOT_TAKEN;
                    }
                    if (unit >= 0xD800 && unit <= 0xDBFF) {
                        int low = s[6] == '\\' && s[7] == 'u' ? hex4(s + 8) : -1;
                        if (low < 0xDC00 || low > 0xDFFF) {
                            return NOT_TAKEN;
                        }
                        s += 6;
                    }
                    s += 6;
                    count++;
                    continue;
                }
                if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' && c != 't') {
                    return NOT_TAKEN;
                }
                s += 2;
            } else {
                s++;
            }
        } else if (c < 0x20) {
            return NOT_TAKEN;  /* a control character (the frame's "\n" included: an unclosed string) */
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (!is_cont(s[1])) {
                return NOT_TAKEN;
            }
            s += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            unsigned char d = s[1];
            if (c == 0xE0 ? (d < 0xA0 || d > 0xBF) : c == 0xED ? (d < 0x80 || d > 0x9F) : !is_cont(d)) {
                return NOT_TAKEN;
            }
            if (!is_cont(s[2])) {
                return NOT_TAKEN;
            }
            s += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            unsigned char d = s[1];
            if (c == 0xF0 ? (d < 0x90 || d > 0xBF) : c == 0xF4 ? (d < 0x80 || d > 0x8F) : !is_cont(d)) {
                return NOT_TAKEN;
            }
            if (!is_cont(s[2]) || !is_cont(s[3])) {
                return NOT_TAKEN;
            }
            s += 4;
        } else {
            return NOT_TAKEN;  /* a continuation byte without a lead, 0xC0, 0xC1, or past 0xF4 */
        }
        count++;
    }
    *start = (const char *)begin;
    *len = (const char *)s - (const char *)begin;
    *chars = count;
    *escaped = escapes;
    w->p = (const char *)s + 1;
    return TAKEN;
}

/* A number, by JSON's grammar; conservatively, at most 200 integer digits and a 2-digit exponent, so
 * that orjson reads it as a finite number whatever it is (it refuses only infinities). */
static int read_number(Walk *w) {
    const char *s = w->p;
    if (*s == '-') {
        s++;
    }
    const char *digits = s;
    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (*s >= '0' && *s <= '9') {
            s++;
        }
    } else {
        return NOT_TAKEN;
    }
    if (s - digits > 200) {
        return NOT_TAKEN;
    }
    if (*s == '.') {
        s++;
        if (!(*s >= '0' && *s <= '9')) {
            return NOT_TAKEN;
        }
        while (*s >= '0' && *s <= '9') {
            s++;
        }
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') {
            s++;
        }
        const char *exponent = s;
        while (*s >= '0' && *s <= '9') {
            s++;
        }
        if (s == exponent || s - exponent > 2) {
            return NOT_TAKEN;
        }
    }
    w->p = s;
    return TAKEN;
}

static int read_value(Walk *w);
static int read_container(Walk *w);

/* A literal, compared a byte at a time: a payload's "\n" differs before anything past it is read. */
static int literal(Walk *w, const char *word) {
    const char *s = w->p;
    for (; *word; word++, s++) {
        if (*s != *word) {
            return NOT_TAKEN;
        }
    }
    w->p = s;
    return TAKEN;
}

/* An object's members, one at a time: w->p after '{' (first) or at the member's key. *key and *key_len: the
 * key's raw bytes (a key with an escape is not taken: a `\u` one may spell a key this reader looks for,
 * or `error`); then w->p is at its value. 1: a member; 0: the object ended (w->p after '}'). */
static int next_member(Walk *w, int *first, const char **key, Py_ssize_t *key_len, int *status) {
    skip_space(w);
    if (*first) {
        *first = 0;
        if (*w->p == '}') {
            w->p++;
            return 0;
        }
    } else if (*w->p == ',') {
        w->p++;
        skip_space(w);
    } else if (*w->p == '}') {
        w->p++;
        return 0;
    } else {
        *status = NOT_TAKEN;
        return 0;
    }
    if (*w->p != '"') {
        *status = NOT_TAKEN;
        return 0;
    }
    Py_ssize_t chars;
    int escaped;
    if (read_string(w, key, key_len, &chars, &escaped) != TAKEN || escaped ||
        (*key_len == ERROR_LEN - 2 && memcmp(*key, ERROR_KEY + 1, ERROR_LEN - 2) == 0)) {
        /* (an escaped key may spell one this reader looks for, or `error`; an `error` key, at any
         * depth, may be the upstream's failure: the general path looks for it) */
        *status = NOT_TAKEN;
        return 0;
    }
    skip_space(w);
    if (*w->p != ':') {
        *status = NOT_TAKEN;
        return 0;
    }
    w->p++;
    skip_space(w);
    return 1;
}

/* Any JSON value (w->p at it, after any space): only checked. */
static int read_value(Walk *w) {
    switch (*w->p) {
    case '{':
    case '[':
        return read_container(w);
    case '"': {
        const char *start;
        Py_ssize_t len, chars;
        int escaped;
        return read_string(w, &start, &len, &chars, &escaped);
    }
    case 't':
        return literal(w, "true");
    case 'f':
        return literal(w, "false");
    case 'n':
        return literal(w, "null");
    default:
        return read_number(w);
    }
}

static inline int is_null(Walk *w) { return *w->p == 'n' && literal(w, "null") == TAKEN; }

/* What a chunk says of itself, beyond the batch's content readings in Walk. */
typedef struct {
    const char *id;  /* the id's raw bytes, NULL when missing, not a string or escaped */
    Py_ssize_t id_len;
    int usage;  /* `usage` is there and not null */
    int choices;  /* `choices` is a non-empty array */
} ChunkFacts;

/* A member this reader looks at: its key and how its value is read (w->p at the value). */
typedef struct {
    const char *key;
    Py_ssize_t key_len;
    int (*read)(Walk *w, ChunkFacts *chunk);
} Field;

#define FIELD(name, reader) {name, (Py_ssize_t)(sizeof(name) - 1), reader}

/* The members of an object (w->p after its '{'): the `fields` read by their reader, each at most once
 * (a second one, which orjson would keep, is not taken: the Python decides), any other only checked. */
static int read_fields(Walk *w, ChunkFacts *chunk, const Field *fields, int count) {
    int first = 1, status = TAKEN;
    unsigned seen = 0;
    const char *key;
    Py_ssize_t key_len;
    while (next_member(w, &first, &key, &key_len, &status)) {
        int i = 0;
        while (i < count && !(fields[i].key_len == key_len && memcmp(fields[i].key, key, (size_t)key_len) == 0)) {
            i++;
        }
        int r;
        if (i == count) {
            r = read_value(w);
        } else if (seen & (1u << i)) {
            return NOT_TAKEN;
        } else {
            seen |= 1u << i;
            r = fields[i].read(w, chunk);
        }
        if (r != TAKEN) {
            return r;
        }
    }
    return status;
}

/* A string or null counted as content: its characters added; 1 in *nonempty for a non-empty string. */
static int content_string(Walk *w, int *nonempty) {
    *nonempty = 0;
    if (is_null(w)) {
        return TAKEN;
    }
    if (*w->p != '"') {
        return NOT_TAKEN;
    }
    const char *start;
    Py_ssize_t len, chars;
    int escaped;
    int r = read_string(w, &start, &len, &chars, &escaped);
    if (r == TAKEN) {
        w->chars += chars;
        *nonempty = chars > 0;
    }
    return r;
}

/* Content that counts as the first token when there is some (content, refusal, a completion's text). */
static int read_token_text(Walk *w, ChunkFacts *chunk) {
    (void)chunk;
    int nonempty;
    int r = content_string(w, &nonempty);
    w->first_token |= nonempty;
    return r;
}

/* Content that is counted only (reasoning, a tool call's name and arguments). */
static int read_counted_text(Walk *w, ChunkFacts *chunk) {
    (void)chunk;
    int nonempty;
    return content_string(w, &nonempty);
}

/* An array (or null) of `read_item`s, each at w->p; *items 1 when it has any. */
static int read_array(Walk *w, ChunkFacts *chunk, int (*read_item)(Walk *, ChunkFacts *), int *items) {
    *items = 0;
    if (is_null(w)) {
        return TAKEN;
    }
    if (*w->p != '[') {
        return NOT_TAKEN;
    }
    w->p++;
    skip_space(w);
    if (*w->p == ']') {
        w->p++;
        return TAKEN;
    }
    *items = 1;
    for (;;) {
        int r = read_item(w, chunk);
        if (r != TAKEN) {
            return r;
        }
        skip_space(w);
        if (*w->p == ',') {
            w->p++;
            skip_space(w);
        } else if (*w->p == ']') {
            w->p++;
            return TAKEN;
        } else {
            return NOT_TAKEN;
        }
    }
}

/* An object whose `fields` are read (w->p at its '{'; with `nullable`, null is taken too). */
static int read_object(Walk *w, ChunkFacts *chunk, const Field *fields, int count, int nullable) {
    if (nullable && is_null(w)) {
        return TAKEN;
    }
    if (*w->p != '{') {
        return NOT_TAKEN;
    }
    w->p++;
    return read_fields(w, chunk, fields, count);
}

static int read_any(Walk *w, ChunkFacts *chunk) {
    (void)chunk;
    return read_value(w);
}

/* An object or array of any values, only checked (w->p at its '{' or '['). */
static int read_container(Walk *w) {
    if (w->depth >= MAX_DEPTH) {
        return NOT_TAKEN;
    }
    w->depth++;
    int items, r;
    if (*w->p == '{') {
        r = read_object(w, NULL, NULL, 0, 0);
    } else {
        r = read_array(w, NULL, read_any, &items);
    }
    w->depth--;
    return r;
}

static const Field FUNCTION[] = {FIELD("name", read_counted_text), FIELD("arguments", read_counted_text)};

static int read_function(Walk *w, ChunkFacts *chunk) { return read_object(w, chunk, FUNCTION, 2, 1); }

static const Field TOOL_CALL[] = {FIELD("function", read_function)};

static int read_tool_call(Walk *w, ChunkFacts *chunk) { return read_object(w, chunk, TOOL_CALL, 1, 0); }

static int read_tool_calls(Walk *w, ChunkFacts *chunk) {
    int items;
    int r = read_array(w, chunk, read_tool_call, &items);
    w->first_token |= items;
    return r;
}

static const Field DELTA[] = {FIELD("content", read_token_text), FIELD("reasoning_content", read_counted_text),
                              FIELD("refusal", read_token_text), FIELD("tool_calls", read_tool_calls)};

static int read_delta(Walk *w, ChunkFacts *chunk) { return read_object(w, chunk, DELTA, 4, 1); }

/* A choice's finish reason: a str kept (when not empty), or null. */
static int read_finish_reason(Walk *w, ChunkFacts *chunk) {
    (void)chunk;
    if (is_null(w)) {
        return TAKEN;
    }
    const char *start;
    Py_ssize_t len, chars;
    int escaped;
    if (*w->p != '"' || read_string(w, &start, &len, &chars, &escaped) != TAKEN || escaped) {
        return NOT_TAKEN;
    }
    if (len == 0) {
        return TAKEN;
    }
    if (w->reasons == NULL && (w->reasons = PyList_New(0)) == NULL) {
        return FAILED;
    }
    PyObject *reason = PyUnicode_DecodeUTF8(start, len, NULL);
    if (reason == NULL) {
        return FAILED;
    }
    int appended = PyList_Append(w->reasons, reason);
    Py_DECREF(reason);
    return appended < 0 ? FAILED : TAKEN;
}

static const Field CHOICE[] = {FIELD("text", read_token_text), FIELD("delta", read_delta),
                               FIELD("finish_reason", read_finish_reason)};

static int read_choice(Walk *w, ChunkFacts *chunk) { return read_object(w, chunk, CHOICE, 3, 0); }

static int read_choices(Walk *w, ChunkFacts *chunk) { return read_array(w, chunk, read_choice, &chunk->choices); }

static int read_id(Walk *w, ChunkFacts *chunk) {
    if (*w->p != '"') {
        return read_value(w);  /* (not a string: no id the batch shares) */
    }
    const char *start;
    Py_ssize_t chars;
    int escaped;
    int r = read_string(w, &start, &chunk->id_len, &chars, &escaped);
    if (r == TAKEN && !escaped) {
        chunk->id = start;
    }
    return r;
}

static int read_usage(Walk *w, ChunkFacts *chunk) {
    chunk->usage = !is_null(w);
    return chunk->usage ? read_value(w) : TAKEN;
}

static const Field CHUNK[] = {FIELD("id", read_id), FIELD("usage", read_usage), FIELD("choices", read_choices)};

/* One chunk: the payload (w->p at its '{', ending before a "\n"). */
static int read_chunk(Walk *w, ChunkFacts *chunk) {
    w->p++;
    chunk->id = NULL;
    chunk->usage = chunk->choices = 0;
    return read_fields(w, chunk, CHUNK, 3);
}

/* ---- RawFrames ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *wire;  /* the frames' bytes, as they came (a closing [DONE] frame left out) */
    PyObject *id;  /* the id every chunk has, or None */
    PyObject *usage;  /* a tuple: the positions of the chunks whose usage is set */
    PyObject *reasons;  /* the finish reasons, in order (a tuple), or None */
    Py_ssize_t frames;
    Py_ssize_t chars;
    char done;
    char first_token;
    char usage_tail;
    Py_ssize_t *bounds;  /* the payloads in `wire`: start, stop pairs */
} RawFrames;

static void raw_dealloc(RawFrames *self) {
    Py_XDECREF(self->wire);
    Py_XDECREF(self->id);
    Py_XDECREF(self->usage);
    Py_XDECREF(self->reasons);
    PyMem_Free(self->bounds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t raw_length(RawFrames *self) { return self->frames; }

static PyObject *raw_payload(RawFrames *self, PyObject *arg) {
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (i < 0) {
        i += self->frames;
    }
    if (i < 0 || i >= self->frames) {
        PyErr_SetString(PyExc_IndexError, "no such frame");
        return NULL;
    }
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->wire) + self->bounds[2 * i],
                                     self->bounds[2 * i + 1] - self->bounds[2 * i]);
}

static PyObject *raw_payloads(RawFrames *self, PyObject *unused) {
    (void)unused;
    return payload_list(PyBytes_AS_STRING(self->wire), self->bounds, self->frames);
}

static PyObject *raw_head(RawFrames *self, PyObject *unused) {
    (void)unused;
    if (self->frames == 0) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }  /* the last frame begins PREFIX_LEN before its payload */
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->wire), self->bounds[2 * (self->frames - 1)] - PREFIX_LEN);
}

static PyMethodDef raw_methods[] = {
    {"payload", (PyCFunction)raw_payload, METH_O, "The JSON payload of frame i, as bytes."},
    {"payloads", (PyCFunction)raw_payloads, METH_NOARGS, "Every frame's JSON payload, as bytes."},
    {"head", (PyCFunction)raw_head, METH_NOARGS, "`wire` without its last frame."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef raw_members[] = {
    {"wire", T_OBJECT, offsetof(RawFrames, wire), READONLY, "The frames as they came, [DONE] left out."},
    {"id", T_OBJECT, offsetof(RawFrames, id), READONLY, "The id (a str) every chunk has, or None."},
    {"usage", T_OBJECT, offsetof(RawFrames, usage), READONLY, "Positions of the chunks whose usage is set."},
    {"reasons", T_OBJECT, offsetof(RawFrames, reasons), READONLY, "The choices' finish reasons, or None."},
    {"chars", T_PYSSIZET, offsetof(RawFrames, chars), READONLY, "Characters of generated content."},
    {"done", T_BOOL, offsetof(RawFrames, done), READONLY, "A [DONE] frame closed the piece."},
    {"first_token", T_BOOL, offsetof(RawFrames, first_token), READONLY, "A chunk carries content, text, a "
     "refusal or a tool call."},
    {"usage_tail", T_BOOL, offsetof(RawFrames, usage_tail), READONLY, "The last chunk has usage set and no "
     "choices."},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods raw_sequence = {.sq_length = (lenfunc)raw_length};

static PyTypeObject RawFramesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "switchboard._sse_frames.RawFrames",
    .tp_doc = "Chunk frames of one upstream read, as they came, with what the relay reads of them.",
    .tp_basicsize = sizeof(RawFrames),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)raw_dealloc,
    .tp_as_sequence = &raw_sequence,
    .tp_methods = raw_methods,
    .tp_members = raw_members,
};

static PyObject *raw_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Py_ssize_t *at, count;
    int done;
    int plain = split_frames(args, nargs, 0, &at, &count, &done);
    if (plain <= 0) {
        if (plain < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    const char *p = PyBytes_AS_STRING(args[0]);
    Walk w = {NULL, p + PyBytes_GET_SIZE(args[0]), 0, 0, 0, NULL};
    ChunkFacts chunk = {NULL, 0, 0, 0};
    const char *shared = NULL;
    Py_ssize_t shared_len = 0;
    int same_id = 1, status = TAKEN;
    Py_ssize_t usage_count = 0;
    unsigned char usage_at[64];  /* (a batch with more usage chunks than this is not taken) */
    for (Py_ssize_t i = 0; i < count; i++) {
        w.p = p + at[2 * i];
        status = read_chunk(&w, &chunk);
        if (status != TAKEN) {
            break;
        }
        skip_space(&w);
        if (w.p != p + at[2 * i + 1]) {  /* something after the object */
            status = NOT_TAKEN;
            break;
        }
        if (chunk.id == NULL) {
            same_id = 0;
        } else if (i == 0) {
            shared = chunk.id;
            shared_len = chunk.id_len;
        } else if (same_id && (chunk.id_len != shared_len || memcmp(chunk.id, shared, (size_t)shared_len) != 0)) {
            same_id = 0;
        }
        if (chunk.usage) {
            if (usage_count == 64 || i > 255) {
                status = NOT_TAKEN;
                break;
            }
            usage_at[usage_count++] = (unsigned char)i;
        }
    }
    RawFrames *raw = NULL;
    if (status != TAKEN || (raw = PyObject_New(RawFrames, &RawFramesType)) == NULL) {
        goto fail;
    }
    raw->wire = raw->id = raw->usage = raw->reasons = NULL;
    raw->bounds = at;
    at = NULL;
    raw->frames = count;
    raw->chars = w.chars;
    raw->done = (char)done;
    raw->first_token = (char)w.first_token;
    raw->usage_tail = (char)(count > 0 && chunk.usage && !chunk.choices);
    if (w.reasons != NULL) {
        raw->reasons = PyList_AsTuple(w.reasons);
        Py_CLEAR(w.reasons);
    } else {
        Py_INCREF(Py_None);
        raw->reasons = Py_None;
    }
    if (done) {
        raw->wire = PyBytes_FromStringAndSize(p, PyBytes_GET_SIZE(args[0]) - (PREFIX_LEN + DONE_LEN + 2));
    } else {
        Py_INCREF(args[0]);
        raw->wire = args[0];
    }
    if (count > 0 && same_id) {
        raw->id = PyUnicode_DecodeUTF8(shared, shared_len, NULL);
    } else {
        Py_INCREF(Py_None);
        raw->id = Py_None;
    }
    raw->usage = PyTuple_New(usage_count);
    if (raw->reasons == NULL || raw->wire == NULL || raw->id == NULL || raw->usage == NULL) {
        Py_DECREF(raw);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < usage_count; i++) {
        PyObject *position = PyLong_FromLong(usage_at[i]);
        if (position == NULL) {
            Py_DECREF(raw);
            return NULL;
        }
        PyTuple_SET_ITEM(raw->usage, i, position);
    }
    return (PyObject *)raw;
fail:
    Py_XDECREF(w.reasons);
    if (status == FAILED || PyErr_Occurred()) {
        PyMem_Free(at);
        return NULL;
    }
    if (needs_general_path(p, PyBytes_GET_SIZE(args[0]))) {  /* as plain_frames: the general path */
        PyMem_Free(at);
        Py_RETURN_NONE;
    }
    /* Not taken: the split plain_frames would give, so that the caller does not split the piece again. */
    return split_answer(p, at, count, done);
}

static PyMethodDef methods[] = {
    {"plain_frames", (PyCFunction)(void (*)(void))plain_frames, METH_FASTCALL,
     "(JSON payloads, closed by [DONE]) of a read of only plain `data: {...}` frames; else None."},
    {"raw_frames", (PyCFunction)(void (*)(void))raw_frames, METH_FASTCALL,
     "The same read's chunks as RawFrames (not parsed), when this reader takes every one; else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_sse_frames", "Plain chunk frames of an SSE read, in C (see providers/base.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sse_frames(void) {
    init_plain_ascii();
    if (PyType_Ready(&RawFramesType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&RawFramesType);
    if (PyModule_AddObject(module, "RawFrames", (PyObject *)&RawFramesType) < 0) {
        Py_DECREF(&RawFramesType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
