"""PyTorch twins of polytrain's models (docs/MODELS.md in shared/) and a plain-Python
safetensors reader, so that a polytrain checkpoint loads with load_state_dict(strict=True).
The reader works without torch (raw bytes per tensor); it must never trust the file's header.

Self-check:  python3 tools/torch_models.py   (asserts parameter and state-entry counts)
"""

import json
import os
import struct
import sys

try:
    import torch
    from torch import nn
    import torch.nn.functional as F
    _Module = nn.Module
except ImportError:  # the safetensors reader below still works; the models need torch
    torch = nn = F = None
    _Module = object

# ---------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header, raw little-endian data.
# ---------------------------------------------------------------------------------------

# dtype name -> (bytes per element, torch dtype attribute name)
SAFETENSORS_DTYPES = {
    "F64": (8, "float64"),
    "F32": (4, "float32"),
    "F16": (2, "float16"),
    "BF16": (2, "bfloat16"),
    "I64": (8, "int64"),
    "I32": (4, "int32"),
    "I16": (2, "int16"),
    "I8": (1, "int8"),
    "U8": (1, "uint8"),
    "BOOL": (1, "bool"),
}

# A header larger than this is a corrupt length field, not a real header.
MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A safetensors file that is not what its header claims."""


class RawTensor:
    """One tensor of a safetensors file as its dtype name, shape and raw bytes."""

    __slots__ = ("dtype", "shape", "data")

    def __init__(self, dtype, shape, data):
        self.dtype = dtype
        self.shape = tuple(shape)
        self.data = data

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __eq__(self, other):
        return (isinstance(other, RawTensor) and self.dtype == other.dtype
                and self.shape == other.shape and self.data == other.data)

    def __repr__(self):
        return "RawTensor(%s, %s, %d bytes)" % (self.dtype, list(self.shape), len(self.data))


def read_safetensors_raw(path):
    """Returns ({name: RawTensor}, metadata dict of str -> str). Raises SafetensorsError."""
    with open(path, "rb") as f:
        blob = f.read()
    return parse_safetensors(blob, path)


def parse_safetensors(blob, where="<bytes>"):
    """Parses a whole safetensors file held in memory; every size and offset is checked."""
    if len(blob) < 8:
        raise SafetensorsError("%s: %d bytes, shorter than the 8-byte header length"
                               % (where, len(blob)))
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > MAX_HEADER_BYTES or header_len > len(blob) - 8:
        raise SafetensorsError("%s: header length %d does not fit a %d-byte file"
                               % (where, header_len, len(blob)))
    try:
        header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SafetensorsError("%s: header is not valid JSON: %s" % (where, e))
    if not isinstance(header, dict):
        raise SafetensorsError("%s: header is not a JSON object" % where)
    data = blob[8 + header_len:]
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError("%s: __metadata__ must map strings to strings" % where)

    tensors = {}
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise SafetensorsError("%s: entry %r is not an object" % (where, name))
        dtype = info.get("dtype")
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise SafetensorsError("%s: %r has unknown dtype %r" % (where, name, dtype))
        if (not isinstance(shape, list) or
                not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise SafetensorsError("%s: %r has a bad shape %r" % (where, name, shape))
        if (not isinstance(offsets, list) or len(offsets) != 2 or
                not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise SafetensorsError("%s: %r has bad data_offsets %r" % (where, name, offsets))
        begin, end = offsets
        if not 0 <= begin <= end <= len(data):
            raise SafetensorsError("%s: %r data_offsets [%d, %d] outside the %d data bytes"
                                   % (where, name, begin, end, len(data)))
        t = RawTensor(dtype, shape, data[begin:end])
        if t.numel() * SAFETENSORS_DTYPES[dtype][0] != end - begin:
            raise SafetensorsError("%s: %r has %d bytes for shape %r of %s"
                                   % (where, name, end - begin, shape, dtype))
        tensors[name] = t
        spans.append((begin, end, name))

    # The format requires the tensors to tile the data region: no overlap, no gap.
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise SafetensorsError("%s: %r starts at %d, expected %d (gap or overlap)"
                                   % (where, name, begin, pos))
        pos = end
    if pos != len(data):
        raise SafetensorsError("%s: %d trailing data bytes after the last tensor"
                               % (where, len(data) - pos))
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: RawTensor} (sorted by name, packed) and string metadata; for tests that
    craft checkpoints. Writes exactly what it is given: it validates nothing."""
    header = {}
    pos = 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {"dtype": t.dtype, "shape": list(t.shape),
                        "data_offsets": [pos, pos + len(t.data)]}
        pos += len(t.data)
    if metadata:
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # 8-byte aligned data, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in sorted(tensors):
            f.write(tensors[name].data)


