#!/usr/bin/env python3
"""Python reference pipeline for imgsim's image_embedding(): Pillow + onnxruntime.

It implements the manifest semantics exactly as the Rust extension must:
  1. decode to 8-bit RGB; alpha is composited onto `alpha_background`;
  2. resize (antialiased bilinear/triangle) so the shorter side is
     `resize_shorter_to`, the longer side round(long * shorter_to / short);
  3. centre crop width x height, offset ((w - width) // 2, (h - height) // 2);
  4. v in 0..255 -> (v / 255 - mean[c]) / std[c], NCHW float32;
  5. descriptor: each part's output L2-normalised, times its weight,
     concatenated, then the whole vector L2-normalised.
EXIF orientation is not applied here (the Rust pipeline applies it), and every image is
decoded at full size (the Rust pipeline reads large progressive JPEGs at 1/8 scale).

Benchmark:
    python3 bench/embed_python.py --manifest models/efficientnet-lite0.json DIR_OR_FILES... \
        [--threads 1] [--dump out.npy]
prints images/s and the decode / resize / inference split (median of 3 runs);
--dump writes the descriptors, one row per image in the printed order.
"""

import argparse
import io
import json
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")


class Manifest:
    def __init__(self, path):
        with open(path) as f:
            m = json.load(f)
        self.model_path = os.path.join(os.path.dirname(os.path.abspath(path)), m["model"])
        self.input_name = m["input"]["name"]
        self.width, self.height = m["input"]["width"], m["input"]["height"]
        pre = m["preprocess"]
        if pre["crop"] != "center":
            raise ValueError(f"unsupported crop {pre['crop']!r}")
        self.shorter_to = pre["resize_shorter_to"]
        self.mean = np.asarray(pre["mean"], np.float32)
        self.std = np.asarray(pre["std"], np.float32)
        self.background = tuple(int(v) for v in pre["alpha_background"])
        self.parts = [(p["output"], p["dims"], p["weight"]) for p in m["descriptor"]["parts"]]
        self.dims = m["descriptor"]["dims"]
        if sum(d for _, d, _ in self.parts) != self.dims:
            raise ValueError("descriptor part dims do not add up to descriptor.dims")
        self.classifier_output = m["classifier"]["output"]


def decode(source, background):
    """File path, bytes or PIL image -> 8-bit RGB PIL image, alpha flattened onto `background`."""
    if isinstance(source, Image.Image):
        img = source
    else:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
    if img.mode == "RGB":
        return img
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return img.convert("RGB")
    rgba = np.asarray(img.convert("RGBA"), np.float32)
    alpha = rgba[..., 3:] / 255.0
    flat = rgba[..., :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
    return Image.fromarray(np.floor(flat + 0.5).astype(np.uint8), "RGB")


def resize_crop(img, shorter_to, width, height):
    """Resize so the shorter side is `shorter_to` (antialiased bilinear), then centre crop."""
    w, h = img.size
    short, long_ = min(w, h), max(w, h)
    scaled_long = max(1, (long_ * shorter_to + short // 2) // short)  # integer round-half-up
    size = (shorter_to, scaled_long) if w <= h else (scaled_long, shorter_to)
    # Pillow's BILINEAR widens its triangle kernel when downscaling, i.e. it antialiases.
    img = img.resize(size, Image.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return img.crop((left, top, left + width, top + height))


def normalise(img, mean, std):
    """8-bit RGB PIL image -> float32 CHW tensor."""
    x = np.asarray(img, np.float32) / np.float32(255.0)
    return ((x - mean) / std).transpose(2, 0, 1)


def preprocess(source, manifest):
    img = resize_crop(decode(source, manifest.background), manifest.shorter_to, manifest.width, manifest.height)
    return normalise(img, manifest.mean, manifest.std)


def l2_normalise(v, axis=-1):
    norm = np.linalg.norm(v, axis=axis, keepdims=True)
    return v / np.maximum(norm, 1e-12)


def descriptor(outputs, parts):
    """outputs: {name: [N, dims]}; parts: [(name, dims, weight)] -> [N, sum(dims)] unit vectors."""
    pieces = [weight * l2_normalise(outputs[name].astype(np.float32)) for name, _, weight in parts]
    return l2_normalise(np.concatenate(pieces, axis=1))


class Embedder:
    def __init__(self, manifest, threads=1, config=None):
        """config: ONNX Runtime session configuration entries (name -> value), if any."""
        self.manifest = manifest
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        for key, value in (config or {}).items():
            opts.add_session_config_entry(key, value)
        self.session = ort.InferenceSession(manifest.model_path, opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch):
        """NCHW float32 batch -> {output name: array}."""
        values = self.session.run(self.output_names, {self.manifest.input_name: batch})
        return dict(zip(self.output_names, values))

    def embed(self, batch):
        return descriptor(self.run(batch), self.manifest.parts)


def list_images(args):
    files = []
    for arg in args:
        if os.path.isdir(arg):
            for root, _, names in os.walk(arg):
                files += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
        else:
            files.append(arg)
    return sorted(files)


def timed_pass(embedder, blobs):
    """One pass over all images at batch size 1; returns (descriptors, seconds per stage)."""
    m = embedder.manifest
    spent = {"decode": 0.0, "resize": 0.0, "inference": 0.0}
    rows = []
    for blob in blobs:
        t0 = time.perf_counter()
        img = decode(blob, m.background)
        t1 = time.perf_counter()
        x = normalise(resize_crop(img, m.shorter_to, m.width, m.height), m.mean, m.std)[None]
        t2 = time.perf_counter()
        rows.append(embedder.embed(x)[0])
        t3 = time.perf_counter()
        spent["decode"] += t1 - t0
        spent["resize"] += t2 - t1
        spent["inference"] += t3 - t2
    return np.stack(rows), spent


def main(argv=None):
    parser = argparse.ArgumentParser(description="Embed images with the Python reference pipeline.")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--runs", type=int, default=3, help="timed passes; the median is reported")
    parser.add_argument("--dump", help="write the descriptors to this .npy file")
    parser.add_argument("paths", nargs="+", help="image files or directories")
    args = parser.parse_args(argv)

    files = list_images(args.paths)
    if not files:
        parser.error("no images found")
    blobs = []
    for path in files:  # read files up front so disk I/O is not counted as decoding
        with open(path, "rb") as f:
            blobs.append(f.read())

    embedder = Embedder(Manifest(args.manifest), threads=args.threads)
    embedder.embed(preprocess(blobs[0], embedder.manifest)[None])  # warm-up
    passes = [timed_pass(embedder, blobs) for _ in range(args.runs)]
    totals = [sum(spent.values()) for _, spent in passes]
    median = passes[totals.index(statistics.median_low(totals))][1]
    total = sum(median.values())

    print(f"images: {len(files)}  threads: {args.threads}  runs: {args.runs} (median shown)")
    print(f"throughput: {len(files) / total:.1f} images/s  ({1000 * total / len(files):.2f} ms/image)")
    for stage, seconds in median.items():
        print(f"  {stage:<10} {1000 * seconds / len(files):8.2f} ms/image  {100 * seconds / total:5.1f} %")
    if args.dump:
        np.save(args.dump, passes[0][0].astype(np.float32))
        with open(args.dump + ".txt", "w") as f:
            f.write("\n".join(files) + "\n")
        print(f"descriptors: {args.dump} ({len(files)} x {passes[0][0].shape[1]}), file order in {args.dump}.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
