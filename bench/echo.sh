#!/usr/bin/env bash
# Round trips through supervise beside Python's multiprocessing.Pool.map(chunksize=1), one
# message per task, same task counts and payloads, in one run. Prints each side's median of
# RUNS (default 5) and the ratio supervise/python (above 1.00 = supervise faster).
#   bench/echo.sh [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED_BENCH:-../shared/bench}
W=${1:-2}; RUNS=${RUNS:-5}
bin=$(mktemp -d)/echo; trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/echo
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s|.* $1=\([0-9.]*\).*|\1|p"; }
for spec in "200000 64 tasks/s" "2000 1048576 MiB/s"; do
  set -- $spec; n=$1; size=$2; unit=$3
  sup=(); py=()
  for _ in $(seq "$RUNS"); do   # interleaved, so that both see the same machine
    sup+=("$("$bin" "$n" "$size" "$W" | field "$unit")")
    py+=("$(python3 "$shared/py_pool_echo.py" map1 "$n" "$size" "$W" | field "$unit")")
  done
  s=$(printf '%s\n' "${sup[@]}" | median); p=$(printf '%s\n' "${py[@]}" | median)
  printf 'payload %8d B  workers %d  %s  supervise %10.1f  python-map1 %10.1f  ratio %.2f\n' \
    "$size" "$W" "$unit" "$s" "$p" "$(python3 -c "print($s/$p)")"
done
