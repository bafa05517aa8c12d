"""Pool, volume, secret and discovery XML: parsing, validation and libvirt-identical output.

Every parser runs the same four stages:

1. **Safe loading.** The input must be UTF-8 text (a declared encoding other than UTF-8 or
   US-ASCII, NUL bytes or invalid UTF-8 are refused); ``<!DOCTYPE>``/``<!ENTITY>`` are
   refused before parsing (no entity expansion attacks), and lxml runs with entity
   resolution, network access and huge-tree mode off.
2. **libvirt's C parser checks**, in libvirt's order and with libvirt 9.0's exact messages
   (``XML error: missing storage pool source host name``, ``unsupported configuration:
   missing initiator IQN`` …), so that whatever plain ``virsh pool-define`` refuses is refused
   here with the same text.
3. **RELAX NG validation** against poolbackend's schemas in ``poolbackend/schemas`` (libvirt's
   grammar reduced to iscsi-direct, as ``virsh pool-define --validate`` would apply it). A
   failure is explained as one line naming the file, line, element and problem, e.g.
   ``pool XML 'x.xml' line 5: element 'device': invalid attribute 'path' value 'not-an-iqn'
   (expected an iSCSI qualified name iqn.YYYY-MM.domain[:id])``.
4. **poolbackend's own checks** for what the model cannot represent or libvirt would only
   refuse when starting the pool (exactly one host, ``chap`` auth only, iSCSI names of at
   most 223 bytes, consistency of the poolbackend extension).

All failures raise :class:`XMLConfigError` (a :class:`~poolbackend.errors.ConfigError`) whose
``str()`` is one line.

poolbackend extension: one optional element ``<pb:iscsi>`` directly under ``<pool>`` in the
namespace :data:`PB_NS` (see ``poolbackend/schemas/storagepool.rng``)::

    <pool type='iscsi-direct' xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>
      ...
      <pb:iscsi>
        <pb:target-auth username='target-user'>
          <pb:secret usage='target1-mutual'/>
        </pb:target-auth>
        <pb:chap algorithms='7,5'/>
        <pb:digest header='None,CRC32C' data='None,CRC32C'/>
        <pb:timeout seconds='10'/>
      </pb:iscsi>
    </pool>

libvirt's C parser ignores it, so such a definition still loads in libvirt.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import cast

from lxml import etree

from poolbackend.errors import ConfigError
from poolbackend.pool import naming
from poolbackend.pool.model import (
    CHAP_MD5,
    SECRET_USAGE_TYPES,
    ChapAuth,
    PoolDef,
    PoolOptions,
    PoolSource,
    PoolState,
    SecretDef,
    SourceSpec,
    Volume,
    VolumeSpec,
)
from poolbackend.pool.naming import printable

__all__ = [
    "IQN_PATTERN",
    "MAX_ISCSI_NAME_BYTES",
    "MAX_XML_BYTES",
    "PB_NS",
    "PB_PREFIX",
    "SCHEMA_DIR",
    "XMLConfigError",
    "canonical_uuid",
    "format_pool_xml",
    "format_secret_xml",
    "format_sources_xml",
    "format_volume_request_xml",
    "format_volume_xml",
    "host_name",
    "parse_pool_xml",
    "parse_secret_xml",
    "parse_source_xml",
    "parse_volume_xml",
    "scale_integer",
]

PB_NS = "https://poolbackend.dev/xmlns/pool/1"
"""Namespace of poolbackend's XML extension elements."""

PB_PREFIX = "pb"
"""Prefix poolbackend writes for :data:`PB_NS`."""

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
"""Directory of poolbackend's RELAX NG schemas (shipped inside the package)."""

MAX_XML_BYTES = 1 << 20
"""Largest XML document accepted (1 MiB): definitions are a few hundred bytes."""

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


class XMLConfigError(ConfigError):
    """An XML document was refused.

    ``str()`` is the one-line message; ``source_name`` names the document (a file name or
    ``<file>``) and ``line`` is the offending line when known.
    """

    def __init__(self, message: str, *, source_name: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.source_name = source_name
        self.line = line


def _q(name: str) -> str:
    return "{" + PB_NS + "}" + name


# --------------------------------------------------------------------------- small helpers


_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "'": "&apos;",
    "\n": "&#xA;",
    "\r": "&#xD;",
    "\t": "&#x9;",
}


def _representable(char: str) -> bool:
    """False for what XML 1.0 cannot hold (dropped, like libvirt does)."""
    code = ord(char)
    return char in _ESCAPES or not (
        code < 0x20 or 0xD800 <= code <= 0xDFFF or char in "\ufffe\uffff"
    )


_NEEDS_ESCAPE = re.compile("[&<>\"'\x00-\x1f\ud800-\udfff\ufffe\uffff]")


def _esc(value: str) -> str:
    """Escape text or an attribute value the way libvirt's virBufferEscapeString does."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value  # the common case (names, keys, paths), without a per-character loop
    return "".join(_ESCAPES.get(char, char) for char in value if _representable(char))


_HEX = frozenset("0123456789abcdefABCDEF")
_C_SPACE = " \t\n\v\f\r"


def _libvirt_uuid(text: str) -> str | None:
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


def canonical_uuid(text: str) -> str | None:
    """Return ``text`` as a lowercase 8-4-4-4-12 UUID if it is a UUID (32 hex digits, plain or
    dashed), else None."""
    if _UUID_PLAIN.fullmatch(text) or _UUID_DASHED.fullmatch(text):
        return str(uuidlib.UUID(text))
    return None


_C_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _c_int(text: str) -> int | None:
    """Parse like libvirt's virStrToLong_i (base 10, whole string, 32-bit)."""
    match = _C_INT.fullmatch(text)
    if not match:
        return None
    value = int(match.group(1))
    return value if -(2**31) <= value < 2**31 else None


_C_ULL = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)")
_ULLONG_MAX = 2**64 - 1


