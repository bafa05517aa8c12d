"""The plain runtime state file: round trip, no user-input limits, every damage one line."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from poolbackend.pool import statefile
from poolbackend.pool.model import ChapAuth, PoolDef, PoolOptions, PoolSource, PoolState, Volume
from poolbackend.pool.statefile import StateFileError
from poolbackend.pool.xml.safe import MAX_XML_BYTES

UUID = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"


def pool() -> PoolDef:
    auth = ChapAuth("user", secret_usage="target1-chap", algorithms=(7, 5), target_username="t")
    source = PoolSource("::1", None, "iqn.2026-11.example:target1", "iqn.2026-11.ex:i", auth)
    return PoolDef("p1", UUID, source, PoolOptions("CRC32C", None, 2.5))


def state(luns: int = 3) -> PoolState:
    src = pool().source
    volumes = tuple(
        Volume.for_lun(
            src,
            lun,
            capacity=lun * 512 * 1024,
            block_size=512 if lun else 0,
            device_type=0 if lun else 12,
            device_type_name="disk" if lun else "STORAGE_ARRAY_CONTROLLER",
            vendor="IET" if lun else None,
            product=' <&>"\\\x00\udcff',
        )
        for lun in range(luns)
    )
    return PoolState(
        active=True, capacity=2**64 - 1, allocation=5, volumes=volumes, activation="0a1b2c3d"
    )


def test_round_trip() -> None:
    live, loaded = statefile.loads(statefile.dumps(pool(), state()))
    assert live == pool()
    assert loaded == state()
    assert loaded.volume("name", "unit:0:0:2") == state().volumes[2]
    assert loaded.volume("key", state().volumes[1].key) == state().volumes[1]


def test_4096_luns_are_not_held_to_the_user_input_limit() -> None:
    data = statefile.dumps(pool(), state(16384))
    assert len(data) > MAX_XML_BYTES  # the limit that broke every command before
    assert statefile.loads(data)[1] == state(16384)


def test_a_field_added_with_a_default_still_loads_old_files() -> None:
    doc = json.loads(statefile.dumps(pool(), state(2)))
    del doc["state"]["volumes"][1]["reported"]  # as written before the field existed
    del doc["state"]["activation"]
    del doc["pool"]["options"]
    live, loaded = statefile.loads(json.dumps(doc).encode())
    assert loaded.volumes[1].reported is None and loaded.activation == ""
    assert live.options == PoolOptions()


def test_the_writer_refuses_what_the_reader_would_refuse() -> None:
    huge = PoolState(active=True, capacity=9_444_732_965_739_290_427_392)  # 2**64 blocks x 512
    with pytest.raises(StateFileError, match=r"state\.capacity = 9444732965739290427392"):
        statefile.dumps(pool(), huge)
    with pytest.raises(StateFileError, match="not a finite number"):
        statefile.dumps(PoolDef("p", UUID, pool().source, PoolOptions(None, None, 1e999)), state())


def _mutate(path: tuple[str | int, ...], value: object) -> Callable[[], bytes]:
    def make() -> bytes:
        doc = json.loads(statefile.dumps(pool(), state()))
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return json.dumps(doc, separators=(",", ":")).encode()

    return make


def _raw(data: bytes) -> Callable[[], bytes]:
    return lambda: data


DAMAGE: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (_raw(b""), "not valid JSON"),
    "garbage bytes": (_raw(b"\x00\xff\xfe garbage"), "not UTF-8 text"),
    "garbage text": (_raw(b"hello"), "not valid JSON"),
    "cut off": (lambda: statefile.dumps(pool(), state())[:-40], "not valid JSON"),
    "a list": (_raw(b"[1, 2]"), "not a poolbackend state file"),
    "other format": (_raw(b'{"format": "x", "version": 1}'), "not a poolbackend state file"),
    "old XML": (_raw(b"<poolstate active='yes'/>"), "written by an older poolbackend"),
    "newer version": (_mutate(("version",), 2), "format version 2"),
    "pool not an object": (_mutate(("pool",), 7), "pool must be an object, not 7"),
    "name a number": (_mutate(("pool", "name"), 5), "pool.name must be a string, not 5"),
    "missing uuid": (_mutate(("pool", "uuid"), None), "pool.uuid must be a string"),
    "active a string": (_mutate(("state", "active"), "yes"), "state.active must be true or false"),
    "lun a bool": (_mutate(("state", "volumes", 1, "lun"), True), r"volumes\[1\]\.lun must be"),
    "lun negative": (_mutate(("state", "volumes", 1, "lun"), -1), "from 0 to 2"),
    "capacity 2^64": (_mutate(("state", "capacity"), 2**64), "from 0 to 2"),
    "capacity 9.4e21": (_mutate(("state", "capacity"), 9444732965739290427392), "from 0 to 2"),
    "capacity a float": (_mutate(("state", "capacity"), 1.5), "state.capacity must be"),
    "volumes a dict": (_mutate(("state", "volumes"), {}), "state.volumes must be a list"),
    "volume a string": (_mutate(("state", "volumes", 0), "x"), r"volumes\[0\] must be an object"),
    "algorithms strings": (
        _mutate(("pool", "source", "auth", "algorithms"), ["5"]),
        r"algorithms\[0\] must be an integer",
    ),
    "timeout NaN": (
        lambda: _mutate(("pool", "options", "timeout_seconds"), 0)().replace(
            b'"timeout_seconds":0', b'"timeout_seconds":NaN'
        ),
        "a finite number",
    ),
    "5000 digits": (
        lambda: _mutate(("state", "allocation"), 0)().replace(
            b'"allocation":0', b'"allocation":' + b"9" * 5000
        ),
        "not valid JSON",
    ),
    "reported not hex": (
        _mutate(("state", "volumes", 1, "reported"), "zz"),
        r"volumes\[1\]\.reported: LUN field 'zz' is not 16 lowercase hex digits",
    ),
    "reported a number": (_mutate(("state", "volumes", 1, "reported"), 1), "16 hex digits"),
    "reported another LUN": (
        _mutate(("state", "volumes", 1, "reported"), "0002000000000000"),
        r"volumes\[1\]\.reported is LUN 2, not 1",
    ),
    "activation not hex": (_mutate(("state", "activation"), "xyz"), "activation must be hex"),
    "deep nesting": (_raw(b"[" * 100000 + b"]" * 100000), "nested too deeply|not a poolbackend"),
    "too large": (_raw(b" " * (statefile.MAX_STATE_BYTES + 1)), "more than"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_every_damage_is_one_line(case: str) -> None:
    make, expected = DAMAGE[case]
    with pytest.raises(StateFileError, match=expected) as info:
        statefile.loads(make())
    assert str(info.value) and "\n" not in str(info.value)
    assert len(str(info.value)) < 300
