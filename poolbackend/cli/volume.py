"""virsh's volume commands (vol-list … vol-upload) and their progress bar, each registered
next to its handler; every one calls the driver (:mod:`poolbackend.pool.driver`) only. The
volume commands libvirt's backend does not support are :mod:`poolbackend.cli.unsupported`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from poolbackend.cli.common import Commands, Setup, arg, driver, flag, no_extra, prepare, say
from poolbackend.errors import ConfigError, PoolBackendError
from poolbackend.numbers import ascii_int
from poolbackend.text import printable

if TYPE_CHECKING:
    from poolbackend.pool.model import Volume

commands = Commands()


def _pool_position(args: argparse.Namespace, extra: list[str]) -> str | None:
    """virsh takes the pool positionally or as --pool."""
    problem = no_extra(args, extra)
    if problem is None and args.pool_pos and not args.pool:
        args.pool = args.pool_pos
    return problem


def _pool_needed(args: argparse.Namespace, extra: list[str]) -> str | None:
    problem = _pool_position(args, extra)
    if problem is None and not args.pool:
        return "vol-list needs a POOL"
    return problem


_VOL = arg("vol", metavar="VOL", help="volume name (with --pool), key or path")
_CONNECT = arg("-c", "--connect", metavar="URI", help="libvirt URI for CHAP secrets")
_VOL_ARGS: tuple[Setup, ...] = (
    _VOL,
    arg("pool_pos", metavar="POOL", nargs="?", help=argparse.SUPPRESS),
    arg("--pool", required=False, help="pool name or UUID"),
    _CONNECT,
    prepare(_pool_position),
)


@commands.add(
    "vol-list",
    "list the volumes (LUNs) of an active pool",
    arg("pool_pos", metavar="POOL", nargs="?", help="pool name or UUID"),
    arg("--pool", help="pool name or UUID"),
    flag("--details", "type and sizes"),
    prepare(_pool_needed),
)
def vol_list(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_table, pretty_capacity, sort_names

    r = driver(args).active_pool(args.pool)
    by_name = {v.name: v for v in r.state.volumes}
    vols = [by_name[n] for n in sort_names(by_name)]
    if args.details:
        rows = [
            [v.name, v.path, v.type, pretty_capacity(v.capacity), pretty_capacity(v.allocation)]
            for v in vols
        ]
        print(format_table(["Name", "Path", "Type", "Capacity", "Allocation"], rows), end="")
    else:
        print(format_table(["Name", "Path"], [[v.name, v.path] for v in vols]), end="")
    return 0


def _volume(args: argparse.Namespace) -> Volume:
    return driver(args).find_volume(args.vol, args.pool)[1]


@commands.add(
    "vol-info",
    "volume type and sizes",
    *_VOL_ARGS,
    flag("--bytes", "sizes in bytes"),
    flag(
        "--scsi",
        "also the LUN, the QEMU LUN attach-volume uses, device type, block size and the "
        "provisioning facts asked from the target (LBPME/LBPRZ, VPD 0xB2 and 0xB0)",
    ),
)
def vol_info(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_labelled, pretty_capacity

    v = _volume(args)

    def size(n: int) -> str:
        return f"{n} bytes" if args.bytes else pretty_capacity(n)

    pairs = [
        ("Name:", v.name),
        ("Type:", v.type),
        ("Capacity:", size(v.capacity)),
        ("Allocation:", size(v.allocation)),
    ]
    if args.scsi:  # what libvirt cannot show: the LUN behind the volume
        r = v.reported
        pairs += [
            ("LUN:", str(v.lun)),
            # what attach-volume writes as <source name='IQN/N'> and the bytes behind it
            ("QEMU LUN:", "unknown (run pool-refresh)" if r is None else str(r.qemu)),
            ("Reported as:", "unknown (run pool-refresh)" if r is None else r.hex),
            ("Device type:", f"{v.device_type_name} ({v.device_type})"),
            ("Block size:", str(v.block_size)),
            ("Vendor:", v.vendor or "-"),
            ("Product:", v.product or "-"),
        ]
        if v.is_disk:  # asked live: LBPME/LBPRZ, VPD 0xB0/0xB2 (pool/thin.py)
            try:
                pairs += driver(args).volume_provisioning(args.vol, args.pool).lines()
            except PoolBackendError as exc:
                pairs.append(("Provisioning:", f"unknown ({exc})"))
    print(format_labelled(pairs), end="")
    return 0


@commands.add("vol-dumpxml", "the volume XML", *_VOL_ARGS)
def vol_dumpxml(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.volume import format_volume_xml

    print(format_volume_xml(_volume(args)))  # virsh ends dumps with a blank line
    return 0


@commands.add("vol-key", "the volume key", *_VOL_ARGS)
def vol_key(args: argparse.Namespace) -> int:
    print(_volume(args).key + "\n")
    return 0


@commands.add("vol-path", "the volume path", *_VOL_ARGS)
def vol_path(args: argparse.Namespace) -> int:
    print(_volume(args).path + "\n")
    return 0


@commands.add("vol-name", "the volume name from its key or path", *_VOL_ARGS)
def vol_name(args: argparse.Namespace) -> int:
    # virsh's vol-name has no --pool (so no "--pool might help"); ours honours one if given
    print(driver(args).find_volume(args.vol, args.pool, pool_option=None)[1].name + "\n")
    return 0


@commands.add("vol-pool", "the pool of a volume key or path", *_VOL_ARGS)
def vol_pool(args: argparse.Namespace) -> int:
    record = driver(args).find_volume(args.vol, args.pool, pool_option=None)[0]
    print(record.pool.name + "\n")
    return 0


class _Bar:
    """A progress bar on stderr, only when stdout is a terminal.

    A total of 0 means it is not known (reading from a pipe): the bar then shows the bytes
    done so far instead of a percentage.
    """

    def __init__(self, label: str) -> None:
        self.label = printable(label)
        self.enabled = sys.stdout.isatty() and sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if total <= 0:  # unknown total (reading a pipe): the amount so far, each MiB
            step = done >> 20
            if step != self._last:
                self._last = step
                from poolbackend.cli.table import pretty_capacity

                text = f"\r{self.label} {pretty_capacity(done)}"
                print(f"{text:<40}", end="", file=sys.stderr, flush=True)
            return
        pct = min(100, done * 100 // total)
        if pct != self._last:
            self._last = pct
            bar = "#" * (pct // 4)
            print(f"\r{self.label} [{bar:<25}] {pct:3d} %", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self._last >= 0:
            print(file=sys.stderr)


@commands.add(
    "vol-wipe",
    "overwrite every block of a volume",
    *_VOL_ARGS,
    arg(
        "--algorithm",
        default="zero",
        help="zero (default), trim, nnsa, dod, bsi, gutmann, schneier, pfitzner7, "
        "pfitzner33, random",
    ),
)
def vol_wipe(args: argparse.Namespace) -> int:
    bar = _Bar("Wiping")
    try:
        driver(args).wipe(args.vol, args.pool, args.algorithm, bar)
    finally:
        bar.close()
    say(f"Vol {args.vol} wiped")
    return 0


def _size_arg(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return ascii_int(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a non-negative number of bytes, not '{printable(value)}'"
        ) from None


def _transfer_args(file_help: str) -> tuple[Setup, ...]:
    return (
        _VOL,
        arg("file", metavar="FILE", help=file_help),
        arg("--pool", help="pool name or UUID"),
        arg("--offset", help="byte offset in the volume"),
        arg("--length", help="number of bytes (default: to the end)"),
        _CONNECT,
    )


@commands.add(
    "vol-download",
    "copy a volume's data to FILE",
    *_transfer_args(
        "file to write, - for standard output (a file is replaced only when the download succeeded)"
    ),
    flag(
        "--sparse",
        "read only the mapped extents of a thin LUN (GET LBA STATUS) and leave holes for "
        "unmapped and zero blocks (zeros are written to a pipe or device)",
    ),
)
def vol_download(args: argparse.Namespace) -> int:
    from poolbackend.cli import localfile

    offset = _size_arg(args.offset, "--offset") or 0
    length = _size_arg(args.length, "--length")
    d = driver(args)
    d.find_volume(args.vol, args.pool)  # fail before anything else
    out = localfile.Output(args.file)  # checks the output; touches nothing
    localfile.interrupt_on_sigterm()
    bar = _Bar("Downloading")
    try:
        d.download(
            args.vol,
            args.pool,
            out.open,
            offset=offset,
            length=length,
            sparse=args.sparse,  # reads only the mapped extents of a thin LUN
            holes=out.holes,  # a fresh file gets holes; elsewhere zeros are written
            progress=bar,
        )
        out.commit()
    except OSError as exc:
        raise out.error(exc) from None
    finally:
        out.abort()  # nothing new is left behind unless committed
        bar.close()
    return 0


@commands.add(
    "vol-upload",
    "write FILE's data into a volume",
    *_transfer_args("file to read, - for standard input"),
    flag(
        "--sparse",
        "turn the file's holes and zero blocks into UNMAP (thin LUN reading zeros there) or "
        "WRITE SAME of zeros, instead of writing every zero",
    ),
    flag("--force", "upload an image file (qcow2, vmdk, vhdx, ...) byte for byte anyway"),
)
def vol_upload(args: argparse.Namespace) -> int:
    from poolbackend.cli import localfile

    offset = _size_arg(args.offset, "--offset") or 0
    length = _size_arg(args.length, "--length")
    src = localfile.Input(args.file, force=args.force)  # a regular file is checked now
    localfile.interrupt_on_sigterm()
    bar = _Bar("Uploading")
    try:
        driver(args).upload(
            args.vol,
            args.pool,
            src.open,
            offset=offset,
            length=length,
            sparse=args.sparse,  # holes and zero blocks deallocated (pool/sparse.py)
            progress=bar,
        )
    except OSError as exc:
        raise src.error(exc) from None
    finally:
        src.close()
        bar.close()
    return 0
