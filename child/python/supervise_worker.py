"""Write supervise workers in Python.

A worker is a program that a supervise pool starts and feeds tasks over its stdin, with answers
on its stdout, framed and encoded with msgpack (docs/protocol.md in the supervise repository).
This module speaks that protocol; you write the handlers:

    import supervise_worker as worker

    @worker.handler
    def upper(line):
        return line.upper()

    if __name__ == "__main__":
        worker.main()

and run them from the shell (`supervise run --call upper -- python3 upper.py < lines.txt`) or
from a Go program (`supervisor.Config{Command: []string{"python3", "upper.py"}}`).

What the module does for you:

- the handshake: it refuses to run without the pool's magic cookie, and says hello with the
  names of your handlers;
- `print()` and anything else written to stdout inside a handler goes to stderr (the pool logs
  it), never into the frame stream;
- heartbeats from a thread of their own, so a handler busy for minutes is not taken for hung;
- cancellation (a task past the pool's time limit, or cancelled by its caller): by default
  `Cancelled` is raised inside the handler, even in the middle of `time.sleep` or a blocking
  read; a handler declared with `cancel="poll"` is not interrupted and polls `cancelled()`;
- an exception in a handler becomes that task's error, with its type, message and traceback,
  and the worker goes on serving;
- `put(item)` (a follow-up item for the queue the task came from) and `report(value)` (a
  message for the task's caller, such as progress) while a handler runs;
- `traceparent()`: the W3C traceparent of the caller's span, when the task was submitted
  with one (OpenTelemetry), for the handler's own spans;
- chunk calls (many small inputs in one message, which the pool sends for Map, queues and
  `supervise run`): each input runs as a call of its own would, its exception is its own
  outcome, and its `put` says which input put the item; nothing to do in a handler;
- the parent's death: the worker takes its whole process group down (SIGTERM, then SIGKILL
  after the pool's stop grace), so nothing it started is left behind.

Handlers run one at a time, in the main thread, in the order the calls arrive. Payloads are
msgpack values: None, bool, int, float, str, bytes, list, dict, msgpack.ExtType and
msgpack.Timestamp arrive as such, and a handler returns any of them.

Needs Python 3.9 or later and the msgpack package (Debian: python3-msgpack; pip: msgpack).
"""

import collections
import fcntl
import io
import os
import signal
import struct
import sys
import threading
import time
import traceback

import msgpack

__all__ = [
    "handler",
    "main",
    "serve",
    "cancelled",
    "put",
    "report",
    "Cancelled",
    "TaskError",
    "NotAWorker",
    "PROTOCOL",
]

PROTOCOL = 1
"""The version of the protocol this module speaks."""

MAX_BATCH = 4096  # messages in a frame, at most (docs/protocol.md, section 2)

COOKIE_KEY = "SUPERVISE_MAGIC_COOKIE"
COOKIE_VALUE = "5b0d7a7e2c1f4f0c9d3f3b1e8a6c4d21"
NOT_WORKER_MESSAGE = (
    "this program is a supervise worker: start it from a supervise pool "
    "(the SUPERVISE_MAGIC_COOKIE environment variable is not set)"
)
DEFAULT_MAX_FRAME = 64 << 20
REUSE_MAX = 4 << 20  # frames up to this size are read into a buffer kept from frame to frame

# Message kinds (docs/protocol.md, section 3).
HELLO, CALL, RESULT, ERROR, CANCEL, HEARTBEAT, LOG, SHUTDOWN, PUT, REPORT, CHUNK = range(1, 12)

# The signal the reader thread sends the main thread to interrupt a cancelled handler.
CANCEL_SIGNAL = signal.SIGUSR2


class Cancelled(BaseException):
    """Raised inside a handler whose task was cancelled (its time limit passed, or its caller
    gave up). It derives from BaseException, as asyncio.CancelledError does, so that a handler's
    `except Exception:` does not swallow it. Let it propagate: the task's answer is then an error
    of type "Canceled". A handler that catches it and goes on is killed after the pool's cancel
    grace."""


