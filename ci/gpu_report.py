"""The report of ci/gpu-check.sh: reads the folder the check wrote (each step's log, exit
status in NAME.rc, JSON results) and writes report.md there (also printed). Every file may be
missing or broken, as a step may have failed, timed out or been skipped: the report then says
"n/a", "not run" or the exit status instead of stopping. It can be run again on a folder that
came back from a GPU machine, and tests/cli/test_gpu_report.sh runs it on one made from the
cpu backend's own results (the same JSON the cuda runs write).

  python3 ci/gpu_report.py OUTDIR STATUS TORCH_BENCH
    OUTDIR       the check's folder; report.md is written there
    STATUS       the check's exit status so far (0: PASS)
    TORCH_BENCH  the PyTorch benchmark script, as the report names it
"""
import json, os, sys
out, status, torch_bench = sys.argv[1], int(sys.argv[2]), sys.argv[3]  # torch_bench: relative to the tree

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception:
        return None

def text(name):
    try:
        with open(os.path.join(out, name)) as f:
            return f.read()
    except Exception:
        return ""

def rc(name):
    t = text(name + ".rc").strip()
    return t if t else "not run"

L = ["# polytrain cuda backend: GPU check", ""]
L += ["## Machine", "", "```", text("machine.txt").strip(), "```", ""]
L += ["## Build, devices, cuda test", ""]
L.append(f"- configure: exit {rc('configure')}, build: exit {rc('build')}")
L.append(f"- test_cuda_backend: exit {rc('test_cuda_backend')}; last line: "
         f"`{(text('test_cuda_backend.log').strip().splitlines() or [''])[-1]}`")
tl = text("test_cuda_backend.log")
if "cuda device 0:" in tl:
    L.append("- its GPU checks ran on " + tl.split("cuda device 0:", 1)[1].splitlines()[0].strip())
elif tl:
    L.append("- its GPU checks did NOT run (no cuda device): only the CPU-side checks passed")
L += ["", "```", text("devices.log").strip(), "```", ""]
L += ["## Conformance (cuda vs cpu, `polytrain selftest --backend cuda`)", ""]
st = load("selftest.json")
if st:
    for d in st.get("devices", []):
        if not d.get("available", False):
            L.append(f"- {d.get('backend')}[{d.get('index', '-')}]: not available: {d.get('error')}")
            continue
        L.append(f"- {d['backend']}[{d['index']}] {d['name']}: {d['cases']} cases, {d['passed']} passed, "
                 f"{d['failed']} failed; worst error/bound {d['worst_ratio']:.3g} ({d['worst_case']}); "
                 f"{d['ms']:.0f} ms")
        for r in d.get("results", []):
            if not r.get("pass", True):
                L.append(f"  - FAIL {r.get('name')}: {r.get('detail')}")
    L.append(f"- overall: {'ok' if st.get('ok') else 'FAILED'} (exit {rc('selftest')})")
else:
    L.append(f"- no JSON result (exit {rc('selftest')}); see selftest.log")
L += ["", "Math modes on their own (`--filter math=MODE`: GEMM and convolution cases with the operands "
      "rounded to the mode, float32 sums, against cpu's fp32 within 4x the mode's unit roundoff; a mode "
      "the device does not claim runs 0 cases):", ""]
for prec in ("tf32", "bf16", "fp16"):
    sp = load(f"selftest_{prec}.json")
    if not sp:
        L.append(f"- math={prec}: no JSON result (exit {rc('selftest_' + prec)}); see selftest_{prec}.log")
        continue
    for d in sp.get("devices", []):
        if not d.get("available", False):
            L.append(f"- math={prec} {d.get('backend')}[{d.get('index', '-')}]: not available: {d.get('error')}")
            continue
        if not d.get("cases"):
            L.append(f"- math={prec} {d['backend']}[{d['index']}] {d['name']}: 0 cases (the device does not "
                     f"claim {prec})")
            continue
        L.append(f"- math={prec} {d['backend']}[{d['index']}] {d['name']}: {d['cases']} cases, {d['passed']} "
                 f"passed, {d['failed']} failed; worst error/bound {d['worst_ratio']:.3g} ({d['worst_case']}); "
                 f"exit {rc('selftest_' + prec)}")
        for r in d.get("results", []):
            if not r.get("pass", True):
                L.append(f"  - FAIL {r.get('name')}: {r.get('detail')}")
L += ["", "Activations stored in 16 bits (`--filter act=`), on cuDNN and the kernels' 16-bit twins and again "
      "over float32 copies (PT_CUDA_ACT16=copy), and images stored channels last (`--filter layout=nhwc`):", ""]
