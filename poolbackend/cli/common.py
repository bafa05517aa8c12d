"""What the pool, volume and secret commands share: the command table each module fills next
to its handlers, the driver they all call, reading input files, virsh's output habits."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from poolbackend.errors import ConfigError, FileError
from poolbackend.text import emit, printable

if TYPE_CHECKING:
    from poolbackend.pool.driver import Driver, RefreshReport

Handler = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], object]
Prepare = Callable[[argparse.Namespace, list[str]], "str | None"]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Handler
    setups: tuple[Setup, ...]


class Commands:
    """A module's commands, in the order ``--help`` lists them.

    ``@commands.add("pool-start", "start a pool", pool_argument)`` registers the handler it
    decorates; each setup adds arguments to the command's parser. After parsing, the
    command's ``prepare`` check runs (default :func:`no_extra`; another one is given with
    the setup :func:`prepare`).
    """

    def __init__(self) -> None:
        self.table: list[Command] = []

    def add(self, name: str, help_text: str, *setups: Setup) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.table.append(Command(name, help_text, handler, setups))
            return handler

        return decorate

    def register(self, sub: Any) -> None:
        for command in self.table:
            p = sub.add_parser(command.name, help=command.help, description=command.help)
            p.set_defaults(prepare=no_extra)
            for setup in command.setups:
                setup(p)
            p.set_defaults(func=command.handler)


def arg(*names: str, **options: Any) -> Setup:
    """A setup adding one argument (``argparse``'s ``add_argument`` arguments)."""

    def setup(p: argparse.ArgumentParser) -> None:
        p.add_argument(*names, **options)

    return setup


def flag(name: str, help_text: str) -> Setup:
    return arg(name, action="store_true", help=help_text)


def no_extra(args: argparse.Namespace, extra: list[str]) -> str | None:
    """The check after parsing of most commands: argparse's refusal of arguments that no
    argument of the command takes."""
    return f"unrecognized arguments: {' '.join(extra)}" if extra else None


def prepare(check: Prepare) -> Setup:
    """A setup giving a command its own check after parsing instead of :func:`no_extra`:
    ``check(args, extra)`` may complete ``args`` and returns a usage error (printed by the
    program's parser, exit 2) or None."""

    def setup(p: argparse.ArgumentParser) -> None:
        p.set_defaults(prepare=check)

    return setup


def driver(args: argparse.Namespace) -> Driver:
    """The one front door to pools, volumes and secrets (with ``--connect`` if given)."""
    from poolbackend.pool.driver import Driver

    return Driver(libvirt_uri=getattr(args, "connect", None))


def read_file(path: str, what: str, limit: int = 16 * 1024 * 1024) -> bytes:
    """The file's content; refused (never truncated) when it is larger than ``limit``."""

    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise FileError(f"cannot read {what} '{printable(path)}': {exc.strerror}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} '{printable(path)}' is too large (more than {limit} bytes)")
    return data


def read_xml(path: str, what: str) -> bytes:
    from poolbackend.pool.xml.safe import MAX_XML_BYTES

    return read_file(path, what, MAX_XML_BYTES)


def say(text: str) -> None:
    """A virsh confirmation: the line and an empty line."""
    print(text + "\n")


def report(result: RefreshReport) -> None:
    """One ``warning:`` line per LUN a start or refresh left out."""
    for line in result.failures:
        emit("warning", line)
