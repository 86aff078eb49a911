/* What the host machine is, as Linux describes it: shared by the cpu backend (its device
 * name) and the tools that record the machine a result came from. */
#ifndef PT_HOST_H
#define PT_HOST_H

#include <stddef.h>

/* The CPU's model name from /proc/cpuinfo into out (truncated to cap). Returns 1 when found;
 * otherwise out is left as it was, for the caller's own fallback. */
int pt_host_cpu_model(char *out, size_t cap);

#endif
