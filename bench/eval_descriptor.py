#!/usr/bin/env python3
"""Measure descriptor quality for several part weightings on ../shared/data.

    python3 bench/eval_descriptor.py --manifest models/efficientnet-lite0.json \
        [--data ../shared/data] [--threads 1] [--cache DIR] [--exclude REGEX]

Every image goes through the reference pipeline of bench/embed_python.py once;
the weightings only change how the stored outputs are combined (each part
L2-normalised, times its weight, concatenated, L2-normalised).

Protocols (all queries of each set are reported, nothing is picked):
- copy detection: each scene photo is transformed in 9 ways (crop, rescale,
  JPEG, brightness, colour, border, text, two combinations); the original must
  be the nearest of all scene photos. R@1 over all queries; "group R@1" also
  accepts another photo of the original's group (e.g. the 26 chessboard shots).
- near-duplicate groups: for each scene photo in a group of 2+, is its nearest
  other photo in the same group (P@1)?
- edited copies (issue 14): each scene photo cropped to a third of its area, pasted at half
  size into another scene, given caption bands, turned 90 degrees, mirrored, made a blurred
  thumbnail, tilted 3-10 degrees and framed as a screenshot (parameters drawn per query); the
  original must be the nearest of all scenes and all object composites. R@1 per edit, and
  leaf P@5 of the objects on scene backgrounds;
- category precision@10: each RGBA object flattened onto plain grey, and
  separately onto a crop of a scene photo; each object queries all others of
  the same variant; share of the top 10 with the same leaf / top-level category.
Prints a markdown table.
"""

import argparse
import csv
import hashlib
import io
import os
import random
import re
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import descriptor_options as opt  # noqa: E402
import embed_python as pipe  # noqa: E402

# name -> weight of every stage part of the manifest (head weight is always 1.0)
WEIGHTINGS = {
    "head only": 0.0,
    "stages 0.25": 0.25,
    "stages 0.5": 0.5,
    "stages 0.75": 0.75,
    "stages 1.0": 1.0,
    "by depth 0.25..1.0": "depth",
}
GREY = (128, 128, 128)
SEED = 20240601  # fixed: every run builds the same queries
# Part of the key of the --cache files: change it whenever the images or queries built change.
PROTOCOL = "issue-14 v1"


# ---------------------------------------------------------------------------
# Query construction
# ---------------------------------------------------------------------------


def jpeg(img, quality):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def crop_fraction(img, fraction, rng):
    """Crop `fraction` of width and height at a random position."""
    w, h = img.size
    cw, ch = round(w * fraction), round(h * fraction)
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((left, top, left + cw, top + ch))


def rescale(img, factor):
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BILINEAR)


def border(img, fraction, colour):
    w, h = img.size
    bw, bh = round(w * fraction), round(h * fraction)
    out = Image.new("RGB", (w + 2 * bw, h + 2 * bh), colour)
    out.paste(img, (bw, bh))
    return out


