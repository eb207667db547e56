"""The handlers `supervise conformance` exercises, written with supervise_worker: run
`supervise conformance -- python3 child/python/conformance_worker.py`."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import supervise_worker as worker  # noqa: E402


@worker.handler
def echo(x):
    return x


@worker.handler
def fail(message):
    raise ValueError(message)


@worker.handler
def sleep(seconds):
    time.sleep(seconds)  # Cancelled is raised in here when the task is cancelled
    return seconds


@worker.handler
def report(n):
    for i in range(n):
        worker.report(i)
    return n


@worker.handler
def put(items):
    for item in items:
        worker.put(item)
    return len(items)


@worker.handler("traceparent")
def trace(_):
    return worker.traceparent()


if __name__ == "__main__":
    worker.main()
