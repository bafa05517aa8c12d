"""One sense vocabulary: sense keys are named (:class:`poolbackend.scsi.sense.SenseKey`),
never compared as bare numbers."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "poolbackend"
BARE_KEY = re.compile(r"\b(?:sense_)?key\s*(?:[!=]=|in)\s*\(?\s*(?:0x)?\d")


def test_no_sense_key_is_a_bare_number() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BARE_KEY.search(line)
    ]
    assert not found, "\n".join(found)