class TaskError(Exception):
    """Raise it to fail a task with an error type of your choosing (default: the exception's
    class name): `raise TaskError("no such user", type="not_found")`."""

    def __init__(self, message, type="error"):
        super().__init__(message)
        self.type = type


class NotAWorker(RuntimeError):
    """serve() was called in a process that no supervise pool started."""


_handlers = {}  # name -> (function, cancel mode)


def handler(name=None, *, cancel="raise"):
    """Register a function as the handler called `name` (default: the function's name). The
    function takes the task's payload and returns its result.

        @handler
        def echo(x): return x

        @handler("resize", cancel="poll")
        def resize_images(paths): ...

    cancel="raise" (the default) raises Cancelled inside the handler when its task is
    cancelled; cancel="poll" leaves the handler alone, and it checks cancelled() itself."""
    if cancel not in ("raise", "poll"):
        raise ValueError('cancel must be "raise" or "poll", not %r' % (cancel,))

    def register(fn, as_name):
        as_name = as_name or fn.__name__
        if not isinstance(as_name, str) or not as_name:
            raise ValueError("a handler needs a non-empty name, got %r" % (as_name,))
        _handlers[as_name] = (fn, cancel)
        return fn

    if callable(name):  # @handler without arguments
        return register(name, None)
    return lambda fn: register(fn, name)


class _Task:
    __slots__ = ("id", "name", "payload", "trace", "chunk", "input", "cancelled", "raise_on_cancel", "raised")

    def __init__(self, id, name, payload, trace=None, chunk=False):
        self.id = id
        self.name = name
        self.payload = payload
        self.trace = trace
        self.chunk = chunk
        self.input = 0  # in a chunk: the position of the input running
        self.cancelled = False
        self.raise_on_cancel = False
        self.raised = False


_worker = None  # the one _Worker of this process, while serve() runs


def _running():
    w = _worker
    t = w.current if w is not None else None
    if t is None:
        raise RuntimeError("supervise_worker: not called from inside a handler")
    return w, t


def cancelled():
    """Whether the running task was cancelled. For handlers registered with cancel="poll"
    (the others get Cancelled raised in them); call it from the handler's own thread or any
    thread it started."""
    return _running()[1].cancelled


def put(item):
    """Put item on the queue the running task came from, as a follow-up for the same handler;
    the queue's join waits for it too. If the task did not come from a queue, the task fails.
    Does not wait for the parent."""
    w, t = _running()
    if t.chunk:  # a chunk's put names its input (docs/protocol.md, section 3)
        item = [t.input, item]
    w.send([PUT, t.id, None, item])


def traceparent():
    """The W3C traceparent ("00-<trace id>-<span id>-<flags>") of the span the running task
    belongs to, when it was submitted with one (docs/protocol.md, section 3), else None. Give
    it to OpenTelemetry's TraceContextTextMapPropagator().extract({"traceparent": ...}) to
    make the handler's spans children of it."""
    return _running()[1].trace


def report(value):
    """Send value (progress such as {"done": 3, "total": 10}, a log line, a partial result) to
    the caller of the running task, who receives a task's reports in order, before its result.
    Does not wait for the parent."""
    w, t = _running()
    w.send([REPORT, t.id, None, value])


def _env_int(key, default):
    try:
        v = int(os.environ.get(key, ""))
    except ValueError:
        return default
    return v if v > 0 else default


def _error(type_, message, tb=""):
    e = {"type": type_, "message": message}
    if tb:
        e["traceback"] = tb
    return e


class _ProtocolError(Exception):
    pass


def _packer():
    return msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape", autoreset=False)


