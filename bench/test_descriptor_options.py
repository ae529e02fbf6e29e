#!/usr/bin/env python3
"""Checks bench/descriptor_options.py, the descriptor options of the issue-14 evaluation.

    python3 bench/test_descriptor_options.py [--manifest models/efficientnet-lite0.json]

On scikit-image's CC0 sample photos and the manifest's model:
- the free-size model's feature maps, average-pooled, are the model's own pooled outputs;
- region pooling against a direct numpy computation, and the region set itself;
- best_match against a loop over every pair, and the cross form never matching two regions;
- every option gives unit vectors of the manifest's width, as many per image as it says.
The last line is "N passed, N failed".
"""

import argparse
import os
import sys

import numpy as np
import skimage.data
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "models"))

import descriptor_options as opt  # noqa: E402
import embed_python as pipe  # noqa: E402
from test_conversion import run_tests  # noqa: E402


class Context:
    def __init__(self, manifest_path):
        self.manifest = pipe.Manifest(manifest_path)
        self.embedder = pipe.Embedder(self.manifest)
        self.maps = opt.MapEmbedder(self.manifest)
        self.photos = [Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.coffee()),
                       Image.fromarray(skimage.data.rocket())]


def test_regions_are_the_documented_grid(ctx):
    assert len(opt.REGIONS) == 14
    assert opt.REGIONS[0] == (0.0, 0.0, 1.0, 1.0)
    for left, top, right, bottom in opt.REGIONS:
        assert 0 <= left < right <= 1 + 1e-9 and 0 <= top < bottom <= 1 + 1e-9
    sides = sorted({round(r - l, 6) for l, _, r, _ in opt.REGIONS})
    assert sides == [0.5, round(2 / 3, 6), 1.0], sides
    # The grid windows reach both edges.
    assert max(r for _, _, r, _ in opt.REGIONS[1:]) == 1.0 and min(l for l, _, _, _ in opt.REGIONS[1:]) == 0.0


def test_feature_maps_pool_to_the_model_outputs(ctx):
    m = ctx.manifest
    img = ctx.photos[0].resize((m.width, m.height))
    want = ctx.embedder.run(pipe.normalise(img, m.mean, m.std)[None])
    got = ctx.maps.run(img)
    assert set(got) == {name for name, _, _ in m.parts}
    for name, fmap in got.items():
        pooled = fmap.mean((1, 2))
        assert np.allclose(pooled, want[name][0], rtol=1e-4, atol=1e-5), (name, np.abs(pooled - want[name][0]).max())


