/* durable_core._core: the replay engine core.
 *
 * The twin is durable_core/_engine_py.py; the behaviour (and the policy callbacks it makes into
 * durable_core/context.py) must be the same. This file does the per-event work only:
 *
 *   - walk the events of an episode (NamedTuples: exact class check, fields by index);
 *   - match TaskScheduled / TimerCreated / SubOrchestrationInstanceCreated / EventSent to the
 *     pending action with the same sequence number, in a C array indexed by sequence number;
 *   - route completions to the pending task by scheduled id and resume the orchestrator with
 *     PyIter_Send (or its throw() for failures);
 *   - ContextCore.call_activity (the hottest user call) and the task objects themselves.
 *
 * Everything that is not per-event work is policy in Python, reached through the _on_*
 * methods of the context subclass. After every call into Python (user code or policy) the
 * state is re-read from the object, never from locals: user code can do anything.
 *
 * Payloads are deserialized only when code receives them (a task keeps the raw bytes). With
 * the default JSON converter its scanner (JsonDataConverter.json_scanner()) is called directly.
 */
#include "dc.h"

#include <stdint.h>
#include <string.h>

#define N_EVENTS 19

/* EVENT_TYPE numbers (durable_core/history.py) */
enum {
    E_EXECUTION_STARTED = 1, E_EXECUTION_COMPLETED, E_EXECUTION_TERMINATED,
    E_EXECUTION_SUSPENDED, E_EXECUTION_RESUMED, E_CONTINUE_AS_NEW, E_ORCHESTRATOR_STARTED,
    E_ORCHESTRATOR_COMPLETED, E_TASK_SCHEDULED, E_TASK_COMPLETED, E_TASK_FAILED,
    E_SUBORCH_CREATED, E_SUBORCH_COMPLETED, E_SUBORCH_FAILED, E_TIMER_CREATED, E_TIMER_FIRED,
    E_EVENT_RAISED, E_EVENT_SENT, E_PATCH_MARKER
};

/* task kinds and action kinds: durable_core/protocol.py (checked at registration) */
enum { K_ACTIVITY, K_TIMER, K_SUBORCH, K_EVENT, K_ALL, K_ANY, K_DONE, K_LAST };
enum { A_NONE = -1, A_TASK = 0, A_TIMER, A_SUBORCH, A_SEND };
enum { S_PENDING, S_DONE, S_FAILED };

struct dc_replay_state {
    PyTypeObject *task_type;
    PyTypeObject *ctx_type;
    PyObject *events[N_EVENTS + 1]; /* [EVENT_TYPE] -> class, set by _replay_register */
    PyObject *schedule_task;        /* the ScheduleTask action class */
    /* interned method/attribute names */
    PyObject *s_on_execution_started, *s_on_return, *s_on_error, *s_on_nondeterminism,
        *s_on_task_failed, *s_on_timer_link, *s_on_event_raised, *s_on_terminated,
        *s_on_cancel, *s_adopt, *s_call_activity_retry, *s_throw, *s_value, *s_serialize,
        *s_deserialize, *s_durable_name, *s_name, *s_input, *s_retry_policy, *s_casefold,
        *s_when_all_waits;
};

/* ------------------------------------------------------------------------------------------ */
/* objects                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct CtxObject CtxObject;

typedef struct {
    PyObject_HEAD
    int kind;
    int state;
    int computed;       /* K_ALL: value holds the result list */
    int fail_fast;      /* K_ALL: fail at the first failed child (else wait for all) */
    long long seq;
    PyObject *value;    /* result, exception (failed), winner (K_ANY); for a pending K_ALL
                         * the first failure of a child, reported once all have finished */
    PyObject *raw;      /* undecoded payload bytes, or NULL */
    PyObject *parents;  /* NULL, a task, or a list of tasks (composites waiting on it) */
    PyObject *children; /* composites: tuple of tasks */
    Py_ssize_t count;
    PyObject *extra;    /* policy data (retry state, event name, timer role) */
    PyObject *link;     /* policy data (timeout timer, retried task) */
    PyObject *ctx;      /* owning context (timers, event waits, policy-made tasks: for cancel;
                         * composites: the context whose when_all semantics apply) */
    PyObject *decoder;  /* (scanner or None, deserialize): decodes the raw payload */
} TaskObject;

typedef struct {
    PyObject *task;   /* pending task waiting for a completion with this id */
    PyObject *action; /* pending action (NULL: build ScheduleTask from name/input) */
    PyObject *name;   /* name to match (activities, sub-orchestrations) */
    PyObject *input;  /* action == NULL: the serialized input of a call_activity */
    int kind;         /* A_NONE when no action is pending */
} Slot;

struct CtxObject {
    PyObject_HEAD
    dc_replay_state *st;
    PyObject *instance_id;
    PyObject *parent_instance_id;
    PyObject *converter;
    PyObject *serialize;
    PyObject *deserialize;
    PyObject *scanner; /* JSON scanner or NULL */
    PyObject *decoder; /* (scanner or None, deserialize), shared by this context's tasks */
    PyObject *suspended_events;
    PyObject *completion; /* NULL or the CompleteOrchestration action */
    PyObject *gen;
    PyObject *awaiting;
    long long now_us;
    long long seq;
    int replaying;
    int suspended;
    int running;
    Slot *slots;          /* slots[i] is sequence number base + i */
    Py_ssize_t nslots;    /* allocated */
    long long base;
    long long min_action; /* lowest sequence number that may hold a pending action */
    PyObject *patch_ids;  /* NULL or the set of PatchMarker ids of the replayed history */
    int when_all_mode;    /* -1 not asked yet; 0 the legacy fail-fast when_all; 1 waits */
};

#define TASK(o) ((TaskObject *)(o))

/* ------------------------------------------------------------------------------------------ */
/* utilities                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static PyObject *
fetch_exc(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v != NULL && tb != NULL) {
        PyException_SetTraceback(v, tb);
    }
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

/* self.name(a, b, c, d): the arguments up to the first NULL are passed. */
static PyObject *
call_method4(PyObject *self, PyObject *name, PyObject *a, PyObject *b, PyObject *c,
             PyObject *d)
{
    PyObject *args[5] = {self, a, b, c, d};
    size_t n = 1;
    while (n < 5 && args[n] != NULL) {
        n++;
    }
    return PyObject_VectorcallMethod(name, args, n, NULL);
}

static PyObject *
call_method(PyObject *self, PyObject *name, PyObject *a, PyObject *b, PyObject *c)
{
    return call_method4(self, name, a, b, c, NULL);
}

/* Call a policy callback and drop its result: 0, or -1 with an exception set. */
static int
policy4(CtxObject *self, PyObject *name, PyObject *a, PyObject *b, PyObject *c, PyObject *d)
{
    PyObject *r = call_method4((PyObject *)self, name, a, b, c, d);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static int
policy(CtxObject *self, PyObject *name, PyObject *a, PyObject *b, PyObject *c)
{
    return policy4(self, name, a, b, c, NULL);
}

/* An int field as long long; *ok = 0 when it is not an int in range (no exception left). */
static long long
as_seq(PyObject *o, int *ok)
{
    *ok = 0;
    if (!PyLong_Check(o)) {
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (overflow != 0) {
        return -1;
    }
    *ok = 1;
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* Task                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Tasks start untracked by the cycle collector when they hold no container that could lead
 * back to them (activity tasks from call_activity: decoder tuple, raw bytes, scalar results);
 * they are tracked as soon as they get one (a parent, policy data, an exception, a container
 * result). Fan-outs keep thousands of tasks alive: tracking them all made GC a fifth of the
 * replay time. */
static inline void
task_track(TaskObject *t)
{
    if (!PyObject_GC_IsTracked((PyObject *)t)) {
        PyObject_GC_Track(t);
    }
}

static TaskObject *
task_new_internal(dc_replay_state *st, int kind, PyObject *ctx, PyObject *decoder, int track)
{
    TaskObject *t = PyObject_GC_New(TaskObject, st->task_type);
    if (t == NULL) {
        return NULL;
    }
    t->kind = kind;
    t->state = S_PENDING;
    t->computed = 0;
    t->fail_fast = 0;
    t->seq = -1;
    t->value = NULL;
    t->raw = NULL;
    t->parents = NULL;
    t->children = NULL;
    t->count = 0;
    t->extra = NULL;
    t->link = NULL;
    t->ctx = Py_XNewRef(ctx);
    t->decoder = Py_XNewRef(decoder);
    if (track || ctx != NULL) {
        PyObject_GC_Track(t);
    }
    return t;
}

static int
task_traverse(TaskObject *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->value);
    Py_VISIT(t->raw);
    Py_VISIT(t->parents);
    Py_VISIT(t->children);
    Py_VISIT(t->extra);
    Py_VISIT(t->link);
    Py_VISIT(t->ctx);
    Py_VISIT(t->decoder);
    return 0;
}

static int
task_clear(TaskObject *t)
{
    Py_CLEAR(t->value);
    Py_CLEAR(t->raw);
    Py_CLEAR(t->parents);
    Py_CLEAR(t->children);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->link);
    Py_CLEAR(t->ctx);
    Py_CLEAR(t->decoder);
    return 0;
}

static void
task_dealloc(TaskObject *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    PyObject_GC_UnTrack(t);
    task_clear(t);
    tp->tp_free((PyObject *)t);
    Py_DECREF(tp);
}

static int task_notify(TaskObject *t);

/* A task just finished: tell the composites waiting on it, then drop them -- they are never
 * needed again (composites hold their children, not the other way round) -- and stop tracking
 * an activity task that now holds nothing that could lead back to it. */
static int
task_finished(TaskObject *t)
{
    if (t->parents == NULL) {
        return 0;
    }
    int rc = task_notify(t);
    Py_CLEAR(t->parents);
    if (t->state == S_DONE && t->ctx == NULL && t->extra == NULL && t->link == NULL &&
        t->children == NULL && (t->value == NULL || !PyObject_IS_GC(t->value)) &&
        PyObject_GC_IsTracked((PyObject *)t)) {
        PyObject_GC_UnTrack(t);
    }
    return rc;
}

static int
task_set_done(TaskObject *t, PyObject *value, PyObject *raw)
{
    if (t->state != S_PENDING) {
        return 0;
    }
    t->state = S_DONE;
    if (value != NULL && PyObject_IS_GC(value)) {
        task_track(t);
    }
    Py_XSETREF(t->value, Py_XNewRef(value));
    if (raw != NULL && raw != Py_None) {
        Py_XSETREF(t->raw, Py_NewRef(raw));
    }
    return task_finished(t);
}

static int
task_set_failed(TaskObject *t, PyObject *exc)
{
    if (t->state != S_PENDING) {
        return 0;
    }
    t->state = S_FAILED;
    task_track(t); /* a traceback reaches frames, which may reach the task */
    Py_XSETREF(t->value, Py_NewRef(exc));
    return task_finished(t);
}

static int ctx_when_all_legacy(PyObject *ctx);

static int
task_child_done(TaskObject *parent, TaskObject *child)
{
    if (parent->state != S_PENDING) {
        return 0;
    }
    if (parent->kind == K_ANY) {
        return task_set_done(parent, (PyObject *)child, NULL);
    }
    if (child->state == S_FAILED) {
        int now = parent->fail_fast;
        if (!now && parent->value == NULL && parent->children != NULL &&
            parent->count + 1 < PyTuple_GET_SIZE(parent->children)) {
            /* The first failure while other tasks still run: where the old fail-fast
             * when_all and this one part. Executions that replay a history recorded with the
             * old one keep it (the policy decides, once per execution). */
            now = ctx_when_all_legacy(parent->ctx);
            if (now < 0) {
                return -1;
            }
            if (parent->state != S_PENDING) { /* re-read: Python code ran */
                return 0;
            }
        }
        if (now) {
            return task_set_failed(parent, child->value);
        }
        if (parent->value == NULL) { /* the first failure (in completion order) is reported */
            parent->value = Py_NewRef(child->value);
        }
    }
    parent->count++;
    if (parent->children == NULL || parent->count < PyTuple_GET_SIZE(parent->children)) {
        return 0;
    }
    if (parent->value != NULL) {
        PyObject *exc = parent->value;
        parent->value = NULL;
        int rc = task_set_failed(parent, exc);
        Py_DECREF(exc);
        return rc;
    }
    return task_set_done(parent, NULL, NULL);
}

static int
task_notify(TaskObject *t)
{
    PyObject *parents = Py_NewRef(t->parents);
    int rc = 0;
    if (PyList_CheckExact(parents)) {
        PyObject *copy = PyList_GetSlice(parents, 0, PyList_GET_SIZE(parents));
        if (copy == NULL) {
            rc = -1;
        }
        else {
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(copy) && rc == 0; i++) {
                rc = task_child_done(TASK(PyList_GET_ITEM(copy, i)), t);
            }
            Py_DECREF(copy);
        }
    }
    else {
        rc = task_child_done(TASK(parents), t);
    }
    Py_DECREF(parents);
    return rc;
}

