"""On-disk pool definitions and state: layout, atomicity, modes, locking, corruption."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from poolbackend.errors import ConfigError, NotFoundError, PoolBackendError, StateError
from poolbackend.pool.driver import Driver
from poolbackend.pool.fsutil import StorePaths, atomic_write
from poolbackend.pool.model import PoolDef, PoolSource, PoolState, Volume
from poolbackend.pool.store import Store
from poolbackend.pool.xml.pool import parse_pool_xml

UUID1 = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"
UUID2 = "0b7e0c5f-5a61-4f0e-9d38-4c1e4c2d8f11"
INITIATOR = "iqn.2026-11.example:initiator1"


def make_pool(name: str = "iscsi-pool", uuid: str = UUID1, host: str = "127.0.0.1") -> PoolDef:
    """A pool on a target of its own (one target per pool name: no source conflict)."""
    return PoolDef(name, uuid, PoolSource(host, 3260, f"iqn.2026-11.example:{name}", INITIATOR))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(StorePaths.under(tmp_path / "state"))


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -------------------------------------------------------------------------------- paths


def test_paths_from_environment(tmp_path: Path) -> None:
    paths = StorePaths.default({"POOLBACKEND_STATE_DIR": str(tmp_path)}, uid=0)
    assert paths.definitions_dir == tmp_path / "config" / "storage"
    assert paths.autostart_dir == tmp_path / "config" / "storage" / "autostart"
    assert paths.state_dir == tmp_path / "run" / "storage"
    assert paths.secrets_dir == tmp_path / "secrets"
    assert paths.ephemeral_secrets_dir == tmp_path / "run" / "secrets"
    assert paths.lock_path == tmp_path / "run" / "poolbackend.lock"


def test_paths_for_root() -> None:
    paths = StorePaths.default({}, uid=0)
    assert paths.definitions_dir == Path("/etc/poolbackend/storage")
    assert paths.autostart_dir == Path("/etc/poolbackend/storage/autostart")
    assert paths.state_dir == Path("/run/poolbackend/storage")
    assert paths.secrets_dir == Path("/etc/poolbackend/secrets")


def test_paths_for_users() -> None:
    env = {"HOME": "/home/u", "XDG_CONFIG_HOME": "/cfg", "XDG_RUNTIME_DIR": "/run/user/1000"}
    paths = StorePaths.default(env, uid=1000)
    assert paths.definitions_dir == Path("/cfg/poolbackend/storage")
    assert paths.state_dir == Path("/run/user/1000/poolbackend/storage")
    assert paths.secrets_dir == Path("/cfg/poolbackend/secrets")
    fallback = StorePaths.default({"HOME": "/home/u", "XDG_STATE_HOME": "/st"}, uid=1000)
    assert fallback.definitions_dir == Path("/home/u/.config/poolbackend/storage")
    assert fallback.state_dir == Path("/st/poolbackend/storage")
    bare = StorePaths.default({"HOME": "/home/u"}, uid=1000)
    assert bare.state_dir == Path("/home/u/.local/state/poolbackend/storage")


# ------------------------------------------------------------------- define / undefine


def test_define_list_get(store: Store) -> None:
    record = store.define(make_pool())
    assert record.persistent and not record.active and not record.autostart
    assert record.pool == make_pool()
    assert record.state == PoolState(active=False, autostart=False, persistent=True)
    path = store.definition_path("iscsi-pool")
    text = path.read_text()
    assert text.startswith("<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE.")
    assert "  poolbackend pool-edit iscsi-pool\n" in text
    assert parse_pool_xml(text) == make_pool()
    assert mode_of(path) == 0o644
    assert [r.name for r in store.list_pools()] == ["iscsi-pool"]
    assert store.get_pool("iscsi-pool") == record
    assert store.get_pool(UUID1) == record
    assert store.get_pool(UUID1.upper()) == record
    assert store.get_pool_by_uuid(UUID1) == record


def test_get_pool_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        store.get_pool("nosuch")
    assert str(info.value) == "Storage pool not found: no storage pool with matching name 'nosuch'"
    with pytest.raises(NotFoundError) as info:
        store.get_pool_by_uuid(UUID2)
    assert str(info.value) == (
        f"Storage pool not found: no storage pool with matching uuid '{UUID2}'"
    )
    assert store.find_pool("a/b") is None


def test_redefine_same_name_and_uuid_updates(store: Store) -> None:
    store.define(make_pool())
    record = store.define(make_pool(host="10.0.0.1"))
    assert record.pool.source.host == "10.0.0.1"
    assert len(store.list_pools()) == 1


def test_duplicate_name_with_other_uuid(store: Store) -> None:
    store.define(make_pool())
    with pytest.raises(StateError) as info:
        store.define(make_pool(uuid=UUID2))
    assert (
        str(info.value) == f"operation failed: pool 'iscsi-pool' already exists with uuid {UUID1}"
    )


def test_duplicate_uuid_with_other_name(store: Store) -> None:
    store.define(make_pool())
    with pytest.raises(StateError) as info:
        store.define(make_pool(name="other"))
    assert str(info.value) == (
        f"operation failed: pool 'iscsi-pool' is already defined with uuid {UUID1}"
    )


def test_define_validates_the_model(store: Store) -> None:
    bad = replace(make_pool(), source=replace(make_pool().source, target_iqn="not-an-iqn"))
    with pytest.raises(ConfigError, match="element 'device': invalid attribute 'path'"):
        store.define(bad)
    with pytest.raises(ConfigError, match="invalid pool name"):
        store.define(replace(make_pool(), name="x" * 300))
    assert store.list_pools() == []


def test_undefine(store: Store) -> None:
    store.define(make_pool())
    store.set_autostart("iscsi-pool", True)
    Driver(store).undefine("iscsi-pool")
    assert store.list_pools() == []
    assert not os.path.lexists(store.autostart_path("iscsi-pool"))
    with pytest.raises(NotFoundError):
        Driver(store).undefine("iscsi-pool")


def test_undefine_active_pool_refused(store: Store) -> None:
    store.define(make_pool())
    store.save_state("iscsi-pool", PoolState(active=True))
    with pytest.raises(StateError) as info:
        Driver(store).undefine("iscsi-pool")
    assert str(info.value) == (
        "Requested operation is not valid: storage pool 'iscsi-pool' is still active"
    )


# ------------------------------------------------------------------------- state files


def test_save_and_clear_state(store: Store) -> None:
    pool = make_pool()
    store.define(pool)
    volume = Volume.for_lun(pool.source, 1, capacity=67108352, block_size=512)
    state = PoolState(active=True, capacity=67108352, allocation=67108352, volumes=(volume,))
    record = store.save_state("iscsi-pool", state)
    assert record.active and record.persistent
    assert record.state == state
    path = store.state_path("iscsi-pool")
    assert path.name == "iscsi-pool.json"
    assert path.read_text().startswith('{"format":"poolbackend-pool-state","version":1,')
    assert mode_of(path) == 0o644
    store.clear_state("iscsi-pool")
    store.clear_state("iscsi-pool")
    after = store.get_pool("iscsi-pool")
    assert not after.active and after.live is None


def test_live_definition_kept_while_active(store: Store) -> None:
    store.define(make_pool())
    store.save_state("iscsi-pool", PoolState(active=True))
    store.define(make_pool(host="10.0.0.9"))
    record = store.get_pool("iscsi-pool")
    assert record.pool.source.host == "127.0.0.1"
    assert record.inactive_pool.source.host == "10.0.0.9"
    # a refresh keeps the live definition
    store.save_state("iscsi-pool", PoolState(active=True, capacity=1))
    assert store.get_pool("iscsi-pool").pool.source.host == "127.0.0.1"
    store.clear_state("iscsi-pool")
    assert store.get_pool("iscsi-pool").pool.source.host == "10.0.0.9"


def test_transient_pool(store: Store) -> None:
    record = store.create_transient(make_pool("temp", UUID2))
    assert record.active and not record.persistent
    assert record.state.persistent is False
    assert record.definition is None
    with pytest.raises(StateError) as info:
        store.set_autostart("temp", True)
    assert str(info.value) == "internal error: cannot set autostart for transient pool"
    with pytest.raises(StateError) as info:
        store.create_transient(make_pool("temp", UUID2))
    assert str(info.value) == "Requested operation is not valid: pool is already active as 'temp'"
    with pytest.raises(StateError, match="already exists with uuid"):
        store.define(make_pool("temp", UUID1))
    store.clear_state("temp")
    assert store.find_pool("temp") is None


def test_defining_a_running_transient_pool_makes_it_persistent(store: Store) -> None:
    store.create_transient(make_pool())
    record = store.define(make_pool())
    assert record.active and record.persistent


def test_autostart(store: Store) -> None:
    store.define(make_pool())
    store.set_autostart("iscsi-pool", True)
    store.set_autostart("iscsi-pool", True)
    link = store.autostart_path("iscsi-pool")
    assert link.is_symlink() and link.resolve() == store.definition_path("iscsi-pool").resolve()
    assert store.get_pool("iscsi-pool").autostart
    assert store.autostart_names() == ["iscsi-pool"]
    store.set_autostart("iscsi-pool", False)
    assert not store.get_pool("iscsi-pool").autostart


def test_list_sorted_and_mixed(store: Store) -> None:
    store.define(make_pool("b-pool", UUID1))
    store.create_transient(make_pool("a-pool", UUID2))
    records = store.list_pools()
    assert [(r.name, r.persistent, r.active) for r in records] == [
        ("a-pool", False, True),
        ("b-pool", True, False),
    ]


# ------------------------------------------------------------------------- corruption


def test_corrupt_definition_is_reported_not_lost(store: Store) -> None:
    store.define(make_pool())
    path = store.definition_path("iscsi-pool")
    path.write_text("<pool type='iscsi-direct'><name>iscsi-pool</name>")
    with pytest.raises(ConfigError) as info:
        store.get_pool("iscsi-pool")
    message = str(info.value)
    assert message.startswith(f"cannot load pool definition '{path}': pool XML 'iscsi-pool.xml'")
    assert "\n" not in message
    errors: list[PoolBackendError] = []
    assert store.list_pools(on_error=errors.append) == []
    assert len(errors) == 1
    with pytest.raises(ConfigError):
        store.define(make_pool())
    assert path.read_text() == "<pool type='iscsi-direct'><name>iscsi-pool</name>"


def test_list_skips_a_damaged_definition_with_one_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    store = Store(StorePaths.under(tmp_path / "state"), warn=warnings.append)
    store.define(make_pool())
    store.define(make_pool("other", UUID2))
    path = store.definition_path("iscsi-pool")
    path.write_bytes(b"\x00garbage " + str(tmp_path).encode())
    assert [r.name for r in store.list_pools()] == ["other"]
    assert [r.name for r in store.list_pools()] == ["other"]
    assert len(warnings) == 1 and str(path) in warnings[0], warnings
    assert Driver(store).undefine("iscsi-pool") == "iscsi-pool"
    assert not path.exists()
    assert [r.name for r in store.list_pools()] == ["other"]


def test_binary_garbage_definition(store: Store) -> None:
    store.paths.definitions_dir.mkdir(parents=True)
    path = store.definition_path("junk")
    path.write_bytes(os.urandom(64) + b"\x00")
    with pytest.raises(ConfigError, match=r"cannot load pool definition .*junk\.xml"):
        store.get_pool("junk")


def test_definition_name_mismatch(store: Store) -> None:
    store.define(make_pool())
    os.rename(store.definition_path("iscsi-pool"), store.paths.definitions_dir / "other.xml")
    with pytest.raises(ConfigError) as info:
        store.get_pool("other")
    assert str(info.value) == (
        f"XML error: Storage pool config filename '{store.paths.definitions_dir / 'other.xml'}' "
        "does not match pool name 'iscsi-pool'"
    )


@pytest.mark.parametrize(
    "damage",
    [
        b"<poolstate active='yes'>",
        b"\x00\xff garbage",
        b'{"format": "poolbackend-pool-state", "version": 1, "pool": {"name": "iscsi-po',
        b'{"format": "poolbackend-pool-state", "version": 1, "pool": 7, "state": {}}',
        b"",
    ],
)
def test_corrupt_state_file_makes_the_pool_inactive(tmp_path: Path, damage: bytes) -> None:
    warnings: list[str] = []
    store = Store(StorePaths.under(tmp_path / "state"), warn=warnings.append)
    store.define(make_pool())
    store.save_state("iscsi-pool", PoolState(active=True))
    path = store.state_path("iscsi-pool")
    path.write_bytes(damage)
    record = store.get_pool("iscsi-pool")
    assert not record.active and record.damaged_state == path
    assert len(warnings) == 1 and f"pool state file '{path}' is damaged" in warnings[0]
    assert "\n" not in warnings[0]
    assert Driver(store).destroy("iscsi-pool") == "iscsi-pool"
    assert not path.exists()
    with pytest.raises(StateError, match="is not active"):
        Driver(store).destroy("iscsi-pool")


def test_damaged_transient_state_is_removed_by_destroy(store: Store) -> None:
    store.create_transient(make_pool())
    path = store.state_path("iscsi-pool")
    path.write_bytes(b"{}")
    with pytest.raises(ConfigError, match="pool-destroy iscsi-pool removes it"):
        store.get_pool("iscsi-pool")
    assert store.list_pools() == []
    assert Driver(store).destroy("iscsi-pool") == "iscsi-pool"
    with pytest.raises(NotFoundError):
        store.get_pool("iscsi-pool")


def test_old_xml_state_is_inactive_and_removed(tmp_path: Path) -> None:
    warnings: list[str] = []
    store = Store(StorePaths.under(tmp_path / "state"), warn=warnings.append)
    store.define(make_pool())
    store.paths.state_dir.mkdir(parents=True)
    legacy = store.legacy_state_path("iscsi-pool")
    legacy.write_text("<poolstate active='yes'><pool type='iscsi-direct'/></poolstate>")
    assert not store.get_pool("iscsi-pool").active
    assert warnings and "written by an older poolbackend" in warnings[0]
    store.save_state("iscsi-pool", PoolState(active=True))  # pool-start replaces it
    assert not legacy.exists() and store.get_pool("iscsi-pool").active


def test_temporary_files_are_ignored(store: Store) -> None:
    store.define(make_pool())
    (store.paths.definitions_dir / ".iscsi-pool.xml.abc.tmp").write_text("partial")
    assert [r.name for r in store.list_pools()] == ["iscsi-pool"]


# ------------------------------------------------------------------------------ atomicity


def test_failed_replace_keeps_old_file(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.define(make_pool())
    path = store.definition_path("iscsi-pool")
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(PoolBackendError) as info:
        store.define(make_pool(host="10.9.9.9"))
    assert str(info.value) == f"cannot write '{path}': No space left on device"
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["iscsi-pool.xml"]


def test_failed_fsync_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.xml"
    atomic_write(StorePaths.under(tmp_path), path, b"old", 0o644)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(PoolBackendError, match="Input/output error"):
        atomic_write(StorePaths.under(tmp_path), path, b"new", 0o644)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.xml"]


def test_interrupted_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt-like exception in the middle of a write leaves the old file."""
    path = tmp_path / "f.xml"
    atomic_write(StorePaths.under(tmp_path), path, b"old", 0o600)

    class Boom(BaseException):
        pass

    def interrupted(fd: int) -> None:
        raise Boom

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(Boom):
        atomic_write(StorePaths.under(tmp_path), path, b"new", 0o600)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.xml"]


