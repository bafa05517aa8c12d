"""Safe loading of XML input and the small helpers every XML module shares.

The input must be UTF-8 text (a declared encoding other than UTF-8 or US-ASCII, NUL bytes or
invalid UTF-8 are refused); ``<!DOCTYPE>``/``<!ENTITY>`` are refused before parsing (no entity
expansion attacks), and lxml runs with entity resolution, network access and huge-tree mode
off. Every refusal is an :class:`XMLConfigError` whose ``str()`` is one line.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

from lxml import etree

from poolbackend.errors import ConfigError
from poolbackend.pool.naming import printable

PB_NS = "https://poolbackend.dev/xmlns/pool/1"
"""Namespace of poolbackend's XML extension elements."""

PB_PREFIX = "pb"
"""Prefix poolbackend writes for :data:`PB_NS`."""

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
"""Directory of poolbackend's RELAX NG schemas (shipped inside the package)."""

MAX_XML_BYTES = 1 << 20
"""Largest XML document accepted (1 MiB): definitions are a few hundred bytes."""


class XMLConfigError(ConfigError):
    """An XML document was refused.

    ``str()`` is the one-line message; ``source_name`` names the document (a file name or
    ``<file>``) and ``line`` is the offending line when known.
    """

    def __init__(self, message: str, *, source_name: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.source_name = source_name
        self.line = line


def qname(name: str) -> str:
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


def esc(value: str) -> str:
    """Escape text or an attribute value the way libvirt's virBufferEscapeString does."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value  # the common case (names, keys, paths), without a per-character loop
    return "".join(_ESCAPES.get(char, char) for char in value if _representable(char))


def xstr(node: etree._Element, expression: str) -> str:
    """XPath string() of ``expression`` relative to ``node`` (libvirt's virXPathString,
    except that the empty string is returned instead of NULL)."""
    return str(node.xpath(f"string({expression})"))


def local_name(element: etree._Element) -> str:
    return etree.QName(element).localname


def display(element: etree._Element) -> str:
    """The element name as written: ``device`` or ``pb:chap``."""
    qname = etree.QName(element)
    if qname.namespace == PB_NS:
        return f"{PB_PREFIX}:{qname.localname}"
    if element.prefix:
        return f"{element.prefix}:{qname.localname}"
    return qname.localname


def line_of(element: etree._Element | None) -> int | None:
    """The element's line number, if lxml knows it."""
    if element is None:
        return None
    line = element.sourceline
    return line if isinstance(line, int) else None


def child_elements(element: etree._Element) -> Iterator[etree._Element]:
    """Child elements, skipping comments and processing instructions."""
    for child in element:
        if isinstance(child.tag, str):
            yield child


# ----------------------------------------------------------------------------- safe loading

_ENCODING_DECL = re.compile(rb"""\A\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY", b"<!ELEMENT", b"<!ATTLIST")
_ACCEPTED_ENCODINGS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def xml_error(kind: str, source_name: str, problem: str, line: int | None = None) -> XMLConfigError:
    where = f"{kind} XML '{printable(source_name)}'"
    if line is not None and line > 0:
        where += f" line {line}"
    return XMLConfigError(f"{where}: {problem}", source_name=source_name, line=line)


def load_xml(data: bytes | str, kind: str, source_name: str) -> etree._Element:
    """Parse ``data`` safely and return the root element (see the module doc, stage 1)."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise xml_error(
                kind,
                source_name,
                f"text contains a character not encodable as UTF-8 at {exc.start}",
            ) from None
    else:
        raw = bytes(data)
    if len(raw) > MAX_XML_BYTES:
        raise xml_error(
            kind, source_name, f"document too large ({len(raw)} bytes, limit {MAX_XML_BYTES})"
        )
    document = raw  # parsed as given: libxml2 skips one BOM itself and refuses a second
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise xml_error(kind, source_name, "document is empty")
    if b"\x00" in raw or raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise xml_error(kind, source_name, "not UTF-8 XML text (binary data or UTF-16)")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise xml_error(
            kind,
            source_name,
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "only UTF-8 XML is supported",
            raw.count(b"\n", 0, exc.start) + 1,
        ) from None
    declared = _ENCODING_DECL.match(raw)
    if declared and declared.group(1).decode("ascii", "replace").lower() not in _ACCEPTED_ENCODINGS:
        encoding = printable(declared.group(1).decode("ascii", "replace"))
        raise xml_error(
            kind, source_name, f"declares encoding '{encoding}'; only UTF-8 is supported"
        )
    for marker in _DTD_MARKERS:
        offset = raw.find(marker)
        if offset >= 0:
            line = raw.count(b"\n", 0, offset) + 1
            raise xml_error(
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
        raise xml_error(kind, source_name, f"malformed XML: {message}", exc.lineno) from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise xml_error(
            kind, source_name, "DTD declarations (<!DOCTYPE>, <!ENTITY>) are not allowed"
        )
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise xml_error(kind, source_name, "entity references are not allowed", line_of(node))
    return root


def quote(value: str) -> str:
    """``value`` in single quotes, made printable and cut to 80 characters."""
    return "'" + printable(value, 80) + "'"


_UUID_PLAIN = re.compile(r"[a-fA-F0-9]{32}")
_UUID_DASHED = re.compile(r"[a-fA-F0-9]{8}\-([a-fA-F0-9]{4}\-){3}[a-fA-F0-9]{12}")


def canonical_uuid(text: str) -> str | None:
    """Return ``text`` as a lowercase 8-4-4-4-12 UUID if it is a UUID (32 hex digits, plain or
    dashed), else None."""
    if _UUID_PLAIN.fullmatch(text) or _UUID_DASHED.fullmatch(text):
        return str(uuidlib.UUID(text))
    return None
