"""Fuzz targets: plain functions ``target(data: bytes) -> None`` with built-in oracles.

They do not import atheris, so they can be replayed from pytest, a debugger or
``python -m tests.fuzz.run TARGET --replay FILE``. A target returns normally for every input
it handles correctly; any other exception -- an ``AssertionError`` from an oracle or an
unexpected exception type escaping the code under test -- is a finding.

Targets (see README.md):

``pdu``      the PDU reader + sans-IO Connection after a completed login, with a fixed set of
             outstanding tasks (reads, a write waiting for R2T, text, ping, report luns,
             capacity, a command that fails with sense data); only RemoteProtocolError may
             escape, the reader never holds one maximal PDU's worth of bytes, and the
             chosen chunking, all-at-once and the zero-copy path agree (no PDU left waiting).
``login``    the login state machine (no auth, CHAP, mutual CHAP, digest offers) fed Login
             Responses, plus the text key decoder, key negotiation and CHAP parsing directly;
             only ISCSIError subclasses may escape.
``scsi``     every SCSI data-in parser; only ScsiParseError may escape, parse_sense never raises;
             GET LBA STATUS answers that parse describe contiguous, non-empty extents from the
             starting LBA within the LUN.
``xml``      the pool / source / volume / secret / pool-state XML parsers; only
             PoolBackendError may escape and a parsed pool/state round-trips through its
             formatter.
``url``      the libiscsi URL parser; only InvalidURL may escape, and a password never
             influences an error message, ``str()`` or ``repr()`` (differential oracle: the same
             URL with the password replaced by 'x's must give the same text).
``canary``   a deliberately broken target used by the tests to prove that the runner reports
             crashes (never part of a normal run).
"""

from __future__ import annotations

import itertools
import re
import secrets
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote_plus

from poolbackend import scsi as S
from poolbackend.errors import PoolBackendError
from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.chap import ChapInitiator, decode_binary
from poolbackend.iscsi.connection import Connection, State
from poolbackend.iscsi.errors import InvalidURL, ISCSIError, RemoteProtocolError
from poolbackend.iscsi.events import (
    Event,
    LoginComplete,
    LoginRedirected,
    NopReply,
    TaskCompleted,
    TaskFailed,
    TextReply,
)
from poolbackend.iscsi.login import LoginConfig
from poolbackend.iscsi.options import SessionOptions
from poolbackend.iscsi.textkeys import (
    KEYS,
    answer_target_offer,
    decode_pairs,
    encode_pairs,
    negotiate_answer,
)
from poolbackend.iscsi.url import parse_url
from poolbackend.pool import statefile
from poolbackend.pool.xml import pool as pool_xml
from poolbackend.pool.xml import secret as secret_xml
from poolbackend.pool.xml import volume as volume_xml
from poolbackend.scsi import cdb as C
from tests.harness.tgt_keys import tgt_login_keys

Target = Callable[[bytes], object]

INITIATOR = "iqn.2026-11.dev.poolbackend:fuzz"
TARGET_IQN = "iqn.2026-11.example:fuzz"
CHAP_TARGET_IQN = "iqn.2026-11.example:fuzz-chap"
MUTUAL_TARGET_IQN = "iqn.2026-11.example:fuzz-mutual"
ISID = b"\x80\x00\x00\x00\xf0\x01"
CHAP_USER, CHAP_SECRET = "fuzzuser", b"fuzz-secret-123"
OUT_USER, OUT_SECRET = "fuzzout", b"fuzz-target-456"
#: chunk sizes the first byte of a pdu/login input selects (0 = everything at once)
CHUNKS = (0, 1, 3, 47, 48, 52, 1000, 4096)
#: the write the pdu target leaves waiting for an R2T
WRITE_LEN = 64 * 1024


# ------------------------------------------------------------------- deterministic CHAP


