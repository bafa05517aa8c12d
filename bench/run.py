"""Benchmarks: our code and the reference implementations side by side, in one run.

``python -m bench.run`` (after scripts/install-deps.sh) starts a private tgtd, runs every case
several times and prints min/median for us and for each reference plus the ratio, as a
Markdown table. References: libiscsi's tools (iscsi-ls, iscsi-perf), libvirt's iscsi-direct
backend (virsh on a private libvirtd, when tests/harness/libvirtd.py can start one) and dd
of the backing file as the ceiling for reads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poolbackend.iscsi.aio import Session  # noqa: E402
from poolbackend.iscsi.portal import Portal  # noqa: E402
from poolbackend.pool import scan  # noqa: E402
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
    unit: str  # "s" or "MiB" (lower is better) or "MiB/s" (higher is better)

    def cells(self) -> list[str]:
        def fmt(values: list[float]) -> str:
            if not values:
                return "n/a"
            if self.unit == "MiB":
                return f"{min(values):.0f} MiB"
            if self.unit == "s":
                return f"{min(values) * 1000:.1f} / {statistics.median(values) * 1000:.1f} ms"
            return f"{max(values):.0f} / {statistics.median(values):.0f} MiB/s"

        ratio = "n/a"
        if self.ours and self.ref:
            a, b = statistics.median(self.ours), statistics.median(self.ref)
            ratio = f"{a / b:.2f}x time" if self.unit == "s" else f"{a / b:.2f}x speed"
        return [self.case, fmt(self.ours), self.ref_name, fmt(self.ref), ratio]


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def cli(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "poolbackend", *args], env=env, check=True, capture_output=True
    )


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
    with Tgtd.start() as tgt:
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


def bench_read(size: int, runs: int, work: Path, rows: list[Row]) -> None:
    with Tgtd.start() as tgt:
        tgt.new_target(1, IQN)
        backing = tgt.add_lun(1, 1, size)
        with open(backing, "r+b") as f:  # real data, not a sparse file
            chunk = os.urandom(4 * MiB)
            for _ in range(size // len(chunk)):
                f.write(chunk)
        env = dict(os.environ, POOLBACKEND_STATE_DIR=str(work / "state-read"), PYTHONPATH=str(ROOT))
        cli("pool-create", str(pool_xml(work / "pr.xml", "benchread", tgt)), env=env)
        rss: list[int] = []

        def download() -> None:
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            cli("vol-download", "--pool", "benchread", "unit:0:0:1", "/dev/null", env=env)
            rss.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))

        ours = [size / MiB / t for t in timed(download, runs)]
        perf: list[float] = []
        for _ in range(runs):
            out = subprocess.run(
                [
                    "iscsi-perf",
                    "-b",
                    "2048",
                    "-m",
                    "16",
                    "-t",
                    "5",
                    f"iscsi://{tgt.portal}/{IQN}/1",
                ],
                capture_output=True,
                text=True,
            )
            found = re.findall(r"iops average \d+ \((\d+) MB/s\)", out.stdout)
            if found:
                perf.append(float(found[-1]))
        rows.append(
            Row(
                f"sequential read {size // MiB} MiB (vol-download)",
                ours,
                "iscsi-perf -b 2048 -m 16",
                perf,
                "MiB/s",
            )
        )
        dd = [
            size / MiB / t
            for t in timed(
                lambda: subprocess.run(
                    ["dd", f"if={backing}", "of=/dev/null", "bs=4M"],
                    check=True,
                    capture_output=True,
                ),
                runs,
            )
        ]
        rows.append(
            Row(
                f"sequential read {size // MiB} MiB (vol-download)",
                ours,
                "dd of the backing file (ceiling)",
                dd,
                "MiB/s",
            )
        )
        print(f"peak RSS of vol-download: {max(rss) / 1024:.0f} MiB", file=sys.stderr)
        rows.append(Row("peak RSS of vol-download", [max(rss) / 1024], "-", [], "MiB"))


def bench_startup(runs: int, work: Path, rows: list[Row], virsh: object | None) -> None:
    with Tgtd.start() as tgt:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--luns", default="1,128,1024", help="LUN counts for the refresh case")
    ap.add_argument("--read-mib", type=int, default=1024, help="size of the read case")
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 runs (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.luns, args.read_mib = 2, "1,16", 64
    rows: list[Row] = []
    virsh = libvirtd()
    try:
        with tempfile.TemporaryDirectory(prefix="pb-bench-") as tmp:
            work = Path(tmp)
            bench_refresh([int(n) for n in args.luns.split(",")], args.runs, work, rows, virsh)
            bench_read(args.read_mib * MiB, min(args.runs, 3), work, rows)
            bench_startup(args.runs, work, rows, virsh)
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
