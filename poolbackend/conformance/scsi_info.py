"""Device information suites: INQUIRY, MODE SENSE(6), READ CAPACITY, REPORT SUPPORTED
OPERATION CODES, TEST UNIT READY, READ DEFECT DATA, the mandatory-command check, START STOP
UNIT, PREVENT ALLOW MEDIUM REMOVAL, NoMedia and ReadOnly (SPC-4 §6, SBC-3 §5).

About 770 lines, on purpose: a catalogue of short, independent tests (one function each,
registered with its SPC-4/SBC-3 clause), grouped by the command they check like
iscsi-test-cu's suites; splitting it would only scatter one area of the standard over more
files.
"""

from __future__ import annotations

import time

from poolbackend.conformance.context import Context, Nexus, Reply
from poolbackend.conformance.registry import TestFailed, TestSkipped, conformance_test, register
from poolbackend.scsi import cdb_ext as X
from poolbackend.scsi.sense import SenseKey
from poolbackend.scsi.status import ScsiStatus

S = "SCSI"


# -- INQUIRY -----------------------------------------------------------------------------
@conformance_test(S, "Inquiry", "Standard")
def inquiry_standard(ctx: Context) -> None:
    """Standard INQUIRY must return at least 36 bytes, a peripheral qualifier of 0 for an
    existing LU, response data format 2 and an ADDITIONAL LENGTH that covers the 36 bytes.

    Standard: SPC-4 §6.4.2."""
    r = ctx.good(X.inquiry(alloc=255), read_len=255)
    if len(r.data) < 36:
        raise TestFailed(f"standard INQUIRY returned {len(r.data)} bytes, at least 36 required")
    if r.data[0] >> 5 != 0:
        raise TestFailed(f"peripheral qualifier is {r.data[0] >> 5}, expected 0")
    if r.data[3] & 0x0F != 2:
        raise TestFailed(f"RESPONSE DATA FORMAT is {r.data[3] & 0x0F}, expected 2")
    if r.data[4] + 5 < 36:
        raise TestFailed(f"ADDITIONAL LENGTH {r.data[4]} makes the data shorter than 36 bytes")


@conformance_test(S, "Inquiry", "AllocLength")
def inquiry_alloc_length(ctx: Context) -> None:
    """INQUIRY must honour every allocation length from 5 to 255 (returning no more than
    asked), and an SPC-3 or later device the 16-bit allocation length: 511 and 512 must give
    the same data.

    Standard: SPC-4 §6.4.1, §4.2.5.6 (allocation length)."""
    for alloc in range(5, 256, 25):
        r = ctx.good(X.inquiry(alloc=alloc), read_len=alloc, why=f" with allocation length {alloc}")
        if len(r.data) > alloc:
            raise TestFailed(f"INQUIRY with allocation length {alloc} returned {len(r.data)} bytes")
    if ctx.inquiry.version < 5:
        raise TestSkipped("the device does not claim SPC-3 or later (16-bit allocation length)")
    a = ctx.good(X.inquiry(alloc=511), read_len=511).data
    b = ctx.good(X.inquiry(alloc=512), read_len=512).data
    if a != b[: len(a)]:
        raise TestFailed("INQUIRY data differs between allocation lengths 511 and 512")


@conformance_test(S, "Inquiry", "EVPD")
def inquiry_evpd(ctx: Context) -> None:
    """INQUIRY with EVPD=0 and a non-zero PAGE CODE must fail with ILLEGAL REQUEST / INVALID
    FIELD IN CDB.

    Standard: SPC-4 §6.4.1."""
    ctx.invalid_field(
        X.inquiry(evpd=False, page=0x80, alloc=255),
        read_len=255,
        why=" with EVPD=0 and PAGE CODE 80h",
    )


def _vpd_or_fail(ctx: Context, page: int, why: str) -> bytes:
    r = ctx.cmd(X.inquiry(evpd=True, page=page, alloc=4096), read_len=4096)
    if not r.good:
        raise TestFailed(f"INQUIRY VPD page {page:02X}h {why} returned {r.describe()}")
    if len(r.data) < 4 or r.data[1] != page:
        raise TestFailed(f"INQUIRY VPD page {page:02X}h returned a page with the wrong code")
    return r.data


