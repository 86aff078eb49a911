"""`polytrain report RUN` on a tiny real run: every file it lists exists, its PNGs are real
PNGs of a sane size, confusion.csv sums to the validation count and its diagonal is the
top-1 that eval --json and metrics.jsonl report for the checkpoint's epoch, per_class.csv
agrees with confusion.csv, index.html parses and links only to files that exist, a run
directory that is not one is refused, and without gnuplot the page and CSV files are still
written. Also eval: --confusion against --json, --per-class, and a run's own validation split
(a folder dataset split 50/50) when --data is not given. Plain /usr/bin/python3, no numpy."""

import csv
import html.parser
import json
import os
import struct
import subprocess
import sys
import zlib

from ptcheck import CLI, check, finish, run_cli, scratch_dir

TMP = scratch_dir("report.")
RUN = os.path.join(TMP, "run")


def run(args, env=None):
    """(exit code, stdout, stderr) of polytrain args."""
    p = subprocess.run([CLI] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600, stdin=subprocess.DEVNULL, env=env)
    return p.returncode, p.stdout, p.stderr


def png_size(path):
    """(width, height) from a PNG's IHDR, or None when the file is not a PNG."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    length, = struct.unpack(">I", data[8:12])
    crc, = struct.unpack(">I", data[16 + length:20 + length])
    if length != 13 or crc != zlib.crc32(data[12:16 + length]) or not data.endswith(b"IEND\xaeB`\x82"):
        return None
    return struct.unpack(">II", data[16:24])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for k, v in attrs:
            if (tag == "img" and k == "src") or (tag == "a" and k == "href"):
                self.refs.append(v)


def check_report(out, summary):
    files = summary["files"]
    for name in files:
        check(os.path.isfile(os.path.join(out, name)), "report lists %s and it exists" % name)
    for name in ("loss.png", "accuracy.png", "lr.png", "confusion.png", "per_class.png",
                 "misclassified.png", "index.html", "confusion.csv", "per_class.csv", "report.json"):
        check(name in files, "report.json lists %s" % name)
    for name in files:
        if name.endswith(".png"):
            size = png_size(os.path.join(out, name))
            ok = size is not None and 64 <= size[0] <= 4000 and 64 <= size[1] <= 4000
            check(ok, "%s is a PNG of a sane size (%s)" % (name, size))
    mis = [n for n in files if n.startswith("misclassified/")]
    check(len(mis) == summary["misclassified"]["shown"] > 0,
          "%d misclassified images, as report.json says" % len(mis))
    check(png_size(os.path.join(out, mis[0])) == (112, 112),
          "a 28x28 sample is shown upscaled to 112x112")
    page = Links()
    with open(os.path.join(out, "index.html"), encoding="utf-8") as f:
        page.feed(f.read())
    page.close()
    check("script" not in page.tags, "index.html has no script")
    bad = [r for r in page.refs if "://" in r or r.startswith("/") or
           not os.path.isfile(os.path.join(out, r))]
    check(page.refs and not bad, "index.html's %d links and images exist in the report "
          "(bad: %s)" % (len(page.refs), bad[:5]))
    imgs = [r for r in page.refs if r.endswith(".png")]
    check(set(mis) <= set(imgs), "index.html shows every misclassified image")


def main():
    code, _ = run_cli(["train", "--model", "baseline", "--epochs", "2", "--limit-train", "1024",
                       "--limit-val", "256", "--log-steps", "--no-progress", "--out", RUN])
    if not check(code == 0, "a tiny run trains"):
        return finish()
    rc, out, err = run(["report", RUN, "--json"])
    check(rc == 0, "report exits 0 (%s)" % err[-300:])
    summary = json.loads(out)
    report = os.path.join(RUN, "report")
    check(summary["report"] == report, "the report goes to RUN/report")
    check("evaluating on the run's validation split" in err, "report says what it evaluates on")
    check_report(report, summary)

    # confusion.csv: counts, against eval and the run's own record
    rows = read_csv(os.path.join(report, "confusion.csv"))
    names = rows[0][1:]
    k = len(names)
    check(k == 10 and len(rows) == k + 1 and all(len(r) == k + 1 for r in rows),
          "confusion.csv is a %dx%d table with a header row and column" % (k, k))
    check([r[0] for r in rows[1:]] == names, "its rows and columns name the same classes")
    m = [[int(v) for v in r[1:]] for r in rows[1:]]
    total = sum(map(sum, m))
    diag = sum(m[i][i] for i in range(k))
    recs = metrics(RUN)
    best = [r for r in recs if r.get("best")][-1]
    check(total == 256 == best["val_count"], "the counts sum to the validation count (%d)" % total)
    check(summary["checkpoint_epoch"] == best["epoch"], "best/ is epoch %d" % best["epoch"])
    check(diag == round(best["val_top1"] * best["val_count"]),
          "the diagonal (%d) is metrics.jsonl's val_top1 x val_count of epoch %d (%.6f)"
          % (diag, best["epoch"], best["val_top1"]))
    evc = os.path.join(TMP, "eval_confusion.csv")
    rc, out, err = run(["eval", "--checkpoint", os.path.join(RUN, "best"), "--json", "--per-class",
                        "--confusion", evc])
    check(rc == 0, "eval --json --per-class --confusion exits 0 (%s)" % err[-300:])
    ev = json.loads(out)
    check(ev["run_validation"] and ev["count"] == 256, "eval without --data uses the run's "
          "validation split (%d samples)" % ev["count"])
    check(diag == round(ev["top1"] * ev["count"]) == ev["correct"],
          "the diagonal is eval's top1 x count (%.6f x %d)" % (ev["top1"], ev["count"]))
    check(read_csv(evc) == rows, "eval --confusion writes the report's confusion.csv")
    check(summary["correct"] == diag and summary["count"] == 256, "report.json says the same")

    # per_class.csv against confusion.csv, and eval's per_class array
    pc = read_csv(os.path.join(report, "per_class.csv"))
    check(pc[0][:5] == ["class", "count", "correct", "accuracy", "most_confused_with"],
          "per_class.csv's header")
    ok = len(pc) == k + 1
    for i, r in enumerate(pc[1:]):
        others = [(m[i][j], -j) for j in range(k) if j != i]
        top = max(others)
        want = names[-top[1]] if top[0] > 0 else ""
        ok &= (r[0] == names[i] and int(r[1]) == sum(m[i]) and int(r[2]) == m[i][i]
               and abs(float(r[3]) - m[i][i] / sum(m[i])) < 1e-6 and r[4] == want)
    check(ok, "per_class.csv's counts, accuracies and most-confused classes agree with "
          "confusion.csv")
    check([c["correct"] for c in ev["per_class"]] == [m[i][i] for i in range(k)],
          "eval --json's per_class array agrees too")

    # refusals
    rc, out, err = run(["report", TMP])
    check(rc == 1 and "is not a run directory" in err, "a folder without config.json is "
          "refused with exit 1: %s" % err.strip())
    rc, out, err = run(["report", RUN, "--no-such-option"])
    check(rc == 2 and "unknown option" in err, "an unknown option exits 2")
    rc, out, err = run(["report", RUN, "--out", TMP])
    check(rc == 1 and "not replacing it" in err, "--out never replaces a folder that holds no "
          "report: %s" % err.strip())

    # no gnuplot on PATH: the page and CSV files without plots
    empty = os.path.join(TMP, "empty-path")
    os.makedirs(empty, exist_ok=True)
    out2 = os.path.join(TMP, "report-nogp")
    rc, out, err = run(["report", RUN, "--out", out2, "--json", "--max-misclassified", "4"],
                       env=dict(os.environ, PATH=empty))
    check(rc == 0 and "gnuplot-nox" in err, "without gnuplot report says so, naming the package, "
          "and exits 0: %s" % err.strip()[-200:])
    s2 = json.loads(out)
    check(not s2["plots"] and not os.path.exists(os.path.join(out2, "loss.png")),
          "no plots are claimed or written")
    check(all(os.path.isfile(os.path.join(out2, f)) for f in
              ("index.html", "confusion.csv", "per_class.csv", "report.json")),
          "the page and the CSV files are written")
    check(s2["misclassified"]["shown"] == 4, "--max-misclassified 4 shows 4 images")
    with open(os.path.join(out2, "index.html"), encoding="utf-8") as f:
        check("gnuplot-nox" in f.read(), "the page says why the plots are missing")
    rc, _, err = run(["report", RUN, "--out", out2, "--json"], env=dict(os.environ, PATH=empty))
    check(rc == 0, "a report is replaced by the next one")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
