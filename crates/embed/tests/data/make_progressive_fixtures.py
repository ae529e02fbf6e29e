"""Writes small progressive JPEGs from scikit-image's CC0 `chelsea` photo, for the tests of
decoding from DC scans alone. 203x131 pixels, so that neither side is a whole number of
blocks or MCUs.
- libjpeg's default progression, through Pillow: 4:2:0, 4:2:2 with restart markers, 4:4:4,
  greyscale with restart markers, CMYK;
- a scan script of our own, through jpegtran: 4:2:0 with each component's first DC scan on
  its own, the chroma refinements interleaved, and restart markers.
Usage: python3 make_progressive_fixtures.py PATH/TO/chelsea.png
(needs: pip install pillow; apt install libjpeg-turbo-progs)
"""

import os
import subprocess
import sys
import tempfile

from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
rgb = Image.open(sys.argv[1]).convert("RGB").resize((203, 131), Image.BILINEAR)
# Quality 50: a DC quantiser of 16, so that each DC bit is worth 2 grey levels or more.
common = {"progressive": True, "quality": 50}
rgb.save(os.path.join(here, "progressive_420.jpg"), subsampling=2, **common)
rgb.save(os.path.join(here, "progressive_422_restart.jpg"), subsampling=1, restart_marker_blocks=7, **common)
rgb.save(os.path.join(here, "progressive_444.jpg"), subsampling=0, **common)
rgb.convert("L").save(os.path.join(here, "progressive_grey_restart.jpg"), restart_marker_blocks=5, **common)
rgb.convert("CMYK").save(os.path.join(here, "progressive_cmyk.jpg"), **common)

SCANS = """
0: 0-0, 0, 2;
1: 0-0, 0, 1;
2: 0-0, 0, 1;
0: 1-63, 0, 0;
1: 1-63, 0, 0;
2: 1-63, 0, 0;
0: 0-0, 2, 1;
0: 0-0, 1, 0;
1, 2: 0-0, 1, 0;
"""
with tempfile.TemporaryDirectory() as tmp:
    baseline, scans = os.path.join(tmp, "baseline.jpg"), os.path.join(tmp, "scans.txt")
    rgb.save(baseline, subsampling=2, quality=50)
    with open(scans, "w") as f:
        f.write(SCANS)
    out = os.path.join(here, "progressive_420_separate_dc_scans.jpg")
    subprocess.run(["jpegtran", "-scans", scans, "-restart", "3B", "-outfile", out, baseline], check=True)
