"""No CHAP secret ever leaks: every CLI command with a mutual-CHAP pool, grepped.

A real tgtd target requires CHAP (``chapuser``) and authenticates itself back (``outuser``,
mutual CHAP). With two distinctive secrets we run every pool, volume, secret and discovery
command, the libiscsi-style tools with the password in the URL and in the LIBISCSI_CHAP_*
environment, a wrong secret (authentication error) and malformed/unreachable URLs holding
the password, all at the most verbose level the CLI has. The CLI has no -v/--debug flag and
no logging at all, so "most verbose" means Python's dev mode, asyncio debug mode and every
warning enabled (``PYTHONDEVMODE=1 PYTHONASYNCIODEBUG=1 PYTHONWARNINGS=always``). Then:

* stdout and stderr of every command: zero hits (raw, base64, hex);
* every file under the state directory except the secret value files (which must be 0600
  in 0700 directories): zero hits; every file the test wrote except the value file it fed
  to ``secret-set-value --file``: zero hits;
* the CLI starts no child process and its command line never holds a secret that came from
  stdin, a file or the environment (checked in /proc while commands are blocked on a FIFO
  or on stdin);
* malformed-URL errors show the password as ``***``.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.harness.faketarget import decode_keys, recv_pdu
from tests.harness.tgtd import MiB, Tgtd

SECRET = "S3cr3t-Zebra-4711"
OUT_SECRET = "0utb0und-Quokka-9182"
WRONG = "Wr0ng-Walrus-0042"
IQN = "iqn.2026-11.example:leaky"
INITIATOR = "iqn.2026-11.example:initiator1"
VERBOSE = {"PYTHONDEVMODE": "1", "PYTHONASYNCIODEBUG": "1", "PYTHONWARNINGS": "always"}


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode(), raw.hex().upper().encode()]


NEEDLES = [f for s in (SECRET, OUT_SECRET, WRONG) for f in _forms(s)]


def _hits(data: bytes) -> list[bytes]:
    return [n for n in NEEDLES if n in data]


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 4 * MiB)
        t.add_lun(1, 2, 1 * MiB)
        t.add_account("chapuser", SECRET)
        t.bind_account(1, "chapuser")
        t.add_account("outuser", OUT_SECRET)
        t.bind_account(1, "outuser", outgoing=True)
        yield t


class Cli:
    """Runs the CLI verbosely, keeps every output, checks the process on the way."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.outputs: list[tuple[list[str], bytes]] = []
        self.env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state), PYTHONPATH=str(ROOT))
        self.env.update(VERBOSE)
        for k in [k for k in self.env if k.startswith("LIBISCSI_")]:
            del self.env[k]

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "poolbackend", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self.env, **(env or {})},
        )

    def __call__(
        self,
        *args: str,
        ok: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
        argv_secret_free: bool = True,
    ) -> str:
        proc = self.popen(*args, env=env)
        if argv_secret_free:  # best effort: a quick command may be gone already
            check_process(proc.pid, environ_clean=env is None)
        out, err = proc.communicate(input.encode() if input is not None else b"", timeout=120)
        self.outputs.append((list(args), out + err))
        text = (out + err).decode(errors="replace")
        assert "Traceback" not in text, text
        if ok:
            assert proc.returncode == 0, f"{args}: {text}"
        else:
            assert proc.returncode == 1, f"{args} unexpectedly gave {proc.returncode}: {text}"
            lines = err.decode().strip().splitlines()
            assert [ln for ln in lines if ln.startswith("error: ")], text
        return text


def check_process(pid: int, *, required: bool = False, environ_clean: bool = True) -> bool:
    """The CLI process: no secret in its command line or environment, no children.

    Returns whether it could look. ``required``: the caller knows the process is alive
    (blocked mid-operation), so not being able to look fails the test instead of passing.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        children = b"".join(
            Path(f"/proc/{pid}/task/{tid}/children").read_bytes()
            for tid in os.listdir(f"/proc/{pid}/task")
        )
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        assert not required, f"process {pid} was gone before its /proc entry could be read"
        return False
    if state == "Z":  # exited, not yet reaped: cmdline is empty, nothing was checked
        assert not required, f"process {pid} had exited before it could be checked"
        return False
    if not cmdline:  # between fork and exec, or exiting
        assert not required, f"process {pid}: empty command line, nothing to check"
        return False
    assert not _hits(cmdline), cmdline
    if environ_clean:  # unless the caller put secrets there (LIBISCSI_CHAP_*)
        assert not _hits(environ), f"process {pid} has a secret in its environment"
    assert children.strip() == b"", f"the CLI started child processes: {children!r}"
    return True


def _wait_blocked(pid: int) -> None:
    """Until the process sits in read(0, ...): blocked on stdin (bounded)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        syscall = Path(f"/proc/{pid}/syscall").read_text().split()
        if syscall[:2] == ["0", "0x0"]:  # x86-64 read() on fd 0
            return
        time.sleep(0.05)
    pytest.fail(f"process {pid} never blocked reading stdin")


