"""polytrain train --trace: the Chrome/Perfetto timeline of one step. Two cpu devices train a
few steps; the file must be valid Trace Event Format JSON with a track per device and one for
the communication thread, every op of the step's forward, backward and update lists on each
device, every gradient bucket reduced after the backward op that completes it has begun, no
negative duration, and the asked step (checked against steps.jsonl). Once through the
backend's collectives with the default step, once through host memory with sync-BN and fp16
loss scaling at --trace-step. A path that cannot be written is refused before training."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptcheck import CLI, check, finish, run_cli, scratch_dir  # noqa: E402

# 8 steps of 2 x 16 samples: seconds on two cores.
COMMON = ["--backend", "cpu", "--devices", "2", "--epochs", "1", "--limit-train", "256", "--limit-val", "32",
          "--batch-per-device", "16", "--seed", "3", "--no-progress", "--log-steps"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        check(False, "%s is valid JSON (%s)" % (path, e))
        return None


def step_lr(run_dir, step):
    with open(os.path.join(run_dir, "steps.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("step") == step:
                return rec.get("lr")
    return None


def check_trace(tag, doc, run_dir, want_step, transport, want_bn):
    events = doc.get("traceEvents")
    other = doc.get("otherData", {})
    check(isinstance(events, list) and doc.get("displayTimeUnit") == "ms", tag + ": traceEvents and displayTimeUnit")
    if not isinstance(events, list):
        return
    check(other.get("ops_synchronised") is True, tag + ": otherData says the ops were synchronised")
    check(other.get("dropped_events") == 0, tag + ": no event dropped")
    check(other.get("step") == want_step, tag + ": the traced step is %d (got %r)" % (want_step, other.get("step")))
    lr = step_lr(run_dir, want_step)
    check(lr is not None and abs(other.get("lr", -1) - lr) <= 1e-6 * max(1.0, abs(lr)),
          tag + ": its learning rate %r is that of step %d in steps.jsonl (%r)" % (other.get("lr"), want_step, lr))

    names = {e["tid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
    check(0 in names and 1 in names and 2 in names and "communication" in names.get(2, ""),
          tag + ": tracks named for device 0, device 1 and the communication thread: %r" % names)
    spans = [e for e in events if e.get("ph") == "X"]
    check(all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans), tag + ": every ts and dur is non-negative")

    counts = other.get("ops", {})
    ops = {}
    for d in (0, 1):
        for lst in ("forward", "backward", "update"):
            got = sorted(e["args"]["index"] for e in spans
                         if e["tid"] == d and e.get("cat") == lst and e["args"].get("list") == lst)
            want = counts.get(lst, -1)
            check(want > 0 and got == list(range(want)),
                  tag + ": device %d has every %s op once (%d of %d)" % (d, lst, len(got), want))
        ops[d] = {(e["args"]["list"], e["args"]["index"]): e for e in spans if e["tid"] == d and "list" in e["args"]}
    kinds = {e["name"] for e in ops[0].values()}
    for k in ("conv2d_fwd", "conv2d_bwd_filter", "conv2d_bwd_data", "gemm", "xent", "sgd"):
        check(k in kinds, tag + ": op kind %s is on the timeline" % k)
    sample = ops[0].get(("forward", 0))
    check(sample is not None and sample["args"].get("operands") and sample["args"].get("bytes", 0) > 0,
          tag + ": an op carries its operands' shapes and bytes: %r" % (sample and sample["args"]))
    check(len([e for e in spans if e["name"] == "optimizer_update"]) == 2, tag + ": an update span per device")
    copies = sorted(e["tid"] for e in spans if e["name"] == "copy_input" and e.get("cat") == "input")
    check(copies == [0, 1], tag + ": the copy of each device's part of the batch on its track: %r" % copies)

    reductions = [e for e in spans if e["tid"] == 2]
    buckets = [e for e in reductions if e["name"] == "allreduce_bucket"]
    check(sorted(e["args"]["bucket"] for e in buckets) == list(range(other.get("buckets", -1))),
          tag + ": every gradient bucket reduced once (%d of %r)" % (len(buckets), other.get("buckets")))
    check(all(e["args"]["transport"] == transport and e["args"]["floats"] > 0 for e in reductions),
          tag + ": reductions through %s, with their floats" % transport)
    late = []
    for e in reductions:
        key = (e["args"]["ready_list"], e["args"]["ready_index"])
        for d in (0, 1):
            op = ops[d].get(key)
            if op is None or e["ts"] < op["ts"]:
                late.append((e["name"], e["args"]["event"], d, key))
    check(reductions and not late, tag + ": each reduction starts after the op that completes it began: %r" % late)
    bn = [e for e in reductions if e["name"] == "allreduce_bn_stats"]
    check(bool(bn) == want_bn, tag + ": sync-BN statistics reductions %s" % ("present" if want_bn else "absent"))
    if want_bn:
        check(len([e for e in spans if e["name"] == "amp_unscale"]) == 2, tag + ": the fp16 unscale on each device")


def main():
    base = scratch_dir("trace_")

    run_dir = os.path.join(base, "run1")
    path = os.path.join(base, "step.json")
    rc, _ = run_cli(["train"] + COMMON + ["--out", run_dir, "--trace", path])
    if check(rc == 0, "train --trace runs") and check(os.path.isfile(path), "the trace file exists"):
        print("trace: %d bytes" % os.path.getsize(path))
        doc = load(path)
        if doc:
            check_trace("collectives", doc, run_dir, 2, "backend", False)
        with open(os.path.join(run_dir, "config.json")) as f:
            opts = json.load(f)["options"]
        check(opts.get("trace") == path, "config.json records --trace")

    run_dir = os.path.join(base, "run2")
    path = os.path.join(base, "step5.json")
    env = dict(os.environ, PT_HOST_REDUCTION="1")
    cmd = [CLI, "train"] + COMMON + ["--out", run_dir, "--sync-bn", "--precision", "fp16",
                                      "--trace", path, "--trace-step", "5"]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    if not check(p.returncode == 0, "train --trace --trace-step 5 on the host path runs"):
        print(p.stdout[-2000:], p.stderr[-2000:])
    elif check(os.path.isfile(path), "the trace file exists"):
        doc = load(path)
        if doc:
            check_trace("host", doc, run_dir, 5, "host", True)

    for bad in ("/dev/null/step.json", base, os.path.join(base, "missing", "step.json")):
        out = os.path.join(base, "refused")
        p = subprocess.run([CLI, "train"] + COMMON + ["--out", out, "--trace", bad], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120, stdin=subprocess.DEVNULL)
        check(p.returncode != 0 and "--trace" in p.stderr and not os.path.exists(os.path.join(out, "metrics.jsonl")),
              "--trace %s is refused before training, naming the option: %r" % (bad, p.stderr.strip()))
    return finish()


if __name__ == "__main__":
    sys.exit(main())
