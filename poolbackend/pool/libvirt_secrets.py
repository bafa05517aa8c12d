"""CHAP secret values held by a running libvirt (usage type iscsi), via libvirt-python.

Used when a pool's secret is not in our local store: admins who already keep CHAP secrets
in libvirt do not have to copy them. The value never leaves this process. The reverse
direction (our store → libvirt) serves ``attach-volume --define-secret``: QEMU reads CHAP
secrets only from libvirt.
"""

from __future__ import annotations

from typing import Any

from poolbackend.errors import NotFoundError, PoolBackendError
from poolbackend.pool.libvirt_conn import import_libvirt, libvirt_message, open_connection
from poolbackend.pool.model import SecretDef
from poolbackend.pool.xml.secret import format_secret_xml
from poolbackend.text import printable

VIR_SECRET_USAGE_TYPE_ISCSI = 3


def find_secret(conn: Any, *, uuid: str | None, usage: str | None) -> Any | None:
    """The libvirt iscsi secret with this UUID or usage, or None when libvirt has none."""
    libvirt = import_libvirt()
    try:
        if uuid:
            secret = conn.secretLookupByUUIDString(uuid)
            if secret.usageType() != VIR_SECRET_USAGE_TYPE_ISCSI:
                raise PoolBackendError(
                    f"invalid argument: secret with uuid {printable(uuid)} is not of type 'iscsi'"
                )
            return secret
        return conn.secretLookupByUsage(VIR_SECRET_USAGE_TYPE_ISCSI, usage)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
            return None
        raise PoolBackendError(
            f"cannot look up secrets in libvirt: {libvirt_message(exc)}"
        ) from None


def lookup_secret(uri: str, *, uuid: str | None, usage: str | None) -> bytes:
    conn = open_connection(uri)
    try:
        secret = find_secret(conn, uuid=uuid, usage=usage)
        if secret is None:
            what = f"uuid '{printable(uuid)}'" if uuid else f"usage '{printable(usage or '')}'"
            raise NotFoundError(
                f"Secret not found: no secret with matching {what} (also not in libvirt at "
                f"{printable(uri)})"
            )
        try:
            return bytes(secret.value())
        except import_libvirt().libvirtError as exc:
            raise PoolBackendError(
                f"cannot read secret {secret.UUIDString()} from libvirt: {libvirt_message(exc)}"
            ) from None
    finally:
        conn.close()


def copy_secret_to_libvirt(conn: Any, secret: SecretDef, value: bytes) -> None:
    """Define *secret* (same UUID and usage, private) in libvirt and set its value."""
    libvirt = import_libvirt()
    definition = SecretDef(
        uuid=secret.uuid,
        usage_type=secret.usage_type,
        usage_id=secret.usage_id,
        description=secret.description,
        ephemeral=False,
        private=True,
    )
    try:
        handle = conn.secretDefineXML(format_secret_xml(definition), 0)
        handle.setValue(value, 0)
    except libvirt.libvirtError as exc:
        raise PoolBackendError(
            f"cannot define secret {secret.uuid} ({printable(secret.usage_text)}) in libvirt: "
            f"{libvirt_message(exc)}"
        ) from None


def set_libvirt_secret_value(handle: Any, secret: SecretDef, value: bytes) -> None:
    """Set the value of libvirt's existing secret *handle* (a rotated password)."""
    libvirt = import_libvirt()
    try:
        handle.setValue(value, 0)
    except libvirt.libvirtError as exc:
        raise PoolBackendError(
            f"cannot set the value of secret {handle.UUIDString()} "
            f"({printable(secret.usage_text)}) in libvirt: {libvirt_message(exc)}"
        ) from None
