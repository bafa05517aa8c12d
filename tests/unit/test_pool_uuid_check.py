"""libvirt's name/UUID duplicate check (virStoragePoolObjIsDuplicate) at define, create and
start, and a refresh that does not pay for it: it reads no other pool's files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolbackend.errors import StateError
from poolbackend.pool import store as store_module
from poolbackend.pool.backends.iscsi_direct import IscsiDirectBackend
from poolbackend.pool.driver import Driver
from poolbackend.pool.fsutil import StorePaths
from poolbackend.pool.model import PoolDef, PoolSource
from poolbackend.pool.store import Store
from poolbackend.pool.xml.pool import format_pool_xml
from tests.unit.fake_session import FakeLun, FakeTarget

UUID = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"
INITIATOR = "iqn.2026-11.example:initiator1"


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget(luns={1: FakeLun()})


@pytest.fixture
def warnings() -> list[str]:
    return []


@pytest.fixture
def driver(tmp_path: Path, target: FakeTarget, warnings: list[str]) -> Driver:
    store = Store(StorePaths.under(tmp_path / "state"), warn=warnings.append)
    return Driver(store, backend=IscsiDirectBackend(open_session=target.factory))


def pool(name: str, uuid: str = UUID, iqn: str = FakeTarget.iqn) -> PoolDef:
    return PoolDef(name, uuid, PoolSource("127.0.0.1", 3260, iqn, INITIATOR))


def other_uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


def test_define_and_create_refuse_a_duplicate_uuid(driver: Driver) -> None:
    driver.define(pool("p"))
    clash = pool("q", iqn="iqn.2026-11.example:other")
    refused = f"^operation failed: pool 'p' is already defined with uuid {UUID}$"
    with pytest.raises(StateError, match=refused):
        driver.define(clash)
    with pytest.raises(StateError, match=refused):
        driver.create(clash)
    assert driver.find_pool("q") is None


def test_start_refuses_a_duplicate_uuid_written_by_hand(driver: Driver) -> None:
    """A definition copied by hand under another name keeps the UUID: its start is refused
    with libvirt's text and leaves it inactive."""
    driver.define(pool("p"))
    copy = pool("q", iqn="iqn.2026-11.example:other")
    path = driver.store.definition_path("q")
    path.write_text(format_pool_xml(copy))
    with pytest.raises(
        StateError, match=f"^operation failed: pool 'p' is already defined with uuid {UUID}$"
    ):
        driver.start("q")
    assert not driver.lookup_pool("q").active
    assert not driver.lookup_pool("p").active


def _definition_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loaded: list[str] = []
    real = store_module.parse_pool_xml

    def counting(data: bytes | str, *, source_name: str = "<file>") -> PoolDef:
        loaded.append(source_name)
        return real(data, source_name=source_name)

    monkeypatch.setattr(store_module, "parse_pool_xml", counting)
    return loaded


@pytest.mark.parametrize("others", [0, 12])
def test_refresh_reads_no_other_pool(
    driver: Driver, monkeypatch: pytest.MonkeyPatch, warnings: list[str], others: int
) -> None:
    """The duplicate check reads every pool's files; a refresh saves the live definition its
    start checked and reads only its own pool's files, however many pools are defined (a
    damaged one among them is not even noticed)."""
    driver.define(pool("p"))
    driver.start("p")
    for n in range(others):
        driver.define(pool(f"o{n}", other_uuid(n), iqn=f"iqn.2026-11.example:o{n}"))
    if others:
        driver.store.definition_path("o0").write_bytes(b"<pool type='iscsi-direct'>\x00")
    loaded = _definition_loads(monkeypatch)
    driver.refresh("p")
    assert loaded and set(loaded) == {"p.xml"}
    assert warnings == []