@conformance_test(S, "Inquiry", "BlockLimits")
def inquiry_block_limits(ctx: Context) -> None:
    """An SBC device listing the Block Limits VPD page (B0h) must return it with a PAGE
    LENGTH matching the data: 3Ch for SBC-3 devices.

    Standard: SBC-3 §6.5.3."""
    ctx.require_sbc()
    pages = _vpd_or_fail(ctx, 0x00, "(supported pages)")
    if 0xB0 not in pages[4 : 4 + int.from_bytes(pages[2:4], "big")]:
        raise TestSkipped("the device does not list the Block Limits VPD page")
    b0 = _vpd_or_fail(ctx, 0xB0, "(block limits)")
    length = int.from_bytes(b0[2:4], "big")
    if length + 4 != len(b0):
        raise TestFailed(f"Block Limits PAGE LENGTH {length} but {len(b0) - 4} bytes followed")
    if length not in (8, 0x3C) and length < 0x3C:
        raise TestFailed(f"Block Limits PAGE LENGTH is {length}, expected 3Ch (SBC-3) or 8")


@conformance_test(S, "Inquiry", "MandatoryVPDSBC")
def inquiry_mandatory_vpd(ctx: Context) -> None:
    """An SBC device must return the Supported VPD Pages page (00h) and the Device
    Identification page (83h).

    Standard: SPC-4 §7.8.1 (table of mandatory VPD pages), SBC-3 §6.5.1."""
    ctx.require_sbc()
    _vpd_or_fail(ctx, 0x00, "(supported pages, mandatory)")
    _vpd_or_fail(ctx, 0x83, "(device identification, mandatory)")


@conformance_test(S, "Inquiry", "SupportedVPD")
def inquiry_supported_vpd(ctx: Context) -> None:
    """Every page listed in the Supported VPD Pages page must be readable, the list must
    include page 00h itself and be in ascending order.

    Standard: SPC-4 §7.8.13."""
    data = _vpd_or_fail(ctx, 0x00, "(supported pages)")
    pages = list(data[4 : 4 + int.from_bytes(data[2:4], "big")])
    if 0 not in pages:
        raise TestFailed("the Supported VPD Pages page does not list itself (00h)")
    if pages != sorted(pages):
        raise TestFailed(f"supported VPD pages are not in ascending order: {bytes(pages).hex()}")
    for page in pages:
        _vpd_or_fail(ctx, page, "(listed as supported)")


_SPC_CODES = (0x0120, 0x0260, 0x0300, 0x0460, 0x05C0)  # SPC, SPC-2, SPC-3, SPC-4, SPC-5
_SBC_CODES = (0x0180, 0x0320, 0x04C0, 0x0600)  # SBC, SBC-2, SBC-3, SBC-4


@conformance_test(S, "Inquiry", "VersionDescriptors")
def inquiry_version_descriptors(ctx: Context) -> None:
    """A block device should claim a version of SPC and of SBC in its version descriptors
    (bytes 58..73 of the standard INQUIRY data). A missing claim is reported as a failure
    only when the descriptors are present at all (SPC-4 makes them optional).

    Standard: SPC-4 §6.4.2, table of version descriptor values."""
    ctx.require_sbc()
    r = ctx.good(X.inquiry(alloc=255), read_len=255)
    if len(r.data) < 74:
        raise TestSkipped("the INQUIRY data has no version descriptors (shorter than 74 bytes)")
    codes = [int.from_bytes(r.data[i : i + 2], "big") for i in range(58, 74, 2)]
    codes = [c for c in codes if c]
    if not codes:
        raise TestSkipped("the device reports no version descriptors")
    spc = any(lo <= c <= lo + 0x1F for c in codes for lo in _SPC_CODES)
    sbc = any(lo <= c <= lo + 0x1F for c in codes for lo in _SBC_CODES)
    if not spc:
        raise TestFailed(f"no SPC version descriptor among {', '.join(f'{c:04X}h' for c in codes)}")
    if not sbc:
        raise TestFailed(f"no SBC version descriptor among {', '.join(f'{c:04X}h' for c in codes)}")


@conformance_test(S, "Mandatory", "MandatorySBC")
def mandatory_sbc(ctx: Context) -> None:
    """An SBC device must implement INQUIRY, READ CAPACITY(10), READ(10), TEST UNIT READY
    and, when it claims SBC-3 (SPC-4 version 6), READ CAPACITY(16) and READ(16).

    Standard: SBC-3 §5.1 table 12 (commands for direct-access block devices)."""
    ctx.require_sbc()
    ctx.good(X.inquiry(alloc=255), read_len=255)
    ctx.good(X.read_capacity10(), read_len=8)
    ctx.good(X.lba_cdb(X.Op.READ_10, 0, 1, size=10), read_len=ctx.block_size)
    ctx.good(bytes(6))
    if ctx.inquiry.version >= 6:
        for cdb, n in (
            (X.read_capacity16(32), 32),
            (X.lba_cdb(X.Op.READ_16, 0, 1, size=16), ctx.block_size),
        ):
            r = ctx.cmd(cdb, read_len=n)
            if not r.good:
                raise TestFailed(f"{r.name} returned {r.describe()}; it is mandatory in SBC-3")


