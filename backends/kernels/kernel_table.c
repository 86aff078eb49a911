/* The rows of kernel_table.h as data: names, parameter letters, launch shapes, and the
 * pointwise kinds' kernels. */
#include <string.h>

#include "backends/kernels/kernel_table.h"

static const pt_kernel_info kernels[PT_K_COUNT] = {
#define PT_K_ROW(id, fn, launch, op, ...) [PT_K_##id] = {#fn, PT_KERNEL_PARAMS(__VA_ARGS__), PT_K_##launch, op},
    PT_KERNEL_TABLE(PT_K_ROW)
#undef PT_K_ROW
};

const pt_kernel_info *pt_kernel_info_of(pt_kernel_id id)
{
    return (int)id >= 0 && id < PT_K_COUNT ? &kernels[id] : NULL;
}

pt_kernel_id pt_kernel_for_pointwise(pt_op_kind kind)
{
    for (int k = 0; k < PT_K_COUNT; k++)
        if (kernels[k].op == (int)kind) return (pt_kernel_id)k;
    return PT_K_COUNT;
}

int pt_kernel_param_count(pt_kernel_id id)
{
    const pt_kernel_info *k = pt_kernel_info_of(id);
    if (!k) return 0;
    int n = 0;
    for (const char *p = k->params; *p; p++) n += *p == 'm' ? 2 : 1;
    return n;
}

int pt_kernel_param_size(pt_kernel_id id, int i)
{
    const pt_kernel_info *k = pt_kernel_info_of(id);
    if (!k || i < 0) return 0;
    for (const char *p = k->params; *p; p++) {
        const int parts = *p == 'm' ? 2 : 1;
        if (i < parts) return *p == 'm' || *p == 'l' || *p == 'U' ? 8 : 4;
        i -= parts;
    }
    return 0;
}
