#!/usr/bin/env bash
# Lineage's memory bound (issue 17): 5,000 short-lived processes and 200,000 opened files through one mount,
# with lineage on and with --no-lineage (the baseline, same run); prints the daemon's peak RSS as a table.
# usage: [ASSETFS_BIN=path] bash Benchmarks/lineage-bench.sh [WORK_DIR] [FILES]
# Runs as root (FUSE mount). Phase A: 5,000 processes, each its own session (so its own job), 40 files each.
# Phase B: one job (a shell running 5,000 short `cat`s in its own process group) opens all 200,000 files and
# writes into a workspace, which is then committed: its record must name the version and count every file.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/assetfs-lineagebench}"
files="${2:-200000}"
per=40
source Benchmarks/bench-lib.sh
bench_binary
rm -rf "$work"
mkdir -p "$work/src" "$work/mnt" "$work/model"
export ASSETFS_STORE="$work/store"
unmount_on_exit "$work/mnt"

echo "generating $files files..." >&2
python3 - "$work/src" "$files" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(0, n, 1000):
    sub = os.path.join(root, f"d{d // 1000:04d}")
    os.mkdir(sub)
    for i in range(d, min(n, d + 1000)):
        with open(os.path.join(sub, f"f{i:06d}.txt"), "w") as f:
            f.write(f"row {i}\n")
EOF
"$bin" init -q
start=$(date +%s.%N)
"$bin" import data "$work/src" -q >/dev/null
echo "imported $files files in $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s" >&2
echo "readme" > "$work/model/README"
"$bin" import model "$work/model" -q >/dev/null
(cd "$work/src" && find . -type f | sort) > "$work/list"

hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f}')"; }

results=()
for mode in lineage no-lineage; do
    extra=()
    [ "$mode" = no-lineage ] && extra=(--no-lineage)
    "$bin" workspace create model "w-$mode" --from latest -q >/dev/null
    pid=$("$bin" mount "$work/mnt" --background -q "${extra[@]}")
    ls "$work/mnt/data/v1" >/dev/null
    idle=$(rss "$pid")
    # Phase A: every process its own session: 5,000 jobs of 40 files.
    start=$(date +%s.%N)
    (cd "$work/mnt/data/v1" && xargs -a "$work/list" -P 8 -n "$per" setsid cat > /dev/null)
    a_seconds=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    a_hwm=$(hwm "$pid")
    # Phase B: one job of 5,000 processes reading every file, then writing into the workspace.
    start=$(date +%s.%N)
    setsid -w sh -c "cd '$work/mnt/data/v1' && xargs -a '$work/list' -n $per cat > /dev/null && echo done > '$work/mnt/model/workspaces/w-$mode/result.txt'"
    b_seconds=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    b_hwm=$(hwm "$pid")
    "$bin" commit "model/w-$mode" -m "$mode" -q >/dev/null
    version=$("$bin" versions model --json | python3 -c "import json,sys; print(json.load(sys.stdin)[-1]['version'])")
    inputs=$("$bin" lineage "model@v$version" --json | python3 -c "
import json, sys
g = json.load(sys.stdin)
print(' '.join(f\"{e['from']}:{e['fileCount']}files({len(e['files'])}listed)\" for e in g['edges']) or 'none')")
    "$bin" umount "$work/mnt"
    results+=("| $mode | $(mib "$idle") | $(mib "$a_hwm") | $a_seconds | $(mib "$b_hwm") | $b_seconds | $inputs |")
done

echo
echo "Lineage memory: $files files opened by 5,000 processes (phase A: 5,000 jobs; phase B: one job that writes), $(nproc) cores"
echo
echo "| mount | RSS idle MiB | peak RSS after A MiB | A s | peak RSS after B MiB | B s | inputs of the commit |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
