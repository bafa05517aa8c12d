"""libiscsi-style tools: iscsi-ls, iscsi-inq, iscsi-readcapacity, each registered next to its
handler.

Output follows libiscsi's utilities so scripts keep working, with two deliberate fixes:
sizes are exact ((last LBA + 1) x block length) and LUNs above 255 are listed correctly.
The initiator and asyncio are imported only when a tool runs (every command's parser is
built at start-up).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TextIO

from poolbackend.cli.common import Commands, arg, flag
from poolbackend.cli.initiator_opts import LUN_URL, add_initiator_options, session_options
from poolbackend.numbers import ascii_int
from poolbackend.text import emit, printable

if TYPE_CHECKING:
    from poolbackend.iscsi.aio import Session, SessionOptions
    from poolbackend.iscsi.url import IscsiUrl
    from poolbackend.scsi.inquiry import StandardInquiry
    from poolbackend.scsi.lun import Lun

commands = Commands()


def exact_size(n: int) -> str:
    """Largest binary unit in which the size is a whole number (libiscsi truncates instead)."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("k", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}"


async def _list_luns(session: Session, out: TextIO) -> None:
    """One line per LUN, each addressed with the entry the target reported; entries that
    cannot be used, and a LUN whose command fails or whose data is impossible, get a
    ``warning:`` line on stderr (as in pool-start) and the others are still listed."""
    import asyncio

    from poolbackend.iscsi.errors import CommandFailed
    from poolbackend.scsi import inquiry as INQ
    from poolbackend.scsi.reportluns import refused_line

    report = await session.report_luns_data()
    for raw, reason in report.refused:
        emit("warning", refused_line(raw, reason))

    async def describe(lun: Lun) -> str | None:
        try:
            inq = await session.inquiry(lun)
            line = f"Lun:{lun.number:<4} Type:{INQ.device_type_name(inq.device_type)}"
            if inq.is_disk:
                blocks, size = await session.read_capacity(lun)
                line += f" (Size:{exact_size(blocks * size)})"
        except CommandFailed as exc:
            print(f"warning: LUN {lun.number} left out: {exc}", file=sys.stderr)
            return None
        return line

    for line in await asyncio.gather(*(describe(lun) for lun in report.entries)):
        if line is not None:
            print(line, file=out)


async def iscsi_ls_async(
    url: IscsiUrl,
    opts: SessionOptions,
    show_luns: bool,
    show_urls: bool,
    discovery_auth: bool,
    out: TextIO,
) -> int:
    from poolbackend.iscsi.aio import Session
    from poolbackend.iscsi.errors import ISCSIError

    disc = await Session.open(url.portal, None, opts, url.credentials if discovery_auth else None)
    try:
        targets = await disc.send_targets()
    finally:
        await disc.close()
    if url.target is not None:
        targets = [t for t in targets if t[0] == url.target]
    status = 0
    for name, addresses in targets:
        portal_text = addresses[0] if addresses else f"{url.portal},1"
        if show_urls:
            if not show_luns:
                print(f"iscsi://{url.portal}/{name}/0", file=out)
                continue
        else:
            print(f"Target:{name} Portal:{portal_text}", file=out)
        if not show_luns:
            continue
        try:
            async with await Session.open(url.portal, name, opts, url.credentials) as s:
                if show_urls:
                    for lun in await s.report_luns():
                        print(f"iscsi://{url.portal}/{name}/{lun}", file=out)
                else:
                    await _list_luns(s, out)
        except ISCSIError as exc:
            emit("error", str(exc))
            status = 1
    return status


@commands.add(
    "iscsi-ls",
    "list the targets of a portal (SendTargets) and, with -s, their LUNs with exact sizes",
    arg(
        "url",
        metavar="URL",
        help="iscsi://[user[%%password]@]host[:port][/target-iqn[/lun]] or host[:port]",
    ),
    arg("-s", "--show-luns", action="store_true", help="log in and list every LUN"),
    arg(
        "-U",
        "--url",
        dest="url_output",
        action="store_true",
        help="print iscsi:// URLs instead of the table",
    ),
    flag("--discovery-auth", "authenticate the discovery session with the URL's CHAP credentials"),
    add_initiator_options,
)
def cmd_iscsi_ls(args: argparse.Namespace) -> int:
    import asyncio

    from poolbackend.iscsi.url import parse_url

    url = parse_url(args.url)
    opts = session_options(args, url)
    return asyncio.run(
        iscsi_ls_async(url, opts, args.show_luns, args.url_output, args.discovery_auth, sys.stdout)
    )