def _c_ull(text: str) -> int | None:
    """Parse like libvirt's virStrToLong_ullp (base 10, no negative values, 64-bit)."""
    match = _C_ULL.fullmatch(text)
    if not match:
        return None
    value = int(match.group(1))
    return value if value <= _ULLONG_MAX else None


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
    if value and value > _ULLONG_MAX // scale:
        raise ConfigError(f"numerical overflow: value too large: {value}{printable(suffix)}")
    return value * scale


def _xstr(node: etree._Element, expression: str) -> str:
    """XPath string() of ``expression`` relative to ``node`` (libvirt's virXPathString,
    except that the empty string is returned instead of NULL)."""
    return str(node.xpath(f"string({expression})"))


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _display(element: etree._Element) -> str:
    """The element name as written: ``device`` or ``pb:chap``."""
    qname = etree.QName(element)
    if qname.namespace == PB_NS:
        return f"{PB_PREFIX}:{qname.localname}"
    if element.prefix:
        return f"{element.prefix}:{qname.localname}"
    return qname.localname


def _line(element: etree._Element | None) -> int | None:
    """The element's line number, if lxml knows it."""
    if element is None:
        return None
    line = element.sourceline
    return line if isinstance(line, int) else None


def _children(element: etree._Element) -> Iterator[etree._Element]:
    """Child elements, skipping comments and processing instructions."""
    for child in element:
        if isinstance(child.tag, str):
            yield child


# ----------------------------------------------------------------------------- safe loading

_ENCODING_DECL = re.compile(rb"""\A\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY", b"<!ELEMENT", b"<!ATTLIST")
_ACCEPTED_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def _fail(kind: str, source_name: str, problem: str, line: int | None = None) -> XMLConfigError:
    where = f"{kind} XML '{printable(source_name)}'"
    if line is not None and line > 0:
        where += f" line {line}"
    return XMLConfigError(f"{where}: {problem}", source_name=source_name, line=line)


def _load(data: bytes | str, kind: str, source_name: str) -> etree._Element:
    """Parse ``data`` safely and return the root element (see the module doc, stage 1)."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _fail(
                kind,
                source_name,
                f"text contains a character not encodable as UTF-8 at {exc.start}",
            ) from None
    else:
        raw = bytes(data)
    if len(raw) > MAX_XML_BYTES:
        raise _fail(
            kind, source_name, f"document too large ({len(raw)} bytes, limit {MAX_XML_BYTES})"
        )
    document = raw  # parsed as given: libxml2 skips one BOM itself and refuses a second
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise _fail(kind, source_name, "document is empty")
    if b"\x00" in raw or raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(kind, source_name, "not UTF-8 XML text (binary data or UTF-16)")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(
            kind,
            source_name,
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "only UTF-8 XML is supported",
            raw.count(b"\n", 0, exc.start) + 1,
        ) from None
    declared = _ENCODING_DECL.match(raw)
    if declared and declared.group(1).decode("ascii", "replace").lower() not in _ACCEPTED_ENCODINGS:
        encoding = printable(declared.group(1).decode("ascii", "replace"))
        raise _fail(kind, source_name, f"declares encoding '{encoding}'; only UTF-8 is supported")
    for marker in _DTD_MARKERS:
        offset = raw.find(marker)
        if offset >= 0:
            line = raw.count(b"\n", 0, offset) + 1
            raise _fail(
                kind,
                source_name,
                "DTD declarations (<!DOCTYPE>, <!ENTITY>) are not allowed",
                line,
            )
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        collect_ids=False,
    )
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as exc:
        # lxml appends ", line L, column C"; the line is already in front, as in libvirt
        detail = re.sub(r", line \d+, column \d+$", "", str(exc.msg or "syntax error"))
        message = printable(detail)
        raise _fail(kind, source_name, f"malformed XML: {message}", exc.lineno) from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise _fail(kind, source_name, "DTD declarations (<!DOCTYPE>, <!ENTITY>) are not allowed")
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise _fail(kind, source_name, "entity references are not allowed", _line(node))
    return root


# ------------------------------------------------------------------------------ RELAX NG


@cache
def _schema(name: str) -> etree.RelaxNG:
    path = SCHEMA_DIR / name
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.RelaxNG(etree.parse(str(path), parser))


# A Python mirror of the schemas, used only to *explain* a RELAX NG failure precisely: the
# schema decides validity, this finds the first offending element in document order.


@dataclass(frozen=True)
class _Value:
    check: Callable[[str], bool]
    expected: str


@dataclass(frozen=True)
class _Attr:
    name: str
    value: _Value
    required: bool = True


@dataclass(frozen=True)
class _Child:
    tag: str
    spec: _Elem
    min: int = 1
    max: int | None = 1


@dataclass(frozen=True)
class _Elem:
    attrs: tuple[_Attr, ...] = ()
    children: tuple[_Child, ...] = ()
    text: _Value | None = None
    one_of: tuple[str, ...] = ()
    select: Callable[[etree._Element], _Elem | None] | None = None
    hint: str = ""


def _pattern(regex: str) -> Callable[[str], bool]:
    compiled = re.compile(regex)
    return lambda value: compiled.fullmatch(value) is not None


_XS_SPACE = " \t\n\r"


def _xs_int(low: int, high: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        text = value.strip(_XS_SPACE)
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            return False
        return low <= int(text) <= high

    return check


def _xs_ulong(value: str) -> bool:
    text = value.strip(_XS_SPACE)
    return re.fullmatch(r"[0-9]+", text) is not None and int(text) <= _ULLONG_MAX


def _any(value: str) -> bool:
    return True


def _uri(value: str) -> bool:
    return not re.search(r"[\s<>\"{}|\\^`]", value)


_IPV4 = (
    r"(((25[0-5])|(2[0-4][0-9])|(1[0-9]{2})|([1-9][0-9])|([0-9]))\.){3}"
    r"((25[0-5])|(2[0-4][0-9])|(1[0-9]{2})|([1-9][0-9])|([0-9]))"
)
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    [
        f"(({_H}:){{7}}{_H})",
        f"(({_H}:){{6}}:{_H})",
        f"(({_H}:){{5}}:({_H}:)?{_H})",
        f"(({_H}:){{4}}:({_H}:){{0,2}}{_H})",
        f"(({_H}:){{3}}:({_H}:){{0,3}}{_H})",
        f"(({_H}:){{2}}:({_H}:){{0,4}}{_H})",
        f"(({_H}:){{6}}{_IPV4})",
        f"(({_H}:){{0,5}}:{_IPV4})",
        f"(::({_H}:){{0,5}}{_IPV4})",
        f"({_H}::({_H}:){{0,5}}{_H})",
        f"(::({_H}:){{0,6}}{_H})",
        f"(({_H}:){{1,7}}:)",
        "(::)",
    ]
)
_UUID_PLAIN = re.compile(r"[a-fA-F0-9]{32}")
_UUID_DASHED = re.compile(r"[a-fA-F0-9]{8}\-([a-fA-F0-9]{4}\-){3}[a-fA-F0-9]{12}")
IQN_PATTERN = r"iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-zA-Z0-9\.\-]+(:.+)?"
"""The schema's IscsiQualifiedName pattern (libvirt's)."""

