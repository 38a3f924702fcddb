/* durable_core._core: the hierarchical timer wheel.
 *
 * The semantics are specified in the docstring of durable_core/_timer_py.py (the pure-Python
 * twin); this file must behave the same for every input.
 *
 * Time is counted in ticks of `resolution_ms` from `start_ms`. A deadline d maps to the tick
 * ceil((d - start_ms) / resolution_ms) (0 when d <= start_ms), so a timer never fires before
 * its deadline and at most one resolution step after it. The wheel has 7 levels of 64 slots:
 * 2^42 ticks of range from start_ms (139 years at 1 ms), no overflow list.
 *
 * Where a pending timer lives, relative to `elapsed` (the tick of the last advance):
 *   - tick <= elapsed: in the due list (it fires on the next advance, whatever its time);
 *   - otherwise at level L = (highest bit where tick and elapsed differ) / 6, in slot
 *     (tick >> 6L) & 63. All bits of tick above level L equal those of elapsed, so the slots
 *     of one level are ordered in time and the lowest occupied level holds the earliest timers.
 * Each level keeps a 64-bit occupancy bitmap: the next expiring slot is found with one
 * count-trailing-zeros, and `advance` jumps from occupied slot to occupied slot, moving the
 * timers of a higher-level slot down (cascade) when time reaches the slot's start. Advancing a
 * year touches only the timers that fire or cascade, never the empty ticks in between.
 *
 * Timers are nodes in one slab array (40 bytes each), linked into their slot by uint32 indices;
 * freed nodes go to a free list. A handle is (generation << 32) | index: cancel finds the node
 * without a search, and the generation, bumped on every free, makes stale handles miss.
 * Items are strong references, released on fire (moved into the result list), on cancel and
 * when the wheel is cleared or deallocated; tp_traverse visits them for the cycle collector.
 */
#include "dc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
#include <intrin.h>
#endif

#define TW_LEVELS 7
#define TW_SLOT_BITS 6
#define TW_SLOTS 64
#define TW_RANGE_BITS (TW_LEVELS * TW_SLOT_BITS)
#define TW_MAX_TICK ((UINT64_C(1) << TW_RANGE_BITS) - 1)
#define TW_NIL UINT32_MAX
#define TW_MAX_NODES (UINT32_MAX - 1u)

/* node.where: a slot (level * 64 + slot), the due list, or free */
#define W_DUE (TW_LEVELS * TW_SLOTS)
#define W_NLISTS (W_DUE + 1)
#define W_FREE 0xFFFFu

#define TW_SMALL_BATCH 32

typedef struct {
    int64_t deadline; /* as given, in ms */
    uint64_t seq;     /* insertion counter: ties fire in insertion order */
    PyObject *item;   /* strong reference; NULL when free */
    uint32_t prev;    /* intrusive list links (slab indices); next doubles as free-list link */
    uint32_t next;
    uint32_t gen;     /* bumped when the node is freed */
    uint16_t where;
} tw_node;

struct dc_timer_state {
    PyObject *wheel_type;
};

typedef struct {
    PyObject_HEAD
    tw_node *nodes;
    uint32_t cap;       /* allocated nodes */
    uint32_t used;      /* nodes ever handed out (the rest of the slab is untouched) */
    uint32_t free_head; /* free list of nodes below `used` */
    uint32_t gen_floor; /* generation of never-used nodes (above all issued before clear) */
    int busy;           /* inside advance while Python code may run */
    Py_ssize_t count;   /* pending timers */
    Py_ssize_t due_count;
    uint64_t seq;
    int64_t start;      /* start_ms */
    int64_t res;        /* resolution_ms, >= 1 */
    int64_t last_now;   /* now_ms of the last advance (start_ms before the first) */
    uint64_t elapsed;   /* tick of last_now */
    int cache_valid;    /* cache_tick is the smallest tick of a pending timer */
    uint64_t cache_tick;
    uint64_t occ[TW_LEVELS];
    uint32_t heads[W_NLISTS];
} TimerWheel;

