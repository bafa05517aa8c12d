"""The libvirt ``<disk type='network'>`` of a pool volume: the element attach-volume writes
and the tests that find it again in a domain's XML (detach-volume, "already attached").

QEMU opens the LUN itself (its libiscsi driver), so the disk names the pool's portal, target,
initiator and CHAP secret, and the LUN by its QEMU number (:func:`source_name`). A disk is
found again by its iSCSI source, never by its target device name. The conversation with
libvirt is :mod:`poolbackend.pool.attach`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from poolbackend.errors import ConfigError
from poolbackend.pool import naming
from poolbackend.pool.model import PoolDef, Volume
from poolbackend.scsi.lun import decode_lun, refusal
from poolbackend.text import printable

BUSES = ("virtio", "scsi", "sata")
DEVICES = ("disk", "lun")
_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd"}
_TARGET_RE = re.compile(r"(vd|sd)([a-z]{1,3})")


@dataclass(frozen=True, slots=True)
class DiskOptions:
    """How the volume appears in the guest; ``None`` fields are chosen automatically.

    ``bus`` defaults from the target's prefix (``vd`` virtio, ``sd`` scsi), else scsi for
    ``device='lun'`` (SCSI pass-through needs a SCSI bus) and virtio otherwise.
    """

    target: str | None = None
    bus: str | None = None
    device: str = "disk"


# ------------------------------------------------------------------ the disk we write


def source_name(pool: PoolDef, volume: Volume) -> str:
    """The ``<source name>`` QEMU's iSCSI driver wants: ``TARGET-IQN/N``.

    N is the LUN's QEMU number (the first two bytes the target reported, big-endian), not the
    volume's LUN number: libiscsi copies N raw into the LUN field, so tgt's LUN 300 (reported
    ``41 2c``) is N = 16684, and N = 300 would reach LUN 44.
    """
    return f"{pool.source.target_iqn}/{volume.address(pool.name).qemu}"


def resolve_bus(options: DiskOptions) -> str:
    """The bus for *options*, refusing combinations libvirt or QEMU cannot honour."""
    if options.device not in DEVICES:
        raise ConfigError(
            f"unsupported disk device '{printable(options.device)}': expected disk or lun"
        )
    if options.bus is not None and options.bus not in BUSES:
        raise ConfigError(
            f"unsupported bus '{printable(options.bus)}': expected {', '.join(BUSES)}"
        )
    bus = options.bus
    if options.target is not None:
        match = _TARGET_RE.fullmatch(options.target)
        if match is None:
            raise ConfigError(
                f"invalid target device '{printable(options.target)}': expected vdX (virtio) or "
                "sdX (scsi, sata), X being letters a-z"
            )
        if bus is None:
            bus = "virtio" if match.group(1) == "vd" else "scsi"
        elif _PREFIX[bus] != match.group(1):
            raise ConfigError(
                f"target device '{printable(options.target)}' does not fit bus '{bus}': "
                f"use {_PREFIX[bus]}X for {bus}"
            )
    if bus is None:
        bus = "scsi" if options.device == "lun" else "virtio"
    if options.device == "lun" and bus != "scsi":
        raise ConfigError(f"device 'lun' (SCSI pass-through) needs bus 'scsi', not '{bus}'")
    return bus


def disk_xml(pool: PoolDef, volume: Volume, *, target: str, bus: str, device: str = "disk") -> str:
    """libvirt's ``<disk type='network'>`` element for *volume* of *pool*."""
    disk = etree.Element("disk", type="network", device=device)
    etree.SubElement(disk, "driver", name="qemu", type="raw", cache="none")
    src = etree.SubElement(disk, "source", protocol="iscsi", name=source_name(pool, volume))
    host, port = naming.connect_address(pool.source.host, pool.source.port)
    etree.SubElement(src, "host", name=host, port=str(port))
    initiator = etree.SubElement(src, "initiator")
    etree.SubElement(initiator, "iqn", name=pool.source.initiator_iqn)
    auth = pool.source.auth
    if auth is not None:
        auth_el = etree.SubElement(src, "auth", username=auth.username)
        if auth.secret_uuid:
            etree.SubElement(auth_el, "secret", type="iscsi", uuid=auth.secret_uuid)
        else:
            etree.SubElement(auth_el, "secret", type="iscsi", usage=auth.secret_usage or "")
    etree.SubElement(disk, "target", dev=target, bus=bus)
    etree.indent(disk, space="  ")
    return etree.tostring(disk, encoding="unicode") + "\n"