static int
task_add_parent(TaskObject *t, PyObject *parent)
{
    task_track(t);
    if (t->parents == NULL) {
        t->parents = Py_NewRef(parent);
        return 0;
    }
    if (PyList_CheckExact(t->parents)) {
        return PyList_Append(t->parents, parent);
    }
    PyObject *lst = PyList_New(2);
    if (lst == NULL) {
        return -1;
    }
    PyList_SET_ITEM(lst, 0, t->parents); /* steals the old reference */
    PyList_SET_ITEM(lst, 1, Py_NewRef(parent));
    t->parents = lst;
    return 0;
}

static PyObject *task_result(TaskObject *t);

/* JSON scalars decoded in place (the most common small payloads): integers of up to 18
 * digits, strings without escapes or control characters, true/false/null. Returns a new
 * reference, or NULL without an exception when the text is anything else (then the scanner or
 * the converter decides, with the exact json semantics and errors). */
static PyObject *
json_scalar(const char *p, Py_ssize_t n)
{
    if (n <= 0) {
        return NULL;
    }
    if (p[0] == '"') {
        if (n < 2 || p[n - 1] != '"') {
            return NULL;
        }
        for (Py_ssize_t i = 1; i < n - 1; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c < 0x20 || c == '\\' || c == '"') {
                return NULL;
            }
        }
        PyObject *s = PyUnicode_DecodeUTF8(p + 1, n - 2, NULL);
        if (s == NULL) {
            PyErr_Clear();
        }
        return s;
    }
    if (n == 4 && memcmp(p, "true", 4) == 0) {
        Py_RETURN_TRUE;
    }
    if (n == 5 && memcmp(p, "false", 5) == 0) {
        Py_RETURN_FALSE;
    }
    if (n == 4 && memcmp(p, "null", 4) == 0) {
        Py_RETURN_NONE;
    }
    Py_ssize_t i = 0;
    int neg = 0;
    if (p[0] == '-') {
        neg = 1;
        i = 1;
    }
    Py_ssize_t digits = n - i;
    if (digits < 1 || digits > 18 || (p[i] == '0' && digits > 1)) {
        return NULL;
    }
    long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return NULL;
        }
        v = v * 10 + (p[i] - '0');
    }
    return PyLong_FromLongLong(neg ? -v : v);
}

/* The inverse for the default JSON converter: None (no payload), true/false, ints that fit in
 * 64 bits, strings needing no escapes -- the exact bytes JsonDataConverter.serialize makes
 * (compact, ensure_ascii=False). NULL without an exception for anything else. */
static PyObject *
json_scalar_encode(PyObject *v)
{
    if (v == Py_None) {
        return Py_NewRef(Py_None);
    }
    if (v == Py_True) {
        return PyBytes_FromStringAndSize("true", 4);
    }
    if (v == Py_False) {
        return PyBytes_FromStringAndSize("false", 5);
    }
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return NULL;
        }
        char buf[24];
        char *end = buf + sizeof buf, *p = end;
        unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
        do {
            *--p = (char)('0' + (int)(u % 10));
            u /= 10;
        } while (u != 0);
        if (x < 0) {
            *--p = '-';
        }
        return PyBytes_FromStringAndSize(p, end - p);
    }
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t len = PyUnicode_GET_LENGTH(v);
        int kind = PyUnicode_KIND(v);
        const void *data = PyUnicode_DATA(v);
        for (Py_ssize_t i = 0; i < len; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 0x20 || c == '"' || c == '\\') {
                return NULL;
            }
        }
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(v, &n);
        if (utf8 == NULL) { /* lone surrogates: the converter reports it */
            PyErr_Clear();
            return NULL;
        }
        PyObject *b = PyBytes_FromStringAndSize(NULL, n + 2);
        if (b == NULL) {
            PyErr_Clear();
            return NULL;
        }
        char *p = PyBytes_AS_STRING(b);
        p[0] = '"';
        memcpy(p + 1, utf8, (size_t)n);
        p[n + 1] = '"';
        return b;
    }
    return NULL;
}

/* Payload bytes -> value: the JSON scanner when there is one, else converter.deserialize.
 * decoder is the context's (scanner or None, deserialize) tuple. */
static PyObject *
ctx_decode(PyObject *decoder, PyObject *raw)
{
    PyObject *scanner = PyTuple_GET_ITEM(decoder, 0);
    PyObject *deserialize = PyTuple_GET_ITEM(decoder, 1);
    if (scanner != Py_None && PyBytes_CheckExact(raw)) {
        Py_ssize_t n = PyBytes_GET_SIZE(raw);
        PyObject *quick = json_scalar(PyBytes_AS_STRING(raw), n);
        if (quick != NULL) {
            return quick;
        }
        PyObject *s = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw), n, NULL);
        if (s != NULL) {
            PyObject *args[2] = {s, NULL};
            PyObject *zero = PyLong_FromLong(0);
            PyObject *r = NULL;
            if (zero != NULL) {
                args[1] = zero;
                r = PyObject_Vectorcall(scanner, args, 2, NULL);
                Py_DECREF(zero);
            }
            if (r != NULL && PyTuple_CheckExact(r) && PyTuple_GET_SIZE(r) == 2 &&
                PyLong_CheckExact(PyTuple_GET_ITEM(r, 1)) &&
                PyLong_AsSsize_t(PyTuple_GET_ITEM(r, 1)) == PyUnicode_GET_LENGTH(s)) {
                PyObject *v = Py_NewRef(PyTuple_GET_ITEM(r, 0));
                Py_DECREF(r);
                Py_DECREF(s);
                return v;
            }
            Py_XDECREF(r);
            Py_DECREF(s);
        }
        PyErr_Clear(); /* anything unusual: the converter decides (and names the error) */
    }
    PyObject *args[1] = {raw};
    return PyObject_Vectorcall(deserialize, args, 1, NULL);
}

