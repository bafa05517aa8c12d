"""A loopback TCP relay to a real target that can stall: a transfer paused at a known point.

Used to catch a ``vol-download``/``vol-upload`` deterministically in the middle: the relay
passes the target's bytes on until ``stall_after`` bytes went to the initiator (counted over
all connections), then holds the rest back and sets :attr:`stalled`. While it is stalled the
test does what it wants (signal the CLI, kill tgtd, swap the LUN) and then calls
:meth:`resume` (the held bytes go on) or :meth:`drop` (every connection is closed and new ones
are refused: the target is gone). The data itself always comes from the real target.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import threading
from collections.abc import Callable


class _Queue:
    def __init__(self) -> None:
        self._items: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()

    def put(self, data: bytes) -> None:
        with self._cond:
            self._items.append(data)
            self._cond.notify()

    def get(self, timeout: float) -> bytes | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None


class StallRelay:
    def __init__(self, upstream: tuple[str, int], stall_after: int | None = None) -> None:
        self.upstream = upstream
        self.stall_after = stall_after
        self.forwarded = 0  # target -> initiator bytes passed on
        self.stalled = threading.Event()
        self._resume = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self._spawn(self._accept_loop)

    def __enter__(self) -> StallRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, fn: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            lst = self._listener
            if lst is None:
                return
            try:
                client, _ = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, up]
            queue: _Queue = _Queue()
            self._spawn(self._copy, client, up, None)
            self._spawn(self._copy, up, client, queue)
            self._spawn(self._send, queue, client, up)

    def _budget(self, n: int) -> int:
        """How many of ``n`` bytes may go to the initiator now (waits while stalled)."""
        while True:
            with self._lock:
                if self.stall_after is None or self._resume.is_set():
                    self.forwarded += n
                    return n
                left = self.stall_after - self.forwarded
                if left > 0:
                    take = min(n, left)
                    self.forwarded += take
                    return take
            self.stalled.set()
            if self._stop.is_set():
                return 0
            self._resume.wait(0.1)

    def _copy(self, src: socket.socket, dst: socket.socket, queue: _Queue | None) -> None:
        """initiator -> target directly; target -> initiator into ``queue``, always read at
        once so that tgt never holds unsent responses (it drops them when a LUN is deleted)."""
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready:
                    continue
                data = src.recv(1 << 16)
                if queue is not None:
                    queue.put(data)
                    if not data:
                        return
                    continue
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        if queue is not None:
            queue.put(b"")
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _send(self, queue: _Queue, dst: socket.socket, upstream: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                data = queue.get(0.2)
                if data is None:
                    continue
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                view = memoryview(data)
                while view:
                    n = self._budget(len(view))
                    if n == 0:
                        return
                    dst.sendall(view[:n])
                    view = view[n:]
        except (OSError, ValueError):
            pass
        for s in (dst, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def wait_stalled(self, timeout: float = 60.0) -> None:
        if not self.stalled.wait(timeout):
            raise AssertionError(
                f"the relay did not stall within {timeout}s ({self.forwarded} bytes forwarded)"
            )

    def resume(self) -> None:
        """Pass everything on from now on."""
        self._resume.set()

    def drop(self) -> None:
        """The target is gone: refuse new connections and close every open one."""
        lst, self._listener = self._listener, None
        if lst is not None:
            lst.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()
        self.drop()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(2)
