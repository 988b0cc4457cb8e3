#!/usr/bin/env bash
# Training against a pinned version: train.py reads CSV shards and mmapped .npy arrays with worker processes
# and knows nothing about assetfs. config.json pins the data as /assets/data/v3; each run records the
# version and Merkle root of what it read (xattrs user.assetfs.version / user.assetfs.root) in run.json.
#
# usage: run.sh [ASSETFS_BINARY [WORK_DIR]]
# Checks: two runs on the pinned version (the second after a remount) give identical results and roots; a run
# on v2 gives a different result and root; the recorded root is the one `assetfs versions` reports.
# shellcheck source=../lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
example_setup training "$@"

for v in 1 2 3; do sample_version "$v"; done
# Training only reads: the versions-only mount (-o ro) lets the kernel open files without asking the daemon,
# which keeps later epochs over many small files at page-cache speed.
mount_assets -o ro

# The config says /assets/...; this example mounts at $WORK/assets instead of /assets.
config_value() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$HERE/config.json" "$1"; }
pinned="$(config_value data)"
workers="$(config_value workers)"
epochs="$(config_value epochs)"
lr="$(config_value lr)"
check "config pins a version" "$pinned" "/assets/data/v3"

# run_training DATA_PATH OUT_DIR: what a job launcher would do around an unmodified training script.
run_training() {
    local data="$1" out="$2" local_path version root
    local_path="$MNT${1#/assets}"
    mkdir -p "$out"
    # Record what is about to be read: the version directory's identity, from its xattrs.
    version="$(getfattr --absolute-names --only-values -n user.assetfs.version "$local_path")"
    root="$(getfattr --absolute-names --only-values -n user.assetfs.root "$local_path")"
    show python3 "$HERE/train.py" --data "$local_path" --workers "$workers" --epochs "$epochs" --lr "$lr" \
        --out "$out/metrics.json" | tee "$out/train.log"
    python3 - "$out/run.json" "$data" "$local_path" "$version" "$root" "$out/metrics.json" <<'PY'
import json, sys
out, data, mounted, version, root, metrics = sys.argv[1:]
with open(metrics) as f:
    result = json.load(f)
with open(out, "w") as f:
    json.dump({"data": data, "mounted_at": mounted, "assetfs_version": version, "assetfs_root": root,
               "result": result}, f, indent=2, sort_keys=True)
PY
    echo "recorded $out/run.json: $version root ${root:0:16}..."
}

json_field() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d = d[k]
print(json.dumps(d, sort_keys=True))' "$1" "$2"; }

run_training "$pinned" "$WORK/runs/1"
# Remount (a reboot, another node): the same pinned path must give the same bytes and the same result.
unmount_assets
mount_assets -o ro
run_training "$pinned" "$WORK/runs/2"
run_training "/assets/data/v2" "$WORK/runs/other"

echo
show cat "$WORK/runs/1/run.json"
echo

check "run 1 and run 2 on data@v3: identical result" \
    "$(json_field "$WORK/runs/2/run.json" result)" "$(json_field "$WORK/runs/1/run.json" result)"
check "run 1 and run 2: identical printed result line" \
    "$(grep '^result:' "$WORK/runs/2/train.log")" "$(grep '^result:' "$WORK/runs/1/train.log")"
check "run 1 and run 2: same recorded root" \
    "$(json_field "$WORK/runs/2/run.json" assetfs_root)" "$(json_field "$WORK/runs/1/run.json" assetfs_root)"
check "recorded version" "$(json_field "$WORK/runs/1/run.json" assetfs_version)" '"data@v3"'
catalog_root="$("$ASSETFS" versions data --json | python3 -c 'import json, sys; print([v["root"] for v in json.load(sys.stdin) if v["version"] == 3][0])')"
check "recorded root is the catalog's root of v3" "$(json_field "$WORK/runs/1/run.json" assetfs_root)" "\"$catalog_root\""
check "data@v3 has 4 shards, 4 arrays" "$(json_field "$WORK/runs/1/run.json" result.shards) $(json_field "$WORK/runs/1/run.json" result.arrays)" "4 4"
check "data@v2 has 3 arrays" "$(json_field "$WORK/runs/other/run.json" result.arrays)" "3"
check_ne "data@v2 gives a different loss" \
    "$(json_field "$WORK/runs/other/run.json" result.loss)" "$(json_field "$WORK/runs/1/run.json" result.loss)"
check_ne "data@v2 has a different root" \
    "$(json_field "$WORK/runs/other/run.json" assetfs_root)" "$(json_field "$WORK/runs/1/run.json" assetfs_root)"

unmount_assets
example_done