# -- MODE SENSE(6) -----------------------------------------------------------------------
def _mode_pages(data: bytes) -> dict[int, bytes]:
    pages: dict[int, bytes] = {}
    pos = 4 + (data[3] if len(data) > 3 else 0)
    end = min(len(data), data[0] + 1) if data else 0
    while pos + 2 <= end:
        code = data[pos] & 0x3F
        length = data[pos + 1] + 2
        if data[pos] & 0x40 and pos + 4 <= end:  # SPF: sub-page format
            length = int.from_bytes(data[pos + 2 : pos + 4], "big") + 4
        pages.setdefault(code, data[pos : pos + length])
        pos += length
    return pages


@conformance_test(S, "ModeSense6", "AllPages")
def modesense_all(ctx: Context) -> None:
    """MODE SENSE(6) of all pages (3Fh) must complete GOOD with a MODE DATA LENGTH of at
    least 3 (the rest of the 4-byte header).

    Standard: SPC-4 §6.11, §7.5.5."""
    r = ctx.good(X.mode_sense6(0x3F, alloc=255), read_len=255)
    if len(r.data) < 4 or r.data[0] < 3:
        raise TestFailed(f"MODE DATA LENGTH is {r.data[0] if r.data else 'missing'}, at least 3")


def _control_page(ctx: Context) -> bytes:
    r = ctx.good(X.mode_sense6(0x0A, alloc=255), read_len=255, why=" (Control page 0Ah)")
    page = _mode_pages(r.data).get(0x0A)
    if page is None or len(page) < 12:
        raise TestFailed("MODE SENSE(6) of the Control mode page returned no complete page")
    return page


@conformance_test(S, "ModeSense6", "Control")
def modesense_control(ctx: Context) -> None:
    """The Control mode page (0Ah) must be returned among all pages and on its own, with a
    PAGE LENGTH of 0Ah.

    Standard: SPC-4 §7.5.7 (Control mode page)."""
    r = ctx.good(X.mode_sense6(0x3F, alloc=255), read_len=255)
    if 0x0A not in _mode_pages(r.data):
        raise TestFailed("the Control mode page is missing from MODE SENSE(6) all pages")
    page = _control_page(ctx)
    if page[1] != 0x0A:
        raise TestFailed(f"Control mode page PAGE LENGTH is {page[1]:02X}h, expected 0Ah")


@conformance_test(S, "ModeSense6", "Control-D_SENSE")
def modesense_dsense(ctx: Context) -> None:
    """The sense data format must follow the Control page's D_SENSE bit: descriptor format
    (72h) when set, fixed format (70h) when clear. Checked with a READ(10) beyond the end.

    Standard: SPC-4 §7.5.7 (D_SENSE), §4.5.1."""
    ctx.require_sbc()
    d_sense = bool(_control_page(ctx)[2] & 0x04)
    r = ctx.lba_out_of_range(
        X.lba_cdb(X.Op.READ_10, ctx.num_blocks, 1, size=10), read_len=ctx.block_size
    )
    assert r.sense is not None
    if d_sense != r.sense.is_descriptor:
        raise TestFailed(
            f"D_SENSE is {int(d_sense)} but the sense data came in "
            f"{'descriptor' if r.sense.is_descriptor else 'fixed'} format"
        )


@conformance_test(S, "ModeSense6", "Control-SWP", dataloss=True)
def modesense_swp(ctx: Context) -> None:
    """Setting SWP (software write protect) in the Control page with MODE SELECT(6) must
    make the LU write protected: reads work, WRITE(10) fails with DATA PROTECT / WRITE
    PROTECTED. SWP is cleared again afterwards. Skipped when SWP is not changeable.

    Standard: SPC-4 §7.5.7 (SWP), SBC-3 §4.11."""
    ctx.require_sbc()
    r = ctx.good(X.mode_sense6(0x0A, pc=1, alloc=255), read_len=255, why=" (changeable values)")
    changeable = _mode_pages(r.data).get(0x0A)
    if changeable is None or len(changeable) < 5 or not changeable[4] & 0x08:
        raise TestSkipped("SWP in the Control mode page is not changeable")
    page = bytearray(_control_page(ctx))

    def select(swp: bool) -> Reply:
        page[0] &= 0x3F  # PS is reserved in MODE SELECT
        page[4] = (page[4] | 0x08) if swp else (page[4] & ~0x08)
        data = bytes(4) + bytes(page)
        return ctx.good(X.mode_select6(len(data)), data=data, why=f" setting SWP={int(swp)}")

    select(True)
    try:
        if not _control_page(ctx)[4] & 0x08:
            raise TestFailed("MODE SELECT set SWP but MODE SENSE reads it back clear")
        ctx.read(0, 1)
        ctx.check(
            X.lba_cdb(X.Op.WRITE_10, 0, 1, size=10),
            SenseKey.DATA_PROTECT,
            (0x27, 0),
            data=ctx.pattern(1, 0),
            why=" with SWP=1",
        )
    finally:
        select(False)


