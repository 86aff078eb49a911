"""RUN/tensorboard and RUN/metrics.csv as `polytrain train` writes them, read back with the
real TensorBoard (PyPI's tensorboard package, installed by ci/install-deps.sh into its own
virtual environment): every tag's steps and values against metrics.jsonl and steps.jsonl,
the file_version record, a flipped byte caught by the CRC checks, metrics.csv against
metrics.jsonl, and a stop + resume that logs no step twice. Exits 77 (skipped) only when
the tensorboard package cannot be imported."""

import csv
import json
import os
import re
import shutil
import struct
import sys

VENV = os.environ.get("PT_VENV") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "polytrain", "venv")


def import_tensorboard():
    """The tensorboard modules; under /usr/bin/python3 without them, runs this test again
    under the virtual environment's Python, which has them."""
    try:
        from tensorboard.backend.event_processing import event_accumulator, event_file_loader
        from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
        return event_accumulator, event_file_loader, errors, pywrap_tensorflow
    except ImportError as e:
        python = os.path.join(VENV, "bin", "python")
        if os.path.exists(python) and not os.environ.get("PT_TB_REEXEC"):
            os.environ["PT_TB_REEXEC"] = "1"
            os.execv(python, [python] + sys.argv)
        print("SKIP: the tensorboard package cannot be imported (%s); install it with "
              "ci/install-deps.sh (pip install tensorboard into %s)" % (e, VENV))
        sys.exit(77)


event_accumulator, event_file_loader, tf_errors, pywrap_tf = import_tensorboard()

from ptcheck import check, finish, run_cli, scratch_dir  # noqa: E402

OPTIONS = ["--epochs", "2", "--limit-train", "512", "--limit-val", "256", "--seed", "5",
           "--no-progress", "--log-steps"]
STEPS_PER_EPOCH = 512 // 64
EPOCH_TAGS = {  # tag: metrics.jsonl key, and the decimals metrics.jsonl prints it with
    "train/loss": ("train_loss", 6), "train/accuracy": ("train_acc", 6),
    "val/loss": ("val_loss", 6), "val/top1": ("val_top1", 6), "val/top5": ("val_top5", 6),
    "lr": ("lr", None), "throughput/img_per_s": ("img_per_s", 2),
    "time/epoch_s": ("epoch_s", 3), "loss_scale": ("loss_scale", None),
}
STEP_TAGS = {"train/step_loss": "loss", "train/step_lr": "lr"}
CSV_COLUMNS = ("epoch train_loss train_acc val_loss val_top1 val_top5 val_count lr img_per_s "
               "train_s epoch_s elapsed_s best precision device_mib workspace_mib_fitted "
               "loss_scale loss_scale_min skipped_steps loss_scale_changes "
               "loss_scale_history data_wait_s peak_device_mib started_at ended_at clipped_steps grad_norm_mean "
               "epochs_without_improvement stop_reason ema_val_loss ema_val_top1 ema_val_top5").split()
NAME = re.compile(r"^events\.out\.tfevents\.\d{10}\.[A-Za-z0-9._-]+\.\d+\.\d+$")


def close(tb, ref, decimals):
    """tb is a float32 of the double that ref was printed from (with decimals, or with 8-9
    significant digits when None): equal within both roundings."""
    tol = abs(ref) * 2.0 ** -23 + (0.5 * 10.0 ** -decimals if decimals is not None else abs(ref) * 1e-7)
    return abs(tb - ref) <= tol + 1e-30


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def event_files(run_dir):
    d = os.path.join(run_dir, "tensorboard")
    return sorted(os.path.join(d, n) for n in os.listdir(d))


def raw_events(path):
    """Every Event of one file, through TensorBoard's own loader."""
    return list(event_file_loader.LegacyEventFileLoader(path).Load())


def scalar_pairs(paths):
    """(tag, step, value) of every simple_value in the files, in file order."""
    out = []
    for p in paths:
        for ev in raw_events(p):
            for v in ev.summary.value:
                out.append((v.tag, ev.step, v.simple_value))
    return out


