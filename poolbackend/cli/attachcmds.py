"""attach-volume / detach-volume: a pool volume as a libvirt network disk of a VM, each
registered next to its handler."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from poolbackend.cli.common import Commands, arg, flag
from poolbackend.text import emit, printable

commands = Commands()


def _placement(args: argparse.Namespace) -> Any:
    from poolbackend.pool.attach import Placement

    return Placement(live=args.live, config=args.config, persistent=args.persistent)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("domain", metavar="DOMAIN", help="domain name, id or UUID")
    p.add_argument("vol", metavar="VOL", help="volume name (with --pool), key or path")
    p.add_argument("--pool", help="pool name or UUID")
    p.add_argument("-c", "--connect", metavar="URI", help="libvirt URI of the VM's hypervisor")
    when = p.add_argument_group("which definition changes (default: the current state)")
    when.add_argument("--live", action="store_true", help="the running domain")
    when.add_argument("--config", action="store_true", help="the persistent definition")
    when.add_argument(
        "--persistent",
        action="store_true",
        help="the persistent definition, and the running domain if it runs",
    )


@commands.add(
    "attach-volume",
    "attach a pool volume to a VM as an iSCSI network disk (QEMU opens the LUN)",
    _common,
    arg("--target", metavar="DEV", help="vdX or sdX (default: next free)"),
    arg("--bus", choices=("virtio", "scsi", "sata"), help="default from --target"),
    arg("--device", choices=("disk", "lun"), default="disk", help="lun: SCSI pass-through"),
    flag("--print-xml", "print the disk XML, change nothing"),
    flag(
        "--define-secret",
        "copy the pool's CHAP secret value from the local store into libvirt, defining "
        "the secret there or replacing a stale value (the value is never shown)",
    ),
)
def cmd_attach(args: argparse.Namespace) -> int:
    from poolbackend.pool.attach import attach_volume
    from poolbackend.pool.xml.disk import DiskOptions

    result = attach_volume(
        args.domain,
        args.vol,
        pool=args.pool,
        options=DiskOptions(target=args.target, bus=args.bus, device=args.device),
        placement=_placement(args),
        uri=args.connect,
        define_secret=args.define_secret,
        print_only=args.print_xml,
    )
    if args.print_xml:
        sys.stdout.write(result.xml)
        return 0
    for warning in result.warnings:
        emit("warning", warning)
    print(f"Disk attached successfully as '{result.target}' (bus {result.bus})\n")
    return 0


@commands.add(
    "detach-volume",
    "detach a pool volume's disk from a VM (found by its iSCSI source)",
    _common,
)
def cmd_detach(args: argparse.Namespace) -> int:
    from poolbackend.pool.attach import detach_volume

    result = detach_volume(
        args.domain, args.vol, pool=args.pool, placement=_placement(args), uri=args.connect
    )
    if not result.completed:
        emit(
            "warning",
            f"detach of '{result.target}' requested; the guest of domain "
            f"'{printable(result.domain)}' has not released it yet (it will disappear when it "
            "does)",
        )
        print("Disk detach requested\n")
        return 0
    print(f"Disk detached successfully ('{result.target}')\n")
    return 0
