/* The contract between the cuda stub (compiled into libpolytrain) and the cuda module
 * (libpolytrain_cuda.so): the one symbol the module exports. The module returns its
 * backend table when it was built against the same backend API and pt_backend_iface
 * layout, so a stale module from another build is refused by the stub, not misused. */
#ifndef PT_CUDA_MODULE_H
#define PT_CUDA_MODULE_H

#include <stddef.h>

#include "polytrain/backend.h"

#define PT_CUDA_MODULE_ENTRY "pt_cuda_module_entry"
#define PT_CUDA_MODULE_FILE "libpolytrain_cuda.so"

typedef const pt_backend_iface *(*pt_cuda_module_entry_fn)(int api_version, size_t iface_size);

#endif