/* The result of a completed task (new reference); raises for failed/pending tasks. */
static PyObject *
task_result(TaskObject *t)
{
    if (t->state == S_DONE) {
        if (t->raw != NULL) {
            if (t->decoder == NULL) { /* tasks are made by a context (never from Python) */
                PyErr_SetString(PyExc_RuntimeError, "task has no context to decode its result");
                return NULL;
            }
            PyObject *v = ctx_decode(t->decoder, t->raw);
            if (v == NULL) {
                return NULL;
            }
            if (PyObject_IS_GC(v)) {
                task_track(t); /* the cached result may come to hold the task */
            }
            Py_CLEAR(t->raw);
            Py_XSETREF(t->value, v);
        }
        else if (t->kind == K_ALL && !t->computed && t->children != NULL) {
            Py_ssize_t n = PyTuple_GET_SIZE(t->children);
            PyObject *lst = PyList_New(n);
            if (lst == NULL) {
                return NULL;
            }
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *v = task_result(TASK(PyTuple_GET_ITEM(t->children, i)));
                if (v == NULL) {
                    Py_DECREF(lst);
                    return NULL;
                }
                PyList_SET_ITEM(lst, i, v);
            }
            t->computed = 1;
            Py_XSETREF(t->value, lst);
        }
        return Py_NewRef(t->value != NULL ? t->value : Py_None);
    }
    if (t->state == S_FAILED) {
        PyErr_SetObject((PyObject *)Py_TYPE(t->value), t->value);
        return NULL;
    }
    PyErr_SetString(PyExc_RuntimeError, "the task is not complete yet");
    return NULL;
}

static PyObject *
task_get_result(TaskObject *t, PyObject *Py_UNUSED(ignored))
{
    return task_result(t);
}

static PyObject *
task_get_exception(TaskObject *t, PyObject *Py_UNUSED(ignored))
{
    if (t->state == S_FAILED) {
        return Py_NewRef(t->value);
    }
    Py_RETURN_NONE;
}

static PyObject *
task_cancel(TaskObject *t, PyObject *Py_UNUSED(ignored))
{
    if (t->kind != K_TIMER && t->kind != K_EVENT) {
        PyErr_SetString(PyExc_TypeError, "only timers and event waits can be cancelled");
        return NULL;
    }
    if (t->state != S_PENDING) {
        Py_RETURN_FALSE;
    }
    if (t->ctx == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "task has no context");
        return NULL;
    }
    PyObject *ctx = Py_NewRef(t->ctx);
    dc_replay_state *st = ((CtxObject *)ctx)->st;
    int rc = policy((CtxObject *)ctx, st->s_on_cancel, (PyObject *)t, NULL, NULL);
    Py_DECREF(ctx);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
