"""Run ``poolbackend iscsi-test`` and libiscsi's ``iscsi-test-cu`` on the same tgt LUN, one
after the other in one run, and print the per-test verdicts side by side with the agreement
(``python3 -m bench.conformance_compare``; the table in docs/conformance-tgt.md comes from it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.harness.tgtd import MiB, Tgtd

IQN1, IQN2 = "iqn.2026-11.example:ini1", "iqn.2026-11.example:ini2"
LAST = "SCSI.CompareAndWrite.InvalidDataOutSize"
"""iscsi-test-cu's test for this leaves its PDU hook installed (libiscsi test-tool/
test_compareandwrite_invalid_dataout_size.c, ``my_iscsi_queue_pdu``): every later CDB gets
byte 13 rewritten to 3, which breaks every 16-byte command after it (READ(16) of 256 blocks
becomes 259 blocks). It is run on its own, after the others, so it cannot spoil them."""


def parse_cunit(text: str, family: str) -> dict[str, str]:
    res: dict[str, str] = {}
    suite, cur = "", ""
    for line in text.splitlines():
        m = re.match(r"Suite: (\S+)", line)
        if m:
            suite = m.group(1)
            continue
        m = re.match(r"  Test: (\S+) \.\.\.(.*)", line)
        if m:
            cur = f"{family}.{suite}.{m.group(1)}"
            rest = m.group(2)
            res[cur] = (
                "SKIP"
                if "[SKIPPED]" in rest
                else "FAIL"
                if "FAILED" in rest
                else "PASS"
                if rest.strip() == "passed"
                else "?"
            )
        elif cur and res.get(cur) == "?":
            if line.strip() == "passed":
                res[cur] = "PASS"
            elif "FAILED" in line:
                res[cur] = "FAIL"
    return res


def parse_junit(path: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        fail, skip = case.find("failure"), case.find("skipped")
        if fail is not None:
            out[name] = ("FAIL", fail.get("message") or "")
        elif skip is not None:
            out[name] = ("SKIP", skip.get("message") or "")
        else:
            out[name] = ("PASS", "")
    return out


def main() -> int:
    ours: dict[str, tuple[str, str]] = {}
    ref: dict[str, str] = {}
    took: dict[str, list[float]] = {}
    with Tgtd.start() as t, tempfile.TemporaryDirectory() as tmp:
        t.new_target(1, "iqn.2026-11.example:conform")
        t.add_lun(1, 1, 64 * MiB, thin=True)
        url = t.url(1, 1)
        for family in ("SCSI", "iSCSI"):
            junit = Path(tmp) / f"{family}.xml"
            start = time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "poolbackend",
                    "iscsi-test",
                    "--dataloss",
                    "-i",
                    IQN1,
                    "-I",
                    IQN2,
                    f"--test={family}",
                    "--junit",
                    str(junit),
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            took[family] = [time.monotonic() - start, 0.0]
            ours.update(parse_junit(junit))
            names = subprocess.run(
                ["iscsi-test-cu", "--list"], capture_output=True, text=True, check=True
            ).stdout.split()
            mine = [n for n in names if n.startswith(family + ".") and n.count(".") == 2]
            selection = Path(tmp) / f"{family}.txt"
            selection.write_text("\n".join(n for n in mine if n != LAST) + "\n")
            start = time.monotonic()
            for sel in [str(selection)] + ([LAST] if LAST in mine else []):
                p = subprocess.run(
                    ["iscsi-test-cu", "--dataloss", f"--test={sel}", "-i", IQN1, "-I", IQN2, url],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                ref.update(parse_cunit(p.stdout, family))
            took[family][1] = time.monotonic() - start
    both = sorted(set(ours) & set(ref))
    same = [n for n in both if ours[n][0] == ref[n]]
    print(f"tests: ours {len(ours)}, iscsi-test-cu {len(ref)}, both {len(both)}")
    print(f"agreement: {len(same)}/{len(both)} = {100 * len(same) / max(1, len(both)):.1f}%")
    print("\n| Test | ours | iscsi-test-cu | our reason |\n|---|---|---|---|")
    for n in both:
        if ours[n][0] != ref[n]:
            print(f"| {n} | {ours[n][0]} | {ref[n]} | {ours[n][1][:140]} |")
    suites: dict[str, list[int]] = {}
    for n in both:
        s = suites.setdefault(n.rsplit(".", 1)[0], [0, 0, 0, 0, 0, 0])
        s["PASS FAIL SKIP".split().index(ours[n][0])] += 1
        if ref[n] in ("PASS", "FAIL", "SKIP"):
            s[3 + "PASS FAIL SKIP".split().index(ref[n])] += 1
    print("\n| Suite | ours pass/fail/skip | iscsi-test-cu pass/fail/skip |\n|---|---|---|")
    for name, c in suites.items():
        print(f"| {name} | {c[0]}/{c[1]}/{c[2]} | {c[3]}/{c[4]}/{c[5]} |")
    print("\n| family | ours (whole run, s) | iscsi-test-cu (s) | ratio |\n|---|---|---|---|")
    for family, (a, b) in took.items():
        print(f"| {family} | {a:.1f} | {b:.1f} | {a / b:.2f}x time |")
    only = sorted(set(ref) - set(ours))
    if only:
        print(f"\nonly in iscsi-test-cu ({len(only)}): {' '.join(only)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
