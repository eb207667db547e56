#!/usr/bin/env bash
# supervise run with Python workers beside Python's own multiprocessing.Pool.map(chunksize=1)
# and GNU parallel, same task counts and payload sizes, in one run (interleaved; medians of
# RUNS, default 5). The echo is child/python/conformance_worker.py's. supervise is timed as a
# whole process (start of the pool, reading stdin, writing stdout included); the Python pool
# as py_pool_echo.py times itself (its pool's start excluded); parallel starts one process
# per item. supervise runs with --keep-order, since Pool.map keeps order too. Prints tasks/s (64 B) and MiB/s (1 MiB), and the ratios.
#   bench/run-python.sh [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED_BENCH:-../shared/bench}
W=${1:-2}; RUNS=${RUNS:-5}
PY=${SUPERVISE_PYTHON:-/usr/bin/python3} # a python3 that has msgpack
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/supervise" ./cmd/supervise
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s|.* $1=\([0-9.]*\).*|\1|p"; }
now() { date +%s.%N; }
# N lines of SIZE bytes each, newline included, of random printable text.
lines() { "$PY" -c "
import os, sys, base64
n, size = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
for _ in range(n):
    out.write(base64.b64encode(os.urandom(size))[:size - 1] + b'\n')
" "$1" "$2"; }
calc() { "$PY" -c "print($1)"; }

for spec in "100000 64 tasks/s" "1000 1048576 MiB/s"; do
  set -- $spec; n=$1; size=$2; unit=$3
  lines "$n" "$size" > "$tmp/in"
  sup=(); py=()
  for _ in $(seq "$RUNS"); do
    t0=$(now)
    "$tmp/supervise" --workers "$W" -q run --keep-order --call echo -- "$PY" child/python/conformance_worker.py < "$tmp/in" > "$tmp/out"
    t1=$(now)
    cmp -s "$tmp/in" "$tmp/out" || { echo "supervise run: the output differs from the input" >&2; exit 1; }
    if [ "$unit" = tasks/s ]; then sup+=("$(calc "$n/($t1-$t0)")"); else sup+=("$(calc "$n*$size/2**20/($t1-$t0)")"); fi
    py+=("$("$PY" "$shared/py_pool_echo.py" map1 "$n" "$size" "$W" | field "$unit")")
  done
  s=$(printf '%s\n' "${sup[@]}" | median); p=$(printf '%s\n' "${py[@]}" | median)
  printf 'payload %8d B  workers %d  %s  supervise-run %10.1f  python-map1 %10.1f  ratio %.2f\n' \
    "$size" "$W" "$unit" "$s" "$p" "$(calc "$s/$p")"
done

# Per-item cost beside GNU parallel, which starts a process per item: 1,000 items.
if command -v parallel >/dev/null; then
  seq 1000 > "$tmp/in"
  t0=$(now); parallel -j "$W" echo ::: $(seq 1000) > /dev/null; t1=$(now)
  per_parallel=$(calc "($t1-$t0)/1000*1e6")
  seq 100000 > "$tmp/in"
  t0=$(now); "$tmp/supervise" --workers "$W" -q run --call echo -- "$PY" child/python/conformance_worker.py < "$tmp/in" > /dev/null; t1=$(now)
  per_run=$(calc "($t1-$t0)/100000*1e6")
  printf 'per item: GNU parallel %.0f us (1,000 x echo), supervise run %.1f us (100,000 lines) : %.0fx\n' \
    "$per_parallel" "$per_run" "$(calc "$per_parallel/$per_run")"
fi