task_m_complete(TaskObject *t, PyObject *value)
{
    if (task_set_done(t, value, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
task_m_complete_raw(TaskObject *t, PyObject *raw)
{
    if (raw != Py_None && !PyBytes_Check(raw)) {
        PyErr_SetString(PyExc_TypeError, "payload must be bytes or None");
        return NULL;
    }
    if (task_set_done(t, NULL, raw) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
task_m_fail(TaskObject *t, PyObject *exc)
{
    if (!PyExceptionInstance_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "_fail needs an exception instance");
        return NULL;
    }
    if (task_set_failed(t, exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
task_repr(TaskObject *t)
{
    static const char *states[] = {"pending", "completed", "failed"};
    return PyUnicode_FromFormat("<Task kind=%d seq=%lld %s>", t->kind, t->seq, states[t->state]);
}

static PyObject *
task_get_is_complete(TaskObject *t, void *Py_UNUSED(c))
{
    return PyBool_FromLong(t->state != S_PENDING);
}

static PyObject *
task_get_is_failed(TaskObject *t, void *Py_UNUSED(c))
{
    return PyBool_FromLong(t->state == S_FAILED);
}

static PyObject *
task_get_kind(TaskObject *t, void *Py_UNUSED(c))
{
    return PyLong_FromLong(t->kind);
}

static PyObject *
task_get_seq(TaskObject *t, void *Py_UNUSED(c))
{
    return PyLong_FromLongLong(t->seq);
}

static int
task_set_seq(TaskObject *t, PyObject *v, void *Py_UNUSED(c))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _seq");
        return -1;
    }
    long long s = PyLong_AsLongLong(v);
    if (s == -1 && PyErr_Occurred()) {
        return -1;
    }
    t->seq = s;
    return 0;
}

#define OBJ_GETSET(field)                                                                     \
    static PyObject *task_get_##field(TaskObject *t, void *Py_UNUSED(c))                      \
    {                                                                                         \
        return Py_NewRef(t->field != NULL ? t->field : Py_None);                              \
    }                                                                                         \
    static int task_set_##field(TaskObject *t, PyObject *v, void *Py_UNUSED(c))               \
    {                                                                                         \
        if (v != NULL && v != Py_None) {                                                      \
            task_track(t);                                                                    \
        }                                                                                     \
        Py_XSETREF(t->field, (v == NULL || v == Py_None) ? NULL : Py_NewRef(v));              \
        return 0;                                                                             \
    }
OBJ_GETSET(extra)
OBJ_GETSET(link)
#undef OBJ_GETSET

static PyObject *
task_get_ctx(TaskObject *t, void *Py_UNUSED(c))
{
    return Py_NewRef(t->ctx != NULL ? t->ctx : Py_None);
}

static PyGetSetDef task_getset[] = {
    {"is_complete", (getter)task_get_is_complete, NULL, "True once the operation finished.", NULL},
    {"is_failed", (getter)task_get_is_failed, NULL, "True if it finished with an error.", NULL},
    {"_kind", (getter)task_get_kind, NULL, NULL, NULL},
    {"_seq", (getter)task_get_seq, (setter)task_set_seq, NULL, NULL},
    {"_extra", (getter)task_get_extra, (setter)task_set_extra, NULL, NULL},
    {"_link", (getter)task_get_link, (setter)task_set_link, NULL, NULL},
    {"_ctx", (getter)task_get_ctx, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef task_methods[] = {
    {"get_result", (PyCFunction)task_get_result, METH_NOARGS,
     "The result of a completed task; raises its error if it failed."},
    {"get_exception", (PyCFunction)task_get_exception, METH_NOARGS,
     "The error of a failed task, else None."},
    {"cancel", (PyCFunction)task_cancel, METH_NOARGS,
     "Cancel a pending timer or event wait (False if it already finished)."},
    {"_complete", (PyCFunction)task_m_complete, METH_O, NULL},
    {"_complete_raw", (PyCFunction)task_m_complete_raw, METH_O, NULL},
    {"_fail", (PyCFunction)task_m_fail, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot task_slots[] = {
    {Py_tp_doc, "A task of the C replay engine (see durable_core.task.Task)."},
    {Py_tp_dealloc, task_dealloc},
    {Py_tp_traverse, task_traverse},
    {Py_tp_clear, task_clear},
    {Py_tp_repr, task_repr},
    {Py_tp_methods, task_methods},
    {Py_tp_getset, task_getset},
    {0, NULL},
};

static PyType_Spec task_spec = {
    .name = "durable_core._core.Task",
    .basicsize = sizeof(TaskObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = task_slots,
};

/* The context a task belongs to, as a new reference (NULL: unknown; no exception). Activity
 * tasks made by call_activity hold no reference to it (see task_track): their decoder tuple
 * holds a weak one. */
static PyObject *
task_owner(TaskObject *t)
{
    if (t->ctx != NULL) {
        return Py_NewRef(t->ctx);
    }
    if (t->decoder == NULL || PyTuple_GET_SIZE(t->decoder) < 3) {
        return NULL;
    }
    PyObject *w = PyTuple_GET_ITEM(t->decoder, 2);
    if (!PyWeakref_Check(w)) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj = NULL;
    if (PyWeakref_GetRef(w, &obj) < 0) {
        PyErr_Clear();
        return NULL;
    }
    return obj;
#else
    PyObject *obj = PyWeakref_GetObject(w); /* borrowed; None once dead */
    return obj == Py_None ? NULL : Py_NewRef(obj);
#endif
}

/* when_all / when_any */
static PyObject *
composite(PyObject *module, PyObject *tasks, int kind, int fail_fast)
{
    dc_replay_state *st = dc_get_state(module)->replay;
    PyObject *seq = PySequence_Tuple(tasks);
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    if (kind == K_ANY && n == 0) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "when_any needs at least one task");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_TYPE(PyTuple_GET_ITEM(seq, i)) != st->task_type) {
            PyErr_Format(PyExc_TypeError, "expected tasks, got %.100s",
                         Py_TYPE(PyTuple_GET_ITEM(seq, i))->tp_name);
            Py_DECREF(seq);
            return NULL;
        }
    }
    PyObject *owner = NULL; /* the context the tasks belong to (new reference) */
    for (Py_ssize_t i = 0; i < n && owner == NULL; i++) {
        owner = task_owner(TASK(PyTuple_GET_ITEM(seq, i)));
    }
    TaskObject *parent = task_new_internal(st, kind, owner, NULL, 1);
    Py_XDECREF(owner);
    if (parent == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    parent->children = seq; /* owns */
    parent->fail_fast = fail_fast;
    for (Py_ssize_t i = 0; i < n; i++) {
        TaskObject *c = TASK(PyTuple_GET_ITEM(seq, i));
        if (c->state == S_PENDING && task_add_parent(c, (PyObject *)parent) < 0) {
            Py_DECREF(parent);
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n && parent->state == S_PENDING; i++) {
        TaskObject *c = TASK(PyTuple_GET_ITEM(seq, i));
        if (c->state != S_PENDING && task_child_done(parent, c) < 0) {
            Py_DECREF(parent);
            return NULL;
        }
    }
    if (kind == K_ALL && n == 0) {
        PyObject *empty = PyList_New(0);
        if (empty == NULL) {
            Py_DECREF(parent);
            return NULL;
        }
        int rc = task_set_done(parent, empty, NULL);
        parent->computed = 1;
        Py_DECREF(empty);
        if (rc < 0) {
            Py_DECREF(parent);
            return NULL;
        }
    }
    return (PyObject *)parent;
}

static PyObject *
replay_when_all(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"tasks", "fail_fast", NULL};
    PyObject *tasks;
    int fail_fast = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$p:when_all", kwlist, &tasks,
                                     &fail_fast)) {
        return NULL;
    }
    return composite(module, tasks, K_ALL, fail_fast);
}

static PyObject *
replay_when_any(PyObject *module, PyObject *tasks)
{
    return composite(module, tasks, K_ANY, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* ContextCore: slots                                                                          */
/* ------------------------------------------------------------------------------------------ */

static void
slot_clear_action(Slot *s)
{
    s->kind = A_NONE;
    Py_CLEAR(s->action);
    Py_CLEAR(s->name);
    Py_CLEAR(s->input);
}

/* The slot of sequence number seq, growing the table; NULL with MemoryError. */
static Slot *
ctx_slot(CtxObject *self, long long seq)
{
    if (seq < self->base) {
        PyErr_SetString(PyExc_ValueError, "sequence number below the live range");
        return NULL;
    }
    long long idx = seq - self->base;
    if (idx >= (long long)self->nslots) {
        Py_ssize_t n = self->nslots ? self->nslots : 16;
        while ((long long)n <= idx) {
            if (n > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)sizeof(Slot)) {
                PyErr_NoMemory();
                return NULL;
            }
            n *= 2;
        }
        Slot *p = PyMem_Realloc(self->slots, (size_t)n * sizeof(Slot));
        if (p == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t i = self->nslots; i < n; i++) {
            p[i].task = p[i].action = p[i].name = p[i].input = NULL;
            p[i].kind = A_NONE;
        }
        self->slots = p;
        self->nslots = n;
    }
    return &self->slots[idx];
}

/* The slot of seq if it exists (no growth), else NULL (no exception). */
static inline Slot *
ctx_peek(CtxObject *self, long long seq)
{
    if (seq < self->base || seq - self->base >= (long long)self->nslots) {
        return NULL;
    }
    return &self->slots[seq - self->base];
}

/* Drop leading empty slots once they are half the table (keeps long sessions small). */
static void
ctx_compact(CtxObject *self)
{
    Py_ssize_t first = 0;
    long long live = self->seq - self->base;
    while (first < self->nslots && first < live && self->slots[first].task == NULL &&
           self->slots[first].kind == A_NONE) {
        first++;
    }
    if (first == 0 || first < self->nslots / 2) {
        return;
    }
    memmove(self->slots, self->slots + first, (size_t)(self->nslots - first) * sizeof(Slot));
    for (Py_ssize_t i = self->nslots - first; i < self->nslots; i++) {
        self->slots[i].task = self->slots[i].action = self->slots[i].name = NULL;
        self->slots[i].input = NULL;
        self->slots[i].kind = A_NONE;
    }
    self->base += first;
}

/* ------------------------------------------------------------------------------------------ */
/* ContextCore: object                                                                         */
/* ------------------------------------------------------------------------------------------ */

static PyObject *ctx_new(PyTypeObject *type, PyObject *args, PyObject *kwds);

static dc_replay_state *
state_of_type(PyTypeObject *type)
{
    for (PyTypeObject *t = type; t != NULL; t = t->tp_base) {
        if (t->tp_new == ctx_new && (t->tp_base == NULL || t->tp_base->tp_new != ctx_new)) {
            PyObject *m = PyType_GetModule(t);
            if (m == NULL) {
                return NULL;
            }
            return dc_get_state(m)->replay;
        }
    }
    PyErr_SetString(PyExc_TypeError, "not a ContextCore type");
    return NULL;
}

static PyObject *
ctx_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    dc_replay_state *st = state_of_type(type);
    if (st == NULL) {
        return NULL;
    }
    CtxObject *self = (CtxObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->st = st;
    self->when_all_mode = -1;
    self->suspended_events = PyList_New(0);
    if (self->suspended_events == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
ctx_init(CtxObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"instance_id", "converter", "scanner", NULL};
    PyObject *iid, *conv, *scanner = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:ContextCore", kwlist, &iid, &conv,
                                     &scanner)) {
        return -1;
    }
    if (!PyUnicode_Check(iid)) {
        PyErr_SetString(PyExc_TypeError, "instance_id must be a string");
        return -1;
    }
    PyObject *ser = PyObject_GetAttr(conv, self->st->s_serialize);
    if (ser == NULL) {
        return -1;
    }
    PyObject *de = PyObject_GetAttr(conv, self->st->s_deserialize);
    if (de == NULL) {
        Py_DECREF(ser);
        return -1;
    }
    Py_XSETREF(self->instance_id, Py_NewRef(iid));
    Py_XSETREF(self->converter, Py_NewRef(conv));
    Py_XSETREF(self->serialize, ser);
    Py_XSETREF(self->deserialize, de);
    Py_XSETREF(self->scanner, scanner == Py_None ? NULL : Py_NewRef(scanner));
    /* (scanner, deserialize, weak reference to this context) for the tasks: the last lets
     * when_all find the context of tasks that hold no strong reference to it */
    PyObject *me = PyWeakref_NewRef((PyObject *)self, NULL);
    if (me == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) { /* not weakly referenceable: fine */
            return -1;
        }
        PyErr_Clear();
        me = Py_NewRef(Py_None);
    }
    Py_XSETREF(self->decoder, PyTuple_Pack(3, scanner, de, me));
    Py_DECREF(me);
    return self->decoder == NULL ? -1 : 0;
}

static int
ctx_traverse(CtxObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->instance_id);
    Py_VISIT(self->parent_instance_id);
    Py_VISIT(self->converter);
    Py_VISIT(self->serialize);
    Py_VISIT(self->deserialize);
    Py_VISIT(self->scanner);
    Py_VISIT(self->decoder);
    Py_VISIT(self->suspended_events);
    Py_VISIT(self->completion);
    Py_VISIT(self->gen);
    Py_VISIT(self->awaiting);
    Py_VISIT(self->patch_ids);
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        Py_VISIT(self->slots[i].task);
        Py_VISIT(self->slots[i].action);
        Py_VISIT(self->slots[i].name);
        Py_VISIT(self->slots[i].input);
    }
    return 0;
}

static int
ctx_clear(CtxObject *self)
{
    Py_CLEAR(self->instance_id);
    Py_CLEAR(self->parent_instance_id);
    Py_CLEAR(self->converter);
    Py_CLEAR(self->serialize);
    Py_CLEAR(self->deserialize);
    Py_CLEAR(self->scanner);
    Py_CLEAR(self->decoder);
    Py_CLEAR(self->suspended_events);
    Py_CLEAR(self->completion);
    Py_CLEAR(self->gen);
    Py_CLEAR(self->awaiting);
    Py_CLEAR(self->patch_ids);
    for (Py_ssize_t i = 0; i < self->nslots; i++) {
        Py_CLEAR(self->slots[i].task);
        slot_clear_action(&self->slots[i]);
    }
    return 0;
}

static void
ctx_dealloc(CtxObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ctx_clear(self);
    PyMem_Free(self->slots);
    self->slots = NULL;
    self->nslots = 0;
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ------------------------------------------------------------------------------------------ */
/* ContextCore: driving the code                                                               */
/* ------------------------------------------------------------------------------------------ */

#define COMPLETE(self) ((self)->completion != NULL)

/* An exception raised by user code fails the instance (0 once the policy ran): any
 * BaseException -- SystemExit, KeyboardInterrupt, GeneratorExit raised explicitly, an
 * asyncio.CancelledError from an async def orchestrator -- as much as an Exception. Orchestrator
 * code is user code; what it raises is that instance's outcome, never the worker's. */
static int
user_error(CtxObject *self, PyObject *exc /* steals */)
{
    if (exc == NULL) {
        return -1;
    }
    int rc = policy(self, self->st->s_on_error, exc, NULL, NULL);
    Py_DECREF(exc);
    return rc;
}

/* Send value into (or throw it into) the code and record what it yields. */
static int
ctx_step(CtxObject *self, int throw, PyObject *value)
{
    dc_replay_state *st = self->st;
    Py_CLEAR(self->awaiting);
    if (self->gen == NULL) {
        return 0;
    }
    PyObject *gen = Py_NewRef(self->gen);
    PyObject *res = NULL;
    int kind; /* 0 yielded, 1 returned, -1 raised */
    if (!throw) {
        PySendResult sr = PyIter_Send(gen, value, &res);
        kind = sr == PYGEN_NEXT ? 0 : sr == PYGEN_RETURN ? 1 : -1;
    }
    else {
        res = call_method(gen, st->s_throw, value, NULL, NULL);
        if (res != NULL) {
            kind = 0;
        }
        else if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            PyObject *stop = fetch_exc();
            res = stop != NULL ? PyObject_GetAttr(stop, st->s_value) : NULL;
            Py_XDECREF(stop);
            if (res == NULL) {
                Py_DECREF(gen);
                return -1;
            }
            kind = 1;
        }
        else {
            kind = -1;
        }
    }
    Py_DECREF(gen);
    if (kind == -1) {
        Py_CLEAR(self->gen);
        return user_error(self, fetch_exc());
    }
    if (kind == 1) {
        Py_CLEAR(self->gen);
        int rc = policy(self, st->s_on_return, res, NULL, NULL);
        Py_DECREF(res);
        return rc;
    }
    if (COMPLETE(self)) { /* e.g. continue_as_new was called */
        Py_DECREF(res);
        return 0;
    }
    if (Py_TYPE(res) != st->task_type) {
        PyObject *t = call_method((PyObject *)self, st->s_adopt, res, NULL, NULL);
        Py_DECREF(res);
        if (t == NULL) {
            return user_error(self, fetch_exc());
        }
        res = t;
        if (Py_TYPE(res) != st->task_type) {
            Py_DECREF(res);
            PyErr_SetString(PyExc_TypeError, "_adopt must return a task");
            return -1;
        }
    }
    Py_XSETREF(self->awaiting, res);
    return 0;
}

/* Drive the code while the task it waits for is finished. */
static int
ctx_resume(CtxObject *self)
{
    while (!COMPLETE(self)) {
        TaskObject *t = TASK(self->awaiting);
        if (t == NULL || t->state == S_PENDING) {
            return 0;
        }
        Py_INCREF(t);
        int rc;
        if (t->state == S_FAILED) {
            PyObject *exc = Py_NewRef(t->value);
            rc = ctx_step(self, 1, exc);
            Py_DECREF(exc);
        }
        else {
            PyObject *v = task_result(t);
            if (v == NULL) {
                /* the converter failed to decode the result: the code gets the error where
                 * it waits, as if the call raised it (whatever it is) */
                PyObject *exc = fetch_exc();
                if (exc == NULL) {
                    Py_DECREF(t);
                    return -1;
                }
                rc = ctx_step(self, 1, exc);
                Py_DECREF(exc);
            }
            else {
                rc = ctx_step(self, 0, v);
                Py_DECREF(v);
            }
        }
        Py_DECREF(t);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* ContextCore: events                                                                         */
/* ------------------------------------------------------------------------------------------ */

static int ctx_dispatch(CtxObject *self, PyObject *ev);

static int
event_kind(dc_replay_state *st, PyObject *ev)
{
    PyObject *tp = (PyObject *)Py_TYPE(ev);
    /* the most frequent first */
    static const int order[N_EVENTS] = {
        E_TASK_COMPLETED, E_TASK_SCHEDULED, E_ORCHESTRATOR_STARTED, E_ORCHESTRATOR_COMPLETED,
        E_TIMER_CREATED, E_TIMER_FIRED, E_EVENT_RAISED, E_TASK_FAILED, E_EXECUTION_STARTED,
        E_SUBORCH_CREATED, E_SUBORCH_COMPLETED, E_SUBORCH_FAILED, E_EVENT_SENT,
        E_EXECUTION_SUSPENDED, E_EXECUTION_RESUMED, E_EXECUTION_TERMINATED,
        E_EXECUTION_COMPLETED, E_CONTINUE_AS_NEW, E_PATCH_MARKER};
    for (int i = 0; i < N_EVENTS; i++) {
        if (st->events[order[i]] == tp) {
            return order[i];
        }
    }
    return 0;
}

/* Event names match case-insensitively, as external events do (the Durable Task SDK checks a
 * replayed send_event the same way): 1 same, 0 different, -1 error. */
static int
same_event_name(dc_replay_state *st, PyObject *a, PyObject *b)
{
    int eq = PyObject_RichCompareBool(a, b, Py_EQ);
    if (eq != 0 || !PyUnicode_Check(a) || !PyUnicode_Check(b)) {
        return eq;
    }
    PyObject *fa = PyObject_CallMethodNoArgs(a, st->s_casefold);
    if (fa == NULL) {
        return -1;
    }
    PyObject *fb = PyObject_CallMethodNoArgs(b, st->s_casefold);
    if (fb == NULL) {
        Py_DECREF(fa);
        return -1;
    }
    eq = PyObject_RichCompareBool(fa, fb, Py_EQ);
    Py_DECREF(fa);
    Py_DECREF(fb);
    return eq;
}

/* A history event recording an action (ev's event_id is its sequence number) meets the pending
 * action with that number: the kinds must agree, and the names (activities,
 * sub-orchestrations), or the target and event name (sent events). name/target: the event's,
 * NULL when not compared. Otherwise the policy is told (it fails the instance). */
static int
ctx_match(CtxObject *self, PyObject *ev, int kind, PyObject *name, PyObject *target)
{
    int ok;
    long long seq = as_seq(PyTuple_GET_ITEM(ev, 0), &ok);
    Slot *s = ok ? ctx_peek(self, seq) : NULL;
    dc_replay_state *st = self->st;
    if (s == NULL || s->kind == A_NONE) {
        PyObject *m1 = PyLong_FromLong(-1);
        if (m1 == NULL) {
            return -1;
        }
        int rc = policy4(self, st->s_on_nondeterminism, ev, m1, Py_None, Py_None);
        Py_DECREF(m1);
        return rc;
    }
    int skind = s->kind;
    PyObject *sname, *starget = NULL;
    if (skind == A_SEND && s->action != NULL && PyTuple_GET_SIZE(s->action) >= 3) {
        /* SendEvent(id, instance_id, name, input) */
        starget = Py_NewRef(PyTuple_GET_ITEM(s->action, 1));
        sname = Py_NewRef(PyTuple_GET_ITEM(s->action, 2));
    }
    else {
        sname = Py_XNewRef(s->name);
    }
    slot_clear_action(s); /* s is not used below: comparing may run Python code */
    int same = skind == kind;
    if (same && target != NULL) {
        same = starget != NULL ? PyObject_RichCompareBool(starget, target, Py_EQ) : 0;
    }
    if (same > 0 && name != NULL) {
        if (sname == NULL) {
            same = 0;
        }
        else if (kind == A_SEND) {
            same = same_event_name(st, sname, name);
        }
        else {
            same = PyObject_RichCompareBool(sname, name, Py_EQ);
        }
    }
    int rc = 0;
    if (same < 0) { /* a name object's __eq__ raised: user code, like any other */
        rc = user_error(self, fetch_exc());
    }
    else if (same == 0) {
        PyObject *k = PyLong_FromLong(skind);
        rc = k == NULL ? -1
                       : policy4(self, st->s_on_nondeterminism, ev, k,
                                sname != NULL ? sname : Py_None,
                                starget != NULL ? starget : Py_None);
        Py_XDECREF(k);
    }
    Py_XDECREF(sname);
    Py_XDECREF(starget);
    return rc;
}

/* Pop the pending task with the id in field idx of ev; NULL if none (no exception). */
static TaskObject *
ctx_pop_task(CtxObject *self, PyObject *ev, Py_ssize_t idx)
{
    int ok;
    long long id = as_seq(PyTuple_GET_ITEM(ev, idx), &ok);
    Slot *s = ok ? ctx_peek(self, id) : NULL;
    if (s == NULL || s->task == NULL) {
        return NULL;
    }
    TaskObject *t = TASK(s->task);
    s->task = NULL; /* the reference moves to the caller */
    return t;
}

static int
need_fields(PyObject *ev, Py_ssize_t n)
{
    if (PyTuple_GET_SIZE(ev) < n) {
        PyErr_Format(PyExc_TypeError, "malformed %.100s event", Py_TYPE(ev)->tp_name);
        return -1;
    }
    return 0;
}

static int
ctx_handle(CtxObject *self, PyObject *ev, int k)
{
    dc_replay_state *st = self->st;
    TaskObject *t;
    int rc;
    switch (k) {
    case E_ORCHESTRATOR_STARTED: {
        if (need_fields(ev, 2) < 0) {
            return -1;
        }
        PyObject *o = PyTuple_GET_ITEM(ev, 1);
        int overflow = 0;
        long long ts = PyLong_Check(o) ? PyLong_AsLongLongAndOverflow(o, &overflow) : -1;
        if (!PyLong_Check(o) || overflow != 0) {
            PyErr_Format(PyExc_TypeError, "OrchestratorStarted.timestamp must be a 64-bit int");
            return -1;
        }
        if (ts == -1 && PyErr_Occurred()) {
            return -1;
        }
        self->now_us = ts;
        return 0;
    }
    case E_ORCHESTRATOR_COMPLETED:
    case E_EXECUTION_COMPLETED:
    case E_CONTINUE_AS_NEW:
    case E_PATCH_MARKER: /* answers is_patched: read before a replay (ctx_scan_patches) */
        return 0;
    case E_TASK_SCHEDULED:
    case E_SUBORCH_CREATED:
        if (need_fields(ev, 3) < 0) {
            return -1;
        }
        return ctx_match(self, ev, k == E_TASK_SCHEDULED ? A_TASK : A_SUBORCH,
                         PyTuple_GET_ITEM(ev, 2), NULL);
    case E_TIMER_CREATED:
        return ctx_match(self, ev, A_TIMER, NULL, NULL);
    case E_EVENT_SENT: /* EventSent(event_id, timestamp, instance_id, name, input) */
        if (need_fields(ev, 4) < 0) {
            return -1;
        }
        return ctx_match(self, ev, A_SEND, PyTuple_GET_ITEM(ev, 3), PyTuple_GET_ITEM(ev, 2));
    case E_TASK_COMPLETED:
    case E_SUBORCH_COMPLETED:
        if (need_fields(ev, 4) < 0) {
            return -1;
        }
        t = ctx_pop_task(self, ev, 2);
        if (t == NULL) {
            return 0;
        }
        rc = task_set_done(t, NULL, PyTuple_GET_ITEM(ev, 3));
        Py_DECREF(t);
        return rc < 0 ? -1 : ctx_resume(self);
    case E_TASK_FAILED:
    case E_SUBORCH_FAILED:
        if (need_fields(ev, 4) < 0) {
            return -1;
        }
        t = ctx_pop_task(self, ev, 2);
        if (t == NULL) {
            return 0;
        }
        rc = policy(self, st->s_on_task_failed, (PyObject *)t, ev, NULL);
        Py_DECREF(t);
        return rc < 0 ? -1 : ctx_resume(self);
    case E_TIMER_FIRED:
        if (need_fields(ev, 4) < 0) {
            return -1;
        }
        t = ctx_pop_task(self, ev, 3);
        if (t == NULL) {
            return 0;
        }
        rc = task_set_done(t, NULL, NULL);
        if (rc == 0 && t->link != NULL) {
            rc = policy(self, st->s_on_timer_link, (PyObject *)t, ev, NULL);
        }
        Py_DECREF(t);
        return rc < 0 ? -1 : ctx_resume(self);
    case E_EVENT_RAISED:
        if (policy(self, st->s_on_event_raised, ev, NULL, NULL) < 0) {
            return -1;
        }
        return ctx_resume(self);
    case E_EXECUTION_STARTED: {
        if (self->gen != NULL) {
            return 0;
        }
        PyObject *gen = call_method((PyObject *)self, st->s_on_execution_started, ev, NULL, NULL);
        if (gen == NULL) {
            return -1;
        }
        if (gen == Py_None || COMPLETE(self)) {
            Py_DECREF(gen);
            return 0;
        }
        Py_XSETREF(self->gen, gen);
        if (ctx_step(self, 0, Py_None) < 0) {
            return -1;
        }
        return ctx_resume(self);
    }
    case E_EXECUTION_SUSPENDED:
        self->suspended = 1;
        return 0;
    case E_EXECUTION_RESUMED: {
        self->suspended = 0;
        PyObject *buffered = self->suspended_events;
        self->suspended_events = PyList_New(0);
        if (self->suspended_events == NULL) {
            self->suspended_events = buffered;
            return -1;
        }
        Py_ssize_t n = PyList_GET_SIZE(buffered);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (COMPLETE(self)) {
                /* keep the rest buffered, in order, ahead of anything newer */
                PyObject *rest = PyList_GetSlice(buffered, i, n);
                int r2 = rest == NULL ? -1
                                      : PyList_SetSlice(self->suspended_events, 0, 0, rest);
                Py_XDECREF(rest);
                Py_DECREF(buffered);
                return r2;
            }
            PyObject *e = Py_NewRef(PyList_GET_ITEM(buffered, i));
            rc = ctx_dispatch(self, e);
            Py_DECREF(e);
            if (rc < 0) {
                Py_DECREF(buffered);
                return -1;
            }
        }
        Py_DECREF(buffered);
        return 0;
    }
    case E_EXECUTION_TERMINATED:
        return policy(self, st->s_on_terminated, ev, NULL, NULL);
    default:
        PyErr_Format(PyExc_TypeError, "not a history event: %.100s", Py_TYPE(ev)->tp_name);
        return -1;
    }
}

static int
ctx_dispatch(CtxObject *self, PyObject *ev)
{
    int k = event_kind(self->st, ev);
    if (self->suspended) {
        /* inputs that would run the code wait for the resume (see _SUSPENDABLE in the twin) */
        switch (k) {
        case E_EXECUTION_STARTED:
        case E_TASK_COMPLETED:
        case E_TASK_FAILED:
        case E_SUBORCH_COMPLETED:
        case E_SUBORCH_FAILED:
        case E_TIMER_FIRED:
        case E_EVENT_RAISED:
            return PyList_Append(self->suspended_events, ev);
        default:
            break;
        }
    }
    return ctx_handle(self, ev, k);
}

/* Before a replay: the ids of the history's PatchMarker events. A marker is recorded after
 * the step whose is_patched call it answers, so replaying code asks before reaching it. */
static int
ctx_scan_patches(CtxObject *self, PyObject *events)
{
    PyObject *marker = self->st->events[E_PATCH_MARKER];
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(events); i++) { /* size re-read */
        PyObject *ev = PySequence_Fast_GET_ITEM(events, i);
        if ((PyObject *)Py_TYPE(ev) != marker || PyTuple_GET_SIZE(ev) < 3) {
            continue;
        }
        Py_INCREF(ev); /* hashing the id may run Python code */
        if (self->patch_ids == NULL && (self->patch_ids = PySet_New(NULL)) == NULL) {
            Py_DECREF(ev);
            return -1;
        }
        int rc = PySet_Add(self->patch_ids, PyTuple_GET_ITEM(ev, 2));
        Py_DECREF(ev);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* 1 when the execution that owns a when_all keeps the legacy fail-fast semantics, 0 when it
 * waits for every task, -1 on error. Asked once per execution, at the first failure that
 * leaves a when_all's other tasks running: _when_all_waits is memoized like is_patched. */
static int
ctx_when_all_legacy(PyObject *ctx)
{
    if (ctx == NULL) {
        return 0;
    }
    CtxObject *c = (CtxObject *)ctx; /* tasks only ever hold contexts */
    if (c->when_all_mode < 0) {
        PyObject *r = PyObject_CallMethodNoArgs(ctx, c->st->s_when_all_waits);
        if (r == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return -1;
            }
            PyErr_Clear(); /* a bare ContextCore without the policy: today's semantics */
            r = Py_NewRef(Py_True);
        }
        int waits = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (waits < 0) {
            return -1;
        }
        c->when_all_mode = waits;
    }
    return c->when_all_mode == 0;
}

static PyObject *
ctx_run(CtxObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_run(events, replaying)");
        return NULL;
    }
    if (self->st->events[1] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the replay engine is not registered");
        return NULL;
    }
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "the orchestration is already running");
        return NULL;
    }
    int replaying = PyObject_IsTrue(args[1]);
    if (replaying < 0) {
        return NULL;
    }
    PyObject *events = PySequence_Fast(args[0], "events must be a sequence");
    if (events == NULL) {
        return NULL;
    }
    if (replaying && ctx_scan_patches(self, events) < 0) {
        Py_DECREF(events);
        return NULL;
    }
    self->replaying = replaying;
    self->running = 1;
    Py_ssize_t used = 0;
    int rc = 0;
    while (used < PySequence_Fast_GET_SIZE(events) && !COMPLETE(self)) {
        PyObject *ev = Py_NewRef(PySequence_Fast_GET_ITEM(events, used));
        used++;
        rc = ctx_dispatch(self, ev);
        Py_DECREF(ev);
        if (rc < 0) {
            break;
        }
    }
    self->running = 0;
    Py_DECREF(events);
    if (rc < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(used);
}

/* ------------------------------------------------------------------------------------------ */
/* ContextCore: primitives for the policy                                                      */
/* ------------------------------------------------------------------------------------------ */

static PyObject *
ctx_next_seq(CtxObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(self->seq++);
}

static PyObject *
ctx_new_task(CtxObject *self, PyObject *arg)
{
    long kind = PyLong_AsLong(arg);
    if (kind == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (kind < 0 || kind >= K_LAST) {
        PyErr_SetString(PyExc_ValueError, "bad task kind");
        return NULL;
    }
    if (self->decoder == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ContextCore.__init__ was not called");
        return NULL;
    }
    return (PyObject *)task_new_internal(self->st, (int)kind, (PyObject *)self, self->decoder, 1);
}

static PyObject *
ctx_add_action(CtxObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_add_action(kind, action, task)");
        return NULL;
    }
    long kind = PyLong_AsLong(args[0]);
    if (kind == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *action = args[1], *task = args[2];
    if (kind < A_TASK || kind > A_SEND || !PyTuple_Check(action) ||
        PyTuple_GET_SIZE(action) < 2) {
        PyErr_SetString(PyExc_TypeError, "_add_action needs an action kind and an action");
        return NULL;
    }
    if (task != Py_None && Py_TYPE(task) != self->st->task_type) {
        PyErr_SetString(PyExc_TypeError, "_add_action: task must be a Task or None");
        return NULL;
    }
    long long seq = PyLong_AsLongLong(PyTuple_GET_ITEM(action, 0));
    if (seq == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Slot *s = ctx_slot(self, seq);
    if (s == NULL) {
        return NULL;
    }
    slot_clear_action(s);
    s->kind = (int)kind;
    s->action = Py_NewRef(action);
    if (kind == A_TASK || kind == A_SUBORCH) {
        s->name = Py_NewRef(PyTuple_GET_ITEM(action, 1));
    }
    if (seq < self->min_action) {
        self->min_action = seq;
    }
    if (task != Py_None) {
        TASK(task)->seq = seq;
        Py_XSETREF(s->task, Py_NewRef(task));
    }
    Py_RETURN_NONE;
}

static PyObject *
ctx_unregister(CtxObject *self, PyObject *arg)
{
    int ok;
    long long seq = as_seq(arg, &ok);
    Slot *s = ok ? ctx_peek(self, seq) : NULL;
    if (s != NULL) {
        Py_CLEAR(s->task);
    }
    Py_RETURN_NONE;
}

static PyObject *
ctx_take_actions(CtxObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    long long from = self->min_action > self->base ? self->min_action : self->base;
    for (long long seq = from; seq < self->seq; seq++) {
        Slot *s = ctx_peek(self, seq);
        if (s == NULL) {
            break;
        }
        if (s->kind == A_NONE) {
            continue;
        }
        PyObject *action = Py_XNewRef(s->action);
        if (action == NULL) { /* from call_activity: build the ScheduleTask now */
            PyObject *id = PyLong_FromLongLong(seq);
            if (id != NULL) {
                PyObject *a3[3] = {id, s->name != NULL ? s->name : Py_None,
                                   s->input != NULL ? s->input : Py_None};
                action = PyObject_Vectorcall(self->st->schedule_task, a3, 3, NULL);
                Py_DECREF(id);
            }
            if (action == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            s = ctx_peek(self, seq); /* re-read: constructing the tuple ran Python code */
        }
        int rc = PyList_Append(out, action);
        Py_DECREF(action);
        if (rc < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (s != NULL) {
            slot_clear_action(s);
        }
    }
    self->min_action = self->seq;
    ctx_compact(self);
    return out;
}

static PyObject *
ctx_call_activity(CtxObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    dc_replay_state *st = self->st;
    PyObject *activity = NULL, *input = Py_None, *retry = Py_None;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "call_activity() takes 1 positional argument (the activity), %zd given",
                     nargs);
        return NULL;
    }
    activity = args[0];
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (k == st->s_input || PyUnicode_CompareWithASCIIString(k, "input") == 0) {
                input = args[nargs + i];
            }
            else if (k == st->s_retry_policy ||
                     PyUnicode_CompareWithASCIIString(k, "retry_policy") == 0) {
                retry = args[nargs + i];
            }
            else {
                PyErr_Format(PyExc_TypeError,
                             "call_activity() got an unexpected keyword argument '%U'", k);
                return NULL;
            }
        }
    }
    PyObject *name;
    if (PyUnicode_CheckExact(activity)) {
        name = Py_NewRef(activity);
    }
    else {
        name = PyObject_GetAttr(activity, st->s_durable_name);
        if (name == NULL || !PyUnicode_Check(name)) {
            Py_XDECREF(name);
            PyErr_Clear();
            name = PyUnicode_Check(activity) ? Py_NewRef(activity)
                                             : PyObject_GetAttr(activity, st->s_name);
            if (name == NULL || !PyUnicode_Check(name)) {
                Py_XDECREF(name);
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError, "expected a function or a name, got %.100s",
                             Py_TYPE(activity)->tp_name);
                return NULL;
            }
        }
    }
    if (retry != Py_None) {
        PyObject *r = call_method((PyObject *)self, st->s_call_activity_retry, name, input, retry);
        Py_DECREF(name);
        return r;
    }
    /* Serialized now, replaying or not: a payload error must reach the code the same way on
     * every replay. The action tuple is built only if it turns out to be new (_take_actions). */
    if (self->decoder == NULL || self->serialize == NULL) {
        Py_DECREF(name);
        PyErr_SetString(PyExc_RuntimeError, "ContextCore.__init__ was not called");
        return NULL;
    }
    PyObject *payload = self->scanner != NULL ? json_scalar_encode(input) : NULL;
    if (payload == NULL) {
        PyObject *a1[1] = {input};
        payload = PyObject_Vectorcall(self->serialize, a1, 1, NULL);
        if (payload == NULL) {
            Py_DECREF(name);
            return NULL;
        }
    }
    if (self->decoder == NULL) { /* the converter ran Python code: check again */
        Py_DECREF(payload);
        Py_DECREF(name);
        PyErr_SetString(PyExc_RuntimeError, "the context was cleared");
        return NULL;
    }
    long long seq = self->seq; /* read after the converter ran */
    Slot *s = ctx_slot(self, seq);
    if (s == NULL) {
        Py_DECREF(payload);
        Py_DECREF(name);
        return NULL;
    }
    TaskObject *t = task_new_internal(st, K_ACTIVITY, NULL, self->decoder, 0);
    if (t == NULL) {
        Py_DECREF(payload);
        Py_DECREF(name);
        return NULL;
    }
    t->seq = seq;
    slot_clear_action(s);
    s->kind = A_TASK;
    s->name = name;     /* owns */
    s->input = payload; /* owns */
    Py_XSETREF(s->task, Py_NewRef((PyObject *)t));
    if (seq < self->min_action) {
        self->min_action = seq;
    }
    self->seq = seq + 1;
    return (PyObject *)t;
}

/* ------------------------------------------------------------------------------------------ */
/* ContextCore: attributes                                                                     */
/* ------------------------------------------------------------------------------------------ */

static PyObject *
ctx_get_instance_id(CtxObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->instance_id != NULL ? self->instance_id : Py_None);
}

