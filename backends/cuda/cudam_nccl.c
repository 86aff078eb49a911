/* Device-group collectives of the cuda module through NCCL: the optional group slots of the
 * backend table (polytrain/backend.h). NCCL is dlopen()ed on the first group_open (libnccl.so.2,
 * or PT_CUDA_NCCL_LIB), so the backend runs single-device without it and a missing NCCL is
 * an error naming the library, only where a group is wanted. In one process the
 * communicators come from ncclCommInitAll; across processes rank 0's ncclUniqueId goes to
 * every process through pt_world.broadcast and each device joins with ncclCommInitRank
 * (global rank = world rank * ndev + device). Collectives are queued on each device's
 * stream, in order with its other work. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nccl.h>

#include "backends/cuda/cudam_internal.h"

struct cu_nccl {
    void *handle;
    int version;
    ncclResult_t (*GetVersion)(int *);
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitAll)(ncclComm_t *, int, const int *);
    ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    ncclResult_t (*CommAbort)(ncclComm_t); /* optional: NULL where the library lacks it */
    ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*Broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
    ncclResult_t (*GroupStart)(void);
    ncclResult_t (*GroupEnd)(void);
    const char *(*GetErrorString)(ncclResult_t);
};

typedef struct cu_group {
    cu_backend *be;
    int ndev;
    cu_device **dev;
    ncclComm_t *comm;
} cu_group;

static pt_status nccl_load(cu_backend *be, pt_error *err)
{
    pthread_mutex_lock(&be->lock);
    if (be->nccl || be->nccl_error[0]) {
        pt_status st = be->nccl ? PT_OK : pt_fail(err, PT_ERR_UNSUPPORTED, "%s", be->nccl_error);
        pthread_mutex_unlock(&be->lock);
        return st;
    }
    const char *env = getenv("PT_CUDA_NCCL_LIB");
    const char *name = env && *env ? env : "libnccl.so.2";
    cu_nccl *n = calloc(1, sizeof *n);
    void *h = n ? dlopen(name, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!h) {
        snprintf(be->nccl_error, sizeof be->nccl_error,
                 "cuda device groups need NCCL 2: cannot load %s: %s (install NCCL 2, or add its directory to "
                 "LD_LIBRARY_PATH; PT_CUDA_NCCL_LIB names another file)",
                 name, n ? dlerror() : "out of host memory");
        free(n);
        pt_status st = pt_fail(err, PT_ERR_UNSUPPORTED, "%s", be->nccl_error);
        pthread_mutex_unlock(&be->lock);
        return st;
    }
    n->handle = h;
    const char *missing = NULL;
#define SYM(field, sym)                                           \
    do {                                                          \
        *(void **)&n->field = dlsym(h, sym);                      \
        if (!n->field && !missing) missing = sym;                 \
    } while (0)
    SYM(GetVersion, "ncclGetVersion");
    SYM(GetUniqueId, "ncclGetUniqueId");
    SYM(CommInitAll, "ncclCommInitAll");
    SYM(CommInitRank, "ncclCommInitRank");
    SYM(CommDestroy, "ncclCommDestroy");
    SYM(AllReduce, "ncclAllReduce");
    SYM(Broadcast, "ncclBroadcast");
    SYM(GroupStart, "ncclGroupStart");
    SYM(GroupEnd, "ncclGroupEnd");
    SYM(GetErrorString, "ncclGetErrorString");
#undef SYM
    *(void **)&n->CommAbort = dlsym(h, "ncclCommAbort");
    if (missing) {
        snprintf(be->nccl_error, sizeof be->nccl_error, "cuda: %s has no symbol %s (NCCL 2 expected)", name,
                 missing);
        dlclose(h);
        free(n);
        pt_status st = pt_fail(err, PT_ERR_UNSUPPORTED, "%s", be->nccl_error);
        pthread_mutex_unlock(&be->lock);
        return st;
    }
    n->GetVersion(&n->version);
    be->nccl = n;
    pthread_mutex_unlock(&be->lock);
    return PT_OK;
}

void cu_nccl_unload(cu_backend *be)
{
    if (!be->nccl) return;
    dlclose(be->nccl->handle);
    free(be->nccl);
    be->nccl = NULL;
}

