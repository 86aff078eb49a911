"""tools/st_digest.py compares what checkpoints hold, not their metadata: two runs of the same
deterministic training write files that differ (each stamps its own run id) but whose tensors
are equal, which the digest says and a plain byte comparison does not; one changed bit of one
tensor, another dtype or another shape changes the digest, the header's order of tensors and
its metadata do not; a file that is not safetensors is exit 2 naming the file. The scripts that
check two training paths bitwise (ci/gpu-check.sh, ci/checkpoint-digests.sh) rely on this."""

import json
import os
import struct
import subprocess
import sys

from ptcheck import TOOLS, check, finish, run_cli, scratch_dir

SCRIPT = os.path.join(TOOLS, "st_digest.py")


def st_digest(*args):
    p = subprocess.run([sys.executable, SCRIPT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def read_st(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_st(path, header, data):
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def main():
    tmp = scratch_dir("st_digest")
    data = os.path.join(tmp, "data")
    rc, out = run_cli(["synth", "--out", data, "--classes", "2", "--train-per-class", "4", "--val-per-class", "2",
                       "--size", "16", "--threads", "1", "--no-progress"])
    check(rc == 0, "synth writes a small tree (%s)" % out[-300:])
    runs = []
    for name in ("a", "b"):
        run = os.path.join(tmp, name)
        rc, out = run_cli(["train", "--data", "tinyimagenet:" + data, "--batch-per-device", "4", "--epochs", "1",
                           "--backend", "cpu", "--no-cache", "--deterministic", "--threads", "1", "--no-progress",
                           "--out", run])
        check(rc == 0, "deterministic training run %s (%s)" % (name, out[-300:]))
        runs.append(os.path.join(run, "last", "model.safetensors"))
    a, b = runs
    with open(a, "rb") as fa, open(b, "rb") as fb:
        check(fa.read() != fb.read(), "the two runs' model files differ as bytes (their run ids)")
    rc, out, err = st_digest(a, b)
    lines = out.split("\n")
    check(rc == 0 and len(lines) == 3 and lines[0].split()[0] == lines[1].split()[0] and lines[0].endswith(a),
          "one digest per file, equal for the two runs (%r %r)" % (out, err))
    rc, _, _ = st_digest("--same", a, b)
    check(rc == 0, "--same: exit 0 for the two runs (got %d)" % rc)

    header, blob = read_st(a)
    names = sorted(k for k in header if k != "__metadata__")
    # the same tensors with another metadata and the header's entries in reverse order
    other = {"__metadata__": {"run_id": "0" * 32, "note": "rewritten"}}
    for k in reversed(names):
        other[k] = header[k]
    c = os.path.join(tmp, "reordered.safetensors")
    write_st(c, other, blob)
    check(st_digest("--same", a, c)[0] == 0, "another metadata and header order: the same digest")
    # one bit of the last tensor's last byte
    last = max(names, key=lambda k: header[k]["data_offsets"][1])
    end = header[last]["data_offsets"][1]
    flipped = bytearray(blob)
    flipped[end - 1] ^= 1
    d = os.path.join(tmp, "flipped.safetensors")
    write_st(d, header, bytes(flipped))
    check(st_digest("--same", a, d)[0] == 1, "one flipped bit of %s: different (exit 1)" % last)
    # another dtype name, another shape, the same bytes
    t0 = header[names[0]]
    count = 1
    for n in t0["shape"]:
        count *= int(n)
    reshaped = [count] if len(t0["shape"]) != 1 else [count, 1]
    for what, key, value in (("dtype", "dtype", "I32" if t0["dtype"] != "I32" else "F32"),
                             ("shape", "shape", reshaped)):
        h2 = json.loads(json.dumps(header))
        h2[names[0]][key] = value
        e = os.path.join(tmp, "%s.safetensors" % what)
        write_st(e, h2, blob)
        check(st_digest("--same", a, e)[0] == 1, "%s %s for %s: different" % (what, value, names[0]))
    # not safetensors
    bad = os.path.join(tmp, "bad.safetensors")
    with open(bad, "wb") as f:
        f.write(struct.pack("<Q", 1 << 40) + b"{}")
    rc, out, err = st_digest(bad)
    check(rc == 2 and bad in err and "header of" in err, "a header longer than the file: exit 2 naming it (%r)" % err)
    with open(bad, "wb") as f:
        f.write(struct.pack("<Q", 2) + b"[]")
    rc, out, err = st_digest(a, bad)
    check(rc == 2 and bad in err and out == "", "a header that is no object: exit 2, no digest printed (%r)" % err)
    h3 = json.loads(json.dumps(header))
    h3[names[0]]["data_offsets"] = [0, len(blob) + 1]
    write_st(bad, h3, blob)
    rc, out, err = st_digest(bad)
    check(rc == 2 and names[0] in err, "a tensor past the end: exit 2 naming it (%r)" % err)
    check(st_digest("--same", a)[0] == 2, "--same with one file: usage error")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
