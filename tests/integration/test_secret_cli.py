"""Secret commands the README promises: the value from a prompt (a real pty), never from the
command line (refused without repeating it), and secret-undefine deleting the definition
and the value file."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poolbackend.pool.secrets import SecretStore
from tests.conftest import ROOT, RunCli

VALUE = "argv-secret-4711"
SECRET_XML = (
    "<secret ephemeral='no' private='no'><usage type='iscsi'><target>t1</target></usage></secret>"
)
REFUSED = (
    "error: a secret value is never taken from the command line (visible to every user in "
    "the process list); use --file, standard input or the prompt\n"
)


def _define(run_cli: RunCli, tmp_path: Path) -> str:
    (tmp_path / "s.xml").write_text(SECRET_XML)
    rc, out, err = run_cli("secret-define", str(tmp_path / "s.xml"))
    assert rc == 0, err
    m = re.fullmatch(r"Secret ([0-9a-f-]{36}) created\n\n", out)
    assert m, out
    return m.group(1)


def _files(state: Path) -> dict[str, bytes]:
    return {str(p.relative_to(state)): p.read_bytes() for p in state.rglob("*") if p.is_file()}


def _store(state: Path) -> SecretStore:
    assert os.environ["POOLBACKEND_STATE_DIR"] == str(state)
    return SecretStore.default()


@pytest.mark.parametrize(
    "argv",
    [
        ["t1", VALUE],
        [VALUE, "t1"],
        ["t1", "--base64", VALUE],
        ["--value", VALUE, "t1"],
        ["--value=" + VALUE, "t1"],
        ["t1", "--file", "/dev/null", VALUE],
    ],
)
def test_value_on_the_command_line_is_refused_and_not_repeated(
    argv: list[str], run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    _define(run_cli, tmp_path)
    before = _files(state_dir)
    rc, out, err = run_cli("secret-set-value", *argv, input="stdin-value-1\n")
    assert (rc, out, err) == (1, "", REFUSED)
    assert _files(state_dir) == before  # nothing stored, not even the stdin value


def test_value_from_a_prompt_on_a_terminal(
    run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    """stdin a terminal: getpass prompts (without echo) and the typed value is stored."""
    _define(run_cli, tmp_path)
    env = dict(os.environ, POOLBACKEND_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT))
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on the pty
        os.execve(sys.executable, [sys.executable, "-m", "poolbackend", "secret-set-value",
                                   "t1"], env)  # fmt: skip
    seen = b""
    deadline = time.monotonic() + 60

    def read_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            assert time.monotonic() < deadline, f"no {marker!r} from the CLI: {seen!r}"
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:  # the child closed the pty
                    chunk = b""
                if not chunk:
                    break
                seen += chunk

    read_until(b"Enter new value for secret:")
    os.write(fd, b"typed-secret-99\n")
    read_until(b"Secret value set")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"typed-secret-99" not in seen  # not echoed
    assert _store(state_dir).get_value("t1").reveal() == b"typed-secret-99"


def test_stdin_not_a_terminal_is_read_without_a_prompt(
    run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    _define(run_cli, tmp_path)
    assert run_cli("secret-set-value", "t1", input="piped-secret-7\n") == (
        0,
        "Secret value set\n\n",
        "",
    )
    assert _store(state_dir).get_value("t1").reveal() == b"piped-secret-7"


def test_secret_undefine_removes_definition_and_value(
    run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    uuid = _define(run_cli, tmp_path)
    assert run_cli("secret-set-value", "t1", input="undefine-me-123\n")[0] == 0
    assert any(b"undefine-me-123" in v or b"dW5kZWZpbmUtbWUtMTIz" in v
               for v in _files(state_dir).values())  # fmt: skip
    assert run_cli("secret-undefine", uuid) == (0, f"Secret {uuid} deleted\n\n", "")
    assert not any(uuid in name for name in _files(state_dir))
    assert not any(b"undefine-me-123" in v or b"dW5kZWZpbmUtbWUtMTIz" in v
                   for v in _files(state_dir).values())  # fmt: skip
    rc, out, _ = run_cli("secret-list")
    assert rc == 0 and uuid not in out and "t1" not in out
    rc, out, err = run_cli("secret-undefine", "t1")
    assert (rc, out) == (1, "")
    assert err == "error: Secret not found: no secret with matching usage 't1'\n"
    # by usage too
    uuid2 = _define(run_cli, tmp_path)
    assert run_cli("secret-undefine", "t1") == (0, f"Secret {uuid2} deleted\n\n", "")


def test_secret_list_after_define(run_cli: RunCli, tmp_path: Path) -> None:
    uuid = _define(run_cli, tmp_path)
    rc, out, _ = run_cli("secret-list")
    assert rc == 0 and re.search(rf"^ {uuid} +iscsi t1 *$", out, re.M), out


def test_cli_runs_in_a_subprocess() -> None:
    """Sanity for the pty test: the module runs as a program."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "poolbackend", "--version"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0