typedef struct {
    int64_t deadline;
    uint64_t seq;
    uint32_t idx;
} tw_key;

/* ------------------------------------------------------------------------------------------ */
/* bit helpers                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static inline int
tw_ctz64(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(x);
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
    unsigned long i;
    _BitScanForward64(&i, x);
    return (int)i;
#else
    int n = 0;
    while (!(x & 1u)) {
        x >>= 1;
        n++;
    }
    return n;
#endif
}

static inline int
tw_msb64(uint64_t x) /* index of the highest set bit; x != 0 */
{
#if defined(__GNUC__) || defined(__clang__)
    return 63 - __builtin_clzll(x);
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
    unsigned long i;
    _BitScanReverse64(&i, x);
    return (int)i;
#else
    int n = 0;
    while (x >>= 1) {
        n++;
    }
    return n;
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* argument conversion (same checks and messages as the twin)                                  */
/* ------------------------------------------------------------------------------------------ */

/* An int (or an object with __index__), not a bool, within the signed 64-bit range. */
static int
tw_as_int64(PyObject *obj, const char *what, int64_t *out)
{
    long long v;
    if (PyLong_CheckExact(obj)) {
        v = PyLong_AsLongLong(obj);
    }
    else if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    else {
        PyObject *idx = PyNumber_Index(obj);
        if (idx == NULL) {
            return -1;
        }
        v = PyLong_AsLongLong(idx);
        Py_DECREF(idx);
    }
    if (v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Format(PyExc_OverflowError, "%s is out of the signed 64-bit range", what);
        }
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* ticks                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* ceil((d - start) / res), 0 for d <= start; no range check */
static inline uint64_t
tw_tick_of(const TimerWheel *w, int64_t d)
{
    if (d <= w->start) {
        return 0;
    }
    uint64_t delta = (uint64_t)d - (uint64_t)w->start;
    if (w->res == 1) {
        return delta;
    }
    uint64_t r = (uint64_t)w->res;
    return delta / r + (delta % r != 0);
}

/* The tick of a deadline, or -1 with OverflowError when it is beyond the wheel's range (or
 * its firing time, start + tick * res, does not fit in 64 bits). */
static int
tw_checked_tick(const TimerWheel *w, int64_t d, uint64_t *out)
{
    uint64_t tick = tw_tick_of(w, d);
    uint64_t room = (uint64_t)INT64_MAX - (uint64_t)w->start; /* ms from start to INT64_MAX */
    if (tick > TW_MAX_TICK || tick > room / (uint64_t)w->res) {
        PyErr_Format(PyExc_OverflowError,
                     "deadline_ms=%lld is beyond the timer wheel's range (start_ms=%lld + "
                     "2**%d ticks of %lld ms)",
                     (long long)d, (long long)w->start, TW_RANGE_BITS, (long long)w->res);
        return -1;
    }
    *out = tick;
    return 0;
}

static inline int64_t
tw_tick_ms(const TimerWheel *w, uint64_t tick)
{
    return (int64_t)((uint64_t)w->start + tick * (uint64_t)w->res);
}

/* ------------------------------------------------------------------------------------------ */
/* lists and slab                                                                              */
/* ------------------------------------------------------------------------------------------ */

static inline void
tw_link(TimerWheel *w, uint32_t idx, unsigned where)
{
    tw_node *n = &w->nodes[idx];
    uint32_t head = w->heads[where];
    n->prev = TW_NIL;
    n->next = head;
    n->where = (uint16_t)where;
    if (head != TW_NIL) {
        w->nodes[head].prev = idx;
    }
    w->heads[where] = idx;
}

/* Put a pending node where its tick says, relative to w->elapsed. */
static inline void
tw_place(TimerWheel *w, uint32_t idx, uint64_t tick)
{
    if (tick <= w->elapsed) {
        tw_link(w, idx, W_DUE);
        w->due_count++;
        return;
    }
    int level = tw_msb64(tick ^ w->elapsed) / TW_SLOT_BITS;
    unsigned slot = (unsigned)(tick >> (level * TW_SLOT_BITS)) & (TW_SLOTS - 1);
    w->occ[level] |= UINT64_C(1) << slot;
    tw_link(w, idx, (unsigned)level * TW_SLOTS + slot);
}

static inline void
tw_unlink(TimerWheel *w, uint32_t idx)
{
    tw_node *n = &w->nodes[idx];
    unsigned where = n->where;
    if (n->prev != TW_NIL) {
        w->nodes[n->prev].next = n->next;
    }
    else {
        w->heads[where] = n->next;
    }
    if (n->next != TW_NIL) {
        w->nodes[n->next].prev = n->prev;
    }
    if (where == W_DUE) {
        w->due_count--;
    }
    else if (w->heads[where] == TW_NIL) {
        w->occ[where / TW_SLOTS] &= ~(UINT64_C(1) << (where % TW_SLOTS));
    }
}

static int
tw_grow(TimerWheel *w)
{
    uint32_t newcap;
    if (w->cap >= TW_MAX_NODES) {
        PyErr_SetString(PyExc_OverflowError, "too many pending timers in one TimerWheel");
        return -1;
    }
    newcap = w->cap == 0 ? 64 : (w->cap > TW_MAX_NODES / 2 ? TW_MAX_NODES : w->cap * 2);
    size_t max_nodes = (size_t)PY_SSIZE_T_MAX / sizeof(tw_node); /* 32-bit platforms */
    if ((size_t)newcap > max_nodes) {
        PyErr_NoMemory();
        return -1;
    }
    tw_node *nodes = PyMem_Realloc(w->nodes, (size_t)newcap * sizeof(tw_node));
    if (nodes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->nodes = nodes;
    w->cap = newcap;
    return 0;
}

static inline void
tw_free_node(TimerWheel *w, uint32_t idx)
{
    tw_node *n = &w->nodes[idx];
    n->item = NULL;
    n->where = W_FREE;
    n->gen++;
    n->next = w->free_head;
    w->free_head = idx;
}

static void
tw_reset(TimerWheel *w)
{
    w->nodes = NULL;
    w->cap = w->used = 0;
    w->free_head = TW_NIL;
    w->count = w->due_count = 0;
    w->cache_valid = 0;
    memset(w->occ, 0, sizeof(w->occ));
    for (unsigned i = 0; i < W_NLISTS; i++) {
        w->heads[i] = TW_NIL;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* type slots                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static PyObject *
tw_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"resolution_ms", "start_ms", NULL};
    PyObject *res_obj = NULL, *start_obj = Py_None;
    int64_t res = 1, start;
    PyObject *now = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:TimerWheel", kwlist, &res_obj,
                                     &start_obj)) {
        return NULL;
    }
    if (res_obj != NULL) {
        if (tw_as_int64(res_obj, "resolution_ms", &res) < 0) {
            return NULL;
        }
        if (res < 1) {
            PyErr_Format(PyExc_ValueError, "resolution_ms must be >= 1, not %lld",
                         (long long)res);
            return NULL;
        }
    }
    if (start_obj == Py_None) {
        /* wall clock, epoch milliseconds */
        PyObject *time_mod = PyImport_ImportModule("time");
        if (time_mod == NULL) {
            return NULL;
        }
        PyObject *ns = PyObject_CallMethod(time_mod, "time_ns", NULL);
        Py_DECREF(time_mod);
        if (ns == NULL) {
            return NULL;
        }
        PyObject *million = PyLong_FromLong(1000000L);
        if (million == NULL) {
            Py_DECREF(ns);
            return NULL;
        }
        now = PyNumber_FloorDivide(ns, million);
        Py_DECREF(ns);
        Py_DECREF(million);
        if (now == NULL) {
            return NULL;
        }
        start_obj = now;
    }
    if (tw_as_int64(start_obj, "start_ms", &start) < 0) {
        Py_XDECREF(now);
        return NULL;
    }
    Py_XDECREF(now);

    TimerWheel *w = (TimerWheel *)type->tp_alloc(type, 0);
    if (w == NULL) {
        return NULL;
    }
    tw_reset(w);
    w->busy = 0;
    w->gen_floor = 1;
    w->seq = 0;
    w->start = start;
    w->res = res;
    w->last_now = start;
    w->elapsed = 0;
    w->cache_tick = 0;
    return (PyObject *)w;
}

static int
tw_traverse(TimerWheel *w, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(w));
    for (uint32_t i = 0; i < w->used; i++) {
        Py_VISIT(w->nodes[i].item);
    }
    return 0;
}

