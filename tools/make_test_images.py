"""Derived test images for the SQL tests, made from the bundled CC0 photos.

usage: make_test_images.py PHOTOS_DIR OUT_DIR

Writes into OUT_DIR: re-encoded / resized / cropped copies of two
photos (queries that are not byte-identical to any stored photo), one
pasted at half size into another and a crop of a third of one (for region
search), a large
copy of a third as progressive and as baseline JPEG, a truncated JPEG, and
a decompression bomb: a tiny valid PNG whose header declares 100000 x 100000
pixels.
"""
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image

photos = Path(sys.argv[1])
out = Path(sys.argv[2])

chelsea = Image.open(photos / "chelsea.png").convert("RGB")
chelsea.save(out / "derived_chelsea_q40.jpg", quality=40)
coffee = Image.open(photos / "coffee.png").convert("RGB")
coffee.resize((coffee.width // 2, coffee.height // 2), Image.BILINEAR).save(out / "derived_coffee_half.png")
w, h = chelsea.size
chelsea.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(out / "derived_chelsea_crop.webp", quality=80)

# A photo large enough (2304 px) for image_embedding to read a progressive JPEG at 1/8 scale
# from its DC coefficients, and the same pixels as a baseline JPEG, which is decoded in full.
astronaut = Image.open(photos / "astronaut.png").convert("RGB").resize((2304, 2304), Image.BICUBIC)
astronaut.save(out / "derived_astronaut_large_progressive.jpg", quality=85, progressive=True)
astronaut.save(out / "derived_astronaut_large_baseline.jpg", quality=85)

# Region search (issue 14): a picture pasted at half the width of another photo, off the grid of
# image_region_embeddings' windows, and a crop of a third of a photo's area.
host = Image.open(photos / "motorcycle_left.png").convert("RGB")
small = coffee.resize((host.width // 2, round(coffee.height * host.width / 2 / coffee.width)), Image.BILINEAR)
host.paste(small, (host.width * 2 // 5, host.height * 3 // 10))
host.save(out / "derived_coffee_pasted_in_motorcycle.png")
rocket = Image.open(photos / "rocket.jpg").convert("RGB")
w, h = rocket.size
side = 3 ** -0.5  # of each side: a third of the area
rocket.crop((w // 8, h // 3, w // 8 + round(w * side), h // 3 + round(h * side))).save(out / "derived_rocket_third.png")

jpeg = (out / "derived_chelsea_q40.jpg").read_bytes()
(out / "derived_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
idat = zlib.compress(b"\0" * 4096)
(out / "derived_bomb.png").write_bytes(
    b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
)
print(f"derived test images written to {out}")

# Augmented copies of every photo (crops, flips, small rotations, colour and
# JPEG quality changes): a few hundred real embeddings with near-duplicate
# structure, for recall tests of the index on what image_embedding makes.
rng = __import__("random").Random(1234)
originals = sorted(p for p in photos.iterdir() if p.suffix in (".png", ".jpg"))
(out / "aug").mkdir(exist_ok=True)
for path in originals:
    base = Image.open(path).convert("RGB")
    base.thumbnail((384, 384))
    for k in range(12):
        w, h = base.size
        scale = rng.uniform(0.6, 0.95)
        cw, ch = int(w * scale), int(h * scale)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = base.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image = image.rotate(rng.uniform(-8, 8), resample=Image.BILINEAR)
        image = image.point(lambda v, gain=rng.uniform(0.8, 1.2): min(255, int(v * gain)))
        image.save(out / "aug" / f"aug_{path.stem}_{k:02d}.jpg", quality=rng.randint(40, 90))
print(f"{12 * len(originals)} augmented copies written to {out / 'aug'}")
