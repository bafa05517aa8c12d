"""What find-storage-pool-sources-as prints is accepted as input: each ``<source>`` it prints,
wrapped in a ``<pool>``, defines and starts (``[::1]`` used to come back bracketed, which
pool-define refuses)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import BasicTarget, RunCli
from tests.harness.tgtd import Tgtd

INITIATOR = "iqn.2026-11.example:initiator1"
IQN = "iqn.2026-11.example:target1"


def _round_trip(run_cli: RunCli, tmp: Path, host_arg: str, port: int, iqn: str) -> str:
    rc, out, err = run_cli(
        "find-storage-pool-sources-as",
        "iscsi-direct",
        host_arg,
        str(port),
        "--initiator",
        INITIATOR,
    )
    assert rc == 0, err
    sources = etree.fromstring(out.encode()).findall("source")
    found = [s for s in sources if s.find("device") is not None]
    assert [s.find("device").get("path") for s in found] == [iqn]  # type: ignore[union-attr]
    pool = etree.Element("pool", type="iscsi-direct")
    etree.SubElement(pool, "name").text = "found"
    pool.append(found[0])
    f = tmp / "found.xml"
    f.write_bytes(etree.tostring(pool))
    for args in (("pool-define", str(f)), ("pool-start", "found")):
        rc, _, err = run_cli(*args)
        assert rc == 0, f"{args}: {err}\n{out}"
    rc, out, err = run_cli("vol-list", "found")
    assert rc == 0 and "unit:0:0:1" in out, err
    host = found[0].find("host")
    assert host is not None
    return str(host.get("name"))


@pytest.mark.parametrize("host_arg", ["[::1]", "::1"])
def test_ipv6_sources_define_and_start(
    run_cli: RunCli, tgtd_ipv6: Tgtd, tmp_path: Path, host_arg: str
) -> None:
    tgtd_ipv6.new_target(1, IQN)
    tgtd_ipv6.add_lun(1, 1, 1 << 20)
    assert _round_trip(run_cli, tmp_path, host_arg, tgtd_ipv6.port, IQN) == "::1"


@pytest.mark.parametrize("host_arg", ["127.0.0.1", "localhost"])
def test_ipv4_and_name_sources_define_and_start(
    run_cli: RunCli, tgt_basic: BasicTarget, tmp_path: Path, host_arg: str
) -> None:
    assert _round_trip(run_cli, tmp_path, host_arg, tgt_basic.port, tgt_basic.iqn) == host_arg


@pytest.mark.parametrize("host_arg", ["[127.0.0.1]", "a host", "[::1", "ex'ample"])
def test_hosts_pool_define_would_refuse_are_refused(run_cli: RunCli, host_arg: str) -> None:
    rc, out, err = run_cli(
        "find-storage-pool-sources-as", "iscsi-direct", host_arg, "3260", "--initiator", INITIATOR
    )
    assert (rc, out) == (1, "")
    assert err.startswith("error: invalid host '") and len(err.splitlines()) == 1, err
