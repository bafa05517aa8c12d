"""Block I/O suites: READ 6/10/12/16, WRITE 10/12/16, VERIFY, WRITE AND VERIFY, ORWRITE,
WRITE ATOMIC(16), PRE-FETCH and COMPARE AND WRITE (SBC-3 §5, SBC-4 for WRITE ATOMIC).

The suites of one command family share their tests, generated from a :class:`Cmd`
description, so READ(10), READ(12) and READ(16) are held to the same rules. Lengths are
swept over :data:`SWEEP` (1 to 256 blocks, with the powers of two and their neighbours) at the
start and at the end of the LUN rather than every length from 1 to 256: the boundaries are
where targets go wrong and the run stays short.

About 720 lines, on purpose: a catalogue of tests for one command family (the block I/O
commands), whose shared generator is the point of keeping them in one module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from poolbackend.conformance.context import (
    INVALID_FIELD_IN_CDB,
    MISCOMPARE_DURING_VERIFY,
    Context,
    Reply,
)
from poolbackend.conformance.registry import TestFailed, TestSkipped, register
from poolbackend.scsi import cdb_ext as X
from poolbackend.scsi.sense import SenseKey
from poolbackend.scsi.status import ScsiStatus

SWEEP = (1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256)
SHORT_SWEEP = (1, 2, 8, 255, 256)

READ, WRITE, VERIFY, WRITE_VERIFY, ORWRITE, ATOMIC, PREFETCH = (
    "read",
    "write",
    "verify",
    "write-verify",
    "orwrite",
    "atomic",
    "prefetch",
)


@dataclass(frozen=True)
class Cmd:
    suite: str
    op: int
    size: int
    kind: str

    @property
    def name(self) -> str:
        return X.command_name(self.op)

    @property
    def writes(self) -> bool:
        return self.kind in (WRITE, WRITE_VERIFY, ORWRITE, ATOMIC)

    @property
    def lba_bits(self) -> int:
        return 64 if self.size == 16 else 32

    @property
    def max_blocks(self) -> int:
        return 0xFFFF if self.size == 10 or self.kind == ATOMIC else 0xFFFFFFFF

    def cdb(self, lba: int, blocks: int, byte1: int = 0, group: int = 0) -> bytes:
        lba &= (1 << self.lba_bits) - 1
        if self.kind == ATOMIC:
            b = X.write_atomic16(lba, blocks)
            return b[:1] + bytes((byte1,)) + b[2:14] + bytes((group,)) + b[15:]
        return X.lba_cdb(self.op, lba, blocks, size=self.size, byte1=byte1, group=group)

    def send(
        self,
        ctx: Context,
        lba: int,
        blocks: int,
        *,
        byte1: int = 0,
        group: int = 0,
        data: bytes | None = None,
        bytchk_data: bool = False,
    ) -> tuple[bytes, int, bytes | None]:
        """(cdb, read_len, data-out) for ``blocks`` blocks at ``lba``."""
        cdb = self.cdb(lba, blocks, byte1, group)
        n = blocks * ctx.block_size
        if self.kind == READ:
            return cdb, n, None
        if self.kind == PREFETCH or (self.kind == VERIFY and not bytchk_data):
            return cdb, 0, None
        return cdb, 0, data if data is not None else ctx.pattern(blocks, 0xA5)


def _lengths(ctx: Context, cmd: Cmd, sweep: tuple[int, ...] = SWEEP) -> list[int]:
    limit = ctx.max_transfer_blocks or 1 << 32
    return [n for n in sweep if n <= limit and n <= ctx.num_blocks and n <= cmd.max_blocks]


def _expect_ok(ctx: Context, cdb: bytes, read_len: int, data: bytes | None, why: str) -> Reply:
    reply = ctx.cmd(cdb, read_len=read_len, data=data)
    ok = reply.good or (reply.status == ScsiStatus.CONDITION_MET and cdb[0] in _PREFETCH_OPS)
    return ctx.expect(reply, ok, "GOOD", why)


_PREFETCH_OPS = (X.Op.PRE_FETCH_10, X.Op.PRE_FETCH_16)


def _prepare(ctx: Context, cmd: Cmd) -> None:
    ctx.require_sbc()
    if cmd.writes:
        ctx.require_dataloss()


# -- the shared tests --------------------------------------------------------------------
def _simple(cmd: Cmd) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        for where, lba_of in (("start", lambda n: 0), ("end", lambda n: ctx.num_blocks - n)):
            for n in _lengths(ctx, cmd):
                lba = lba_of(n)
                data = ctx.read(lba, n) if cmd.kind == VERIFY else None
                cdb, rl, out = cmd.send(
                    ctx, lba, n, byte1=0x02 if data else 0, data=data, bytchk_data=data is not None
                )
                reply = _expect_ok(
                    ctx, cdb, rl, out, f" of {_blocks(n)} at the {where} (LBA {lba})"
                )
                if cmd.kind == READ and len(reply.data) != rl:
                    raise TestFailed(
                        f"{cmd.name} of {_blocks(n)} returned {len(reply.data)} bytes, not {rl}"
                    )

    return test


def _blocks(n: int) -> str:
    return f"{n} block" if n == 1 else f"{n} blocks"


def _variants(cmd: Cmd) -> list[tuple[int, str]]:
    """VERIFY is range-checked with BYTCHK=1 (data compared) and BYTCHK=0 (medium only):
    SBC-3 §5.27 checks the LBA range before and whatever the BYTCHK field says."""
    if cmd.kind == VERIFY:
        return [(0x02, " BYTCHK=1"), (0x00, " BYTCHK=0")]
    return [(0, "")]


def _beyond_eol(cmd: Cmd) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        if cmd.lba_bits == 32 and ctx.num_blocks >= 1 << 31:
            raise TestSkipped(f"the LUN is too large for {cmd.name} beyond-end tests")
        bs_log = ctx.block_size.bit_length() - 1
        cases: list[tuple[str, int, tuple[int, ...]]] = [
            ("one block beyond the end", -1, SWEEP),
            (f"at LBA 2^{cmd.lba_bits - 1}", 1 << (cmd.lba_bits - 1), SHORT_SWEEP),
            ("at LBA -1 (all ones)", (1 << cmd.lba_bits) - 1, SHORT_SWEEP),
        ]
        if cmd.lba_bits == 64:
            cases += [
                (f"at LBA 2^{64 - bs_log}", 1 << (64 - bs_log), SHORT_SWEEP),
                (f"at LBA 2^{63 - bs_log}", 1 << (63 - bs_log), SHORT_SWEEP),
            ]
        cases.append(("all but the first block beyond the end", ctx.num_blocks - 1, SWEEP))
        for what, lba0, sweep in cases:
            for n in _lengths(ctx, cmd, sweep):
                if what.startswith("all but") and n < 2:
                    continue
                lba = ctx.num_blocks + 1 - n if lba0 == -1 else lba0
                for byte1, label in _variants(cmd):
                    cdb, rl, out = cmd.send(ctx, lba, n, byte1=byte1, bytchk_data=byte1 == 2)
                    ctx.lba_out_of_range(
                        cdb,
                        read_len=rl,
                        data=out,
                        why=f"{label} of {_blocks(n)} {what} (LBA {lba})",
                    )

    return test


def _zero_blocks(cmd: Cmd) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        cdb, _, _ = cmd.send(ctx, 0, 0)
        _expect_ok(ctx, cdb, 0, None, " of 0 blocks at LBA 0")
        if cmd.lba_bits == 32 and ctx.num_blocks >= 1 << 31:
            raise TestSkipped(f"the LUN is too large for {cmd.name} beyond-end tests")
        for what, lba in (
            ("one block past the end", ctx.num_blocks + 1),
            (f"at LBA 2^{cmd.lba_bits - 1}", 1 << (cmd.lba_bits - 1)),
            ("at LBA -1", (1 << cmd.lba_bits) - 1),
        ):
            for byte1, label in _variants(cmd):
                ctx.lba_out_of_range(cmd.cdb(lba, 0, byte1), why=f"{label} of 0 blocks {what}")

    return test


def _protect(cmd: Cmd) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        if ctx.inquiry.protect:
            raise TestSkipped(
                "the LUN supports protection information; only LUNs without it are checked"
            )
        for p in range(1, 8):
            cdb, rl, out = cmd.send(ctx, 0, 1, byte1=p << 5, bytchk_data=False)
            ctx.invalid_field(cdb, read_len=rl, data=out, why=f" with PROTECT={p}")

    return test


def dpofua_supported(ctx: Context) -> bool:
    """The DPOFUA bit of the MODE SENSE(6) header's device-specific parameter (SBC-3 §6.5.1)."""
    r = ctx.good(X.mode_sense6(0x3F, alloc=255), read_len=255, why=" (all pages)")
    if len(r.data) < 4:
        raise TestFailed(f"MODE SENSE(6) returned {len(r.data)} bytes, less than its header")
    return bool(r.data[2] & 0x10)


