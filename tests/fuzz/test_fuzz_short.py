"""A short, bounded atheris run of every fuzz target (CI), plus the seed corpus replayed.

Each target runs in its own subprocess (atheris ends the process with os._exit on a
finding) with a hard subprocess timeout; a finding, a hang (``-timeout``) or a non-zero exit
fails the test with the crash report. The run is deterministic: libFuzzer's ``-seed=1`` and
a fixed number of inputs (``-runs``, :data:`RUNS`: the same inputs on every run, however
loaded the machine; ``-max_total_time`` only caps it). ``POOLBACKEND_FUZZ_SECONDS=N`` runs
each target for N seconds with a random seed instead, to look for new findings (which then
go into the seed corpus). The ``canary`` target has a planted bug and must be reported,
which proves that findings are detected. atheris missing is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import REAL_TARGETS, TARGETS

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
EXPLORE = os.environ.get("POOLBACKEND_FUZZ_SECONDS")
SECONDS = float(EXPLORE or "90")  # exploring: the run's length; else only a cap
#: inputs a deterministic run executes, its seeds included (each about 3 s on 2 idle cores:
#: measured 80 pdu inputs in 7-11 s on 2 busy cores, login ~1700, scsi/xml/url 15000-34000
#: per 3 s)
RUNS = {"pdu": 40, "login": 600, "scsi": 3000, "xml": 3000, "url": 3000}
#: executions a run must reach beyond replaying its seeds, so a run that only replays its
#: corpus or stalls after libFuzzer's banner fails
MIN_NEW_EXECS = {"pdu": 5, "login": 100, "scsi": 500, "xml": 500, "url": 500}


def _need_atheris() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.fail(
            "atheris is not installed: `pip install atheris` (wheels for CPython 3.11); "
            "the fuzz tests need it",
            pytrace=False,
        )


def _fuzz(target: str, tmp: Path, seconds: float, *extra: str) -> subprocess.CompletedProcess[str]:
    work = tmp / target
    (work / "corpus").mkdir(parents=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    cmd = [
        sys.executable, "-m", "tests.fuzz.run", target,
        f"-max_total_time={seconds:g}", "-timeout=10", "-rss_limit_mb=1024",
        f"-artifact_prefix={work}/", "-print_final_stats=1", *extra,
        str(work / "corpus"),
    ]  # fmt: skip
    if (CORPUS / target).is_dir():
        cmd.append(str(CORPUS / target))  # read-only: new units go to the first directory
    try:
        return subprocess.run(
            cmd, cwd=work, env=env, capture_output=True, text=True, timeout=seconds + 60
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"fuzzing {target} did not stop within {seconds + 60:g}s: {exc}")


@pytest.mark.timeout(SECONDS + 90)
@pytest.mark.parametrize("target", REAL_TARGETS)
def test_fuzz_target_briefly(target: str, tmp_path: Path) -> None:
    _need_atheris()
    fixed = () if EXPLORE else ("-seed=1", f"-runs={RUNS[target]}")
    r = _fuzz(target, tmp_path, SECONDS, *fixed)
    crashes = sorted(p.name for p in (tmp_path / target).glob("*-*") if p.is_file())
    assert r.returncode == 0 and not crashes, (
        f"fuzz target {target!r} found a problem (exit {r.returncode}, artifacts {crashes}); "
        f"replay with `python -m tests.fuzz.run {target} --replay FILE`:\n"
        f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    )
    m = re.search(r"^stat::number_of_executed_units: *(\d+)$", r.stderr, re.M)
    assert "Done " in r.stderr and m, r.stderr[-3000:]
    seeds = len(list((CORPUS / target).iterdir())) if (CORPUS / target).is_dir() else 0
    need = seeds + MIN_NEW_EXECS[target]
    assert int(m.group(1)) >= need, (
        f"fuzz target {target!r} ran {m.group(1)} inputs (-runs {RUNS[target]}, at most "
        f"{SECONDS:g}s), fewer than its "
        f"{seeds} seeds + {MIN_NEW_EXECS[target]}:\n{r.stderr[-3000:]}"
    )


@pytest.mark.timeout(180)
def test_planted_bug_is_detected(tmp_path: Path) -> None:
    """The runner must report a crash: the canary target raises on inputs starting b'PB!'."""
    _need_atheris()
    r = _fuzz("canary", tmp_path, 90, "-seed=1")  # found within a second; 90 s only caps it
    assert r.returncode != 0, f"the planted bug was not found:\n{r.stderr[-3000:]}"
    output = r.stdout + r.stderr  # atheris prints the Python traceback on stdout
    assert "Uncaught Python exception" in output and "planted canary bug" in output, output
    crashes = list((tmp_path / "canary").glob("crash-*"))
    assert crashes and crashes[0].read_bytes().startswith(b"PB!")


@pytest.mark.parametrize("target", REAL_TARGETS)
def test_seed_corpus_replays_cleanly_and_reaches_deep(target: str) -> None:
    """Every seed runs through its target without a finding (no atheris needed)."""
    seeds = sorted((CORPUS / target).iterdir())
    assert seeds, f"no seeds for {target}; run python -m tests.fuzz.make_corpus"
    results = {seed.name: TARGETS[target](seed.read_bytes()) for seed in seeds}
    if target == "pdu":  # every recorded tgt stream completes the whole command script
        assert all(n >= 8 for n in results.values()), results
        assert results["tgt-script-with-sendtargets"] == 9
    if target == "login":  # recorded tgt logins (none, CHAP, mutual CHAP) complete
        logins = {k: v for k, v in results.items() if k.startswith("tgt-login-auth")}
        assert logins.pop("tgt-login-auth-failure") is False
        assert logins and all(logins.values()), logins
        assert results["tgt-login-discovery"] and results["tgt-login-mutual-bytewise"]
