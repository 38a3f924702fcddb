/* durable_core._core: shared declarations.
 *
 * The module is split into parts (codec, timer wheel, replay engine), one .c file each.
 * Each part owns its own state struct, allocated in its exec hook and reached through the
 * module state; nothing is global and mutable.
 */
#ifndef DURABLE_CORE_DC_H
#define DURABLE_CORE_DC_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct dc_codec_state dc_codec_state;   /* defined in codec.c */
typedef struct dc_timer_state dc_timer_state;   /* defined in timerwheel.c */
typedef struct dc_replay_state dc_replay_state; /* defined in replay.c */

typedef struct {
    dc_codec_state *codec;
    dc_timer_state *timer;
    dc_replay_state *replay;
} dc_module_state;

extern struct PyModuleDef dc_module_def;

static inline dc_module_state *
dc_get_state(PyObject *module)
{
    return (dc_module_state *)PyModule_GetState(module);
}

/* Each part: exec adds its functions/types to the module and allocates its state (return 0,
 * or -1 with an exception set); traverse/clear visit its Python references; free releases its
 * state struct. clear and free must tolerate a NULL or half-initialised state. */
int dc_codec_exec(PyObject *module, dc_module_state *st);
int dc_codec_traverse(dc_module_state *st, visitproc visit, void *arg);
void dc_codec_clear(dc_module_state *st);
void dc_codec_free(dc_module_state *st);

int dc_timer_exec(PyObject *module, dc_module_state *st);
int dc_timer_traverse(dc_module_state *st, visitproc visit, void *arg);
void dc_timer_clear(dc_module_state *st);
void dc_timer_free(dc_module_state *st);

int dc_replay_exec(PyObject *module, dc_module_state *st);
int dc_replay_traverse(dc_module_state *st, visitproc visit, void *arg);
void dc_replay_clear(dc_module_state *st);
void dc_replay_free(dc_module_state *st);

#endif
