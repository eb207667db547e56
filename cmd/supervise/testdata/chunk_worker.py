"""The worker of supervise run's chunk test. work(line) notes "N" in the file $START_LOG (the
test's record of handler starts), then answers "ok N" for line "N", except: N in CRASH exits
the worker at once; N divisible by 997 raises ValueError. Each chunk call it runs is noted,
with its size, in the file $CHUNK_LOG."""
import os

import supervise_worker as worker

CRASH = {3333}

_execute = worker._Worker.execute


def _noting(self, t):
    if t.chunk:
        with open(os.environ["CHUNK_LOG"], "a") as f:
            f.write("%d\n" % len(t.payload))
    return _execute(self, t)


worker._Worker.execute = _noting


@worker.handler
def work(line):
    n = int(line)
    fd = os.open(os.environ["START_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, b"%d\n" % n)  # one write: whole lines, whichever worker
    os.close(fd)
    if n in CRASH:
        os._exit(3)
    if n % 997 == 0:
        raise ValueError("%d is a multiple of 997" % n)
    return "ok %d" % n


if __name__ == "__main__":
    worker.main()
