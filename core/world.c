/* The single-process world (see polytrain/world.h). */
#include "polytrain/world.h"

pt_world pt_world_single(void)
{
    pt_world w = {0};
    w.rank = 0;
    w.size = 1;
    return w;
}