def own_records(path):
    """Checks the TFRecord framing with this test's own CRC-32C: (records, error or None)."""
    def crc32c(data):
        c = 0xFFFFFFFF
        for b in data:
            c ^= b
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        return c ^ 0xFFFFFFFF

    def masked(data):
        c = crc32c(data)
        return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    with open(path, "rb") as f:
        data = f.read()
    pos, n = 0, 0
    while pos < len(data):
        if len(data) - pos < 12:
            return n, "truncated header at byte %d" % pos
        (length,) = struct.unpack_from("<Q", data, pos)
        (hcrc,) = struct.unpack_from("<I", data, pos + 8)
        if hcrc != masked(data[pos:pos + 8]):
            return n, "length CRC mismatch at byte %d" % pos
        body = data[pos + 12:pos + 12 + length]
        if len(body) != length or len(data) < pos + 16 + length:
            return n, "truncated record at byte %d" % pos
        (dcrc,) = struct.unpack_from("<I", data, pos + 12 + length)
        if dcrc != masked(body):
            return n, "data CRC mismatch at byte %d" % pos
        pos += 16 + length
        n += 1
    return n, None


def check_scalars(run_dir, what, fp16=False):
    """Every tag of RUN/tensorboard, read by EventAccumulator, against the run's logs."""
    metrics = jsonl(os.path.join(run_dir, "metrics.jsonl"))
    steps = jsonl(os.path.join(run_dir, "steps.jsonl"))
    acc = event_accumulator.EventAccumulator(os.path.join(run_dir, "tensorboard"),
                                             size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = (set(EPOCH_TAGS) - (set() if fp16 else {"loss_scale"})) | set(STEP_TAGS)
    check(tags == want, "%s: the scalar tags are %s (%s)" % (what, sorted(want), sorted(tags)))
    for tag, (key, decimals) in EPOCH_TAGS.items():
        if tag not in tags:
            continue
        ev = acc.Scalars(tag)
        got_steps = [e.step for e in ev]
        ref_steps = [m["epoch"] * STEPS_PER_EPOCH for m in metrics]
        bad = [(e.value, m[key]) for e, m in zip(ev, metrics) if not close(e.value, m[key], decimals)]
        check(got_steps == ref_steps and not bad,
              "%s: %s at steps %s equals metrics.jsonl's %s %s" % (
                  what, tag, got_steps, key, bad or [round(e.value, 6) for e in ev]))
    for tag, key in STEP_TAGS.items():
        ev = acc.Scalars(tag)
        bad = [(e.step, e.value, s[key]) for e, s in zip(ev, steps)
               if e.step != s["step"] or not close(e.value, s[key], None)]
        check(len(ev) == len(steps) == 2 * STEPS_PER_EPOCH and not bad,
              "%s: %s has the %d steps of steps.jsonl, values within float32 rounding (%d events%s)"
              % (what, tag, len(steps), len(ev), ", first bad %s" % (bad[:3],) if bad else ""))


def check_csv(run_dir, what):
    metrics = jsonl(os.path.join(run_dir, "metrics.jsonl"))
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.reader(f))
    check(rows and rows[0] == CSV_COLUMNS, "%s: metrics.csv has the fixed header" % what)
    check(len(rows) - 1 == len(metrics), "%s: metrics.csv has one row per metrics.jsonl line (%d, %d)"
          % (what, len(rows) - 1, len(metrics)))
    bad = []
    for row, m in zip(rows[1:], metrics):
        for col, cell in zip(CSV_COLUMNS, row):
            ref = m.get(col)
            if ref is None:
                ok = cell == ""
            elif isinstance(ref, bool):
                ok = cell == ("true" if ref else "false")
            elif isinstance(ref, (list, str)):
                ok = (json.loads(cell) if isinstance(ref, list) else cell) == ref
            else:
                ok = float(cell) == float(ref)
            if not ok:
                bad.append((m.get("epoch"), col, cell, ref))
        if len(row) != len(CSV_COLUMNS):
            bad.append((m.get("epoch"), "columns", len(row), len(CSV_COLUMNS)))
    check(not bad, "%s: every metrics.csv cell equals metrics.jsonl (empty where it has no "
          "such field)%s" % (what, " " + str(bad[:5]) if bad else ""))


