#!/usr/bin/env bash
# The whole test suite: unit tests, in-process store tests, CLI integration tests and real FUSE mounts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "test: building (debug, with tests)" >&2
swift build --build-tests 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
swift build --build-tests >/dev/null
# Tests mount real FUSE file systems; a watchdog in each test cuts hung mounts, and every test unmounts.
status=0
swift test --skip-build 2>&1 || status=$?
# Coverage-guided fuzzing of the on-disk parsers for a bounded time (longer on demand: Fuzz/run.sh 600).
echo "test: fuzzing the pack and chunk-record parsers for ${ASSETFS_FUZZ_SECONDS:-30} s" >&2
bash Fuzz/run.sh "${ASSETFS_FUZZ_SECONDS:-30}" 2>&1 || status=$?
exit "$status"
