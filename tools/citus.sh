# Citus, for the cluster test and the scale-out benchmark. No package registry
# reachable here carries Citus for PostgreSQL 15, so it is built from the
# source kept next to the checkout ($REPO_ROOT/../shared/citus; README there).
#
# Sourced by tools/setup.sh after lib.sh. Run on its own (bash tools/citus.sh)
# it only builds, which writes nothing outside .imgsim/: a way to do the
# 5-minute cold build without holding the install lock.
[ -n "${REPO_ROOT:-}" ] || source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CITUS_VERSION=13.2.2
CITUS_SOURCE_DIR="$REPO_ROOT/../shared/citus"
CITUS_TARBALL="$CITUS_SOURCE_DIR/citus-$CITUS_VERSION.tar.gz"
CITUS_PATCH="$CITUS_SOURCE_DIR/citus-pg15-minor.patch"
CITUS_TARBALL_SHA256=17f90093b6edaf3e9c43fb695341c70c1f576e88cc6d3d8e2ba88ebbbe4efe77

# True when this checkout has the Citus source next to it (a user's own clone
# usually does not; the Citus test is then skipped, except under CI=true).
citus_source_present() { [ -f "$CITUS_TARBALL" ] && [ -f "$CITUS_PATCH" ]; }

# The build tree, keyed by the checksums of the tarball and the patch: a new
# tarball or patch builds afresh, the same ones reuse the finished build.
citus_build_dir() {
    local key; key=$(cat "$CITUS_TARBALL" "$CITUS_PATCH" | sha256sum | cut -c1-16)
    echo "$STATE_DIR/citus/$CITUS_VERSION-$key"
}

citus_build() {
    local actual; actual=$(sha256sum "$CITUS_TARBALL" | cut -d' ' -f1)
    [ "$actual" = "$CITUS_TARBALL_SHA256" ] || die "$CITUS_TARBALL has sha256 $actual, expected $CITUS_TARBALL_SHA256"
    local dir; dir=$(citus_build_dir)
    if [ -f "$dir/.built" ]; then echo "cached: $dir"; return 0; fi
    rm -rf "$dir"; mkdir -p "$dir"
    tar xzf "$CITUS_TARBALL" -C "$dir"
    (cd "$dir" && patch -s -p1 < "$CITUS_PATCH" \
        && ./configure -q PG_CONFIG="$PG_CONFIG" --without-libcurl >/dev/null \
        && make -s -j"$(nproc)" 2> >(grep -v 'recipe for target' >&2) >/dev/null) || die "building Citus in $dir (see its config.log)"
    touch "$dir/.built"
    echo "built: $dir"
}

# Installs into Debian's PostgreSQL directories unless the installed citus.so
# is already this build's (so a second run writes nothing).
citus_install() {
    local dir; dir=$(citus_build_dir)
    if cmp -s "$dir/src/backend/distributed/citus.so" "$("$PG_CONFIG" --pkglibdir)/citus.so"; then
        echo "already installed: citus.so from $dir"
    else
        # (Citus's Makefile overrides PGXS's check target, and make says so on every run.)
        (cd "$dir" && as_root make -s install 2> >(grep -v 'recipe for target' >&2) >/dev/null)
        echo "installed: Citus $CITUS_VERSION into $("$PG_CONFIG" --pkglibdir)"
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    if citus_source_present; then citus_build; else die "no Citus source at $CITUS_SOURCE_DIR"; fi
fi
