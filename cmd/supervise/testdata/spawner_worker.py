"""A worker whose handler starts a grandchild (sleep ARG) and then spins in Python code."""
import subprocess
import sys

import supervise_worker as worker


@worker.handler
def spawn(arg):
    subprocess.Popen(["sleep", arg])
    while True:
        pass


if __name__ == "__main__":
    worker.main()
