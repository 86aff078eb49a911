"""`polytrain eval` on a run's checkpoint without --data evaluates on the run's own
validation split, as RUN/config.json records it: a folder dataset trained with
--val-split 0.5 is evaluated on the held-out half (eval's count is the run's val_count in
metrics.jsonl, and its top-1 the run's), while an explicit --data keeps its own defaults
(--val-split 0.1: another count). --confusion's diagonal is --json's top-1 x count.
Plain /usr/bin/python3, no numpy: the PNGs are written here."""

import csv
import json
import os
import random
import struct
import subprocess
import sys
import zlib

from ptcheck import CLI, check, finish, run_cli, scratch_dir

TMP = scratch_dir("eval_run.")
CLASSES = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210)}
PER_CLASS = 20
SIDE = 16


def write_png(path, w, h, rgb_rows):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    raw = b"".join(b"\x00" + bytes(row) for row in rgb_rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_folder(root):
    rnd = random.Random(7)
    for name, (r, g, b) in CLASSES.items():
        os.makedirs(os.path.join(root, name))
        for i in range(PER_CLASS):
            rows = []
            for y in range(SIDE):
                row = []
                for x in range(SIDE):
                    n = rnd.randint(-40, 40)
                    row += [min(255, max(0, c + n)) for c in (r, g, b)]
                rows.append(row)
            write_png(os.path.join(root, name, "%02d.png" % i), SIDE, SIDE, rows)


def run(args):
    # packed caches of an explicit --data go under $XDG_CACHE_HOME: keep them in the scratch dir
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(TMP, "xdg"))
    p = subprocess.run([CLI] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600, stdin=subprocess.DEVNULL, env=env)
    if p.returncode:
        print("exit %d\n%s" % (p.returncode, p.stderr[-2000:]))
    return p.returncode, p.stdout, p.stderr


def main():
    data = os.path.join(TMP, "shapes")
    make_folder(data)
    out = os.path.join(TMP, "run")
    code, _ = run_cli(["train", "--data", "folder:" + data, "--val-split", "0.5", "--cache",
                       os.path.join(TMP, "cache"), "--epochs", "1", "--batch-per-device", "8",
                       "--no-progress", "--out", out])
    if not check(code == 0, "a run trains on a folder dataset with --val-split 0.5"):
        return finish()
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rec = [json.loads(line) for line in f if line.strip()][-1]
    check(rec["val_count"] == len(CLASSES) * PER_CLASS // 2, "the run validated on half the "
          "images (%d)" % rec["val_count"])

    conf = os.path.join(TMP, "confusion.csv")
    rc, outp, err = run(["eval", "--checkpoint", os.path.join(out, "last"), "--json",
                         "--confusion", conf])
    check(rc == 0, "eval without --data exits 0")
    ev = json.loads(outp)
    check("evaluating on the run's validation split: folder:" in err and "--val-split 0.5" in err,
          "eval says it uses the run's validation split: %s" % err.strip())
    check(ev["run_validation"] and ev["count"] == rec["val_count"],
          "eval's count (%d) is the run's val_count (%d)" % (ev["count"], rec["val_count"]))
    check(round(ev["top1"] * ev["count"]) == round(rec["val_top1"] * rec["val_count"]),
          "eval's top-1 (%.4f) is the run's (%.4f)" % (ev["top1"], rec["val_top1"]))
    check(ev["batch_per_device"] == 8, "eval takes the run's --batch-per-device")
    with open(conf, newline="") as f:
        rows = list(csv.reader(f))
    m = [[int(v) for v in r[1:]] for r in rows[1:]]
    check(sorted(rows[0][1:]) == sorted(CLASSES), "confusion.csv names the folder's classes")
    check(sum(map(sum, m)) == ev["count"], "confusion.csv sums to eval's count")
    check(sum(m[i][i] for i in range(len(m))) == round(ev["top1"] * ev["count"]),
          "confusion.csv's diagonal is eval's top-1 x count")

    rc, outp, _ = run(["eval", "--checkpoint", os.path.join(out, "last")])
    check(rc == 0 and "evaluating on the run's validation split" in outp,
          "the text output says so too")
    rc, outp, _ = run(["eval", "--checkpoint", os.path.join(out, "last"), "--json", "--data",
                       "folder:" + data])
    ev2 = json.loads(outp) if rc == 0 else {}
    check(rc == 0 and not ev2["run_validation"] and ev2["count"] != rec["val_count"],
          "an explicit --data keeps its own defaults (%s samples)" % ev2.get("count"))
    rc, outp, _ = run(["eval", "--checkpoint", os.path.join(out, "last"), "--json", "--limit-val",
                       "5"])
    check(rc == 0 and json.loads(outp)["count"] == 5, "--limit-val still limits the run's split")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
