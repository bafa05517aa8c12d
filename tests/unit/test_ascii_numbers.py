"""Every number from outside is plain ASCII, parsed by one helper (poolbackend.numbers).

``'²'`` passed ``str.isdigit()`` and then made ``int()`` raise (a traceback); and fullwidth
digits, ``'1_000'`` and ``' 1'`` were silently accepted by ``int()``; ``--timeout nan``
was accepted. A matrix of every numeric argument and field against such values: each is
refused with one ``error:`` line naming the argument, before any network traffic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from poolbackend.cli.main import main
from poolbackend.iscsi.chap import ChapInitiator, parse_algorithms
from poolbackend.iscsi.errors import InvalidAddress, RemoteProtocolError
from poolbackend.iscsi.portal import Portal
from poolbackend.iscsi.textkeys import parse_number
from poolbackend.numbers import ascii_int, seconds
from poolbackend.pool.fsutil import StorePaths
from poolbackend.pool.model import PoolDef, PoolSource, PoolState, Volume
from poolbackend.pool.store import Store

VALUES = ["²", "\uff13", "1_000", " 1", "+1", "-1", "0x10", ""]
TARGET = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"
URL = f"iscsi://127.0.0.1:1/{TARGET}/1"

Argv = Callable[[str], list[str]]

#: argument -> (argv builder, words the error line must contain)
ARGUMENTS: dict[str, tuple[Argv, str]] = {
    "vol-download --offset": (
        lambda v: ["vol-download", "--pool", "p", "unit:0:0:1", "out", "--offset", v],
        "--offset",
    ),
    "vol-download --length": (
        lambda v: ["vol-download", "--pool", "p", "unit:0:0:1", "out", "--length", v],
        "--length",
    ),
    "vol-upload --offset": (
        lambda v: ["vol-upload", "--pool", "p", "unit:0:0:1", "in", "--offset", v],
        "--offset",
    ),
    "vol-upload --length": (
        lambda v: ["vol-upload", "--pool", "p", "unit:0:0:1", "in", "--length", v],
        "--length",
    ),
    "find-storage-pool-sources-as PORT": (
        lambda v: ["find-storage-pool-sources-as", "iscsi-direct", "127.0.0.1", v,
                   "--initiator", INITIATOR],
        "port",
    ),
    "find-storage-pool-sources-as --timeout": (
        lambda v: ["find-storage-pool-sources-as", "iscsi-direct", "127.0.0.1", "1",
                   "--initiator", INITIATOR, "--timeout", v],
        "--timeout",
    ),
    "iscsi-ls --timeout": (lambda v: ["iscsi-ls", "--timeout", v, URL], "--timeout"),
    "iscsi-inq --timeout": (lambda v: ["iscsi-inq", "--timeout", v, URL], "--timeout"),
    "iscsi-readcapacity --timeout": (
        lambda v: ["iscsi-readcapacity", "--timeout", v, URL],
        "--timeout",
    ),
    "iscsi-inq --page": (lambda v: ["iscsi-inq", "-e", "1", "-c", v, URL], "--page"),
    "iscsi-inq --evpd": (lambda v: ["iscsi-inq", "-e", v, URL], "--evpd"),
    "URL port": (lambda v: ["iscsi-inq", f"iscsi://127.0.0.1:{v}/{TARGET}/1"], "port"),
    "URL LUN": (lambda v: ["iscsi-inq", f"iscsi://127.0.0.1:1/{TARGET}/{v}"], "LUN"),
}  # fmt: skip

#: values that are valid for an argument (then the command goes on and fails elsewhere)
VALID = {("iscsi-inq --page", "0x10")}


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLBACKEND_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


#: every argument x every value, but for the valid pairs (not run rather than skipped)
CASES = [(a, v) for a in sorted(ARGUMENTS) for v in VALUES if (a, v) not in VALID]


@pytest.mark.parametrize(("argument", "value"), CASES)
def test_non_ascii_numbers_refused(
    argument: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build, word = ARGUMENTS[argument]
    try:
        rc = main(build(value))
    except SystemExit as exc:  # argparse: usage + one error line, exit 2
        rc = int(exc.code or 0)
    captured = capsys.readouterr()
    assert rc in (1, 2), captured
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1, captured.err
    assert word.lower() in errors[0].lower(), errors[0]
    assert "Traceback" not in captured.err
    assert not re.search(r"refused|cannot connect|no answer", errors[0]), errors[0]


@pytest.mark.parametrize("value", ["²", "\uff13", "1_000", " 1", "+1", "-1", ""])
def test_domain_id_is_ascii(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A domain "id" like '²' is looked up as a name (libvirt's test driver), no traceback."""
    store = Store(StorePaths.under(tmp_path / "state"))
    source = PoolSource("127.0.0.1", 1, TARGET, INITIATOR)
    store.define(PoolDef("p", "11111111-2222-4333-8444-555555555555", source))
    volume = Volume.for_lun(source, 1, capacity=1 << 20, block_size=512)
    store.save_state("p", PoolState(active=True, volumes=(volume,)))
    rc = main(["attach-volume", "-c", "test:///default", value, "unit:0:0:1", "--pool", "p"])
    captured = capsys.readouterr()
    assert rc == 1 and "Traceback" not in captured.err
    assert captured.err == f"error: failed to get domain '{value}': no such domain\n"


