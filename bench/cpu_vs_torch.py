#!/usr/bin/python3
"""polytrain's cpu backend against PyTorch's CPU training, side by side, in one invocation.

For each configuration (model:batch) and each repetition, runs `polytrain bench` and
tools/bench_torch.py (same model, batch, input, classes, threads, SGD with Nesterov momentum
0.9 and weight decay 5e-4, random data) one after the other, alternating which goes first,
and, once per repetition, `polytrain bench --sgemm` (the cpu backend's OpenBLAS kernel on a
large SGEMM: the peak). Each process measures its own median step time; the report takes the
median over repetitions of those medians, and the ratio polytrain/PyTorch of each repetition
(both measured within seconds of each other), so that a machine whose speed drifts still
gives fair ratios. Peak memory is each process's VmHWM (/proc/self/status), read the same
way on both sides. With --per-op, one more polytrain run per configuration gives time per
op kind (it synchronises after every op, so it is not used for the step time).

  /usr/bin/python3 bench/cpu_vs_torch.py --polytrain build/polytrain          # ~5 minutes
  /usr/bin/python3 bench/cpu_vs_torch.py --polytrain build/polytrain --reps 2 --quick
  /usr/bin/python3 bench/cpu_vs_torch.py --polytrain build/polytrain --precision bf16

--precision bf16 times polytrain's --precision bf16 against PyTorch's CPU autocast(bfloat16)
(the same alternation), and in each repetition both sides' fp32 step as well, so that the
report also gives each side's bf16 step as a fraction of its own fp32 step.

Writes bench/results/<UTC date>-cpu-vs-torch/{report.md,report.json} (or --out DIR).
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_SCRIPT = os.path.join(ROOT, "tools", "bench_torch.py")


def parse_config(text):
    try:
        model, batch = text.split(":")
        batch = int(batch)
    except ValueError:
        raise argparse.ArgumentTypeError("--config expects MODEL:BATCH, got %r" % text)
    if batch < 1:
        raise argparse.ArgumentTypeError("--config %r: batch must be positive" % text)
    return model, batch


def run(cmd, what):
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.stderr.write("cpu_vs_torch: %s failed (exit %d): %s\n%s%s" % (
            what, p.returncode, " ".join(cmd), p.stdout[-2000:], p.stderr[-2000:]))
        sys.exit(1)
    return p.stdout, time.time() - t0


def last_json_line(text, what):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    sys.stderr.write("cpu_vs_torch: %s printed no JSON:\n%s\n" % (what, text[-2000:]))
    sys.exit(1)


def polytrain_bench(a, model, batch, per_op=False, precision=None):
    cmd = [a.polytrain, "bench", "--backend", "cpu", "--model", model, "--batch", str(batch),
           "--input", "%dx%dx%d" % a.input, "--classes", str(a.classes),
           "--threads", str(a.threads), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--precision", precision or a.precision, "--json"]
    if per_op:
        cmd.append("--per-op")
    out, wall = run(cmd, "polytrain bench")
    r = last_json_line(out, "polytrain bench")
    r["wall_s"] = wall
    return r


def torch_bench(a, model, batch, precision=None):
    precision = precision or a.precision
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "torch.json")
        cmd = [a.python, TORCH_SCRIPT, "--model", model, "--batch", str(batch),
               "--input", "%d,%d,%d" % a.input, "--classes", str(a.classes),
               "--threads", str(a.threads), "--steps", str(a.steps), "--warmup", str(a.warmup),
               "--device", "cpu", "--json", path]
        if precision == "bf16":
            cmd += ["--amp", "bf16"]
        _, wall = run(cmd, "tools/bench_torch.py")
        with open(path) as f:
            r = json.load(f)
    r["wall_s"] = wall
    return r


def sgemm_peak(a):
    out, _ = run([a.polytrain, "bench", "--backend", "cpu", "--sgemm", str(a.sgemm),
                  "--threads", str(a.threads), "--steps", "5", "--warmup", "2", "--json"],
                 "polytrain bench --sgemm")
    return last_json_line(out, "polytrain bench --sgemm")


def med(v):
    return statistics.median(v) if v else None


def summarise(model, batch, runs_pt, runs_th, peak):
    gflop_img = runs_pt[0]["forward_gflop_per_image"]
    step_flop = 3.0 * gflop_img * 1e9 * batch  # forward + two backward GEMM passes
    pt_ms = [r["train_step_ms"] for r in runs_pt]
    th_ms = [r["median_step_ms"] for r in runs_th]
    ratios = [p / t for p, t in zip(pt_ms, th_ms)]
    s = {
        "model": model, "batch": batch, "reps": len(pt_ms),
        "gflop_per_step": step_flop / 1e9,
        "polytrain_step_ms": med(pt_ms), "torch_step_ms": med(th_ms),
        "polytrain_step_ms_all": pt_ms, "torch_step_ms_all": th_ms,
        "ratio_all": ratios, "ratio_median": med(ratios),
        "ratio_of_medians": med(pt_ms) / med(th_ms),
        "polytrain_img_per_s": batch / (med(pt_ms) / 1e3),
        "torch_img_per_s": batch / (med(th_ms) / 1e3),
        "polytrain_gflop_per_s": step_flop / (med(pt_ms) / 1e3) / 1e9,
        "torch_gflop_per_s": step_flop / (med(th_ms) / 1e3) / 1e9,
        "polytrain_eval_img_per_s": med([r["eval_img_per_s"] for r in runs_pt]),
        "torch_eval_img_per_s": med([r["eval_img_per_s"] for r in runs_th]),
        "polytrain_peak_mem_bytes": max(r["peak_mem_bytes"] for r in runs_pt),
        "torch_peak_mem_bytes": max(r["peak_mem_bytes"] for r in runs_th),
    }
    s["eval_ratio_median"] = med([p["eval_img_per_s"] / t["eval_img_per_s"]
                                  for p, t in zip(runs_pt, runs_th)])
    s["polytrain_share_of_peak"] = s["polytrain_gflop_per_s"] / peak
    s["torch_share_of_peak"] = s["torch_gflop_per_s"] / peak
    return s


def markdown(rep):
    L = []
    m = rep["machine"]
    bf16 = rep.get("precision", "fp32") != "fp32"
    L.append("# polytrain cpu backend vs PyTorch CPU training%s, %s" % (
        " in bf16 (polytrain --precision bf16, PyTorch autocast(bfloat16))" if bf16 else "", rep["date"]))
    L.append("")
    L.append("Command: `%s`" % rep["command"])
    L.append("")
    L.append("Machine: %s, %d online CPUs; %d threads each side. polytrain: %s. PyTorch %s "
             "(Debian python3-torch, oneDNN). %s" % (
                 m["cpu"], m["cpus"], rep["threads"], m["polytrain_device"],
                 m["torch_version"], rep["note"]))
    L.append("")
    L.append("Input %s, %d classes, SGD (momentum 0.9, Nesterov, weight decay 5e-4), random "
             "data; %d repetitions, polytrain and PyTorch alternating (which goes first "
             "alternates too); each run: %d warm-up steps, median of %d timed steps; "
             "the table gives the median over repetitions. Ratio = polytrain step time / "
             "PyTorch step time, per repetition, then the median."
             % ("x".join(str(v) for v in rep["input"]), rep["classes"], rep["reps"],
                rep["warmup"], rep["steps"]))
    L.append("")
    L.append("Peak: SGEMM %d^3 through the cpu backend's GEMM op (OpenBLAS, the kernel the "
             "backend selects), best of each repetition's 5 runs, then the best over "
             "repetitions: **%.1f GFLOP/s** (per repetition: %s)." % (
                 rep["sgemm_n"], rep["peak_gflop_per_s"],
                 ", ".join("%.1f" % v for v in rep["sgemm_best_all"])))
    L.append("")
    L.append("| model | batch | polytrain step | PyTorch step | ratio (median) | polytrain img/s "
             "| PyTorch img/s | polytrain GFLOP/s (share of peak) | PyTorch GFLOP/s (share) "
             "| polytrain eval img/s | PyTorch eval img/s | polytrain peak mem | PyTorch peak mem |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in rep["summary"]:
        L.append("| %s | %d | %.1f ms | %.1f ms | **%.3f** | %.1f | %.1f | %.1f (%.0f%%) | %.1f (%.0f%%) "
                 "| %.1f | %.1f | %.0f MiB | %.0f MiB |" % (
                     s["model"], s["batch"], s["polytrain_step_ms"], s["torch_step_ms"],
                     s["ratio_median"], s["polytrain_img_per_s"], s["torch_img_per_s"],
                     s["polytrain_gflop_per_s"], 100 * s["polytrain_share_of_peak"],
                     s["torch_gflop_per_s"], 100 * s["torch_share_of_peak"],
                     s["polytrain_eval_img_per_s"], s["torch_eval_img_per_s"],
                     s["polytrain_peak_mem_bytes"] / 2**20, s["torch_peak_mem_bytes"] / 2**20))
    if bf16:
        L.append("")
        L.append("Each side's bf16 step against its own fp32 step, measured in the same repetition "
                 "(median of the per-repetition ratios):")
        L.append("")
        L.append("| model | batch | polytrain bf16 | polytrain fp32 | polytrain bf16/fp32 | PyTorch bf16 "
                 "| PyTorch fp32 | PyTorch bf16/fp32 |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in rep["summary"]:
            L.append("| %s | %d | %.1f ms | %.1f ms | **%.3f** | %.1f ms | %.1f ms | %.3f |" % (
                s["model"], s["batch"], s["polytrain_step_ms"], s["polytrain_fp32_step_ms"],
                s["polytrain_own_ratio_median"], s["torch_step_ms"], s["torch_fp32_step_ms"],
                s["torch_own_ratio_median"]))
    L.append("")
    L.append("GFLOP/s counts a step as 3x the forward pass's convolution and linear FLOPs "
             "as direct convolution (the same count for both sides: %s); an implementation "
             "that does fewer multiply-adds (Winograd) shows as a higher effective rate. "
             "Peak memory is the process's VmHWM (high-water resident set) at the end of "
             "the run, the largest over repetitions, for both sides."
             % ", ".join("%s %.1f GFLOP/step" % (s["model"], s["gflop_per_step"])
                         for s in rep["summary"]))
    L.append("")
    L.append("Per repetition (polytrain ms / PyTorch ms = ratio):")
    L.append("")
    for s in rep["summary"]:
        L.append("- %s batch %d: %s" % (s["model"], s["batch"], "; ".join(
            "%.1f / %.1f = %.3f" % (p, t, r) for p, t, r in
            zip(s["polytrain_step_ms_all"], s["torch_step_ms_all"], s["ratio_all"]))))
    if rep.get("per_op"):
        L.append("")
        L.append("## polytrain time per op kind (`polytrain bench --per-op`, synchronised after "
                 "every op, one extra run)")
        for key, r in rep["per_op"].items():
            L.append("")
            L.append("%s: step %.1f ms in this run" % (key, r["train_step_ms"]))
            L.append("")
            L.append("| op kind | ms/step | share | calls/step |")
            L.append("| --- | ---: | ---: | ---: |")
            for name, v in r["per_op"].items():
                L.append("| %s | %.2f | %.1f%% | %g |" % (name, v["ms_per_step"], 100 * v["share"],
                                                          v["calls_per_step"]))
    L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--polytrain", default=os.path.join(ROOT, "build", "polytrain"),
                    help="polytrain binary (default build/polytrain)")
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="interpreter with torch (default /usr/bin/python3, Debian's)")
    ap.add_argument("--config", type=parse_config, action="append",
                    help="MODEL:BATCH, repeatable (default baseline:64 and resnet18:16)")
    ap.add_argument("--input", default="3,64,64")
    ap.add_argument("--classes", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sgemm", type=int, default=2048, help="peak SGEMM size")
    ap.add_argument("--no-per-op", dest="per_op", action="store_false")
    ap.add_argument("--quick", action="store_true", help="3 timed steps, 1 warm-up")
    ap.add_argument("--note", default="", help="a sentence for the report (machine state)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: polytrain --precision bf16 against PyTorch autocast(bfloat16), "
                         "with each side's fp32 step too")
    ap.add_argument("--out", help="output directory (default bench/results/<date>-cpu-vs-torch)")
    a = ap.parse_args()
    try:
        a.input = tuple(int(v) for v in a.input.replace("x", ",").split(","))
        assert len(a.input) == 3
    except (ValueError, AssertionError):
        ap.error("--input expects C,H,W, got %r" % a.input)
    if a.quick:
        a.steps, a.warmup = 3, 1
    if not a.config:
        a.config = [("baseline", 64), ("resnet18", 16)]
    if not os.access(a.polytrain, os.X_OK):
        ap.error("--polytrain %s: not an executable (build polytrain first)" % a.polytrain)
    date = datetime.datetime.utcnow().strftime("%Y-%m-%d")
    out_dir = a.out or os.path.join(ROOT, "bench", "results", "%s-cpu-vs-torch%s" % (
        date, "" if a.precision == "fp32" else "-" + a.precision))
    os.makedirs(out_dir, exist_ok=True)

    t_start = time.time()
    runs = {"%s:%d" % c: {"polytrain": [], "torch": [], "polytrain_fp32": [], "torch_fp32": []}
            for c in a.config}
    sgemm = []
    for rep in range(a.reps):
        sgemm.append(sgemm_peak(a))
        for model, batch in a.config:
            key = "%s:%d" % (model, batch)
            order = ("polytrain", "torch") if rep % 2 == 0 else ("torch", "polytrain")
            if a.precision != "fp32":
                order = order + tuple(s + "_fp32" for s in order)
            for side in order:
                fp32 = "fp32" if side.endswith("_fp32") else None
                r = (polytrain_bench(a, model, batch, precision=fp32) if side.startswith("polytrain")
                     else torch_bench(a, model, batch, precision=fp32))
                runs[key][side].append(r)
            p, t = runs[key]["polytrain"][-1], runs[key]["torch"][-1]
            own = ""
            if a.precision != "fp32":
                own = "; own fp32: polytrain %.3f, PyTorch %.3f" % (
                    p["train_step_ms"] / runs[key]["polytrain_fp32"][-1]["train_step_ms"],
                    t["median_step_ms"] / runs[key]["torch_fp32"][-1]["median_step_ms"])
            print("rep %d %s: polytrain %.1f ms, PyTorch %.1f ms, ratio %.3f%s; SGEMM %.1f GFLOP/s" % (
                rep + 1, key, p["train_step_ms"], t["median_step_ms"],
                p["train_step_ms"] / t["median_step_ms"], own, sgemm[-1]["sgemm_best_gflop_per_s"]),
                flush=True)
    per_op = {}
    if a.per_op:
        for model, batch in a.config:
            per_op["%s:%d" % (model, batch)] = polytrain_bench(a, model, batch, per_op=True)
    peak = max(s["sgemm_best_gflop_per_s"] for s in sgemm)
    summary = [summarise(m, b, runs["%s:%d" % (m, b)]["polytrain"], runs["%s:%d" % (m, b)]["torch"], peak)
               for m, b in a.config]
    for s in summary:
        s["precision"] = a.precision
        r = runs["%s:%d" % (s["model"], s["batch"])]
        if r["polytrain_fp32"]:
            s["polytrain_fp32_step_ms"] = med([x["train_step_ms"] for x in r["polytrain_fp32"]])
            s["torch_fp32_step_ms"] = med([x["median_step_ms"] for x in r["torch_fp32"]])
            s["polytrain_own_ratio_all"] = [p["train_step_ms"] / q["train_step_ms"]
                                            for p, q in zip(r["polytrain"], r["polytrain_fp32"])]
            s["torch_own_ratio_all"] = [p["median_step_ms"] / q["median_step_ms"]
                                        for p, q in zip(r["torch"], r["torch_fp32"])]
            s["polytrain_own_ratio_median"] = med(s["polytrain_own_ratio_all"])
            s["torch_own_ratio_median"] = med(s["torch_own_ratio_all"])
    first_pt = runs["%s:%d" % a.config[0]]["polytrain"][0]
    first_th = runs["%s:%d" % a.config[0]]["torch"][0]
    rep = {
        "date": date,
        "command": shlex.join(["/usr/bin/python3", "bench/cpu_vs_torch.py"] + sys.argv[1:]),
        "note": a.note,
        "machine": {"cpu": first_pt["device"], "cpus": os.cpu_count(),
                    "polytrain_device": sgemm[0]["details"], "torch_version": first_th["torch_version"],
                    "platform": platform.platform()},
        "precision": a.precision,
        "threads": a.threads, "input": list(a.input), "classes": a.classes, "reps": a.reps,
        "steps": a.steps, "warmup": a.warmup, "sgemm_n": a.sgemm,
        "peak_gflop_per_s": peak,
        "sgemm_best_all": [s["sgemm_best_gflop_per_s"] for s in sgemm],
        "summary": summary, "runs": runs, "sgemm_runs": sgemm, "per_op": per_op,
        "wall_s": time.time() - t_start,
    }
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(rep, f, indent=1)
        f.write("\n")
    md = markdown(rep)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(md)
    print(md)
    print("cpu_vs_torch: wrote %s/report.{md,json} in %.0f s" % (out_dir, rep["wall_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
