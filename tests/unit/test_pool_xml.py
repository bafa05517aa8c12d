"""Pool/volume/secret/discovery XML: libvirt-identical output, parsing, safety, schema mirror."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from poolbackend.errors import ConfigError
from poolbackend.pool.model import (
    ChapAuth,
    PoolDef,
    PoolOptions,
    PoolSource,
    PoolState,
    SecretDef,
    SourceSpec,
    Volume,
)
from poolbackend.pool.xml import explain
from poolbackend.pool.xml.libvirt_checks import scale_integer
from poolbackend.pool.xml.pool import (
    format_pool_xml,
    format_sources_xml,
    parse_pool_xml,
    parse_source_xml,
)
from poolbackend.pool.xml.safe import PB_NS, XMLConfigError
from poolbackend.pool.xml.secret import format_secret_xml, parse_secret_xml
from poolbackend.pool.xml.volume import format_volume_xml, parse_volume_xml

UUID = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"
TARGET = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"

POOL_15_4 = """<pool type='iscsi-direct'>
  <name>iscsi-pool</name>
  <uuid>6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94</uuid>
  <capacity unit='bytes'>201325568</capacity>
  <allocation unit='bytes'>201325568</allocation>
  <available unit='bytes'>0</available>
  <source>
    <host name='127.0.0.1' port='3260'/>
    <device path='iqn.2026-11.example:target1'/>
    <initiator>
      <iqn name='iqn.2026-11.example:initiator1'/>
    </initiator>
    <auth type='chap' username='chapuser'>
      <secret usage='target1-chap'/>
    </auth>
  </source>
</pool>
"""

VOLUME_16 = """<volume type='network'>
  <name>unit:0:0:1</name>
  <key>ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-1</key>
  <capacity unit='bytes'>67108352</capacity>
  <allocation unit='bytes'>67108352</allocation>
  <target>
    <path>ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-1</path>
  </target>
</volume>
"""

SOURCES_10 = """<sources>
  <source>
    <host name='127.0.0.1' port='3260'/>
    <device path='iqn.2026-11.example:target1'/>
    <initiator>
      <iqn name='iqn.2026-11.example:initiator1'/>
    </initiator>
  </source>
