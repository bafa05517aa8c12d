"""Run selected conformance tests: one line per test, a summary per suite, JUnit XML."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from poolbackend.conformance.context import Context
from poolbackend.conformance.registry import ConformanceTest, TestFailed, TestSkipped
from poolbackend.errors import PoolBackendError
from poolbackend.iscsi.errors import ISCSIError
from poolbackend.scsi.errors import ScsiError
from poolbackend.text import printable_line

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class Result:
    test: ConformanceTest
    verdict: str
    reason: str
    seconds: float


def _gate(test: ConformanceTest, ctx: Context) -> str | None:
    """Why a test may not run with these options (None: it may)."""
    if test.sanitize and not ctx.run_options.allow_sanitize:
        return "SANITIZE erases the whole LUN: run with --allow-sanitize (and --dataloss)"
    if test.dataloss and not ctx.run_options.dataloss:
        return "this test writes to the LUN: run with --dataloss"
    return None


def run_one(test: ConformanceTest, ctx: Context) -> Result:
    start = time.monotonic()
    verdict, reason = PASS, ""
    gate = _gate(test, ctx)
    if gate is not None:
        return Result(test, SKIP, gate, 0.0)
    try:
        test.func(ctx)
    except TestSkipped as exc:
        verdict, reason = SKIP, str(exc)
    except TestFailed as exc:
        verdict, reason = FAIL, str(exc)
    except (ISCSIError, ScsiError, PoolBackendError) as exc:
        verdict, reason = FAIL, f"iSCSI/SCSI error: {exc}"
        ctx.reset_main()
    except OSError as exc:
        verdict, reason = FAIL, f"connection error: {exc}"
        ctx.reset_main()
    except Exception as exc:  # a defect in the test itself: report it, run the others
        verdict, reason = FAIL, f"internal error in the test ({type(exc).__name__}: {exc})"
        ctx.reset_main()
    finally:
        ctx.close_extra()
    return Result(test, verdict, printable_line(reason), time.monotonic() - start)


def run(
    tests: Sequence[ConformanceTest],
    ctx: Context,
    out: TextIO,
    *,
    fail_fast: bool = False,
    show_doc: bool = False,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    results: list[Result] = []
    for test in tests:
        if show_doc:
            print(f"{test.full_name}:", file=out)
            for line in test.doc.splitlines():
                print(f"    {line}".rstrip(), file=out)
        result = run_one(test, ctx)
        results.append(result)
        line = f"{result.verdict} {test.full_name}"
        if result.reason:
            line += f": {result.reason}"
        print(line, file=out, flush=True)
        if on_result is not None:
            on_result(result)
        if fail_fast and result.verdict == FAIL:
            break
    return results


def _counts(results: Sequence[Result]) -> tuple[int, int, int]:
    return (
        sum(r.verdict == PASS for r in results),
        sum(r.verdict == FAIL for r in results),
        sum(r.verdict == SKIP for r in results),
    )


def by_suite(results: Sequence[Result]) -> dict[str, list[Result]]:
    suites: dict[str, list[Result]] = {}
    for r in results:
        suites.setdefault(r.test.suite_name, []).append(r)
    return suites


def summary(results: Sequence[Result], out: TextIO) -> None:
    print("", file=out)
    print(f"{'Suite':<40} {'pass':>5} {'fail':>5} {'skip':>5}", file=out)
    for suite, rs in by_suite(results).items():
        p, f, s = _counts(rs)
        print(f"{suite:<40} {p:>5} {f:>5} {s:>5}", file=out)
    p, f, s = _counts(results)
    print(f"{'Total (' + str(len(results)) + ' tests)':<40} {p:>5} {f:>5} {s:>5}", file=out)


def junit_xml(results: Sequence[Result]) -> bytes:
    """JUnit XML: a <testsuite> per suite, <testcase classname="Family.Suite" name="Test">."""
    _p, f, s = _counts(results)
    root = ET.Element(
        "testsuites",
        name="poolbackend iscsi-test",
        tests=str(len(results)),
        failures=str(f),
        errors="0",
        skipped=str(s),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for suite, rs in by_suite(results).items():
        _sp, sf, ss = _counts(rs)
        el = ET.SubElement(
            root,
            "testsuite",
            name=suite,
            tests=str(len(rs)),
            failures=str(sf),
            errors="0",
            skipped=str(ss),
            time=f"{sum(r.seconds for r in rs):.3f}",
        )
        for r in rs:
            case = ET.SubElement(
                el,
                "testcase",
                classname=r.test.suite_name,
                name=r.test.name,
                time=f"{r.seconds:.3f}",
            )
            if r.verdict == FAIL:
                fail = ET.SubElement(case, "failure", message=r.reason, type="ConformanceFailure")
                fail.text = r.reason
            elif r.verdict == SKIP:
                ET.SubElement(case, "skipped", message=r.reason)
    ET.indent(root)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text + b"\n"
