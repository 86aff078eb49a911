/* Launcher detection shared by the MPI and the MPI-less builds (see mpi_world.h). */
#include <stdlib.h>

#include "comm/mpi_world.h"

int pt_mpi_launched(void)
{
    /* Open MPI, MPICH/Hydra and Slurm's PMI set these for every rank they start. */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", NULL};
    for (int i = 0; vars[i]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}