@conformance_test(S, "ModeSense6", "Residuals")
def modesense_residuals(ctx: Context) -> None:
    """MODE SENSE(6) with allocation length 4 must return at most 4 bytes without residual
    overflow; with 255 and less data returned, the residual underflow must say so.

    Standard: SPC-4 §4.2.5.6; RFC 7143 §11.4.5 (residuals)."""
    r = ctx.good(X.mode_sense6(0x3F, alloc=4), read_len=4)
    if len(r.data) > 4:
        raise TestFailed(f"MODE SENSE(6) with allocation length 4 returned {len(r.data)} bytes")
    if r.overflow:
        raise TestFailed("MODE SENSE(6) with allocation length 4 set the residual overflow flag")
    r = ctx.good(X.mode_sense6(0x3F, alloc=255), read_len=255)
    if len(r.data) < 255 and (not r.underflow or r.residual != 255 - len(r.data)):
        raise TestFailed(
            f"MODE SENSE(6) returned {len(r.data)} of 255 bytes but residual underflow="
            f"{int(r.underflow)} count={r.residual}, expected 1 and {255 - len(r.data)}"
        )
    if len(r.data) == 255 and r.underflow:
        raise TestFailed("MODE SENSE(6) returned all 255 bytes but set residual underflow")


# -- READ CAPACITY -----------------------------------------------------------------------
@conformance_test(S, "ReadCapacity10", "Simple")
def rc10_simple(ctx: Context) -> None:
    """READ CAPACITY(10) must return 8 bytes: the last LBA and a non-zero block length.

    Standard: SBC-3 §5.15."""
    ctx.require_sbc()
    r = ctx.good(X.read_capacity10(), read_len=8)
    if len(r.data) != 8:
        raise TestFailed(f"READ CAPACITY(10) returned {len(r.data)} bytes, expected 8")
    if not int.from_bytes(r.data[4:8], "big"):
        raise TestFailed("READ CAPACITY(10) reports a block length of 0")


def _rc16(ctx: Context, alloc: int = 32) -> Reply:
    ctx.require_sbc()
    r = ctx.supported(X.read_capacity16(alloc), read_len=alloc)
    if not r.good:
        raise TestFailed(f"READ CAPACITY(16) returned {r.describe()}, expected GOOD")
    return r


@conformance_test(S, "ReadCapacity16", "Simple")
def rc16_simple(ctx: Context) -> None:
    """READ CAPACITY(16) must return 32 bytes whose capacity equals READ CAPACITY(10)'s
    (when that one does not report FFFFFFFFh).

    Standard: SBC-3 §5.16."""
    r = _rc16(ctx)
    if len(r.data) < 32:
        raise TestFailed(f"READ CAPACITY(16) returned {len(r.data)} bytes, expected 32")
    last = int.from_bytes(r.data[0:8], "big")
    if last + 1 != ctx.num_blocks:
        raise TestFailed(
            f"READ CAPACITY(16) reports {last + 1} blocks, READ CAPACITY(10) {ctx.num_blocks}"
        )


@conformance_test(S, "ReadCapacity16", "Alloclen")
def rc16_alloclen(ctx: Context) -> None:
    """READ CAPACITY(16) with allocation length 0 transfers nothing and is not an error;
    lengths 1 to 32 must return at most that many bytes.

    Standard: SBC-3 §5.16, SPC-4 §4.2.5.6."""
    _rc16(ctx)
    r = ctx.good(X.read_capacity16(0), why=" with allocation length 0")
    if r.data:
        raise TestFailed(f"READ CAPACITY(16) with allocation length 0 returned {len(r.data)} bytes")
    for alloc in (1, 8, 12, 13, 31):
        r = ctx.good(X.read_capacity16(alloc), read_len=alloc, why=f" alloc {alloc}")
        if len(r.data) > alloc:
            raise TestFailed(f"READ CAPACITY(16) alloc {alloc} returned {len(r.data)} bytes")


@conformance_test(S, "ReadCapacity16", "PI")
def rc16_pi(ctx: Context) -> None:
    """PROT_EN and P_TYPE in READ CAPACITY(16) must agree with the PROTECT bit of INQUIRY:
    no protection may be enabled on a LU that does not support it.

    Standard: SBC-3 §5.16, §4.22; SPC-4 §6.4.2 (PROTECT)."""
    r = _rc16(ctx)
    prot_en = bool(r.data[12] & 0x01) if len(r.data) > 12 else False
    if prot_en and not ctx.inquiry.protect:
        raise TestFailed("READ CAPACITY(16) reports PROT_EN=1 but INQUIRY reports PROTECT=0")
    p_type = (r.data[12] >> 1) & 0x07 if len(r.data) > 12 else 0
    if not prot_en and p_type:
        raise TestFailed(f"P_TYPE is {p_type} with PROT_EN=0")


