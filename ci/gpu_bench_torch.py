#!/usr/bin/env python3
"""PyTorch training/inference throughput of a polytrain model twin (tools/torch_models.py) on
random data, for ci/gpu-check.sh when tools/bench_torch.py is not in the tree. Same CLI as
tools/bench_torch.py plus --tf32 (0: plain fp32 in cuBLAS and cuDNN, 1: TF32 allowed in
both). SGD with Nesterov momentum 0.9 and weight decay 5e-4, cross-entropy, cudnn.benchmark
on (polytrain measures its cuDNN algorithms too). Writes median_step_ms, img_per_s,
eval_img_per_s, peak_mem_bytes and the settings to --json."""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--input", required=True, help="C,H,W")
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tf32", type=int, default=0)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    import torch
    import torch_models

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = bool(a.tf32)
        torch.backends.cudnn.allow_tf32 = bool(a.tf32)
    c, h, w = (int(v) for v in a.input.replace("x", ",").split(","))
    torch.manual_seed(1)
    model = torch_models.build(a.model, c, a.classes).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(a.batch, c, h, w, device=dev)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(a.warmup):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            model(x)
        sync()
        ev = (time.perf_counter() - t0) / a.steps
    out = {
        "model": a.model, "batch": a.batch, "input": a.input, "classes": a.classes, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "tf32": bool(a.tf32), "cudnn_benchmark": dev.type == "cuda", "steps": a.steps, "warmup": a.warmup,
        "median_step_ms": med * 1e3, "img_per_s": a.batch / med, "eval_img_per_s": a.batch / ev,
        "peak_mem_bytes": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
        "source": "ci/gpu_bench_torch.py",
    }
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