def overlay_text(img, rng):
    """Three lines of large caption text, like a meme or a watermark."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    font = ImageFont.load_default(size=max(12, h // 12))
    for i, line in enumerate(["COPYRIGHT 2024", "imgsim test", "do not reuse"]):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        draw.text((w // 10, h // 8 + i * h // 4), line, fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    return out


def copy_queries(img, rng):
    """name -> transformed copy of a decoded RGB scene photo."""
    return {
        "crop 70%": crop_fraction(img, 0.7, rng),
        "rescale 50%": rescale(img, 0.5),
        "jpeg q30": jpeg(img, 30),
        "brightness +40%": ImageEnhance.Brightness(img).enhance(1.4),
        "colour/contrast": ImageEnhance.Contrast(ImageEnhance.Color(img).enhance(0.3)).enhance(1.3),
        "border 10%": border(img, 0.1, (255, 255, 255)),
        "text": overlay_text(img, rng),
        "crop+rescale+jpeg": jpeg(rescale(crop_fraction(img, 0.8, rng), 0.5), 30),
        "bright+border+text": overlay_text(border(ImageEnhance.Brightness(img).enhance(0.7), 0.08, (0, 0, 0)), rng),
    }


def paste_into(img, others, rng):
    """The picture at half the width of another scene photo, pasted at a random place in it;
    returns the composite and the index in `others` of the photo it was pasted into."""
    host_index = rng.randrange(len(others))
    host = others[host_index].copy()
    hw, hh = host.size
    w, h = img.size
    scale = 0.5 * hw / w
    small = img.resize((max(1, round(w * scale)), max(1, min(hh, round(h * scale)))), Image.BILINEAR)
    host.paste(small, (rng.randint(0, hw - small.size[0]), rng.randint(0, hh - small.size[1])))
    return host, host_index


def caption_bands(img, rng):
    """Meme captions: a band of text above and below the picture, each 15-25 % of its height."""
    w, h = img.size
    top, bottom = round(h * rng.uniform(0.15, 0.25)), round(h * rng.uniform(0.15, 0.25))
    colour = (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0)
    ink = tuple(255 - c for c in colour)
    out = Image.new("RGB", (w, h + top + bottom), colour)
    out.paste(img, (0, top))
    draw = ImageDraw.Draw(out)
    for y, band in ((0, top), (top + h, bottom)):
        font = ImageFont.load_default(size=max(10, band // 2))
        draw.text((w // 20, y + band // 4), rng.choice(["WHEN YOU SEE IT", "nobody:", "me at 3 am",
                                                         "THIS IS FINE", "expectation vs reality"]),
                  fill=ink, font=font)
    return out


def tilt(img, rng):
    """A slight rotation (3-10 degrees either way), cropped to the largest upright rectangle."""
    angle = rng.uniform(3, 10) * rng.choice([-1, 1])
    w, h = img.size
    rotated = img.rotate(angle, Image.BILINEAR, expand=False)
    a = np.radians(abs(angle))
    # Largest axis-aligned rectangle of the same aspect inside the rotated picture.
    k = 1 / (np.cos(a) + max(w / h, h / w) * np.sin(a))
    cw, ch = round(w * k), round(h * k)
    left, top = (w - cw) // 2, (h - ch) // 2
    return rotated.crop((left, top, left + cw, top + ch))


def screenshot(img, rng):
    """The picture inside a browser-like window: title bar, side panel, page margins."""
    w, h = img.size
    scale = rng.uniform(0.55, 0.8)
    canvas_w = round(w / scale)
    canvas_h = round(h / scale * rng.uniform(0.95, 1.15))
    bar = max(8, canvas_h // 12)
    out = Image.new("RGB", (canvas_w, canvas_h + bar), (245, 245, 245))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, canvas_w, bar), fill=(60, 60, 70))
    panel = round(canvas_w * rng.uniform(0.05, 0.15))
    draw.rectangle((0, bar, panel, canvas_h + bar), fill=(225, 228, 235))
    font = ImageFont.load_default(size=max(8, bar // 2))
    draw.text((bar, bar // 4), "https://example.org/gallery", fill=(230, 230, 230), font=font)
    left = rng.randint(panel, max(panel, canvas_w - w))
    top = bar + rng.randint(0, max(0, canvas_h - h))
    out.paste(img, (left, top))
    for i in range(4):
        y = min(canvas_h + bar - 2, top + h + 4 + i * (bar // 2))
        draw.line((left, y, left + w * rng.uniform(0.4, 0.9), y), fill=(150, 150, 150), width=max(1, bar // 6))
    return out


def blurred_thumbnail(img, rng):
    """A thumbnail (160-320 px on its longer side), blurred (radius 1-2.5 px), JPEG q75."""
    w, h = img.size
    scale = rng.uniform(160, 320) / max(w, h)
    small = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return jpeg(small.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 2.5))), 75)


def hard_queries(img, others, rng):
    """name -> copy edited as people edit pictures they share (the issue-14 protocol), and the
    index in `others` of the photo the pasted copy went into."""
    w, h = img.size
    side = np.sqrt(1 / 3)  # a third of the area, position and aspect varied
    aspect = rng.uniform(0.8, 1.25)
    cw, ch = min(w, round(w * side * aspect)), min(h, round(h * side / aspect))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    pasted, host = paste_into(img, others, rng)
    return {
        "crop a third": img.crop((left, top, left + cw, top + ch)),
        "pasted at half size": pasted,
        "caption bands": caption_bands(img, rng),
        "90° turn": img.transpose(rng.choice([Image.ROTATE_90, Image.ROTATE_270])),
        "mirror": ImageOps.mirror(img),
        "blur": blurred_thumbnail(img, rng),
        "tilt": tilt(img, rng),
        "screenshot frame": screenshot(img, rng),
    }, host


def flatten_object(rgba, background):
    """Composite an RGBA cut-out, with a 10% margin, onto a background (colour or RGB image)."""
    w, h = rgba.size
    mw, mh = max(1, w // 10), max(1, h // 10)
    size = (w + 2 * mw, h + 2 * mh)
    if isinstance(background, Image.Image):
        canvas = background.resize(size, Image.BILINEAR).convert("RGBA")
    else:
        canvas = Image.new("RGBA", size, background + (255,))
    canvas.alpha_composite(rgba.convert("RGBA"), (mw, mh))
    return canvas.convert("RGB")


def scene_background(scenes, rng):
    """A random crop (40% of each side) of a random scene photo."""
    return crop_fraction(scenes[rng.randrange(len(scenes))], 0.4, rng)


# ---------------------------------------------------------------------------
# Embedding and metrics
# ---------------------------------------------------------------------------


def stored_scene(path, full, manifest):
    """The photo at 1/8 scale if it is a progressive JPEG large enough for that, else `full`."""
    img = Image.open(path)
    w, h = img.size
    if img.format != "JPEG" or not img.info.get("progressive") or min(w, h) // 8 < manifest.shorter_to:
        return full
    img.draft("RGB", (w // 8, h // 8))
    assert img.size == (-(-w // 8), -(-h // 8)), (path, img.size)
    return pipe.decode(img, manifest.background)


def embed_all(embedder, images, batch=16, transform=None):
    """PIL images (each through `transform` first, if given) -> {output: [N, dims]} raw outputs."""
    m = embedder.manifest
    chunks = []
    for i in range(0, len(images), batch):
        x = np.stack([pipe.preprocess(transform(img) if transform else img, m) for img in images[i:i + batch]])
        chunks.append(embedder.run(x))
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def embed_regions(embedder, images):
    """PIL images -> {output: [N, regions, dims]}: the raw outputs of each one's region crops.

    A large picture is first reduced so its shorter side is 4 x resize_shorter_to: its smallest
    regions (half of each side) are then still twice the size they are resized to, and cutting
    13 regions out of a 5000-px photo no longer costs 13 full-size resizes."""
    limit = 4 * embedder.manifest.shorter_to
    per_image = [embed_all(embedder, opt.region_crops(rescale(img, min(1.0, limit / min(img.size)))))
                 for img in images]
    return {name: np.stack([outputs[name] for outputs in per_image]) for name in per_image[0]}


def cache_path(cache_dir, manifest, exclude, kind="crop"):
    """Where the raw outputs of this model, pre-processing, protocol and pipeline `kind` are kept
    between runs ("crop": the manifest's pre-processing; others: see descriptor_options)."""
    key = hashlib.sha256()
    with open(manifest.model_path, "rb") as f:
        key.update(f.read())
    key.update(repr((PROTOCOL, manifest.shorter_to, manifest.width, manifest.height, manifest.mean.tolist(),
                     manifest.std.tolist(), manifest.background, exclude)).encode())
    if kind != "crop":  # the "crop" files keep the key they had before the options existed
        key.update(repr((kind, opt.REGIONS, opt.LONGEST_SIDE_FACTOR)).encode())
    return os.path.join(cache_dir, key.hexdigest()[:24] + ".npz")


def load_outputs(path):
    stored = np.load(path)
    raw = {}
    for k in stored.files:
        name, output = k.split("/", 1)
        raw.setdefault(name, {})[output] = stored[k]
    return raw


def save_outputs(path, raw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **{f"{name}/{output}": v for name, outputs in raw.items() for output, v in outputs.items()})


def cached(cache_dir, manifest, exclude, kind, compute):
    """compute() -> {set: {output: array}}, kept in cache_dir when one is given."""
    path = cache_path(cache_dir, manifest, exclude, kind) if cache_dir else None
    if path and os.path.exists(path):
        print(f"{kind} outputs of {manifest.model_path} from {path}", file=sys.stderr)
        return load_outputs(path)
    raw = compute()
    if path:
        save_outputs(path, raw)
    return raw


def stage_parts(manifest):
    return [name for name, _, _ in manifest.parts if name != "head"]


def weighted_parts(manifest, stage_weight):
    """Head at 1.0 and every stage part of the manifest at `stage_weight` ("depth": 0.25 rising to 1.0)."""
    stages = stage_parts(manifest)
    weights = np.linspace(0.25, 1.0, len(stages)) if stage_weight == "depth" else [stage_weight] * len(stages)
    return [("head", None, 1.0)] + [(s, None, float(w)) for s, w in zip(stages, weights) if w > 0]


def combine(outputs, manifest, stage_weight):
    return pipe.descriptor(outputs, weighted_parts(manifest, stage_weight))


def copy_detection(db, queries, owners, groups):
    """R@1 (own original first) and group R@1 (first is from the original's group)."""
    nearest = np.argmax(queries @ db.T, axis=1)
    r1 = float(np.mean(nearest == owners))
    group_r1 = float(np.mean([groups[n] == groups[o] for n, o in zip(nearest, owners)]))
    return r1, group_r1


def group_p1(db, groups):
    sims = db @ db.T
    np.fill_diagonal(sims, -np.inf)
    members = [i for i, g in enumerate(groups) if groups.count(g) > 1]
    return float(np.mean([groups[int(np.argmax(sims[i]))] == groups[i] for i in members]))


def precision_at_k(desc, labels, k=10):
    sims = desc @ desc.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :k]
    labels = np.asarray(labels)
    return float(np.mean(labels[top] == labels[:, None]))


