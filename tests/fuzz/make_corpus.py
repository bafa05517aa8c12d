"""Regenerate the seed corpus in ``tests/fuzz/corpus/`` from a real tgtd.

    python -m tests.fuzz.make_corpus            # needs tgtd/tgtadm (Debian package tgt)

A private tgtd (tests/harness) gets three targets -- no auth, CHAP, mutual CHAP -- with the
accounts of :mod:`tests.fuzz.targets`. For every digest combination we log in with the
sans-IO Connection over a plain loopback socket, run the pdu target's command script
(:func:`~tests.fuzz.targets.issue_script`) and record the exact bytes tgt sends, so the
seeds are real tgt PDUs (login responses, CHAP challenges, Data-In, R2T, SCSI Response with
sense, Text Response, NOP-In) that the targets replay byte for byte. SCSI parser seeds are
the data-in of real INQUIRY/VPD/REPORT LUNS/READ CAPACITY commands; XML and URL seeds come
from xml-examples/ and the formatters.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import sys
import time
from pathlib import Path

from poolbackend.iscsi.connection import Connection
from poolbackend.iscsi.events import Event, LoginComplete, TaskCompleted
from poolbackend.scsi import cdb as C
from tests.fuzz import targets as T
from tests.harness.tgtd import MiB, Tgtd

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ROOT = HERE.parents[1]


class Recorder:
    """A Connection on a real socket that keeps every byte the target sent."""

    def __init__(self, port: int, conn: Connection) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = conn
        self.received = bytearray()

    def send(self) -> None:
        for buf in self.conn.data_to_send():
            self.sock.sendall(bytes(buf))

    def pump(self, until: int, timeout: float = 10.0) -> list[Event]:
        """Read until ``until`` events arrived; return them."""
        events: list[Event] = []
        deadline = time.monotonic() + timeout
        while len(events) < until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(events)} of {until} events")
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("target closed the connection")
            self.received += chunk
            events += self.conn.receive_data(chunk)
            self.send()
        return events

    def login(self) -> bytes:
        self.conn.start_login()
        self.send()
        events = self.pump(1)
        assert isinstance(events[0], LoginComplete), events
        raw = bytes(self.received)
        self.received.clear()
        return raw

    def close(self) -> None:
        self.sock.close()


def _write(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def _segments(stream: bytes, header_digest: bool, data_digest: bool) -> list[bytes]:
    """Data segments of the PDUs in a recorded stream."""
    out, pos = [], 0
    hd = 4 if header_digest else 0
    while pos + 48 <= len(stream):
        dlen = int.from_bytes(stream[pos + 5 : pos + 8], "big")
        start = pos + 48 + stream[pos + 4] * 4 + hd
        out.append(stream[start : start + dlen])
        pos = start + dlen + (-dlen & 3) + (4 if data_digest and dlen else 0)
    return out


def send_targets_reply(t: Tgtd) -> bytes:
    """tgt's Text Response(s) to SendTargets=All on a discovery session (no digests)."""
    rec = Recorder(t.port, Connection(T.login_config(None, 0), 1))
    rec.login()
    rec.conn.text_request([("SendTargets", "All")])
    rec.send()
    rec.pump(1)
    rec.close()
    return bytes(rec.received)


