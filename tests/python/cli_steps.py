"""What the tests comparing polytrain's training step with PyTorch's share: two steps of a zoo
model trained through the CLI (one run, then a resume), the weights before and after the
second, and that step's batch as PyTorch tensors. Needs torch and numpy (the caller has
checked they import)."""

import os

import numpy as np
import torch

from ptcheck import check, run_cli
import torch_models
import torch_reference_train as reference

# One constant-LR SGD step without momentum or weight decay, no augmentation: the weight
# change is -lr times the gradient of exactly this batch.
STEP_OPTIONS = ["--augment", "none", "--schedule", "constant", "--momentum", "0", "--no-nesterov",
                "--weight-decay", "0", "--seed", "11", "--no-progress"]


def philox_u32(seed, purpose, stream, a, b):
    """core/rng.h's pt_rng_u32 (Philox4x32-10) in Python."""
    m = 0xFFFFFFFF
    key = seed ^ ((purpose * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    k0, k1 = key & m, (key >> 32) & m
    c0, c1 = b & m, (a & m) ^ ((purpose << 24) & m)
    c2, c3 = ((a >> 32) & m) ^ ((stream << 8) & m), (stream >> 24) & m
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & m, p1 & m, ((p0 >> 32) ^ c3 ^ k1) & m, p0 & m
        k0, k1 = (k0 + 0x9E3779B9) & m, (k1 + 0xBB67AE85) & m
    return c0


def epoch_order(seed, epoch, n):
    """The training loader's sample order in 0-based epoch `epoch` (pt_loader_permutation)."""
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = (philox_u32(seed, 2, epoch, i, 0) * (i + 1)) >> 32
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def rel(a, b):
    """||a - b|| / ||b|| over every element (numpy or torch)."""
    d = np.linalg.norm((a - b).ravel())
    n = np.linalg.norm(b.ravel())
    return d / max(n, 1e-30)


def two_steps(model_name, n, tmp, lr, extra=(), what="step", batch=None):
    """Trains model_name for one step of n samples into tmp/model_name, resumes it for a
    second; returns (w1, w2, meta, x, y): the weights before and after step 2, the model's
    metadata, and that step's normalised batch and labels (in dataset order). None when a
    run failed. batch: samples per device when a step is not one batch (--accumulate)."""
    out = os.path.join(tmp, model_name)
    common = ["--model", model_name, "--limit-train", str(n), "--limit-val", "16", "--batch-per-device",
              str(batch or n), "--lr", str(lr)] + STEP_OPTIONS + list(extra)
    if not check(run_cli(["train", "--epochs", "1", "--out", out] + common)[0] == 0,
                 "%s: first %s trains" % (model_name, what)):
        return None
    w1, meta = torch_models.load_safetensors(os.path.join(out, "last", "model.safetensors"))
    # the constant schedule does not depend on the run's length: --epochs 2 trains on
    if not check(run_cli(["train", "--resume", out, "--epochs", "2", "--no-progress"])[0] == 0,
                 "%s: resumed second %s trains" % (model_name, what)):
        return None
    w2, _ = torch_models.load_safetensors(os.path.join(out, "last", "model.safetensors"))
    images, labels = reference.load_split(reference.DEFAULT_DATA, "train")
    x = reference.normalise(images[:n], float(meta["mean"]), float(meta["std"]))
    y = torch.from_numpy(labels[:n]).long()
    return w1, w2, meta, x, y