class _CountingSecrets:
    """Stands in for the ``secrets`` module inside chap.py: deterministic but never repeating
    (so the reflection guard cannot loop), reset per input for reproducible runs."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def token_bytes(self, n: int) -> bytes:
        seed = next(self._counter)
        return bytes((seed * 37 + i * 11) & 0xFF for i in range(n))

    def randbelow(self, n: int) -> int:
        return 7 % n


@contextmanager
def deterministic_chap() -> Iterator[None]:
    """CHAP's challenge and identifier from a counter: iscsi/chap.py imports ``secrets`` where
    it draws them (not at module level), so the ``secrets`` module's two functions are
    replaced for the duration."""
    counting = _CountingSecrets()
    saved = secrets.token_bytes, secrets.randbelow
    secrets.token_bytes, secrets.randbelow = counting.token_bytes, counting.randbelow
    try:
        yield
    finally:
        secrets.token_bytes, secrets.randbelow = saved


# ---------------------------------------------------------------- shared session script


def digest_offer(mode: int) -> tuple[str, str]:
    """(HeaderDigest, DataDigest) offers for mode bits 0 (header) and 1 (data)."""
    return ("CRC32C" if mode & 1 else "None", "CRC32C" if mode & 2 else "None")


def login_config(target: str | None, mode: int, chap: int = 0) -> LoginConfig:
    hd, dd = digest_offer(mode)
    auth = None
    if chap:
        auth = ChapInitiator(
            CHAP_USER,
            CHAP_SECRET,
            (5,),
            OUT_USER if chap == 2 else None,
            OUT_SECRET if chap == 2 else None,
        )
    options = SessionOptions(initiator_name=INITIATOR, header_digest=hd, data_digest=dd)
    return LoginConfig(options, target, isid=ISID, chap=auth)


def issue_script(conn: Connection, *, text: bool = True) -> dict[int, tuple[str, int]]:
    """The commands the pdu target (and the corpus recorder) leave outstanding.

    Returns ITT -> (what, expected read length). LUN 1 is a 512-byte-block disk. The Text
    Request comes last: tgt refuses Text in a normal session (it closes the connection), so
    the recorder leaves it out (``text=False``) and splices in a discovery session's reply.
    """
    tasks: dict[int, tuple[str, int]] = {}
    tasks[conn.scsi_command(1, C.read16(0, 8), read_len=4096)] = ("read", 4096)
    tasks[conn.scsi_command(1, C.inquiry(alloc=255), read_len=255)] = ("inquiry", 255)
    tasks[conn.scsi_command(1, C.inquiry(evpd=True, page=0x83, alloc=512), read_len=512)] = (
        "vpd83",
        512,
    )
    tasks[conn.scsi_command(0, C.report_luns(alloc=4096), read_len=4096)] = ("luns", 4096)
    tasks[conn.scsi_command(1, C.read_capacity16(), read_len=32)] = ("cap16", 32)
    tasks[conn.scsi_command(1, C.write16(8, WRITE_LEN // 512), write_data=bytes(WRITE_LEN))] = (
        "write",
        0,
    )
    tasks[conn.scsi_command(1, C.read16(1 << 40, 1), read_len=512)] = ("bad-read", 512)
    tasks[conn.nop_ping(b"fuzz")] = ("nop", 0)
    if text:
        tasks[conn.text_request([("SendTargets", "All")])] = ("text", 0)
    return tasks


def _login_rsp(pairs: list[tuple[str, str]], statsn: int = 0x100) -> bytes:
    data = encode_pairs(pairs)
    bhs = bytearray(48)
    bhs[0], bhs[1] = P.Op.LOGIN_RSP, 0x87  # T=1, CSG=1, NSG=3
    bhs[5:8] = len(data).to_bytes(3, "big")
    bhs[8:14] = ISID
    bhs[14:16] = (0x1234).to_bytes(2, "big")
    struct.pack_into(">III", bhs, 24, statsn, 1, 64)  # StatSN, ExpCmdSN, MaxCmdSN
    return bytes(bhs) + data + bytes(-len(data) & 3)


def logged_in_connection(mode: int) -> Connection:
    """A Connection in full feature phase with tgt's operational answers (tgt 1.0.85)."""
    conn = Connection(login_config(TARGET_IQN, mode), 1)
    conn.start_login()
    conn.data_to_send()
    hd, dd = digest_offer(mode)
    pairs = [
        *tgt_login_keys(hd, dd),
        ("TargetPortalGroupTag", "1"),
        ("MaxRecvDataSegmentLength", "8192"),
    ]
    (event,) = conn.receive_data(_login_rsp(pairs))
    assert isinstance(event, LoginComplete)
    return conn


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    if size == 0:
        yield data
        return
    for i in range(0, len(data), size):
        yield data[i : i + size]