/* Drop every timer. The wheel is emptied first, so code run by the items' finalizers sees a
 * consistent (empty) wheel and may even use it. */
static int
tw_clear(TimerWheel *w)
{
    tw_node *nodes = w->nodes;
    uint32_t used = w->used;
    uint32_t gen = w->gen_floor;
    for (uint32_t i = 0; i < used; i++) {
        if (nodes[i].gen >= gen) {
            gen = nodes[i].gen + 1;
        }
    }
    tw_reset(w);
    w->gen_floor = gen; /* handles issued before stay stale in the new slab */
    for (uint32_t i = 0; i < used; i++) {
        Py_CLEAR(nodes[i].item);
    }
    PyMem_Free(nodes);
    return 0;
}

static void
tw_dealloc(TimerWheel *w)
{
    PyTypeObject *tp = Py_TYPE(w);
    PyObject_GC_UnTrack(w);
    tw_clear(w);
    tp->tp_free((PyObject *)w);
    Py_DECREF(tp);
}

static int
tw_check_busy(TimerWheel *w)
{
    if (w->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "TimerWheel used from a finalizer while it was being advanced");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* methods                                                                                     */
/* ------------------------------------------------------------------------------------------ */

PyDoc_STRVAR(tw_add_doc,
"add(deadline_ms, item, /)\n--\n\n"
"Schedule item to fire at deadline_ms (a past deadline fires on the next advance).\n"
"Returns a handle for cancel().");

static PyObject *
tw_add(TimerWheel *w, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t d;
    uint64_t tick;
    uint32_t idx;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "add() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (tw_as_int64(args[0], "deadline_ms", &d) < 0) {
        return NULL;
    }
    if (tw_check_busy(w) < 0 || tw_checked_tick(w, d, &tick) < 0) {
        return NULL;
    }
    if (w->free_head != TW_NIL) {
        idx = w->free_head;
        w->free_head = w->nodes[idx].next;
    }
    else {
        if (w->used == w->cap && tw_grow(w) < 0) {
            return NULL;
        }
        idx = w->used++;
        w->nodes[idx].gen = w->gen_floor;
        w->nodes[idx].item = NULL; /* tp_traverse may look at it before it is set */
        w->nodes[idx].where = W_FREE;
    }
    PyObject *handle =
        PyLong_FromUnsignedLongLong(((unsigned long long)w->nodes[idx].gen << 32) | idx);
    if (handle == NULL) {
        tw_free_node(w, idx);
        return NULL;
    }
    tw_node *n = &w->nodes[idx];
    n->deadline = d;
    n->seq = w->seq++;
    n->item = Py_NewRef(args[1]);
    tw_place(w, idx, tick);
    if (w->count == 0) {
        w->cache_valid = 1;
        w->cache_tick = tick;
    }
    else if (w->cache_valid && tick < w->cache_tick) {
        w->cache_tick = tick;
    }
    w->count++;
    return handle;
}