@conformance_test(S, "ReadCapacity16", "Support")
def rc16_support(ctx: Context) -> None:
    """A device claiming SBC-3 (INQUIRY version SPC-4) must implement READ CAPACITY(16).

    Standard: SBC-3 §5.1 table 12."""
    ctx.require_sbc()
    r = ctx.cmd(X.read_capacity16(32), read_len=32)
    if r.not_implemented and ctx.inquiry.version >= 6:
        raise TestFailed("READ CAPACITY(16) is not implemented but the device claims SPC-4")
    if not r.good and not r.not_implemented:
        raise TestFailed(f"READ CAPACITY(16) returned {r.describe()}")


# -- READ DEFECT DATA --------------------------------------------------------------------
def _defects(ctx: Context, size: int) -> None:
    ctx.require_sbc()
    for plist, glist in ((False, False), (True, False), (False, True), (True, True)):
        cdb = (X.read_defect_data10 if size == 10 else X.read_defect_data12)(
            plist=plist, glist=glist, alloc=8
        )
        r = ctx.supported(cdb, read_len=8)
        if not r.good and not r.is_check(SenseKey.RECOVERED_ERROR):
            raise TestFailed(
                f"{r.name} PLIST={int(plist)} GLIST={int(glist)} returned {r.describe()}"
            )
        if r.good and len(r.data) < 4:
            raise TestFailed(f"{r.name} returned {len(r.data)} bytes, less than its header")


@conformance_test(S, "ReadDefectData10", "Simple")
def rdd10(ctx: Context) -> None:
    """READ DEFECT DATA(10) for every PLIST/GLIST combination must return at least the
    4-byte header (or RECOVERED ERROR / DEFECT LIST NOT FOUND).

    Standard: SBC-3 §5.17."""
    _defects(ctx, 10)


@conformance_test(S, "ReadDefectData12", "Simple")
def rdd12(ctx: Context) -> None:
    """READ DEFECT DATA(12) for every PLIST/GLIST combination must return at least the
    8-byte header (or RECOVERED ERROR / DEFECT LIST NOT FOUND).

    Standard: SBC-3 §5.18."""
    _defects(ctx, 12)


# -- REPORT SUPPORTED OPERATION CODES ----------------------------------------------------
def _rsoc(ctx: Context, *, rctd: bool = False) -> Reply:
    r = ctx.supported(X.report_supported_opcodes(rctd=rctd), read_len=65535)
    if not r.good:
        raise TestFailed(f"REPORT SUPPORTED OPERATION CODES returned {r.describe()}")
    return r


def _descriptors(data: bytes) -> list[bytes]:
    """The command descriptors; each is 8 bytes, 20 with CTDP (a timeouts descriptor)."""
    total = int.from_bytes(data[0:4], "big")
    body = data[4 : 4 + total]
    out, pos = [], 0
    while pos + 8 <= len(body):
        d_size = 20 if body[pos + 5] & 0x02 else 8
        out.append(body[pos : pos + d_size])
        pos += d_size
    return out


@conformance_test(S, "ReportSupportedOpcodes", "Simple")
def rsoc_simple(ctx: Context) -> None:
    """REPORT SUPPORTED OPERATION CODES (all commands) must return a list that includes
    the mandatory commands (INQUIRY, TEST UNIT READY and, on a block device, READ CAPACITY(10)).

    Standard: SPC-4 §6.35."""
    r = _rsoc(ctx)
    ops = {d[0] for d in _descriptors(r.data)}
    required = [(0x12, "INQUIRY"), (0x00, "TEST UNIT READY")]
    if ctx.inquiry.is_disk:  # READ CAPACITY(10) is mandatory for block devices only
        required.append((0x25, "READ CAPACITY(10)"))
    missing = [n for op, n in required if op not in ops]
    if missing:
        raise TestFailed(f"the list of supported commands lacks {', '.join(missing)}")