_V_TEXT = _Value(_any, "text")
_V_OBJECT_NAME = _Value(_pattern(r"[^/\n]+"), "a non-empty name without '/' or newlines")
_V_VOL_NAME = _Value(
    lambda v: re.fullmatch(r"[^/]+", v) is not None and v not in (".", ".."),
    "a volume name without '/'",
)
_V_UUID = _Value(
    lambda v: bool(_UUID_PLAIN.fullmatch(v) or _UUID_DASHED.fullmatch(v)),
    "a UUID such as 6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94",
)
_V_YESNO = _Value(lambda v: v in ("yes", "no"), "'yes' or 'no'")
_V_ULONG = _Value(_xs_ulong, "a non-negative integer")
_V_UNIT = _Value(
    _pattern(r"([bB]([yY][tT][eE][sS]?)?)|([kKmMgGtTpPeE]([iI]?[bB])?)"),
    "a size unit such as bytes, KiB, MiB, GiB",
)
_V_PORT = _Value(_xs_int(-1, 65535), "an integer from -1 to 65535")
_V_HOST = _Value(
    lambda v: bool(re.fullmatch(r"[a-zA-Z0-9\.\-]+", v) or re.fullmatch(_IPV6, v)),
    "a DNS name or an IPv4/IPv6 address without brackets",
)
_V_IQN = _Value(_pattern(IQN_PATTERN), "an iSCSI qualified name iqn.YYYY-MM.domain[:id]")


def host_name(text: str) -> str:
    """A host given on the command line, as a ``<host name>`` the pool XML accepts: an IPv6
    literal loses its brackets (``[::1]`` -> ``::1``), anything the pool XML would refuse is
    refused here with the same rule, so what find-storage-pool-sources prints defines."""
    host = text[1:-1] if text.startswith("[") and text.endswith("]") and ":" in text else text
    if not _V_HOST.check(host):
        raise ConfigError(
            f"invalid host '{printable(text)}' (expected a DNS name or an IPv4/IPv6 address)"
        )
    return host


_V_POOL_TYPE = _Value(lambda v: v == "iscsi-direct", "'iscsi-direct'")
_V_AUTH_TYPE = _Value(lambda v: v in ("chap", "ceph"), "'chap' or 'ceph'")
_V_ALGORITHMS = _Value(
    _pattern(r"[5-8](,[5-8]){0,3}"),
    "a comma-separated list of CHAP algorithms 5 (MD5), 6 (SHA-1), 7 (SHA-256), 8 (SHA3-256)",
)
_V_DIGEST = _Value(
    _pattern(r"(None|CRC32C)(,(None|CRC32C))?"),
    "'None', 'CRC32C', 'None,CRC32C' or 'CRC32C,None'",
)
_V_SECONDS = _Value(_pattern(r"[0-9]{1,6}(\.[0-9]{1,6})?"), "a number of seconds such as 10 or 2.5")
_V_VOL_TYPE = _Value(lambda v: v == "network", "'network'")
_V_ABS_PATH = _pattern(r"(/|[a-zA-Z]:\\).+")
_V_VOL_PATH = _Value(lambda v: _uri(v) or _V_ABS_PATH(v), "a URI or an absolute path")
_V_USAGE_TYPE = _Value(
    lambda v: v in SECRET_USAGE_TYPES, "one of " + ", ".join(f"'{t}'" for t in SECRET_USAGE_TYPES)
)

