"""What libvirt's C parser refuses beyond its RELAX NG schemas, with libvirt 9.0's messages.

The checks run in libvirt's order (``XML error: missing storage pool source host name``,
``unsupported configuration: missing initiator IQN`` …), so whatever plain ``virsh
pool-define`` refuses is refused here with the same text. Also libvirt's number parsers
(virStrToLong_i, virStrToLong_ullp), its UUID parser and virScaleInteger.
"""

from __future__ import annotations

import re
import uuid as uuidlib

from lxml import etree

from poolbackend.errors import ConfigError
from poolbackend.pool.naming import printable
from poolbackend.pool.xml.safe import XMLConfigError, line_of, local_name, xstr

_LIBVIRT_POOL_TYPES = frozenset(
    {
        "dir",
        "fs",
        "netfs",
        "logical",
        "disk",
        "iscsi",
        "iscsi-direct",
        "scsi",
        "mpath",
        "rbd",
        "sheepdog",
        "gluster",
        "zfs",
        "vstorage",
    }
)


_HEX = frozenset("0123456789abcdefABCDEF")
_C_SPACE = " \t\n\v\f\r"


def libvirt_uuid(text: str) -> str | None:
    """Parse a UUID like libvirt's virUUIDParse; return the canonical form or None.

    Leading/trailing whitespace is allowed and '-' or ' ' may separate any two hex pairs.
    """
    pos = 0
    while pos < len(text) and text[pos] in _C_SPACE:
        pos += 1
    pairs: list[str] = []
    while len(pairs) < 16:
        if pos >= len(text):
            return None
        if text[pos] in "- ":
            pos += 1
            continue
        pair = text[pos : pos + 2]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            return None
        pairs.append(pair)
        pos += 2
    if text[pos:].strip(_C_SPACE):
        return None
    return str(uuidlib.UUID("".join(pairs)))


_C_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def c_int(text: str) -> int | None:
    """Parse like libvirt's virStrToLong_i (base 10, whole string, 32-bit)."""
    match = _C_INT.fullmatch(text)
    if not match:
        return None
    value = int(match.group(1))
    return value if -(2**31) <= value < 2**31 else None


_C_ULL = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)")
ULLONG_MAX = 2**64 - 1


def c_ull(text: str) -> int | None:
    """Parse like libvirt's virStrToLong_ullp (base 10, no negative values, 64-bit)."""
    match = _C_ULL.fullmatch(text)
    if not match:
        return None
    value = int(match.group(1))
    return value if value <= ULLONG_MAX else None


def scale_integer(value: int, unit: str | None) -> int:
    """Scale ``value`` by a libvirt size unit (``b``/``bytes``, ``K``/``KiB`` = 1024,
    ``KB`` = 1000, up to ``E``), like virScaleInteger.

    Raises :class:`ConfigError` with libvirt's texts (``invalid argument: unknown suffix
    'x'``, ``numerical overflow: value too large: <v><unit>``).
    """
    suffix = unit or ""
    if not suffix or suffix.lower() in ("b", "byte", "bytes"):
        scale = 1
    else:
        if len(suffix) == 1 or suffix[1:].lower() == "ib":
            base = 1024
        elif len(suffix) == 2 and suffix[1].lower() == "b":
            base = 1000
        else:
            raise ConfigError(f"invalid argument: unknown suffix '{printable(suffix)}'")
        power = "kmgtpe".find(suffix[0].lower()) + 1
        if power == 0:
            raise ConfigError(f"invalid argument: unknown suffix '{printable(suffix)}'")
        scale = base**power
    if value and value > ULLONG_MAX // scale:
        raise ConfigError(f"numerical overflow: value too large: {value}{printable(suffix)}")
    return value * scale


# ------------------------------------------------------------ libvirt C-parser emulation


def libvirt_error(
    message: str, element: etree._Element | None = None, source_name: str = ""
) -> XMLConfigError:
    line = line_of(element)
    return XMLConfigError(message, source_name=source_name, line=line)


def check_root(root: etree._Element, expected: str, source_name: str) -> None:
    found = local_name(root)
    if found != expected:
        raise libvirt_error(
            f"XML error: expecting root element of '{expected}', not '{printable(found)}'",
            root,
            source_name,
        )


