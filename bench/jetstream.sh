#!/usr/bin/env bash
# Small tasks (a ~10-byte line, echoed by the Go conformance worker) through supervise run:
# local pipes beside a NATS JetStream queue (supervise serve on loopback, one machine running
# supervise worker --connect) with 1, 2 and 4 worker processes, in one run. Both sides use
# --in-flight 32 (run's default). Prints each side's median tasks/s over RUNS (default 3)
# interleaved runs and the ratio pipes/jetstream.
#   bench/jetstream.sh [N]     (N tasks a run, default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; RUNS=${RUNS:-3}
tmp=$(mktemp -d)
server=; machine=
trap 'kill $server $machine 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/supervise" ./cmd/supervise
go build -o "$tmp/worker" ./examples/conformance-worker
seq 1 "$N" | sed 's/^/task /' > "$tmp/lines"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=nats://127.0.0.1:$port
"$tmp/supervise" serve --store "$tmp/store" --listen "127.0.0.1:$port" 2>"$tmp/serve.log" & server=$!
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
await() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done; echo "no '$2' in $1" >&2; exit 1; }
await "$tmp/serve.log" "JetStream server at"
rate() { # tasks/s of one run of supervise ARGS on the lines
  local t0 t1
  t0=$(date +%s.%N); "$tmp/supervise" "$@" < "$tmp/lines" > "$tmp/out"; t1=$(date +%s.%N)
  [ "$(wc -l < "$tmp/out")" -eq "$N" ] || { echo "supervise $*: $(wc -l < "$tmp/out") results of $N" >&2; exit 1; }
  python3 -c "print($N / ($t1 - $t0))"
}
for w in 1 2 4; do
  : > "$tmp/machine.log"
  "$tmp/supervise" --workers "$w" --in-flight 32 worker --connect "$url" -- "$tmp/worker" 2>"$tmp/machine.log" & machine=$!
  await "$tmp/machine.log" "worker of queue"
  pipes=(); js=()
  for _ in $(seq "$RUNS"); do
    pipes+=("$(rate --workers "$w" run --call echo -- "$tmp/worker")")
    js+=("$(rate run --connect "$url" --call echo)")
  done
  kill -TERM "$machine"; wait "$machine"; machine=
  p=$(printf '%s\n' "${pipes[@]}" | median); j=$(printf '%s\n' "${js[@]}" | median)
  printf 'workers %d  tasks %d  pipes %9.0f tasks/s  jetstream %8.0f tasks/s  pipes/jetstream %.1f\n' "$w" "$N" "$p" "$j" "$(python3 -c "print($p/$j)")"
done
