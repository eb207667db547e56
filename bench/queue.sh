#!/usr/bin/env bash
# Round trips through a supervise Queue (one goroutine puts, another takes the results), with
# chunks (QueueConfig.Chunk 0: automatic) and with one call per item, beside MapUnordered with
# automatic chunks, same tasks and payloads, interleaved. Prints each one's median of RUNS
# (default 5) and the ratios.
#   bench/queue.sh [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-2}; RUNS=${RUNS:-5}
bin=$(mktemp -d)/echo; trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/echo
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s|.* $1=\([0-9.]*\).*|\1|p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
for spec in "200000 64 tasks/s" "2000 1048576 MiB/s"; do
  set -- $spec; n=$1; size=$2; unit=$3
  qc=(); q1=(); mc=()
  for _ in $(seq "$RUNS"); do
    qc+=("$("$bin" "$n" "$size" "$W" 0 queue | field "$unit")")
    q1+=("$("$bin" "$n" "$size" "$W" 1 queue | field "$unit")")
    mc+=("$("$bin" "$n" "$size" "$W" 0 map | field "$unit")")
  done
  a=$(printf '%s\n' "${qc[@]}" | median); o=$(printf '%s\n' "${q1[@]}" | median); m=$(printf '%s\n' "${mc[@]}" | median)
  printf 'payload %8d B  workers %d  %s  queue-chunked %10.1f  queue-1-per-call %10.1f  map-chunked %10.1f\n' "$size" "$W" "$unit" "$a" "$o" "$m"
  printf '    ratios: queue chunked/1-per-call %s  queue chunked/map chunked %s\n' "$(ratio "$a" "$o")" "$(ratio "$a" "$m")"
done
