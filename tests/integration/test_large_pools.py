"""Real tgt: a 4096-LUN pool, and a LUN backed by an empty file.

* 4096 LUNs write a state of about 2 MB, above the 1 MiB limit on XML *input*: every command
  used to fail with ``document too large`` from then on, for all pools. tgtd runs with
  ``-t 1`` (it starts ``-t`` I/O threads per LUN: the default 16 would be 65k threads).
* tgt answers READ CAPACITY(16) for an empty backing file with last LBA 2^64-1 (0 blocks
  minus one). pool-start once stored 9.4e21 bytes for it in a state file it then could not
  read. The LUN must be left out with one warning while the others work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from poolbackend.pool.xml.safe import MAX_XML_BYTES
from tests.conftest import RunCli
from tests.harness.tgtd import MiB, Tgtd

INITIATOR = "iqn.2026-11.example:initiator1"
IQN = "iqn.2026-12.example:many"
LUNS = 4096


def _pool_xml(tmp: Path, t: Tgtd, name: str, iqn: str) -> Path:
    path = tmp / f"{name}.xml"
    path.write_text(
        f"<pool type='iscsi-direct'><name>{name}</name><source>"
        f"<host name='{t.host}' port='{t.port}'/><device path='{iqn}'/>"
        f"<initiator><iqn name='{INITIATOR}'/></initiator></source></pool>\n"
    )
    return path


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pool_of_4096_luns(run_cli: RunCli, state_dir: Path, tmp_path: Path) -> None:
    with Tgtd.start(iothreads=1) as t:
        t.new_target(1, IQN)
        t.add_luns(1, range(1, LUNS + 1), 1 * MiB)
        assert run_cli("pool-define", str(_pool_xml(tmp_path, t, "many", IQN)))[0] == 0
        rc, out, err = run_cli("pool-start", "many", timeout=600)
        assert (rc, out, err) == (0, "Pool many started\n\n", "")
        state = state_dir / "run" / "storage" / "many.json"
        assert state.stat().st_size > MAX_XML_BYTES  # the size that broke every command

        rc, out, err = run_cli("pool-list", "--all", "--details")
        assert rc == 0 and err == "", err
        row = out.splitlines()[2].split()
        assert row[:4] == ["many", "running", "no", "yes"]
        assert " ".join(row[4:6]) == "4.00 GiB"

        rc, out, err = run_cli("vol-list", "many")
        assert rc == 0 and err == "", err
        names = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
        assert sorted(names) == sorted(f"unit:0:0:{n}" for n in range(LUNS + 1))  # + LUN 0

        rc, out, err = run_cli("vol-info", "--pool", "many", f"unit:0:0:{LUNS}")
        assert rc == 0 and "Capacity:       1.00 MiB" in out, err
        rc, out, err = run_cli("pool-refresh", "many", timeout=600)
        assert (rc, err) == (0, ""), err
        assert run_cli("pool-destroy", "many") == (0, "Pool many destroyed\n\n", "")
        assert not state.exists()
        rc, out, err = run_cli("pool-list", "--all")
        assert rc == 0 and err == "" and "many" in out and "inactive" in out


def test_lun_backed_by_an_empty_file_is_left_out(
    tgtd: Tgtd, run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    iqn = "iqn.2026-12.example:empty"
    tgtd.new_target(1, iqn)
    tgtd.add_lun(1, 1, 4 * MiB)
    tgtd.add_lun(1, 2, 0)  # tgt: READ CAPACITY(16) last LBA 2^64-1
    tgtd.add_lun(1, 3, 8 * MiB)
    url = tgtd.url(1, 2)
    rc, out, err = run_cli("iscsi-readcapacity", url)
    assert rc == 1 and out == "", err
    assert err.count("\n") == 1 and "last LBA 2^64-1" in err and "Traceback" not in err

    assert run_cli("pool-define", str(_pool_xml(tmp_path, tgtd, "withempty", iqn)))[0] == 0
    rc, out, err = run_cli("pool-start", "withempty")
    assert (rc, out) == (0, "Pool withempty started\n\n"), err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: LUN 2 left out: "), err
    assert "last LBA 2^64-1" in lines[0]

    rc, out, err = run_cli("vol-list", "withempty", "--details")
    assert rc == 0 and err == "", err
    names = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert names == ["unit:0:0:0", "unit:0:0:1", "unit:0:0:3"]
    # every command that used to fail on the unreadable state file works
    for args in (
        ["pool-list", "--all", "--details"],
        ["pool-info", "withempty"],
        ["vol-info", "--pool", "withempty", "unit:0:0:3"],
        ["autostart-pools"],
    ):
        rc, out, err = run_cli(*args)
        assert (rc, err) == (0, ""), (args, err)
    download = tmp_path / "lun3.raw"
    rc, _, err = run_cli("vol-download", "--pool", "withempty", "unit:0:0:3", str(download))
    assert rc == 0 and download.stat().st_size == 8 * MiB, err
    rc, out, err = run_cli("pool-refresh", "withempty")
    assert rc == 0 and err.startswith("warning: LUN 2 left out: "), err
    assert run_cli("pool-destroy", "withempty")[0] == 0
    assert run_cli("pool-undefine", "withempty")[0] == 0

    rc, out, err = run_cli("iscsi-ls", "-s", f"iscsi://{tgtd.portal}/{iqn}")
    assert rc == 0 and "Lun:3" in out and "Lun:2 " not in out, (out, err)
    assert err.startswith("warning: LUN 2 left out: ") and err.count("\n") == 1, err
