"""Strings from outside never forge or repaint an error line.

A matrix of commands x hostile strings put where the user controls text: volume and pool
names, secret names, file paths, URLs, host names, domain names, XML file names and XML
contents. Every run must fail with one error on stderr (one ``error: …`` line, or virsh's
lead line and the libvirt line), no forged line, no raw control character (C0, C1, DEL), no
bidi override or other invisible format character, no undecodable byte (surrogateescape).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from poolbackend import text
from poolbackend.cli.main import main
from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.errors import ConnectionFailed
from poolbackend.iscsi.portal import Portal
from poolbackend.pool.fsutil import StorePaths
from poolbackend.pool.model import PoolDef, PoolSource, PoolState, Volume
from poolbackend.pool.store import Store

HOSTILE = {
    "newline": "a\nerror: forged line",
    "esc": "b\x1b[31mred\x1b[0m",
    "cr": "c\rerror: overwritten",
    "controls": "d\x07\x08\x0b\x0c\x7f\x9b",
    "bidi": "e\u202egnp.exe\u2066\u2069\u200f",
    "separators": "f\u2028g\u2029h\u0085",
    "undecodable": "g\udcff\udcfe",
}

UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
TARGET = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state dir with an active pool ``p1`` (one volume, no target needed) and ``p2``
    inactive."""
    root = tmp_path / "state"
    monkeypatch.setenv("POOLBACKEND_STATE_DIR", str(root))
    store = Store(StorePaths.under(root))
    source = PoolSource("127.0.0.1", 1, TARGET, INITIATOR)
    store.define(PoolDef("p1", "11111111-2222-4333-8444-555555555555", source))
    other = PoolSource("127.0.0.1", 1, TARGET, INITIATOR + "-2")
    store.define(PoolDef("p2", "11111111-2222-4333-8444-555555555556", other))
    volume = Volume.for_lun(source, 0, capacity=1 << 20, block_size=512)
    store.save_state("p1", PoolState(active=True, volumes=(volume,)))
    return root


Argv = Callable[[str, Path], list[str]]


def _xml_file(tmp: Path, name: str, content: str) -> str:
    path = tmp / name
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    return str(path)


def _pool_xml_named(hostile: str, tmp: Path) -> list[str]:
    return [
        "pool-define",
        _xml_file(
            tmp,
            "named.xml",
            f"<pool type='iscsi-direct'><name>{hostile}</name>"
            f"<source><host name='{hostile}'/><device path='{TARGET}'/>"
            f"<initiator><iqn name='{INITIATOR}'/></initiator></source></pool>",
        ),
    ]


def _bad_xml_file_name(hostile: str, tmp: Path) -> list[str]:
    safe = hostile.replace("/", "_")
    return ["pool-define", _xml_file(tmp, f"{safe}.xml", "<pool type='iscsi-direct'><name>")]


def _secret_xml(hostile: str, tmp: Path) -> list[str]:
    return [
        "secret-define",
        _xml_file(
            tmp,
            "secret.xml",
            f"<secret><uuid>{hostile}</uuid><usage type='iscsi'><target>t</target></usage>"
            "</secret>",
        ),
    ]


