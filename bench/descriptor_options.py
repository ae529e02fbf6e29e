"""Descriptor options measured by bench/eval_descriptor.py (issue 14, item 2).

Each option turns images into a *set* of unit vectors (one row for the single-vector
options); two images are as similar as their best-matching pair of vectors. Options:

- "centre crop": today's descriptor, the manifest's pre-processing (one vector, one model run);
- "flip-invariant": the centre-crop outputs of the picture and of its mirror image averaged
  before the descriptor is formed (one vector, two model runs);
- "whole picture": the picture resized so its shorter side is the model's input size (longer
  side at most 3x that) and every part global-average-pooled over the whole feature map, so
  nothing is cropped away (one vector, one model run of a larger input);
- "R-MAC": on the same feature maps, every part max-pooled over each region of REGIONS, each
  region vector L2-normalised, the regions summed (one vector, one model run);
- "multi-vector": the whole-picture vector plus one average-pooled vector per region of
  REGIONS for stored images and queries alike, merged by best match over all pairs (14
  vectors, one run);
- "multi-vector (cross)": the same vectors, but a region is only matched against a whole
  picture (a query region against a stored picture's whole vector, or the query's whole
  vector against a stored region), never a region against a region;
- "region crops (cross)": like the previous, with each region cut out of the picture and run
  through the model on its own (the manifest's pre-processing) instead of pooled from the
  whole picture's feature map: today's centre-crop vector plus 13 region vectors per image
  (14 model runs per stored image and per query);
- "stored region crops" / "query region crops": the two halves of the previous: only the
  stored pictures' regions against the query's centre crop (14 runs per stored image, one per
  query), or only the query's regions against the stored centre crops (one run per stored
  image, 14 per query).

The whole-picture options need a model that takes any input size and also returns the
feature maps that its pooled outputs average; `MapEmbedder` derives one from the manifest's
model file in memory (the file itself is not changed).
"""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from PIL import Image

import embed_python as pipe

# Relative boxes (left, top, right, bottom): the whole picture, a 2x2 grid of windows of 2/3 of
# each side and a 3x3 grid of windows of 1/2 of each side (R-MAC's uniform sampling at 3 scales).
REGIONS = [(0.0, 0.0, 1.0, 1.0)] + [
    (j * step, i * step, j * step + side, i * step + side)
    for grid, side in ((2, 2 / 3), (3, 1 / 2))
    for step in [(1 - side) / (grid - 1)]
    for i in range(grid)
    for j in range(grid)
]
LONGEST_SIDE_FACTOR = 3  # a whole-picture input's longer side is at most 3x the model input

R = len(REGIONS)
OPTIONS = {
    # name: (vectors per stored image, model runs per stored image, model runs per query, what it is)
    "centre crop": (1, 1, 1, "manifest pre-processing (today)"),
    "flip-invariant": (1, 2, 2, "centre crop + its mirror, outputs averaged"),
    "whole picture": (1, 1, 1, "whole picture, global average pool"),
    "R-MAC": (1, 1, 1, f"whole picture, max-pooled over {R} regions, summed"),
    "multi-vector": (R, 1, 1, f"whole picture + {R - 1} regions, best pair"),
    "multi-vector (cross)": (R, 1, 1, "the same, a region only against a whole picture"),
    "region crops (cross)": (R, R, R, f"centre crop + {R - 1} region crops each through the model, "
                                      "a region only against a whole picture"),
    "stored region crops": (R, R, 1, "the query's centre crop against the stored pictures' region crops"),
    "query region crops": (1, 1, R, "the query's region crops against the stored centre crops"),
}
CROSS = {"multi-vector (cross)", "region crops (cross)"}
REGION_CROPS = {"region crops (cross)", "stored region crops", "query region crops"}


def feature_map_of(graph, output):
    """Name of the 4-d tensor whose global average pool is `output` (walking back over
    Flatten/Reshape and the quantise/dequantise pairs of a QDQ model)."""
    producer = {o: n for n in graph.node for o in n.output}
    name = output
    while name in producer:
        node = producer[name]
        if node.op_type == "GlobalAveragePool":
            return node.input[0]
        if node.op_type not in ("Flatten", "Reshape", "QuantizeLinear", "DequantizeLinear"):
            break
        name = node.input[0]
    raise ValueError(f"{output} is not a global average pool of a feature map")


class MapEmbedder:
    """The manifest's model with free height and width, returning each part's feature map."""

    def __init__(self, manifest, threads=1):
        self.manifest = manifest
        model = onnx.load(manifest.model_path)
        graph = model.graph
        dims = graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "H", "W"
        del graph.value_info[:]  # shapes inferred for the fixed input size no longer hold
        self.parts = [name for name, _, _ in manifest.parts]
        maps = [feature_map_of(graph, name) for name in self.parts]
        del graph.output[:]
        graph.output.extend(helper.make_tensor_value_info(m, TensorProto.FLOAT, None) for m in maps)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self.maps = maps

    def whole_input(self, img):
        """The whole picture, shorter side at the model's input size, as a 1xCxHxW tensor."""
        m = self.manifest
        w, h = img.size
        scale = min(m.width / min(w, h), LONGEST_SIDE_FACTOR * m.width / max(w, h))
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        return pipe.normalise(img, m.mean, m.std)[None]

    def run(self, img):
        """RGB PIL image -> {part: [C, h, w]} feature maps of the whole picture."""
        values = self.session.run(self.maps, {self.manifest.input_name: self.whole_input(img)})
        return {part: v[0] for part, v in zip(self.parts, values)}


