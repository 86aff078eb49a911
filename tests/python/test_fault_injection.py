"""Fault injection: every file-system call a training run makes in its run directory fails
in turn, and the run must come through. A tiny training (2 epochs of 4 steps, a mid-epoch
save every 2 steps, steps.jsonl, TensorBoard events) runs once cleanly as the reference and
once under the counting library (tests/faultinject/ptfault.c, preloaded) to number its calls;
then, for each chosen call and each mode (a SIGKILL just before the call; the call failing
with ENOSPC, EIO or EINTR), the run is started again with that fault, must end cleanly
(exit 0, or exit 1 with a message naming the run directory and the error, never a crash or a
hang), and is then resumed without the fault (started over when nothing was committed)
until done. Its result must then be the reference's bitwise: every tensor of last/ and best/,
the checkpoints' metadata, every metrics.jsonl, metrics.csv and steps.jsonl record, none lost,
none half-written, none twice; and no temporary file or reserved directory may be left. The
same is done to the calls of a resume: that of the directory a kill left right after epoch
1's commit point, which must complete that commit first.

CI runs a fixed subset (where a commit is decided, spread over the run and the resume; one
fault per mode in sanitizer builds, whose runs are slower); PT_FAULT_POINTS=all runs every
call in every mode (PT_FAULT_MODES=kill,ENOSPC,EIO,EINTR selects modes; PT_FAULT_JOBS sets the
parallel runs, default 2; PT_FAULT_PHASES=run,resume the phases). Skipped when the library is not built (PT_FAULT_LIB)."""

import concurrent.futures
import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

from ptcheck import CLI, check, finish, scratch_dir

SHIM = os.environ.get("PT_FAULT_LIB", "")
# In sanitizer builds: the sanitizer runtime, which must be preloaded before the library.
RUNTIME = os.environ.get("PT_FAULT_RUNTIME", "")
MODES = ("kill", "ENOSPC", "EIO", "EINTR")
STRERROR = {"ENOSPC": "No space left on device", "EIO": "Input/output error",
            "EINTR": "Interrupted system call"}
# Results that depend on the data and the arithmetic only, not on the clock.
EXACT = ("epoch", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "val_count", "lr",
         "best", "precision")
EPOCHS = 2
STEPS = 4  # per epoch
TIMEOUT_S = 120


def options(data, cache):
    return ["train", "--data", "tinyimagenet:" + data, "--cache", cache, "--model", "baseline",
            "--batch-per-device", "2", "--limit-train", str(2 * STEPS), "--limit-val", "4",
            "--backend", "cpu", "--threads", "1", "--loader-threads", "1", "--no-progress",
            "--epochs", str(EPOCHS), "--save-every-steps", "2", "--deterministic", "--seed", "3",
            "--log-steps"]


def run(args, env_extra=None):
    """(exit code, stderr); exit code None on a timeout (the process is killed)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if env_extra:
        env.update(env_extra)
    try:
        p = subprocess.run([CLI] + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, "timed out after %d s" % TIMEOUT_S
    return p.returncode, p.stderr.decode("utf-8", "replace")


def shim_env(run_dir, mode, at, log):
    env = {"LD_PRELOAD": RUNTIME + ":" + SHIM if RUNTIME else SHIM, "PT_FAULT_DIR": run_dir, "PT_FAULT_LOG": log}
    if mode == "count":
        env["PT_FAULT_MODE"] = "count"
    elif mode == "kill":
        env.update(PT_FAULT_MODE="kill", PT_FAULT_AT=str(at))
    else:
        env.update(PT_FAULT_MODE="errno", PT_FAULT_AT=str(at), PT_FAULT_ERRNO=mode)
    return env


def read_points(log, run_dir):
    """[(op, file)] in call order, from a counting run's log (file: see kind)."""
    points = []
    with open(log) as f:
        for line in f:
            n, op, path = line.rstrip("\n").split(" ", 2)
            assert int(n) == len(points) + 1, "counting log out of order at %s" % n
            points.append((op, kind(run_dir, path)))
    return points