COMMANDS: dict[str, Argv] = {
    "vol-info name": lambda h, t: ["vol-info", "--pool", "p1", f"unit:0:0:9{h}"],
    "vol-info key": lambda h, t: ["vol-info", f"ip-{h}-iscsi-x-lun-0"],
    "vol-wipe name": lambda h, t: ["vol-wipe", "--pool", "p1", f"unit:0:0:{h}"],
    "vol-download path": lambda h, t: [
        "vol-download", "--pool", "p1", "unit:0:0:0", str(t / f"nodir{h}" / "out"),
    ],
    "vol-upload path": lambda h, t: [
        "vol-upload", "--pool", "p1", "unit:0:0:0", str(t / f"missing{h}"),
    ],
    "vol-download pool": lambda h, t: ["vol-download", "--pool", h, "unit:0:0:0", "x"],
    "pool-info": lambda h, t: ["pool-info", f"p{h}"],
    "pool-start": lambda h, t: ["pool-start", f"p{h}"],
    "pool-dumpxml": lambda h, t: ["pool-dumpxml", h],
    "pool-define missing file": lambda h, t: ["pool-define", str(t / f"no{h}.xml")],
    "pool-define name in XML": lambda h, t: _pool_xml_named(h, t),
    "pool-define XML file name": lambda h, t: _bad_xml_file_name(h, t),
    "secret-define XML": lambda h, t: _secret_xml(h, t),
    "secret-dumpxml": lambda h, t: ["secret-dumpxml", h],
    "secret-set-value file": lambda h, t: ["secret-set-value", "x", "--file", str(t / h)],
    "iscsi-inq url": lambda h, t: ["iscsi-inq", f"iscsi://127.0.0.1:1/{TARGET}{h}/x"],
    "iscsi-ls host": lambda h, t: ["iscsi-ls", f"iscsi://{h}:1"],
    "iscsi-readcapacity password": lambda h, t: [
        "iscsi-readcapacity", f"iscsi://u%{h}@127.0.0.1:1/{TARGET}/x",
    ],
    "find-storage-pool-sources-as host": lambda h, t: [
        "find-storage-pool-sources-as", "iscsi-direct", h, "1", "--initiator", INITIATOR,
    ],
    "attach-volume domain": lambda h, t: [
        "attach-volume", "-c", "test:///default", f"dom{h}", "unit:0:0:0", "--pool", "p1",
    ],
    "detach-volume domain": lambda h, t: [
        "detach-volume", "-c", "test:///default", f"dom{h}", "unit:0:0:0", "--pool", "p1",
    ],
}  # fmt: skip


@pytest.mark.parametrize("net", ["with", "without"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_one_clean_error_line(
    command: str,
    kind: str,
    net: str,
    state: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``without``: the CLI's last safety net (:func:`poolbackend.text.emit`) is switched
    off, so the message must already be escaped where it was made."""
    if net == "without":
        monkeypatch.setattr(text, "printable_line", lambda line: line)
    argv = COMMANDS[command](HOSTILE[kind], tmp_path)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse refusals
        rc = int(exc.code or 0)
    captured = capsys.readouterr()
    assert rc != 0, (argv, captured)
    lines = captured.err.split("\n")
    assert lines[-1] == "", captured.err
    errors = [line for line in lines[:-1] if not line.startswith("usage:") and line[:1] != " "]
    # One error; virsh-style lookups print a lead line first ("failed to get pool 'x'").
    assert 1 <= len(errors) <= 2, captured.err
    for line in errors:
        assert re.match(r"(error|poolbackend [a-z-]+: error): ", line), captured.err
        assert not re.match(r"(error: )?(forged|overwritten|red)", line.partition(": ")[2])
    if len(errors) == 2:
        assert errors[0].startswith("error: failed to get "), captured.err
    assert not UNSAFE.search(captured.err), captured.err


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_initiator_messages_escape_portal_and_target(kind: str) -> None:
    """The library's own messages (no CLI safety net): every iSCSI error names the session
    as ``portal P target T``, and a host the resolver refuses fails before any traffic."""
    hostile = HOSTILE[kind]
    session = Session(Portal(f"h{hostile}", 1), f"iqn{hostile}")
    assert not UNSAFE.search(session.what), session.what
    # U+202E makes the IDNA codec refuse the name: no DNS query, no connection.
    with pytest.raises(ConnectionFailed) as info:
        asyncio.run(Session.open(Portal(f"\u202e{hostile}", 1), "iqn.x", SessionOptions(timeout=2)))
    message = str(info.value)
    assert "cannot connect: invalid host name" in message
    assert not UNSAFE.search(message), message
