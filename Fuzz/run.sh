#!/usr/bin/env bash
# Coverage-guided fuzzing of assetfs's on-disk parsers (ChunkRecord.parseTable/decode, PackIndexReader.read,
# ChunkReader) with libFuzzer. Usage: Fuzz/run.sh [SECONDS]   (default 60)
#
# 1. builds the harness (Fuzz/Sources/FuzzParsers.swift + Sources/AssetStore/*.swift, -sanitize=fuzzer,address)
#    against the Crypto and swift-metrics objects of the debug build (runs `swift build --target AssetStore` first: a no-op when
#    the package is built);
# 2. replays Fuzz/regressions/* (inputs of earlier findings: each still crashing is reported as "still present");
# 3. fuzzes SECONDS/4 (at most 30 s) without filters: known findings are expected to reappear here;
# 4. fuzzes the rest with ASSETFS_FUZZ_SKIP_KNOWN=1 (inputs of known findings skipped) to look for new ones;
# 5. prints a summary and writes .build/fuzz/last-run.txt (rows for the reliability table).
# Exit status: 0 when no crash input was found and every regression input passes, 1 otherwise.
set -euo pipefail
TOTAL=${1:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/.build/fuzz
BIN=$OUT/fuzz-parsers
CORPUS=$OUT/corpus
ART=$OUT/artifacts
mkdir -p "$OUT" "$CORPUS" "$ART"
cd "$ROOT"

export SWIFT_BACKTRACE=enable=no   # let libFuzzer/ASan report crashes, not the Swift backtracer

if [ ! -d .build/debug/Crypto.build ] || [ ! -f .build/debug/Modules/Crypto.swiftmodule ] || [ ! -d .build/debug/CoreMetrics.build ]; then
  echo "== building AssetStore's dependencies (swift build --target AssetStore)"
  swift build --target AssetStore
fi
if [ ! -x "$BIN" ] || [ -n "$(find Fuzz/Sources Sources/AssetStore -name '*.swift' -newer "$BIN" | head -1)" ]; then
  echo "== compiling the harness"
  swiftc -sanitize=fuzzer,address -parse-as-library -module-name FuzzParsers -Onone -g \
    Fuzz/Sources/FuzzParsers.swift Sources/AssetStore/*.swift \
    -I .build/debug/Modules -I Sources/CZstd \
    -Xcc -fmodule-map-file=.build/checkouts/swift-crypto/Sources/CCryptoBoringSSL/include/module.modulemap \
    -Xcc -fmodule-map-file=.build/checkouts/swift-crypto/Sources/CCryptoBoringSSLShims/include/module.modulemap \
    $(find .build/debug/Crypto.build .build/debug/CCryptoBoringSSL.build .build/debug/CCryptoBoringSSLShims.build \
           .build/debug/CryptoBoringWrapper.build .build/debug/CoreMetrics.build .build/debug/Metrics.build -name '*.o') \
    -lzstd -o "$BIN" 2>&1 | grep -E "error|warning: unre" || true
  [ -x "$BIN" ] || { echo "harness did not build"; exit 1; }
fi

# One line describing a crash input: the first frame inside Sources/ plus the failure kind.
describe() {
  local log
  log=$("$BIN" "$1" 2>&1 || true)
  local kind frame
  kind=$(echo "$log" | grep -oE "Swift runtime failure: [a-z]+( [a-z]+)*|FUZZ FINDING: .*|AddressSanitizer: [a-z-]+|Fatal error: .*" | head -1)
  frame=$(echo "$log" | grep -oE "Sources/[A-Za-z]+/[A-Za-z+]+\.swift:[0-9]+" | head -1)
  echo "${kind:-crash} at ${frame:-?}"
}

# Exec count, exec/s and coverage from a libFuzzer log.
stats() {
  local log=$1 runs cov
  runs=$(grep -oE "stat::number_of_executed_units: [0-9]+" "$log" | awk '{print $2}' | tail -1)
  [ -n "$runs" ] || runs=$(grep -oE "^#[0-9]+" "$log" | tail -1 | tr -d '#')
  cov=$(grep -oE "cov: [0-9]+ ft: [0-9]+" "$log" | tail -1)
  echo "${runs:-0}|${cov:-cov: ?}"
}

REPORT=()
STILL=0

echo "== replaying Fuzz/regressions"
for f in Fuzz/regressions/*; do
  [ -f "$f" ] || continue
  if "$BIN" "$f" >/dev/null 2>&1; then
    echo "   $(basename "$f"): fixed (no crash)"
    REPORT+=("| regression input $(basename "$f") | 1 | fixed |")
  else
    d=$(describe "$f")
    echo "   $(basename "$f"): still present: $d"
    STILL=$((STILL + 1))
    REPORT+=("| regression input $(basename "$f") | 1 | still crashes: $d |")
  fi
done

FIRST=$(( TOTAL / 4 )); [ "$FIRST" -gt 30 ] && FIRST=30; [ "$FIRST" -lt 5 ] && FIRST=5
SECOND=$(( TOTAL - FIRST )); [ "$SECOND" -lt 5 ] && SECOND=5

run_phase() {  # name seconds skip_known
  local name=$1 secs=$2 skip=$3 log=$OUT/$1.log
  local before after
  ls "$ART" | sort > "$OUT/$name.before"
  before=$(wc -l < "$OUT/$name.before")
  echo "== $name: fuzzing for $secs s (skip known findings: $skip)"
  ASSETFS_FUZZ_SKIP_KNOWN=$skip ASSETFS_FUZZ_SEEDS=$CORPUS "$BIN" -max_total_time="$secs" -print_final_stats=1 \
    -fork=1 -ignore_crashes=1 -max_len=262144 -rss_limit_mb=2048 -artifact_prefix="$ART/$name-" "$CORPUS" > "$log" 2>&1 || true
  after=$(ls "$ART" | wc -l)
  local s; s=$(stats "$log")
  local runs=${s%%|*} cov=${s#*|}
  echo "   $runs executions, $cov, $((after - before)) crash inputs"
  local kinds=""
  if [ "$after" -gt "$before" ]; then
    kinds=$(for a in $(ls "$ART" | sort | comm -13 "$OUT/$name.before" - | head -20); do describe "$ART/$a"; done | sort | uniq -c | sed 's/^ *//' | paste -sd ';' -)
    echo "   findings: $kinds"
  fi
  PHASE_RUNS=$runs; PHASE_COV=$cov; PHASE_CRASHES=$((after - before)); PHASE_KINDS=$kinds
}

