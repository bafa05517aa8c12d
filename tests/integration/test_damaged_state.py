"""One pool's damaged file never breaks the tool, against a real tgtd and the real CLI.

Two pools, ``good`` and ``bad``, on two targets of one tgtd; both started. Then the runtime
state file of ``bad`` is damaged (garbage bytes, cut-off JSON, wrong types, a capacity of
9.4e21 bytes like the one an empty tgt LUN once produced, an XML state of an earlier
version) or its definition is (garbage; the pool stopped first). Every pool command is run
and checked:

* ``good`` keeps working in every cell (listed, inspected, destroyed, started);
* ``bad`` is reported on stderr with one ``warning:`` line (once), or refused with one
  ``error:`` line; never a traceback;
* a damaged state makes ``bad`` inactive: ``pool-start`` replaces the file,
  ``pool-destroy`` always clears it, ``pool-undefine`` removes every file of the pool;
* a damaged definition: ``pool-undefine`` removes it, the other commands name it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from poolbackend.pool import naming
from tests.conftest import ROOT, RunCli
from tests.harness.tgtd import MiB, Tgtd

INITIATOR = "iqn.2026-11.example:initiator1"
IQNS = {"good": "iqn.2026-12.example:good", "bad": "iqn.2026-12.example:bad"}


@pytest.fixture(scope="module")
def two_targets() -> Iterator[Tgtd]:
    with Tgtd.start(iothreads=1) as t:
        for tid, iqn in enumerate(IQNS.values(), start=1):
            t.new_target(tid, iqn)
            t.add_luns(tid, [1, 2], 4 * MiB)
        yield t


def _json_edit(edit: Callable[[dict[str, object]], None]) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        doc = json.loads(data)
        edit(doc)
        return json.dumps(doc).encode()

    return damage


def _set_capacity(doc: dict[str, object]) -> None:
    state = doc["state"]
    assert isinstance(state, dict)
    state["volumes"][1]["capacity"] = 9444732965739290427392
    state["capacity"] = 9444732965739290427392


def _wrong_types(doc: dict[str, object]) -> None:
    state = doc["state"]
    assert isinstance(state, dict)
    state["volumes"] = {"unit:0:0:1": "yes"}
    doc["pool"] = ["bad"]


STATE_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "garbage bytes": lambda data: bytes(range(256)) * 4,
    "cut-off JSON": lambda data: data[: len(data) // 2],
    "wrong types": _json_edit(_wrong_types),
    "huge numbers": _json_edit(_set_capacity),
    "empty": lambda data: b"",
}


@dataclass
class Pools:
    run: RunCli
    state_dir: Path
    tmp: Path
    t: Tgtd

    @property
    def storage(self) -> Path:
        return self.state_dir / "run" / "storage"

    @property
    def definitions(self) -> Path:
        return self.state_dir / "config" / "storage"

    def ok(self, *args: str) -> str:
        rc, out, err = self.run(*args)
        assert rc == 0 and err == "", (args, rc, err)
        return out

    def listing(self) -> tuple[dict[str, str], str]:
        """pool-list --all as {name: state}, and stderr."""
        rc, out, err = self.run("pool-list", "--all")
        assert rc == 0, err
        rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
        return {row[0]: row[1] for row in rows}, err

    def good_works(self) -> None:
        assert "unit:0:0:2" in self.ok("vol-list", "good")
        assert "Capacity:       4.00 MiB" in self.ok("vol-info", "--pool", "good", "unit:0:0:2")


def _warning(err: str, path: Path, what: str) -> None:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"warning: pool {what} '{path}") or (
        lines[0].startswith("warning: cannot load pool definition") and str(path) in lines[0]
    ), err


@pytest.fixture(scope="module")
def template(two_targets: Tgtd, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both pools defined, marked autostart and started, once per module (copied per test)."""
    base = tmp_path_factory.mktemp("damaged-template")
    state = base / "state"
    state.mkdir(mode=0o700)
    env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name, iqn in IQNS.items():
        xml = base / f"{name}.xml"
        xml.write_text(
            f"<pool type='iscsi-direct'><name>{name}</name><source>"
            f"<host name='{two_targets.host}' port='{two_targets.port}'/>"
            f"<device path='{iqn}'/><initiator><iqn name='{INITIATOR}'/></initiator>"
            "</source></pool>\n"
        )
        for args in (["pool-define", str(xml)], ["pool-autostart", name], ["pool-start", name]):
            r = subprocess.run(
                [sys.executable, "-m", "poolbackend", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
            assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
    return state


@pytest.fixture
def pools(
    template: Path, two_targets: Tgtd, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> Pools:
    shutil.copytree(template, state_dir, symlinks=True, dirs_exist_ok=True)
    autostart = state_dir / "config" / "storage" / "autostart"
    for link in autostart.iterdir():  # point the copied flags at the copied definitions
        link.unlink()
        link.symlink_to(state_dir / "config" / "storage" / link.name)
    p = Pools(run_cli, state_dir, tmp_path, two_targets)
    assert p.listing() == ({"bad": "active", "good": "active"}, "")
    return p


def _damage_state(p: Pools, how: str) -> Path:
    path = p.storage / "bad.json"
    if how == "old XML state":
        path.unlink()
        path = p.storage / "bad.xml"
        path.write_text("<poolstate active='yes'><pool type='iscsi-direct'/></poolstate>\n")
    else:
        path.write_bytes(STATE_DAMAGE[how](path.read_bytes()))
    return path


STATE_CASES = [*STATE_DAMAGE, "old XML state"]
COMMANDS = [
    "pool-list",
    "pool-info",
    "pool-destroy",
    "pool-undefine",
    "pool-start",
    "autostart-pools",
    "vol-list",
    "vol-info",
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", STATE_CASES)
def test_damaged_state(pools: Pools, damage: str, command: str) -> None:
    path = _damage_state(pools, damage)
    what = "state file"
    if command == "pool-list":
        states, err = pools.listing()
        assert states == {"bad": "inactive", "good": "active"}
        _warning(err, path, what)
        assert path.exists()  # reported, not removed behind the user's back
    elif command == "pool-info":
        rc, out, err = pools.run("pool-info", "bad")
        assert rc == 0 and "State:          inactive" in out, out
        _warning(err, path, what)
        assert "State:          running" in pools.ok("pool-info", "good")
    elif command == "pool-destroy":
        rc, out, err = pools.run("pool-destroy", "bad")
        assert (rc, out) == (0, "Pool bad destroyed\n\n"), err
        _warning(err, path, what)
        assert not path.exists()
        assert pools.listing() == ({"bad": "inactive", "good": "active"}, "")
        assert pools.ok("pool-destroy", "good") == "Pool good destroyed\n\n"
    elif command == "pool-undefine":
        rc, out, err = pools.run("pool-undefine", "bad")
        assert (rc, out) == (0, "Pool bad has been undefined\n\n"), err
        _warning(err, path, what)
        assert not path.exists() and not (pools.definitions / "bad.xml").exists()
        assert pools.listing() == ({"good": "active"}, "")
    elif command == "pool-start":
        rc, out, err = pools.run("pool-start", "bad")
        assert (rc, out) == (0, "Pool bad started\n\n"), err
        _warning(err, path, what)
        assert "unit:0:0:1" in pools.ok("vol-list", "bad")
        assert not (pools.storage / "bad.xml").exists()
        assert pools.listing() == ({"bad": "active", "good": "active"}, "")
    elif command == "autostart-pools":
        pools.ok("pool-destroy", "good")
        rc, out, err = pools.run("autostart-pools")
        assert rc == 0, err
        assert sorted(out.splitlines()) == ["Pool bad started", "Pool good started"]
        _warning(err, path, what)
        assert pools.listing() == ({"bad": "active", "good": "active"}, "")
    elif command == "vol-list":
        rc, out, err = pools.run("vol-list", "bad")
        assert rc == 1 and out == ""
        assert err.splitlines()[-1] == (
            "error: Requested operation is not valid: storage pool 'bad' is not active"
        )
        _warning("\n".join(err.splitlines()[:-1]), path, what)
    elif command == "vol-info":
        # by key: every pool is searched, the damaged one is skipped with a warning
        key = naming.volume_key(pools.t.host, pools.t.port, IQNS["good"], 2)
        rc, out, err = pools.run("vol-info", key)
        assert rc == 0 and "unit:0:0:2" in out, err
        _warning(err, path, what)
    if command != "pool-destroy":
        pools.good_works()


@pytest.mark.parametrize("command", COMMANDS)
def test_damaged_definition(pools: Pools, command: str) -> None:
    pools.ok("pool-destroy", "bad")
    path = pools.definitions / "bad.xml"
    path.write_bytes(b"<pool type='iscsi-direct'><name>bad</name>\x00\xff")

    def one_error(*args: str) -> str:
        rc, out, err = pools.run(*args)
        assert rc == 1 and out == "" and "Traceback" not in err, (args, err)
        assert len(err.splitlines()) == 1 and err.startswith("error: "), err
        return err

    if command == "pool-list":
        states, err = pools.listing()
        assert states == {"good": "active"}
        _warning(err, path, "definition")
    elif command in ("pool-info", "pool-destroy", "pool-start", "vol-list"):
        assert str(path) in one_error(command, "bad")
    elif command == "pool-undefine":
        assert pools.ok("pool-undefine", "bad") == "Pool bad has been undefined\n\n"
        assert not path.exists() and not (pools.definitions / "autostart" / "bad.xml").exists()
        assert pools.listing() == ({"good": "active"}, "")
    elif command == "autostart-pools":
        pools.ok("pool-destroy", "good")
        rc, out, err = pools.run("autostart-pools")
        assert (rc, out) == (0, "Pool good started\n"), err
        _warning(err, path, "definition")
    elif command == "vol-info":
        # a key is looked up in the active pools; a pool without a definition or state has
        # no volumes to find, and is skipped without a word
        key = naming.volume_key(pools.t.host, pools.t.port, IQNS["good"], 2)
        rc, out, err = pools.run("vol-info", key)
        assert rc == 0 and "unit:0:0:2" in out and err == "", err
    assert path.exists() or command == "pool-undefine"  # never overwritten or dropped
    pools.good_works()
