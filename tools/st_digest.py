"""SHA-256 of what a safetensors file holds, without its metadata: every tensor's name, dtype,
shape and bytes, in name order. Two checkpoints of the same weights written by different runs
differ in their metadata (each run stamps its own id, epoch and step into `__metadata__`), so
comparing whole files says nothing; this compares what they compute.

  python3 tools/st_digest.py A.safetensors [B.safetensors ...]    # one "DIGEST  FILE" line each
  python3 tools/st_digest.py --same A.safetensors B.safetensors   # exit 0 when the tensors are equal

Only the standard library. Exit codes: 0 done (--same: equal), 1 --same: different, 2 a file
that cannot be read as safetensors (the reason is printed)."""

import hashlib
import json
import struct
import sys


def digest(path):
    """The hex digest of the tensors of one file; ValueError naming what is wrong."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: %d bytes, shorter than the 8-byte header length" % (path, len(blob)))
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError("%s: header of %d bytes in a file of %d" % (path, n, len(blob)))
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError("%s: the header is not JSON (%s)" % (path, e))
    if not isinstance(header, dict):
        raise ValueError("%s: the header is not a JSON object" % path)
    data = blob[8 + n:]
    h = hashlib.sha256()
    for name in sorted(k for k in header if k != "__metadata__"):
        t = header[name]
        try:
            begin, end = (int(v) for v in t["data_offsets"])
            dtype, shape = str(t["dtype"]), [int(d) for d in t["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError("%s: tensor %r lacks dtype, shape or data_offsets" % (path, name))
        if not 0 <= begin <= end <= len(data):
            raise ValueError("%s: tensor %r at bytes %d..%d of %d" % (path, name, begin, end, len(data)))
        h.update(json.dumps([name, dtype, shape]).encode("utf-8"))
        h.update(struct.pack("<Q", end - begin))
        h.update(data[begin:end])
    return h.hexdigest()


def main(argv):
    same = argv[:1] == ["--same"]
    files = argv[1:] if same else argv
    if not files or (same and len(files) != 2) or any(f.startswith("-") for f in files):
        print("usage: st_digest.py FILE... | --same A B", file=sys.stderr)
        return 2
    try:
        digests = [digest(f) for f in files]
    except (OSError, ValueError) as e:
        print("st_digest.py: error: %s" % e, file=sys.stderr)
        return 2
    if same:
        return 0 if digests[0] == digests[1] else 1
    for d, f in zip(digests, files):
        print("%s  %s" % (d, f))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
