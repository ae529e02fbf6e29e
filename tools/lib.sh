# Shared helpers for the set-up, demo and test scripts. Source it; don't run it.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
PG_CONFIG="$PG_BIN/pg_config"
PGRX_VERSION=0.18.0
ORT_VERSION=1.23.2
# Where the set-up keeps what it downloads or generates (git-ignored).
STATE_DIR="$REPO_ROOT/.imgsim"
VENV="$STATE_DIR/venv"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'imgsim: FAILED: %s\n' "$*" >&2; exit 1; }

# On exit: run the registered clean-ups, and say which step failed if any.
CURRENT_STEP="start"
EXIT_HOOKS=()
on_exit() { EXIT_HOOKS+=("$1"); }
finish() {
    local rc=$?
    for hook in "${EXIT_HOOKS[@]}"; do eval "$hook" || true; done
    [ "$rc" -eq 0 ] || printf 'imgsim: FAILED during: %s (exit %s)\n' "$CURRENT_STEP" "$rc" >&2
    exit "$rc"
}
trap finish EXIT
begin() { CURRENT_STEP="$*"; step "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@";
    elif [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@";
    else sudo -u postgres "$@"; fi
}

# A cluster owned by the postgres user, on its own port.
# usage: cluster_start DATADIR PORT [extra postgres -c options...]
cluster_start() {
    local datadir=$1 port=$2; shift 2
    as_root mkdir -p "$(dirname "$datadir")"
    as_root chown postgres:postgres "$(dirname "$datadir")"
    if [ ! -f "$datadir/PG_VERSION" ]; then
        # C.UTF-8 (on every Debian): sort order and encoding do not depend
        # on the caller's LANG, so test outputs are the same everywhere.
        as_postgres "$PG_BIN/initdb" -D "$datadir" -U postgres -A trust --no-sync \
            --locale=C.UTF-8 --encoding=UTF8 >/dev/null
    fi
    if ! as_postgres "$PG_BIN/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        local opts="-p $port -c listen_addresses=localhost -c unix_socket_directories=/tmp"
        for o in "$@"; do opts="$opts -c $o"; done
        # Test ports lie in Linux's ephemeral range, so a client connection
        # elsewhere can hold one for a moment: retry a start that failed to bind.
        local attempt
        for attempt in 1 2 3 4 5; do
            # RUST_BACKTRACE in the server's environment would append Rust
            # backtraces to the DETAIL of errors; users' servers do not have it.
            if as_postgres env -u RUST_BACKTRACE "$PG_BIN/pg_ctl" -D "$datadir" -l "$datadir/server.log" -o "$opts" -w start >/dev/null; then
                return 0
            fi
            grep -q "could not create any TCP/IP sockets" "$datadir/server.log" && [ "$attempt" -lt 5 ] || return 1
            echo "port $port busy, retrying in 2 s" >&2
            sleep 2
        done
    fi
}

cluster_stop() {
    local datadir=$1
    if as_postgres "$PG_BIN/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        as_postgres "$PG_BIN/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null
    fi
}