run_phase unfiltered "$FIRST" 0
U_RUNS=$PHASE_RUNS; U_KINDS=$PHASE_KINDS; U_CRASHES=$PHASE_CRASHES; U_COV=$PHASE_COV
run_phase filtered "$SECOND" 1
F_RUNS=$PHASE_RUNS; F_KINDS=$PHASE_KINDS; F_CRASHES=$PHASE_CRASHES; F_COV=$PHASE_COV
# Every earlier finding is fixed, so any crash input (in either phase) or a regression input that still crashes
# is a failure.
FINDINGS=$((STILL + U_CRASHES + F_CRASHES))

REPORT+=("| libFuzzer, all inputs (${FIRST} s, $U_COV) | $U_RUNS | ${U_CRASHES} crash inputs${U_KINDS:+: $U_KINDS} |")
REPORT+=("| libFuzzer, known findings skipped (${SECOND} s, $F_COV, corpus $(ls "$CORPUS" | wc -l)) | $F_RUNS | ${F_CRASHES} new${F_KINDS:+: $F_KINDS} |")
printf '%s\n' "${REPORT[@]}" > "$OUT/last-run.txt"
echo
echo "| fuzzing | executions | findings |"
echo "|:--|--:|--:|"
printf '%s\n' "${REPORT[@]}"
echo
echo "crash inputs: $ART   corpus: $CORPUS   logs: $OUT/*.log"
[ "$FINDINGS" -eq 0 ]
