"""Suites for EXTENDED COPY / RECEIVE COPY RESULTS (SPC-4 §6.3-§6.4, LID1), SANITIZE
(SBC-3 §5.19) and multipath I/O over two paths to the same LU (URL2).

About 630 lines, on purpose: a catalogue of independent tests; EXTENDED COPY's parameter
list builders and the SANITIZE and multipath tests each serve only their own suites, and
keeping them with those suites keeps each suite in one place.
"""

from __future__ import annotations

import asyncio
import struct
import time

from poolbackend.conformance.context import (
    INVALID_FIELD_IN_CDB,
    MISCOMPARE_DURING_VERIFY,
    PARAMETER_LIST_LENGTH_ERROR,
    Context,
    Nexus,
    Reply,
)
from poolbackend.conformance.raw import RawClosed, RawConnection
from poolbackend.conformance.registry import TestFailed, TestFunc, TestSkipped, register
from poolbackend.scsi import cdb_ext as X
from poolbackend.scsi.sense import SenseKey, parse_sense
from poolbackend.scsi.status import ScsiStatus

S = "SCSI"


# -- EXTENDED COPY -----------------------------------------------------------------------
def _lu_designator(ctx: Context) -> bytes:
    """The LU's NAA designator (VPD 83h, association LU) as a 32-byte identification
    descriptor body, or a skip when there is none (XCOPY needs it to name the LU)."""
    page = ctx.vpd(0x83)
    if page is None:
        raise TestSkipped("no Device Identification VPD page: the LU cannot be named in a copy")
    body = page[4 : 4 + int.from_bytes(page[2:4], "big")]
    pos = 0
    while pos + 4 <= len(body):
        length = body[pos + 3]
        d = body[pos : pos + 4 + length]
        if d[1] & 0x0F == 3 and (d[1] >> 4) & 0x03 == 0 and length <= 20:  # NAA, LU
            return d
        pos += 4 + length
    raise TestSkipped("the LU reports no NAA designator to name it in a copy")


def target_descriptor(ctx: Context, designator: bytes | None = None, code: int = 0xE4) -> bytes:
    """Identification descriptor target descriptor (E4h), 32 bytes, with the disk block
    length in the device type specific parameters."""
    d = designator if designator is not None else _lu_designator(ctx)
    head = bytes((code, 0x00, 0x00, 0x00))  # LU ID TYPE 0 (LU id), peripheral type 0
    desc = head + d.ljust(20, b"\0")[:20] + bytes(4)
    desc += bytes(1) + ctx.block_size.to_bytes(3, "big")  # disk: block length in 29-31
    return desc


def segment_b2b(src: int, dst: int, blocks: int, src_lba: int, dst_lba: int) -> bytes:
    """Block device to block device segment descriptor (02h), 28 bytes."""
    return struct.pack(">BBHHHHHQQ", 0x02, 0, 0x18, src, dst, 0, blocks, src_lba, dst_lba)


def xcopy_params(targets: list[bytes], segments: list[bytes], list_id: int = 0) -> bytes:
    """LID1 parameter list: header (LIST ID USAGE 11b: no identifier), descriptors."""
    t, s = b"".join(targets), b"".join(segments)
    usage = 0x18 if not list_id else 0x00
    header = struct.pack(">BBH4xII", list_id, usage, len(t), len(s), 0)
    return header + t + s


def _xcopy(ctx: Context, params: bytes, length: int | None = None) -> Reply:
    n = len(params) if length is None else length
    return ctx.cmd(X.extended_copy(n), data=params[:n])


def _xcopy_supported(ctx: Context) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    r = ctx.cmd(X.extended_copy(0))
    ctx.skip_if_unimplemented(r)


