"""A worker whose handlers leave a process behind that ignores SIGTERM and SIGHUP (sleep ARG)
and return: litter's is double-forked, escape's also leaves the worker's process group and
session (setsid). The worker is then idle. Needs /usr/bin/python3 with python3-msgpack."""
import subprocess

import supervise_worker as worker


@worker.handler
def litter(arg):
    subprocess.run(["sh", "-c", '(trap "" TERM HUP; exec sleep "$0") >/dev/null 2>&1 &', arg], check=True)
    return "left " + arg


@worker.handler
def escape(arg):
    subprocess.run(["sh", "-c", 'setsid sh -c \'trap "" TERM HUP; exec sleep "$0"\' "$0" </dev/null >/dev/null 2>&1 &', arg], check=True)
    return "left " + arg


if __name__ == "__main__":
    worker.main()
