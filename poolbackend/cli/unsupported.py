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
from typing import TYPE_CHECKING

from poolbackend.cli.common import Commands, arg, driver, flag
from poolbackend.errors import ConfigError, PoolBackendError, StateError
from poolbackend.text import printable

if TYPE_CHECKING:
    from poolbackend.pool.driver import PoolRecord
    from poolbackend.pool.model import Volume, VolumeSpec

commands = Commands()
_TAIL = " (not supported for iscsi-direct pools, as in libvirt)"
_POOL_HELP = "pool name or UUID"
_VOL_HELP = "volume name (with --pool), key or path"
_POOL = arg("pool", metavar="POOL", help=_POOL_HELP)
_POOL_OPT = arg("--pool", help=_POOL_HELP)
_VOL = arg("vol", metavar="VOL", help=_VOL_HELP)
_FILE = arg("file", metavar="FILE", help="file containing an XML volume description")
_PREALLOC = flag(
    "--prealloc-metadata", "preallocate metadata (accepted like virsh; nothing is created)"
)
_REFLINK = flag("--reflink", "use a COW copy (accepted like virsh)")
_VALIDATE = flag("--validate", "validate the XML against the schema")


_SIZE = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)(.*)", re.DOTALL)


def virsh_size(text: str) -> int:
    """A size as virsh reads it (``virshVolSize``: an unsigned number and an optional unit,
    default bytes); anything else is virsh's ``Malformed size <text>``."""
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
    if _by_name(record, name) is not None:
        raise PoolBackendError(
            f"internal error: storage volume name '{printable(name)}' already in use."
        )
    raise _not_supported("storage pool does not support volume creation from an existing volume")


@commands.add(
    "vol-create-as",
    "create a volume" + _TAIL,
    _POOL,
    arg("name", metavar="NAME", help="name of the new volume"),
    arg(
        "capacity", metavar="CAPACITY", help="size of the volume, as scaled integer (default bytes)"
    ),
    arg("--allocation", help="initial allocation size, as scaled integer"),
    arg("--format", help="file format type (raw, qcow2, ...)"),
    arg("--backing-vol", help="the backing volume if taking a snapshot"),
    arg("--backing-vol-format", help="format of the backing volume"),
    _PREALLOC,
    flag("--print-xml", "print the volume XML and stop"),
)
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


@commands.add(
    "vol-create", "create a volume from an XML file" + _TAIL, _POOL, _FILE, _PREALLOC, _VALIDATE
)
def vol_create(args: argparse.Namespace) -> int:
    d = driver(args)
    record = d.lookup_pool(args.pool)
    data = _volume_xml(args.file)
    record = d.active_pool(record.pool.name)
    spec = _parse_volume(data, args)
    _create(record, spec.name, spec.capacity)
    return 1


@commands.add(
    "vol-create-from",
    "create a volume from another volume" + _TAIL,
    _POOL,
    _FILE,
    arg("vol", metavar="VOL", help="input " + _VOL_HELP),
    arg("--inputpool", help="pool name or UUID of the input volume's pool"),
    _PREALLOC,
    _REFLINK,
    _VALIDATE,
)
def vol_create_from(args: argparse.Namespace) -> int:
    d = driver(args)
    record = d.lookup_pool(args.pool)
    d.find_volume(args.vol, args.inputpool, pool_option="inputpool")
    data = _volume_xml(args.file)
    record = d.active_pool(record.pool.name)
    _create_from(record, _parse_volume(data, args).name)
    return 1


@commands.add(
    "vol-clone",
    "clone a volume" + _TAIL,
    _VOL,
    arg("newname", metavar="NEWNAME", help="name of the clone"),
    _POOL_OPT,
    _PREALLOC,
    _REFLINK,
    flag("--print-xml", "print the clone's XML and stop"),
)
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


@commands.add(
    "vol-delete",
    "delete a volume" + _TAIL,
    _VOL,
    _POOL_OPT,
    flag("--delete-snapshots", "delete the volume's snapshots too"),
)
def vol_delete(args: argparse.Namespace) -> int:
    driver(args).find_volume(args.vol, args.pool)
    raise _not_supported("storage pool does not support vol deletion")


@commands.add(
    "vol-resize",
    "change a volume's capacity" + _TAIL,
    _VOL,
    arg(
        "capacity",
        metavar="CAPACITY",
        help="new capacity, as scaled integer (default bytes); -N with --shrink",
    ),
    _POOL_OPT,
    flag("--allocate", "allocate the new capacity"),
    flag("--delta", "CAPACITY is a change of the size"),
    flag("--shrink", "allow the resize to shrink"),
)
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