def pdu_wire_size(reader: P.PDUReader, header: bytes) -> int:
    """Bytes one PDU takes on the wire, from its first 48 bytes and the reader's digests."""
    dlen = int.from_bytes(header[5:8], "big")
    hd = 4 if reader.header_digest else 0
    dd = 4 if reader.data_digest and dlen else 0
    return P.BHS_LEN + header[4] * 4 + hd + dlen + (-dlen & 3) + dd


def largest_pdu(reader: P.PDUReader) -> int:
    """One maximal PDU: BHS + AHS + header digest + MaxRecvDataSegmentLength + pad + digest."""
    hd = 4 if reader.header_digest else 0
    dd = 4 if reader.data_digest else 0
    return P.BHS_LEN + 255 * 4 + hd + reader.max_data + 3 + dd


class ReaderWatch:
    """Counts the wire bytes of every PDU the reader completes (by wrapping ``on_pdu``).

    With the bytes fed so far, that gives what the reader may still hold: only the part of
    the PDU it is receiving (``fed - consumed``). :meth:`check` asserts, after each feed, that
    it holds no more than that, that this part is not a whole PDU (a complete PDU must be
    handled when its last byte arrives) and that it is below one maximal PDU -- properties
    small inputs can break, unlike a bare comparison with the 263 KB maximum.
    """

    def __init__(self, conn: Connection, stream: bytes) -> None:
        self.reader = conn._reader
        self.stream = stream
        self.fed = 0
        self.consumed = 0
        self.pdus = 0
        self.peak = 0
        inner = self.reader.on_pdu

        def on_pdu(pdu: P.PDU) -> None:
            self.consumed += pdu_wire_size(self.reader, pdu.bhs)
            self.pdus += 1
            inner(pdu)

        self.reader.on_pdu = on_pdu

    def check(self) -> None:
        reader = self.reader
        pending = self.fed - self.consumed
        buffered = reader.buffered
        self.peak = max(self.peak, buffered)
        assert pending >= 0, f"reader completed PDUs of {self.consumed} bytes from {self.fed}"
        assert 0 <= buffered <= pending, (
            f"reader holds {buffered} bytes, but only {pending} belong to an unfinished PDU"
        )
        if pending >= P.BHS_LEN:
            head = self.stream[self.consumed : self.consumed + P.BHS_LEN]
            size = pdu_wire_size(reader, head)
            assert pending < size, (
                f"a complete {size}-byte PDU was left unprocessed ({pending} bytes pending)"
            )
        assert buffered < largest_pdu(reader), f"reader buffers {buffered} bytes"


def _feed(conn: Connection, chunk: bytes, zero_copy: bool) -> list[Event]:
    """Hand ``chunk`` to the connection by copy or through its zero-copy receive API."""
    if not zero_copy:
        return conn.receive_data(chunk)
    events: list[Event] = []
    pos = 0
    while pos < len(chunk):
        room = conn.recv_buffers()
        assert room and len(room[0]) > 0, "zero-copy receive offers no buffer"
        got = 0
        for view in room:  # like recvmsg_into: fill the scatter list in order
            k = min(len(view), len(chunk) - pos - got)
            view[:k] = chunk[pos + got : pos + got + k]
            got += k
            if got == len(chunk) - pos:
                break
        pos += got
        events += conn.recv_done(got)
        if conn.state is State.FAILED:
            break
    return events


def _summary(event: Event) -> tuple[object, ...]:
    if isinstance(event, TaskCompleted):
        r = event.result
        return ("done", event.itt, r.status, bytes(r.data), r.sense, r.residual, r.underflow)
    return (type(event).__name__, repr(event))