_E_EMPTY = _Elem()
_E_SCALED = _Elem(attrs=(_Attr("unit", _V_UNIT, required=False),), text=_V_ULONG)
_E_SECRET_REF = _Elem(
    attrs=(_Attr("uuid", _V_TEXT, required=False), _Attr("usage", _V_TEXT, required=False)),
    one_of=("uuid", "usage"),
)
_E_HOST = _Elem(attrs=(_Attr("name", _V_HOST), _Attr("port", _V_PORT, required=False)))
_E_DEVICE = _Elem(attrs=(_Attr("path", _V_IQN),))
_E_INITIATOR = _Elem(children=(_Child("iqn", _Elem(attrs=(_Attr("name", _V_TEXT),))),))
_E_AUTH = _Elem(
    attrs=(_Attr("type", _V_AUTH_TYPE), _Attr("username", _V_TEXT)),
    children=(_Child("secret", _E_SECRET_REF),),
)
_E_SOURCE = _Elem(
    children=(
        _Child("host", _E_HOST, 1, None),
        _Child("device", _E_DEVICE),
        _Child("initiator", _E_INITIATOR),
        _Child("auth", _E_AUTH, 0),
    ),
    hint="poolbackend extensions go in <pb:iscsi> directly under <pool>",
)
_E_SOURCE_SPEC = _Elem(
    children=(
        _Child("host", _E_HOST, 1, None),
        _Child("device", _E_DEVICE, 0),
        _Child("initiator", _E_INITIATOR, 0),
        _Child("auth", _E_AUTH, 0),
    )
)
_E_PB_ISCSI = _Elem(
    children=(
        _Child(
            _q("target-auth"),
            _Elem(
                attrs=(_Attr("username", _V_TEXT),),
                children=(_Child(_q("secret"), _E_SECRET_REF),),
            ),
            0,
        ),
        _Child(_q("chap"), _Elem(attrs=(_Attr("algorithms", _V_ALGORITHMS),)), 0),
        _Child(
            _q("digest"),
            _Elem(
                attrs=(
                    _Attr("header", _V_DIGEST, required=False),
                    _Attr("data", _V_DIGEST, required=False),
                )
            ),
            0,
        ),
        _Child(_q("timeout"), _Elem(attrs=(_Attr("seconds", _V_SECONDS),)), 0),
    )
)
_E_POOL = _Elem(
    attrs=(_Attr("type", _V_POOL_TYPE),),
    children=(
        _Child("name", _Elem(text=_V_OBJECT_NAME)),
        _Child("uuid", _Elem(text=_V_UUID), 0),
        _Child("capacity", _E_SCALED, 0),
        _Child("allocation", _E_SCALED, 0),
        _Child("available", _E_SCALED, 0),
        _Child(
            "features",
            _Elem(children=(_Child("cow", _Elem(attrs=(_Attr("state", _V_YESNO),)), 0),)),
            0,
        ),
        _Child("source", _E_SOURCE),
        _Child(_q("iscsi"), _E_PB_ISCSI, 0),
    ),
    hint="an iscsi-direct pool has no <target>",
)
_E_VOLUME = _Elem(
    attrs=(_Attr("type", _V_VOL_TYPE, required=False),),
    children=(
        _Child("name", _Elem(text=_V_VOL_NAME)),
        _Child("key", _Elem(text=_V_TEXT), 0),
        _Child("source", _E_EMPTY, 0),
        _Child("capacity", _E_SCALED, 0),
        _Child("allocation", _E_SCALED, 0),
        _Child("physical", _E_SCALED, 0),
        _Child("target", _Elem(children=(_Child("path", _Elem(text=_V_VOL_PATH), 0),))),
    ),
)
_USAGE_CHILD = {
    "iscsi": "target",
    "ceph": "name",
    "volume": "volume",
    "tls": "name",
    "vtpm": "name",
}


def _usage_variant(element: etree._Element) -> _Elem | None:
    usage_type = element.get("type")
    if usage_type not in _USAGE_CHILD:
        return None
    value = _Value(_V_ABS_PATH, "an absolute path") if usage_type == "volume" else _V_OBJECT_NAME
    return _Elem(
        attrs=(_Attr("type", _V_USAGE_TYPE),),
        children=(_Child(_USAGE_CHILD[usage_type], _Elem(text=value)),),
    )


_E_SECRET = _Elem(
    attrs=(
        _Attr("ephemeral", _V_YESNO, required=False),
        _Attr("private", _V_YESNO, required=False),
    ),
    children=(
        _Child("uuid", _Elem(text=_V_UUID), 0),
        _Child("description", _Elem(text=_V_TEXT), 0),
        _Child("usage", _Elem(attrs=(_Attr("type", _V_USAGE_TYPE),), select=_usage_variant), 0),
    ),
)


def _quote(value: str) -> str:
    return "'" + printable(value, 80) + "'"


def _tag_display(tag: str) -> str:
    if tag.startswith("{" + PB_NS + "}"):
        return f"{PB_PREFIX}:{tag.split('}', 1)[1]}"
    return tag


def _explain(element: etree._Element, spec: _Elem, tag: str) -> tuple[etree._Element, str] | None:
    """Return the first (element, problem) where ``element`` does not follow ``spec``."""
    if element.tag != tag:
        return element, f"expected element '{_tag_display(tag)}' (without a namespace)"
    if spec.select is not None:
        spec = spec.select(element) or spec
    known = {attr.name for attr in spec.attrs}
    for raw_name in element.attrib:
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        if name not in known:
            shown = etree.QName(name).localname if name.startswith("{") else name
            return element, f"unexpected attribute '{shown}'"
    for attr in spec.attrs:
        value = element.get(attr.name)
        if value is None:
            if attr.required:
                return element, f"missing required attribute '{attr.name}'"
        elif not attr.value.check(value):
            return element, (
                f"invalid attribute '{attr.name}' value {_quote(value)} "
                f"(expected {attr.value.expected})"
            )
    if spec.one_of and sum(element.get(name) is not None for name in spec.one_of) != 1:
        names = " or ".join(f"'{name}'" for name in spec.one_of)
        return element, f"needs exactly one of the attributes {names}"
    kids = list(_children(element))
    if spec.text is not None:
        if kids:
            return kids[0], f"unexpected element inside <{_display(element)}> (text expected)"
        value = element.text or ""
        if not spec.text.check(value):
            return element, f"invalid value {_quote(value)} (expected {spec.text.expected})"
        return None
    stray = [element.text or ""] + [kid.tail or "" for kid in element]
    for text in stray:
        if text.strip(_XS_SPACE):
            return element, f"unexpected text {_quote(text.strip())}"
    allowed = {child.tag: child for child in spec.children}
    seen: dict[str, int] = {}
    for kid in kids:
        child = allowed.get(kid.tag)
        if child is None:
            names = ", ".join(_tag_display(c.tag) for c in spec.children) or "nothing"
            hint = f"; {spec.hint}" if spec.hint else ""
            return kid, f"not allowed inside <{_display(element)}> (allowed: {names}){hint}"
        seen[child.tag] = seen.get(child.tag, 0) + 1
        if child.max is not None and seen[child.tag] > child.max:
            return kid, f"may appear only once inside <{_display(element)}>"
        found = _explain(kid, child.spec, child.tag)
        if found:
            return found
    for child in spec.children:
        if seen.get(child.tag, 0) < child.min:
            return element, f"missing required element '{_tag_display(child.tag)}'"
    return None


_RNG_TRANSLATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"Element (\S+) has extra content: (\S+)"),
        "element '{1}': unexpected element inside <{0}>",
    ),
    (re.compile(r"Expecting an element (\S+), got nothing"), "missing required element '{0}'"),
    (
        re.compile(r"Invalid attribute (\S+) for element (\S+)"),
        "element '{1}': invalid attribute '{0}'",
    ),
    (
        re.compile(r"Element (\S+) failed to validate attributes"),
        "element '{0}': invalid or missing attribute",
    ),
    (re.compile(r"Did not expect element (\S+) there"), "element '{0}': not allowed here"),
    (re.compile(r"Extra element (\S+) in interleave"), "element '{0}': invalid or repeated"),
)


