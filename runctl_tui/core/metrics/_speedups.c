/* The hot loops of runctl_tui.core.metrics.lines, in C.
 *
 * Optional: lines.py runs the same steps in Python when this module is absent (no compiler at
 * install time) or disabled (RUNCTL_METRICS_PURE_PYTHON=1), and the tests hold both to the
 * same results (tests/core/test_metrics_speedups.py). Each routine here mirrors the Python
 * routine named in its comment; what it cannot read exactly as Python does (non-ASCII digits,
 * numbers past 15 digits, shapes not seen yet, extra regexes) goes back to Python untouched.
 *
 * Where a long log's time goes, and what is here:
 * - scan: the batch loop of `LineMetricsParser._batch`. A line's shape (its UTF-8 bytes
 *   without digits and dots) is found in a ShapeTable over the parser's `_clean` dict and the
 *   line's index put in its shape's bucket; a line of progress-bar redraws (`\r`, ANSI codes)
 *   is read on the spot, part by part as `_line` and `_segment` would: tqdm (`_tqdm`), Keras
 *   (`_keras`), rich (`_rich`, its wrapped postfix), blank parts and parts of a planned shape
 *   (`_apply`). Any other line stops the scan and Python reads it by the general route.
 * - read_rows: `LineMetricsParser._group`'s regex pass: every line of a shape matched against
 *   the shape's template (literal text, runs of digits and dots, captured values) and each
 *   captured value turned into a float.
 * - settle: `_settle_series`: a series' records merged back into line order and its rules
 *   applied (a counted step where none is given, a repeated point dropped).
 *
 * Numbers are read as float() reads them: plain decimals of up to 16 digits by Clinger's exact
 * fast path, anything else by PyOS_string_to_double or float() itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Set once by `configure`: Python callables and constants of lines.py. */
static PyObject *tqdm_step_name;   /* "_tqdm_step" */
static PyObject *number_func;      /* lines._number */
static PyObject *ignored_keys;     /* lines._IGNORED */
static PyObject *count_marker;     /* lines._COUNT */
static PyObject *valid_key_func;   /* lines._valid_key */
static int key_bits = 32;

static PyObject *str_tqdm_tail, *str_tqdm_steps, *str_tqdm_shown, *str_empty;
static PyObject *str_bar_tail, *str_bar_shown, *str_keras, *str_keras_epoch, *str_plans, *str_rows;
static PyObject *str_step_at, *str_epoch_at, *str_dict_mode, *str_metrics, *str_template, *str_epoch;
static PyObject *str_rich, *str_rich_more, *str_rich_step, *str_prev_kind; /* "rich", "rich+" */
static PyObject *str_dash, *str_space, *str_backspace; /* " - ", " ", "\b" */

#define MAX_TQDM_HEADS 4096

/* How a part of a line of redraws is read (see `bar_part`). */
enum { TQDM = 1, KERAS = 2, SKIP = 3, PLAN = 4, RICH = 5, RICH_MORE = 6 };
#define MAX_PARTS 256

/* ---- small helpers over a str's code points ---- */

typedef struct {
    int kind;
    int ascii;
    const void *data;
    Py_ssize_t len;
} Text;

static Py_ssize_t shape_into(const Text *t, char *buf, int *plain);

static inline void text_of(PyObject *s, Text *t) {
    t->ascii = PyUnicode_IS_ASCII(s);
    t->kind = PyUnicode_KIND(s);
    t->data = PyUnicode_DATA(s);
    t->len = PyUnicode_GET_LENGTH(s);
}


/* Index of the ASCII `needle` in s[start:end], or -1. Needles here are two to four characters:
 * a plain loop over the string's own width beats PyUnicode_Find, which copies an ASCII needle
 * to the width of a wider string on every call. */
#define FIND_LOOP(TYPE, FIRST, LAST, STEP)                                                         \
    do {                                                                                           \
        const TYPE *p = (const TYPE *)data;                                                        \
        for (Py_ssize_t i = (FIRST); (STEP) > 0 ? i <= (LAST) : i >= (LAST); i += (STEP)) {        \
            if (p[i] != (TYPE)(unsigned char)needle[0]) continue;                                  \
            Py_ssize_t k = 1;                                                                      \
            while (k < n && p[i + k] == (TYPE)(unsigned char)needle[k]) k++;                       \
            if (k == n) return i;                                                                  \
        }                                                                                          \
    } while (0)

static Py_ssize_t search(PyObject *s, const char *needle, Py_ssize_t start, Py_ssize_t end,
                         int forward) {
    const Py_ssize_t n = (Py_ssize_t)strlen(needle);
    const void *data = PyUnicode_DATA(s);
    if (end - start < n) return -1;
    Py_ssize_t first = forward ? start : end - n, last = forward ? end - n : start;
    int step = forward ? 1 : -1;
    switch (PyUnicode_KIND(s)) {
    case PyUnicode_1BYTE_KIND:
        FIND_LOOP(Py_UCS1, first, last, step);
        break;
    case PyUnicode_2BYTE_KIND:
        FIND_LOOP(Py_UCS2, first, last, step);
        break;
    default:
        FIND_LOOP(Py_UCS4, first, last, step);
        break;
    }
    return -1;
}

static inline Py_ssize_t find(PyObject *s, const char *needle, Py_ssize_t start, Py_ssize_t end) {
    return search(s, needle, start, end, 1);
}

static inline Py_ssize_t rfind(PyObject *s, const char *needle, Py_ssize_t start, Py_ssize_t end) {
    return search(s, needle, start, end, 0);
}

static inline Py_ssize_t find_char(PyObject *s, Py_UCS4 c, Py_ssize_t start, Py_ssize_t end) {
    return PyUnicode_FindChar(s, c, start, end, 1);
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A plain decimal (`-12.5`, `3.0e-04`) read exactly: when its digits fit in 2**53 and its
 * power of ten in 1e22, both are exact doubles and one IEEE multiply or divide rounds
 * correctly (Clinger's fast path, which strtod itself takes first). 1 with *out set; 0 to
 * leave the text to PyOS_string_to_double. */
static int plain_decimal(const char *s, Py_ssize_t n, double *out) {
    Py_ssize_t i = 0;
    int negative = 0, any = 0, dot = 0, digits = 0, fraction = 0;
    unsigned long long mantissa = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) negative = s[i++] == '-';
    for (; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            any = 1;
            if (mantissa == 0 && c == '0') {
                fraction += dot;
                continue;
            }
            if (++digits > 16) return 0;
            mantissa = mantissa * 10 + (unsigned long long)(c - '0');
            fraction += dot;
        } else if (c == '.' && !dot) {
            dot = 1;
        } else {
            break;
        }
    }
    if (!any) return 0;
    int exponent = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int sign = 1, exp_digits = 0;
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) sign = s[i++] == '-' ? -1 : 1;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (++exp_digits > 4) return 0;
            exponent = exponent * 10 + (s[i] - '0');
        }
        if (!exp_digits) return 0;
        exponent *= sign;
    }
    if (i != n || mantissa > (1ULL << 53)) return 0;
    int power = exponent - fraction;
    double value = (double)mantissa;
    if (mantissa == 0) value = 0.0;
    else if (power >= 0 && power <= 22) value *= POW10[power];
    else if (power < 0 && power >= -22) value /= POW10[-power];
    else return 0;
    *out = negative ? -value : value;
    return 1;
}

/* float(text[b:e]), or NULL with ValueError. */
static PyObject *float_of(PyObject *line, Py_ssize_t b, Py_ssize_t e) {
    char buf[64];
    Py_ssize_t n = e - b;
    const int kind = PyUnicode_KIND(line);
    const void *data = PyUnicode_DATA(line);
    double fast;
    if (kind == PyUnicode_1BYTE_KIND && plain_decimal((const char *)data + b, n, &fast))
        return PyFloat_FromDouble(fast);
    if (n > 0 && n < (Py_ssize_t)sizeof buf) {
        int ascii = 1;
        for (Py_ssize_t j = 0; j < n; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, b + j);
            if (c >= 0x80 || c == '_' || c <= ' ') {
                ascii = 0;
                break;
            }
            buf[j] = (char)c;
        }
        if (ascii && kind != PyUnicode_1BYTE_KIND && plain_decimal(buf, n, &fast))
            return PyFloat_FromDouble(fast);
        if (ascii) {
            buf[n] = 0;
            char *stop;
            double v = PyOS_string_to_double(buf, &stop, NULL);
            if (v == -1.0 && PyErr_Occurred()) return NULL;
            if (stop == buf + n) return PyFloat_FromDouble(v);
        }
    }
    /* Anything else exactly as float() reads it. */
    PyObject *text = PyUnicode_Substring(line, b, e);
    if (text == NULL) return NULL;
    PyObject *value = PyFloat_FromString(text);
    Py_DECREF(text);
    return value;
}

/* ---- records: `out[name] = (keys, steps, values, 0)`, as LineMetricsParser._emit ---- */

static int emit(PyObject *out, PyObject *name, long long key, PyObject *step, PyObject *value) {
    PyObject *chunk = PyDict_GetItemWithError(out, name);
    if (chunk == NULL) {
        if (PyErr_Occurred()) return -1;
        chunk = Py_BuildValue("([][][]i)", 0);
        if (chunk == NULL) return -1;
        if (PyDict_SetItem(out, name, chunk) < 0) {
            Py_DECREF(chunk);
            return -1;
        }
        Py_DECREF(chunk); /* the dict holds it */
    }
    PyObject *k = PyLong_FromLongLong(key);
    if (k == NULL) return -1;
    int rc = PyList_Append(PyTuple_GET_ITEM(chunk, 0), k);
    Py_DECREF(k);
    if (rc < 0) return -1;
    if (PyList_Append(PyTuple_GET_ITEM(chunk, 1), step) < 0) return -1;
    return PyList_Append(PyTuple_GET_ITEM(chunk, 2), value);
}