static PyObject *
ctx_get_parent(CtxObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->parent_instance_id != NULL ? self->parent_instance_id : Py_None);
}

static int
ctx_set_parent(CtxObject *self, PyObject *v, void *Py_UNUSED(c))
{
    if (v != NULL && v != Py_None && !PyUnicode_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "parent_instance_id must be a string or None");
        return -1;
    }
    Py_XSETREF(self->parent_instance_id, (v == NULL || v == Py_None) ? NULL : Py_NewRef(v));
    return 0;
}

static PyObject *
ctx_get_replaying(CtxObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->replaying);
}

static PyObject *
ctx_get_suspended(CtxObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->suspended);
}

static PyObject *
ctx_get_now(CtxObject *self, void *Py_UNUSED(c))
{
    return PyLong_FromLongLong(self->now_us);
}

static PyObject *
ctx_get_converter(CtxObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->converter != NULL ? self->converter : Py_None);
}

static PyObject *
ctx_get_completion(CtxObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->completion != NULL ? self->completion : Py_None);
}

static int
ctx_set_completion(CtxObject *self, PyObject *v, void *Py_UNUSED(c))
{
    Py_XSETREF(self->completion, (v == NULL || v == Py_None) ? NULL : Py_NewRef(v));
    return 0;
}

