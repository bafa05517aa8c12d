"""Which volume a VOL argument names: virsh's rules, one lookup for every command.

Two active pools whose volumes have the same names (``unit:0:0:1`` and ``unit:0:0:2`` in
both) are written straight into a private store; every form of VOL (name with ``--pool``,
bare name, key, path, unknown …) is resolved by :func:`poolbackend.pool.lookup.find_volume`
and then run through every volume command of the CLI (in process), checking which pool's
LUN each one acted on, or virsh's exact error lines. The commands that do I/O point at
portals where nothing listens, so the connection error names the portal and target they
chose; tests/integration/test_vol_lookup_tgt.py does the same against tgtd and reads the LUNs.
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolbackend.cli.main import main
from poolbackend.errors import ConfigError, NotFoundError, PoolBackendError, StateError
from poolbackend.pool.lookup import find_volume, sanitize_path
from poolbackend.pool.model import PoolDef, PoolSource, PoolState, Volume
from poolbackend.pool.store import Store, StorePaths

INITIATOR = "iqn.2026-11.example:initiator1"
UUID_A = "11111111-2222-4333-8444-555555555555"
UUID_B = "21111111-2222-4333-8444-555555555555"
UUID_C = "31111111-2222-4333-8444-555555555555"
UUID_D = "41111111-2222-4333-8444-555555555555"
UUID_E = "51111111-2222-4333-8444-555555555555"
HINT = ", specifying --pool might help"


@pytest.fixture(scope="module")
def closed_ports() -> Iterator[tuple[int, int]]:
    """Two loopback ports bound but not listening: a connect is refused at once."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        yield a.getsockname()[1], b.getsockname()[1]


def _pool(name: str, uuid: str, port: int, target: str, initiator: str = INITIATOR) -> PoolDef:
    return PoolDef(name, uuid, PoolSource("127.0.0.1", port, target, initiator))


def _volumes(pool: PoolDef) -> tuple[Volume, ...]:
    return tuple(
        Volume.for_lun(pool.source, lun, capacity=lun << 20, block_size=512) for lun in (1, 2)
    )


def _start(store: Store, pool: PoolDef) -> PoolDef:
    store.define(pool)
    store.save_state(pool.name, PoolState(active=True, volumes=_volumes(pool)))
    return pool


@pytest.fixture
def pools(state_dir: Path, closed_ports: tuple[int, int]) -> dict[str, PoolDef]:
    """pa and pb active on two targets (same volume names), pc inactive; pd and pe share
    one target through one host with different initiator names (identical volume keys)."""
    store = Store(StorePaths.under(state_dir))
    port_a, port_b = closed_ports
    made = {
        "pa": _start(store, _pool("pa", UUID_A, port_a, "iqn.2026-11.example:ta")),
        "pb": _start(store, _pool("pb", UUID_B, port_b, "iqn.2026-11.example:tb")),
        "pd": _start(store, _pool("pd", UUID_D, port_a, "iqn.2026-11.example:td")),
        "pe": _start(
            store, _pool("pe", UUID_E, port_a, "iqn.2026-11.example:td", INITIATOR + "-2")
        ),
    }
    made["pc"] = _pool("pc", UUID_C, port_a, "iqn.2026-11.example:tc")
    store.define(made["pc"])
    return made


def _key(pool: PoolDef, lun: int) -> str:
    return Volume.for_lun(pool.source, lun).key


# ------------------------------------------------------------------------ find_volume


