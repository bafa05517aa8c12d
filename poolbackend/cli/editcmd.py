"""``pool-edit``: virsh's edit cycle for a pool definition.

The inactive XML (what the next start uses) goes to a private temporary file, ``$VISUAL`` or
``$EDITOR`` (default ``vi``) runs on it through ``sh -c`` like virsh, and the result is
defined. An unchanged file changes nothing. A file that does not define cleanly leaves the old
definition in place; on a terminal the user may edit again (virsh's "Try again?" prompt, with
the answers y and n), otherwise the command fails.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

from poolbackend.errors import ConfigError, PoolBackendError
from poolbackend.text import emit

if TYPE_CHECKING:
    from poolbackend.pool.driver import Driver

DEFAULT_EDITOR = "vi"


def _editor() -> str:
    return os.environ.get("VISUAL") or os.environ.get("EDITOR") or DEFAULT_EDITOR


def _run_editor(editor: str, path: str) -> None:
    from poolbackend.text import printable

    try:
        rc = subprocess.run(["sh", "-c", f"{editor} {shlex.quote(path)}"], check=False).returncode
    except OSError as exc:
        raise ConfigError(f"cannot run the editor: {exc.strerror}") from None
    if rc != 0:
        raise ConfigError(
            f"editor command '{printable(editor)}' failed (exit status {rc}); "
            "the definition is unchanged"
        )


def _try_again() -> bool:
    """virsh's question after a failed define; only asked on a terminal."""
    if not sys.stdin.isatty():
        return False
    while True:
        print("Failed. Try again? [y,n,?]:", end=" ", flush=True)
        answer = sys.stdin.readline()
        if not answer:
            return False
        answer = answer.strip().lower()
        if answer in ("y", "n"):
            return answer == "y"
        print("y - yes, start editor again\nn - no, throw away my changes\n? - print this help")


def edit_pool(driver: Driver, name: str) -> int:
    """Edit pool ``name``'s inactive definition and define the result (see the module doc)."""
    from poolbackend.cli.common import read_xml, say
    from poolbackend.pool.xml.pool import format_pool_xml, parse_pool_xml

    record = driver.lookup_pool(name)
    original = format_pool_xml(record.inactive_pool)
    fd, path = tempfile.mkstemp(prefix="poolbackend", suffix=".xml")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(original)
        editor = _editor()
        while True:
            _run_editor(editor, path)
            edited = read_xml(path, "edited pool XML")
            if edited.decode("utf-8", "surrogateescape") == original:
                say(f"Pool {record.pool.name} XML configuration not changed.")
                return 0
            try:
                pool = parse_pool_xml(edited, source_name=path)
                driver.define(pool)
            except PoolBackendError as exc:
                emit("error", str(exc))
                if _try_again():
                    continue
                return 1
            say(f"Pool {pool.name} XML configuration edited.")
            return 0
    finally:
        os.unlink(path)