def _rng_fallback(log: etree._ListErrorLog) -> tuple[int | None, str]:
    entries = list(log)
    for entry in entries:
        for pattern, template in _RNG_TRANSLATIONS:
            match = pattern.fullmatch(entry.message.strip())
            if match:
                line = entry.line or next((e.line for e in entries if e.line), None)
                return line, template.format(*match.groups())
    first = entries[0] if entries else None
    text = first.message.strip() if first else "document does not match the schema"
    return (first.line if first else None), text[:1].lower() + text[1:]


def _validate(
    root: etree._Element, schema: str, spec: _Elem, tag: str, kind: str, source_name: str
) -> None:
    relaxng = _schema(schema)
    if relaxng.validate(root):
        return
    found = _explain(root, spec, tag)
    if found is not None:
        element, problem = found
        raise _fail(
            kind,
            source_name,
            f"element '{_display(element)}': {printable(problem, 400)}",
            _line(element),
        )
    line, problem = _rng_fallback(relaxng.error_log)
    raise _fail(kind, source_name, printable(problem, 400), line)


# ------------------------------------------------------------ libvirt C-parser emulation


def _libvirt(
    message: str, element: etree._Element | None = None, source_name: str = ""
) -> XMLConfigError:
    line = _line(element)
    return XMLConfigError(message, source_name=source_name, line=line)


def _check_root(root: etree._Element, expected: str, source_name: str) -> None:
    if _local(root) != expected:
        raise _libvirt(
            f"XML error: expecting root element of '{expected}', not '{printable(_local(root))}'",
            root,
            source_name,
        )


def _libvirt_source_checks(source: etree._Element, source_name: str) -> None:
    """What virStoragePoolDefParseSource refuses for iscsi-direct, in its order."""
    for host in source.findall("host"):
        if host.get("name") is None:
            raise _libvirt("XML error: missing storage pool host name", host, source_name)
        port = host.get("port")
        if port is not None and _c_int(port) is None:
            raise _libvirt(
                f"XML error: Invalid value for attribute 'port' in element 'host': "
                f"'{printable(port)}'. Expected integer value",
                host,
                source_name,
            )
    for device in source.findall("device"):
        if device.get("path") is None:
            raise _libvirt(
                "XML error: missing storage pool source device path", device, source_name
            )
    auth = source.find("auth")
    if auth is None:
        return
    if not auth.get("username"):
        raise _libvirt("XML error: missing username for auth", auth, source_name)
    auth_type = auth.get("type") or ""
    if auth_type and auth_type not in ("none", "chap", "ceph"):
        raise _libvirt(
            f"unsupported configuration: unknown auth type '{printable(auth_type)}'",
            auth,
            source_name,
        )
    secret = auth.find("secret")
    if secret is None:
        raise _libvirt("XML error: Missing <secret> element in auth", auth, source_name)
    _libvirt_secret_ref_checks(secret, source_name)
    if auth_type in ("", "none"):
        raise _libvirt(
            "unsupported configuration: storage pool missing auth type", auth, source_name
        )


def _libvirt_secret_ref_checks(secret: etree._Element, source_name: str) -> None:
    secret_uuid = secret.get("uuid")
    usage = secret.get("usage")
    if secret_uuid is None and usage is None:
        raise _libvirt("XML error: missing secret uuid or usage attribute", secret, source_name)
    if secret_uuid is not None and usage is not None:
        raise _libvirt("XML error: either secret uuid or usage expected", secret, source_name)
    if secret_uuid is not None and _libvirt_uuid(secret_uuid) is None:
        raise _libvirt(
            f"XML error: invalid secret uuid '{printable(secret_uuid)}'", secret, source_name
        )


def _libvirt_pool_checks(root: etree._Element, source_name: str) -> None:
    """What virStoragePoolDefParseXML refuses for an iscsi-direct pool, in its order."""
    _check_root(root, "pool", source_name)
    pool_type = root.get("type")
    if pool_type is None:
        raise _libvirt(
            "XML error: Missing required attribute 'type' in element 'pool'", root, source_name
        )
    if pool_type not in _LIBVIRT_POOL_TYPES:
        raise _libvirt(
            "XML error: Invalid value for attribute 'type' in element 'pool': "
            f"'{printable(pool_type)}'.",
            root,
            source_name,
        )
    if pool_type != "iscsi-direct":
        raise _libvirt(
            f"unsupported configuration: storage pool type '{pool_type}' is not supported "
            "by poolbackend (only 'iscsi-direct')",
            root,
            source_name,
        )
    source = root.find("source")
    if source is not None:
        _libvirt_source_checks(source, source_name)
    name = _xstr(root, "./name")
    if not name:
        raise _libvirt("XML error: missing pool source name element", root, source_name)
    if "/" in name:
        raise _libvirt(
            f"XML error: name {printable(name)} cannot contain '/'", root.find("name"), source_name
        )
    pool_uuid = _xstr(root, "./uuid")
    if pool_uuid and _libvirt_uuid(pool_uuid) is None:
        raise _libvirt("XML error: malformed uuid element", root.find("uuid"), source_name)
    cow = root.find("features/cow")
    if cow is not None and (state := cow.get("state")) is not None:
        if state not in ("yes", "no"):
            raise _libvirt(
                "XML error: Invalid value for attribute 'state' in element 'cow': "
                f"'{printable(state)}'.",
                cow,
                source_name,
            )
        raise _libvirt(
            "this function is not supported by the connection driver: "
            "cow feature may only be used for 'fs' and 'dir' pools",
            cow,
            source_name,
        )
    if source is None or source.find("host") is None:
        raise _libvirt("XML error: missing storage pool source host name", source, source_name)
    if not _xstr(source, "./initiator/iqn/@name"):
        raise _libvirt("unsupported configuration: missing initiator IQN", source, source_name)


