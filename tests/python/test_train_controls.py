"""Controls of a training run checked end to end on cpu:
- --accumulate 2: one plain-SGD step over two micro-batches of 32 (the loader's order,
  computed here with the same Philox stream) equals PyTorch's float64 autograd accumulating
  the same two micro-batches (BatchNorm statistics per micro-batch, running statistics
  updated twice), and its effective batch shows in the banner;
- --ema 0.8: after each of three steps (one per epoch, a resume between), RUN/ema holds
  the float64 EMA of the weights and BatchNorm buffers (AveragedModel with
  ema = 0.8 ema + 0.2 w, the first update a copy), last/ carries it for the resume, and
  metrics.jsonl's ema_val_top1 is eval's on RUN/ema;
- --clip-grad-norm: one plain-SGD step equals PyTorch's float64 autograd step with
  torch.nn.utils.clip_grad_norm_ applied (the update is -lr x clip_coef x g), and the norm
  logged in steps.jsonl is PyTorch's;
- --patience/--min-delta: a run whose val top-1 cannot rise by more than min_delta stops
  after patience epochs, says why, records the reason in metrics.jsonl and in the checkpoint,
  and --resume refuses to continue it;
- --config: a run repeated from its own config.json computes the same metrics; unknown keys,
  bad values and --config with --resume are refused before anything is written.
Exit 77 when torch or numpy is missing."""

import json
import os
import shutil
import sys

try:
    import numpy as np  # noqa: F401
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print("SKIP: %s (Debian packages python3-torch, python3-numpy)" % e)
    sys.exit(77)

from ptcheck import CLI, check, finish, run_cli, scratch_dir  # noqa: E402
from cli_steps import STEP_OPTIONS, epoch_order, rel, two_steps  # noqa: E402
import subprocess  # noqa: E402
import torch_models  # noqa: E402