def test_lookup_matrix(state_dir: Path, pools: dict[str, PoolDef]) -> None:
    store = Store(StorePaths.under(state_dir))
    pa, pb = pools["pa"], pools["pb"]
    found = {
        ("unit:0:0:1", "pb"): ("pb", 1),  # name with --pool: that pool's volume
        ("unit:0:0:2", "pa"): ("pa", 2),
        ("unit:0:0:1", UUID_B): ("pb", 1),  # --pool by UUID
        (_key(pb, 1), None): ("pb", 1),  # key
        (_key(pa, 2), None): ("pa", 2),
        (_key(pb, 2), "pb"): ("pb", 2),  # key with its own pool
        (_key(pa, 1) + "/", None): ("pa", 1),  # path (libvirt sanitizes trailing '/')
        (_key(pb, 1) + "//", "pb"): ("pb", 1),
        (_key(pools["pd"], 1), "pe"): ("pe", 1),  # a key two pools share, with --pool
    }
    for (vol, pool), (want_pool, lun) in found.items():
        record, volume = find_volume(store, vol, pool)
        assert (record.name, volume.lun) == (want_pool, lun), (vol, pool)
        assert volume.key == _key(pools[want_pool], lun)

    not_found = {
        # (vol, pool): (lead, message)
        ("unit:0:0:1", None): (
            "failed to get vol 'unit:0:0:1'" + HINT,
            "Storage volume not found: no storage vol with matching path 'unit:0:0:1'",
        ),
        ("unit:0:0:9", "pa"): (
            "failed to get vol 'unit:0:0:9'",
            "Storage volume not found: no storage vol with matching path 'unit:0:0:9'",
        ),
        ("x//y/", None): (
            "failed to get vol 'x//y/'" + HINT,
            "Storage volume not found: no storage vol with matching path 'x//y/' (x/y)",
        ),
        (_key(pb, 1), "pa"): (None, f"Requested volume '{_key(pb, 1)}' is not in pool 'pa'"),
        ("unit:0:0:1", "nosuch"): (
            "failed to get pool 'nosuch'",
            "Storage pool not found: no storage pool with matching name 'nosuch'",
        ),
        (_key(pools["pd"], 1), None): (
            f"failed to get vol '{_key(pools['pd'], 1)}'" + HINT,
            f"volume key '{_key(pools['pd'], 1)}' is in several pools ('pd', 'pe'): "
            "name the pool with --pool",
        ),
        ("unit:0:0:1\nerror: forged", None): (
            "failed to get vol 'unit:0:0:1\\nerror: forged'" + HINT,
            "Storage volume not found: no storage vol with matching path "
            "'unit:0:0:1\\nerror: forged'",
        ),
    }
    for (vol, pool), (lead, message) in not_found.items():
        with pytest.raises(NotFoundError) as info:
            find_volume(store, vol, pool)
        assert (info.value.lead, str(info.value)) == (lead, message), (vol, pool)

    with pytest.raises(NotFoundError) as info:
        find_volume(store, "unit:0:0:1", None, pool_option=None)  # vol-name / vol-pool
    assert info.value.lead == "failed to get vol 'unit:0:0:1'"
    with pytest.raises(StateError, match=r"^pool 'pc' is not active$") as state:
        find_volume(store, "unit:0:0:1", "pc")
    assert state.value.lead is None
    with pytest.raises(ConfigError, match=r"^Failed to get option 'vol': Option argument is empty"):
        find_volume(store, "", "pa")
    with pytest.raises(ConfigError, match=r"^Failed to get option 'pool': Option argument is"):
        find_volume(store, "unit:0:0:1", "")


def test_a_damaged_pool_does_not_hide_the_others(
    state_dir: Path, pools: dict[str, PoolDef]
) -> None:
    store = Store(StorePaths.under(state_dir))
    store.state_path("pa").write_text("<poolstate>not a state")
    record, volume = find_volume(store, _key(pools["pb"], 2), None)
    assert (record.name, volume.lun) == ("pb", 2)


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("a//b/", "a/b"),
        ("x/", "x"),
        ("//x", "//x"),  # a leading // is kept (POSIX), ///x is /x
        ("///x", "/x"),
        ("/", "/"),
        ("/foo///bar/", "/foo/bar"),
        ("iscsi://h//t", "iscsi://h//t"),  # URIs are left alone
        ("a/iscsi://h//t", "a/iscsi:/h/t"),
        ("", ""),
    ],
)
def test_sanitize_path_like_libvirt(path: str, clean: str) -> None:
    assert sanitize_path(path) == clean