def xcopy_simple(ctx: Context) -> None:
    _xcopy_supported(ctx)
    n = min(64, ctx.num_blocks // 2)
    dst = ctx.num_blocks - n
    ctx.write(dst, ctx.pattern(n, 0))
    ctx.write(0, ctx.pattern(n, 0x41))
    td = target_descriptor(ctx)
    r = _xcopy(ctx, xcopy_params([td], [segment_b2b(0, 0, n, 0, dst)]))
    if not r.good:
        raise TestFailed(f"EXTENDED COPY of {n} blocks from LBA 0 to {dst} returned {r.describe()}")
    if ctx.read(dst, n) != ctx.pattern(n, 0x41):
        raise TestFailed("EXTENDED COPY returned GOOD but the blocks were not copied")


def xcopy_param_hdr(ctx: Context) -> None:
    _xcopy_supported(ctx)
    td = target_descriptor(ctx)
    params = xcopy_params([td], [segment_b2b(0, 0, 1, 0, 1)])
    for cut, what in (
        (16 + 16, "cutting the target descriptor"),
        (16 + 32 + 10, "cutting the segment descriptor"),
    ):
        r = _xcopy(ctx, params, cut)
        if not r.is_check(SenseKey.ILLEGAL_REQUEST, PARAMETER_LIST_LENGTH_ERROR):
            raise TestFailed(
                f"EXTENDED COPY with a parameter list length {what} returned {r.describe()}, "
                "expected ILLEGAL REQUEST / PARAMETER LIST LENGTH ERROR"
            )
    ctx.good(X.extended_copy(0), why=" with parameter list length 0 (nothing to do)")


def _op_params(ctx: Context) -> bytes:
    r = ctx.cmd(X.receive_copy_results(3, alloc=1024), read_len=1024)
    ctx.skip_if_unimplemented(r)
    if not r.good or len(r.data) < 44:
        raise TestFailed(f"RECEIVE COPY RESULTS (operating parameters) returned {r.describe()}")
    return r.data


def xcopy_limits(ctx: Context) -> None:
    _xcopy_supported(ctx)
    op = _op_params(ctx)
    max_targets = int.from_bytes(op[8:10], "big")
    max_segments = int.from_bytes(op[10:12], "big")
    td = target_descriptor(ctx)
    seg = segment_b2b(0, 0, 1, 0, 1)
    for what, params, asc in (
        ("target", xcopy_params([td] * (max_targets + 1), [seg]), (0x26, 0x06)),
        ("segment", xcopy_params([td], [seg] * (max_segments + 1)), (0x26, 0x08)),
    ):
        r = _xcopy(ctx, params)
        if not r.is_check(SenseKey.ILLEGAL_REQUEST, asc):
            raise TestFailed(
                f"EXTENDED COPY with one {what} descriptor more than the maximum returned "
                f"{r.describe()}, expected ILLEGAL REQUEST / TOO MANY {what.upper()} DESCRIPTORS"
            )


def xcopy_descr_type(ctx: Context) -> None:
    _xcopy_supported(ctx)
    td = target_descriptor(ctx)
    fc = bytes((0xE0,)) + bytes(31)  # Fibre Channel N_Port_Name target descriptor
    r = _xcopy(ctx, xcopy_params([fc], [segment_b2b(0, 0, 1, 0, 1)]))
    if not r.is_check(SenseKey.ILLEGAL_REQUEST, (0x26, 0x07)):
        raise TestFailed(
            f"EXTENDED COPY with a Fibre Channel target descriptor returned {r.describe()}, "
            "expected ILLEGAL REQUEST / UNSUPPORTED TARGET DESCRIPTOR TYPE CODE"
        )
    stream = struct.pack(">BBHHH", 0x03, 0, 0x14, 0, 0) + bytes(16)  # stream-to-stream
    r = _xcopy(ctx, xcopy_params([td], [stream]))
    if not r.is_check(SenseKey.ILLEGAL_REQUEST, (0x26, 0x09)):
        raise TestFailed(
            f"EXTENDED COPY with a stream-to-stream segment returned {r.describe()}, expected "
            "ILLEGAL REQUEST / UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE"
        )


def xcopy_tgt_descr(ctx: Context) -> None:
    _xcopy_supported(ctx)
    td = bytearray(target_descriptor(ctx))
    td[1] = 0xC0 | (td[1] & 0x3F)  # LU ID TYPE 11b: reserved
    r = _xcopy(ctx, xcopy_params([bytes(td)], [segment_b2b(0, 0, 1, 0, 1)]))
    if r.good:
        raise TestFailed(
            "EXTENDED COPY with a reserved LU ID TYPE in the target descriptor returned GOOD"
        )
    wrong = bytearray(_lu_designator(ctx))
    wrong[-1] ^= 0xFF
    r = _xcopy(
        ctx, xcopy_params([target_descriptor(ctx, bytes(wrong))], [segment_b2b(0, 0, 1, 0, 1)])
    )
    if not r.is_check(SenseKey.COPY_ABORTED):
        raise TestFailed(
            f"EXTENDED COPY naming an LU that does not exist returned "
            f"{r.describe()}, expected COPY ABORTED"
        )


def xcopy_seg_descr(ctx: Context) -> None:
    _xcopy_supported(ctx)
    td = target_descriptor(ctx)
    for seg, what in (
        (segment_b2b(0, 1, 1, 0, 1), "a destination target index that does not exist"),
        (segment_b2b(0, 0, 2, 0, ctx.num_blocks - 1), "blocks beyond the destination's end"),
    ):
        r = _xcopy(ctx, xcopy_params([td], [seg]))
        if not r.is_check(SenseKey.COPY_ABORTED) and not r.is_check(SenseKey.ILLEGAL_REQUEST):
            raise TestFailed(
                f"EXTENDED COPY with {what} returned {r.describe()}, expected COPY "
                "ABORTED (or ILLEGAL REQUEST)"
            )


def rcr_copy_status(ctx: Context) -> None:
    ctx.require_sbc()
    r = ctx.cmd(X.receive_copy_results(0, list_id=0, alloc=1024), read_len=1024)
    ctx.skip_if_unimplemented(r)
    if r.good:
        if len(r.data) < 12:
            raise TestFailed(f"COPY STATUS returned {len(r.data)} bytes, less than its 12")
        return
    if not r.is_check(SenseKey.ILLEGAL_REQUEST):
        raise TestFailed(f"COPY STATUS for list identifier 0 returned {r.describe()}")


def rcr_op_params(ctx: Context) -> None:
    ctx.require_sbc()
    op = _op_params(ctx)
    length = int.from_bytes(op[0:4], "big")
    if length + 4 < 44:
        raise TestFailed(f"operating parameters AVAILABLE DATA is {length}, less than 40")
    if not int.from_bytes(op[8:10], "big") or not int.from_bytes(op[10:12], "big"):
        raise TestFailed("MAXIMUM TARGET/SEGMENT DESCRIPTOR COUNT is 0")


_XC = "SPC-4 §6.3 EXTENDED COPY (LID1)"
for _name, _xfunc, _text in (
    (
        "Simple",
        xcopy_simple,
        "An EXTENDED COPY with one identification target descriptor "
        "(the LU itself) and one block-to-block segment copies the blocks.",
    ),
    (
        "ParamHdr",
        xcopy_param_hdr,
        "A PARAMETER LIST LENGTH that cuts a target or segment "
        "descriptor fails with PARAMETER LIST LENGTH ERROR; length 0 is not an error.",
    ),
    (
        "DescrLimits",
        xcopy_limits,
        "One target or segment descriptor more than RECEIVE COPY "
        "RESULTS reports as maximum fails with TOO MANY TARGET/SEGMENT DESCRIPTORS.",
    ),
    (
        "DescrType",
        xcopy_descr_type,
        "An unsupported target descriptor (Fibre Channel) or "
        "segment descriptor (stream-to-stream) fails with UNSUPPORTED ... TYPE CODE.",
    ),
    (
        "ValidTgtDescr",
        xcopy_tgt_descr,
        "A target descriptor with a reserved LU ID TYPE is "
        "refused; one naming an LU that does not exist aborts the copy (COPY ABORTED).",
    ),
    (
        "ValidSegDescr",
        xcopy_seg_descr,
        "A segment naming a target index that does not exist, "
        "or copying past the destination's end, aborts the copy.",
    ),
):
    register(
        S,
        "ExtendedCopy",
        _name,
        _xfunc,
        f"{_text}\n\nStandard: {_XC}, §6.3.6-§6.3.7.",
        dataloss=True,
    )
register(
    S,
    "ReceiveCopyResults",
    "CopyStatus",
    rcr_copy_status,
    "RECEIVE COPY RESULTS / COPY STATUS returns its 12-byte status (or ILLEGAL REQUEST "
    "when no copy with that list identifier exists).\n\nStandard: SPC-4 §6.18.2.",
)
register(
    S,
    "ReceiveCopyResults",
    "OpParams",
    rcr_op_params,
    "RECEIVE COPY RESULTS / OPERATING PARAMETERS returns at least 44 bytes with non-zero "
    "descriptor limits.\n\nStandard: SPC-4 §6.18.4.",
)


# -- SANITIZE ----------------------------------------------------------------------------
_SA_NAMES = {1: "OVERWRITE", 2: "BLOCK ERASE", 3: "CRYPTOGRAPHIC ERASE", 0x1F: "EXIT FAILURE MODE"}


def _sanitize_supported(ctx: Context, sa: int) -> None:
    ctx.require_sbc()
    r = ctx.cmd(
        X.report_supported_opcodes(options=2, opcode=X.Op.SANITIZE, service_action=sa), read_len=512
    )
    if r.good and len(r.data) >= 2 and r.data[1] & 0x07 in (0, 1):
        raise TestSkipped(
            f"SANITIZE {_SA_NAMES[sa]} is not supported (REPORT SUPPORTED OPERATION CODES)"
        )


def _overwrite_params(ctx: Context, byte: int) -> bytes:
    pattern = bytes((byte,)) * ctx.block_size
    return bytes((0x01, 0)) + len(pattern).to_bytes(2, "big") + pattern


def _sanitize(
    ctx: Context, sa: int, *, nexus: Nexus | None = None, immed: bool = False, byte: int = 0x5A
) -> Reply:
    data = _overwrite_params(ctx, byte) if sa == 1 else None
    cdb = X.sanitize(sa, len(data) if data else 0, immed=immed)
    r = ctx.cmd(cdb, data=data, nexus=nexus)
    ctx.skip_if_unimplemented(r)
    return r


def _wait_ready(ctx: Context, limit: float = 600.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        r = ctx.cmd(bytes(6))
        if r.good:
            return
        if not r.is_check(SenseKey.NOT_READY, (0x04, 0x1B)):
            raise TestFailed(f"TEST UNIT READY during SANITIZE returned {r.describe()}")
        time.sleep(0.2)
    raise TestFailed(f"SANITIZE still in progress after {limit:g} s")


def _sanitize_runs(sa: int) -> TestFunc:
    def test(ctx: Context) -> None:
        _sanitize_supported(ctx, sa)
        ctx.write(0, ctx.pattern(8, 0x61))
        r = _sanitize(ctx, sa)
        if not r.good:
            raise TestFailed(f"SANITIZE {_SA_NAMES[sa]} returned {r.describe()}")
        _wait_ready(ctx)
        data = ctx.read(0, 8)
        if sa == 1 and data != ctx.pattern(8, 0x5A):
            raise TestFailed("after SANITIZE OVERWRITE the blocks do not hold the pattern")
        if sa != 1 and data == ctx.pattern(8, 0x61):
            raise TestFailed(f"after SANITIZE {_SA_NAMES[sa]} the old data is still readable")

    return test


def _sanitize_reserved(sa: int) -> TestFunc:
    def test(ctx: Context) -> None:
        _sanitize_supported(ctx, sa)
        base = bytearray(X.sanitize(sa))
        for byte in range(2, 7):
            cdb = bytearray(base)
            cdb[byte] = 0x01
            data = _overwrite_params(ctx, 0) if sa == 1 else None
            if data:
                cdb[7:9] = len(data).to_bytes(2, "big")
            ctx.invalid_field(
                bytes(cdb), data=data, why=f" {_SA_NAMES[sa]} with reserved byte {byte} set"
            )

    return test


def sanitize_exit_failure(ctx: Context) -> None:
    _sanitize_supported(ctx, 0x1F)
    cdb = X.sanitize(0x1F, 8)
    ctx.invalid_field(cdb, data=bytes(8), why=" EXIT FAILURE MODE with a parameter list")


def sanitize_invalid_sa(ctx: Context) -> None:
    ctx.require_sbc()
    for sa in range(0x20):
        if sa in _SA_NAMES:
            continue
        r = ctx.cmd(X.sanitize(sa))
        ctx.skip_if_unimplemented(r)
        if not r.is_check(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB):
            raise TestFailed(
                f"SANITIZE service action {sa:02X}h returned {r.describe()}, "
                "expected ILLEGAL REQUEST / INVALID FIELD IN CDB"
            )


def sanitize_readonly(ctx: Context) -> None:
    _sanitize_supported(ctx, 1)
    other = ctx.second()
    r = ctx.cmd(X.mode_sense6(0x0A, alloc=255), read_len=255, nexus=other)
    if not r.good or len(r.data) < 4 + r.data[3] + 12:
        raise TestSkipped("the Control mode page cannot be read to set SWP")
    page = bytearray(r.data[4 + r.data[3] : 4 + r.data[3] + 12])
    page[0] &= 0x3F
    page[4] |= 0x08
    data = bytes(4) + bytes(page)
    if not ctx.cmd(X.mode_select6(len(data)), data=data, nexus=other).good:
        raise TestSkipped("SWP cannot be set (MODE SELECT refused)")
    try:
        r = _sanitize(ctx, 1)
        if not r.is_check(SenseKey.DATA_PROTECT, (0x27, 0x00)):
            raise TestFailed(
                f"SANITIZE OVERWRITE on a write-protected LU returned "
                f"{r.describe()}, expected DATA PROTECT / WRITE PROTECTED"
            )
    finally:
        page[4] &= ~0x08
        data = bytes(4) + bytes(page)
        ctx.cmd(X.mode_select6(len(data)), data=data, nexus=other)


def sanitize_reservations(ctx: Context) -> None:
    _sanitize_supported(ctx, 1)
    other = ctx.second()
    if not ctx.cmd(X.reserve6(), nexus=other).good:
        raise TestSkipped("RESERVE(6) is not available to set up the conflict")
    try:
        r = _sanitize(ctx, 1)
        if r.status != ScsiStatus.RESERVATION_CONFLICT:
            raise TestFailed(
                f"SANITIZE while another initiator holds a reservation returned "
                f"{r.describe()}, expected RESERVATION CONFLICT"
            )
    finally:
        ctx.cmd(X.release6(), nexus=other)


def sanitize_reset(ctx: Context) -> None:
    _sanitize_supported(ctx, 1)
    r = _sanitize(ctx, 1, immed=True)
    if not r.good:
        raise TestFailed(f"SANITIZE OVERWRITE IMMED=1 returned {r.describe()}")
    if ctx.main.tmf(5) != 0:
        raise TestFailed("LOGICAL UNIT RESET during SANITIZE was not answered Function Complete")
    inq = ctx.cmd(X.inquiry(alloc=255), read_len=255)
    if not inq.good:
        raise TestFailed(f"INQUIRY during SANITIZE returned {inq.describe()}; it is allowed")
    _wait_ready(ctx)
    if ctx.read(0, 1) != ctx.pattern(1, 0x5A):
        raise TestFailed("SANITIZE OVERWRITE did not complete after the LOGICAL UNIT RESET")


_SAN = "SBC-3 §5.19 SANITIZE, §4.11 (sanitize operations)"
for _name, _sfunc, _text in (
    (
        "BlockErase",
        _sanitize_runs(2),
        "SANITIZE BLOCK ERASE completes and the old data is no longer readable.",
    ),
    (
        "BlockEraseReserved",
        _sanitize_reserved(2),
        "SANITIZE BLOCK ERASE with a reserved CDB byte set fails with INVALID FIELD IN CDB.",
    ),
    (
        "CryptoErase",
        _sanitize_runs(3),
        "SANITIZE CRYPTOGRAPHIC ERASE completes and the old data is no longer readable.",
    ),
    (
        "CryptoEraseReserved",
        _sanitize_reserved(3),
        "SANITIZE CRYPTOGRAPHIC ERASE with a "
        "reserved CDB byte set fails with INVALID FIELD IN CDB.",
    ),
    (
        "ExitFailureMode",
        sanitize_exit_failure,
        "SANITIZE EXIT FAILURE MODE with a non-zero "
        "PARAMETER LIST LENGTH fails with INVALID FIELD IN CDB.",
    ),
    (
        "InvalidServiceAction",
        sanitize_invalid_sa,
        "SANITIZE with a service action other than "
        "01h, 02h, 03h and 1Fh fails with INVALID FIELD IN CDB.",
    ),
    (
        "Overwrite",
        _sanitize_runs(1),
        "SANITIZE OVERWRITE with a one-block pattern completes "
        "and every block read holds the pattern.",
    ),
    (
        "OverwriteReserved",
        _sanitize_reserved(1),
        "SANITIZE OVERWRITE with a reserved CDB byte set fails with INVALID FIELD IN CDB.",
    ),
    (
        "Readonly",
        sanitize_readonly,
        "SANITIZE on a LU made write protected (SWP, from a "
        "second nexus) fails with DATA PROTECT / WRITE PROTECTED.",
    ),
    (
        "Reservations",
        sanitize_reservations,
        "SANITIZE while another initiator holds a reservation fails with RESERVATION CONFLICT.",
    ),
    (
        "Reset",
        sanitize_reset,
        "A SANITIZE in progress (IMMED=1) survives a LOGICAL UNIT "
        "RESET, INQUIRY is allowed meanwhile, and the sanitize completes.",
    ),
):
    register(
        S,
        "Sanitize",
        _name,
        _sfunc,
        f"{_text}\n\nStandard: {_SAN}.",
        dataloss=True,
        sanitize=True,
    )


# -- MULTIPATH ---------------------------------------------------------------------------
def _paths(ctx: Context) -> tuple[Nexus, Nexus]:
    ctx.require_sbc()
    ctx.require_dataloss()
    if ctx.url2 is None:
        raise TestSkipped("multipath needs a second path to the LU: give URL2")
    second = ctx.open_nexus(ctx.initiator, ctx.url2)
    ctx.extra.append(second)
    return ctx.main, second


def mpio_simple(ctx: Context) -> None:
    paths = _paths(ctx)
    for i, (w, r) in enumerate((paths, paths[::-1])):
        for n in (1, 2, 8, 64, 256):
            data = ctx.pattern(n, 0x30 + i + n % 7)
            ctx.write(0, data, nexus=w)
            if ctx.read(0, n, nexus=r) != data:
                raise TestFailed(
                    f"{n} blocks written on path {i + 1} read back differently on the other path"
                )


def mpio_reset(ctx: Context) -> None:
    a, _ = _paths(ctx)
    assert ctx.url2 is not None
    try:
        watch = RawConnection.login(ctx.url2, ctx.second_initiator, ctx.options.timeout)
    except (OSError, RawClosed) as exc:
        raise TestFailed(f"login on the second path failed: {exc}") from None
    try:
        for _ in range(4):  # clear the login's unit attention
            pdu = watch.wait(watch.scsi(ctx.lun, bytes(6)), ctx.options.timeout)
            if pdu.bhs[3] == ScsiStatus.GOOD:
                break
        if a.tmf(5) != 0:
            raise TestFailed("LOGICAL UNIT RESET on the first path was not Function Complete")
        pdu = watch.wait(watch.scsi(ctx.lun, bytes(6)), ctx.options.timeout)
        sense = parse_sense(bytes(pdu.data[2:])) if pdu.bhs[3] == 2 else None
        if sense is None or sense.key != SenseKey.UNIT_ATTENTION or sense.asc != 0x29:
            raise TestFailed(
                "after a LOGICAL UNIT RESET on one path, the next command on the other path "
                f"did not get UNIT ATTENTION 29/xx (status {pdu.bhs[3]:02X}h, "
                f"{sense.describe() if sense else 'no sense'})"
            )
    finally:
        watch.close()


def _caw(ctx: Context, nexus: Nexus, verify: bytes, write: bytes) -> Reply:
    return ctx.cmd(X.compare_and_write(0, 1), data=verify + write, nexus=nexus)


def mpio_caw(ctx: Context) -> None:
    paths = _paths(ctx)
    ctx.write(0, ctx.pattern(1, 0))
    for i in range(8):
        path = paths[i % 2]
        r = _caw(ctx, path, ctx.pattern(1, i), ctx.pattern(1, i + 1))
        ctx.skip_if_unimplemented(r)
        if not r.good:
            raise TestFailed(
                f"COMPARE AND WRITE {i}->{i + 1} on path {i % 2 + 1} returned {r.describe()}"
            )
        bad = _caw(ctx, paths[(i + 1) % 2], ctx.pattern(1, i), ctx.pattern(1, 0xEE))
        if not bad.is_check(SenseKey.MISCOMPARE, MISCOMPARE_DURING_VERIFY):
            raise TestFailed(
                f"a stale COMPARE AND WRITE on the other path returned "
                f"{bad.describe()}, expected MISCOMPARE"
            )


def mpio_caw_async(ctx: Context) -> None:
    a, b = _paths(ctx)
    ctx.write(0, ctx.pattern(1, 0))
    probe = _caw(ctx, a, ctx.pattern(1, 0), ctx.pattern(1, 0))
    ctx.skip_if_unimplemented(probe)

    async def race() -> list[int]:
        jobs = [
            n.session.execute(
                ctx.lun,
                X.compare_and_write(0, 1),
                write_data=ctx.pattern(1, 0) + ctx.pattern(1, 0x10 + i),
                check=False,
            )
            for i, n in enumerate([a, b] * 8)
        ]
        done = await asyncio.gather(*jobs, return_exceptions=True)
        return [-1 if isinstance(r, BaseException) else r.status for r in done]

    statuses = a.run(race())
    good = statuses.count(ScsiStatus.GOOD)
    if good != 1:
        raise TestFailed(
            f"{good} of 16 concurrent COMPARE AND WRITEs of the same block on two "
            "paths succeeded; exactly one may (the others must miscompare)"
        )


_MP = "SAM-5 §4.6 (one LU over several I_T nexuses), SBC-3 §5.2"
for _name, _mfunc, _text in (
    ("Simple", mpio_simple, "Data written on one path reads back on the other, both ways."),
    (
        "Reset",
        mpio_reset,
        "A LOGICAL UNIT RESET on one path establishes UNIT ATTENTION 29/xx "
        "for the I_T nexus of the other path.",
    ),
    (
        "CompareAndWrite",
        mpio_caw,
        "COMPARE AND WRITEs alternating between the paths see each "
        "other's data; a stale one miscompares.",
    ),
    (
        "CompareAndWriteAsync",
        mpio_caw_async,
        "Of 16 concurrent COMPARE AND WRITEs of one block "
        "over two paths with the same verify data exactly one succeeds (atomicity).",
    ),
):
    register(S, "MultipathIO", _name, _mfunc, f"{_text}\n\nStandard: {_MP}.", dataloss=True)
