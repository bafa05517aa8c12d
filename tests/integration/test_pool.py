"""The iscsi-direct pool through the CLI, against a real tgtd."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.harness.tgtd import Tgtd

MiB = 1 << 20
IQN = "iqn.2026-11.example:target1"
CHAP_IQN = "iqn.2026-11.example:chap"
INITIATOR = "iqn.2026-11.example:initiator1"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tgt() -> Iterator[Tgtd]:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 64 * MiB)
        t.add_lun(1, 2, 128 * MiB)
        t.add_lun(1, 3, 8 * MiB, blocksize=4096)
        t.add_lun(1, 4, 2049 * 512, fill=b"\xff")  # 128*16+1 blocks: libvirt misses the last
        t.new_target(2, CHAP_IQN)
        t.add_lun(2, 1, 32 * MiB)
        t.add_account("chapuser", "chapsecret12345")
        t.bind_account(2, "chapuser")
        t.add_account("outuser", "outsecret12345")
        t.bind_account(2, "outuser", outgoing=True)
        yield t


class Pb:
    """The CLI with a private state directory; checks exit status and error format."""

    def __init__(self, run_cli: RunCli, state: Path) -> None:
        self.run = run_cli
        self.state = state

    def __call__(self, *args: str, ok: bool = True, input: str | None = None) -> str:
        rc, out, err = self.run(*args, input=input, timeout=120)
        if ok:
            assert rc == 0, f"{args}: {err}"
            return str(out)
        assert rc != 0, f"{args} unexpectedly succeeded: {out}"
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert lines and all(line.startswith(("error: ", "warning: ")) for line in lines), err
        return str(err)


@pytest.fixture
def pb(run_cli: RunCli, state_dir: Path) -> Pb:
    return Pb(run_cli, state_dir)


def pool_xml(
    tmp: Path, tgt: Tgtd, name: str = "iscsi-pool", example: str = "pool.xml", target: str = IQN
) -> str:
    xml = (ROOT / "xml-examples" / example).read_text()
    xml = xml.replace("port='3260'", f"port='{tgt.port}'")
    xml = re.sub(r"<name>[^<]*</name>", f"<name>{name}</name>", xml)
    xml = xml.replace(IQN, target) if target != IQN else xml
    path = tmp / f"{name}.xml"
    path.write_text(xml)
    return str(path)


def test_pool_lifecycle_and_virsh_output(pb: Pb, tgt: Tgtd, tmp_path: Path) -> None:
    assert pb("pool-define", pool_xml(tmp_path, tgt)).startswith("Pool iscsi-pool defined from ")
    assert "inactive" in pb("pool-list", "--all")
    assert pb("pool-start", "iscsi-pool") == "Pool iscsi-pool started\n\n"
    assert pb("pool-refresh", "iscsi-pool") == "Pool iscsi-pool refreshed\n\n"
    portal = f"127.0.0.1:{tgt.port}"
    assert pb("vol-list", "iscsi-pool") == "".join(
        [
            " Name         Path\n",
            "-" * (10 + 3 + len(f"ip-{portal}-iscsi-{IQN}-lun-0") + 3) + "\n",
            *(f" unit:0:0:{n}   ip-{portal}-iscsi-{IQN}-lun-{n}\n" for n in range(5)),
            "\n",
        ]
    )
    details = pb("vol-list", "--details", "--pool", "iscsi-pool")
    assert "network   64.00 MiB    64.00 MiB" in details
    info = pb("vol-info", "--pool", "iscsi-pool", "unit:0:0:1", "--bytes")
    assert "Capacity:       67108864 bytes" in info  # exact; libvirt says 67108352
    assert "Capacity:       8388608 bytes" in pb(
        "vol-info", "--bytes", f"ip-{portal}-iscsi-{IQN}-lun-3"
    )
    total = 64 * MiB + 128 * MiB + 8 * MiB + 2049 * 512
    assert f"Capacity:       {total}" in pb("pool-info", "--bytes", "iscsi-pool")
    xml = pb("pool-dumpxml", "iscsi-pool")
    assert f"<capacity unit='bytes'>{total}</capacity>" in xml
    assert "<available unit='bytes'>0</available>" in xml
    vol_xml = pb("vol-dumpxml", "--pool", "iscsi-pool", "unit:0:0:2")
    assert "<capacity unit='bytes'>134217728</capacity>" in vol_xml
    assert (
        pb("vol-key", "--pool", "iscsi-pool", "unit:0:0:2").strip()
        == f"ip-{portal}-iscsi-{IQN}-lun-2"
    )
    assert pb("vol-name", f"ip-{portal}-iscsi-{IQN}-lun-2").strip() == "unit:0:0:2"
    uuid = pb("pool-uuid", "iscsi-pool").strip()
    assert pb("pool-name", uuid).strip() == "iscsi-pool"
    assert "is still active" in pb("pool-undefine", "iscsi-pool", ok=False)
    assert pb("pool-destroy", "iscsi-pool") == "Pool iscsi-pool destroyed\n\n"
    assert "is not active" in pb("vol-list", "iscsi-pool", ok=False)
    assert pb("pool-undefine", "iscsi-pool") == "Pool iscsi-pool has been undefined\n\n"
    assert "no storage pool with matching name 'iscsi-pool'" in pb(
        "pool-info", "iscsi-pool", ok=False
    )


def test_chap_and_mutual_chap_pools(pb: Pb, tgt: Tgtd, tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text((ROOT / "xml-examples" / "secret.xml").read_text())
    out = pb("secret-define", str(secret))
    assert out.startswith("Secret ") and out.endswith(" created\n\n")
    pb("secret-set-value", "target1-chap", input="chapsecret12345\n")
    chap = pool_xml(tmp_path, tgt, "chap-pool", "pool-chap.xml", CHAP_IQN)
    chap_text = Path(chap).read_text()
    assert "username='chapuser'" in chap_text
    pb("pool-create", chap)
    assert "32.00 MiB" in pb("vol-list", "--details", "chap-pool")
    pb("pool-destroy", "chap-pool")
    # Wrong secret value: a clear error, the pool stays inactive, the secret never printed.
    pb("secret-set-value", "target1-chap", input="wrong-password-123\n")
    pb("pool-define", chap)
    err = pb("pool-start", "chap-pool", ok=False)
    assert "authentication failed" in err and "wrong-password" not in err
    assert "inactive" in pb("pool-list", "--all")
    # Secret files are private.
    for f in (pb.state / "secrets").rglob("*"):
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode & 0o077 == 0, f"{f} is {oct(mode)}"


def test_mutual_chap_pool(pb: Pb, tgt: Tgtd, tmp_path: Path) -> None:
    text = (ROOT / "xml-examples" / "pool-mutual-chap.xml").read_text()
    xml_path = pool_xml(tmp_path, tgt, "mutual", "pool-mutual-chap.xml", CHAP_IQN)
    assert "pb:target-auth" in text
    usages = re.findall(r"usage='([^']+)'", text)
    assert len(usages) == 2
    for usage, value in zip(usages, ["chapsecret12345", "outsecret12345"], strict=True):
        (tmp_path / f"{usage}.xml").write_text(
            "<secret ephemeral='no' private='no'><usage type='iscsi'>"
            f"<target>{usage}</target></usage></secret>"
        )
        pb("secret-define", str(tmp_path / f"{usage}.xml"))
        pb("secret-set-value", usage, input=value)
    user = re.search(r"<auth type='chap' username='([^']+)'", text)
    tuser = re.search(r"target-auth username='([^']+)'", text)
    assert user and tuser
    xml = Path(xml_path).read_text().replace(f"username='{user.group(1)}'", "username='chapuser'")
    xml = xml.replace(f"username='{tuser.group(1)}'", "username='outuser'")
    xml = re.sub(r"algorithms='[^']*'", "algorithms='5'", xml)
    xml = re.sub(r"header='[^']*'", "header='None,CRC32C'", xml)
    Path(xml_path).write_text(xml)
    pb("pool-create", xml_path)
    assert "unit:0:0:1" in pb("vol-list", "mutual")
    # The target answering with the wrong outgoing secret fails mutual authentication.
    pb("pool-destroy", "mutual")
    pb("secret-set-value", usages[1], input="not-the-target-secret")
    assert "mutual CHAP failed" in pb("pool-create", xml_path, ok=False)


def test_many_luns_and_luns_appearing_between_refreshes(pb: Pb, tmp_path: Path) -> None:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        luns = [*range(1, 300), 300, 1000]
        t.add_luns(1, luns, 1 * MiB)
        pb("pool-create", pool_xml(tmp_path, t))
        names = {line.split()[0] for line in pb("vol-list", "iscsi-pool").splitlines()[2:-1]}
        assert names == {f"unit:0:0:{n}" for n in [0, *luns]}
        t.delete_lun(1, 1000)
        t.add_lun(1, 4000, 2 * MiB)
        pb("pool-refresh", "iscsi-pool")
        listing = pb("vol-list", "--details", "iscsi-pool")
        assert "unit:0:0:1000 " not in listing
        assert "unit:0:0:4000" in listing and "2.00 MiB" in listing


def test_failing_lun_is_left_out_and_unreachable_target_deactivates(pb: Pb, tmp_path: Path) -> None:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, 1 * MiB)
        t.add_lun(1, 2, 1 * MiB)
        pb("pool-define", pool_xml(tmp_path, t))
        t.lun_params(1, 2, online=0)
        rc, _, err = pb.run("pool-start", "iscsi-pool")
        assert rc == 0
        assert "warning: LUN 2 left out:" in err and "NOT READY" in err
        assert "unit:0:0:2" not in pb("vol-list", "iscsi-pool")
        t.kill()
        err = pb("pool-refresh", "iscsi-pool", ok=False)
        assert f"portal 127.0.0.1:{t.port}" in err
    assert "inactive" in pb("pool-list", "--all")
    assert "<name>iscsi-pool</name>" in pb("pool-dumpxml", "iscsi-pool")  # definition intact


def test_wipe_every_block_including_the_last(pb: Pb, tgt: Tgtd, tmp_path: Path) -> None:
    pb("pool-create", pool_xml(tmp_path, tgt))
    backing = tgt.backing_path(1, 4)
    backing.write_bytes(b"\xff" * (2049 * 512))
    assert pb("vol-wipe", "--pool", "iscsi-pool", "unit:0:0:4") == "Vol unit:0:0:4 wiped\n\n"
    assert backing.read_bytes() == bytes(2049 * 512)
    backing.write_bytes(b"\x11" * (2049 * 512))
    pb("vol-wipe", "--pool", "iscsi-pool", "unit:0:0:4", "--algorithm", "dod")
    assert backing.read_bytes() == b"\xff" * (2049 * 512)  # dod ends with 0xff, verified
    assert "unsupported wipe algorithm 'bogus'" in pb(
        "vol-wipe", "--pool", "iscsi-pool", "unit:0:0:4", "--algorithm", "bogus", ok=False
    )


def test_download_upload_round_trip(pb: Pb, tgt: Tgtd, tmp_path: Path) -> None:
    pb("pool-create", pool_xml(tmp_path, tgt))
    src = tmp_path / "src.bin"
    payload = os.urandom(5 * MiB + 123)
    src.write_bytes(payload)
    pb("vol-upload", "--pool", "iscsi-pool", "unit:0:0:3", str(src), "--offset", "4096")
    out = tmp_path / "out.bin"
    pb(
        "vol-download",
        "--pool",
        "iscsi-pool",
        "unit:0:0:3",
        str(out),
        "--offset",
        "4096",
        "--length",
        str(len(payload)),
    )
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(payload).digest()
    whole = tmp_path / "whole.bin"
    pb("vol-download", "--pool", "iscsi-pool", "unit:0:0:3", str(whole), "--sparse")
    assert whole.stat().st_size == 8 * MiB
    assert whole.read_bytes()[4096 : 4096 + len(payload)] == payload
    assert "exceeds LUN 3" in pb(
        "vol-upload",
        "--pool",
        "iscsi-pool",
        "unit:0:0:3",
        str(src),
        "--offset",
        str(4 * MiB),
        ok=False,
    )


def test_find_sources_lists_every_target(pb: Pb, tgt: Tgtd) -> None:
    out = pb(
        "find-storage-pool-sources-as",
        "iscsi-direct",
        "127.0.0.1",
        str(tgt.port),
        "--initiator",
        INITIATOR,
    )
    assert out.count("<source>") == 2
    assert f"<device path='{IQN}'/>" in out and f"<device path='{CHAP_IQN}'/>" in out
    assert f"<host name='127.0.0.1' port='{tgt.port}'/>" in out
    err = pb("find-storage-pool-sources-as", "iscsi-direct", "127.0.0.1", str(tgt.port), ok=False)
    assert "missing initiator IQN" in err


def test_bad_pool_xml_changes_nothing(pb: Pb, tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text(
        "<pool type='iscsi-direct'><name>p</name><source><host name='h'/>"
        "<device path='iqn.2026-11.example:t'/></source></pool>"
    )
    assert "missing initiator IQN" in pb("pool-define", str(bad), ok=False)
    assert pb("pool-list", "--all").count("\n") == 3  # header, rule, blank: no pool


def test_thin_lun_trim_and_zero_with_unmap(pb: Pb, tmp_path: Path) -> None:
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        backing = t.add_lun(1, 1, 4 * MiB, thin=True, fill=b"\xab")
        t.add_lun(1, 2, 1 * MiB, fill=b"\xcd")  # thick
        pb("pool-create", pool_xml(tmp_path, t))
        info = pb("vol-info", "--scsi", "--pool", "iscsi-pool", "unit:0:0:0")
        assert "Device type:    STORAGE_ARRAY_CONTROLLER (12)" in info
        pb("vol-wipe", "--pool", "iscsi-pool", "unit:0:0:1", "--algorithm", "trim")
        assert backing.read_bytes() == bytes(4 * MiB)
        assert backing.stat().st_blocks * 512 < 4 * MiB  # holes were punched
        err = pb("vol-wipe", "--pool", "iscsi-pool", "unit:0:0:2", "--algorithm", "trim", ok=False)
        assert "not thin-provisioned" in err
        backing.write_bytes(b"\xee" * (4 * MiB))
        pb("vol-wipe", "--pool", "iscsi-pool", "unit:0:0:1")  # zero: WRITE SAME(16) with UNMAP
        assert backing.read_bytes() == bytes(4 * MiB)