/* ---- rows of one shape ---- */

/* A template is a tuple of items: a str is literal text, 0 a run of digits and dots
 * (`[0-9.]*`), 1 the start and 2 the end of a captured value. */
enum { RUN = 0, OPEN = 1, CLOSE = 2 };
static PyObject *op_run, *op_open; /* the int objects of RUN and OPEN, to spot them by identity */

#define MAX_VALUES 64

/* Match line[pos:end] (less one final "\n") against the template, as the template's regex
 * `fullmatch`es it; store each captured value's span. Returns the number of values, or -1 when
 * the text does not match. */
static int match_range(PyObject *line, Py_ssize_t pos, Py_ssize_t end, PyObject *tmpl,
                       Py_ssize_t *spans) {
    const int kind = PyUnicode_KIND(line);
    const void *data = PyUnicode_DATA(line);
    const Py_ssize_t start = pos;
    int values = 0;
    if (end > start && PyUnicode_READ(kind, data, end - 1) == '\n') end--;
    Py_ssize_t items = PyTuple_GET_SIZE(tmpl);
    for (Py_ssize_t k = 0; k < items; k++) {
        PyObject *item = PyTuple_GET_ITEM(tmpl, k);
        if (PyUnicode_Check(item)) {
            Py_ssize_t n = PyUnicode_GET_LENGTH(item);
            if (pos + n > end) return -1;
            int item_kind = PyUnicode_KIND(item);
            const void *item_data = PyUnicode_DATA(item);
            if (item_kind == kind) {
                if (memcmp((const char *)data + pos * kind, item_data, (size_t)(n * kind))) return -1;
            } else {
                for (Py_ssize_t j = 0; j < n; j++)
                    if (PyUnicode_READ(kind, data, pos + j) != PyUnicode_READ(item_kind, item_data, j))
                        return -1;
            }
            pos += n;
        } else {
            long op = item == op_run ? RUN : item == op_open ? OPEN : PyLong_AsLong(item);
            if (op == RUN) {
                while (pos < end) {
                    Py_UCS4 c = PyUnicode_READ(kind, data, pos);
                    if (!((c >= '0' && c <= '9') || c == '.')) break;
                    pos++;
                }
            } else if (op == OPEN) {
                if (values >= MAX_VALUES) return -1;
                spans[2 * values] = pos;
            } else {
                spans[2 * values + 1] = pos;
                values++;
            }
        }
    }
    return pos == end ? values : -1;
}

static int match_row(PyObject *line, PyObject *tmpl, Py_ssize_t *spans) {
    return match_range(line, 0, PyUnicode_GET_LENGTH(line), tmpl, spans);
}

/* ---- the parser's progress-bar state, read once per call ---- */

/* The parser attributes the bar routes read and write. Only these routes run while a C call
 * holds them (Python runs in between calls, never during one, except `_tqdm_step`, `_number`
 * and `_valid_key`, which touch none of them), so each call reads them once and writes back
 * the one that is replaced rather than changed in place. */
typedef struct {
    PyObject *parser;
    PyObject *tqdm_tail; /* str, owned: `_tqdm_tail` */
    int tqdm_tail_changed;
    int rich_pending; /* a line just read left `_prev_kind` at "rich": the scan stops */
    PyObject *tqdm_steps, *tqdm_shown, *bar_tail, *bar_shown, *keras_epoch, *plans, *rows; /* owned */
} Bars;

static void bars_init(Bars *st, PyObject *parser) {
    memset(st, 0, sizeof *st);
    st->parser = parser;
}

static int bars_load(Bars *st) {
    if (st->tqdm_tail != NULL) return 0;
    st->tqdm_tail = PyObject_GetAttr(st->parser, str_tqdm_tail);
    st->tqdm_steps = PyObject_GetAttr(st->parser, str_tqdm_steps);
    st->tqdm_shown = PyObject_GetAttr(st->parser, str_tqdm_shown);
    st->bar_tail = PyObject_GetAttr(st->parser, str_bar_tail);
    st->bar_shown = PyObject_GetAttr(st->parser, str_bar_shown);
    st->keras_epoch = PyObject_GetAttr(st->parser, str_keras_epoch);
    st->plans = PyObject_GetAttr(st->parser, str_plans);
    st->rows = PyObject_GetAttr(st->parser, str_rows);
    if (!st->tqdm_tail || !st->tqdm_steps || !st->tqdm_shown || !st->bar_tail || !st->bar_shown ||
        !st->keras_epoch || !st->plans || !st->rows)
        return -1;
    if (!PyUnicode_Check(st->tqdm_tail) || !PyDict_Check(st->tqdm_steps) || !PyDict_Check(st->tqdm_shown) ||
        !PyDict_Check(st->bar_tail) || !PyDict_Check(st->bar_shown) || !PyDict_Check(st->plans) ||
        !PyDict_Check(st->rows)) {
        PyErr_SetString(PyExc_TypeError, "the parser's bar state is not dicts");
        return -1;
    }
    return 0;
}

/* Write back what changed and let go of everything; returns `rc`, or -1 if writing fails. */
static int bars_done(Bars *st, int rc) {
    if (st->tqdm_tail_changed && PyObject_SetAttr(st->parser, str_tqdm_tail, st->tqdm_tail) < 0)
        rc = -1;
    Py_CLEAR(st->tqdm_tail);
    Py_CLEAR(st->tqdm_steps);
    Py_CLEAR(st->tqdm_shown);
    Py_CLEAR(st->bar_tail);
    Py_CLEAR(st->bar_shown);
    Py_CLEAR(st->keras_epoch);
    Py_CLEAR(st->plans);
    Py_CLEAR(st->rows);
    st->tqdm_tail_changed = 0;
    st->rich_pending = 0;
    return rc;
}

/* ---- tqdm ---- */

/* Whether s[b:e] is a redraw `_line` sends to `_tqdm` and `_tqdm` reads without its `_tokens`
 * fallback: holds "it/s" and " [" and no "━" (`heavy`: whether the part holds one), and a "]"
 * after its last " [". Sets *open to that " [" and *close to the "]". */
static int tqdm_part(PyObject *s, Py_ssize_t b, Py_ssize_t e, int heavy, Py_ssize_t *open,
                     Py_ssize_t *close) {
    if (heavy || rfind(s, "it/s", b, e) < 0) return 0;
    *open = rfind(s, " [", b, e);
    if (*open < 0) return 0;
    *close = find_char(s, ']', *open, e);
    return *close >= 0;
}

/* The value of a bar postfix's `key=raw` or `key: raw`: float(raw), else `_number(raw)`.
 * New reference; NULL with no error set when it holds no number. */
static PyObject *bar_value(PyObject *raw) {
    PyObject *value = float_of(raw, 0, PyUnicode_GET_LENGTH(raw));
    if (value != NULL || !PyErr_ExceptionMatches(PyExc_ValueError)) return value;
    PyErr_Clear();
    value = PyObject_CallOneArg(number_func, raw);
    if (value == Py_None) Py_CLEAR(value);
    return value;
}

/* A postfix value as a record of `name` at `step` when it holds a number (see `bar_value`).
 * 0, or -1 on an error. */
static int bar_point(PyObject *out, PyObject *name, PyObject *raw, PyObject *step, long long *key) {
    PyObject *value = bar_value(raw);
    if (value == NULL) return PyErr_Occurred() ? -1 : 0;
    int rc = emit(out, name, (*key)++, step, value);
    Py_DECREF(value);
    return rc;
}

/* `_valid_key(name)`: 1, 0, or -1 on an error. */
static int valid_key(PyObject *name) {
    if (PyUnicode_IsIdentifier(name)) return 1;
    PyObject *ok = PyObject_CallOneArg(valid_key_func, name);
    if (ok == NULL) return -1;
    int valid = PyObject_IsTrue(ok);
    Py_DECREF(ok);
    return valid;
}

#define AT(j) PyUnicode_READ(kind, data, (j))

/* s[b:e] as `isdigit()` and `float()` read it when it is ASCII: 1 with *out set; 0 when empty
 * or not all digits; -1 when all digits but more than 15 (Python reads those). */
static int ascii_digits(int kind, const void *data, Py_ssize_t b, Py_ssize_t e, double *out) {
    if (e <= b) return 0;
    unsigned long long value = 0;
    for (Py_ssize_t j = b; j < e; j++) {
        Py_UCS4 c = AT(j);
        if (c < '0' || c > '9') return 0;
        value = value * 10 + (c - '0'); /* wraps past 19 digits: refused below */
    }
    if (e - b > 15) return -1;
    *out = (double)value; /* below 10**15 < 2**53: exact */
    return 1;
}

/* Where `_EPOCH_IN_DESC` (`[Ee]poch[ _:=]*(\d+)`) finds its digits in s[b:e]: 1 with them in
 * s[*first:*last] (ASCII), 0 when it finds none, -1 when `\d` may take a non-ASCII digit
 * there (Python reads those). */
static int epoch_span(PyObject *s, Py_ssize_t b, Py_ssize_t e, Py_ssize_t *first,
                      Py_ssize_t *last) {
    const int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t hit = b + 1; hit + 4 <= e; hit++) {
        if (AT(hit) != 'p' || AT(hit + 1) != 'o' || AT(hit + 2) != 'c' || AT(hit + 3) != 'h')
            continue;
        if (AT(hit - 1) != 'E' && AT(hit - 1) != 'e') continue;
        Py_ssize_t j = hit + 4;
        while (j < e && (AT(j) == ' ' || AT(j) == '_' || AT(j) == ':' || AT(j) == '=')) j++;
        if (j >= e) continue;
        if (AT(j) >= 0x80) return -1;
        if (AT(j) < '0' || AT(j) > '9') continue;
        Py_ssize_t k = j;
        while (k < e && AT(k) >= '0' && AT(k) <= '9') k++;
        if (k < e && AT(k) >= 0x80) return -1;
        *first = j;
        *last = k;
        return 1;
    }
    return 0;
}