class _Worker:
    """The state of serve(). Threads: the main thread runs handlers and writes their answers;
    the reader thread reads frames and queues calls; the beat thread writes heartbeats; the
    signal thread acts on SIGTERM and SIGHUP. Every frame write holds wlock."""

    def __init__(self, rfile, wfd):
        self.rfile = rfile
        self.wfd = wfd
        self.max_frame = _env_int("SUPERVISE_MAX_FRAME", DEFAULT_MAX_FRAME)
        self.wlock = threading.Lock()  # guards packer and the frame descriptor
        # One packer, its buffer reused frame after frame: no fresh memory (and page faults)
        # for every big answer.
        self.packer = _packer()
        self.rbuf = bytearray(1 << 16)  # reused for frames up to REUSE_MAX
        self.write_failed = False
        self.cond = threading.Condition()
        self.queue = collections.deque()  # calls received, not started
        self.by_id = {}  # id -> _Task, for calls received and not answered
        self.current = None  # the _Task the main thread runs
        self.eof = False
        self.orderly = False  # the parent sent a shutdown before EOF
        self.fatal = None  # a broken stream: the reason
        self.main_thread = threading.get_ident()
        self.progress = _Progress.open()  # where chunks record how far they got, or None

    # Writing.

    def send(self, *messages):
        """Write one frame holding messages. A value msgpack cannot encode raises TypeError
        before anything is written."""
        with self.wlock:
            p = self.packer
            n = 0
            try:
                p.pack(list(messages))
                n = len(p.getbuffer())
                if n > self.max_frame:
                    raise ValueError(
                        "message of %d bytes exceeds the %d-byte frame limit (SUPERVISE_MAX_FRAME)" % (n, self.max_frame)
                    )
                if self.write_failed:
                    return
                try:
                    _write_all(self.wfd, [struct.pack(">I", n), p.getbuffer()])
                except OSError:
                    self.write_failed = True  # the parent is gone; stdin EOF will end the worker
            finally:
                p.reset()
                if n > REUSE_MAX:  # do not keep a buffer that big for good
                    self.packer = _packer()

    # Reading.

    def read_frames(self):
        """Runs in the reader thread until EOF, shutdown or a broken stream."""
        n = 0
        try:
            while True:
                head = self.rfile.read(4)
                if not head:
                    break
                n += 1
                if len(head) < 4:
                    raise _ProtocolError("frame %d: truncated length (%d of 4 bytes)" % (n, len(head)))
                (size,) = struct.unpack(">I", head)
                if size == 0 or size > self.max_frame:
                    raise _ProtocolError(
                        "frame %d: length %d is outside 1..%d (SUPERVISE_MAX_FRAME)" % (n, size, self.max_frame)
                    )
                if size <= REUSE_MAX:  # read into the reused buffer: unpacking copies out of it
                    if len(self.rbuf) < size:
                        self.rbuf = bytearray(size)
                    body = memoryview(self.rbuf)[:size]
                    got = 0
                    while got < size:
                        k = self.rfile.readinto(body[got:])
                        if not k:
                            break
                        got += k
                else:
                    body = self.rfile.read(size)
                    got = len(body)
                if got < size:
                    raise _ProtocolError("frame %d: truncated: %d of %d bytes" % (n, got, size))
                try:
                    msgs = msgpack.unpackb(body, raw=False, strict_map_key=False, unicode_errors="surrogateescape")
                except Exception as e:
                    raise _ProtocolError("frame %d: not msgpack: %s" % (n, e))
                if not isinstance(msgs, list) or not msgs or len(msgs) > MAX_BATCH:
                    raise _ProtocolError("frame %d: not an array of 1 to %d messages" % (n, MAX_BATCH))
                if self.handle(msgs, n):
                    self.orderly = True
                    break
        except _ProtocolError as e:
            self.stop(str(e))
            return
        except Exception as e:
            self.stop("reading frames: %s" % e)
            return
        self.stop(None)

    def handle(self, msgs, n):
        """Acts on the messages of frame n; returns True on shutdown."""
        calls = []
        shutdown = False
        for m in msgs:
            if not isinstance(m, list) or not m or not isinstance(m[0], int):
                raise _ProtocolError("frame %d: a message is not [kind, id, name, payload, error]" % n)
            kind = m[0]
            if kind == CALL or kind == CHUNK:
                if len(m) < 3 or not isinstance(m[1], int) or not isinstance(m[2], str):
                    raise _ProtocolError("frame %d: a call without an id or a handler name" % n)
                trace = m[5] if len(m) > 5 and isinstance(m[5], str) and len(m[5]) <= 256 else None
                calls.append(_Task(m[1], m[2], m[3] if len(m) > 3 else None, trace, kind == CHUNK))
            elif kind == CANCEL and len(m) > 1:
                if calls:
                    self.enqueue(calls)
                    calls = []
                self.cancel(m[1])
            elif kind == SHUTDOWN:
                shutdown = True
                break
            # Other kinds are not for a worker: ignored (docs/protocol.md, section 3).
        if calls:
            self.enqueue(calls)
        return shutdown

    def enqueue(self, calls):
        with self.cond:
            for t in calls:
                self.by_id[t.id] = t
            self.queue.extend(calls)
            self.cond.notify()

    def cancel(self, id):
        with self.cond:
            t = self.by_id.get(id)
            if t is None or t.cancelled:
                return  # answered already, or cancelled twice
            t.cancelled = True
            interrupt = t is self.current and t.raise_on_cancel
        if interrupt:
            signal.pthread_kill(self.main_thread, CANCEL_SIGNAL)

    def stop(self, fatal):
        with self.cond:
            self.eof = True
            self.fatal = fatal
            if fatal is not None:  # the parent is gone or broke the protocol: stop everything
                for t in self.queue:
                    t.cancelled = True
                cur = self.current
                if cur is not None:
                    cur.cancelled = True
            self.cond.notify()
        if fatal is not None and self.current is not None and self.current.raise_on_cancel:
            signal.pthread_kill(self.main_thread, CANCEL_SIGNAL)

    # Running.

    def on_cancel_signal(self, signum, frame):
        """The Python-level handler of CANCEL_SIGNAL, run in the main thread between two
        bytecodes of whatever it is doing (a blocking sleep or read returns early for it)."""
        t = self.current
        if t is not None and t.cancelled and t.raise_on_cancel and not t.raised:
            t.raised = True
            raise Cancelled("task %d was cancelled" % t.id)

    def run(self):
        """The main thread's loop: one call at a time, in arrival order. Each answer is written
        before the next call starts (docs/protocol.md, section 4, concurrency)."""
        while True:
            with self.cond:
                while not self.queue and not self.eof:
                    self.cond.wait()
                if not self.queue:
                    return
                t = self.queue.popleft()
            answer = self.execute(t)
            try:
                self.send(answer)
            except Exception as e:  # the result cannot be encoded, or is too big
                self.send([ERROR, t.id, None, None, _error("encode", "the result of %r: %s" % (t.name, e))])
            with self.cond:
                self.by_id.pop(t.id, None)

    def execute(self, t):
        """Runs one call, or each input of a chunk call, and returns its answer."""
        entry = _handlers.get(t.name)
        if entry is None:
            return [ERROR, t.id, None, None,
                    _error("unknown_handler", "no handler %r in this worker (it serves %s)" % (t.name, sorted(_handlers)))]
        if t.chunk:
            if not isinstance(t.payload, list) or not t.payload:
                return [ERROR, t.id, None, None, _error("decode", "a chunk call's payload is not a list of inputs")]
            outcomes = []
            page = self.progress
            if page is not None:
                page.begin(t.id)
            for i, item in enumerate(t.payload):
                if t.cancelled:
                    break  # the inputs left did not run: the answer stops short of them
                t.input = i
                if page is not None:
                    page.starting(i)
                ok, value = self.invoke(t, entry, item)
                outcome = [0, value] if ok else [1, value]
                outcomes.append(outcome)
                if not ok and value["type"] == "Canceled":
                    break
                if page is not None and not page.finished(outcome):
                    break  # the page is full: the inputs left go in another call
            return [RESULT, t.id, None, outcomes]
        ok, value = self.invoke(t, entry, t.payload)
        if ok:
            return [RESULT, t.id, None, value]
        return [ERROR, t.id, None, None, value]

    def invoke(self, t, entry, payload):
        """Runs the handler on one input: (True, result) or (False, error map)."""
        fn, mode = entry
        try:
            try:
                # Set inside the try: a Cancelled raised from here on is caught below.
                t.raise_on_cancel = mode == "raise"
                self.current = t
                if t.cancelled:
                    raise Cancelled("task %d was cancelled before it started" % t.id)
                out = fn(payload)
            finally:
                self.current = None  # from here on the cancel signal raises nothing
        except Cancelled as e:
            return False, _error("Canceled", str(e) or "cancelled")
        except TaskError as e:
            return False, _error(e.type, str(e), traceback.format_exc())
        except BaseException as e:  # SystemExit and KeyboardInterrupt included: the worker goes on
            return False, _error(type(e).__name__, str(e), traceback.format_exc())
        return True, out

    def beat(self, period, stopped):
        while not stopped.wait(period):
            try:
                self.send([HEARTBEAT])
            except Exception:
                return