PyDoc_STRVAR(tw_cancel_doc,
"cancel(handle, /)\n--\n\n"
"Cancel a pending timer and release its item. True if it was pending; False for a handle\n"
"that already fired, was cancelled, or was never issued by this wheel.");

static PyObject *
tw_cancel(TimerWheel *w, PyObject *arg)
{
    unsigned long long h;
    if (PyBool_Check(arg) || !PyIndex_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "handle must be an int, not %.200s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    if (PyLong_CheckExact(arg)) {
        h = PyLong_AsUnsignedLongLong(arg);
    }
    else {
        PyObject *idx = PyNumber_Index(arg);
        if (idx == NULL) {
            return NULL;
        }
        h = PyLong_AsUnsignedLongLong(idx);
        Py_DECREF(idx);
    }
    if (h == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return NULL;
        }
        PyErr_Clear(); /* negative or too large: never issued */
        Py_RETURN_FALSE;
    }
    if (tw_check_busy(w) < 0) {
        return NULL;
    }
    uint32_t idx = (uint32_t)(h & 0xFFFFFFFFu);
    uint32_t gen = (uint32_t)(h >> 32);
    if (idx >= w->used || w->nodes[idx].where == W_FREE || w->nodes[idx].gen != gen) {
        Py_RETURN_FALSE;
    }
    tw_node *n = &w->nodes[idx];
    if (w->cache_valid && tw_tick_of(w, n->deadline) == w->cache_tick) {
        w->cache_valid = 0;
    }
    PyObject *item = n->item;
    tw_unlink(w, idx);
    tw_free_node(w, idx);
    w->count--;
    Py_DECREF(item); /* last: may run arbitrary code, the wheel is consistent */
    Py_RETURN_TRUE;
}

