/* Adapts a pt_loader to the core's pt_batch_source interface (core/batch.h). */
#ifndef PT_DATA_SOURCE_H
#define PT_DATA_SOURCE_H

#include "core/batch.h"
#include "data/loader.h"

pt_batch_source pt_loader_source(pt_loader *ld);

#endif