# ------------------------------------------------------------------------------ pool XML


MAX_ISCSI_NAME_BYTES = 223
"""Longest iSCSI name (RFC 7143 section 4.2.7.1)."""


def _check_iscsi_names(source: etree._Element, kind: str, source_name: str) -> None:
    """Refuse a target or initiator IQN longer than an iSCSI name may be (libvirt defines
    such a pool; the login would fail)."""
    for element, attr in ((source.find("device"), "path"), (source.find("initiator/iqn"), "name")):
        value = element.get(attr) if element is not None else None
        if element is None or value is None:
            continue
        size = len(value.encode("utf-8"))
        if size > MAX_ISCSI_NAME_BYTES:
            raise _fail(
                kind,
                source_name,
                f"element '{_display(element)}': attribute '{attr}' is {size} bytes long; "
                f"iSCSI names are at most {MAX_ISCSI_NAME_BYTES} bytes (RFC 7143 section 4.2.7.1)",
                _line(element),
            )


def _port_of(host: etree._Element, kind: str, source_name: str) -> int | None:
    text = host.get("port")
    if text is None:
        return None
    port = int(text.strip(_XS_SPACE))
    if port == -1:
        raise _fail(
            kind,
            source_name,
            "element 'host': attribute 'port' value '-1' is not a TCP port "
            f"(use 1-65535, or omit it for {naming.DEFAULT_PORT})",
            _line(host),
        )
    return port or None


def _secret_ref(element: etree._Element) -> tuple[str | None, str | None]:
    ref_uuid = element.get("uuid")
    if ref_uuid is not None:
        ref_uuid = _libvirt_uuid(ref_uuid)
    return ref_uuid, element.get("usage")


def _parse_extension(
    root: etree._Element, auth: ChapAuth | None, kind: str, source_name: str
) -> tuple[ChapAuth | None, PoolOptions]:
    ext = root.find(_q("iscsi"))
    if ext is None:
        return auth, PoolOptions()

    def fail(element: etree._Element, problem: str) -> XMLConfigError:
        return _fail(kind, source_name, f"element '{_display(element)}': {problem}", _line(element))

    target_auth = ext.find(_q("target-auth"))
    chap = ext.find(_q("chap"))
    for element in (target_auth, chap):
        if element is not None and auth is None:
            raise fail(element, "CHAP settings need <auth type='chap'> in <source>")
    if auth is not None and chap is not None:
        numbers = tuple(int(item) for item in cast(str, chap.get("algorithms")).split(","))
        for number in numbers:
            if numbers.count(number) > 1:
                raise fail(chap, f"CHAP algorithm {number} is listed twice")
        auth = replace(auth, algorithms=numbers)
    if auth is not None and target_auth is not None:
        secret = cast(etree._Element, target_auth.find(_q("secret")))
        target_uuid, target_usage = _secret_ref(secret)
        raw_uuid = secret.get("uuid")
        if raw_uuid is not None and target_uuid is None:
            raise fail(secret, f"invalid secret uuid {_quote(raw_uuid)}")
        same_uuid = target_uuid is not None and target_uuid == auth.secret_uuid
        same_usage = target_usage is not None and target_usage == auth.secret_usage
        if same_uuid or same_usage:
            raise fail(
                secret,
                "mutual CHAP must use a different secret than <auth> (RFC 7143 section 12.1.3)",
            )
        auth = replace(
            auth,
            target_username=cast(str, target_auth.get("username")),
            target_secret_uuid=target_uuid,
            target_secret_usage=target_usage,
        )
    header = data = None
    digest = ext.find(_q("digest"))
    if digest is not None:
        header, data = digest.get("header"), digest.get("data")
        for name, value in (("header", header), ("data", data)):
            if value is not None and len(set(value.split(","))) != len(value.split(",")):
                raise fail(digest, f"attribute '{name}' lists a value twice")
    timeout = None
    timeout_element = ext.find(_q("timeout"))
    if timeout_element is not None:
        timeout = float(cast(str, timeout_element.get("seconds")))
        if timeout <= 0:
            raise fail(timeout_element, "attribute 'seconds' must be greater than 0")
    return auth, PoolOptions(header_digest=header, data_digest=data, timeout_seconds=timeout)


def _pool_from_tree(root: etree._Element, kind: str, source_name: str) -> PoolDef:
    _libvirt_pool_checks(root, source_name)
    _validate(root, "storagepool.rng", _E_POOL, "pool", kind, source_name)
    source = cast(etree._Element, root.find("source"))
    hosts = source.findall("host")
    if len(hosts) != 1:
        raise _libvirt(
            "unsupported configuration: Expected exactly 1 host for the storage pool",
            hosts[1],
            source_name,
        )
    host = hosts[0]
    port = _port_of(host, kind, source_name)
    _check_iscsi_names(source, kind, source_name)
    auth: ChapAuth | None = None
    auth_element = source.find("auth")
    if auth_element is not None:
        if auth_element.get("type") != "chap":
            raise _libvirt(
                "XML error: iscsi-direct pool only supports 'chap' auth type",
                auth_element,
                source_name,
            )
        secret_uuid, secret_usage = _secret_ref(cast(etree._Element, auth_element.find("secret")))
        auth = ChapAuth(
            username=cast(str, auth_element.get("username")),
            secret_uuid=secret_uuid,
            secret_usage=secret_usage,
        )
    auth, options = _parse_extension(root, auth, kind, source_name)
    pool_uuid = _xstr(root, "./uuid")
    return PoolDef(
        name=_xstr(root, "./name"),
        uuid=_libvirt_uuid(pool_uuid) or str(uuidlib.uuid4()),
        source=PoolSource(
            host=cast(str, host.get("name")),
            port=port,
            target_iqn=cast(str, cast(etree._Element, source.find("device")).get("path")),
            initiator_iqn=_xstr(source, "./initiator/iqn/@name"),
            auth=auth,
        ),
        options=options,
    )


