"""Demo: a private tgtd with a few LUNs, a pool from xml-examples/pool.xml, refresh, list.

Run through scripts/demo.sh (which installs what is needed). Everything runs on loopback
with a private state directory and is cleaned up at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.tgtd import Tgtd  # noqa: E402

MiB = 1 << 20


def cli(*args: str, env: dict[str, str]) -> None:
    print(f"$ poolbackend {' '.join(args)}", flush=True)
    r = subprocess.run(
        [sys.executable, "-m", "poolbackend", *args], env=env, text=True, capture_output=True
    )
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode:
        raise SystemExit(r.returncode)


def main() -> None:
    with Tgtd.start() as tgt, tempfile.TemporaryDirectory(prefix="poolbackend-demo-") as state:
        tgt.new_target(1, "iqn.2026-11.example:target1")
        tgt.add_lun(1, 1, 64 * MiB)
        tgt.add_lun(1, 2, 128 * MiB)
        tgt.add_lun(1, 3, 8 * MiB, blocksize=4096)
        tgt.add_lun(1, 4, 2049 * 512)
        print(f"tgtd (pid {tgt.pid}) serves iqn.2026-11.example:target1 on {tgt.portal}\n")
        xml = (ROOT / "xml-examples" / "pool.xml").read_text()
        pool_xml = Path(state) / "pool.xml"
        pool_xml.write_text(xml.replace("port='3260'", f"port='{tgt.port}'"))
        env = dict(
            os.environ, POOLBACKEND_STATE_DIR=str(Path(state) / "store"), PYTHONPATH=str(ROOT)
        )
        cli("pool-define", str(pool_xml), env=env)
        cli("pool-start", "iscsi-pool", env=env)
        cli("pool-refresh", "iscsi-pool", env=env)
        cli("pool-list", "--all", "--details", env=env)
        cli("pool-info", "iscsi-pool", env=env)
        cli("vol-list", "--details", "iscsi-pool", env=env)
        cli("vol-info", "--pool", "iscsi-pool", "unit:0:0:4", "--bytes", env=env)
        cli("pool-destroy", "iscsi-pool", env=env)
        cli("pool-undefine", "iscsi-pool", env=env)
    print("demo finished; tgtd stopped and the state removed")


if __name__ == "__main__":
    main()
