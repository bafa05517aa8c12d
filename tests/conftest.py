"""Shared fixtures: private tgtd, the basic target, a state dir, the CLI runner.

Fixtures
--------
``tgtd``            function scope: a fresh private :class:`~tests.harness.tgtd.Tgtd`
                    on 127.0.0.1 (no targets).
``tgtd_ipv6``       function scope: the same on ``[::1]``.
``tgt_basic``       module scope: :class:`BasicTarget` -- target 1
                    ``iqn.2026-11.example:target1`` with LUN1 64 MiB, LUN2 128 MiB,
                    LUN3 8 MiB (4096-byte blocks), ACL ALL. Do not modify it.
``libvirtd``        function scope: a private session-mode libvirtd
                    (:class:`~tests.harness.libvirtd.Libvirtd`).
``vmhost``          module scope: a private session-mode libvirtd + virtlogd that runs
                    QEMU (TCG) domains (:class:`~tests.harness.vmhost.VmHost`); the
                    tests of a module share it, so give domains and secrets unique names
                    or remove them.
``state_dir``       a temp dir exported as ``POOLBACKEND_STATE_DIR`` (monkeypatch).
``run_cli``         ``run_cli(*args, input=None, env=None, timeout=60)`` ->
                    ``(returncode, stdout, stderr)`` of ``python -m poolbackend``.

Missing system tools (tgtd, libvirtd, virsh) make the tests that need them
FAIL with an explanation -- they are never skipped silently. Every test phase
(setup, call, teardown) has a wall-clock limit (``POOLBACKEND_TEST_TIMEOUT``,
default 300 s; per test ``@pytest.mark.timeout(seconds)``), so a hung peer
cannot stall CI.
"""

from __future__ import annotations

import locale
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, settings

from tests.harness import HarnessError, find_tool
from tests.harness.clizygote import Zygote
from tests.harness.faketarget import FakeTarget
from tests.harness.libvirtd import Libvirtd
from tests.harness.tgtd import MiB, Tgtd
from tests.harness.vmhost import VmHost, qemu_iscsi_driver

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_TEST_TIMEOUT = float(os.environ.get("POOLBACKEND_TEST_TIMEOUT", "300"))

BASIC_IQN = "iqn.2026-11.example:target1"


# ------------------------------------------------------------------ config

# Property tests are deterministic by default: the same examples on every run (derandomize,
# no example database carried between runs), no per-example time limit and no "too slow"
# health check (both depend on the machine's load, not on the code). Each test's own
# @settings (max_examples, ...) still applies on top. HYPOTHESIS_PROFILE=explore draws new
# random examples for a run meant to look for bugs (a finding then goes into a fixed case).
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")
    config.addinivalue_line(
        "markers",
        "timeout(seconds): wall-clock limit for this test "
        "(default $POOLBACKEND_TEST_TIMEOUT or 300 s)",
    )


class TestTimeout(Exception):
    """Raised inside a test that ran past its wall-clock limit."""

    __test__ = False


