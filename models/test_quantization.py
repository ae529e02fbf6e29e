#!/usr/bin/env python3
"""Checks the INT8 model that models/quantize_int8.py makes from the converted one.

    python3 models/test_quantization.py [--manifest models/efficientnet-lite0-int8.json] \
        [--float-manifest models/efficientnet-lite0.json]

- its convolutions but the stem and block 0's depthwise one run in INT8, and so does the
  classifier; it has the float model's inputs and outputs, and it is less than half the float
  model's size;
- the int8 weights of its 1x1 convolutions and classifier have |w[2i]| + |w[2i+1]| <= 128 along
  the input channels, and it computes the same with ONNX Runtime's exact u8 x u8 mode
  (`session.x64quantprecision`) as with its default kernels (on a CPU without VNNI the default
  u8 x s8 kernels saturate 16-bit pair sums, which this checks does not happen);
- it classifies scikit-image's CC0 photos as the float model does (test_conversion's classes);
- its descriptors of those photos, whole and cropped, are close to the float model's
  (cosine >= 0.97);
- the measurement option --calibrate-blur leaves the default calibration images as they are;
- quantising again reproduces the model file byte for byte.

Exits non-zero on failure; the last line is "N passed, N failed".
"""

import argparse
import filecmp
import os
import sys
import tempfile
import traceback

import numpy as np
import onnx
import skimage.data

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))

import embed_python as pipe  # noqa: E402
import quantize_int8  # noqa: E402
from test_conversion import EXPECTED_TOP1  # noqa: E402