for name, how in (("selftest_act16", "stored"), ("selftest_act16_copy", "copies"), ("selftest_nhwc", "nhwc")):
    sp = load(f"{name}.json")
    devs = [d for d in (sp or {}).get("devices", []) if d.get("available", False)]
    if not devs:
        L.append(f"- {how}: no result (exit {rc(name)}); see {name}.log")
    for d in devs:
        L.append(f"- {how}: {d['cases']} cases, {d['passed']} passed, {d['failed']} failed; worst error/bound "
                 f"{d['worst_ratio']:.3g} ({d['worst_case']}); exit {rc(name)}")
        for r in d.get("results", []):
            if not r.get("pass", True):
                L.append(f"  - FAIL {r.get('name')}: {r.get('detail')}")
L += ["", "## Training", "", f"- what: {text('train.what').strip()}; exit {rc('train')}"]
steps = os.path.join(out, "train-run", "steps.jsonl")
if os.path.exists(steps):
    rows = [json.loads(l) for l in open(steps) if l.strip()]
    if rows:
        k = "loss" if "loss" in rows[0] else None
        if k:
            first = sum(r[k] for r in rows[:10]) / min(10, len(rows))
            last = sum(r[k] for r in rows[-10:]) / min(10, len(rows))
            L.append(f"- {len(rows)} steps; mean loss of the first 10 {first:.4f}, of the last 10 {last:.4f}")
tail = text("train.log").strip().splitlines()[-4:]
L += ["", "```"] + tail + ["```", ""]
L += ["## CUDA graphs and pinned input (off vs on)", "",
      f"- deterministic baseline run, both off vs both on: weights and optimizer state {text('graphs_weights.txt').strip() or 'not compared'} "
      f"(exit off {rc('graphs_train_off')}, on {rc('graphs_train_on')})",
      f"- the same with fp16 loss scaling, --clip-grad-norm 0.5 and --ema 0.99 (one launch per step with the "
      f"decisions on the device vs separate calls): weights, optimizer state and EMA "
      f"{text('graphs_fp16_weights.txt').strip() or 'not compared'} "
      f"(exit off {rc('graphs_fp16_off')}, on {rc('graphs_fp16_on')})",
      f"- deterministic resnet18 fp32 run, `--fuse off` vs `on` (folded ReLUs and residual adds): weights and "
      f"optimizer state "
      f"{text('fuse_weights.txt').strip() or 'not compared'} (exit off {rc('fuse_train_off')}, on {rc('fuse_train_on')})",
      f"- the same resnet18 run, `--fit-workspace off` vs on (the workspace kept as first sized vs fitted to the "
      f"algorithms chosen after the epoch): weights and optimizer state "
      f"{text('fitws_weights.txt').strip() or 'not compared'} (exit off {rc('fitws_train_off')}, on {rc('fuse_train_on')})"]
for mode in ("off", "on"):
    b = load(f"graphs_bench_{mode}.json")
    if b:
        L.append(f"- bench baseline 3x64x64 b64, {mode}: train step {b.get('train_step_ms')} ms, eval batch "
                 f"{b.get('eval_batch_ms')} ms; graphs: {b.get('cuda_graphs')}; input: {b.get('pinned_input')}")
    for line in text(f"graphs_train_{mode}.log").splitlines():
        if line.startswith("CUDA graphs:") or line.startswith("pinned input:"):
            L.append(f"  - train {mode}: {line}")
L.append("")
L += ["## Throughput, same GPU, same batch (img/s; training = forward + backward + SGD step)", "",
      f"PyTorch side: `{torch_bench}` (cudnn.benchmark on; its own cuDNN, shown below). fp32 = "
      "NVIDIA_TF32_OVERRIDE=0 on both sides (no TF32 anywhere); tf32 = TF32 allowed in cuBLAS and "
      "cuDNN on both sides. ratio = polytrain img/s / PyTorch img/s (over 1: polytrain faster). "
      "GPU memory: polytrain's device memory in the timed steps (`device_mem_bytes`: parameters, "
      "gradients, optimizer state, activations, the workspace fitted after the warm-up to the "
      "algorithms cuDNN chose; `device_mem_bytes_created` is what it held before); PyTorch's "
      "torch.cuda.max_memory_allocated over the timed steps. Neither counts the vendor libraries' own "
      "allocations.", "",
      "| case | precision | polytrain train (ms/step) | PyTorch train (ms/step) | ratio | polytrain eval | "
      "PyTorch eval | GPU MiB polytrain / PyTorch |",
      "|---|---|---|---|---|---|---|---|"]
