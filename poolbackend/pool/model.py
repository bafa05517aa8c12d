"""Data model of an iscsi-direct storage pool, its volumes and CHAP secrets.

All classes are immutable dataclasses; build modified copies with :func:`dataclasses.replace`.
They are produced by :mod:`poolbackend.pool.xml` (which validates) and stored by
:mod:`poolbackend.pool.store`; constructing them directly performs no validation, so code
that builds a definition from user arguments should format it to XML and parse it back with
:func:`poolbackend.pool.xml.pool.parse_pool_xml` to get libvirt's checks and messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from poolbackend.errors import StateError
from poolbackend.iscsi import chap
from poolbackend.pool import naming
from poolbackend.scsi.lun import Lun

DIGEST_VALUES = ("None", "CRC32C")
"""The values of the HeaderDigest / DataDigest keys."""

SECRET_USAGE_ISCSI = "iscsi"
SECRET_USAGE_TYPES = ("volume", "ceph", "iscsi", "tls", "vtpm")
"""libvirt secret usage types; only ``iscsi`` secrets serve CHAP."""


@dataclass(frozen=True, slots=True)
class ChapAuth:
    """CHAP settings: libvirt's ``<auth type='chap'>`` plus poolbackend's extensions.

    ``username`` and exactly one of ``secret_uuid`` / ``secret_usage`` come from
    ``<auth username=…><secret uuid|usage=…/></auth>`` (the secret value is the initiator's
    CHAP password). ``algorithms`` is the ordered CHAP_A offer (``<pb:chap algorithms=…>``,
    default MD5 only, like libiscsi). The ``target_*`` fields (``<pb:target-auth>``) enable
    mutual CHAP: the target must answer the initiator's challenge with this account.
    """

    username: str
    secret_uuid: str | None = None
    secret_usage: str | None = None
    algorithms: tuple[int, ...] = (chap.MD5,)  # CHAP_A values: the initiator's one table
    target_username: str | None = None
    target_secret_uuid: str | None = None
    target_secret_usage: str | None = None

    @property
    def mutual(self) -> bool:
        """True when a target account for mutual CHAP is configured."""
        return self.target_username is not None


@dataclass(frozen=True, slots=True)
class PoolSource:
    """The ``<source>`` of an iscsi-direct pool.

    ``host`` is used verbatim (DNS name or IP literal without brackets); ``port`` is ``None``
    when absent or 0 in the XML (meaning 3260). ``target_iqn`` is the first ``<device path>``,
    ``initiator_iqn`` the ``<initiator><iqn name>``.
    """

    host: str
    port: int | None
    target_iqn: str
    initiator_iqn: str
    auth: ChapAuth | None = None

    @property
    def portal(self) -> str:
        """libvirt's portal string (``host:port``, ``[v6]:port`` or ``host:3260``)."""
        return naming.portal_string(self.host, self.port)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` for the TCP connection (IPv6 unbracketed, default 3260)."""
        return naming.connect_address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """poolbackend-only session settings (``<pb:iscsi>``); ``None`` means the default.

    ``header_digest`` / ``data_digest`` are the offered key values in preference order,
    e.g. ``"None,CRC32C"`` (libiscsi's offer) or ``"CRC32C"``. ``timeout_seconds`` bounds
    connect, login and each command (libvirt has no timeout at all).
    """

    header_digest: str | None = None
    data_digest: str | None = None
    timeout_seconds: float | None = None

    @property
    def is_default(self) -> bool:
        """True when nothing is set (the pool XML then has no ``<pb:iscsi>``)."""
        return self == PoolOptions()


@dataclass(frozen=True, slots=True)
class PoolDef:
    """A pool definition: name, canonical lowercase UUID, source and options."""

    name: str
    uuid: str
    source: PoolSource
    options: PoolOptions = field(default_factory=PoolOptions)

    @property
    def type(self) -> str:
        """The pool type, always ``iscsi-direct``."""
        return "iscsi-direct"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A find-storage-pool-sources ``<source>`` specification (exactly one host)."""

    host: str
    port: int | None
    initiator_iqn: str
    target_iqn: str | None = None


@dataclass(frozen=True, slots=True)
class Volume:
    """One LUN of the target, as a libvirt volume.

    ``name`` / ``key`` / ``path`` follow :mod:`poolbackend.pool.naming`. ``device_type`` is
    the SCSI peripheral device type (0 = direct-access disk) with a human name in
    ``device_type_name``; ``block_size`` is 0 for LUNs without READ CAPACITY. ``capacity`` and
    ``allocation`` are in bytes (the backend decides between libvirt's one-block-short value
    and the true size). The volume type is always ``network``.

    ``lun`` is the decoded number users see; ``reported`` is the LUN exactly as the target
    reported it, which commands and QEMU address (``None`` in a state file written before
    it was kept: see :meth:`address`).
    """

    name: str
    key: str
    path: str
    lun: int
    capacity: int
    allocation: int
    device_type: int = 0
    device_type_name: str = "disk"
    block_size: int = 0
    vendor: str | None = None
    product: str | None = None
    revision: str | None = None
    serial: str | None = None
    reported: Lun | None = None

    @property
    def is_disk(self) -> bool:
        """A direct-access block device (SCSI peripheral device type 0): the LUNs with
        blocks to read, write, wipe or attach (:attr:`StandardInquiry.is_disk` at scan)."""
        return self.device_type == 0

    @property
    def type(self) -> str:
        """The libvirt volume type, always ``network``."""
        return "network"

    def address(self, pool_name: str) -> Lun:
        """The LUN as reported; a volume scanned before that was kept is refused, since
        guessing its encoding could address another LUN."""
        if self.reported is None:
            raise StateError(
                f"volume '{self.name}' of pool '{pool_name}' was scanned by an older version "
                f"that did not keep the LUN as the target reported it: run "
                f"'pool-refresh {pool_name}' first"
            )
        return self.reported

    @classmethod
    def for_lun(
        cls,
        source: PoolSource,
        lun: Lun | int,
        *,
        capacity: int = 0,
        allocation: int | None = None,
        device_type: int = 0,
        device_type_name: str = "disk",
        block_size: int = 0,
        vendor: str | None = None,
        product: str | None = None,
        revision: str | None = None,
        serial: str | None = None,
    ) -> Volume:
        """Build the volume of ``lun`` with libvirt's name, key and path for ``source``.

        ``lun`` is the LUN as the target reported it; a plain number (for hand-built models)
        means :meth:`Lun.of`, tgt's encoding. ``allocation`` defaults to ``capacity``
        (libvirt reports them equal).
        """
        reported = lun if isinstance(lun, Lun) else Lun.of(lun)
        number = reported.number
        key = naming.volume_key(source.host, source.port, source.target_iqn, number)
        return cls(
            name=naming.volume_name(number),
            key=key,
            path=key,
            lun=number,
            capacity=capacity,
            allocation=capacity if allocation is None else allocation,
            device_type=device_type,
            device_type_name=device_type_name,
            block_size=block_size,
            vendor=vendor,
            product=product,
            revision=revision,
            serial=serial,
            reported=reported,
        )


@dataclass(frozen=True, slots=True)
class PoolState:
    """Runtime state of a pool.

    ``active`` pools have a state file; ``persistent`` pools have a definition file (a
    transient pool exists only while active); ``available`` is 0 like in libvirt unless the
    backend computes something better. ``volumes`` are in REPORT LUNS order. ``activation``
    identifies one activation of the pool (written when it starts, "" for state files written
    before it existed): a slow refresh saves only into the activation it began from.
    """

    active: bool = False
    autostart: bool = False
    persistent: bool = True
    capacity: int = 0
    allocation: int = 0
    available: int = 0
    volumes: tuple[Volume, ...] = ()
    activation: str = ""

    def volume(self, attribute: Literal["name", "key", "path"], value: str) -> Volume | None:
        """The volume whose ``attribute`` is ``value``, or None.

        One attribute at a time: which ones a VOL argument may match, and in which pools, is
        :func:`poolbackend.pool.lookup.find_volume`'s decision (a name only within a pool).
        """
        for volume in self.volumes:
            if getattr(volume, attribute) == value:
                return volume
        return None


@dataclass(frozen=True, slots=True)
class SecretDef:
    """A libvirt-style secret definition (the value is stored separately).

    ``usage_type`` is one of :data:`SECRET_USAGE_TYPES` or ``None`` (unused secret);
    ``usage_id`` is the usage name (the ``<target>`` text for ``iscsi``).
    """

    uuid: str
    usage_type: str | None = None
    usage_id: str | None = None
    description: str | None = None
    ephemeral: bool = False
    private: bool = False

    @property
    def usage_text(self) -> str:
        """The Usage column of ``secret-list``: ``iscsi target1-chap`` or ``Unused``."""
        if self.usage_type is None:
            return "Unused"
        return f"{self.usage_type} {self.usage_id or ''}"


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    """What a volume-creation XML asks for (only used to report libvirt's refusals)."""

    name: str
    capacity: int | None
    allocation: int | None
