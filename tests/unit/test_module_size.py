"""No module over about 500 lines without the reason in its docstring.

A longer module's docstring says ``About N lines`` and why (N within a tenth of its real
length, so the sentence is kept true as the module changes).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "poolbackend"
LIMIT = 520  # "about 500"
STATED = re.compile(r"About (\d+) lines")


def test_long_modules_state_why_in_their_docstring() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines <= LIMIT:
            continue
        name = path.relative_to(PACKAGE.parent)
        doc = ast.get_docstring(ast.parse(text)) or ""
        stated = STATED.search(" ".join(doc.split()))
        if stated is None:
            wrong.append(f"{name}: {lines} lines, no 'About N lines' reason in its docstring")
        elif abs(int(stated.group(1)) - lines) > lines // 10:
            wrong.append(f"{name}: {lines} lines, its docstring says {stated.group(1)}")
    assert not wrong, "\n".join(wrong)
