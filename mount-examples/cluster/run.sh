#!/usr/bin/env bash
# A cluster in miniature: one shared store (packs in S3, the catalog in PostgreSQL) and two "nodes", each a
# mount point with its own host directory and disk cache, as two training hosts would have. Node A is warmed
# with `assetfs prefetch` before its job; both read the same pinned version; a version imported from node B
# shows on node A's mount at once.
#
# usage: run.sh [ASSETFS_BINARY [WORK_DIR]]
# Checks: prefetch fills node A's cache (and a second prefetch fetches nothing); both nodes read the pinned
# version byte for byte as imported (diff -r); node A's metrics endpoint (parsed by prometheus_client) shows
# its reads came from the disk cache with no ranged GET; node A lists a version node B imported within 2 s; node B
# lists the workspace node A holds, with A's host directory. Needs what scripts/setup.sh installs
# (PostgreSQL 15, SeaweedFS); starts both servers on loopback inside the work dir and stops them at the end.
# shellcheck source=../lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
example_setup cluster "$@"

# The servers a real cluster already has; here on loopback, with the variables the AWS tools use.
SERVERS="$EXAMPLES_DIR/../scripts/shared-servers.sh"
CLEANUP_HOOKS+=("bash '$SERVERS' stop '$WORK/servers' >/dev/null 2>&1")
settings="$(bash "$SERVERS" start "$WORK/servers")" || die "the servers did not start (see $WORK/servers)"
eval "$settings"
export ASSETFS_STORE="s3://assets/cluster"
# Commands without `node` (the imports) run as node B.
export ASSETFS_HOST_DIR="$WORK/node-b/state" ASSETFS_DISK_CACHE="$WORK/node-b/cache"

# node NAME COMMAND...: runs assetfs as node NAME would: its own host directory and disk cache.
node() {
    local name="$1"
    shift
    ASSETFS_HOST_DIR="$WORK/node-$name/state" ASSETFS_DISK_CACHE="$WORK/node-$name/cache" "$ASSETFS" "$@"
}

show node a init --catalog "$ASSETFS_TEST_CATALOG"
for v in 1 2; do sample_version "$v"; done
cp -a "$WORK/dataset" "$WORK/expected-v2"

# Node A serves its metrics for Prometheus (prometheus.yml beside this script); here on a free loopback port.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
for name in a b; do
    mkdir -p "$WORK/node-$name/assets"
    metrics=()
    [ "$name" = a ] && metrics=(--metrics "127.0.0.1:$port")
    show node "$name" mount "$WORK/node-$name/assets" --background -o ro "${metrics[@]}" >/dev/null
    check "node $name mounted" "$(stat -f -c %t "$WORK/node-$name/assets")" "65735546"
done

# Before the job: warm node A's disk cache with the pinned version.
warm="$(show node a prefetch data@v2 --json)"
fetched="$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["chunksFetched"] == r["chunks"] > 0)' <<<"$warm")"
check "prefetch fetched every chunk of data@v2 into node A's cache" "$fetched" "True"
again="$(node a prefetch data@v2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["chunksFetched"])')"
check "a second prefetch fetches nothing" "$again" "0"
show node a cache

# The job: both nodes read the pinned version, byte for byte what was imported.
show diff -r "$WORK/expected-v2" "$WORK/node-a/assets/data/v2"
show diff -r "$WORK/expected-v2" "$WORK/node-b/assets/data/v2"
echo "ok: both nodes read data@v2 as imported"

# What an operator's Prometheus sees of node A: every chunk came from the disk cache the prefetch filled.
show curl -sSf "http://127.0.0.1:$port/metrics" -o "$WORK/node-a.metrics"
figures="$(python3 - "$WORK/node-a.metrics" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
values = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        key = s.name + ("{status=%s}" % s.labels["status"] if "status" in s.labels else "")
        values[key] = values.get(key, 0) + s.value
print(values.get("assetfs_disk_cache_hits_total", 0) > 0, values.get("assetfs_object_store_requests_total{status=206}", 0))
PY
)"
check "node A: disk cache hits, no ranged GET after the prefetch" "$figures" "True 0"
show node a stats --mount "$WORK/node-a/assets"

# A new version from node B shows on node A's mount without a remount.
sample_version 3 >/dev/null
for _ in $(seq 1 20); do [ -d "$WORK/node-a/assets/data/v3" ] && break; sleep 0.1; done
check "node A lists v3 within 2 s" "$(readlink "$WORK/node-a/assets/data/latest")" "v3"

# A workspace lives on the node that writes it; the other node sees where.
show node a workspace create data relabel >/dev/null
listed="$(node b workspace list --json | python3 -c 'import json,sys; print(" ".join(w["name"] for w in json.load(sys.stdin)))')"
check "node B lists node A's workspace" "$listed" "relabel"
[ -d "$WORK/node-a/state/workspaces" ] || die "node A's workspace overlay is not in node A's host directory"
show node a workspace discard data/relabel >/dev/null

example_done
