#!/usr/bin/env bash
# Small tasks (a ~10-byte line, echoed) through supervise run with local pipes, through a NATS
# JetStream queue (supervise serve on loopback, one machine running supervise worker
# --connect), and through the queues a Python user would otherwise run, all with default
# flags and the same number of worker processes, in one run:
#   - Celery with Redis: a prefork worker of -c W processes, a group of tasks, its get()
#     (bench/peers/celery_echo.py);
#   - RQ with Redis: W `rq worker` processes (SimpleWorker: the job runs in the worker), jobs
#     enqueued in one pipeline, polled until finished (bench/peers/rq_echo.py); and RQ's
#     default Worker, which forks a child per job, on min(N, 200) tasks (RQ_FORK=0: skip).
# Prints each one's median tasks/s over RUNS (default 3) interleaved runs, and its ratio to
# supervise's JetStream queue; and pipes/jetstream.
#   bench/jetstream.sh [N]     (N tasks a run, default 20000; WORKERS="1 2 4" for several)
# Needs Debian's redis-server, python3-celery and python3-rq (PEERS=0 to run only supervise).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; RUNS=${RUNS:-3}; WORKERS=${WORKERS:-2}; PEERS=${PEERS:-1}; RQ_FORK=${RQ_FORK:-1}
PY=/usr/bin/python3 # Debian's, with celery and rq
tmp=$(mktemp -d)
server=; machine=; redis=; peers=()
stop_peers() { [ ${#peers[@]} -eq 0 ] || { kill -TERM "${peers[@]}" 2>/dev/null || true; wait "${peers[@]}" 2>/dev/null || true; }; peers=(); }
trap 'stop_peers; kill $server $machine $redis 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/supervise" ./cmd/supervise
go build -o "$tmp/worker" ./examples/conformance-worker
seq 1 "$N" | sed 's/^/task /' > "$tmp/lines"
head -n 200 "$tmp/lines" > "$tmp/lines.fork"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(freeport); url=nats://127.0.0.1:$port
"$tmp/supervise" serve --store "$tmp/store" --listen "127.0.0.1:$port" 2>"$tmp/serve.log" & server=$!
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
await() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done; echo "no '$2' in $1" >&2; exit 1; }
await "$tmp/serve.log" "JetStream server at"
if [ "$PEERS" = 1 ]; then
  rport=$(freeport); export REDIS_URL=redis://127.0.0.1:$rport PYTHONPATH=$PWD/bench/peers
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$tmp/redis.log" 2>&1 & redis=$!
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
fi
rate() { # tasks/s of one run of supervise ARGS on the lines
  local t0 t1
  t0=$(date +%s.%N); "$tmp/supervise" "$@" < "$tmp/lines" > "$tmp/out"; t1=$(date +%s.%N)
  [ "$(wc -l < "$tmp/out")" -eq "$N" ] || { echo "supervise $*: $(wc -l < "$tmp/out") results of $N" >&2; exit 1; }
  python3 -c "print($N / ($t1 - $t0))"
}
celery_rate() { # tasks/s of Celery with w worker processes
  (cd bench/peers && exec $PY -m celery -A celery_echo worker -c "$1" -l warning) >"$tmp/celery.log" 2>&1 & peers=($!)
  $PY bench/peers/celery_echo.py "$tmp/lines"
  stop_peers
}
rq_rate() { # tasks/s of RQ with w workers of class $2, on lines file $3
  redis-cli -p "$rport" flushall >/dev/null
  for _ in $(seq "$1"); do rq worker --url "$REDIS_URL" -w "$2" -q >>"$tmp/rq.log" 2>&1 & peers+=($!); done
  $PY bench/peers/rq_echo.py "$3"
  stop_peers
}
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
for w in $WORKERS; do
  : > "$tmp/machine.log"
  "$tmp/supervise" --workers "$w" worker --connect "$url" -- "$tmp/worker" 2>"$tmp/machine.log" & machine=$!
  await "$tmp/machine.log" "worker of queue"
  pipes=(); js=(); cel=(); rqs=(); rqf=()
  for _ in $(seq "$RUNS"); do
    pipes+=("$(rate --workers "$w" run --call echo -- "$tmp/worker")")
    js+=("$(rate run --connect "$url" --call echo)")
    if [ "$PEERS" = 1 ]; then
      cel+=("$(celery_rate "$w")")
      rqs+=("$(rq_rate "$w" rq.worker.SimpleWorker "$tmp/lines")")
      [ "$RQ_FORK" = 1 ] && rqf+=("$(rq_rate "$w" rq.worker.Worker "$tmp/lines.fork")")
    fi
  done
  kill -TERM "$machine"; wait "$machine"; machine=
  p=$(printf '%s\n' "${pipes[@]}" | median); j=$(printf '%s\n' "${js[@]}" | median)
  printf 'workers %d  tasks %d  median of %d runs, tasks/s:\n' "$w" "$N" "$RUNS"
  printf '  supervise run (pipes)          %8.0f   pipes/jetstream %s\n' "$p" "$(ratio "$p" "$j")"
  printf '  supervise run --connect        %8.0f\n' "$j"
  if [ "$PEERS" = 1 ]; then
    c=$(printf '%s\n' "${cel[@]}" | median); r=$(printf '%s\n' "${rqs[@]}" | median)
    printf '  celery + redis (prefork -c %d)  %8.0f   jetstream/celery %s\n' "$w" "$c" "$(ratio "$j" "$c")"
    printf '  rq + redis (SimpleWorker)      %8.0f   jetstream/rq %s\n' "$r" "$(ratio "$j" "$r")"
    if [ "$RQ_FORK" = 1 ]; then
      f=$(printf '%s\n' "${rqf[@]}" | median)
      printf '  rq + redis (fork per job)      %8.0f   jetstream/rq-fork %s   (%d tasks)\n' "$f" "$(ratio "$j" "$f")" "$(wc -l < "$tmp/lines.fork")"
    fi
  fi
done
