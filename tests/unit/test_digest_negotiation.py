"""Digest answers outside our offer are protocol errors, from bytes (textkeys.negotiate_answer).

tgt accepts whatever we offer, so it cannot show this: a scripted Login Response can.
Every combination of offer and answer for HeaderDigest and DataDigest.
"""

from __future__ import annotations

import pytest

from poolbackend.iscsi.connection import Connection
from poolbackend.iscsi.errors import RemoteProtocolError
from poolbackend.iscsi.events import LoginComplete
from poolbackend.iscsi.login import LoginConfig
from poolbackend.iscsi.options import DIGEST_OFFER, SessionOptions
from tests.harness.tgt_keys import tgt_login_keys
from tests.unit.test_iscsi_core import login_rsp

OFFERS = ["None", "CRC32C", DIGEST_OFFER]


def _login(header: str, data: str, answer: tuple[str, str]) -> list[object]:
    options = SessionOptions(
        initiator_name="iqn.2026-11.example:i", header_digest=header, data_digest=data
    )
    conn = Connection(LoginConfig(options, "iqn.2026-11.example:t"), 1)
    conn.start_login()
    conn.data_to_send()
    pairs = tgt_login_keys(*answer)
    return list(conn.receive_data(login_rsp(0x87, pairs, statsn=1, tsih=1)))


@pytest.mark.parametrize("offer", OFFERS)
@pytest.mark.parametrize("answer", ["None", "CRC32C"])
@pytest.mark.parametrize("key", ["HeaderDigest", "DataDigest"])
def test_digest_answer_must_be_in_the_offer(key: str, offer: str, answer: str) -> None:
    header = offer if key == "HeaderDigest" else DIGEST_OFFER
    data = offer if key == "DataDigest" else DIGEST_OFFER
    answers = (answer, "None") if key == "HeaderDigest" else ("None", answer)
    if answer in offer.split(","):
        (done,) = _login(header, data, answers)
        assert isinstance(done, LoginComplete)
        on = done.params.header_digest if key == "HeaderDigest" else done.params.data_digest
        assert on is (answer == "CRC32C")
    else:
        with pytest.raises(RemoteProtocolError, match=f"target answered {key}={answer}, which"):
            _login(header, data, answers)


def test_data_digest_crc32c_to_an_offer_of_none_is_a_protocol_error() -> None:
    """The issue's case, spelled out."""
    with pytest.raises(
        RemoteProtocolError, match="target answered DataDigest=CRC32C, which is not one of our"
    ):
        _login("None", "None", ("None", "CRC32C"))


def test_default_offers_on_the_wire() -> None:
    """The first Login Request of a session with default options offers None,CRC32C for
    both digests (the options the tools and pools start from, not the constant)."""
    from poolbackend.iscsi.textkeys import decode_pairs
    from tests.unit.test_iscsi_core import sent_pdus

    conn = Connection(LoginConfig(SessionOptions(), "iqn.2026-11.example:t"), 1)
    conn.start_login()
    keys = dict(decode_pairs(sent_pdus(conn)[0].data))
    assert (keys["HeaderDigest"], keys["DataDigest"]) == ("None,CRC32C", "None,CRC32C")
    named = SessionOptions(initiator_name="iqn.2026-11.example:i")
    plain = Connection(LoginConfig(named, "iqn.2026-11.example:t"), 1)
    plain.start_login()
    keys = dict(decode_pairs(sent_pdus(plain)[0].data))
    assert (keys["HeaderDigest"], keys["DataDigest"]) == ("None,CRC32C", "None,CRC32C")
