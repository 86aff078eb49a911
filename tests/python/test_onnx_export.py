"""`polytrain export --onnx` against onnxruntime: for every model of the zoo (as `polytrain
models --json` lists it, so that a new model is covered without a change here) a checkpoint
after one training step on a tiny synthetic TinyImageNet-layout dataset, exported and run by
onnxruntime on the dataset's validation images, equals `polytrain eval --dump-logits` on the
same images within 1e-4; also with opset 13 and a fixed batch, and opsets 18 and 22 where the
graph has reductions (their axes move from attribute to input at 18). The metadata holds the
checkpoint's normalisation, class names and provenance; onnx.checker accepts every model and
its initializers hold exactly the model's parameters. The baseline also on Fashion-MNIST
(1x28x28). onnxruntime and onnx come from PyPI into the virtual environment of
ci/install-deps.sh; exits 77 (skipped) only when onnxruntime cannot be imported."""

import gzip
import json
import os
import re
import struct
import sys
import time

VENV = os.environ.get("PT_VENV") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "polytrain", "venv")


def import_onnxruntime():
    """onnxruntime; under /usr/bin/python3 without it, runs this test again under the virtual
    environment's Python, which has it."""
    try:
        import onnxruntime
        return onnxruntime
    except ImportError as e:
        python = os.path.join(VENV, "bin", "python")
        if os.path.exists(python) and not os.environ.get("PT_ONNX_REEXEC"):
            os.environ["PT_ONNX_REEXEC"] = "1"
            os.execv(python, [python] + sys.argv)
        print("SKIP: the onnxruntime package cannot be imported (%s); install it with "
              "ci/install-deps.sh (pip install onnxruntime onnx into %s)" % (e, VENV))
        sys.exit(77)


ort = import_onnxruntime()
import numpy as np  # noqa: E402

try:
    import onnx  # noqa: E402
except ImportError:
    onnx = None

from ptcheck import CLI, check, finish, run_cli, scratch_dir  # noqa: E402

TOL = 1e-4
IMAGES = 16          # validation images compared per model
CLASSES = 4
SIDE = 16            # synthetic image side: the smallest every model of the zoo takes
FASHION = "/usr/share/datasets/fashion-mnist"
TRAIN = ["--epochs", "1", "--limit-train", "16", "--batch-per-device", "16", "--limit-val", str(IMAGES),
         "--optimizer", "sgd", "--augment", "none", "--seed", "3", "--threads", "2", "--no-progress"]
errors = {}          # what was compared: max abs error, for the closing table


def read_pack(path):
    """(pixels uint8 [count, C, H, W], labels) of a packed cache (data/pack.c's layout)."""
    with open(path, "rb") as f:
        data = f.read()
    fields = struct.unpack_from("<8sII4I6Q6f8Q", data, 0)
    assert fields[0] == b"PTPACK\r\n", "not a packed cache: %s" % path
    c, h, w, count = fields[3], fields[4], fields[5], fields[7]
    labels_off, pixels_off = fields[21], fields[23]
    px = np.frombuffer(data, np.uint8, count * c * h * w, pixels_off).reshape(count, c, h, w)
    labels = np.frombuffer(data, np.int32, count, labels_off)
    return px, labels


def read_idx_images(path, n):
    with gzip.open(path, "rb") as f:
        magic, count, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 2051
        return np.frombuffer(f.read(n * h * w), np.uint8).reshape(n, 1, h, w)


