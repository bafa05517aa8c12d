"""Benchmarks: our code and the reference implementations side by side, in one run.

``python -m bench.run`` (after scripts/install-deps.sh) starts a private tgtd, runs every case
several times and prints min/median for us and for each reference plus the ratio, as a
Markdown table. References: libiscsi's tools (iscsi-ls, iscsi-perf), QEMU's libiscsi block
driver (``qemu-img convert`` to and from ``iscsi://``), libvirt's iscsi-direct backend (virsh
on a private libvirtd, when tests/harness/libvirtd.py can start one) and dd of the backing
file as the ceiling for reads. Our runs and the reference runs alternate, so load from
elsewhere on the machine hits both alike. tgtd's backing files and the upload source live on
/dev/shm when it exists (``--no-shm`` to use the default temp dir), keeping disks out.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import filecmp
import functools
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poolbackend.iscsi import digest  # noqa: E402
from poolbackend.iscsi.aio import Session, SessionOptions  # noqa: E402
from poolbackend.iscsi.portal import Portal  # noqa: E402
from poolbackend.pool import scan, transfer  # noqa: E402
from tests.harness.tgtd import Tgtd  # noqa: E402

MiB = 1 << 20
IQN = "iqn.2026-11.example:bench"
INITIATOR = "iqn.2026-11.example:bench-initiator"


@dataclass
class Row:
    case: str
    ours: list[float]
    ref_name: str
    ref: list[float]
    unit: str  # "s", "MiB" or "us" (lower is better) or "MiB/s" or "IOPS" (higher is better)

    def cells(self) -> list[str]:
        def fmt(values: list[float]) -> str:
            if not values:
                return "n/a"
            if self.unit == "MiB":
                return f"{min(values):.0f} MiB"
            if self.unit == "s":
                return f"{min(values) * 1000:.1f} / {statistics.median(values) * 1000:.1f} ms"
            if self.unit == "IOPS":
                return f"{max(values):.0f} / {statistics.median(values):.0f} IOPS"
            if self.unit == "us":
                return f"{min(values):.1f} / {statistics.median(values):.1f} µs"
            return f"{max(values):.0f} / {statistics.median(values):.0f} MiB/s"

        ratio = "n/a"
        if self.ours and self.ref:
            a, b = statistics.median(self.ours), statistics.median(self.ref)
            ratio = f"{a / b:.2f}x " + {"s": "time", "us": "CPU"}.get(self.unit, "speed")
        return [self.case, fmt(self.ours), self.ref_name, fmt(self.ref), ratio]


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def alternating(
    a: Callable[[], object], b: Callable[[], object], runs: int
) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` in turns (a, b, a, b, ...): machine noise hits both alike."""
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(runs):
        ta += timed(a, 1)
        tb += timed(b, 1)
    return ta, tb


def cli(*args: str, env: dict[str, str]) -> None:
    """Run ``python -m poolbackend ARGS``: :func:`cli_rss` without its figure."""
    cli_rss(*args, env=env)


