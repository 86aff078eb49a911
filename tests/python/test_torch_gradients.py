"""One optimizer step of polytrain equals the same step taken with PyTorch's autograd in
float64: from a checkpoint W1, polytrain resumes for one more plain-SGD step on a fixed set of
training images; PyTorch computes the gradient of the mean loss at W1 on the same images and
applies W1 - lr*g. Every parameter's update, the BatchNorm running statistics and
num_batches_tracked must agree. This checks the whole backward pass of baseline, resnet18,
se_resnet18, cbam_resnet18 and resnet18_imagenet (residual adds, downsample branches, in-place
ReLU, attention, a strided 7x7 stem and a padded max-pool) against an independent reference.
Exit 77 when torch or numpy is missing."""

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

LR = 1.0  # large, so that float32 weights near 1 (BN) still resolve the update
# Each update must be as close to float64 autograd as PyTorch's own float32 gradient is, up
# to a factor, plus the float32 quantisation of W2, plus 1%: a float32 forward can put an
# activation on the other side of a ReLU kink than float64 does (seen: one element of
# resnet18's last block, which moves the gradients of every layer below it by ~1e-3), and
# deep BN nets amplify rounding in their first layers (PyTorch's own float32 gradients are off
# by ~3e-3 there). A wrong or missing gradient contribution is off by 10% to 100%; the
# measured errors are printed with PT_TEST_VERBOSE=1.
REL_TO_TORCH32 = 5.0
FLOOR = 1e-2
MAX_STAT_ERR = 1e-5

def one_step(model_name, n, tmp):
    got = two_steps(model_name, n, tmp, LR, (), "step")
    if got is None:
        return
    w1, w2, meta, x, y = got

    def autograd(dtype, variant=""):
        model = torch_models.build(model_name, int(meta["in_channels"]), int(meta["num_classes"]))
        model.load_state_dict(w1, strict=True)
        model = model.to(dtype).train()
        xs, ys = x.to(dtype), y
        if variant == "reversed":  # the same mean loss, other summation orders over the batch
            xs, ys = torch.flip(xs, [0]), torch.flip(ys, [0])
        if variant == "channels_last":  # other convolution kernels
            model = model.to(memory_format=torch.channels_last)
            xs = xs.contiguous(memory_format=torch.channels_last)
        with torch.backends.mkldnn.flags(enabled=variant != "native"):  # PyTorch's own kernels
            loss = F.cross_entropy(model(xs), ys)  # one batch: sample order does not matter
            model.zero_grad()
            loss.backward()
        return model

    model = autograd(torch.float64)
    # How far float32 can land from float64 on this step: PyTorch's float32 computed four
    # ways that differ only in rounding (summation orders, convolution kernels). One float32
    # run is one sample of that spread: where the gradient cancels (the scalar bias of
    # CBAM's spatial BatchNorm sums dy over every pixel of the batch) one run measured 0.0026
    # and another 0.012 on the same parameter.
    grads32 = [{k: p.grad.double() for k, p in autograd(torch.float32, v).named_parameters()}
               for v in ("", "reversed", "channels_last", "native")]
    params = dict(model.named_parameters())
    bad = 0
    worst = 0.0
    for name, p in params.items():
        ours = (w2[name].double() - w1[name].double()).numpy()
        ref = (-LR * p.grad).detach().numpy()
        err = rel(ours, ref)
        t32 = max(rel((-LR * g[name]).numpy(), ref) for g in grads32)
        # W2 is a float32 rounding of W1 - lr*g: half an ulp of W2 per element.
        quant = 0.5 * np.linalg.norm(np.spacing(np.abs(w2[name].numpy())).astype(np.float64)) / max(
            np.linalg.norm(ref), 1e-30)
        bound = REL_TO_TORCH32 * t32 + 2 * quant + FLOOR
        worst = max(worst, err / bound)
        if os.environ.get("PT_TEST_VERBOSE"):
            print("  %-36s err %.3g  torch32 %.3g  quant %.3g" % (name, err, t32, quant))
        if not (err <= bound):
            bad += 1
            check(False, "%s: update of %s, normalised error %.3g > bound %.3g (torch float32 %.3g)"
                  % (model_name, name, err, bound, t32))
    check(bad == 0, "%s: all %d parameter updates match float64 autograd (worst error/bound %.3g)"
          % (model_name, len(params), worst))
    stat_worst = 0.0
    # The float64 forward above updated the module's running statistics from W1's values
    # with this batch's statistics, as polytrain's second step did.
    for name, b in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            check(int(w2[name].item()) == 2, "%s: %s is 2" % (model_name, name))
            continue
        stat_worst = max(stat_worst, rel(w2[name].double().numpy(), b.detach().numpy()))
    check(stat_worst <= MAX_STAT_ERR, "%s: BN running statistics match (worst %.3g)"
          % (model_name, stat_worst))


def main():
    tmp = scratch_dir("torch_grad.")
    try:
        one_step("baseline", 64, tmp)
        one_step("resnet18", 32, tmp)
        # SE and CBAM: sigmoid gates, broadcast multiplies, global max and channel pools, and
        # CBAM's MLP whose gradient sums over its two uses.
        one_step("se_resnet18", 16, tmp)
        one_step("cbam_resnet18", 16, tmp)
        # torchvision's stem: 7x7 stride-2 convolution and a padded 3x3 stride-2 max-pool
        one_step("resnet18_imagenet", 16, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
