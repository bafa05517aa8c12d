"""Putting a pool volume into a VM: attach-volume and detach-volume against libvirt.

QEMU opens the LUN itself (its libiscsi driver), so the disk is a libvirt ``network`` disk
naming the pool's portal, target and initiator, not a path on the host; that element, and
how a disk is found again in a domain's XML, are :mod:`poolbackend.pool.xml.disk`. Here:
the domain (lookup, placement flags, the live and persistent XML), the checks before an
attach, detach of a disk also for an inactive pool and of disks older versions wrote, and
the CHAP secret: QEMU reads the password from libvirt's secret driver only, and
``define_secret`` copies it there from our store. libvirt-python is imported only here and
in the secret helpers. The pool side comes from the driver (:mod:`poolbackend.pool.driver`)
only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from poolbackend.errors import ConfigError, NotFoundError, PoolBackendError, StateError
from poolbackend.numbers import is_ascii_uint
from poolbackend.pool import naming
from poolbackend.pool.driver import Driver, PoolRecord
from poolbackend.pool.libvirt_conn import import_libvirt, libvirt_message, open_connection
from poolbackend.pool.model import PoolDef, Volume
from poolbackend.pool.xml.disk import (
    DiskOptions,
    disk_xml,
    domain_disks,
    is_disk_of,
    is_qemu_lun,
    is_volume,
    next_free_target,
    reaches_lun,
    resolve_bus,
    target_dev,
)
from poolbackend.scsi.lun import MAX_LUN, Lun

DETACH_WAIT_SECONDS = 5.0

# virDomainModificationImpact
AFFECT_CURRENT = 0
AFFECT_LIVE = 1
AFFECT_CONFIG = 2


@dataclass(frozen=True, slots=True)
class Placement:
    """Which domain definitions change: libvirt's --live / --config / --persistent."""

    live: bool = False
    config: bool = False
    persistent: bool = False

    def flags(self, domain_active: bool) -> int:
        if self.persistent:
            return AFFECT_CONFIG | (AFFECT_LIVE if domain_active else 0)
        flags = (AFFECT_LIVE if self.live else 0) | (AFFECT_CONFIG if self.config else 0)
        return flags or AFFECT_CURRENT


@dataclass(frozen=True, slots=True)
class AttachResult:
    """What was (or, with print_only, would be) attached."""

    domain: str
    target: str
    bus: str
    xml: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DetachResult:
    domain: str
    target: str
    #: False when the guest has not released a live disk yet (unplug still pending)
    completed: bool = True


# ----------------------------------------------------------------------------- domain


class _Domain:
    """A libvirt domain plus the XML views a change with *flags* touches."""

    def __init__(self, conn: Any, name: str) -> None:
        libvirt = import_libvirt()
        self.libvirt = libvirt
        self.handle = _lookup_domain(conn, name)
        self.name = self.handle.name()
        self.active = bool(self.handle.isActive())

    def disks(self, flags: int) -> list[etree._Element]:
        """The ``<disk>`` elements of the live and/or persistent XML a change with *flags*
        touches."""
        live = bool(flags & AFFECT_LIVE) or (flags == AFFECT_CURRENT and self.active)
        config = bool(flags & AFFECT_CONFIG) or (flags == AFFECT_CURRENT and not self.active)
        disks: list[etree._Element] = []
        try:
            if live:
                disks += domain_disks(self.handle.XMLDesc(0))
            if config:
                disks += domain_disks(self.handle.XMLDesc(self.libvirt.VIR_DOMAIN_XML_INACTIVE))
        except self.libvirt.libvirtError as exc:
            raise PoolBackendError(
                f"cannot read the XML of domain '{self.name}': {libvirt_message(exc)}"
            ) from None
        return disks

    def disk_of(self, flags: int, pool: PoolDef, volume: Volume) -> etree._Element | None:
        """The disk that is *volume*, found by its iSCSI source, or None."""
        return self.disk_matching(flags, lambda d: is_volume(d, pool, volume))

    def disk_matching(
        self, flags: int, match: Callable[[etree._Element], bool]
    ) -> etree._Element | None:
        return next((d for d in self.disks(flags) if match(d)), None)


