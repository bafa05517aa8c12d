"""The liveness rule and the in-flight window, driven by a fake clock (no sockets, no sleeps)."""

from __future__ import annotations

from poolbackend.iscsi.liveness import Action, InFlightWindow, Liveness, command_cap


def test_silent_target_is_pinged_then_dead_at_the_timeout() -> None:
    live = Liveness(timeout=3.0, last_progress=100.0)
    assert live.check(100.9) is Action.NONE
    assert live.due() == 101.0
    assert live.check(101.0) is Action.PING
    live.pinged(101.0)
    assert live.due() == 103.0
    assert live.check(102.99) is Action.NONE
    assert live.check(103.0) is Action.DEAD


def test_answered_ping_keeps_a_busy_target_alive_forever() -> None:
    live = Liveness(timeout=3.0, last_progress=0.0)
    now = 0.0
    for _ in range(100):  # a command that takes 100 s: pinged every second, always answered
        now = live.due()
        assert live.check(now) is Action.PING
        live.pinged(now)
        live.ping_answered(now + 0.5)
    assert now > 90


def test_completions_keep_a_target_alive_without_pings_answered() -> None:
    live = Liveness(timeout=3.0, last_progress=0.0)
    live.pinged(1.0)  # never answered
    for t in range(2, 60, 2):
        live.progress(float(t))
        assert live.check(float(t) + 1.9) is Action.NONE


def test_a_late_wake_up_pings_before_declaring_death() -> None:
    """A loop that wakes long after the deadline (a loaded machine) gives the ping its time."""
    live = Liveness(timeout=3.0, last_progress=0.0)
    assert live.check(50.0) is Action.PING
    live.pinged(50.0)
    assert live.check(51.0) is Action.NONE
    assert live.check(52.0) is Action.DEAD


def test_idle_time_before_the_first_command_does_not_count() -> None:
    live = Liveness(timeout=3.0, last_progress=0.0)
    live.busy(500.0)
    assert live.check(500.5) is Action.NONE


def test_command_cap() -> None:
    assert command_cap(1) == 30 and command_cap(10) == 30 and command_cap(20) == 60


def test_window_settles_where_a_command_takes_a_quarter_of_the_timeout() -> None:
    """A target doing 4 MiB/s with a 1 s timeout: latency = in-flight / rate."""
    w = InFlightWindow.for_timeout(1.0, min_bytes=64 << 10, max_bytes=256 << 20)
    rate = 4 << 20
    for _ in range(200):
        size = w.chunk(64 << 10, 32 << 20)
        w.completed(size, latency=w.window / rate)
    assert 0.8 * (1 << 20) <= w.window <= 1.25 * (1 << 20)  # 4 MiB/s x 0.25 s
    assert w.window / rate <= 0.25 * 1.25


def test_window_grows_to_the_maximum_on_a_fast_target() -> None:
    w = InFlightWindow.for_timeout(10.0, min_bytes=1 << 20, max_bytes=256 << 20)
    for _ in range(100):
        w.completed(w.chunk(1 << 20, 32 << 20), latency=0.002)
    assert w.window == 256 << 20
    assert w.chunk(1 << 20, 32 << 20) == 32 << 20


def test_window_always_admits_one_command() -> None:
    w = InFlightWindow.for_timeout(1.0, min_bytes=1 << 20, max_bytes=8 << 20)
    assert w.room(0, 64 << 20)
    assert not w.room(1 << 20, 1 << 20)
