"""State directories that someone else could redirect are refused; symlinks are never followed.

The attack (issue 16): root runs with ``POOLBACKEND_STATE_DIR`` in a directory another user
controls; a symlink planted as a lock, state, definition or secret file (or as one of the
directories) made root truncate, chmod or write a file elsewhere. Each case below plants the
trap, runs the operation as root and checks that it is refused with one line and that the
symlink's target keeps its bytes and mode.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poolbackend.errors import PoolBackendError
from poolbackend.pool.fsutil import StorePaths, UnsafePathError, process_lock
from poolbackend.pool.model import PoolDef, PoolSource, PoolState, SecretDef
from poolbackend.pool.secrets import SecretStore
from poolbackend.pool.store import Store
from poolbackend.pool.volumelock import lock_path, volume_lock

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
UUID1 = "11111111-2222-4333-8444-555555555555"
SECRET_UUID = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"
POOL_XML = """<pool type='iscsi-direct'><name>p1</name>
<source><host name='127.0.0.1'/><device path='iqn.2024-01.example:t1'/>
<initiator><iqn name='iqn.2024-01.example:i'/></initiator></source></pool>
"""
VICTIM_BYTES = b"precious root-owned data\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, root's view)")


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def make_pool(name: str = "p1") -> PoolDef:
    return PoolDef(
        name, UUID1, PoolSource("127.0.0.1", 3260, "iqn.2024-01.example:t1", "iqn.2024-01.e:i")
    )


def secret() -> SecretDef:
    return SecretDef(SECRET_UUID, "iscsi", "t1-chap", None, False, False)


class Victim:
    """A file and a directory outside the state directory that must stay as they are."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "victim"
        self.dir.mkdir(mode=0o755)
        self.file = self.dir / "target"
        self.file.write_bytes(VICTIM_BYTES)
        os.chmod(self.file, 0o640)
        os.chmod(self.dir, 0o751)

    def snapshot(self) -> tuple[bytes, int, int, list[str]]:
        return (
            self.file.read_bytes(),
            stat.S_IMODE(os.lstat(self.file).st_mode),
            stat.S_IMODE(os.lstat(self.dir).st_mode),
            sorted(os.listdir(self.dir)),
        )


@pytest.fixture
def victim(tmp_path: Path) -> Victim:
    return Victim(tmp_path)


@pytest.fixture
def paths(tmp_path: Path) -> StorePaths:
    return StorePaths.under(tmp_path / "state")