def _q(text: str) -> str:
    """Outside text (names from argv, XML or libvirt) made safe for a message."""
    return naming.printable(text)


def _lookup_domain(conn: Any, name: str) -> Any:
    libvirt = import_libvirt()
    not_found = NotFoundError(f"failed to get domain '{_q(name)}': no such domain")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv: no domain can have this name
        raise not_found from None
    lookups: list[Callable[[], Any]] = [lambda: conn.lookupByName(name)]
    if is_ascii_uint(name) and int(name) < 2**31:  # a domain id (a C int in libvirt)
        lookups.append(lambda: conn.lookupByID(int(name)))
    lookups.append(lambda: conn.lookupByUUIDString(name))
    for lookup_fn in lookups:
        try:
            return lookup_fn()
        except libvirt.libvirtError:
            continue
    raise not_found


def _volume_of(driver: Driver, vol: str, pool_name: str | None) -> tuple[PoolRecord, Volume]:
    record, volume = driver.find_volume(vol, pool_name)
    volume.address(record.pool.name)  # a state file without the reported LUN: refresh first
    if not volume.is_disk:
        raise ConfigError(
            f"volume '{volume.name}' of pool '{_q(record.pool.name)}' is LUN {volume.lun}, a "
            f"{volume.device_type_name} device, not a disk: it cannot be attached as a disk"
        )
    return record, volume


def _check_libvirt_secret(
    conn: Any, pool: PoolDef, driver: Driver, define_secret: bool, uri: str | None
) -> list[str]:
    from poolbackend.pool.libvirt_secrets import (
        copy_secret_to_libvirt,
        find_secret,
        set_libvirt_secret_value,
    )

    auth = pool.source.auth
    if auth is None:
        return []
    warnings = []
    if auth.mutual:
        warnings.append(
            f"pool '{_q(pool.name)}' uses mutual CHAP; QEMU's iSCSI driver authenticates only "
            "the initiator, so the VM's connection does not verify the target"
        )
    ref = (
        f"uuid '{_q(auth.secret_uuid)}'"
        if auth.secret_uuid
        else f"usage '{_q(auth.secret_usage or '')}'"
    )
    existing = find_secret(conn, uuid=auth.secret_uuid, usage=auth.secret_usage)
    if existing is not None and not define_secret:
        return warnings
    where = uri or "the default libvirt URI"
    if not define_secret:
        raise StateError(
            f"the CHAP secret of pool '{_q(pool.name)}' ({ref}) is not defined in libvirt at "
            f"{_q(where)}, where QEMU reads it: rerun with --define-secret to copy it from the "
            "local secret store"
        )
    local = driver.secret_find(auth.secret_uuid or auth.secret_usage or "")
    if local is None:
        raise NotFoundError(
            f"cannot copy the CHAP secret of pool '{_q(pool.name)}' to libvirt: no local secret "
            f"with {ref} (define it with secret-define and secret-set-value)"
        )
    value = driver.secret_value(uuid=auth.secret_uuid, usage=auth.secret_usage)
    if existing is not None:  # after a password rotation libvirt's copy is stale: replace it
        set_libvirt_secret_value(existing, local, value.reveal())
    else:
        copy_secret_to_libvirt(conn, local, value.reveal())
    return warnings


# ------------------------------------------------------------------------- public API