static PyObject *
ctx_get_gen(CtxObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->gen != NULL ? self->gen : Py_None);
}

static int
ctx_set_gen(CtxObject *self, PyObject *v, void *Py_UNUSED(c))
{
    Py_XSETREF(self->gen, (v == NULL || v == Py_None) ? NULL : Py_NewRef(v));
    return 0;
}

static PyObject *
ctx_get_patch_ids(CtxObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->patch_ids != NULL ? self->patch_ids : Py_None);
}

static PyGetSetDef ctx_getset[] = {
    {"instance_id", (getter)ctx_get_instance_id, NULL, "The orchestration instance id.", NULL},
    {"parent_instance_id", (getter)ctx_get_parent, (setter)ctx_set_parent,
     "The parent instance id of a sub-orchestration, else None.", NULL},
    {"is_replaying", (getter)ctx_get_replaying, NULL,
     "True while old history is being replayed.", NULL},
    {"_is_suspended", (getter)ctx_get_suspended, NULL, NULL, NULL},
    {"_now_us", (getter)ctx_get_now, NULL, NULL, NULL},
    {"_converter", (getter)ctx_get_converter, NULL, NULL, NULL},
    {"_completion", (getter)ctx_get_completion, (setter)ctx_set_completion, NULL, NULL},
    {"_gen", (getter)ctx_get_gen, (setter)ctx_set_gen, NULL, NULL},
    {"_patch_ids", (getter)ctx_get_patch_ids, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef ctx_methods[] = {
    {"call_activity", (PyCFunction)(void (*)(void))ctx_call_activity,
     METH_FASTCALL | METH_KEYWORDS,
     "call_activity(activity, *, input=None, retry_policy=None) -> Task\n\n"
     "Schedule an activity (function or name); with retry_policy a failed attempt is\n"
     "retried after a durable back-off timer."},
    {"_run", (PyCFunction)(void (*)(void))ctx_run, METH_FASTCALL, NULL},
    {"_next_seq", (PyCFunction)ctx_next_seq, METH_NOARGS, NULL},
    {"_new_task", (PyCFunction)ctx_new_task, METH_O, NULL},
    {"_add_action", (PyCFunction)(void (*)(void))ctx_add_action, METH_FASTCALL, NULL},
    {"_unregister", (PyCFunction)ctx_unregister, METH_O, NULL},
    {"_take_actions", (PyCFunction)ctx_take_actions, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot ctx_slots[] = {
    {Py_tp_doc, "ContextCore(instance_id, converter, scanner=None): the per-instance replay "
                "state of the C engine (subclassed with the policy in durable_core.context)."},
    {Py_tp_new, ctx_new},
    {Py_tp_init, ctx_init},
    {Py_tp_dealloc, ctx_dealloc},
    {Py_tp_traverse, ctx_traverse},
    {Py_tp_clear, ctx_clear},
    {Py_tp_methods, ctx_methods},
    {Py_tp_getset, ctx_getset},
    {0, NULL},
};

static PyType_Spec ctx_spec = {
    .name = "durable_core._core.ContextCore",
    .basicsize = sizeof(CtxObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = ctx_slots,
};

/* ------------------------------------------------------------------------------------------ */
/* module                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* The protocol constants this file was compiled with (durable_core/protocol.py holds the
 * Python side; _replay_register compares them all, so an extension built from other sources
 * refuses to load instead of misreading task kinds). */
static const struct {
    const char *name;
    int value;
} protocol_ints[] = {
    {"K_ACTIVITY", K_ACTIVITY}, {"K_TIMER", K_TIMER}, {"K_SUBORCH", K_SUBORCH},
    {"K_EVENT", K_EVENT},       {"K_ALL", K_ALL},     {"K_ANY", K_ANY},
    {"K_DONE", K_DONE},         {"A_TASK", A_TASK},   {"A_TIMER", A_TIMER},
    {"A_SUBORCH", A_SUBORCH},   {"A_SEND", A_SEND},
};
static const struct {
    const char *name;
    const char *value; /* NULL: None */
} protocol_strs[] = {
    {"T_USER", NULL},
    {"T_RETRY", "retry"},
    {"T_TIMEOUT", "timeout"},
};
#define N_PROTOCOL_INTS (sizeof protocol_ints / sizeof protocol_ints[0])
#define N_PROTOCOL_STRS (sizeof protocol_strs / sizeof protocol_strs[0])

/* EVENT_TYPE order (durable_core/history.py): checked at registration. */
static const char *const event_names[N_EVENTS + 1] = {
    NULL, "ExecutionStarted", "ExecutionCompleted", "ExecutionTerminated", "ExecutionSuspended",
    "ExecutionResumed", "ContinueAsNew", "OrchestratorStarted", "OrchestratorCompleted",
    "TaskScheduled", "TaskCompleted", "TaskFailed", "SubOrchestrationInstanceCreated",
    "SubOrchestrationInstanceCompleted", "SubOrchestrationInstanceFailed", "TimerCreated",
    "TimerFired", "EventRaised", "EventSent", "PatchMarker",
};

static int
protocol_mismatch(const char *name, PyObject *got, const char *compiled)
{
    PyErr_Format(PyExc_ImportError,
                 "durable_core._core: protocol constant %s is %R in durable_core.protocol but %s "
                 "in the compiled replay engine: the extension was built from other sources "
                 "(rebuild it)",
                 name, got, compiled);
    return -1;
}

/* Compare the protocol table (a mapping name -> value) with the compiled-in constants. */
static int
check_protocol(PyObject *table)
{
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "_replay_register: the protocol table must be a dict");
        return -1;
    }
    for (size_t i = 0; i < N_PROTOCOL_INTS; i++) {
        PyObject *v = PyDict_GetItemString(table, protocol_ints[i].name); /* borrowed */
        char compiled[24];
        PyOS_snprintf(compiled, sizeof compiled, "%d", protocol_ints[i].value);
        if (v == NULL) {
            PyErr_Format(PyExc_ImportError,
                         "durable_core._core: protocol constant %s (%s in the compiled replay "
                         "engine) is missing from durable_core.protocol",
                         protocol_ints[i].name, compiled);
            return -1;
        }
        int overflow = 0;
        long x = PyLong_CheckExact(v) ? PyLong_AsLongAndOverflow(v, &overflow) : -1;
        if (x == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (!PyLong_CheckExact(v) || overflow != 0 || x != protocol_ints[i].value) {
            return protocol_mismatch(protocol_ints[i].name, v, compiled);
        }
    }
    for (size_t i = 0; i < N_PROTOCOL_STRS; i++) {
        const char *want = protocol_strs[i].value;
        PyObject *v = PyDict_GetItemString(table, protocol_strs[i].name); /* borrowed */
        char compiled[48];
        PyOS_snprintf(compiled, sizeof compiled, want != NULL ? "'%s'" : "None",
                      want != NULL ? want : "");
        if (v == NULL) {
            PyErr_Format(PyExc_ImportError,
                         "durable_core._core: protocol constant %s (%s in the compiled replay "
                         "engine) is missing from durable_core.protocol",
                         protocol_strs[i].name, compiled);
            return -1;
        }
        int same = want == NULL ? v == Py_None
                                : PyUnicode_CheckExact(v) &&
                                      PyUnicode_CompareWithASCIIString(v, want) == 0;
        if (!same) {
            return protocol_mismatch(protocol_strs[i].name, v, compiled);
        }
    }
    if ((size_t)PyDict_GET_SIZE(table) != N_PROTOCOL_INTS + N_PROTOCOL_STRS) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(table, &pos, &k, &v)) {
            int known = 0;
            for (size_t i = 0; i < N_PROTOCOL_INTS && !known; i++) {
                known = PyUnicode_Check(k) &&
                        PyUnicode_CompareWithASCIIString(k, protocol_ints[i].name) == 0;
            }
            for (size_t i = 0; i < N_PROTOCOL_STRS && !known; i++) {
                known = PyUnicode_Check(k) &&
                        PyUnicode_CompareWithASCIIString(k, protocol_strs[i].name) == 0;
            }
            if (!known) {
                PyErr_Format(PyExc_ImportError,
                             "durable_core._core: durable_core.protocol defines %R, which the "
                             "compiled replay engine does not know: the extension was built from "
                             "other sources (rebuild it)",
                             k);
                return -1;
            }
        }
    }
    return 0;
}

/* Each class must be the NamedTuple of its EVENT_TYPE (the engine reads fields by index). */
static int
check_event_class(PyObject *c, int event_type)
{
    if (!PyType_Check(c) || !PyType_IsSubtype((PyTypeObject *)c, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "event classes must be NamedTuple classes");
        return -1;
    }
    PyObject *et = PyObject_GetAttrString(c, "EVENT_TYPE");
    if (et == NULL) {
        return -1;
    }
    long v = PyLong_Check(et) ? PyLong_AsLong(et) : -1;
    Py_DECREF(et);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    const char *want = event_names[event_type];
    if (v != event_type ||
        strcmp(((PyTypeObject *)c)->tp_name, want) != 0) { /* heap types: the bare name */
        PyErr_Format(PyExc_ImportError,
                     "durable_core._core: event class %d must be %s with EVENT_TYPE %d, got %R: "
                     "the extension was built from other sources (rebuild it)",
                     event_type, want, event_type, c);
        return -1;
    }
    return 0;
}

static PyObject *
replay_register(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    dc_replay_state *st = dc_get_state(module)->replay;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "_replay_register(event_classes, ScheduleTask, protocol_constants)");
        return NULL;
    }
    PyObject *classes = PySequence_Tuple(args[0]);
    if (classes == NULL) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(classes) != N_EVENTS) {
        PyErr_Format(PyExc_ImportError,
                     "durable_core._core: expected the %d event classes in EVENT_TYPE order, got "
                     "%zd: the extension was built from other sources (rebuild it)",
                     N_EVENTS, PyTuple_GET_SIZE(classes));
        goto fail;
    }
    for (Py_ssize_t i = 0; i < N_EVENTS; i++) {
        if (check_event_class(PyTuple_GET_ITEM(classes, i), (int)i + 1) < 0) {
            goto fail;
        }
    }
    if (!PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "ScheduleTask must be a class");
        goto fail;
    }
    if (check_protocol(args[2]) < 0) {
        goto fail;
    }
    /* everything checked: install (the previous registration stays on any failure) */
    st = dc_get_state(module)->replay;
    for (Py_ssize_t i = 0; i < N_EVENTS; i++) {
        Py_XSETREF(st->events[i + 1], Py_NewRef(PyTuple_GET_ITEM(classes, i)));
    }
    Py_XSETREF(st->schedule_task, Py_NewRef(args[1]));
    Py_DECREF(classes);
    Py_RETURN_NONE;