def plant(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


# ---------------------------------------------------------------------- planted symlinks

Action = Callable[[StorePaths], object]


def _define(paths: StorePaths) -> object:
    return Store(paths).define(make_pool())


def _list(paths: StorePaths) -> object:
    """pool-list: a refused file is reported (and that pool left out), so raise the report."""
    errors: list[PoolBackendError] = []
    records = Store(paths).list_pools(on_error=errors.append)
    if errors:
        raise errors[0]
    return records


def _start(paths: StorePaths) -> object:
    return Store(paths).save_state("p1", PoolState(active=True))


def _create(paths: StorePaths) -> object:
    return Store(paths).create_transient(make_pool())


def _volume_lock(paths: StorePaths) -> object:
    with volume_lock(paths, "ip-x:3260-iscsi-t-lun-1", "unit:0:0:1", "vol-wipe", exclusive=True):
        return None


def _process_lock(paths: StorePaths) -> object:
    with process_lock(paths, timeout=1):
        return None


def _secret_define(paths: StorePaths) -> object:
    return SecretStore(paths).define(secret())


def _secret_set(paths: StorePaths) -> object:
    return SecretStore(paths).set_value(SECRET_UUID, b"new-password")


def _secret_get(paths: StorePaths) -> object:
    return SecretStore(paths).get_value(SECRET_UUID)


def _secret_list(paths: StorePaths) -> object:
    return SecretStore(paths).list()


def _prepare_pool(paths: StorePaths) -> None:
    Store(paths).define(make_pool())


def _prepare_secret(paths: StorePaths) -> None:
    SecretStore(paths).define(secret())


FILE_CASES: dict[
    str, tuple[Callable[[StorePaths], Path], Callable[[StorePaths], None] | None, Action]
] = {
    "process lock": (lambda p: p.lock_path, None, _define),
    "volume lock": (lambda p: lock_path(p, "ip-x:3260-iscsi-t-lun-1"), None, _volume_lock),
    "state file (read)": (lambda p: p.state_dir / "p1.json", _prepare_pool, _list),
    "state file (write)": (lambda p: p.state_dir / "p1.json", _prepare_pool, _start),
    "state file (transient)": (lambda p: p.state_dir / "p1.json", None, _create),
    "definition (read)": (lambda p: p.definitions_dir / "p1.xml", None, _list),
    "definition (write)": (lambda p: p.definitions_dir / "p1.xml", None, _define),
    "secret definition (read)": (
        lambda p: p.secrets_dir / f"{SECRET_UUID}.xml",
        None,
        _secret_list,
    ),
    "secret definition (write)": (
        lambda p: p.secrets_dir / f"{SECRET_UUID}.xml",
        None,
        _secret_define,
    ),
    "secret value (read)": (
        lambda p: p.secrets_dir / f"{SECRET_UUID}.base64",
        _prepare_secret,
        _secret_get,
    ),
    "secret value (write)": (
        lambda p: p.secrets_dir / f"{SECRET_UUID}.base64",
        _prepare_secret,
        _secret_set,
    ),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_planted_file_symlink_is_refused(case: str, paths: StorePaths, victim: Victim) -> None:
    where, prepare, action = FILE_CASES[case]
    if prepare is not None:
        prepare(paths)
    link = where(paths)
    plant(link, victim.file)
    before = victim.snapshot()
    with pytest.raises(UnsafePathError) as info:
        action(paths)
    assert "symbolic link" in one_line(info.value)
    assert victim.snapshot() == before
    assert os.path.islink(link)


DIR_CASES: dict[str, tuple[Callable[[StorePaths], Path], Action]] = {
    "config dir": (lambda p: p.config_dir, _define),
    "definitions dir": (lambda p: p.definitions_dir, _define),
    "run dir": (lambda p: p.run_dir, _define),
    "state dir": (lambda p: p.state_dir, _create),
    "volume locks dir": (lambda p: p.volume_locks_dir, _volume_lock),
    "secrets dir": (lambda p: p.secrets_dir, _secret_define),
    "ephemeral secrets dir": (lambda p: p.ephemeral_secrets_dir, _secret_list),
}


@pytest.mark.parametrize("case", sorted(DIR_CASES))
def test_planted_directory_symlink_is_refused(case: str, paths: StorePaths, victim: Victim) -> None:
    where, action = DIR_CASES[case]
    link = where(paths)
    plant(link, victim.dir)
    before = victim.snapshot()
    with pytest.raises(UnsafePathError) as info:
        action(paths)
    assert "symbolic link" in one_line(info.value)
    assert victim.snapshot() == before


def test_state_dir_itself_a_symlink_is_refused(tmp_path: Path, victim: Victim) -> None:
    plant(tmp_path / "state", victim.dir)
    before = victim.snapshot()
    with pytest.raises(UnsafePathError, match="symbolic link"):
        _secret_define(StorePaths.under(tmp_path / "state"))
    assert victim.snapshot() == before


def test_autostart_link_to_elsewhere_is_replaced_not_followed(
    paths: StorePaths, victim: Victim
) -> None:
    """The autostart flag is a symlink we make; one pointing elsewhere does not count and is
    replaced (the link, never its target), like libvirt's virFileLinkPointsTo check."""
    store = Store(paths)
    store.define(make_pool())
    link = store.autostart_path("p1")
    plant(link, victim.file)
    temp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    plant(temp, victim.file)  # our predictable temporary name, planted too
    before = victim.snapshot()
    assert not store.get_pool("p1").autostart
    store.set_autostart("p1", True)
    assert store.get_pool("p1").autostart
    assert os.readlink(link) == str(store.definition_path("p1"))
    assert not os.path.lexists(temp)
    store.set_autostart("p1", False)
    assert not os.path.lexists(link)
    assert victim.snapshot() == before


def test_autostart_dir_symlink_is_refused(paths: StorePaths, victim: Victim) -> None:
    store = Store(paths)
    store.define(make_pool())
    plant(paths.autostart_dir, victim.dir)
    before = victim.snapshot()
    with pytest.raises(UnsafePathError, match="symbolic link"):
        store.set_autostart("p1", True)
    assert victim.snapshot() == before


def test_fifo_instead_of_a_file_is_refused(paths: StorePaths) -> None:
    """Opening never blocks on (or reads from) something that is not a regular file."""
    Store(paths).define(make_pool())
    paths.state_dir.mkdir(parents=True)
    os.mkfifo(paths.state_dir / "p1.json")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        Store(paths).get_pool("p1")


# --------------------------------------------------------------- ownership and modes

ALL_DIRS: dict[str, Callable[[StorePaths], Path]] = {
    "state dir": lambda p: p.base or p.run_dir,
    "config": lambda p: p.config_dir,
    "definitions": lambda p: p.definitions_dir,
    "autostart": lambda p: p.autostart_dir,
    "run": lambda p: p.run_dir,
    "state files": lambda p: p.state_dir,
    "volume locks": lambda p: p.volume_locks_dir,
    "secrets": lambda p: p.secrets_dir,
    "ephemeral secrets": lambda p: p.ephemeral_secrets_dir,
}


def _populate(paths: StorePaths) -> None:
    store = Store(paths)
    store.define(make_pool())
    store.set_autostart("p1", True)
    store.save_state("p1", PoolState(active=True))
    SecretStore(paths).define(secret())
    SecretStore(paths).define(
        SecretDef("6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a95", "iscsi", "e", None, True, False)
    )
    _volume_lock(paths)


def _use_everything(paths: StorePaths) -> None:
    """Operations that between them touch every directory."""
    store = Store(paths)
    store.list_pools()
    store.set_autostart("p1", False)
    SecretStore(paths).list()
    _volume_lock(paths)


@pytest.mark.parametrize("which", sorted(ALL_DIRS))
@pytest.mark.parametrize("how", ["owned by nobody", "group-writable", "world-writable"])
def test_unsafe_directory_is_refused(which: str, how: str, paths: StorePaths) -> None:
    _populate(paths)
    _use_everything(paths)  # all fine so far
    directory = ALL_DIRS[which](paths)
    if how == "owned by nobody":
        os.chown(directory, NOBODY, NOBODY)
        expected = f"refusing state directory '{directory}': owned by uid {NOBODY}, not by"
    else:
        os.chmod(directory, 0o775 if how == "group-writable" else 0o757)
        expected = f"refusing state directory '{directory}': writable by group or others"
    with pytest.raises(UnsafePathError) as info:
        _use_everything(paths)
    assert one_line(info.value).startswith(expected)


def test_parent_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "alice"
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError) as info:
        Store(StorePaths.under(parent / "pb")).define(make_pool())
    assert one_line(info.value) == (
        f"refusing state directory '{parent / 'pb'}': its parent '{parent}' is owned by uid "
        f"{NOBODY}, so another user could replace it"
    )
    assert not (parent / "pb").exists()


def test_sticky_world_writable_parent_is_accepted(tmp_path: Path) -> None:
    """Like /tmp: nobody else can rename our directory inside a sticky one."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    Store(StorePaths.under(shared / "pb")).define(make_pool())
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafePathError, match="writable by group or others"):
        Store(StorePaths.under(shared / "pb2")).define(make_pool())


def test_private_directory_mode_is_enforced_through_the_directory_fd(paths: StorePaths) -> None:
    SecretStore(paths).define(secret())
    os.chmod(paths.secrets_dir, 0o755)
    SecretStore(paths).set_value(SECRET_UUID, b"pw")
    assert stat.S_IMODE(os.lstat(paths.secrets_dir).st_mode) == 0o700


# ------------------------------------------------------------------------- the CLI


def run_cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "poolbackend", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_refuses_a_state_dir_owned_by_nobody(tmp_path: Path, victim: Victim) -> None:
    """The reported attack end to end: root, a nobody-owned state dir with a planted lock."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    xml = tmp_path / "p1.xml"
    xml.write_text(POOL_XML)
    before = victim.snapshot()
    for args in (
        ["pool-list", "--all"],
        ["secret-list"],
        ["pool-define", str(xml)],
    ):
        result = run_cli(state, *args)
        assert result.returncode == 1, result
        assert result.stderr == (
            f"error: refusing state directory '{state}': owned by uid {NOBODY}, not by the "
            "caller (uid 0)\n"
        )
    assert os.listdir(state) == []
    assert victim.snapshot() == before


def test_cli_refuses_a_planted_lock_symlink(tmp_path: Path, victim: Victim) -> None:
    state = tmp_path / "state"
    plant(state / "run" / "poolbackend.lock", victim.file)
    before = victim.snapshot()
    xml = tmp_path / "p1.xml"
    xml.write_text(POOL_XML)
    result = run_cli(state, "pool-define", str(xml))
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: refusing '{state / 'run' / 'poolbackend.lock'}': it is a symbolic link"
    )
    assert result.stderr.count("\n") == 1
    assert victim.snapshot() == before