def cli_rss(*args: str, env: dict[str, str]) -> int:
    """Run ``python -m poolbackend ARGS`` (its output discarded, CalledProcessError with its
    stderr if it fails) and return that process's own peak RSS in KiB (from wait4;
    RUSAGE_CHILDREN's maximum also covers every earlier child of the bench, such as qemu-img
    or libiscsi's iscsi-perf when other cases ran first)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolbackend", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, stderr=err)
    return usage.ru_maxrss


def run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")


SHM = Path("/dev/shm")
USE_SHM = True


@contextlib.contextmanager
def target(iothreads: int = 4) -> Iterator[Tgtd]:
    """A private tgtd whose work dir (LUN backing files) is on /dev/shm when possible.

    ``iothreads`` is tgtd's ``-t``: it starts that many I/O threads per LUN, so the refresh
    cases with hundreds of LUNs use 1 (the default would swamp the machine)."""
    old = tempfile.tempdir
    if USE_SHM and SHM.is_dir() and os.access(SHM, os.W_OK):
        tempfile.tempdir = str(SHM)
    try:
        tgt = Tgtd.start(iothreads=iothreads)
    finally:
        tempfile.tempdir = old
    with tgt:
        yield tgt


def fill(path: Path, size: int) -> None:
    """Real data, not a sparse file (and the pages of a tmpfs file allocated up front)."""
    with open(path, "r+b" if path.exists() else "wb") as f:
        chunk = os.urandom(4 * MiB)
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write(chunk[: size % len(chunk)])


def warm(tgt: Tgtd, size: int) -> None:
    """Put tgtd's allocator in the state any longer-running target is in, for every client.

    tgtd allocates each command's data buffer with glibc malloc. Buffers of 1 MiB are above
    malloc's initial mmap threshold, so each one is mmapped, page-faulted in and unmapped,
    until a larger buffer has been freed once (glibc then raises the threshold): measured
    iscsi-perf -b 2048 at ~1350 MB/s before and ~2500 MB/s after a single 4 MiB READ. Without
    this, whichever client first sends a request above 1 MiB speeds up all that follow.
    """

    async def read_once() -> None:
        async with await Session.open(Portal(tgt.host, tgt.port), IQN, SessionOptions()) as s:
            await s.read(1, 0, min(size, 4 * MiB) // 512, 512)

    asyncio.run(read_once())


def mib_s(size: int, times: list[float]) -> list[float]:
    return [size / MiB / t for t in times]


def qemu_url(tgt: Tgtd, lun: int = 1) -> str:
    return f"iscsi://{tgt.portal}/{IQN}/{lun}"


def iscsi_perf(tgt: Tgtd, runs: int, seconds: int) -> list[float]:
    out: list[float] = []
    for _ in range(runs):
        proc = subprocess.run(
            ["iscsi-perf", "-b", "2048", "-m", "16", "-t", str(seconds), qemu_url(tgt)],
            capture_output=True,
            text=True,
        )
        found = re.findall(r"iops average \d+ \((\d+) MB/s\)", proc.stdout)
        if found:
            out.append(float(found[-1]))
    return out


def pool_xml(path: Path, name: str, tgt: Tgtd) -> Path:
    path.write_text(f"""<pool type='iscsi-direct'>
  <name>{name}</name>
  <source>
    <host name='127.0.0.1' port='{tgt.port}'/>
    <device path='{IQN}'/>
    <initiator><iqn name='{INITIATOR}'/></initiator>
  </source>
