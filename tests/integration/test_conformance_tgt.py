"""``poolbackend iscsi-test`` against a real tgtd: both families, JUnit checked."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.harness.tgtd import MiB, Tgtd


def _iscsi_test(
    *args: str, timeout: float, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poolbackend", "iscsi-test", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def test_scsi_and_iscsi_families_on_tgt_with_junit(tmp_path: Path) -> None:
    with Tgtd.start() as t:
        t.new_target(1, "iqn.2026-11.example:conform")
        t.add_lun(1, 1, 64 * MiB, thin=True)
        url = t.url(1, 1)
        for family in ("SCSI", "iSCSI"):
            junit = tmp_path / f"{family}.xml"
            p = _iscsi_test(
                "--dataloss",
                "-i",
                "iqn.2026-11.example:ini1",
                "-I",
                "iqn.2026-11.example:ini2",
                f"--test={family}",
                "--junit",
                str(junit),
                url,
                timeout=300,
            )
            assert "Traceback" not in p.stderr, p.stderr
            listed = _iscsi_test(
                "--list", f"--test={family}", timeout=60, check=True
            ).stdout.split()
            root = ET.parse(junit).getroot()
            cases = {f"{c.get('classname')}.{c.get('name')}": c for c in root.iter("testcase")}
            assert sorted(cases) == sorted(listed)
            lines = [
                ln for ln in p.stdout.splitlines() if ln.split(" ")[0] in ("PASS", "FAIL", "SKIP")
            ]
            assert len(lines) == len(listed)
            failed = [n for n, c in cases.items() if c.find("failure") is not None]
            assert p.returncode == (1 if failed else 0)
            for suite in root.findall("testsuite"):
                assert int(suite.get("tests") or 0) == len(suite.findall("testcase"))
            if family == "SCSI":
                # tgt 1.0.85 answers VERIFY beyond the end with GOOD (SBC-3 §5.27 wants LBA
                # OUT OF RANGE): a real failure the tool must report, with its reason.
                fail = cases["SCSI.Verify10.BeyondEol"].find("failure")
                assert fail is not None
                assert "returned GOOD, expected ILLEGAL REQUEST" in (fail.get("message") or "")
                assert cases["SCSI.Read10.BeyondEol"].find("failure") is None
                assert cases["SCSI.Read10.Simple"].find("skipped") is None
                skipped = cases["SCSI.PreventAllow.Simple"].find("skipped")
                assert skipped is not None and "not removable" in (skipped.get("message") or "")
            else:
                assert cases["iSCSI.iSCSIResiduals.Read10Residuals"].find("failure") is None


def test_lun_above_255_on_tgt() -> None:
    """Flat-space LUN 300 is addressed as reported, by the session and the raw connection."""
    with Tgtd.start() as t:
        t.new_target(1, "iqn.2026-11.example:conform")
        t.add_lun(1, 300, 8 * MiB)
        p = _iscsi_test(
            "--dataloss",
            "--test=SCSI.Read10.Simple",
            "--test=SCSI.Write16.Simple",
            "--test=iSCSI.iSCSIResiduals.Read10Residuals",
            t.url(1, 300),
            timeout=120,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.count("PASS ") == 3
