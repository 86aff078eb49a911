"""A model trained by polytrain loads into its PyTorch twin (tools/torch_models.py) with
load_state_dict(strict=True), and `polytrain eval --dump-logits` equals that twin's eval-mode
logits computed in float64 on the same test images. Exit 77 when torch or numpy is missing."""

import json
import os
import shutil
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print("SKIP: %s (Debian packages python3-torch, python3-numpy)" % e)
    sys.exit(77)

from ptcheck import check, finish, run_cli, scratch_dir  # noqa: E402
import torch_models  # noqa: E402
import torch_reference_train as reference  # noqa: E402

DATA = reference.DEFAULT_DATA
MAX_ABS_DIFF = 1e-4

def check_metadata(meta, model):
    expect = {"framework": "polytrain", "format_version": "1", "model": model,
              "in_channels": "1", "num_classes": "10", "image_height": "28",
              "image_width": "28"}
    wrong = {k: meta.get(k) for k, v in expect.items() if meta.get(k) != v}
    check(not wrong, "%s: metadata %s" % (model, wrong or "as documented"))
    try:
        names = json.loads(meta.get("class_names", ""))
    except ValueError:
        names = None
    check(isinstance(names, list) and len(names) == 10 and all(isinstance(n, str) for n in names),
          "%s: class_names is a JSON array of 10 strings" % model)


def equivalence(model, limit_train, limit_val, tmp):
    out = os.path.join(tmp, "eq_" + model)
    rc, _ = run_cli(["train", "--model", model, "--epochs", "1", "--limit-train",
                     str(limit_train), "--limit-val", str(limit_val), "--out", out,
                     "--no-progress", "--seed", "3"])
    if not check(rc == 0, "%s: train exits 0" % model):
        return
    ckpt = os.path.join(out, "last")
    state, meta = torch_models.load_safetensors(os.path.join(ckpt, "model.safetensors"))
    check_metadata(meta, model)
    bad_dtype = [k for k, v in state.items()
                 if v.dtype != (torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
                 or (k.endswith("num_batches_tracked") and v.dim() != 0)]
    check(not bad_dtype, "%s: float32 tensors and int64 scalar num_batches_tracked %s"
          % (model, bad_dtype[:5] or ""))

    net = torch_models.build(model, int(meta["in_channels"]), int(meta["num_classes"]))
    try:
        net.load_state_dict(state, strict=True)
        loaded = True
    except RuntimeError as e:
        print(e)
        loaded = False
    if not check(loaded, "%s: load_state_dict(strict=True) of %d entries" % (model, len(state))):
        return
    nbt = int(state[[k for k in state if k.endswith("num_batches_tracked")][0]])
    check(nbt == (limit_train + 63) // 64,
          "%s: num_batches_tracked %d = steps of one epoch" % (model, nbt))

    logits_path = os.path.join(tmp, model + ".logits")
    rc, stdout = run_cli(["eval", "--checkpoint", ckpt, "--limit-val", str(limit_val),
                          "--dump-logits", logits_path, "--json"])
    if not check(rc == 0, "%s: eval exits 0" % model):
        return
    classes = int(meta["num_classes"])
    ours = np.fromfile(logits_path, dtype="<f4")
    if not check(ours.size == limit_val * classes,
                 "%s: %d logits dumped for %d x %d" % (model, ours.size, limit_val, classes)):
        return
    ours = torch.from_numpy(ours.reshape(limit_val, classes).astype(np.float64))

    images, labels = reference.load_split(DATA, "t10k")
    mean = [float(v) for v in meta["mean"].split(",")]
    std = [float(v) for v in meta["std"].split(",")]
    x = torch.from_numpy(images[:limit_val].astype(np.float64) / 255.0).unsqueeze(1)
    x = (x - torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)) / \
        torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    y = torch.from_numpy(labels[:limit_val])
    net = net.double().eval()
    with torch.no_grad():
        theirs = net(x)
    diff = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    finite = bool(torch.isfinite(ours).all())
    check(finite and diff < MAX_ABS_DIFF,
          "%s: max |polytrain - PyTorch float64| logits = %.3g over %d x %d (max |logit| %.3g, "
          "bound %g)" % (model, diff, limit_val, classes, scale, MAX_ABS_DIFF))

    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = {}
    ref_loss = F.cross_entropy(theirs, y).item()
    check(report.get("count") == limit_val and
          abs(float(report.get("loss", "nan")) - ref_loss) < MAX_ABS_DIFF * max(1.0, ref_loss),
          "%s: eval --json loss %s = PyTorch %.6f over %s samples" % (
              model, report.get("loss"), ref_loss, report.get("count")))
    acc = (ours.argmax(1) == y).double().mean().item()
    top1 = float(report.get("top1", "nan"))
    check(abs(top1 - acc) < 1e-6 or abs(top1 - 100 * acc) < 1e-4,  # printed rounded
          "%s: eval --json top1 %s = accuracy of its dumped logits %.4f" % (model, top1, acc))
    # eval of the checkpoint reports what training reported for it (same samples).
    with open(os.path.join(out, "metrics.jsonl")) as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    same = all(abs(float(report.get(k, "nan")) - last["val_" + k]) <= 2e-6 for k in ("loss", "top1", "top5"))
    check(same and last["val_count"] == report.get("count"),
          "%s: eval of last/ = training's epoch-%d report (loss %s vs %s, top1 %s vs %s, top5 %s vs %s)" % (
              model, last["epoch"], report.get("loss"), last["val_loss"], report.get("top1"), last["val_top1"],
              report.get("top5"), last["val_top5"]))


def main():
    tmp = scratch_dir("torch_eq.")
    try:
        torch.set_num_threads(2)
        equivalence("baseline", 512, 256, tmp)
        equivalence("resnet18", 128, 64, tmp)
        # The rest of the zoo on fewer images: what is checked is the wiring (names, shapes,
        # attention branches), which one step and 16 images show.
        for model in ("resnet34", "wide_resnet18", "se_resnet18", "cbam_resnet18", "resnet18_imagenet"):
            equivalence(model, 32, 16, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