</sources>
"""


def chap_pool() -> PoolDef:
    auth = ChapAuth(username="chapuser", secret_uuid=None, secret_usage="target1-chap")
    source = PoolSource("127.0.0.1", 3260, TARGET, INITIATOR, auth)
    return PoolDef("iscsi-pool", UUID, source)


# ------------------------------------------------------------------------ golden output


def test_pool_xml_golden_15_4() -> None:
    state = PoolState(active=True, capacity=201325568, allocation=201325568, available=0)
    assert format_pool_xml(chap_pool(), state) == POOL_15_4


def test_pool_xml_round_trip_15_4() -> None:
    pool = parse_pool_xml(POOL_15_4)
    assert pool == chap_pool()
    state = PoolState(active=True, capacity=201325568, allocation=201325568)
    assert format_pool_xml(pool, state) == POOL_15_4


def test_inactive_pool_prints_zero_sizes_and_secret_uuid() -> None:
    pool = chap_pool()
    assert pool.source.auth is not None
    pool = replace(
        pool,
        source=replace(pool.source, port=None, auth=replace(pool.source.auth, secret_usage=None)),
    )
    pool = replace(pool, source=replace(pool.source, auth=ChapAuth("chapuser", UUID, None)))
    text = format_pool_xml(pool)
    assert "<capacity unit='bytes'>0</capacity>" in text
    assert "<available unit='bytes'>0</available>" in text
    assert "    <host name='127.0.0.1'/>\n" in text
    assert f"      <secret uuid='{UUID}'/>\n" in text


def test_plain_pool_has_no_auth_and_no_namespace() -> None:
    pool = replace(chap_pool(), source=replace(chap_pool().source, auth=None))
    text = format_pool_xml(pool)
    assert "<auth" not in text
    assert "xmlns" not in text
    assert text.startswith("<pool type='iscsi-direct'>\n")


def test_volume_xml_golden_16() -> None:
    volume = Volume.for_lun(chap_pool().source, 1, capacity=67108352, block_size=512)
    assert format_volume_xml(volume) == VOLUME_16


def test_sources_xml_golden_10() -> None:
    assert format_sources_xml("127.0.0.1", 3260, INITIATOR, [TARGET]) == SOURCES_10
    without_port = format_sources_xml("127.0.0.1", None, INITIATOR, [TARGET])
    assert "    <host name='127.0.0.1'/>\n" in without_port
    assert format_sources_xml("127.0.0.1", 3260, INITIATOR, []) == "<sources>\n</sources>\n"
    two = format_sources_xml("h", 3260, INITIATOR, [TARGET, "iqn.2026-11.example:t2"])
    assert two.count("<source>") == 2
    assert "<device path='iqn.2026-11.example:t2'/>" in two


def test_secret_xml_golden_17() -> None:
    secret = SecretDef(UUID, "iscsi", "target1-chap", "CHAP secret for target1", False, True)
    assert format_secret_xml(secret) == (
        "<secret ephemeral='no' private='yes'>\n"
        f"  <uuid>{UUID}</uuid>\n"
        "  <description>CHAP secret for target1</description>\n"
        "  <usage type='iscsi'>\n"
        "    <target>target1-chap</target>\n"
        "  </usage>\n"
        "</secret>\n"
    )
    unused = SecretDef(UUID)
    assert format_secret_xml(unused) == (
        f"<secret ephemeral='no' private='no'>\n  <uuid>{UUID}</uuid>\n</secret>\n"
    )
    ceph = SecretDef(UUID, "ceph", "t1")
    assert "  <usage type='ceph'>\n    <name>t1</name>\n  </usage>\n" in format_secret_xml(ceph)


def test_escaping_like_libvirt() -> None:
    # virsh pool-dumpxml output for username "u&\"'< x" (observed with libvirt 9.0)
    pool = chap_pool()
    pool = replace(pool, source=replace(pool.source, auth=ChapAuth("u&\"'< x>", None, "a\tb")))
    text = format_pool_xml(pool)
    assert "<auth type='chap' username='u&amp;&quot;&apos;&lt; x&gt;'>" in text
    assert "<secret usage='a&#x9;b'/>" in text
    assert parse_pool_xml(text).source.auth == pool.source.auth


# ------------------------------------------------------------------------------ parsing


def test_missing_uuid_is_generated() -> None:
    text = POOL_15_4.replace(f"  <uuid>{UUID}</uuid>\n", "")
    first, second = parse_pool_xml(text), parse_pool_xml(text)
    assert re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", first.uuid)
    assert first.uuid != second.uuid


def test_uuid_is_canonicalised() -> None:
    text = POOL_15_4.replace(UUID, UUID.replace("-", "").upper())
    assert parse_pool_xml(text).uuid == UUID


def test_libvirt_canonical_example_from_docs() -> None:
    text = """<pool type="iscsi-direct">
  <name>virtimages</name>
  <source>
    <host name="iscsi.example.com"/>
    <device path="iqn.2013-06.com.example:iscsi-pool"/>
    <initiator>
      <iqn name="iqn.2013-06.com.example:iscsi-initiator"/>
    </initiator>
  </source>
