"""Wall-clock slack that grows with the machine's load, for the few upper bounds on time.

A test that checks "fails within the timeout" allows the timeout plus a margin for what is
not the timeout: interpreter start-up, imports, scheduling. On an idle 2-core machine that
margin is the test's own figure; on a machine whose run queue holds N tasks per CPU every
one of those steps takes up to N times as long, so the margin is scaled by N
(:func:`slack`). The promised time itself (the configured timeout, a lower bound) is never
scaled: only the allowance for the machine. What the exact timing of a timer is, is proven
from a fake clock (tests/unit/test_session_core.py, test_liveness_rule.py); what the wall
clock can still catch — a hang, a retry loop, a timer armed late by seconds — it still
catches on an idle machine, and a loaded one cannot fail it by chance.
"""

from __future__ import annotations

import os
from pathlib import Path


def oversubscription() -> float:
    """Runnable tasks per CPU this process may use, at least 1: the larger of the 1-minute
    load average and the tasks runnable right now (this one not counted)."""
    cpus = len(os.sched_getaffinity(0)) or 1
    load1 = os.getloadavg()[0]
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1
    except (OSError, ValueError, IndexError):
        running = 0
    return max(1.0, load1 / cpus, running / cpus)


def slack(seconds: float) -> float:
    """``seconds`` of margin on an idle machine, scaled by :func:`oversubscription`."""
    return seconds * oversubscription()