def test_whole_picture_keeps_the_aspect_ratio(ctx):
    m = ctx.manifest
    wide = ctx.photos[1]  # 600 x 400
    x = ctx.maps.whole_input(wide)
    assert x.shape == (1, 3, m.height, round(wide.size[0] * m.height / wide.size[1])), x.shape
    panorama = wide.resize((2000, 200))
    x = ctx.maps.whole_input(panorama)
    assert x.shape[3] == opt.LONGEST_SIDE_FACTOR * m.width and x.shape[2] < m.height, x.shape
    maps = ctx.maps.run(wide)
    assert maps["head"].shape[1:] != (m.height // 32, m.width // 32), "feature map should follow the picture"


def test_region_pools_against_numpy(ctx):
    rng = np.random.default_rng(1)
    fmap = rng.random((5, 9, 12)).astype(np.float32)
    avg, mx = opt.pool_regions(fmap)
    assert avg.shape == mx.shape == (len(opt.REGIONS), 5)
    assert np.allclose(avg[0], fmap.mean((1, 2))) and np.allclose(mx[0], fmap.max((1, 2)))
    # the first 2x2 window (2/3 of each side, top left): rows 0..6, columns 0..8
    assert np.allclose(avg[1], fmap[:, 0:6, 0:8].mean((1, 2))), "2x2 top-left window"
    # the last 3x3 window (1/2 of each side, bottom right): rows 4..9 (4.5 rounds to 4), columns 6..12
    assert np.allclose(mx[-1], fmap[:, 4:9, 6:12].max((1, 2))), "3x3 bottom-right window"
    assert (mx >= avg - 1e-6).all()


def test_region_crops(ctx):
    img = ctx.photos[1]
    w, h = img.size
    crops = opt.region_crops(img)
    assert len(crops) == len(opt.REGIONS) - 1
    assert crops[0].size == (round(2 / 3 * w), round(2 / 3 * h)), crops[0].size
    assert crops[-1].size == (w - round(w / 2), h - round(h / 2)), crops[-1].size
    # the last crop is the bottom-right quarter, pixel for pixel
    assert np.array_equal(np.asarray(crops[-1]), np.asarray(img)[round(h / 2):, round(w / 2):])


def test_best_match_against_every_pair(ctx):
    rng = np.random.default_rng(2)
    q = pipe.l2_normalise(rng.standard_normal((7, 3, 16)).astype(np.float32))
    db = pipe.l2_normalise(rng.standard_normal((300, 4, 16)).astype(np.float32))
    want = np.array([[max(float(a @ b) for a in q[i] for b in db[j]) for j in range(len(db))] for i in range(len(q))])
    assert np.allclose(opt.best_match(q, db, chunk=3), want, atol=1e-5)


def test_cross_never_matches_two_regions(ctx):
    e = np.eye(4, dtype=np.float32)
    # query: whole e0, region e1; stored: whole e2, region e1 -> the only equal pair is region-region
    q, db = np.stack([[e[0], e[1]]]), np.stack([[e[2], e[1]]])
    assert opt.similarity("multi-vector", q, db)[0, 0] == 1.0
    assert opt.similarity("multi-vector (cross)", q, db)[0, 0] == 0.0
    # a query region against the stored whole picture does count
    db = np.stack([[e[1], e[3]]])
    assert opt.similarity("multi-vector (cross)", q, db)[0, 0] == 1.0
    # the one-sided forms: only stored regions, or only query regions, take part
    assert opt.similarity("query region crops", q, db)[0, 0] == 1.0
    assert opt.similarity("stored region crops", q, db)[0, 0] == 0.0
    db = np.stack([[e[2], e[0]]])
    assert opt.similarity("stored region crops", q, db)[0, 0] == 1.0
    assert opt.similarity("query region crops", q, db)[0, 0] == 0.0


def test_every_option_gives_unit_vectors(ctx):
    m = ctx.manifest
    crop = ctx.embedder.run(np.stack([pipe.preprocess(p, m) for p in ctx.photos]))
    mirror = ctx.embedder.run(np.stack([pipe.preprocess(p.transpose(Image.FLIP_LEFT_RIGHT), m) for p in ctx.photos]))
    pools = opt.region_pools(ctx.maps, ctx.photos)
    per_image = [ctx.embedder.run(np.stack([pipe.preprocess(c, m) for c in opt.region_crops(p)])) for p in ctx.photos]
    crops = {name: np.stack([o[name] for o in per_image]) for name in per_image[0]}
    for option, (vectors, _, _, _) in opt.OPTIONS.items():
        v = opt.vector_sets(option, m.parts, crop, mirror, pools, crops)
        # a query of "query region crops" has 14 vectors, the stored pictures use the first only
        expected = len(opt.REGIONS) if vectors > 1 or option in opt.REGION_CROPS else 1
        assert v.shape == (len(ctx.photos), expected, m.dims), (option, v.shape)
        assert np.allclose(np.linalg.norm(v, axis=2), 1.0, atol=1e-5), option
        sims = opt.similarity(option, v, v)
        assert np.allclose(np.diag(sims), 1.0, atol=1e-5), option  # each picture finds itself
        assert (sims[~np.eye(len(ctx.photos), dtype=bool)] < 0.95).all(), (option, sims)
    # today's option is exactly the manifest's descriptor
    assert np.allclose(opt.vector_sets("centre crop", m.parts, crop)[:, 0], pipe.descriptor(crop, m.parts))
    # a picture and its mirror image have the same flip-invariant descriptor
    swapped = opt.vector_sets("flip-invariant", m.parts, mirror, crop)
    assert np.allclose(swapped, opt.vector_sets("flip-invariant", m.parts, crop, mirror), atol=1e-6)


TESTS = [test_regions_are_the_documented_grid, test_feature_maps_pool_to_the_model_outputs,
         test_whole_picture_keeps_the_aspect_ratio, test_region_pools_against_numpy, test_region_crops,
         test_best_match_against_every_pair, test_cross_never_matches_two_regions,
         test_every_option_gives_unit_vectors]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check the descriptor options of bench/eval_descriptor.py.")
    parser.add_argument("--manifest", default=os.path.join(HERE, "..", "models", "efficientnet-lite0.json"))
    args = parser.parse_args(argv)
    return run_tests(TESTS, Context(args.manifest))


if __name__ == "__main__":
    sys.exit(main())