tver = set()
for name in ("baseline_b64", "resnet18_b128"):
    for prec in ("fp32", "tf32"):
        p, t = load(f"pt_{name}_{prec}.json") or {}, load(f"torch_{name}_{prec}.json") or {}
        if t.get("cudnn"):
            tver.add(f"torch {t.get('torch_version')} cuDNN {t['cudnn']}")
        f = lambda v: f"{v:.0f}" if isinstance(v, (int, float)) else "n/a"
        g = lambda v: f"{v:.2f}" if isinstance(v, (int, float)) else "n/a"
        mib = lambda v: f"{v / 2**20:.0f}" if isinstance(v, (int, float)) else "n/a"
        pt, tt = p.get("train_img_per_s"), t.get("img_per_s")
        ratio = f"{pt / tt:.2f}" if pt and tt else "n/a"
        L.append(f"| {name} | {prec} | {f(pt)} ({g(p.get('train_step_ms'))}) | {f(tt)} ({g(t.get('median_step_ms'))}) | "
                 f"{ratio} | {f(p.get('eval_img_per_s'))} | {f(t.get('eval_img_per_s'))} | "
                 f"{mib(p.get('device_mem_bytes'))} (created {mib(p.get('device_mem_bytes_created'))}) / "
                 f"{mib(t.get('peak_mem_bytes'))} |")
# mixed precision against PyTorch AMP (autocast, channels-last), with the goals
GOALS = {("resnet18_b128", "bf16"): (1.0, 2.5), ("baseline_b64_3x64x64", "bf16"): (1.5, None),
         ("resnet18_b128", "fp16"): (None, None)}
OWN_FP32 = {"resnet18_b128": "pt_resnet18_b128_fp32.json"}  # the same model, input, classes, batch
L += ["", "### Mixed precision (img/s, training)", "",
      "polytrain `bench --precision MODE` (GEMMs and convolutions on 16-bit operands with float32 "
      "accumulation; weights, optimizer, BatchNorm and loss in float32; fp16 with loss scaling) against "
      f"`{torch_bench} --amp MODE --channels-last` (torch.autocast, NHWC; fp16 with a GradScaler). "
      "vs PyTorch = polytrain img/s / PyTorch AMP img/s; vs own fp32 = polytrain MODE img/s / polytrain fp32 "
      "img/s (the fp32 row above). Goals: resnet18 b128 bf16 >= 1.0x PyTorch AMP and >= 2.5x its own fp32; "
      "baseline b64 (3x64x64) bf16 >= 1.5x PyTorch AMP.", "",
      "| case | mode | polytrain (ms/step) | PyTorch AMP (ms/step) | vs PyTorch (goal) | polytrain fp32 | "
      "vs own fp32 (goal) | polytrain eval | PyTorch eval | GPU MiB polytrain / PyTorch |",
      "|---|---|---|---|---|---|---|---|---|---|"]
goal_lines = []


def judged(ratio, goal):
    if goal is None:
        return "-" if ratio is None else f"{ratio:.2f}"
    if ratio is None:
        return f"n/a (>= {goal:.1f}x)"
    return f"{ratio:.2f} (>= {goal:.1f}x: {'met' if ratio >= goal else 'NOT met'})"


for (name, prec), (g_torch, g_own) in GOALS.items():
    p, t = load(f"pt_{name}_{prec}.json") or {}, load(f"torch_{name}_amp_{prec}.json") or {}
    own = load(OWN_FP32[name]) or {} if name in OWN_FP32 else {}
    if t.get("cudnn"):
        tver.add(f"torch {t.get('torch_version')} cuDNN {t['cudnn']}")
    f = lambda v: f"{v:.0f}" if isinstance(v, (int, float)) else "n/a"
    g = lambda v: f"{v:.2f}" if isinstance(v, (int, float)) else "n/a"
    mib = lambda v: f"{v / 2**20:.0f}" if isinstance(v, (int, float)) else "n/a"
    pt, tt, of = p.get("train_img_per_s"), t.get("img_per_s"), own.get("train_img_per_s")
    r_torch = pt / tt if pt and tt else None
    r_own = pt / of if pt and of else None
    L.append(f"| {name} | {prec} | {f(pt)} ({g(p.get('train_step_ms'))}) | {f(tt)} ({g(t.get('median_step_ms'))}) | "
             f"{judged(r_torch, g_torch)} | {f(of) if name in OWN_FP32 else '-'} | "
             f"{judged(r_own, g_own) if name in OWN_FP32 else '-'} | {f(p.get('eval_img_per_s'))} | "
             f"{f(t.get('eval_img_per_s'))} | {mib(p.get('device_mem_bytes'))} / {mib(t.get('peak_mem_bytes'))} |")
    for what, r, goal in (("PyTorch AMP", r_torch, g_torch), ("own fp32", r_own, g_own)):
        if goal is not None:
            goal_lines.append(f"- {name} {prec} vs {what}: " + (f"{r:.2f}x, goal >= {goal:.1f}x: "
                              f"{'met' if r >= goal else 'NOT met'}" if r is not None else
                              f"not measured (goal >= {goal:.1f}x; see the logs)"))
    if p and p.get("precision") not in (None, prec):
        goal_lines.append(f"- note: pt_{name}_{prec}.json states precision {p.get('precision')!r}")