def record_pdu_streams(t: Tgtd) -> dict[str, bytes]:
    """pdu seeds; returns the SCSI data-in of the commands for the scsi seeds."""
    data_in: dict[str, bytes] = {}
    for mode in range(4):
        with T.deterministic_chap():
            rec = Recorder(t.port, Connection(T.login_config(T.TARGET_IQN, mode), 1))
            rec.login()
            tasks = T.issue_script(rec.conn, text=False)
            rec.send()
            events = rec.pump(len(tasks))
            stream = bytes(rec.received)
            text_itt = max(tasks) + 1  # what issue_script gives the Text Request
            if mode == 0:
                for ev in events:
                    if isinstance(ev, TaskCompleted):
                        what = tasks[ev.itt][0]
                        data_in[what] = bytes(ev.result.data)
                        if ev.result.sense:
                            data_in["sense"] = ev.result.sense
                # More data-in for the scsi seeds on the same session.
                extra = {
                    "vpd00": (C.inquiry(evpd=True, page=0x00, alloc=255), 255),
                    "vpd80": (C.inquiry(evpd=True, page=0x80, alloc=255), 255),
                    "vpdb0": (C.inquiry(evpd=True, page=0xB0, alloc=255), 255),
                    "vpdb2": (C.inquiry(evpd=True, page=0xB2, alloc=255), 255),
                    "cap10": (C.read_capacity10(), 8),
                    "vpdb1": (C.inquiry(evpd=True, page=0xB1, alloc=255), 255),
                }
                itts = {
                    rec.conn.scsi_command(1, cdb, read_len=n): k for k, (cdb, n) in extra.items()
                }
                rec.send()
                for ev in rec.pump(len(itts)):
                    if isinstance(ev, TaskCompleted):
                        if ev.result.sense:
                            data_in[f"sense-{itts[ev.itt]}"] = ev.result.sense
                        else:
                            data_in[itts[ev.itt]] = bytes(ev.result.data)
            rec.close()
        _write("pdu", f"tgt-script-digests{mode}", bytes([mode]) + stream)
        if mode == 0:
            reply = bytearray(send_targets_reply(t))
            reply[16:20] = text_itt.to_bytes(4, "big")
            _write("pdu", "tgt-script-with-sendtargets", bytes([mode]) + stream + reply)
        if mode in (0, 3):
            for chunk_index in (1, 3, 5):
                _write("pdu", f"tgt-script-digests{mode}-chunks{T.CHUNKS[chunk_index]}",
                       bytes([mode | chunk_index << 2]) + stream)  # fmt: skip
    return data_in


def record_logins(t: Tgtd) -> None:
    for chap, iqn in enumerate((T.TARGET_IQN, T.CHAP_TARGET_IQN, T.MUTUAL_TARGET_IQN)):
        for mode in (0, 3):
            with T.deterministic_chap():
                rec = Recorder(t.port, Connection(T.login_config(iqn, mode, chap), 1))
                raw = rec.login()
                rec.close()
            selector = mode | chap << 2
            _write(
                "login", f"tgt-login-auth{chap}-digests{mode}", b"\x00" + bytes([selector]) + raw
            )
            if chap == 2 and mode == 0:
                _write(
                    "login", "tgt-login-mutual-bytewise", b"\x00" + bytes([selector | 1 << 6]) + raw
                )
            for i, seg in enumerate(_segments(raw, False, False)):
                if seg:
                    _write("login", f"tgt-keys-auth{chap}-digests{mode}-{i}", b"\x01" + seg)
                    if b"CHAP_C" in seg or b"CHAP_R" in seg:
                        _write("login", f"tgt-chap-auth{chap}-{i}", b"\x02" + seg)
    # A discovery login and a login with a wrong CHAP secret (status 0x0201).
    with T.deterministic_chap():
        rec = Recorder(t.port, Connection(T.login_config(None, 0), 1))
        _write("login", "tgt-login-discovery", b"\x00\x20" + rec.login())
        rec.close()
    cfg = T.login_config(T.CHAP_TARGET_IQN, 0, 1)
    cfg.chap = T.ChapInitiator(T.CHAP_USER, b"wrong-secret-000", (5,))
    with T.deterministic_chap():
        rec = Recorder(t.port, Connection(cfg, 1))
        rec.conn.start_login()
        rec.send()
        try:
            rec.pump(1)
        except Exception:  # the login failure is what we record
            pass
        rec.close()
    _write("login", "tgt-login-auth-failure", b"\x00\x04" + bytes(rec.received))


def write_scsi_seeds(data_in: dict[str, bytes]) -> None:
    index = {"inquiry": 0, "luns": 1, "cap10": 2, "cap16": 3, "vpd00": 4, "vpd80": 5,
             "vpd83": 6, "vpdb0": 7, "vpdb1": 8, "vpdb2": 9}  # fmt: skip
    for name, data in sorted(data_in.items()):
        if name.startswith("sense"):
            _write("scsi", f"tgt-{name}", b"\xf0" + data)
        elif name in index:
            _write("scsi", f"tgt-{name}", bytes([index[name]]) + data)
    _write("scsi", "tgt-vpd83-length", bytes([10]) + data_in["vpd83"])
    _write("scsi", "lun-flat-300", bytes([11]) + bytes([0x41, 0x2C]) + bytes(6))


