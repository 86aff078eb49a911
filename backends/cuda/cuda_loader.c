/* Finding and loading the cuda module (cuda_loader.h). */
#define _GNU_SOURCE /* dladdr() */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/cuda/cuda_loader.h"
#include "backends/cuda/cuda_module.h"

#ifndef PT_CUDA_MODULE_BUILD_PATH
#define PT_CUDA_MODULE_BUILD_PATH ""
#endif
#ifndef PT_INSTALL_LIBDIR
#define PT_INSTALL_LIBDIR "lib"
#endif

/* dir + "/" + rel + "/" + file into paths[*n] unless it is already there or too long. */
static void add_candidate(char paths[][4096], int *n, int max, const char *dir, const char *rel)
{
    if (*n >= max) return;
    int w = snprintf(paths[*n], 4096, "%s%s/%s", dir, rel, PT_CUDA_MODULE_FILE);
    if (w <= 0 || w >= 4096) return; /* a path too long to hold is no candidate */
    for (int i = 0; i < *n; i++)
        if (strcmp(paths[i], paths[*n]) == 0) return;
    (*n)++;
}

int pt_cuda_module_candidates(char paths[][4096], int max)
{
    int n = 0;
    const char *env = getenv("PT_CUDA_MODULE");
    if (env && *env) {
        if (max > 0) snprintf(paths[n++], 4096, "%s", env);
        return n;
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            const char *rel[] = {"", "/../lib", "/../lib/polytrain", "/../" PT_INSTALL_LIBDIR "/polytrain"};
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) add_candidate(paths, &n, max, exe, rel[i]);
        }
    }
    /* Where the library holding this code was loaded from: libpolytrain.so's directory, whose
     * polytrain/ subdirectory is where the module is installed (LIBDIR/polytrain). */
    Dl_info info;
    if (dladdr((void *)pt_cuda_module_candidates, &info) && info.dli_fname && info.dli_fname[0] == '/') {
        char lib[4096];
        snprintf(lib, sizeof lib, "%s", info.dli_fname);
        char *slash = strrchr(lib, '/');
        if (slash) {
            *slash = '\0';
            add_candidate(paths, &n, max, lib, "/polytrain");
        }
    }
    if (n < max && PT_CUDA_MODULE_BUILD_PATH[0]) {
        int dup = 0;
        for (int i = 0; i < n; i++) dup |= strcmp(paths[i], PT_CUDA_MODULE_BUILD_PATH) == 0;
        if (!dup) snprintf(paths[n++], 4096, "%s", PT_CUDA_MODULE_BUILD_PATH);
    }
    return n;
}

void pt_cuda_explain_dlerror(const char *dlerr, char *out, size_t cap)
{
    static const struct { const char *lib, *what; } known[] = {
        {"libcudnn", "cuDNN 9 (libcudnn.so.9 and its sub-libraries)"},
        {"libcublasLt", "cuBLAS of the CUDA 13 toolkit (libcublasLt.so.13)"},
        {"libcublas", "cuBLAS of the CUDA 13 toolkit (libcublas.so.13)"},
        {"libcudart", "the CUDA 13 runtime (libcudart.so.13)"},
        {"libnccl", "NCCL 2 (libnccl.so.2)"},
        {"libcuda.so", "the NVIDIA driver (libcuda.so.1)"},
        {"libstdc++", "the C++ runtime cuDNN needs (libstdc++.so.6)"},
    };
    const char *e = dlerr ? dlerr : "unknown error";
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strstr(e, known[i].lib) && strstr(e, "cannot open shared object")) {
            snprintf(out, cap,
                     "%s is missing at run time: %s. Install it, or add its directory (e.g. "
                     "/usr/local/cuda/lib64) to LD_LIBRARY_PATH",
                     known[i].what, e);
            return;
        }
    }
    if (strstr(e, "undefined symbol"))
        snprintf(out, cap, "%s (a vendor library of another version than the module was built against?)", e);
    else
        snprintf(out, cap, "%s", e);
}

pt_status pt_cuda_module_open(void **handle, char *path_out, size_t path_cap, pt_error *err)
{
    *handle = NULL;
    char paths[6][4096];
    const int n = pt_cuda_module_candidates(paths, 6);
    char tried[2048] = "";
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            size_t used = strlen(tried);
            if (snprintf(tried + used, sizeof tried - used, "%s%s", used ? ", " : "", paths[i]) < 0) break;
            continue;
        }
        void *h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            char why[1024];
            pt_cuda_explain_dlerror(dlerror(), why, sizeof why);
            return pt_fail(err, PT_ERR_UNSUPPORTED, "cannot load the cuda module %s: %s", paths[i], why);
        }
        snprintf(path_out, path_cap, "%s", paths[i]);
        *handle = h;
        return PT_OK;
    }
    const char *env = getenv("PT_CUDA_MODULE");
    if (env && *env)
        return pt_fail(err, PT_ERR_UNSUPPORTED, "the cuda module %s (PT_CUDA_MODULE) does not exist", env);
    return pt_fail(err, PT_ERR_UNSUPPORTED,
                   "the cuda module %s was not found (looked for %s); it is built with the cuda backend "
                   "(cmake -DPT_CUDA=ON) and installed in LIBDIR/polytrain (Debian package polytrain-cuda), "
                   "or name it with PT_CUDA_MODULE",
                   PT_CUDA_MODULE_FILE, tried);
}
