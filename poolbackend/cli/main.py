"""The ``poolbackend`` command line: virsh-named pool/volume commands plus iSCSI tools.

Thin on purpose: it only assembles the command modules and prints errors. Each module
(:mod:`.pool`, :mod:`.volume`, :mod:`.secret`, :mod:`.unsupported`, :mod:`.attachcmds`,
:mod:`.autostartcmd`, the tools :mod:`.tools`, :mod:`.lbastatus`, :mod:`.perf`, and
:mod:`poolbackend.conformance.cli`) registers its commands next to their handlers in a
:class:`~poolbackend.cli.common.Commands` table and imports what they need (the driver, the
initiator, asyncio) only when they run, which keeps start-up fast.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from poolbackend import __version__
from poolbackend.text import emit, printable_line

if TYPE_CHECKING:
    from poolbackend.cli.common import Commands


class _Parser(argparse.ArgumentParser):
    """argparse quotes the offending argument in its errors: escape it like our own."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
        prog="poolbackend",
        description="iscsi-direct storage pools with an embedded userspace iSCSI initiator",
    )
    parser.add_argument("--version", action="version", version=f"poolbackend {__version__}")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    sub.required = True
    for commands in _modules():
        commands.register(sub)
    return parser


def _modules() -> list[Commands]:
    """Every module's command table, in the order ``--help`` lists the commands."""
    from poolbackend.cli import (
        attachcmds,
        autostartcmd,
        lbastatus,
        perf,
        pool,
        secret,
        tools,
        unsupported,
        volume,
    )
    from poolbackend.conformance import cli as conformance_cli

    return [
        tools.commands,
        lbastatus.commands,
        perf.commands,
        pool.commands,
        volume.commands,
        unsupported.commands,
        secret.commands,
        attachcmds.commands,
        autostartcmd.commands,
        conformance_cli.commands,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    # A command builds ~100k long-lived objects (modules, classes, a pool's volumes): with
    # the default threshold (700) the collector walks them again and again, ~10% of a
    # 1024-LUN pool-refresh. Collect young objects every 100k allocations instead.
    gc.set_threshold(100_000, 20, 20)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    problem = args.prepare(args, extra)  # the command's own check (cli.common.prepare)
    if problem is not None:
        parser.error(problem)
    from poolbackend.errors import user_error

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        emit("error", "interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a user error, or an error of the iscsi/scsi packages
        err = user_error(exc)
        if err is None:
            raise  # a bug: keep its traceback
        if err.lead is not None:
            emit("error", err.lead)
        emit("error", str(err))
        return 1
