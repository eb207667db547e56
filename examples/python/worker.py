"""A supervise worker in Python: run it with
    PYTHONPATH=child/python supervise run --call upper -- python3 examples/python/worker.py < lines.txt
"""
import hashlib
import time

import supervise_worker as worker


@worker.handler
def upper(line):
    print("got", line)  # goes to stderr, never into the frames
    return line.upper()


@worker.handler
def sha256(line):
    return hashlib.sha256(line.encode()).hexdigest()


@worker.handler
def slow(seconds):
    time.sleep(float(seconds))  # a --timeout raises worker.Cancelled in here
    return seconds


if __name__ == "__main__":
    worker.main()
