"""iSCSI family: CmdSN window, DataSN, residuals and task management (RFC 7143).

The CmdSN and DataSN tests use :mod:`poolbackend.conformance.raw` to send PDUs the session
layer never would; the residual tests go through the session with an Expected Data Transfer
Length different from what the CDB asks for; the TMF tests race a task against its abort.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from poolbackend.conformance.context import Context, Reply
from poolbackend.conformance.raw import RawClosed, RawConnection
from poolbackend.conformance.registry import TestFailed, TestSkipped, register
from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.errors import ISCSIError
from poolbackend.scsi import cdb_ext as X
from poolbackend.scsi.sense import is_unit_attention, parse_sense
from poolbackend.scsi.status import ScsiStatus, status_name

F = "iSCSI"
SILENCE = 1.5
"""Seconds a target gets to (wrongly) answer a command it must ignore."""


def _raw(ctx: Context, *, immediate_data: bool = False) -> RawConnection:
    try:
        return RawConnection.login(
            ctx.url, ctx.initiator, ctx.options.timeout, immediate_data=immediate_data
        )
    except (OSError, RawClosed, ISCSIError) as exc:
        raise TestFailed(f"raw login for the protocol test failed: {exc}") from None


def _tur_status(conn: RawConnection, lun: int, timeout: float) -> int:
    """TEST UNIT READY's status, unit attentions (after login or a reset) retried."""
    for _ in range(4):
        pdu = conn.wait(conn.scsi(lun, bytes(6)), timeout)
        if pdu.opcode != P.Op.SCSI_RSP:
            raise TestFailed(f"TEST UNIT READY was answered with {pdu.name()}")
        sense = (
            parse_sense(bytes(pdu.data[2:])) if pdu.bhs[3] == ScsiStatus.CHECK_CONDITION else None
        )
        if not is_unit_attention(sense):
            return pdu.bhs[3]
    return pdu.bhs[3]


def _cmdsn(high: bool) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        conn = _raw(ctx)
        try:
            _tur_status(conn, ctx.lun, ctx.options.timeout)  # clears the login's unit attention
            bad = (conn.max_cmd_sn + 1) if high else (conn.cmd_sn - 1)
            itt = conn.scsi(ctx.lun, bytes(6), cmd_sn=bad & 0xFFFFFFFF)
            try:
                pdu = conn.wait(itt, SILENCE)
                raise TestFailed(
                    f"TEST UNIT READY with CmdSN {bad & 0xFFFFFFFF} "
                    f"({'above MaxCmdSN' if high else 'below ExpCmdSN'}) was answered "
                    f"({pdu.name()}); a target must silently ignore it"
                )
            except TimeoutError:
                pass
            except RawClosed as exc:
                raise TestFailed(
                    "the target dropped the connection instead of silently ignoring a command "
                    f"outside the CmdSN window ({exc})"
                ) from None
            status = _tur_status(conn, ctx.lun, ctx.options.timeout)
            if status != ScsiStatus.GOOD:
                raise TestFailed(
                    f"TEST UNIT READY with the right CmdSN returned {status_name(status)}"
                )
        finally:
            conn.close()

    return test


register(
    F,
    "iSCSIcmdsn",
    "iSCSICmdSnTooHigh",
    _cmdsn(True),
    "A non-immediate command with CmdSN = MaxCmdSN + 1 is outside the command window and "
    "must be silently ignored (no answer, connection kept); a command with the expected "
    "CmdSN then completes GOOD.\n\nStandard: RFC 7143 §4.2.2.1.",
)
register(
    F,
    "iSCSIcmdsn",
    "iSCSICmdSnTooLow",
    _cmdsn(False),
    "A non-immediate command with CmdSN = ExpCmdSN - 1 is outside the command window and "
    "must be silently ignored; a command with the expected CmdSN then completes GOOD."
    "\n\nStandard: RFC 7143 §4.2.2.1.",
)