/* `LineMetricsParser._tqdm_step` for the head s[b:e]: 1 with *out set, 0 for None, -1 when the
 * head holds what only Python reads alike (non-ASCII where `isdigit` and `\d` may see digits,
 * numbers of more than 15 digits). */
static int tqdm_step(PyObject *s, Py_ssize_t b, Py_ssize_t e, double *out) {
    const int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    /* counter = head[head.rfind(" ") + 1:] */
    Py_ssize_t c0 = e;
    while (c0 > b && AT(c0 - 1) != ' ') c0--;
    Py_ssize_t slash = -1;
    for (Py_ssize_t j = c0; j < e; j++) {
        Py_UCS4 c = AT(j);
        if (c >= 0x80) return -1;
        if (c == '/' && slash < 0) slash = j;
    }
    Py_ssize_t done_end = e, total_at = -1;
    if (slash >= 0) {
        done_end = slash;
        total_at = slash + 1;
    } else if (e - c0 >= 2 && AT(e - 2) == 'i' && AT(e - 1) == 't') {
        done_end = e - 2;
    }
    double step, total;
    int digits = ascii_digits(kind, data, c0, done_end, &step);
    if (digits <= 0) return digits; /* not `isdigit()`: None */
    digits = total_at >= 0 ? ascii_digits(kind, data, total_at, e, &total) : 0;
    if (digits < 0) return -1;
    if (digits) {
        /* `[Ee]poch[ _:=]*(\d+)`, searched before the bar's first "|" (Python looks only
         * when "poch" is in the head; where it is not, the epoch is 0 here and adds 0). */
        Py_ssize_t limit = b;
        while (limit < e && AT(limit) != '|') limit++;
        double epoch = 0;
        Py_ssize_t first, last;
        int found = epoch_span(s, b, limit, &first, &last);
        if (found < 0 || (found && ascii_digits(kind, data, first, last, &epoch) != 1)) return -1;
        step += epoch * total;
    }
    *out = step;
    return 1;
}

#undef AT

/* `LineMetricsParser._tqdm` for one part s = line[b:e] whose last " [" is at `start` and the
 * "]" after it at `end` (see `tqdm_part`). Returns 0, or -1 on an error. */
static int tqdm_redraw(Bars *st, PyObject *line, Py_ssize_t b, Py_ssize_t start, Py_ssize_t end,
                       PyObject *out, long long *key) {
    /* parts = s[start + 2 : end].split(", ", 2); tail = parts[2] if any */
    Py_ssize_t tail_at = -1;
    Py_ssize_t first = find(line, ", ", start + 2, end);
    if (first >= 0) {
        Py_ssize_t second = find(line, ", ", first + 2, end);
        if (second >= 0) tail_at = second + 2;
    }
    PyObject *tail = tail_at >= 0 ? PyUnicode_Substring(line, tail_at, end) : Py_NewRef(str_empty);
    if (tail == NULL) return -1;
    int same = PyUnicode_Compare(tail, st->tqdm_tail) == 0;
    if (same) {
        Py_DECREF(tail);
        return 0; /* a redraw (time, rate, bar) with no new value */
    }
    Py_SETREF(st->tqdm_tail, tail); /* st owns it; `tail` is borrowed below */
    st->tqdm_tail_changed = 1;
    if (PyUnicode_GET_LENGTH(tail) == 0) return 0;
    /* The step its head (`Epoch 1:  54%|█████ | 54/100`) says. */
    double value;
    PyObject *step;
    int known = tqdm_step(line, b, start, &value);
    if (known == 1) {
        step = PyFloat_FromDouble(value);
        if (step == NULL) return -1;
    } else if (known == 0) {
        return 0; /* no counter: no step, no point */
    } else {
        /* A head only Python reads alike (non-ASCII digits): `_tqdm_step`, as `_tqdm` calls it,
         * remembered per head. */
        PyObject *head = PyUnicode_Substring(line, b, start);
        if (head == NULL) return -1;
        step = PyDict_GetItemWithError(st->tqdm_steps, head);
        if (step != NULL) {
            Py_INCREF(step);
        } else {
            if (PyErr_Occurred() ||
                (step = PyObject_CallMethodOneArg(st->parser, tqdm_step_name, head)) == NULL) {
                Py_DECREF(head);
                return -1;
            }
            if (step == Py_None) {
                Py_DECREF(step);
                Py_DECREF(head);
                return 0;
            }
            if (PyDict_GET_SIZE(st->tqdm_steps) > MAX_TQDM_HEADS) PyDict_Clear(st->tqdm_steps);
            if (PyDict_SetItem(st->tqdm_steps, head, step) < 0) {
                Py_DECREF(step);
                Py_DECREF(head);
                return -1;
            }
        }
        Py_DECREF(head);
    }
    int rc = 0;
    Py_ssize_t pos = 0, tail_len = PyUnicode_GET_LENGTH(tail);
    while (rc == 0) {
        Py_ssize_t sep = find(tail, ", ", pos, tail_len);
        Py_ssize_t stop = sep >= 0 ? sep : tail_len;
        Py_ssize_t eq = find_char(tail, '=', pos, stop);
        if (eq > pos) {
            PyObject *name = PyUnicode_Substring(tail, pos, eq);
            PyObject *raw = name ? PyUnicode_Substring(tail, eq + 1, stop) : NULL;
            if (raw == NULL) {
                Py_XDECREF(name);
                rc = -1;
                break;
            }
            /* Lightning keeps showing val_loss beside every later train_loss: only a changed
             * text is a new value. */
            PyObject *before = PyDict_GetItemWithError(st->tqdm_shown, name);
            int repeat = before != NULL ? PyUnicode_Compare(before, raw) == 0 : 0;
            if (before == NULL && PyErr_Occurred()) rc = -1;
            if (rc == 0 && !repeat) {
                if (PyDict_SetItem(st->tqdm_shown, name, raw) < 0) rc = -1;
                int usable = rc == 0 ? PySet_Contains(ignored_keys, name) : -1;
                if (usable == 0) usable = valid_key(name);
                else if (usable == 1) usable = 0;
                if (usable < 0) rc = -1;
                if (usable == 1 && bar_point(out, name, raw, step, key) < 0) rc = -1;
            }
            Py_DECREF(name);
            Py_DECREF(raw);
        }
        if (sep < 0) break;
        pos = sep + 2;
    }
    Py_DECREF(step);
    return rc;
}

/* ---- Keras ---- */

/* `_ANSI.sub("", s)`: CSI (ESC [ [0-9;?]* [ -/]* [@-~]), OSC (ESC ] [^BEL ESC]* (BEL | ESC \))
 * and charset (ESC [()] [A-Za-z0-9]) sequences removed; any other ESC stays. The three sets of
 * a CSI are disjoint, so reading each greedily is what the regex matches. New reference. */
static PyObject *strip_ansi(PyObject *s) {
    const int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    const Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    Py_UCS4 *buf = PyMem_Malloc(sizeof(Py_UCS4) * (len ? len : 1));
    if (buf == NULL) return PyErr_NoMemory();
    Py_ssize_t n = 0, i = 0;
#define CH(j) PyUnicode_READ(kind, data, (j))
    while (i < len) {
        Py_UCS4 c = CH(i);
        if (c == 0x1b && i + 1 < len) {
            Py_UCS4 d = CH(i + 1);
            Py_ssize_t j = i + 2;
            if (d == '[') {
                while (j < len && ((CH(j) >= '0' && CH(j) <= '9') || CH(j) == ';' || CH(j) == '?')) j++;
                while (j < len && CH(j) >= ' ' && CH(j) <= '/') j++;
                if (j < len && CH(j) >= '@' && CH(j) <= '~') {
                    i = j + 1;
                    continue;
                }
            } else if (d == ']') {
                while (j < len && CH(j) != 0x07 && CH(j) != 0x1b) j++;
                if (j < len && CH(j) == 0x07) {
                    i = j + 1;
                    continue;
                }
                if (j + 1 < len && CH(j) == 0x1b && CH(j + 1) == '\\') {
                    i = j + 2;
                    continue;
                }
            } else if ((d == '(' || d == ')') && j < len &&
                       ((CH(j) >= 'A' && CH(j) <= 'Z') || (CH(j) >= 'a' && CH(j) <= 'z') ||
                        (CH(j) >= '0' && CH(j) <= '9'))) {
                i = j + 1;
                continue;
            }
        }
        buf[n++] = c;
        i++;
    }
#undef CH
    PyObject *out = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, n);
    PyMem_Free(buf);
    return out;
}

/* The counter a Keras redraw starts with (`3/8`), as `_keras` reads it: its first
 * whitespace-separated token split at "/". 1 with *done and *total (NaN: none) set; 0 when
 * `_keras` would not read the part as a bar, or reads its digits some other way (non-ASCII). */
