"""The side-by-side benchmark end to end on a tiny configuration: tools/bench_torch.py writes
the JSON its CLI promises, `polytrain bench --sgemm` measures a GEMM through the device, and
bench/cpu_vs_torch.py runs both sides alternately and writes a Markdown and JSON report whose
numbers are the runs' own (the ratio is the two medians' quotient). Checks the plumbing, not
speed. Exit 77 when torch is missing."""

import json
import os
import shutil
import subprocess
import sys

try:
    import torch  # noqa: F401
except ImportError as e:
    print("SKIP: %s (Debian package python3-torch)" % e)
    sys.exit(77)

from ptcheck import CLI, SRC, check, finish, run_cli, scratch_dir  # noqa: E402


def bench_torch_json(tmp):
    out = os.path.join(tmp, "t.json")
    p = subprocess.run([sys.executable, os.path.join(SRC, "tools", "bench_torch.py"), "--model", "baseline",
                        "--batch", "2", "--input", "1,16,16", "--classes", "5", "--threads", "1",
                        "--steps", "2", "--warmup", "1", "--device", "cpu", "--json", out],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if not check(p.returncode == 0, "bench_torch.py exits 0 (%s)" % p.stderr[-300:]):
        return
    with open(out) as f:
        r = json.load(f)
    for key in ("median_step_ms", "img_per_s", "eval_img_per_s", "peak_mem_bytes"):
        check(isinstance(r.get(key), (int, float)) and r[key] > 0, "bench_torch.py JSON has %s > 0" % key)
    check(r.get("tf32") is False and r.get("device") == "cpu", "bench_torch.py states device cpu, tf32 off")
    check(abs(r["img_per_s"] - 2 / (r["median_step_ms"] / 1e3)) < 1e-6 * r["img_per_s"],
          "img/s is batch / median step time")
    p = subprocess.run([sys.executable, os.path.join(SRC, "tools", "bench_torch.py"), "--model", "nosuch",
                        "--batch", "2", "--input", "1,16,16", "--classes", "5", "--threads", "1",
                        "--steps", "1", "--warmup", "0", "--device", "cpu", "--json", out],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    check(p.returncode == 2 and "nosuch" in p.stderr, "bench_torch.py names an unknown model, exit 2")


def sgemm(tmp):
    rc, out = run_cli(["bench", "--backend", "cpu", "--sgemm", "128", "--steps", "2", "--warmup", "1",
                       "--threads", "1", "--json"])
    if not check(rc == 0, "polytrain bench --sgemm exits 0"):
        return
    r = json.loads(out.strip().splitlines()[-1])
    check(r["sgemm_n"] == 128 and r["sgemm_best_gflop_per_s"] >= r["sgemm_median_gflop_per_s"] > 0,
          "bench --sgemm reports best >= median > 0 GFLOP/s")


def report(tmp):
    out_dir = os.path.join(tmp, "report")
    p = subprocess.run([sys.executable, os.path.join(SRC, "bench", "cpu_vs_torch.py"), "--polytrain", CLI,
                        "--config", "baseline:2", "--input", "1,16,16", "--classes", "5", "--threads", "1",
                        "--reps", "2", "--quick", "--sgemm", "128", "--out", out_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    if not check(p.returncode == 0, "cpu_vs_torch.py exits 0 (%s)" % p.stderr[-500:]):
        return
    with open(os.path.join(out_dir, "report.json")) as f:
        r = json.load(f)
    s = r["summary"][0]
    check(len(r["runs"]["baseline:2"]["polytrain"]) == 2 and len(r["runs"]["baseline:2"]["torch"]) == 2,
          "two repetitions of each side")
    pt_ms = sorted(x["train_step_ms"] for x in r["runs"]["baseline:2"]["polytrain"])
    check(abs(s["polytrain_step_ms"] - sum(pt_ms) / 2) < 1e-9, "the report's step time is the runs' median")
    check(abs(s["ratio_of_medians"] - s["polytrain_step_ms"] / s["torch_step_ms"]) < 1e-12,
          "ratio = polytrain median / PyTorch median")
    check(s["polytrain_peak_mem_bytes"] > 0 and s["torch_peak_mem_bytes"] > 0, "peak memory of both sides")
    # on cpu the planned device memory is host memory, so the process's high-water mark holds it
    check(all(0 < x["device_mem_bytes"] <= x["peak_mem_bytes"] for x in r["runs"]["baseline:2"]["polytrain"]),
          "polytrain bench reports its planned device memory, within its VmHWM on cpu")
    check(r["peak_gflop_per_s"] == max(r["sgemm_best_all"]) and 0 < s["polytrain_share_of_peak"],
          "share of peak against the best SGEMM of the run")
    check("conv2d_fwd" in r["per_op"]["baseline:2"]["per_op"], "per-op times include conv2d_fwd")
    with open(os.path.join(out_dir, "report.md")) as f:
        md = f.read()
    check("| baseline | 2 |" in md and "conv2d_fwd" in md, "the Markdown report has the table and per-op rows")


def report_bf16(tmp):
    """--precision bf16: polytrain bf16 against autocast(bfloat16), and each side's fp32 too."""
    out_dir = os.path.join(tmp, "report-bf16")
    p = subprocess.run([sys.executable, os.path.join(SRC, "bench", "cpu_vs_torch.py"), "--polytrain", CLI,
                        "--config", "baseline:2", "--input", "1,16,16", "--classes", "5", "--threads", "1",
                        "--reps", "1", "--quick", "--sgemm", "128", "--no-per-op", "--precision", "bf16",
                        "--out", out_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    if not check(p.returncode == 0, "cpu_vs_torch.py --precision bf16 exits 0 (%s)" % p.stderr[-500:]):
        return
    with open(os.path.join(out_dir, "report.json")) as f:
        r = json.load(f)
    runs, s = r["runs"]["baseline:2"], r["summary"][0]
    check(runs["polytrain"][0].get("precision") == "bf16" and runs["polytrain_fp32"][0].get("precision") == "fp32"
          and runs["torch"][0].get("amp") == "bf16" and runs["torch_fp32"][0].get("amp") is None,
          "bf16 runs are polytrain --precision bf16 and autocast(bfloat16), with fp32 runs of both")
    check(abs(s["polytrain_own_ratio_median"] - runs["polytrain"][0]["train_step_ms"]
              / runs["polytrain_fp32"][0]["train_step_ms"]) < 1e-12,
          "the own-fp32 ratio is the runs' quotient")
    with open(os.path.join(out_dir, "report.md")) as f:
        check("polytrain bf16/fp32" in f.read(), "the Markdown report has the bf16/fp32 table")


def main():
    tmp = scratch_dir("bench_vs_torch.")
    try:
        bench_torch_json(tmp)
        sgemm(tmp)
        report(tmp)
        report_bf16(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