def region_crops(img):
    """The picture cut to each region of REGIONS but the first (the whole picture)."""
    w, h = img.size
    return [img.crop((round(left * w), round(top * h), max(round(left * w) + 1, round(right * w)),
                      max(round(top * h) + 1, round(bottom * h)))) for left, top, right, bottom in REGIONS[1:]]


def pool_regions(fmap):
    """[C, h, w] -> (average, max) pools over REGIONS, each [len(REGIONS), C]."""
    _, h, w = fmap.shape
    avg, mx = [], []
    for left, top, right, bottom in REGIONS:
        x0, y0 = min(w - 1, round(left * w)), min(h - 1, round(top * h))
        x1, y1 = max(x0 + 1, round(right * w)), max(y0 + 1, round(bottom * h))
        cells = fmap[:, y0:y1, x0:x1]
        avg.append(cells.mean((1, 2)))
        mx.append(cells.max((1, 2)))
    return np.stack(avg), np.stack(mx)


def region_pools(map_embedder, images):
    """PIL images -> {"avg/part" | "max/part": [N, len(REGIONS), C]} (float16 to keep it small)."""
    pools = {}
    for img in images:
        for part, fmap in map_embedder.run(img).items():
            avg, mx = pool_regions(fmap)
            pools.setdefault(f"avg/{part}", []).append(avg.astype(np.float16))
            pools.setdefault(f"max/{part}", []).append(mx.astype(np.float16))
    return {k: np.stack(v) for k, v in pools.items()}


def vector_sets(option, parts, crop, crop_mirror=None, pools=None, crops=None):
    """The option's [N, k, dims] unit vectors from the stored model outputs of N images.

    parts: [(output, dims, weight)]; crop / crop_mirror: {output: [N, C]} centre-crop outputs
    of the images and of their mirror images; pools: region_pools() of the images; crops:
    {output: [N, len(REGIONS) - 1, C]} outputs of their region_crops()."""
    if option == "centre crop":
        return pipe.descriptor(crop, parts)[:, None]
    if option == "flip-invariant":
        both = {name: (crop[name] + crop_mirror[name]) / 2 for name, _, _ in parts}
        return pipe.descriptor(both, parts)[:, None]
    if option == "whole picture":
        return pipe.descriptor({name: pools[f"avg/{name}"][:, 0].astype(np.float32) for name, _, _ in parts},
                               parts)[:, None]
    if option == "R-MAC":
        summed = {name: pipe.l2_normalise(pools[f"max/{name}"].astype(np.float32)).sum(1) for name, _, _ in parts}
        return pipe.descriptor(summed, parts)[:, None]
    if option in REGION_CROPS:
        n, k = crops[parts[0][0]].shape[:2]
        whole = pipe.descriptor(crop, parts)[:, None]
        regions = pipe.descriptor({name: crops[name].reshape(n * k, -1) for name, _, _ in parts}, parts)
        return np.concatenate([whole, regions.reshape(n, k, -1)], axis=1)
    if option in ("multi-vector", "multi-vector (cross)"):
        n, k = pools[f"avg/{parts[0][0]}"].shape[:2]
        flat = {name: pools[f"avg/{name}"].astype(np.float32).reshape(n * k, -1) for name, _, _ in parts}
        return pipe.descriptor(flat, parts).reshape(n, k, -1)
    raise ValueError(f"unknown option {option!r}")


def similarity(option, queries, db):
    """[Nq, Nd] similarities of the option's vector sets (index 0 of each set: the whole picture)."""
    if option in CROSS:
        return np.maximum(best_match(queries[:, :1], db), best_match(queries, db[:, :1]))
    if option == "stored region crops":
        return best_match(queries[:, :1], db)
    if option == "query region crops":
        return best_match(queries, db[:, :1])
    return best_match(queries, db)


def best_match(queries, db, chunk=256):
    """[Nq, kq, d] x [Nd, kd, d] -> [Nq, Nd]: the best cosine over all pairs of their vectors."""
    nq, kq, d = queries.shape
    nd, kd, _ = db.shape
    flat_db = db.reshape(nd * kd, d).T
    out = np.empty((nq, nd), np.float32)
    for i in range(0, nq, chunk):
        q = queries[i:i + chunk]
        sims = q.reshape(-1, d) @ flat_db
        out[i:i + chunk] = sims.reshape(len(q), kq, nd, kd).max(axis=(1, 3))
    return out