static int keras_counter(PyObject *s, Py_ssize_t b, Py_ssize_t e, double *done, double *total) {
    const int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t i = b;
    while (i < e && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) i++;
    Py_ssize_t first = i;
    while (i < e && !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) i++;
    Py_ssize_t last = i; /* the token is s[first:last] */
    Py_ssize_t slash = find_char(s, '/', first, last);
    if (slash <= first) return 0; /* no slash, or nothing before it */
    char buf[64];
    for (int part = 0; part < 2; part++) {
        Py_ssize_t from = part ? slash + 1 : first, to = part ? last : slash;
        Py_ssize_t n = to - from;
        if (n >= (Py_ssize_t)sizeof buf) return 0;
        for (Py_ssize_t j = 0; j < n; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, from + j);
            if (c >= 0x80) return 0;
            if (c < '0' || c > '9') {
                if (!part) return 0; /* `done.isdigit()` fails: `_tokens` reads the part */
                *total = Py_NAN;     /* `total.isdigit()` fails: no total */
                n = -1;
                break;
            }
            buf[j] = (char)c;
        }
        if (n < 0) continue;
        if (n == 0) {
            if (!part) return 0;
            *total = Py_NAN;
            continue;
        }
        buf[n] = 0;
        double v = PyOS_string_to_double(buf, NULL, NULL);
        if (v == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (part) *total = v;
        else *done = v;
    }
    return 1;
}

/* `_bar(kind, tail, ..., colon=True)` once its step is known: the `key: value` pairs of `tail`
 * (Keras's `- loss: 0.2877 - val_loss: 0.3266`, rich's `v_num: 0 train_loss: 1.4`) whose text
 * changed since the bar of this kind last showed them. 0, or -1 on an error. */
static int colon_bar(Bars *st, PyObject *kind, PyObject *tail, double value_step, PyObject *out,
                     long long *key) {
    int rc = -1;
    PyObject *shown = NULL, *tokens = NULL, *spaced = NULL;
    PyObject *step = PyFloat_FromDouble(value_step);
    if (step == NULL) return -1;
    spaced = PyUnicode_Replace(tail, str_dash, str_space, -1);
    if (spaced == NULL) goto done;
    tokens = PyUnicode_Split(spaced, NULL, -1);
    if (tokens == NULL) goto done;
    shown = PyDict_GetItemWithError(st->bar_shown, kind);
    if (shown == NULL) {
        if (PyErr_Occurred()) goto done;
        shown = PyDict_New();
        if (shown == NULL || PyDict_SetItem(st->bar_shown, kind, shown) < 0) goto done;
    } else {
        Py_INCREF(shown);
    }
    Py_ssize_t count = PyList_GET_SIZE(tokens);
    for (Py_ssize_t index = 0; index + 1 < count; index++) {
        PyObject *token = PyList_GET_ITEM(tokens, index);
        Py_ssize_t n = PyUnicode_GET_LENGTH(token);
        if (PyUnicode_READ_CHAR(token, n - 1) != ':') continue;
        PyObject *raw = PyList_GET_ITEM(tokens, index + 1);
        PyObject *name = PyUnicode_Substring(token, 0, n - 1);
        if (name == NULL) goto done;
        /* `key in _IGNORED or shown.get(key) == raw or not _valid_key(key)`: passed over */
        int skip = PySet_Contains(ignored_keys, name);
        if (skip == 0) {
            PyObject *was = PyDict_GetItemWithError(shown, name);
            if (was != NULL) skip = PyObject_RichCompareBool(was, raw, Py_EQ);
            else if (PyErr_Occurred()) skip = -1;
        }
        if (skip == 0) {
            int valid = valid_key(name);
            skip = valid < 0 ? -1 : !valid;
        }
        if (skip == 0 && PyDict_SetItem(shown, name, raw) < 0) skip = -1;
        if (skip == 0 && bar_point(out, name, raw, step, key) < 0) skip = -1;
        Py_DECREF(name);
        if (skip < 0) goto done;
    }
    rc = 0;
done:
    Py_DECREF(step);
    Py_XDECREF(shown);
    Py_XDECREF(tokens);
    Py_XDECREF(spaced);
    return rc;
}

/* `epoch * total + step` as `_bar` computes it with a Python int epoch (None, or an epoch past
 * the floats: `step`). */
static int bar_step(PyObject *epoch, double total, double step, double *out) {
    *out = step;
    if (epoch == Py_None || Py_IS_NAN(total) || total == 0.0) return 0;
    double epochs = PyLong_AsDouble(epoch);
    if (epochs == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear(); /* an epoch past the floats (a garbled header): the bar's own count */
        return 0;
    }
    *out = epochs * total + step;
    return 0;
}

/* Whether the text of `tail` equals what `_bar_tail[kind]` holds; if not, it holds it now.
 * 1, 0, or -1 on an error. */
static int same_tail(Bars *st, PyObject *kind, PyObject *tail) {
    PyObject *before = PyDict_GetItemWithError(st->bar_tail, kind);
    if (before != NULL) {
        int same = PyObject_RichCompareBool(before, tail, Py_EQ);
        if (same != 0) return same;
    } else if (PyErr_Occurred()) {
        return -1;
    }
    return PyDict_SetItem(st->bar_tail, kind, tail) < 0 ? -1 : 0;
}

/* `_keras` then `_bar(..., colon=True)` for one part s = line[b:e]. 0, or -1 on an error. */
static int keras_redraw(Bars *st, PyObject *line, Py_ssize_t b, Py_ssize_t e, PyObject *out,
                        long long *key) {
    double done = 0, total = Py_NAN, value_step;
    keras_counter(line, b, e, &done, &total); /* checked before: it reads */
    Py_ssize_t mark = find(line, "/step", b, e);
    PyObject *tail = PyUnicode_Substring(line, mark + 5, e);
    if (tail == NULL) return -1;
    int rc = same_tail(st, str_keras, tail);
    if (rc == 0) {
        /* Keras numbers epochs from 1 in its `Epoch 3/10` header: `_bar` gets epoch - 1. */
        PyObject *epoch = Py_NewRef(Py_None);
        if (st->keras_epoch != Py_None) {
            PyObject *one = PyLong_FromLong(1);
            Py_SETREF(epoch, one ? PyNumber_Subtract(st->keras_epoch, one) : NULL);
            Py_XDECREF(one);
        }
        rc = epoch == NULL || bar_step(epoch, total, done, &value_step) < 0
                 ? -1
                 : colon_bar(st, str_keras, tail, value_step, out, key);
        Py_XDECREF(epoch);
    }
    Py_DECREF(tail);
    return rc < 0 ? -1 : 0;
}

/* ---- rich (Lightning's RichProgressBar) ---- */

static inline int rich_bar_char(Py_UCS4 c) {
    return c == 0x2501 || c == 0x257A || c == 0x2578 || c == 0x257E || c == 0x257C || c == ' ';
}

/* `_RICH_COUNTER.search(s, b, rate)`, i.e. `━[━╺╸╾╼ ]*\s(\d+)/(\d+)\s` before `rate`: 1 with
 * the match's start and both numbers set; 0 when there is none; -1 when Unicode digits might
 * make one (Python reads those). */
static int rich_counter(PyObject *s, Py_ssize_t b, Py_ssize_t rate, Py_ssize_t *start, double *done,
                        double *total) {
    const int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
#define AT(j) PyUnicode_READ(kind, data, (j))
    Py_ssize_t at = b;
    while (at < rate) {
        if (AT(at) != 0x2501) {
            at++;
            continue;
        }
        /* Every start inside one run of bar characters ends where the run ends: the regex
         * takes the whole run, then gives back its last character to `\s` if it must. */
        Py_ssize_t end = at + 1;
        while (end < rate && rich_bar_char(AT(end))) end++;
        Py_ssize_t digits = -1;
        if (end < rate && Py_UNICODE_ISSPACE(AT(end))) digits = end + 1;
        else if (AT(end - 1) == ' ') digits = end;
        /* `\d` is any Unicode digit: a non-ASCII character where one may stand is Python's */
        if (digits >= 0 && digits < rate && AT(digits) >= 0x80) return -1;
        if (digits >= 0) {
            Py_ssize_t j = digits;
            while (j < rate && AT(j) >= '0' && AT(j) <= '9') j++;
            Py_ssize_t slash = j;
            if (j > digits && j < rate && AT(j) >= 0x80) return -1;
            if (j > digits && j < rate && AT(j) == '/') {
                Py_ssize_t k = j + 1;
                while (k < rate && AT(k) >= '0' && AT(k) <= '9') k++;
                if (k < rate && AT(k) >= 0x80 && !Py_UNICODE_ISSPACE(AT(k))) return -1;
                if (k > j + 1 && k < rate && Py_UNICODE_ISSPACE(AT(k))) {
                    if (ascii_digits(kind, data, digits, slash, done) != 1 ||
                        ascii_digits(kind, data, slash + 1, k, total) != 1)
                        return -1;
                    *start = at;
                    return 1;
                }
            }
        }
        at = end;
    }
    return 0;
#undef AT
}

/* `_EPOCH_IN_DESC.search(s[b:e])` read as an int: 1 with *epoch (a new int), 0 when there is
 * none, -1 on an error or when only Python reads it alike (non-ASCII digits). */
static int epoch_in(PyObject *s, Py_ssize_t b, Py_ssize_t e, PyObject **epoch) {
    Py_ssize_t first, last;
    int found = epoch_span(s, b, e, &first, &last);
    if (found <= 0) return found;
    PyObject *text = PyUnicode_Substring(s, first, last);
    if (text == NULL) return -1;
    *epoch = PyLong_FromUnicodeObject(text, 10);
    Py_DECREF(text);
    return *epoch == NULL ? -1 : 1;
}

/* A rich bar's part, read before anything changes (see `rich_redraw`). */
typedef struct {
    double step, total;
    PyObject *epoch; /* int or None, owned */
    Py_ssize_t rate; /* its first "it/s" */
} Rich;

/* `_rich`'s reading of s[b:e]: RICH with *r set, SKIP when it has no counter (then `_rich`
 * changes nothing), 0 when only Python reads it alike, -1 on an error. */
