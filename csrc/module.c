/* durable_core._core: module definition. Multi-phase init; each part registers itself. */
#include "dc.h"

static int
dc_exec(PyObject *module)
{
    dc_module_state *st = dc_get_state(module);
    if (dc_codec_exec(module, st) < 0) {
        return -1;
    }
    if (dc_timer_exec(module, st) < 0) {
        return -1;
    }
    if (dc_replay_exec(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int
dc_traverse(PyObject *module, visitproc visit, void *arg)
{
    dc_module_state *st = dc_get_state(module);
    if (st == NULL) {
        return 0;
    }
    int r;
    if ((r = dc_codec_traverse(st, visit, arg)) != 0) {
        return r;
    }
    if ((r = dc_timer_traverse(st, visit, arg)) != 0) {
        return r;
    }
    return dc_replay_traverse(st, visit, arg);
}

static int
dc_clear(PyObject *module)
{
    dc_module_state *st = dc_get_state(module);
    if (st != NULL) {
        dc_replay_clear(st);
        dc_timer_clear(st);
        dc_codec_clear(st);
    }
    return 0;
}

static void
dc_free(void *module)
{
    dc_module_state *st = dc_get_state((PyObject *)module);
    if (st != NULL) {
        dc_replay_clear(st);
        dc_timer_clear(st);
        dc_codec_clear(st);
        dc_replay_free(st);
        dc_timer_free(st);
        dc_codec_free(st);
    }
}

static PyModuleDef_Slot dc_slots[] = {
    {Py_mod_exec, (void *)dc_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

struct PyModuleDef dc_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "durable_core._core",
    .m_doc = "C core of durable_core: history codec, timer wheel and replay engine.",
    .m_size = sizeof(dc_module_state),
    .m_slots = dc_slots,
    .m_traverse = dc_traverse,
    .m_clear = dc_clear,
    .m_free = dc_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&dc_module_def);
}
