"""A transfer's range is checked against the LUN's fresh size before anything is opened:
a capacity of 0 is one line (it cannot come from tgt, whose smallest LUN has one block)."""

from __future__ import annotations

import re

import pytest

from poolbackend.errors import ConfigError
from poolbackend.pool.transfer import Geometry, check_range, check_upload_range


def _geo(blocks: int, block_size: int = 512) -> Geometry:
    return Geometry(1, block_size, blocks, 0, 0)


@pytest.mark.parametrize("check", [check_range, check_upload_range])
def test_capacity_zero_is_one_line(check: object) -> None:
    with pytest.raises(ConfigError) as info:
        check(_geo(0), 0, None)  # type: ignore[operator]
    assert str(info.value) == "LUN 1 reports a capacity of 0 bytes: nothing to transfer"


@pytest.mark.parametrize(
    ("offset", "length", "text"),
    [
        (1024 + 512, None, "offset 1536 is beyond the end of LUN 1 (1024 bytes)"),
        (512, 1024, "offset 512 + length 1024 exceeds LUN 1's 1024 bytes"),
    ],
)
def test_beyond_the_end(offset: int, length: int | None, text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(text)):
        check_range(_geo(2), offset, length)


def test_upload_offset_must_be_a_block_multiple() -> None:
    with pytest.raises(ConfigError, match="not a multiple of LUN 1's 4096-byte blocks"):
        check_upload_range(_geo(8, 4096), 512, None)
    check_upload_range(_geo(8, 4096), 4096, 4096)


def test_an_enormous_capacity_is_accepted_without_work_lists() -> None:
    """2^64 blocks (tgt's answer for an empty backing file): the check itself is O(1)."""
    check_range(_geo(2**64), 2**70, 512)
