"""The one private event-loop thread of the blocking callers (the sync facade and the
conformance tests): results come back, a coroutine without an answer fails in one line."""

from __future__ import annotations

import asyncio

import pytest

from poolbackend.iscsi.errors import ISCSITimeout
from poolbackend.iscsi.sync import LoopThread


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


async def _never() -> None:
    await asyncio.Event().wait()


def test_result_comes_back_from_the_loop_thread() -> None:
    runner = LoopThread("test")
    try:
        assert runner.run(_answer(), 60) == 42
    finally:
        runner.stop()
    assert runner.loop.is_closed()


@pytest.mark.parametrize(
    ("what", "line"),
    [
        ("login to portal 127.0.0.1:3260", "login to portal 127.0.0.1:3260: did not finish"),
        (None, "no answer"),  # the conformance tests' wording
    ],
)
def test_a_coroutine_without_an_answer_fails_with_one_line(what: str | None, line: str) -> None:
    runner = LoopThread()
    try:
        with pytest.raises(ISCSITimeout) as caught:
            runner.run(_never(), 0.01, what)
        assert runner.run(_answer(), 60) == 42  # still serves (and the cancel completes)
    finally:
        runner.stop()
    assert str(caught.value) == f"{line} within 0.01 s"
