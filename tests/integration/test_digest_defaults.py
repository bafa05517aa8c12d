"""The default digest offers: ``None,CRC32C`` for both HeaderDigest and DataDigest, so the
target chooses. A target that insists on data digests works with the defaults; a target that
does not care (tgt's default) answers None, so bulk reads are not slowed down by CRC32C."""

from __future__ import annotations

import argparse
import asyncio
import os

import pytest

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.errors import ISCSIError
from poolbackend.iscsi.portal import Portal
from tests.harness.faketarget import FakeTarget
from tests.harness.tgtd import Tgtd

IQN = "iqn.2026-11.example:digest"
MiB = 1024 * 1024


def _portal(host: str, port: int) -> Portal:
    return Portal(host, port)


def test_default_offers_are_none_crc32c_for_both_digests() -> None:
    o = SessionOptions()
    assert (o.header_digest, o.data_digest) == ("None,CRC32C", "None,CRC32C")


def test_target_requiring_data_digest_works_with_the_defaults() -> None:
    with FakeTarget("require_data_digest") as fake:

        async def go() -> bool:
            async with await Session.open(
                _portal(fake.host, fake.port), IQN, SessionOptions(timeout=5)
            ) as s:
                return s.params.data_digest

        assert asyncio.run(go()) is True
        offers = [r.keys.get("DataDigest") for r in fake.login_requests]
        assert "None,CRC32C" in offers


def test_target_requiring_data_digest_refuses_a_none_only_offer() -> None:
    """The fake target really insists (so the test above can fail)."""
    with FakeTarget("require_data_digest") as fake:

        async def go() -> None:
            async with await Session.open(
                _portal(fake.host, fake.port), IQN, SessionOptions(timeout=5, data_digest="None")
            ):
                pass

        with pytest.raises(ISCSIError, match="DataDigest"):
            asyncio.run(go())


@pytest.mark.parametrize(("configured", "expected"), [(None, False), ("CRC32C", True)])
def test_tgt_chooses_the_data_digest_from_the_default_offer(
    tgtd: Tgtd, configured: str | None, expected: bool
) -> None:
    """tgt's default answer to ``None,CRC32C`` is None (no CRC cost on bulk reads); tgt set
    to CRC32C gets it, and data still round-trips."""
    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, 4 * MiB)
    if configured:
        tgtd.set_param(1, "DataDigest", configured)
        tgtd.set_param(1, "HeaderDigest", configured)

    async def go() -> tuple[bool, bool]:
        async with await Session.open(
            _portal(tgtd.host, tgtd.port), IQN, SessionOptions(timeout=10)
        ) as s:
            payload = os.urandom(MiB)
            await s.write(1, 8, payload, 512)
            back = await s.read(1, 8, len(payload) // 512, 512)
            assert bytes(back) == payload
            return s.params.header_digest, s.params.data_digest

    assert asyncio.run(go()) == (expected, expected)


@pytest.mark.parametrize(
    ("value", "offer"),
    [
        ("crc32c", "CRC32C,None"),
        ("none", "None"),
        ("none-crc32c", "None,CRC32C"),
        ("crc32c-none", "CRC32C,None"),
    ],
)
def test_url_digest_values_mean_what_they_mean_to_libiscsi(value: str, offer: str) -> None:
    from poolbackend.iscsi.url import parse_url

    url = parse_url(f"iscsi://h/{IQN}/1?header_digest={value}&data_digest={value}")
    assert (url.header_digest, url.data_digest) == (offer, offer)


@pytest.mark.parametrize(("configured", "expected"), [(None, False), ("CRC32C", True)])
def test_url_crc32c_prefers_digests_and_works_with_a_target_without(
    tgtd: Tgtd, configured: str | None, expected: bool
) -> None:
    """libiscsi with ?header_digest=crc32c logs in to a target that answers None (it takes
    the answer); so do we, and a target offering CRC32C gets it."""
    from poolbackend.cli.initiator_opts import session_options
    from poolbackend.iscsi.url import parse_url

    tgtd.new_target(1, IQN)
    tgtd.add_lun(1, 1, MiB)
    if configured:
        tgtd.set_param(1, "HeaderDigest", configured)
        tgtd.set_param(1, "DataDigest", configured)
    url = parse_url(f"iscsi://{tgtd.portal}/{IQN}/1?header_digest=crc32c&data_digest=crc32c")
    args = argparse.Namespace(initiator_name=None, timeout=10.0, chap_algorithms=None)
    opts = session_options(args, url)

    async def go() -> tuple[bool, bool]:
        async with await Session.open(url.portal, IQN, opts) as s:
            await s.read(1, 0, 8, 512)
            return s.params.header_digest, s.params.data_digest

    assert asyncio.run(go()) == (expected, expected)
