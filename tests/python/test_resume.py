"""Resuming a run gives bitwise the same weights, BatchNorm buffers, optimizer state and
epoch-2 metrics as running it in one go (--deterministic), after a clean stop
(--stop-after-epoch 1) and after a kill -9 during epoch 2; and the same stop and resume
with RMSprop (momentum, centered). Mid-epoch: a kill -9 part way through epoch 1 with
--save-every-steps, and Ctrl-C (SIGINT) part way through an fp16 epoch, resume bitwise too,
epoch 1's metrics included. Needs no torch or numpy: tensors are compared as raw bytes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from ptcheck import CLI, check, finish, run_cli, scratch_dir
import torch_models  # noqa: E402  (its safetensors reader works without torch)

TIMEOUT_S = 600
LIMIT_TRAIN = 1024
BATCH = 64
# Metrics that depend on the data and the arithmetic only, not on the clock.
EXACT_METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "lr")
# Every run trains 2 epochs with the default onecycle schedule. --resume takes the run's
# options from DIR/config.json; repeating them on its command line changes nothing.
OPTIONS = ["--epochs", "2", "--deterministic", "--limit-train", str(LIMIT_TRAIN),
           "--limit-val", "256", "--seed", "5", "--no-progress", "--log-steps"]

def completed_epochs(run_dir):
    """Complete lines of run_dir/metrics.jsonl (0 while it does not exist)."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def compare_files(a, b, what):
    """Same tensor names, dtypes, shapes and bytes; same metadata. Reports the first few
    differences by name."""
    ta, ma = torch_models.read_safetensors_raw(a)
    tb, mb = torch_models.read_safetensors_raw(b)
    ok = check(set(ta) == set(tb), "%s: same tensor names (%d)" % (what, len(ta)))
    if not ok:
        print("  only in A: %s\n  only in B: %s" % (sorted(set(ta) - set(tb))[:10],
                                                   sorted(set(tb) - set(ta))[:10]))
    differ = [n for n in sorted(set(ta) & set(tb)) if ta[n] != tb[n]]
    check(not differ and len(ta) > 0,
          "%s: all %d tensors bitwise equal" % (what, len(set(ta) & set(tb))))
    for n in differ[:10]:
        print("  differs: %s %r vs %r" % (n, ta[n], tb[n]))
    # elapsed_s is the run's training time when it was saved: a clock, not a result; run_id
    # names each run; the epoch's records (its metrics.jsonl line) by their exact fields
    def results(m):
        m = dict(m)
        m.pop("elapsed_s", None)
        m.pop("run_id", None)
        m.pop("epoch_record_csv", None)
        if "epoch_record_jsonl" in m:
            rec = json.loads(m["epoch_record_jsonl"])
            m["epoch_record_jsonl"] = {k: rec.get(k) for k in EXACT_METRICS}
        return m
    ra, rb = results(ma), results(mb)
    meta_differ = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
    check(not meta_differ, "%s: same metadata" % what)
    for k in meta_differ[:10]:
        print("  metadata %s: %r vs %r" % (k, ma.get(k), mb.get(k)))


