"""Fine-tuning from PyTorch weights: torchvision's resnet18 state dict (random init, BatchNorm
statistics randomised) saved as safetensors loads with `--init-from` into resnet18_imagenet,
and `polytrain eval --init-from` gives torchvision's eval-mode logits (float64) on Fashion-MNIST
test images, through the 3-channel conv1 summed for 1-channel input and through an F64 file of
a 1-channel twin. A finished baseline run's best/ starts a new run at its accuracy; a resume
ignores --init-from. Files that do not fit, a missing head with and without --reset-head, a
file that is not safetensors and a truncated one fail with clear messages, exit codes, and
nothing written in --out. Exit 77 without torch, torchvision or Fashion-MNIST."""

import json
import os
import shutil
import sys

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:
    print("SKIP: %s (Debian packages python3-torch, python3-torchvision, python3-numpy)" % e)
    sys.exit(77)

from ptcheck import CLI, check, finish, scratch_dir  # noqa: E402
import subprocess  # noqa: E402
import torch_models  # noqa: E402
import torch_reference_train as reference  # noqa: E402

DATA = reference.DEFAULT_DATA
# polytrain computes in float32, the reference in float64: max |difference| over max |logit|.
MAX_REL_ERR = 1e-4
N_IMAGES = 16
# A run started from best/ with one step at lr 1e-9 moves only its BatchNorm running statistics
# (momentum 0.1 towards one batch of 64): its accuracy stays within a few points.
START_MARGIN = 0.04


def run(args, timeout=300):
    """(exit code, stdout, stderr) of polytrain args."""
    cmd = [CLI] + list(args)
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        print("exit %d\nstderr:\n%s" % (p.returncode, p.stderr[-3000:]), flush=True)
    return p.returncode, p.stdout, p.stderr


