"""``poolbackend iscsi-perf``: libiscsi's iscsi-perf read benchmark on our initiator.

It keeps ``-m`` READ(16) commands of ``-b`` blocks in flight on one LUN, sequentially or at
random LBAs, prints libiscsi's per-second progress line (``HH:MM:SS - lba N, iops current N
(N MB/s), iops average N (N MB/s), in_flight N, busy N``, started with a carriage return;
``-l`` ends each with a newline) and, when stopped by SIGINT/SIGTERM or after ``--seconds``,
libiscsi's ``iops average N (M MB/s)`` line followed by ``finished.``. The figures use
libiscsi's arithmetic: integer IOPS, MB/s as bytes per second shifted right by 20, the final
MB/s as average IOPS x blocks per I/O x block length. A second SIGINT aborts at once.

Differences from libiscsi's tool, on purpose: ``-t`` is our ``--timeout`` (libiscsi 1.19's
``-t`` is the run time although its usage line says timeout; here that is ``--seconds``), and
the data read lands in one shared buffer (as libiscsi's single iovec).

Registered next to its handler; the initiator and asyncio are imported only when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from poolbackend.cli.common import Commands, arg
from poolbackend.cli.initiator_opts import LUN_URL, add_initiator_options, session_options
from poolbackend.errors import ConfigError
from poolbackend.numbers import ascii_int
from poolbackend.text import printable

if TYPE_CHECKING:
    import asyncio

    from poolbackend.iscsi.aio import Session, SessionOptions
    from poolbackend.iscsi.url import IscsiUrl

commands = Commands()
MAX_IO_BYTES = 256 << 20
MAX_IN_FLIGHT = 4096


def _int_option(name: str, text: str, low: int, high: int) -> int:
    try:
        return ascii_int(text, low=low, high=high)
    except ValueError:
        raise ConfigError(
            f"{name} must be a whole number from {low} to {high}, not '{printable(text)}'"
        ) from None


@dataclass
class _Stats:
    """Counters, in libiscsi's terms: completed commands, bytes, BUSY retries."""

    first: float
    stopped: asyncio.Event
    iops: int = 0
    bytes: int = 0
    busy: int = 0
    errors: int = 0
    in_flight: int = 0
    pos: int = 0
    last: float = 0.0
    last_iops: int = 0
    last_bytes: int = 0
    stopping: int = 0  # 1: stop issuing and drain; 2: abort


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _average(st: _Stats, now: float) -> tuple[int, int]:
    elapsed = max(now - st.first, 1e-9)
    return int(st.iops / elapsed), int(st.bytes / elapsed)


def progress_line(st: _Stats, now: float, runtime: int | None) -> str:
    """libiscsi's progress line (without the leading carriage return)."""
    elapsed = int(now - st.first)
    shown = runtime - elapsed if runtime else elapsed
    interval = max(now - st.last, 1e-9)
    iops = int((st.iops - st.last_iops) / interval)
    mbps = int((st.bytes - st.last_bytes) / interval)
    aiops, ambps = _average(st, now)
    return (
        f"{_hms(max(shown, 0))} - lba {st.pos}, iops current {iops} ({mbps >> 20} MB/s), "
        f"iops average {aiops} ({ambps >> 20} MB/s), in_flight {st.in_flight}, busy {st.busy}"
    )


def final_line(st: _Stats, now: float, io_bytes: int) -> str:
    aiops = _average(st, now)[0]
    return f"iops average {aiops} ({(aiops * io_bytes) >> 20} MB/s)"