def attach_volume(
    domain: str,
    vol: str,
    *,
    pool: str | None = None,
    options: DiskOptions | None = None,
    placement: Placement | None = None,
    uri: str | None = None,
    define_secret: bool = False,
    print_only: bool = False,
    driver: Driver | None = None,
    conn: Any = None,
) -> AttachResult:
    """Attach *vol* (name with *pool*, or key/path) to *domain* as a network disk.

    With *print_only* nothing changes: the result's ``xml`` is what would be attached.
    *conn* (a ``virConnect``) overrides *uri*.
    """
    driver = driver or Driver()
    options = options or DiskOptions()
    placement = placement or Placement()
    record, volume = _volume_of(driver, vol, pool)
    bus = resolve_bus(options)
    own = conn is None
    conn = open_connection(uri) if own else conn
    try:
        dom = _Domain(conn, domain)
        flags = placement.flags(dom.active)
        disks = dom.disks(flags)
        used = {target_dev(d) for d in disks}
        for disk in disks:
            if is_volume(disk, record.pool, volume):
                raise StateError(
                    f"volume '{volume.name}' of pool '{_q(record.pool.name)}' is already "
                    f"attached to domain '{_q(dom.name)}' as '{_q(target_dev(disk))}'"
                )
        target = options.target or next_free_target(used, bus)
        if target in used:
            raise StateError(
                f"target device '{_q(target)}' is already in use by domain '{_q(dom.name)}'"
            )
        xml = disk_xml(record.pool, volume, target=target, bus=bus, device=options.device)
        if print_only:
            return AttachResult(dom.name, target, bus, xml)
        warnings = _check_libvirt_secret(conn, record.pool, driver, define_secret, uri)
        try:
            dom.handle.attachDeviceFlags(xml, flags)
        except dom.libvirt.libvirtError as exc:
            raise PoolBackendError(
                f"cannot attach volume '{volume.name}' of pool '{_q(record.pool.name)}' to domain "
                f"'{_q(dom.name)}' as '{_q(target)}': {libvirt_message(exc)}"
            ) from None
        return AttachResult(dom.name, target, bus, xml, tuple(warnings))
    finally:
        if own:
            conn.close()


def detach_volume(
    domain: str,
    vol: str,
    *,
    pool: str | None = None,
    placement: Placement | None = None,
    uri: str | None = None,
    driver: Driver | None = None,
    conn: Any = None,
    wait: float = DETACH_WAIT_SECONDS,
) -> DetachResult:
    """Detach the disk of *vol* from *domain*, found by its iSCSI source, not its target.

    The pool need not be active: its definition (portal, target) and the LUN number in the
    volume's name, key or path are enough to find the disk. A live unplug needs the guest's
    cooperation; we wait up to *wait* seconds for the disk to leave the live XML and report
    ``completed=False`` if it has not.
    """
    driver = driver or Driver()
    placement = placement or Placement()
    found_vol = _detach_subject(driver, vol, pool)
    own = conn is None
    conn = open_connection(uri) if own else conn
    try:
        dom = _Domain(conn, domain)
        flags = placement.flags(dom.active)
        found = dom.disk_matching(flags, found_vol.match)
        if found is None:
            _refuse_legacy_disk(dom, flags, found_vol)
            raise NotFoundError(
                f"volume '{found_vol.name}' of pool '{_q(found_vol.pool.name)}' is not attached to "
                f"domain '{_q(dom.name)}'"
            )
        target = target_dev(found)
        try:
            dom.handle.detachDeviceFlags(etree.tostring(found, encoding="unicode"), flags)
        except dom.libvirt.libvirtError as exc:
            raise PoolBackendError(
                f"cannot detach volume '{found_vol.name}' ('{_q(target)}') from domain "
                f"'{_q(dom.name)}': {libvirt_message(exc)}"
            ) from None
        live = bool(flags & AFFECT_LIVE) or (flags == AFFECT_CURRENT and dom.active)
        completed = not live or _wait_gone(dom, found_vol.match, wait)
        return DetachResult(dom.name, target, completed)
    finally:
        if own:
            conn.close()


