/* Adapts a pt_loader to the core's pt_batch_source interface (polytrain/batch.h). */
#ifndef PT_DATA_SOURCE_H
#define PT_DATA_SOURCE_H

#include "polytrain/batch.h"
#include "polytrain/loader.h"

pt_batch_source pt_loader_source(pt_loader *ld);

#endif
