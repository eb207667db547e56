#!/usr/bin/env bash
# supervise digest beside its peers (../shared/bench/compare.sh) on the large and small
# profiles, and the physical limit (limit.sh), in one run. Prints compare.sh's tables and a
# summary of the ratios the project targets.
#   bench/digest.sh [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=$(cd "${SHARED_BENCH:-../shared/bench}" && pwd)
W=${1:-$(nproc)}
bin=$(mktemp -d)/supervise; trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/supervise
export SUPERVISE="$bin --workers $W"
summary=()
for spec in "large 0.25" "small 0.5"; do
  set -- $spec
  echo "== $1 $2"
  out=$("$shared/compare.sh" "$1" "$2" 2>/dev/null | tee /dev/stderr)
  dir=${BENCH_DATA:-/tmp/supervise-bench}/$1-$2
  limit=$("$shared/limit.sh" "$dir" | awk '{print $2}')
  sup=$(echo "$out" | awk '$1 == "supervise" {print $2}')
  ratio=$(echo "$out" | awk '/^supervise\/best-peer/ {print $2}')
  summary+=("$(printf '%-6s supervise %.3f s  supervise/best-peer %s  limit %.3f s  supervise/limit %.2f' \
    "$1" "$sup" "$ratio" "$limit" "$(python3 -c "print($sup/$limit)")")")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
