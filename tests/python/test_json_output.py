"""Every --json output is valid JSON whatever the paths and names in it: eval, predict, bench,
check, devices, models and selftest run on paths and class names holding a quote, a
backslash, a newline, a tab, non-ASCII UTF-8 and an invalid UTF-8 byte (written as U+FFFD),
and their stdout is parsed with Python's json module as strict UTF-8. A --json command that
fails prints one {"error": ..., "exit_code": N} object (predict: an {"input", "error"} line
for a bad input) and nothing else on stdout. The model is a tiny run on a folder dataset
whose class directories carry those names."""

import json
import os
import shutil
import subprocess
import sys

from ptcheck import CLI, check, finish, scratch_dir
from pngs import write_png

# A quote, a backslash, a newline, a tab, UTF-8 (u umlaut) and a byte that is not UTF-8.
NASTY = b'q"uote \\back\nnew\tline \xc3\xbc \xff end'


def text(b):
    """What the JSON string of the bytes b reads: invalid UTF-8 bytes as U+FFFD."""
    return b.decode("utf-8", errors="replace")


def run(args):
    """(exit code, stdout bytes, stderr text); args are str or bytes."""
    p = subprocess.run([CLI] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                       stdin=subprocess.DEVNULL)
    err = p.stderr.decode("utf-8", errors="replace")
    if "Sanitizer" in err or "runtime error:" in err:
        print(err[-3000:])
        check(False, "no sanitizer report")
    return p.returncode, p.stdout, err


def parse(out, what, lines=False):
    """stdout as one JSON value (lines: one per line); None after a FAIL when it is not."""
    try:
        s = out.decode("utf-8")  # strict: invalid UTF-8 is a failure
        v = [json.loads(l) for l in s.splitlines()] if lines else json.loads(s)
        check(True, what + ": stdout is valid JSON")
        return v
    except (UnicodeDecodeError, ValueError) as e:
        check(False, "%s: stdout is valid JSON (%s)" % (what, e))
        print("  stdout| %r" % out[:600])
        return None


def expect_json(args, code, what, lines=False):
    rc, out, err = run(args)
    if not check(rc == code, "%s: exit %d (expected %d)" % (what, rc, code)):
        print("\n".join("  stderr| " + l for l in err.splitlines()[-10:]))
    return parse(out, what, lines)


def expect_error_object(args, code, what, needle=None):
    """A failing --json command: stdout is exactly one error object naming the failure."""
    v = expect_json(args, code, what)
    if v is not None:
        check(isinstance(v, dict) and set(v) == {"error", "exit_code"} and v["exit_code"] == code and
              (needle is None or needle in v["error"]),
              "%s: stdout is {\"error\", \"exit_code\": %d}%s" % (what, code, " naming %r" % needle if needle else ""))


