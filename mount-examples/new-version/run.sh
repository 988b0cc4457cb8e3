#!/usr/bin/env bash
# Making a new version without copying the data set: a copy-on-write workspace over prod, edited with plain
# shell tools and Python, reviewed with `workspace status`, committed as v4 and tagged candidate; then an A/B
# run of the same script on prod and candidate, promotion (prod -> v4) and rollback (prod -> v3 again).
#
# usage: run.sh [ASSETFS_BINARY [WORK_DIR]]
# shellcheck source=../lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
example_setup new-version "$@"

for v in 1 2; do sample_version "$v"; done
sample_version 3 --tag prod
mount_assets
D="$MNT/data"

# The same evaluation script for every variant: the training example's job, three epochs.
evaluate() {
    show python3 "$HERE/../training/train.py" --data "$D/$1" --workers 2 --epochs 3 | grep '^result:'
}
prod_before="$(evaluate prod)"
echo "prod (v3): $prod_before"

# --- 1. a workspace: instant, whatever the size of the version
ws="$(show "$ASSETFS" workspace create data clean --from prod)"
echo "$ws"
check "workspace path" "$ws" "$D/workspaces/clean"
v3_sums="$(cd "$D/v3" && find . -type f | sort | xargs sha256sum)"

# --- 2. edit it with ordinary tools
show sh -c "grep -v ',bird\$' '$ws/shards/0001.csv' > '$ws/shards/0001.csv.tmp' && mv '$ws/shards/0001.csv.tmp' '$ws/shards/0001.csv'"
show sed -i 's/,dog$/,cat/' "$ws/shards/0002.csv"
show rm "$ws/arrays/emb01.npy"
show mkdir "$ws/docs"
echo "bird rows dropped from shard 1; dogs relabelled as cats in shard 2; emb03 rows normalised" >"$ws/docs/CHANGES.txt"
show python3 - "$ws" <<'PY'
import json, sys
import numpy as np
ws = sys.argv[1]
emb = np.load(f"{ws}/arrays/emb03.npy")  # read it whole before np.save truncates the file
np.save(f"{ws}/arrays/emb03.npy", (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32))
with open(f"{ws}/labels.json") as f:
    labels = json.load(f)
labels["classes"] = [c for c in labels["classes"] if c != "bird"]
with open(f"{ws}/labels.json", "w") as f:
    json.dump(labels, f)
PY
check "no bird rows left in the workspace's shard 1" "$(grep -c ',bird$' "$ws/shards/0001.csv" || true)" "0"
check "the base version is untouched" "$(cd "$D/v3" && find . -type f | sort | xargs sha256sum)" "$v3_sums"

# --- 3. review
status="$(show "$ASSETFS" workspace status data/clean)"
echo "$status"
check "workspace status" "$status" \
"workspace data/clean on v3
D  arrays/emb01.npy
M  arrays/emb03.npy
A  docs/
A  docs/CHANGES.txt
M  labels.json
M  shards/0001.csv
M  shards/0002.csv"
ws_sums="$(cd "$ws" && find . -type f | sort | xargs sha256sum)"

# --- 4. commit: the next version, tagged candidate
committed="$(show "$ASSETFS" commit data/clean -m "drop bird rows, relabel dogs, normalise emb03" --tag candidate)"
echo "$committed"
check "commit output" "$committed" "data v4"
new="$D/v$(version_number "$committed")"
echo "new version: $new"
check "the new version has exactly the workspace's files and bytes" "$(cd "$new" && find . -type f | sort | xargs sha256sum)" "$ws_sums"
check "the workspace is gone after commit" "$(ls "$D/workspaces")" ""
check "v3 is unchanged" "$(cd "$D/v3" && find . -type f | sort | xargs sha256sum)" "$v3_sums"
wait_for_link "$D/candidate" v4
wait_for_link "$D/latest" v4
check "prod still points at v3" "$(readlink "$D/prod")" "v3"
show "$ASSETFS" diff data@prod data@candidate
check "assetfs diff v3 v4 says what the status said" "$("$ASSETFS" diff data@v3 data@v4 --json | python3 -c '
import json, sys
mark = {"added": "A", "removed": "D", "modified": "M"}
for d in sorted(json.load(sys.stdin), key=lambda d: d["path"]): print(mark[d["kind"]] + "  " + d["path"])')" \
    "$(sed 1d <<<"$status")"

# --- 5. A/B: the same script on prod and on candidate
candidate="$(evaluate candidate)"
echo "prod (v3):      $prod_before"
echo "candidate (v4): $candidate"
check_ne "A/B: candidate gives a different result from prod" "$candidate" "$prod_before"

# --- 6. promote, then roll back: only the tag moves, both versions stay
show "$ASSETFS" tag data v4 prod
wait_for_link "$D/prod" v4
check "prod after promotion = candidate" "$(evaluate prod)" "$candidate"
show "$ASSETFS" tag data v3 prod
wait_for_link "$D/prod" v3
check "prod after rollback = prod before" "$(evaluate prod)" "$prod_before"
check "v4 is still there" "$(readlink "$D/candidate")" "v4"
show "$ASSETFS" log data
check "the audit log has both tag moves" "$("$ASSETFS" log data --json | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["action"] == "tag" and e["subject"] == "prod": print(e.get("from"), "->", e.get("to"))')" \
"None -> v3
v3 -> v4
v4 -> v3"

unmount_assets
example_done