static int
tw_key_cmp(const void *a, const void *b)
{
    const tw_key *x = a, *y = b;
    if (x->deadline != y->deadline) {
        return x->deadline < y->deadline ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

static void
tw_sort_keys(tw_key *k, Py_ssize_t n)
{
    if (n > 16) {
        qsort(k, (size_t)n, sizeof(tw_key), tw_key_cmp);
        return;
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        tw_key t = k[i];
        Py_ssize_t j = i;
        while (j > 0 && tw_key_cmp(&k[j - 1], &t) > 0) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = t;
    }
}

/* Move every timer whose tick is <= now_tick into the due list, jumping from occupied slot
 * to occupied slot and cascading higher-level slots down as time reaches them. No Python code
 * runs and nothing is allocated. */
static void
tw_run_to(TimerWheel *w, uint64_t now_tick)
{
    for (;;) {
        int level = 0;
        while (level < TW_LEVELS && w->occ[level] == 0) {
            level++;
        }
        if (level == TW_LEVELS) {
            break;
        }
        int shift = level * TW_SLOT_BITS;
        unsigned slot = (unsigned)tw_ctz64(w->occ[level]);
        uint64_t slot_start = (w->elapsed & ~((UINT64_C(1) << (shift + TW_SLOT_BITS)) - 1)) |
                              ((uint64_t)slot << shift);
        if (slot_start > now_tick) {
            break;
        }
        w->elapsed = slot_start;
        unsigned where = (unsigned)level * TW_SLOTS + slot;
        uint32_t idx = w->heads[where];
        w->heads[where] = TW_NIL;
        w->occ[level] &= ~(UINT64_C(1) << slot);
        while (idx != TW_NIL) {
            uint32_t next = w->nodes[idx].next;
            if (level == 0) {
                tw_link(w, idx, W_DUE);
                w->due_count++;
            }
            else {
                tw_place(w, idx, tw_tick_of(w, w->nodes[idx].deadline));
            }
            idx = next;
        }
    }
    w->elapsed = now_tick;
}

PyDoc_STRVAR(tw_advance_doc,
"advance(now_ms, /)\n--\n\n"
"Move time to now_ms and return the items of the timers due by then, in deadline order\n"
"(ties in insertion order). now_ms before the previous advance raises ValueError.");

static PyObject *
tw_advance(TimerWheel *w, PyObject *arg)
{
    int64_t now;
    tw_key small[TW_SMALL_BATCH];
    tw_key *keys = small;

    if (tw_as_int64(arg, "now_ms", &now) < 0 || tw_check_busy(w) < 0) {
        return NULL;
    }
    if (now < w->last_now) {
        PyErr_Format(PyExc_ValueError,
                     "time moved backwards: now_ms=%lld is before the previous advance "
                     "(%lld)",
                     (long long)now, (long long)w->last_now);
        return NULL;
    }
    uint64_t now_tick = ((uint64_t)now - (uint64_t)w->start) / (uint64_t)w->res;
    if (now_tick > TW_MAX_TICK) {
        now_tick = TW_MAX_TICK;
    }
    w->last_now = now;
    tw_run_to(w, now_tick);

    Py_ssize_t n = w->due_count;
    if (n == 0) {
        return PyList_New(0);
    }
    if (n > TW_SMALL_BATCH) {
        if ((size_t)n > PY_SSIZE_T_MAX / sizeof(tw_key)) {
            return PyErr_NoMemory();
        }
        keys = PyMem_Malloc((size_t)n * sizeof(tw_key));
        if (keys == NULL) {
            return PyErr_NoMemory(); /* the timers stay due: the next advance fires them */
        }
    }
    Py_ssize_t i = 0;
    for (uint32_t idx = w->heads[W_DUE]; idx != TW_NIL; idx = w->nodes[idx].next) {
        keys[i].deadline = w->nodes[idx].deadline;
        keys[i].seq = w->nodes[idx].seq;
        keys[i].idx = idx;
        i++;
    }
    tw_sort_keys(keys, n);

    /* Allocating the list may run the cycle collector and so finalizers: the wheel refuses
     * changes meanwhile, and on failure the timers simply stay due. */
    w->busy = 1;
    PyObject *list = PyList_New(n);
    w->busy = 0;
    if (list == NULL) {
        if (keys != small) {
            PyMem_Free(keys);
        }
        return NULL;
    }
    for (i = 0; i < n; i++) {
        uint32_t idx = keys[i].idx;
        PyList_SET_ITEM(list, i, w->nodes[idx].item); /* the reference moves to the list */
        tw_free_node(w, idx);
    }
    w->heads[W_DUE] = TW_NIL;
    w->due_count = 0;
    w->count -= n;
    w->cache_valid = 0;
    if (keys != small) {
        PyMem_Free(keys);
    }
    return list;
}

PyDoc_STRVAR(tw_next_deadline_doc,
"next_deadline()\n--\n\n"
"The earliest time (ms) at which advance() returns something: the smallest pending deadline\n"
"rounded up to the resolution and not before start_ms. None when no timer is pending.");

static PyObject *
tw_next_deadline(TimerWheel *w, PyObject *Py_UNUSED(ignored))
{
    if (w->count == 0) {
        Py_RETURN_NONE;
    }
    if (!w->cache_valid) {
        uint64_t best = UINT64_MAX;
        uint32_t idx;
        if (w->due_count > 0) {
            idx = w->heads[W_DUE];
        }
        else {
            int level = 0;
            while (w->occ[level] == 0) { /* count > 0: some level is occupied */
                level++;
            }
            unsigned slot = (unsigned)tw_ctz64(w->occ[level]);
            idx = w->heads[(unsigned)level * TW_SLOTS + slot];
        }
        for (; idx != TW_NIL; idx = w->nodes[idx].next) {
            uint64_t t = tw_tick_of(w, w->nodes[idx].deadline);
            if (t < best) {
                best = t;
            }
        }
        w->cache_tick = best;
        w->cache_valid = 1;
    }
    return PyLong_FromLongLong(tw_tick_ms(w, w->cache_tick));
}

PyDoc_STRVAR(tw_clear_doc,
"clear()\n--\n\n"
"Drop every pending timer (their items are released) and return how many there were.");

static PyObject *
tw_clear_method(TimerWheel *w, PyObject *Py_UNUSED(ignored))
{
    if (tw_check_busy(w) < 0) {
        return NULL;
    }
    Py_ssize_t n = w->count;
    tw_clear(w);
    return PyLong_FromSsize_t(n);
}

static PyObject *
tw_sizeof(TimerWheel *w, PyObject *Py_UNUSED(ignored))
{
    size_t size = (size_t)Py_TYPE(w)->tp_basicsize + (size_t)w->cap * sizeof(tw_node);
    return PyLong_FromSize_t(size);
}

static Py_ssize_t
tw_len(TimerWheel *w)
{
    return w->count;
}

static PyObject *
tw_repr(TimerWheel *w)
{
    return PyUnicode_FromFormat("<TimerWheel pending=%zd resolution_ms=%lld start_ms=%lld>",
                                w->count, (long long)w->res, (long long)w->start);
}

static PyObject *
tw_get_resolution(TimerWheel *w, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(w->res);
}

static PyObject *
tw_get_start(TimerWheel *w, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(w->start);
}

static PyObject *
tw_get_now(TimerWheel *w, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(w->last_now);
}

static PyMethodDef tw_methods[] = {
    {"add", (PyCFunction)(void (*)(void))tw_add, METH_FASTCALL, tw_add_doc},
    {"cancel", (PyCFunction)tw_cancel, METH_O, tw_cancel_doc},
    {"advance", (PyCFunction)tw_advance, METH_O, tw_advance_doc},
    {"next_deadline", (PyCFunction)tw_next_deadline, METH_NOARGS, tw_next_deadline_doc},
    {"clear", (PyCFunction)tw_clear_method, METH_NOARGS, tw_clear_doc},
    {"__sizeof__", (PyCFunction)tw_sizeof, METH_NOARGS,
     "Bytes held by the wheel: the object and its node slab (items not counted)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tw_getset[] = {
    {"resolution_ms", (getter)tw_get_resolution, NULL, "Milliseconds per tick.", NULL},
    {"start_ms", (getter)tw_get_start, NULL, "Time (ms) of tick 0.", NULL},
    {"now_ms", (getter)tw_get_now, NULL, "now_ms of the last advance (start_ms before).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(tw_doc,
"TimerWheel(resolution_ms=1, start_ms=None)\n--\n\n"
"Hierarchical timer wheel: O(1) add and cancel, advance jumps from expiry to expiry.\n"
"start_ms defaults to the wall clock (epoch ms); deadlines may reach 2**42 ticks past it.");

static PyType_Slot tw_slots[] = {
    {Py_tp_new, tw_new},
    {Py_tp_dealloc, tw_dealloc},
    {Py_tp_traverse, tw_traverse},
    {Py_tp_clear, tw_clear},
    {Py_tp_methods, tw_methods},
    {Py_tp_getset, tw_getset},
    {Py_tp_repr, tw_repr},
    {Py_sq_length, tw_len},
    {Py_mp_length, tw_len},
    {Py_tp_doc, (void *)tw_doc},
    {0, NULL},
};

static PyType_Spec tw_spec = {
    .name = "durable_core._core.TimerWheel",
    .basicsize = sizeof(TimerWheel),
    .itemsize = 0,
#ifdef Py_TPFLAGS_IMMUTABLETYPE
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
#else
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
#endif
    .slots = tw_slots,
};

/* ------------------------------------------------------------------------------------------ */
/* part hooks                                                                                  */
/* ------------------------------------------------------------------------------------------ */

int
dc_timer_exec(PyObject *module, dc_module_state *st)
{
    st->timer = PyMem_Calloc(1, sizeof(dc_timer_state));
    if (st->timer == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &tw_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    st->timer->wheel_type = type; /* owns the reference */
    if (PyModule_AddType(module, (PyTypeObject *)type) < 0) {
        return -1;
    }
    return 0;
}

int
dc_timer_traverse(dc_module_state *st, visitproc visit, void *arg)
{
    if (st->timer != NULL) {
        Py_VISIT(st->timer->wheel_type);
    }
    return 0;
}

void
dc_timer_clear(dc_module_state *st)
{
    if (st->timer != NULL) {
        Py_CLEAR(st->timer->wheel_type);
    }
}

void
dc_timer_free(dc_module_state *st)
{
    if (st->timer != NULL) {
        dc_timer_clear(st);
        PyMem_Free(st->timer);
        st->timer = NULL;
    }
}
