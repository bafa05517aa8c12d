"""libvirt's iscsi-direct naming rules: portal, volume name, key/path, connect address."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolbackend.errors import ConfigError
from poolbackend.pool import naming
from poolbackend.pool.model import PoolSource, Volume

IQN = "iqn.2026-11.example:target1"


@pytest.mark.parametrize(
    ("host", "port", "portal"),
    [
        ("127.0.0.1", 3260, "127.0.0.1:3260"),
        ("127.0.0.1", None, "127.0.0.1:3260"),
        ("127.0.0.1", 0, "127.0.0.1:3260"),
        ("127.0.0.1", 3261, "127.0.0.1:3261"),
        ("localhost", None, "localhost:3260"),
        ("::1", 3260, "[::1]:3260"),
        ("::1", None, "::1:3260"),
        ("::1", 0, "::1:3260"),
        ("fe80::1", 3261, "[fe80::1]:3261"),
    ],
)
def test_portal_string(host: str, port: int | None, portal: str) -> None:
    assert naming.portal_string(host, port) == portal


def test_volume_name_and_back() -> None:
    assert naming.volume_name(0) == "unit:0:0:0"
    assert naming.volume_name(12) == "unit:0:0:12"
    assert naming.lun_from_volume_name("unit:0:0:12") == 12
    with pytest.raises(ValueError):
        naming.volume_name(-1)


@pytest.mark.parametrize(
    "name",
    [
        "unit:0:0:",
        "unit:0:0:x",
        "unit:0:0:-1",
        "unit:0:0: 1",
        "unit:0:1:1",
        "lun1",
        "unit:0:0:\u0661",
    ],
)
def test_invalid_volume_names(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        naming.lun_from_volume_name(name)
    assert str(info.value) == f"Invalid volume name {name}"


def test_invalid_volume_name_message_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        naming.lun_from_volume_name("unit:0:0:1\nerror: fake")
    assert "\n" not in str(info.value)
    assert str(info.value) == "Invalid volume name unit:0:0:1\\nerror: fake"


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_volume_name_round_trip(lun: int) -> None:
    assert naming.lun_from_volume_name(naming.volume_name(lun)) == lun


@pytest.mark.parametrize(
    ("host", "port", "key"),
    [
        ("127.0.0.1", 3260, "ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-1"),
        ("localhost", None, "ip-localhost:3260-iscsi-iqn.2026-11.example:target1-lun-1"),
        ("::1", 3260, "ip-[::1]:3260-iscsi-iqn.2026-11.example:target1-lun-1"),
        ("::1", None, "ip-::1:3260-iscsi-iqn.2026-11.example:target1-lun-1"),
    ],
)
def test_volume_key(host: str, port: int | None, key: str) -> None:
    assert naming.volume_key(host, port, IQN, 1) == key
    assert naming.volume_path(host, port, IQN, 1) == key


@pytest.mark.parametrize(
    ("host", "port", "address"),
    [
        ("127.0.0.1", 3260, ("127.0.0.1", 3260)),
        ("127.0.0.1", None, ("127.0.0.1", 3260)),
        ("127.0.0.1", 0, ("127.0.0.1", 3260)),
        ("::1", 3261, ("::1", 3261)),
        ("[::1]", None, ("::1", 3260)),
        ("target.example", 860, ("target.example", 860)),
    ],
)
def test_connect_address(host: str, port: int | None, address: tuple[str, int]) -> None:
    assert naming.connect_address(host, port) == address


@pytest.mark.parametrize("port", [-5, -1, 65536, 70000])
def test_connect_address_rejects_bad_ports(port: int) -> None:
    with pytest.raises(ConfigError, match="expected 1-65535"):
        naming.connect_address("127.0.0.1", port)


def test_volume_for_lun_uses_the_rules() -> None:
    source = PoolSource("::1", 3260, IQN, "iqn.2026-11.example:initiator1")
    volume = Volume.for_lun(source, 2, capacity=512, block_size=512)
    assert volume.name == "unit:0:0:2"
    assert volume.key == volume.path == "ip-[::1]:3260-iscsi-iqn.2026-11.example:target1-lun-2"
    assert volume.allocation == 512
    assert volume.type == "network"
    assert source.portal == "[::1]:3260"
    assert source.address == ("::1", 3260)


def test_printable() -> None:
    assert naming.printable("a\nb\tc\x00\x7f") == "a\\nb\\tc\\x00\\x7f"
    assert naming.printable("x" * 10, limit=4) == "xxxx..."
    assert naming.printable("日本") == "日本"