L += [""] + goal_lines
fmt = lambda v, s="": f"{v:.0f}{s}" if isinstance(v, (int, float)) else "n/a"


def ab(label, a, b, middle=""):
    """One bench JSON against another: train img/s (their ratio), eval img/s, middle, GPU memory."""
    ratio = (f"{a['train_img_per_s'] / b['train_img_per_s']:.2f}x"
             if a.get("train_img_per_s") and b.get("train_img_per_s") else "n/a")
    mib = lambda j: fmt(j["device_mem_bytes"] / 2**20, " MiB") if isinstance(j.get("device_mem_bytes"), (int, float)) else "n/a"
    return (f"{label}: {fmt(a.get('train_img_per_s'))} vs {fmt(b.get('train_img_per_s'))} img/s train ({ratio}), "
            f"eval {fmt(a.get('eval_img_per_s'))} vs {fmt(b.get('eval_img_per_s'))}; {middle}GPU memory {mib(a)} vs "
            f"{mib(b)}")


a16, a32 = load("pt_resnet18_b128_bf16.json") or {}, load("pt_resnet18_b128_bf16_actfp32.json") or {}
if a16 or a32:
    L += ["", ab("resnet18 b128 bf16, activations `--act-storage auto` (16-bit where stored natively) vs `fp32`",
                 a16, a32, f"{a16.get('activations_16bit', 'n/a')} of {a16.get('activations', 'n/a')} activations "
                 f"bf16, {fmt(a16.get('activation_mib'), ' MiB')} vs {fmt(a32.get('activation_mib'), ' MiB')} of "
                 "activations; ")]
for name, label in (("resnet18_b128", "resnet18 b128"), ("baseline_b64_3x64x64", "baseline b64 3x64x64")):
    nc, nh = load(f"pt_{name}_bf16.json") or {}, load(f"pt_{name}_bf16_nhwc.json") or {}
    if nc or nh:
        L += ["", ab(f"{label} bf16, `--layout nhwc` vs the default nchw", nh, nc,
                     f"{nh.get('images_nhwc', 'n/a')} of {nh.get('images', 'n/a')} images channels last; ")]
nf, fu = load("pt_resnet18_b128_bf16_nhwc_nofuse.json") or {}, load("pt_resnet18_b128_bf16_nhwc.json") or {}
if nf or fu:
    L += ["", ab("resnet18 b128 bf16 nhwc, `--fuse on` (BN+ReLU, BN+add+ReLU, add+ReLU in one pass) vs `off`",
                 fu, nf)]