def _check_usage_data(ctx: Context, cmd: Cmd, mask: int, supported: bool) -> None:
    """REPORT SUPPORTED OPERATION CODES' CDB usage data must agree with DPOFUA."""
    r = ctx.cmd(X.report_supported_opcodes(options=1, opcode=cmd.op), read_len=65535)
    if not r.good or len(r.data) < 4 or r.data[1] & 0x07 != 3:
        return  # the command is optional; its absence is checked in its own suite
    usage = r.data[4 : 4 + int.from_bytes(r.data[2:4], "big")]
    if len(usage) < 2:
        raise TestFailed("REPORT SUPPORTED OPERATION CODES returned no CDB usage data")
    if supported and not usage[1] & mask:
        raise TestFailed(
            f"MODE SENSE reports DPOFUA=1 but the CDB usage data of {cmd.name} has DPO/FUA clear"
        )
    if not supported and usage[1] & mask:
        raise TestFailed(
            f"MODE SENSE reports DPOFUA=0 but the CDB usage data of {cmd.name} allows DPO/FUA"
        )


def _dpofua(cmd: Cmd, dpo_only: bool = False) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        supported = dpofua_supported(ctx)
        combos = (
            [(0x10, "DPO=1")]
            if dpo_only
            else [
                (0x10, "DPO=1"),
                (0x08, "FUA=1"),
                (0x18, "DPO=1 FUA=1"),
            ]
        )
        for bits, what in combos:
            cdb, rl, out = cmd.send(ctx, 0, 1, byte1=bits)
            if supported:
                _expect_ok(ctx, cdb, rl, out, f" with {what} (DPOFUA=1)")
            else:
                ctx.invalid_field(cdb, read_len=rl, data=out, why=f" with {what} (DPOFUA=0)")
        _check_usage_data(ctx, cmd, 0x10 if dpo_only else 0x18, supported)

    return test


