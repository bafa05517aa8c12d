"""``poolbackend iscsi-lbastatus URL [--lba N] [--blocks N]``: a LUN's provisioning map.

Lists the mapped, deallocated and anchored extents of [LBA, LBA + BLOCKS) (default: the
whole LUN) as ``sg_get_lba_status`` does for a local disk, walked with GET LBA STATUS(16)
with several commands in flight, then one summary line. A fully provisioned LUN (READ
CAPACITY(16) LBPME=0) is not asked -- GET LBA STATUS means nothing there (tgt answers
"deallocated" for a thick LUN whose file has holes) -- and is listed as one mapped extent.

Registered next to its handler; the initiator and asyncio are imported only when it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from poolbackend.cli.common import Commands, arg
from poolbackend.cli.initiator_opts import LUN_URL, add_initiator_options, session_options
from poolbackend.errors import ConfigError
from poolbackend.numbers import ascii_int
from poolbackend.text import printable

if TYPE_CHECKING:
    from poolbackend.iscsi.aio import Session
    from poolbackend.scsi.lbastatus import Extent

commands = Commands()


def _number(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return ascii_int(value, high=(1 << 64) - 1, allow_hex=True)
    except ValueError:
        raise ConfigError(
            f"{name} must be a number of blocks (decimal or 0x hex), not '{printable(value)}'"
        ) from None


def extent_line(e: Extent) -> str:
    return f"LBA:{e.lba} Blocks:{e.blocks} {e.status.label}"


@commands.add(
    "iscsi-lbastatus",
    "mapped, deallocated and anchored extents of a thin LUN (GET LBA STATUS), "
    "like sg_get_lba_status",
    LUN_URL,
    arg("--lba", metavar="N", help="first block (default 0)"),
    arg("--blocks", metavar="N", help="number of blocks (default: to the end)"),
    add_initiator_options,
)
def cmd_iscsi_lbastatus(args: argparse.Namespace) -> int:
    from poolbackend.cli.tools import _with_lun
    from poolbackend.iscsi.url import parse_url

    url = parse_url(args.url, need_lun=True)
    opts = session_options(args, url)
    lba = _number(args.lba, "--lba") or 0
    count = _number(args.blocks, "--blocks")

    async def run(s: Session, lun: int) -> None:
        from poolbackend.cli.tools import _existing_lu
        from poolbackend.iscsi import extents
        from poolbackend.scsi.lbastatus import Extent, ProvisioningStatus

        inq = await _existing_lu(s, url, lun)
        if not inq.is_disk:
            raise ConfigError(f"LUN {lun} is not a disk: it has no blocks")
        rc = await s.read_capacity16(lun)
        if rc is None:
            blocks, bs = await s.read_capacity10(lun)
            thin = False
        else:
            blocks, bs, thin = rc.block_count, rc.block_length, rc.lbpme
        if lba >= blocks:
            raise ConfigError(f"--lba {lba} is beyond the end of LUN {lun} ({blocks} blocks)")
        end = blocks if count is None or count == 0 else lba + count
        if end > blocks:
            raise ConfigError(f"--lba {lba} + --blocks {count} exceeds LUN {lun}'s {blocks} blocks")
        if not thin:
            print(
                f"LUN {lun} is fully provisioned (READ CAPACITY(16) LBPME=0): every block "
                "is mapped; GET LBA STATUS not sent",
                file=sys.stderr,
            )
            whole = Extent(lba, end - lba, ProvisioningStatus.MAPPED)
            found = extents.ExtentMap((whole,), complete=True, commands=0)
        else:
            found = await extents.walk(s, lun, blocks, lba, end)
        for e in found.extents:
            print(extent_line(e))
        mapped = found.blocks(ProvisioningStatus.MAPPED)
        print(
            f"Mapped:{mapped} blocks ({mapped * bs} bytes) of {end - lba}; "
            f"deallocated:{found.blocks(ProvisioningStatus.DEALLOCATED)}; "
            f"anchored:{found.blocks(ProvisioningStatus.ANCHORED)}"
        )

    _with_lun(url, opts, run)
    return 0