# ------------------------------------------------------------------- every command


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


# command -> (extra arguments after VOL, what the output says on success)
READERS = ["vol-info", "vol-dumpxml", "vol-key", "vol-path", "vol-name", "vol-pool"]
WRITERS = ["vol-wipe", "vol-download", "vol-upload"]
DOMAIN_COMMANDS = ["attach-volume", "detach-volume"]


def _argv(cmd: str, vol: str, pool: str | None, tmp: Path) -> list[str]:
    argv = [cmd]
    if cmd in DOMAIN_COMMANDS:
        argv += ["test", vol, "-c", "test:///default"]
        if cmd == "attach-volume":
            argv.append("--print-xml")
    elif cmd == "vol-download":
        argv += [vol, str(tmp / "out.bin")]
    elif cmd == "vol-upload":
        argv += [vol, str(tmp / "in.bin")]
    else:
        argv.append(vol)
    return argv + (["--pool", pool] if pool is not None else [])


def _acted_on(cmd: str, pool: PoolDef, lun: int, rc: int, out: str, err: str) -> None:
    """Assert that ``cmd`` acted on ``lun`` of ``pool`` (and on nothing else)."""
    key = _key(pool, lun)
    target = pool.source.target_iqn
    if cmd == "vol-info":
        assert (rc, err) == (0, "") and out.startswith(f"Name:           unit:0:0:{lun}\n")
        assert f"Capacity:       {lun}.00 MiB\n" in out  # the sizes tell the LUNs apart
    elif cmd == "vol-dumpxml":
        assert (rc, err) == (0, "") and f"<key>{key}</key>" in out
    elif cmd in ("vol-key", "vol-path"):
        assert (rc, out, err) == (0, key + "\n\n", "")
    elif cmd == "vol-name":
        assert (rc, out, err) == (0, f"unit:0:0:{lun}\n\n", "")
    elif cmd == "vol-pool":
        assert (rc, out, err) == (0, pool.name + "\n\n", "")
    elif cmd == "attach-volume":
        assert (rc, err) == (0, "") and f'name="{target}/{lun}"' in out
        assert f'port="{pool.source.port}"' in out
    elif cmd == "detach-volume":  # the test domain has no such disk: the refusal names it
        assert (rc, out) == (1, "")
        assert err == (
            f"error: volume 'unit:0:0:{lun}' of pool '{pool.name}' is not attached to "
            "domain 'test'\n"
        )
    else:  # I/O: nothing listens at the pool's portal; the error names the one it chose
        assert (rc, out) == (1, ""), err
        assert err.startswith(f"error: portal 127.0.0.1:{pool.source.port}"), err
        assert "Connection refused" in err, err


