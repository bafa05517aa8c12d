"""Every file in xml-examples/ works as shipped against a real tgtd set up the way the example
says (target IQN, CHAP accounts, secrets): only the port is changed to the private tgtd's.

A new example file must be handled here (the dispatch fails on an unknown root element), so
no example can ship untested.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from poolbackend.pool.xml.pool import parse_pool_xml
from poolbackend.pool.xml.secret import parse_secret_xml
from tests.conftest import RunCli
from tests.harness.tgtd import Tgtd

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "xml-examples"
MiB = 1 << 20
SECRET_VALUES = {"target1-chap": "chapsecret12345", "target1-mutual": "mutualsecret12345"}


def _examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.xml"))


def _root(name: str) -> str:
    return str(etree.fromstring((EXAMPLES / name).read_bytes()).tag)


def _secret_examples() -> dict[str, Path]:
    """usage -> the example secret file declaring it."""
    out = {}
    for name in _examples():
        if _root(name) == "secret":
            secret = parse_secret_xml((EXAMPLES / name).read_bytes(), source_name=name)
            assert secret.usage_id is not None
            out[secret.usage_id] = EXAMPLES / name
    return out


@pytest.fixture
def tgt_for(request: pytest.FixtureRequest) -> Iterator[Tgtd]:
    """A private tgtd on the example's host (127.0.0.1 or ::1)."""
    host = request.param
    with Tgtd.start(host=host) as t:
        yield t


def _with_port(name: str, t: Tgtd, tmp: Path) -> Path:
    text = (EXAMPLES / name).read_text()
    assert "port='3260'" in text, f"{name}: expected to name port 3260"
    path = tmp / name
    path.write_text(text.replace("port='3260'", f"port='{t.port}'"))
    return path


def _ok(run_cli: RunCli, *args: str, input: str | None = None) -> str:
    rc, out, err = run_cli(*args, input=input)
    assert rc == 0, f"{args}: {err}"
    return str(out)


def _setup_target(t: Tgtd, name: str, run_cli: RunCli) -> str:
    """Configure tgtd and the secrets as the pool example says; return the pool name."""
    pool = parse_pool_xml((EXAMPLES / name).read_bytes(), source_name=name)
    t.new_target(1, pool.source.target_iqn)
    t.add_lun(1, 1, 16 * MiB)
    auth = pool.source.auth
    if auth is None:
        return pool.name
    secrets = _secret_examples()
    pairs = [(auth.username, auth.secret_usage, False)]
    if auth.target_username is not None:
        pairs.append((auth.target_username, auth.target_secret_usage, True))
    for user, usage, outgoing in pairs:
        assert usage in secrets, f"{name}: no example secret file declares usage {usage!r}"
        value = SECRET_VALUES[usage]
        t.add_account(user, value)
        t.bind_account(1, user, outgoing=outgoing)
        _ok(run_cli, "secret-define", str(secrets[usage]))
        _ok(run_cli, "secret-set-value", usage, input=value)
    return pool.name


def _host_of(name: str) -> str:
    root = etree.fromstring((EXAMPLES / name).read_bytes())
    host = root.find("source/host") if root.tag == "pool" else root.find("host")
    return "127.0.0.1" if host is None else str(host.get("name"))


CASES = [pytest.param(n, _host_of(n), id=n) for n in _examples()]


@pytest.mark.parametrize(("name", "tgt_for"), CASES, indirect=["tgt_for"])
def test_example_works_against_tgt(
    name: str, tgt_for: Tgtd, run_cli: RunCli, tmp_path: Path
) -> None:
    t = tgt_for
    kind = _root(name)
    if kind == "pool":
        pool = _setup_target(t, name, run_cli)
        path = _with_port(name, t, tmp_path)
        assert _ok(run_cli, "pool-define", str(path)) == f"Pool {pool} defined from {path}\n\n"
        assert _ok(run_cli, "pool-start", pool) == f"Pool {pool} started\n\n"
        assert _ok(run_cli, "pool-refresh", pool) == f"Pool {pool} refreshed\n\n"
        assert re.search(r"unit:0:0:1 .* 16\.00 MiB", _ok(run_cli, "vol-list", pool, "--details"))
        assert "State:          running" in _ok(run_cli, "pool-info", pool)
        _ok(run_cli, "pool-destroy", pool)
        _ok(run_cli, "pool-undefine", pool)
    elif kind == "secret":
        secret = parse_secret_xml((EXAMPLES / name).read_bytes(), source_name=name)
        assert _ok(run_cli, "secret-define", str(EXAMPLES / name)).endswith(" created\n\n")
        assert secret.usage_id in SECRET_VALUES, f"{name}: no test value for its usage"
        _ok(run_cli, "secret-set-value", secret.usage_id, input=SECRET_VALUES[secret.usage_id])
        assert secret.usage_id in _ok(run_cli, "secret-list")
    elif kind == "source":
        t.new_target(1, "iqn.2026-11.example:target1")
        path = _with_port(name, t, tmp_path)
        out = _ok(run_cli, "find-storage-pool-sources", "iscsi-direct", str(path))
        assert "<device path='iqn.2026-11.example:target1'/>" in out
    else:
        pytest.fail(f"{name}: unknown example kind <{kind}>; teach this test to run it")


@pytest.mark.parametrize("tgt_for", ["127.0.0.1"], indirect=True)
def test_sha256_offer_refused_by_tgt_names_the_algorithm(
    tgt_for: Tgtd, run_cli: RunCli, tmp_path: Path
) -> None:
    """tgt computes CHAP_A=7 as SHA-1: the refusal says which algorithm was used and how to
    get out (the old shipped example offered '7,5')."""
    name = "pool-mutual-chap.xml"
    pool = _setup_target(tgt_for, name, run_cli)
    path = _with_port(name, tgt_for, tmp_path)
    path.write_text(path.read_text().replace("algorithms='5'", "algorithms='7,5'"))
    _ok(run_cli, "pool-define", str(path))
    rc, out, err = run_cli("pool-start", pool)
    assert rc == 1 and out == ""
    assert len(err.splitlines()) == 1, err
    assert "status 0x0200" in err
    assert "CHAP_A=7 (SHA-256) was used" in err and "algorithms='5'" in err
