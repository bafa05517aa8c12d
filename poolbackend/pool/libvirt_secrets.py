"""CHAP secret values held by a running libvirt (usage type iscsi), via libvirt-python.

Used when a pool's secret is not in our local store: admins who already keep CHAP secrets
in libvirt do not have to copy them. The value never leaves this process.
"""

from __future__ import annotations

from poolbackend.errors import NotFoundError, PoolBackendError

VIR_SECRET_USAGE_TYPE_ISCSI = 3


def lookup_secret(uri: str, *, uuid: str | None, usage: str | None) -> bytes:
    try:
        import libvirt
    except ImportError:
        raise PoolBackendError(
            "libvirt-python is not installed; cannot read secrets from libvirt "
            "(pip install 'poolbackend[libvirt]')"
        ) from None
    libvirt.registerErrorHandler(lambda *_: None, None)  # keep libvirt from printing to stderr
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise PoolBackendError(
            f"cannot connect to libvirt at {uri}: {exc.get_error_message()}"
        ) from None
    try:
        try:
            if uuid:
                secret = conn.secretLookupByUUIDString(uuid)
                if secret.usageType() != VIR_SECRET_USAGE_TYPE_ISCSI:
                    raise PoolBackendError(
                        f"invalid argument: secret with uuid {uuid} is not of type 'iscsi'"
                    )
            else:
                secret = conn.secretLookupByUsage(VIR_SECRET_USAGE_TYPE_ISCSI, usage)
        except libvirt.libvirtError:
            what = f"uuid '{uuid}'" if uuid else f"usage '{usage}'"
            raise NotFoundError(
                f"Secret not found: no secret with matching {what} (also not in libvirt at {uri})"
            ) from None
        try:
            return bytes(secret.value())
        except libvirt.libvirtError as exc:
            raise PoolBackendError(
                f"cannot read secret {secret.UUIDString()} from libvirt: {exc.get_error_message()}"
            ) from None
    finally:
        conn.close()