def _datasn_case(ctx: Context, what: str, sns: list[int], blocks: int) -> None:
    conn = _raw(ctx)
    try:
        bs = ctx.block_size
        _tur_status(conn, ctx.lun, ctx.options.timeout)  # a unit attention must not decide it
        data = bytes((0xA6,)) * (blocks * bs)
        itt = conn.scsi(
            ctx.lun, X.lba_cdb(X.Op.WRITE_10, 100, blocks, size=10), edtl=len(data), write=True
        )
        try:
            r2t = conn.wait(itt, ctx.options.timeout)
        except (TimeoutError, RawClosed):
            raise TestFailed(f"WRITE(10) ({what}): no R2T from the target") from None
        if r2t.opcode != P.Op.R2T:
            raise TestFailed(f"WRITE(10) ({what}): expected R2T, got {r2t.name()}")
        ttt = r2t.ttt
        chunk = min(bs, conn.max_xmit)
        pieces = [(i * chunk, data[i * chunk : (i + 1) * chunk]) for i in range(len(data) // chunk)]
        for k, (off, piece) in enumerate(pieces):
            conn.data_out(
                ctx.lun, itt, ttt, sns[k] & 0xFFFFFFFF, off, piece, final=k == len(pieces) - 1
            )
        try:
            pdu = conn.wait(itt, 3.0)
        except (TimeoutError, RawClosed) as exc:
            ctx.trace(f"  WRITE(10) with DataSN {what}: {exc or 'no answer'}")
            return  # no GOOD: the target rejected the sequence (or dropped the connection)
        ctx.trace(f"  WRITE(10) with DataSN {what}: {pdu.name()} status {pdu.bhs[3]}")
        if pdu.opcode == P.Op.SCSI_RSP and pdu.bhs[2] == 0 and pdu.bhs[3] == ScsiStatus.GOOD:
            raise TestFailed(
                f"WRITE(10) with Data-Out DataSN {what} completed GOOD; a DataSN "
                "out of sequence is a protocol error the target must not accept"
            )
    finally:
        conn.close()


def datasn_invalid(ctx: Context) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    if ctx.block_size < 512:
        raise TestSkipped("block size too small")
    _datasn_case(ctx, "0 twice", [0, 0], 2)
    _datasn_case(ctx, "27", [27], 1)
    _datasn_case(ctx, "-1", [-1], 1)
    _datasn_case(ctx, "1, 0 (swapped)", [1, 0], 2)


register(
    F,
    "iSCSIdatasn",
    "iSCSIDataSnInvalid",
    datasn_invalid,
    "Data-Out PDUs with a wrong DataSN (two with 0, 27 or -1 where 0 is due, 1 before 0) "
    "must not let the WRITE complete GOOD: at ErrorRecoveryLevel 0 a sequence error is a "
    "protocol error (Reject / connection drop / failed task).\n\nStandard: RFC 7143 "
    "§11.7.5 (DataSN), §7.1.4.1, §7.12 (sequence errors).",
    dataloss=True,
)


# -- residuals ---------------------------------------------------------------------------
_READS = (X.Op.READ_10, X.Op.READ_12, X.Op.READ_16)


def _residual(ctx: Context, reply: Reply, want: str, amount: int, what: str) -> None:
    if reply.status == ScsiStatus.CHECK_CONDITION and reply.cdb[0] not in _READS:
        return  # a write the SCSI layer refuses for the length mismatch is also correct
    if not reply.good:
        raise TestFailed(f"{reply.name} {what} returned {reply.describe()}, expected GOOD")
    flag = reply.overflow if want == "overflow" else reply.underflow
    if not flag:
        raise TestFailed(f"{reply.name} {what}: residual {want} flag not set")
    if reply.residual != amount:
        raise TestFailed(f"{reply.name} {what}: residual count {reply.residual}, expected {amount}")


def raw_read(conn: RawConnection, ctx: Context, cdb: bytes, edtl: int) -> Reply:
    """A read with the R bit set whatever the EDTL (the session omits it for EDTL 0)."""
    for _ in range(4):
        itt = conn.scsi(ctx.lun, cdb, edtl=edtl, read=True)
        data = b""
        while True:
            pdu = conn.recv(ctx.options.timeout)
            if pdu.itt != itt:
                continue
            if pdu.opcode == P.Op.DATA_IN:
                data += bytes(pdu.data)
                if not pdu.flags & P.F_STATUS:
                    continue
                status, sense = pdu.bhs[3], b""
            elif pdu.opcode == P.Op.SCSI_RSP:
                status, sense = pdu.bhs[3], bytes(pdu.data[2:])
            else:
                raise TestFailed(f"{X.command_name(cdb[0])} was answered with {pdu.name()}")
            break
        reply = Reply(
            cdb,
            status,
            data,
            parse_sense(sense),
            pdu.field32(44),
            bool(pdu.flags & P.F_UNDERFLOW),
            bool(pdu.flags & P.F_OVERFLOW),
        )
        if not is_unit_attention(reply.sense):
            return reply
    return reply


def _read_residuals(op: int, size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        ctx.require_sbc()
        bs = ctx.block_size
        cdb = X.lba_cdb(op, 0, 1, size=size)
        conn = _raw(ctx)
        try:
            _residual(ctx, raw_read(conn, ctx, cdb, 0), "overflow", bs, "of 1 block with EDTL 0")
            r = raw_read(conn, ctx, cdb, 10000)
            if r.good and len(r.data) != bs:
                raise TestFailed(
                    f"{r.name} of 1 block with EDTL 10000 returned {len(r.data)} bytes"
                )
            _residual(ctx, r, "underflow", 10000 - bs, "of 1 block with EDTL 10000")
            r = raw_read(conn, ctx, cdb, 200)
            if r.good and len(r.data) != 200:
                raise TestFailed(f"{r.name} of 1 block with EDTL 200 returned {len(r.data)} bytes")
            _residual(ctx, r, "overflow", bs - 200, "of 1 block with EDTL 200")
        except (TimeoutError, RawClosed) as exc:
            raise TestFailed(f"{X.command_name(op)} residual test: {exc or 'no answer'}") from None
        finally:
            conn.close()

    return test


def _write_residuals(op: int, size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        ctx.require_sbc()
        ctx.require_dataloss()
        bs = ctx.block_size
        for blocks, edtl, want, amount in (
            (1, 2 * bs, "underflow", bs),
            (2, bs, "overflow", bs),
            (1, 10000, "underflow", 10000 - bs),
            (1, 200, "overflow", bs - 200),
        ):
            r = ctx.cmd(X.lba_cdb(op, 0, blocks, size=size), data=bytes(edtl))
            ctx.skip_if_unimplemented(r)
            _residual(ctx, r, want, amount, f"of {blocks} blocks with EDTL {edtl}")

    return test


_RES = "RFC 7143 §11.4.5.2 (residuals), SAM-5 §5.4"
register(
    F,
    "iSCSIResiduals",
    "Read10Invalid",
    _read_residuals(X.Op.READ_10, 10),
    "READ(10) of one block with Expected Data Transfer Length 0, 10000 and 200: GOOD, the "
    "data that fits, and the residual overflow/underflow flag with the exact count.\n\n"
    f"Standard: {_RES}.",
)
for _op, _size in ((X.Op.READ_10, 10), (X.Op.READ_12, 12), (X.Op.READ_16, 16)):
    register(
        F,
        "iSCSIResiduals",
        f"Read{_size}Residuals",
        _read_residuals(_op, _size),
        f"READ({_size}) of one block with an Expected Data Transfer Length of 0, 10000 "
        "and 200 bytes completes GOOD with the exact residual overflow/underflow.\n\n"
        f"Standard: {_RES}.",
    )
for _op, _size, _nm in (
    (X.Op.WRITE_10, 10, "Write10"),
    (X.Op.WRITE_12, 12, "Write12"),
    (X.Op.WRITE_16, 16, "Write16"),
    (X.Op.WRITE_VERIFY_10, 10, "WriteVerify10"),
    (X.Op.WRITE_VERIFY_12, 12, "WriteVerify12"),
    (X.Op.WRITE_VERIFY_16, 16, "WriteVerify16"),
):
    register(
        F,
        "iSCSIResiduals",
        f"{_nm}Residuals",
        _write_residuals(_op, _size),
        f"{X.command_name(_op)} whose Expected Data Transfer Length differs from the CDB's "
        "transfer length completes GOOD with the exact residual overflow/underflow (or "
        f"fails with CHECK CONDITION).\n\nStandard: {_RES}.",
        dataloss=True,
    )


# -- task management ---------------------------------------------------------------------
def _tmf_response(
    conn: RawConnection,
    tmf: int,
    function: str,
    timeout: float,
    victims: Container[int],
    victim: str,
) -> int:
    """The response code of task management request ``tmf``; a command in ``victims``
    (task tags) ending in CHECK CONDITION meanwhile fails the test."""
    while True:
        try:
            pdu = conn.recv(timeout)
        except (TimeoutError, RawClosed) as exc:
            raise TestFailed(f"no answer to {function}: {exc or 'timeout'}") from None
        if pdu.opcode == P.Op.TMF_RSP and pdu.itt == tmf:
            return pdu.bhs[2]
        if (
            pdu.opcode == P.Op.SCSI_RSP
            and pdu.itt in victims
            and pdu.bhs[3] == ScsiStatus.CHECK_CONDITION
        ):
            sense = parse_sense(bytes(pdu.data[2:]))
            raise TestFailed(
                f"{victim} ended in CHECK CONDITION ({sense.describe() if sense else 'no sense'})"
            )


def abort_task(ctx: Context) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    conn = _raw(ctx)
    try:
        _tur_status(conn, ctx.lun, ctx.options.timeout)  # the login's unit attention first
        blocks = 8
        cmd_sn = conn.cmd_sn
        itt = conn.scsi(
            ctx.lun,
            X.lba_cdb(X.Op.WRITE_10, 0, blocks, size=10),
            edtl=blocks * ctx.block_size,
            write=True,
        )
        tmf = conn.tmf(1, ctx.lun, itt, cmd_sn)  # ABORT TASK
        response = _tmf_response(
            conn, tmf, "ABORT TASK", ctx.options.timeout, (itt,), "the aborted WRITE(10)"
        )
        if response not in (0, 1):
            raise TestFailed(
                f"ABORT TASK answered with response {response}; expected 0 "
                "(function complete) or 1 (task does not exist)"
            )
        if _tur_status(conn, ctx.lun, ctx.options.timeout) != ScsiStatus.GOOD:
            raise TestFailed("TEST UNIT READY after the abort did not complete GOOD")
    finally:
        conn.close()


def lun_reset(ctx: Context) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    conn = _raw(ctx, immediate_data=True)
    try:
        _tur_status(conn, ctx.lun, ctx.options.timeout)  # the login's unit attention first
        blocks = 8
        size = blocks * ctx.block_size
        if not conn.immediate_data or size > min(conn.max_xmit, conn.first_burst):
            raise TestSkipped("8 blocks do not fit into immediate data on this session")
        writes = {
            conn.scsi(
                ctx.lun,
                X.lba_cdb(X.Op.WRITE_10, i * blocks, blocks, size=10),
                edtl=size,
                write=True,
                data=bytes(size),
            )
            for i in range(8)
        }
        tmf = conn.tmf(5, ctx.lun, P.NO_TAG, conn.cmd_sn)  # LOGICAL UNIT RESET
        response = _tmf_response(
            conn,
            tmf,
            "LOGICAL UNIT RESET",
            ctx.options.timeout * 2,
            writes,
            "a WRITE in flight during LOGICAL UNIT RESET",
        )
        if response != 0:
            raise TestFailed(
                f"LOGICAL UNIT RESET answered with response {response}, expected 0 "
                "(function complete)"
            )
        if _tur_status(conn, ctx.lun, ctx.options.timeout) != ScsiStatus.GOOD:
            raise TestFailed("TEST UNIT READY after the LOGICAL UNIT RESET did not complete GOOD")
    finally:
        conn.close()


register(
    F,
    "iSCSITMF",
    "AbortTaskSimpleAsync",
    abort_task,
    "ABORT TASK for a WRITE(10) still waiting for its data is answered with Function "
    "Complete (or Task Does Not Exist if it already ended) and the WRITE never ends in "
    "CHECK CONDITION; the LU works afterwards.\n\nStandard: RFC 7143 §11.5.1, §11.6.1.",
    dataloss=True,
)
register(
    F,
    "iSCSITMF",
    "LUNResetSimpleAsync",
    lun_reset,
    "LOGICAL UNIT RESET while eight WRITEs (immediate data, on a raw connection) are in "
    "flight is answered with Function Complete; "
    "no WRITE ends in CHECK CONDITION; the LU works afterwards (after the unit "
    "attention).\n\nStandard: RFC 7143 §11.5.1, SAM-5 §7.9.",
    dataloss=True,
)
