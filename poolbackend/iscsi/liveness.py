"""Liveness, not a stopwatch: tell a dead or silent target from a busy one (pure, clock-fed).

A command's own wait includes the time it queues behind the others, so timing each command
against the configured timeout punishes a long queue on a slow target. Instead:

* while commands are outstanding and nothing arrived for ``timeout / 3``, ping with NOP-Out;
* the connection is dead when nothing arrived for ``timeout`` *and* that ping has had at
  least ``2/3 of the timeout`` to be answered (a late wake-up of a loaded machine pings first);
* anything received (a Data-In, an R2T, a status, a NOP-In) or the peer reading what we queued
  counts as life, however long the queue is;
* a single command still has a cap: :func:`command_cap` (libiscsi and Linux use 30+ s).

A silent target therefore still fails ``timeout`` after the last sign of life. Everything
here is a plain object fed ``now``; the asyncio session arms one timer from :meth:`due`.
:class:`InFlightWindow` sizes what a pipeline keeps in flight from the rate the target is
measured to achieve, so each command also finishes well within the timeout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PING_FRACTION = 1 / 3
MIN_COMMAND_CAP = 30.0
COMMAND_CAP_FACTOR = 3


def command_cap(timeout: float) -> float:
    """The longest a single command may take on a live target: max(30 s, 3 x timeout)."""
    return max(MIN_COMMAND_CAP, COMMAND_CAP_FACTOR * timeout)


class Action(enum.Enum):
    NONE = "none"
    PING = "ping"
    DEAD = "dead"


@dataclass
class Liveness:
    """The liveness rule of one connection; times are seconds of one monotonic clock."""

    timeout: float
    last_progress: float = 0.0
    ping_sent: float | None = None

    @property
    def ping_after(self) -> float:
        return self.timeout * PING_FRACTION

    def busy(self, now: float) -> None:
        """The first command on an idle connection: silence is counted from now."""
        self.last_progress = max(self.last_progress, now)

    def progress(self, when: float) -> None:
        """Something arrived (or the peer read our data) at ``when``."""
        if when > self.last_progress:
            self.last_progress = when

    def ping_answered(self, now: float) -> None:
        self.ping_sent = None
        self.progress(now)

    def pinged(self, now: float) -> None:
        self.ping_sent = now

    def due(self) -> float:
        """When :meth:`check` has something to decide next (while commands are outstanding)."""
        if self.ping_sent is None:
            return self.last_progress + self.ping_after
        return max(
            self.last_progress + self.timeout,
            self.ping_sent + self.timeout - self.ping_after,
        )

    def check(self, now: float) -> Action:
        """What to do at ``now`` with commands outstanding."""
        if self.ping_sent is None:
            return Action.PING if now >= self.last_progress + self.ping_after else Action.NONE
        if now >= self.due():
            return Action.DEAD
        return Action.NONE


@dataclass
class InFlightWindow:
    """How many bytes of work a pipeline keeps in flight: latency-targeted, measured.

    It starts small, and after every completed command scales the window by
    ``target / latency`` (at most doubled or halved per window's worth of completions): with the
    target the bottleneck, latency ≈ window / rate, so the window settles where a command
    takes about ``target`` (a quarter of the timeout) at the rate the target achieves. A
    fast target reaches ``max_bytes`` after a few round trips.
    """

    target: float
    min_bytes: int
    max_bytes: int
    window: float = 0.0

    def __post_init__(self) -> None:
        if not self.window:
            self.window = float(self.min_bytes)

    @classmethod
    def for_timeout(cls, timeout: float, min_bytes: int, max_bytes: int) -> InFlightWindow:
        return cls(target=timeout / 4, min_bytes=min_bytes, max_bytes=max(min_bytes, max_bytes))

    def room(self, in_flight: int, size: int) -> bool:
        """Whether a command of ``size`` bytes may start with ``in_flight`` bytes outstanding."""
        return in_flight == 0 or in_flight + size <= self.window

    def chunk(self, lo: int, hi: int, parts: int = 2) -> int:
        """A command size between ``lo`` and ``hi`` that lets ``parts`` fit in the window."""
        return max(lo, min(hi, int(self.window) // parts))

    def completed(self, size: int, latency: float) -> None:
        factor = self.target / latency if latency > 0 else 2.0
        factor = min(2.0, max(0.5, factor))
        weight = min(1.0, size / self.window)
        self.window = min(self.max_bytes, max(self.min_bytes, self.window * factor**weight))
