"""A worker whose handler, meet(line), makes two lines meet: "wait PATH" writes PATH.started,
then waits (up to 20 s) for PATH to exist; "make PATH" creates PATH."""
import os
import time

import supervise_worker as worker


@worker.handler
def meet(line):
    verb, path = line.split(" ", 1)
    if verb == "make":
        open(path, "w").close()
        return "made"
    open(path + ".started", "w").close()
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("nobody made " + path)
        time.sleep(0.01)
    return "met"


if __name__ == "__main__":
    worker.main()
