"""What a person watching a run sees when its output goes to a file (nohup, Slurm, CI):
plain timestamped progress lines with loss, img/s and ETAs (--log-every N steps, or every
PT_LOG_INTERVAL_S seconds by default), progress lines during validation, none with
--no-progress; steps.jsonl growing a line per step while the epoch runs; and metrics.jsonl's
data wait, peak device memory, wall-clock times and an elapsed_s that keeps counting across
a resume."""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time

from ptcheck import CLI, check, finish, run_cli, scratch_dir

BASE = ["--model", "baseline", "--limit-train", "1024", "--threads", "2", "--seed", "3"]
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"
STEP_LINE = re.compile(r"^(%s)  epoch (\d+)/(\d+)  step (\d+)/(\d+)  loss (\d+\.\d+) \(batch \d+\.\d+\)  "
                       r"acc \d+\.\d+%%  (\d+) img/s  eta epoch (\S+?)( \+ validation)?, run (\S+?)"
                       r"( \+ validation)?$" % STAMP)
EVAL_LINE = re.compile(r"^%s  epoch (\d+)/(\d+)  validating (\d+)/(\d+) batches  eta \S+$" % STAMP)
EPOCH_LINE = re.compile(r"^%s  epoch (\d+)/(\d+)  train loss" % STAMP)


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run(args, env=None):
    cmd = [CLI] + args
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
                       stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        print("exit %d\n%s\n%s" % (p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    return p.returncode, p.stdout


def main():
    tmp = scratch_dir("watching.")
    try:
        # 1. --log-every 5 with stdout to a pipe: a line every 5 steps of the run (16 per epoch).
        a = os.path.join(tmp, "A")
        rc, out = run(["train", "--out", a, "--epochs", "2", "--limit-val", "256", "--log-every", "5",
                       "--no-progress"] + BASE)
        lines = out.splitlines()
        steps = [STEP_LINE.match(l) for l in lines]
        steps = [m for m in steps if m]
        got = [(int(m.group(2)), int(m.group(4))) for m in steps]
        # every 5 steps of the run: global steps 5 .. 30 of two 16-step epochs
        want = [((g - 1) // 16 + 1, (g - 1) % 16 + 1) for g in range(5, 33, 5)]
        check(rc == 0 and got == want,
              "--log-every 5 (even with --no-progress): a line every 5 steps of the run, (epoch, step) %s" % got)
        if steps:
            print("  e.g. " + steps[-1].group(0))
            first = steps[0]
            check(first.group(9) is not None and steps[-1].group(9) is None,
                  "the ETA says '+ validation' until an evaluation has been timed")
            t = datetime.datetime.strptime(first.group(1), "%Y-%m-%dT%H:%M:%S%z")
            now = datetime.datetime.now(datetime.timezone.utc)
            check(abs((now - t).total_seconds()) < 600, "the lines carry the wall-clock time (%s)" % first.group(1))
            check(all(int(m.group(7)) > 0 for m in steps), "img/s is positive on every line")
        check(sum(1 for l in lines if EPOCH_LINE.match(l)) == 2, "epoch lines are timestamped too")

        # 2. metrics.jsonl: data wait, peak memory, wall-clock times.
        m = jsonl(os.path.join(a, "metrics.jsonl"))
        ok = len(m) == 2
        for e in m:
            t0 = datetime.datetime.strptime(e.get("started_at", ""), "%Y-%m-%dT%H:%M:%SZ")
            t1 = datetime.datetime.strptime(e.get("ended_at", ""), "%Y-%m-%dT%H:%M:%SZ")
            ok &= 0 <= (t1 - t0).total_seconds() <= e["epoch_s"] + 2
            ok &= 0 <= e["data_wait_s"] <= e["train_s"]
            ok &= e["peak_device_mib"] >= e["device_mib"] > 0
        check(ok, "metrics.jsonl has started_at <= ended_at (UTC), 0 <= data_wait_s <= train_s and "
              "peak_device_mib >= device_mib > 0 (%s)" % [{k: e.get(k) for k in (
                  "started_at", "ended_at", "data_wait_s", "peak_device_mib")} for e in m])
        check(len(m) == 2 and m[1]["elapsed_s"] > m[0]["elapsed_s"] >= m[0]["train_s"],
              "elapsed_s grows over the epochs")

        # 3. The automatic lines (interval shortened): every step, and during validation.
        b = os.path.join(tmp, "B")
        rc, out = run(["train", "--out", b, "--epochs", "1", "--limit-val", "2048",
                       "--batch-per-device", "64"] + BASE, env={"PT_LOG_INTERVAL_S": "0"})
        lines = out.splitlines()
        nsteps = sum(1 for l in lines if STEP_LINE.match(l))
        evals = [EVAL_LINE.match(l) for l in lines]
        evals = [(int(e.group(3)), int(e.group(4))) for e in evals if e]
        check(rc == 0 and nsteps == 16, "without --log-every, stdout not a terminal: automatic lines (%d)" % nsteps)
        check(evals and evals[0] == (1, 32) and evals[-1][0] == 31 and evals[-1][1] == 32,
              "progress lines during validation, batch 1 to 31 of 32 (%s ... %s)"
              % (evals[:1], evals[-1:]))
        rc, out = run(["train", "--out", b, "--overwrite", "--epochs", "1", "--limit-val", "256",
                       "--no-progress"] + BASE, env={"PT_LOG_INTERVAL_S": "0"})
        check(rc == 0 and not any(STEP_LINE.match(l) or EVAL_LINE.match(l) for l in out.splitlines()),
              "--no-progress: no automatic lines")

        # 4. steps.jsonl grows a line per step while the epoch runs (not at its end), and
        # elapsed_s keeps counting across a stop and resume.
        c = os.path.join(tmp, "C")
        cmd = [CLI, "train", "--out", c, "--epochs", "2", "--limit-val", "256", "--log-steps",
               "--stop-after-epoch", "1", "--no-progress"] + BASE
        print("$ " + " ".join(cmd), flush=True)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        seen = []
        deadline = time.monotonic() + 300
        while p.poll() is None and time.monotonic() < deadline:
            try:
                with open(os.path.join(c, "steps.jsonl")) as f:
                    text = f.read()
                with open(os.path.join(c, "metrics.jsonl")) as f:
                    epochs = f.read().count("\n")
            except OSError:
                text, epochs = "", 0
            if epochs == 0 and text:
                seen.append(text.count("\n"))
                complete = text.endswith("\n") and all(json.loads(l) for l in text.splitlines())
                if not complete:
                    seen.append(-1)
            time.sleep(0.02)
        rc = p.wait(timeout=300)
        growing = sorted(set(x for x in seen if x > 0))
        check(rc == 0 and -1 not in seen and len(growing) >= 3 and growing[0] < 16,
              "steps.jsonl is written a whole line at a time during epoch 1 (line counts seen %s)"
              % growing[:8])
        time.sleep(1.1)
        rc, _ = run(["train", "--resume", c])
        m = jsonl(os.path.join(c, "metrics.jsonl"))
        check(rc == 0 and len(m) == 2 and m[1]["elapsed_s"] >= m[0]["elapsed_s"] + m[1]["train_s"] - 0.01,
              "after a resume elapsed_s continues from the first run's (%s)" % [e.get("elapsed_s") for e in m])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
