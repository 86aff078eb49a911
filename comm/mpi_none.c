/* The world of a build without MPI (see mpi_world.h): a run under mpirun is refused
 * with the reason, rather than K processes each training alone on the same directory. */
#include "comm/mpi_world.h"

int pt_mpi_available(void) { return 0; }

pt_status pt_mpi_world_init(pt_world *out, pt_error *err)
{
    *out = pt_world_single();
    return pt_fail(err, PT_ERR_UNSUPPORTED,
                   "started by an MPI launcher, but this polytrain was built without MPI "
                   "(install libopenmpi-dev and rebuild with -DPT_MPI=ON)");
}

void pt_mpi_world_finalize(pt_world *w) { (void)w; }
