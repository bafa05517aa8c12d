"""pool-define on an active pool and pool-edit, as virsh does them.

libvirt keeps a definition given to an active pool as its "newDef": the running pool is
unchanged, ``pool-dumpxml --inactive`` shows the new definition and the next start uses it.
``virsh pool-info`` shows nothing about it (Name, UUID, State, Persistent, Autostart, sizes
only), so neither do we.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.conftest import BasicTarget, RunCli

INITIATOR = "iqn.2026-11.example:initiator1"
TIMEOUT = "<pb:iscsi><pb:timeout seconds='7'/></pb:iscsi>"
PB_NS = "xmlns:pb='https://poolbackend.dev/xmlns/pool/1'"


def _xml(t: BasicTarget, extra: str = "") -> str:
    return f"""<pool type='iscsi-direct' xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>
  <name>p</name>
  <source>
    <host name='{t.host}' port='{t.port}'/>
    <device path='{t.iqn}'/>
    <initiator><iqn name='{INITIATOR}'/></initiator>
  </source>
  {extra}
</pool>
"""


def _ok(result: tuple[int, str, str]) -> str:
    rc, out, err = result
    assert rc == 0, err
    return out


def test_define_on_an_active_pool_is_pending_until_the_next_start(
    run_cli: RunCli, tgt_basic: BasicTarget, tmp_path: Path
) -> None:
    f = tmp_path / "p.xml"
    f.write_text(_xml(tgt_basic))
    _ok(run_cli("pool-define", str(f)))
    _ok(run_cli("pool-start", "p"))
    info = _ok(run_cli("pool-info", "p"))
    # dumpxml -> edit -> define (the UUID must stay, as in libvirt)
    xml = _ok(run_cli("pool-dumpxml", "--inactive", "p"))
    xml = xml.replace("<pool type='iscsi-direct'>", f"<pool {PB_NS} type='iscsi-direct'>")
    f.write_text(xml.replace("</pool>", TIMEOUT + "\n</pool>"))
    assert _ok(run_cli("pool-define", str(f))) == f"Pool p defined from {f}\n\n"
    assert "pb:timeout" in _ok(run_cli("pool-dumpxml", "--inactive", "p"))
    assert "pb:timeout" not in _ok(run_cli("pool-dumpxml", "p"))  # the running definition
    assert _ok(run_cli("pool-info", "p")) == info  # virsh pool-info shows no pending change
    # dumpxml --inactive -> define keeps the pending change (it used to revert it)
    again = tmp_path / "again.xml"
    again.write_text(_ok(run_cli("pool-dumpxml", "--inactive", "p")))
    _ok(run_cli("pool-define", str(again)))
    assert "pb:timeout" in _ok(run_cli("pool-dumpxml", "--inactive", "p"))
    _ok(run_cli("pool-destroy", "p"))
    _ok(run_cli("pool-start", "p"))
    assert "<pb:timeout seconds='7'/>" in _ok(run_cli("pool-dumpxml", "p"))


def _editor(tmp: Path, name: str, body: str) -> str:
    script = tmp / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def _defined(run_cli: RunCli, tmp: Path) -> str:
    f = tmp / "p.xml"
    f.write_text(_plain_xml())
    _ok(run_cli("pool-define", str(f)))
    return _ok(run_cli("pool-dumpxml", "--inactive", "p"))


def _plain_xml() -> str:
    return f"""<pool type='iscsi-direct'>
  <name>p</name>
  <source>
    <host name='127.0.0.1' port='3260'/>
    <device path='iqn.2026-11.example:target1'/>
    <initiator><iqn name='{INITIATOR}'/></initiator>
  </source>
</pool>
"""


def test_pool_edit_unchanged_changed_and_visual_first(run_cli: RunCli, tmp_path: Path) -> None:
    before = _defined(run_cli, tmp_path)
    mode_file = tmp_path / "mode"
    keep = _editor(tmp_path, "keep.sh", f'stat -c %a "$1" > {mode_file}\n')
    env: dict[str, str | None] = {"EDITOR": keep, "VISUAL": None}
    rc, out, err = run_cli("pool-edit", "p", env=env)
    assert (rc, out, err) == (0, "Pool p XML configuration not changed.\n\n", "")
    assert mode_file.read_text().strip() == "600"  # the temporary file is private
    change = _editor(tmp_path, "change.sh", "sed -i 's/3260/3261/' \"$1\"\n")
    rc, out, err = run_cli("pool-edit", "p", env={"VISUAL": change, "EDITOR": keep})
    assert (rc, out, err) == (0, "Pool p XML configuration edited.\n\n", "")
    after = _ok(run_cli("pool-dumpxml", "--inactive", "p"))
    assert after == before.replace("3260", "3261")
    # The temporary files are gone.
    assert not [n for n in os.listdir(tmp_path) if n.startswith("poolbackend")]


def test_pool_edit_errors_keep_the_old_definition(run_cli: RunCli, tmp_path: Path) -> None:
    before = _defined(run_cli, tmp_path)
    state = tmp_path / "state"
    snapshot = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
    broken = _editor(tmp_path, "broken.sh", "echo '<pool type=' > \"$1\"\n")
    wrong = _editor(tmp_path, "wrong.sh", "sed -i 's/iscsi-direct/iscsi_direct/' \"$1\"\n")
    failing = _editor(tmp_path, "failing.sh", "exit 3\n")
    for editor, words in (
        (broken, "pool XML"),
        (wrong, "iscsi_direct"),
        (failing, "exit status 3"),
    ):
        rc, out, err = run_cli("pool-edit", "p", env={"EDITOR": editor, "VISUAL": None})
        assert rc == 1 and out == "", err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
        assert _ok(run_cli("pool-dumpxml", "--inactive", "p")) == before
        assert {p: p.read_bytes() for p in state.rglob("*") if p.is_file()} == snapshot
        mode = stat.S_IMODE(state.stat().st_mode)
        assert mode & 0o022 == 0
    rc, _, err = run_cli("pool-edit", "nosuch", env={"EDITOR": broken})
    assert rc == 1 and "no storage pool with matching name 'nosuch'" in err
