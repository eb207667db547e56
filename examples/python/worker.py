"""A supervise worker in Python. From the repository's root:
    echo hello | PYTHONPATH=child/python go run ./cmd/supervise run --call upper -- python3 examples/python/worker.py
"""
import time

import supervise_worker as worker


@worker.handler
def upper(line):
    print("got", line)  # goes to stderr, never into the frames
    return line.upper()


@worker.handler
def slow(seconds):
    time.sleep(float(seconds))  # a --timeout raises worker.Cancelled in here
    return seconds


@worker.handler
def countdown(n):  # on a queue: puts n-1 back, down to 0
    if n > 0:
        worker.put(n - 1)
    return n


@worker.handler
def steps(n):  # reports its progress to the caller
    for i in range(n):
        worker.report({"done": i + 1, "total": n})
    return "%d steps" % n


if __name__ == "__main__":
    worker.main()
