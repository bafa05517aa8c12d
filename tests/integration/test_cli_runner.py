"""The suite's CLI runner: a fork of the pre-imported zygote behaves as ``python -m poolbackend``.

``run_cli`` forks its commands from :mod:`tests.harness.clizygote` to save the interpreter's
start-up; every CLI test relies on that being indistinguishable from a fresh interpreter.
These compare the two on what tests read: exit status, stdout, stderr, stdin, environment,
working directory, state written — and check the runner's own guarantees (a hung command is
killed at its timeout; an import-time variable gets a fresh interpreter).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import RunCli, cli_env, run_cli_fresh
from tests.harness.clizygote import Zygote
from tests.harness.faketarget import FakeTarget
from tests.harness.libvirtd import iscsi_direct_pool_xml
from tests.harness.load import slack


def _pool_xml(name: str) -> str:
    return iscsi_direct_pool_xml(
        name,
        host="127.0.0.1",
        port=1,
        target="iqn.2026-11.example:target1",
        initiator="iqn.2026-11.example:initiator1",
    )


def _fresh(args: list[str], state: Path, input: str | None = None) -> tuple[int, str, str]:
    return run_cli_fresh(args, cli_env(state), input, 60)


CASES = [
    ["--version"],
    ["pool-list", "--all"],
    ["pool-list", "--bogus"],  # argparse: usage on stderr, exit 2
    ["vol-list"],  # the CLI's own one-line error
    ["pool-info", "no-such-pool"],
    ["secret-list"],
]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_same_result_as_a_fresh_interpreter(
    args: list[str], run_cli: RunCli, state_dir: Path, tmp_path: Path
) -> None:
    fresh_state = tmp_path / "fresh-state"
    fresh_state.mkdir()
    assert run_cli(*args) == _fresh(args, fresh_state)


def test_stdin_cwd_and_state_as_a_fresh_interpreter(
    run_cli: RunCli, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Input reaches the command's stdin, a relative path resolves in the test's directory,
    and the state written is the same."""
    monkeypatch.chdir(tmp_path)
    Path("p1.xml").write_text(_pool_xml("p1"))
    fresh_state = tmp_path / "fresh-state"
    fresh_state.mkdir()
    for args, input in (
        (["pool-define", "p1.xml"], None),
        (["pool-define", "/dev/stdin"], _pool_xml("p2")),
        (["pool-autostart", "p2"], None),
        (["pool-list", "--all", "--details"], None),
    ):
        assert run_cli(*args, input=input) == _fresh(args, fresh_state, input)
    assert sorted(p.name for p in state_dir.rglob("*") if p.is_file()) == sorted(
        p.name for p in fresh_state.rglob("*") if p.is_file()
    )


def test_environment_reaches_the_command(run_cli: RunCli, tmp_path: Path) -> None:
    """A variable given to one command changes that command only (here: the state dir)."""
    other = tmp_path / "other-state"
    other.mkdir()
    (tmp_path / "p.xml").write_text(_pool_xml("elsewhere"))
    rc, _, err = run_cli(
        "pool-define", str(tmp_path / "p.xml"), env={"POOLBACKEND_STATE_DIR": str(other)}
    )
    assert rc == 0, err
    moved = {"POOLBACKEND_STATE_DIR": str(other)}
    assert "elsewhere" in run_cli("pool-list", "--all", env=moved)[1]
    assert "elsewhere" not in run_cli("pool-list", "--all")[1]


def test_a_hung_command_is_killed_at_its_timeout(run_cli: RunCli) -> None:
    """A command waiting on a silent target (with a longer --timeout of its own) is killed
    when the runner's timeout passes, and the test fails saying so."""
    with FakeTarget("silent") as fake:
        url = f"iscsi://{fake.portal}/iqn.2026-11.example:target1/1"
        t0 = time.monotonic()
        with pytest.raises(pytest.fail.Exception, match="did not finish within 2s"):
            run_cli("iscsi-inq", "--timeout", "60", url, timeout=2)
        assert time.monotonic() - t0 < 2 + slack(28)


def test_import_time_variables_get_a_fresh_interpreter(
    cli_zygote: Zygote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POOLBACKEND_CRC32C is read when iscsi/digest.py is imported: a fork of the zygote
    would keep the zygote's choice, so a different value runs a fresh interpreter."""
    monkeypatch.delenv("POOLBACKEND_TEST_CLI", raising=False)  # the zygote's own rule
    cli_zygote.run(["--version"], env=dict(os.environ), input=None, timeout=60)  # started
    env = cli_zygote.env
    assert not cli_zygote.needs_fresh_interpreter(env)
    assert cli_zygote.needs_fresh_interpreter(dict(env, POOLBACKEND_CRC32C="crcmod"))
    assert cli_zygote.needs_fresh_interpreter(dict(env, PYTHONHASHSEED="7"))