def build_protocol(data, exclude, background):
    """Every image of the evaluation and its labels; the same on every run (fixed seeds)."""
    rng = random.Random(SEED)
    with open(os.path.join(data, "scenes.tsv")) as f:
        scene_rows = list(csv.DictReader(f, delimiter="\t"))
    if exclude:
        scene_rows = [r for r in scene_rows if not re.search(exclude, r["file"])]
    with open(os.path.join(data, "objects.tsv")) as f:
        object_rows = list(csv.DictReader(f, delimiter="\t"))

    p = argparse.Namespace(scene_rows=scene_rows)
    p.scenes = [pipe.decode(os.path.join(data, "scenes", r["file"]), background) for r in scene_rows]
    p.groups = [r["group"] for r in scene_rows]
    p.query_images, owners, p.query_kinds = [], [], []
    for i, img in enumerate(p.scenes):
        for kind, q in copy_queries(img, rng).items():
            p.query_images.append(q)
            owners.append(i)
            p.query_kinds.append(kind)
    p.owners = np.asarray(owners)

    objects = [Image.open(os.path.join(data, "objects", r["file"])) for r in object_rows]
    p.n_objects = len(objects)
    p.on_grey = [flatten_object(o, GREY) for o in objects]
    p.on_scene = [flatten_object(o, scene_background(p.scenes, rng)) for o in objects]
    p.leaf = [r["category"] for r in object_rows]
    p.top = [r["category"].split("/")[0] for r in object_rows]

    hard_rng = random.Random(SEED + 14)  # its own stream: the queries above stay as they were
    p.hard_images, hard_owners, p.hard_kinds, p.paste_hosts = [], [], [], []
    for i, img in enumerate(p.scenes):
        queries, host = hard_queries(img, p.scenes[:i] + p.scenes[i + 1:], hard_rng)
        p.paste_hosts.append(host if host < i else host + 1)  # index among all scenes
        for kind, q in queries.items():
            p.hard_images.append(q)
            hard_owners.append(i)
            p.hard_kinds.append(kind)
    p.hard_owners = np.asarray(hard_owners)
    p.sets = {"scenes": p.scenes, "queries": p.query_images, "grey": p.on_grey, "scene_bg": p.on_scene,
              "hard": p.hard_images}
    return p


