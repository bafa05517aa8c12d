"""URL query options on valid URLs: each option alone and every combination, as parsed
(:func:`poolbackend.iscsi.url.parse_url`) and as the tools turn them into SessionOptions
(:func:`poolbackend.cli.initiator_opts.session_options`), so a parsed value that is dropped
on either step fails a test. The bad-URL side is tests/corpus/bad-urls.tsv."""

from __future__ import annotations

import argparse
import itertools

import pytest

from poolbackend.cli.initiator_opts import session_options
from poolbackend.iscsi.aio import SessionOptions
from poolbackend.iscsi.errors import InvalidURL
from poolbackend.iscsi.portal import Credentials
from poolbackend.iscsi.url import parse_url

BASE = "iscsi://alice%in-secret-1@127.0.0.1:3261/iqn.2026-11.example:t/3"
#: option -> (query text, expected effect as a dict of IscsiUrl / SessionOptions fields)
DIGESTS = {"none": "None", "crc32c": "CRC32C,None", "none-crc32c": "None,CRC32C",
           "crc32c-none": "CRC32C,None", "CRC32C": "CRC32C,None"}  # fmt: skip
AUTH = {"md5": (5,), "sha1": (6, 5), "sha-256": (7, 5), "sha3-256": (8, 5),
        "sha-256,sha1": (7, 6, 5)}  # fmt: skip
OPTIONS = ["header_digest", "data_digest", "auth", "mutual"]


def _args() -> argparse.Namespace:
    return argparse.Namespace(initiator_name=None, timeout=10.0, chap_algorithms=None)


def _query(chosen: dict[str, str]) -> str:
    parts = []
    for name, value in chosen.items():
        if name == "mutual":
            parts += [f"target_user={value}", "target_password=out-secret-2"]
        else:
            parts.append(f"{name}={value}")
    return "?" + "&".join(parts) if parts else ""


def _check(chosen: dict[str, str]) -> None:
    url = parse_url(BASE + _query(chosen), need_lun=True, env={})
    assert (str(url.portal), url.target, url.lun) == ("127.0.0.1:3261", "iqn.2026-11.example:t", 3)
    hd = DIGESTS[chosen["header_digest"]] if "header_digest" in chosen else None
    dd = DIGESTS[chosen["data_digest"]] if "data_digest" in chosen else None
    algs = AUTH[chosen["auth"]] if "auth" in chosen else None
    assert (url.header_digest, url.data_digest, url.chap_algorithms) == (hd, dd, algs)
    tuser = chosen.get("mutual")
    assert url.credentials == Credentials(
        "alice", b"in-secret-1", tuser, b"out-secret-2" if tuser else None
    )
    opts = session_options(_args(), url)
    default = SessionOptions()
    assert opts.header_digest == (hd or default.header_digest)
    assert opts.data_digest == (dd or default.data_digest)
    assert opts.chap_algorithms == (algs or default.chap_algorithms)


@pytest.mark.parametrize("value", sorted(DIGESTS))
@pytest.mark.parametrize("name", ["header_digest", "data_digest"])
def test_digest_option_alone(name: str, value: str) -> None:
    _check({name: value})


@pytest.mark.parametrize("value", sorted(AUTH))
def test_auth_option_alone(value: str) -> None:
    _check({"auth": value})


def test_mutual_chap_options() -> None:
    _check({"mutual": "bob"})
    with pytest.raises(InvalidURL, match="mutual CHAP needs both target_user and target_pass"):
        parse_url(BASE + "?target_user=bob", env={})
    with pytest.raises(InvalidURL, match="mutual CHAP needs both target_user and target_pass"):
        parse_url(BASE + "?target_password=out-secret-2", env={})


def test_no_options() -> None:
    _check({})


@pytest.mark.parametrize(
    "names",
    [c for n in range(2, len(OPTIONS) + 1) for c in itertools.combinations(OPTIONS, n)],
    ids="+".join,
)
def test_option_combinations(names: tuple[str, ...]) -> None:
    """Every combination, each option with a value different from the default, and the
    two digests with different values so that a swap shows."""
    values = {"header_digest": "crc32c", "data_digest": "none", "auth": "sha-256,sha1",
              "mutual": "bob"}  # fmt: skip
    _check({n: values[n] for n in names})
    if "header_digest" in names and "data_digest" in names:
        _check({n: {"header_digest": "none", "data_digest": "crc32c"}.get(n, values[n])
                 for n in names})  # fmt: skip


def test_options_order_does_not_matter() -> None:
    a = parse_url(BASE + "?auth=sha1&target_password=x-secret-9&header_digest=none"
                  "&target_user=bob&data_digest=crc32c", env={})  # fmt: skip
    b = parse_url(BASE + "?data_digest=crc32c&target_user=bob&header_digest=none"
                  "&target_password=x-secret-9&auth=sha1", env={})  # fmt: skip
    assert a == b and a.credentials is not None and a.credentials.target_username == "bob"
