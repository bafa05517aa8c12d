"""The one ``host[:port]`` parser (:meth:`poolbackend.iscsi.portal.Portal.parse`) and the one
:data:`~poolbackend.iscsi.portal.DEFAULT_PORT`, used by URLs, a target's TargetAddress
(redirects, SendTargets), the CLI's port argument and the pool layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import poolbackend
from poolbackend.iscsi import portal as portal_module
from poolbackend.iscsi.errors import InvalidAddress
from poolbackend.iscsi.portal import DEFAULT_PORT, Portal, bare_host, parse_port
from poolbackend.iscsi.url import parse_url
from poolbackend.pool import naming

GOOD = [
    ("127.0.0.1", "127.0.0.1", 3260),
    ("127.0.0.1:3261", "127.0.0.1", 3261),
    ("10.0.0.1:1", "10.0.0.1", 1),
    ("10.0.0.1:65535", "10.0.0.1", 65535),
    ("target.example.com", "target.example.com", 3260),
    ("target.example.com.:860", "target.example.com.", 860),
    ("tgt_host-1:3260", "tgt_host-1", 3260),
    ("localhost:03260", "localhost", 3260),
    ("[::1]", "::1", 3260),
    ("[::1]:3261", "::1", 3261),
    ("[fe80::1%eth0]:3260", "fe80::1%eth0", 3260),
    ("[::ffff:10.0.0.1]:3262", "::ffff:10.0.0.1", 3262),
    ("fe80::1", "fe80::1", 3260),  # bare IPv6: no port possible
    ("2001:db8::7", "2001:db8::7", 3260),
]

BAD = [
    ("", "missing host"),
    (":3260", "missing host"),
    ("host:", "empty port after ':'"),
    ("host:0", "invalid port '0' (expected 1-65535)"),
    ("host:65536", "invalid port '65536' (expected 1-65535)"),
    ("host:99999999999999999999", "invalid port '99999999999999999999' (expected 1-65535)"),
    ("host:32a", "invalid port '32a' (expected 1-65535)"),
    ("host:-1", "invalid port '-1' (expected 1-65535)"),
    ("host:+1", "invalid port '+1' (expected 1-65535)"),
    ("host: 1", "invalid port ' 1' (expected 1-65535)"),
    ("host:\uff13", "invalid port '\uff13' (expected 1-65535)"),
    ("host:0x10", "invalid port '0x10' (expected 1-65535)"),
    ("[::1", "unclosed '[' in '[::1'"),
    ("[::1]3260", "unexpected '3260' after ']' (expected ]:port)"),
    ("[]:3260", "empty IPv6 address in brackets"),
    ("[host]:3260", "'host' in brackets is not an IPv6 address"),
    ("[::1]:", "empty port after ':'"),
    ("[::1]:0", "invalid port '0' (expected 1-65535)"),
    ("bad_host!", "invalid host 'bad_host!' (expected a DNS name, an IPv4 address or [IPv6])"),
    ("a b:3260", "invalid host 'a b' (expected a DNS name, an IPv4 address or [IPv6])"),
    ("fe80::zz", "invalid host 'fe80::zz'"),
    ("host\n:1", "invalid host 'host\\n' (expected a DNS name, an IPv4 address or [IPv6])"),
]


@pytest.mark.parametrize(("text", "host", "port"), GOOD)
def test_good_portals(text: str, host: str, port: int) -> None:
    assert Portal.parse(text) == Portal(host, port)
    assert Portal.parse(text, tpgt=True) == Portal(host, port)
    assert Portal.parse(text + ",1", tpgt=True) == Portal(host, port)  # a TPGT suffix
    assert Portal.parse(str(Portal(host, port))) == Portal(host, port)  # str() round-trips


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_portals(text: str, message: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        Portal.parse(text)
    assert str(info.value) == message
    with pytest.raises(InvalidAddress):
        Portal.parse(text + ",1", tpgt=True)


@pytest.mark.parametrize("tag", ["0", "1", "65535"])
def test_tpgt_suffix(tag: str) -> None:
    assert Portal.parse(f"10.0.0.1:3261,{tag}", tpgt=True) == Portal("10.0.0.1", 3261)
    assert Portal.parse(f"[::1]:3261,{tag}", tpgt=True) == Portal("::1", 3261)
    assert Portal.parse(f"10.0.0.1,{tag}", tpgt=True) == Portal("10.0.0.1", DEFAULT_PORT)


@pytest.mark.parametrize("tag", ["", "x", "65536", "-1", "1,2", " 1"])
def test_bad_tpgt(tag: str) -> None:
    with pytest.raises(InvalidAddress, match="portal group tag"):
        Portal.parse(f"10.0.0.1:3260,{tag}", tpgt=True)


def test_tpgt_only_where_asked() -> None:
    """A URL's host never carries a portal group tag."""
    with pytest.raises(InvalidAddress, match=r"invalid host '10\.0\.0\.1,1'"):
        Portal.parse("10.0.0.1,1")
    with pytest.raises(InvalidAddress, match="invalid port '3260,1'"):
        Portal.parse("10.0.0.1:3260,1")


def test_parse_port() -> None:
    assert parse_port("1") == 1 and parse_port("65535") == 65535
    for bad in ("", "0", "65536", "x", "1.0", "\uff11"):
        with pytest.raises(InvalidAddress, match=r"expected 1-65535"):
            parse_port(bad)


def test_bare_host() -> None:
    assert bare_host("[::1]") == "::1"
    assert bare_host("::1") == "::1"
    assert bare_host("host") == "host"
    assert bare_host("[host]") == "[host]"  # not an IPv6 literal: left as it is


def test_url_and_pool_layer_use_the_same_rules() -> None:
    """The URL parser quotes the portal parser's reasons; the pool layer's default port is
    the same object."""
    for text, message in BAD:
        if not text or text.startswith(":") or "\n" in text:
            continue
        with pytest.raises(Exception, match="invalid iSCSI URL") as info:
            parse_url(f"iscsi://{text}/iqn.2026-11.example:t/1", env={})
        assert str(info.value).endswith(": " + message), (text, str(info.value))
    for text, host, port in GOOD:
        assert parse_url(f"iscsi://{text}/iqn.2026-11.example:t/1", env={}).portal == Portal(
            host, port
        )
    assert naming.DEFAULT_PORT is portal_module.DEFAULT_PORT
    assert naming.connect_address("[::1]", None) == ("::1", DEFAULT_PORT)


def test_one_default_port_and_parser_in_the_tree() -> None:
    """No other module spells the iSCSI port or splits a portal at its last ':' itself."""
    root = Path(poolbackend.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == Path(portal_module.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == 3260:
                offenders.append(f"{path.relative_to(root)}:{node.lineno}: 3260")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("rsplit", "rpartition")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == ":"
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}: {node.func.attr}")
    assert offenders == [], offenders
