"""Writes cmyk.jpg (a CMYK JPEG, Adobe-style as Photoshop and Pillow write it) and
cmyk_rgb.png (the same pixels in RGB) from scikit-image's CC0 `chelsea` photo.
Usage: python3 make_cmyk_fixture.py PATH/TO/chelsea.png   (needs: pip install pillow)
"""

import os
import sys

from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
rgb = Image.open(sys.argv[1]).convert("RGB").resize((96, 64), Image.BILINEAR)
rgb.save(os.path.join(here, "cmyk_rgb.png"))
rgb.convert("CMYK").save(os.path.join(here, "cmyk.jpg"), quality=95)
