#!/usr/bin/env bash
# Per-job overhead of supervise exec beside GNU parallel and xargs: N (default 2000) jobs of
# `true`, 2 at a time, one input per job, the same inputs, interleaved rounds in one run.
# Prints each side's median wall time of RUNS (default 5), per job, and the ratios
# exec/parallel and exec/xargs (below 1.00 = exec faster).
#   bench/exec.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}; RUNS=${RUNS:-5}
command -v parallel >/dev/null || { echo "bench/exec.sh: needs GNU parallel (apt-get install parallel)" >&2; exit 2; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
go build -o "$dir/supervise" ./cmd/supervise
seq "$N" > "$dir/in"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
wall() { local t0 t1; t0=$(date +%s.%N); "$@" < "$dir/in" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
sup=(); par=(); xar=()
for _ in $(seq "$RUNS"); do   # interleaved, so that all three see the same machine
  sup+=("$(wall "$dir/supervise" --quiet -j 2 exec true)")
  par+=("$(wall parallel -j 2 true)")
  xar+=("$(wall xargs -P 2 -n 1 true)")
done
s=$(printf '%s\n' "${sup[@]}" | median); p=$(printf '%s\n' "${par[@]}" | median); x=$(printf '%s\n' "${xar[@]}" | median)
per() { python3 -c "print(f'{$1/$N*1e3:.3f}')"; }
printf '%d jobs of true, 2 at a time, median of %d:\n' "$N" "$RUNS"
printf '  supervise exec  %7.3f s  %s ms/job\n' "$s" "$(per "$s")"
printf '  parallel -j2    %7.3f s  %s ms/job\n' "$p" "$(per "$p")"
printf '  xargs -P2       %7.3f s  %s ms/job\n' "$x" "$(per "$x")"
printf 'ratio exec/parallel %.2f  exec/xargs %.2f\n' "$(python3 -c "print($s/$p)")" "$(python3 -c "print($s/$x)")"
