"""PyTorch side of the training-step benchmark: the same model (tools/torch_models.py), batch,
input size, thread count and optimizer (SGD, momentum 0.9, Nesterov, weight decay 5e-4: the
defaults of `polytrain bench`) on random data, timed the way `polytrain bench` times itself
(median over timed steps after warm-up steps; eval = forward of the batch without gradients).

  /usr/bin/python3 tools/bench_torch.py --model baseline --batch 64 --input 3,64,64 \
      --classes 200 --threads 2 --steps 10 --warmup 2 --device cpu --json out.json

Mixed precision: --amp bf16|fp16 runs forward and loss under torch.autocast in that type (fp16
adds a torch GradScaler, dynamic loss scaling, as `polytrain --precision fp16` does);
--channels-last puts the model and the input in NHWC (torch.channels_last), PyTorch's fastest
layout for tensor-core convolutions. Both are stated in the JSON (amp, grad_scaler,
channels_last).

Peak memory: on cpu the process's VmHWM (/proc/self/status, the high-water resident set,
what bench/cpu_vs_torch.py also reads for polytrain); on cuda torch.cuda.max_memory_allocated
(plus VmHWM for the host side). Needs Debian's python3-torch (run with /usr/bin/python3).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_input(text):
    parts = text.replace("x", ",").split(",")
    try:
        c, h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError("--input expects C,H,W (three integers), got %r" % text)
    if not (1 <= c <= 3 and h >= 1 and w >= 1):
        raise argparse.ArgumentTypeError("--input expects C in 1..3 and H, W >= 1, got %r" % text)
    return c, h, w


def positive(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % text)
    return v


def non_negative(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("expected an integer >= 0, got %r" % text)
    return v


def vm_hwm_bytes():
    """High-water resident set of this process, or None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=positive, required=True)
    ap.add_argument("--input", type=parse_input, required=True, help="C,H,W")
    ap.add_argument("--classes", type=positive, required=True)
    ap.add_argument("--threads", type=positive, required=True)
    ap.add_argument("--steps", type=positive, required=True)
    ap.add_argument("--warmup", type=non_negative, required=True)
    ap.add_argument("--device", choices=("cpu", "cuda"), required=True)
    ap.add_argument("--json", required=True, help="output file")
    ap.add_argument("--tf32", choices=("on", "off"), default="off",
                    help="cuda only: TF32 matmul/conv (default off, float32 like polytrain)")
    ap.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                    help="torch.autocast in bf16 or fp16 (fp16 with a GradScaler; fp16 needs --device cuda); "
                         "default off: float32")
    ap.add_argument("--channels-last", action="store_true",
                    help="model and input in torch.channels_last (NHWC) memory format")
    a = ap.parse_args(argv)
    if a.amp == "fp16" and a.device != "cuda":
        ap.error("--amp fp16 needs --device cuda (autocast on cpu is bf16)")

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("bench_torch.py: needs torch (Debian python3-torch; run /usr/bin/python3)",
              file=sys.stderr)
        return 2
    import torch_models

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    tf32 = None
    if a.device == "cuda":
        if not torch.cuda.is_available():
            print("bench_torch.py: --device cuda but torch.cuda.is_available() is False",
                  file=sys.stderr)
            return 2
        tf32 = a.tf32 == "on"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    torch.manual_seed(1)
    c, h, w = a.input
    try:
        model = torch_models.build(a.model, c, a.classes).to(dev)
    except KeyError as e:
        print("bench_torch.py: --model: %s" % e.args[0], file=sys.stderr)
        return 2
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    x = torch.randn(a.batch, c, h, w, device=dev)
    if a.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    scaler = None
    if a.amp == "fp16":
        try:
            scaler = torch.amp.GradScaler("cuda")
        except (AttributeError, TypeError):  # torch before 2.3
            scaler = torch.cuda.amp.GradScaler()

    def autocast():
        return torch.autocast(device_type=a.device, dtype=amp_dtype, enabled=amp_dtype is not None)

    def train_step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    def eval_step():
        with torch.no_grad(), autocast():
            return model(x)

    model.train()
    for _ in range(a.warmup):
        train_step()
        model.eval()
        eval_step()
        model.train()
    sync()
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_t = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        train_step()
        sync()
        train_t.append(time.perf_counter() - t0)
    model.eval()
    eval_t = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        eval_step()
        sync()
        eval_t.append(time.perf_counter() - t0)

    step = statistics.median(train_t)
    ev = statistics.median(eval_t)
    out = {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "model": a.model,
        "batch": a.batch,
        "input": list(a.input),
        "classes": a.classes,
        "threads": torch.get_num_threads(),
        "device": a.device,
        "optimizer": "sgd momentum 0.9 nesterov weight_decay 5e-4",
        "steps": a.steps,
        "warmup": a.warmup,
        "median_step_ms": 1e3 * step,
        "img_per_s": a.batch / step,
        "eval_median_ms": 1e3 * ev,
        "eval_img_per_s": a.batch / ev,
        "step_ms": [1e3 * t for t in train_t],
        "host_vm_hwm_bytes": vm_hwm_bytes(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "amp": None if a.amp == "off" else a.amp,
        "grad_scaler": scaler is not None,
        "channels_last": bool(a.channels_last),
    }
    if a.device == "cuda":
        out["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
        out["peak_mem_source"] = "torch.cuda.max_memory_allocated (timed steps)"
        out["tf32"] = tf32
        out["cudnn_benchmark"] = True
        out["cudnn"] = torch.backends.cudnn.version()
        out["gpu"] = torch.cuda.get_device_name(0)
    else:
        out["peak_mem_bytes"] = out["host_vm_hwm_bytes"]
        out["peak_mem_source"] = "VmHWM of the process (/proc/self/status)"
        out["tf32"] = False
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("bench_torch: %s batch %d on %s%s%s: train %.1f ms/step (%.1f img/s), eval %.1f img/s"
          % (a.model, a.batch, a.device, "" if a.amp == "off" else ", amp " + a.amp,
             ", channels-last" if a.channels_last else "", out["median_step_ms"], out["img_per_s"],
             out["eval_img_per_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
