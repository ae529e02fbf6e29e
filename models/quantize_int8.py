#!/usr/bin/env python3
"""Static INT8 quantisation of the converted model with ONNX Runtime, calibrated on real photos.

    python3 models/quantize_int8.py --manifest models/efficientnet-lite0.json \
        --out models/efficientnet-lite0-int8.onnx [--method percentile|minmax|entropy]

Calibration images: scikit-image's sample photos (CC0, installed with the `scikit-image`
package, so every machine that runs the set-up has them), each taken whole and as a few
deterministic crops and mirror images, pre-processed exactly as the manifest says. None of
them is needed at run time. Weights are quantised per output channel (int8, symmetric),
activations per tensor (uint8), their ranges from the 99.99th percentile of the calibration
values (minmax and entropy are there to compare). The convolutions after the first two, their
ReLU6 clips, the residual adds and the classifier run in INT8, while the global average pools
that make the descriptor and the flattens stay in float, so the pooled outputs are averages of
dequantised values rather than re-quantised themselves.

The first convolution (the stem, 3 input channels) stays in float: with K = 27 the INT8 GEMM
is slower than ONNX Runtime's float kernel for it (0.76 against 0.44 ms), and its input, the
normalised pixels, then needs no quantisation. The depthwise convolution of block 0 (and its
clip) stays in float too: the stem's output is the tensor whose 8-bit rounding hurts the
descriptor most (keeping any other single block in float changes the descriptor's cosine to the
float model by less than 0.0003; this one by +0.0028), and that convolution was no faster in INT8
than in float. The classifier is quantised although the descriptor does not use it: ONNX Runtime
computes every output of the graph on each run, and its 1280 x 1000 float weights (5 MB, read from
memory on every image) took 0.36-0.45 ms.

Weights safe from 16-bit saturation. On x86-64 CPUs without VNNI (AVX2, e.g. AMD EPYC before
Zen 4), ONNX Runtime's u8 x s8 kernels multiply pairs of adjacent input channels and add each
pair into a saturating 16-bit lane (vpmaddubsw): 255 x (|w0| + |w1|) overflows once the two int8
weights of a pair add up to more than 128 in magnitude, and the descriptors then drift far from
the float model's (mean cosine 0.942 against 0.988 on the evaluation images). So each 1x1
convolution's and the classifier's weights are quantised per output channel onto a grid where
every pair (input channels 2i, 2i+1) has |q0| + |q1| <= 128: the channel's scale is chosen among
1-2 x max|w| / 127 to minimise the squared weight error, pairs still above the limit are shrunk
to it, and the float weights are replaced by those grid values before ONNX Runtime quantises them
with the same scale (an `rmin`/`rmax` override per channel), so it reproduces them exactly.
The model then computes the same on every CPU, VNNI or not, and on AVX2 as with ONNX Runtime's
slower exact mode (`session.x64quantprecision`). Depthwise convolutions use another kernel that
does not saturate.

The file written is the quantised graph after ONNX Runtime's graph optimisations up to the
"extended" level (QDQ pairs fused into QLinearConv / QLinearAdd, the clips folded into their
quantisation ranges), saved so that each backend does not redo them: that halves the time to
create a session. The "all" level is not saved, as it adds layout changes specific to this CPU.
"""

import argparse
import io
import os
import random
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import embed_python as pipe  # noqa: E402

# scikit-image sample photos of real scenes (not the synthetic or microscopy ones).
CALIBRATION_PHOTOS = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                      "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg",
                      "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg",
                      "text.png", "moon.png", "ihc.png", "clock_motion.png"]
CROPS_PER_PHOTO = 3
SEED = 1234
PERCENTILE = 99.99


def blurred_thumbnails(img, rng):
    """Two small blurred, JPEG-compressed copies of a calibration photo (128-320 px on the longer
    side, blur radius 0.8-3 px, quality 60-85): the kind of input whose activations are smoother
    than a sharp photo's. Parameters drawn from this script's own generator, not the evaluation's."""
    for _ in range(2):
        side = rng.randint(128, 320)
        small = img.copy()
        small.thumbnail((side, side), Image.BICUBIC)
        small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 3.0)))
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=rng.randint(60, 85))
        buf.seek(0)
        yield Image.open(buf).convert("RGB")