def check_corruption(path, tmp):
    """A flipped byte inside a record is caught by TensorBoard's record reader, and by
    this test's own CRC check, which passes the intact file."""
    n, error = own_records(path)
    events = raw_events(path)
    check(error is None and n == len(events) > 2,
          "own CRC-32C check: all %d records of the intact file pass (%s)" % (n, error))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    # the middle of the third record's data: a scalar event, not a length
    pos = 0
    for _ in range(2):
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    flip = pos + 12 + struct.unpack_from("<Q", data, pos)[0] // 2
    data[flip] ^= 0x40
    bad = os.path.join(tmp, os.path.basename(path))
    with open(bad, "wb") as f:
        f.write(data)
    reader = pywrap_tf.PyRecordReader_New(bad, 0)
    got, caught = 0, None
    try:
        while True:
            reader.GetNext()
            got += 1
    except tf_errors.DataLossError as e:
        caught = str(e)
    except tf_errors.OutOfRangeError:
        pass
    check(caught is not None and "crc" in caught.lower() and got == 2,
          "TensorBoard's reader fails the CRC of record 3 after byte %d is flipped (read %d: %s)"
          % (flip, got, caught))
    n2, error2 = own_records(bad)
    check(error2 is not None and n2 == 2, "own CRC check stops at record 3 too (%s)" % error2)
    check(len(raw_events(bad)) == 2, "TensorBoard's event loader keeps only the 2 records before it")


def main():
    tmp = scratch_dir("tensorboard.")
    try:
        a, b, c = (os.path.join(tmp, n) for n in ("A", "B", "C"))
        # 1. Two epochs in one go.
        if check(run_cli(["train", "--out", a] + OPTIONS)[0] == 0, "train 2 epochs"):
            files = event_files(a)
            check(len(files) == 1 and NAME.match(os.path.basename(files[0])),
                  "one event file named as TensorBoard names them: %s"
                  % [os.path.basename(p) for p in files])
            first = raw_events(files[0])[0]
            check(first.file_version == "brain.Event:2" and first.step == 0 and first.wall_time > 1.6e9,
                  "the first record is the file_version event %r" % first.file_version)
            print("event file: %d bytes, %d records" % (os.path.getsize(files[0]),
                                                         len(raw_events(files[0]))))
            check_scalars(a, "one run")
            check_csv(a, "one run")
            check_corruption(files[0], tmp)

        # 2. Stop after epoch 1, then resume: a second event file, no step twice.
        ok = check(run_cli(["train", "--out", b, "--stop-after-epoch", "1"] + OPTIONS)[0] == 0,
                   "train with --epochs 2 --stop-after-epoch 1")
        ok &= check(run_cli(["train", "--resume", b] + OPTIONS)[0] == 0, "resume it")
        if ok:
            files = event_files(b)
            check(len(files) == 2, "the resumed run writes a second event file (%d)" % len(files))
            pairs = scalar_pairs(files)
            seen, dup = set(), []
            for tag, step, _ in pairs:
                if (tag, step) in seen:
                    dup.append((tag, step))
                seen.add((tag, step))
            check(not dup, "no tag has a step twice over both files (%d values%s)"
                  % (len(pairs), ", duplicates %s" % dup[:5] if dup else ""))
            check_scalars(b, "stop + resume")
            check_csv(b, "stop + resume")

        # 3. fp16: the loss_scale tag and the loss-scale columns of metrics.csv.
        ok = check(run_cli(["train", "--out", c, "--precision", "fp16", "--optimizer", "adam",
                            "--lr", "1e-3"] + OPTIONS)[0] == 0, "fp16: train 2 epochs")
        if ok:
            check_scalars(c, "fp16", fp16=True)
            check_csv(c, "fp16")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
