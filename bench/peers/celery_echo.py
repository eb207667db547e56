"""Celery peer of bench/jetstream.sh: small echo tasks through Celery with Redis.

Configured as its documentation starts a user off: a Redis broker and result backend, a
prefork worker of -c processes, JSON serialization, tasks sent with a group and their
results collected with its get().

Needs Debian's interpreter with python3-celery and python3-redis (/usr/bin/python3).
  worker: /usr/bin/python3 -m celery -A celery_echo worker -c 2 -l warning   (REDIS_URL set)
  submit: /usr/bin/python3 celery_echo.py LINES_FILE    prints tasks/s
"""
import os
import sys
import time

from celery import Celery, group

url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
app = Celery("celery_echo", broker=url + "/0", backend=url + "/1")
app.conf.update(worker_prefetch_multiplier=4, result_expires=600)


@app.task
def echo(s):
    return s


def main(path):
    with open(path) as f:
        lines = [line.rstrip("\n") for line in f]
    echo.delay("warm up").get(timeout=120)  # the workers are up
    t0 = time.perf_counter()
    results = group(echo.s(line) for line in lines).apply_async().get(timeout=3600)
    took = time.perf_counter() - t0
    if results != lines:
        sys.exit("celery: results differ from the lines")
    print(len(lines) / took)


if __name__ == "__main__":
    main(sys.argv[1])