def _async(cmd: Cmd) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        count = min(32, ctx.num_blocks)
        nexus = ctx.main

        async def all_at_once() -> list[int]:
            jobs = []
            for i in range(count):
                cdb, rl, out = cmd.send(ctx, i, 1)
                jobs.append(
                    nexus.session.execute(ctx.lun, cdb, read_len=rl, write_data=out, check=False)
                )
            done = await asyncio.gather(*jobs, return_exceptions=True)
            return [-1 if isinstance(r, BaseException) else r.status for r in done]

        statuses = nexus.run(all_at_once())
        bad = [i for i, s in enumerate(statuses) if s != ScsiStatus.GOOD]
        if bad:
            raise TestFailed(
                f"{len(bad)} of {count} concurrent {cmd.name} commands did not return GOOD "
                f"(first: LBA {bad[0]}, "
                + (
                    "an iSCSI error)"
                    if statuses[bad[0]] < 0
                    else f"status 0x{statuses[bad[0]]:02X})"
                )
            )

    return test


# -- VERIFY / WRITE AND VERIFY / ORWRITE specifics ---------------------------------------
def _verify_mismatch(cmd: Cmd, compare: bool) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        for n in _lengths(ctx, cmd, (1, 2, 8, 64)):
            data = bytearray(ctx.read(0, n))
            data[n * ctx.block_size // 2] ^= 0xFF
            if compare:
                cdb, _rl, out = cmd.send(ctx, 0, n, byte1=0x02, data=bytes(data), bytchk_data=True)
                ctx.check(
                    cdb,
                    SenseKey.MISCOMPARE,
                    MISCOMPARE_DURING_VERIFY,
                    data=out,
                    why=f" BYTCHK=1 of {_blocks(n)} with one byte different",
                )
            else:
                cdb, _, _ = cmd.send(ctx, 0, n, byte1=0x00)
                _expect_ok(ctx, cdb, 0, None, f" BYTCHK=0 of {_blocks(n)} (nothing to compare)")

    return test


def _bytchk_flag(cmd: Cmd) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        data = ctx.read(0, 1) if cmd.kind == VERIFY else ctx.pattern(1, 0x3C)
        cdb, rl, out = cmd.send(ctx, 0, 1, byte1=0x02, data=data, bytchk_data=True)
        _expect_ok(ctx, cdb, rl, out, " with BYTCHK=1 and matching data")
        if cmd.kind == WRITE_VERIFY and ctx.read(0, 1) != data:
            raise TestFailed(f"{cmd.name} BYTCHK=1 returned GOOD but the data was not written")

    return test


def _orwrite_verify(cmd: Cmd) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        for n in _lengths(ctx, cmd, (1, 2, 8, 64)):
            ctx.write(0, ctx.pattern(n, 0x0F))
            cdb, _, out = cmd.send(ctx, 0, n, data=ctx.pattern(n, 0xA0))
            _expect_ok(ctx, cdb, 0, out, f" of {_blocks(n)}")
            got = ctx.read(0, n)
            if got != ctx.pattern(n, 0xAF):
                raise TestFailed(
                    f"{cmd.name} of 0xA0 onto 0x0F read back as 0x{got[0]:02X}..., expected 0xAF "
                    "(the bitwise OR)"
                )

    return test


def _write_atomic_vpd(ctx: Context) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    ctx.supported(X.write_atomic16(0, 0))
    b0 = ctx.vpd(0xB0)
    if b0 is None or len(b0) < 64:
        raise TestFailed(
            "WRITE ATOMIC(16) is implemented but the Block Limits VPD page (B0h) with its "
            "atomic fields is missing or short"
        )
    max_atomic = int.from_bytes(b0[44:48], "big")
    if max_atomic == 0:
        raise TestFailed(
            "WRITE ATOMIC(16) is implemented but MAXIMUM ATOMIC TRANSFER LENGTH in VPD B0h is 0"
        )


# -- COMPARE AND WRITE -------------------------------------------------------------------
def _caw_max(ctx: Context) -> int:
    b0 = ctx.vpd(0xB0)
    n = b0[5] if b0 is not None and len(b0) > 5 else 0
    return n or 1


def _caw(ctx: Context, lba: int, verify: bytes, write: bytes, byte1: int = 0) -> Reply:
    n = len(verify) // ctx.block_size
    cdb = X.compare_and_write(lba, n)
    cdb = cdb[:1] + bytes((byte1,)) + cdb[2:]
    return ctx.cmd(cdb, data=verify + write)


def _caw_simple(ctx: Context) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    for n in range(1, min(_caw_max(ctx), 8) + 1):
        for lba in (0, ctx.num_blocks - n):
            ctx.write(lba, ctx.pattern(n, 0x11))
            r = _caw(ctx, lba, ctx.pattern(n, 0x11), ctx.pattern(n, 0x22))
            ctx.expect(r, r.good, "GOOD", f" of {_blocks(n)} at LBA {lba} with matching data")
            if ctx.read(lba, n) != ctx.pattern(n, 0x22):
                raise TestFailed("COMPARE AND WRITE returned GOOD but did not write the new data")


def _caw_dpofua(ctx: Context) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    supported = dpofua_supported(ctx)
    ctx.write(0, ctx.pattern(1, 0x33))
    for bits, what in ((0x10, "DPO=1"), (0x08, "FUA=1"), (0x18, "DPO=1 FUA=1")):
        r = _caw(ctx, 0, ctx.pattern(1, 0x33), ctx.pattern(1, 0x33), bits)
        ctx.skip_if_unimplemented(r)
        if supported and not r.good:
            raise TestFailed(
                f"COMPARE AND WRITE with {what} returned {r.describe()}, expected GOOD"
            )
        if not supported and not r.is_check(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB):
            raise TestFailed(
                f"COMPARE AND WRITE with {what} returned {r.describe()} although DPOFUA=0, "
                "expected ILLEGAL REQUEST / INVALID FIELD IN CDB"
            )


def _caw_miscompare(ctx: Context, unwritten: bool) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    n = min(_caw_max(ctx), 4)
    lba = 0
    if unwritten:
        # Blocks never written read as zeros (or are deallocated first where UNMAP exists).
        data = X.unmap_parameter_list([(lba, n)])
        r = ctx.cmd(X.unmap(len(data)), data=data)
        if not r.good:
            ctx.write(lba, ctx.pattern(n, 0))
        old = ctx.read(lba, n)
    else:
        old = ctx.pattern(n, 0x44)
        ctx.write(lba, old)
    verify = bytearray(old)
    verify[ctx.block_size // 2] ^= 0x5A
    r = _caw(ctx, lba, bytes(verify), ctx.pattern(n, 0x66))
    ctx.skip_if_unimplemented(r)
    if not r.is_check(SenseKey.MISCOMPARE, MISCOMPARE_DURING_VERIFY):
        raise TestFailed(
            f"COMPARE AND WRITE with different verify data returned {r.describe()}, expected "
            "MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION"
        )
    if r.sense is not None and r.sense.information not in (None, ctx.block_size // 2):
        raise TestFailed(
            f"COMPARE AND WRITE miscompare reports offset {r.sense.information}, expected "
            f"{ctx.block_size // 2} (SBC-3 §5.2: offset of the first differing byte)"
        )
    if ctx.read(lba, n) != old:
        raise TestFailed("COMPARE AND WRITE miscompared but changed the blocks anyway")


def _caw_bad_size(ctx: Context) -> None:
    ctx.require_sbc()
    ctx.require_dataloss()
    n = min(_caw_max(ctx), 2)
    cdb = X.compare_and_write(0, n)
    for blocks in (2 * n - 1, 2 * n + 1):
        r = ctx.cmd(cdb, data=ctx.pattern(blocks, 0))
        ctx.skip_if_unimplemented(r)
        if r.good:
            raise TestFailed(
                f"COMPARE AND WRITE of {_blocks(n)} with {blocks} blocks of data-out returned "
                f"GOOD, "
                f"expected an error (the data-out must be exactly {2 * n} blocks)"
            )


# -- registration ------------------------------------------------------------------------
def _doc(text: str, cmd: Cmd, clause: str) -> str:
    return f"{text.format(name=cmd.name)}\n\nStandard: {clause}."


def _register_family(cmd: Cmd, clause: str, tests: list[str]) -> None:
    dl = cmd.writes
    docs = {
        "Simple": (
            _simple(cmd),
            "{name} of 1 to 256 blocks at the start and at the end of the "
            "LUN must complete GOOD (reads must return all the data).",
        ),
        "BeyondEol": (
            _beyond_eol(cmd),
            "{name} of blocks past the last LBA (one block beyond, "
            "all but one beyond, at LBA 2^31/2^63 and -1) must fail with ILLEGAL "
            "REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE.",
        ),
        "ZeroBlocks": (
            _zero_blocks(cmd),
            "{name} with a transfer length of 0 transfers nothing "
            "and is not an error at LBA 0, but an LBA past the end is still out of "
            "range (ILLEGAL REQUEST / LBA OUT OF RANGE).",
        ),
        "Protect": (
            _protect(cmd),
            "On a LUN without protection information, {name} with a "
            "non-zero PROTECT field (1..7) must fail with ILLEGAL REQUEST / INVALID "
            "FIELD IN CDB.",
        ),
        "DpoFua": (
            _dpofua(cmd),
            "{name} with DPO and/or FUA set must complete GOOD when MODE "
            "SENSE reports DPOFUA=1 and fail with INVALID FIELD IN CDB when it reports "
            "DPOFUA=0; REPORT SUPPORTED OPERATION CODES must agree.",
        ),
        "Dpo": (
            _dpofua(cmd, dpo_only=True),
            "{name} with DPO set must complete GOOD when MODE "
            "SENSE reports DPOFUA=1, else fail with INVALID FIELD IN CDB.",
        ),
        "Async": (
            _async(cmd),
            "32 {name} commands queued at once on one session must all "
            "complete GOOD (command queuing, SAM-5).",
        ),
        "Mismatch": (
            _verify_mismatch(cmd, True),
            "{name} with BYTCHK=1 and data-out that "
            "differs in one byte from the medium must fail with MISCOMPARE / "
            "MISCOMPARE DURING VERIFY OPERATION.",
        ),
        "MismatchNoCmp": (
            _verify_mismatch(cmd, False),
            "{name} with BYTCHK=0 compares nothing "
            "with the initiator's data, so it must complete GOOD whatever that "
            "data would have been.",
        ),
        "Flags": (
            _bytchk_flag(cmd),
            "{name} with BYTCHK=1 and data-out equal to the medium must complete GOOD.",
        ),
        "Verify": (
            _orwrite_verify(cmd),
            "{name} must store the bitwise OR of the data-out and the blocks on the medium.",
        ),
        "VPD": (
            _write_atomic_vpd,
            "A target implementing {name} must report its atomic "
            "limits (MAXIMUM ATOMIC TRANSFER LENGTH) in the Block Limits VPD page.",
        ),
    }
    for name in tests:  # ReadProtect, WriteProtect, VerifyProtect, Protect: one test
        key = "Protect" if name.endswith("Protect") else name
        func, text = docs[key]
        register("SCSI", cmd.suite, name, func, _doc(text, cmd, clause), dataloss=dl)


_PREFETCH = ["Simple", "BeyondEol", "ZeroBlocks"]
_READ = [*_PREFETCH, "ReadProtect", "DpoFua"]
_WRITE = [*_PREFETCH, "WriteProtect", "DpoFua"]
_VERIFY = [*_PREFETCH, "VerifyProtect", "Flags", "Dpo", "Mismatch", "MismatchNoCmp"]
_WRITE_VERIFY = [*_PREFETCH, "WriteProtect", "Flags", "Dpo"]
RW = [
    (Cmd("Read10", X.Op.READ_10, 10, READ), "SBC-3 §5.11 READ (10)", [*_READ, "Async"]),
    (Cmd("Read12", X.Op.READ_12, 12, READ), "SBC-3 §5.12 READ (12)", _READ),
    (Cmd("Read16", X.Op.READ_16, 16, READ), "SBC-3 §5.13 READ (16)", _READ),
    (Cmd("Write10", X.Op.WRITE_10, 10, WRITE), "SBC-3 §5.32 WRITE (10)", [*_WRITE, "Async"]),
    (Cmd("Write12", X.Op.WRITE_12, 12, WRITE), "SBC-3 §5.33 WRITE (12)", _WRITE),
    (Cmd("Write16", X.Op.WRITE_16, 16, WRITE), "SBC-3 §5.34 WRITE (16)", _WRITE),
    (
        Cmd("WriteAtomic16", X.Op.WRITE_ATOMIC_16, 16, ATOMIC),
        "SBC-4 §5.48 WRITE ATOMIC (16)",
        [*_WRITE, "VPD"],
    ),
    (Cmd("Verify10", X.Op.VERIFY_10, 10, VERIFY), "SBC-3 §5.27 VERIFY (10)", _VERIFY),
    (Cmd("Verify12", X.Op.VERIFY_12, 12, VERIFY), "SBC-3 §5.28 VERIFY (12)", _VERIFY),
    (Cmd("Verify16", X.Op.VERIFY_16, 16, VERIFY), "SBC-3 §5.29 VERIFY (16)", _VERIFY),
    (
        Cmd("WriteVerify10", X.Op.WRITE_VERIFY_10, 10, WRITE_VERIFY),
        "SBC-3 §5.36 WRITE AND VERIFY (10)",
        _WRITE_VERIFY,
    ),
    (
        Cmd("WriteVerify12", X.Op.WRITE_VERIFY_12, 12, WRITE_VERIFY),
        "SBC-3 §5.37 WRITE AND VERIFY (12)",
        _WRITE_VERIFY,
    ),
    (
        Cmd("WriteVerify16", X.Op.WRITE_VERIFY_16, 16, WRITE_VERIFY),
        "SBC-3 §5.38 WRITE AND VERIFY (16)",
        _WRITE_VERIFY,
    ),
    (
        Cmd("OrWrite", X.Op.ORWRITE_16, 16, ORWRITE),
        "SBC-3 §5.9 ORWRITE (16)",
        [*_PREFETCH, "Protect", "DpoFua", "Verify"],
    ),
    (Cmd("Prefetch10", X.Op.PRE_FETCH_10, 10, PREFETCH), "SBC-3 §5.6 PRE-FETCH (10)", _PREFETCH),
    (Cmd("Prefetch16", X.Op.PRE_FETCH_16, 16, PREFETCH), "SBC-3 §5.7 PRE-FETCH (16)", _PREFETCH),
]

for _cmd, _clause, _names in RW:
    _register_family(_cmd, _clause, _names)


def _prefetch_flags(cmd: Cmd) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        _prepare(ctx, cmd)
        for immed, group, what in (
            (True, 0, "IMMED=1"),
            (False, 3, "GROUP=3"),
            (True, 3, "IMMED=1 GROUP=3"),
        ):
            cdb = X.prefetch(0, 1, size=cmd.size, immed=immed, group=group)
            _expect_ok(ctx, cdb, 0, None, f" with {what}")

    return test


for _size in (10, 16):
    _pf = Cmd(
        f"Prefetch{_size}", X.Op.PRE_FETCH_10 if _size == 10 else X.Op.PRE_FETCH_16, _size, PREFETCH
    )
    register(
        "SCSI",
        _pf.suite,
        "Flags",
        _prefetch_flags(_pf),
        f"{_pf.name} with IMMED=1, with GROUP NUMBER 3 and with both must complete GOOD or "
        f"CONDITION MET.\n\nStandard: SBC-3 §5.6/§5.7 PRE-FETCH.",
    )


def _read6_simple(ctx: Context) -> None:
    ctx.require_sbc()
    for n in (1, 2, 8, 128, 255, 256):
        if n > ctx.num_blocks or (ctx.max_transfer_blocks and n > ctx.max_transfer_blocks):
            continue
        for lba in (0, ctx.num_blocks - n):
            if lba >= 1 << 21:
                continue
            r = ctx.good(
                X.read6(lba, n & 0xFF),
                read_len=n * ctx.block_size,
                why=f" of {_blocks(n)} at LBA {lba}",
            )
            if len(r.data) != n * ctx.block_size:
                raise TestFailed(
                    f"READ(6) of {_blocks(n)} returned {len(r.data)} bytes "
                    "(a transfer length of 0 means 256 blocks)"
                )


def _read6_beyond(ctx: Context) -> None:
    ctx.require_sbc()
    if ctx.num_blocks >= 1 << 21:
        raise TestSkipped("the LUN is larger than READ(6) can address (2^21 blocks)")
    for n in (1, 2, 8, 255, 256):
        if n > ctx.num_blocks + 1:
            continue
        lba = ctx.num_blocks + 1 - n
        ctx.lba_out_of_range(
            X.read6(lba, n & 0xFF),
            read_len=n * ctx.block_size,
            why=f" of {_blocks(n)} one block beyond the end",
        )
    for n in (2, 8, 256):
        ctx.lba_out_of_range(
            X.read6(ctx.num_blocks - 1, n & 0xFF),
            read_len=n * ctx.block_size,
            why=f" of {_blocks(n)} from the last block",
        )


register(
    "SCSI",
    "Read6",
    "Simple",
    _read6_simple,
    "READ(6) of 1 to 256 blocks (length 0 meaning 256) at the start and the end of the "
    "LUN must complete GOOD with all the data.\n\nStandard: SBC-3 §5.10 READ (6).",
)
register(
    "SCSI",
    "Read6",
    "BeyondEol",
    _read6_beyond,
    "READ(6) past the last LBA must fail with ILLEGAL REQUEST / LBA OUT OF RANGE."
    "\n\nStandard: SBC-3 §5.10 READ (6).",
)
register(
    "SCSI",
    "CompareAndWrite",
    "Simple",
    _caw_simple,
    "COMPARE AND WRITE whose verify data equals the medium must complete GOOD and write "
    "the new data, at the start and the end of the LUN.\n\nStandard: SBC-3 §5.2.",
    dataloss=True,
)
register(
    "SCSI",
    "CompareAndWrite",
    "DpoFua",
    _caw_dpofua,
    "COMPARE AND WRITE with DPO/FUA: GOOD when DPOFUA=1, INVALID FIELD IN CDB when 0."
    "\n\nStandard: SBC-3 §5.2, §6.5.1.",
    dataloss=True,
)
register(
    "SCSI",
    "CompareAndWrite",
    "Miscompare",
    lambda c: _caw_miscompare(c, False),
    "COMPARE AND WRITE whose verify data differs from the medium must fail with "
    "MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION, report the offset of the first "
    "differing byte in INFORMATION and leave the blocks unchanged.\n\nStandard: SBC-3 §5.2.",
    dataloss=True,
)
register(
    "SCSI",
    "CompareAndWrite",
    "Unwritten",
    lambda c: _caw_miscompare(c, True),
    "COMPARE AND WRITE on unmapped (never written) blocks with non-matching verify data "
    "must miscompare like on written blocks.\n\nStandard: SBC-3 §5.2, §4.7.",
    dataloss=True,
)
register(
    "SCSI",
    "CompareAndWrite",
    "InvalidDataOutSize",
    _caw_bad_size,
    "COMPARE AND WRITE whose data-out is not exactly twice NUMBER OF LOGICAL BLOCKS must "
    "not complete GOOD.\n\nStandard: SBC-3 §5.2.",
    dataloss=True,
)