@conformance_test(S, "ReportSupportedOpcodes", "OneCommand")
def rsoc_one(ctx: Context) -> None:
    """For every listed command, a one-command report must work in the form that fits it:
    REPORTING OPTIONS 001b (opcode only) for commands without service actions, which must
    then be reported as supported (SUPPORT 011b) with CDB usage data starting with the
    opcode, and 010b (opcode + service action) for commands with service actions. The other
    form must fail with ILLEGAL REQUEST / INVALID FIELD IN CDB: the command is implemented,
    so INVALID COMMAND OPERATION CODE is wrong too.

    Standard: SPC-4 §6.35.1 (REPORTING OPTIONS), §6.35.3."""
    r = _rsoc(ctx)
    for d in _descriptors(r.data):
        sa = int.from_bytes(d[2:4], "big")
        servactv = bool(d[5] & 0x01)
        right, wrong = (2, 1) if servactv else (1, 2)
        what = f"opcode {d[0]:02X}h" + (f" service action {sa:02X}h" if servactv else "")
        one = ctx.cmd(
            X.report_supported_opcodes(options=right, opcode=d[0], service_action=sa),
            read_len=65535,
        )
        if not one.good:
            raise TestFailed(f"REPORTING OPTIONS {right:03b}b for {what} returned {one.describe()}")
        if len(one.data) < 4 or one.data[1] & 0x07 != 3:
            raise TestFailed(f"{what} is listed but its one-command report says not supported")
        if len(one.data) > 4 and one.data[4] != d[0]:
            raise TestFailed(f"CDB usage data of {what} starts with {one.data[4]:02X}h")
        bad = ctx.cmd(
            X.report_supported_opcodes(options=wrong, opcode=d[0], service_action=sa),
            read_len=65535,
        )
        if not bad.is_check(SenseKey.ILLEGAL_REQUEST, (0x24, 0x00)):
            raise TestFailed(
                f"REPORTING OPTIONS {wrong:03b}b for {what} "
                f"({'has' if servactv else 'has no'} service actions) returned "
                f"{bad.describe()}, expected ILLEGAL REQUEST / INVALID FIELD IN CDB"
            )


@conformance_test(S, "ReportSupportedOpcodes", "RCTD")
def rsoc_rctd(ctx: Context) -> None:
    """With RCTD=1 every command descriptor must have CTDP set and carry a 12-byte command
    timeouts descriptor (descriptor length 20); with RCTD=0 none may.

    Standard: SPC-4 §6.35.2."""
    for rctd in (False, True):
        r = _rsoc(ctx, rctd=rctd)
        for d in _descriptors(r.data):
            if bool(d[5] & 0x02) != rctd:
                raise TestFailed(
                    f"RCTD={int(rctd)} but opcode {d[0]:02X}h has CTDP={int(not rctd)}"
                )
            if rctd and (len(d) < 20 or int.from_bytes(d[8:10], "big") != 0x0A):
                raise TestFailed(f"opcode {d[0]:02X}h has a bad command timeouts descriptor")


@conformance_test(S, "ReportSupportedOpcodes", "SERVACTV")
def rsoc_servactv(ctx: Context) -> None:
    """SERVACTV must be set exactly for commands with a service action, and each such
    command must be reported as supported with REPORTING OPTIONS 2 (opcode + action).

    Standard: SPC-4 §6.35.2, §6.35.3."""
    r = _rsoc(ctx)
    for d in _descriptors(r.data):
        if not d[5] & 0x01:
            continue
        sa = int.from_bytes(d[2:4], "big")
        one = ctx.cmd(
            X.report_supported_opcodes(options=2, opcode=d[0], service_action=sa), read_len=65535
        )
        if not one.good or len(one.data) < 2 or one.data[1] & 0x07 != 3:
            raise TestFailed(
                f"opcode {d[0]:02X}h service action {sa:02X}h is listed but its one-command "
                f"report says otherwise ({one.describe()})"
            )


# -- TEST UNIT READY, START STOP UNIT, PREVENT ALLOW, NoMedia, ReadOnly --------------------
@conformance_test(S, "TestUnitReady", "Simple")
def tur_simple(ctx: Context) -> None:
    """TEST UNIT READY on a ready LU must complete GOOD.

    Standard: SPC-4 §6.37."""
    ctx.good(bytes(6))


def _removable(ctx: Context) -> None:
    ctx.require_sbc()
    if not ctx.inquiry.removable:
        raise TestSkipped("the LU is not removable (INQUIRY RMB=0)")


def _tur_not_ready(ctx: Context, why: str, nexus: Nexus | None = None) -> None:
    ctx.check(bytes(6), SenseKey.NOT_READY, why=why, nexus=nexus)


def _load(ctx: Context, nexus: Nexus | None = None) -> None:
    ctx.good(X.start_stop_unit(loej=True, start=True), nexus=nexus, why=" (load)")