</pool>"""
    pool = parse_pool_xml(text)
    assert pool.source.host == "iscsi.example.com"
    assert pool.source.port is None
    assert pool.source.portal == "iscsi.example.com:3260"


def test_str_and_bytes_input_with_declaration() -> None:
    declared = "<?xml version='1.0' encoding='UTF-8'?>\n" + POOL_15_4
    assert parse_pool_xml(declared) == chap_pool()
    assert parse_pool_xml(declared.encode()) == chap_pool()
    assert parse_pool_xml(b"\xef\xbb\xbf" + POOL_15_4.encode()) == chap_pool()


def extension_xml(inner: str, *, prefix: str = "pb") -> str:
    element = (
        f"<{prefix}:iscsi xmlns:{prefix}='{PB_NS}'>{inner}</{prefix}:iscsi>"
        if inner is not None
        else ""
    )
    return POOL_15_4.replace("</source>\n", f"</source>\n  {element}\n")


def test_extension_parsed() -> None:
    text = extension_xml(
        "<pb:target-auth username='tgt'><pb:secret usage='mutual'/></pb:target-auth>"
        "<pb:chap algorithms='7,6,5'/>"
        "<pb:digest header='CRC32C,None' data='None'/>"
        "<pb:timeout seconds='2.5'/>"
    )
    pool = parse_pool_xml(text)
    auth = pool.source.auth
    assert auth is not None and auth.mutual
    assert auth.algorithms == (7, 6, 5)
    assert (auth.target_username, auth.target_secret_usage, auth.target_secret_uuid) == (
        "tgt",
        "mutual",
        None,
    )
    assert pool.options == PoolOptions("CRC32C,None", "None", 2.5)
    formatted = format_pool_xml(pool)
    assert formatted.startswith(f"<pool type='iscsi-direct' xmlns:pb='{PB_NS}'>\n")
    assert formatted.endswith(
        "  </source>\n"
        "  <pb:iscsi>\n"
        "    <pb:target-auth username='tgt'>\n"
        "      <pb:secret usage='mutual'/>\n"
        "    </pb:target-auth>\n"
        "    <pb:chap algorithms='7,6,5'/>\n"
        "    <pb:digest header='CRC32C,None' data='None'/>\n"
        "    <pb:timeout seconds='2.5'/>\n"
        "  </pb:iscsi>\n"
        "</pool>\n"
    )
    assert parse_pool_xml(formatted) == pool


def test_extension_any_prefix_and_defaults_not_printed() -> None:
    pool = parse_pool_xml(extension_xml("<x:chap algorithms='5'/>", prefix="x"))
    assert pool.source.auth is not None and pool.source.auth.algorithms == (5,)
    assert "iscsi>" not in format_pool_xml(pool)
    empty = parse_pool_xml(extension_xml(""))
    assert empty.options == PoolOptions()


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        (
            "<pb:timeout seconds='0'/>",
            "line 17: element 'pb:timeout': attribute 'seconds' must be greater than 0",
        ),
        (
            "<pb:timeout seconds='soon'/>",
            "line 17: element 'pb:timeout': invalid attribute 'seconds' value 'soon' "
            "(expected a number of seconds such as 10 or 2.5)",
        ),
        (
            "<pb:chap algorithms='5,5'/>",
            "line 17: element 'pb:chap': CHAP algorithm 5 is listed twice",
        ),
        (
            "<pb:chap algorithms='4'/>",
            "line 17: element 'pb:chap': invalid attribute 'algorithms' value '4' (expected a "
            "comma-separated list of CHAP algorithms 5 (MD5), 6 (SHA-1), 7 (SHA-256), 8 "
            "(SHA3-256))",
        ),
        (
            "<pb:digest header='None,None'/>",
            "line 17: element 'pb:digest': attribute 'header' lists a value twice",
        ),
        (
            "<pb:digest data='crc32c'/>",
            "line 17: element 'pb:digest': invalid attribute 'data' value 'crc32c' (expected "
            "'None', 'CRC32C', 'None,CRC32C' or 'CRC32C,None')",
        ),
        (
            "<pb:target-auth username='t'><pb:secret usage='target1-chap'/></pb:target-auth>",
            "line 17: element 'pb:secret': mutual CHAP must use a different secret than <auth> "
            "(RFC 7143 section 12.1.3)",
        ),
        (
            "<pb:target-auth username='t'><pb:secret uuid='nope'/></pb:target-auth>",
            "line 17: element 'pb:secret': invalid secret uuid 'nope'",
        ),
        (
            "<pb:target-auth username='t'/>",
            "line 17: element 'pb:target-auth': missing required element 'pb:secret'",
        ),
        (
            "<pb:target-auth username='t'><pb:secret usage='a' uuid='b'/></pb:target-auth>",
            "line 17: element 'pb:secret': needs exactly one of the attributes 'uuid' or 'usage'",
        ),
        (
            "<pb:bogus/>",
            "line 17: element 'pb:bogus': not allowed inside <pb:iscsi> (allowed: "
            "pb:target-auth, pb:chap, pb:digest, pb:timeout)",
        ),
        (
            "<pb:timeout seconds='1'/><pb:timeout seconds='2'/>",
            "line 17: element 'pb:timeout': may appear only once inside <pb:iscsi>",
        ),
    ],
)
def test_extension_errors(inner: str, message: str) -> None:
    with pytest.raises(XMLConfigError) as info:
        parse_pool_xml(extension_xml(inner), source_name="x.xml")
    assert str(info.value) == f"pool XML 'x.xml' {message}"


def test_extension_chap_settings_need_auth() -> None:
    text = extension_xml("<pb:chap algorithms='7'/>").replace(
        "    <auth type='chap' username='chapuser'>\n"
        "      <secret usage='target1-chap'/>\n"
        "    </auth>\n",
        "",
    )
    with pytest.raises(XMLConfigError) as info:
        parse_pool_xml(text, source_name="x.xml")
    assert str(info.value) == (
        "pool XML 'x.xml' line 14: element 'pb:chap': CHAP settings need <auth type='chap'> in "
        "<source>"
    )


def test_extension_inside_source_is_refused_with_a_hint() -> None:
    text = POOL_15_4.replace(
        "  </source>", f"    <pb:timeout xmlns:pb='{PB_NS}' seconds='3'/>\n  </source>"
    )
    with pytest.raises(XMLConfigError, match=r"<pb:iscsi> directly under <pool>"):
        parse_pool_xml(text)


def test_foreign_namespace_refused() -> None:
    text = POOL_15_4.replace("</source>\n", "</source>\n  <x:y xmlns:x='urn:other'/>\n")
    with pytest.raises(XMLConfigError, match=r"element 'x:y': not allowed inside <pool>"):
        parse_pool_xml(text)


# -------------------------------------------------------------------------------- safety

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE pool [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<pool type='iscsi-direct'><name>&lol9;</name></pool>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE pool [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<pool type='iscsi-direct'><name>&xxe;</name></pool>
"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_entity_attacks_rejected(document: bytes) -> None:
    with pytest.raises(XMLConfigError) as info:
        parse_pool_xml(document, source_name="evil.xml")
    assert str(info.value) == (
        "pool XML 'evil.xml' line 2: DTD declarations (<!DOCTYPE>, <!ENTITY>) are not allowed"
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (POOL_15_4.encode("utf-16"), "not UTF-8 XML text (binary data or UTF-16)"),
        (bytes(range(256)), "not UTF-8 XML text (binary data or UTF-16)"),
        (
            POOL_15_4.replace("iscsi-pool", "pöol").encode("latin-1"),
            "line 2: not valid UTF-8 (byte 0xf6 at offset 36); only UTF-8 XML is supported",
        ),
        (
            b"<?xml version='1.0' encoding='ISO-8859-1'?>" + POOL_15_4.encode(),
            "declares encoding 'ISO-8859-1'; only UTF-8 is supported",
        ),
        (b"", "document is empty"),
        (b"  \n ", "document is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 XML text (binary data or UTF-16)"),
    ],
    ids=["utf-16", "binary", "latin-1", "declared-latin-1", "empty", "blank", "png"],
)
def test_non_utf8_and_binary_rejected(data: bytes, problem: str) -> None:
    with pytest.raises(XMLConfigError) as info:
        parse_pool_xml(data, source_name="f.xml")
    separator = " " if problem.startswith("line") else ": "
    assert str(info.value) == f"pool XML 'f.xml'{separator}{problem}"


def test_malformed_xml_message() -> None:
    with pytest.raises(XMLConfigError) as info:
        parse_pool_xml("<pool type='iscsi-direct'>\n  <name>x</nam>\n</pool>", source_name="m.xml")
    message = str(info.value)
    assert message.startswith("pool XML 'm.xml' line 2: malformed XML: ")
    assert "\n" not in message


def test_too_large_rejected() -> None:
    big = POOL_15_4.replace("<name>", "<!--" + "x" * (1 << 20) + "--><name>")
    with pytest.raises(XMLConfigError, match="document too large"):
        parse_pool_xml(big)


def test_unencodable_str_rejected() -> None:
    with pytest.raises(XMLConfigError, match="not encodable as UTF-8"):
        parse_pool_xml(POOL_15_4.replace("iscsi-pool", "a\udcff"))


def test_source_name_with_newline_stays_one_line() -> None:
    with pytest.raises(XMLConfigError) as info:
        parse_pool_xml(b"", source_name="a\nb.xml")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ find-sources spec


def test_source_spec() -> None:
    spec = parse_source_xml(
        "<source>\n  <host name='127.0.0.1' port='3260'/>\n"
        "  <initiator><iqn name='iqn.2026-11.example:initiator1'/></initiator>\n</source>"
    )
    assert spec == SourceSpec("127.0.0.1", 3260, INITIATOR, None)
    with_device = parse_source_xml(
        f"<source><host name='h'/><device path='{TARGET}'/>"
        f"<initiator><iqn name='{INITIATOR}'/></initiator></source>"
    )
    assert with_device == SourceSpec("h", None, INITIATOR, TARGET)


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            "<source><host name='h'/></source>",
            "unsupported configuration: missing initiator IQN",
        ),
        (
            f"<source><initiator><iqn name='{INITIATOR}'/></initiator></source>",
            "unsupported configuration: Expected exactly 1 host for the storage pool",
        ),
        (
            f"<source><host name='a'/><host name='b'/><initiator><iqn name='{INITIATOR}'/>"
            "</initiator></source>",
            "unsupported configuration: Expected exactly 1 host for the storage pool",
        ),
        ("<pool/>", "XML error: expecting root element of 'source', not 'pool'"),
        (
            "<source><host port='1'/></source>",
            "XML error: missing storage pool host name",
        ),
        (
            f"<source><host name='h' port='x'/><initiator><iqn name='{INITIATOR}'/>"
            "</initiator></source>",
            "XML error: Invalid value for attribute 'port' in element 'host': 'x'. "
            "Expected integer value",
        ),
        (
            f"<source><host name='h'/><device path='bad'/><initiator><iqn name='{INITIATOR}'/>"
            "</initiator></source>",
            "pool source XML 's.xml' line 1: element 'device': invalid attribute 'path' value "
            "'bad' (expected an iSCSI qualified name iqn.YYYY-MM.domain[:id])",
        ),
    ],
)
def test_source_spec_errors(xml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_source_xml(xml, source_name="s.xml")
    assert str(info.value) == message


# ---------------------------------------------------------------------------- secrets


def test_secret_parse() -> None:
    secret = parse_secret_xml(
        "<secret ephemeral='no' private='yes'>\n  <description>CHAP secret for target1"
        "</description>\n  <usage type='iscsi'>\n    <target>target1-chap</target>\n"
        "  </usage>\n</secret>\n"
    )
    assert secret.usage_type == "iscsi"
    assert secret.usage_id == "target1-chap"
    assert secret.description == "CHAP secret for target1"
    assert (secret.ephemeral, secret.private) == (False, True)
    assert secret.usage_text == "iscsi target1-chap"
    again = parse_secret_xml(format_secret_xml(secret))
    assert again == secret


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        # messages observed with libvirt 9.0's secret driver
        (
            "<secret><usage type='iscsi'></usage></secret>",
            "internal error: iSCSI usage specified, but target is missing",
        ),
        (
            "<secret><usage type='ceph'></usage></secret>",
            "internal error: Ceph usage specified, but name is missing",
        ),
        (
            "<secret><usage type='volume'></usage></secret>",
            "internal error: volume usage specified, but volume path is missing",
        ),
        (
            "<secret><usage type='tls'></usage></secret>",
            "internal error: TLS usage specified, but name is missing",
        ),
        (
            "<secret><usage type='vtpm'></usage></secret>",
            "internal error: vTPM usage specified, but name is missing",
        ),
        (
            "<secret><usage type='foo'></usage></secret>",
            "unsupported configuration: unknown secret usage type foo",
        ),
        ("<secret><usage></usage></secret>", "XML error: unknown secret usage type"),
        ("<secret ephemeral='maybe'></secret>", "XML error: invalid value of 'ephemeral'"),
        ("<secret private='maybe'></secret>", "XML error: invalid value of 'private'"),
        ("<secret><uuid>zz</uuid></secret>", "internal error: malformed uuid element"),
        ("<secrets/>", "XML error: expecting root element of 'secret', not 'secrets'"),
        (
            "<secret><usage type='iscsi'><target>a</target><name>b</name></usage></secret>",
            "secret XML 's.xml' line 1: element 'name': not allowed inside <usage> "
            "(allowed: target)",
        ),
        (
            "<secret><bogus/></secret>",
            "secret XML 's.xml' line 1: element 'bogus': not allowed inside <secret> "
            "(allowed: uuid, description, usage)",
        ),
    ],
)
def test_secret_errors(xml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_secret_xml(xml, source_name="s.xml")
    assert str(info.value) == message


def test_secret_uuid_generated_and_canonical() -> None:
    generated = parse_secret_xml("<secret><usage type='iscsi'><target>t</target></usage></secret>")
    assert re.fullmatch(r"[0-9a-f-]{36}", generated.uuid)
    given_uuid = parse_secret_xml(f"<secret><uuid>{UUID.upper()}</uuid></secret>")
    assert given_uuid.uuid == UUID
    assert given_uuid.usage_text == "Unused"


# ----------------------------------------------------------------------------- volumes


def test_volume_parse() -> None:
    spec = parse_volume_xml(VOLUME_16)
    assert (spec.name, spec.capacity, spec.allocation) == ("unit:0:0:1", 67108352, 67108352)
    spec = parse_volume_xml(
        "<volume><name>v</name><capacity unit='MiB'>32</capacity><target/></volume>"
    )
    assert (spec.capacity, spec.allocation) == (32 << 20, None)


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        # messages observed with virsh -c test:///default vol-create (libvirt 9.0)
        ("<vol><name>x</name></vol>", "XML error: expecting root element of 'volume', not 'vol'"),
        ("<volume><name></name></volume>", "XML error: missing volume name element"),
        (
            "<volume type='bogus'><name>a</name><capacity>1</capacity></volume>",
            "unsupported configuration: unknown volume type 'bogus'",
        ),
        ("<volume><name>a</name></volume>", "XML error: missing capacity element"),
        (
            "<volume><name>a</name><capacity>x</capacity></volume>",
            "XML error: malformed capacity element",
        ),
        (
            "<volume><name>a</name><capacity unit='zz'>1</capacity></volume>",
            "invalid argument: unknown suffix 'zz'",
        ),
        (
            "<volume><name>a</name><capacity unit='GiB'>99999999999999</capacity></volume>",
            "numerical overflow: value too large: 99999999999999GiB",
        ),
        (
            "<volume><name>a</name><capacity>1</capacity><allocation>x</allocation></volume>",
            "XML error: malformed capacity element",
        ),
        (
            "<volume><name>a</name><capacity>-1</capacity></volume>",
            "XML error: malformed capacity element",
        ),
        (
            "<volume><name>a</name><capacity>1</capacity></volume>",
            "volume XML 'v.xml' line 1: element 'volume': missing required element 'target'",
        ),
    ],
)
def test_volume_errors(xml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_volume_xml(xml, source_name="v.xml")
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "unit", "result"),
    [
        (5, None, 5),
        (5, "b", 5),
        (5, "bytes", 5),
        (5, "KiB", 5 * 1024),
        (5, "k", 5 * 1024),
        (5, "KB", 5000),
        (5, "M", 5 << 20),
        (5, "GiB", 5 << 30),
        (1, "E", 1 << 60),
        (0, "EiB", 0),
    ],
)
def test_scale_integer(value: int, unit: str | None, result: int) -> None:
    assert scale_integer(value, unit) == result


# -------------------------------------------------------------------------- pool state


# --------------------------------------------------- property tests: round trip, mirror

NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
    min_size=1,
    max_size=20,
)
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n"),
    min_size=1,
    max_size=20,
)
HOSTS = st.sampled_from(["127.0.0.1", "::1", "fe80::1", "localhost", "iscsi.example.com"])
IQNS = st.from_regex(
    r"iqn\.20[0-9]{2}-(0[1-9]|1[0-2])\.[a-z0-9.\-]{1,10}(:[a-z0-9:]{1,10})?", fullmatch=True
)


@st.composite
def pools(draw: st.DrawFn) -> PoolDef:
    auth = None
    if draw(st.booleans()):
        use_uuid = draw(st.booleans())
        ref_uuid = str(draw(st.uuids())) if use_uuid else None
        usage = None if use_uuid else draw(TEXT)
        auth = ChapAuth(
            username=draw(TEXT),
            secret_uuid=ref_uuid,
            secret_usage=usage,
            algorithms=tuple(draw(st.permutations([5, 6, 7, 8]))[: draw(st.integers(1, 4))]),
        )
        if draw(st.booleans()):
            auth = replace(
                auth, target_username=draw(TEXT), target_secret_usage="mutual-" + draw(TEXT)
            )
    options = PoolOptions(
        header_digest=draw(st.sampled_from([None, "None", "CRC32C", "None,CRC32C"])),
        data_digest=draw(st.sampled_from([None, "None", "CRC32C,None"])),
        timeout_seconds=draw(st.sampled_from([None, 0.5, 10.0, 30.25])),
    )
    source = PoolSource(
        host=draw(HOSTS),
        port=draw(st.sampled_from([None, 1, 3260, 65535])),
        target_iqn=draw(IQNS),
        initiator_iqn=draw(TEXT),
        auth=auth,
    )
    name = draw(NAMES.filter(lambda n: "\n" not in n and n.strip() == n))
    return PoolDef(name=name, uuid=str(draw(st.uuids())), source=source, options=options)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(pools())
def test_format_parse_round_trip(pool: PoolDef) -> None:
    text = format_pool_xml(pool)
    assert parse_pool_xml(text) == pool
    assert format_pool_xml(parse_pool_xml(text)) == text


CHILD_SNIPPETS = [
    "<name>p</name>",
    "<name>a/b</name>",
    f"<uuid>{UUID}</uuid>",
    "<uuid>zz</uuid>",
    "<capacity unit='KiB'>5</capacity>",
    "<capacity unit='parsec'>5</capacity>",
    "<allocation>x</allocation>",
    "<features/>",
    "<features><cow state='no'/></features>",
    "<target/>",
    "<bogus a='1'/>",
    f"<pb:iscsi xmlns:pb='{PB_NS}'><pb:timeout seconds='1'/></pb:iscsi>",
    f"<pb:iscsi xmlns:pb='{PB_NS}'><pb:digest header='CRC32C' bad='x'/></pb:iscsi>",
    "text",
]
SOURCE_SNIPPETS = [
    "<host name='127.0.0.1'/>",
    "<host name='::1' port='3260'/>",
    "<host name='a_b'/>",
    "<host name='h' port='-1'/>",
    "<host name='h' port='65536'/>",
    f"<device path='{TARGET}'/>",
    "<device path='naa.1234'/>",
    f"<device path='{TARGET}'><x/></device>",
    f"<initiator><iqn name='{INITIATOR}'/></initiator>",
    "<initiator><iqn name='x'/><iqn name='y'/></initiator>",
    "<initiator/>",
    "<auth type='chap' username='u'><secret usage='s'/></auth>",
    f"<auth type='ceph' username='u'><secret uuid='{UUID}'/></auth>",
    "<auth type='chap' username='u'><secret usage='s'/><extra/></auth>",
    "<name>src</name>",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(CHILD_SNIPPETS), max_size=6),
    st.lists(st.sampled_from(SOURCE_SNIPPETS), max_size=6),
    st.booleans(),
)
def test_schema_mirror_agrees_with_relaxng(
    children: list[str], source_children: list[str], with_source: bool
) -> None:
    """The Python mirror that explains schema failures finds a problem exactly when the
    RELAX NG schema rejects, and parsing never fails with anything but a one-line
    ConfigError."""
    source = f"<source>{''.join(source_children)}</source>" if with_source else ""
    text = f"<pool type='iscsi-direct'>{''.join(children)}{source}</pool>"
    root = etree.fromstring(text.encode())
    valid = explain.relaxng_schema("storagepool.rng").validate(root)
    explained = explain.explain(root, explain.POOL_SPEC, "pool")
    assert valid == (explained is None), explained
    try:
        parse_pool_xml(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        assert str(exc)


LIBVIRT_SCHEMA = Path("/usr/share/libvirt/schemas/storagepool.rng")


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(pools())
def test_our_output_is_valid_for_libvirts_schema(pool: PoolDef) -> None:
    plain = replace(pool, options=PoolOptions())
    if plain.source.auth is not None:
        plain = replace(plain, source=replace(plain.source, auth=ChapAuth("u", None, "usage")))
    schema = _libvirt_schema()
    assert schema.validate(etree.fromstring(format_pool_xml(plain).encode())), schema.error_log


_LIBVIRT_SCHEMA_CACHE: list[etree.RelaxNG] = []


def _libvirt_schema() -> etree.RelaxNG:
    if not _LIBVIRT_SCHEMA_CACHE:
        _LIBVIRT_SCHEMA_CACHE.append(etree.RelaxNG(etree.parse(str(LIBVIRT_SCHEMA))))
    return _LIBVIRT_SCHEMA_CACHE[0]


def test_libvirt_loads_our_extension_and_prints_the_rest(tmp_path: Path) -> None:
    pool = parse_pool_xml(extension_xml("<pb:chap algorithms='7'/><pb:timeout seconds='3'/>"))
    path = tmp_path / "p.xml"
    path.write_text(format_pool_xml(pool))
    result = subprocess.run(
        ["virsh", "-q", "-c", "test:///default", f"pool-define {path}; pool-dumpxml iscsi-pool"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    dumped = result.stdout[result.stdout.index("<pool") :]
    plain = replace(pool, options=PoolOptions())
    assert plain.source.auth is not None
    plain = replace(
        plain, source=replace(plain.source, auth=replace(plain.source.auth, algorithms=(5,)))
    )
    # the test driver reports its own sizes; everything else is identical
    assert re.sub(
        r"<(capacity|allocation|available) unit='bytes'>\d+<", "<\\1 unit='bytes'>0<", dumped
    ) == format_pool_xml(plain)


SECRET_SNIPPETS = [
    f"<uuid>{UUID}</uuid>",
    "<uuid>nope</uuid>",
    "<description>d</description>",
    "<description><b/></description>",
    "<usage type='iscsi'><target>t</target></usage>",
    "<usage type='iscsi'><name>t</name></usage>",
    "<usage type='ceph'><name>c</name></usage>",
    "<usage type='volume'><volume>/var/lib/x.img</volume></usage>",
    "<usage type='volume'><volume>relative</volume></usage>",
    "<usage type='tls'><name>a/b</name></usage>",
    "<usage type='other'><name>x</name></usage>",
    "<usage><target>t</target></usage>",
    "<extra/>",
]
SECRET_ATTRS = ["", " ephemeral='yes'", " private='no'", " private='maybe'", " bogus='1'"]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SECRET_SNIPPETS), max_size=4), st.sampled_from(SECRET_ATTRS))
def test_secret_schema_mirror_agrees_with_relaxng(children: list[str], attrs: str) -> None:
    text = f"<secret{attrs}>{''.join(children)}</secret>"
    root = etree.fromstring(text.encode())
    valid = explain.relaxng_schema("secret.rng").validate(root)
    explained = explain.explain(root, explain.SECRET_SPEC, "secret")
    assert valid == (explained is None), explained
    try:
        parse_secret_xml(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)


SPEC_SNIPPETS = [
    "<host name='127.0.0.1'/>",
    "<host name='h' port='99999'/>",
    f"<device path='{TARGET}'/>",
    "<device path='x'/>",
    f"<initiator><iqn name='{INITIATOR}'/></initiator>",
    "<auth type='chap' username='u'><secret usage='s'/></auth>",
    "<format type='x'/>",
]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(SPEC_SNIPPETS), max_size=6))
def test_source_spec_schema_mirror_agrees_with_relaxng(children: list[str]) -> None:
    text = f"<source>{''.join(children)}</source>"
    root = etree.fromstring(text.encode())
    valid = explain.relaxng_schema("storagepoolsource.rng").validate(root)
    explained = explain.explain(root, explain.SOURCE_SPEC, "source")
    assert valid == (explained is None), explained