def calibration_images(skimage_data, blur=False):
    rng = random.Random(SEED)
    blur_rng = random.Random(SEED + 1)  # a second stream: the crops stay those of the default set
    for name in CALIBRATION_PHOTOS:
        img = pipe.decode(os.path.join(skimage_data, name), (255, 255, 255))
        yield img
        yield ImageOps.mirror(img)
        w, h = img.size
        for _ in range(CROPS_PER_PHOTO):
            f = rng.uniform(0.35, 0.8)
            cw, ch = max(8, round(w * f)), max(8, round(h * f))
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            yield img.crop((left, top, left + cw, top + ch))
        if blur:
            yield from blurred_thumbnails(img, blur_rng)


class Photos(CalibrationDataReader):
    def __init__(self, manifest, skimage_data, blur=False):
        self.batches = iter([{manifest.input_name: pipe.preprocess(img, manifest)[None]}
                             for img in calibration_images(skimage_data, blur)])

    def get_next(self):
        return next(self.batches, None)


# as convert_efficientnet_lite0.py names them
FLOAT_CONV_NODES = ["_conv_stem/Conv", "_conv_stem/Clip", "_blocks/0/_depthwise_conv/Conv",
                    "_blocks/0/_depthwise_conv/Clip"]
PAIR_LIMIT = 128  # 255 * 128 = 32640 <= 32767: a u8 x s8 pair sum fits a signed 16-bit lane
SCALE_FACTORS = np.linspace(1.0, 2.0, 41)  # candidate scales, times max|w| / 127


def float_nodes(model, extra_prefixes=()):
    """Names of the nodes that stay in float: the pools, the flattens, the stem convolution and
    block 0's depthwise convolution with their clips, and every node whose name starts with one of
    extra_prefixes (e.g. "_blocks/1/": a whole block, to measure what its quantisation costs)."""
    names = [n.name for n in model.graph.node]
    missing = [s for s in FLOAT_CONV_NODES if s not in names]
    if missing:
        raise SystemExit(f"the model has no nodes {missing}")
    extra = [n for n in names if any(n.startswith(p) for p in extra_prefixes)]
    if extra_prefixes and not extra:
        raise SystemExit(f"no nodes start with {list(extra_prefixes)}")
    return (FLOAT_CONV_NODES + [n for n in extra if n not in FLOAT_CONV_NODES]
            + [n.name for n in model.graph.node if n.op_type in ("GlobalAveragePool", "Flatten")])


def pair_safe_channel(w):
    """Float weights of one output channel (its input channels in order) -> (scale, int8 values)
    with |q[2i]| + |q[2i+1]| <= PAIR_LIMIT, of least squared error (q * scale - w) among the
    candidate scales."""
    padded = np.concatenate([w, np.zeros(len(w) % 2)])
    base = np.abs(w).max() / 127.0
    if base == 0:
        return 1.0, np.zeros(len(w))
    best = None
    for factor in SCALE_FACTORS:
        scale = base * factor
        q = np.clip(np.rint(padded / scale), -127, 127)
        pairs = np.abs(q).reshape(-1, 2)
        excess = pairs.sum(axis=1) - PAIR_LIMIT
        over = excess > 0
        if over.any():
            # Shrink both weights of a pair by half the excess (the larger one by the odd unit).
            e, pair = excess[over], pairs[over]
            larger = np.argmax(pair, axis=1)
            rows = np.arange(len(e))
            cut = np.zeros_like(pair)
            cut[rows, larger] = np.ceil(e / 2)
            cut[rows, 1 - larger] = np.floor(e / 2)
            cut = np.minimum(cut, pair)
            cut[rows, larger] += e - cut.sum(axis=1)
            pairs[over] = pair - cut
            q = np.sign(q) * pairs.reshape(-1)
        error = float(np.sum((q * scale - padded) ** 2))
        if best is None or error < best[0]:
            best = (error, scale, q[:len(w)])
        if not over.any():
            break  # a larger scale only rounds more coarsely
    return best[1], best[2]


