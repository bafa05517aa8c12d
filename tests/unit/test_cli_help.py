"""Every argument of every command has help text (--help is the user's manual); every
command is registered next to its handler, and building the parser loads no initiator."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from poolbackend.cli import main
from poolbackend.cli.main import _modules, build_parser
from tests.harness.fresh import run_fresh


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_and_argument_has_help() -> None:
    missing = []
    commands = _commands()
    assert len(commands) > 30
    for name, parser in commands.items():
        if not parser.description:
            missing.append(f"{name}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            what = "/".join(action.option_strings) or action.metavar or action.dest
            if action.help is None or not str(action.help).strip():
                missing.append(f"{name} {what}")
    assert not missing, "arguments without help text:\n" + "\n".join(missing)


def test_help_renders_for_every_command() -> None:
    for name, parser in _commands().items():
        text = parser.format_help()
        assert text.startswith(f"usage: poolbackend {name}"), name


def test_every_command_is_registered_next_to_its_handler() -> None:
    """Each command's handler is a function of the module whose table registers it (no
    handler named by a string, no wrapper in main.py), and every registered command is on
    the parser exactly once, with its table's help."""
    commands = _commands()
    registered: list[str] = []
    for table in _modules():
        modules = {inspect.getmodule(command.handler) for command in table.table}
        assert len(modules) == 1, [c.name for c in table.table]
        for command in table.table:
            registered.append(command.name)
            parser = commands[command.name]
            assert parser.get_default("func") is command.handler, command.name
            assert inspect.isfunction(command.handler), command.name
            assert command.handler.__module__ != "poolbackend.cli.main", command.name
            assert parser.description == command.help, command.name
            assert callable(parser.get_default("prepare")), command.name
    assert sorted(registered) == sorted(commands), "commands registered twice or elsewhere"


def test_main_names_no_command() -> None:
    """main.py only assembles the modules' tables: no command (nor a rule of one, such as
    vol-list's POOL or secret-set-value's refused words) is named there."""
    source = Path(main.__file__).read_text(encoding="utf-8")
    assert [name for name in _commands() if f'"{name}"' in source] == []


def test_building_the_parser_loads_no_initiator() -> None:
    """Every command module is imported to build the parser (``--help`` lists them all), so
    each imports asyncio, the initiator and the pool layer only when its command runs."""
    code = """
import sys
from poolbackend.cli.main import build_parser
build_parser()
heavy = ("asyncio", "poolbackend.iscsi", "poolbackend.scsi", "poolbackend.pool")
print(sorted(m for m in sys.modules if m.startswith(heavy)))
"""
    assert run_fresh(code) == "[]\n"
