"""autostart-pools starts what pool-autostart marked, and one dead target does not stop it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BasicTarget, RunCli
from tests.harness.faketarget import FakeTarget

INITIATOR = "iqn.2026-11.example:initiator1"


def _pool_xml(name: str, host: str, port: int, iqn: str, initiator: str = INITIATOR) -> str:
    return f"""<pool type='iscsi-direct'>
  <name>{name}</name>
  <source>
    <host name='{host}' port='{port}'/>
    <device path='{iqn}'/>
    <initiator><iqn name='{initiator}'/></initiator>
  </source>
  <pb:iscsi xmlns:pb='https://poolbackend.dev/xmlns/pool/1'><pb:timeout seconds='2'/></pb:iscsi>
</pool>
"""


def test_autostart_pools(
    tgt_basic: BasicTarget, state_dir: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    with FakeTarget("refuse") as dead:  # a held port nothing listens on, all along
        pools = {
            "auto-ok": (tgt_basic.host, tgt_basic.port, True),
            "auto-dead": ("127.0.0.1", dead.port, True),
            "manual": (tgt_basic.host, tgt_basic.port, False),
        }
        for name, (host, port, autostart) in pools.items():
            path = tmp_path / f"{name}.xml"
            # "manual" shares auto-ok's target: another initiator name, or it is a source conflict
            path.write_text(_pool_xml(name, host, port, tgt_basic.iqn, f"{INITIATOR}-{name}"))
            assert run_cli("pool-define", str(path))[0] == 0
            if autostart:
                assert run_cli("pool-autostart", name)[0] == 0

        rc, out, err = run_cli("autostart-pools")
        assert rc == 1
        assert out == "Pool auto-ok started\n"
        assert err.startswith("error: pool auto-dead: ")
        assert "connection refused" in err.lower()
        assert err.count("\n") == 1

        rc, out, _ = run_cli("pool-list", "--all")
        states = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:] if line.strip()}
        assert states == {"auto-dead": "inactive", "auto-ok": "active", "manual": "inactive"}
        rc, out, _ = run_cli("vol-list", "auto-ok")
        assert "unit:0:0:1" in out

        # An active pool is left alone; nothing failing means exit 0.
        assert run_cli("pool-autostart", "auto-dead", "--disable")[0] == 0
        assert run_cli("autostart-pools") == (0, "", "")