@pytest.mark.parametrize("cmd", READERS + WRITERS + DOMAIN_COMMANDS)
def test_every_volume_command_resolves_vol_like_virsh(
    cmd: str, tmp_path: Path, pools: dict[str, PoolDef]
) -> None:
    (tmp_path / "in.bin").write_bytes(b"\x55" * 512)
    pa, pb = pools["pa"], pools["pb"]
    # (VOL, --pool) -> (pool, lun) it must act on
    good = [
        ("unit:0:0:1", "pb", pb, 1),
        ("unit:0:0:2", "pa", pa, 2),
        (_key(pb, 2), None, pb, 2),
        (_key(pa, 1), "pa", pa, 1),
        (_key(pa, 2) + "/", None, pa, 2),
    ]
    for vol, pool, want, lun in good:
        rc, out, err = _run(*_argv(cmd, vol, pool, tmp_path))
        _acted_on(cmd, want, lun, rc, out, err)
    (tmp_path / "out.bin").unlink(missing_ok=True)  # what a failed download leaves is not ours
    hint = "" if cmd in ("vol-name", "vol-pool") else HINT
    bad = [
        (
            "unit:0:0:1",
            None,
            f"error: failed to get vol 'unit:0:0:1'{hint}\n"
            "error: Storage volume not found: no storage vol with matching path 'unit:0:0:1'\n",
        ),
        (
            "unit:0:0:7",
            "pa",
            "error: failed to get vol 'unit:0:0:7'\n"
            "error: Storage volume not found: no storage vol with matching path 'unit:0:0:7'\n",
        ),
        (_key(pb, 1), "pa", f"error: Requested volume '{_key(pb, 1)}' is not in pool 'pa'\n"),
        (
            "unit:0:0:1",
            "nosuch",
            "error: failed to get pool 'nosuch'\n"
            "error: Storage pool not found: no storage pool with matching name 'nosuch'\n",
        ),
        ("unit:0:0:1", "pc", "error: pool 'pc' is not active\n"),
    ]
    if cmd == "detach-volume":  # works on an inactive pool: from its definition
        bad[-1] = (
            "unit:0:0:1",
            "pc",
            "error: volume 'unit:0:0:1' of pool 'pc' is not attached to domain 'test'\n",
        )
    for vol, pool, message in bad:
        rc, out, err = _run(*_argv(cmd, vol, pool, tmp_path))
        assert (rc, out, err) == (1, "", message), (vol, pool)
    assert not (tmp_path / "out.bin").exists()  # refused before the output is touched


def test_positional_pool_is_the_pool(pools: dict[str, PoolDef]) -> None:
    """virsh takes the pool positionally too (``vol-info VOL POOL``)."""
    rc, out, _ = _run("vol-pool", "unit:0:0:1", "pb")
    assert (rc, out) == (0, "pb\n\n")
    rc, out, _ = _run("vol-key", "unit:0:0:2", "pa")
    assert (rc, out) == (0, _key(pools["pa"], 2) + "\n\n")


def test_lead_is_printed_before_the_message() -> None:
    err = PoolBackendError("libvirt's line", lead="virsh's line")
    assert (str(err), err.lead) == ("libvirt's line", "virsh's line")
    assert PoolBackendError("x").lead is None


def test_hint_names_the_pool_option_and_backing_vol_searches_any_pool(
    tmp_path: Path, pools: dict[str, PoolDef]
) -> None:
    """vol-create-from's pool option is --inputpool; --backing-vol: name in the pool, any key."""
    xml = tmp_path / "vol.xml"
    xml.write_text("<volume><name>copy</name><capacity>1</capacity></volume>")
    rc, out, err = _run("vol-create-from", "pa", str(xml), "unit:0:0:1")
    assert (rc, out) == (1, "")
    assert err == (
        "error: failed to get vol 'unit:0:0:1', specifying --inputpool might help\n"
        "error: Storage volume not found: no storage vol with matching path 'unit:0:0:1'\n"
    )
    key_b = _key(pools["pb"], 1)
    for pool, vol, path in (
        ("pa", "unit:0:0:1", _key(pools["pa"], 1)),  # a name of the new volume's pool
        ("pa", key_b, key_b),  # another pool's key is fine here (virsh does no pool check)
        ("pc", key_b, key_b),  # the pool may be inactive
    ):
        rc, out, err = _run("vol-create-as", pool, "new", "1M", "--backing-vol", vol, "--print-xml")
        assert (rc, err) == (0, "") and f"<path>{path}</path>" in out, (pool, vol)
    rc, out, err = _run(
        "vol-create-as", "pc", "new", "1M", "--backing-vol", "unit:0:0:1", "--print-xml"
    )
    assert (rc, out) == (1, "")
    assert err == (
        "error: failed to get vol 'unit:0:0:1'\n"
        "error: Storage volume not found: no storage vol with matching path 'unit:0:0:1'\n"
    )