LR = 1.0
MAX_NORM = 0.5
QUICK = ["--model", "baseline", "--limit-train", "256", "--limit-val", "64", "--threads", "2", "--no-progress"]


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_err(args):
    p = subprocess.run([CLI] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def float64_model(meta, weights):
    """The baseline twin with these weights, in float64 and training mode."""
    model = torch_models.build("baseline", int(meta["in_channels"]), int(meta["num_classes"]))
    model.load_state_dict(weights, strict=True)
    return model.double().train()


def clipping(tmp):
    got = two_steps("baseline", 64, tmp, LR, ["--clip-grad-norm", str(MAX_NORM), "--log-steps"], "clipped step")
    if got is None:
        return
    w1, w2, meta, x, y = got
    model = float64_model(meta, w1)
    loss = F.cross_entropy(model(x.double()), y)
    model.zero_grad()
    loss.backward()
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
    coef = min(1.0, MAX_NORM / (float(total) + 1e-6))
    check(coef < 0.5, "the step is clipped hard (norm %.4g, coefficient %.4g)" % (float(total), coef))
    worst = 0.0
    for name, p in model.named_parameters():
        ours = (w2[name].double() - w1[name].double()).numpy()
        ref = (-LR * p.grad).detach().numpy()  # p.grad is clipped already
        worst = max(worst, rel(ours, ref))
    # float32 against float64 autograd: the unclipped step of this model agrees within 1e-2
    # (test_torch_gradients); an unclipped update would be off by 1 - coef (> 50%)
    check(worst < 2e-2, "clipped SGD step equals PyTorch's clip_grad_norm_ step (worst normalised error %.3g)"
          % worst)
    steps = jsonl(os.path.join(tmp, "baseline", "steps.jsonl"))
    logged = steps[-1].get("grad_norm") if steps else None
    check(logged is not None and abs(logged - float(total)) <= 1e-3 * float(total),
          "steps.jsonl's grad_norm of the step is PyTorch's norm before clipping (%s vs %.6g)"
          % (logged, float(total)))
    m = jsonl(os.path.join(tmp, "baseline", "metrics.jsonl"))
    check(m and m[-1].get("clipped_steps") == 1 and m[-1].get("grad_norm_mean", 0) > MAX_NORM,
          "metrics.jsonl counts the clipped step (%s)" % {k: m[-1].get(k) for k in ("clipped_steps", "grad_norm_mean")}
          if m else "")


def accumulation(tmp):
    out = os.path.join(tmp, "acc")
    os.makedirs(out)
    got = two_steps("baseline", 64, out, LR, ["--accumulate", "2"], "accumulated step", batch=32)
    if got is None:
        return
    w1, w2, meta, x, y = got
    model = float64_model(meta, w1)
    order = epoch_order(11, 1, 64)  # step 2 is epoch 2's (0-based 1) only step
    model.zero_grad()
    for part in (order[:32], order[32:]):
        idx = torch.tensor(part)
        # each micro-batch's summed loss over the step's 64 samples: the step's mean loss
        loss = F.cross_entropy(model(x[idx].double()), y[idx], reduction="sum") / 64.0
        loss.backward()
    worst = 0.0
    for name, p in model.named_parameters():
        worst = max(worst, rel((w2[name].double() - w1[name].double()).numpy(), (-LR * p.grad).detach().numpy()))
    # as the unaccumulated step (test_torch_gradients: within ~1e-2 of float64); a step on
    # one micro-batch only, or one batch of 64, is off by far more (checked below)
    check(worst < 2e-2, "accumulated SGD step (2 x 32) equals PyTorch's accumulation (worst normalised error %.3g)"
          % worst)
    single = float64_model(meta, w1)
    F.cross_entropy(single(x.double()), y).backward()
    whole = max(rel((w2[n].double() - w1[n].double()).numpy(), (-LR * p.grad).detach().numpy())
                for n, p in single.named_parameters())
    check(whole > 5 * max(worst, 1e-4), "and differs from one batch of 64 (BatchNorm sees 32 at a time): %.3g"
          % whole)
    stats = max(rel(w2[n].double().numpy(), b.detach().numpy()) for n, b in model.named_buffers()
                if not n.endswith("num_batches_tracked"))
    nbt = int(w2["bn1.num_batches_tracked"].item())
    check(stats < 1e-5 and nbt == 4, "running statistics updated once per micro-batch (error %.3g, "
          "num_batches_tracked %d)" % (stats, nbt))


def weight_ema(tmp):
    out = os.path.join(tmp, "ema")
    common = ["--model", "baseline", "--limit-train", "64", "--limit-val", "64", "--batch-per-device", "64",
              "--lr", "0.5", "--ema", "0.8"] + STEP_OPTIONS
    ref, ok = None, True
    for epochs in (1, 2, 3):
        args = ["train", "--epochs", str(epochs)] + (["--out", out] + common if epochs == 1 else
                                                     ["--resume", out, "--no-progress"])
        ok &= check(run_cli(args)[0] == 0, "--ema 0.8: epoch %d trains" % epochs)
        if not ok:
            return
        w, _ = torch_models.load_safetensors(os.path.join(out, "last", "model.safetensors"))
        e, _ = torch_models.load_safetensors(os.path.join(out, "ema", "model.safetensors"))
        names = [n for n in w if not n.endswith("num_batches_tracked")]
        if ref is None:
            ref = {n: w[n].double() for n in names}  # the first update copies
        else:
            ref = {n: 0.8 * ref[n] + 0.2 * w[n].double() for n in names}
        worst = max(rel(e[n].double().numpy(), ref[n].numpy()) for n in names)
        moved = max(rel(e[n].double().numpy(), w[n].double().numpy()) for n in names)
        check(worst < 1e-6 and (epochs == 1 or moved > 1e-3),
              "after step %d RUN/ema is the EMA of the weights and buffers (worst normalised error %.3g; "
              "%.3g from the live weights)" % (epochs, worst, moved))
    held, _ = torch_models.read_safetensors_raw(os.path.join(out, "last", "optimizer.safetensors"))
    raw, _ = torch_models.read_safetensors_raw(os.path.join(out, "ema", "model.safetensors"))
    same = [n for n in names if held.get("ema." + n) == raw.get(n)]
    check(len(same) == len(names), "last/optimizer.safetensors carries the EMA bit for bit for the resume (%d of %d)"
          % (len(same), len(names)))
    m = jsonl(os.path.join(out, "metrics.jsonl"))
    rc, stdout = run_cli(["eval", "--checkpoint", os.path.join(out, "ema"), "--json"])
    top1 = json.loads(stdout.strip().splitlines()[-1]).get("top1") if rc == 0 else None
    check(m and top1 is not None and abs(m[-1].get("ema_val_top1", -1) - top1) < 1e-6,
          "metrics.jsonl's ema_val_top1 (%s) is eval's top-1 on RUN/ema (%s)" % (m[-1].get("ema_val_top1"), top1))


def early_stopping(tmp):
    out = os.path.join(tmp, "es")
    # val top-1 is in [0, 1]: no epoch can beat the first by more than --min-delta 1
    rc, stdout = run_cli(["train", "--out", out, "--epochs", "5", "--patience", "2", "--min-delta", "1"] + QUICK)
    m = jsonl(os.path.join(out, "metrics.jsonl")) if rc == 0 else []
    check(rc == 0 and len(m) == 3 and [e.get("epochs_without_improvement") for e in m] == [0, 1, 2],
          "--patience 2: epoch 1 sets the best, epochs 2 and 3 do not beat it by 1, the run stops after epoch 3 "
          "(%s)" % [e.get("epochs_without_improvement") for e in m])
    reason = m[-1].get("stop_reason", "") if m else ""
    check("early stopping" in reason and "for 2 epochs" in reason and "stop_reason" not in m[0],
          "the last epoch records the stop reason: %r" % reason)
    check("stopped before --epochs 5: early stopping" in stdout, "train says why it stopped")
    _, meta = torch_models.read_safetensors_raw(os.path.join(out, "last", "optimizer.safetensors"))
    check(meta.get("stop_reason") == reason and meta.get("early_stop_wait") == "2",
          "the checkpoint keeps the reason and the count (%s)" % meta.get("early_stop_wait"))
    rc, _, err = run_err(["train", "--resume", out])
    check(rc == 1 and "stopped early after epoch 3" in err and "--allow-changes" in err,
          "--resume refuses a run that stopped early: %s" % err.strip().splitlines()[-1:])


def config_file(tmp):
    a, b = os.path.join(tmp, "cfg_a"), os.path.join(tmp, "cfg_b")
    ok = run_cli(["train", "--out", a, "--epochs", "1", "--lr", "0.05", "--augment", "none", "--seed", "7"]
                 + QUICK)[0] == 0
    rc, _ = run_cli(["train", "--config", os.path.join(a, "config.json"), "--out", b])
    ok &= check(rc == 0, "train --config RUN/config.json --out NEW repeats the run")
    if ok:
        ma, mb = jsonl(os.path.join(a, "metrics.jsonl")), jsonl(os.path.join(b, "metrics.jsonl"))
        keys = ("train_loss", "train_acc", "val_loss", "val_top1")
        check([{k: e[k] for k in keys} for e in ma] == [{k: e[k] for k in keys} for e in mb],
              "the repeated run computes the same metrics (%s)" % [e["val_loss"] for e in mb])
        with open(os.path.join(b, "config.json")) as f:
            opts = json.load(f)["options"]
        check(opts.get("lr") == 0.05 and opts.get("seed") == 7 and opts.get("augment") == "none"
              and opts.get("out") == b, "its config.json has the file's options and its own --out")
    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as f:
        json.dump({"lr": 0.1, "learning_rate": 3, "epochz": 1}, f)
    c = os.path.join(tmp, "cfg_c")
    rc, _, err = run_err(["train", "--config", bad, "--out", c])
    check(rc == 2 and "unknown keys 'learning_rate', 'epochz'" in err and not os.path.exists(c),
          "unknown keys are refused, by name, nothing written: %s" % err.strip())
    with open(bad, "w") as f:
        json.dump({"options": {"lr": "fast"}}, f)
    rc, _, err = run_err(["train", "--config", bad, "--out", c])
    check(rc == 2 and "--lr" in err and bad in err and not os.path.exists(c),
          "a bad value is refused naming the option and the file: %s" % err.strip().replace("\n", " | "))
    rc, _, err = run_err(["train", "--config", os.path.join(a, "config.json"), "--resume", a])
    check(rc == 2 and "--config with --resume" in err, "--config with --resume is refused: %s" % err.strip())
    rc, _, err = run_err(["train", "--config", os.path.join(tmp, "none.json"), "--out", c])
    check(rc == 1 and "none.json" in err and not os.path.exists(c), "a missing file is named: %s" % err.strip())


def bad_values(tmp):
    out = os.path.join(tmp, "bad")
    for args, want in ((["--accumulate", "0"], "--accumulate"), (["--ema", "1.5"], "--ema"),
                       (["--ema", "1"], "--ema expects a decay below 1"), (["--clip-grad-norm", "-1"], "--clip-grad-norm"),
                       (["--patience", "-1"], "--patience"), (["--min-delta", "2"], "--min-delta")):
        rc, _, err = run_err(["train", "--out", out] + args)
        check(rc == 2 and want in err and not os.path.exists(out),
              "%s: refused, nothing written: %s" % (" ".join(args), err.strip()))


def main():
    tmp = scratch_dir("train_controls.")
    try:
        accumulation(tmp)
        weight_ema(tmp)
        clipping(tmp)
        early_stopping(tmp)
        config_file(tmp)
        bad_values(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
