"""A worker whose handler leaves a process behind that ignores SIGTERM and SIGHUP (sleep ARG),
double-forked, and returns: the worker is then idle."""
import subprocess

import supervise_worker as worker


@worker.handler
def litter(arg):
    subprocess.run(["sh", "-c", '(trap "" TERM HUP; exec sleep "$0") >/dev/null 2>&1 &', arg], check=True)
    return "left " + arg


if __name__ == "__main__":
    worker.main()