@conformance_test(S, "StartStopUnit", "Simple")
def ssu_simple(ctx: Context) -> None:
    """On a removable LU, START STOP UNIT with LOEJ=1 START=0 ejects the medium (TEST UNIT
    READY then reports NOT READY) and LOEJ=1 START=1 loads it again.

    Standard: SBC-3 §5.25."""
    _removable(ctx)
    ctx.good(X.start_stop_unit(loej=True, start=False), why=" (eject)")
    try:
        _tur_not_ready(ctx, " after the eject")
    finally:
        _load(ctx)
    ctx.good(bytes(6), why=" after the load")


@conformance_test(S, "StartStopUnit", "PwrCnd")
def ssu_pwrcnd(ctx: Context) -> None:
    """START STOP UNIT with a POWER CONDITION other than 0 ignores LOEJ: the medium must not
    be ejected.

    Standard: SBC-3 §5.25 (POWER CONDITION field)."""
    ctx.require_sbc()
    for pc in range(1, 16):
        r = ctx.cmd(X.start_stop_unit(power_condition=pc, loej=True, start=False))
        ctx.skip_if_unimplemented(r)
        tur = ctx.cmd(bytes(6))
        if not tur.good:
            _load(ctx)
            raise TestFailed(
                f"START STOP UNIT with POWER CONDITION {pc} and LOEJ=1 left the LU "
                f"{tur.describe()}; LOEJ must be ignored"
            )
    ctx.cmd(X.start_stop_unit(power_condition=1, start=True))


@conformance_test(S, "StartStopUnit", "NoLoej")
def ssu_noloej(ctx: Context) -> None:
    """START STOP UNIT with LOEJ=0 must not eject the medium, whatever START says.

    Standard: SBC-3 §5.25 (LOEJ)."""
    ctx.require_sbc()
    for start in (False, True, False):
        r = ctx.cmd(X.start_stop_unit(loej=False, start=start))
        ctx.skip_if_unimplemented(r)
        m = ctx.cmd(bytes(6))
        if m.is_check(SenseKey.NOT_READY, (0x3A, 0x00)):
            _load(ctx)
            raise TestFailed(f"START STOP UNIT LOEJ=0 START={int(start)} ejected the medium")
    ctx.cmd(X.start_stop_unit(start=True))


def _prevent(ctx: Context, prevent: int, nexus: Nexus | None = None) -> None:
    ctx.good(X.prevent_allow(prevent), nexus=nexus, why=f" PREVENT={prevent}")


def _eject_refused(ctx: Context, why: str, nexus: Nexus | None = None) -> None:
    ctx.check(
        X.start_stop_unit(loej=True, start=False),
        SenseKey.ILLEGAL_REQUEST,
        (0x53, 0x02),
        nexus=nexus,
        why=why,
    )


def _prevent_then(ctx: Context, clear: str) -> None:
    """PREVENT=1 from a nexus of its own, then ``clear`` must end the prevention: the eject
    refused before must work afterwards (from the main nexus)."""
    _removable(ctx)
    raw = ctx.nexus_to_lose() if clear == "nexusloss" else None
    holder = None if raw is not None else ctx.open_nexus(ctx.initiator)
    if holder is not None:
        ctx.extra.append(holder)
        _prevent(ctx, 1, holder)
    else:
        assert raw is not None
        if ctx.raw_status(raw, X.prevent_allow(1)) != ScsiStatus.GOOD:
            raw.close()
            raise TestFailed("PREVENT ALLOW MEDIUM REMOVAL PREVENT=1 did not complete GOOD")
    try:
        _eject_refused(ctx, " while removal is prevented")
        if clear == "allow" and holder is not None:
            _prevent(ctx, 0, holder)
        elif clear == "logout" and holder is not None:
            holder.close()
        elif raw is not None:
            raw.close()  # TCP dropped without a logout: the I_T nexus is lost
        elif holder is not None:
            fn = {"lunreset": 5, "warm": 6, "cold": 7}[clear]
            response = holder.tmf(fn)
            if response != 0:
                raise TestSkipped(f"the target refused the reset (TMF response {response})")
        deadline = time.monotonic() + ctx.options.timeout
        while True:  # a lost connection is noticed by the target asynchronously
            r = ctx.cmd(X.start_stop_unit(loej=True, start=False))
            if r.good or clear != "nexusloss" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not r.good:
            raise TestFailed(
                f"START STOP UNIT LOEJ=1 after the {clear} returned {r.describe()}: "
                "the prevention must have ended"
            )
    finally:
        if holder is not None and not holder.closed:
            ctx.cmd(X.prevent_allow(0), nexus=holder)
        if raw is not None:
            raw.close()
        _load(ctx)