def weighting_tables(raw, manifest, embedder, p, stored):
    """The stage-weighting tables of one model's centre-crop outputs (the issue-3 evaluation)."""
    header = ("| weighting (head 1.0) | copy R@1 | copy group R@1 | group P@1 | P@10 leaf grey | P@10 top grey "
              "| P@10 leaf scene-bg | P@10 top scene-bg | score |")
    print(f"\nscenes: {len(p.scenes)}, copy queries: {len(p.query_images)} ({len(p.query_images) // len(p.scenes)} "
          f"per scene), objects: {p.n_objects} ({len(set(p.leaf))} leaf / {len(set(p.top))} top-level "
          f"categories); stage parts {', '.join(stage_parts(manifest))}\n")
    print(header)
    print("|" + "|".join(["---"] * (header.count("|") - 1)) + "|")
    per_kind = {}
    for name, weights in WEIGHTINGS.items():
        db, queries = combine(raw["scenes"], manifest, weights), combine(raw["queries"], manifest, weights)
        r1, group_r1 = copy_detection(db, queries, p.owners, p.groups)
        grey, scene_bg = combine(raw["grey"], manifest, weights), combine(raw["scene_bg"], manifest, weights)
        cells = [r1, group_r1, group_p1(db, p.groups),
                 precision_at_k(grey, p.leaf), precision_at_k(grey, p.top),
                 precision_at_k(scene_bg, p.leaf), precision_at_k(scene_bg, p.top)]
        # Selection score fixed before looking at results: copy R@1 and leaf P@10 (mean of both backgrounds).
        score = (cells[0] + (cells[3] + cells[5]) / 2) / 2
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {score:.3f} |")
        nearest = np.argmax(queries @ db.T, axis=1)
        per_kind[name] = {k: float(np.mean([n == o for n, o, qk in zip(nearest, p.owners, p.query_kinds) if qk == k]))
                          for k in dict.fromkeys(p.query_kinds)}

    if stored is not p.scenes:
        # How much closer or further the queries of the photos stored at 1/8 scale are from
        # their original, with the stages at 0.25.
        changed = [i for i, (a, b) in enumerate(zip(stored, p.scenes)) if a is not b]
        weights = WEIGHTINGS["stages 0.25"]
        full = combine(embed_all(embedder, [p.scenes[i] for i in changed]), manifest, weights)
        small = combine(raw["scenes"], manifest, weights)[changed]
        queries = combine(raw["queries"], manifest, weights)
        rows = [q for q, o in enumerate(p.owners) if o in changed]
        position = {i: k for k, i in enumerate(changed)}
        to_full = [float(queries[q] @ full[position[p.owners[q]]]) for q in rows]
        to_small = [float(queries[q] @ small[position[p.owners[q]]]) for q in rows]
        others = combine(raw["scenes"], manifest, weights)
        runner_up = [float(np.max(np.delete(queries[q] @ others.T, p.owners[q]))) for q in rows]
        same = [float(a @ b) for a, b in zip(full, small)]
        print(f"\n{len(changed)} photos stored at 1/8 scale (stages 0.25): cosine to the full-size "
              f"decode mean {np.mean(same):.4f}, min {np.min(same):.4f}; their {len(rows)} queries' cosine to "
              f"the original: full size mean {np.mean(to_full):.4f} (min {np.min(to_full):.4f}), 1/8 scale mean "
              f"{np.mean(to_small):.4f} (min {np.min(to_small):.4f}); best other photo mean "
              f"{np.mean(runner_up):.4f} (max {np.max(runner_up):.4f})")

    # The harder edits, against every scene and every object composite as distractors.
    hard_kind_names = list(dict.fromkeys(p.hard_kinds))
    print(f"\nEdited copies (issue 14): {len(p.hard_images)} queries ({len(hard_kind_names)} per scene) against "
          f"{len(p.scenes)} scenes + {len(p.on_grey) + len(p.on_scene)} object composites; R@1 by edit; P@5 leaf "
          f"on scene backgrounds:\n")
    print("| weighting | all | " + " | ".join(hard_kind_names) + " | P@5 leaf scene-bg |")
    print("|" + "|".join(["---"] * (len(hard_kind_names) + 3)) + "|")
    for name, weights in WEIGHTINGS.items():
        db = np.concatenate([combine(raw[k], manifest, weights) for k in ("scenes", "grey", "scene_bg")])
        nearest = np.argmax(combine(raw["hard"], manifest, weights) @ db.T, axis=1)
        found = nearest == p.hard_owners
        by_kind = [float(np.mean(found[[k == kind for k in p.hard_kinds]])) for kind in hard_kind_names]
        p5 = precision_at_k(combine(raw["scene_bg"], manifest, weights), p.leaf, k=5)
        print(f"| {name} | {np.mean(found):.3f} | " + " | ".join(f"{v:.3f}" for v in by_kind) + f" | {p5:.3f} |")

    kinds = list(dict.fromkeys(p.query_kinds))
    print("\nCopy detection R@1 by transformation:\n")
    print("| weighting | " + " | ".join(kinds) + " |")
    print("|" + "|".join(["---"] * (len(kinds) + 1)) + "|")
    for name, row in per_kind.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in kinds) + " |")


