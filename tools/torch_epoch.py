"""PyTorch's own training epoch on a TinyImageNet-layout tree (the real dataset or one that
`polytrain synth` wrote), to set beside `polytrain train --data tinyimagenet:DIR`: the
files decoded by torchvision's ImageFolder and DataLoader workers, the same model as the
polytrain zoo (tools/torch_models.py) and the same recipe as `polytrain train`'s defaults.
Reads only the given tree; never downloads anything. Needs torch and torchvision.

  python3 tools/torch_epoch.py --data DIR --device cuda --epochs 1 --json torch-epoch.json
  python3 tools/torch_epoch.py --data DIR --device cpu --max-steps 20   # quick check

Recipe (polytrain train's defaults): batch 64, SGD with Nesterov momentum 0.9, weight decay
5e-4 except on BatchNorm parameters and biases, OneCycleLR peaking at --lr 0.1 with momentum
cycled 0.95 -> 0.85 -> 0.95, random horizontal flips, cross-entropy, no label smoothing.
Images are normalised with ImageNet's mean and std. Per epoch it reports wall seconds,
training images/s, the seconds the training loop waited for the loader, validation top-1
and, on cuda, the peak GPU memory. Exit codes: 0 done, 1 failure, 2 usage or a missing
torch/torchvision.
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def fail_usage(msg):
    print("torch_epoch.py: error: %s" % msg, file=sys.stderr)
    return 2


def import_torch():
    """(torch, torchvision) or an error message naming what is missing."""
    try:
        import torch
    except ImportError as e:
        return None, None, "torch is not importable (%s); install Debian's python3-torch" % e
    try:
        import torchvision
    except ImportError as e:
        return None, None, ("torchvision is not importable (%s); install Debian's "
                            "python3-torchvision" % e)
    return torch, torchvision, None


def read_val_annotations(root, class_to_idx):
    """[(path, label)] of val/images from val/val_annotations.txt (FILE<TAB>WNID[<TAB>box])."""
    path = os.path.join(root, "val", "val_annotations.txt")
    samples = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0] or "/" in parts[0]:
                raise ValueError("%s line %d: expected FILE<TAB>WNID[<TAB>box]" % (path, lineno))
            if parts[1] not in class_to_idx:
                raise ValueError("%s line %d: class %r has no folder in train/" %
                                 (path, lineno, parts[1]))
            samples.append((os.path.join(root, "val", "images", parts[0]),
                            class_to_idx[parts[1]]))
    if not samples:
        raise ValueError("%s lists no images" % path)
    return samples


def make_datasets(root, torchvision):
    """(train ImageFolder, val dataset): val reads val/images labelled by val_annotations.txt."""
    import torch
    from torchvision import transforms
    from torchvision.datasets.folder import default_loader

    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
    val_tf = transforms.Compose([transforms.ToTensor(), normalize])
    # train/<wnid>/images/*.JPEG: ImageFolder sees one sub-folder "images" per class folder,
    # which is fine, since it lists files recursively under each class folder.
    train = torchvision.datasets.ImageFolder(os.path.join(root, "train"), transform=train_tf)

    class ValFolder(torch.utils.data.Dataset):
        def __init__(self, samples):
            self.samples = samples

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            path, label = self.samples[i]
            return val_tf(default_loader(path)), label

    return train, ValFolder(read_val_annotations(root, train.class_to_idx))


def parse_args(argv):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the TinyImageNet-layout directory")
    ap.add_argument("--model", default="baseline", help="a polytrain zoo model (default baseline)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs (default 3, as polytrain train)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    ap.add_argument("--lr", type=float, default=0.1, help="OneCycleLR max_lr (default 0.1)")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--workers", type=int, default=min(8, cpus),
                    help="DataLoader worker processes (default min(8, cpus) = %d)" % min(8, cpus))
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None,
                    help="default: cuda when available, else cpu")
    ap.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off",
                    help="autocast precision (fp16 scales the loss; cpu: bf16 only)")
    ap.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    ap.add_argument("--tf32", action="store_true",
                    help="cuda: TF32 in convolutions and matrix products (polytrain --precision tf32); "
                         "by default fp32 math stays fp32, as polytrain's default --precision fp32")
    ap.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false",
                    help="cuda: keep cuDNN's heuristic algorithm choice (default: benchmark once per shape)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="stop each epoch's training after N steps (0: the whole epoch)")
    ap.add_argument("--max-val-steps", type=int, default=0,
                    help="evaluate N batches only (0: the whole val split)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the results as JSON to this file (rewritten after every epoch)")
    args = ap.parse_args(argv)
    for name in ("epochs", "batch"):
        if getattr(args, name) < 1:
            ap.error("--%s must be at least 1, got %d" % (name, getattr(args, name)))
    for name in ("workers", "max_steps", "max_val_steps", "threads"):
        if getattr(args, name) < 0:
            ap.error("--%s must be at least 0, got %d" % (name.replace("_", "-"), getattr(args, name)))
    if not args.lr > 0:
        ap.error("--lr must be positive, got %g" % args.lr)
    return args


def write_json(path, result):
    """Writes result to path through a temporary file, so a reader never sees half of it."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    torch, torchvision, missing = import_torch()
    if missing:
        return fail_usage(missing)
    import torch.nn.functional as F
    import torch_models

    if not os.path.isfile(os.path.join(args.data, "val", "val_annotations.txt")) or \
            not os.path.isdir(os.path.join(args.data, "train")):
        return fail_usage("--data %s: not a TinyImageNet-layout tree (needs train/ and "
                          "val/val_annotations.txt)" % args.data)
    if args.model not in torch_models.MODELS:
        return fail_usage("--model must be one of %s, got %r" % (", ".join(sorted(torch_models.MODELS)),
                                                                  args.model))
    device_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_name == "cuda" and not torch.cuda.is_available():
        return fail_usage("--device cuda: torch %s sees no CUDA device" % torch.__version__)
    if device_name == "cpu" and args.amp == "fp16":
        return fail_usage("--amp fp16 needs --device cuda (autocast on cpu runs bf16)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = args.cudnn_benchmark

    train_set, val_set = make_datasets(args.data, torchvision)
    num_classes = len(train_set.classes)
    gen = torch.Generator().manual_seed(args.seed)
    common = dict(num_workers=args.workers, pin_memory=cuda,
                  persistent_workers=args.workers > 0)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch, shuffle=True,
                                               drop_last=False, generator=gen, **common)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch, shuffle=False, **common)

    model = torch_models.build(args.model, 3, num_classes).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    nparams = sum(p.numel() for p in model.parameters())
    decayed = [p for p in model.parameters() if p.dim() > 1]
    free = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decayed, "weight_decay": args.weight_decay},
                           {"params": free, "weight_decay": 0.0}],
                          lr=args.lr, momentum=args.momentum, nesterov=True)
    steps_per_epoch = len(train_loader)
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch)
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    scaler = torch.cuda.amp.GradScaler() if args.amp == "fp16" else None

    def autocast():
        if amp_dtype is None:
            return torch.autocast(device_type=device.type, enabled=False)
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    gpu_name = torch.cuda.get_device_name(device) if cuda else None
    print("torch %s, torchvision %s, device %s%s, model %s (%d parameters), %d classes, "
          "%d train / %d val images, batch %d, %d workers, amp %s%s%s, OneCycleLR max_lr %g"
          % (torch.__version__, torchvision.__version__, device_name,
             " (%s)" % gpu_name if gpu_name else "", args.model, nparams, num_classes,
             len(train_set), len(val_set), args.batch, args.workers, args.amp,
             ", channels-last" if args.channels_last else "",
             ", tf32" if cuda and args.tf32 else "", args.lr), flush=True)

    result = {
        "framework": "pytorch", "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__, "device": device_name,
        "device_name": gpu_name or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "model": args.model, "parameters": nparams, "classes": num_classes,
        "train_images": len(train_set), "val_images": len(val_set),
        "config": vars(args), "epochs": [],
    }
    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        model.train()
        sync()
        t0 = time.perf_counter()
        wait = 0.0
        seen = 0
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        steps = 0
        it = iter(train_loader)
        while steps < steps_per_epoch:
            tw = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            wait += time.perf_counter() - tw
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            loss_sum += loss.detach().float() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
            seen += y.shape[0]
            steps += 1
        del it
        sync()
        train_s = time.perf_counter() - t0

        model.eval()
        val_correct = torch.zeros((), device=device, dtype=torch.long)
        val_loss = torch.zeros((), device=device)
        val_seen = 0
        with torch.no_grad():
            for b, (x, y) in enumerate(val_loader):
                if args.max_val_steps and b >= args.max_val_steps:
                    break
                x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                y = y.to(device, non_blocking=True)
                with autocast():
                    logits = model(x)
                val_loss += F.cross_entropy(logits.float(), y, reduction="sum")
                val_correct += (logits.argmax(1) == y).sum()
                val_seen += y.shape[0]
        sync()
        wall_s = time.perf_counter() - t0
        rec = {
            "epoch": epoch, "steps": steps, "train_images": seen,
            "wall_s": wall_s, "train_s": train_s, "val_s": wall_s - train_s,
            "train_img_per_s": seen / train_s if train_s > 0 else None,
            "data_wait_s": wait,
            "train_loss": loss_sum.item() / max(seen, 1), "train_acc": correct.item() / max(seen, 1),
            "val_images": val_seen, "val_loss": val_loss.item() / max(val_seen, 1),
            "val_top1": val_correct.item() / max(val_seen, 1),
            "peak_gpu_mem_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
            "elapsed_s": time.perf_counter() - t_start,
        }
        result["epochs"].append(rec)
        mem = "  peak GPU memory %.0f MiB" % (rec["peak_gpu_mem_bytes"] / 2**20) if cuda else ""
        print("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f top1 %.2f%%  %.0f img/s  "
              "%.1fs (train %.1fs, data wait %.1fs)%s"
              % (epoch, args.epochs, rec["train_loss"], 100 * rec["train_acc"], rec["val_loss"],
                 100 * rec["val_top1"], rec["train_img_per_s"] or 0.0, wall_s, train_s, wait, mem),
              flush=True)
        result["total_s"] = time.perf_counter() - t_start
        if args.json:
            write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