static pt_status nccl_fail(const cu_nccl *n, pt_error *err, ncclResult_t rc, const char *call)
{
    return pt_fail(err, PT_ERR_BACKEND, "cuda: %s failed: %s (%d)", call, n->GetErrorString(rc), (int)rc);
}

#define NCCL_CHECK(n, call, what, err)                              \
    do {                                                            \
        ncclResult_t nc_rc_ = (call);                               \
        if (nc_rc_ != ncclSuccess) return nccl_fail((n), (err), nc_rc_, (what)); \
    } while (0)

pt_status cu_group_open(void *backend_ctx, void *const *dev_ctxs, int ndev, const pt_world *world, void **group,
                        pt_error *err)
{
    cu_backend *be = backend_ctx;
    *group = NULL;
    if (ndev < 1) return pt_fail(err, PT_ERR_INVALID, "cuda group: %d devices", ndev);
    for (int i = 0; i < ndev; i++)
        for (int j = 0; j < i; j++)
            if (((cu_device *)dev_ctxs[i])->ordinal == ((cu_device *)dev_ctxs[j])->ordinal)
                return pt_fail(err, PT_ERR_INVALID, "cuda group: device %d appears twice (NCCL needs one rank per GPU)",
                               ((cu_device *)dev_ctxs[i])->ordinal);
    PT_TRY(nccl_load(be, err));
    const cu_nccl *n = be->nccl;
    cu_group *g = calloc(1, sizeof *g);
    if (g) {
        g->dev = calloc((size_t)ndev, sizeof *g->dev);
        g->comm = calloc((size_t)ndev, sizeof *g->comm);
    }
    if (!g || !g->dev || !g->comm) {
        if (g) {
            free(g->dev);
            free(g->comm);
        }
        free(g);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    g->be = be;
    g->ndev = ndev;
    for (int i = 0; i < ndev; i++) g->dev[i] = dev_ctxs[i];
    pt_status st = PT_OK;
    const int procs = world && world->size > 1 ? world->size : 1;
    if (procs == 1) {
        int ords[64];
        int *o = ndev <= 64 ? ords : malloc((size_t)ndev * sizeof *o);
        if (!o) st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        for (int i = 0; o && i < ndev; i++) o[i] = g->dev[i]->ordinal;
        ncclResult_t rc = o ? n->CommInitAll(g->comm, ndev, o) : ncclSuccess;
        if (o && rc != ncclSuccess) st = nccl_fail(n, err, rc, "ncclCommInitAll");
        if (o != ords) free(o);
    } else {
        /* rank 0's id and whether it got one: a rank that joined with a zero id would wait for
         * peers that never come */
        struct {
            int32_t ok;
            ncclUniqueId id;
        } msg;
        memset(&msg, 0, sizeof msg);
        ncclResult_t rc = ncclSuccess;
        if (world->rank == 0) {
            rc = n->GetUniqueId(&msg.id);
            if (rc != ncclSuccess) st = nccl_fail(n, err, rc, "ncclGetUniqueId");
            else msg.ok = 1;
        }
        /* every rank takes part in the broadcast, even one whose id failed: none may hang */
        pt_error berr;
        pt_error_clear(&berr);
        if (!world->broadcast)
            st = pt_fail(err, PT_ERR_INVALID, "cuda group: a world of %d processes without broadcast", procs);
        else if (world->broadcast(world->ctx, &msg, sizeof msg, 0, &berr) != PT_OK && st == PT_OK)
            st = pt_fail(err, berr.status, "cuda group: broadcasting the NCCL id: %s", berr.msg);
        if (st == PT_OK && !msg.ok)
            st = pt_fail(err, PT_ERR_BACKEND, "cuda group: rank 0 could not create the NCCL id (see its error)");
        const ncclUniqueId id = msg.id;
        if (st == PT_OK) {
            const int nranks = procs * ndev;
            n->GroupStart();
            for (int i = 0; i < ndev && rc == ncclSuccess; i++) {
                cudaSetDevice(g->dev[i]->ordinal);
                rc = n->CommInitRank(&g->comm[i], nranks, id, world->rank * ndev + i);
            }
            ncclResult_t rc2 = n->GroupEnd();
            if (rc != ncclSuccess) st = nccl_fail(n, err, rc, "ncclCommInitRank");
            else if (rc2 != ncclSuccess) st = nccl_fail(n, err, rc2, "ncclGroupEnd (ncclCommInitRank)");
        }
    }
    if (st != PT_OK) {
        /* ncclCommDestroy waits for the communicator's work, which a failed start may never
         * finish: abort where the library can */
        for (int i = 0; i < ndev; i++)
            if (g->comm[i]) (n->CommAbort ? n->CommAbort : n->CommDestroy)(g->comm[i]);
        free(g->dev);
        free(g->comm);
        free(g);
        return pt_error_wrap(err, "opening a cuda group of %d device(s) x %d process(es)", ndev, procs);
    }
    *group = g;
    return PT_OK;
}

void cu_group_close(void *group)
{
    cu_group *g = group;
    if (!g) return;
    for (int i = 0; i < g->ndev; i++) {
        cudaSetDevice(g->dev[i]->ordinal);
        const cudaError_t rc = cudaStreamSynchronize(g->dev[i]->stream);
        const cu_nccl *n = g->be->nccl;
        /* a stream that failed may hold collectives that never complete: abort them */
        if (g->comm[i]) (rc != cudaSuccess && n->CommAbort ? n->CommAbort : n->CommDestroy)(g->comm[i]);
    }
    free(g->dev);
    free(g->comm);
    free(g);
}

static pt_status check_bufs(const cu_group *g, const pt_mem *bufs, size_t bytes, const char *what, pt_error *err)
{
    for (int i = 0; i < g->ndev; i++) {
        if (!bufs[i].buf) return pt_fail(err, PT_ERR_INVALID, "cuda %s: device %d has no buffer", what, i);
        if (bufs[i].off > bufs[i].buf->bytes || bytes > bufs[i].buf->bytes - bufs[i].off)
            return pt_fail(err, PT_ERR_INVALID, "cuda %s: %zu bytes at offset %zu exceed device %d's buffer of %zu",
                           what, bytes, bufs[i].off, i, bufs[i].buf->bytes);
    }
    return PT_OK;
}

pt_status cu_group_allreduce_f32(void *group, const pt_mem *bufs, size_t count, pt_error *err)
{
    cu_group *g = group;
    const cu_nccl *n = g->be->nccl;
    PT_TRY(check_bufs(g, bufs, count * sizeof(float), "allreduce", err));
    if (!count) return PT_OK;
    NCCL_CHECK(n, n->GroupStart(), "ncclGroupStart", err);
    ncclResult_t rc = ncclSuccess;
    for (int i = 0; i < g->ndev && rc == ncclSuccess; i++) {
        float *p = cu_f32(bufs[i]);
        rc = n->AllReduce(p, p, count, ncclFloat32, ncclSum, g->comm[i], g->dev[i]->stream);
    }
    ncclResult_t rc2 = n->GroupEnd();
    if (rc != ncclSuccess) return nccl_fail(n, err, rc, "ncclAllReduce");
    if (rc2 != ncclSuccess) return nccl_fail(n, err, rc2, "ncclGroupEnd (ncclAllReduce)");
    return PT_OK;
}

pt_status cu_group_broadcast(void *group, const pt_mem *bufs, size_t bytes, pt_error *err)
{
    cu_group *g = group;
    const cu_nccl *n = g->be->nccl;
    PT_TRY(check_bufs(g, bufs, bytes, "broadcast", err));
    if (!bytes) return PT_OK;
    NCCL_CHECK(n, n->GroupStart(), "ncclGroupStart", err);
    ncclResult_t rc = ncclSuccess;
    for (int i = 0; i < g->ndev && rc == ncclSuccess; i++) {
        void *p = (char *)bufs[i].buf->ptr + bufs[i].off;
        rc = n->Broadcast(p, p, bytes, ncclInt8, 0, g->comm[i], g->dev[i]->stream);
    }
    ncclResult_t rc2 = n->GroupEnd();
    if (rc != ncclSuccess) return nccl_fail(n, err, rc, "ncclBroadcast");
    if (rc2 != ncclSuccess) return nccl_fail(n, err, rc2, "ncclGroupEnd (ncclBroadcast)");
    return PT_OK;
}
