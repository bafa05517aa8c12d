"""Pool XML (``virsh pool-define``/``pool-dumpxml``) and find-storage-pool-sources XML.

Parsing runs safe loading (:mod:`.safe`), libvirt's C parser checks (:mod:`.libvirt_checks`),
RELAX NG validation (:mod:`.explain`), then poolbackend's own checks for what the model cannot
represent or libvirt would only refuse when starting the pool (exactly one host, ``chap`` auth
only, iSCSI names of at most 223 bytes, consistency of the poolbackend extension).

poolbackend extension: one optional element ``<pb:iscsi>`` directly under ``<pool>`` in the
namespace :data:`~poolbackend.pool.xml.safe.PB_NS` (see ``poolbackend/schemas/storagepool.rng``)::

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

import uuid as uuidlib
from dataclasses import replace
from typing import cast

from lxml import etree

from poolbackend.errors import ConfigError
from poolbackend.iscsi.chap import MD5
from poolbackend.iscsi.errors import InvalidAddress
from poolbackend.iscsi.portal import bare_host, parse_port
from poolbackend.pool import naming
from poolbackend.pool.model import (
    ChapAuth,
    PoolDef,
    PoolOptions,
    PoolSource,
    PoolState,
    SourceSpec,
)
from poolbackend.pool.naming import printable
from poolbackend.pool.xml.explain import (
    HOST_VALUE,
    POOL_SPEC,
    SOURCE_SPEC,
    XS_SPACE,
    check_schema,
)
from poolbackend.pool.xml.libvirt_checks import (
    check_root,
    libvirt_error,
    libvirt_uuid,
    pool_checks,
    source_checks,
)
from poolbackend.pool.xml.safe import (
    PB_NS,
    PB_PREFIX,
    XMLConfigError,
    display,
    esc,
    line_of,
    load_xml,
    qname,
    quote,
    xml_error,
    xstr,
)

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
            raise xml_error(
                kind,
                source_name,
                f"element '{display(element)}': attribute '{attr}' is {size} bytes long; "
                f"iSCSI names are at most {MAX_ISCSI_NAME_BYTES} bytes (RFC 7143 section 4.2.7.1)",
                line_of(element),
            )


def _port_of(host: etree._Element, kind: str, source_name: str) -> int | None:
    text = host.get("port")
    if text is None:
        return None
    port = int(text.strip(XS_SPACE))
    if port == -1:
        raise xml_error(
            kind,
            source_name,
            "element 'host': attribute 'port' value '-1' is not a TCP port "
            f"(use 1-65535, or omit it for {naming.DEFAULT_PORT})",
            line_of(host),
        )
    return port or None


def _secret_ref(element: etree._Element) -> tuple[str | None, str | None]:
    ref_uuid = element.get("uuid")
    if ref_uuid is not None:
        ref_uuid = libvirt_uuid(ref_uuid)
    return ref_uuid, element.get("usage")


def _parse_extension(
    root: etree._Element, auth: ChapAuth | None, kind: str, source_name: str
) -> tuple[ChapAuth | None, PoolOptions]:
    ext = root.find(qname("iscsi"))
    if ext is None:
        return auth, PoolOptions()

    def fail(element: etree._Element, problem: str) -> XMLConfigError:
        return xml_error(
            kind, source_name, f"element '{display(element)}': {problem}", line_of(element)
        )

    target_auth = ext.find(qname("target-auth"))
    chap = ext.find(qname("chap"))
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
        secret = cast(etree._Element, target_auth.find(qname("secret")))
        target_uuid, target_usage = _secret_ref(secret)
        raw_uuid = secret.get("uuid")
        if raw_uuid is not None and target_uuid is None:
            raise fail(secret, f"invalid secret uuid {quote(raw_uuid)}")
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
    digest = ext.find(qname("digest"))
    if digest is not None:
        header, data = digest.get("header"), digest.get("data")
        for name, value in (("header", header), ("data", data)):
            if value is not None and len(set(value.split(","))) != len(value.split(",")):
                raise fail(digest, f"attribute '{name}' lists a value twice")
    timeout = None
    timeout_element = ext.find(qname("timeout"))
    if timeout_element is not None:
        timeout = float(cast(str, timeout_element.get("seconds")))
        if timeout <= 0:
            raise fail(timeout_element, "attribute 'seconds' must be greater than 0")
    return auth, PoolOptions(header_digest=header, data_digest=data, timeout_seconds=timeout)


def _pool_from_tree(root: etree._Element, kind: str, source_name: str) -> PoolDef:
    pool_checks(root, source_name)
    check_schema(root, "storagepool.rng", POOL_SPEC, "pool", kind, source_name)
    source = cast(etree._Element, root.find("source"))
    hosts = source.findall("host")
    if len(hosts) != 1:
        raise libvirt_error(
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
            raise libvirt_error(
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
    pool_uuid = xstr(root, "./uuid")
    return PoolDef(
        name=xstr(root, "./name"),
        uuid=libvirt_uuid(pool_uuid) or str(uuidlib.uuid4()),
        source=PoolSource(
            host=cast(str, host.get("name")),
            port=port,
            target_iqn=cast(str, cast(etree._Element, source.find("device")).get("path")),
            initiator_iqn=xstr(source, "./initiator/iqn/@name"),
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
    root = load_xml(text, "pool", source_name)
    return _pool_from_tree(root, "pool", source_name)


def parse_source_xml(text: bytes | str, *, source_name: str = "<file>") -> SourceSpec:
    """Parse a find-storage-pool-sources ``<source>`` specification.

    Exactly one ``<host>`` and an ``<initiator><iqn name>`` are required, with libvirt's
    messages (``unsupported configuration: Expected exactly 1 host for the storage pool``,
    ``unsupported configuration: missing initiator IQN``).
    """
    kind = "pool source"
    root = load_xml(text, kind, source_name)
    check_root(root, "source", source_name)
    source_checks(root, source_name)
    hosts = root.findall("host")
    if len(hosts) != 1:
        raise libvirt_error(
            "unsupported configuration: Expected exactly 1 host for the storage pool",
            root,
            source_name,
        )
    if not xstr(root, "./initiator/iqn/@name"):
        raise libvirt_error("unsupported configuration: missing initiator IQN", root, source_name)
    check_schema(root, "storagepoolsource.rng", SOURCE_SPEC, "source", kind, source_name)
    _check_iscsi_names(root, kind, source_name)
    device = root.find("device")
    return SourceSpec(
        host=cast(str, hosts[0].get("name")),
        port=_port_of(hosts[0], kind, source_name),
        initiator_iqn=xstr(root, "./initiator/iqn/@name"),
        target_iqn=device.get("path") if device is not None else None,
    )


# ------------------------------------------------------------------------------ formatting


def _format_source_lines(
    host: str, port: int | None, target_iqns: list[str], initiator_iqn: str, auth: ChapAuth | None
) -> list[str]:
    lines = ["<source>"]
    port_text = f" port='{port}'" if port else ""
    lines.append(f"  <host name='{esc(host)}'{port_text}/>")
    lines.extend(f"  <device path='{esc(iqn)}'/>" for iqn in target_iqns)
    lines.append("  <initiator>")
    lines.append(f"    <iqn name='{esc(initiator_iqn)}'/>")
    lines.append("  </initiator>")
    if auth is not None:
        lines.append(f"  <auth type='chap' username='{esc(auth.username)}'>")
        lines.append(f"    {_format_secret_ref('secret', auth.secret_uuid, auth.secret_usage)}")
        lines.append("  </auth>")
    lines.append("</source>")
    return lines


def _format_secret_ref(tag: str, ref_uuid: str | None, usage: str | None) -> str:
    if ref_uuid is not None:
        return f"<{tag} uuid='{esc(ref_uuid)}'/>"
    return f"<{tag} usage='{esc(usage or '')}'/>"


def _format_seconds(seconds: float) -> str:
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _extension_lines(pool: PoolDef) -> list[str]:
    auth = pool.source.auth
    options = pool.options
    inner: list[str] = []
    if auth is not None and auth.target_username is not None:
        inner.append(f"<{PB_PREFIX}:target-auth username='{esc(auth.target_username)}'>")
        ref = _format_secret_ref(
            f"{PB_PREFIX}:secret", auth.target_secret_uuid, auth.target_secret_usage
        )
        inner.append(f"  {ref}")
        inner.append(f"</{PB_PREFIX}:target-auth>")
    if auth is not None and auth.algorithms != (MD5,):  # not the default offer
        algorithms = ",".join(str(number) for number in auth.algorithms)
        inner.append(f"<{PB_PREFIX}:chap algorithms='{algorithms}'/>")
    if options.header_digest is not None or options.data_digest is not None:
        attrs = ""
        if options.header_digest is not None:
            attrs += f" header='{esc(options.header_digest)}'"
        if options.data_digest is not None:
            attrs += f" data='{esc(options.data_digest)}'"
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
        f"  <name>{esc(pool.name)}</name>",
        f"  <uuid>{esc(pool.uuid)}</uuid>",
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


def host_name(text: str) -> str:
    """A host given on the command line, as a ``<host name>`` the pool XML accepts: an IPv6
    literal loses its brackets (``[::1]`` -> ``::1``), anything the pool XML would refuse is
    refused here with the same rule, so what find-storage-pool-sources prints defines."""
    host = bare_host(text)
    if not HOST_VALUE.check(host):
        raise ConfigError(
            f"invalid host '{printable(text)}' (expected a DNS name or an IPv4/IPv6 address)"
        )
    return host


def port_number(text: str) -> int:
    """A port given on the command line (find-storage-pool-sources-as): 1-65535 in ASCII
    digits (:func:`~poolbackend.iscsi.portal.parse_port`), else one line."""
    try:
        return parse_port(text)
    except InvalidAddress:
        raise ConfigError(f"invalid port '{printable(text)}' (expected 1-65535)") from None
