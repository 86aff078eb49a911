/* polytrain's C API in one include: status and errors, tensors and the backend registry,
 * nets built layer by layer, replicas on devices, optimizers and LR schedules, the
 * trainer with its run directory, checkpoints and metrics. The model zoo is
 * models/models.h; datasets, loaders and images are the data/ headers. See examples/. */
#ifndef POLYTRAIN_H
#define POLYTRAIN_H

#include "core/backend.h"
#include "core/batch.h"
#include "core/checkpoint.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/optim.h"
#include "core/replica.h"
#include "core/schedule.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/trainer.h"

#endif
