"""tools/torch_epoch.py runs PyTorch's epoch on a tree `polytrain synth` wrote: a few steps on
the cpu with DataLoader workers, then with bf16 autocast and channels-last, each writing the
per-epoch JSON (wall seconds, img/s, data wait, val top-1; no GPU memory on the cpu); a
missing torchvision and a directory that is not a TinyImageNet tree are exit 2 with the
reason. Exit 77 when torch or torchvision is missing."""

import json
import os
import shutil
import subprocess
import sys

try:
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError as e:
    print("SKIP: %s (Debian packages python3-torch, python3-torchvision)" % e)
    sys.exit(77)

from ptcheck import TOOLS, check, finish, run_cli, scratch_dir  # noqa: E402

SCRIPT = os.path.join(TOOLS, "torch_epoch.py")
CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 12, 4


def run_script(args, prelude=""):
    """Runs torch_epoch.py (after prelude, Python run first in the same process); returns
    (exit code, stdout + stderr)."""
    code = ("import runpy, sys\n%s\nsys.argv = [%r] + %r\nrunpy.run_path(%r, run_name='__main__')\n"
            % (prelude, SCRIPT, list(args), SCRIPT))
    print("$ torch_epoch.py " + " ".join(args), flush=True)
    p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600, stdin=subprocess.DEVNULL)
    if p.returncode not in (0, 2):
        print(p.stdout[-3000:], flush=True)
    return p.returncode, p.stdout


def check_result(path, what, steps, val_images):
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        check(False, "%s: JSON %s readable (%s)" % (what, path, e))
        return
    check(res.get("classes") == CLASSES and res.get("train_images") == CLASSES * TRAIN_PER_CLASS
          and res.get("val_images") == CLASSES * VAL_PER_CLASS,
          "%s: sees %d classes, %d train and %d val images" % (what, CLASSES, CLASSES * TRAIN_PER_CLASS,
                                                               CLASSES * VAL_PER_CLASS))
    ep = res.get("epochs") or [{}]
    e = ep[-1]
    check(len(ep) == 1 and e.get("steps") == steps, "%s: one epoch of %d steps (got %s)" % (what, steps, e.get("steps")))
    check(all(isinstance(e.get(k), float) and e[k] >= 0 for k in ("wall_s", "train_img_per_s", "data_wait_s")),
          "%s: wall seconds, img/s and data wait reported" % what)
    check(isinstance(e.get("val_top1"), float) and 0.0 <= e["val_top1"] <= 1.0 and e.get("val_images") == val_images,
          "%s: val top-1 %s over %s images" % (what, e.get("val_top1"), e.get("val_images")))
    check("peak_gpu_mem_bytes" in e and e["peak_gpu_mem_bytes"] is None, "%s: no GPU memory on the cpu" % what)


def main():
    tmp = scratch_dir("torchepoch.")
    try:
        tree = os.path.join(tmp, "tree")
        rc, _ = run_cli(["synth", "--out", tree, "--classes", str(CLASSES), "--train-per-class",
                         str(TRAIN_PER_CLASS), "--val-per-class", str(VAL_PER_CLASS), "--size", "32",
                         "--threads", "2", "--no-progress"])
        if not check(rc == 0, "synth writes a small tree"):
            return finish()
        quick = ["--data", tree, "--device", "cpu", "--epochs", "1", "--batch", "8", "--threads", "2"]

        out_json = os.path.join(tmp, "workers.json")
        rc, out = run_script(quick + ["--workers", "2", "--max-steps", "3", "--json", out_json])
        check(rc == 0 and "epoch 1/1" in out and "data wait" in out,
              "two DataLoader workers, 3 steps: exit %d and an epoch line" % rc)
        check_result(out_json, "workers", 3, CLASSES * VAL_PER_CLASS)

        out_json = os.path.join(tmp, "bf16.json")
        rc, out = run_script(quick + ["--workers", "0", "--max-steps", "2", "--max-val-steps", "1",
                                      "--amp", "bf16", "--channels-last", "--json", out_json])
        check(rc == 0 and "amp bf16, channels-last" in out, "bf16 autocast, channels-last: exit %d" % rc)
        check_result(out_json, "bf16", 2, 8)

        rc, out = run_script(quick + ["--amp", "fp16"])
        check(rc == 2 and "--amp fp16 needs --device cuda" in out, "fp16 on the cpu refused: exit %d" % rc)
        rc, out = run_script(["--data", tmp, "--device", "cpu"])
        check(rc == 2 and "not a TinyImageNet-layout tree" in out, "a non-tree directory refused: exit %d" % rc)
        rc, out = run_script(quick, prelude="sys.modules['torchvision'] = None")
        check(rc == 2 and "torchvision is not importable" in out and "python3-torchvision" in out,
              "missing torchvision: exit %d, says so" % rc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
