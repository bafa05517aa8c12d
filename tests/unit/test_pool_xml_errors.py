"""Refusals of pool XML: libvirt 9.0's `pool-define` table (doc §15.3) and our schema errors.

Where libvirt's C parser refuses a definition we must print its exact message; where only
libvirt's schema (`pool-define --validate`) refuses it, we refuse it too with a one-line
message naming the file, line, element and problem. If `virsh` is installed, the expected
libvirt messages are also checked against libvirt's own parser (test driver, no daemon).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from poolbackend.errors import ConfigError
from poolbackend.pool.xml.pool import format_pool_xml, parse_pool_xml
from poolbackend.pool.xml.safe import XMLConfigError

BASE = """<pool type='iscsi-direct'>
  <name>p</name>
  <source>
    <host name='127.0.0.1'/>
    <device path='iqn.2026-11.example:target1'/>
    <initiator>
      <iqn name='iqn.2026-11.example:initiator1'/>
    </initiator>
  </source>
</pool>
"""
HOST = "<host name='127.0.0.1'/>"
DEVICE = "<device path='iqn.2026-11.example:target1'/>"
INITIATOR = """<initiator>
      <iqn name='iqn.2026-11.example:initiator1'/>
    </initiator>"""
AUTH = "<auth type='chap' username='u'><secret usage='s'/></auth>"


def variant(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


def with_auth(auth: str) -> str:
    return variant(INITIATOR, INITIATOR + "\n    " + auth)


# (case id, document, libvirt's exact message)
LIBVIRT_REFUSALS: list[tuple[str, str, str]] = [
    ("no-initiator", variant(INITIATOR, ""), "unsupported configuration: missing initiator IQN"),
    (
        "empty-initiator",
        variant(INITIATOR, "<initiator/>"),
        "unsupported configuration: missing initiator IQN",
    ),
    (
        "iqn-without-name",
        variant(INITIATOR, "<initiator><iqn/></initiator>"),
        "unsupported configuration: missing initiator IQN",
    ),
    (
        "iqn-empty-name",
        variant(INITIATOR, "<initiator><iqn name=''/></initiator>"),
        "unsupported configuration: missing initiator IQN",
    ),
    (
        "device-without-path",
        variant(DEVICE, "<device/>"),
        "XML error: missing storage pool source device path",
    ),
    ("no-host", variant(HOST, ""), "XML error: missing storage pool source host name"),
    (
        "host-without-name",
        variant(HOST, "<host port='3260'/>"),
        "XML error: missing storage pool host name",
    ),
    (
        "no-source",
        "<pool type='iscsi-direct'>\n  <name>p</name>\n</pool>\n",
        "XML error: missing storage pool source host name",
    ),
    (
        "port-abc",
        variant(HOST, "<host name='127.0.0.1' port='abc'/>"),
        "XML error: Invalid value for attribute 'port' in element 'host': 'abc'. "
        "Expected integer value",
    ),
    (
        "port-overflow",
        variant(HOST, "<host name='127.0.0.1' port='99999999999'/>"),
        "XML error: Invalid value for attribute 'port' in element 'host': '99999999999'. "
        "Expected integer value",
    ),
    (
        "auth-without-secret",
        with_auth("<auth type='chap' username='u'/>"),
        "XML error: Missing <secret> element in auth",
    ),
    (
        "auth-without-username",
        with_auth("<auth type='chap'><secret usage='s'/></auth>"),
        "XML error: missing username for auth",
    ),
    (
        "auth-without-type",
        with_auth("<auth username='u'><secret usage='s'/></auth>"),
        "unsupported configuration: storage pool missing auth type",
    ),
    (
        "auth-kerberos",
        with_auth("<auth type='kerberos' username='u'><secret usage='s'/></auth>"),
        "unsupported configuration: unknown auth type 'kerberos'",
    ),
    (
        "secret-empty",
        with_auth("<auth type='chap' username='u'><secret/></auth>"),
        "XML error: missing secret uuid or usage attribute",
    ),
    (
        "secret-uuid-and-usage",
        with_auth(
            "<auth type='chap' username='u'>"
            "<secret uuid='6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94' usage='s'/></auth>"
        ),
        "XML error: either secret uuid or usage expected",
    ),
    (
        "secret-bad-uuid",
        with_auth("<auth type='chap' username='u'><secret uuid='not-a-uuid'/></auth>"),
        "XML error: invalid secret uuid 'not-a-uuid'",
    ),
    ("no-name", variant("<name>p</name>", ""), "XML error: missing pool source name element"),
    (
        "name-with-slash",
        variant("<name>p</name>", "<name>pool/one</name>"),
        "XML error: name pool/one cannot contain '/'",
    ),
    (
        "type-iscsi_direct",
        variant("iscsi-direct", "iscsi_direct"),
        "XML error: Invalid value for attribute 'type' in element 'pool': 'iscsi_direct'.",
    ),
    (
        "no-type",
        variant(" type='iscsi-direct'", ""),
        "XML error: Missing required attribute 'type' in element 'pool'",
    ),
    (
        "malformed-uuid",
        variant("<name>p</name>", "<name>p</name><uuid>zz</uuid>"),
        "XML error: malformed uuid element",
    ),
    (
        "wrong-root",
        "<pol type='iscsi-direct'><name>p</name></pol>",
        "XML error: expecting root element of 'pool', not 'pol'",
    ),
    (
        "cow-feature",
        variant("<name>p</name>", "<name>p</name><features><cow state='yes'/></features>"),
        "this function is not supported by the connection driver: "
        "cow feature may only be used for 'fs' and 'dir' pools",
    ),
    (
        "cow-bad-state",
        variant("<name>p</name>", "<name>p</name><features><cow state='maybe'/></features>"),
        "XML error: Invalid value for attribute 'state' in element 'cow': 'maybe'.",
    ),
    # libvirt's C parser stops at the first problem, in its order:
    (
        "name-checked-after-source",
        "<pool type='iscsi-direct'><source><host port='1'/></source></pool>",
        "XML error: missing storage pool host name",
    ),
    (
        "devices-checked-before-auth",
        "<pool type='iscsi-direct'><name>p</name><source><device/><auth/></source></pool>",
        "XML error: missing storage pool source device path",
    ),
    (
        "first-iqn-counts",
        variant(INITIATOR, "<initiator><iqn name=''/><iqn name='y'/></initiator>"),
        "unsupported configuration: missing initiator IQN",
    ),
]

# libvirt defines these but refuses them when the pool starts; poolbackend refuses at once.
START_TIME_REFUSALS: list[tuple[str, str, str]] = [
    (
        "two-hosts",
        variant(HOST, HOST + "<host name='127.0.0.2'/>"),
        "unsupported configuration: Expected exactly 1 host for the storage pool",
    ),
    (
        "auth-ceph",
        with_auth("<auth type='ceph' username='u'><secret usage='s'/></auth>"),
        "XML error: iscsi-direct pool only supports 'chap' auth type",
    ),
]

# Accepted by libvirt's C parser, refused by libvirt's schema: our one-line explanation.
SCHEMA_REFUSALS: list[tuple[str, str, str]] = [
    (
        "no-device",
        variant(DEVICE, ""),
        "pool XML 'case.xml' line 3: element 'source': missing required element 'device'",
    ),
    (
        "device-not-an-iqn",
        variant(DEVICE, "<device path='not-an-iqn'/>"),
        "pool XML 'case.xml' line 5: element 'device': invalid attribute 'path' value "
        "'not-an-iqn' (expected an iSCSI qualified name iqn.YYYY-MM.domain[:id])",
    ),
    (
        "device-eui",
        variant(DEVICE, "<device path='eui.02004567A425678D'/>"),
        "pool XML 'case.xml' line 5: element 'device': invalid attribute 'path' value "
        "'eui.02004567A425678D' (expected an iSCSI qualified name iqn.YYYY-MM.domain[:id])",
    ),
    (
        "two-devices",
        variant(DEVICE, DEVICE + "\n    <device path='iqn.2026-11.example:target2'/>"),
        "pool XML 'case.xml' line 6: element 'device': may appear only once inside <source>",
    ),
    (
        "port-negative",
        variant(HOST, "<host name='127.0.0.1' port='-5'/>"),
        "pool XML 'case.xml' line 4: element 'host': invalid attribute 'port' value '-5' "
        "(expected an integer from -1 to 65535)",
    ),
    (
        "port-too-big",
        variant(HOST, "<host name='127.0.0.1' port='70000'/>"),
        "pool XML 'case.xml' line 4: element 'host': invalid attribute 'port' value '70000' "
        "(expected an integer from -1 to 65535)",
    ),
    (
        "port-minus-one",
        variant(HOST, "<host name='127.0.0.1' port='-1'/>"),
        "pool XML 'case.xml' line 4: element 'host': attribute 'port' value '-1' is not a TCP "
        "port (use 1-65535, or omit it for 3260)",
    ),
    (
        "bad-host-name",
        variant(HOST, "<host name='[::1]'/>"),
        "pool XML 'case.xml' line 4: element 'host': invalid attribute 'name' value '[::1]' "
        "(expected a DNS name or an IPv4/IPv6 address without brackets)",
    ),
    (
        "unknown-element",
        variant("<name>p</name>", "<name>p</name>\n  <bogus/>"),
        "pool XML 'case.xml' line 3: element 'bogus': not allowed inside <pool> (allowed: name, "
        "uuid, capacity, allocation, available, features, source, pb:iscsi); an iscsi-direct "
        "pool has no <target>",
    ),
    (
        "target",
        variant("</source>", "</source>\n  <target><path>/dev/x</path></target>"),
        "pool XML 'case.xml' line 10: element 'target': not allowed inside <pool> (allowed: "
        "name, uuid, capacity, allocation, available, features, source, pb:iscsi); an "
        "iscsi-direct pool has no <target>",
    ),
    (
        "format",
        variant(DEVICE, DEVICE + "<format type='gpt'/>"),
        "pool XML 'case.xml' line 5: element 'format': not allowed inside <source> (allowed: "
        "host, device, initiator, auth); poolbackend extensions go in <pb:iscsi> directly under "
        "<pool>",
    ),
    (
        "vendor",
        variant(DEVICE, DEVICE + "<vendor name='x'/>"),
        "pool XML 'case.xml' line 5: element 'vendor': not allowed inside <source> (allowed: "
        "host, device, initiator, auth); poolbackend extensions go in <pb:iscsi> directly under "
        "<pool>",
    ),
    (
        "unknown-attribute",
        variant(HOST, "<host name='127.0.0.1' transport='rdma'/>"),
        "pool XML 'case.xml' line 4: element 'host': unexpected attribute 'transport'",
    ),
    (
        "two-names",
        variant("<name>p</name>", "<name>p</name>\n  <name>q</name>"),
        "pool XML 'case.xml' line 3: element 'name': may appear only once inside <pool>",
    ),
    (
        "name-with-newline",
        variant("<name>p</name>", "<name>p\nq</name>"),
        "pool XML 'case.xml' line 2: element 'name': invalid value 'p\\nq' (expected a "
        "non-empty name without '/' or newlines)",
    ),
    (
        "uuid-with-spaces",
        variant("<name>p</name>", "<name>p</name><uuid> 6a1f3c2e9b4d4e8a8f273c5d1e0b7a94 </uuid>"),
        "pool XML 'case.xml' line 2: element 'uuid': invalid value "
        "' 6a1f3c2e9b4d4e8a8f273c5d1e0b7a94 ' (expected a UUID such as "
        "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94)",
    ),
    (
        "cow-without-state",
        variant("<name>p</name>", "<name>p</name><features><cow/></features>"),
        "pool XML 'case.xml' line 2: element 'cow': missing required attribute 'state'",
    ),
    (
        "text-in-source",
        variant(HOST, HOST + "oops"),
        "pool XML 'case.xml' line 3: element 'source': unexpected text 'oops'",
    ),
    (
        "capacity-negative",
        variant("<name>p</name>", "<name>p</name><capacity>-5</capacity>"),
        "pool XML 'case.xml' line 2: element 'capacity': invalid value '-5' "
        "(expected a non-negative integer)",
    ),
    (
        "namespaced-root",
        "<pool xmlns='urn:x' type='iscsi-direct'><name>p</name></pool>",
        "XML error: missing pool source name element",
    ),
]


def ids(cases: list[tuple[str, str, str]]) -> list[str]:
    return [case[0] for case in cases]


@pytest.mark.parametrize(("case", "xml", "message"), LIBVIRT_REFUSALS, ids=ids(LIBVIRT_REFUSALS))
def test_libvirt_refusals(case: str, xml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pool_xml(xml, source_name="case.xml")
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("case", "xml", "message"), START_TIME_REFUSALS, ids=ids(START_TIME_REFUSALS)
)
def test_start_time_refusals(case: str, xml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pool_xml(xml, source_name="case.xml")
    assert str(info.value) == message


@pytest.mark.parametrize(("case", "xml", "message"), SCHEMA_REFUSALS, ids=ids(SCHEMA_REFUSALS))
def test_schema_refusals(case: str, xml: str, message: str) -> None:
    with pytest.raises(XMLConfigError) as info:
        parse_pool_xml(xml, source_name="case.xml")
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_error_carries_file_and_line() -> None:
    with pytest.raises(XMLConfigError) as info:
        parse_pool_xml(variant(DEVICE, "<device/>"), source_name="pools/p.xml")
    assert info.value.source_name == "pools/p.xml"
    assert info.value.line == 5


@pytest.mark.parametrize(
    ("case", "xml"),
    [
        ("valid", BASE),
        ("port-zero", variant(HOST, "<host name='127.0.0.1' port='0'/>")),
        (
            "capacity-ignored",
            variant("<name>p</name>", "<name>p</name><capacity unit='GiB'>5</capacity>"),
        ),
        ("port-plus", variant(HOST, "<host name='127.0.0.1' port='+3260'/>")),
        ("empty-features", variant("<name>p</name>", "<name>p</name><features/>")),
        ("comments", variant(HOST, "<!-- the portal -->" + HOST)),
    ],
)
def test_libvirt_and_schema_accept(case: str, xml: str) -> None:
    pool = parse_pool_xml(xml)
    text = format_pool_xml(pool)
    assert "<capacity unit='bytes'>0</capacity>" in text
    if case == "port-zero":
        assert pool.source.port is None
        assert "<host name='127.0.0.1'/>" in text
    if case == "port-plus":
        assert pool.source.port == 3260


VIRSH = shutil.which("virsh")


@pytest.mark.parametrize(("case", "xml", "message"), LIBVIRT_REFUSALS, ids=ids(LIBVIRT_REFUSALS))
def test_messages_match_libvirts_parser(case: str, xml: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "case.xml"
    path.write_text(xml)
    result = subprocess.run(
        [str(VIRSH), "-q", "-c", "test:///default", "pool-define", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors[-1] == f"error: {message}"


@pytest.mark.parametrize(
    ("case", "xml", "message"),
    START_TIME_REFUSALS + SCHEMA_REFUSALS[:-1],
    ids=ids(START_TIME_REFUSALS + SCHEMA_REFUSALS[:-1]),
)
def test_libvirts_parser_accepts_what_only_the_schema_refuses(
    case: str, xml: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "case.xml"
    path.write_text(xml)
    result = subprocess.run(
        [str(VIRSH), "-q", "-c", "test:///default", "pool-define", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