static int rich_part(PyObject *s, Py_ssize_t b, Py_ssize_t e, Rich *r) {
    r->rate = find(s, "it/s", b, e);
    Py_ssize_t start;
    int found = rich_counter(s, b, r->rate, &start, &r->step, &r->total);
    if (found <= 0) return found < 0 ? 0 : SKIP;
    r->epoch = NULL;
    int epoch = find(s, "poch", b, start) >= 0 ? epoch_in(s, b, start, &r->epoch) : 0;
    if (epoch < 0) {
        if (PyErr_Occurred()) return -1;
        return 0;
    }
    if (epoch == 0) r->epoch = Py_NewRef(Py_None);
    return RICH;
}

/* s[b:e].strip() (Unicode whitespace, as str.strip). New reference. */
static PyObject *stripped(PyObject *s, Py_ssize_t b, Py_ssize_t e) {
    while (b < e && Py_UNICODE_ISSPACE(PyUnicode_READ_CHAR(s, b))) b++;
    while (e > b && Py_UNICODE_ISSPACE(PyUnicode_READ_CHAR(s, e - 1))) e--;
    return PyUnicode_Substring(s, b, e);
}

/* `_rich` for the part s[b:e] `rich_part` read: the bar's step remembered for a wrapped second
 * line, then its postfix read if it changed. 0, or -1 on an error. */
static int rich_redraw(Bars *st, PyObject *s, Py_ssize_t e, Rich *r, PyObject *out,
                       long long *key) {
    PyObject *remembered = Py_BuildValue("(ddO)", r->step, r->total, r->epoch);
    if (remembered == NULL) return -1;
    int rc = PyObject_SetAttr(st->parser, str_rich_step, remembered);
    Py_DECREF(remembered);
    if (rc < 0) return -1;
    PyObject *tail = stripped(s, r->rate + 4, e);
    if (tail == NULL) return -1;
    rc = same_tail(st, str_rich, tail);
    double value_step;
    if (rc == 0)
        rc = bar_step(r->epoch, r->total, r->step, &value_step) < 0
                 ? -1
                 : colon_bar(st, str_rich, tail, value_step, out, key);
    Py_DECREF(tail);
    return rc < 0 ? -1 : 0;
}

/* `_bar("rich+", s.strip(), *_rich_step)`: rich's wrapped second line (`val_loss: 0.826`). */
static int rich_more(Bars *st, PyObject *s, Py_ssize_t b, Py_ssize_t e, Rich *r, PyObject *out,
                     long long *key) {
    PyObject *tail = stripped(s, b, e);
    if (tail == NULL) return -1;
    double value_step;
    int rc = bar_step(r->epoch, r->total, r->step, &value_step) < 0
                 ? -1
                 : colon_bar(st, str_rich_more, tail, value_step, out, key);
    Py_DECREF(tail);
    return rc;
}

/* ---- lines of progress-bar redraws ---- */


/* What `_segment` does with s[b:e] by its shape (no bar in it): SKIP when `_plans` knows the
 * shape to hold no metric (a blank part, the line end after a last "\r", a cursor-up row);
 * PLAN when the shape has a plan whose template (in `_rows`) reads the part, with the plan in
 * *plan and the part's values (floats) in *values (new references); 0 for anything else (a
 * shape not seen yet, a part its plan does not read: Python); -1 on an error. */
static int part_plan(Bars *st, PyObject *s, Py_ssize_t b, Py_ssize_t e, PyObject **plan,
                     PyObject **values) {
    Text t;
    text_of(s, &t);
    t.data = (const char *)t.data + b * t.kind;
    t.len = e - b;
    char stack[1024];
    char *buf = t.len * 4 <= (Py_ssize_t)sizeof stack ? stack : PyMem_Malloc(t.len * 4);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int plain;
    PyObject *shape = PyBytes_FromStringAndSize(buf, shape_into(&t, buf, &plain));
    if (buf != stack) PyMem_Free(buf);
    if (shape == NULL) return -1;
    PyObject *known = PyDict_GetItemWithError(st->plans, shape);
    PyObject *cached = known != NULL && known != Py_None ? PyDict_GetItemWithError(st->rows, shape)
                                                          : NULL;
    Py_DECREF(shape);
    if (PyErr_Occurred()) return -1;
    if (known == Py_None) return SKIP;
    /* `_rows[shape]` is (plan, row): the row made for this very plan, and one that reads. */
    if (cached == NULL || !PyTuple_Check(cached) || PyTuple_GET_SIZE(cached) != 2 ||
        PyTuple_GET_ITEM(cached, 0) != known || PyTuple_GET_ITEM(cached, 1) == Py_None)
        return 0;
    PyObject *tmpl = PyObject_GetAttr(PyTuple_GET_ITEM(cached, 1), str_template);
    if (tmpl == NULL) return -1;
    Py_ssize_t spans[2 * MAX_VALUES];
    int width = PyTuple_Check(tmpl) ? match_range(s, b, e, tmpl, spans) : -1;
    Py_DECREF(tmpl);
    if (width < 0) return 0; /* `_apply` is False: `_slow` reads it */
    PyObject *list = PyList_New(width);
    if (list == NULL) return -1;
    for (int v = 0; v < width; v++) {
        PyObject *value = float_of(s, spans[2 * v], spans[2 * v + 1]);
        if (value == NULL) {
            Py_DECREF(list);
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) return -1;
            PyErr_Clear();
            return 0;
        }
        PyList_SET_ITEM(list, v, value);
    }
    *plan = Py_NewRef(known);
    *values = list;
    return PLAN;
}

/* `_apply`'s records for a part `part_plan` read: the plan's series from its values, with the
 * plan's step (or epoch) as their step, counted where neither is given and the plan is not a
 * dict's. 0, or -1 on an error. */
static int plan_records(PyObject *plan, PyObject *values, PyObject *out, long long *key) {
    int rc = -1;
    PyObject *step_at = PyObject_GetAttr(plan, str_step_at);
    PyObject *epoch_at = PyObject_GetAttr(plan, str_epoch_at);
    PyObject *dict_mode = PyObject_GetAttr(plan, str_dict_mode);
    PyObject *metrics = PyObject_GetAttr(plan, str_metrics);
    if (!step_at || !epoch_at || !dict_mode || !metrics || !PyTuple_Check(metrics)) goto done;
    long s_at = PyLong_AsLong(step_at), e_at = PyLong_AsLong(epoch_at);
    int dict = PyObject_IsTrue(dict_mode);
    if ((s_at == -1 || e_at == -1) && PyErr_Occurred()) goto done;
    if (dict < 0) goto done;
    Py_ssize_t width = PyList_GET_SIZE(values);
    if (s_at >= width || e_at >= width) {
        PyErr_SetString(PyExc_IndexError, "a plan's value index is out of range");
        goto done;
    }
    PyObject *step = s_at >= 0 ? PyList_GET_ITEM(values, s_at) : Py_None;
    PyObject *epoch = e_at >= 0 ? PyList_GET_ITEM(values, e_at) : Py_None;
    if (step == Py_None && !dict) step = epoch;
    /* `_emit(..., count=not dict_mode)`: a step-less record of a counted series */
    PyObject *recorded = step == Py_None && !dict ? count_marker : step;
    for (Py_ssize_t m = 0; m < PyTuple_GET_SIZE(metrics); m++) {
        PyObject *pair = PyTuple_GET_ITEM(metrics, m);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a plan's metrics are (name, index) pairs");
            goto done;
        }
        Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 1));
        if (at == -1 && PyErr_Occurred()) goto done;
        if (at < 0 || at >= width) {
            PyErr_SetString(PyExc_IndexError, "a plan's value index is out of range");
            goto done;
        }
        if (emit(out, PyTuple_GET_ITEM(pair, 0), (*key)++, recorded, PyList_GET_ITEM(values, at)) < 0)
            goto done;
    }
    if (epoch != Py_None && e_at >= 0 && s_at >= 0 &&
        emit(out, str_epoch, (*key)++, recorded, epoch) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(step_at);
    Py_XDECREF(epoch_at);
    Py_XDECREF(dict_mode);
    Py_XDECREF(metrics);
    return rc;
}

/* How `_line` and `_segment` would read the part s[b:e], `*rich_before` saying whether the part
 * before it left `_prev_kind` at "rich" (updated for the next part): TQDM (with *open and *close
 * as `tqdm_part` sets them), KERAS, RICH or RICH_MORE (with *r), SKIP (nothing to read), PLAN
 * (see `part_plan`), 0 for any other route (left to Python), -1 on an error. `heavy`: whether
 * the part holds a "━". */
static int bar_part(Bars *st, PyObject *s, Py_ssize_t b, Py_ssize_t e, int heavy, int *rich_before,
                    Py_ssize_t *open, Py_ssize_t *close, Rich *r, PyObject **plan,
                    PyObject **values) {
    if (tqdm_part(s, b, e, heavy, open, close)) {
        *rich_before = 0;
        return TQDM;
    }
    /* `_segment`: rich's postfix wrapped onto the next terminal line */
    if (*rich_before && e - b >= 10 && find(s, "          ", b, b + 10) == b &&
        find(s, ": ", b, e) >= 0)
        return RICH_MORE;
    *rich_before = 0;
    if (find(s, "it/s", b, e) >= 0) {
        if (!heavy) return 0;
        int kind = rich_part(s, b, e, r);
        *rich_before = kind == RICH;
        return kind;
    }
    if (find(s, "/step", b, e) >= 0) {
        double done, total;
        return keras_counter(s, b, e, &done, &total) ? KERAS : 0;
    }
    if (bars_load(st) < 0) return -1;
    return part_plan(st, s, b, e, plan, values);
}

/* Cut s at its "\r"s (all of it when `split` is 0): the start of each part, and whether the
 * part holds a "━" (rich's bar: never read here). Returns the number of parts, or -1 if more
 * than MAX_PARTS. */