class _Progress:
    """The progress page the pool shares with this worker (docs/protocol.md, section 3, "The
    chunk record"): the chunk running, the input it runs, and each finished input's outcome,
    so that the pool knows which inputs ran if this process dies in the middle of a chunk."""

    HEADER = 64

    def __init__(self, m):
        self.m = m
        self.used = 0
        self.count = 0
        self.packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")  # pack returns the bytes

    @classmethod
    def open(cls):
        fd = _env_int("SUPERVISE_PROGRESS_FD", 0)
        size = _env_int("SUPERVISE_PROGRESS_BYTES", 0)
        if fd < 3 or size < cls.HEADER or sys.byteorder != "little":
            return None
        try:
            import mmap
            m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError):
            return None
        finally:
            try:
                os.close(fd)  # the mapping, if made, keeps its own; nothing else uses it
            except OSError:
                pass
        return cls(m)

    def begin(self, id):
        struct.pack_into("<QIII", self.m, 0, 0, 0, 0, 0)
        self.used = self.count = 0
        struct.pack_into("<Q", self.m, 0, id)

    def starting(self, k):
        struct.pack_into("<I", self.m, 8, k + 1)

    def finished(self, outcome):
        """Records the outcome of the input running; False if it does not fit (or cannot be
        encoded: the answer will say so): the chunk then ends after this input."""
        try:
            b = self.packer.pack(outcome)
        except Exception:
            return False
        start = self.HEADER + self.used
        if start + len(b) > len(self.m):
            return False
        self.m[start:start + len(b)] = b
        self.used += len(b)
        self.count += 1
        struct.pack_into("<I", self.m, 16, self.used)  # the bytes before the count
        struct.pack_into("<I", self.m, 12, self.count)
        return True


