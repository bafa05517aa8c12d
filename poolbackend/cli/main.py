"""The ``poolbackend`` command line: virsh-named pool/volume commands plus iSCSI tools.

Thin on purpose: parse arguments, call the driver (:mod:`poolbackend.pool.driver`), print
like virsh. The pool, volume and secret commands (:mod:`.pool`, :mod:`.volume`,
:mod:`.secret`) register themselves next to their handlers and import what they need only
when they run; the tools' modules are imported only when their command runs. Both keep
start-up fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from poolbackend import __version__
from poolbackend.cli.initiator_opts import add_initiator_options
from poolbackend.text import emit, printable_line

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse quotes the offending argument in its errors: escape it like our own."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {printable_line(message)}\n")


def _lazy(target: str) -> Handler:
    def run(args: argparse.Namespace) -> int:
        module, _, func = target.partition(":")
        handler: Handler = getattr(importlib.import_module(f"poolbackend.cli.{module}"), func)
        return handler(args)

    return run


def _cmd(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, target: str, help_text: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(func=_lazy(target))
    return p


def _add_tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    url_help = "iscsi://[user[%%password]@]host[:port][/target-iqn[/lun]] or host[:port]"
    p = _cmd(
        sub,
        "iscsi-ls",
        "tools:cmd_iscsi_ls",
        "list the targets of a portal (SendTargets) and, with -s, their LUNs with exact sizes",
    )
    p.add_argument("url", metavar="URL", help=url_help)
    p.add_argument("-s", "--show-luns", action="store_true", help="log in and list every LUN")
    p.add_argument(
        "-U",
        "--url",
        dest="url_output",
        action="store_true",
        help="print iscsi:// URLs instead of the table",
    )
    p.add_argument(
        "--discovery-auth",
        action="store_true",
        help="authenticate the discovery session with the URL's CHAP credentials",
    )
    add_initiator_options(p)
    p = _cmd(
        sub,
        "iscsi-inq",
        "tools:cmd_iscsi_inq",
        "standard INQUIRY of a LUN or, with -e 1 -c PAGE, a VPD page",
    )
    p.add_argument(
        "url", metavar="URL", help="iscsi://[user[%%password]@]host[:port]/target-iqn/lun"
    )
    p.add_argument("-e", "--evpd", choices=("0", "1"), default="0", help="1: read a VPD page")
    p.add_argument(
        "-c",
        "--page",
        metavar="PAGE",
        help="VPD page code, decimal or 0x hex (0x00 0x80 0x83 0xb0 0xb1 0xb2)",
    )
    add_initiator_options(p)
    p = _cmd(
        sub,
        "iscsi-readcapacity",
        "tools:cmd_iscsi_readcapacity",
        "READ CAPACITY(16) of a LUN (falls back to (10)); exact size in bytes",
    )
    p.add_argument(
        "url", metavar="URL", help="iscsi://[user[%%password]@]host[:port]/target-iqn/lun"
    )
    p.add_argument("-s", "--size-only", action="store_true", help="print only the size in bytes")
    add_initiator_options(p)
    p = _cmd(
        sub,
        "iscsi-lbastatus",
        "lbastatus:cmd_iscsi_lbastatus",
        "mapped, deallocated and anchored extents of a thin LUN (GET LBA STATUS), "
        "like sg_get_lba_status",
    )
    p.add_argument(
        "url", metavar="URL", help="iscsi://[user[%%password]@]host[:port]/target-iqn/lun"
    )
    p.add_argument("--lba", metavar="N", help="first block (default 0)")
    p.add_argument("--blocks", metavar="N", help="number of blocks (default: to the end)")
    add_initiator_options(p)
    p = _cmd(
        sub,
        "iscsi-perf",
        "perf:cmd_iscsi_perf",
        "READ benchmark of a LUN like libiscsi's iscsi-perf: per-second progress until "
        "SIGINT or --seconds, then the IOPS average",
    )
    p.add_argument(
        "url", metavar="URL", help="iscsi://[user[%%password]@]host[:port]/target-iqn/lun"
    )
    p.add_argument(
        "-m", "--max", default="32", metavar="MAX_IN_FLIGHT", help="reads in flight (default 32)"
    )
    p.add_argument(
        "-b", "--blocks", default="8", metavar="BLOCKS_PER_IO", help="blocks per read (default 8)"
    )
    p.add_argument("-r", "--random", action="store_true", help="random LBAs (default sequential)")
    p.add_argument(
        "-n", "--ignore-errors", action="store_true", help="count failed reads and go on"
    )
    p.add_argument(
        "-x",
        "--max-reconnects",
        metavar="MAX_RECONNECTS",
        help="reconnects in a row without progress before giving up (default 3)",
    )
    p.add_argument("-l", "--logging", action="store_true", help="one progress line per second")
    p.add_argument(
        "--seconds", metavar="N", help="stop after N seconds (default: run until SIGINT)"
    )
    add_initiator_options(p)


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
    _add_tools(sub)
    from poolbackend.cli import pool, secret, unsupported, volume

    pool.commands.register(sub)
    volume.commands.register(sub)
    unsupported.register(sub, _cmd)
    secret.commands.register(sub)
    from poolbackend.cli import attachcmds

    attachcmds.register(sub, _cmd)
    from poolbackend.cli import autostartcmd

    autostartcmd.register(sub, _cmd)
    from poolbackend.conformance import cli as conformance_cli

    conformance_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "secret-set-value":
        args.value = "given"  # refused below without repeating it (it may be the secret)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from poolbackend.errors import PoolBackendError

    if getattr(args, "pool_pos", None) and not getattr(args, "pool", None):
        args.pool = args.pool_pos  # virsh takes the pool positionally or as --pool
    if args.command == "vol-list" and not args.pool:
        parser.error("vol-list needs a POOL")
    try:
        return int(args.func(args) or 0)
    except PoolBackendError as exc:
        if exc.lead is not None:
            emit("error", exc.lead)
        emit("error", str(exc))
        return 1
    except KeyboardInterrupt:
        emit("error", "interrupted")
        return 130
    except BrokenPipeError:
        return 1
