"""The volume commands libvirt's iscsi-direct backend does not support, with virsh's syntax.

vol-create-as, vol-create, vol-create-from, vol-clone, vol-delete and vol-resize take the same
positionals and options as virsh and make the same checks in the same order as virsh and
libvirt's storage driver (``tools/virsh-volume.c``, ``src/storage/storage_driver.c``), so a
script sees the same error for the same mistake; a well-formed request ends in libvirt's
"this function is not supported by the connection driver: …" line. Nothing is changed.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from poolbackend.cli.common import driver
from poolbackend.errors import ConfigError, PoolBackendError, StateError

if TYPE_CHECKING:
    from poolbackend.pool.driver import PoolRecord
    from poolbackend.pool.model import Volume, VolumeSpec

_SIZE = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)(.*)", re.DOTALL)


def virsh_size(text: str) -> int:
    """A size as virsh reads it (``virshVolSize``: an unsigned number and an optional unit,
    default bytes); anything else is virsh's ``Malformed size <text>``."""
    from poolbackend.pool.naming import printable
    from poolbackend.pool.xml.libvirt_checks import scale_integer

    match = _SIZE.fullmatch(text)
    if match:
        try:
            return scale_integer(int(match.group(1)), match.group(2) or None)
        except ConfigError:
            pass
    raise ConfigError(f"Malformed size {printable(text)}")


def _not_supported(what: str) -> PoolBackendError:
    from poolbackend.pool.driver import not_supported

    return not_supported(what)


def _by_name(record: PoolRecord, name: str) -> Volume | None:
    return next((v for v in record.state.volumes if v.name == name), None)


def _exists(name: str) -> PoolBackendError:
    from poolbackend.pool.naming import printable

    return PoolBackendError(f"storage volume '{printable(name)}' exists already")


def _create(record: PoolRecord, name: str, capacity: int | None) -> None:
    """storageVolCreateXML's checks after parsing: capacity, name clash, createVol."""
    if not capacity:  # the backend has no buildVol either
        raise _not_supported("volume capacity required for this storage pool")
    if _by_name(record, name) is not None:
        raise _exists(name)
    raise _not_supported("storage pool does not support volume creation")


def _create_from(record: PoolRecord, name: str) -> None:
    """storageVolCreateXMLFrom's checks after parsing: name clash, buildVolFrom."""
    from poolbackend.pool.naming import printable

    if _by_name(record, name) is not None:
        raise PoolBackendError(
            f"internal error: storage volume name '{printable(name)}' already in use."
        )
    raise _not_supported("storage pool does not support volume creation from an existing volume")


