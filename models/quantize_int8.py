#!/usr/bin/env python3
"""Static INT8 quantisation of the converted model with ONNX Runtime, calibrated on real photos.

    python3 models/quantize_int8.py --manifest models/efficientnet-lite0.json \
        --out models/efficientnet-lite0-int8.onnx [--method percentile|minmax|entropy]

Calibration images: scikit-image's sample photos (CC0, installed with the `scikit-image`
package, so every machine that runs the set-up has them), each taken whole and as a few
deterministic crops and mirror images, pre-processed exactly as the manifest says. None of
them is needed at run time. Weights are quantised per output channel (int8, symmetric),
activations per tensor (uint8), their ranges from the 99.99th percentile of the calibration
values (minmax and entropy are there to compare). The convolutions after the first, their
ReLU6 clips, the residual adds and the classifier run in INT8, while the global average pools
that make the descriptor and the flattens stay in float, so the pooled outputs are averages of
dequantised values rather than re-quantised themselves.

The first convolution (the stem, 3 input channels) stays in float: with K = 27 the INT8 GEMM
is slower than ONNX Runtime's float kernel for it (0.76 against 0.44 ms), and its input, the
normalised pixels, then needs no quantisation. The classifier is quantised although the
descriptor does not use it: ONNX Runtime computes every output of the graph on each run, and
its 1280 x 1000 float weights (5 MB, read from memory on every image) took 0.36-0.45 ms.

The file written is the quantised graph after ONNX Runtime's graph optimisations up to the
"extended" level (QDQ pairs fused into QLinearConv / QLinearAdd, the clips folded into their
quantisation ranges), saved so that each backend does not redo them: that halves the time to
create a session. The "all" level is not saved, as it adds layout changes specific to this CPU.
"""

import argparse
import os
import random
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image, ImageOps

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


def calibration_images(skimage_data):
    rng = random.Random(SEED)
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


class Photos(CalibrationDataReader):
    def __init__(self, manifest, skimage_data):
        self.batches = iter([{manifest.input_name: pipe.preprocess(img, manifest)[None]}
                             for img in calibration_images(skimage_data)])

    def get_next(self):
        return next(self.batches, None)


STEM_NODES = ["_conv_stem/Conv", "_conv_stem/Clip"]  # as convert_efficientnet_lite0.py names them


def float_nodes(model):
    """Names of the nodes that stay in float: the pools, the flattens, and the stem convolution
    with its clip."""
    names = [n.name for n in model.graph.node]
    missing = [s for s in STEM_NODES if s not in names]
    if missing:
        raise SystemExit(f"the model has no nodes {missing}")
    return STEM_NODES + [n.name for n in model.graph.node if n.op_type in ("GlobalAveragePool", "Flatten")]


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default=os.path.join(here, "efficientnet-lite0.json"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="percentile")
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
        onnx.save(model, prepared)
        quantize_static(
            prepared, quantised, Photos(manifest, skimage_data),
            quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[args.method],
            nodes_to_exclude=float_nodes(model),
            extra_options={"CalibPercentile": PERCENTILE},
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
          f"{len(CALIBRATION_PHOTOS) * (2 + CROPS_PER_PHOTO)} calibration images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
