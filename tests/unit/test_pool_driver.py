"""The storage driver and the iscsi-direct backend table against a fake session factory:
lifecycle rules, LUNs that fail, vanish or change size, and concurrent define/destroy.
Milliseconds each; the same rules against real tgtd are in tests/integration."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from poolbackend.errors import PoolBackendError, StateError
from poolbackend.pool import store as store_module
from poolbackend.pool.backends.iscsi_direct import IscsiDirectBackend
from poolbackend.pool.driver import Driver
from poolbackend.pool.fsutil import StorePaths
from poolbackend.pool.model import PoolDef, PoolOptions, PoolSource
from poolbackend.pool.store import Store
from poolbackend.pool.xml.pool import format_pool_xml
from tests.harness.fresh import run_fresh
from tests.unit.fake_session import FakeLun, FakeTarget

UUID = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"
INITIATOR = "iqn.2026-11.example:initiator1"
MiB = 1 << 20


def make_pool(target: FakeTarget, timeout: float | None = None) -> PoolDef:
    return PoolDef(
        "p",
        UUID,
        PoolSource("127.0.0.1", 3260, target.iqn, INITIATOR),
        options=PoolOptions(timeout_seconds=timeout),
    )


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget(luns={0: FakeLun(device_type=0x0C), 1: FakeLun(), 2: FakeLun(blocks=4096)})


@pytest.fixture
def driver(tmp_path: Path, target: FakeTarget) -> Driver:
    store = Store(StorePaths.under(tmp_path / "state"), warn=lambda _: None)
    return Driver(store, backend=IscsiDirectBackend(open_session=target.factory))


def volumes(driver: Driver) -> dict[str, int]:
    return {v.name: v.capacity for v in driver.active_pool("p").state.volumes}


# ----------------------------------------------------------------------- lifecycle rules


def test_start_scans_through_the_session_factory(driver: Driver, target: FakeTarget) -> None:
    driver.define(make_pool(target, timeout=2.5))
    result = driver.start("p")
    assert result.name == "p" and result.failures == ()
    assert volumes(driver) == {"unit:0:0:0": 0, "unit:0:0:1": MiB, "unit:0:0:2": 2 * MiB}
    portal, iqn, options, credentials = target.logins[-1]
    assert (str(portal), iqn, credentials) == ("127.0.0.1:3260", target.iqn, None)
    assert (options.initiator_name, options.timeout) == (INITIATOR, 2.5)  # the one mapping


def test_start_of_active_pool_is_refused(driver: Driver, target: FakeTarget) -> None:
    driver.define(make_pool(target))
    driver.start("p")
    logins = len(target.logins)
    with pytest.raises(
        StateError, match=r"^Requested operation is not valid: storage pool 'p' is already active$"
    ):
        driver.start("p")
    assert len(target.logins) == logins  # refused before any I/O


def test_refresh_and_destroy_of_inactive_pool_are_refused(
    driver: Driver, target: FakeTarget
) -> None:
    driver.define(make_pool(target))
    for operation in (driver.refresh, driver.destroy, driver.active_pool):
        with pytest.raises(
            StateError, match=r"^Requested operation is not valid: storage pool 'p' is not active$"
        ):
            operation("p")
    assert target.logins == []


def test_define_over_active_pool_keeps_pending_definition(
    driver: Driver, target: FakeTarget
) -> None:
    first = make_pool(target)
    driver.define(first)
    driver.start("p")
    pending = replace(first, options=PoolOptions(timeout_seconds=3.0))
    driver.define(pending)
    record = driver.lookup_pool("p")
    assert record.active
    assert record.pool == first  # the running definition is unchanged
    assert record.inactive_pool == pending  # the next start uses the new one
    driver.refresh("p")
    assert target.logins[-1][2].timeout == 10.0  # a refresh talks as the running pool
    driver.destroy("p")
    driver.start("p")
    assert target.logins[-1][2].timeout == 3.0
    assert driver.lookup_pool("p").pool == pending


def test_undefine_of_active_pool_is_refused(driver: Driver, target: FakeTarget) -> None:
    driver.define(make_pool(target))
    driver.start("p")
    with pytest.raises(
        StateError, match=r"^Requested operation is not valid: storage pool 'p' is still active$"
    ):
        driver.undefine("p")
    assert driver.lookup_pool("p").persistent
    assert driver.destroy("p") == "p"
    assert driver.undefine("p") == "p"
    assert driver.find_pool("p") is None


def test_failed_refresh_deactivates_the_pool(driver: Driver, target: FakeTarget) -> None:
    driver.define(make_pool(target))
    driver.start("p")
    target.unreachable = True
    with pytest.raises(PoolBackendError, match="connection refused"):
        driver.refresh("p")
    assert not driver.lookup_pool("p").active
    assert driver.lookup_pool("p").persistent  # the definition stays


# ----------------------------------------- libvirt's name/UUID duplicate check, and its cost


def other_pool(target: FakeTarget, name: str, uuid: str = UUID) -> PoolDef:
    """Pool ``name`` on a target of its own (no source conflict with ``p``)."""
    base = make_pool(target)
    source = replace(base.source, target_iqn=f"{target.iqn}-{name}")
    return replace(base, name=name, uuid=uuid, source=source)


def test_define_and_create_refuse_a_duplicate_uuid(driver: Driver, target: FakeTarget) -> None:
    driver.define(make_pool(target))
    clash = other_pool(target, "q")
    refused = f"^operation failed: pool 'p' is already defined with uuid {UUID}$"
    with pytest.raises(StateError, match=refused):
        driver.define(clash)
    with pytest.raises(StateError, match=refused):
        driver.create(clash)
    assert driver.find_pool("q") is None


def test_start_refuses_a_duplicate_uuid_written_by_hand(driver: Driver, target: FakeTarget) -> None:
    """A definition copied by hand under another name keeps the UUID: its start is refused
    with libvirt's text and leaves it inactive."""
    driver.define(make_pool(target))
    driver.store.definition_path("q").write_text(format_pool_xml(other_pool(target, "q")))
    with pytest.raises(
        StateError, match=f"^operation failed: pool 'p' is already defined with uuid {UUID}$"
    ):
        driver.start("q")
    assert not driver.lookup_pool("q").active
    assert not driver.lookup_pool("p").active


