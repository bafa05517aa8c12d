"""The iSCSI and SCSI packages stand alone: they import nothing from the application (its
errors, the pool layer, the CLI, the conformance suite), their errors form trees of their own,
and the application turns those into one-line user errors in one place
(:func:`poolbackend.errors.user_error`)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import poolbackend
from poolbackend.errors import ConfigError, PoolBackendError, TargetError, user_error
from poolbackend.iscsi import errors as iscsi_errors
from poolbackend.scsi import errors as scsi_errors
from tests.harness.fresh import run_fresh

ROOT = Path(poolbackend.__file__).parent
LIBRARIES = ("iscsi", "scsi")
ALLOWED = ("poolbackend.iscsi", "poolbackend.scsi", "poolbackend.text", "poolbackend.numbers")
"""What the packages may import from the project: each other and the two leaf helpers."""


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """Every module an ``import``/``from … import`` anywhere in the file names (also inside
    functions and ``TYPE_CHECKING`` blocks), relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = (
                [f"{base}.{alias.name}" for alias in node.names] if base == "poolbackend" else []
            )
            found += [(node.lineno, name) for name in names or [base]]
    return found


def _project_imports(library: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / library).rglob("*.py")):
        for line, name in _imports(path, f"poolbackend.{library}"):
            inside = name == "poolbackend" or name.startswith("poolbackend.")
            if inside and not any(name == a or name.startswith(a + ".") for a in ALLOWED):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {name}")
    return bad


@pytest.mark.parametrize("library", LIBRARIES)
def test_library_imports_nothing_from_the_application(library: str) -> None:
    assert _project_imports(library) == []


def test_the_import_check_sees_every_form(tmp_path: Path) -> None:
    """The walk finds absolute, relative and function-level imports of the application."""
    source = tmp_path / "m.py"
    source.write_text(
        "from poolbackend.errors import ConfigError\n"
        "from ...pool import naming\n"
        "from poolbackend import cli\n"
        "def f():\n    import poolbackend.pool.driver\n",
        encoding="utf-8",
    )
    names = [name for _, name in _imports(source, "poolbackend.iscsi.sub")]
    assert names == [
        "poolbackend.errors",
        "poolbackend.pool",
        "poolbackend.cli",
        "poolbackend.pool.driver",
    ]


def _error_classes(module: object) -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == getattr(module, "__name__", "")
    ]


@pytest.mark.parametrize(
    ("module", "base"),
    [(iscsi_errors, iscsi_errors.ISCSIError), (scsi_errors, scsi_errors.ScsiError)],
)
def test_each_package_has_its_own_error_tree(module: object, base: type[Exception]) -> None:
    assert base.__bases__ == (Exception,)
    for cls in _error_classes(module):
        assert issubclass(cls, base), cls
        foreign = [
            k
            for k in cls.__mro__
            if k.__module__ != cls.__module__ and k not in (Exception, BaseException, object)
        ]
        assert foreign == [], (cls, foreign)  # not ValueError, not PoolBackendError


def test_every_library_module_imports_alone() -> None:
    """Importing each module of the packages loads none of the application's modules."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import poolbackend.iscsi, poolbackend.scsi\n"
        "for pkg in (poolbackend.iscsi, poolbackend.scsi):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.startswith(('poolbackend.errors',"
        " 'poolbackend.pool', 'poolbackend.cli', 'poolbackend.conformance')))\n"
        "print(' '.join(bad))\n"
    )
    out = run_fresh(code)
    assert out.strip() == ""


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (iscsi_errors.ConnectionFailed("127.0.0.1:3260: connection refused"), TargetError),
        (iscsi_errors.LoginFailed("login refused: not found", 2, 3), TargetError),
        (scsi_errors.ScsiParseError("INQUIRY data too short"), TargetError),
        (iscsi_errors.InvalidURL("invalid iSCSI URL 'x': missing host"), ConfigError),
        (iscsi_errors.InvalidAddress("portal '[::1' has no closing ']'"), ConfigError),
    ],
)
def test_user_error_keeps_the_line(error: Exception, kind: type[PoolBackendError]) -> None:
    mapped = user_error(error)
    assert type(mapped) is kind
    assert str(mapped) == str(error) and mapped.lead is None
    assert mapped.__cause__ is error


def test_user_error_leaves_bugs_alone() -> None:
    own = ConfigError("x")
    assert user_error(own) is own
    assert user_error(KeyError("x")) is None
    assert user_error(ValueError("x")) is None