def kind(run_dir, path):
    """A call's file with the run's variable parts (pid, event-file name) taken out."""
    rel = os.path.relpath(path, run_dir)
    rel = re.sub(r"\.tmp\.\d+$", ".tmp", rel)
    return re.sub(r"events\.out\.tfevents\..*", "events", rel)


# ---------------------------------------------------------------- comparing runs

def read_safetensors(path):
    """({name: (dtype, shape, bytes)}, metadata); raises ValueError on a malformed file. (Not
    tools/torch_models.py's reader: importing it loads torch, seconds per run of this test.)"""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: shorter than its header length" % path)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        if not 0 <= a <= b <= len(data):
            raise ValueError("%s: tensor %s outside the file" % (path, name))
        tensors[name] = (info["dtype"], list(info["shape"]), data[a:b])
    return tensors, meta


def safetensors_results(path):
    tensors, meta = read_safetensors(path)
    meta = dict(meta)
    # the run's id and its clocks are not results; the epoch's records by their exact fields
    for k in ("run_id", "elapsed_s", "epoch_record_csv"):
        meta.pop(k, None)
    if "epoch_record_jsonl" in meta:
        rec = json.loads(meta["epoch_record_jsonl"])
        meta["epoch_record_jsonl"] = {k: rec.get(k) for k in EXACT}
    return tensors, meta


def jsonl(path, keys):
    """The records of a JSON-lines file by keys; raises ValueError on a half-written line."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    if text and not text.endswith("\n"):
        raise ValueError("%s ends in a partial line" % os.path.basename(path))
    return [{k: json.loads(line).get(k) for k in keys} for line in text.splitlines()]


def csv_rows(path):
    with open(path, newline="") as f:
        text = f.read()
    if not text.endswith("\n"):
        raise ValueError("metrics.csv ends in a partial line")
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    if any(len(r) != len(header) for r in rows[1:]):
        raise ValueError("metrics.csv has a row of another width")
    return [{k: r[header.index(k)] for k in EXACT} for r in rows[1:]]


def results(run_dir):
    """What must be bitwise the reference's; raises on anything unreadable."""
    out = {}
    for ck in ("last", "best"):
        for f in ("model", "optimizer"):
            out["%s/%s" % (ck, f)] = safetensors_results(os.path.join(run_dir, ck, f + ".safetensors"))
    out["metrics.jsonl"] = jsonl(os.path.join(run_dir, "metrics.jsonl"), EXACT)
    out["steps.jsonl"] = jsonl(os.path.join(run_dir, "steps.jsonl"), ("step", "epoch", "loss", "lr"))
    out["metrics.csv"] = csv_rows(os.path.join(run_dir, "metrics.csv"))
    with open(os.path.join(run_dir, "config.json")) as f:
        json.load(f)
    return out


def leftovers(run_dir):
    bad = []
    for root, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            if ".polytrain-" in name or re.search(r"\.tmp\.\d+$", name):
                bad.append(os.path.relpath(os.path.join(root, name), run_dir))
    return bad


def differences(ref, got):
    return [k for k in ref if ref[k] != got.get(k)]


# ---------------------------------------------------------------- one fault

def committed(run_dir):
    """Whether the run has a checkpoint to resume (last/, or what a cut commit left of it)."""
    return any(os.path.isfile(os.path.join(run_dir, d, "model.safetensors"))
               for d in ("last", ".last.polytrain-old"))


def resume_args(run_dir, opts):
    return ["train", "--resume", run_dir] + opts[1:]