def _limit_for(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return DEFAULT_TEST_TIMEOUT


@contextmanager
def _alarm(item: pytest.Item, phase: str) -> Iterator[None]:
    limit = _limit_for(item)
    usable = (
        limit > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise TestTimeout(f"{item.nodeid}: {phase} exceeded the {limit:.0f}s wall-clock limit")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Wall-clock limit per phase (setup, call, teardown) via SIGALRM."""
    with _alarm(item, "setup"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _alarm(item, "call"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    with _alarm(item, "teardown"):
        yield


def fake_target_errors(since: dict[int, int]) -> list[str]:
    """Exceptions fake targets recorded after the error counts in ``since`` (by id)."""
    found = []
    for target in list(FakeTarget.instances):
        for exc in target.errors[since.get(id(target), 0) :]:
            found.append(f"{target!r}: {type(exc).__name__}: {exc}")
    return found


def fake_target_error_counts() -> dict[int, int]:
    return {id(t): len(t.errors) for t in FakeTarget.instances}


@pytest.fixture(autouse=True)
def _no_fake_target_errors() -> Iterator[None]:
    """Fail every test during which a FakeTarget's handler crashed (FakeTarget.errors)."""
    since = fake_target_error_counts()
    yield
    found = fake_target_errors(since)
    if found:
        pytest.fail("fake target handler crashed:\n" + "\n".join(found), pytrace=False)


def _need(tool: str, package: str) -> None:
    if find_tool(tool) is None:
        pytest.fail(
            f"{tool!r} is not installed (Debian package {package!r}). "
            "Integration tests need it: run `bash scripts/install-deps.sh` as root "
            "(scripts/test.sh and .ci/run do this).",
            pytrace=False,
        )


# ------------------------------------------------------------------- tgtd


@pytest.fixture
def tgtd() -> Iterator[Tgtd]:
    """A fresh private tgtd on 127.0.0.1 with no targets."""
    _need("tgtd", "tgt")
    _need("tgtadm", "tgt")
    with Tgtd.start() as t:
        yield t


@pytest.fixture
def tgtd_ipv6() -> Iterator[Tgtd]:
    """A fresh private tgtd on [::1] with no targets."""
    _need("tgtd", "tgt")
    try:
        t = Tgtd.start(host="::1")
    except (HarnessError, OSError) as exc:
        pytest.fail(f"cannot start tgtd on [::1] (is IPv6 loopback available?): {exc}")
    with t:
        yield t


@dataclass
class BasicTarget:
    """The module-scoped standard target (see ``tgt_basic``)."""

    tgtd: Tgtd
    tid: int = 1
    iqn: str = BASIC_IQN
    #: LUN -> (size in bytes, block size)
    luns: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def portal(self) -> str:
        return self.tgtd.portal

    @property
    def host(self) -> str:
        return self.tgtd.host

    @property
    def port(self) -> int:
        return self.tgtd.port

    def url(self, lun: int) -> str:
        """libiscsi URL of *lun*."""
        return self.tgtd.url(self.tid, lun)


@pytest.fixture(scope="module")
def tgt_basic() -> Iterator[BasicTarget]:
    """target1 with LUN1 64 MiB, LUN2 128 MiB, LUN3 8 MiB/4096-byte blocks, ACL ALL."""
    _need("tgtd", "tgt")
    _need("tgtadm", "tgt")
    with Tgtd.start() as t:
        basic = BasicTarget(t)
        t.new_target(basic.tid, basic.iqn)
        for lun, size, bs in ((1, 64 * MiB, 512), (2, 128 * MiB, 512), (3, 8 * MiB, 4096)):
            t.add_lun(basic.tid, lun, size, blocksize=bs)
            basic.luns[lun] = (size, bs)
        yield basic


# --------------------------------------------------------------- libvirtd


@pytest.fixture
def libvirtd() -> Iterator[Libvirtd]:
    """A private session-mode libvirtd (own config/state/socket in a temp dir)."""
    _need("libvirtd", "libvirt-daemon")
    _need("virsh", "libvirt-clients")
    with Libvirtd.start() as lv:
        yield lv


@pytest.fixture(scope="module")
def vmhost() -> Iterator[VmHost]:
    """A private libvirtd + virtlogd that runs QEMU (TCG) domains, shared by a module."""
    _need("libvirtd", "libvirt-daemon")
    _need("virtlogd", "libvirt-daemon")
    _need("virsh", "libvirt-clients")
    _need("qemu-system-x86_64", "qemu-system-x86")
    if qemu_iscsi_driver() is None:
        pytest.fail(
            "QEMU's iSCSI block driver (block-iscsi.so) is not installed (Debian package "
            "'qemu-block-extra'); run `bash scripts/install-deps.sh` as root.",
            pytrace=False,
        )
    with VmHost.start() as vm:
        yield vm


# ------------------------------------------------------------ CLI + state


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty state directory, exported as ``POOLBACKEND_STATE_DIR``."""
    d = tmp_path / "state"
    d.mkdir()
    monkeypatch.setenv("POOLBACKEND_STATE_DIR", str(d))
    return d


CliResult = tuple[int, str, str]
RunCli = Callable[..., CliResult]


@pytest.fixture(scope="session")
def cli_zygote() -> Iterator[Zygote]:
    """The pre-imported CLI process ``run_cli`` forks its commands from (one per session)."""
    zygote = Zygote()
    yield zygote
    zygote.stop()


def _decode(data: bytes) -> str:
    """As ``subprocess.run(text=True)`` decodes: the locale's encoding, universal newlines."""
    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def cli_env(state_dir: Path, env: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a CLI command in a test: this process's, with ``state_dir`` as
    ``POOLBACKEND_STATE_DIR``, the repository first on ``PYTHONPATH`` and *env* on top (a
    value of ``None`` removes the variable)."""
    full_env = dict(os.environ)
    full_env["POOLBACKEND_STATE_DIR"] = str(state_dir)
    pp = full_env.get("PYTHONPATH")
    full_env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    return full_env


def run_cli_fresh(
    args: Sequence[str], env: dict[str, str], input: str | None, timeout: float
) -> CliResult:
    """``python -m poolbackend ARGS`` in a new interpreter (subprocess.TimeoutExpired past
    *timeout*)."""
    r = subprocess.run(
        [sys.executable, "-m", "poolbackend", *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def run_cli(state_dir: Path, cli_zygote: Zygote) -> RunCli:
    """``run_cli(*args, input=None, env=None, timeout=60) -> (rc, stdout, stderr)``.

    Runs ``python -m poolbackend ARGS`` in :func:`cli_env` for this test's state dir. A
    command that runs past *timeout* is killed and fails the test. The command is a fork
    of a process that has imported the product already (:mod:`tests.harness.clizygote`:
    a real process, without paying the interpreter's start-up each time);
    ``POOLBACKEND_TEST_CLI=exec`` starts a fresh interpreter for every command instead.
    """

    def run(
        *args: str,
        input: str | None = None,
        env: dict[str, str | None] | None = None,
        timeout: float = 60,
    ) -> CliResult:
        full_env = cli_env(state_dir, env)
        try:
            if cli_zygote.needs_fresh_interpreter(full_env):
                return run_cli_fresh(args, full_env, input, timeout)
            encoding = locale.getpreferredencoding(False)
            rc, out, err = cli_zygote.run(
                list(args),
                env=full_env,
                input=None if input is None else input.encode(encoding),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"poolbackend {' '.join(args)} did not finish within {timeout}s: {exc}")
        return rc, _decode(out), _decode(err)

    return run
