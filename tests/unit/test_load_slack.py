"""tests.harness.load: the margin of a wall-clock bound grows with the run queue, never shrinks."""

from __future__ import annotations

import pytest

from tests.harness import load


def test_slack_is_the_idle_margin_on_an_idle_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load.os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    monkeypatch.setattr(load.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(load.Path, "read_text", lambda self: "0.30 0.20 0.10 2/300 4242\n")
    assert load.oversubscription() == 1.0
    assert load.slack(3.0) == 3.0


def test_slack_scales_with_the_load_average_or_the_tasks_runnable_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(load.os, "getloadavg", lambda: (6.0, 2.0, 1.0))
    monkeypatch.setattr(load.Path, "read_text", lambda self: "6.00 2.00 1.00 3/300 4242\n")
    assert load.slack(3.0) == 9.0  # 6 tasks per 2 CPUs
    monkeypatch.setattr(load.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    monkeypatch.setattr(load.Path, "read_text", lambda self: "0.50 0.50 0.50 9/300 4242\n")
    assert load.slack(3.0) == 12.0  # a burst the average has not seen yet: 8 others runnable