def one_point(base, data, cache, ref, points, mode, at, start=None):
    """Runs the fault (in a fresh run, or with start: in the resume of a copy of that run
    directory); returns None when everything held, else what went wrong."""
    op, what_file = points[at - 1]
    run_dir = os.path.join(base, "%s%s-%d" % ("resume-" if start else "", mode, at))
    log = run_dir + ".log"
    opts = options(data, cache)
    try:
        if start:
            shutil.copytree(start, run_dir, symlinks=True)
            rc, err = run(resume_args(run_dir, opts), shim_env(run_dir, mode, at, log))
        else:
            rc, err = run(opts + ["--out", run_dir], shim_env(run_dir, mode, at, log))
        what = "%s at call %d%s (%s %s)" % (mode, at, " of the resume" if start else "", op, what_file)
        try:
            with open(log) as f:
                faulted = f.read().split()
        except OSError:
            faulted = []
        if not faulted or faulted[0] != str(at) or faulted[1] != op:
            return "%s: the fault did not happen where counted (log: %s)" % (what, " ".join(faulted[:3]))
        if rc is None:
            return "%s: the run hung (%s)" % (what, err)
        if mode == "kill":
            if rc != -9:
                return "%s: exit %s, not killed" % (what, rc)
        elif rc not in (0, 1):
            return "%s: exit %s (a crash?)\n%s" % (what, rc, err[-800:])
        elif mode == "EINTR" and op in ("write", "fsync") and rc != 0:
            # a signal (Ctrl-C on a network file system) must not end a run: retried
            return "%s: not retried: %s" % (what, err.strip()[-300:])
        elif rc == 1:
            msg = err.strip().splitlines()[-1] if err.strip() else ""
            if run_dir not in err or STRERROR[mode] not in err:
                return "%s: the error names neither the run directory nor '%s': %s" % (
                    what, STRERROR[mode], msg)
        # resume (or start over when nothing was committed) until done
        for attempt in range(3):
            if rc == 0:
                break
            if committed(run_dir):
                rc, err = run(resume_args(run_dir, opts))
            else:
                rc, err = run(opts + ["--out", run_dir, "--overwrite"])
            if rc != 0:
                return "%s: the %s failed (exit %s): %s" % (
                    what, "resume" if committed(run_dir) else "new start", rc, err.strip()[-600:])
        if rc != 0:
            return "%s: not done after 3 resumes" % what
        try:
            got = results(run_dir)
        except (OSError, ValueError, KeyError, TypeError) as e:
            return "%s: the finished run is unreadable: %s" % (what, e)
        diff = differences(ref, got)
        if diff:
            return "%s: differs from the reference in %s" % (what, ", ".join(diff))
        left = leftovers(run_dir)
        if left:
            return "%s: left %s" % (what, ", ".join(left))
        return None
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            os.unlink(log)
        except OSError:
            pass


# ---------------------------------------------------------------- which calls

# The subset CI runs: (mode, call, file, which of the calls of that kind: 0 the first, -1 the
# last): where a commit is decided (the exchange of last/, the install of a staged best/, the
# record appends after the commit point), a temp file or reserved directory cut short, and
# the errors a run must stop on cleanly or retry. Every entry must match a call.
CI_POINTS = (
    ("kill", "renameat2", r"\.last\.polytrain-new", -1),
    ("kill", "rename", r"\.best\.polytrain-pending", 0),
    ("kill", "write", r"metrics\.jsonl", -1),
    ("kill", "write", r"\.last\.polytrain-new/\.model\.safetensors\.tmp", 0),
    ("kill", "write", r"\.config\.json\.tmp", 0),
    ("ENOSPC", "write", r"\.last\.polytrain-new/\.optimizer\.safetensors\.tmp", -1),
    ("ENOSPC", "write", r"metrics\.jsonl", 0),
    ("ENOSPC", "mkdir", r"\.best\.polytrain-new", 0),
    ("ENOSPC", "fwrite", r"tensorboard/events", -1),
    ("EIO", "fsync", r"\.last\.polytrain-new", -1),
    ("EIO", "fsync", r"\.", -1),
    ("EIO", "open", r"\.best\.polytrain-pending/model\.safetensors", 0),
    ("EIO", "close", r"\.last\.polytrain-new/\.model\.safetensors\.tmp", 0),
    ("EINTR", "write", r"\.last\.polytrain-new/\.model\.safetensors\.tmp", 1),
    ("EINTR", "fsync", r"\.last\.polytrain-new/\.optimizer\.safetensors\.tmp", 0),
    ("EINTR", "fsync", r"metrics\.csv", -1),
    ("EINTR", "unlink", r"\.last\.polytrain-old/model\.safetensors", -1),
)