def _write_all(fd, chunks):
    views = [memoryview(c) for c in chunks]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


def _group_others():
    """The live processes of this process's group other than itself, from /proc; None where
    /proc cannot be read."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    me = os.getpid()
    others = []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone
        fields = stat[stat.rfind(b")") + 1:].split()
        if len(fields) >= 3 and fields[0] != b"Z" and int(fields[2]) == me:
            others.append(int(name))
    return others


def _take_group_down(grace):
    """The kill ladder a worker runs on its own group when its parent is gone (the parent-death
    signal, or stdin EOF without a shutdown message): SIGTERM to the group (not acted on here
    from now on), then SIGKILL to the group, this process included, if a member is still there
    after grace. A group that holds only this process is left alone."""
    if os.getpgrp() != os.getpid() or _group_others() == []:
        return
    if threading.current_thread() is threading.main_thread():
        # Else this runs in the signal thread, which reads no more signals: SIGTERM is moot.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _group_others() == []:
            return
        time.sleep(0.01)  # no signal tells a group leader its group emptied
    os.killpg(0, signal.SIGKILL)


def _take_group_down_on_signals():
    """SIGHUP is the parent-death signal (Linux): nobody else will take this worker's children
    down, so it does the kill ladder itself: SIGTERM to its process group, then SIGKILL after
    the stop grace. SIGTERM is passed on to the group and the worker exits at once. A thread of
    its own acts on them (through signal.set_wakeup_fd), so a handler busy in C code does not
    delay it. Only when the worker leads its group, as a pool starts it."""
    if os.getpgrp() != os.getpid():
        return
    grace = _env_int("SUPERVISE_STOP_GRACE_MS", 2000) / 1000.0
    r, w = os.pipe()
    os.set_blocking(w, False)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda signum, frame: None)  # the work is done by the thread below
    signal.set_wakeup_fd(w)

    def act():
        while True:
            try:
                got = os.read(r, 64)
            except InterruptedError:
                continue
            for b in got:
                if b == signal.SIGHUP:
                    _take_group_down(grace)
                    os._exit(128 + b)
                if b == signal.SIGTERM:
                    os.killpg(0, signal.SIGTERM)  # children, and this process (a no-op here)
                    os._exit(128 + b)

    threading.Thread(target=act, name="supervise-signals", daemon=True).start()


def serve():
    """Serve the registered handlers over stdin and stdout until stdin reaches EOF or the
    parent sends a shutdown; every call received is answered first. Returns normally, or
    raises NotAWorker if no pool started this process, or RuntimeError if the parent broke the
    protocol (the message says which frame)."""
    global _worker
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        raise NotAWorker(NOT_WORKER_MESSAGE)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("supervise_worker.serve must run in the main thread")

    # The frame stream moves to a private descriptor; fd 1, and sys.stdout, become stderr.
    sys.stdout.flush()
    wfd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Likewise stdin: a handler that reads it (input(), a child process) reads /dev/null.
    rfd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = io.open(0, "r", closefd=False)
    rfile = io.open(rfd, "rb", buffering=1 << 16)

    w = _Worker(rfile, wfd)
    _worker = w
    signal.signal(CANCEL_SIGNAL, w.on_cancel_signal)
    _take_group_down_on_signals()

    w.send([HELLO, 0, None, {
        "protocol": PROTOCOL,
        "pid": os.getpid(),
        "language": "python",
        "handlers": sorted(_handlers),
        "concurrency": 1,
        "chunks": True,
        "progress": w.progress is not None,
    }])
    stopped = threading.Event()
    period = _env_int("SUPERVISE_HEARTBEAT_MS", 1000) / 1000.0
    beat = threading.Thread(target=w.beat, args=(period, stopped), name="supervise-heartbeat", daemon=True)
    beat.start()
    threading.Thread(target=w.read_frames, name="supervise-reader", daemon=True).start()
    try:
        w.run()
    finally:
        stopped.set()
        beat.join()
        _worker = None
        if not w.orderly:  # EOF without a shutdown: the parent is gone (docs/protocol.md, section 5)
            _take_group_down(_env_int("SUPERVISE_STOP_GRACE_MS", 2000) / 1000.0)
    if w.fatal is not None:
        raise RuntimeError(w.fatal)


def main():
    """Serve and exit if a supervise pool started this process; otherwise print why not and
    exit with status 1. Call it last, after the handlers are registered."""
    try:
        serve()
    except NotAWorker as e:
        print(e, file=sys.stderr)
        sys.exit(1)
    except RuntimeError as e:
        print("supervise worker: %s" % e, file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