class StallingTarget:
    """Accepts one connection, reads the first Login Request and then answers nothing until
    :meth:`release`: the CLI is held mid-login (with its CHAP secrets loaded) for as long as
    the test needs to read /proc."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.login = threading.Event()
        self.released = threading.Event()
        self.keys: dict[str, str] = {}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(60)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(60)
            self.keys = decode_keys(recv_pdu(conn).data)
            self.login.set()
            self.released.wait(60)

    def release(self) -> None:
        self.released.set()
        self.thread.join(10)
        self.listener.close()


def _xml(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


@pytest.mark.timeout(240)
def test_no_secret_anywhere(tgt: Tgtd, tmp_path: Path, state_dir: Path) -> None:
    cli = Cli(state_dir)
    files = tmp_path / "files"
    files.mkdir()
    portal = f"127.0.0.1:{tgt.port}"

    # -- secrets: the initiator's by stdin (process checked while it waits), the target's by
    # -- a --plain file
    for usage in ("leak-in", "leak-out"):
        cli("secret-define", _xml(files, f"{usage}.xml",
            "<secret ephemeral='no' private='yes'><usage type='iscsi'>"
            f"<target>{usage}</target></usage></secret>"))  # fmt: skip
    waiting = cli.popen("secret-set-value", "leak-in")
    _wait_blocked(waiting.pid)  # reading stdin now
    check_process(waiting.pid, required=True)
    out, err = waiting.communicate(SECRET.encode(), timeout=60)
    assert waiting.returncode == 0, err
    cli.outputs.append((["secret-set-value", "leak-in"], out + err))
    value_file = tmp_path / "out-secret.txt"  # the one test file allowed to hold a secret
    value_file.write_text(OUT_SECRET)
    cli("secret-set-value", "leak-out", "--file", str(value_file), "--plain")
    cli("secret-list")
    cli("secret-dumpxml", "leak-in")
    cli("secret-dumpxml", "leak-out")

    # -- the pool with mutual CHAP, every command
    pool = _xml(files, "pool.xml",
        "<pool type='iscsi-direct' xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>"
        f"<name>leaky</name><source><host name='127.0.0.1' port='{tgt.port}'/>"
        f"<device path='{IQN}'/><initiator><iqn name='{INITIATOR}'/></initiator>"
        "<auth type='chap' username='chapuser'><secret usage='leak-in'/></auth></source>"
        "<pb:iscsi><pb:target-auth username='outuser'><pb:secret usage='leak-out'/>"
        "</pb:target-auth></pb:iscsi></pool>")  # fmt: skip
    cli("pool-define", pool)
    cli("pool-start", "leaky")
    cli("pool-refresh", "leaky")
    cli("pool-info", "leaky")
    cli("pool-list", "--all", "--details")
    cli("pool-dumpxml", "leaky")
    cli("pool-dumpxml", "--inactive", "leaky")
    cli("vol-list", "--details", "leaky")
    cli("vol-info", "--scsi", "--pool", "leaky", "unit:0:0:1")
    cli("vol-dumpxml", "--pool", "leaky", "unit:0:0:1")
    down = files / "down.bin"
    cli("vol-download", "--pool", "leaky", "unit:0:0:1", str(down))
    cli("vol-upload", "--pool", "leaky", "unit:0:0:2", str(down), "--length", str(1 * MiB))
    cli("vol-wipe", "--pool", "leaky", "unit:0:0:2")
    cli("find-storage-pool-sources-as", "iscsi-direct", "127.0.0.1", str(tgt.port),
        "--initiator", INITIATOR)  # fmt: skip

    # -- a long-running command: no children, no secret in argv while it runs
    fifo = tmp_path / "slow.fifo"
    os.mkfifo(fifo)
    slow = cli.popen("vol-download", "--pool", "leaky", "unit:0:0:1", str(fifo))
    with open(fifo, "rb") as drain:
        drain.read(4096)  # it is logged in and transferring now
        check_process(slow.pid, required=True)
        rest = drain.read()
    out, err = slow.communicate(timeout=60)
    assert slow.returncode == 0 and len(rest) + 4096 == 4 * MiB, err
    cli.outputs.append((["vol-download (fifo)"], out + err))

    # -- the tools: password in the URL (argv holds it by the user's choice) ...
    url = (f"iscsi://chapuser%{SECRET}@{portal}/{IQN}/1"
           f"?target_user=outuser&target_password={OUT_SECRET}")  # fmt: skip
    base = f"iscsi://chapuser%{SECRET}@{portal}?target_user=outuser&target_password={OUT_SECRET}"
    cli("iscsi-ls", "-s", base, argv_secret_free=False)
    cli("iscsi-ls", "-s", "-U", base, argv_secret_free=False)
    cli("iscsi-inq", url, argv_secret_free=False)
    cli("iscsi-inq", "-e", "1", "-c", "0x83", url, argv_secret_free=False)
    cli("iscsi-readcapacity", url, argv_secret_free=False)
    # ... and in the environment (argv must stay clean)
    env = {
        "LIBISCSI_CHAP_USERNAME": "chapuser",
        "LIBISCSI_CHAP_PASSWORD": SECRET,
        "LIBISCSI_CHAP_TARGET_USERNAME": "outuser",
        "LIBISCSI_CHAP_TARGET_PASSWORD": OUT_SECRET,
    }
    cli("iscsi-ls", "-s", f"iscsi://{portal}", env=env)
    cli("iscsi-inq", f"iscsi://{portal}/{IQN}/1", env=env)
    cli("iscsi-readcapacity", "-s", f"iscsi://{portal}/{IQN}/1", env=env)

    # -- wrong secrets: authentication errors that name neither secret
    err = cli("iscsi-readcapacity", f"iscsi://chapuser%{WRONG}@{portal}/{IQN}/1", ok=False,
              argv_secret_free=False)  # fmt: skip
    assert "authentication failed" in err
    err = cli("iscsi-inq", f"iscsi://{portal}/{IQN}/1", ok=False,
              env={**env, "LIBISCSI_CHAP_PASSWORD": WRONG})  # fmt: skip
    assert "authentication failed" in err
    cli("pool-destroy", "leaky")
    cli("secret-set-value", "leak-in", input=WRONG)
    err = cli("pool-start", "leaky", ok=False)
    assert "authentication failed" in err
    cli("secret-set-value", "leak-in", input=SECRET)
    cli("secret-set-value", "leak-out", input=WRONG)
    err = cli("pool-start", "leaky", ok=False)
    assert "mutual CHAP failed" in err
    cli("secret-set-value", "leak-out", "--file", str(value_file), "--plain")

    # -- malformed / unreachable URLs holding the password: redacted
    bad_urls = [
        f"iscsi://chapuser%{SECRET}@{portal}/{IQN}/notalun",
        f"iscsi://chapuser:{SECRET}@{portal}/{IQN}/1/extra",
        f"iscsi://chapuser%{SECRET}@{portal}/{IQN}/1?header_digest=bogus",
        f"iscsi://chapuser%{SECRET}@{portal}/{IQN}/1?target_user=outuser"
        f"&target_password={OUT_SECRET}&data_digest=bogus",
        f"iscsi://chapuser%{SECRET}@{portal}/{IQN}/1?target_user=outuser"
        f"&target%5Fpassword={OUT_SECRET}&frobnicate=1",
        f"iscsi://chapuser%pre@{SECRET}@{portal}/{IQN}/1/x",  # '@' inside the password
        f"iscsi2://chapuser%{SECRET}@{portal}/{IQN}/1",
    ]
    for bad in bad_urls:
        err = cli("iscsi-inq", bad, ok=False, argv_secret_free=False)
        assert "invalid iSCSI URL" in err and "***" in err, err
    refused = cli("iscsi-inq", f"iscsi://chapuser%{SECRET}@127.0.0.1:1/{IQN}/1", ok=False,
                  argv_secret_free=False)  # fmt: skip
    assert "127.0.0.1:1" in refused

    # -- tear down
    cli("pool-start", "leaky")
    cli("pool-destroy", "leaky")
    cli("pool-undefine", "leaky")

    # ---- the searches
    for args, output in cli.outputs:
        assert not _hits(output), f"{args} printed a secret: {output.decode(errors='replace')}"
    value_files = []
    for path in sorted(state_dir.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            if path.name == "secrets":
                assert mode == 0o700, f"{path} is {oct(mode)}"
            continue
        if path.suffix == ".base64":
            assert mode == 0o600 and path.parent.name == "secrets", f"{path} is {oct(mode)}"
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            value_files.append(path)
            continue
        assert not _hits(path.read_bytes()), f"{path} holds a secret"
    assert len(value_files) == 2
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path != value_file and state_dir not in path.parents:
            assert not _hits(path.read_bytes()), f"{path} holds a secret"


@pytest.mark.timeout(120)
def test_no_secret_in_the_process_mid_login(tmp_path: Path, state_dir: Path) -> None:
    """Held mid-login by a target that stalls until /proc has been read: a pool whose
    secrets come from the store and a tool whose secrets come from LIBISCSI_CHAP_*; neither
    secret is in the command line, nor (for the store) in the environment, and no child
    process runs. Not being able to look fails the test."""
    cli = Cli(state_dir)
    for usage, value in (("mid-in", SECRET), ("mid-out", OUT_SECRET)):
        cli("secret-define", _xml(tmp_path, f"{usage}.xml",
            "<secret ephemeral='no' private='yes'><usage type='iscsi'>"
            f"<target>{usage}</target></usage></secret>"))  # fmt: skip
        cli("secret-set-value", usage, input=value)
    runs: list[tuple[list[str], dict[str, str]]] = []
    stall = StallingTarget()
    pool = _xml(tmp_path, "mid.xml",
        "<pool type='iscsi-direct' xmlns:pb='https://poolbackend.dev/xmlns/pool/1'>"
        f"<name>mid</name><source><host name='127.0.0.1' port='{stall.port}'/>"
        f"<device path='{IQN}'/><initiator><iqn name='{INITIATOR}'/></initiator>"
        "<auth type='chap' username='chapuser'><secret usage='mid-in'/></auth></source>"
        "<pb:iscsi><pb:target-auth username='outuser'><pb:secret usage='mid-out'/>"
        "</pb:target-auth><pb:timeout seconds='60'/></pb:iscsi></pool>")  # fmt: skip
    stall.release()
    cli("pool-define", pool)
    env = {"LIBISCSI_CHAP_USERNAME": "chapuser", "LIBISCSI_CHAP_PASSWORD": SECRET,
           "LIBISCSI_CHAP_TARGET_USERNAME": "outuser",
           "LIBISCSI_CHAP_TARGET_PASSWORD": OUT_SECRET}  # fmt: skip
    runs = [(["pool-start", "mid"], {}), (["iscsi-inq", "--timeout", "60", "URL"], env)]
    for args, extra in runs:
        stall = StallingTarget()
        if args[0] == "pool-start":
            text = Path(pool).read_text()
            Path(pool).write_text(re.sub(r"port='\d+'", f"port='{stall.port}'", text))
            cli("pool-undefine", "mid")
            cli("pool-define", pool)
        args = [a.replace("URL", f"iscsi://127.0.0.1:{stall.port}/{IQN}/1") for a in args]
        proc = cli.popen(*args, env=extra)
        try:
            assert stall.login.wait(60), "the CLI never sent its Login Request"
            assert stall.keys.get("AuthMethod", "").startswith("CHAP"), stall.keys
            # with LIBISCSI_CHAP_* the user put them in the environment; argv stays clean
            assert check_process(proc.pid, required=True, environ_clean=not extra)
        finally:
            stall.release()
            out, err = proc.communicate(timeout=90)
        assert proc.returncode == 1 and not _hits(out + err), (out + err).decode()


def test_url_passwords_are_masked_in_parse_errors() -> None:
    """Library level: every way of writing a password is masked in the error text."""
    from poolbackend.iscsi.errors import InvalidURL
    from poolbackend.iscsi.url import parse_url

    cases = [
        f"iscsi://u%{SECRET}@h/iqn.x/1/2",
        f"iscsi://u:{SECRET}@h/iqn.x/zz",
        f"iscsi://u%a@{SECRET}@h/iqn.x/1/2",
        f"iscsi://u%a/{SECRET}@h/iqn.x/1/2",
        f"iscsi://u%p@h/iqn.x/1?target_user=t&target_password={SECRET}&auth=nope",
        f"iscsi://u%p@h/iqn.x/1?target_user=t&target%5Fpassword={SECRET}&auth=nope",
        f"iscsi://u%p@h/iqn.x/1?target_user=t&target_password={SECRET}&target_password=x",
        f"iSCSI2://u%{SECRET}@h/iqn.x/1",
        f"u%{SECRET}@h:99999/iqn.x/1",
    ]
    for url in cases:
        with pytest.raises(InvalidURL) as info:
            parse_url(url, env={})
        text = str(info.value)
        assert not re.search("Zebra|4711", text), text
        assert "***" in text, text
