"""Every optimizer polytrain offers (sgd, momentum, nesterov, adam, adamw, rmsprop, with and
without momentum, centered, weight decay on or off BatchNorm and biases) follows torch.optim
step for step. tests/optim_driver (built with the tests) applies a replica's update ops, as
training does, to parameters and gradients chosen here; torch.optim takes the same steps on
the same values with two parameter groups (decayed, and BatchNorm/bias without decay, or one
group with --decay-all). After every step the parameters and every state tensor
(momentum_buffer, exp_avg, exp_avg_sq, square_avg, grad_avg) must agree, on every backend
that has a device here. Exit 77 when torch or numpy is missing."""

import os
import subprocess
import sys

try:
    import numpy as np
    import torch
except ImportError as e:
    print("SKIP: %s (Debian packages python3-torch, python3-numpy)" % e)
    sys.exit(77)

from ptcheck import check, finish, scratch_dir  # noqa: E402

DRIVER = os.environ.get("PT_OPTIM_DRIVER")
STEPS = 6
# Float32 on both sides with the same formulas: differences come from operation order and
# fused multiply-adds only (measured worst: about 1e-5, Adam with tiny gradients). A wrong
# term (missing decay, bias correction, eps placement, momentum order) is off by 1e-3 or
# more of the update.
BOUND = 5e-5

# name, optimizer, lr, momentum, weight decay, alpha, eps, centered, decay_all
CASES = [
    ("sgd", "sgd", 0.1, 0.0, 5e-4, 0.99, 1e-8, 0, 0),
    ("sgd decay-all", "sgd", 0.1, 0.0, 5e-4, 0.99, 1e-8, 0, 1),
    ("momentum", "momentum", 0.1, 0.9, 5e-4, 0.99, 1e-8, 0, 0),
    ("nesterov", "nesterov", 0.1, 0.9, 5e-4, 0.99, 1e-8, 0, 0),
    ("nesterov decay-all", "nesterov", 0.05, 0.8, 1e-2, 0.99, 1e-8, 0, 1),
    ("adam", "adam", 1e-2, 0.0, 5e-4, 0.99, 1e-8, 0, 0),
    ("adamw", "adamw", 1e-2, 0.0, 1e-2, 0.99, 1e-8, 0, 0),
    ("adamw decay-all", "adamw", 1e-2, 0.0, 5e-2, 0.99, 1e-8, 0, 1),
    ("rmsprop", "rmsprop", 1e-2, 0.0, 0.0, 0.99, 1e-8, 0, 0),
    ("rmsprop momentum wd", "rmsprop", 1e-2, 0.9, 5e-4, 0.99, 1e-8, 0, 0),
    ("rmsprop centered", "rmsprop", 1e-2, 0.0, 0.0, 0.9, 1e-6, 1, 0),
    ("rmsprop centered momentum decay-all", "rmsprop", 1e-3, 0.5, 1e-2, 0.99, 1e-8, 1, 1),
]


def slot_names(opt, momentum, centered):
    if opt in ("sgd", "momentum", "nesterov"):
        return ["momentum_buffer"] if momentum != 0 else []
    if opt in ("adam", "adamw"):
        return ["exp_avg", "exp_avg_sq"]
    names = ["square_avg"]
    if momentum != 0:
        names.append("momentum_buffer")
    if centered:
        names.append("grad_avg")
    return names


def torch_optimizer(groups, opt, lr, momentum, wd, alpha, eps, centered):
    if opt in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=opt == "nesterov")
    if opt == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=eps)
    if opt == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=eps)
    return torch.optim.RMSprop(groups, lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered)


def rel(a, b):
    d = np.linalg.norm((a - b).ravel())
    return d / max(np.linalg.norm(b.ravel()), 1e-30)


def layout():
    out = subprocess.run([DRIVER, "layout"], stdout=subprocess.PIPE, text=True, check=True).stdout
    import json
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    return lines[0]["region"], lines[1:]