PHOTOS = {"chelsea": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg"}
MIN_COSINE = 0.97


def photos():
    data = os.path.dirname(skimage.data.__file__)
    return {name: pipe.decode(os.path.join(data, f), (255, 255, 255)) for name, f in PHOTOS.items()}


def test_model_is_int8_and_small(ctx):
    model = onnx.load(ctx.int8.model_path)
    ops = [n.op_type for n in model.graph.node]
    # The stem's clip is fused into its convolution (FusedConv); block 0's clip became the range of
    # the QuantizeLinear after it.
    assert ops.count("QLinearConv") == 47, sorted(set(ops))
    float_convs = [(n.op_type, n.name) for n in model.graph.node if n.op_type in ("Conv", "FusedConv")]
    assert float_convs == [("FusedConv", "_conv_stem/Conv"), ("Conv", "_blocks/0/_depthwise_conv/Conv")], float_convs
    assert "Gemm" not in ops and ops.count("QGemm") == 1, sorted(set(ops))
    reference = onnx.load(ctx.float.model_path)
    assert [i.name for i in model.graph.input] == [i.name for i in reference.graph.input]
    assert [o.name for o in model.graph.output] == [o.name for o in reference.graph.output]
    size, float_size = os.path.getsize(ctx.int8.model_path), os.path.getsize(ctx.float.model_path)
    assert size < float_size / 2, (size, float_size)


def test_weights_cannot_saturate(ctx):
    model = onnx.load(ctx.int8.model_path)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    checked = 0
    for node in model.graph.node:
        if node.op_type not in ("QLinearConv", "QGemm"):
            continue
        w = weights[node.input[3]]
        assert w.dtype == np.int8, (node.name, w.dtype)
        if node.op_type == "QLinearConv" and (w.shape[1] == 1 or w.shape[2:] != (1, 1)):
            continue  # depthwise (one input channel per group): a kernel without pair sums
        rows = np.abs(w.reshape(w.shape[0], -1).astype(np.int32))
        if rows.shape[1] % 2:
            rows = np.concatenate([rows, np.zeros((rows.shape[0], 1), np.int32)], axis=1)
        pair_sums = rows.reshape(rows.shape[0], -1, 2).sum(axis=2)
        assert pair_sums.max() <= 128, (node.name, int(pair_sums.max()))
        # The grid is not coarser than it must be: most channels still reach beyond 7 bits.
        assert np.median(rows.max(axis=1)) > 64, (node.name, float(np.median(rows.max(axis=1))))
        checked += 1
    assert checked == 33, checked  # 32 pointwise convolutions (expand, project, head) + the classifier


def test_same_as_exact_integer_mode(ctx):
    exact = pipe.Embedder(ctx.int8, config={"session.x64quantprecision": "1"})
    lowest = 1.0
    for name, img in ctx.photos.items():
        x = pipe.preprocess(img, ctx.int8)[None]
        cosine = float(ctx.int8_embedder.embed(x)[0] @ exact.embed(x)[0])
        assert cosine > 0.9999, (name, cosine)
        lowest = min(lowest, cosine)
    print(f"    lowest cosine between default and exact u8 x u8 kernels: {lowest:.6f}")


def test_classifies_like_the_float_model(ctx):
    for name, img in ctx.photos.items():
        x = pipe.preprocess(img, ctx.int8)[None]
        top1 = int(np.argmax(ctx.int8_embedder.run(x)["logits"][0]))
        assert top1 in EXPECTED_TOP1[name], (name, top1)


def test_descriptors_close_to_the_float_model(ctx):
    lowest = 1.0
    for name, img in ctx.photos.items():
        w, h = img.size
        # Whole, the middle 80 % and the bottom-left quarter.
        for crop in [(0, 0, w, h), (w // 10, h // 10, w - w // 10, h - h // 10), (0, h // 2, w // 2, h)]:
            x = pipe.preprocess(img.crop(crop), ctx.int8)[None]
            cosine = float(ctx.int8_embedder.embed(x)[0] @ ctx.float_embedder.embed(x)[0])
            assert cosine >= MIN_COSINE, (name, crop, cosine)
            lowest = min(lowest, cosine)
    print(f"    lowest cosine to the float model: {lowest:.4f}")


def test_blur_option_keeps_the_default_calibration_set(ctx):
    # --calibrate-blur (a measurement option) adds two small blurred copies per photo from its own
    # random stream: the default images, and so the shipped model, must not depend on it.
    data = os.path.dirname(skimage.data.__file__)
    plain = list(quantize_int8.calibration_images(data))
    with_blur = list(quantize_int8.calibration_images(data, blur=True))
    per_photo = 2 + quantize_int8.CROPS_PER_PHOTO
    assert len(plain) == len(quantize_int8.CALIBRATION_PHOTOS) * per_photo, len(plain)
    assert len(with_blur) == len(quantize_int8.CALIBRATION_PHOTOS) * (per_photo + 2), len(with_blur)
    for i in range(len(quantize_int8.CALIBRATION_PHOTOS)):
        block = with_blur[i * (per_photo + 2):(i + 1) * (per_photo + 2)]
        for a, b in zip(block[:per_photo], plain[i * per_photo:(i + 1) * per_photo]):
            assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b)), i
        for thumb in block[per_photo:]:
            assert max(thumb.size) <= 320 and thumb.mode == "RGB", thumb.size


def test_quantiser_reproduces_model(ctx):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "again.onnx")
        quantize_int8.main(["--manifest", ctx.float_manifest_path, "--out", out])
        assert filecmp.cmp(out, ctx.int8.model_path, shallow=False), "the INT8 model differs from a fresh run"


class Context:
    pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", default=os.path.join(HERE, "efficientnet-lite0-int8.json"))
    ap.add_argument("--float-manifest", default=os.path.join(HERE, "efficientnet-lite0.json"))
    args = ap.parse_args(argv)
    ctx = Context()
    ctx.int8, ctx.float = pipe.Manifest(args.manifest), pipe.Manifest(args.float_manifest)
    ctx.float_manifest_path = args.float_manifest
    ctx.int8_embedder, ctx.float_embedder = pipe.Embedder(ctx.int8), pipe.Embedder(ctx.float)
    ctx.photos = photos()
    tests = [test_model_is_int8_and_small, test_weights_cannot_saturate, test_same_as_exact_integer_mode,
             test_classifies_like_the_float_model,
             test_descriptors_close_to_the_float_model, test_blur_option_keeps_the_default_calibration_set,
             test_quantiser_reproduces_model]
    passed = failed = 0
    for test in tests:
        try:
            test(ctx)
            print(f"ok   {test.__name__}")
            passed += 1
        except Exception:  # report every test, then fail the run
            print(f"FAIL {test.__name__}")
            traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