@pytest.mark.parametrize("value", VALUES)
def test_target_sent_numbers_are_ascii(value: str) -> None:
    """Numbers a target sends (login keys, CHAP_A/CHAP_I, SendTargets portals)."""
    if value != "0x10":
        with pytest.raises(RemoteProtocolError):
            parse_number("MaxBurstLength", value)
    with pytest.raises(InvalidAddress):
        Portal.parse(f"10.0.0.1:{value}", tpgt=True)
    with pytest.raises(InvalidAddress):
        Portal.parse(f"10.0.0.1:3260,{value}", tpgt=True)
    responder = ChapInitiator("u", b"secret-secret", (5,))
    for key in ("CHAP_A", "CHAP_I"):
        keys = {"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x" + "ab" * 16, key: value}
        if key == "CHAP_I" and value == "0x10":
            continue
        with pytest.raises(RemoteProtocolError):
            responder.respond(keys)
    if value:
        with pytest.raises(ValueError):
            parse_algorithms(value)


def test_the_helpers() -> None:
    assert ascii_int("0") == 0 and ascii_int("65535", high=65535) == 65535
    assert ascii_int("0x1F", allow_hex=True) == 31
    for bad in ["²", "\uff13", "1_000", " 1", "1 ", "+1", "-1", "", "0x10", "1\n"]:
        with pytest.raises(ValueError):
            ascii_int(bad)
    assert seconds("1.5") == 1.5 and seconds(".5") == 0.5 and seconds("10") == 10
    for bad in ["nan", "inf", "0", "0.0", "-1", "", " 1", "1e3", "\uff13", "86401"]:
        with pytest.raises(ValueError):
            seconds(bad)


@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf", "1e3", "0.0"])
@pytest.mark.parametrize(
    "command",
    [
        ["find-storage-pool-sources-as", "iscsi-direct", "127.0.0.1", "1", "--initiator",
         INITIATOR],
        ["iscsi-ls", URL],
    ],
)  # fmt: skip
def test_timeout_validated_like_the_tools(
    command: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One timeout parser: ``find-storage-pool-sources-as --timeout nan`` is refused exactly
    like the tools' ``--timeout nan`` (it used to wait 'within nan s')."""
    rc = main([*command, "--timeout", value])
    err = capsys.readouterr().err
    assert rc == 1
    assert err == (
        f"error: --timeout must be a positive number of seconds (at most 86400), not '{value}'\n"
    )