async def run_perf(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from poolbackend.iscsi.url import parse_url

    url = parse_url(args.url, need_lun=True)
    opts = session_options(args, url)
    in_flight = _int_option("-m/--max", args.max, 1, MAX_IN_FLIGHT)
    blocks_per_io = _int_option("-b/--blocks", args.blocks, 1, 1 << 24)
    runtime = None if args.seconds is None else _int_option("--seconds", args.seconds, 1, 86400)
    if args.max_reconnects is not None:
        opts.max_reconnects = _int_option("-x/--max-reconnects", args.max_reconnects, 0, 1000)
    loop = asyncio.get_running_loop()
    st = _Stats(first=time.monotonic(), stopped=asyncio.Event())

    def on_signal() -> None:  # the first stops issuing reads and drains, a second aborts
        st.stopping += 1
        st.stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await _Perf(args, url, opts, in_flight, blocks_per_io, runtime, st, out).run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class _Perf:
    def __init__(
        self,
        args: argparse.Namespace,
        url: IscsiUrl,
        opts: SessionOptions,
        in_flight: int,
        blocks_per_io: int,
        runtime: int | None,
        st: _Stats,
        out: TextIO,
    ) -> None:
        self.args, self.url, self.opts = args, url, opts
        self.in_flight, self.blocks_per_io, self.runtime = in_flight, blocks_per_io, runtime
        self.st, self.out = st, out
        self.errors: list[BaseException] = []

    async def run(self) -> int:
        from poolbackend.iscsi.aio import Session
        from poolbackend.iscsi.url import redact

        url, out = self.url, self.out
        assert url.target is not None and url.lun is not None
        session = await Session.open(url.portal, url.target, self.opts, url.credentials)
        try:
            print(f"connected to {redact(self.args.url)}", file=out)
            num_blocks, block_size = await session.read_capacity(url.lun)
            io_bytes = self.blocks_per_io * block_size
            if io_bytes > MAX_IO_BYTES:
                raise ConfigError(
                    f"-b/--blocks: {self.blocks_per_io} blocks of {block_size} bytes is more "
                    f"than {MAX_IO_BYTES >> 20} MiB per read"
                )
            if num_blocks == 0:
                raise ConfigError(f"LUN {url.lun} has no blocks to read")
            size = num_blocks * block_size
            print(f"capacity is {num_blocks} blocks or {size} byte ({size >> 20} MB)", file=out)
            kind = "RANDOM" if self.args.random else "SEQUENTIAL"
            print(f"performing {kind} READ with {self.in_flight} parallel requests", file=out)
            print(f"FIXED transfer size of {self.blocks_per_io} blocks ({io_bytes} byte)", file=out)
            if self.runtime:
                print(f"will run for {self.runtime} seconds.", file=out)
            else:
                print("infinite runtime - press CTRL-C to abort.", file=out)
            print(file=out)
            out.flush()
            return await self._drive(session, url.lun, num_blocks, block_size)
        finally:
            await session.close()

    async def _drive(self, session: Session, lun: int, num_blocks: int, block_size: int) -> int:
        import asyncio

        from poolbackend.iscsi.errors import CommandFailed, ISCSIError
        from poolbackend.iscsi.events import Event, TaskCompleted
        from poolbackend.scsi import cdb as C
        from poolbackend.scsi.status import ScsiStatus, status_name

        st, out, runtime, args = self.st, self.out, self.runtime, self.args
        blocks_per_io = self.blocks_per_io
        st.first = st.last = time.monotonic()
        buf = bytearray(blocks_per_io * block_size)  # one buffer for all reads (libiscsi's iovec)
        randrange = random.randrange
        ignore_errors: bool = args.ignore_errors
        end = "\n" if args.logging else ""
        errors = self.errors

        def fail(exc: BaseException) -> None:
            errors.append(exc)
            st.stopping = 2
            st.stopped.set()
            drained.set()

        def next_io() -> tuple[int, int]:
            if args.random:
                st.pos = randrange(num_blocks)
            elif st.pos >= num_blocks:
                st.pos = 0
            lba = st.pos
            blocks = min(blocks_per_io, num_blocks - lba)
            st.pos = lba + blocks
            return lba, blocks

        read16 = C.read16
        GOOD, BUSY = int(ScsiStatus.GOOD), int(ScsiStatus.BUSY)  # plain ints: compared per read
        submit = session.submit
        pending: dict[int, tuple[int, int, bytes]] = {}  # request id -> (LBA, bytes, CDB)
        drained = asyncio.Event()

        def start(lba: int, nbytes: int, cdb: bytes) -> None:
            rid = submit(lun, cdb, done, read_len=nbytes, read_into=buf)
            pending[rid] = (lba, nbytes, cdb)

        def fill() -> None:  # libiscsi's fill_read_queue
            while st.in_flight < in_flight and not st.stopping:
                lba, blocks = next_io()
                try:
                    start(lba, blocks * block_size, read16(lba, blocks))
                except ISCSIError as exc:  # the session is gone for good
                    fail(exc)
                    return
                st.in_flight += 1

        def lost(exc: ISCSIError) -> None:  # the read ended without an answer
            if ignore_errors:
                st.errors += 1
            else:
                fail(exc)

        def done(rid: int, outcome: Event | ISCSIError) -> None:
            lba, nbytes, cdb = pending.pop(rid)
            status = outcome.result.status if type(outcome) is TaskCompleted else -1
            if status == GOOD:
                st.iops += 1
                st.bytes += nbytes
            elif status == BUSY:
                st.busy += 1  # when stopping, a BUSY read is just dropped
                if not st.stopping:
                    try:
                        start(lba, nbytes, cdb)  # as libiscsi: the same read again
                        return
                    except ISCSIError as exc:
                        lost(exc)
            elif isinstance(outcome, ISCSIError):
                lost(outcome)
            elif ignore_errors:  # a bad status or a failed task counts as done
                st.errors += 1
                st.iops += 1
            else:
                why = (
                    f"SCSI status {status_name(status)}"
                    if type(outcome) is TaskCompleted
                    else getattr(outcome, "reason", "no status")
                )
                fail(
                    CommandFailed(
                        f"{session.what}: READ(16) at LBA {lba} on LUN {lun} failed: {why}"
                    )
                )
            st.in_flight -= 1
            if st.stopping:
                if not st.in_flight:
                    drained.set()
            else:
                fill()

        in_flight = self.in_flight
        fill()
        now = st.first
        tick = 1
        while not st.stopping:
            delay = st.first + tick - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.stopped.wait(), max(0.0, delay))
            now = time.monotonic()
            if st.stopping:
                break
            if runtime and now - st.first >= runtime:
                st.stopping = 1
                break
            print("\r" + progress_line(st, now, runtime) + "        ", end=end, file=out)
            out.flush()
            st.last, st.last_iops, st.last_bytes = now, st.iops, st.bytes
            tick = int(now - st.first) + 1
        while st.stopping < 2 and st.in_flight:  # drain; a second SIGINT aborts
            st.stopped.clear()
            waiter = asyncio.ensure_future(st.stopped.wait())
            drain = asyncio.ensure_future(drained.wait())
            await asyncio.wait([drain, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            drain.cancel()
        print("\r" + final_line(st, now, blocks_per_io * block_size) + "        ", file=out)
        if errors:
            out.flush()
            raise errors[0]
        if st.stopping >= 2:
            print("\nABORTED!", file=out)
            return 130
        print("\nfinished.", file=out)
        return 0


@commands.add(
    "iscsi-perf",
    "READ benchmark of a LUN like libiscsi's iscsi-perf: per-second progress until "
    "SIGINT or --seconds, then the IOPS average",
    LUN_URL,
    arg("-m", "--max", default="32", metavar="MAX_IN_FLIGHT", help="reads in flight (default 32)"),
    arg("-b", "--blocks", default="8", metavar="BLOCKS_PER_IO", help="blocks per read (default 8)"),
    arg("-r", "--random", action="store_true", help="random LBAs (default sequential)"),
    arg("-n", "--ignore-errors", action="store_true", help="count failed reads and go on"),
    arg(
        "-x",
        "--max-reconnects",
        metavar="MAX_RECONNECTS",
        help="reconnects in a row without progress before giving up (default 3)",
    ),
    arg("-l", "--logging", action="store_true", help="one progress line per second"),
    arg("--seconds", metavar="N", help="stop after N seconds (default: run until SIGINT)"),
    add_initiator_options,
)
def cmd_iscsi_perf(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(run_perf(args, sys.stdout))
