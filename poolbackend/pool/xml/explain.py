"""RELAX NG validation, and a Python mirror of the schemas that explains a failure.

The schemas in ``poolbackend/schemas`` decide validity (libvirt's grammar reduced to
iscsi-direct, as ``virsh pool-define --validate`` would apply it); the mirror only finds the
first offending element in document order, so that a failure is one line naming the file,
line, element and problem, e.g. ``pool XML 'x.xml' line 5: element 'device': invalid attribute
'path' value 'not-an-iqn' (expected an iSCSI qualified name iqn.YYYY-MM.domain[:id])``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from lxml import etree

from poolbackend.iscsi.chap import DISPLAY_NAMES
from poolbackend.pool.model import SECRET_USAGE_TYPES
from poolbackend.pool.naming import printable
from poolbackend.pool.xml.libvirt_checks import ULLONG_MAX
from poolbackend.pool.xml.safe import (
    PB_NS,
    PB_PREFIX,
    SCHEMA_DIR,
    canonical_uuid,
    child_elements,
    display,
    line_of,
    qname,
    quote,
    xml_error,
)

# ------------------------------------------------------------------------------ RELAX NG


@cache
def relaxng_schema(name: str) -> etree.RelaxNG:
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


XS_SPACE = " \t\n\r"


def _xs_int(low: int, high: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        text = value.strip(XS_SPACE)
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            return False
        return low <= int(text) <= high

    return check


def _xs_ulong(value: str) -> bool:
    text = value.strip(XS_SPACE)
    return re.fullmatch(r"[0-9]+", text) is not None and int(text) <= ULLONG_MAX


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
IQN_PATTERN = r"iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-zA-Z0-9\.\-]+(:.+)?"
"""The schema's IscsiQualifiedName pattern (libvirt's)."""

_V_TEXT = _Value(_any, "text")
_V_OBJECT_NAME = _Value(_pattern(r"[^/\n]+"), "a non-empty name without '/' or newlines")
_V_VOL_NAME = _Value(
    lambda v: re.fullmatch(r"[^/]+", v) is not None and v not in (".", ".."),
    "a volume name without '/'",
)
_V_UUID = _Value(
    lambda v: canonical_uuid(v) is not None,
    "a UUID such as 6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94",
)
_V_YESNO = _Value(lambda v: v in ("yes", "no"), "'yes' or 'no'")
_V_ULONG = _Value(_xs_ulong, "a non-negative integer")
_V_UNIT = _Value(
    _pattern(r"([bB]([yY][tT][eE][sS]?)?)|([kKmMgGtTpPeE]([iI]?[bB])?)"),
    "a size unit such as bytes, KiB, MiB, GiB",
)
_V_PORT = _Value(_xs_int(-1, 65535), "an integer from -1 to 65535")
HOST_VALUE = _Value(
    lambda v: bool(re.fullmatch(r"[a-zA-Z0-9\.\-]+", v) or re.fullmatch(_IPV6, v)),
    "a DNS name or an IPv4/IPv6 address without brackets",
)
_V_IQN = _Value(_pattern(IQN_PATTERN), "an iSCSI qualified name iqn.YYYY-MM.domain[:id]")


_V_POOL_TYPE = _Value(lambda v: v == "iscsi-direct", "'iscsi-direct'")
_V_AUTH_TYPE = _Value(lambda v: v in ("chap", "ceph"), "'chap' or 'ceph'")
_V_ALGORITHMS = _Value(
    _pattern(r"[5-8](,[5-8]){0,3}"),
    "a comma-separated list of CHAP algorithms "
    + ", ".join(f"{number} ({name})" for number, name in DISPLAY_NAMES.items()),
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
_E_HOST = _Elem(attrs=(_Attr("name", HOST_VALUE), _Attr("port", _V_PORT, required=False)))
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
SOURCE_SPEC = _Elem(
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
            qname("target-auth"),
            _Elem(
                attrs=(_Attr("username", _V_TEXT),),
                children=(_Child(qname("secret"), _E_SECRET_REF),),
            ),
            0,
        ),
        _Child(qname("chap"), _Elem(attrs=(_Attr("algorithms", _V_ALGORITHMS),)), 0),
        _Child(
            qname("digest"),
            _Elem(
                attrs=(
                    _Attr("header", _V_DIGEST, required=False),
                    _Attr("data", _V_DIGEST, required=False),
                )
            ),
            0,
        ),
        _Child(qname("timeout"), _Elem(attrs=(_Attr("seconds", _V_SECONDS),)), 0),
    )
)
POOL_SPEC = _Elem(
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
        _Child(qname("iscsi"), _E_PB_ISCSI, 0),
    ),
    hint="an iscsi-direct pool has no <target>",
)
VOLUME_SPEC = _Elem(
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
USAGE_CHILD = {
    "iscsi": "target",
    "ceph": "name",
    "volume": "volume",
    "tls": "name",
    "vtpm": "name",
}


def _usage_variant(element: etree._Element) -> _Elem | None:
    usage_type = element.get("type")
    if usage_type not in USAGE_CHILD:
        return None
    value = _Value(_V_ABS_PATH, "an absolute path") if usage_type == "volume" else _V_OBJECT_NAME
    return _Elem(
        attrs=(_Attr("type", _V_USAGE_TYPE),),
        children=(_Child(USAGE_CHILD[usage_type], _Elem(text=value)),),
    )


SECRET_SPEC = _Elem(
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


def _tag_display(tag: str) -> str:
    if tag.startswith("{" + PB_NS + "}"):
        return f"{PB_PREFIX}:{tag.split('}', 1)[1]}"
    return tag


def explain(element: etree._Element, spec: _Elem, tag: str) -> tuple[etree._Element, str] | None:
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
                f"invalid attribute '{attr.name}' value {quote(value)} "
                f"(expected {attr.value.expected})"
            )
    if spec.one_of and sum(element.get(name) is not None for name in spec.one_of) != 1:
        names = " or ".join(f"'{name}'" for name in spec.one_of)
        return element, f"needs exactly one of the attributes {names}"
    kids = list(child_elements(element))
    if spec.text is not None:
        if kids:
            return kids[0], f"unexpected element inside <{display(element)}> (text expected)"
        value = element.text or ""
        if not spec.text.check(value):
            return element, f"invalid value {quote(value)} (expected {spec.text.expected})"
        return None
    stray = [element.text or ""] + [kid.tail or "" for kid in element]
    for text in stray:
        if text.strip(XS_SPACE):
            return element, f"unexpected text {quote(text.strip())}"
    allowed = {child.tag: child for child in spec.children}
    seen: dict[str, int] = {}
    for kid in kids:
        child = allowed.get(kid.tag)
        if child is None:
            names = ", ".join(_tag_display(c.tag) for c in spec.children) or "nothing"
            hint = f"; {spec.hint}" if spec.hint else ""
            return kid, f"not allowed inside <{display(element)}> (allowed: {names}){hint}"
        seen[child.tag] = seen.get(child.tag, 0) + 1
        if child.max is not None and seen[child.tag] > child.max:
            return kid, f"may appear only once inside <{display(element)}>"
        found = explain(kid, child.spec, child.tag)
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


def check_schema(
    root: etree._Element, schema: str, spec: _Elem, tag: str, kind: str, source_name: str
) -> None:
    relaxng = relaxng_schema(schema)
    if relaxng.validate(root):
        return
    found = explain(root, spec, tag)
    if found is not None:
        element, problem = found
        raise xml_error(
            kind,
            source_name,
            f"element '{display(element)}': {printable(problem, 400)}",
            line_of(element),
        )
    line, problem = _rng_fallback(relaxng.error_log)
    raise xml_error(kind, source_name, printable(problem, 400), line)
