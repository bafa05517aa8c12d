"""Run ``python -m poolbackend`` commands as forks of one process that has already imported it.

Why: the suite runs the CLI a few thousand times, and each fresh interpreter pays its start
and the product's imports (100-300 ms on a loaded 2-core machine): most of the suite's time.
A fork of a process that imported the product once is still a real, separate process — its
own pid, file descriptors 0/1/2, environment, working directory, signal dispositions, exit
status, and the interpreter's own shutdown (atexit, thread joins, a traceback and exit 1 for
an uncaught exception) — only without that cost.

What a fork cannot reproduce is a value read at *import* time from the environment
(:data:`IMPORT_TIME_ENV`, and the interpreter's own ``PYTHON*``/locale variables). A command
whose environment differs from the zygote's there runs in a fresh interpreter instead
(:func:`needs_fresh_interpreter`); ``POOLBACKEND_TEST_CLI=exec`` runs every command that way.

The zygote (``python -m tests.harness.clizygote SOCKET``) listens on a Unix socket. Per
connection it receives ``[stdin, stdout, stderr]`` and a JSON request ``{args, env, cwd}``,
and forks a *waiter*, which forks the *worker*, sends ``pid N``, waits for it and sends
``status N`` (the raw wait status). The zygote never waits itself (SIGCHLD ignored), so one
slow command never holds up another.
"""

from __future__ import annotations

import array
import contextlib
import importlib
import json
import os
import pkgutil
import select
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: environment variables the product reads when a module is imported (grep for module-level
#: ``os.environ``); a command that sets them differently needs a fresh interpreter
IMPORT_TIME_ENV = ("POOLBACKEND_CRC32C",)
_INTERPRETER_ENV_PREFIXES = ("PYTHON", "LC_")
_INTERPRETER_ENV = ("LANG", "LANGUAGE")


def _import_time_view(env: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if k in IMPORT_TIME_ENV or k in _INTERPRETER_ENV or k.startswith(_INTERPRETER_ENV_PREFIXES)
    }


# ----------------------------------------------------------------------------- server


def _recv_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        msg, anc, _flags, _addr = conn.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fds.itemsize))
        if not msg:
            raise EOFError("client went away")
        data += msg
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return json.loads(data), list(fds)


