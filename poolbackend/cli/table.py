"""virsh-identical tables, sizes and labelled lists (``tools/vsh-table.c``, ``virsh-pool.c``).

* :func:`format_table`: every line starts with one space, columns are left-aligned and
  padded to their widest cell (header included) except the last one, separated by three
  spaces; the rule is ``sum(width + 3)`` dashes; a blank line ends the table.
* :func:`pretty_capacity`: ``"%.2f %s"`` with binary units ``B KiB MiB GiB TiB PiB EiB``.
* :func:`format_labelled`: ``"%-15s %s"`` lines (``pool-info``, ``vol-info``) and a blank line.
* :func:`sort_names`: virsh's case-insensitive ``strcasecmp`` order for pool and volume names.

Every function returns text ending in a newline, ready for ``sys.stdout.write``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

__all__ = ["display_width", "format_labelled", "format_table", "pretty_capacity", "sort_names"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _safe_cell(text: str) -> tuple[str, int]:
    """Escape non-printable characters as ``\\xNN`` per UTF-8 byte (vshTableSafeEncode) and
    return the escaped text with its display width (wide characters count 2)."""
    out: list[str] = []
    width = 0
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Cn", "Zl", "Zp"):
            for byte in char.encode("utf-8", "surrogatepass"):
                out.append(f"\\x{byte:02x}")
                width += 4
            continue
        out.append(char)
        if category in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return "".join(out), width


def display_width(text: str) -> int:
    """Columns ``text`` occupies in a table cell (after escaping)."""
    return _safe_cell(text)[1]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a virsh table (``vshTablePrintToString``), ending with a blank line.

    Example::

         Name         State    Autostart
        ----------------------------------
         iscsi-pool   active   no

    """
    columns = len(headers)
    if columns == 0:
        raise ValueError("a table needs at least one column")
    for row in rows:
        if len(row) != columns:
            raise ValueError(f"row has {len(row)} cells, table has {columns} columns")
    cells = [[_safe_cell(cell) for cell in line] for line in [list(headers), *map(list, rows)]]
    widths = [max(line[i][1] for line in cells) for i in range(columns)]
    out: list[str] = []
    for index, line in enumerate(cells):
        parts: list[str] = []
        for column, (text, width) in enumerate(line):
            if column < columns - 1:
                parts.append(text + " " * (widths[column] - width))
            else:
                parts.append(text)
        out.append(" " + "   ".join(parts) + "\n")
        if index == 0:
            out.append("-" * sum(width + 3 for width in widths) + "\n")
    out.append("\n")
    return "".join(out)


def pretty_capacity(value: int) -> str:
    """Return a size like virsh: ``"%.2f %s"`` with binary units (``0`` -> ``0.00 B``,
    ``67108352`` -> ``64.00 MiB``). Division is done in C ``double`` arithmetic."""
    if value < 0:
        raise ValueError(f"size must not be negative: {value}")
    limit = 1024
    for unit in _UNITS[:-1]:
        if value < limit:
            return f"{float(value) / float(limit // 1024):.2f} {unit}"
        limit *= 1024
    return f"{float(value) / float(limit // 1024):.2f} {_UNITS[-1]}"


def format_labelled(pairs: Iterable[tuple[str, str]]) -> str:
    """Return ``"%-15s %s"`` lines followed by a blank line (``pool-info``, ``vol-info``).

    Labels are printed as given, so pass them with their colon: ``("Name:", "iscsi-pool")``.
    """
    return "".join(f"{label:<15} {value}\n" for label, value in pairs) + "\n"


def _strcasecmp_key(name: str) -> tuple[bytes, str]:
    # strcasecmp in the C locale: ASCII letters folded, other bytes compared as unsigned.
    return name.encode("utf-8", "surrogateescape").lower(), name


def sort_names(names: Iterable[str]) -> list[str]:
    """Sort pool or volume names like virsh: case-insensitive byte order (so ``unit:0:0:10``
    sorts before ``unit:0:0:2``)."""
    return sorted(names, key=_strcasecmp_key)
