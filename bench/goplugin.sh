#!/usr/bin/env bash
# The same echo through supervise's channel, through hashicorp/go-plugin (net/rpc and gRPC), and
# through go-plugin plugins as the workers of a supervise pool (supervisor/goplugin),
# 2 worker processes, 8 calls in flight each, 64 B and 1 MiB payloads: RUNS runs (default 5),
# each measuring the three in turn, then the median of each figure.
#   bench/goplugin.sh [WORKERS] [INFLIGHT]
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-2}; K=${2:-8}; RUNS=${RUNS:-5}
bin=$(mktemp -d)/goplugin; trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/goplugin
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for spec in "50000 64" "1000 1048576"; do
  set -- $spec
  out=$(for _ in $(seq "$RUNS"); do "$bin" -tasks "$1" -size "$2" -workers "$W" -inflight "$K"; done)
  for name in supervise go-plugin-netrpc pool-of-netrpc go-plugin-grpc pool-of-grpc; do
    rows=$(grep "^$name " <<<"$out")
    tps=$(sed -n 's/.*tasks\/s=\([0-9.]*\).*/\1/p' <<<"$rows" | median)
    mib=$(sed -n 's/.*MiB\/s=\([0-9.]*\).*/\1/p' <<<"$rows" | median)
    printf 'payload %8d B  %-17s tasks/s %9.0f  MiB/s %7.1f' "$2" "$name" "$tps" "$mib"
    if [ "$name" != supervise ]; then
      printf '  supervise %.2fx faster' "$(sed -n 's/.*supervise-faster=\([0-9.]*\)x.*/\1/p' <<<"$rows" | median)"
    fi
    echo
  done
done
