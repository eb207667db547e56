#!/usr/bin/env bash
# Round trips through supervise's MapUnordered beside Python's multiprocessing.Pool, same task
# counts and payloads, in one run, interleaved: supervise with automatic chunks and with one
# call per task; Python's Pool.map(chunksize=1) and Pool.imap(chunksize=64). Prints each
# side's median of RUNS (default 5) and the ratios (above 1.00 = supervise faster).
#   bench/echo.sh [WORKERS]
# Python: /usr/bin/python3 (Debian's; multiprocessing is in its standard library).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED_BENCH:-../shared/bench}
W=${1:-2}; RUNS=${RUNS:-5}; PY=${PYTHON:-/usr/bin/python3}
bin=$(mktemp -d)/echo; trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/echo
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s|.* $1=\([0-9.]*\).*|\1|p"; }
ratio() { "$PY" -c "print('%.2f' % ($1/$2))"; }
for spec in "200000 64 tasks/s" "2000 1048576 MiB/s"; do
  set -- $spec; n=$1; size=$2; unit=$3
  auto=(); one=(); map1=(); imap64=()
  for _ in $(seq "$RUNS"); do   # interleaved, so that all see the same machine
    auto+=("$("$bin" "$n" "$size" "$W" 0 | field "$unit")")
    one+=("$("$bin" "$n" "$size" "$W" 1 | field "$unit")")
    map1+=("$("$PY" "$shared/py_pool_echo.py" map1 "$n" "$size" "$W" | field "$unit")")
    imap64+=("$("$PY" "$shared/py_pool_echo.py" imap64 "$n" "$size" "$W" | field "$unit")")
  done
  a=$(printf '%s\n' "${auto[@]}" | median); o=$(printf '%s\n' "${one[@]}" | median)
  m=$(printf '%s\n' "${map1[@]}" | median); i=$(printf '%s\n' "${imap64[@]}" | median)
  printf 'payload %8d B  workers %d  %s  supervise-chunked %10.1f  supervise-1-per-call %10.1f  python-map1 %10.1f  python-imap64 %10.1f\n' \
    "$size" "$W" "$unit" "$a" "$o" "$m" "$i"
  printf '    ratios: chunked/imap64 %s  chunked/map1 %s  1-per-call/map1 %s\n' \
    "$(ratio "$a" "$i")" "$(ratio "$a" "$m")" "$(ratio "$o" "$m")"
done
