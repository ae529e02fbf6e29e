"""A real-embedding benchmark set: many random crops and transforms of every
photo in ../shared/data (scenes and objects, objects flattened on grey),
written as small JPEGs for image_embedding to embed inside PostgreSQL.

usage: make_real_set.py DATA_DIR OUT_DIR PER_PHOTO QUERIES [--seed S]

OUT_DIR/items/*.jpg: PER_PHOTO transforms of each photo;
OUT_DIR/queries/*.jpg: QUERIES further transforms of random photos (not in the set).
"""
import argparse
import random
from pathlib import Path

from PIL import Image, ImageEnhance


def load(path):
    image = Image.open(path)
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, (128, 128, 128))
        flat.paste(image, mask=image.split()[-1])
        image = flat
    image = image.convert("RGB")
    image.thumbnail((480, 480))
    return image


def transform(image, rng):
    w, h = image.size
    scale = rng.uniform(0.5, 1.0)
    cw, ch = max(16, int(w * scale)), max(16, int(h * scale))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = image.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    out = out.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
    side = rng.randint(160, 320)
    out.thumbnail((side, side))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("per_photo", type=int)
    ap.add_argument("queries", type=int)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    photos = sorted(p for sub in ("scenes", "objects") for p in (Path(args.data) / sub).iterdir())
    items, queries = Path(args.out) / "items", Path(args.out) / "queries"
    items.mkdir(parents=True, exist_ok=True)
    queries.mkdir(parents=True, exist_ok=True)
    images = [load(p) for p in photos]
    for n, image in enumerate(images):
        for k in range(args.per_photo):
            transform(image, rng).save(items / f"{n:04d}_{k:03d}.jpg", quality=rng.randint(50, 90))
    for q in range(args.queries):
        n = rng.randrange(len(images))
        transform(images[n], rng).save(queries / f"q{q:04d}_{n:04d}.jpg", quality=rng.randint(50, 90))
    print(f"{len(images) * args.per_photo} items and {args.queries} queries from {len(images)} photos")


if __name__ == "__main__":
    main()
