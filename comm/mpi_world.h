/* The MPI process world: fills polytrain/world.h's pt_world table with Open MPI calls. Only
 * comm/ includes mpi.h; a build without MPI (PT_MPI=OFF or not found) compiles
 * comm/mpi_none.c instead, whose init says so. */
#ifndef PT_COMM_MPI_WORLD_H
#define PT_COMM_MPI_WORLD_H

#include "polytrain/world.h"

/* Whether this process was started by an MPI launcher (mpirun/mpiexec), from its
 * environment, without initialising MPI. */
int pt_mpi_launched(void);
/* Whether MPI support is compiled in. */
int pt_mpi_available(void);
/* Initialises MPI (thread level SERIALIZED: one thread at a time calls MPI) and fills
 * *out; errors say what went wrong. Call once per process. */
pt_status pt_mpi_world_init(pt_world *out, pt_error *err);
/* Finalises MPI (after every rank is done). */
void pt_mpi_world_finalize(pt_world *w);

#endif
