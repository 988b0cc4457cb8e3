# Sourced by every example script: arguments, a private store and mount inside the work dir, a cleanup trap
# that always unmounts, sample data with deterministic mtimes, and checks that stop the example on a wrong
# result. Not an example itself.
#
#   source "$(dirname "$0")/../lib/common.sh"
#   example_setup NAME "$@"          # sets ASSETFS, WORK, MNT and exports ASSETFS_STORE=$WORK/store
set -euo pipefail

EXAMPLES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE=example
ASSETFS=
WORK=
MNT=
OWN_WORK=0
CLEANUP_HOOKS=()

die() {
    echo "FAIL [$EXAMPLE]: $*" >&2
    exit 1
}

# example_setup NAME [ASSETFS_BINARY [WORK_DIR]]
# The binary defaults to `assetfs` on PATH; the work dir to a new /tmp/assetfs-example-NAME.XXXXXX (removed at
# the end when the example created it).
example_setup() {
    EXAMPLE="$1"
    shift
    if [ $# -gt 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
        echo "usage: $0 [ASSETFS_BINARY [WORK_DIR]]" >&2
        exit 2
    fi
    ASSETFS="${1:-$(command -v assetfs || true)}"
    [ -n "$ASSETFS" ] && [ -x "$ASSETFS" ] || die "no assetfs binary (got '${1:-}'; none on PATH): pass its path as the first argument"
    ASSETFS="$(realpath -s "$ASSETFS")"
    if [ $# -ge 2 ]; then
        mkdir -p "$2"
        WORK="$(realpath "$2")"
    else
        WORK="$(mktemp -d "${TMPDIR:-/tmp}/assetfs-example-$EXAMPLE.XXXXXX")"
        OWN_WORK=1
    fi
    [ -z "$(ls -A "$WORK/store" 2>/dev/null)" ] || die "$WORK/store already exists: give an empty work dir"
    export ASSETFS_STORE="$WORK/store"
    MNT="$WORK/assets"
    mkdir -p "$MNT"
    trap example_cleanup EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cd "$WORK"
    "$ASSETFS" init --quiet >/dev/null
    echo "== example $EXAMPLE: binary $ASSETFS, work dir $WORK"
}

# require_reachable_by_other_users: the uid-1000 checks need every parent of the work dir to be searchable.
require_reachable_by_other_users() {
    chmod 755 "$WORK" "$MNT"
    setpriv --reuid 1000 --regid 1000 --clear-groups test -x "$MNT" ||
        die "uid 1000 cannot reach $MNT: every parent directory of the work dir must be searchable (chmod o+x)"
}

# Mount points at or below DIR, deepest first (from /proc/self/mountinfo; asks no FUSE daemon anything).
mounts_under() {
    awk -v dir="$1" '{ p = $5; gsub(/\\040/, " ", p); if (p == dir || index(p, dir "/") == 1) print p }' \
        /proc/self/mountinfo | sort -r -u
}

is_mounted() { awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo; }

example_cleanup() {
    local rc=$? hook m
    set +e
    trap - EXIT HUP INT TERM
    cd /
    for hook in "${CLEANUP_HOOKS[@]}"; do eval "$hook"; done
    for m in $(mounts_under "$WORK"); do
        "$ASSETFS" umount "$m" >/dev/null 2>&1
        if is_mounted "$m"; then fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; fi
        if is_mounted "$m"; then echo "cleanup: $m is still mounted" >&2; rc=1; fi
    done
    if [ "$OWN_WORK" = 1 ] && [ -z "$(mounts_under "$WORK")" ]; then rm -rf "$WORK"; fi
    [ "$rc" = 0 ] || echo "EXAMPLE FAILED: $EXAMPLE (exit $rc)" >&2
    exit "$rc"
}

# Prints a command like a terminal session would (on stderr, so that it never mixes with captured output),
# then runs it.
show() {
    printf '\n$ %s\n' "$*" >&2
    "$@"
}

# check WHAT ACTUAL EXPECTED
check() {
    if [ "$2" != "$3" ]; then
        printf 'FAIL [%s]: %s\n--- expected\n%s\n--- got\n%s\n' "$EXAMPLE" "$1" "$3" "$2" >&2
        exit 1
    fi
    echo "ok: $1"
}

# check_ne WHAT A B: the two must differ.
check_ne() {
    [ "$2" != "$3" ] || die "$1: both are [$2]"
    echo "ok: $1"
}

# sample_version V [import options...]: writes edit V of the sample data set into $WORK/dataset (see
# make_sample_data.py), stamps deterministic mtimes and imports it as the next version of asset `data`.
sample_version() {
    local v="$1" out
    shift
    python3 "$EXAMPLES_DIR/make_sample_data.py" "$WORK/dataset" "$v"
    python3 "$EXAMPLES_DIR/lib/stamp_mtimes.py" "$WORK/dataset" "$v" "$WORK/dataset.manifest.json"
    out="$("$ASSETFS" import data "$WORK/dataset" -m "sample data, edit $v" --meta "generator=make_sample_data.py $v" "$@")"
    echo "$out"
    check "import of edit $v" "$out" "data v$v"
}

# mount_assets [-o OPTION]...: mounts the store at $MNT in the background and checks it answers as FUSE.
mount_assets() {
    "$ASSETFS" mount "$MNT" --background "$@" >/dev/null
    check "statfs type of $MNT" "$(stat -f -c %t "$MNT")" "65735546"
}

unmount_assets() {
    "$ASSETFS" umount "$MNT"
    ! is_mounted "$MNT" || die "$MNT is still mounted after assetfs umount"
}

# wait_for_link PATH TARGET: tag symlinks are re-read from the catalog with a 1 s cache.
wait_for_link() {
    local _
    for _ in $(seq 1 50); do
        [ "$(readlink "$1" 2>/dev/null)" = "$2" ] && return 0
        sleep 0.1
    done
    die "$1 does not point to $2 after 5 s (it points to '$(readlink "$1" 2>/dev/null)')"
}

# The version number assetfs printed, e.g. "data v4" -> 4.
version_number() { sed -n 's/^data v\([0-9][0-9]*\)$/\1/p' <<<"$1"; }

example_done() {
    echo
    echo "EXAMPLE OK: $EXAMPLE"
}
