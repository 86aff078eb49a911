/* polytrain's C API in one include: status and errors, tensors and the backend registry,
 * nets built layer by layer, replicas on devices, optimizers and LR schedules, the
 * trainer with its run directory, checkpoints and metrics, the model zoo, datasets and
 * their loaders. These headers (include/polytrain/) are the installed, public API; the
 * rest of the source tree is private. See examples/train_tiny_cnn.c. */
#ifndef POLYTRAIN_H
#define POLYTRAIN_H

#include "polytrain/backend.h"
#include "polytrain/batch.h"
#include "polytrain/checkpoint.h"
#include "polytrain/dataset.h"
#include "polytrain/loader.h"
#include "polytrain/metrics.h"
#include "polytrain/models.h"
#include "polytrain/net.h"
#include "polytrain/optim.h"
#include "polytrain/replica.h"
#include "polytrain/schedule.h"
#include "polytrain/source.h"
#include "polytrain/status.h"
#include "polytrain/tensor.h"
#include "polytrain/trainer.h"
#include "polytrain/version.h"

#endif