def option_figures(option, vectors, p):
    """{set: [N, k, d]} of one model and option -> the figures of the summary table."""
    hard_db = np.concatenate([vectors[k] for k in ("scenes", "grey", "scene_bg")])
    found = np.argmax(opt.similarity(option, vectors["hard"], hard_db), axis=1) == p.hard_owners
    mild = np.argmax(opt.similarity(option, vectors["queries"], vectors["scenes"]), axis=1) == p.owners
    mild = float(np.mean(mild))

    def precision(v, k):
        sims = opt.similarity(option, v, v)
        np.fill_diagonal(sims, -np.inf)
        top = np.argsort(-sims, axis=1)[:, :k]
        labels = np.asarray(p.leaf)
        return float(np.mean(labels[top] == labels[:, None]))

    by_kind = {kind: float(np.mean(found[[k == kind for k in p.hard_kinds]])) for kind in dict.fromkeys(p.hard_kinds)}
    # The pasted copies: how often the photo they were pasted into (itself stored, and three
    # quarters of the query) comes first, and how often the original is among the first two.
    pasted = [q for q, k in enumerate(p.hard_kinds) if k == "pasted at half size"]
    sims = opt.similarity(option, vectors["hard"][pasted], hard_db)
    first_two = np.argsort(-sims, axis=1)[:, :2]
    owners = p.hard_owners[pasted]
    host_first = float(np.mean(first_two[:, 0] == np.asarray(p.paste_hosts)[owners]))
    pasted_top2 = float(np.mean((first_two == owners[:, None]).any(axis=1)))
    return {"host_first": host_first, "pasted_top2": pasted_top2,"mild": mild, "all": float(np.mean(found)), "by_kind": by_kind,
            "p5_scene": precision(vectors["scene_bg"], 5), "p10_grey": precision(vectors["grey"], 10),
            "p10_scene": precision(vectors["scene_bg"], 10)}