def _with_lun(
    url: IscsiUrl, opts: SessionOptions, fn: Callable[[Session, int], Awaitable[None]]
) -> None:
    """Log in to the URL's target and run ``fn`` on its LUN."""
    import asyncio

    from poolbackend.iscsi.aio import Session

    async def run() -> None:
        assert url.target is not None and url.lun is not None
        async with await Session.open(url.portal, url.target, opts, url.credentials) as s:
            await fn(s, url.lun)

    asyncio.run(run())


async def _existing_lu(s: Session, url: IscsiUrl, lun: int) -> StandardInquiry:
    """The LUN's standard INQUIRY, refused in one line when the target says there is no
    logical unit there (qualifier 3): tgt still answers INQUIRY, VPD pages included, for a
    LUN that does not exist (libiscsi's tools fail at their connect-time TEST UNIT READY)."""
    from poolbackend.errors import NotFoundError
    from poolbackend.scsi.inquiry import QUALIFIER_NO_LU

    inq = await s.inquiry(lun)
    if inq.peripheral_qualifier == QUALIFIER_NO_LU:
        raise NotFoundError(
            f"portal {url.portal} target {printable(url.target or '')}: no logical unit at "
            f"LUN {lun} (INQUIRY peripheral qualifier {QUALIFIER_NO_LU})"
        )
    return inq


def _print_standard_inquiry(inq: StandardInquiry) -> None:
    from poolbackend.scsi import inquiry as INQ

    lines = [
        f"Peripheral Qualifier:{INQ.peripheral_qualifier_name(inq.peripheral_qualifier)}",
        f"Peripheral Device Type:{INQ.device_type_name(inq.device_type)}",
        f"Removable:{int(inq.removable)}",
        f"Version:{inq.version} {INQ.version_name(inq.version)}",
        f"NormACA:{int(inq.normaca)}",
        f"HiSup:{int(inq.hisup)}",
        f"ReponseDataFormat:{inq.response_data_format}",
        f"SCCS:{int(inq.sccs)}",
        f"ACC:{int(inq.acc)}",
        f"TPGS:{inq.tpgs}",
        f"3PC:{int(inq.three_pc)}",
        f"Protect:{int(inq.protect)}",
        f"EncServ:{int(inq.encserv)}",
        f"MultiP:{int(inq.multip)}",
        f"SYNC:{int(inq.sync)}",
        f"CmdQue:{int(inq.cmdque)}",
        f"Vendor:{inq.vendor}",
        f"Product:{inq.product}",
        f"Revision:{inq.revision}",
    ]
    lines += [
        f"Version Descriptor:{d:04x} {INQ.version_descriptor_name(d)}"
        for d in inq.version_descriptors
    ]
    print("\n".join(lines))


def _print_vpd(page: int, data: bytes) -> None:
    from poolbackend.scsi import vpd as VPD

    if page == 0x00:
        for code in VPD.parse_supported_pages(data).pages:
            print(f"Page:0x{code:02x} {VPD_NAMES.get(code, 'UNKNOWN')}")
    elif page == 0x80:
        print(f"Unit Serial Number:[{VPD.parse_unit_serial(data).serial}]")
    elif page == 0x83:
        for i, d in enumerate(VPD.parse_device_identification(data).designators):
            print(f"DEVICE DESIGNATOR #{i}")
            print(f"Code Set:({d.code_set})")
            print(f"PIV:{int(d.piv)}")
            print(f"Association:({d.association})")
            print(f"Designator Type:({d.designator_type})")
            print(f"Designator:[{d.text}]")
    elif page == 0xB0:
        bl = VPD.parse_block_limits(data)
        for name in (
            "wsnz",
            "max_compare_write",
            "opt_xfer_granularity",
            "max_transfer_length",
            "opt_transfer_length",
            "max_prefetch",
            "max_unmap_lba_count",
            "max_unmap_descriptors",
            "opt_unmap_granularity",
            "ugavalid",
            "unmap_granularity_alignment",
            "max_write_same_length",
        ):
            print(f"{name.replace('_', ' ')}:{int(getattr(bl, name))}")
    elif page == 0xB1:
        print(
            "Medium Rotation Rate:"
            f"{VPD.parse_block_device_characteristics(data).medium_rotation_rate}RPM"
        )
    elif page == 0xB2:
        lbp = VPD.parse_logical_block_provisioning(data)
        for name in ("lbpu", "lbpws", "lbpws10", "lbprz", "anc_sup", "dp"):
            print(f"{name}:{int(getattr(lbp, name))}")
        print(f"threshold exponent:{lbp.threshold_exponent}")
        print(f"provisioning type:{lbp.provisioning_type}")
    else:
        print(data.hex())


