"""Every argument of every command has help text (--help is the user's manual)."""

from __future__ import annotations

import argparse

from poolbackend.cli.main import build_parser


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