def summary_table(rows, p):
    kinds = list(dict.fromkeys(p.hard_kinds))
    print(f"\nOne table (issue 14): copy-detection R@1 of the {len(p.hard_images)} edited copies against "
          f"{len(p.scenes)} scenes + {2 * p.n_objects} object composites, by edit class; mild edits "
          f"({len(p.query_images)} queries against the scenes); leaf precision of the objects; cost:\n")
    print("| model | descriptor | vectors / stored image | model runs / stored image | model runs / query "
          "| edited: all | " + " | ".join(kinds)
          + " | mild edits | P@5 leaf scene-bg | P@10 leaf grey | P@10 leaf scene-bg "
          "| pasted: host first | pasted: original in top 2 |")
    print("|" + "|".join(["---"] * (len(kinds) + 12)) + "|")
    for model, option, f in rows:
        vectors, stored_runs, query_runs, _ = opt.OPTIONS[option]
        print(f"| {model} | {option} | {vectors} | {stored_runs} | {query_runs} | {f['all']:.3f} | "
              + " | ".join(f"{f['by_kind'][k]:.3f}" for k in kinds)
              + f" | {f['mild']:.3f} | {f['p5_scene']:.3f} | {f['p10_grey']:.3f} | {f['p10_scene']:.3f} "
              f"| {f['host_first']:.3f} | {f['pasted_top2']:.3f} |")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description="Evaluate descriptor weightings, options and models.")
    parser.add_argument("--manifest", action="append",
                        help="model manifest (repeat to compare models in one run; default "
                             "models/efficientnet-lite0.json)")
    parser.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--options", default="centre crop",
                        help="comma-separated descriptor options for the summary table, or 'all': "
                             + "; ".join(f"{k}: {v[3]}" for k, v in opt.OPTIONS.items()))
    parser.add_argument("--no-weightings", action="store_true", help="print only the summary table")
    parser.add_argument("--dc-scale", action="store_true",
                        help="decode the stored scene photos as image_embedding does: a progressive JPEG at least "
                             "8 x resize_shorter_to on its shorter side at 1/8 scale (libjpeg's, via Pillow's draft "
                             "mode); queries are still made from the full-size photo (weighting tables only)")
    parser.add_argument("--cache", help="folder that keeps the model outputs between runs (keyed by the model "
                                            "file, pre-processing and PROTOCOL)")
    parser.add_argument("--exclude", help="leave out the scene photos whose file name matches this regular "
                                              "expression (e.g. '^scikit__': the photos INT8 calibration saw)")
    args = parser.parse_args(argv)
    options = list(opt.OPTIONS) if args.options == "all" else [o.strip() for o in args.options.split(",")]
    unknown = [o for o in options if o not in opt.OPTIONS]
    if unknown:
        parser.error(f"unknown options {unknown}; known: {list(opt.OPTIONS)}")

    manifests = [pipe.Manifest(m) for m in args.manifest or [os.path.join(here, "..", "models",
                                                                           "efficientnet-lite0.json")]]
    if len({m.background for m in manifests}) != 1:
        parser.error("the manifests flatten alpha onto different backgrounds")
    p = build_protocol(args.data, args.exclude, manifests[0].background)
    n_images = sum(len(v) for v in p.sets.values())
    print(f"{len(p.scenes)} scenes, {len(p.query_images)} + {len(p.hard_images)} copy queries, "
          f"{2 * p.n_objects} flattened objects ({n_images} images)", file=sys.stderr)

    rows = []
    for manifest in manifests:
        label = os.path.basename(manifest.model_path)
        embedder = pipe.Embedder(manifest, threads=args.threads)
        stored = p.scenes
        if args.dc_scale:
            stored = [stored_scene(os.path.join(args.data, "scenes", r["file"]), img, manifest)
                      for r, img in zip(p.scene_rows, p.scenes)]
            print(f"{sum(a is not b for a, b in zip(stored, p.scenes))} scenes stored at 1/8 scale", file=sys.stderr)
        crop_images = dict(p.sets, scenes=stored)
        print(f"{label}: centre crops ...", file=sys.stderr)
        raw = cached(args.cache if not args.dc_scale else None, manifest, args.exclude, "crop",
                     lambda: {k: embed_all(embedder, v) for k, v in crop_images.items()})
        if not args.no_weightings:
            print(f"\n## {label}: stage weightings (centre crop)")
            weighting_tables(raw, manifest, embedder, p, stored)

        mirror = pools = None
        if "flip-invariant" in options:
            print(f"{label}: mirrored centre crops ...", file=sys.stderr)
            mirror = cached(args.cache, manifest, args.exclude, "crop-mirror",
                            lambda: {k: embed_all(embedder, v, transform=ImageOps.mirror) for k, v in p.sets.items()})
        if {"whole picture", "R-MAC", "multi-vector"} & set(options):
            print(f"{label}: whole-picture feature maps ...", file=sys.stderr)
            maps = opt.MapEmbedder(manifest, threads=args.threads)
            pools = cached(args.cache, manifest, args.exclude, "regions",
                           lambda: {k: opt.region_pools(maps, v) for k, v in p.sets.items()})
        crops = None
        if opt.REGION_CROPS & set(options):
            print(f"{label}: region crops ...", file=sys.stderr)
            crops = cached(args.cache, manifest, args.exclude, "region-crops",
                           lambda: {k: embed_regions(embedder, v) for k, v in p.sets.items()})
        for option in options:
            vectors = {k: opt.vector_sets(option, manifest.parts, raw[k], mirror and mirror[k], pools and pools[k],
                                          crops and crops[k]) for k in p.sets}
            rows.append((label, option, option_figures(option, vectors, p)))
    summary_table(rows, p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