# Sanitizer builds (every run several times slower) inject one fault per mode, in the run.
SANITIZER_POINTS = (
    ("kill", "renameat2", r"\.last\.polytrain-new", -1),
    ("ENOSPC", "write", r"\.last\.polytrain-new/\.optimizer\.safetensors\.tmp", -1),
    ("EIO", "open", r"\.best\.polytrain-pending/model\.safetensors", 0),
    ("EINTR", "unlink", r"\.last\.polytrain-old/model\.safetensors", -1),
)

# Faults in a resume: of the run directory a kill left right after epoch 1's commit point
# (last/ replaced, best/ staged, the records not appended), whose resume must complete that
# commit (install best/, write the records from last/'s copy) before it trains on.
CUT_AT = ("rename", r"\.best\.polytrain-pending", 0)
RESUME_CI_POINTS = (
    ("kill", "rename", r"\.best\.polytrain-pending", 0),
    ("EIO", "open", r"\.best\.polytrain-pending/model\.safetensors", 0),
    ("ENOSPC", "write", r"\.metrics\.jsonl\.tmp", 0),
    ("EINTR", "write", r"\.metrics\.csv\.tmp", 0),
    ("kill", "rename", r"\.metrics\.csv\.tmp", 0),
)


def find(points, op, pattern, which):
    """The number of the call (op on a file matching pattern, which-th of them), or None."""
    calls = [i for i, (o, k) in enumerate(points, 1) if o == op and re.fullmatch(pattern, k)]
    return calls[which] if len(calls) > max(which, -which - 1) else None


def ci_points(points, table, what):
    """[(mode, call number)] of a table; an entry that matches no call is reported."""
    out = []
    for mode, op, pattern, which in table:
        at = find(points, op, pattern, which)
        if check(at is not None, "%s fault point %s at %s %s [%d] exists" % (what, mode, op, pattern, which)):
            out.append((mode, at))
    return out


def counted(args, run_dir, log, ref, what):
    """Runs args under the counting library; returns its calls, checking its result."""
    rc, err = run(args, shim_env(run_dir, "count", 0, log))
    points = read_points(log, run_dir) if rc == 0 and os.path.exists(log) else []
    same = rc == 0 and not differences(ref, results(run_dir))
    check(same and len(points) > 20, "counting %s: the reference's results, %d file-system calls in the run "
          "directory" % (what, len(points)))
    if rc != 0:
        print(err[-2000:])
    ops = {}
    for op, _ in points:
        ops[op] = ops.get(op, 0) + 1
    print("calls: " + ", ".join("%s %d" % kv for kv in sorted(ops.items())))
    return points if same else []


