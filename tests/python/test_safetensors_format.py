"""polytrain's safetensors files against an independent reader and writer.

The C test program (tests/test_safetensors.c) writes a reference file (--write-reference);
this test parses it with plain Python (struct + json), checks the format rules byte by byte,
reads every tensor with torch.frombuffer and loads the model part into a torch module with
load_state_dict(strict=True); it also checks with the `safetensors` package when installed.
Then it writes the same content with its own writer (different key order and data layout,
or safetensors.torch.save_file when available) and asks the C reader to verify it
(--check-reference). Exit 77 (skipped) if torch is missing or the C program is not found.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile


def find_writer():
    # tests/CMakeLists.txt sets PT_ST_WRITER to the test_safetensors binary.
    path = os.environ.get("PT_ST_WRITER")
    if path:
        if not os.access(path, os.X_OK):
            sys.exit(f"PT_ST_WRITER={path} is not an executable")
        return path
    print("skipped: PT_ST_WRITER (path of the test_safetensors program) is not set")
    sys.exit(77)


# The reference content: must match `reference[]` in tests/test_safetensors.c.
def reference():
    conv = [i * 0.25 - 13.5 for i in range(108)]
    return [
        ("conv.weight", "F32", [4, 3, 3, 3], conv),
        ("bn.weight", "F32", [4], [1.0 + i * 0.5 for i in range(4)]),
        ("bn.bias", "F32", [4], [0.125 - i * 0.125 for i in range(4)]),
        ("bn.running_mean", "F32", [4], [i * 0.0625 for i in range(4)]),
        ("bn.running_var", "F32", [4], [1.0 + i for i in range(4)]),
        ("bn.num_batches_tracked", "I64", [], [7]),
        ("fc.weight", "F32", [2, 4], [i - 3.5 for i in range(8)]),
        ("fc.bias", "F32", [2], [0.5, -0.5]),
        ("extra.u8", "U8", [5], [0, 1, 127, 128, 255]),
        ("extra.f64", "F64", [3], [1.0 / 3.0, -2.5, 1e300]),
        ("extra.i32", "I32", [2, 2], [-1, 2, -3, 4]),
        ("extra.f16", "F16", [2], [0x3C00, 0xC000]),     # raw bits: 1.0, -2.0
        ("extra.bf16", "BF16", [2], [0x3F80, 0x4049]),   # raw bits: 1.0, 3.140625
        ("extra.bool", "BOOL", [3], [1, 0, 1]),
        ("extra.empty", "F32", [0, 3], []),
        ("extra.i16", "I16", [1], [-300]),
        ("extra.i8", "I8", [2], [-128, 127]),
        ("extra.i64", "I64", [2], [-(1 << 63), 1 << 40]),
    ]


METADATA = {"framework": "polytrain", "format_version": "1", "note": "caf\u00e9 \"quoted\"\n\\ end"}

PACK = {"F64": "d", "F32": "f", "F16": "H", "BF16": "H", "I64": "q", "I32": "i",
        "I16": "h", "I8": "b", "U8": "B", "BOOL": "B"}
SIZE = {k: struct.calcsize("<" + v) for k, v in PACK.items()}
DECODED = {"extra.f16": [1.0, -2.0], "extra.bf16": [1.0, 3.140625]}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what)


def expected_bytes(dtype, values):
    return struct.pack("<%d%s" % (len(values), PACK[dtype]), *values)


def parse(blob):
    """A strict plain-Python reader: returns (header items in order, data section)."""
    (n,) = struct.unpack("<Q", blob[:8])
    check(2 <= n <= len(blob) - 8, f"header length {n} within the file")
    text = blob[8:8 + n].decode("utf-8")
    pairs = json.loads(text, object_pairs_hook=lambda p: p)
    names = [k for k, _ in pairs]
    check(len(names) == len(set(names)), "no duplicate keys")
    return n, text, pairs, blob[8 + n:]


def check_c_file(path):
    blob = open(path, "rb").read()
    n, text, pairs, data = parse(blob)
    check((8 + n) % 8 == 0, f"data section starts 8-byte aligned (at {8 + n})")
    check(text.rstrip(" ").endswith("}"), "the JSON is followed by nothing but space padding")
    check(pairs[0][0] == "__metadata__", "__metadata__ comes first")
    meta = dict(pairs[0][1])
    check(meta == METADATA, f"metadata {meta}")
    check(all(isinstance(v, str) for v in meta.values()), "metadata values are strings")
    ref = reference()
    entries = pairs[1:]
    check([k for k, _ in entries] == [r[0] for r in ref], "tensors in insertion order")
    spans = []
    for (name, dtype, shape, values), (_, info) in zip(ref, entries):
        info = dict(info)
        check(info["dtype"] == dtype and info["shape"] == shape, f"{name}: dtype/shape {info}")
        b, e = info["data_offsets"]
        spans.append((b, e))
        check(b % SIZE[dtype] == 0, f"{name}: begins at {b}, aligned to {SIZE[dtype]}")
        check(data[b:e] == expected_bytes(dtype, values), f"{name}: bytes")
    spans.sort()
    pos = 0
    for b, e in spans:
        check(b == pos, f"ranges tile the data without gaps or overlaps (at {pos})")
        pos = e
    check(pos == len(data), "ranges cover the data exactly")
    return {k: dict(v) for k, v in entries}, data


def torch_tensors(torch, infos, data):
    dt = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
          "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
          "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
    out = {}
    for name, info in infos.items():
        b, e = info["data_offsets"]
        if e == b:
            out[name] = torch.empty(info["shape"], dtype=dt[info["dtype"]])
        else:
            out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=dt[info["dtype"]]).reshape(info["shape"])
    return out


def check_with_torch(torch, tensors, source):
    dt = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
          "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
          "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
    for name, dtype, shape, values in reference():
        t = tensors.get(name)
        vals = DECODED.get(name, values)
        want = torch.tensor(vals, dtype=dt[dtype]).reshape(shape)
        check(t is not None and t.dtype == want.dtype and list(t.shape) == shape and torch.equal(t, want),
              f"{source}: {name} values")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, bias=False)
            self.bn = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(4, 2)

    net = Net()
    state = {k: v for k, v in tensors.items() if not k.startswith("extra.")}
    try:
        net.load_state_dict(state, strict=True)
        ok = True
    except RuntimeError as exc:
        print(exc)
        ok = False
    check(ok, f"{source}: load_state_dict(strict=True)")
    check(int(net.bn.num_batches_tracked) == 7, f"{source}: num_batches_tracked")
    check(torch.equal(net.fc.bias.detach(), torch.tensor([0.5, -0.5])), f"{source}: fc.bias")


def python_writer_bytes():
    """The reference written the way other tools do: keys sorted, data in name order,
    __metadata__ last, header padded with spaces (no alignment of individual tensors)."""
    ref = sorted(reference(), key=lambda r: r[0])
    header, chunks, pos = {}, [], 0
    for name, dtype, shape, values in ref:
        raw = expected_bytes(dtype, values)
        header[name] = {"shape": shape, "dtype": dtype, "data_offsets": [pos, pos + len(raw)]}
        chunks.append(raw)
        pos += len(raw)
    header["__metadata__"] = METADATA
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def main():
    writer = find_writer()
    try:
        import torch
    except ImportError:
        torch = None
    scratch = os.environ.get("PT_TEST_TMP") or None
    if scratch:
        os.makedirs(scratch, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        c_path = os.path.join(tmp, "from_c.safetensors")
        r = subprocess.run([writer, "--write-reference", c_path], capture_output=True, text=True)
        check(r.returncode == 0, f"--write-reference: {r.stderr}")
        infos, data = check_c_file(c_path)

        py_path = os.path.join(tmp, "from_python.safetensors")
        with open(py_path, "wb") as f:
            f.write(python_writer_bytes())
        r = subprocess.run([writer, "--check-reference", py_path], capture_output=True, text=True)
        check(r.returncode == 0, f"C reader on the Python-written file: {r.stderr}")

        bad_path = os.path.join(tmp, "truncated.safetensors")
        blob = python_writer_bytes()
        for cut in (4, 8 + 10, len(blob) - 1):
            with open(bad_path, "wb") as f:
                f.write(blob[:cut])
            r = subprocess.run([writer, "--check-reference", bad_path], capture_output=True, text=True)
            check(r.returncode == 1 and ("truncated" in r.stderr or "past the end" in r.stderr),
                  f"C reader rejects a {cut}-byte prefix cleanly (rc {r.returncode}: {r.stderr.strip()})")

        if torch is None:
            print("plain-Python checks:", "FAILED" if failures else "passed")
            print("skipped: torch is not installed (Debian package python3-torch)")
            sys.exit(1 if failures else 77)
        check_with_torch(torch, torch_tensors(torch, infos, data), "C file via torch.frombuffer")

        try:
            from safetensors import safe_open
            from safetensors.torch import load_file, save_file
        except ImportError:
            print("note: the safetensors package is not installed; checked with plain Python + torch")
        else:
            check_with_torch(torch, load_file(c_path), "C file via safetensors.torch.load_file")
            with safe_open(c_path, framework="pt") as f:
                check(f.metadata() == METADATA, "metadata via safe_open")
            st_path = os.path.join(tmp, "from_safetensors.safetensors")
            tensors = load_file(c_path)
            save_file(tensors, st_path, metadata=METADATA)
            r = subprocess.run([writer, "--check-reference", st_path], capture_output=True, text=True)
            check(r.returncode == 0, f"C reader on a safetensors.torch.save_file file: {r.stderr}")

    print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