fail:
    Py_DECREF(classes);
    return NULL;
}

static PyMethodDef replay_methods[] = {
    {"_replay_register", (PyCFunction)(void (*)(void))replay_register, METH_FASTCALL,
     "_replay_register(event_classes, ScheduleTask, protocol_constants): hand the engine the\n"
     "classes it uses; refuses (ImportError) constants or classes other than those compiled in."},
    {"when_all", (PyCFunction)(void (*)(void))replay_when_all, METH_VARARGS | METH_KEYWORDS,
     "when_all(tasks, *, fail_fast=False) -> Task completing with all results once every\n"
     "task finished; if any failed, it fails with the first failure (fail_fast: at once)."},
    {"when_any", (PyCFunction)replay_when_any, METH_O,
     "when_any(tasks) -> Task completing with the first task to finish."},
    {NULL, NULL, 0, NULL},
};

int
dc_replay_exec(PyObject *module, dc_module_state *ms)
{
    dc_replay_state *st = PyMem_Calloc(1, sizeof(dc_replay_state));
    if (st == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    ms->replay = st;
#define INTERN(field, text)                                                                   \
    if ((st->field = PyUnicode_InternFromString(text)) == NULL) {                              \
        return -1;                                                                            \
    }
    INTERN(s_on_execution_started, "_on_execution_started")
    INTERN(s_on_return, "_on_return")
    INTERN(s_on_error, "_on_error")
    INTERN(s_on_nondeterminism, "_on_nondeterminism")
    INTERN(s_on_task_failed, "_on_task_failed")
    INTERN(s_on_timer_link, "_on_timer_link")
    INTERN(s_on_event_raised, "_on_event_raised")
    INTERN(s_on_terminated, "_on_terminated")
    INTERN(s_on_cancel, "_on_cancel")
    INTERN(s_adopt, "_adopt")
    INTERN(s_call_activity_retry, "_call_activity_retry")
    INTERN(s_throw, "throw")
    INTERN(s_value, "value")
    INTERN(s_serialize, "serialize")
    INTERN(s_deserialize, "deserialize")
    INTERN(s_durable_name, "__durable_name__")
    INTERN(s_name, "__name__")
    INTERN(s_input, "input")
    INTERN(s_retry_policy, "retry_policy")
    INTERN(s_casefold, "casefold")
    INTERN(s_when_all_waits, "_when_all_waits")
#undef INTERN
    st->task_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &task_spec, NULL);
    if (st->task_type == NULL) {
        return -1;
    }
    st->ctx_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ctx_spec, NULL);
    if (st->ctx_type == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Task", (PyObject *)st->task_type) < 0 ||
        PyModule_AddObjectRef(module, "ContextCore", (PyObject *)st->ctx_type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, replay_methods);
}