def index_to_name(prefix: str, index: int) -> str:
    """libvirt's disk naming: 0 → ``vda``, 25 → ``vdz``, 26 → ``vdaa``."""
    letters = ""
    index += 1
    while index > 0:
        index -= 1
        letters = chr(ord("a") + index % 26) + letters
        index //= 26
    return prefix + letters


def next_free_target(used: set[str], bus: str) -> str:
    prefix = _PREFIX[bus]
    index = 0
    while index_to_name(prefix, index) in used:
        index += 1
    return index_to_name(prefix, index)


# ------------------------------------------------------------- finding it in a domain


def domain_disks(domain_xml: str) -> list[etree._Element]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(domain_xml.encode(), parser)
    return list(root.iterfind("./devices/disk"))


def target_dev(disk: etree._Element) -> str:
    target = disk.find("target")
    return "" if target is None else target.get("dev", "")


def is_volume(disk: etree._Element, pool: PoolDef, volume: Volume) -> bool:
    """True when *disk* is an iSCSI disk of *pool*'s portal that QEMU opens as *volume*.

    It is compared by the QEMU number (what QEMU sends decides which LUN it reaches), so a
    disk written by an older version as ``IQN/300`` for tgt's LUN 300 is not that volume
    (see :func:`poolbackend.pool.attach.detach_volume`).
    """
    return is_qemu_lun(disk, pool, volume.address(pool.name).qemu)


def is_qemu_lun(disk: etree._Element, pool: PoolDef, qemu: int) -> bool:
    return is_disk_of(disk, pool, lambda number: number == qemu)


def disk_qemu_number(disk: etree._Element, pool: PoolDef) -> int | None:
    """The QEMU LUN number of an iSCSI disk of *pool*'s portal and target, else None."""
    src = disk.find("source")
    if disk.get("type") != "network" or src is None or src.get("protocol") != "iscsi":
        return None
    name = src.get("name") or ""
    iqn = pool.source.target_iqn
    if name == iqn:
        number = 0
    else:
        text = name[len(iqn) + 1 :] if name.startswith(iqn + "/") else ""
        if not (text.isascii() and text.isdigit()) or str(int(text)) != text:
            return None
        number = int(text)
    want_host, want_port = naming.connect_address(pool.source.host, pool.source.port)
    for host in src.iterfind("host"):
        port = int(host.get("port") or naming.DEFAULT_PORT)
        if host.get("name") == want_host and port == want_port:
            return number
    return None


def is_disk_of(disk: etree._Element, pool: PoolDef, accept: Callable[[int], bool]) -> bool:
    number = disk_qemu_number(disk, pool)
    return number is not None and accept(number)


def reaches_lun(qemu: int, lun: int) -> bool:
    """True when QEMU's LUN number *qemu* (sent raw as the first two bytes of the LUN field)
    addresses LUN *lun* in peripheral (bus 0) or flat space addressing.

    Peripheral addressing with bus bits (``01 2c`` = QEMU number 300) is LUN 300 on Linux's
    LIO but LUN 44 on tgt, which ignores the bus: without the target's report (the pool is
    inactive) such a disk is nobody's.
    """
    if not 0 <= qemu <= 0xFFFF:
        return False
    entry = qemu.to_bytes(2, "big") + bytes(6)
    if entry[0] >> 6 == 0b00 and entry[0] != 0:
        return False
    return refusal(entry) is None and decode_lun(entry) == lun