def vol_create_as(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.volume import format_volume_request_xml

    d = driver(args)
    record = d.lookup_pool(args.pool)
    capacity = virsh_size(args.capacity)
    allocation = virsh_size(args.allocation) if args.allocation is not None else None
    backing = None
    if args.backing_vol:  # virsh: a name in POOL, else a key or path of any pool
        backing = d.find_volume(
            args.backing_vol, record.pool.name, pool_option=None, any_pool=True
        )[1]
    if args.print_xml:  # virsh prints the XML it would send, without asking the driver
        print(
            format_volume_request_xml(
                args.name,
                capacity,
                allocation,
                args.format,
                backing.path if backing else None,
                args.backing_vol_format,
            ),
            end="",
        )
        return 0
    _create(d.active_pool(record.pool.name), args.name, capacity)
    return 1  # not reached: _create always raises


def _volume_xml(path: str) -> bytes:
    from poolbackend.cli.common import read_xml

    return read_xml(path, "volume XML file")


def _parse_volume(data: bytes, args: argparse.Namespace) -> VolumeSpec:
    from poolbackend.pool.xml.volume import parse_volume_xml

    return parse_volume_xml(
        data, source_name=args.file, capacity_optional=True, validate=args.validate
    )


def vol_create(args: argparse.Namespace) -> int:
    d = driver(args)
    record = d.lookup_pool(args.pool)
    data = _volume_xml(args.file)
    record = d.active_pool(record.pool.name)
    spec = _parse_volume(data, args)
    _create(record, spec.name, spec.capacity)
    return 1


def vol_create_from(args: argparse.Namespace) -> int:
    d = driver(args)
    record = d.lookup_pool(args.pool)
    d.find_volume(args.vol, args.inputpool, pool_option="inputpool")
    data = _volume_xml(args.file)
    record = d.active_pool(record.pool.name)
    _create_from(record, _parse_volume(data, args).name)
    return 1


def vol_clone(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from poolbackend.pool.xml.volume import format_volume_xml

    d = driver(args)
    record, vol = d.find_volume(args.vol, args.pool)
    if args.print_xml:
        print(format_volume_xml(replace(vol, name=args.newname)), end="")
        return 0
    _create_from(record, args.newname)
    return 1


def vol_delete(args: argparse.Namespace) -> int:
    driver(args).find_volume(args.vol, args.pool)
    raise _not_supported("storage pool does not support vol deletion")


def vol_resize(args: argparse.Namespace) -> int:
    text = args.capacity.lstrip(" \t\n\v\f\r")
    if text.startswith("-"):  # virsh allows a negative delta for convenience, with --shrink
        if not args.shrink:
            raise ConfigError("negative size requires --shrink")
        text = text[1:]
    capacity = virsh_size(text)
    record, vol = driver(args).find_volume(args.vol, args.pool)
    if args.delta:
        new = vol.capacity - min(capacity, vol.capacity) if args.shrink else vol.capacity + capacity
    else:
        new = capacity
    if new < vol.allocation:
        raise ConfigError("invalid argument: can't shrink capacity below existing allocation")
    if new < vol.capacity and not args.shrink:
        raise ConfigError(
            "invalid argument: Can't shrink capacity below current capacity unless shrink "
            "flag explicitly specified"
        )
    if args.allocate and new - vol.allocation > record.state.available:
        raise StateError("operation failed: Not enough space left in storage pool")
    raise _not_supported("storage pool does not support changing of volume capacity")


# -- registration ------------------------------------------------------------------------
_POOL_HELP = "pool name or UUID"
_VOL_HELP = "volume name (with --pool), key or path"
_PREALLOC = "preallocate metadata (accepted like virsh; nothing is created)"


def register(sub: Any, cmd: Any) -> None:
    me = "unsupported:"
    tail = " (not supported for iscsi-direct pools, as in libvirt)"

    def size(p: argparse.ArgumentParser, name: str, text: str) -> None:
        p.add_argument(name, metavar=name.upper(), help=text)

    p = cmd(sub, "vol-create-as", me + "vol_create_as", "create a volume" + tail)
    p.add_argument("pool", metavar="POOL", help=_POOL_HELP)
    p.add_argument("name", metavar="NAME", help="name of the new volume")
    size(p, "capacity", "size of the volume, as scaled integer (default bytes)")
    p.add_argument("--allocation", help="initial allocation size, as scaled integer")
    p.add_argument("--format", help="file format type (raw, qcow2, ...)")
    p.add_argument("--backing-vol", help="the backing volume if taking a snapshot")
    p.add_argument("--backing-vol-format", help="format of the backing volume")
    p.add_argument("--prealloc-metadata", action="store_true", help=_PREALLOC)
    p.add_argument("--print-xml", action="store_true", help="print the volume XML and stop")

    p = cmd(sub, "vol-create", me + "vol_create", "create a volume from an XML file" + tail)
    p.add_argument("pool", metavar="POOL", help=_POOL_HELP)
    p.add_argument("file", metavar="FILE", help="file containing an XML volume description")
    p.add_argument("--prealloc-metadata", action="store_true", help=_PREALLOC)
    p.add_argument("--validate", action="store_true", help="validate the XML against the schema")

    p = cmd(
        sub,
        "vol-create-from",
        me + "vol_create_from",
        "create a volume from another volume" + tail,
    )
    p.add_argument("pool", metavar="POOL", help=_POOL_HELP)
    p.add_argument("file", metavar="FILE", help="file containing an XML volume description")
    p.add_argument("vol", metavar="VOL", help="input " + _VOL_HELP)
    p.add_argument("--inputpool", help="pool name or UUID of the input volume's pool")
    p.add_argument("--prealloc-metadata", action="store_true", help=_PREALLOC)
    p.add_argument("--reflink", action="store_true", help="use a COW copy (accepted like virsh)")
    p.add_argument("--validate", action="store_true", help="validate the XML against the schema")

    p = cmd(sub, "vol-clone", me + "vol_clone", "clone a volume" + tail)
    p.add_argument("vol", metavar="VOL", help=_VOL_HELP)
    p.add_argument("newname", metavar="NEWNAME", help="name of the clone")
    p.add_argument("--pool", help=_POOL_HELP)
    p.add_argument("--prealloc-metadata", action="store_true", help=_PREALLOC)
    p.add_argument("--reflink", action="store_true", help="use a COW copy (accepted like virsh)")
    p.add_argument("--print-xml", action="store_true", help="print the clone's XML and stop")

    p = cmd(sub, "vol-delete", me + "vol_delete", "delete a volume" + tail)
    p.add_argument("vol", metavar="VOL", help=_VOL_HELP)
    p.add_argument("--pool", help=_POOL_HELP)
    p.add_argument(
        "--delete-snapshots", action="store_true", help="delete the volume's snapshots too"
    )

    p = cmd(sub, "vol-resize", me + "vol_resize", "change a volume's capacity" + tail)
    p.add_argument("vol", metavar="VOL", help=_VOL_HELP)
    size(p, "capacity", "new capacity, as scaled integer (default bytes); -N with --shrink")
    p.add_argument("--pool", help=_POOL_HELP)
    p.add_argument("--allocate", action="store_true", help="allocate the new capacity")
    p.add_argument("--delta", action="store_true", help="CAPACITY is a change of the size")
    p.add_argument("--shrink", action="store_true", help="allow the resize to shrink")
