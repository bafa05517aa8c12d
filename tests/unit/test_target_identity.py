"""What counts as the same target: resolved addresses, port, target IQN.

Host aliases (``localhost``, ``127.0.0.1``, ``::1``) reach one target, so they share the
volume locks and make ``pool-define``/``pool-create`` fail with libvirt's source-conflict
text. A different initiator IQN is not a conflict (libvirt's iscsi rule), a different port
or target is not the same target, and redefining a pool is never a conflict with itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from poolbackend.errors import StateError
from poolbackend.pool.model import PoolDef, PoolSource, PoolState
from poolbackend.pool.store import Store, StorePaths
from poolbackend.pool.targetid import canonical_address, lun_lock_keys, same_target
from tests.conftest import RunCli

TARGET = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"
UUID_A = "11111111-2222-4333-8444-555555555555"
UUID_B = "21111111-2222-4333-8444-555555555555"
UNRESOLVABLE = "no-such-host.invalid"  # RFC 6761: never resolves


def _src(
    host: str, port: int | None = 3260, target: str = TARGET, initiator: str = INITIATOR
) -> PoolSource:
    return PoolSource(host, port, target, initiator)


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("127.0.0.1", "loopback"),
        ("127.3.2.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("2001:DB8:0::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("Target.Example", "name:target.example"),
    ],
)
def test_canonical_address(address: str, canonical: str) -> None:
    assert canonical_address(address) == canonical


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (_src("localhost"), _src("127.0.0.1"), True),
        (_src("localhost", None), _src("127.0.0.1", 3260), True),  # no port = 3260
        (_src("127.0.0.1", 0), _src("127.0.0.1", None), True),  # port 0 = 3260
        (_src("::1"), _src("127.0.0.1"), True),  # every loopback address is this host
        (_src("[::1]"), _src("::1"), True),
        (_src("127.0.0.1", target=TARGET.upper()), _src("127.0.0.1"), True),  # RFC 3722
        (_src("LocalHost"), _src("localhost"), True),
        (_src(UNRESOLVABLE), _src(UNRESOLVABLE.upper()), True),
        (_src("127.0.0.1", 3261), _src("127.0.0.1", 3260), False),
        (_src("127.0.0.1", target=TARGET + "x"), _src("127.0.0.1"), False),
        (_src("10.0.0.1"), _src("127.0.0.1"), False),
        (_src(UNRESOLVABLE), _src("127.0.0.1"), False),
    ],
)
def test_same_target(a: PoolSource, b: PoolSource, same: bool) -> None:
    assert same_target(a, b) is same
    assert same_target(b, a) is same


def test_lock_keys_name_the_lun_not_the_host_string() -> None:
    keys = lun_lock_keys(_src("localhost"), 2)
    assert keys == [f"loopback 3260 {TARGET} 2"]
    assert lun_lock_keys(_src("127.0.0.1"), 2) == keys
    assert lun_lock_keys(_src("::1", None), 2) == keys
    assert lun_lock_keys(_src("127.0.0.1", target=TARGET.upper()), 2) == keys
    assert lun_lock_keys(_src("127.0.0.1"), 3) != keys
    assert lun_lock_keys(_src("127.0.0.1", 3261), 2) != keys
    assert lun_lock_keys(_src("127.0.0.1", target=TARGET + "x"), 2) != keys
    assert lun_lock_keys(_src("127.0.0.1", initiator=INITIATOR + "x"), 2) == keys
    assert lun_lock_keys(_src(UNRESOLVABLE), 2) == [f"name:{UNRESOLVABLE} 3260 {TARGET} 2"]
    assert lun_lock_keys(_src("127.0.0.1", 70000), 2) == [f"loopback 70000 {TARGET} 2"]


# ----------------------------------------------------------------- source conflict


def _store(tmp: Path) -> Store:
    return Store(StorePaths.under(tmp / "state"))


CONFLICT = "operation failed: Storage source conflict with pool: 'pa'"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "::1", "::ffff:127.0.0.1"])
def test_define_and_create_refuse_a_second_pool_on_the_same_target(
    tmp_path: Path, host: str
) -> None:
    store = _store(tmp_path)
    store.define(PoolDef("pa", UUID_A, _src("127.0.0.1")))
    other = PoolDef("pb", UUID_B, _src(host, None))
    with pytest.raises(StateError, match=f"^{CONFLICT}$"):
        store.define(other)
    with pytest.raises(StateError, match=f"^{CONFLICT}$"):
        store.create_transient(other)
    assert [r.name for r in store.list_pools()] == ["pa"]  # nothing written
    assert not store.state_path("pb").exists()


def test_what_is_not_a_conflict(tmp_path: Path) -> None:
    store = _store(tmp_path)
    pa = store.define(PoolDef("pa", UUID_A, _src("127.0.0.1"))).pool
    # the same pool redefined (same name and UUID), even onto another host alias
    store.define(replace(pa, source=_src("localhost")))
    # another initiator: another I_T nexus (libvirt's rule); another port; another target
    store.define(PoolDef("pb", UUID_B, _src("localhost", initiator=INITIATOR + "-2")))
    store.create_transient(
        PoolDef("pc", "31111111-2222-4333-8444-555555555555", _src("127.0.0.1", 3261))
    )
    store.define(
        PoolDef("pd", "41111111-2222-4333-8444-555555555555", _src("::1", target=TARGET + "x"))
    )
    assert [r.name for r in store.list_pools()] == ["pa", "pb", "pc", "pd"]


def test_a_running_pool_conflicts_through_its_live_and_its_new_definition(tmp_path: Path) -> None:
    store = _store(tmp_path)
    pa = store.define(PoolDef("pa", UUID_A, _src("127.0.0.1")))
    store.save_state("pa", PoolState(active=True))  # running on TARGET
    store.define(replace(pa.pool, source=_src("127.0.0.1", target=TARGET + "-new")))
    for target in (TARGET, TARGET + "-new"):  # the live one and the one for the next start
        with pytest.raises(StateError, match=f"^{CONFLICT}$"):
            store.define(PoolDef("pb", UUID_B, _src("localhost", target=target)))


def test_cli_pool_define_names_the_other_pool(tmp_path: Path, run_cli: RunCli) -> None:
    def xml(name: str, host: str) -> Path:
        path = tmp_path / f"{name}.xml"
        path.write_text(
            f"<pool type='iscsi-direct'><name>{name}</name><source>"
            f"<host name='{host}'/><device path='{TARGET}'/>"
            f"<initiator><iqn name='{INITIATOR}'/></initiator></source></pool>"
        )
        return path

    assert run_cli("pool-define", str(xml("pa", "127.0.0.1")))[0] == 0
    for cmd in ("pool-define", "pool-create"):
        assert run_cli(cmd, str(xml("pb", "localhost"))) == (1, "", f"error: {CONFLICT}\n")
    rc, out, _ = run_cli("pool-list", "--all", "--name")
    assert (rc, out) == (0, "pa                  \n\n")