def _run_pdu(mode: int, stream: bytes, chunk: int, zero_copy: bool) -> tuple[object, ...]:
    """Feed ``stream`` after the login; returns (events, bytes we sent, error text, done)."""
    conn = logged_in_connection(mode & 3)
    tasks = issue_script(conn)
    conn.data_to_send()
    done: set[int] = set()
    seen: list[tuple[object, ...]] = []
    sent = bytearray()
    watch = ReaderWatch(conn, stream)
    for piece in _chunks(stream, chunk):
        watch.fed += len(piece)
        try:
            events = _feed(conn, piece, zero_copy)
        except RemoteProtocolError as exc:
            assert str(exc) and "\n" not in str(exc)
            assert conn.state is State.FAILED
            assert conn.receive_data(b"\0" * 64) == []  # a failed connection stays inert
            return None, None, str(exc), len(done)
        watch.check()
        for event in events:
            seen.append(_summary(event))
            if isinstance(event, TaskCompleted):
                itt = event.itt
                assert itt in tasks and itt not in done, f"completion for task 0x{itt:08x}"
                done.add(itt)
                assert len(event.result.data) <= tasks[itt][1]
            elif isinstance(event, TaskFailed | TextReply | NopReply):
                assert event.itt in tasks and event.itt not in done
                done.add(event.itt)
        for buf in conn.data_to_send():
            sent += buf
    return seen, bytes(sent), None, len(done)


def fuzz_pdu(data: bytes) -> int:
    """Returns how many of the script's tasks finished (the seed test checks depth).

    Differential oracle: the chosen chunking, the whole stream at once and (if the
    Connection has it) the zero-copy receive path must give the same events, the same bytes
    to send and the same first error -- a reader that sat on a complete PDU would miss an
    event at the end of the stream.
    """
    if not data:
        return 0
    mode, stream = data[0], data[1:]
    chunk = CHUNKS[(mode >> 2) & 7]
    first = _run_pdu(mode, stream, chunk, zero_copy=False)
    runs = [_run_pdu(mode, stream, 0, zero_copy=False)] if chunk else []
    if hasattr(Connection, "recv_buffers"):
        runs.append(_run_pdu(mode, stream, chunk or 4096, zero_copy=True))
    for other in runs:
        assert other[2] == first[2], f"error depends on chunking: {first[2]!r} vs {other[2]!r}"
        if first[2] is None:
            assert other[0] == first[0], "events depend on chunking"
            assert other[1] == first[1], "bytes sent depend on chunking"
    return int(first[3])  # type: ignore[call-overload]


# ------------------------------------------------------------------------------ login


def _login_machine(data: bytes) -> bool:
    mode = data[0]  # bits 0-1 digests, 2-3 auth (none, CHAP, mutual), 5 discovery, 6-7 chunks
    chap = ((mode >> 2) & 3) % 3
    target = (TARGET_IQN, CHAP_TARGET_IQN, MUTUAL_TARGET_IQN)[chap]
    if mode & 0x20:
        target = None  # discovery session
    conn = Connection(login_config(target, mode & 3, chap), 1)
    conn.start_login()
    conn.data_to_send()
    watch = ReaderWatch(conn, data[1:])
    for chunk in _chunks(data[1:], CHUNKS[mode >> 6]):
        watch.fed += len(chunk)
        try:
            events = conn.receive_data(chunk)
        except ISCSIError as exc:
            assert str(exc) and "\n" not in str(exc)
            text = str(exc).encode()
            assert CHAP_SECRET not in text and OUT_SECRET not in text
            return False
        watch.check()
        for event in events:
            if isinstance(event, LoginComplete):
                p = event.params
                assert 512 <= p.max_xmit_data_segment_length <= 0xFFFFFF
                assert p.first_burst_length <= p.max_burst_length
                assert conn.state is State.FULL_FEATURE
            elif isinstance(event, LoginRedirected):
                assert conn.state is State.LOGGED_OUT
        for buf in conn.data_to_send():
            assert CHAP_SECRET not in bytes(buf) and OUT_SECRET not in bytes(buf)
    return conn.state is State.FULL_FEATURE


