"""The worker of supervise run's end-to-end test. work(line) answers "ok N" for line "N",
except: N divisible by 997 raises ValueError; N in HANG sleeps for an hour (a --timeout
interrupts it); N in STUBBORN catches the cancel and sleeps on (the worker is killed after
--cancel-grace)."""
import time

import supervise_worker as worker

HANG = {2500, 7500}
STUBBORN = {5000}


@worker.handler
def work(line):
    n = int(line)
    if n % 997 == 0:
        raise ValueError("%d is a multiple of 997" % n)
    if n in HANG:
        time.sleep(3600)
    if n in STUBBORN:
        while True:
            try:
                time.sleep(3600)
            except worker.Cancelled:
                print("ignoring the cancel of", n)
    return "ok %d" % n


if __name__ == "__main__":
    worker.main()
