/* The backend registry: the compiled-in backends (a table CMake generates) and their
 * lazily initialised contexts. This is the one mutable global polytrain has. */
#include <pthread.h>
#include <string.h>

#include "polytrain/backend.h"

extern const pt_backend_iface *const pt_builtin_backends[];

#define PT_MAX_BACKENDS 8

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static void *g_ctx[PT_MAX_BACKENDS];
static int g_state[PT_MAX_BACKENDS];      /* 0 untried, 1 ready, -1 failed */
static pt_error g_init_err[PT_MAX_BACKENDS];

int pt_backend_count(void)
{
    int n = 0;
    while (pt_builtin_backends[n] && n < PT_MAX_BACKENDS) n++;
    return n;
}

const pt_backend_iface *pt_backend_at(int i)
{
    return (i >= 0 && i < pt_backend_count()) ? pt_builtin_backends[i] : NULL;
}

const pt_backend_iface *pt_backend_find(const char *name)
{
    for (int i = 0; i < pt_backend_count(); i++)
        if (strcmp(pt_builtin_backends[i]->name, name) == 0) return pt_builtin_backends[i];
    return NULL;
}

pt_status pt_backend_context(const pt_backend_iface *be, void **ctx, pt_error *err)
{
    int idx = -1;
    for (int i = 0; i < pt_backend_count(); i++)
        if (pt_builtin_backends[i] == be) idx = i;
    if (idx < 0) return pt_fail(err, PT_ERR_INVALID, "backend is not registered");
    if (be->api_version != PT_BACKEND_API_VERSION)
        return pt_fail(err, PT_ERR_BACKEND, "backend '%s' has API version %d, expected %d",
                       be->name, be->api_version, PT_BACKEND_API_VERSION);
    pthread_mutex_lock(&g_lock);
    if (g_state[idx] == 0) {
        pt_error_clear(&g_init_err[idx]);
        g_state[idx] = be->init(&g_ctx[idx], &g_init_err[idx]) == PT_OK ? 1 : -1;
    }
    pt_status st = PT_OK;
    if (g_state[idx] == 1) {
        *ctx = g_ctx[idx];
    } else {
        st = pt_fail(err, g_init_err[idx].status ? g_init_err[idx].status : PT_ERR_BACKEND,
                     "backend '%s': %s", be->name, g_init_err[idx].msg);
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}