def save_state_dict(path, state, metadata=None):
    """Writes a torch state_dict as safetensors.torch.save_file does (names, dtypes, shapes,
    little-endian C-order data), for machines without the safetensors package."""
    _require_torch()
    names = {v[1]: k for k, v in SAFETENSORS_DTYPES.items()}
    raw = {}
    for k, v in state.items():
        v = v.detach().contiguous().cpu()
        dtype = names[str(v.dtype).replace("torch.", "")]
        data = v.view(torch.uint8).numpy().tobytes() if v.dtype == torch.bfloat16 else v.numpy().tobytes()
        raw[k] = RawTensor(dtype, v.shape, data)
    write_safetensors(path, raw, metadata)


def raw_to_torch(raw):
    """One RawTensor as a torch tensor (a copy, so it owns writable memory)."""
    _require_torch()
    if sys.byteorder != "little":
        raise SafetensorsError("big-endian hosts are not supported")
    dtype = getattr(torch, SAFETENSORS_DTYPES[raw.dtype][1])
    if raw.numel() == 0:
        return torch.empty(raw.shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw.data), dtype=dtype).reshape(raw.shape)


def load_safetensors(path):
    """Returns (state_dict of torch tensors, metadata) of a safetensors file."""
    raw, metadata = read_safetensors_raw(path)
    return {name: raw_to_torch(t) for name, t in raw.items()}, metadata


# ---------------------------------------------------------------------------------------
# Models: names and shapes exactly as MODELS.md says (PyTorch / torchvision names).
# ---------------------------------------------------------------------------------------

def _require_torch():
    if torch is None:
        raise ImportError("torch is needed for this (Debian package python3-torch)")


