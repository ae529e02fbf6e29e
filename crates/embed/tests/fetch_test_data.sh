#!/usr/bin/env bash
# Fetches what the imgsim-embed tests need from PyPI, into $1 (default /tmp/imgsim-test-data):
#   skimage/      scikit-image's CC0 sample photos (chelsea.png, coffee.png, ...)
#   onnxruntime/  libonnxruntime.so.1.23.2 from the onnxruntime 1.23.2 wheel
# Then: IMGSIM_TEST_DATA=<dir> cargo test   (that directory is also the default).
set -euo pipefail
dest=${1:-/tmp/imgsim-test-data}
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
mkdir -p "$dest/skimage" "$dest/onnxruntime"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" scikit-image 'onnxruntime==1.23.2'
python3 - "$wheels" "$dest" <<'PY'
import glob, os, sys, zipfile
wheels, dest = sys.argv[1:]
with zipfile.ZipFile(glob.glob(os.path.join(wheels, "scikit_image-*.whl"))[0]) as z:
    for name in z.namelist():
        if name.startswith("skimage/data/") and name.endswith((".png", ".jpg")):
            with open(os.path.join(dest, "skimage", os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
with zipfile.ZipFile(glob.glob(os.path.join(wheels, "onnxruntime-*.whl"))[0]) as z:
    with open(os.path.join(dest, "onnxruntime", "libonnxruntime.so.1.23.2"), "wb") as f:
        f.write(z.read("onnxruntime/capi/libonnxruntime.so.1.23.2"))
PY
echo "test data in $dest"