for _name, _clear, _doc in (
    ("ITNexusLoss", "nexusloss", "the loss of the I_T nexus"),
    ("Logout", "logout", "a logout"),
    ("WarmReset", "warm", "a TARGET WARM RESET"),
    ("ColdReset", "cold", "a TARGET COLD RESET"),
    ("LUNReset", "lunreset", "a LOGICAL UNIT RESET"),
):

    def _t(ctx: Context, clear: str = _clear) -> None:
        _prevent_then(ctx, clear)

    register(
        S,
        "PreventAllow",
        _name,
        _t,
        f"A medium removal prevention must be cleared by {_doc}: the eject refused "
        "before (ILLEGAL REQUEST / MEDIUM REMOVAL PREVENTED) must then succeed.\n\n"
        "Standard: SBC-3 §5.9 PREVENT ALLOW MEDIUM REMOVAL, SAM-5 §6.3.",
    )


@conformance_test(S, "PreventAllow", "Simple")
def prevent_simple(ctx: Context) -> None:
    """PREVENT=1 then PREVENT=0 must both complete GOOD on a removable LU.

    Standard: SBC-3 §5.9."""
    _removable(ctx)
    _prevent(ctx, 1)
    _prevent(ctx, 0)


@conformance_test(S, "PreventAllow", "Eject")
def prevent_eject(ctx: Context) -> None:
    """While removal is prevented, START STOP UNIT LOEJ=1 must fail with ILLEGAL REQUEST /
    MEDIUM REMOVAL PREVENTED; after PREVENT=0 it must succeed.

    Standard: SBC-3 §5.9, §5.25."""
    _prevent_then(ctx, "allow")


@conformance_test(S, "PreventAllow", "2ITNexuses")
def prevent_2nexus(ctx: Context) -> None:
    """A prevention held by one I_T nexus must still refuse an eject from a second nexus
    after the first one allows removal only for itself.

    Standard: SBC-3 §5.9 (prevention is per I_T nexus)."""
    _removable(ctx)
    other = ctx.second()
    _prevent(ctx, 1)
    _prevent(ctx, 1, other)
    try:
        _prevent(ctx, 0)
        _eject_refused(ctx, " while the second nexus still prevents removal", nexus=other)
    finally:
        ctx.cmd(X.prevent_allow(0), nexus=other)
        _load(ctx)


_NO_MEDIA_CMDS: list[tuple[bytes, int, bool]] = [
    (X.synchronize_cache10(0, 1), 0, False),
    (X.lba_cdb(X.Op.READ_10, 0, 1, size=10), 1, False),
    (X.lba_cdb(X.Op.READ_16, 0, 1, size=16), 1, False),
    (X.lba_cdb(X.Op.WRITE_10, 0, 1, size=10), 0, True),
    (X.lba_cdb(X.Op.VERIFY_10, 0, 1, size=10), 0, False),
]


@conformance_test(S, "NoMedia", "NoMediaSBC", dataloss=True)
def no_media(ctx: Context) -> None:
    """With the medium ejected, medium-access commands (READ, WRITE, VERIFY, SYNCHRONIZE
    CACHE) must fail with NOT READY / MEDIUM NOT PRESENT.

    Standard: SBC-3 §4.5, SPC-4 §4.5.6 (sense key NOT READY, ASC 3Ah)."""
    _removable(ctx)
    ctx.good(X.start_stop_unit(loej=True, start=False), why=" (eject)")
    try:
        for cdb, reads, writes in _NO_MEDIA_CMDS:
            data = ctx.pattern(1, 0) if writes else None
            ctx.check(
                cdb,
                SenseKey.NOT_READY,
                (0x3A, 0x00),
                (0x3A, 0x01),
                (0x3A, 0x02),
                read_len=reads * ctx.block_size,
                data=data,
                why=" with no medium",
            )
    finally:
        _load(ctx)


@conformance_test(S, "ReadOnly", "ReadOnlySBC")
def read_only(ctx: Context) -> None:
    """On a write-protected LU (WP bit in the MODE SENSE header) commands that would change
    the medium must fail with DATA PROTECT / WRITE PROTECTED while reads work.

    Standard: SBC-3 §4.11 (write protection), §6.5.1 (WP)."""
    ctx.require_sbc()
    r = ctx.good(X.mode_sense6(0x3F, alloc=255), read_len=255)
    if len(r.data) < 3 or not r.data[2] & 0x80:
        raise TestSkipped("the LU is not write protected (WP=0)")
    ctx.read(0, 1)
    for cdb, data in (
        (X.lba_cdb(X.Op.WRITE_10, 0, 1, size=10), ctx.pattern(1, 0)),
        (X.lba_cdb(X.Op.WRITE_16, 0, 1, size=16), ctx.pattern(1, 0)),
        (X.write_same(0, 1, size=10), ctx.pattern(1, 0)),
    ):
        ctx.check(
            cdb, SenseKey.DATA_PROTECT, (0x27, 0x00), data=data, why=" on a write-protected LU"
        )