def main():
    tmp = scratch_dir("json.")
    try:
        return body(os.fsencode(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def body(tmp):
    # a folder dataset of 3 classes with nasty names, 12 gray 28x28 images each
    data = os.path.join(tmp, b"data " + NASTY)
    names = [NASTY, b"plain", b"tab\there \xe2\x9c\x93"]
    for k, name in enumerate(names):
        os.makedirs(os.path.join(data, name))
        for i in range(12):
            write_png(os.path.join(data, name, b"%d.png" % i), 28, 28, 1, pixel=lambda x, y, c, k=k, i=i:
                      (x * (k + 1) * 9 + y * 3 + i * 5) % 256)
    run_dir = os.path.join(tmp, b"run " + NASTY)
    folder = b"folder:" + data
    rc, _, err = run(["train", "--data", folder, "--epochs", "1", "--batch-per-device", "8", "--out", run_dir,
                      "--cache", os.path.join(tmp, b"cache"), "--no-progress", "--backend", "cpu"])
    if not check(rc == 0, "a tiny run trains on the folder dataset with nasty class names"):
        print(err[-2000:])
        return finish()
    image = os.path.join(tmp, b"image " + NASTY + b".png")
    write_png(image, 28, 28, 1, seed=3)
    wide = os.path.join(tmp, b"wide " + NASTY + b".png")
    write_png(wide, 200, 20, 1, seed=4)
    note = os.path.join(tmp, b"note " + NASTY + b".txt")
    with open(note, "wb") as f:
        f.write(b"not an image\n")

    # ---- predict: nasty input path, nasty class names, --checkpoint RUN, a failing input ----
    v = expect_json(["predict", "--json", "--topk", "3", "--backend", "cpu", "--checkpoint", run_dir, image, note,
                     wide], 1, "predict --json", lines=True)
    if v is not None and check(len(v) == 3, "predict --json: a line per input"):
        check(v[0]["input"] == text(image), "predict --json: the input path round-trips (U+FFFD for the bad byte)")
        got = sorted(t["name"] for t in v[0]["top"])
        check(got == sorted(text(n) for n in names), "predict --json: the class names round-trip: %r" % got)
        check(v[1]["input"] == text(note) and "a text file" in v[1]["error"],
              "predict --json: the text file's line is an error naming it")
        check("more than 2:1" in v[2]["error"], "predict --json: the refused wide image's line says why")
    v = expect_json(["predict", "--json", "--force", "--backend", "cpu", "--checkpoint", run_dir, wide], 0,
                    "predict --json --force", lines=True)
    if v:
        check(v[0]["forced"] and v[0]["changes"], "predict --json --force: forced and changes listed")

    # ---- eval ----
    v = expect_json(["eval", "--json", "--backend", "cpu", "--checkpoint", run_dir, "--data", folder], 0, "eval --json")
    if v:
        check(v["checkpoint"] == text(run_dir) and v["count"] > 0, "eval --json: the checkpoint path round-trips")

    # ---- failures print one error object ----
    missing = os.path.join(tmp, b"missing " + NASTY)
    expect_error_object(["eval", "--json", "--checkpoint", missing, "--data", folder], 1,
                        "eval --json, missing checkpoint", text(missing))
    expect_error_object(["eval", "--json", "--checkpoint", run_dir, "--data", b"nope:" + NASTY], 2,
                        "eval --json, unknown --data kind", "unknown kind")
    expect_error_object(["eval", "--json", "--checkpoint", run_dir, "--batch", "0"], 2, "eval --json --batch 0",
                        "--batch")
    expect_error_object(["predict", "--json", "--checkpoint", missing, image], 1, "predict --json, missing checkpoint",
                        text(missing))
    expect_error_object(["bench", "--json", "--model", b"no\"such\nmodel"], 2, "bench --json, unknown model")
    expect_error_object(["models", "--json", "--model", b"no\"such\nmodel"], 2, "models --json, unknown model")
    expect_error_object(["check", "--json", "--input", b"3x\"\n"], 2, "check --json, bad --input", "--input")
    expect_error_object(["selftest", "--json", "--backend", b"quantum\"\n"], 2, "selftest --json, unknown backend")

    # ---- the other --json commands ----
    v = expect_json(["bench", "--json", "--backend", "cpu", "--input", "\n1x28x28", "--classes", "10", "--batch", "4",
                     "--steps", "1", "--warmup", "0", "--per-op"], 0, "bench --json --per-op (an --input with a newline)")
    if v:
        check(v["input"] == "\n1x28x28" and isinstance(v["per_op"], dict) and v["device"],
              "bench --json: input, device and per-op times")
    v = expect_json(["bench", "--json", "--backend", "cpu", "--sgemm", "32", "--steps", "2"], 0, "bench --json --sgemm")
    if v:
        check(v["sgemm_n"] == 32 and isinstance(v["details"], str), "bench --sgemm --json: fields")
    v = expect_json(["bench", "--json", "--backend", "cpu", "--devices", "2", "--input", "1x28x28", "--classes", "10",
                     "--batch", "4", "--steps", "1", "--warmup", "0"], 0, "bench --json on 2 devices")
    if v:
        check(v["devices"] == 2 and len(v["per_device"]) == 2, "bench --json on 2 devices: fields")
    v = expect_json(["devices", "--json"], 0, "devices --json")
    if v:
        check(isinstance(v, list) and any(b["backend"] == "cpu" for b in v), "devices --json: the cpu backend")
    v = expect_json(["models", "--json", "--input", "1x28x28", "--classes", "10"], 0, "models --json")
    if v:
        check(isinstance(v, list) and any(m["model"] == "baseline" for m in v), "models --json: baseline listed")
    v = expect_json(["selftest", "--json", "--backend", "cpu", "--devices", "0", "--filter", "relu", "--seed", "1"], 0,
                    "selftest --json")
    if v:
        check(v["ok"] is True and v["filter"] == "relu", "selftest --json: fields")
    expect_json(["selftest", "--list", "--json"], 0, "selftest --list --json")
    v = expect_json(["check", "--json", "--backend", "cpu", "--no-scaling", "--batch", "4", "--input", "1x28x28",
                     "--seed", "1"], 0, "check --json")
    if v:
        check(v["ok"] is True and len(v["devices"]) == 2, "check --json: fields")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
