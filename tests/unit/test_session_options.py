"""One options type from the pool definition to the session: the pool's ``<pb:iscsi>``
options become :class:`~poolbackend.iscsi.options.SessionOptions` in one function
(``iscsi_direct.session_options``), and each login reads that same object
(:class:`~poolbackend.iscsi.login.LoginConfig` holds it, copies no field of it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from poolbackend.iscsi.chap import ChapInitiator
from poolbackend.iscsi.login import LoginConfig
from poolbackend.iscsi.options import DIGEST_OFFER, SessionOptions
from poolbackend.pool.backends.iscsi_direct import (
    DEFAULT_TIMEOUT,
    IscsiDirectBackend,
    session_options,
)
from poolbackend.pool.model import PoolOptions, SourceSpec
from poolbackend.pool.xml.pool import parse_pool_xml
from tests.unit.fake_session import FakeTarget

EXAMPLES = Path(__file__).resolve().parents[2] / "xml-examples"
TARGET = "iqn.2026-11.example:target1"


def test_login_config_copies_no_option() -> None:
    """LoginConfig's own fields are only what the core picks per connection."""
    own = {f.name for f in dataclasses.fields(LoginConfig)}
    shared = own & {f.name for f in dataclasses.fields(SessionOptions)}
    assert shared == {"isid"}, shared  # the options' isid may be None; the core picks one
    assert "options" in own
    for name in ("initiator_name", "header_digest", "data_digest", "max_burst_length"):
        assert name not in own


def test_pool_options_reach_the_login_offer() -> None:
    pool = parse_pool_xml((EXAMPLES / "pool-mutual-chap.xml").read_bytes())
    opts = session_options(pool.source.initiator_iqn, pool.options, pool.source.auth)
    assert opts.initiator_name == "iqn.2026-11.example:initiator1"
    assert (opts.header_digest, opts.data_digest) == ("CRC32C,None", "None,CRC32C")
    assert opts.chap_algorithms == (5,)
    assert (opts.timeout, opts.timeout_hint) == (10.0, "<pb:timeout seconds='10'/>")
    offer = dict(LoginConfig(opts, TARGET).operational_offer())
    assert (offer["HeaderDigest"], offer["DataDigest"]) == ("CRC32C,None", "None,CRC32C")
    assert offer["MaxBurstLength"] == str(opts.max_burst_length)
    discovery = dict(LoginConfig(opts, None).operational_offer())
    assert (discovery["HeaderDigest"], discovery["DataDigest"]) == ("None", "None")
    opts.max_recv_data_segment_length = 8192  # read, not copied: a change is seen
    assert dict(LoginConfig(opts, TARGET).operational_offer())["MaxRecvDataSegmentLength"] == (
        "8192"
    )


def test_defaults_when_the_pool_sets_nothing() -> None:
    opts = session_options("iqn.2026-11.example:i", PoolOptions())
    assert (opts.header_digest, opts.data_digest) == (DIGEST_OFFER, DIGEST_OFFER)
    assert (opts.timeout, opts.chap_algorithms) == (DEFAULT_TIMEOUT, (5,))
    assert opts.timeout_hint == f"<pb:timeout seconds='{DEFAULT_TIMEOUT:g}'/>"


def test_discovery_goes_through_the_same_mapping() -> None:
    target = FakeTarget()
    backend = IscsiDirectBackend(open_session=target.factory)
    backend.find_pool_sources(SourceSpec("127.0.0.1", None, "iqn.2026-11.example:i"), 2.5)
    _, iqn, opts, credentials = target.logins[-1]
    assert (iqn, credentials) == (None, None)
    assert (opts.initiator_name, opts.timeout) == ("iqn.2026-11.example:i", 2.5)
    assert opts.timeout_hint == "--timeout 2.5"


def test_no_secret_in_reprs() -> None:
    chap = ChapInitiator("u", b"chap-secret-4711", (5,), "t", b"target-secret-4712")
    config = LoginConfig(SessionOptions(initiator_name="iqn.i"), TARGET, chap=chap)
    assert "4711" not in repr(config) and "4712" not in repr(config)
