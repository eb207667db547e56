#!/usr/bin/env bash
# The parent's memory as the tree grows: supervise digest beside find | xargs -P sha512sum on
# trees of many files, interleaved rounds in one run. Prints each side's median wall time and
# max RSS (the parent's: supervise's own process; xargs's: the largest of its processes, as
# GNU time reports the waited-for children too) of RUNS (default 3), and the ratio of times.
#   bench/digest-memory.sh DIR...     (e.g. gen_tree.py small DIR --scale 25: 1,000,000 files)
# BASE=REV also runs the supervise built at git revision REV, to compare with an earlier one.
# CHECK=1 also checks the tree's sums (written once, before the rounds): supervise digest -c
# beside sha512sum -c (which checks one file at a time), both with --quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: bench/digest-memory.sh DIR..." >&2; exit 2; }
RUNS=${RUNS:-3}; W=${W:-$(nproc)}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"; [ -z "${BASE:-}" ] || git worktree remove --force "$tmp/base" 2>/dev/null || true' EXIT
go build -o "$tmp/supervise" ./cmd/supervise
sides=(supervise xargs)
if [ -n "${BASE:-}" ]; then
  git worktree add -q --detach "$tmp/base" "$BASE"
  (cd "$tmp/base" && go build -o "$tmp/supervise-base" ./cmd/supervise)
  sides+=(base)
fi
[ -z "${CHECK:-}" ] || sides+=(check sha512sum-c)
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
measure() { # prints "seconds maxrss_kib"
  /usr/bin/time -f '%e %M' -o "$tmp/t" "$@" > /dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  cat "$tmp/t"
}
run_side() {
  case $1 in
    supervise) measure "$tmp/supervise" --quiet -j "$W" digest "$2" ;;
    base) measure "$tmp/supervise-base" --quiet -j "$W" digest "$2" ;;
    xargs) measure sh -c 'find "$1" -type f -print0 | xargs -0 -P "$2" -n 256 sha512sum' _ "$2" "$W" ;;
    check) measure "$tmp/supervise" --quiet -j "$W" digest -c --quiet "$tmp/SUMS" ;;
    sha512sum-c) measure sha512sum -c --quiet "$tmp/SUMS" ;;
  esac
}
for dir in "$@"; do
  files=$(find "$dir" -type f | wc -l)
  find "$dir" -type f -print0 | xargs -0 cat > /dev/null # the first side read a cold cache
  [ -z "${CHECK:-}" ] || "$tmp/supervise" -j "$W" digest "$dir" > "$tmp/SUMS"
  declare -A secs=() rss=()
  for _ in $(seq "$RUNS"); do
    for side in "${sides[@]}"; do
      read -r s m < <(run_side "$side" "$dir")
      secs[$side]+="$s "; rss[$side]+="$m "
    done
  done
  printf '%s: %d files, %d workers, median of %d\n' "$dir" "$files" "$W" "$RUNS"
  for side in "${sides[@]}"; do
    s=$(echo ${secs[$side]} | tr ' ' '\n' | median); m=$(echo ${rss[$side]} | tr ' ' '\n' | median)
    printf '  %-10s %8.2f s  max RSS %7.1f MiB\n' "$side" "$s" "$(python3 -c "print($m/1024)")"
    eval "med_${side//-/_}=$s"
  done
  printf '  time supervise/xargs %.2f' "$(python3 -c "print($med_supervise/$med_xargs)")"
  [ -z "${BASE:-}" ] || printf '  supervise/base %.2f' "$(python3 -c "print($med_supervise/$med_base)")"
  [ -z "${CHECK:-}" ] || printf '  check: supervise/sha512sum %.2f' "$(python3 -c "print($med_check/$med_sha512sum_c)")"
  echo
  unset secs rss
done