def _count_definition_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loaded: list[str] = []
    real = store_module.parse_pool_xml

    def counting(data: bytes | str, *, source_name: str = "<file>") -> PoolDef:
        loaded.append(source_name)
        return real(data, source_name=source_name)

    monkeypatch.setattr(store_module, "parse_pool_xml", counting)
    return loaded


def test_define_and_create_read_each_other_pool_once(
    driver: Driver, target: FakeTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source-conflict and duplicate checks share one reading of the other pools."""
    for n in range(3):
        driver.define(other_pool(target, f"o{n}", f"00000000-0000-4000-8000-{n:012x}"))
    loaded = _count_definition_loads(monkeypatch)
    driver.define(make_pool(target))
    assert [loaded.count(f"o{n}.xml") for n in range(3)] == [1, 1, 1]
    loaded.clear()
    driver.create(other_pool(target, "t", "00000000-0000-4000-8000-0000000000ff"))
    assert [loaded.count(f"o{n}.xml") for n in range(3)] == [1, 1, 1]


@pytest.mark.parametrize("others", [0, 12])
def test_refresh_reads_no_other_pool(
    tmp_path: Path, target: FakeTarget, monkeypatch: pytest.MonkeyPatch, others: int
) -> None:
    """The duplicate check reads every pool's files; a refresh saves the live definition its
    start checked and reads only its own pool's files, however many pools are defined (a
    damaged one among them is not even noticed)."""
    warnings: list[str] = []
    store = Store(StorePaths.under(tmp_path / "state"), warn=warnings.append)
    driver = Driver(store, backend=IscsiDirectBackend(open_session=target.factory))
    driver.define(make_pool(target))
    driver.start("p")
    for n in range(others):
        driver.define(other_pool(target, f"o{n}", f"00000000-0000-4000-8000-{n:012x}"))
    if others:
        store.definition_path("o0").write_bytes(b"<pool type='iscsi-direct'>\x00")
    loaded = _count_definition_loads(monkeypatch)
    driver.refresh("p")
    assert loaded and set(loaded) == {"p.xml"}
    assert warnings == []


# ---------------------------------------------------------------------------------- LUNs


def test_a_lun_that_fails_is_left_out(driver: Driver, target: FakeTarget) -> None:
    target.failing.add(2)
    driver.define(make_pool(target))
    result = driver.start("p")
    assert volumes(driver) == {"unit:0:0:0": 0, "unit:0:0:1": MiB}
    assert len(result.failures) == 1
    assert result.failures[0].startswith("LUN 2 left out: LUN 2: NOT READY")
    assert driver.lookup_pool("p").state.capacity == MiB


def test_a_lun_that_vanishes_between_refreshes(driver: Driver, target: FakeTarget) -> None:
    driver.define(make_pool(target))
    driver.start("p")
    del target.luns[1]
    result = driver.refresh("p")
    assert result.failures == ()
    assert volumes(driver) == {"unit:0:0:0": 0, "unit:0:0:2": 2 * MiB}
    with pytest.raises(PoolBackendError, match="no storage vol with matching path"):
        driver.find_volume("unit:0:0:1", "p")


def test_a_capacity_change_between_refreshes(driver: Driver, target: FakeTarget) -> None:
    driver.define(make_pool(target))
    driver.start("p")
    target.luns[1] = FakeLun(blocks=8, block_length=4096)
    driver.refresh("p")
    record, volume = driver.find_volume("unit:0:0:1", "p")
    assert (volume.capacity, volume.block_size) == (8 * 4096, 4096)
    assert record.state.capacity == 8 * 4096 + 2 * MiB


# --------------------------------------------------------------------------- concurrency


def test_define_during_start_discards_the_scan(driver: Driver, target: FakeTarget) -> None:
    """A start whose pool is redefined while it scans saves nothing: the scan talked to
    the old definition."""
    first = make_pool(target)
    driver.define(first)
    changed = replace(first, options=PoolOptions(timeout_seconds=3.0))
    target.on_report_luns = lambda: driver.define(changed)
    with pytest.raises(StateError, match=r"'p' was redefined during the start; the result"):
        driver.start("p")
    record = driver.lookup_pool("p")
    assert not record.active and record.definition == changed


def test_destroy_during_refresh_discards_the_scan(driver: Driver, target: FakeTarget) -> None:
    driver.define(make_pool(target))
    driver.start("p")
    target.on_report_luns = lambda: driver.destroy("p")
    with pytest.raises(
        StateError, match=r"'p' is not active \(it was stopped during the refresh\)"
    ):
        driver.refresh("p")
    assert not driver.lookup_pool("p").active


def test_concurrent_define_and_destroy(driver: Driver, target: FakeTarget) -> None:
    """Threads defining, starting and destroying one pool: every call either succeeds or is
    refused with a state error, each successful start and destroy is one transition
    (inactive -> active, active -> inactive), and the files stay consistent."""
    base = make_pool(target)
    driver.define(base)
    variants = [replace(base, options=PoolOptions(timeout_seconds=float(n))) for n in (1, 2, 3)]
    errors: list[BaseException] = []
    done = {"start": 0, "destroy": 0}
    count = threading.Lock()

    def definer(n: int) -> None:
        for _ in range(8):
            driver.define(variants[n % 3])

    def cycler() -> None:
        for _ in range(8):
            for name, operation in (("start", driver.start), ("destroy", driver.destroy)):
                try:
                    operation("p")
                except StateError:
                    continue  # already active / not active / redefined meanwhile: refused
                with count:
                    done[name] += 1

    def run(fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(definer, n)) for n in range(2)]
    threads += [threading.Thread(target=run, args=(cycler,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    record = driver.lookup_pool("p")
    assert done["start"] - done["destroy"] == (1 if record.active else 0), done
    assert record.definition in variants
    if record.active:
        assert record.live in [base, *variants]
        assert len(record.state.volumes) == 3


def test_destroy_does_not_load_the_initiator(tmp_path: Path) -> None:
    """pool-destroy is file work only (libvirt's stopPool has nothing to release here): in a
    fresh interpreter it never imports asyncio's iSCSI stack."""
    code = f"""
import sys
from poolbackend.pool.driver import Driver
from poolbackend.pool.fsutil import StorePaths
from poolbackend.pool.model import PoolDef, PoolSource, PoolState
from poolbackend.pool.store import Store

store = Store(StorePaths.under({str(tmp_path / "state")!r}))
source = PoolSource("127.0.0.1", 3260, "iqn.2026-11.example:t", {INITIATOR!r})
store.define(PoolDef("p", {UUID!r}, source))
store.save_state("p", PoolState(active=True))
assert Driver(store).destroy("p") == "p" and not store.get_pool("p").active
print(sorted(m for m in sys.modules if m.startswith("poolbackend.iscsi.aio") or m == "asyncio"))
"""
    assert run_fresh(code) == "[]\n"