def parse_pool_xml(text: bytes | str, *, source_name: str = "<file>") -> PoolDef:
    """Parse and validate an iscsi-direct pool definition.

    ``source_name`` names the document in error messages (normally the file name). A missing
    ``<uuid>`` gets a fresh random UUID; capacity/allocation/available are accepted and
    ignored (libvirt's behaviour); port 0 is treated as absent. Raises :class:`XMLConfigError`.
    """
    root = _load(text, "pool", source_name)
    return _pool_from_tree(root, "pool", source_name)


def parse_source_xml(text: bytes | str, *, source_name: str = "<file>") -> SourceSpec:
    """Parse a find-storage-pool-sources ``<source>`` specification.

    Exactly one ``<host>`` and an ``<initiator><iqn name>`` are required, with libvirt's
    messages (``unsupported configuration: Expected exactly 1 host for the storage pool``,
    ``unsupported configuration: missing initiator IQN``).
    """
    kind = "pool source"
    root = _load(text, kind, source_name)
    _check_root(root, "source", source_name)
    _libvirt_source_checks(root, source_name)
    hosts = root.findall("host")
    if len(hosts) != 1:
        raise _libvirt(
            "unsupported configuration: Expected exactly 1 host for the storage pool",
            root,
            source_name,
        )
    if not _xstr(root, "./initiator/iqn/@name"):
        raise _libvirt("unsupported configuration: missing initiator IQN", root, source_name)
    _validate(root, "storagepoolsource.rng", _E_SOURCE_SPEC, "source", kind, source_name)
    _check_iscsi_names(root, kind, source_name)
    device = root.find("device")
    return SourceSpec(
        host=cast(str, hosts[0].get("name")),
        port=_port_of(hosts[0], kind, source_name),
        initiator_iqn=_xstr(root, "./initiator/iqn/@name"),
        target_iqn=device.get("path") if device is not None else None,
    )


# ------------------------------------------------------------------------------ formatting


def _format_source_lines(
    host: str, port: int | None, target_iqns: list[str], initiator_iqn: str, auth: ChapAuth | None
) -> list[str]:
    lines = ["<source>"]
    port_text = f" port='{port}'" if port else ""
    lines.append(f"  <host name='{_esc(host)}'{port_text}/>")
    lines.extend(f"  <device path='{_esc(iqn)}'/>" for iqn in target_iqns)
    lines.append("  <initiator>")
    lines.append(f"    <iqn name='{_esc(initiator_iqn)}'/>")
    lines.append("  </initiator>")
    if auth is not None:
        lines.append(f"  <auth type='chap' username='{_esc(auth.username)}'>")
        lines.append(f"    {_format_secret_ref('secret', auth.secret_uuid, auth.secret_usage)}")
        lines.append("  </auth>")
    lines.append("</source>")
    return lines


def _format_secret_ref(tag: str, ref_uuid: str | None, usage: str | None) -> str:
    if ref_uuid is not None:
        return f"<{tag} uuid='{_esc(ref_uuid)}'/>"
    return f"<{tag} usage='{_esc(usage or '')}'/>"


def _format_seconds(seconds: float) -> str:
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _extension_lines(pool: PoolDef) -> list[str]:
    auth = pool.source.auth
    options = pool.options
    inner: list[str] = []
    if auth is not None and auth.target_username is not None:
        inner.append(f"<{PB_PREFIX}:target-auth username='{_esc(auth.target_username)}'>")
        ref = _format_secret_ref(
            f"{PB_PREFIX}:secret", auth.target_secret_uuid, auth.target_secret_usage
        )
        inner.append(f"  {ref}")
        inner.append(f"</{PB_PREFIX}:target-auth>")
    if auth is not None and auth.algorithms != (CHAP_MD5,):
        algorithms = ",".join(str(number) for number in auth.algorithms)
        inner.append(f"<{PB_PREFIX}:chap algorithms='{algorithms}'/>")
    if options.header_digest is not None or options.data_digest is not None:
        attrs = ""
        if options.header_digest is not None:
            attrs += f" header='{_esc(options.header_digest)}'"
        if options.data_digest is not None:
            attrs += f" data='{_esc(options.data_digest)}'"
        inner.append(f"<{PB_PREFIX}:digest{attrs}/>")
    if options.timeout_seconds is not None:
        inner.append(f"<{PB_PREFIX}:timeout seconds='{_format_seconds(options.timeout_seconds)}'/>")
    if not inner:
        return []
    return [f"<{PB_PREFIX}:iscsi>", *(f"  {line}" for line in inner), f"</{PB_PREFIX}:iscsi>"]


def _indent(lines: list[str], spaces: int) -> list[str]:
    pad = " " * spaces
    return [pad + line for line in lines]


def format_pool_xml(pool: PoolDef, state: PoolState | None = None) -> str:
    """Return the pool XML exactly as libvirt prints it (``virsh pool-dumpxml``).

    Sizes come from ``state`` (0 without a state, like an inactive libvirt pool). The
    poolbackend extension ``<pb:iscsi>`` follows ``<source>`` only when something
    non-default is set, with ``xmlns:pb`` declared on ``<pool>``. Ends with a newline.
    """
    extension = _extension_lines(pool)
    xmlns = f" xmlns:{PB_PREFIX}='{PB_NS}'" if extension else ""
    capacity = state.capacity if state else 0
    allocation = state.allocation if state else 0
    available = state.available if state else 0
    source = pool.source
    lines = [
        f"<pool type='iscsi-direct'{xmlns}>",
        f"  <name>{_esc(pool.name)}</name>",
        f"  <uuid>{_esc(pool.uuid)}</uuid>",
        f"  <capacity unit='bytes'>{capacity}</capacity>",
        f"  <allocation unit='bytes'>{allocation}</allocation>",
        f"  <available unit='bytes'>{available}</available>",
        *_indent(
            _format_source_lines(
                source.host, source.port, [source.target_iqn], source.initiator_iqn, source.auth
            ),
            2,
        ),
        *_indent(extension, 2),
        "</pool>",
    ]
    return "\n".join(lines) + "\n"