def _text_keys(data: bytes) -> None:
    try:
        pairs = decode_pairs(data, "fuzz")
    except RemoteProtocolError:
        return
    assert decode_pairs(encode_pairs(pairs)) == pairs
    offered = dict(login_config(TARGET_IQN, 3).operational_offer())
    for key, value in pairs:
        try:
            if key in offered:
                negotiate_answer(key, offered[key], value)
            answer_target_offer(key, value, offered)
        except RemoteProtocolError:
            pass
        if key in KEYS and key in offered:
            try:
                negotiate_answer(key, offered[key], None)
            except RemoteProtocolError:
                pass


def _chap_parsing(data: bytes) -> None:
    try:
        keys = dict(decode_pairs(data, "fuzz"))
    except RemoteProtocolError:
        return
    for value in keys.values():
        try:
            raw = decode_binary("CHAP_C", value)
        except RemoteProtocolError:
            continue
        assert 1 <= len(raw) <= 1024
    initiator = ChapInitiator(CHAP_USER, CHAP_SECRET, (5, 6, 7, 8), OUT_USER, OUT_SECRET)
    try:
        answer = dict(initiator.respond(keys))
    except RemoteProtocolError:
        return
    assert answer["CHAP_N"] == CHAP_USER and answer["CHAP_C"] != keys.get("CHAP_C")
    try:
        initiator.verify_target(keys)
    except ISCSIError:
        pass


def fuzz_login(data: bytes) -> bool:
    """Returns True when a login-machine input completed the login (seed depth check)."""
    if len(data) < 2:
        return False
    with deterministic_chap():
        which = data[0] % 3
        if which == 0:
            return _login_machine(data[1:])
        if which == 1:
            _text_keys(data[1:])
        else:
            _chap_parsing(data[1:])
    return False


# ------------------------------------------------------------------------------- scsi


def _scsi_parsers() -> list[Callable[[bytes], object]]:
    return [
        S.parse_standard_inquiry,
        S.parse_report_luns,
        S.parse_read_capacity10,
        S.parse_read_capacity16,
        S.parse_supported_pages,
        S.parse_unit_serial,
        S.parse_device_identification,
        S.parse_block_limits,
        S.parse_block_device_characteristics,
        S.parse_logical_block_provisioning,
        S.vpd_full_length,
        S.decode_lun,
    ]


_PARSERS = _scsi_parsers()


def _lba_status(body: bytes) -> None:
    from poolbackend.scsi.lbastatus import parse_lba_status

    if len(body) < 6:
        return
    start, blocks = body[0] * 7, 1 + int.from_bytes(body[1:4], "big")
    alloc = 24 + body[4] * 16 + body[5] % 16
    if start >= blocks:
        return
    try:
        extents = parse_lba_status(body[6:], start, blocks, alloc)
    except S.ScsiParseError as exc:
        assert str(exc)
        return
    assert extents and extents[0].lba == start
    for a, b in itertools.pairwise(extents):
        assert a.end == b.lba
    assert all(e.blocks > 0 for e in extents) and extents[-1].end <= blocks


def fuzz_scsi(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    if selector >= 0xF0:  # sense data: never raises, always describable
        sense = S.parse_sense(body)
        if sense is not None:
            assert sense.describe()
            S.retry_class(sense)
            S.is_unit_attention(sense)
        return
    if selector >= 0xE0:  # GET LBA STATUS: what parses describes exactly the blocks asked
        _lba_status(body)
        return
    parser = _PARSERS[selector % len(_PARSERS)]
    try:
        result = parser(body)
    except S.ScsiParseError as exc:
        assert str(exc)
        return
    if isinstance(result, S.StandardInquiry):
        S.device_type_name(result.device_type)
        S.peripheral_qualifier_name(result.peripheral_qualifier)
        S.version_name(result.version)
        for d in result.version_descriptors:
            S.version_descriptor_name(d)
    elif isinstance(result, S.DeviceIdentification):
        for d in result.designators:
            assert isinstance(d.text, str)
        S.preferred_identifier(result.designators)
    elif isinstance(result, S.ReportLuns):
        assert all(0 <= lun <= S.MAX_LUN for lun in result.luns)


# -------------------------------------------------------------------------------- xml


def fuzz_xml(data: bytes) -> None:
    if not data:
        return
    which, text = data[0] % 5, data[1:]
    try:
        if which == 0:
            pool = pool_xml.parse_pool_xml(text)
            again = pool_xml.parse_pool_xml(pool_xml.format_pool_xml(pool))
            assert again == pool, "pool XML does not round-trip"
        elif which == 1:
            pool_xml.parse_source_xml(text)
        elif which == 2:
            volume_xml.parse_volume_xml(text)
        elif which == 3:
            secret = secret_xml.parse_secret_xml(text)
            secret_xml.format_secret_xml(secret)
        else:
            live, state = statefile.loads(text)
            assert statefile.loads(statefile.dumps(live, state)) == (live, state), (
                "pool state does not round-trip"
            )
    except PoolBackendError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))