dev = [l.strip() for l in text("devices.log").splitlines() if "cuDNN" in l]
L += ["", "cuDNN: polytrain " + (dev[0] if dev else "n/a") + "; PyTorch " + (", ".join(sorted(tver)) or "n/a")]
if rc("synth") != "not run":
    import re
    L += ["", "## Whole epochs on a generated TinyImageNet (`polytrain synth`, 100,000 + 10,000 64x64 JPEGs)", "",
          f"- synth: exit {rc('synth')}; " + ((text("synth.log").strip().splitlines() or [""])[-1]),
          "- polytrain: `train --data tinyimagenet:DIR --epochs 2 --precision tf32` (epoch 1 includes packing "
          "the cache); PyTorch: tools/torch_epoch.py (ImageFolder + DataLoader workers, TF32 on, AMP off / bf16)",
          "",
          "| model | side | epoch 1 s | epoch 2 s | img/s (epoch 2) | data wait (epoch 2) | val top-1 | memory MiB |",
          "|---|---|---|---|---|---|---|---|"]
    EPOCH_GOAL = {"baseline": 4.0, "resnet18": 20.0}
    goal_lines = []
    for model in ("baseline", "resnet18"):
        mpath = os.path.join(out, f"epoch-{model}", "metrics.jsonl")
        rows = [json.loads(l) for l in open(mpath) if l.strip()] if os.path.exists(mpath) else []
        waits = [float(w) for w in re.findall(r"data wait ([0-9.]+)s", text(f"epoch_pt_{model}.log"))]
        if rows:
            e2 = rows[-1]
            # metrics.jsonl's own figure; the epoch lines of the log where it lacks one
            w2 = e2.get("data_wait_s")
            if not isinstance(w2, (int, float)):
                w2 = waits[-1] if len(waits) >= len(rows) else None
            wtxt = f"{w2:.1f} s ({100 * w2 / e2['train_s']:.1f}%)" if w2 is not None and e2.get("train_s") else "n/a"
            L.append(f"| {model} | polytrain tf32 | {rows[0]['epoch_s']:.1f} | "
                     f"{e2['epoch_s']:.1f} | {e2['img_per_s']:.0f} | {wtxt} | {100 * e2['val_top1']:.2f}% | "
                     f"{e2.get('device_mib', 'n/a')} |")
            goal = EPOCH_GOAL[model]
            goal_lines.append(f"- {model}: polytrain epoch 2 {e2['epoch_s']:.1f} s, goal on an H100 <= {goal:.0f} s: "
                              f"{'met' if e2['epoch_s'] <= goal else 'NOT met'}; data wait "
                              + (f"{100 * w2 / e2['train_s']:.1f}% (goal < 5%: {'met' if w2 < 0.05 * e2['train_s'] else 'NOT met'})"
                                 if w2 is not None and e2.get("train_s") else "n/a"))
        else:
            L.append(f"| {model} | polytrain tf32 | n/a (exit {rc('epoch_pt_' + model)}) | | | | | |")
        for amp in ("off", "bf16"):
            tj = load(f"epoch_torch_{model}_{amp}.json") or {}
            ep = tj.get("epochs") or []
            if ep:
                e2 = ep[-1]
                mem = e2.get("peak_gpu_mem_bytes")
                L.append(f"| {model} | PyTorch AMP {amp} | {ep[0]['wall_s']:.1f} | {e2['wall_s']:.1f} | "
                         f"{(e2.get('train_img_per_s') or 0):.0f} | {e2['data_wait_s']:.1f} s | "
                         f"{100 * e2['val_top1']:.2f}% | {mem / 2**20:.0f} |" if mem else
                         f"| {model} | PyTorch AMP {amp} | {ep[0]['wall_s']:.1f} | {e2['wall_s']:.1f} | "
                         f"{(e2.get('train_img_per_s') or 0):.0f} | {e2['data_wait_s']:.1f} s | "
                         f"{100 * e2['val_top1']:.2f}% | n/a |")
            else:
                L.append(f"| {model} | PyTorch AMP {amp} | n/a (exit {rc(f'epoch_torch_{model}_{amp}')}) | | | | | |")
    L += [""] + goal_lines
san = [t for t in ("memcheck", "racecheck", "synccheck", "initcheck") if rc("sanitize_" + t) != "not run"]
if san:
    L += ["", "## compute-sanitizer over the conformance suite (API errors not reported: see the script)", ""]
    for t in san:
        summ = [l.replace("=========", "").strip() for l in text(f"sanitize_{t}.log").splitlines()
                if "ERROR SUMMARY" in l or "LEAK SUMMARY" in l or "RACECHECK SUMMARY" in l]
        L.append(f"- {t}: exit {rc('sanitize_' + t)}; " + ("; ".join(summ) or "no summary line (see the log)"))
for suffix, mode in (("", "fp32"), ("_bf16", "bf16")):
    po = load(f"pt_resnet18_b128_perop{suffix}.json")
    if po and po.get("per_op"):
        L += ["", f"Per op kind, resnet18 b128 {mode} (synchronised after every op):", "",
              "| op | ms/step | share | calls/step |", "|---|---|---|---|"]
        for k, v in po["per_op"].items():
            L.append(f"| {k} | {v['ms_per_step']:.2f} | {100 * v['share']:.1f}% | {v['calls_per_step']:.0f} |")
L += ["", f"Overall status: {'PASS' if status == 0 else 'FAIL'} (build, cuda test, conformance"
      f"{', compute-sanitizer' if san else ''})", ""]
with open(os.path.join(out, "report.md"), "w") as fh:
    fh.write("\n".join(L))
print("\n".join(L))