def compare_runs(a, b, what, epochs_exact=1):
    """epochs_exact: the last epochs whose metrics must be equal (2 when the resumed run
    continued epoch 1 from a mid-epoch checkpoint)."""
    for name in ("model.safetensors", "optimizer.safetensors"):
        compare_files(os.path.join(a, "last", name), os.path.join(b, "last", name),
                      "%s last/%s" % (what, name))
    ma, mb = metrics(a), metrics(b)
    check(len(ma) == 2 and len(mb) == 2,
          "%s: metrics.jsonl has 2 epochs in both runs (%d, %d)" % (what, len(ma), len(mb)))
    if ma and mb:
        for ea, eb in zip(ma[2 - epochs_exact:], mb[2 - epochs_exact:]):
            differ = [k for k in EXACT_METRICS if ea.get(k) != eb.get(k)]
            check(not differ, "%s: epoch-%s metrics equal (%s)" % (what, ea.get("epoch"), ", ".join(
                "%s=%s" % (k, ea.get(k)) for k in EXACT_METRICS[1:5])))
            for k in differ:
                print("  %s: %r vs %r" % (k, ea.get(k), eb.get(k)))
    # Every step's loss and LR, including those replayed after a kill (trimmed on resume).
    sa, sb = step_log(a), step_log(b)
    steps = 2 * ((LIMIT_TRAIN + BATCH - 1) // BATCH)
    check(len(sa) == steps and sa == sb,
          "%s: steps.jsonl has the same %d steps, losses and LRs in both runs (%d, %d lines)"
          % (what, steps, len(sa), len(sb)))


def step_log(run_dir):
    try:
        with open(os.path.join(run_dir, "steps.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def bn_steps(run_dir):
    """bn1.num_batches_tracked of run_dir/last, or None while no complete file is there."""
    try:
        t, _ = torch_models.read_safetensors_raw(
            os.path.join(run_dir, "last", "model.safetensors"))
        torch_models.read_safetensors_raw(os.path.join(run_dir, "last", "optimizer.safetensors"))
        return int.from_bytes(t["bn1.num_batches_tracked"].data, "little", signed=True)
    except (OSError, KeyError, torch_models.SafetensorsError):
        return None


def kill_after_first_epoch(args, run_dir):
    """Starts `train args` and kills it with SIGKILL once the epoch-1 checkpoint is complete
    and epoch 2 has not been saved yet. Returns True when that moment was caught."""
    steps_epoch1 = (LIMIT_TRAIN + BATCH - 1) // BATCH
    cmd = [CLI] + args
    print("$ " + " ".join(cmd) + "   (killed during epoch 2)", flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT_S
    caught = False
    try:
        while p.poll() is None and time.monotonic() < deadline:
            if completed_epochs(run_dir) >= 1:
                # Freeze it, then look: the files read are then not being written.
                p.send_signal(signal.SIGSTOP)
                steps = bn_steps(run_dir)
                if steps == steps_epoch1:
                    caught = True
                    break
                if steps is not None and steps > steps_epoch1:
                    break  # too late: epoch 2 already saved
                p.send_signal(signal.SIGCONT)
            time.sleep(0.02)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stderr.close()
    return caught


def steps_per_epoch():
    return (LIMIT_TRAIN + BATCH - 1) // BATCH


def stop_mid_epoch(args, run_dir, after_steps, sig):
    """Starts `train args`, sends sig once steps.jsonl has after_steps lines (the run is then
    part way through epoch 1) and waits for it. Returns (caught, exit code, stderr)."""
    cmd = [CLI] + args
    print("$ " + " ".join(cmd) + "   (signal %d after %d steps)" % (sig, after_steps), flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT_S
    caught = False
    try:
        while p.poll() is None and time.monotonic() < deadline:
            if len(step_log(run_dir)) >= after_steps and completed_epochs(run_dir) == 0:
                p.send_signal(sig)
                caught = True
                break
            time.sleep(0.01)
        rc = p.wait(timeout=TIMEOUT_S)
        err = p.stderr.read().decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    return caught, rc, err


def main():
    tmp = scratch_dir("resume.")
    try:
        opts = OPTIONS
        a, b, c = (os.path.join(tmp, n) for n in ("A", "B", "C"))
        ok_a = check(run_cli(["train", "--out", a] + opts)[0] == 0, "train 2 epochs in one go")

        # 1. A clean stop after epoch 1, then resume.
        ok = check(run_cli(["train", "--out", b, "--stop-after-epoch", "1"] + opts)[0] == 0,
                   "train with --stop-after-epoch 1")
        ok &= check(completed_epochs(b) == 1, "it stops after 1 epoch (%d in metrics.jsonl)"
                    % completed_epochs(b))
        ok &= check(run_cli(["train", "--resume", b] + opts)[0] == 0, "resume it")
        if ok and ok_a:
            compare_runs(a, b, "stop + resume")

        # 2. Killed with SIGKILL during epoch 2, then resumed.
        caught = False
        for attempt in range(3):
            shutil.rmtree(c, ignore_errors=True)
            caught = kill_after_first_epoch(["train", "--out", c] + opts, c)
            if caught:
                break
        ok = check(caught, "killed between the epoch-1 and epoch-2 checkpoints")
        ok &= check(run_cli(["train", "--resume", c] + opts)[0] == 0, "resume after kill -9")
        if ok and ok_a:
            compare_runs(a, c, "kill -9 + resume")

        # 2b. Killed with SIGKILL part way through epoch 1 of a run saving every 3 steps:
        # last/ holds step 9 or later, and the resumed run continues that epoch bitwise.
        caught = False
        h = os.path.join(tmp, "H")
        for attempt in range(3):
            shutil.rmtree(h, ignore_errors=True)
            caught, rc, _ = stop_mid_epoch(["train", "--out", h, "--save-every-steps", "3"] + opts, h, 11,
                                           signal.SIGKILL)
            _, meta = (torch_models.read_safetensors_raw(os.path.join(h, "last", "optimizer.safetensors"))
                       if os.path.exists(os.path.join(h, "last")) else ({}, {}))
            if caught and 0 < int(meta.get("epoch_step", 0)) < steps_per_epoch():
                break
            caught = False
        ok = check(caught, "killed part way through epoch 1 after a mid-epoch checkpoint (last/ at epoch_step %s, "
                   "global_step %s)" % (meta.get("epoch_step"), meta.get("global_step")))
        rc, out = run_cli(["train", "--resume", h] + opts)
        ok &= check(rc == 0 and "resuming at step %s of %d in epoch 1" % (meta.get("epoch_step"), steps_per_epoch())
                    in out, "resume after kill -9 says where it continues")
        if ok and ok_a:
            compare_runs(a, h, "mid-epoch kill -9 + resume", epochs_exact=2)
            m = metrics(h)
            check(m and m[0].get("resumed_mid_epoch") is True and "resumed_mid_epoch" not in m[1],
                  "metrics.jsonl marks epoch 1 as resumed part way")

        # 3. RMSprop with momentum (cycled by onecycle) and centered: three state tensors per
        # parameter survive a stop and resume bitwise.
        rms = opts + ["--optimizer", "rmsprop", "--momentum", "0.9", "--centered", "--lr", "1e-3"]
        d, e = os.path.join(tmp, "D"), os.path.join(tmp, "E")
        ok_d = check(run_cli(["train", "--out", d] + rms)[0] == 0, "rmsprop: train 2 epochs in one go")
        ok = check(run_cli(["train", "--out", e, "--stop-after-epoch", "1"] + rms)[0] == 0,
                   "rmsprop: train with --stop-after-epoch 1")
        ok &= check(run_cli(["train", "--resume", e] + rms)[0] == 0, "rmsprop: resume it")
        if ok and ok_d:
            names, _ = torch_models.read_safetensors_raw(os.path.join(e, "last", "optimizer.safetensors"))
            check(any(n.endswith(".square_avg") for n in names) and any(n.endswith(".grad_avg") for n in names)
                  and any(n.endswith(".momentum_buffer") for n in names),
                  "rmsprop: optimizer.safetensors holds square_avg, momentum_buffer and grad_avg")
            compare_runs(d, e, "rmsprop stop + resume")

        # 4. fp16 with Adam and dynamic loss scaling, from 2^24 so that the first steps
        # overflow and are skipped (Adam's bias correction counts only the updates made), and
        # growing after 5 clean steps: the scale, its counter and the skipped steps are saved
        # in optimizer.safetensors and the stopped run continues bitwise.
        os.environ["PT_LOSS_SCALE_INIT"] = "16777216"
        os.environ["PT_LOSS_SCALE_INTERVAL"] = "5"
        try:
            f16 = opts + ["--precision", "fp16", "--optimizer", "adam", "--lr", "1e-3"]
            f, g = os.path.join(tmp, "F"), os.path.join(tmp, "G")
            ok_f = check(run_cli(["train", "--out", f] + f16)[0] == 0, "fp16: train 2 epochs in one go")
            ok = check(run_cli(["train", "--out", g, "--stop-after-epoch", "1"] + f16)[0] == 0,
                       "fp16: train with --stop-after-epoch 1")
            ok &= check(run_cli(["train", "--resume", g] + f16)[0] == 0, "fp16: resume it")
            if ok and ok_f:
                compare_runs(f, g, "fp16 stop + resume")
                m = metrics(f)
                steps = step_log(f)
                skipped = [s["step"] for s in steps if s.get("skipped")]
                check(len(m) == 2 and m[0].get("precision") == "fp16" and m[0].get("skipped_steps", 0) >= 1
                      and m[0]["skipped_steps"] == len([s for s in skipped if s < len(steps) // 2])
                      and len(m[0].get("loss_scale_history", [])) >= 2,
                      "fp16: metrics.jsonl records the precision, skipped steps (%s) and the loss-scale "
                      "history %s" % (m[0].get("skipped_steps") if m else None,
                                      m[0].get("loss_scale_history")[:6] if m else None))
                scales = [s["loss_scale"] for s in steps]
                grew = any(b > a for a, b in zip(scales, scales[1:]))
                check(skipped and skipped[0] == 0 and scales[0] == 16777216 and min(scales) < scales[0] and grew,
                      "fp16: steps.jsonl shows the scale halved on overflow and grown after clean steps "
                      "(first %s, min %s, last %s; skipped %s)" % (scales[0], min(scales), scales[-1], skipped[:8]))
                _, meta = torch_models.read_safetensors_raw(os.path.join(f, "last", "optimizer.safetensors"))
                check(meta.get("precision") == "fp16" and float(meta.get("loss_scale", 0)) > 0
                      and int(meta.get("skipped_steps", -1)) == len(skipped),
                      "fp16: optimizer.safetensors holds the loss scale (%s) and the skipped steps (%s)"
                      % (meta.get("loss_scale"), meta.get("skipped_steps")))
            # Ctrl-C part way through epoch 1 of the fp16 run: last/ is saved at that step with
            # the epoch's loss-scale record so far, the message says so, and the resumed run
            # ends as the straight one, epoch 1's skipped steps and scale history included.
            i = os.path.join(tmp, "I")
            caught, rc, err = stop_mid_epoch(["train", "--out", i] + f16, i, 7, signal.SIGINT)
            _, meta = (torch_models.read_safetensors_raw(os.path.join(i, "last", "optimizer.safetensors"))
                       if os.path.exists(os.path.join(i, "last")) else ({}, {}))
            at = int(meta.get("epoch_step", 0))
            ok = check(caught and rc == 130 and 0 < at < steps_per_epoch() and
                       ("interrupted at step %d of %d in epoch 1" % (at, steps_per_epoch())) in err and
                       "saved there" in err and "--resume" in err,
                       "fp16: Ctrl-C part way through epoch 1 saves last/ there and says so (exit %s, step %d): %s"
                       % (rc, at, err.strip().splitlines()[-1] if err.strip() else ""))
            ok &= check(run_cli(["train", "--resume", i] + f16)[0] == 0, "fp16: resume after Ctrl-C")
            if ok and ok_f:
                compare_runs(f, i, "fp16 Ctrl-C mid-epoch + resume", epochs_exact=2)
                mf, mi = metrics(f), metrics(i)
                keys = ("skipped_steps", "loss_scale", "loss_scale_min", "loss_scale_history")
                check(mf and mi and all(mf[0].get(k) == mi[0].get(k) for k in keys),
                      "fp16: epoch 1's loss-scale record is the straight run's (%s)"
                      % {k: mi[0].get(k) for k in keys[:3]} if mi else "")
        finally:
            del os.environ["PT_LOSS_SCALE_INIT"], os.environ["PT_LOSS_SCALE_INTERVAL"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
