/* pt_world over MPI_COMM_WORLD (see mpi_world.h). Errors return instead of aborting
 * (MPI_ERRORS_RETURN) so that the caller can print what failed before it ends the run
 * with abort(), which takes every rank down (MPI_Abort). */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "comm/mpi_world.h"

int pt_mpi_available(void) { return 1; }

static pt_status mpi_fail(pt_error *err, int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    return pt_fail(err, PT_ERR_BACKEND, "MPI %s failed: %s", what, msg);
}

/* MPI counts are int: large buffers go in pieces. */
#define MPI_CHUNK ((size_t)1 << 28)

/* Gradient buckets are reduced by a communication thread while the device threads still
 * compute; a blocking MPI_Allreduce would spin on a core they need while it waits for the
 * other ranks. So: a non-blocking all-reduce, tested with short sleeps in between. */
static pt_status allreduce_f32(void *ctx, float *buf, size_t n, pt_error *err)
{
    (void)ctx;
    for (size_t i = 0; i < n; i += MPI_CHUNK) {
        size_t c = n - i < MPI_CHUNK ? n - i : MPI_CHUNK;
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + i, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce");
        for (int done = 0, polls = 0;; polls++) {
            rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce");
            if (done) break;
            if (polls > 20) { /* a short spin first: small buckets finish in microseconds */
                struct timespec ts = {0, 50000};
                nanosleep(&ts, NULL);
            }
        }
    }
    return PT_OK;
}

static pt_status allreduce_f64(void *ctx, double *buf, size_t n, pt_error *err)
{
    (void)ctx;
    for (size_t i = 0; i < n; i += MPI_CHUNK) {
        size_t c = n - i < MPI_CHUNK ? n - i : MPI_CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)c, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce");
    }
    return PT_OK;
}

static pt_status broadcast(void *ctx, void *buf, size_t bytes, int root, pt_error *err)
{
    (void)ctx;
    for (size_t i = 0; i < bytes; i += MPI_CHUNK) {
        size_t c = bytes - i < MPI_CHUNK ? bytes - i : MPI_CHUNK;
        int rc = MPI_Bcast((char *)buf + i, (int)c, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "broadcast");
    }
    return PT_OK;
}

static pt_status barrier(void *ctx, pt_error *err)
{
    (void)ctx;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? PT_OK : mpi_fail(err, rc, "barrier");
}

static void world_abort(void *ctx, int code, const char *msg)
{
    (void)ctx;
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (msg && *msg) fprintf(stderr, "polytrain: rank %d: %s; stopping every rank\n", rank, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}

pt_status pt_mpi_world_init(pt_world *out, pt_error *err)
{
    *out = pt_world_single();
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "initialisation");
    if (provided < MPI_THREAD_SERIALIZED) {
        MPI_Finalize();
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "this MPI library does not allow calls from more than one thread "
                       "(MPI_THREAD_SERIALIZED); polytrain's communication thread needs it");
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &out->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &out->size);
    out->ctx = NULL;
    out->allreduce_sum_f32 = allreduce_f32;
    out->allreduce_sum_f64 = allreduce_f64;
    out->broadcast = broadcast;
    out->barrier = barrier;
    out->abort = world_abort;
    return PT_OK;
}

void pt_mpi_world_finalize(pt_world *w)
{
    (void)w;
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}