# -------------------------------------------------------------------------------- url

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _mask_passwords(text: str) -> tuple[str, list[str]] | None:
    """``text`` with every password the parser would see replaced by as many 'x's.

    Mirrors url.py's tokenisation: scheme before the first '://', query after the first
    '?', user info up to the *last* '@' before the query, password after the first '%' or
    ':' of the user info; ``target_password`` arguments (key compared after unquoting).
    Returns None when there is nothing to mask or the "scheme" is not one (then the text
    before '://' is garbage such as 'a@b?c=iscsi' and no URL part is a password).
    """
    scheme, sep, rest = text.partition("://")
    if sep and not _SCHEME.fullmatch(scheme):
        return None
    prefix = scheme + sep if sep else ""
    if not sep:
        rest = text
    rest, qsep, query = rest.partition("?")
    found: list[str] = []
    if "@" in rest:
        userinfo, _, after = rest.rpartition("@")
        cut = min((i for i in (userinfo.find("%"), userinfo.find(":")) if i >= 0), default=-1)
        if cut >= 0:
            found.append(userinfo[cut + 1 :])
            userinfo = userinfo[: cut + 1] + "x" * len(userinfo[cut + 1 :])
        rest = userinfo + "@" + after
    pieces = []
    for piece in query.split("&") if qsep else []:
        key, eq, value = piece.partition("=")
        if eq and unquote_plus(key) == "target_password":
            found.append(unquote_plus(value))
            value = "x" * len(value)
        pieces.append(key + eq + value)
    masked = prefix + rest + (qsep + "&".join(pieces) if qsep else "")
    return (masked, found) if found else None


def _parse_text(text: str, need_lun: bool, need_target: bool) -> str:
    try:
        url = parse_url(text, need_lun=need_lun, need_target=need_target, env={})
    except InvalidURL as exc:
        assert "\n" not in str(exc)
        return "error: " + str(exc)
    return f"ok: {url} {url!r}"


def fuzz_url(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    text = data[1:].decode("utf-8", "replace")
    need_lun, need_target = bool(flags & 1), bool(flags & 2)
    shown = _parse_text(text, need_lun, need_target)
    masked = _mask_passwords(text)
    if masked is None:
        return
    masked_text, _passwords = masked
    other = _parse_text(masked_text, need_lun, need_target)
    # Same-length 'x's cannot change the parse, so any difference comes from the password.
    # (A plain "password not in output" check is unsound: 'target' is also in repr() text.)
    assert shown.startswith("ok") == other.startswith("ok"), (shown, other)
    assert shown == other, f"password influences the output: {shown!r} vs {other!r}"


# ----------------------------------------------------------------------------- canary


def fuzz_canary(data: bytes) -> None:
    """A planted bug: crashes on any input starting with b'PB!' (found in well under 1 s)."""
    if data[:1] == b"P" and data[1:2] == b"B" and data[2:3] == b"!":
        raise IndexError("planted canary bug")


TARGETS: dict[str, Target] = {
    "pdu": fuzz_pdu,
    "login": fuzz_login,
    "scsi": fuzz_scsi,
    "xml": fuzz_xml,
    "url": fuzz_url,
    "canary": fuzz_canary,
}
#: the targets a normal run covers (the canary is only for the self-test)
REAL_TARGETS = ("pdu", "login", "scsi", "xml", "url")