int
dc_replay_traverse(dc_module_state *ms, visitproc visit, void *arg)
{
    dc_replay_state *st = ms->replay;
    if (st == NULL) {
        return 0;
    }
    Py_VISIT(st->task_type);
    Py_VISIT(st->ctx_type);
    for (int i = 0; i <= N_EVENTS; i++) {
        Py_VISIT(st->events[i]);
    }
    Py_VISIT(st->schedule_task);
    return 0;
}

void
dc_replay_clear(dc_module_state *ms)
{
    dc_replay_state *st = ms->replay;
    if (st == NULL) {
        return;
    }
    Py_CLEAR(st->task_type);
    Py_CLEAR(st->ctx_type);
    for (int i = 0; i <= N_EVENTS; i++) {
        Py_CLEAR(st->events[i]);
    }
    Py_CLEAR(st->schedule_task);
    Py_CLEAR(st->s_on_execution_started);
    Py_CLEAR(st->s_on_return);
    Py_CLEAR(st->s_on_error);
    Py_CLEAR(st->s_on_nondeterminism);
    Py_CLEAR(st->s_on_task_failed);
    Py_CLEAR(st->s_on_timer_link);
    Py_CLEAR(st->s_on_event_raised);
    Py_CLEAR(st->s_on_terminated);
    Py_CLEAR(st->s_on_cancel);
    Py_CLEAR(st->s_adopt);
    Py_CLEAR(st->s_call_activity_retry);
    Py_CLEAR(st->s_throw);
    Py_CLEAR(st->s_value);
    Py_CLEAR(st->s_serialize);
    Py_CLEAR(st->s_deserialize);
    Py_CLEAR(st->s_durable_name);
    Py_CLEAR(st->s_name);
    Py_CLEAR(st->s_input);
    Py_CLEAR(st->s_retry_policy);
    Py_CLEAR(st->s_casefold);
    Py_CLEAR(st->s_when_all_waits);
}

void
dc_replay_free(dc_module_state *ms)
{
    PyMem_Free(ms->replay);
    ms->replay = NULL;
}
