/* Finding and loading the cuda module (CUDA-free, used by the stub and tested on CPU):
 * where libpolytrain_cuda.so is looked for, and what a failed dlopen() means for the user
 * (which vendor library is missing and what provides it). */
#ifndef PT_CUDA_LOADER_H
#define PT_CUDA_LOADER_H

#include <stddef.h>

#include "polytrain/status.h"

/* Candidate paths of the module, in search order: $PT_CUDA_MODULE alone when set; else next
 * next to the running executable, in ../lib, ../lib/polytrain and ../LIBDIR/polytrain from
 * it, in polytrain/ next to the library holding this code (an installed libpolytrain.so),
 * and where this build put it. Returns the count written (at most max). */
int pt_cuda_module_candidates(char paths[][4096], int max);

/* A user-facing explanation of dlerror() text from loading the module: names the missing
 * vendor library (cuDNN, cuBLAS, CUDA runtime, NCCL) and how to provide it. */
void pt_cuda_explain_dlerror(const char *dlerr, char *out, size_t cap);

/* dlopen()s the module (RTLD_NOW | RTLD_LOCAL) from the candidates; on failure err says
 * which paths were tried and why each failed. */
pt_status pt_cuda_module_open(void **handle, char *path_out, size_t path_cap, pt_error *err);

#endif
