#!/usr/bin/env bash
# The main job, end to end: import three versions of a sample data set, mount, browse history,
# read a pinned version like a training job would, make a new version through a workspace, train a model whose
# lineage the mount records, clean up.
# usage: bash scripts/demo.sh [ASSETFS_BINARY]   (without one: set up the machine and build a release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    bin="$(realpath "$1")"    # an assetfs already built (the test suite runs the demo at a terminal this way)
else
    bash scripts/setup.sh
    echo "demo: building assetfs (release)" >&2
    swift build -c release --product assetfs >/dev/null
    bin="$(swift build -c release --show-bin-path)/assetfs"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/assetfs-demo.XXXXXX")"
export ASSETFS_STORE="$work/store"
mnt="$work/assets"
cleanup() {
    if grep -qs " $mnt " /proc/mounts; then "$bin" umount "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { step "$*"; "$@"; }

run "$bin" init
for v in 1 2 3; do
    python3 mount-examples/make_sample_data.py "$work/dataset" "$v"
    tag=(); [ "$v" = 2 ] && tag=(--tag prod)
    run "$bin" import data "$work/dataset" -m "sample data, edit $v" --meta "generator=make_sample_data.py v$v" "${tag[@]}"
done
run "$bin" versions data
run "$bin" diff data@v2 data@v3

mkdir -p "$mnt"
run "$bin" mount "$mnt" --background
run ls "$mnt" "$mnt/data"
run readlink "$mnt/data/latest" "$mnt/data/prod"
run ls -l "$mnt/data/v3/shards"
# setsid: each reading step is a job of its own, as a command typed in another terminal is. A script's commands
# share its process group, which lineage counts as one job (Documentation/Lineage.md).
step "diff -r $mnt/data/v2 $mnt/data/v3"; setsid -w diff -r "$mnt/data/v2" "$mnt/data/v3" | head -5 || true
run getfattr -n user.assetfs.root "$mnt/data/v3"
run du -sh "$mnt/data/v1" "$mnt/data/v2" "$mnt/data/v3"
run "$bin" stats

step "python3: read the pinned version data@v2 (numpy mmap + CSV)"
setsid -w python3 - "$mnt/data/v2" <<'PY'
import hashlib, sys, glob
import numpy as np
root = sys.argv[1]
emb = np.load(f"{root}/arrays/emb00.npy", mmap_mode="r")
rows = sum(1 for p in sorted(glob.glob(f"{root}/shards/*.csv")) for _ in open(p))
digest = hashlib.sha256(np.ascontiguousarray(emb).tobytes()).hexdigest()[:16]
print(f"pinned {root}: embeddings {emb.shape} sha256 {digest}, {rows} CSV lines")
PY

run "$bin" workspace create data exp1 --from v3
ws="$mnt/data/workspaces/exp1"
step "edit the workspace with plain shell and Python"
echo "id,feature_a,feature_b,label" > "$ws/shards/0000.csv"           # drop every row of one shard
python3 -c "import numpy as np; np.save('$ws/arrays/extra.npy', np.arange(1000, dtype=np.float32))"
rm "$ws/labels.json"
run "$bin" workspace status data/exp1
run "$bin" commit data/exp1 -m "drop shard 0, add extra.npy" --tag candidate
run ls "$mnt/data"
run readlink "$mnt/data/candidate"
run "$bin" diff data@v3 data@candidate
run "$bin" log data

step "train a model on data@v2 into a workspace of asset model: the mount records what it read"
mkdir -p "$work/model0" && echo "untrained" > "$work/model0/README"
"$bin" import model "$work/model0" -m "empty model" -q >/dev/null
"$bin" workspace create model run1 -q >/dev/null
setsid -w python3 - "$mnt/data/v2" "$mnt/model/workspaces/run1" <<'PY'
import glob, sys
import numpy as np
data, out = sys.argv[1:3]
emb = np.load(f"{data}/arrays/emb00.npy")
rows = sum(1 for p in sorted(glob.glob(f"{data}/shards/*.csv")) for _ in open(p))
np.save(f"{out}/weights.npy", emb.mean(axis=0))
print(f"trained on {rows} CSV lines and embeddings {emb.shape}; wrote weights.npy")
PY
run "$bin" commit model/run1 -m "trained on data@v2"
run "$bin" lineage model@v2
run "$bin" lineage --downstream data@v2

step "track experiments: four more trainings on data@v3, each recorded by assetfs run, metrics from metrics.json"
export ASSETFS_RUNS_DIR="$work/runs"
for lr in 0.1 0.03 0.01 0.003; do
    out="$work/train-$lr"; mkdir -p "$out"
    "$bin" run -q --name "train-$lr" -- python3 - "$mnt/data/v3" "$out" "$lr" <<'PY'
import glob, json, sys
import numpy as np
data, out, lr = sys.argv[1], sys.argv[2], float(sys.argv[3])
emb = np.load(f"{data}/arrays/emb00.npy")
rows = sum(1 for p in sorted(glob.glob(f"{data}/shards/*.csv")) for _ in open(p))
# A stand-in for training: the loss falls with the learning rate up to a point, then rises again.
loss = round(0.2 + (np.log10(lr) + 1.7) ** 2 / 4 + float(np.abs(emb).mean()) / 100, 4)
np.save(f"{out}/weights.npy", emb.mean(axis=0) * lr)
json.dump({"val": {"loss": loss, "acc": round(1 - loss / 2, 4)}, "train": {"lr": lr, "rows": rows}}, open(f"{out}/metrics.json", "w"))
PY
    "$bin" import model "$out" -q -m "lr $lr" --metrics-from metrics.json --lineage-from "train-$lr" >/dev/null
done
run "$bin" meta model --keys train.lr,val.loss,val.acc --sort val.loss
run "$bin" tag model --lowest val.loss best
run "$bin" compare model@v3 model@best
run "$bin" plot model val.loss val.acc
run "$bin" plot model val.loss val.acc --out "$work/metrics.svg"
if [ -n "${DEMO_CHART:-}" ]; then cp "$work/metrics.svg" "$DEMO_CHART"; fi   # the README's chart comes from here

run "$bin" umount "$mnt"

# The same uses, as the checked examples in mount-examples/ (each makes its own store and mount).
for example in training history new-version; do
    step "bash mount-examples/$example/run.sh"
    bash "mount-examples/$example/run.sh" "$bin" 2>/dev/null | tail -4
done
echo
echo "demo: done (store and mount were in $work, now removed)"