def test_errors_name_the_path_safely(tmp_path: Path) -> None:
    state = tmp_path / "st\x1b[31mate\nerror: fake"
    state.mkdir()
    os.chmod(state, 0o777)
    with pytest.raises(PoolBackendError) as info:
        Store(StorePaths.under(state)).list_pools()
    text = one_line(info.value)
    assert "\x1b" not in text and "\\x1b[31m" in text and "\\nerror: fake" in text


@pytest.mark.parametrize("write", ["definition", "state", "secret value"])
def test_planted_temporary_file_symlink_is_not_followed(
    write: str, paths: StorePaths, victim: Victim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file of an atomic write is created with O_CREAT|O_EXCL|O_NOFOLLOW: a
    symlink planted under the name it would take is skipped, never written through. (The
    random names are pinned here so that the trap sits exactly on the first candidate.)"""
    _prepare_pool(paths)
    _prepare_secret(paths)
    names = iter(["trap", "free"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    if write == "definition":
        final, action = paths.definitions_dir / "p1.xml", _define
    elif write == "state":
        final, action = Store(paths).state_path("p1"), _start
    else:
        final, action = paths.secrets_dir / f"{SECRET_UUID}.base64", _secret_set
    final.parent.mkdir(parents=True, exist_ok=True)
    trap = final.parent / f".{final.name}.trap.tmp"
    os.symlink(victim.file, trap)
    before = victim.snapshot()
    action(paths)
    assert victim.snapshot() == before
    assert os.path.islink(trap) and not os.path.lexists(final.parent / f".{final.name}.free.tmp")
    assert final.exists() and not final.is_symlink()
