"""The registry of conformance tests: ``Family.Suite.Test`` names, documentation, flags.

Suite modules register their tests at import with :func:`conformance_test` (one function)
or :func:`register` (table-driven families such as READ(10)/(12)/(16)). A test is a function
of a :class:`~poolbackend.conformance.context.Context`; it passes by returning, fails by
raising :class:`TestFailed` and is skipped (counting toward nothing) by raising
:class:`TestSkipped` with the reason in words.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poolbackend.conformance.context import Context

TestFunc = Callable[["Context"], None]

FAMILIES = ("SCSI", "iSCSI")

SUITE_MODULES = (
    "scsi_rw",
    "scsi_info",
    "scsi_thin",
    "scsi_reserve",
    "scsi_misc",
    "iscsi_proto",
    "iscsi_extra",
)
"""Modules under :mod:`poolbackend.conformance` that register tests, in run order."""


class TestFailed(Exception):
    """The target did not do what the standard requires; the message says what and why."""

    __test__ = False  # not a pytest class


class TestSkipped(Exception):
    """The test cannot run here (feature absent, option not given); the message says why."""

    __test__ = False


@dataclass(frozen=True)
class ConformanceTest:
    family: str
    suite: str
    name: str
    func: TestFunc
    doc: str
    dataloss: bool = False
    sanitize: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.family}.{self.suite}.{self.name}"

    @property
    def suite_name(self) -> str:
        return f"{self.family}.{self.suite}"


_TESTS: dict[str, ConformanceTest] = {}
_LOADED = False


def register(
    family: str,
    suite: str,
    name: str,
    func: TestFunc,
    doc: str,
    *,
    dataloss: bool = False,
    sanitize: bool = False,
) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown test family {family!r}")
    test = ConformanceTest(
        family, suite, name, func, inspect.cleandoc(doc), dataloss=dataloss, sanitize=sanitize
    )
    if test.full_name in _TESTS:
        raise ValueError(f"test {test.full_name} registered twice")
    if not test.doc:
        raise ValueError(f"test {test.full_name} has no documentation")
    _TESTS[test.full_name] = test


def conformance_test(
    family: str, suite: str, name: str, *, dataloss: bool = False, sanitize: bool = False
) -> Callable[[TestFunc], TestFunc]:
    """Register the decorated function; its docstring is the test's documentation."""

    def deco(func: TestFunc) -> TestFunc:
        register(
            family, suite, name, func, func.__doc__ or "", dataloss=dataloss, sanitize=sanitize
        )
        return func

    return deco


def all_tests() -> list[ConformanceTest]:
    """Every registered test, suite modules imported on first use, in registration order."""
    global _LOADED
    if not _LOADED:
        for module in SUITE_MODULES:
            importlib.import_module(f"poolbackend.conformance.{module}")
        _LOADED = True
    return list(_TESTS.values())


def _matches(full: str, pattern: str) -> bool:
    family, _, rest = pattern.partition(".")
    if family.upper() == "ALL":
        pattern = "*" + ("." + rest if rest else "")
    # A pattern naming a family or suite selects everything under it, as iscsi-test-cu does.
    return fnmatch.fnmatchcase(full, pattern) or fnmatch.fnmatchcase(full, pattern + ".*")


def select(tests: Iterable[ConformanceTest], patterns: list[str]) -> list[ConformanceTest]:
    """Tests whose name matches any pattern (fnmatch wildcards; FAMILY, FAMILY.SUITE, ALL)."""
    if not patterns:
        patterns = ["*"]
    return [t for t in tests if any(_matches(t.full_name, p) for p in patterns)]