VPD_NAMES = {
    0x00: "SUPPORTED_VPD_PAGES",
    0x80: "UNIT_SERIAL_NUMBER",
    0x83: "DEVICE_IDENTIFICATION",
    0xB0: "BLOCK_LIMITS",
    0xB1: "BLOCK_DEVICE_CHARACTERISTICS",
    0xB2: "LOGICAL_BLOCK_PROVISIONING",
}


@commands.add(
    "iscsi-inq",
    "standard INQUIRY of a LUN or, with -e 1 -c PAGE, a VPD page",
    LUN_URL,
    arg("-e", "--evpd", choices=("0", "1"), default="0", help="1: read a VPD page"),
    arg(
        "-c",
        "--page",
        metavar="PAGE",
        help="VPD page code, decimal or 0x hex (0x00 0x80 0x83 0xb0 0xb1 0xb2)",
    ),
    add_initiator_options,
)
def cmd_iscsi_inq(args: argparse.Namespace) -> int:
    from poolbackend.iscsi.url import parse_url

    url = parse_url(args.url, need_lun=True)
    opts = session_options(args, url)
    page: int | None = None
    if args.evpd == "1":
        try:
            page = ascii_int("0" if args.page is None else args.page, high=255, allow_hex=True)
        except ValueError:
            from poolbackend.errors import ConfigError

            raise ConfigError(
                f"--page must be a number from 0 to 255 (decimal or 0x hex), not "
                f"'{printable(args.page or '')}'"
            ) from None

    async def run(s: Session, lun: int) -> None:
        inq = await _existing_lu(s, url, lun)
        if page is None:
            _print_standard_inquiry(inq)
        else:
            _print_vpd(page, await s.vpd(lun, page))

    _with_lun(url, opts, run)
    return 0


@commands.add(
    "iscsi-readcapacity",
    "READ CAPACITY(16) of a LUN (falls back to (10)); exact size in bytes",
    LUN_URL,
    arg("-s", "--size-only", action="store_true", help="print only the size in bytes"),
    add_initiator_options,
)
def cmd_iscsi_readcapacity(args: argparse.Namespace) -> int:
    from poolbackend.iscsi.url import parse_url

    url = parse_url(args.url, need_lun=True)
    opts = session_options(args, url)

    async def run(s: Session, lun: int) -> None:
        await _existing_lu(s, url, lun)
        rc = await s.read_capacity16(lun)
        if rc is None:  # the LUN rejects (16): report what READ CAPACITY(10) says
            blocks, block_size = await s.read_capacity10(lun)
            print(
                blocks * block_size
                if args.size_only
                else f"RETURNED LOGICAL BLOCK ADDRESS:{blocks - 1}\n"
                f"LOGICAL BLOCK LENGTH IN BYTES:{block_size}\nTotal size:{blocks * block_size}"
            )
            return
        if args.size_only:
            print(rc.capacity_bytes)
            return
        print(f"RETURNED LOGICAL BLOCK ADDRESS:{rc.last_lba}")
        print(f"LOGICAL BLOCK LENGTH IN BYTES:{rc.block_length}")
        print(f"P_TYPE:{rc.p_type} PROT_EN:{int(rc.prot_en)}")
        print(
            f"P_I_EXPONENT:{rc.p_i_exponent} LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT:{rc.lbppbe}"
        )
        print(f"LBPME:{int(rc.lbpme)} LBPRZ:{int(rc.lbprz)}")
        print(f"LOWEST ALIGNED LOGICAL BLOCK ADDRESS:{rc.lowest_aligned_lba}")
        print(f"Total size:{rc.capacity_bytes}")

    _with_lun(url, opts, run)
    return 0