static Py_ssize_t cut_parts(PyObject *s, int split, Py_ssize_t *starts, int *heavy) {
    const int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    const Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    (void)kind;
    Py_ssize_t n = 1;
    starts[0] = 0;
    heavy[0] = 0;
    if (kind == PyUnicode_1BYTE_KIND) {
        if (!split) return 1;
        const char *p = data, *end = (const char *)data + len, *hit;
        while ((hit = memchr(p, '\r', (size_t)(end - p))) != NULL) {
            if (n >= MAX_PARTS) return -1;
            starts[n] = hit - (const char *)data + 1;
            heavy[n++] = 0;
            p = hit + 1;
        }
        return n;
    }
    /* Most lines hold no "━": one search says so, then only the "\r"s are looked for. */
    int any_heavy = PyUnicode_FindChar(s, 0x2501, 0, len, 1) >= 0;
    Py_ssize_t at = 0;
    while (split) {
        Py_ssize_t hit = PyUnicode_FindChar(s, '\r', at, len, 1);
        if (hit < 0) break;
        if (n >= MAX_PARTS) return -1;
        starts[n] = hit + 1;
        heavy[n++] = 0;
        at = hit + 1;
    }
    if (any_heavy)
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t e = i + 1 < n ? starts[i + 1] - 1 : len;
            heavy[i] = PyUnicode_FindChar(s, 0x2501, starts[i], e, 1) >= 0;
        }
    return n;
}

/* `_line` for a line made only of tqdm and Keras redraws and parts of known shapes (after its
 * ANSI codes, and with "\r", its backspaces, are removed). 1: read; 0: not such a line (nothing was touched,
 * Python reads it); -1: an error. */
static int bar_line(Bars *st, PyObject *line, PyObject *out, long long *key, int has_cr,
                    int has_esc) {
    PyObject *s = Py_NewRef(line);
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    if (has_esc) {
        Py_SETREF(s, strip_ansi(s));
        if (s == NULL) return -1;
        len = PyUnicode_GET_LENGTH(s);
        has_cr = find_char(s, '\r', 0, len) >= 0;
    }
    if (has_cr && find_char(s, 0x08, 0, len) >= 0) {
        Py_SETREF(s, PyUnicode_Replace(s, str_backspace, str_empty, -1));
        if (s == NULL) return -1;
        len = PyUnicode_GET_LENGTH(s);
    }
    Py_ssize_t starts[MAX_PARTS], opens[MAX_PARTS], closes[MAX_PARTS], ends[MAX_PARTS];
    int heavy[MAX_PARTS], kinds[MAX_PARTS];
    PyObject *plans[MAX_PARTS], *values[MAX_PARTS]; /* PLAN parts' (owned) */
    Rich riches[MAX_PARTS];                          /* RICH parts' (epoch owned) */
    int rich_before = 0, last_rich = -1;
    Py_ssize_t parts = cut_parts(s, has_cr, starts, heavy), n = 0;
    int skipped = 0;
    /* Every non-empty part must be a redraw read here, checked before anything changes. */
    for (Py_ssize_t i = 0; i < parts; i++) {
        Py_ssize_t b = starts[i], e = i + 1 < parts ? starts[i + 1] - 1 : len;
        if (e == b) continue;
        plans[n] = values[n] = NULL;
        riches[n].epoch = NULL;
        int kind = bar_part(st, s, b, e, heavy[i], &rich_before, &opens[n], &closes[n], &riches[n],
                            &plans[n], &values[n]);
        if (kind == RICH) last_rich = n;
        if (kind == RICH_MORE) riches[n] = riches[last_rich]; /* borrowed: the RICH part owns it */
        if (kind <= 0) {
            for (Py_ssize_t j = 0; j <= n; j++) {
                Py_XDECREF(plans[j]);
                Py_XDECREF(values[j]);
                if (j < n ? kinds[j] == RICH : 1) Py_XDECREF(riches[j].epoch);
            }
            Py_DECREF(s);
            return kind;
        }
        if (kind == SKIP) {
            skipped = 1;
            continue;
        }
        starts[n] = b;
        ends[n] = e;
        kinds[n++] = kind;
    }
    int rc = 1;
    if (parts < 0 || (n == 0 && !skipped)) rc = 0;
    else if (bars_load(st) < 0) rc = -1;
    /* `_prev_kind` is "" already (the scan runs only then); a part of rich's bar leaves it at
     * "rich", set below when the line ends so. */
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++) {
        int step_rc;
        switch (kinds[i]) {
        case TQDM:
            step_rc = tqdm_redraw(st, s, starts[i], opens[i], closes[i], out, key);
            break;
        case KERAS:
            step_rc = keras_redraw(st, s, starts[i], ends[i], out, key);
            break;
        case RICH:
            step_rc = rich_redraw(st, s, ends[i], &riches[i], out, key);
            break;
        case RICH_MORE:
            step_rc = rich_more(st, s, starts[i], ends[i], &riches[i], out, key);
            break;
        default:
            step_rc = plan_records(plans[i], values[i], out, key);
        }
        if (step_rc < 0) rc = -1;
    }
    /* A bar of rich last: its wrapped postfix may follow on the next line, which Python reads. */
    if (rc == 1 && rich_before && PyObject_SetAttr(st->parser, str_prev_kind, str_rich) < 0) rc = -1;
    if (rc == 1 && rich_before) st->rich_pending = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(plans[i]);
        Py_XDECREF(values[i]);
        if (kinds[i] == RICH) Py_XDECREF(riches[i].epoch);
    }
    Py_DECREF(s);
    return rc;
}

/* ---- shapes ---- */

/* The shape of a line: `line.encode("utf-8", "replace").translate(None, b"0123456789.")`.
 * Sets *plain to 0 when the line holds a character that needs the general route ("\0", "\r",
 * ESC). Returns a new bytes object, or NULL on an error. */
/* Bit 0: the byte is kept in a shape (all but the ASCII digits and "."); bit 1: the byte
 * sends its line to the general route ("\0", "\r", ESC). */
static unsigned char KEEP[256];

