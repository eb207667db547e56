"""RQ peer of bench/jetstream.sh: small echo tasks through RQ with Redis.

Configured as its documentation starts a user off: jobs enqueued on the default queue
(enqueue_many, in one pipeline), `rq worker` processes (one job at a time each; the default
Worker forks a child per job, SimpleWorker runs it in the worker), and the submitter polling
its jobs until each has finished.

Needs Debian's interpreter with python3-rq (/usr/bin/python3).
  worker: /usr/bin/python3 -m rq.cli worker --url URL [-w rq.worker.SimpleWorker]
  submit: /usr/bin/python3 rq_echo.py LINES_FILE    prints tasks/s
"""
import os
import sys
import time

from redis import Redis
from rq import Queue
from rq.job import Job


def echo(s):
    return s


def main(path):
    with open(path) as f:
        lines = [line.rstrip("\n") for line in f]
    conn = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    q = Queue(connection=conn)
    warm = q.enqueue("rq_echo.echo", "warm up")  # the workers are up
    for _ in range(12000):
        if warm.get_status(refresh=True) == "finished":
            break
        time.sleep(0.01)
    t0 = time.perf_counter()
    jobs = q.enqueue_many([Queue.prepare_data("rq_echo.echo", (line,), result_ttl=600) for line in lines])
    ids = [j.id for j in jobs]
    pending = ids
    while pending:
        left = []
        for k in range(0, len(pending), 1000):
            chunk = pending[k:k + 1000]
            for jid, job in zip(chunk, Job.fetch_many(chunk, connection=conn)):
                if job is None or not job.is_finished:
                    if job is not None and job.is_failed:
                        sys.exit("rq: a job failed")
                    left.append(jid)
        pending = left
        if pending:
            time.sleep(0.1)
    took = time.perf_counter() - t0
    results = [j.result for j in Job.fetch_many(ids, connection=conn)]
    if results != lines:
        sys.exit("rq: results differ from the lines")
    print(len(lines) / took)


if __name__ == "__main__":
    main(sys.argv[1])
