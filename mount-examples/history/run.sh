#!/usr/bin/env bash
# Browsing history with ordinary tools: ls, ls -l, diff -r, find -newer, du, getfattr, grep -r. No assetfs
# command is needed to look at old versions; every version is a directory.
#
# usage: run.sh [ASSETFS_BINARY [WORK_DIR]]
# Checks every output against what the data implies: a copy of the source directory kept after each import
# (snap/vN), `assetfs diff`, `assetfs ls` and `assetfs versions`.
# shellcheck source=../lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
example_setup history "$@"

for v in 1 2 3; do
    tag=()
    [ "$v" = 2 ] && tag=(--tag prod)
    sample_version "$v" "${tag[@]}"
    mkdir -p "$WORK/snap"
    cp -a "$WORK/dataset" "$WORK/snap/v$v"  # what each version must look like
done
# --no-lineage: browsing history records nothing, and an unchanged file keeps one inode across versions (a
# mount that records lineage numbers each version's files apart: Documentation/Lineage.md).
mount_assets --no-lineage
D="$MNT/data"
# Output with the mount's and the snapshots' prefixes removed, so that the two can be compared.
strip() { sed -e "s|$D/||g" -e "s|$WORK/snap/||g"; }

# --- ls: one directory per version, latest and one symlink per tag
show ls "$D"
check "ls data" "$(ls "$D" | tr '\n' ' ')" "latest prod v1 v2 v3 workspaces "
check "latest -> v3" "$(readlink "$D/latest")" "v3"
check "prod -> v2 (tagged at import)" "$(readlink "$D/prod")" "v2"

# --- ls -l: modes, sizes and mtimes as they were in the imported directory
show ls -l --time-style=long-iso "$D/v3/shards"
listing() { (cd "$1" && find . -type f -printf '%M %u %g %s %T+ %P\n' | sort); }
for v in 1 2 3; do
    check "file listing of v$v (mode, owner, size, mtime) matches the imported directory" \
        "$(listing "$D/v$v")" "$(listing "$WORK/snap/v$v")"
    diff -r "$D/v$v" "$WORK/snap/v$v" >/dev/null || die "v$v differs from the directory it was imported from"
    echo "ok: diff -r v$v against the imported directory: identical"
done

# --- diff -r between versions: same answer as on the original directories and as `assetfs diff`
show diff -r "$D/v2" "$D/v3" | head -8 || true
check "diff -rq v2 v3 (mount) = diff -rq of the imported directories" \
    "$(diff -rq "$D/v2" "$D/v3" | strip)" "$(diff -rq "$WORK/snap/v2" "$WORK/snap/v3" | strip)"
check "diff -rq v2 v3" "$(diff -rq "$D/v2" "$D/v3" | strip)" \
"Only in v3/arrays: emb03.npy
Files v2/labels.json and v3/labels.json differ
Files v2/shards/0003.csv and v3/shards/0003.csv differ"
show "$ASSETFS" diff data@v2 data@v3
check "assetfs diff agrees" "$("$ASSETFS" diff data@v2 data@v3 --json | python3 -c '
import json, sys
for d in json.load(sys.stdin): print(d["kind"], d["path"])')" \
"added arrays/emb03.npy
modified labels.json
modified shards/0003.csv"

# --- find -newer: what changed in v3 after v2's labels were written
show find "$D/v3" -type f -newer "$D/v2/labels.json"
check "find v3 -newer v2/labels.json" "$(find "$D/v3" -type f -newer "$D/v2/labels.json" | strip | sort)" \
"v3/arrays/emb03.npy
v3/labels.json
v3/shards/0003.csv"

# --- inode numbers: a file unchanged between versions keeps its inode (and so shares the page cache)
show ls -i "$D/v1/shards/0000.csv" "$D/v3/shards/0000.csv" "$D/v2/shards/0003.csv" "$D/v3/shards/0003.csv"
ino() { stat -c %i "$D/$1"; }
check "v1 and v3 shards/0000.csv share an inode" "$(ino v3/shards/0000.csv)" "$(ino v1/shards/0000.csv)"
check "v1 and v2 shards/0003.csv share an inode" "$(ino v2/shards/0003.csv)" "$(ino v1/shards/0003.csv)"
check_ne "v2 and v3 shards/0003.csv (changed) have different inodes" "$(ino v3/shards/0003.csv)" "$(ino v2/shards/0003.csv)"