def checkpoint_meta(ckpt):
    """The __metadata__ of ckpt/model.safetensors."""
    with open(os.path.join(ckpt, "model.safetensors"), "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))["__metadata__"]


def normalise(pixels, meta):
    """x = (pixel/255 - mean) / std per channel in float32, with the ONNX model's own metadata."""
    mean = np.array(json.loads(meta["mean"]), np.float32).reshape(1, -1, 1, 1)
    std = np.array(json.loads(meta["std"]), np.float32).reshape(1, -1, 1, 1)
    return ((pixels.astype(np.float32) / np.float32(255.0) - mean) / std).astype(np.float32)


def zoo():
    """[(model, parameters, smallest side it takes)] from `polytrain models --json` at SIDE."""
    rc, out = run_cli(["models", "--json", "--input", "3x%dx%d" % (SIDE, SIDE), "--classes", str(CLASSES)])
    if not check(rc == 0, "polytrain models --json lists the zoo"):
        return []
    models = []
    for m in json.loads(out):
        side = SIDE
        if "error" in m:
            need = re.search(r"at least (\d+)x(\d+)", m["error"])
            if not check(need is not None, "%s: models names the input it needs (%s)" % (m["model"], m["error"])):
                continue
            side = max(int(need.group(1)), int(need.group(2)))
        models.append((m["model"], m.get("parameters"), side))
    return models


def dataset(tmp, side, cache):
    """Packed train and validation splits of a synthetic dataset with side x side images."""
    if side in cache:
        return cache[side]
    src = os.path.join(tmp, "synth%d" % side)
    rc, _ = run_cli(["synth", "--out", src, "--classes", str(CLASSES), "--train-per-class", "4",
                     "--val-per-class", str(IMAGES // CLASSES), "--size", str(side), "--no-progress"])
    packs = []
    for split in ("train", "val"):
        p = os.path.join(tmp, "synth%d-%s.pack" % (side, split))
        rc2, _ = run_cli(["pack", "--data", "tinyimagenet:" + src, "--split", split, "--out", p,
                          "--size", "%dx%d" % (side, side)])
        rc = rc or rc2
        packs.append(p)
    check(rc == 0, "a %dx%d synthetic dataset (%d classes) is written and packed" % (side, side, CLASSES))
    cache[side] = (packs, read_pack(packs[1])[0][:IMAGES])
    return cache[side]


def ort_logits(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess, sess.run(["logits"], {"input": x})[0]


def check_metadata(what, ckpt, sess, model_name, channels):
    meta = sess.get_modelmeta().custom_metadata_map
    cm = checkpoint_meta(ckpt)
    _, version = run_cli(["--version"])
    check(meta.get("model") == model_name and meta.get("polytrain_version") == version.split()[-1] and
          meta.get("checkpoint") == os.path.realpath(ckpt),
          "%s: metadata names the model, the polytrain version and the checkpoint (%s, %s, %s)" %
          (what, meta.get("model"), meta.get("polytrain_version"), meta.get("checkpoint")))
    ok = all(k in meta for k in ("mean", "std", "class_names", "normalization", "layout", "channel_order"))
    if check(ok, "%s: metadata_props holds mean, std, class_names, normalization, layout, channel_order (%s)" %
             (what, sorted(meta))):
        want_mean = np.array([float(v) for v in cm["mean"].split(",")], np.float32)
        want_std = np.array([float(v) for v in cm["std"].split(",")], np.float32)
        check(np.array_equal(np.array(json.loads(meta["mean"]), np.float32), want_mean) and
              np.array_equal(np.array(json.loads(meta["std"]), np.float32), want_std) and
              len(want_mean) == channels,
              "%s: mean %s and std %s are the checkpoint's" % (what, meta["mean"], meta["std"]))
        check(json.loads(meta["class_names"]) == json.loads(cm["class_names"]),
              "%s: class_names are the checkpoint's %s" % (what, meta["class_names"][:60]))
        check("pixel/255 - mean" in meta["normalization"] and meta["layout"] == "NCHW" and
              meta["channel_order"] == ("RGB" if channels == 3 else "grayscale"),
              "%s: normalization '%s', layout %s, channel order %s" %
              (what, meta["normalization"], meta["layout"], meta["channel_order"]))
    return sess.get_inputs()[0], sess.get_outputs()[0]


def check_onnx_model(what, path, opset, parameters=None):
    """onnx.checker with shape inference, the opset and the doc_string; with parameters, the float
    initializers other than BatchNorm statistics hold exactly that many values. The ONNX
    operator types of the graph (None without the onnx package)."""
    if onnx is None:
        return None
    try:
        onnx.checker.check_model(path, full_check=True)
        ok, why = True, ""
    except Exception as e:  # the checker's own exception types vary between versions
        ok, why = False, str(e)[:300]
    check(ok, "%s: onnx.checker.check_model accepts it %s" % (what, why))
    model = onnx.load(path)
    check([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [opset] and
          model.doc_string.count("pixel/255") == 1,
          "%s: opset_import is %d, the doc_string explains the input" % (what, opset))
    if parameters is not None:
        n = sum(int(np.prod(t.dims)) for t in model.graph.initializer
                if t.data_type == onnx.TensorProto.FLOAT and not t.name.endswith(("running_mean", "running_var")))
        check(n == parameters, "%s: the initializers hold %d parameters (the model has %d)" % (what, n, parameters))
    return {n.op_type for n in model.graph.node}


def compare(what, got, ref):
    err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    errors[what] = err
    check(got.shape == ref.shape and err <= TOL,
          "%s: onnxruntime logits %s equal polytrain eval's within %g (max abs error %.3g, |logits| up to %.3g)" %
          (what, got.shape, TOL, err, float(np.max(np.abs(ref)))))
    return err


def one_model(tmp, name, parameters, side, data_args, pixels, channels, variants_anyway=False):
    run = os.path.join(tmp, "run-" + name + ("" if channels == 3 else "-fashion"))
    what = name if channels == 3 else name + " (Fashion-MNIST)"
    t0 = time.time()
    rc, _ = run_cli(["train", "--model", name, "--out", run] + data_args + TRAIN)
    if not check(rc == 0, "%s: one training step makes a checkpoint" % what):
        return
    ckpt = os.path.join(run, "last")
    logits = os.path.join(tmp, name + ".logits")
    rc, _ = run_cli(["eval", "--checkpoint", ckpt, "--limit-val", str(IMAGES), "--threads", "2",
                     "--dump-logits", logits] + data_args)
    if not check(rc == 0, "%s: eval --dump-logits" % what):
        return
    ref = np.fromfile(logits, np.float32).reshape(IMAGES, -1)
    path = os.path.join(tmp, name + ".onnx")
    rc, out = run_cli(["export", "--checkpoint", ckpt, "--onnx", path])
    if not check(rc == 0 and os.path.isfile(path) and ("wrote " + path) in out, "%s: export writes %s" % (what, path)):
        return
    size = os.path.getsize(path)
    check(not [f for f in os.listdir(tmp) if ".tmp." in f], "%s: no temporary file is left behind" % what)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = normalise(pixels, sess.get_modelmeta().custom_metadata_map)
    compare(what, sess.run(["logits"], {"input": x})[0], ref)
    inp, outp = check_metadata(what, ckpt, sess, name, channels)
    check(inp.name == "input" and inp.shape == ["batch", channels, side, side] and inp.type == "tensor(float)" and
          outp.name == "logits" and outp.shape == ["batch", CLASSES if channels == 3 else 10],
          "%s: input %s %s, output %s %s (symbolic batch)" % (what, inp.name, inp.shape, outp.name, outp.shape))
    one = sess.run(["logits"], {"input": x[3:4]})[0]
    compare(what + ", batch of 1", one, ref[3:4])
    ops = check_onnx_model(what, path, 17, parameters)
    # Other opsets and a fixed batch: only reductions change form (their axes become an input
    # at 18), so the models with reductions take every form, and the smallest model the rest.
    reduces = ops is None or any(op.startswith("Reduce") for op in ops)
    variants = [("13", str(IMAGES))] if reduces or variants_anyway else []
    variants += [("18", "dynamic"), ("22", "dynamic")] if reduces else []
    for opset, batch in variants:
        p = os.path.join(tmp, "%s-%s.onnx" % (name, opset))
        rc, _ = run_cli(["export", "--checkpoint", ckpt, "--onnx", p, "--opset", opset, "--batch", batch])
        if not check(rc == 0, "%s: export --opset %s --batch %s" % (what, opset, batch)):
            continue
        s, got = ort_logits(p, x)
        v = "%s, opset %s, batch %s" % (what, opset, batch)
        compare(v, got, ref)
        want = [int(batch) if batch != "dynamic" else "batch", channels, side, side]
        check(s.get_inputs()[0].shape == want, "%s: input shape %s" % (v, s.get_inputs()[0].shape))
        check_onnx_model(v, p, int(opset))
        os.remove(p)
    print("%s: %.1f MB ONNX, %.1f s" % (what, size / 1e6, time.time() - t0), flush=True)
    os.remove(path)
    for leaf in ("last", "best"):
        for f in ("model.safetensors", "optimizer.safetensors"):
            try:
                os.remove(os.path.join(run, leaf, f))  # keep the scratch space small
            except OSError:
                pass


def main():
    print("onnxruntime %s, onnx %s, polytrain %s" % (ort.__version__, onnx.__version__ if onnx else "missing", CLI))
    if onnx is None:
        print("note: the onnx package cannot be imported: onnx.checker is not run")
    tmp = scratch_dir("onnx_export.")
    datasets = {}
    models = zoo()
    check(len(models) >= 6, "the zoo lists %d models: %s" % (len(models), [m[0] for m in models]))
    smallest = min(models, key=lambda m: m[1] or 0)[0] if models else None
    for name, parameters, side in models:
        packs, pixels = dataset(tmp, side, datasets)
        one_model(tmp, name, parameters, side, ["--data", "pack:%s,%s" % tuple(packs)], pixels, 3,
                  variants_anyway=name == smallest)
    if os.path.exists(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")):
        rc, out = run_cli(["models", "--json", "--model", "baseline", "--input", "1x28x28", "--classes", "10"])
        params = json.loads(out)[0]["parameters"] if rc == 0 else None
        pixels = read_idx_images(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"), IMAGES)
        one_model(tmp, "baseline", params, 28, ["--data", "fashion-mnist:" + FASHION], pixels, 1)
    else:
        print("note: %s is missing: the Fashion-MNIST export is not checked" % FASHION)
    print("max abs error of onnxruntime's logits against polytrain eval's:")
    for what, err in errors.items():
        print("  %-50s %.3g" % (what, err))
    return finish()


if __name__ == "__main__":
    sys.exit(main())