</pool>
""")
    return path


def libvirtd() -> object | None:
    try:
        from tests.harness.libvirtd import Libvirtd
    except ImportError:
        return None
    try:
        return Libvirtd.start()
    except Exception as exc:  # a missing reference is reported, not fatal
        print(f"(libvirt reference unavailable: {exc})", file=sys.stderr)
        return None


def bench_refresh(
    sizes: list[int], runs: int, work: Path, rows: list[Row], virsh: object | None
) -> None:
    for n in sizes:
        bench_refresh_one(n, runs, work, rows, virsh)


def bench_refresh_one(n: int, runs: int, work: Path, rows: list[Row], virsh: object | None) -> None:
    with target(iothreads=1) as tgt:
        tgt.new_target(1, IQN)
        tgt.add_luns(1, range(1, n + 1), 1 * MiB)
        portal = Portal(tgt.host, tgt.port)

        async def refresh() -> None:
            s = await Session.open(portal, IQN)
            try:
                result = await scan.scan(s)
            finally:
                await s.close()
            assert len(result.luns) == n + 1

        ours = timed(lambda: asyncio.run(refresh()), runs)
        ls = timed(
            lambda: subprocess.run(
                ["iscsi-ls", "-s", f"iscsi://{tgt.portal}"], check=True, capture_output=True
            ),
            runs,
        )
        rows.append(Row(f"refresh {n} LUNs (in-process)", ours, "iscsi-ls -s", ls, "s"))
        env = dict(os.environ, POOLBACKEND_STATE_DIR=str(work / f"state-{n}"), PYTHONPATH=str(ROOT))
        cli("pool-create", str(pool_xml(work / f"p{n}.xml", f"bench{n}", tgt)), env=env)
        whole = timed(lambda: cli("pool-refresh", f"bench{n}", env=env), runs)
        ref: list[float] = []
        ref_name = "virsh pool-refresh (libvirt)"
        if virsh is not None:
            v = virsh.virsh  # type: ignore[attr-defined]
            v("pool-create", str(work / f"p{n}.xml"))
            ref = timed(lambda: v("pool-refresh", f"bench{n}"), runs)
            v("pool-destroy", f"bench{n}")
        else:
            ref_name += " [unavailable]"
        rows.append(Row(f"refresh {n} LUNs (poolbackend pool-refresh)", whole, ref_name, ref, "s"))


def bench_read(size: int, runs: int, work: Path, rows: list[Row], quick: bool) -> None:
    with target() as tgt:
        tgt.new_target(1, IQN)
        backing = tgt.add_lun(1, 1, size)
        fill(backing, size)
        warm(tgt, size)
        env = dict(os.environ, POOLBACKEND_STATE_DIR=str(work / "state-read"), PYTHONPATH=str(ROOT))
        cli("pool-create", str(pool_xml(work / "pr.xml", "benchread", tgt)), env=env)
        rss: list[int] = []
        what = f"sequential read {size // MiB} MiB"

        def download() -> None:
            rss.append(
                cli_rss("vol-download", "--pool", "benchread", "unit:0:0:1", "/dev/null", env=env)
            )

        ours: list[float] = []
        perf: list[float] = []
        for _ in range(runs):  # alternate with iscsi-perf
            ours += mib_s(size, timed(download, 1))
            perf += iscsi_perf(tgt, 1, 1 if quick else 5)
        rows.append(Row(f"{what} (vol-download)", ours, "iscsi-perf -b 2048 -m 16", perf, "MiB/s"))

        def in_process() -> None:
            asyncio.run(_download(Portal(tgt.host, tgt.port), SessionOptions()))

        inproc = mib_s(size, timed(in_process, runs))
        rows.append(
            Row(
                f"{what} (in-process transfer.download, no CLI start-up)",
                inproc,
                "iscsi-perf -b 2048 -m 16",
                perf,
                "MiB/s",
            )
        )
        null = f"driver=null-co,size={size}"
        ours_q, qemu = alternating(
            download,
            lambda: run(
                "qemu-img", "convert", "-n", "-f", "raw", qemu_url(tgt), "--target-image-opts", null
            ),
            runs,
        )
        rows.append(
            Row(
                f"{what} (vol-download)",
                mib_s(size, ours_q),
                "qemu-img convert iscsi:// to null-co",
                mib_s(size, qemu),
                "MiB/s",
            )
        )
        dd = mib_s(
            size,
            timed(lambda: run("dd", f"if={backing}", "of=/dev/null", "bs=4M"), runs),
        )
        rows.append(
            Row(f"{what} (vol-download)", ours, "dd of the backing file (ceiling)", dd, "MiB/s")
        )
        print(f"peak RSS of vol-download: {max(rss) / 1024:.0f} MiB", file=sys.stderr)
        rows.append(Row("peak RSS of vol-download", [max(rss) / 1024], "-", [], "MiB"))


async def _download(portal: Portal, options: SessionOptions) -> None:
    async with await Session.open(portal, IQN, options) as s:
        geo = await transfer.geometry(s, 1)
        with open(os.devnull, "wb") as out:
            await transfer.download(s, geo, out)


def bench_write(size: int, runs: int, work: Path, rows: list[Row]) -> None:
    with target() as tgt:
        tgt.new_target(1, IQN)
        fill(tgt.add_lun(1, 1, size), size)  # overwrite allocated pages, as a disk would
        warm(tgt, size)
        src = tgt.workdir / "upload-source.img"
        fill(src, size)
        env = dict(
            os.environ, POOLBACKEND_STATE_DIR=str(work / "state-write"), PYTHONPATH=str(ROOT)
        )
        cli("pool-create", str(pool_xml(work / "pw.xml", "benchwrite", tgt)), env=env)
        rss: list[int] = []

        def upload() -> None:
            rss.append(
                cli_rss("vol-upload", "--pool", "benchwrite", "unit:0:0:1", str(src), env=env)
            )

        ours, qemu = alternating(
            upload,
            lambda: run(
                "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), qemu_url(tgt)
            ),
            runs,
        )
        rows.append(
            Row(
                f"sequential write {size // MiB} MiB (vol-upload)",
                mib_s(size, ours),
                "qemu-img convert -n FILE iscsi://",
                mib_s(size, qemu),
                "MiB/s",
            )
        )
        rows.append(Row("peak RSS of vol-upload", [max(rss) / 1024], "-", [], "MiB"))


def bench_wipe(size: int, runs: int, work: Path, rows: list[Row], virsh: object | None) -> None:
    """vol-wipe (zero) against libvirt's, on a fully allocated LUN and on a thin one.

    On a fully allocated LUN tgt has to write every zero itself, so the target bounds both
    sides; on a thin LUN (LBPRZ) our WRITE SAME carries the UNMAP bit and tgt punches a hole,
    while libvirt still sends every zero block.
    """
    for thin in (False, True):
        with target() as tgt:
            tgt.new_target(1, IQN)
            fill(tgt.add_lun(1, 1, size, thin=thin), size)
            warm(tgt, size)
            name = "benchwipethin" if thin else "benchwipe"
            env = dict(
                os.environ, POOLBACKEND_STATE_DIR=str(work / f"state-{name}"), PYTHONPATH=str(ROOT)
            )
            xml = pool_xml(work / f"{name}.xml", name, tgt)
            cli("pool-create", str(xml), env=env)

            def ours(name: str = name, env: dict[str, str] = env) -> None:
                cli("vol-wipe", "--pool", name, "unit:0:0:1", env=env)

            kind = "thin LUN, UNMAP" if thin else "allocated LUN"
            what = f"vol-wipe {size // MiB} MiB (zero, {kind})"
            if virsh is None:
                rows.append(Row(what, timed(ours, runs), "virsh vol-wipe [unavailable]", [], "s"))
                continue
            v = virsh.virsh  # type: ignore[attr-defined]
            v("pool-create", str(xml), check=True)
            try:
                theirs_fn = functools.partial(
                    v, "vol-wipe", "--pool", name, "unit:0:0:1", check=True
                )
                mine, theirs = alternating(ours, theirs_fn, runs)
            finally:
                v("pool-destroy", name)
            rows.append(Row(what, mine, "virsh vol-wipe (libvirt)", theirs, "s"))


def bench_digest(size: int, runs: int, rows: list[Row]) -> None:
    """Header+data digest reads: google-crc32c (our default when installed) vs crcmod."""
    with target() as tgt:
        tgt.new_target(1, IQN)
        fill(tgt.add_lun(1, 1, size), size)
        tgt.set_param(1, "HeaderDigest", "CRC32C")
        tgt.set_param(1, "DataDigest", "CRC32C")
        options = SessionOptions(header_digest="CRC32C", data_digest="CRC32C")
        portal = Portal(tgt.host, tgt.port)
        results: dict[str, list[float]] = {}
        names: dict[str, str] = {}
        try:
            for _ in range(runs):
                for impl in digest.IMPLEMENTATIONS:
                    try:
                        names[impl] = digest.use(impl)
                    except ImportError:
                        continue
                    t = time.perf_counter()
                    asyncio.run(_download(portal, options))
                    results.setdefault(impl, []).append(size / MiB / (time.perf_counter() - t))
        finally:
            digest.use(None)
        google = names.get("google-crc32c", "google-crc32c [not installed]")
        rows.append(
            Row(
                f"read {size // MiB} MiB, header+data digest, {google}",
                results.get("google-crc32c", []),
                names["crcmod"],
                results["crcmod"],
                "MiB/s",
            )
        )


@contextlib.contextmanager
def small_read_lun() -> Iterator[str]:
    """The LUN the random-read cases share: 256 MiB of data on a warmed target, as a URL."""
    with target() as tgt:
        tgt.new_target(1, IQN)
        size = 256 * MiB
        fill(tgt.add_lun(1, 1, size), size)
        warm(tgt, size)
        yield qemu_url(tgt)


def _final_iops(proc: subprocess.CompletedProcess[str]) -> float | None:
    """The last ``iops average N (M MB/s)`` figure of an iscsi-perf run (ours or libiscsi's);
    without one, a note with the end of its stderr."""
    found = re.findall(r"iops average (\d+) \(\d+ MB/s\)", proc.stdout)
    if not found:
        print(f"(no IOPS figure: {proc.stderr.strip()[-200:]})", file=sys.stderr)
        return None
    return float(found[-1])


def perf_commands(depth: int, seconds: int, url: str) -> tuple[list[str], list[str]]:
    """4 KiB random reads, *depth* in flight for *seconds*: ``poolbackend iscsi-perf`` (ours)
    and libiscsi's ``iscsi-perf -b 8 -m M -r``."""
    args = ["-b", "8", "-m", str(depth), "-r"]
    return (
        [sys.executable, "-m", "poolbackend", "iscsi-perf", *args, "--seconds", str(seconds), url],
        ["iscsi-perf", *args, "-t", str(seconds), url],
    )


def bench_iops(runs: int, seconds: int, work: Path, rows: list[Row]) -> None:
    """4 KiB random reads at 32 and 1 in flight: ``poolbackend iscsi-perf`` (whole process,
    as libiscsi's tool) against libiscsi's ``iscsi-perf -b 8 -m M -r`` and QEMU's libiscsi
    driver via ``qemu-img bench -d M -s 4096`` (sequential: qemu-img bench has no random mode;
    its own "Run completed in" time, start-up excluded), all on the same LUN, alternating."""
    with small_read_lun() as url:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for depth in (32, 1):
            ours: list[float] = []
            perf: list[float] = []
            qemu: list[float] = []
            count = (24000 if depth > 1 else 7000) * seconds
            mine_cmd, theirs_cmd = perf_commands(depth, seconds, url)
            for _ in range(runs):
                mine = subprocess.run(mine_cmd, capture_output=True, text=True, env=env)
                theirs = subprocess.run(theirs_cmd, capture_output=True, text=True)
                for out, proc in ((ours, mine), (perf, theirs)):
                    value = _final_iops(proc)
                    if value is not None:
                        out.append(value)
                q = subprocess.run(
                    ["qemu-img", "bench", "-f", "raw", "-c", str(count), "-d", str(depth),
                     "-s", "4096", url],
                    capture_output=True, text=True,
                )  # fmt: skip
                m = re.search(r"Run completed in ([0-9.]+) seconds", q.stdout)
                if m:
                    qemu.append(count / float(m.group(1)))
            what = f"4 KiB random read, {depth} in flight (iscsi-perf, whole process)"
            rows.append(Row(what, ours, f"iscsi-perf -b 8 -m {depth} -r", perf, "IOPS"))
            rows.append(
                Row(what, ours, f"qemu-img bench -d {depth} -s 4096 (sequential)", qemu, "IOPS")
            )


def _cpu_run(
    cmd: list[str], seconds: int, env: dict[str, str] | None
) -> tuple[float, float] | None:
    """(CPU seconds, commands) of one iscsi-perf run of *seconds*, ours or libiscsi's: the
    child's user + system time, and its final average IOPS x its run time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    iops = _final_iops(proc)
    if iops is None:
        return None
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return cpu, iops * min(seconds, wall)


def bench_cpu(runs: int, seconds: int, rows: list[Row]) -> None:
    """CPU per command of 4 KiB random reads, ours against libiscsi's iscsi-perf: the
    difference between a long and a 1-second run of each (so start-up, login and our
    interpreter's imports cancel out), divided by the difference in commands."""
    with small_read_lun() as url:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for depth in (32, 1):
            ours: list[float] = []
            theirs: list[float] = []
            tools = list(
                zip(
                    (ours, theirs),
                    (env, None),
                    perf_commands(depth, seconds, url),
                    perf_commands(depth, 1, url),
                    strict=True,
                )
            )
            for _ in range(runs):
                for out, e, long_cmd, short_cmd in tools:
                    long = _cpu_run(long_cmd, seconds, e)
                    short = _cpu_run(short_cmd, 1, e)
                    if long and short and long[1] > short[1]:
                        out.append((long[0] - short[0]) / (long[1] - short[1]) * 1e6)
            rows.append(
                Row(
                    f"CPU per 4 KiB random read, {depth} in flight (marginal, user + system)",
                    ours,
                    f"iscsi-perf -b 8 -m {depth} -r",
                    theirs,
                    "us",
                )
            )


def bench_startup(runs: int, work: Path, rows: list[Row], virsh: object | None) -> None:
    with target() as tgt:
        tgt.new_target(1, IQN)
        tgt.add_lun(1, 1, 1 * MiB)
        env = dict(
            os.environ, POOLBACKEND_STATE_DIR=str(work / "state-start"), PYTHONPATH=str(ROOT)
        )
        cli("pool-create", str(pool_xml(work / "ps.xml", "benchstart", tgt)), env=env)
        ours = timed(lambda: cli("vol-list", "benchstart", env=env), runs)
        ref: list[float] = []
        name = "virsh vol-list (libvirt)"
        if virsh is not None:
            v = virsh.virsh  # type: ignore[attr-defined]
            v("pool-create", str(work / "ps.xml"))
            ref = timed(lambda: v("vol-list", "benchstart"), runs)
            v("pool-destroy", "benchstart")
        else:
            name += " [unavailable]"
        rows.append(Row("CLI start-up: vol-list of an active pool", ours, name, ref, "s"))


def same(a: Path, b: Path) -> None:
    if not filecmp.cmp(a, b, shallow=False):
        raise RuntimeError(f"{a} and {b} differ")


def _thin_target(tgt: Tgtd, size: int, mapped: int, pieces: int = 16) -> None:
    """LUN 1: thin, ``size`` bytes, ``mapped`` bytes of random data in ``pieces`` extents
    spread over it, written through iSCSI (so tgt maps them as a guest's writes would)."""
    tgt.new_target(1, IQN)
    tgt.add_lun(1, 1, size, thin=True)
    step, piece = size // pieces, mapped // pieces

    async def write() -> None:
        async with await Session.open(Portal(tgt.host, tgt.port), IQN, SessionOptions()) as s:
            for i in range(pieces):
                data = os.urandom(piece)
                for off in range(0, piece, 4 * MiB):
                    await s.write(1, (i * step + off) // 512, data[off : off + 4 * MiB], 512)

    asyncio.run(write())


def bench_thin(size: int, mapped: int, runs: int, work: Path, rows: list[Row]) -> None:
    """vol-download --sparse / vol-upload --sparse of a thin LUN against qemu-img convert,
    whole processes; the outputs go to the backing files' directory (tmpfs with shm)."""
    with target() as tgt:
        _thin_target(tgt, size, mapped)
        warm(tgt, 4 * MiB)
        env = dict(os.environ, POOLBACKEND_STATE_DIR=str(work / "state-thin"), PYTHONPATH=str(ROOT))
        cli("pool-create", str(pool_xml(work / "pt.xml", "benchthin", tgt)), env=env)
        ours_out, qemu_out = tgt.workdir / "ours.raw", tgt.workdir / "qemu.raw"
        what = f"{size // MiB} MiB thin LUN, {mapped // MiB} MiB mapped"

        def ours() -> None:
            cli("vol-download", "--sparse", "--pool", "benchthin", "unit:0:0:1", str(ours_out),
                env=env)  # fmt: skip

        def qemu() -> None:
            with contextlib.suppress(FileNotFoundError):
                qemu_out.unlink()
            run("qemu-img", "convert", "-f", "raw", "-O", "raw", qemu_url(tgt), str(qemu_out))

        t_ours, t_qemu = alternating(ours, qemu, runs)
        same(ours_out, qemu_out)  # identical bytes, or the bench fails
        same(ours_out, tgt.backing_path(1, 1))
        held = os.stat(ours_out).st_blocks * 512
        print(f"sparse download output holds {held // MiB} MiB of {size // MiB}", file=sys.stderr)
        rows.append(
            Row(
                f"download {what} (vol-download --sparse)",
                t_ours,
                "qemu-img convert -O raw iscsi:// FILE",
                t_qemu,
                "s",
            )
        )
        inproc = timed(lambda: asyncio.run(_sparse_download(tgt, ours_out)), runs)
        rows.append(
            Row(
                f"download {what} (in-process transfer.download sparse, no CLI start-up)",
                inproc,
                "qemu-img convert -O raw iscsi:// FILE",
                t_qemu,
                "s",
            )
        )
        startup = timed(lambda: cli("vol-list", "benchthin", env=env), runs)
        rows.append(Row("CLI start-up alone: vol-list of the same pool", startup, "-", [], "s"))
        full = timed(
            lambda: cli("vol-download", "--pool", "benchthin", "unit:0:0:1", "/dev/null", env=env),
            1,
        )
        rows.append(
            Row(
                f"download {what} (vol-download, full read)",
                full,
                "qemu-img convert -O raw iscsi:// FILE",
                t_qemu,
                "s",
            )
        )
        # upload the sparse image back over old data: random data everywhere first
        src = ours_out

        def dirty() -> None:
            fill(tgt.backing_path(1, 1), 64 * MiB)  # old data where the image has holes

        def up_ours() -> None:
            cli("vol-upload", "--sparse", "--pool", "benchthin", "unit:0:0:1", str(src), env=env)

        def up_qemu() -> None:
            run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), qemu_url(tgt))

        u_ours: list[float] = []
        u_qemu: list[float] = []
        for _ in range(runs):  # old data back before each (not timed)
            dirty()
            u_ours += timed(up_ours, 1)
            dirty()
            u_qemu += timed(up_qemu, 1)
        dirty()
        up_ours()
        same(src, tgt.backing_path(1, 1))
        held = os.stat(tgt.backing_path(1, 1)).st_blocks * 512
        print(f"after vol-upload --sparse the LUN's file holds {held // MiB} MiB", file=sys.stderr)
        rows.append(
            Row(
                f"upload {what} over old data (vol-upload --sparse)",
                u_ours,
                "qemu-img convert -n FILE iscsi://",
                u_qemu,
                "s",
            )
        )


async def _sparse_download(tgt: Tgtd, out: Path) -> None:
    async with await Session.open(Portal(tgt.host, tgt.port), IQN, SessionOptions()) as s:
        geo = await transfer.geometry(s, 1)
        with open(out, "wb") as f:
            await transfer.download(s, geo, f, sparse=True)
            f.flush()
            os.fsync(f.fileno())


def bench_thin_refresh(n: int, runs: int, rows: list[Row]) -> None:
    """The in-process scan of n thin LUNs with a little data each (one extent) against the
    same scan of n thick LUNs of another target of the same tgtd, alternating: what the
    GET LBA STATUS walk adds to a refresh."""
    thin_iqn = IQN + "-thin"
    with target() as tgt:
        tgt.new_target(1, IQN)
        tgt.add_luns(1, range(1, n + 1), 1 * MiB)
        tgt.new_target(2, thin_iqn)
        for lun in range(1, n + 1):
            with open(tgt.add_lun(2, lun, 1 * MiB, thin=True), "r+b") as f:
                f.seek(64 * 1024)
                f.write(os.urandom(4096))
        portal = Portal(tgt.host, tgt.port)

        async def refresh(iqn: str) -> None:
            s = await Session.open(portal, iqn)
            try:
                result = await scan.scan(s)
            finally:
                await s.close()
            assert len(result.luns) == n + 1 and not result.failures, result.failures
            if iqn == thin_iqn:
                assert all(i.allocation == 4096 for i in result.luns if i.block_count)

        thin, thick = alternating(
            lambda: asyncio.run(refresh(thin_iqn)), lambda: asyncio.run(refresh(IQN)), runs
        )
        what = f"refresh {n} thin LUNs, allocation walked (in-process)"
        rows.append(Row(what, thin, f"same scan of {n} thick LUNs", thick, "s"))


CASES = ("refresh", "iops", "cpu", "read", "write", "wipe", "digest", "startup", "thin")


def main() -> None:
    global USE_SHM
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--luns", default="1,128,1024", help="LUN counts for the refresh case")
    ap.add_argument("--read-mib", type=int, default=1024, help="size of the read case")
    ap.add_argument("--write-mib", type=int, default=1024, help="size of the write case")
    ap.add_argument("--wipe-mib", type=int, default=1024, help="size of the wipe case")
    ap.add_argument("--iops-seconds", type=int, default=5, help="length of each IOPS run")
    ap.add_argument("--digest-mib", type=int, default=256, help="size of the digest case")
    ap.add_argument("--thin-mib", type=int, default=4096, help="size of the thin LUN case")
    ap.add_argument("--thin-mapped-mib", type=int, default=64, help="its mapped data")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of cases")
    ap.add_argument("--no-shm", action="store_true", help="keep LUN files in the temp dir")
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 runs (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.luns = 2, "1,16"
        args.read_mib = args.write_mib = args.digest_mib = 64
        args.wipe_mib = 16
        args.thin_mib, args.thin_mapped_mib = 256, 16
    USE_SHM = not args.no_shm
    # Measure the CLI as installed: pip writes bytecode at install time, so the commands we
    # time must not recompile every module on each start (some CI shells set this variable).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    compileall.compile_dir(str(ROOT / "poolbackend"), quiet=1)
    cases = set(args.cases.split(","))
    if cases - set(CASES):
        ap.error(f"unknown cases {sorted(cases - set(CASES))}; use {', '.join(CASES)}")
    rows: list[Row] = []
    virsh = libvirtd() if cases & {"refresh", "wipe", "startup"} else None
    try:
        with tempfile.TemporaryDirectory(prefix="pb-bench-") as tmp:
            work = Path(tmp)
            if "refresh" in cases:
                luns = [int(n) for n in args.luns.split(",")]
                bench_refresh(luns, args.runs, work, rows, virsh)
            if "iops" in cases:
                bench_iops(min(args.runs, 3), 1 if args.quick else args.iops_seconds, work, rows)
            if "cpu" in cases:
                bench_cpu(min(args.runs, 3), 1 + (1 if args.quick else args.iops_seconds), rows)
            if "read" in cases:
                bench_read(args.read_mib * MiB, min(args.runs, 3), work, rows, args.quick)
            if "write" in cases:
                bench_write(args.write_mib * MiB, min(args.runs, 3), work, rows)
            if "wipe" in cases:
                bench_wipe(args.wipe_mib * MiB, min(args.runs, 3), work, rows, virsh)
            if "digest" in cases:
                bench_digest(args.digest_mib * MiB, min(args.runs, 3), rows)
            if "startup" in cases:
                bench_startup(args.runs, work, rows, virsh)
            if "thin" in cases:
                bench_thin(args.thin_mib * MiB, args.thin_mapped_mib * MiB, args.runs, work, rows)
                bench_thin_refresh(16 if args.quick else 1024, args.runs, rows)
    finally:
        if virsh is not None:
            virsh.stop()  # type: ignore[attr-defined]
    print(
        f"Machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {args.runs} runs per case (min / median).\n"
    )
    print("| case | poolbackend | reference | reference result | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


if __name__ == "__main__":
    main()