#define SHAPE_LOOP(TYPE)                                                                         \
    do {                                                                                           \
        const TYPE *src = (const TYPE *)t->data;                                                   \
        for (Py_ssize_t i = 0; i < len; i++) {                                                     \
            Py_UCS4 c = src[i];                                                                    \
            if (c < 0x80) {                                                                        \
                if ((c >= '0' && c <= '9') || c == '.') continue;                                  \
                if (c == 0 || c == '\r' || c == 0x1b) bad = 1;                                     \
                buf[n++] = (char)c;                                                                \
            } else if (c < 0x800) {                                                                \
                buf[n++] = (char)(0xC0 | (c >> 6));                                                \
                buf[n++] = (char)(0x80 | (c & 0x3F));                                              \
            } else if (c >= 0xD800 && c <= 0xDFFF) {                                               \
                buf[n++] = '?'; /* a lone surrogate, as the "replace" error handler writes it */  \
            } else if (c < 0x10000) {                                                              \
                buf[n++] = (char)(0xE0 | (c >> 12));                                               \
                buf[n++] = (char)(0x80 | ((c >> 6) & 0x3F));                                       \
                buf[n++] = (char)(0x80 | (c & 0x3F));                                              \
            } else {                                                                               \
                buf[n++] = (char)(0xF0 | (c >> 18));                                               \
                buf[n++] = (char)(0x80 | ((c >> 12) & 0x3F));                                      \
                buf[n++] = (char)(0x80 | ((c >> 6) & 0x3F));                                       \
                buf[n++] = (char)(0x80 | (c & 0x3F));                                              \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* The shape of a line into `buf` (room for 4 bytes a character); returns its length. */
static Py_ssize_t shape_into(const Text *t, char *buf, int *plain) {
    const Py_ssize_t len = t->len;
    Py_ssize_t n = 0;
    int bad = 0;
    switch (t->kind) {
    case PyUnicode_1BYTE_KIND:
        if (t->ascii) {
            /* ASCII: its own UTF-8; a branch-free copy that keeps what is not a digit or dot. */
            const Py_UCS1 *src = (const Py_UCS1 *)t->data;
            for (Py_ssize_t i = 0; i < len; i++) {
                Py_UCS1 c = src[i];
                buf[n] = (char)c;
                n += KEEP[c] & 1;
                bad |= KEEP[c];
            }
            bad >>= 1;
            break;
        }
        SHAPE_LOOP(Py_UCS1);
        break;
    case PyUnicode_2BYTE_KIND:
        SHAPE_LOOP(Py_UCS2);
        break;
    default:
        SHAPE_LOOP(Py_UCS4);
        break;
    }
    *plain = !bad;
    return n;
}

static PyObject *shape_of(const Text *t, char *stack, Py_ssize_t stack_size, int *plain) {
    Py_ssize_t cap = t->len * 4;
    char *buf = cap <= stack_size ? stack : PyMem_Malloc(cap ? cap : 1);
    if (buf == NULL) return PyErr_NoMemory();
    PyObject *shape = PyBytes_FromStringAndSize(buf, shape_into(t, buf, plain));
    if (buf != stack) PyMem_Free(buf);
    return shape;
}

static PyObject *py_to_float(PyObject *self, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "to_float(text: str)");
        return NULL;
    }
    return float_of(text, 0, PyUnicode_GET_LENGTH(text));
}

static PyObject *py_shape(PyObject *self, PyObject *line) {
    if (!PyUnicode_Check(line)) {
        PyErr_SetString(PyExc_TypeError, "shape(line: str)");
        return NULL;
    }
    char stack[1024];
    int plain;
    Text t;
    text_of(line, &t);
    return shape_of(&t, stack, sizeof stack, &plain);
}

/* ---- ShapeTable: the clean shapes seen, found without building their bytes ---- */

/* A cache in front of the parser's `_clean` dict (shape bytes -> bucket or None), probed with
 * a shape still in a C buffer: hashing and looking up a new bytes object per line cost more
 * than all the rest of a prose line. Entries are only ever added from `_clean` and a shape's
 * entry there never changes until `_clean` is cleared, when the parser clears this too. */
typedef struct {
    unsigned long long hash;
    PyObject *shape;  /* bytes, owned */
    PyObject *bucket; /* the `_clean` value (a bucket list or None), owned */
} ShapeEntry;

#define TABLE_SLOTS 16384 /* twice MAX_SHAPES rounded up: probes stay short */

typedef struct {
    PyObject_HEAD
    ShapeEntry *slots;
    Py_ssize_t used;
} ShapeTable;

static unsigned long long shape_hash(const char *p, Py_ssize_t n) {
    unsigned long long h = 0x9E3779B97F4A7C15ULL ^ (unsigned long long)n;
    while (n >= 8) {
        unsigned long long w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001B3ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    unsigned long long w = 0;
    memcpy(&w, p, (size_t)n);
    h = (h ^ w) * 0x100000001B3ULL;
    h ^= h >> 32;
    return h;
}

static void table_clear(ShapeTable *t) {
    if (t->slots == NULL) return;
    for (Py_ssize_t i = 0; i < TABLE_SLOTS; i++) {
        Py_CLEAR(t->slots[i].shape);
        Py_CLEAR(t->slots[i].bucket);
    }
    t->used = 0;
}

/* The entry for shape p[:n], or NULL. */
static ShapeEntry *table_find(ShapeTable *t, const char *p, Py_ssize_t n, unsigned long long h) {
    for (Py_ssize_t i = (Py_ssize_t)(h & (TABLE_SLOTS - 1));; i = (i + 1) & (TABLE_SLOTS - 1)) {
        ShapeEntry *e = &t->slots[i];
        if (e->shape == NULL) return NULL;
        if (e->hash == h && PyBytes_GET_SIZE(e->shape) == n &&
            memcmp(PyBytes_AS_STRING(e->shape), p, (size_t)n) == 0)
            return e;
    }
}

/* Remember shape -> bucket; a full table (past half) is started over. */
static void table_add(ShapeTable *t, PyObject *shape, PyObject *bucket, unsigned long long h) {
    if (t->used >= TABLE_SLOTS / 2) table_clear(t);
    Py_ssize_t i = (Py_ssize_t)(h & (TABLE_SLOTS - 1));
    while (t->slots[i].shape != NULL) i = (i + 1) & (TABLE_SLOTS - 1);
    t->slots[i].hash = h;
    t->slots[i].shape = Py_NewRef(shape);
    t->slots[i].bucket = Py_NewRef(bucket);
    t->used++;
}

static PyObject *table_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    ShapeTable *t = (ShapeTable *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    t->slots = PyMem_Calloc(TABLE_SLOTS, sizeof(ShapeEntry));
    if (t->slots == NULL) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    return (PyObject *)t;
}

static void table_dealloc(ShapeTable *t) {
    table_clear(t);
    PyMem_Free(t->slots);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *table_py_clear(ShapeTable *t, PyObject *unused) {
    table_clear(t);
    Py_RETURN_NONE;
}

static Py_ssize_t table_len(ShapeTable *t) { return t->used; }

static PyMethodDef table_methods[] = {
    {"clear", (PyCFunction)table_py_clear, METH_NOARGS, "Forget every shape."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods table_as_sequence = {.sq_length = (lenfunc)table_len};

static PyTypeObject ShapeTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runctl_tui.core.metrics._speedups.ShapeTable",
    .tp_basicsize = sizeof(ShapeTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The clean shapes a scan has found in the parser's `_clean` dict, by their bytes.",
    .tp_new = table_new,
    .tp_dealloc = (destructor)table_dealloc,
    .tp_methods = table_methods,
    .tp_as_sequence = &table_as_sequence,
};

/* scan(parser, lines, start, clean, unknown, loose, touched, table) -> index of the first line
 * at or after `start` that Python must read by the general route, or len(lines). `table` is the
 * parser's ShapeTable over `clean`.
 *
 * As the loop of `LineMetricsParser._batch` with nothing pending in `_prev_kind`: a line of a
 * clean shape joins its shape's bucket (a bucket getting its first line is added to
 * `touched`); a line of a shape known to hold no metric is passed over; a line of tqdm
 * redraws only is read into `loose` with keys from its index; the scan stops at any other. */
static PyObject *py_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8 || !PyList_Check(args[1]) || !PyDict_Check(args[3]) || !PyDict_Check(args[5]) ||
        !PyList_Check(args[6]) || !PyObject_TypeCheck(args[7], &ShapeTableType)) {
        PyErr_SetString(PyExc_TypeError,
                        "scan(parser, lines: list, start: int, clean: dict, unknown, loose: dict, "
                        "touched: list, table: ShapeTable)");
        return NULL;
    }
    PyObject *parser = args[0], *lines = args[1], *clean = args[3], *unknown = args[4];
    PyObject *loose = args[5], *touched = args[6];
    ShapeTable *table = (ShapeTable *)args[7];
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    char stack[4096];
    Py_ssize_t size = PyList_GET_SIZE(lines), i;
    Bars st;
    bars_init(&st, parser);
    for (i = start; i < size; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyUnicode_Check(line)) goto stop;
        Py_ssize_t len = PyUnicode_GET_LENGTH(line);
        int has_cr = find_char(line, '\r', 0, len) >= 0;
        int has_esc = find_char(line, 0x1b, 0, len) >= 0;
        if (has_cr || has_esc) {
            long long key = (long long)i << key_bits;
            int rc = bar_line(&st, line, loose, &key, has_cr, has_esc);
            if (rc < 0) goto fail;
            if (rc == 0) goto stop;
            if (st.rich_pending) {
                /* `_prev_kind` is "rich": the next line may be the bar's wrapped postfix */
                i++;
                goto stop;
            }
            continue;
        }
        Text t;
        text_of(line, &t);
        int plain;
        char *buf = stack;
        if (t.len * 4 > (Py_ssize_t)sizeof stack && (buf = PyMem_Malloc(t.len * 4)) == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        Py_ssize_t n = shape_into(&t, buf, &plain);
        PyObject *bucket = NULL;
        if (plain) {
            unsigned long long h = shape_hash(buf, n);
            ShapeEntry *entry = table_find(table, buf, n, h);
            if (entry != NULL) {
                bucket = entry->bucket;
            } else {
                PyObject *shape = PyBytes_FromStringAndSize(buf, n);
                if (shape != NULL) {
                    bucket = PyDict_GetItemWithError(clean, shape);
                    if (bucket != NULL) table_add(table, shape, bucket, h);
                    Py_DECREF(shape);
                }
            }
        }
        if (buf != stack) PyMem_Free(buf);
        if (bucket == NULL) {
            if (PyErr_Occurred()) goto fail;
            goto stop; /* a shape not seen before, or a line for the general route */
        }
        if (bucket == Py_None) continue; /* a shape known to hold no metric */
        if (bucket == unknown || !PyList_Check(bucket)) goto stop;
        if (PyList_GET_SIZE(bucket) == 0 && PyList_Append(touched, bucket) < 0) goto fail;
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL) goto fail;
        int rc = PyList_Append(bucket, index);
        Py_DECREF(index);
        if (rc < 0) goto fail;
    }
stop:
    if (bars_done(&st, 0) < 0) return NULL;
    return PyLong_FromSsize_t(i);
fail:
    bars_done(&st, -1);
    return NULL;
}

/* read_rows(template, lines, indices) -> one list of floats per captured value, or None when a
 * line does not match the template or a value is not a number. */
static PyObject *py_read_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "read_rows(template: tuple, lines: list, indices: list)");
        return NULL;
    }
    PyObject *tmpl = args[0], *lines = args[1], *indices = args[2];
    Py_ssize_t rows = PyList_GET_SIZE(indices);
    Py_ssize_t spans[2 * MAX_VALUES];
    PyObject *columns = NULL;
    int width = -1;
    for (Py_ssize_t r = 0; r < rows; r++) {
        Py_ssize_t index = PyLong_AsSsize_t(PyList_GET_ITEM(indices, r));
        if (index == -1 && PyErr_Occurred()) goto fail;
        if (index < 0 || index >= PyList_GET_SIZE(lines)) {
            PyErr_SetString(PyExc_IndexError, "read_rows: line index out of range");
            goto fail;
        }
        PyObject *line = PyList_GET_ITEM(lines, index);
        if (!PyUnicode_Check(line)) goto mismatch;
        int values = match_row(line, tmpl, spans);
        if (values < 0) goto mismatch;
        if (columns == NULL) {
            width = values;
            columns = PyList_New(width);
            if (columns == NULL) return NULL;
            for (int v = 0; v < width; v++) {
                PyObject *column = PyList_New(0);
                if (column == NULL) goto fail;
                PyList_SET_ITEM(columns, v, column);
            }
        } else if (values != width) {
            goto mismatch;
        }
        for (int v = 0; v < width; v++) {
            PyObject *value = float_of(line, spans[2 * v], spans[2 * v + 1]);
            if (value == NULL) {
                if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                    PyErr_Clear();
                    goto mismatch;
                }
                goto fail;
            }
            int rc = PyList_Append(PyList_GET_ITEM(columns, v), value);
            Py_DECREF(value);
            if (rc < 0) goto fail;
        }
    }
    if (columns == NULL) Py_RETURN_NONE;
    return columns;
mismatch:
    Py_XDECREF(columns);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(columns);
    return NULL;
}

/* ---- the per-series rules ---- */

/* `a == b` as Python's `==` gives it (no identity shortcut: a NaN never equals itself). */
static int equal(PyObject *a, PyObject *b) {
    if (PyFloat_CheckExact(a) && PyFloat_CheckExact(b))
        return PyFloat_AS_DOUBLE(a) == PyFloat_AS_DOUBLE(b);
    PyObject *result = PyObject_RichCompare(a, b, Py_EQ);
    if (result == NULL) return -1;
    int truth = PyObject_IsTrue(result);
    Py_DECREF(result);
    return truth;
}

