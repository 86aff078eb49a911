"""PyTorch equivalent of `polytrain train` (defaults: baseline on Fashion-MNIST, 3 epochs),
for a side-by-side comparison of accuracy and speed on the same machine and thread count.
Reads the gzip IDX files itself (no torchvision); must never download anything.

  python3 tools/torch_reference_train.py --threads 2 --out runs/torch-baseline.json
  python3 tools/torch_reference_train.py --epochs 1 --limit-train 2000   # quick check
"""

import argparse
import gzip
import json
import math
import os
import platform
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
FASHION_MEAN = 0.2860
FASHION_STD = 0.3530
IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # unsigned-byte labels (1-D) and images (3-D)


def read_idx_gz(path):
    """A gzip IDX file of unsigned bytes as a numpy uint8 array; sizes checked."""
    with gzip.open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 4:
        raise ValueError("%s: too short for an IDX header" % path)
    (magic,) = struct.unpack(">I", blob[:4])
    if magic not in IDX_MAGIC:
        raise ValueError("%s: IDX magic 0x%08x, expected 0x801 or 0x803" % (path, magic))
    ndim = IDX_MAGIC[magic]
    head = 4 + 4 * ndim
    if len(blob) < head:
        raise ValueError("%s: truncated IDX header" % path)
    dims = struct.unpack(">%dI" % ndim, blob[4:head])
    count = int(np.prod(dims, dtype=np.int64))
    if len(blob) - head != count:
        raise ValueError("%s: %d data bytes, the header says %d" % (path, len(blob) - head, count))
    return np.frombuffer(blob, dtype=np.uint8, offset=head).reshape(dims)


def load_split(data_dir, split):
    """(images uint8 [N, 28, 28], labels int64 [N]) of split 'train' or 't10k'."""
    images = read_idx_gz(os.path.join(data_dir, "%s-images-idx3-ubyte.gz" % split))
    labels = read_idx_gz(os.path.join(data_dir, "%s-labels-idx1-ubyte.gz" % split))
    if images.shape[0] != labels.shape[0]:
        raise ValueError("%s: %d images but %d labels" % (split, images.shape[0], labels.shape[0]))
    return images, labels.astype(np.int64)


def normalise(images_u8, mean, std):
    """uint8 [N, H, W] -> float32 torch tensor [N, 1, H, W], (x / 255 - mean) / std."""
    import torch
    x = torch.from_numpy(images_u8.astype(np.float32) / 255.0)
    return ((x - mean) / std).unsqueeze(1)


def evaluate(model, x, y, batch=500):
    import torch
    import torch.nn.functional as F
    model.eval()
    correct = 0
    loss_sum = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            logits = model(x[i:i + batch])
            loss_sum += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
            correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    n = x.shape[0]
    return loss_sum / n, correct / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--model", default="baseline")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1, help="OneCycleLR max_lr")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--no-cycle-momentum", dest="cycle_momentum", action="store_false",
                    help="keep momentum at --momentum; by default OneCycleLR cycles it "
                         "0.95 -> 0.85 -> 0.95 (PyTorch's default, and polytrain's onecycle)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit-train", type=int, default=0, help="first N training images (0 = all)")
    ap.add_argument("--limit-val", type=int, default=0, help="first N test images (0 = all)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F
    import torch_models

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    tr_img, tr_lab = load_split(args.data, "train")
    te_img, te_lab = load_split(args.data, "t10k")
    if args.limit_train:
        tr_img, tr_lab = tr_img[:args.limit_train], tr_lab[:args.limit_train]
    if args.limit_val:
        te_img, te_lab = te_img[:args.limit_val], te_lab[:args.limit_val]
    x_train = normalise(tr_img, FASHION_MEAN, FASHION_STD)
    y_train = torch.from_numpy(tr_lab)
    x_test = normalise(te_img, FASHION_MEAN, FASHION_STD)
    y_test = torch.from_numpy(te_lab)

    model = torch_models.build(args.model, 1, 10)
    nparams = sum(p.numel() for p in model.parameters())
    # polytrain's default: no weight decay on BatchNorm parameters and biases (1-D tensors)
    decayed = [p for p in model.parameters() if p.dim() > 1]
    free = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decayed, "weight_decay": args.weight_decay},
                           {"params": free, "weight_decay": 0.0}],
                          lr=args.lr, momentum=args.momentum, nesterov=True)
    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
        cycle_momentum=args.cycle_momentum)

    print("torch %s, %d threads, model %s (%d parameters), %d train / %d test images, "
          "batch %d, OneCycleLR max_lr %g" % (torch.__version__, torch.get_num_threads(),
                                               args.model, nparams, n, x_test.shape[0],
                                               args.batch, args.lr), flush=True)
    epochs = []
    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        correct = 0
        for i in range(0, n, args.batch):
            idx = order[i:i + args.batch]
            x = x_train[idx]
            flip = torch.rand(x.shape[0], generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            y = y_train[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * x.shape[0]
            correct += (logits.argmax(1) == y).sum().item()
        train_s = time.perf_counter() - t0
        val_loss, val_top1 = evaluate(model, x_test, y_test)
        epoch_s = time.perf_counter() - t0
        rec = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
               "val_loss": val_loss, "val_top1": val_top1, "img_per_s": n / train_s,
               "train_s": train_s, "epoch_s": epoch_s,
               "elapsed_s": time.perf_counter() - t_start}
        epochs.append(rec)
        print("epoch %d  train_loss %.4f  train_acc %.4f  val_loss %.4f  val_top1 %.4f  "
              "%.1f img/s  epoch %.1f s" % (epoch, rec["train_loss"], rec["train_acc"],
                                           val_loss, val_top1, rec["img_per_s"], epoch_s),
              flush=True)

    result = {
        "framework": "pytorch", "torch_version": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "model": args.model, "parameters": nparams,
        "config": vars(args), "train_images": n, "test_images": int(x_test.shape[0]),
        "epochs": epochs, "total_s": time.perf_counter() - t_start,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
