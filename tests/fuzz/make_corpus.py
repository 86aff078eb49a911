#!/usr/bin/python3
"""Regenerates the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<target>/) with the
real writers where there are any: `polytrain synth` (a TinyImageNet tree of JPEGs and its
annotation files), `polytrain train` on it (config.json), `polytrain pack` (a packed cache),
test_safetensors --write-reference (a safetensors file from pt_st_writer); IDX and PNG files
from the byte layouts (tests/python/pngs.py), and small edge cases of each format. Files named
regress-* are inputs that once made a reader fail and are kept as they are.

usage: tests/fuzz/make_corpus.py BUILD_DIR   (a build with the polytrain CLI and test_safetensors)"""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import pngs  # noqa: E402


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def idx(magic_dims, dims, payload):
    return struct.pack(">I", 0x800 | magic_dims) + b"".join(struct.pack(">I", d) for d in dims) + payload


def safetensors(header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    build = os.path.abspath(sys.argv[1])
    cli = os.path.join(build, "polytrain")
    tmp = tempfile.mkdtemp(prefix="pt-corpus-")
    try:
        # ---- a tiny TinyImageNet tree: JPEGs and the annotation files
        synth = os.path.join(tmp, "synth")
        run(cli, "synth", "--out", synth, "--classes", "3", "--train-per-class", "4", "--val-per-class", "2",
            "--size", "8", "--gray-fraction", "0.3", "--threads", "1", "--no-progress")
        for name in ("wnids.txt", "words.txt"):
            with open(os.path.join(synth, name), "rb") as f:
                out("json", "not-json-" + name, f.read()[:300])
        with open(os.path.join(synth, "wnids.txt"), "rb") as f:
            wnids = f.read()
        with open(os.path.join(synth, "words.txt"), "rb") as f:
            words = f.read()
        with open(os.path.join(synth, "val", "val_annotations.txt"), "rb") as f:
            val = f.read()
        # the harness's tree: classes n01443537, n01629819, n01641577; val images val_0..2
        ids = [b"n01443537", b"n01629819", b"n01641577"]
        tw = b"\n".join(ids) + b"\n"
        twords = b"n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n" \
                 b"n01641577\tbullfrog, Rana catesbeiana\nn99999999\tunused\n"
        tval = b"val_0.JPEG\tn01443537\t0\t0\t62\t62\nval_1.JPEG\tn01629819\t1\t2\t3\t4\nval_2.png\tn01443537\n"
        out("tinyimagenet", "valid", tw + b"\0" + twords + b"\0" + tval)
        out("tinyimagenet", "crlf-no-words", tw.replace(b"\n", b"\r\n") + b"\0\0" + tval.replace(b"\n", b"\r\n"))
        out("tinyimagenet", "two-classes", b"n01443537\nn01629819\0" + twords + b"\0" + tval[:42])
        out("tinyimagenet", "synth-files", wnids + b"\0" + words + b"\0" + val)
        out("tinyimagenet", "unknown-class", tw + b"\0" + twords + b"\0val_0.JPEG\tn00000000\n")
        out("tinyimagenet", "duplicate", tw + tw + b"\0\0" + tval)
        out("tinyimagenet", "bad-names", tw + b"\0" + twords + b"\0../x\tn01443537\n\tn01443537\nval_9.JPEG\tn01443537\n")
        out("tinyimagenet", "only-wnids", tw)
        jpegs = []
        for root, _, files in os.walk(os.path.join(synth, "train")):
            jpegs += [os.path.join(root, f) for f in sorted(files)]
        jpegs.sort()
        for i, p in enumerate(jpegs[:6]):
            with open(p, "rb") as f:
                data = f.read()
            out("jpeg", "synth-%d.jpeg" % i, data)
            if i == 0:
                out("jpeg", "truncated.jpeg", data[: len(data) // 2])
                out("png", "a-jpeg", data)

        # ---- a training run's config.json
        runs = os.path.join(tmp, "run")
        run(cli, "train", "--data", "tinyimagenet:" + synth, "--epochs", "1", "--batch-per-device", "4",
            "--limit-train", "8", "--limit-val", "4", "--out", runs, "--no-progress", "--backend", "cpu",
            "--no-cache", "--optimizer", "adam", "--schedule", "cosine")
        with open(os.path.join(runs, "config.json"), "rb") as f:
            cfg = f.read()
        out("config", "run-config.json", cfg)
        out("json", "run-config.json", cfg)
        c = json.loads(cfg)
        c["options"]["epochs"] = "3"
        c["options"]["seed"] = 18446744073709551615
        out("config", "wrong-types.json", json.dumps(c))
        out("config", "options-only.json", json.dumps(c["options"]))
        out("config", "minimal.json", '{"options":{"model":"baseline","lr":0.5,"epochs":2}}')
        out("config", "resumes.json", '{"options":{},"resolved":{"global_batch":12},"resumes":[{"time":"x","changes":{}}]}')
        out("config", "empty-object.json", "{}")
        with open(os.path.join(runs, "metrics.jsonl"), "rb") as f:
            out("json", "metrics-line.json", f.readline())

        # ---- a packed cache of the tree
        run(cli, "pack", "--data", "tinyimagenet:" + synth, "--out", os.path.join(tmp, "val.ptpack"), "--split", "val",
            "--size", "4x4", "--threads", "1", "--no-progress")
        run(cli, "pack", "--data", "tinyimagenet:" + synth, "--out", os.path.join(tmp, "gray.ptpack"),
            "--split", "train", "--size", "2x3", "--grayscale", "--threads", "1", "--no-progress")
        for n in ("val", "gray"):
            with open(os.path.join(tmp, n + ".ptpack"), "rb") as f:
                data = f.read()
            out("pack", n + ".ptpack", data)
        out("pack", "header-only.ptpack", data[:200])

        # ---- safetensors: the reference file of pt_st_writer, and edge cases
        ref = os.path.join(tmp, "ref.safetensors")
        run(os.path.join(build, "tests", "test_safetensors"), "--write-reference", ref)
        with open(ref, "rb") as f:
            out("safetensors", "reference.safetensors", f.read())
        out("safetensors", "empty.safetensors", safetensors({}))
        out("safetensors", "meta-only.safetensors", safetensors({"__metadata__": {"model": "baseline", "epoch": "1"}}))
        out("safetensors", "scalar-and-empty.safetensors", safetensors(
            {"s": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
             "z": {"dtype": "F16", "shape": [0, 3], "data_offsets": [8, 8]},
             "b": {"dtype": "BOOL", "shape": [2], "data_offsets": [8, 10]}}, bytes(10)))
        out("safetensors", "all-dtypes.safetensors", safetensors(
            {n: {"dtype": n, "shape": [1], "data_offsets": [o, o + s]} for n, s, o in
             (("F64", 8, 0), ("I64", 8, 8), ("F32", 4, 16), ("I32", 4, 20), ("F16", 2, 24), ("BF16", 2, 26),
              ("I16", 2, 28), ("I8", 1, 30), ("U8", 1, 31))}, bytes(32)))
        out("safetensors", "past-end.safetensors", safetensors(
            {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 9999]}}, bytes(16)))
        out("safetensors", "huge-shape.safetensors", safetensors(
            {"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 0]}}))

        # ---- IDX, raw and gzip
        imgs = idx(3, (3, 4, 5), bytes(range(60)))
        labels = idx(1, (3,), b"\x00\x01\x09")
        out("idx", "images.idx", imgs)
        out("idx", "labels.idx", labels)
        out("idx", "images.idx.gz", gzip.compress(imgs, mtime=0))
        out("idx", "labels.idx.gz", gzip.compress(labels, mtime=0))
        out("idx", "truncated.idx", imgs[:-7])
        out("idx", "extra.idx", labels + b"\x05")
        out("idx", "huge-count.idx.gz", gzip.compress(idx(3, (100000000, 28, 28), bytes(4096)), mtime=0))
        out("idx", "zero-dim.idx", idx(3, (2, 0, 5), b""))

        # ---- PNG: every colour type and depth the reader converts
        pdir = os.path.join(tmp, "png")
        os.makedirs(pdir)
        for i, (w, h, ch, depth) in enumerate([(3, 2, 1, 8), (2, 3, 2, 8), (4, 1, 3, 8), (1, 1, 4, 8),
                                               (2, 2, 3, 16), (5, 3, 1, 16)]):
            p = os.path.join(pdir, "p%d.png" % i)
            pngs.write_png(p, w, h, channels=ch, depth=depth, seed=i)
            with open(p, "rb") as f:
                out("png", "c%d-d%d-%dx%d.png" % (ch, depth, w, h), f.read())
        with open(os.path.join(pdir, "p0.png"), "rb") as f:
            small = f.read()
        out("png", "truncated.png", small[:40])
        import zlib
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        sig = b"\x89PNG\r\n\x1a\n"
        pal = sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 2, 3, 0, 0, 0)) + \
            chunk(b"PLTE", bytes([255, 0, 0, 0, 255, 0, 0, 0, 255])) + chunk(b"tRNS", b"\x80") + \
            chunk(b"IDAT", zlib.compress(b"\x00\x24\x00\x90")) + chunk(b"IEND", b"")
        out("png", "palette-trns-2bit.png", pal)
        gray1 = sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 9, 2, 1, 0, 0, 0, 1)) + \
            chunk(b"IDAT", zlib.compress(bytes(16))) + chunk(b"IEND", b"")
        out("png", "gray-1bit-interlaced.png", gray1)

        # ---- JSON edge cases
        for name, text in [("nested", '{"a":[1,-2.5e-3,true,false,null,{"b":"\\u00e9\\ud83d\\ude00\\n"}]}'),
                           ("numbers", "[0,-0,1e308,-1e-308,9223372036854775807,-9223372036854775808,"
                                       "18446744073709551616,0.1,1E+2]"),
                           ("deep", "[" * 70 + "]" * 70), ("string", '"tab\\t quote\\" slash\\/ \\b\\f\\r"'),
                           ("dup-key", '{"a":1,"a":2}'), ("trailing", '{"a":1} x'),
                           ("lone-surrogate", '"\\ud800"'), ("header", '{"__metadata__":{"framework":"polytrain"}}')]:
            out("json", name + ".json", text)

        # ---- command lines (NUL-separated arguments)
        for name, argv in [("defaults", []), ("help", ["--help"]),
                           ("typical", ["--model", "resnet18", "--epochs", "5", "--lr=0.05", "--no-nesterov",
                                        "--batch-per-device", "128", "--seed", "7", "--out", "runs/x"]),
                           ("big-seed", ["--seed", "18446744073709551615"]),
                           ("ranges", ["--val-split", "0.999999", "--limit-train", "1000000000000000",
                                       "--warmup-epochs=1e6", "--loader-threads", "256"]),
                           ("bad", ["--epochs", "0x10", "--lr", "nan", "-x", "positional"]),
                           ("flag-value", ["--no-progress=1", "--", "--epochs"]),
                           ("missing-value", ["--data"])]:
            out("args", name, b"\0".join(a.encode() for a in argv))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
