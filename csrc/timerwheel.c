/* Placeholder for the timer part; replaced by the real implementation. */
#include "dc.h"

int dc_timer_exec(PyObject *module, dc_module_state *st) { (void)module; (void)st; return 0; }
int dc_timer_traverse(dc_module_state *st, visitproc visit, void *arg) { (void)st; (void)visit; (void)arg; return 0; }
void dc_timer_clear(dc_module_state *st) { (void)st; }
void dc_timer_free(dc_module_state *st) { (void)st; }