def source_checks(source: etree._Element, source_name: str) -> None:
    """What virStoragePoolDefParseSource refuses for iscsi-direct, in its order."""
    for host in source.findall("host"):
        if host.get("name") is None:
            raise libvirt_error("XML error: missing storage pool host name", host, source_name)
        port = host.get("port")
        if port is not None and c_int(port) is None:
            raise libvirt_error(
                f"XML error: Invalid value for attribute 'port' in element 'host': "
                f"'{printable(port)}'. Expected integer value",
                host,
                source_name,
            )
    for device in source.findall("device"):
        if device.get("path") is None:
            raise libvirt_error(
                "XML error: missing storage pool source device path", device, source_name
            )
    auth = source.find("auth")
    if auth is None:
        return
    if not auth.get("username"):
        raise libvirt_error("XML error: missing username for auth", auth, source_name)
    auth_type = auth.get("type") or ""
    if auth_type and auth_type not in ("none", "chap", "ceph"):
        raise libvirt_error(
            f"unsupported configuration: unknown auth type '{printable(auth_type)}'",
            auth,
            source_name,
        )
    secret = auth.find("secret")
    if secret is None:
        raise libvirt_error("XML error: Missing <secret> element in auth", auth, source_name)
    _secret_ref_checks(secret, source_name)
    if auth_type in ("", "none"):
        raise libvirt_error(
            "unsupported configuration: storage pool missing auth type", auth, source_name
        )


def _secret_ref_checks(secret: etree._Element, source_name: str) -> None:
    secret_uuid = secret.get("uuid")
    usage = secret.get("usage")
    if secret_uuid is None and usage is None:
        raise libvirt_error(
            "XML error: missing secret uuid or usage attribute", secret, source_name
        )
    if secret_uuid is not None and usage is not None:
        raise libvirt_error("XML error: either secret uuid or usage expected", secret, source_name)
    if secret_uuid is not None and libvirt_uuid(secret_uuid) is None:
        raise libvirt_error(
            f"XML error: invalid secret uuid '{printable(secret_uuid)}'", secret, source_name
        )


def pool_checks(root: etree._Element, source_name: str) -> None:
    """What virStoragePoolDefParseXML refuses for an iscsi-direct pool, in its order."""
    check_root(root, "pool", source_name)
    pool_type = root.get("type")
    if pool_type is None:
        raise libvirt_error(
            "XML error: Missing required attribute 'type' in element 'pool'", root, source_name
        )
    if pool_type not in _LIBVIRT_POOL_TYPES:
        raise libvirt_error(
            "XML error: Invalid value for attribute 'type' in element 'pool': "
            f"'{printable(pool_type)}'.",
            root,
            source_name,
        )
    if pool_type != "iscsi-direct":
        raise libvirt_error(
            f"unsupported configuration: storage pool type '{pool_type}' is not supported "
            "by poolbackend (only 'iscsi-direct')",
            root,
            source_name,
        )
    source = root.find("source")
    if source is not None:
        source_checks(source, source_name)
    name = xstr(root, "./name")
    if not name:
        raise libvirt_error("XML error: missing pool source name element", root, source_name)
    if "/" in name:
        raise libvirt_error(
            f"XML error: name {printable(name)} cannot contain '/'", root.find("name"), source_name
        )
    pool_uuid = xstr(root, "./uuid")
    if pool_uuid and libvirt_uuid(pool_uuid) is None:
        raise libvirt_error("XML error: malformed uuid element", root.find("uuid"), source_name)
    cow = root.find("features/cow")
    if cow is not None and (state := cow.get("state")) is not None:
        if state not in ("yes", "no"):
            raise libvirt_error(
                "XML error: Invalid value for attribute 'state' in element 'cow': "
                f"'{printable(state)}'.",
                cow,
                source_name,
            )
        raise libvirt_error(
            "this function is not supported by the connection driver: "
            "cow feature may only be used for 'fs' and 'dir' pools",
            cow,
            source_name,
        )
    if source is None or source.find("host") is None:
        raise libvirt_error("XML error: missing storage pool source host name", source, source_name)
    if not xstr(source, "./initiator/iqn/@name"):
        raise libvirt_error("unsupported configuration: missing initiator IQN", source, source_name)