def pair_safe_weights(model, float_names):
    """Replaces, in place, the weights of every 1x1 convolution quantised to INT8 and of the
    classifier (per output channel, input channels along the rest) by pair-safe grid values;
    returns the per-channel range overrides that make the quantiser use the same grid.
    float_names: the nodes that stay in float (float_nodes), whose weights are left alone."""
    from onnx import numpy_helper
    initializers = {i.name: i for i in model.graph.initializer}
    overrides = {}
    for node in model.graph.node:
        if node.name in float_names or node.op_type not in ("Conv", "Gemm"):
            continue
        weights = numpy_helper.to_array(initializers[node.input[1]])
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Conv" and (weights.shape[2:] != (1, 1) or ("group" in attrs and attrs["group"].i != 1)):
            continue  # depthwise: ONNX Runtime's kernel for it does not saturate
        if node.op_type == "Gemm" and not ("transB" in attrs and attrs["transB"].i == 1):
            raise SystemExit(f"{node.name}: expected a Gemm with transB = 1")
        rows = weights.reshape(weights.shape[0], -1).astype(np.float64)
        grid, channel_overrides = np.empty_like(rows), []
        for c in range(rows.shape[0]):
            scale, q = pair_safe_channel(rows[c])
            scale = float(np.float32(scale))
            grid[c] = q * scale
            rmax = np.float32(scale * 127.0)
            channel_overrides.append({"axis": 0, "rmin": -rmax, "rmax": rmax})
        initializers[node.input[1]].CopyFrom(
            numpy_helper.from_array(grid.reshape(weights.shape).astype(np.float32), node.input[1]))
        overrides[node.input[1]] = channel_overrides
    return overrides


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default=os.path.join(here, "efficientnet-lite0.json"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="percentile")
    # For measurements only; the defaults make the shipped model.
    ap.add_argument("--percentile", type=float, default=PERCENTILE)
    ap.add_argument("--no-pair-safe", action="store_true",
                    help="plain per-channel int8 weights (saturates on x86-64 CPUs without VNNI)")
    ap.add_argument("--float-prefix", action="append", default=[],
                    help="also keep in float every node whose name starts with this (repeatable)")
    ap.add_argument("--calibrate-blur", action="store_true",
                    help="add two blurred JPEG thumbnails of each calibration photo to the calibration set")
    args = ap.parse_args(argv)

    import skimage.data
    skimage_data = os.path.dirname(skimage.data.__file__)
    manifest = pipe.Manifest(args.manifest)
    prepared, quantised = args.out + ".prep.onnx", args.out + ".qdq.onnx"
    try:
        quant_pre_process(manifest.model_path, prepared, skip_symbolic_shape=True)
        model = onnx.load(prepared)
        for node in model.graph.node:  # quantize_static needs node names to exclude nodes
            if not node.name:
                node.name = node.output[0]
        excluded = float_nodes(model, args.float_prefix)
        overrides = {} if args.no_pair_safe else pair_safe_weights(model, set(excluded))
        onnx.save(model, prepared)
        quantize_static(
            prepared, quantised, Photos(manifest, skimage_data, args.calibrate_blur),
            quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[args.method],
            nodes_to_exclude=excluded,
            extra_options={"CalibPercentile": args.percentile, "TensorQuantOverrides": overrides},
        )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = args.out
        ort.InferenceSession(quantised, options, providers=["CPUExecutionProvider"])
    finally:
        for path in (prepared, quantised):
            if os.path.exists(path):
                os.remove(path)
    print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes ({args.method} calibration, "
          f"{len(CALIBRATION_PHOTOS) * (2 + CROPS_PER_PHOTO + 2 * args.calibrate_blur)} calibration images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