def write_xml_seeds() -> None:
    from poolbackend.pool import statefile
    from poolbackend.pool.model import PoolState, Volume
    from poolbackend.pool.xml.pool import parse_pool_xml
    from poolbackend.pool.xml.volume import format_volume_xml

    examples = ROOT / "xml-examples"
    for path in sorted(examples.glob("pool*.xml")):
        _write("xml", f"example-{path.stem}", b"\x00" + path.read_bytes())
    _write("xml", "example-source", b"\x01" + (examples / "source.xml").read_bytes())
    _write("xml", "example-secret", b"\x03" + (examples / "secret.xml").read_bytes())
    _write(
        "xml",
        "volume-capacity",
        b"\x02<volume><name>v</name><capacity unit='KiB'>8</capacity></volume>",
    )
    pool = parse_pool_xml((examples / "pool-mutual-chap.xml").read_bytes())
    vols = tuple(
        Volume.for_lun(pool.source, lun, capacity=lun * MiB, block_size=512, vendor="IET",
                       product="VIRTUAL-DISK", device_type=0 if lun else 12,
                       device_type_name="disk" if lun else "STORAGE_ARRAY_CONTROLLER")
        for lun in (0, 1, 300)
    )  # fmt: skip
    state = PoolState(active=True, capacity=301 * MiB, allocation=301 * MiB, volumes=vols)
    _write("xml", "pool-state", b"\x04" + statefile.dumps(pool, state))
    _write("xml", "volume-formatted", b"\x02" + format_volume_xml(vols[1]).encode())


URLS = [
    "iscsi://127.0.0.1:3260/iqn.2026-11.example:target1/1",
    "iscsi://127.0.0.1",
    "iscsi://[::1]:3261/iqn.2026-11.example:target1/16383",
    "iscsi://chapuser%chapsecret12345@127.0.0.1/iqn.2026-11.example:target1/1",
    "iscsi://chapuser:chapsecret12345@127.0.0.1:3260/iqn.2026-11.example:target1/2"
    "?target_user=outuser&target_password=outsecret12345&header_digest=crc32c"
    "&data_digest=none&auth=sha-256,md5",
    "iscsi://u%pw@h/iqn.x/1?header_digest=none-crc32c&data_digest=crc32c-none",
    "iser://127.0.0.1/iqn.x/0",
    "127.0.0.1:3260",
]


def write_url_seeds() -> None:
    for i, url in enumerate(URLS):
        _write("url", f"url-{i}", bytes([i % 4]) + url.encode())


def main() -> int:
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    with Tgtd.start() as t:
        t.new_target(1, T.TARGET_IQN)
        t.add_lun(1, 1, 1 * MiB, fill=bytes(range(256)))
        t.new_target(2, T.CHAP_TARGET_IQN)
        t.add_lun(2, 1, 1 * MiB)
        t.add_account(T.CHAP_USER, T.CHAP_SECRET.decode())
        t.bind_account(2, T.CHAP_USER)
        t.new_target(3, T.MUTUAL_TARGET_IQN)
        t.add_lun(3, 1, 1 * MiB)
        t.bind_account(3, T.CHAP_USER)
        t.add_account(T.OUT_USER, T.OUT_SECRET.decode())
        t.bind_account(3, T.OUT_USER, outgoing=True)
        for tid in (1, 2, 3):
            t.set_param(tid, "HeaderDigest", "CRC32C,None")
            t.set_param(tid, "DataDigest", "CRC32C,None")
        data_in = record_pdu_streams(t)
        record_logins(t)
    write_scsi_seeds(data_in)
    write_xml_seeds()
    write_url_seeds()
    for target in sorted(p.name for p in CORPUS.iterdir()):
        files = sorted((CORPUS / target).iterdir())
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
        print(f"{target}: {len(files)} seeds ({digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