def format_sources_xml(
    host: str, port: int | None, initiator_iqn: str, targets: list[str] | tuple[str, ...]
) -> str:
    """Return find-storage-pool-sources output: one ``<source>`` per discovered target IQN,
    each with the caller's host, port (omitted when ``None``/0) and initiator."""
    lines = ["<sources>"]
    for target in targets:
        lines.extend(_indent(_format_source_lines(host, port, [target], initiator_iqn, None), 2))
    lines.append("</sources>")
    return "\n".join(lines) + "\n"


def format_volume_xml(volume: Volume) -> str:
    """Return the volume XML as ``virsh vol-dumpxml`` prints it for an iscsi-direct pool."""
    lines = [
        "<volume type='network'>",
        f"  <name>{_esc(volume.name)}</name>",
        f"  <key>{_esc(volume.key)}</key>",
        f"  <capacity unit='bytes'>{volume.capacity}</capacity>",
        f"  <allocation unit='bytes'>{volume.allocation}</allocation>",
        "  <target>",
        f"    <path>{_esc(volume.path)}</path>",
        "  </target>",
        "</volume>",
    ]
    return "\n".join(lines) + "\n"


def format_volume_request_xml(
    name: str,
    capacity: int,
    allocation: int | None,
    file_format: str | None,
    backing_path: str | None,
    backing_format: str | None,
) -> str:
    """The volume XML ``virsh vol-create-as --print-xml`` prints (values escaped)."""
    lines = ["<volume>", f"  <name>{_esc(name)}</name>", f"  <capacity>{capacity}</capacity>"]
    if allocation is not None:
        lines.append(f"  <allocation>{allocation}</allocation>")
    if file_format:
        lines += ["  <target>", f"    <format type='{_esc(file_format)}'/>", "  </target>"]
    if backing_path is not None:
        lines += ["  <backingStore>", f"    <path>{_esc(backing_path)}</path>"]
        if backing_format:
            lines.append(f"    <format type='{_esc(backing_format)}'/>")
        lines.append("  </backingStore>")
    return "\n".join([*lines, "</volume>"]) + "\n"


# ---------------------------------------------------------------------------- volume XML


def parse_volume_xml(
    text: bytes | str,
    *,
    source_name: str = "<file>",
    capacity_optional: bool = False,
    validate: bool = True,
) -> VolumeSpec:
    """Parse a volume-creation XML (``vol-create``) far enough to report libvirt's refusals.

    libvirt's checks and messages come first (``XML error: missing volume name element``,
    ``XML error: missing capacity element``, ``XML error: malformed capacity element``, size
    unit errors), then the schema ``storagevol.rng``. ``capacity_optional``: libvirt's
    VIR_VOL_XML_PARSE_OPT_CAPACITY (vol-create), where a missing capacity means 0;
    ``validate=False``: no schema check, like libvirt without ``--validate``.
    """
    kind = "volume"
    root = _load(text, kind, source_name)
    _check_root(root, "volume", source_name)
    name = _xstr(root, "./name")
    if not name:
        raise _libvirt("XML error: missing volume name element", root, source_name)
    vol_type = root.get("type")
    if vol_type is not None and vol_type not in ("file", "block", "dir", "network", "netdir"):
        raise _libvirt(
            f"unsupported configuration: unknown volume type '{printable(vol_type)}'",
            root,
            source_name,
        )
    sizes: list[int | None] = []
    for element_name in ("capacity", "allocation"):
        value = _xstr(root, f"./{element_name}")
        if not value:
            if element_name == "capacity" and not capacity_optional:
                raise _libvirt("XML error: missing capacity element", root, source_name)
            sizes.append(None)
            continue
        number = _c_ull(value)
        if number is None:
            # libvirt 9.0 reports a bad allocation with the capacity message too
            raise _libvirt(
                "XML error: malformed capacity element", root.find(element_name), source_name
            )
        unit = _xstr(root, f"./{element_name}/@unit") or None
        sizes.append(scale_integer(number, unit))
    if validate:
        _validate(root, "storagevol.rng", _E_VOLUME, "volume", kind, source_name)
    return VolumeSpec(name=name, capacity=sizes[0], allocation=sizes[1])


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
    root = _load(text, kind, source_name)
    _check_root(root, "secret", source_name)
    flags: dict[str, bool] = {}
    for flag in ("ephemeral", "private"):
        value = root.get(flag)
        if value is not None and value not in ("yes", "no"):
            raise _libvirt(f"XML error: invalid value of '{flag}'", root, source_name)
        flags[flag] = value == "yes"
    secret_uuid = _xstr(root, "./uuid")
    if secret_uuid and _libvirt_uuid(secret_uuid) is None:
        raise _libvirt("internal error: malformed uuid element", root.find("uuid"), source_name)
    description = _xstr(root, "./description") if root.find("description") is not None else None
    usage_type: str | None = None
    usage_id: str | None = None
    usage = root.find("usage")
    if usage is not None:
        usage_type = _xstr(root, "./usage/@type")
        if not usage_type:
            raise _libvirt("XML error: unknown secret usage type", usage, source_name)
        if usage_type not in _USAGE_CHILD:
            raise _libvirt(
                f"unsupported configuration: unknown secret usage type {printable(usage_type)}",
                usage,
                source_name,
            )
        usage_id = _xstr(root, f"./usage/{_USAGE_CHILD[usage_type]}")
        if not usage_id:
            raise _libvirt(_USAGE_MISSING[usage_type], usage, source_name)
    _validate(root, "secret.rng", _E_SECRET, "secret", kind, source_name)
    return SecretDef(
        uuid=_libvirt_uuid(secret_uuid) or str(uuidlib.uuid4()),
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
        f"  <uuid>{_esc(secret.uuid)}</uuid>",
    ]
    if secret.description is not None:
        lines.append(f"  <description>{_esc(secret.description)}</description>")
    if secret.usage_type is not None:
        child = _USAGE_CHILD.get(secret.usage_type, "name")
        lines.append(f"  <usage type='{_esc(secret.usage_type)}'>")
        lines.append(f"    <{child}>{_esc(secret.usage_id or '')}</{child}>")
        lines.append("  </usage>")
    lines.append("</secret>")
    return "\n".join(lines) + "\n"
