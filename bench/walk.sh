#!/usr/bin/env bash
# Is a parallel walk (examples/walk: a queue of directories, workers putting subdirectories
# back) faster than the serial walk `supervise digest` does? Times, on the same tree in one
# run: digest's own walk (BenchmarkWalk, in-process, names only), and the walk example with
# and without the pool, names only (what digest needs) and with a stat per file.
#   bench/walk.sh [TREE]   (default: four copies of $(go env GOROOT), ~60,000 files, ~6,700 dirs)
set -euo pipefail
cd "$(dirname "$0")/.."
tree=${1:-}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ -z "$tree" ]; then
  tree=$tmp/tree
  for i in 1 2 3 4; do mkdir -p "$tree"; cp -r "$(go env GOROOT)" "$tree/go$i"; done
fi
go build -o "$tmp/walk" ./examples/walk
"$tmp/walk" -names "$tree" 2>/dev/null
echo "digest's walk, in-process (names only):"
SUPERVISE_WALK_TREE=$tree go test -run '^$' -bench '^BenchmarkWalk$' -count 5 ./cmd/supervise | grep ns/op
hyperfine -N -w 2 -r 10 \
  "$tmp/walk -names $tree" "$tmp/walk -names -serial $tree" \
  "$tmp/walk $tree" "$tmp/walk -serial $tree"
