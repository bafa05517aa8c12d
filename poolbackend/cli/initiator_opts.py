"""Initiator options shared by the tools: parsing and turning them into SessionOptions."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from poolbackend.cli.common import arg
from poolbackend.errors import ConfigError
from poolbackend.numbers import MAX_SECONDS, seconds
from poolbackend.text import printable

if TYPE_CHECKING:
    from poolbackend.iscsi.aio import SessionOptions
    from poolbackend.iscsi.url import IscsiUrl


LUN_URL_HELP = "iscsi://[user[%%password]@]host[:port]/target-iqn/lun"
LUN_URL = arg("url", metavar="URL", help=LUN_URL_HELP)
"""The tools' URL of one LUN (a command setup, :func:`poolbackend.cli.common.arg`)."""


def add_initiator_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i",
        "--initiator-name",
        metavar="IQN",
        help="initiator name (default: a stable IQN generated from the host name)",
    )
    p.add_argument(
        "-t",
        "--timeout",
        default="10",
        metavar="SECONDS",
        help="bound for connect and login; a target silent this long while commands are "
        "outstanding, and unanswered to a NOP-Out ping, is dead (default 10)",
    )
    p.add_argument(
        "--chap-algorithms",
        metavar="LIST",
        help="CHAP_A offer, e.g. 'sha-256,md5' (default md5; tgt accepts only md5)",
    )


def timeout_option(args: argparse.Namespace) -> float:
    """``--timeout`` of every command that has one: seconds, ASCII decimal, 0 < t <= 1 day."""
    value = args.timeout
    try:
        if isinstance(value, str):
            return seconds(value)
        # A Namespace built in code may hold a number: the same bounds apply.
        if isinstance(value, (int, float)) and 0 < value <= MAX_SECONDS:
            return float(value)
        raise ValueError(value)
    except ValueError:
        raise ConfigError(
            "--timeout must be a positive number of seconds (at most "
            f"{MAX_SECONDS:g}), not '{printable(str(value))}'"
        ) from None


def session_options(args: argparse.Namespace, url: IscsiUrl | None = None) -> SessionOptions:
    from poolbackend.iscsi.aio import SessionOptions
    from poolbackend.iscsi.chap import parse_algorithms

    opts = SessionOptions()
    if args.initiator_name:
        opts.initiator_name = args.initiator_name
    opts.timeout = timeout_option(args)
    opts.timeout_hint = f"--timeout {opts.timeout:g}"
    if args.chap_algorithms:
        try:
            opts.chap_algorithms = parse_algorithms(args.chap_algorithms)
        except ValueError as exc:
            raise ConfigError(f"--chap-algorithms: {exc}") from None
    if url is not None:
        if url.header_digest:
            opts.header_digest = url.header_digest
        if url.data_digest:
            opts.data_digest = url.data_digest
        if url.chap_algorithms:
            opts.chap_algorithms = url.chap_algorithms
    return opts