def _init_like_polytrain(module):
    """Kaiming-normal (fan_out, relu) convs, BN weight 1 and bias 0, default Linear."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Baseline(_Module):
    """Four conv3x3-BN-ReLU-maxpool stages (64..512), global average pool, fc."""

    def __init__(self, in_channels=1, num_classes=10):
        _require_torch()
        super().__init__()
        c = in_channels
        for i, w in enumerate((64, 128, 256, 512), start=1):
            setattr(self, "conv%d" % i, nn.Conv2d(c, w, 3, stride=1, padding=1, bias=False))
            setattr(self, "bn%d" % i, nn.BatchNorm2d(w))
            c = w
        self.fc = nn.Linear(512, num_classes)
        _init_like_polytrain(self)

    def forward(self, x):
        for i in range(1, 5):
            x = getattr(self, "bn%d" % i)(getattr(self, "conv%d" % i)(x))
            x = F.max_pool2d(F.relu(x), kernel_size=2, stride=2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SqueezeExcitation(_Module):
    """SE: x * sigmoid(fc2(relu(fc1(mean over H,W of x)))), reduction 16."""

    def __init__(self, channels):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 16)
        self.fc2 = nn.Linear(channels // 16, channels)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class ChannelAttention(_Module):
    """CBAM's channel branch: one MLP shared by the average- and max-pooled vectors."""

    def __init__(self, channels):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 16)
        self.fc2 = nn.Linear(channels // 16, channels)

    def forward(self, x):
        a = self.fc2(F.relu(self.fc1(x.mean((2, 3))))) + self.fc2(F.relu(self.fc1(x.amax((2, 3)))))
        return x * torch.sigmoid(a)[:, :, None, None]


class SpatialAttention(_Module):
    """CBAM's spatial branch: 7x7 conv (2 -> 1, no bias) + BN over [mean, max] of channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        m = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.bn(self.conv(m)))


class CBAM(_Module):
    def __init__(self, channels):
        super().__init__()
        self.ca = ChannelAttention(channels)
        self.sa = SpatialAttention()

    def forward(self, x):
        return self.sa(self.ca(x))


class BasicBlock(_Module):
    """torchvision's BasicBlock: conv-bn-relu-conv-bn, plus identity or 1x1 downsample;
    attention "se" or "cbam" applies to the output of bn2 before the shortcut is added."""

    def __init__(self, in_planes, planes, stride, attention=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        if attention == "se":
            self.se = SqueezeExcitation(planes)
        elif attention == "cbam":
            self.cbam = CBAM(planes)
        elif attention is not None:
            raise ValueError("unknown attention %r" % attention)
        self.attention = attention

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attention == "se":
            out = self.se(out)
        elif self.attention == "cbam":
            out = self.cbam(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet(_Module):
    """torchvision ResNet with BasicBlock and a 3x3 stride-1 stem without max-pool, or
    (imagenet_stem) torchvision's own 7x7 stride-2 stem and 3x3 stride-2 max-pool."""

    def __init__(self, blocks, in_channels=3, num_classes=200, widths=(64, 128, 256, 512),
                 attention=None, imagenet_stem=False):
        _require_torch()
        super().__init__()
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.imagenet_stem = imagenet_stem
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        for layer, (n, w) in enumerate(zip(blocks, widths), start=1):
            stride = 1 if layer == 1 else 2
            stage = []
            for b in range(n):
                stage.append(BasicBlock(in_planes, w, stride if b == 0 else 1, attention))
                in_planes = w
            setattr(self, "layer%d" % layer, nn.Sequential(*stage))
        self.fc = nn.Linear(in_planes, num_classes)
        _init_like_polytrain(self)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.imagenet_stem:
            x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def baseline(in_channels=1, num_classes=10):
    return Baseline(in_channels, num_classes)


def resnet18(in_channels=3, num_classes=200):
    return ResNet((2, 2, 2, 2), in_channels, num_classes)


def resnet34(in_channels=3, num_classes=200):
    return ResNet((3, 4, 6, 3), in_channels, num_classes)


def wide_resnet18(in_channels=3, num_classes=200):
    return ResNet((2, 2, 2, 2), in_channels, num_classes, widths=(128, 256, 512, 1024))


def se_resnet18(in_channels=3, num_classes=200):
    return ResNet((2, 2, 2, 2), in_channels, num_classes, attention="se")


def cbam_resnet18(in_channels=3, num_classes=200):
    return ResNet((2, 2, 2, 2), in_channels, num_classes, attention="cbam")


def resnet18_imagenet(in_channels=3, num_classes=1000):
    """torchvision.models.resnet18 (same names, shapes and forward), any input channels."""
    return ResNet((2, 2, 2, 2), in_channels, num_classes, imagenet_stem=True)


MODELS = {"baseline": baseline, "resnet18": resnet18, "resnet34": resnet34,
          "wide_resnet18": wide_resnet18, "se_resnet18": se_resnet18,
          "cbam_resnet18": cbam_resnet18, "resnet18_imagenet": resnet18_imagenet}


def build(name, in_channels, num_classes):
    """The PyTorch twin of polytrain model `name`."""
    if name not in MODELS:
        raise KeyError("no PyTorch twin for model %r (have: %s)" % (name, ", ".join(MODELS)))
    return MODELS[name](in_channels, num_classes)


def build_from_checkpoint(model_path):
    """(module with the checkpoint's weights loaded strictly, metadata) of a model.safetensors."""
    state, meta = load_safetensors(model_path)
    model = build(meta["model"], int(meta["in_channels"]), int(meta["num_classes"]))
    model.load_state_dict(state, strict=True)
    return model, meta


# MODELS.md's published sizes for TinyImageNet (in_channels 3, 200 classes):
# (parameters rounded to 1e3, state-dict entries).
EXPECTED_SIZES = {"baseline": (1655, 26), "resnet18": (11271, 122), "resnet34": (21380, 218),
                  "wide_resnet18": (44858, 122), "se_resnet18": (11361, 154),
                  "cbam_resnet18": (11361, 202), "resnet18_imagenet": (11279, 122)}


def _check_safetensors_reader():
    """The reader round-trips what write_safetensors wrote and rejects broken files."""
    import tempfile
    state = baseline(1, 10).state_dict()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.safetensors")
        dtype_names = {v[1]: k for k, v in SAFETENSORS_DTYPES.items()}
        raw = {k: RawTensor(dtype_names[str(v.dtype).replace("torch.", "")], v.shape,
                            v.contiguous().numpy().tobytes()) for k, v in state.items()}
        write_safetensors(path, raw, {"model": "baseline"})
        back, meta = load_safetensors(path)
        assert meta == {"model": "baseline"} and set(back) == set(state)
        assert all(torch.equal(back[k], state[k]) and back[k].dtype == state[k].dtype
                   for k in state)
        with open(path, "rb") as f:
            blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    broken = {
        "truncated data": blob[:-4],
        "header length past the end": struct.pack("<Q", len(blob)) + blob[8:],
        "garbage JSON": blob[:8] + b"{" * hlen + blob[8 + hlen:],
        "shorter than 8 bytes": blob[:5],
    }
    for what, b in broken.items():
        try:
            parse_safetensors(b)
        except SafetensorsError:
            continue
        raise AssertionError("reader accepted a file with " + what)
    print("safetensors reader: round trip and %d broken files ok" % len(broken))


def self_check():
    """Asserts the parameter and state-entry counts of MODELS.md and a forward shape."""
    for name, (kparams, entries) in EXPECTED_SIZES.items():
        m = build(name, 3, 200)
        n = sum(p.numel() for p in m.parameters())
        sd = m.state_dict()
        assert round(n / 1000) == kparams, "%s: %d parameters, MODELS.md says %dk" % (
            name, n, kparams)
        assert len(sd) == entries, "%s: %d state entries, MODELS.md says %d" % (
            name, len(sd), entries)
        nbt = [k for k in sd if k.endswith("num_batches_tracked")]
        assert nbt and all(sd[k].dtype == torch.int64 and sd[k].dim() == 0 for k in nbt)
        m.eval()
        with torch.no_grad():
            out = m(torch.randn(2, 3, 64, 64))
        assert out.shape == (2, 200), (name, out.shape)
        print("%-13s %10d parameters (%.3f M)  %3d state entries  ok" % (name, n, n / 1e6, len(sd)))
    _check_safetensors_reader()
    m = baseline(1, 10)
    with torch.no_grad():
        assert m.eval()(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    print("self-check passed")


if __name__ == "__main__":
    self_check()