def _become_worker(request: dict[str, object], fds: list[int]) -> None:
    """In the worker: take the client's stdio, environment and directory, run the CLI.

    Raises SystemExit up through :func:`serve` to the interpreter, which then shuts down as
    ``python -m poolbackend`` would."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in [*fds, *_WATCH]:
        if fd > 2:
            os.close(fd)
    env = request["env"]
    args = request["args"]
    assert isinstance(env, dict) and isinstance(args, list)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    os.chdir(str(request["cwd"]))
    sys.argv = [str(ROOT / "poolbackend" / "__main__.py"), *map(str, args)]
    from poolbackend.cli.main import main

    raise SystemExit(main([str(a) for a in args]))


def _serve_one(listener: socket.socket, conn: socket.socket) -> None:
    try:
        request, fds = _recv_request(conn)
    except (OSError, EOFError, ValueError):
        conn.close()
        return
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    if os.fork() == 0:  # the waiter
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        pid = os.fork()
        if pid == 0:  # the worker: leaves by SystemExit, up through serve()
            conn.close()
            _become_worker(request, fds)
        try:
            for fd in fds:
                os.close(fd)
            conn.sendall(f"pid {pid}\n".encode())
            _, status = os.waitpid(pid, 0)
            conn.sendall(f"status {status}\n".encode())
        finally:
            os._exit(0)
    for fd in fds:
        os.close(fd)
    conn.close()


_WATCH: list[int] = []  # the zygote's own copy of its stdin, closed in every worker


def serve(path: str) -> None:
    """Import the product, then fork one worker per connection on ``path`` until EOF on stdin."""
    for mod in pkgutil.walk_packages([str(ROOT / "poolbackend")], "poolbackend."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    # the parent holds our stdin open; EOF there (it exited or closed it) ends the zygote
    watch = os.dup(0)
    _WATCH.append(watch)
    while True:
        ready, _, _ = select.select([listener, watch], [], [])
        if watch in ready:
            if not os.read(watch, 1):
                return
        if listener in ready:
            conn, _ = listener.accept()
            _serve_one(listener, conn)


# ----------------------------------------------------------------------------- client


class Zygote:
    """The test side: starts the zygote lazily and runs commands through it."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._env: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir.name, "zygote.sock")

    def _start(self, env: dict[str, str]) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="pb-zygote-")
        self._env = dict(env)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.clizygote", self.path],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line != b"ready\n":
            self.stop()
            raise RuntimeError(f"CLI zygote did not start: {line!r}")

    def stop(self) -> None:
        """End the zygote (EOF on its stdin; killed by pid if it does not go)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    @property
    def env(self) -> dict[str, str]:
        """The environment the zygote was started with (what its imports saw)."""
        return dict(self._env)

    def needs_fresh_interpreter(self, env: dict[str, str]) -> bool:
        return os.environ.get("POOLBACKEND_TEST_CLI") == "exec" or (
            self._proc is not None and _import_time_view(env) != _import_time_view(self._env)
        )

    def run(
        self, args: list[str], *, env: dict[str, str], input: bytes | None, timeout: float
    ) -> tuple[int, bytes, bytes]:
        """Run ``poolbackend ARGS``: ``(returncode, stdout, stderr)`` as subprocess.run gives
        them; raises subprocess.TimeoutExpired after killing a worker that ran too long."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self.stop()
                self._start(env)
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ours: list[int] = []
        theirs: list[int] = []
        try:
            sock.connect(self.path)
            if input is None:
                stdin_r = os.open(os.devnull, os.O_RDONLY)
                stdin_w = -1
            else:
                stdin_r, stdin_w = os.pipe()
                ours.append(stdin_w)
            theirs.append(stdin_r)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            ours += [out_r, err_r]
            theirs += [out_w, err_w]
            request = {"args": args, "env": env, "cwd": os.getcwd()}
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], theirs)
            for fd in theirs:
                os.close(fd)
            theirs.clear()
            replies = _Lines(sock)
            pid = int(replies.expect("pid", deadline))
            ours = []  # _communicate closes them
            try:
                out, err = _communicate(stdin_w, input, out_r, err_r, deadline)
                status = int(replies.expect("status", deadline))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(" ".join(args), timeout) from None
            return os.waitstatus_to_exitcode(status), out, err  # -N: killed by signal N
        finally:
            for fd in ours + theirs:
                with contextlib.suppress(OSError):
                    os.close(fd)
            sock.close()


class _Lines:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def expect(self, word: str, deadline: float) -> str:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired("the CLI", 0)
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(4096)
            except TimeoutError:
                raise subprocess.TimeoutExpired("the CLI", 0) from None
            if not chunk:
                raise RuntimeError("CLI zygote closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        name, _, value = line.decode().partition(" ")
        if name != word:
            raise RuntimeError(f"CLI zygote said {line!r}, expected {word!r}")
        return value


def _communicate(
    stdin_w: int, data: bytes | None, out_r: int, err_r: int, deadline: float
) -> tuple[bytes, bytes]:
    """Feed ``data`` to stdin (then close it) and read stdout and stderr to EOF, by ``deadline``."""

    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    sel = selectors.DefaultSelector()
    sel.register(out_r, selectors.EVENT_READ)
    sel.register(err_r, selectors.EVENT_READ)
    pending = memoryview(data or b"")
    if stdin_w >= 0:
        os.set_blocking(stdin_w, False)
        if pending:
            sel.register(stdin_w, selectors.EVENT_WRITE)
        else:
            os.close(stdin_w)
    try:
        while len(sel.get_map()) > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired("the CLI", 0)
            for key, _ in sel.select(left):
                fd = int(key.fd)  # type: ignore[arg-type]
                if fd == stdin_w:
                    try:
                        pending = pending[os.write(fd, pending) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(fd)
                        os.close(fd)
                    continue
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    sel.unregister(fd)
                    os.close(fd)
    finally:
        for key in list(sel.get_map().values()):
            with contextlib.suppress(OSError):
                os.close(int(key.fd))  # type: ignore[arg-type]
        sel.close()
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])


if __name__ == "__main__":
    serve(sys.argv[1])
