#!/usr/bin/env bash
# The whole reliability report: fuzz the parsers for SECONDS (default 60), run the reliability suite, print the
# table (also in .build/reliability-report.md). Usage: Fuzz/report.sh [SECONDS]
# Builds nothing but the fuzz harness: run `swift build --build-tests` first.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ -x .build/debug/assetfs ] || { echo "build first: swift build --build-tests"; exit 1; }
"$ROOT/Fuzz/run.sh" "${1:-60}"
fuzz=$?
swift test --skip-build --filter ReliabilityTests > .build/reliability-test.log 2>&1
tests=$?
grep -E "^(✘|✔) (Test|Suite)" .build/reliability-test.log | tail -60
echo
cat .build/reliability-report.md
echo
echo "fuzz exit $fuzz, tests exit $tests (full log: .build/reliability-test.log)"
[ $fuzz -eq 0 ] && [ $tests -eq 0 ]