def save(state, path):
    """safetensors.torch.save_file when the package is there, else the same bytes from
    torch_models' writer."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        save_file = None
    if save_file:
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch_models.save_state_dict(path, state)


def torchvision_resnet18(in_channels, classes, seed):
    torch.manual_seed(seed)
    m = torchvision.models.resnet18(weights=None, num_classes=classes)
    if in_channels != 3:
        m.conv1 = torch.nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    # non-trivial BatchNorm state, so that buffers and affine parameters are checked too
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
            mod.num_batches_tracked.fill_(9)
    return m


def test_images():
    images, labels = reference.load_split(DATA, "t10k")
    return images[:N_IMAGES], labels[:N_IMAGES]


def eval_logits(path, model, tmp, tag):
    """(logits [N, 10] float64, eval --json report, stderr) of eval --init-from."""
    out = os.path.join(tmp, tag + ".logits")
    rc, stdout, stderr = run(["eval", "--init-from", path, "--model", model, "--limit-val", str(N_IMAGES),
                              "--dump-logits", out, "--json", "--backend", "cpu"])
    if not check(rc == 0, "%s: eval --init-from exits 0" % tag):
        return None, None, stderr
    report = json.loads(stdout.strip().splitlines()[-1])
    ours = np.fromfile(out, dtype="<f4").astype(np.float64)
    if not check(ours.size == N_IMAGES * 10, "%s: %d logits dumped" % (tag, ours.size)):
        return None, None, stderr
    return torch.from_numpy(ours.reshape(N_IMAGES, 10)), report, stderr


def compare(tag, ours, ref):
    err = (ours - ref).abs().max().item() / ref.abs().max().item()
    check(bool(torch.isfinite(ours).all()) and err < MAX_REL_ERR,
          "%s: max |polytrain - torchvision float64| / max |logit| = %.3g (bound %g)" % (tag, err, MAX_REL_ERR))


def equivalence(tmp):
    images, _ = test_images()
    x = torch.from_numpy(images.astype(np.float64) / 255.0).unsqueeze(1)

    # torchvision's own 3-channel resnet18: conv1 summed for the 1-channel images
    tv = torchvision_resnet18(3, 10, seed=11)
    path = os.path.join(tmp, "tv_resnet18.safetensors")
    save(tv.state_dict(), path)
    ours, report, stderr = eval_logits(path, "resnet18_imagenet", tmp, "torchvision 3-channel")
    if ours is not None:
        check("122 tensors" in stderr and "conv1.weight summed over the file's 3 input channels" in stderr,
              "the notice says 122 tensors and conv1 summed: %s" % stderr.strip().splitlines()[0])
        mean, std = report["mean"][0], report["std"][0]
        xn = (x - mean) / std
        with torch.no_grad():
            ref = tv.double().eval()(xn.expand(-1, 3, -1, -1))
        compare("torchvision resnet18 (3-channel conv1 summed)", ours, ref)

    # a 1-channel twin saved in float64: loaded without summing, converted to float32
    tv1 = torchvision_resnet18(1, 10, seed=12)
    twin = torch_models.build("resnet18_imagenet", 1, 10)
    twin.load_state_dict(tv1.state_dict(), strict=True)  # the twin has torchvision's names
    state = {k: (v.double() if v.is_floating_point() else v) for k, v in tv1.state_dict().items()}
    path = os.path.join(tmp, "tv_resnet18_1ch_f64.safetensors")
    save(state, path)
    ours, report, stderr = eval_logits(path, "resnet18_imagenet", tmp, "1-channel F64")
    if ours is not None:
        check("F64 converted to F32" in stderr and "summed" not in stderr, "notice: %s" % stderr.strip())
        xn = (x - report["mean"][0]) / report["std"][0]
        with torch.no_grad():
            ref = tv1.double().eval()(xn)
            ref_twin = twin.double().eval()(xn)
        compare("torchvision resnet18, 1-channel conv1, F64 file", ours, ref)
        check(torch.allclose(ref, ref_twin, rtol=0, atol=1e-9),
              "tools/torch_models.py's resnet18_imagenet = torchvision's resnet18")


def start_from_a_run(tmp):
    base = os.path.join(tmp, "base")
    # 32 steps: BatchNorm's running statistics (momentum 0.1) have settled
    rc, _, _ = run(["train", "--model", "baseline", "--epochs", "1", "--limit-train", "1024", "--batch-per-device",
                    "32", "--limit-val", "256", "--out", base, "--no-progress", "--backend", "cpu"])
    if not check(rc == 0, "baseline run of 1 epoch on 1024 images exits 0"):
        return
    with open(os.path.join(base, "metrics.jsonl")) as f:
        base_top1 = [json.loads(line) for line in f if line.strip()][-1]["val_top1"]
    # best/ copied away, so that removing it later shows a resume does not read it
    init_dir = os.path.join(tmp, "init_dir")
    shutil.copytree(os.path.join(base, "best"), init_dir)

    rc, stdout, _ = run(["eval", "--init-from", init_dir, "--model", "baseline", "--limit-val", "256", "--json"])
    top1 = json.loads(stdout.strip().splitlines()[-1]).get("top1") if rc == 0 else None
    check(top1 is not None and abs(top1 - base_top1) < 1e-9,
          "eval --init-from RUN/best = the run's own validation top-1 (%s vs %.4f)" % (top1, base_top1))

    fine = os.path.join(tmp, "fine")
    rc, stdout, _ = run(["train", "--model", "baseline", "--init-from", init_dir, "--epochs", "1",
                         "--limit-train", "64", "--batch-per-device", "64", "--limit-val", "256", "--lr", "1e-9",
                         "--schedule", "constant", "--augment", "none", "--out", fine, "--no-progress",
                         "--backend", "cpu"])
    if not check(rc == 0, "train --init-from RUN/best exits 0"):
        return
    check("init: initialised from %s/model.safetensors: 26 tensors" % init_dir in stdout,
          "the banner says what was loaded")
    with open(os.path.join(fine, "metrics.jsonl")) as f:
        first = [json.loads(line) for line in f if line.strip()][0]["val_top1"]
    check(abs(first - base_top1) <= START_MARGIN and first > 3 * 0.10,
          "the new run's first evaluation starts at the run's accuracy: %.4f vs %.4f (margin %.2f, chance 0.10)"
          % (first, base_top1, START_MARGIN))
    with open(os.path.join(fine, "config.json")) as f:
        opts = json.load(f)["options"]
    check(opts.get("init-from") == init_dir and opts.get("reset-head") is False,
          "config.json records init-from %s, reset-head %s" % (opts.get("init-from"), opts.get("reset-head")))

    rc, _, stderr = run(["train", "--resume", fine, "--init-from", init_dir])
    check(rc == 2 and "drop --init-from" in stderr, "--resume with --init-from: exit 2 (%d): %s"
          % (rc, stderr.strip()))
    shutil.rmtree(init_dir)
    rc, stdout, _ = run(["train", "--resume", fine, "--epochs", "2", "--no-progress"])
    check(rc == 0 and "continues from %s/last" % fine in stdout,
          "a resume continues from last/ without reading --init-from's (removed) file")


def bad_input(tmp):
    tv = torchvision_resnet18(3, 1000, seed=13)
    state = tv.state_dict()
    r18 = os.path.join(tmp, "r18.safetensors")
    save(state, r18)
    headless = os.path.join(tmp, "headless.safetensors")
    save({k: v for k, v in state.items() if not k.startswith("fc.")}, headless)
    text = os.path.join(tmp, "notes.txt")
    with open(text, "w") as f:
        f.write("these are not weights\n" * 10)
    truncated = os.path.join(tmp, "truncated.safetensors")
    with open(r18, "rb") as f:
        blob = f.read()
    with open(truncated, "wb") as f:
        f.write(blob[:len(blob) // 2])

    # a directory holding an unfinished run: a failing start must leave it as it was
    kept = os.path.join(tmp, "kept")
    os.makedirs(kept)
    with open(os.path.join(kept, "config.json"), "w") as f:
        f.write('{"options":{}}\n')
    common = ["--epochs", "1", "--limit-train", "64", "--limit-val", "64", "--no-progress", "--backend", "cpu"]
    cases = [
        ("resnet18 weights into baseline", ["--model", "baseline", "--init-from", r18], 1,
         ["does not fit the model", "missing, as the model has them (18)", "conv2.weight [128,64,3,3]",
          "unexpected, not in the model (114)", "layer1.0.bn1.bias F32[64]",
          "conv1.weight: model [64,1,3,3], file [64,3,7,7]", "(104 more)"]),
        ("a head of 1000 classes for 10", ["--model", "resnet18_imagenet", "--init-from", r18], 1,
         ["fc.weight: model [10,512], file [1000,512]", "the head fc.* differs", "--reset-head"]),
        ("no head, no --reset-head", ["--model", "resnet18_imagenet", "--init-from", headless], 1,
         ["missing, as the model has them (2): fc.weight [10,512], fc.bias [10]", "is not in the file",
          "--reset-head"]),
        ("not a safetensors file", ["--model", "baseline", "--init-from", text], 1,
         [text, "not a readable safetensors state dict"]),
        ("a truncated file", ["--model", "baseline", "--init-from", truncated], 1,
         [truncated, "not a readable safetensors state dict"]),
        ("a file that does not exist", ["--model", "baseline", "--init-from", os.path.join(tmp, "nope")], 1,
         ["does not exist"]),
        ("--reset-head without --init-from", ["--model", "baseline", "--reset-head"], 2, ["give --init-from"]),
    ]
    for i, (what, args, code, needles) in enumerate(cases):
        for out, existed in ((os.path.join(tmp, "out%d" % i), False), (kept, True)):
            before = sorted(os.listdir(out)) if existed else None
            rc, _, stderr = run(["train"] + args + ["--out", out] + common)
            missing = [n for n in needles if n not in stderr]
            after = sorted(os.listdir(out)) if os.path.isdir(out) else None
            check(rc == code and not missing and after == before,
                  "%s (--out %s): exit %d (expected %d), message%s, --out %s" % (
                      what, "an unfinished run" if existed else "new", rc, code,
                      " lacks %s" % missing if missing else " complete",
                      "as it was" if after == before else "changed: %s" % after))
            if not existed and what.startswith("resnet18 weights"):
                print(stderr)

    # the head reset: its random init, the rest from the file
    for path, note in ((r18, "head fc.* reset (10 classes, the file has 1000)"),
                       (headless, "head fc.* reset (10 classes, not in the file)")):
        out = os.path.join(tmp, "reset")
        rc, stdout, _ = run(["train", "--model", "resnet18_imagenet", "--init-from", path, "--reset-head",
                             "--out", out, "--overwrite"] + common)
        check(rc == 0 and "120 tensors; " + note in stdout,
              "%s with --reset-head: exit %d, the banner says '%s'" % (os.path.basename(path), rc, note))


def main():
    if not os.path.exists(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")):
        print("SKIP: no Fashion-MNIST at %s" % DATA)
        return 77
    tmp = scratch_dir("init_from.")
    try:
        torch.set_num_threads(2)
        equivalence(tmp)
        start_from_a_run(tmp)
        bad_input(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
