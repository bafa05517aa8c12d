"""virsh's secret commands (CHAP values), each registered next to its handler; every one
calls the driver (:mod:`poolbackend.pool.driver`) only. A value is never taken from argv."""

from __future__ import annotations

import argparse
import getpass
import sys

from poolbackend.cli.common import Commands, arg, driver, prepare, read_file, read_xml, say
from poolbackend.errors import ConfigError
from poolbackend.text import emit

commands = Commands()
_SECRET = arg("secret", metavar="SECRET", help="UUID or usage")


@commands.add(
    "secret-define",
    "define a CHAP secret from an XML file",
    arg("file", metavar="FILE", help="secret XML file (<secret>, usage type iscsi)"),
)
def secret_define(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.secret import parse_secret_xml

    secret = parse_secret_xml(read_xml(args.file, "secret XML file"), source_name=args.file)
    stored = driver(args).secret_define(secret)
    say(f"Secret {stored.uuid} created")
    return 0


def _value_in_argv(args: argparse.Namespace, extra: list[str]) -> str | None:
    """Words after the value are a value too: refused by the handler without repeating them
    (argparse's "unrecognized arguments" would print them)."""
    if extra:
        args.value = "given"
    return None


@commands.add(
    "secret-set-value",
    "set a secret's value (from --file, stdin, or a prompt; never from argv)",
    _SECRET,
    arg("--file", help="file holding the value (base64 unless --plain)"),
    arg(
        "--plain",
        action="store_true",
        help="the --file content is the raw value, byte for byte (a trailing newline is kept, "
        "as virsh does)",
    ),
    arg("--interactive", action="store_true", help="prompt for the value"),
    # Caught here so that the refusal never repeats the value (argparse's error would).
    prepare(_value_in_argv),
    arg(
        "value",
        nargs="?",
        metavar="VALUE",
        help="refused: a value on the command line is visible to every user (ps, /proc)",
    ),
    arg(
        "--base64",
        "--value",
        dest="value_option",
        metavar="VALUE",
        help="refused, like VALUE (virsh's --base64 takes the value from argv)",
    ),
)
def secret_set_value(args: argparse.Namespace) -> int:
    if args.value is not None or args.value_option is not None:
        raise ConfigError(
            "a secret value is never taken from the command line (visible to every user in "
            "the process list); use --file, standard input or the prompt"
        )
    if args.file:
        value = read_file(args.file, "secret value file")
        if not args.plain:
            import base64
            import binascii

            try:
                value = base64.b64decode(value.strip(), validate=True)
            except binascii.Error:
                raise ConfigError(
                    f"'{args.file}' is not base64 (use --plain for raw bytes)"
                ) from None
    elif args.interactive or sys.stdin.isatty():
        value = getpass.getpass("Enter new value for secret:").encode()
    else:
        value = sys.stdin.buffer.read().rstrip(b"\n")
    if not value:
        raise ConfigError("refusing to set an empty secret value")
    if value.endswith((b"\n", b"\r")):  # kept, like virsh's --file --plain: it may be meant
        emit(
            "warning",
            "the secret value ends in a newline, which is kept as part of it (as "
            "virsh does) and will be part of the CHAP password; remove it if that is not meant",
        )
    driver(args).secret_set_value(args.secret, value)
    say("Secret value set")
    return 0


@commands.add("secret-list", "list secrets")
def secret_list(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_table

    rows = [[s.uuid, s.usage_text] for s in driver(args).secret_list()]
    print(format_table(["UUID", "Usage"], rows), end="")
    return 0


@commands.add("secret-undefine", "delete a secret and its value", _SECRET)
def secret_undefine(args: argparse.Namespace) -> int:
    uuid = driver(args).secret_undefine(args.secret)
    say(f"Secret {uuid} deleted")
    return 0


@commands.add("secret-dumpxml", "the secret XML (never the value)", _SECRET)
def secret_dumpxml(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.secret import format_secret_xml

    print(format_secret_xml(driver(args).secret_lookup(args.secret)))
    return 0
