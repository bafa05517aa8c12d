"""Secret XML (``virsh secret-define``/``secret-dumpxml``) with libvirt's messages."""

from __future__ import annotations

import uuid as uuidlib

from poolbackend.pool.model import SecretDef
from poolbackend.pool.naming import printable
from poolbackend.pool.xml.explain import SECRET_SPEC, USAGE_CHILD, check_schema
from poolbackend.pool.xml.libvirt_checks import check_root, libvirt_error, libvirt_uuid
from poolbackend.pool.xml.safe import esc, load_xml, xstr

# ---------------------------------------------------------------------------- secret XML

_USAGE_MISSING = {
    "iscsi": "internal error: iSCSI usage specified, but target is missing",
    "ceph": "internal error: Ceph usage specified, but name is missing",
    "volume": "internal error: volume usage specified, but volume path is missing",
    "tls": "internal error: TLS usage specified, but name is missing",
    "vtpm": "internal error: vTPM usage specified, but name is missing",
}


def parse_secret_xml(text: bytes | str, *, source_name: str = "<file>") -> SecretDef:
    """Parse and validate a secret definition (``virsh secret-define``).

    libvirt's messages for what its parser refuses (``XML error: invalid value of
    'private'``, ``internal error: iSCSI usage specified, but target is missing`` …), then the
    schema ``secret.rng``. A missing ``<uuid>`` gets a fresh random UUID.
    """
    kind = "secret"
    root = load_xml(text, kind, source_name)
    check_root(root, "secret", source_name)
    flags: dict[str, bool] = {}
    for flag in ("ephemeral", "private"):
        value = root.get(flag)
        if value is not None and value not in ("yes", "no"):
            raise libvirt_error(f"XML error: invalid value of '{flag}'", root, source_name)
        flags[flag] = value == "yes"
    secret_uuid = xstr(root, "./uuid")
    if secret_uuid and libvirt_uuid(secret_uuid) is None:
        raise libvirt_error(
            "internal error: malformed uuid element", root.find("uuid"), source_name
        )
    description = xstr(root, "./description") if root.find("description") is not None else None
    usage_type: str | None = None
    usage_id: str | None = None
    usage = root.find("usage")
    if usage is not None:
        usage_type = xstr(root, "./usage/@type")
        if not usage_type:
            raise libvirt_error("XML error: unknown secret usage type", usage, source_name)
        if usage_type not in USAGE_CHILD:
            raise libvirt_error(
                f"unsupported configuration: unknown secret usage type {printable(usage_type)}",
                usage,
                source_name,
            )
        usage_id = xstr(root, f"./usage/{USAGE_CHILD[usage_type]}")
        if not usage_id:
            raise libvirt_error(_USAGE_MISSING[usage_type], usage, source_name)
    check_schema(root, "secret.rng", SECRET_SPEC, "secret", kind, source_name)
    return SecretDef(
        uuid=libvirt_uuid(secret_uuid) or str(uuidlib.uuid4()),
        usage_type=usage_type,
        usage_id=usage_id,
        description=description,
        ephemeral=flags["ephemeral"],
        private=flags["private"],
    )


def format_secret_xml(secret: SecretDef) -> str:
    """Return the secret XML as ``virsh secret-dumpxml`` prints it."""
    ephemeral = "yes" if secret.ephemeral else "no"
    private = "yes" if secret.private else "no"
    lines = [
        f"<secret ephemeral='{ephemeral}' private='{private}'>",
        f"  <uuid>{esc(secret.uuid)}</uuid>",
    ]
    if secret.description is not None:
        lines.append(f"  <description>{esc(secret.description)}</description>")
    if secret.usage_type is not None:
        child = USAGE_CHILD.get(secret.usage_type, "name")
        lines.append(f"  <usage type='{esc(secret.usage_type)}'>")
        lines.append(f"    <{child}>{esc(secret.usage_id or '')}</{child}>")
        lines.append("  </usage>")
    lines.append("</secret>")
    return "\n".join(lines) + "\n"
