"""Logical block provisioning suites: WRITE SAME(10)/(16), UNMAP and GET LBA STATUS
(SBC-3 §4.7, §5.30, §5.41-§5.42, §5.13), checked against what the LU reports in READ
CAPACITY(16) (LBPME, LBPRZ) and the Block Limits / Logical Block Provisioning VPD pages.

About 530 lines, on purpose: a catalogue of independent tests for one feature (logical block
provisioning), all judged against the same reading of the LU's provisioning facts
(:func:`provisioning`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from poolbackend.conformance.context import LBA_OUT_OF_RANGE, Context, Reply
from poolbackend.conformance.registry import TestFailed, TestSkipped, register
from poolbackend.conformance.scsi_rw import SHORT_SWEEP, SWEEP
from poolbackend.scsi import cdb_ext as X
from poolbackend.scsi.sense import SenseKey

S = "SCSI"


@dataclass(frozen=True)
class Provisioning:
    lbpme: bool
    lbprz: bool
    lbpu: bool
    lbpws: bool
    lbpws10: bool
    wsnz: bool
    max_ws: int
    lbppb: int


def provisioning(ctx: Context) -> Provisioning:
    r = ctx.cmd(X.read_capacity16(32), read_len=32)
    rc = r.data if r.good and len(r.data) >= 15 else bytes(32)
    b2 = ctx.vpd(0xB2) or bytes(8)
    b0 = ctx.vpd(0xB0) or bytes(64)
    b0 = b0 + bytes(max(0, 64 - len(b0)))
    return Provisioning(
        lbpme=bool(rc[14] & 0x80),
        lbprz=bool(rc[14] & 0x40),
        lbpu=bool(b2[5] & 0x80) if len(b2) > 5 else False,
        lbpws=bool(b2[5] & 0x40) if len(b2) > 5 else False,
        lbpws10=bool(b2[5] & 0x20) if len(b2) > 5 else False,
        wsnz=bool(b0[4] & 0x01),
        max_ws=int.from_bytes(b0[36:44], "big"),
        lbppb=1 << (rc[13] & 0x0F),
    )


def _thin(ctx: Context) -> Provisioning:
    ctx.require_sbc()
    p = provisioning(ctx)
    if not p.lbpme:
        raise TestSkipped("the LU is not thin provisioned (LBPME=0 in READ CAPACITY(16))")
    return p


def unmap_cdb(ranges: list[tuple[int, int]]) -> tuple[bytes, bytes]:
    data = X.unmap_parameter_list(ranges)
    return X.unmap(len(data)), data


# -- WRITE SAME --------------------------------------------------------------------------
def _ws(
    ctx: Context,
    size: int,
    lba: int,
    n: int,
    *,
    unmap: bool = False,
    protect: int = 0,
    byte: int | None = None,
) -> tuple[bytes, bytes]:
    """WRITE SAME(size) CDB (``lba`` wrapped to the field, so -1 is all ones) and its
    data-out block: ``byte`` repeated, zeros with UNMAP, else A5h."""
    cdb = X.write_same(
        lba & ((1 << (32 if size == 10 else 64)) - 1), n, size=size, unmap=unmap, protect=protect
    )
    if byte is None:
        byte = 0 if unmap else 0xA5
    return cdb, ctx.pattern(1, byte)


def _ws_lengths(ctx: Context, p: Provisioning, sweep: tuple[int, ...] = SWEEP) -> list[int]:
    return [n for n in sweep if n <= ctx.num_blocks and (not p.max_ws or n <= p.max_ws)]


def _ws_simple(size: int, check: bool) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        ctx.require_sbc()
        p = provisioning(ctx)
        for n in _ws_lengths(ctx, p):
            for lba in (0, ctx.num_blocks - n):
                cdb, data = _ws(ctx, size, lba, n, byte=n & 0xFF)
                ctx.good(cdb, data=data, why=f" of {n} blocks at LBA {lba}")
                if check and ctx.read(lba, n) != ctx.pattern(n, n & 0xFF):
                    raise TestFailed(
                        f"WRITE SAME({size}) of {n} blocks at LBA {lba} returned GOOD but the "
                        "blocks do not all hold the data-out block"
                    )

    return test


def _ws_beyond(size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        ctx.require_sbc()
        p = provisioning(ctx)
        bits = 32 if size == 10 else 64
        if size == 10 and ctx.num_blocks >= 1 << 31:
            raise TestSkipped("the LUN is too large for WRITE SAME(10) beyond-end tests")
        for n in _ws_lengths(ctx, p):
            cdb, data = _ws(ctx, size, ctx.num_blocks + 1 - n, n)
            ctx.lba_out_of_range(cdb, data=data, why=f" of {n} blocks one block beyond the end")
        for what, lba in ((f"at LBA 2^{bits - 1}", 1 << (bits - 1)), ("at LBA -1", -1)):
            for n in _ws_lengths(ctx, p, SHORT_SWEEP):
                cdb, data = _ws(ctx, size, lba, n)
                ctx.lba_out_of_range(cdb, data=data, why=f" of {n} blocks {what}")
        for n in _ws_lengths(ctx, p, SWEEP[1:]):
            cdb, data = _ws(ctx, size, ctx.num_blocks - 1, n)
            ctx.lba_out_of_range(cdb, data=data, why=f" of {n} blocks from the last block")

    return test


def _ws_zero(size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        ctx.require_sbc()
        p = provisioning(ctx)
        if ctx.vpd(0xB0) is None:
            raise TestSkipped("no Block Limits VPD page: WSNZ and the limits are unknown")
        cdb, data = _ws(ctx, size, 0, 0)
        if p.wsnz:
            ctx.invalid_field(cdb, data=data, why=" of 0 blocks with WSNZ=1")
        elif p.max_ws and ctx.num_blocks > p.max_ws:
            ctx.invalid_field(cdb, data=data, why=" of 0 blocks (to the end, over the maximum)")
        else:
            ctx.good(cdb, data=data, why=" of 0 blocks (to the end of the LUN)")
        bits = 32 if size == 10 else 64
        for what, lba in (
            ("one block past the end", ctx.num_blocks + 1),
            (f"at LBA 2^{bits - 1}", 1 << (bits - 1)),
            ("at LBA -1", -1),
        ):
            cdb, data = _ws(ctx, size, lba, 0)
            ctx.lba_out_of_range(cdb, data=data, why=f" of 0 blocks {what}")

    return test


def _ws_protect(size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        ctx.require_sbc()
        if ctx.inquiry.protect:
            raise TestSkipped("the LU supports protection information; only LUs without it")
        for prot in range(1, 8):
            cdb, data = _ws(ctx, size, 0, 1, protect=prot)
            ctx.invalid_field(cdb, data=data, why=f" with WRPROTECT={prot}")

    return test


def _lbpws(p: Provisioning, size: int) -> bool:
    return p.lbpws10 if size == 10 else p.lbpws


def _zeros_check(ctx: Context, p: Provisioning, lba: int, n: int, what: str) -> None:
    if p.lbprz and ctx.read(lba, n) != bytes(n * ctx.block_size):
        raise TestFailed(
            f"{what} of {n} blocks at LBA {lba}: LBPRZ=1 but the blocks do not read back as zeros"
        )


def _ws_unmap(size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        p = _thin(ctx)
        if not _lbpws(p, size):
            raise TestSkipped(
                f"WRITE SAME({size}) with UNMAP is not offered (LBPWS"
                f"{'10' if size == 10 else ''}=0)"
            )
        for n in _ws_lengths(ctx, p, (1, 2, 8, 64, 256)):
            for lba in (0, ctx.num_blocks - n):
                ctx.write(lba, ctx.pattern(n, 0xFF))
                cdb, data = _ws(ctx, size, lba, n, unmap=True)
                ctx.good(cdb, data=data, why=f" UNMAP=1 of {n} blocks at LBA {lba}")
                _zeros_check(ctx, p, lba, n, f"WRITE SAME({size}) UNMAP=1")

    return test


def _ws_unmap_unaligned(size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        p = _thin(ctx)
        if not _lbpws(p, size):
            raise TestSkipped(f"WRITE SAME({size}) with UNMAP is not offered")
        if p.lbppb < 2:
            raise TestSkipped("one logical block per physical block: nothing can be unaligned")
        for lba in range(1, p.lbppb):
            cdb, data = _ws(ctx, size, lba, p.lbppb, unmap=True)
            ctx.good(cdb, data=data, why=f" UNMAP=1 at unaligned LBA {lba}")

    return test


def _ws_unmap_until_end(size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        p = _thin(ctx)
        if not _lbpws(p, size):
            raise TestSkipped(f"WRITE SAME({size}) with UNMAP is not offered")
        if p.wsnz:
            raise TestSkipped("WSNZ=1: a NUMBER OF LOGICAL BLOCKS of 0 is refused by design")
        for n in _ws_lengths(ctx, p, (1, 2, 8, 64, 256)):
            lba = ctx.num_blocks - n
            ctx.write(lba, ctx.pattern(n, 0xFF))
            cdb, data = _ws(ctx, size, lba, 0, unmap=True)
            ctx.good(cdb, data=data, why=f" UNMAP=1 of 0 blocks (to the end) from LBA {lba}")
            _zeros_check(ctx, p, lba, n, f"WRITE SAME({size}) UNMAP=1 until the end")

    return test


def _ws_unmap_vpd(size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        ctx.require_sbc()
        p = provisioning(ctx)
        cdb, data = _ws(ctx, size, 0, 1, unmap=True)
        r = ctx.cmd(cdb, data=data)
        flag = f"LBPWS{'10' if size == 10 else ''}"
        if r.good:
            if not p.lbpme:
                raise TestFailed(f"WRITE SAME({size}) UNMAP=1 works but LBPME=0")
            if not _lbpws(p, size):
                raise TestFailed(f"WRITE SAME({size}) UNMAP=1 works but {flag}=0 in VPD B2h")
        elif _lbpws(p, size):
            raise TestFailed(f"{flag}=1 but WRITE SAME({size}) UNMAP=1 returned {r.describe()}")

    return test


def _ws_bad_size(size: int) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        p = _thin(ctx)
        if not _lbpws(p, size):
            raise TestSkipped(f"WRITE SAME({size}) with UNMAP is not offered")
        cdb, _ = _ws(ctx, size, 0, 1, unmap=True)
        for data in (bytes(ctx.block_size // 2), bytes(ctx.block_size * 2)):
            r = ctx.cmd(cdb, data=data)
            if r.good:
                raise TestFailed(
                    f"WRITE SAME({size}) with {len(data)} bytes of data-out (one "
                    f"block is {ctx.block_size}) returned GOOD"
                )

    return test


_WS_TESTS: list[tuple[str, Callable[[int], Callable[[Context], None]], str, str]] = [
    (
        "Simple",
        lambda s: _ws_simple(s, False),
        "WRITE SAME({s}) of 1 to 256 blocks at the start "
        "and the end of the LUN must complete GOOD.",
        "§5.41/§5.42",
    ),
    (
        "BeyondEol",
        _ws_beyond,
        "WRITE SAME({s}) past the last LBA must fail with ILLEGAL REQUEST / LBA OUT OF RANGE.",
        "§5.41/§5.42",
    ),
    (
        "ZeroBlocks",
        _ws_zero,
        "WRITE SAME({s}) of 0 blocks means up to the end of the LUN: "
        "refused with INVALID FIELD IN CDB when WSNZ=1 or beyond MAXIMUM WRITE SAME LENGTH, GOOD "
        "otherwise; an LBA past the end is out of range.",
        "§5.41, §6.6.4 (WSNZ)",
    ),
    (
        "WriteProtect",
        _ws_protect,
        "WRITE SAME({s}) with a non-zero WRPROTECT on a LU without "
        "protection information must fail with INVALID FIELD IN CDB.",
        "§5.41, §4.22",
    ),
    (
        "Unmap",
        _ws_unmap,
        "WRITE SAME({s}) with UNMAP=1 on a thin LU offering it (LBPWS) must "
        "complete GOOD and, with LBPRZ=1, the blocks must read back as zeros.",
        "§5.41, §4.7.4.5",
    ),
    (
        "UnmapUnaligned",
        _ws_unmap_unaligned,
        "WRITE SAME({s}) UNMAP=1 starting inside a physical block must still complete GOOD.",
        "§4.7.3.4",
    ),
    (
        "UnmapUntilEnd",
        _ws_unmap_until_end,
        "WRITE SAME({s}) UNMAP=1 with 0 blocks unmaps up to "
        "the end of the LUN; with LBPRZ=1 those blocks read back as zeros.",
        "§5.41",
    ),
    (
        "UnmapVPD",
        _ws_unmap_vpd,
        "Whether WRITE SAME({s}) UNMAP=1 works must agree with LBPME "
        "and LBPWS in the Logical Block Provisioning VPD page.",
        "§6.6.6",
    ),
    (
        "Check",
        lambda s: _ws_simple(s, True),
        "After WRITE SAME({s}) of 1 to 256 blocks every block must hold the data-out block.",
        "§5.41",
    ),
    (
        "InvalidDataOutSize",
        _ws_bad_size,
        "WRITE SAME({s}) whose data-out is not exactly one logical block must not complete GOOD.",
        "§5.41",
    ),
]

for _size in (10, 16):
    for _name, _make, _text, _clause in _WS_TESTS:
        register(
            S,
            f"WriteSame{_size}",
            _name,
            _make(_size),
            _text.format(s=_size) + f"\n\nStandard: SBC-3 {_clause}.",
            dataloss=_name != "BeyondEol" and _name != "WriteProtect",
        )


# -- UNMAP -------------------------------------------------------------------------------
def _unmap_lu(ctx: Context) -> Provisioning:
    p = _thin(ctx)
    if not p.lbpu:
        raise TestSkipped("UNMAP is not offered (LBPU=0 in VPD B2h)")
    return p


def unmap_simple(ctx: Context) -> None:
    p = _unmap_lu(ctx)
    for n in (1, 2, 8, 64, 256):
        ctx.write(0, ctx.pattern(n, 0x61))
        cdb, data = unmap_cdb([(0, n)])
        ctx.good(cdb, data=data, why=f" of blocks 0-{n - 1}")
        _zeros_check(ctx, p, 0, n, "UNMAP")
    ctx.write(0, ctx.pattern(16, 0x61))
    cdb, data = unmap_cdb([(i, 1) for i in range(16)])
    ctx.good(cdb, data=data, why=" with one descriptor per block")
    _zeros_check(ctx, p, 0, 16, "UNMAP")


def unmap_vpd(ctx: Context) -> None:
    ctx.require_sbc()
    p = provisioning(ctx)
    cdb, data = unmap_cdb([(0, 1)])
    r = ctx.cmd(cdb, data=data)
    if r.good:
        if not p.lbpme:
            raise TestFailed("UNMAP works but LBPME=0 in READ CAPACITY(16)")
        if not p.lbpu:
            raise TestFailed("UNMAP works but LBPU=0 in VPD B2h")
        b0 = ctx.vpd(0xB0)
        if b0 is None or len(b0) < 28 or not int.from_bytes(b0[20:24], "big"):
            raise TestFailed("UNMAP works but MAXIMUM UNMAP LBA COUNT in VPD B0h is 0 or absent")
    elif p.lbpu:
        raise TestFailed(f"LBPU=1 but UNMAP returned {r.describe()}")


def unmap_zero(ctx: Context) -> None:
    _thin(ctx)
    for lba in range(0, 256, 51):
        cdb, data = unmap_cdb([(lba, 0)])
        ctx.good(cdb, data=data, why=f" of 0 blocks at LBA {lba}")
    cdb, data = unmap_cdb([(ctx.num_blocks, 0)])
    ctx.good(cdb, data=data, why=" of 0 blocks at the end of the LUN")
    cdb, data = unmap_cdb([])
    ctx.good(cdb, data=data, why=" without descriptors")
    b0 = ctx.vpd(0xB0)
    max_bdc = int.from_bytes(b0[24:28], "big") if b0 is not None and len(b0) >= 28 else 0
    if max_bdc <= 1:
        return
    count = min(max_bdc, 256)
    cdb, data = unmap_cdb([(i, 0) for i in range(count)])
    ctx.good(cdb, data=data, why=f" of {count} descriptors of 0 blocks, one per block")
    cdb, data = unmap_cdb([(i // 2, 0) for i in range(count)])
    ctx.good(cdb, data=data, why=f" of {count} overlapping descriptors of 0 blocks")


register(
    S,
    "Unmap",
    "Simple",
    unmap_simple,
    "UNMAP of 1 to 256 blocks, as one descriptor and as one descriptor per block, must "
    "complete GOOD; with LBPRZ=1 the blocks read back as zeros.\n\n"
    "Standard: SBC-3 §5.28, §4.7.4.5.",
    dataloss=True,
)
register(
    S,
    "Unmap",
    "VPD",
    unmap_vpd,
    "Whether UNMAP works must agree with LBPME (READ CAPACITY(16)), LBPU (VPD B2h) and a "
    "non-zero MAXIMUM UNMAP LBA COUNT (VPD B0h).\n\nStandard: SBC-3 §6.6.4, §6.6.6.",
    dataloss=True,
)
register(
    S,
    "Unmap",
    "ZeroBlocks",
    unmap_zero,
    "UNMAP descriptors of 0 blocks (at LBA 0..255, at the end of the LUN, where LBA + 0 "
    "does not exceed the capacity, one per block and overlapping, up to the MAXIMUM UNMAP "
    "BLOCK DESCRIPTOR COUNT) and a list without descriptors are not errors.\n\n"
    "Standard: SBC-3 §5.28.2.",
    dataloss=True,
)


# -- GET LBA STATUS ----------------------------------------------------------------------
def _lba_status(ctx: Context, lba: int, why: str = "") -> Reply:
    r = ctx.cmd(X.get_lba_status(lba, 24), read_len=24)
    ctx.skip_if_unimplemented(r)
    if not r.good:
        raise TestFailed(f"GET LBA STATUS at LBA {lba}{why} returned {r.describe()}")
    return r


def gls_simple(ctx: Context) -> None:
    _thin(ctx)
    for lba in (0, 1, 255, ctx.num_blocks - 256, ctx.num_blocks - 1):
        r = _lba_status(ctx, max(lba, 0))
        if len(r.data) < 24 or int.from_bytes(r.data[8:16], "big") != max(lba, 0):
            raise TestFailed(
                f"GET LBA STATUS at LBA {lba}: the first descriptor does not start "
                "at the requested LBA"
            )


def gls_beyond(ctx: Context) -> None:
    _thin(ctx)
    for lba in (ctx.num_blocks, ctx.num_blocks + 1, 1 << 63, (1 << 64) - 1):
        r = ctx.cmd(X.get_lba_status(lba, 24), read_len=24)
        ctx.skip_if_unimplemented(r)
        if not r.is_check(SenseKey.ILLEGAL_REQUEST, LBA_OUT_OF_RANGE):
            raise TestFailed(
                f"GET LBA STATUS at LBA {lba} (past the end) returned "
                f"{r.describe()}, expected ILLEGAL REQUEST / LBA OUT OF RANGE"
            )


def _first_descriptor(ctx: Context, lba: int) -> int:
    """Provisioning status of the first descriptor, which must start at ``lba``."""
    r = _lba_status(ctx, lba)
    if len(r.data) < 24:
        raise TestFailed(f"GET LBA STATUS at LBA {lba} returned no descriptor")
    first = int.from_bytes(r.data[8:16], "big")
    if first != lba:
        raise TestFailed(
            f"GET LBA STATUS at LBA {lba} returned a first descriptor starting at LBA {first}; "
            "it must start at the requested LBA (SBC-3 §5.13.2)"
        )
    return r.data[20] & 0x0F


def gls_unmap_single(ctx: Context) -> None:
    p = _unmap_lu(ctx)
    step = p.lbppb
    ctx.write(0, ctx.pattern(256 + step, 0x5A))
    for lba in range(0, 256, step):
        cdb, data = unmap_cdb([(lba, step)])
        ctx.good(cdb, data=data, why=f" of the physical block at LBA {lba}")
        state = _first_descriptor(ctx, lba)
        if state not in (1, 2):
            raise TestFailed(
                f"LBA {lba} was just unmapped but GET LBA STATUS reports provisioning status "
                f"{state} (mapped)"
            )
        state = _first_descriptor(ctx, lba + step)
        if state != 0:
            raise TestFailed(
                f"LBA {lba + step} is still written but GET LBA STATUS reports provisioning "
                f"status {state}"
            )
    # Single logical blocks inside a physical block need not be deallocated (SBC-3 §4.7.3.4),
    # but whatever the status, the first descriptor must start at the requested LBA.
    ctx.write(0, ctx.pattern(256 + step, 0x5A))
    for lba in range(0, 2 * step + 1):
        cdb, data = unmap_cdb([(lba, 1)])
        ctx.good(cdb, data=data, why=f" of the single block at LBA {lba}")
        _first_descriptor(ctx, lba)
        _first_descriptor(ctx, lba + 1)


register(
    S,
    "GetLBAStatus",
    "Simple",
    gls_simple,
    "GET LBA STATUS at the start and the end of a thin LU must complete GOOD with a "
    "first descriptor starting at the requested LBA.\n\nStandard: SBC-3 §5.13.",
)
register(
    S,
    "GetLBAStatus",
    "BeyondEol",
    gls_beyond,
    "GET LBA STATUS at an LBA past the end must fail with ILLEGAL REQUEST / LBA OUT OF "
    "RANGE.\n\nStandard: SBC-3 §5.13.",
)
register(
    S,
    "GetLBAStatus",
    "UnmapSingle",
    gls_unmap_single,
    "Unmapping the physical blocks of a written range one after the other, GET LBA STATUS "
    "must report each just-unmapped block deallocated or anchored (status 1 or 2) and the "
    "next one mapped (status 0), each first descriptor starting at the requested LBA.\n\n"
    "Standard: SBC-3 §5.13.2, §4.7.",
    dataloss=True,
)
