"""Every file in xml-examples/ parses with our parser (and with libvirt's, when installed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from poolbackend.pool.model import ChapAuth, PoolOptions, SourceSpec
from poolbackend.pool.xml.pool import format_pool_xml, parse_pool_xml, parse_source_xml
from poolbackend.pool.xml.safe import SCHEMA_DIR
from poolbackend.pool.xml.secret import parse_secret_xml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "xml-examples"
POOLS = ["pool.xml", "pool-chap.xml", "pool-mutual-chap.xml", "pool-ipv6.xml"]
TARGET = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"


def test_all_examples_present() -> None:
    names = {path.name for path in EXAMPLES.glob("*.xml")}
    assert names >= {*POOLS, "secret.xml", "secret-mutual.xml", "source.xml"}


@pytest.mark.parametrize("name", POOLS)
def test_pool_examples_parse(name: str) -> None:
    pool = parse_pool_xml((EXAMPLES / name).read_bytes(), source_name=name)
    assert pool.source.target_iqn == TARGET
    assert pool.source.initiator_iqn == INITIATOR
    assert pool.source.port == 3260
    assert parse_pool_xml(format_pool_xml(pool)) == pool


def test_plain_example() -> None:
    pool = parse_pool_xml((EXAMPLES / "pool.xml").read_bytes())
    assert pool.source.host == "127.0.0.1"
    assert pool.source.auth is None
    assert pool.options == PoolOptions()


def test_chap_example() -> None:
    pool = parse_pool_xml((EXAMPLES / "pool-chap.xml").read_bytes())
    assert pool.source.auth == ChapAuth("chapuser", None, "target1-chap")


def test_mutual_chap_example() -> None:
    pool = parse_pool_xml((EXAMPLES / "pool-mutual-chap.xml").read_bytes())
    assert pool.source.auth == ChapAuth(
        username="chapuser",
        secret_uuid=None,
        secret_usage="target1-chap",
        algorithms=(5,),
        target_username="target1",
        target_secret_uuid=None,
        target_secret_usage="target1-mutual",
    )
    assert pool.options == PoolOptions("CRC32C,None", "None,CRC32C", 10.0)


def test_ipv6_example() -> None:
    pool = parse_pool_xml((EXAMPLES / "pool-ipv6.xml").read_bytes())
    assert pool.source.host == "::1"
    assert pool.source.portal == "[::1]:3260"
    assert pool.source.address == ("::1", 3260)


def test_secret_example() -> None:
    secret = parse_secret_xml((EXAMPLES / "secret.xml").read_bytes())
    assert (secret.usage_type, secret.usage_id, secret.private) == ("iscsi", "target1-chap", True)


def test_source_example() -> None:
    spec = parse_source_xml((EXAMPLES / "source.xml").read_bytes())
    assert spec == SourceSpec("127.0.0.1", 3260, INITIATOR)


def test_schemas_ship_in_the_package_and_at_top_level() -> None:
    assert SCHEMA_DIR == ROOT / "poolbackend" / "schemas"
    for name in ("storagepool.rng", "storagepoolsource.rng", "storagevol.rng", "secret.rng"):
        assert (SCHEMA_DIR / name).is_file()
    top = ROOT / "schemas"
    assert top.is_symlink()
    assert top.resolve() == SCHEMA_DIR.resolve()


@pytest.mark.parametrize("name", POOLS)
def test_libvirt_parser_accepts_pool_examples(name: str) -> None:
    result = subprocess.run(
        ["virsh", "-q", "-c", "test:///default", "pool-define", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("pool.xml", "storagepool"),
        ("pool-chap.xml", "storagepool"),
        ("pool-ipv6.xml", "storagepool"),
        ("secret.xml", "secret"),
        ("secret-mutual.xml", "secret"),
    ],
)
def test_libvirt_schema_accepts_plain_examples(name: str, schema: str) -> None:
    result = subprocess.run(
        ["virt-xml-validate", str(EXAMPLES / name), schema],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
