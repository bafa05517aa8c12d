"""The libiscsi-style tools as a user runs them: output, exit codes, bounded waits."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import RunCli
from tests.harness.load import slack
from tests.harness.tgtd import Tgtd

MiB = 1 << 20
IQN = "iqn.2026-11.example:target1"
CHAP_IQN = "iqn.2026-11.example:chap"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


Tool = Callable[..., Result]


@pytest.fixture
def tool(run_cli: RunCli) -> Tool:
    def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
        return Result(*run_cli(*args, env=env))

    return run


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 64 * MiB)
        t.add_lun(1, 2, 128 * MiB)
        t.add_lun(1, 300, 8 * MiB, blocksize=4096)
        t.new_target(2, CHAP_IQN)
        t.add_lun(2, 1, 32 * MiB)
        t.add_account("inuser", "insecret12345")
        t.bind_account(2, "inuser")
        yield t


def test_iscsi_ls_lists_targets_and_luns_with_exact_sizes(tgt: Tgtd, tool: Tool) -> None:
    r = tool(
        "iscsi-ls",
        "-s",
        f"iscsi://{tgt.portal}",
        env={"LIBISCSI_CHAP_USERNAME": "inuser", "LIBISCSI_CHAP_PASSWORD": "insecret12345"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"Target:{IQN} Portal:{tgt.portal},1",
        "Lun:0    Type:STORAGE_ARRAY_CONTROLLER",
        "Lun:1    Type:DIRECT_ACCESS (Size:64M)",
        "Lun:2    Type:DIRECT_ACCESS (Size:128M)",
        "Lun:300  Type:DIRECT_ACCESS (Size:8M)",
        f"Target:{CHAP_IQN} Portal:{tgt.portal},1",
        "Lun:0    Type:STORAGE_ARRAY_CONTROLLER",
        "Lun:1    Type:DIRECT_ACCESS (Size:32M)",
    ]


def test_iscsi_ls_without_credentials_reports_chap_target_error(tgt: Tgtd, tool: Tool) -> None:
    r = tool(
        "iscsi-ls",
        "-s",
        tgt.portal,
        env={"LIBISCSI_CHAP_USERNAME": "", "LIBISCSI_CHAP_PASSWORD": ""},
    )
    assert r.returncode == 1
    assert "Lun:1    Type:DIRECT_ACCESS (Size:64M)" in r.stdout
    assert (
        f"error: portal {tgt.portal} target {CHAP_IQN}: login failed: authentication failed"
        in r.stderr
    )
    assert "Traceback" not in r.stderr


def test_iscsi_readcapacity_prints_exact_size(tgt: Tgtd, tool: Tool) -> None:
    r = tool("iscsi-readcapacity", f"iscsi://{tgt.portal}/{IQN}/1")
    assert r.returncode == 0, r.stderr
    assert "RETURNED LOGICAL BLOCK ADDRESS:131071" in r.stdout
    assert r.stdout.splitlines()[-1] == "Total size:67108864"
    r = tool("iscsi-readcapacity", "-s", f"iscsi://{tgt.portal}/{IQN}/300")
    assert r.stdout.strip() == str(8 * MiB)


def test_iscsi_inq_standard_and_vpd(tgt: Tgtd, tool: Tool) -> None:
    r = tool("iscsi-inq", f"iscsi://{tgt.portal}/{IQN}/1")
    assert r.returncode == 0, r.stderr
    assert "Peripheral Device Type:DIRECT_ACCESS" in r.stdout
    assert "Vendor:IET" in r.stdout and "Product:VIRTUAL-DISK" in r.stdout
    r = tool("iscsi-inq", "-e", "1", "-c", "0x80", f"iscsi://{tgt.portal}/{IQN}/1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Unit Serial Number:[")
    r = tool("iscsi-inq", "-e", "1", "-c", "0", f"iscsi://{tgt.portal}/{IQN}/1")
    assert "Page:0x83 DEVICE_IDENTIFICATION" in r.stdout


def test_wrong_password_in_url_is_never_echoed(tgt: Tgtd, tool: Tool) -> None:
    r = tool("iscsi-inq", f"iscsi://inuser%wrongSecret987@{tgt.portal}/{CHAP_IQN}/1")
    assert r.returncode == 1
    assert "authentication failed" in r.stderr
    assert "wrongSecret987" not in r.stderr + r.stdout


def test_iser_and_bad_urls_are_one_line_errors(tool: Tool) -> None:
    for url, msg in [
        ("iser://127.0.0.1/iqn.2026-11.example:t/1", "iSER (RDMA) transport is not supported"),
        ("iscsi://u%pw123@127.0.0.1/iqn.x/abc", "LUN 'abc' is not a number"),
        ("iscsi://127.0.0.1:70000/iqn.x/1", "invalid port"),
        ("iscsi://127.0.0.1/iqn.x", "missing LUN"),
    ]:
        r = tool("iscsi-inq", url)
        assert r.returncode == 1
        assert r.stderr.startswith("error: ") and msg in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert "pw123" not in r.stderr


@pytest.mark.parametrize("cmd", [["iscsi-ls", "-s"], ["iscsi-inq"], ["iscsi-readcapacity"]])
def test_silent_listener_gives_error_within_timeout(cmd: list[str], tool: Tool) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    url = f"iscsi://127.0.0.1:{port}" + ("" if cmd[0] == "iscsi-ls" else f"/{IQN}/1")
    start = time.monotonic()
    r = tool(*cmd, url, "--timeout", "1.5")
    elapsed = time.monotonic() - start
    stop.set()
    srv.close()
    assert r.returncode == 1
    assert f"error: portal 127.0.0.1:{port}" in r.stderr and "within 1.5 s" in r.stderr
    assert elapsed < 1.5 + slack(4.5)


@pytest.mark.parametrize(
    "args",
    [
        ["iscsi-inq"],
        ["iscsi-inq", "-e", "1", "-c", "0x80"],
        ["iscsi-inq", "-e", "1", "-c", "0"],
        ["iscsi-readcapacity"],
        ["iscsi-readcapacity", "-s"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_lun_that_does_not_exist_is_one_error_line(
    tgt: Tgtd, tool: Tool, args: list[str]
) -> None:
    """tgt answers INQUIRY (and VPD pages) for a missing LUN with peripheral qualifier 3;
    that is no logical unit, not data to print (libiscsi's tools fail too, exit 10)."""
    r = tool(*args, f"iscsi://{tgt.portal}/{IQN}/7")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (
        f"error: portal {tgt.portal} target {IQN}: no logical unit at LUN 7 "
        "(INQUIRY peripheral qualifier 3)\n"
    )
    # The controller LUN 0 and a disk still answer.
    ok = tool(*args, f"iscsi://{tgt.portal}/{IQN}/{0 if args[0] == 'iscsi-inq' else 1}")
    assert ok.returncode == 0 and ok.stdout, ok.stderr