# --- du: one du over several versions counts a shared inode once, separate runs count it every time
show du -sh "$D"/v*
for v in 1 2 3; do show du -sh "$D/v$v"; done
show "$ASSETFS" stats
together="$(du -s -B512 "$D"/v* | cut -f1 | tr '\n' ' ')"
separate="$(for v in 1 2 3; do du -s -B512 "$D/v$v" | cut -f1; done | tr '\n' ' ')"
# What the data implies, in 512-byte blocks (st_blocks): a version alone holds all its files; in one du run
# over v1 v2 v3, v2 and v3 add only the files `assetfs diff` reports as added or modified.
expected="$(python3 - "$ASSETFS" <<'PY'
import json, subprocess, sys
bin = sys.argv[1]
def run(*args): return json.loads(subprocess.run([bin, *args, "--json"], check=True, capture_output=True).stdout)
blocks = lambda size: -(-size // 512)
alone = [sum(blocks(e["size"]) for e in run("ls", f"data@v{v}", "-r") if e["type"] == "file") for v in (1, 2, 3)]
new = [alone[0]] + [sum(blocks(d["newSize"]) for d in run("diff", f"data@v{v - 1}", f"data@v{v}") if d["kind"] != "removed")
                    for v in (2, 3)]
stats = run("stats")
logical = sum(e["size"] for v in (1, 2, 3) for e in run("ls", f"data@v{v}", "-r") if e["type"] == "file")
print(" ".join(map(str, new)) + " ")
print(" ".join(map(str, alone)) + " ")
print(f"{stats['logicalBytes']} {logical}")
PY
)"
check "du -s v1 v2 v3 in one run: v2 and v3 count only their new files (blocks)" "$together" "$(sed -n 1p <<<"$expected")"
check "du -s of each version separately: every file (blocks)" "$separate" "$(sed -n 2p <<<"$expected")"
read -r logical_stats logical_files <<<"$(sed -n 3p <<<"$expected")"
check "assetfs stats logical bytes = all files of all versions added up" "$logical_stats" "$logical_files"
sum() { local t=0 n; for n in $1; do t=$((t + n)); done; echo "$t"; }
echo "one du run: $(($(sum "$together") / 2)) KiB; separate runs added up: $(($(sum "$separate") / 2)) KiB;" \
    "stored: $("$ASSETFS" stats --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["storedBytes"] // 1024)') KiB"

# --- xattrs: the sha256 of every file, the version and Merkle root of every version directory
show getfattr -d --absolute-names "$D/v3"
show getfattr -d --absolute-names "$D/v3/labels.json"
for v in 1 2 3; do
    check "user.assetfs.version of v$v" "$(getfattr --absolute-names --only-values -n user.assetfs.version "$D/v$v")" "data@v$v"
    root="$("$ASSETFS" versions data --json | python3 -c 'import json, sys; print([v["root"] for v in json.load(sys.stdin) if v["version"] == int(sys.argv[1])][0])' "$v")"
    check "user.assetfs.root of v$v = the root in assetfs versions" \
        "$(getfattr --absolute-names --only-values -n user.assetfs.root "$D/v$v")" "$root"
done
check "user.assetfs.version through the latest symlink" \
    "$(getfattr --absolute-names --only-values -n user.assetfs.version "$D/latest")" "data@v3"
xattr_sums="$(cd "$D/v3" && find . -type f | sort | while read -r f; do
    echo "$(getfattr --absolute-names --only-values -n user.assetfs.sha256 "$f")  $f"; done)"
check "user.assetfs.sha256 = sha256sum for every file of v3" "$xattr_sums" "$(cd "$D/v3" && find . -type f | sort | xargs sha256sum)"

# --- grep -r across versions: which versions still contain a given row?
row="$(sed -n 2p "$WORK/snap/v1/shards/0003.csv")"
show grep -rlxF "$row" "$D"/v*/shards
check "grep -rlx of a v1 row across versions = on the imported directories" \
    "$(grep -rlxF "$row" "$D"/v*/shards | strip | sort)" "$(grep -rlxF "$row" "$WORK"/snap/v*/shards | strip | sort)"
check "that row is in v1 and v2, gone in v3" "$(grep -rlxF "$row" "$D"/v*/shards | strip | sort | tr '\n' ' ')" \
    "v1/shards/0003.csv v2/shards/0003.csv "
show grep -c ',cat$' "$D"/v*/shards/0003.csv
check "grep -c across versions = on the imported directories" \
    "$(grep -c ',cat$' "$D"/v*/shards/0003.csv | strip)" "$(grep -c ',cat$' "$WORK"/snap/v*/shards/0003.csv | strip)"

unmount_assets
example_done