#define MAX_CHUNKS 4096

/* settle(chunks, state, count) -> (steps, values): `_settle_slowly` over a series' chunks.
 *
 * `chunks` is a list of (keys, steps, values, offset), each in key order (a record's key is its
 * entry in keys plus the chunk's offset); their records are merged
 * into key order (the order they were written), then: a step that is `count` is the series'
 * next count; a record with the same step (not None) and value as the record kept before it
 * is dropped. `state` is the series' [count, last step, last value], updated. */
static PyObject *py_settle(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
        PyList_GET_SIZE(args[1]) != 3) {
        PyErr_SetString(PyExc_TypeError, "settle(chunks: list, state: list[3], count)");
        return NULL;
    }
    PyObject *chunks = args[0], *state = args[1], *count_marker = args[2];
    Py_ssize_t k = PyList_GET_SIZE(chunks);
    if (k > MAX_CHUNKS) {
        PyErr_SetString(PyExc_ValueError, "settle: too many chunks");
        return NULL;
    }
    PyObject *keys[64];
    PyObject **key_lists = k <= 64 ? keys : PyMem_Malloc(sizeof(PyObject *) * k);
    Py_ssize_t *cursor = PyMem_Calloc(k ? k : 1, sizeof(Py_ssize_t));
    long long *heads = PyMem_Malloc(sizeof(long long) * (k ? k : 1));
    long long *offsets = PyMem_Malloc(sizeof(long long) * (k ? k : 1));
    PyObject *out_steps = PyList_New(0), *out_values = PyList_New(0);
    PyObject *result = NULL;
    if (key_lists == NULL || cursor == NULL || heads == NULL || offsets == NULL || out_steps == NULL ||
        out_values == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < k; c++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, c);
        if (!PyTuple_Check(chunk) || PyTuple_GET_SIZE(chunk) != 4 ||
            !PyList_Check(PyTuple_GET_ITEM(chunk, 0)) || !PyList_Check(PyTuple_GET_ITEM(chunk, 1)) ||
            !PyList_Check(PyTuple_GET_ITEM(chunk, 2))) {
            PyErr_SetString(PyExc_TypeError, "settle: a chunk is (keys, steps, values, offset)");
            goto done;
        }
        key_lists[c] = PyTuple_GET_ITEM(chunk, 0);
        offsets[c] = PyLong_AsLongLong(PyTuple_GET_ITEM(chunk, 3));
        if (offsets[c] == -1 && PyErr_Occurred()) goto done;
        Py_ssize_t n = PyList_GET_SIZE(key_lists[c]);
        if (PyList_GET_SIZE(PyTuple_GET_ITEM(chunk, 1)) != n ||
            PyList_GET_SIZE(PyTuple_GET_ITEM(chunk, 2)) != n) {
            PyErr_SetString(PyExc_ValueError, "settle: a chunk's lists differ in length");
            goto done;
        }
        heads[c] = n ? PyLong_AsLongLong(PyList_GET_ITEM(key_lists[c], 0)) : 0;
        if (heads[c] == -1 && PyErr_Occurred()) goto done;
        heads[c] += offsets[c];
    }
    long long count = PyLong_AsLongLong(PyList_GET_ITEM(state, 0));
    if (count == -1 && PyErr_Occurred()) goto done;
    PyObject *last_step = Py_NewRef(PyList_GET_ITEM(state, 1));
    PyObject *last_value = Py_NewRef(PyList_GET_ITEM(state, 2));
    for (;;) {
        /* The chunk whose next record was written first. */
        Py_ssize_t best = -1;
        for (Py_ssize_t c = 0; c < k; c++) {
            if (cursor[c] >= PyList_GET_SIZE(key_lists[c])) continue;
            if (best < 0 || heads[c] < heads[best]) best = c;
        }
        if (best < 0) break;
        PyObject *chunk = PyList_GET_ITEM(chunks, best);
        Py_ssize_t at_ = cursor[best]++;
        if (cursor[best] < PyList_GET_SIZE(key_lists[best])) {
            heads[best] = PyLong_AsLongLong(PyList_GET_ITEM(key_lists[best], cursor[best]));
            if (heads[best] == -1 && PyErr_Occurred()) goto fail_last;
            heads[best] += offsets[best];
        }
        PyObject *step = PyList_GET_ITEM(PyTuple_GET_ITEM(chunk, 1), at_);
        PyObject *value = PyList_GET_ITEM(PyTuple_GET_ITEM(chunk, 2), at_);
        PyObject *kept_step;
        if (step == count_marker) {
            kept_step = PyFloat_FromDouble((double)(count + 1));
            if (kept_step == NULL) goto fail_last;
        } else {
            if (step != Py_None) {
                int same = equal(step, last_step);
                if (same > 0) same = equal(value, last_value);
                if (same < 0) goto fail_last;
                if (same) continue; /* the same point spelled twice */
            }
            kept_step = Py_NewRef(step);
        }
        count++;
        Py_SETREF(last_step, kept_step); /* owns the reference */
        Py_SETREF(last_value, Py_NewRef(value));
        if (PyList_Append(out_steps, last_step) < 0 || PyList_Append(out_values, value) < 0)
            goto fail_last;
    }
    PyObject *count_obj = PyLong_FromLongLong(count);
    if (count_obj == NULL) goto fail_last;
    PyList_SetItem(state, 0, count_obj);
    PyList_SetItem(state, 1, last_step);  /* steals */
    PyList_SetItem(state, 2, last_value); /* steals */
    result = PyTuple_Pack(2, out_steps, out_values);
    goto done;
fail_last:
    Py_DECREF(last_step);
    Py_DECREF(last_value);
done:
    if (key_lists != keys) PyMem_Free(key_lists);
    PyMem_Free(cursor);
    PyMem_Free(heads);
    PyMem_Free(offsets);
    Py_XDECREF(out_steps);
    Py_XDECREF(out_values);
    return result;
}

/* configure(number, valid_key, ignored, key_bits, count): what the C routes share with lines.py
 * (`count` is `_COUNT`, the step of a record whose series counts its points). */
static PyObject *py_configure(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyAnySet_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure(number, valid_key, ignored: frozenset, key_bits, count)");
        return NULL;
    }
    Py_XSETREF(count_marker, Py_NewRef(args[4]));
    Py_XSETREF(number_func, Py_NewRef(args[0]));
    Py_XSETREF(valid_key_func, Py_NewRef(args[1]));
    Py_XSETREF(ignored_keys, Py_NewRef(args[2]));
    long bits = PyLong_AsLong(args[3]);
    if (bits == -1 && PyErr_Occurred()) return NULL;
    key_bits = (int)bits;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))py_configure, METH_FASTCALL,
     "configure(number, valid_key, ignored, key_bits, count): what the C routes share with "
     "lines.py."},
    {"scan", (PyCFunction)(void (*)(void))py_scan, METH_FASTCALL,
     "scan(parser, lines, start, clean, unknown, loose, touched, table) -> index of the next "
     "line for the general route."},
    {"read_rows", (PyCFunction)(void (*)(void))py_read_rows, METH_FASTCALL,
     "read_rows(template, lines, indices) -> value columns, or None."},
    {"settle", (PyCFunction)(void (*)(void))py_settle, METH_FASTCALL,
     "settle(chunks, state, count) -> (steps, values): a series' records in order, by its rules."},
    {"to_float", (PyCFunction)py_to_float, METH_O,
     "to_float(text) -> float(text) as the C loops read values (ValueError alike)."},
    {"shape", (PyCFunction)py_shape, METH_O, "shape(line) -> the line's shape (bytes)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "C loops of runctl_tui.core.metrics.lines.", -1, methods,
    NULL,                  NULL,        NULL,                                       NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
#define INTERN(var, text)                                                                          \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(tqdm_step_name, "_tqdm_step");
    INTERN(str_tqdm_tail, "_tqdm_tail");
    INTERN(str_tqdm_steps, "_tqdm_steps");
    INTERN(str_tqdm_shown, "_tqdm_shown");
    INTERN(str_empty, "");
    INTERN(str_bar_tail, "_bar_tail");
    INTERN(str_bar_shown, "_bar_shown");
    INTERN(str_keras, "keras");
    INTERN(str_keras_epoch, "_keras_epoch");
    INTERN(str_plans, "_plans");
    INTERN(str_rows, "_rows");
    INTERN(str_step_at, "step_at");
    INTERN(str_epoch_at, "epoch_at");
    INTERN(str_dict_mode, "dict_mode");
    INTERN(str_metrics, "metrics");
    INTERN(str_template, "template");
    INTERN(str_epoch, "epoch");
    INTERN(str_rich, "rich");
    INTERN(str_rich_more, "rich+");
    INTERN(str_rich_step, "_rich_step");
    INTERN(str_prev_kind, "_prev_kind");
    INTERN(str_dash, " - ");
    INTERN(str_space, " ");
    INTERN(str_backspace, "\b");
#undef INTERN
    for (int c = 0; c < 256; c++)
        KEEP[c] = (unsigned char)((!((c >= '0' && c <= '9') || c == '.')) | ((c == 0 || c == '\r' || c == 0x1b) << 1));
    if ((op_run = PyLong_FromLong(RUN)) == NULL || (op_open = PyLong_FromLong(OPEN)) == NULL)
        return NULL;
    if (PyType_Ready(&ShapeTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ShapeTableType);
    if (PyModule_AddObject(m, "ShapeTable", (PyObject *)&ShapeTableType) < 0) {
        Py_DECREF(&ShapeTableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
