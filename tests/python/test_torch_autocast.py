"""One optimizer step in bf16 of every zoo model against PyTorch's CPU autocast(bfloat16) on
the same weights and batch. From a checkpoint W1, polytrain resumes for one more plain-SGD
step with --precision bf16; PyTorch computes the same step in float64 (the reference), and in
autocast(bfloat16) several ways (sample order, memory format) to measure how far a bf16 step
lands from float64. The bound on each parameter's update is stated from that spread:

    ||polytrain - float64|| / ||float64||  <=  REL_TO_AUTOCAST x (PyTorch autocast's own
                                              largest error) + FLOOR

Both round the convolution and linear operands to bf16 (8 significand bits, unit roundoff
2^-8 = 0.4%) and sum in float32; both store each convolution's output in bf16 (polytrain's
--act-storage auto; it also stores the BatchNorm, ReLU, pooling and residual outputs in bf16,
where autocast keeps some of them float32), so polytrain is expected near PyTorch's error,
not at float32's.
The factor 4 allows for a different rounding landing activations across ReLU kinks, which
one bf16 run against another shows too (the three autocast runs differ among themselves by
up to half their error), and for the activations polytrain stores in bf16 where autocast
does not, each a 2^-8 relative change more (measured: 3.4x autocast's error on CBAM's
channel-attention fc1 weight, whose update sums pooled features over the batch, where the
factor 3 left it 8% over; every other model within 0.6 of the factor-3 bound); FLOOR (3%) is for parameters whose update is a cancellation (a BN
bias summing dy over the batch). Where a bf16 update has no correct digit at all (CBAM's
spatial-attention BatchNorm, whose gradient sums dy over every pixel of the batch: autocast
is 130% off float64 there) the bound only says that polytrain is no worse than such noise.
A missing gradient term, or operands rounded to 4 bits instead of 8, is off by 10x the
bound on most parameters. The BatchNorm running statistics (the same forward's batch
statistics, whose means are near zero, so that their relative error is large in both) are
held to the same rule against autocast's. Exit 77 when torch or numpy is missing."""

import os
import shutil
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print("SKIP: %s (Debian packages python3-torch, python3-numpy)" % e)
    sys.exit(77)

from ptcheck import check, finish, run_cli, scratch_dir  # noqa: E402
from cli_steps import rel, two_steps  # noqa: E402
import torch_models  # noqa: E402

LR = 1.0
REL_TO_AUTOCAST = 4.0
FLOOR = 3e-2

MODELS = (("baseline", 32), ("resnet18", 16), ("resnet34", 8), ("wide_resnet18", 8),
          ("se_resnet18", 16), ("cbam_resnet18", 16))


def one_step(model_name, n, tmp):
    got = two_steps(model_name, n, tmp, LR, ["--precision", "bf16"], "bf16 step")
    if got is None:
        return
    w1, w2, meta, x, y = got

    def step(dtype, variant="", autocast=False):
        model = torch_models.build(model_name, int(meta["in_channels"]), int(meta["num_classes"]))
        model.load_state_dict(w1, strict=True)
        model = model.to(dtype).train()
        xs, ys = x.to(dtype), y
        if variant == "reversed":
            xs, ys = torch.flip(xs, [0]), torch.flip(ys, [0])
        if variant == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            xs = xs.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(xs)
        loss = F.cross_entropy(logits.float() if autocast else logits, ys)
        model.zero_grad()
        loss.backward()
        return model

    model = step(torch.float64)
    amp_models = [step(torch.float32, v, True) for v in ("", "reversed", "channels_last")]
    amp = [{k: p.grad.double() for k, p in m.named_parameters()} for m in amp_models]
    amp_buffers = [{k: b.double() for k, b in m.named_buffers()} for m in amp_models]
    params = dict(model.named_parameters())
    bad = 0
    worst = 0.0
    worst_amp = 0.0
    for name, p in params.items():
        ours = (w2[name].double() - w1[name].double()).numpy()
        ref = (-LR * p.grad).detach().numpy()
        err = rel(ours, ref)
        t_amp = max(rel((-LR * g[name]).numpy(), ref) for g in amp)
        worst_amp = max(worst_amp, t_amp)
        bound = REL_TO_AUTOCAST * t_amp + FLOOR
        worst = max(worst, err / bound)
        if os.environ.get("PT_TEST_VERBOSE"):
            print("  %-36s err %.3g  autocast %.3g" % (name, err, t_amp))
        if not (err <= bound):
            bad += 1
            check(False, "%s: bf16 update of %s, normalised error %.3g > bound %.3g (autocast %.3g)"
                  % (model_name, name, err, bound, t_amp))
    check(bad == 0, "%s: all %d bf16 parameter updates within %g x autocast's error + %g of float64 "
          "(worst error/bound %.3g; autocast's own worst error %.3g)"
          % (model_name, len(params), REL_TO_AUTOCAST, FLOOR, worst, worst_amp))
    stat_worst = 0.0
    stat_amp = 0.0
    stat_bad = []
    for name, b in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            continue
        ref = b.detach().numpy()
        err = rel(w2[name].double().numpy(), ref)
        t_amp = max(rel(bufs[name].numpy(), ref) for bufs in amp_buffers)
        stat_amp = max(stat_amp, t_amp)
        stat_worst = max(stat_worst, err / (REL_TO_AUTOCAST * t_amp + FLOOR))
        if not err <= REL_TO_AUTOCAST * t_amp + FLOOR:
            stat_bad.append("%s %.3g (autocast %.3g)" % (name, err, t_amp))
    check(not stat_bad, "%s: BN running statistics within %g x autocast's error + %g of float64 (worst "
          "error/bound %.3g; autocast's own worst error %.3g)%s"
          % (model_name, REL_TO_AUTOCAST, FLOOR, stat_worst, stat_amp,
             "; off: " + ", ".join(stat_bad[:4]) if stat_bad else ""))


def main():
    tmp = scratch_dir("torch_autocast.")
    try:
        for name, n in MODELS:
            one_step(name, n, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