def main():
    if not SHIM or not os.path.isfile(SHIM):
        print("SKIP: the fault-injection library is not built (PT_FAULT_LIB)")
        return 77
    if RUNTIME and not os.path.isfile(RUNTIME):
        print("SKIP: the sanitizer runtime '%s' (PT_FAULT_RUNTIME) is not a file" % RUNTIME)
        return 77
    everything = os.environ.get("PT_FAULT_POINTS") == "all"
    modes = [m for m in os.environ.get("PT_FAULT_MODES", ",".join(MODES)).split(",") if m]
    jobs = int(os.environ.get("PT_FAULT_JOBS", "2"))
    base = scratch_dir("faultinject-")
    try:
        t0 = time.monotonic()
        data, cache = os.path.join(base, "data"), os.path.join(base, "cache")
        opts = options(data, cache)
        rc = subprocess.run([CLI, "synth", "--out", data, "--classes", "4", "--train-per-class", "2",
                             "--val-per-class", "1", "--size", "16", "--threads", "1", "--no-progress"],
                            stdout=subprocess.DEVNULL).returncode
        if not check(rc == 0, "synth dataset"):
            return finish()
        ref_dir = os.path.join(base, "reference")
        rc, err = run(opts + ["--out", ref_dir])
        if not check(rc == 0, "reference run"):
            print(err[-2000:])
            return finish()
        ref = results(ref_dir)
        check(not leftovers(ref_dir), "reference run leaves no temporary files")
        count_dir = os.path.join(base, "count")
        points = counted(opts + ["--out", count_dir], count_dir, count_dir + ".log", ref, "a run")
        if not points:
            return finish()
        work = []
        if RUNTIME and not everything:
            work = [("run", m, a, points, None) for m, a in ci_points(points, SANITIZER_POINTS, "sanitizer")
                    if m in modes]
            return inject(work, modes, jobs, everything, base, data, cache, ref, t0, ("run",))
        # the directory a kill leaves after epoch 1's commit point, and its resume's calls
        cut = os.path.join(base, "cut")
        at = find(points, *CUT_AT)
        rc, _ = run(opts + ["--out", cut], shim_env(cut, "kill", at or 0, cut + ".log"))
        if not check(at is not None and rc == -9 and os.path.isdir(os.path.join(cut, ".best.polytrain-pending")),
                     "a kill after epoch 1's commit point leaves best/ staged"):
            return finish()
        count_resume = os.path.join(base, "count-resume")
        shutil.copytree(cut, count_resume, symlinks=True)
        rpoints = counted(resume_args(count_resume, opts), count_resume, count_resume + ".log", ref, "its resume")
        if not rpoints:
            return finish()
        phases = [p for p in os.environ.get("PT_FAULT_PHASES", "run,resume").split(",") if p]
        for phase, pts, table, start in (("run", points, CI_POINTS, None), ("resume", rpoints, RESUME_CI_POINTS, cut)):
            if phase not in phases:
                continue
            chosen = ([(m, a) for m in modes for a in range(1, len(pts) + 1)] if everything
                      else [(m, a) for m, a in ci_points(pts, table, phase) if m in modes])
            work += [(phase, m, a, pts, start) for m, a in chosen]
        return inject(work, modes, jobs, everything, base, data, cache, ref, t0, phases)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def inject(work, modes, jobs, everything, base, data, cache, ref, t0, phases):
    """Runs the faults of work [(phase, mode, call, calls, start)]; one check per phase and mode."""
    print("faults to inject: %d (%s)" % (len(work), "every call, every mode" if everything else "CI subset"),
          flush=True)
    failures = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(one_point, base, data, cache, ref, pts, m, a, start): (phase, m)
                for phase, m, a, pts, start in work}
        for done, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            if everything and done % 100 == 0:
                print("progress: %d of %d faults, %.0f s" % (done, len(work), time.monotonic() - t0), flush=True)
            problem = fut.result()
            if problem:
                failures[futs[fut]] = failures.get(futs[fut], 0) + 1
                print("FAIL " + problem, flush=True)
    for phase in phases:
        for m in modes:
            n = sum(1 for w in work if w[0] == phase and w[1] == m)
            bad = failures.get((phase, m), 0)
            check(n > 0 and not bad, "%s in the %s: %d of %d faults resumed to the reference's result with "
                  "nothing lost or left behind" % (m, phase, n - bad, n))
    print("time: %.1f s" % (time.monotonic() - t0))
    return finish()


if __name__ == "__main__":
    sys.exit(main())
