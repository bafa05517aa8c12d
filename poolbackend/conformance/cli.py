"""``poolbackend iscsi-test``: the conformance tool's command line (iscsi-test-cu's options)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from poolbackend.cli.common import Commands, arg, flag
from poolbackend.cli.initiator_opts import LUN_URL_HELP, add_initiator_options
from poolbackend.errors import ConfigError
from poolbackend.text import printable

if TYPE_CHECKING:
    from poolbackend.conformance.registry import ConformanceTest

commands = Commands()


def _patterns(values: list[str]) -> list[str]:
    patterns: list[str] = []
    for value in values:
        if os.path.isfile(value):
            try:
                with open(value, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"--test file {printable(value)}: {exc}") from None
            patterns += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
        else:
            patterns.append(value)
    return patterns


@commands.add(
    "iscsi-test",
    "target conformance tests (iscsi-test-cu's SCSI and iSCSI families, same test names) "
    "run over the built-in initiator",
    arg("url", metavar="URL", nargs="?", help=LUN_URL_HELP),
    arg(
        "url2",
        metavar="URL2",
        nargs="?",
        help="a second path to the same LUN, for the two-nexus and multipath tests",
    ),
    add_initiator_options,
    arg(
        "-I",
        "--initiator-name-2",
        metavar="IQN2",
        help="initiator name of the second I_T nexus (default: the first name + '-2')",
    ),
    arg(
        "-T",
        "--test",
        dest="tests",
        action="append",
        default=[],
        metavar="FAMILY[.SUITE[.TEST]]",
        help="tests to run: names with fnmatch wildcards (SCSI, SCSI.Read10, *.Read1?.Simple, "
        "ALL) or a file of such names, one a line; repeatable (default: all)",
    ),
    arg("-l", "--list", action="store_true", help="print the selected test names"),
    arg("-d", "--dataloss", action="store_true", help="allow tests that write to the LUN"),
    arg(
        "-S",
        "--allow-sanitize",
        action="store_true",
        help="allow the SANITIZE tests (they erase the whole LUN; needs --dataloss too)",
    ),
    arg(
        "-V",
        "--verbose-scsi",
        action="store_true",
        help="print each test's documentation and every command it sends with the answer",
    ),
    arg("--junit", metavar="FILE", help="write the results as JUnit XML to FILE"),
    flag("--fail-fast", "stop after the first failed test"),
)
def cmd_iscsi_test(args: argparse.Namespace) -> int:
    from poolbackend.conformance.registry import all_tests, select

    patterns = _patterns(args.tests)
    tests = select(all_tests(), patterns)
    if not tests:
        raise ConfigError(f"--test {printable(' '.join(patterns))}: no test has such a name")
    if args.list:
        for t in tests:
            print(t.full_name)
            if args.verbose_scsi:
                for line in t.doc.splitlines():
                    print(f"    {line}".rstrip())
        return 0
    if not args.url:
        raise ConfigError("iscsi-test needs a URL (iscsi://host[:port]/target-iqn/lun)")
    return _run(args, tests)


def _run(args: argparse.Namespace, selected: list[ConformanceTest]) -> int:
    from poolbackend.cli.initiator_opts import session_options
    from poolbackend.conformance import runner
    from poolbackend.conformance.context import Context, RunOptions
    from poolbackend.conformance.registry import TestFailed, TestSkipped
    from poolbackend.iscsi.url import parse_url

    url = parse_url(args.url)
    if url.target is None or url.lun is None:
        raise ConfigError("iscsi-test: the URL must name a target and a LUN (…/target-iqn/lun)")
    url2 = parse_url(args.url2) if args.url2 else None
    if url2 is not None and (url2.target is None or url2.lun is None):
        raise ConfigError("iscsi-test: URL2 must name a target and a LUN (…/target-iqn/lun)")
    if args.junit:
        existed = os.path.lexists(args.junit)
        try:  # refuse an unwritable --junit before running anything (and leave no trace)
            with open(args.junit, "ab"):
                pass
            if not existed:
                os.unlink(args.junit)
        except OSError as exc:
            raise ConfigError(f"--junit {printable(args.junit)}: {exc.strerror}") from None
    ctx = Context(
        url=url,
        options=session_options(args, url),
        run_options=RunOptions(
            dataloss=args.dataloss,
            allow_sanitize=args.allow_sanitize,
            verbose=args.verbose_scsi,
            out=sys.stdout,
        ),
        url2=url2,
        initiator2=args.initiator_name_2,
    )
    try:
        try:
            ctx.setup()
        except (TestFailed, TestSkipped) as exc:
            raise ConfigError(f"iscsi-test: {exc}") from None
        results = runner.run(
            selected,
            ctx,
            sys.stdout,
            fail_fast=args.fail_fast,
            show_doc=args.verbose_scsi,
        )
    finally:
        ctx.close()
    runner.summary(results, sys.stdout)
    if args.junit:
        with open(args.junit, "wb") as f:
            f.write(runner.junit_xml(results))
    return 1 if any(r.verdict == runner.FAIL for r in results) else 0