def run_case(backend, case, region, params, tmp, rng, make_torch=torch_optimizer):
    """(ok, worst error, what went wrong), or None when the backend has no device."""
    name, opt, lr, momentum, wd, alpha, eps, centered, decay_all = case
    P = region
    init = np.zeros(P, dtype=np.float32)
    grads = np.zeros((STEPS, P), dtype=np.float32)
    for p in params:
        o, n = p["offset"], p["numel"]
        init[o:o + n] = rng.normal(0, 0.5, n).astype(np.float32)
        # gradients of different scales per step, some tiny (Adam/RMSprop divide by them)
        scale = rng.choice([1e-3, 1e-1, 1.0], size=(STEPS, 1))
        grads[:, o:o + n] = (rng.normal(0, 1, (STEPS, n)) * scale).astype(np.float32)
    fin = os.path.join(tmp, "in.bin")
    fout = os.path.join(tmp, "out.bin")
    np.concatenate([init, grads.ravel()]).astype(np.float32).tofile(fin)
    cmd = [DRIVER, "run", backend, fin, fout, opt, repr(lr), repr(momentum), repr(wd), repr(alpha),
           repr(eps), str(centered), str(decay_all), str(STEPS)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode == 77:
        return None
    if p.returncode != 0:
        return False, float("nan"), "driver failed: " + p.stderr.strip()[-300:]
    slots = slot_names(opt, momentum, centered)
    ours = np.fromfile(fout, dtype=np.float32).reshape(STEPS, 1 + len(slots), P)

    tensors = {}
    for q in params:
        o, n = q["offset"], q["numel"]
        tensors[q["name"]] = torch.nn.Parameter(torch.from_numpy(init[o:o + n].copy()))
    decayed = [tensors[q["name"]] for q in params if decay_all or not q["no_decay"]]
    free = [tensors[q["name"]] for q in params if not decay_all and q["no_decay"]]
    groups = [{"params": decayed, "weight_decay": wd}]
    if free:
        groups.append({"params": free, "weight_decay": 0.0})
    tor = make_torch(groups, opt, lr, momentum, wd, alpha, eps, bool(centered))
    worst = 0.0
    ok = True
    what = []
    for s in range(STEPS):
        for q in params:
            o, n = q["offset"], q["numel"]
            tensors[q["name"]].grad = torch.from_numpy(grads[s, o:o + n].copy())
        tor.step()
        for q in params:
            o, n = q["offset"], q["numel"]
            t = tensors[q["name"]]
            ref = t.detach().numpy()
            # normalised by the update, forgiving one float32 ulp of each parameter: an
            # update of 1e-4 on a weight of 0.5 is resolved to ~3e-4 of itself, and the two
            # sides round it in a different order (fused multiply-adds)
            ulps = np.linalg.norm(np.spacing(np.abs(ref)))
            diff = np.linalg.norm((ours[s, 0, o:o + n] - ref).astype(np.float64))
            e = max(0.0, diff - ulps) / max(np.linalg.norm(ref - init[o:o + n]), 1e-30)
            if not np.all(np.isfinite(ours[s, 0, o:o + n])):
                e = float("nan")
            worst = max(worst, e)
            if not e <= BOUND:  # NaN fails
                ok = False
                what.append("step %d %s: parameter update error %.3g" % (s + 1, q["name"], e))
            st = tor.state[t]
            for k, slot in enumerate(slots):
                ref = st[slot].numpy()
                e = rel(ours[s, 1 + k, o:o + n], ref)
                worst = max(worst, e)
                if not e <= BOUND:
                    ok = False
                    what.append("step %d %s.%s: error %.3g" % (s + 1, q["name"], slot, e))
    return ok, worst, "; ".join(what[:6])


def main():
    if not DRIVER or not os.path.exists(DRIVER):
        print("FAIL: PT_OPTIM_DRIVER does not name the optim_driver test program")
        return 1
    region, params = layout()
    check(any(p["no_decay"] for p in params) and any(not p["no_decay"] for p in params),
          "the test net has decayed and non-decayed parameters")
    tmp = scratch_dir("optim_torch.")
    ran = {}
    for backend in ("cpu", "opencl"):
        rng = np.random.default_rng(2026)
        for case in CASES:
            r = run_case(backend, case, region, params, tmp, rng)
            if r is None:
                print("SKIP %s: no device" % backend)
                break
            ran[backend] = True
            ok, worst, what = r
            check(ok, "%s %s: %d steps match torch.optim (worst normalised error %.2g, bound %g)%s"
                  % (backend, case[0], STEPS, worst, BOUND, (": " + what) if what else ""))
    check(ran.get("cpu", False), "the cpu backend ran every case")

    # The comparison can fail: Adam's L2 decay compared against AdamW's decoupled decay.
    def as_adamw(groups, opt, lr, momentum, wd, alpha, eps, centered):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=eps)
    wrong = ("adam", "adam", 1e-2, 0.0, 5e-2, 0.99, 1e-8, 0, 1)
    r = run_case("cpu", wrong, region, params, tmp, np.random.default_rng(7), make_torch=as_adamw)
    check(r is not None and not r[0], "Adam compared against AdamW fails the comparison (worst error %.2g)"
          % (r[1] if r else float("nan")))
    return finish()


if __name__ == "__main__":
    sys.exit(main())