def test_atomic_write_modes_ignore_umask(tmp_path: Path) -> None:
    os.umask(0o077)
    atomic_write(StorePaths.under(tmp_path), tmp_path / "public", b"x", 0o644)
    os.umask(0)
    atomic_write(StorePaths.under(tmp_path), tmp_path / "private", b"x", 0o600)
    assert mode_of(tmp_path / "public") == 0o644
    assert mode_of(tmp_path / "private") == 0o600


# -------------------------------------------------------------------------------- locking


def _hold_lock(root: str, acquired: object, release: object) -> None:
    store = Store(StorePaths.under(root))
    with store.locked():
        acquired.set()  # type: ignore[attr-defined]
        release.wait(30)  # type: ignore[attr-defined]


def _define_many(root: str, prefix: str, count: int) -> None:
    import uuid

    store = Store(StorePaths.under(root))
    for index in range(count):
        store.define(make_pool(f"{prefix}{index}", str(uuid.uuid4())))


def test_lock_excludes_other_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    acquired, release = context.Event(), context.Event()
    child = context.Process(target=_hold_lock, args=(str(tmp_path), acquired, release))
    child.start()
    try:
        assert acquired.wait(30)
        store = Store(StorePaths.under(tmp_path))
        started = time.monotonic()
        with pytest.raises(StateError) as info:
            with store.locked(timeout=0.3):
                pass
        assert time.monotonic() - started >= 0.3
        assert str(info.value) == (
            f"cannot lock '{store.paths.lock_path}' within 0.3s: "
            "another poolbackend command is running"
        )
        release.set()
        child.join(30)
        with store.locked(timeout=5):
            store.define(make_pool())
        assert [r.name for r in store.list_pools()] == ["iscsi-pool"]
    finally:
        release.set()
        child.join(30)
        if child.is_alive():
            child.kill()


def test_lock_is_reentrant(store: Store) -> None:
    with store.locked(), store.locked():
        store.define(make_pool())
    with store.locked(timeout=0):
        pass


def test_concurrent_writers_do_not_corrupt(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_define_many, args=(str(tmp_path), f"w{n}-", 8)) for n in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    records = Store(StorePaths.under(tmp_path)).list_pools()
    assert len(records) == 24
    assert len({r.uuid for r in records}) == 24
