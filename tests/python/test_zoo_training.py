"""The attention models train: se_resnet18 and cbam_resnet18 take a few SGD steps on one
fixed batch of Fashion-MNIST images (32 samples, full batch, no augmentation) on the cpu
backend, and cbam_resnet18 (every op se_resnet18 uses and more) also on the opencl backend
when it is there; every step's loss is finite, the loss falls, and opencl's first loss
(same seed, same weights, same images) equals cpu's.
Exit 77 when the dataset is missing. No torch needed."""

import json
import math
import os
import shutil
import sys

from ptcheck import check, finish, run_cli, scratch_dir

DATA = "/usr/share/datasets/fashion-mnist"
STEPS = 6
# Six steps of SGD (lr 0.02, momentum 0.9) on the same 32 images, measured: se_resnet18
# 2.371 -> 1.370 (0.58x) on cpu and on opencl, cbam_resnet18 2.357 -> 1.613 (0.68x) on cpu
# and 2.357 -> 1.620 on opencl.
# A broken gradient (wrong sign, lost term) leaves the loss flat or makes it grow.
MAX_LAST_OVER_FIRST = 0.8
# Step 0 runs the forward pass on the same weights and images: only summation order differs.
FIRST_LOSS_REL = 1e-3
OPTIONS = ["--epochs", str(STEPS), "--limit-train", "32", "--batch-per-device", "32",
           "--limit-val", "16", "--augment", "none", "--schedule", "constant", "--lr", "0.02",
           "--momentum", "0.9", "--weight-decay", "0", "--seed", "5", "--log-steps",
           "--no-progress"]


def opencl_available():
    rc, out = run_cli(["devices", "--json"])
    try:
        return any(b.get("backend") == "opencl" and b.get("available") and b.get("devices")
                   for b in json.loads(out))
    except ValueError:
        return False


def losses(model, backend, tmp):
    out = os.path.join(tmp, "%s-%s" % (model, backend))
    rc, _ = run_cli(["train", "--model", model, "--backend", backend, "--devices", "1",
                     "--out", out] + OPTIONS, timeout=800)
    if not check(rc == 0, "%s on %s: train exits 0" % (model, backend)):
        return None
    with open(os.path.join(out, "steps.jsonl")) as f:
        steps = [json.loads(line) for line in f if line.strip()]
    loss = [float(s["loss"]) for s in steps]
    check(len(loss) == STEPS and all(math.isfinite(v) for v in loss),
          "%s on %s: %d finite step losses %s" % (model, backend, len(loss),
                                                  ", ".join("%.4f" % v for v in loss)))
    if len(loss) == STEPS:
        check(loss[-1] < MAX_LAST_OVER_FIRST * loss[0],
              "%s on %s: loss falls from %.4f to %.4f (bound %.2fx)"
              % (model, backend, loss[0], loss[-1], MAX_LAST_OVER_FIRST))
    return loss


def main():
    if not os.path.exists(os.path.join(DATA, "train-images-idx3-ubyte.gz")):
        print("SKIP: no Fashion-MNIST at %s" % DATA)
        return 77
    tmp = scratch_dir("zoo_train.")
    try:
        ocl = opencl_available()
        if not ocl:
            print("NOTE: no opencl device: cpu only")
        for model in ("se_resnet18", "cbam_resnet18"):
            cpu = losses(model, "cpu", tmp)
            if ocl and model == "cbam_resnet18":
                dev = losses(model, "opencl", tmp)
                if cpu and dev:
                    rel = abs(dev[0] - cpu[0]) / abs(cpu[0])
                    check(rel < FIRST_LOSS_REL, "%s: first loss opencl %.6f vs cpu %.6f (rel %.2e)"
                          % (model, dev[0], cpu[0], rel))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