@dataclass(frozen=True)
class _DetachSubject:
    """What detach looks for: the pool definition, the volume's name and LUN, the QEMU
    number the disk should name, and the test a disk must pass."""

    pool: PoolDef
    name: str
    lun: int
    qemu: int
    match: Callable[[etree._Element], bool]


def _detach_subject(driver: Driver, vol: str, pool_name: str | None) -> _DetachSubject:
    """The volume from an active pool's state or, for an inactive pool, from its definition:
    a name ``unit:0:0:N`` (with the pool) or the key/path libvirt's rule gives LUN N."""
    try:
        record, volume = driver.find_volume(vol, pool_name)
    except (StateError, NotFoundError) as exc:
        named = driver.find_pool(pool_name) if pool_name else None
        candidates = (
            ([named] if named is not None else [])  # an unknown pool: the lookup's error
            if pool_name
            else [r for r in driver.list_pools() if not r.state.active]
        )
        for record in candidates:
            if record.state.active:
                continue
            lun = _lun_by_definition(record.pool, vol, by_name=pool_name is not None)
            if lun is not None:
                return _DetachSubject(
                    record.pool,
                    naming.volume_name(lun),
                    lun,
                    Lun.of(lun).qemu,
                    _reaching(record.pool, lun),
                )
        raise exc from None
    qemu = volume.address(record.pool.name).qemu  # a state file without the LUN: refresh first
    return _DetachSubject(
        record.pool,
        volume.name,
        volume.lun,
        qemu,
        lambda d: is_qemu_lun(d, record.pool, qemu),
    )


def _reaching(pool: PoolDef, lun: int) -> Callable[[etree._Element], bool]:
    """A test for disks of *pool* whose QEMU number addresses LUN *lun*."""

    def match(disk: etree._Element) -> bool:
        return is_disk_of(disk, pool, lambda qemu: reaches_lun(qemu, lun))

    return match


def _lun_by_definition(pool: PoolDef, vol: str, *, by_name: bool) -> int | None:
    """LUN N when *vol* is volume N of *pool* by libvirt's naming rules, else None."""
    src = pool.source
    if by_name and vol.startswith(naming.VOLUME_NAME_PREFIX):
        try:
            lun = naming.lun_from_volume_name(vol)
        except ConfigError:
            return None
        return lun if lun <= MAX_LUN else None
    prefix = naming.volume_key(src.host, src.port, src.target_iqn, 0)[: -len("0")]
    text = vol[len(prefix) :] if vol.startswith(prefix) else ""
    if not (text.isascii() and text.isdigit()) or str(int(text)) != text:
        return None
    return int(text) if int(text) <= MAX_LUN else None


def _refuse_legacy_disk(dom: _Domain, flags: int, subject: _DetachSubject) -> None:
    """Explain a disk an older version attached as ``IQN/<LUN number>``.

    For a LUN whose QEMU number differs from its number (tgt's LUNs above 255), that disk
    makes QEMU address another LUN (``IQN/300`` is tgt's LUN 44), so it is not this volume
    and is not detached; the user is told which disk it is.
    """
    if subject.qemu == subject.lun:
        return
    pool = subject.pool
    for disk in dom.disks(flags):
        if is_qemu_lun(disk, pool, subject.lun):
            raise StateError(
                f"volume '{subject.name}' of pool '{_q(pool.name)}' (QEMU LUN {subject.qemu}) "
                f"is not attached to domain '{_q(dom.name)}', but its disk "
                f"'{_q(target_dev(disk))}' names QEMU LUN {subject.lun}, as versions before "
                "the fix wrote it: QEMU reaches another LUN through it; check it and remove it "
                f"with 'virsh detach-disk {_q(dom.name)} {_q(target_dev(disk))}'"
            )


def _wait_gone(dom: _Domain, match: Callable[[etree._Element], bool], wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            present = dom.disk_matching(AFFECT_LIVE, match) is not None
        except PoolBackendError:
            return True  # the domain went away: nothing holds the disk any more
        if not present:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
