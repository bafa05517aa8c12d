"""No reach across layers: the command line and attach reach pools through the driver only.

Read from the source (every import, also those inside functions), so a command that builds a
``Store``, a ``SecretStore``, a backend or an iSCSI session of its own fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.harness.fresh import run_fresh

PACKAGE = Path(__file__).resolve().parents[2] / "poolbackend"

# What of the pool package a command may use: the front door and its vocabulary.
POOL_FRONT = ("poolbackend.pool.driver", "poolbackend.pool.model", "poolbackend.pool.xml")
# The iSCSI tools are clients of the initiator, not of pools: they open sessions themselves.
TOOLS = {"tools.py", "lbastatus.py", "perf.py", "initiator_opts.py"}
EXTRA_POOL = {
    "attachcmds.py": ("poolbackend.pool.attach",),  # the domain side, which uses the driver
}
# attach.py: the driver for pools, libvirt's connection and secrets for the domain side.
ATTACH_POOL = (
    *POOL_FRONT,
    "poolbackend.pool.naming",
    "poolbackend.pool.libvirt_conn",
    "poolbackend.pool.libvirt_secrets",
)


def imports(path: Path) -> set[str]:
    """Every ``poolbackend`` module ``path`` imports (``from poolbackend.pool import x`` as
    ``poolbackend.pool.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("poolbackend.")}


def _outside(names: set[str], package: str, allowed: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in names if name.startswith(package + ".") and not name.startswith(allowed)
    )


def test_commands_reach_pools_through_the_driver_only() -> None:
    wrong = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        names = imports(path)
        allowed = POOL_FRONT + EXTRA_POOL.get(path.name, ())
        wrong += [f"{path.name}: {n}" for n in _outside(names, "poolbackend.pool", allowed)]
        if path.name not in TOOLS:
            wrong += [f"{path.name}: {n}" for n in _outside(names, "poolbackend.iscsi", ())]
    assert not wrong, "commands reaching past the driver:\n" + "\n".join(wrong)


def test_attach_reaches_pools_through_the_driver_only() -> None:
    names = imports(PACKAGE / "pool" / "attach.py")
    wrong = _outside(names, "poolbackend.pool", ATTACH_POOL)
    wrong += _outside(names, "poolbackend.iscsi", ())
    assert not wrong, "attach reaching past the driver: " + ", ".join(wrong)


def test_the_import_reader_sees_imports_inside_functions() -> None:
    names = imports(PACKAGE / "cli" / "volume.py")
    assert "poolbackend.cli.localfile" in names  # imported inside vol_download
    assert "poolbackend.pool.driver.Driver" in imports(PACKAGE / "cli" / "common.py")


def test_the_chap_table_costs_no_crypto_start_up() -> None:
    """The pool model reads the CHAP_A table from iscsi/chap.py (one table); every pool
    command loads the model, so that module imports hashlib, hmac and secrets only where it
    hashes."""
    code = "import sys, poolbackend.pool.model, poolbackend.pool.xml.explain\n"
    code += "print(sorted(m for m in ('hashlib', 'hmac', 'secrets') if m in sys.modules))"
    assert run_fresh(code) == "[]\n"
